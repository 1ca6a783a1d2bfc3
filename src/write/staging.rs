//! How a written file becomes visible only whole, on stores with and
//! without a cheap rename.
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

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    PutPayloadMut,
};
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::errors::{ParquetError, Result as ParquetResult};
use tokio::io::AsyncWriteExt;

/// Parts of a multipart upload are this large (S3 requires 5 MiB but for
/// the last part; this is `object_store`'s `BufWriter` default).
const PART_BYTES: usize = 10 * 1024 * 1024;

/// Parts of one file uploading at once.
const PARTS_IN_FLIGHT: usize = 8;

/// How the files of a write are kept invisible until the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staging {
    /// Hidden temporary name, renamed at the commit (the local disk).
    Rename,
    /// Multipart upload to the final name, completed at the commit.
    Upload,
}

impl Staging {
    /// The staging for a table whose files live under `url`.
    pub(crate) fn for_store(url: &ObjectStoreUrl) -> Self {
        if url.as_str().starts_with("file:") {
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

    /// Starts writing a file at `location` (see [`temporary`](Self::temporary)).
    /// Makes no request: an upload starts when its first part is full.
    pub(crate) fn open(self, store: &Arc<dyn ObjectStore>, location: Path) -> StagedWriter {
        match self {
            Self::Rename => StagedWriter::Rename(BufWriter::new(Arc::clone(store), location)),
            Self::Upload => StagedWriter::Upload {
                store: Arc::clone(store),
                location,
                upload: None,
                buffer: PutPayloadMut::new(),
                parts: FuturesUnordered::new(),
            },
        }
    }
}

/// A file being written, invisible under its final name; what the Parquet
/// writer writes into.
pub(crate) enum StagedWriter {
    /// Buffered, then written under the hidden temporary name.
    Rename(BufWriter),
    /// Buffered; once a part is full, parts uploading to the final name.
    Upload {
        store: Arc<dyn ObjectStore>,
        location: Path,
        /// Started with the first full part.
        upload: Option<Box<dyn MultipartUpload>>,
        buffer: PutPayloadMut,
        parts: FuturesUnordered<BoxFuture<'static, object_store::Result<()>>>,
    },
}

impl fmt::Debug for StagedWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rename(_) => f.write_str("StagedWriter::Rename"),
            Self::Upload { .. } => f.write_str("StagedWriter::Upload"),
        }
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl StagedWriter {
    /// Sends the buffered bytes as one part (starting the upload with the
    /// first), waiting while too many are in flight.
    async fn send_part(&mut self) -> object_store::Result<()> {
        let Self::Upload {
            store,
            location,
            upload,
            buffer,
            parts,
        } = self
        else {
            return Ok(());
        };
        while parts.len() >= PARTS_IN_FLIGHT {
            if let Some(done) = parts.next().await {
                done?;
            }
        }
        let upload = match upload {
            Some(upload) => upload,
            None => upload.insert(store.put_multipart(location).await?),
        };
        let part = std::mem::take(buffer).freeze();
        parts.push(upload.put_part(part));
        Ok(())
    }

    /// The file, closed and still invisible. Call after the Parquet
    /// writer's `finish` (which completes this writer).
    pub(crate) fn into_staged(self) -> Staged {
        match self {
            Self::Rename(_) => Staged::Rename,
            Self::Upload {
                upload: Some(upload),
                ..
            } => Staged::Upload(upload),
            Self::Upload { buffer, .. } => Staged::Put(buffer.freeze()),
        }
    }

    /// Drops what was written: the temporary object or the upload.
    pub(crate) async fn abort(self) -> object_store::Result<()> {
        match self {
            Self::Rename(mut writer) => writer.abort().await,
            Self::Upload {
                upload: Some(mut upload),
                ..
            } => upload.abort().await,
            Self::Upload { .. } => Ok(()),
        }
    }
}

impl AsyncFileWriter for StagedWriter {
    fn write(&mut self, bytes: Bytes) -> BoxFuture<'_, ParquetResult<()>> {
        async move {
            match self {
                Self::Rename(writer) => writer.put(bytes).await.map_err(external),
                Self::Upload { buffer, .. } => {
                    buffer.push(bytes);
                    if buffer.content_length() >= PART_BYTES {
                        self.send_part().await.map_err(external)?;
                    }
                    Ok(())
                }
            }
        }
        .boxed()
    }

    /// Writes out everything, but does not make the file visible (a file
    /// that never filled a part stays in memory for its commit).
    fn complete(&mut self) -> BoxFuture<'_, ParquetResult<()>> {
        async move {
            match self {
                Self::Rename(writer) => writer.shutdown().await.map_err(external),
                Self::Upload { upload: None, .. } => Ok(()),
                Self::Upload { buffer, .. } => {
                    if buffer.content_length() > 0 {
                        self.send_part().await.map_err(external)?;
                    }
                    if let Self::Upload { parts, .. } = self {
                        while let Some(done) = parts.next().await {
                            done.map_err(external)?;
                        }
                    }
                    Ok(())
                }
            }
        }
        .boxed()
    }
}

/// A whole file waiting for the commit.
pub(crate) enum Staged {
    /// Under its temporary name.
    Rename,
    /// In memory, to be written with one PUT.
    Put(PutPayload),
    /// Every part uploaded; not completed.
    Upload(Box<dyn MultipartUpload>),
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rename => f.write_str("Staged::Rename"),
            Self::Put(payload) => write!(f, "Staged::Put({} bytes)", payload.content_length()),
            Self::Upload(_) => f.write_str("Staged::Upload"),
        }
    }
}

impl Staged {
    /// Makes the file visible under `target` (from `temporary`) and returns
    /// what the store reports of it.
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
            Self::Put(payload) => {
                let create = PutOptions::from(PutMode::Create);
                match store.put_opts(target, payload.clone(), create).await {
                    Err(object_store::Error::NotImplemented { .. })
                    | Err(object_store::Error::NotSupported { .. }) => {
                        store.put(target, payload).await?
                    }
                    other => other?,
                };
            }
            Self::Upload(mut upload) => {
                upload.complete().await?;
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
            Self::Put(_) => {}
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

    async fn written(store: &Arc<dyn ObjectStore>, path: &Path, bytes: usize) -> Staged {
        let mut writer = Staging::Upload.open(store, path.clone());
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
        let mut writer = Staging::Upload.open(&store, Path::from("t/aborted.parquet"));
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
        let store: Arc<dyn ObjectStore> = faulty.clone();
        let path = Path::from("t/large.parquet");
        let staged = written(&store, &path, 23 << 20).await;
        assert!(matches!(staged, Staged::Upload(_)));
        let error = staged.commit(&store, &path, &path).await.unwrap_err();
        assert!(error.to_string().contains("injected"), "{error}");
        assert_eq!(faulty.aborted_uploads(), 1);
        assert!(store.head(&path).await.is_err());
    }
}
