//! How a written file becomes visible only whole, on stores with and
//! without a cheap rename.
//!
//! * **The local disk** ([`Staging::Rename`]): the file is written under a
//!   hidden temporary name (`.<name>.inprogress`, never listed) and renamed
//!   to its final name at the commit — one `rename(2)`.
//! * **Object stores** ([`Staging::Upload`]): a rename there is a copy and a
//!   delete (and S3 has no copy-if-not-exists unless configured), so the file
//!   is written as a multipart upload to its *final* name, and the upload is
//!   completed only at the commit. Until then the store shows nothing under
//!   that name; completing makes the whole object appear at once, and an
//!   aborted upload leaves nothing.
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
use object_store::{MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayloadMut};
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
    pub(crate) async fn open(
        self,
        store: &Arc<dyn ObjectStore>,
        location: Path,
    ) -> object_store::Result<StagedWriter> {
        Ok(match self {
            Self::Rename => StagedWriter::Rename(BufWriter::new(Arc::clone(store), location)),
            Self::Upload => StagedWriter::Upload {
                upload: store.put_multipart(&location).await?,
                buffer: PutPayloadMut::new(),
                parts: FuturesUnordered::new(),
                started: false,
            },
        })
    }
}

/// A file being written, invisible under its final name; what the Parquet
/// writer writes into.
pub(crate) enum StagedWriter {
    /// Buffered, then written under the hidden temporary name.
    Rename(BufWriter),
    /// Parts uploading to the final name.
    Upload {
        upload: Box<dyn MultipartUpload>,
        buffer: PutPayloadMut,
        parts: FuturesUnordered<BoxFuture<'static, object_store::Result<()>>>,
        /// Whether a part was sent (an empty file still needs one).
        started: bool,
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
    /// Sends the buffered bytes as one part, waiting while too many are in flight.
    async fn send_part(&mut self) -> object_store::Result<()> {
        let Self::Upload {
            upload,
            buffer,
            parts,
            started,
        } = self
        else {
            return Ok(());
        };
        while parts.len() >= PARTS_IN_FLIGHT {
            if let Some(done) = parts.next().await {
                done?;
            }
        }
        let part = std::mem::take(buffer).freeze();
        parts.push(upload.put_part(part));
        *started = true;
        Ok(())
    }

    /// The file, closed and still invisible. Call after the Parquet
    /// writer's `finish` (which completes this writer).
    pub(crate) fn into_staged(self) -> Staged {
        match self {
            Self::Rename(_) => Staged::Rename,
            Self::Upload { upload, .. } => Staged::Upload(upload),
        }
    }

    /// Drops what was written: the temporary object or the upload.
    pub(crate) async fn abort(self) -> object_store::Result<()> {
        match self {
            Self::Rename(mut writer) => writer.abort().await,
            Self::Upload { mut upload, .. } => upload.abort().await,
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

    /// Writes out everything, but does not make the file visible.
    fn complete(&mut self) -> BoxFuture<'_, ParquetResult<()>> {
        async move {
            match self {
                Self::Rename(writer) => writer.shutdown().await.map_err(external),
                Self::Upload {
                    buffer, started, ..
                } => {
                    if buffer.content_length() > 0 || !*started {
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
    /// Every part uploaded; not completed.
    Upload(Box<dyn MultipartUpload>),
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rename => f.write_str("Staged::Rename"),
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
            Self::Upload(mut upload) => {
                let _ = upload.abort().await;
            }
        }
    }
}
