//! How a written file becomes visible only whole, on stores with and
//! without a cheap rename, and how much memory it holds until then.
//!
//! * **The local disk** ([`Staging::Rename`]): the file is written under a
//!   hidden temporary name (`.<name>.inprogress`, never listed) and renamed
//!   to its final name at the commit — one `rename(2)`.
//! * **Object stores** ([`Staging::Upload`]): a rename there is a copy and a
//!   delete (and S3 has no copy-if-not-exists unless configured), so the file
//!   goes straight to its *final* name, but only at the commit. A file that
//!   fits in one part (10 MiB) stays in memory and is written at the commit
//!   with one conditional PUT (`If-None-Match: *`; a plain PUT where the store
//!   has no conditional put: the name is unique to the write). A larger one
//!   becomes a multipart upload, its parts sent as they fill, completed only
//!   at the commit. Until then the store shows nothing under that name;
//!   either way the whole object appears at once, and a dropped file leaves
//!   nothing (its upload aborted).
//!
//! Either way the commit is a step of its own, after every file of a write
//! is whole, so a write that fails before it leaves nothing visible.
//!
//! # Memory
//!
//! Every byte a file holds — its part being filled, its parts uploading
//! (at most [`PARTS_IN_FLIGHT`]), and on object stores a small file kept
//! whole for its commit — is reserved from the session's memory pool while
//! it is held. A write into many partitions of small files on an object
//! store holds all of them until the commit, so its files' total size must
//! fit the pool; a refused reservation fails the write with an error that
//! names the file and says how much the pool lacked (nothing of the write
//! becomes visible). The Parquet encoder's own buffers (a row group being
//! encoded) are not counted, as in DataFusion's own writers.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    PutPayloadMut,
};
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::errors::{ParquetError, Result as ParquetResult};

use crate::store::StoreKind;

/// Parts of a multipart upload are this large (S3 requires 5 MiB but for
/// the last part; this is `object_store`'s `BufWriter` default).
const PART_BYTES: usize = 10 * 1024 * 1024;

/// Parts of one file uploading at once.
pub(crate) const PARTS_IN_FLIGHT: usize = 8;

/// How the files of a write are kept invisible until the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staging {
    /// Hidden temporary name, renamed at the commit (the local disk).
    Rename,
    /// Multipart upload to the final name, completed at the commit.
    Upload,
}

impl Staging {
    /// The staging for a table whose files live on `kind` of storage.
    pub(crate) fn for_store(kind: StoreKind) -> Self {
        if kind.renames_atomically() {
            Self::Rename
        } else {
            Self::Upload
        }
    }

    /// Where a file to be committed as `target` is written until then:
    /// `hidden` (its temporary name beside the target) or the target itself.
    pub(crate) fn temporary<E>(
        self,
        target: &Path,
        hidden: impl FnOnce() -> Result<Path, E>,
    ) -> Result<Path, E> {
        match self {
            Self::Rename => hidden(),
            Self::Upload => Ok(target.clone()),
        }
    }

    /// Starts writing a file at `location` (see [`temporary`](Self::temporary)),
    /// its bytes reserved from `pool`. Makes no request: an upload starts
    /// when its first part is full.
    pub(crate) fn open(
        self,
        store: &Arc<dyn ObjectStore>,
        location: Path,
        pool: &Arc<dyn MemoryPool>,
    ) -> StagedWriter {
        let reservation =
            MemoryConsumer::new(format!("lakefusion INSERT staged file {location}")).register(pool);
        StagedWriter {
            staging: self,
            store: Arc::clone(store),
            location,
            upload: None,
            buffer: PutPayloadMut::new(),
            parts: FuturesUnordered::new(),
            reservation,
        }
    }
}

/// A part uploading; resolves to its size, to be given back to the pool.
type UploadingPart = BoxFuture<'static, object_store::Result<usize>>;

/// A file being written, invisible under its final name; what the Parquet
/// writer writes into. Buffered in parts of [`PART_BYTES`]; once a part is
/// full, the file becomes a multipart upload to `location` (the hidden
/// temporary name on the local disk, the final name elsewhere, completed
/// only at the commit there).
pub(crate) struct StagedWriter {
    staging: Staging,
    store: Arc<dyn ObjectStore>,
    location: Path,
    /// Started with the first full part.
    upload: Option<Box<dyn MultipartUpload>>,
    buffer: PutPayloadMut,
    parts: FuturesUnordered<UploadingPart>,
    /// The bytes of `buffer` and of `parts`.
    reservation: MemoryReservation,
}

impl fmt::Debug for StagedWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagedWriter")
            .field("staging", &self.staging)
            .field("location", &self.location)
            .field("reserved", &self.reservation.size())
            .finish()
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl StagedWriter {
    /// Waits for one uploading part, giving its bytes back to the pool.
    async fn next_part(&mut self) -> object_store::Result<()> {
        if let Some(done) = self.parts.next().await {
            self.reservation.shrink(done?);
        }
        Ok(())
    }

    /// Sends the buffered bytes as one part (starting the upload with the
    /// first), waiting while too many are in flight.
    async fn send_part(&mut self) -> object_store::Result<()> {
        while self.parts.len() >= PARTS_IN_FLIGHT {
            self.next_part().await?;
        }
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => self
                .upload
                .insert(self.store.put_multipart(&self.location).await?),
        };
        let part = std::mem::take(&mut self.buffer).freeze();
        let bytes = part.content_length();
        self.parts.push(
            upload
                .put_part(part)
                .map(move |r| r.map(|()| bytes))
                .boxed(),
        );
        Ok(())
    }

    /// Every part sent and uploaded.
    async fn flush_parts(&mut self) -> object_store::Result<()> {
        if self.buffer.content_length() > 0 {
            self.send_part().await?;
        }
        while !self.parts.is_empty() {
            self.next_part().await?;
        }
        Ok(())
    }

    /// The file, closed and still invisible under its final name. Call
    /// after the Parquet writer's `finish` (which completes this writer).
    pub(crate) fn into_staged(self) -> Staged {
        match (self.staging, self.upload) {
            (Staging::Rename, _) => Staged::Rename,
            (Staging::Upload, Some(upload)) => Staged::Upload(upload),
            (Staging::Upload, None) => Staged::Put {
                payload: self.buffer.freeze(),
                _reservation: self.reservation,
            },
        }
    }

    /// Drops what was written: the upload (a temporary file the caller
    /// deletes).
    pub(crate) async fn abort(mut self) -> object_store::Result<()> {
        self.parts.clear();
        match self.upload.as_mut() {
            Some(upload) => upload.abort().await,
            None => Ok(()),
        }
    }
}

impl AsyncFileWriter for StagedWriter {
    fn write(&mut self, bytes: Bytes) -> BoxFuture<'_, ParquetResult<()>> {
        async move {
            self.reservation
                .try_grow(bytes.len())
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            self.buffer.push(bytes);
            if self.buffer.content_length() >= PART_BYTES {
                self.send_part().await.map_err(external)?;
            }
            Ok(())
        }
        .boxed()
    }

    /// Writes out everything, but does not make the file visible: on the
    /// local disk the hidden temporary file is complete; elsewhere every
    /// part is uploaded (the upload completed at the commit), or a file that
    /// never filled a part stays in memory for its commit.
    fn complete(&mut self) -> BoxFuture<'_, ParquetResult<()>> {
        async move {
            match (self.staging, self.upload.is_some()) {
                (Staging::Upload, false) => Ok(()),
                (Staging::Upload, true) => self.flush_parts().await.map_err(external),
                (Staging::Rename, false) => {
                    let payload = std::mem::take(&mut self.buffer).freeze();
                    self.store
                        .put(&self.location, payload)
                        .await
                        .map_err(external)?;
                    self.reservation.free();
                    Ok(())
                }
                (Staging::Rename, true) => {
                    self.flush_parts().await.map_err(external)?;
                    if let Some(upload) = self.upload.as_mut() {
                        upload.complete().await.map_err(external)?;
                    }
                    Ok(())
                }
            }
        }
        .boxed()
    }
}

/// Writes a new object under a name unique to the write: one conditional
/// PUT (`If-None-Match: *`), or a plain PUT where the store has no
/// conditional put (the name being unique, it overwrites nothing).
pub(crate) async fn put_new(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    payload: PutPayload,
) -> object_store::Result<()> {
    let create = PutOptions::from(PutMode::Create);
    match store.put_opts(location, payload.clone(), create).await {
        Err(object_store::Error::NotImplemented { .. })
        | Err(object_store::Error::NotSupported { .. }) => {
            store.put(location, payload).await?;
        }
        other => {
            other?;
        }
    }
    Ok(())
}

/// A whole file waiting for the commit.
pub(crate) enum Staged {
    /// Under its temporary name.
    Rename,
    /// In memory (reserved from the pool until the file is committed or
    /// dropped), to be written with one PUT.
    Put {
        payload: PutPayload,
        _reservation: MemoryReservation,
    },
    /// Every part uploaded; not completed.
    Upload(Box<dyn MultipartUpload>),
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rename => f.write_str("Staged::Rename"),
            Self::Put { payload, .. } => {
                write!(f, "Staged::Put({} bytes)", payload.content_length())
            }
            Self::Upload(_) => f.write_str("Staged::Upload"),
        }
    }
}

impl Staged {
    /// Makes the file visible under `target` (from `temporary`) and returns
    /// what the store reports of it. An upload whose completion fails is
    /// aborted (its parts would otherwise stay in the store, unlisted).
    pub(crate) async fn commit(
        self,
        store: &Arc<dyn ObjectStore>,
        temporary: &Path,
        target: &Path,
    ) -> object_store::Result<ObjectMeta> {
        match self {
            Self::Rename => match store.rename_if_not_exists(temporary, target).await {
                // The target name is unique to this write, so a plain rename
                // cannot overwrite anything.
                Err(object_store::Error::NotImplemented { .. })
                | Err(object_store::Error::NotSupported { .. }) => {
                    store.rename(temporary, target).await?
                }
                other => other?,
            },
            Self::Put { payload, .. } => put_new(store, target, payload).await?,
            Self::Upload(mut upload) => {
                if let Err(e) = upload.complete().await {
                    // A failed abort leaves what S3's lifecycle rule for
                    // incomplete uploads removes; the completion's error
                    // is the one to report.
                    let _ = upload.abort().await;
                    return Err(e);
                }
            }
        }
        store.head(target).await
    }

    /// Drops the file without making it visible.
    pub(crate) async fn discard(self, store: &Arc<dyn ObjectStore>, temporary: &Path) {
        match self {
            Self::Rename => {
                let _ = store.delete(temporary).await;
            }
            Self::Put { .. } => {}
            Self::Upload(mut upload) => {
                let _ = upload.abort().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn pool() -> Arc<dyn MemoryPool> {
        Arc::new(datafusion::execution::memory_pool::UnboundedMemoryPool::default())
    }

    async fn written(store: &Arc<dyn ObjectStore>, path: &Path, bytes: usize) -> Staged {
        let mut writer = Staging::Upload.open(store, path.clone(), &pool());
        // In 1 MiB writes, as the Parquet writer flushes row groups.
        for _ in 0..bytes / (1024 * 1024) {
            writer
                .write(Bytes::from(vec![7u8; 1024 * 1024]))
                .await
                .unwrap();
        }
        writer.complete().await.unwrap();
        writer.into_staged()
    }

    #[tokio::test]
    async fn nothing_is_visible_before_the_commit_small_or_large() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (name, bytes) in [("small", 3 << 20), ("large", 23 << 20)] {
            let path = Path::from(format!("t/{name}.parquet"));
            let staged = written(&store, &path, bytes).await;
            assert_eq!(matches!(staged, Staged::Upload(_)), bytes > PART_BYTES);
            assert!(
                store.head(&path).await.is_err(),
                "{name} is not visible yet"
            );
            let meta = staged.commit(&store, &path, &path).await.unwrap();
            assert_eq!(meta.size, bytes as u64);
            let read = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert!(read.len() == bytes && read.iter().all(|&b| b == 7));
        }
    }

    #[tokio::test]
    async fn a_discarded_file_leaves_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (name, bytes) in [("small", 3 << 20), ("large", 23 << 20)] {
            let path = Path::from(format!("t/{name}.parquet"));
            written(&store, &path, bytes)
                .await
                .discard(&store, &path)
                .await;
            assert!(store.head(&path).await.is_err(), "{name} left something");
        }
        let mut writer = Staging::Upload.open(&store, Path::from("t/aborted.parquet"), &pool());
        writer
            .write(Bytes::from(vec![1u8; PART_BYTES + 1]))
            .await
            .unwrap();
        writer.abort().await.unwrap();
        assert!(store.head(&Path::from("t/aborted.parquet")).await.is_err());
    }

    /// A multipart upload whose completion fails is aborted, not dropped:
    /// its parts would otherwise stay in the store, unlisted and billed.
    #[cfg(feature = "test-utils")]
    #[tokio::test]
    async fn an_upload_whose_completion_fails_is_aborted() {
        use crate::store::faults::{Fault, FaultRule, FaultyStore, RequestKind};
        let faulty = FaultyStore::new(Arc::new(InMemory::new()));
        // The upload starts (the first write), its completion fails.
        faulty.inject(
            FaultRule::new(Fault::Permanent)
                .on(RequestKind::Write)
                .every(2),
        );
        let store: Arc<dyn ObjectStore> = Arc::clone(&faulty) as _;
        let path = Path::from("t/large.parquet");
        let staged = written(&store, &path, 23 << 20).await;
        assert!(matches!(staged, Staged::Upload(_)));
        let error = staged.commit(&store, &path, &path).await.unwrap_err();
        assert!(error.to_string().contains("injected"), "{error}");
        assert_eq!(faulty.aborted_uploads(), 1);
        assert!(store.head(&path).await.is_err());
    }
}
