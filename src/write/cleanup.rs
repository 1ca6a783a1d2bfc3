//! Removing what writes that never finished left behind.
//!
//! A write that is cancelled before its commit, or whose process dies, cannot
//! delete its hidden temporary files. They are never listed or read, but they
//! take space. A write that failed during its commit and could not take back
//! every file it had made visible, or whose process died during the commit,
//! leaves its record (see `record`) listing them: those files *are* seen by
//! readers that list the root. [`PartitionedTable::remove_abandoned_writes`]
//! deletes both, once they are old enough that no running write can still
//! own them: the files each record lists, then the record; then the hidden
//! temporary files.
//!
//! [`PartitionedTable::remove_abandoned_writes`]: crate::PartitionedTable::remove_abandoned_writes

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::datasource::listing::ListingTableUrl;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::record::{records_prefix, WriteRecord, MAX_RECORD_BYTES};
use crate::error::{Error, Result, TableProblem};
use crate::lake::TableDefinition;
use crate::store::StoreKind;

/// The suffix of the hidden name a file is written under until its commit
/// (`.<final name>.inprogress`); a store's own staging files for it add
/// more after it (the local file system's multipart uploads: `#<n>`).
pub(crate) const TEMP_SUFFIX: &str = ".inprogress";

/// The hidden temporary name a file to be committed as `name` is written under.
pub(crate) fn temp_name(name: &str) -> String {
    format!(".{name}{TEMP_SUFFIX}")
}

/// Whether `file_name` is one of our writer's temporary files (or a store's
/// staging file of one).
fn is_temporary(file_name: &str) -> bool {
    file_name.starts_with('.')
        && (file_name.ends_with(TEMP_SUFFIX) || file_name.contains(&format!("{TEMP_SUFFIX}#")))
}

/// Deletes what unfinished writes left under the table root, last modified
/// more than `older_than` ago: the files of every write record (and the
/// record), then our writer's temporary files; returns what it deleted.
///
/// On `file://` roots the directory tree is walked directly: object_store's
/// local store hides its multipart staging files (`…#<n>`), which a killed
/// writer leaves, from listings. Elsewhere the root is listed; an unfinished
/// multipart upload on S3 is not an object at all (the bucket's lifecycle
/// rule for incomplete uploads removes it).
pub(crate) async fn remove_abandoned(
    store: &Arc<dyn ObjectStore>,
    table: &TableDefinition,
    older_than: Duration,
) -> Result<Vec<Path>> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    let root = &table.root;
    let mut removed = remove_recorded(store, root, cutoff).await?;
    removed.extend(remove_temporary(store, root, table.store_kind(), cutoff).await?);
    Ok(removed)
}

/// Removes what the records older than `cutoff` list, then the records.
async fn remove_recorded(
    store: &Arc<dyn ObjectStore>,
    root: &ListingTableUrl,
    cutoff: DateTime<Utc>,
) -> Result<Vec<Path>> {
    let prefix = records_prefix(root.prefix());
    let listing_error = |source| Error::Listing {
        root: root.to_string(),
        source,
    };
    let records: Vec<ObjectMeta> = store
        .list(Some(&prefix))
        .try_filter(|meta| futures::future::ready(meta.last_modified < cutoff))
        .try_collect()
        .await
        .map_err(listing_error)?;
    let cleanup_error =
        |path: &Path, source: Box<dyn std::error::Error + Send + Sync>| Error::Cleanup {
            root: root.to_string(),
            path: path.to_string(),
            source,
        };
    let mut removed = Vec::new();
    for meta in records {
        if meta.size > MAX_RECORD_BYTES {
            tracing::warn!(root = %root, path = %meta.location, size = meta.size,
                "an object too large to be a write record was left as it is");
            continue;
        }
        let bytes = match store.get(&meta.location).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            // Another cleanup got there first.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(cleanup_error(&meta.location, e.into())),
        };
        // Not a record of ours (a console's folder marker, a damaged or
        // newer record): left alone, so that it cannot stop the cleanup of
        // the others, and said in the log.
        let record = match WriteRecord::decode(root.prefix(), &meta.location, &bytes) {
            Ok(record) => record,
            Err(e) => {
                if meta.size > 0 {
                    tracing::warn!(root = %root, error = %e, "a write record was left as it is");
                }
                continue;
            }
        };
        let deleted = delete_each(store, root, record.files.iter().cloned()).await?;
        removed.extend(deleted);
        record
            .remove(store)
            .await
            .map_err(|e| cleanup_error(&record.location, e.into()))?;
        removed.push(record.location);
    }
    Ok(removed)
}

/// Deletes `paths` (16 at once); a path already gone is not an error.
/// Returns the paths deleted.
async fn delete_each(
    store: &Arc<dyn ObjectStore>,
    root: &ListingTableUrl,
    paths: impl Iterator<Item = Path>,
) -> Result<Vec<Path>> {
    let deleted: Vec<Option<Path>> = futures::stream::iter(paths)
        .map(|path| {
            let store = Arc::clone(store);
            async move {
                match store.delete(&path).await {
                    Ok(()) => Ok(Some(path)),
                    // Never made visible, or removed already.
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(source) => Err(Error::Cleanup {
                        root: root.to_string(),
                        path: path.to_string(),
                        source: source.into(),
                    }),
                }
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(deleted.into_iter().flatten().collect())
}

/// Removes our writer's hidden temporary files older than `cutoff`.
async fn remove_temporary(
    store: &Arc<dyn ObjectStore>,
    root: &ListingTableUrl,
    kind: StoreKind,
    cutoff: DateTime<Utc>,
) -> Result<Vec<Path>> {
    let url: &url::Url = root.as_ref();
    if kind.is_local_disk() {
        if let Ok(dir) = url.to_file_path() {
            let owned = root.to_string();
            return tokio::task::spawn_blocking(move || remove_local(&owned, &dir, cutoff))
                .await
                .map_err(|source| Error::InvalidTable {
                    root: root.to_string(),
                    problem: TableProblem::BlockingTask {
                        what: "removing abandoned writes",
                        source,
                    },
                })?;
        }
    }
    let doomed: Vec<Path> = store
        .list(Some(root.prefix()))
        .try_filter(|meta| {
            let old = meta.last_modified < cutoff;
            let temporary = meta.location.filename().is_some_and(is_temporary);
            futures::future::ready(old && temporary)
        })
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|source| Error::Listing {
            root: root.to_string(),
            source,
        })?;
    delete_each(store, root, doomed.into_iter()).await
}

/// [`remove_abandoned`] on the local file system (blocking).
fn remove_local(root: &str, dir: &std::path::Path, cutoff: DateTime<Utc>) -> Result<Vec<Path>> {
    let io_error = |path: &std::path::Path, source: std::io::Error| Error::Cleanup {
        root: root.to_string(),
        path: path.display().to_string(),
        source: source.into(),
    };
    let mut removed = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let path = entry.path();
            // Not followed: a link may lead out of the table root.
            let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            let name = entry.file_name();
            if !kind.is_file() || !is_temporary(&name.to_string_lossy()) {
                continue;
            }
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| io_error(&path, e))?;
            if DateTime::<Utc>::from(modified) >= cutoff {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path, e)),
            }
            removed.push(Path::from_absolute_path(&path).map_err(|e| Error::Cleanup {
                root: root.to_string(),
                path: path.display().to_string(),
                source: e.into(),
            })?);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_temporary_files_match() {
        assert!(is_temporary(&temp_name("part-1-00000.parquet")));
        assert!(is_temporary(".part-1-00000.parquet.inprogress#3"));
        assert!(!is_temporary("part-1-00000.parquet"));
        assert!(!is_temporary(".part-1-00000.parquet.crc"));
        assert!(!is_temporary("x.inprogress"));
    }
}
