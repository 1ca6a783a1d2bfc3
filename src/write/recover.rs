//! Recovery: finishing or taking back what writes that never ended left.
//!
//! A writer that dies mid-write leaves its journal objects (see
//! `lake::journal`): its record, perhaps its claims, perhaps its commit
//! marker. Readers already hide what they must (an uncommitted write's
//! files, a committed write's removed files), so nothing wrong is read; but
//! readers that do not know the journal see those files, a claim blocks the
//! next overwrite of its partition, and the files take space.
//! [`recover`] ends each such write the way its journal says:
//!
//! * **committed** (its commit marker is there): the files it removes are
//!   deleted, whatever its age (idempotent: a writer still finishing is not
//!   disturbed); once its record is older than the bound, its claims,
//!   record and marker too;
//! * **not committed**, and older than the bound: recovery first *closes
//!   the door* — it creates, with a conditional PUT, an abort marker where
//!   the write's commit marker would go (for an append, an aborted done
//!   marker where its done marker would go). Whoever creates that name
//!   first wins: if the writer was alive and got there first, its write
//!   is committed and recovery finishes it; if recovery did, the writer's
//!   own PUT fails and it stops. Then the files it added are deleted, its
//!   claims and its record. The abort marker stays until the done-marker
//!   retention ends, so a writer still running meets it;
//! * a write with a journal object this version cannot read is left alone;
//! * claims older than the bound whose write has no record left, and
//!   markers without a record and done markers past their retention.
//!
//! Each write it ends gets a done marker, for readers listing meanwhile.
//! Then the hidden temporary files of cancelled or killed writes, older
//! than the bound, are deleted (never read: that part only frees space).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::datasource::listing::ListingTableUrl;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use super::commit::deleted;
use crate::error::{Error, Result, TableProblem};
use object_store::PutPayload;

use super::staging::put_new;
use crate::lake::journal::{
    claim_holder, claims_prefix, read_object, touched_by_record, CommitMarker, DoneMarker, Journal,
    Touched, WriteKind, WriteRecord, DONE_RETENTION,
};
use crate::lake::partitioning::dir_under;
use crate::lake::TableDefinition;
use crate::store::StoreKind;

/// What [`PartitionedTable::recover`](crate::PartitionedTable::recover) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// The writes that had committed and were finished (their ids).
    pub completed: Vec<String>,
    /// The writes that had not committed and were taken back (their ids).
    pub rolled_back: Vec<String>,
    /// Every object deleted: data files, journal objects, temporary files.
    pub removed: Vec<Path>,
}

/// Ends what unfinished writes left under `table`'s root (see the module):
/// committed writes are finished whatever their age; others, claims and
/// temporary files only once last modified more than `older_than` ago.
pub(crate) async fn recover(
    store: &Arc<dyn ObjectStore>,
    table: &TableDefinition,
    older_than: Duration,
) -> Result<Recovered> {
    let now = Utc::now();
    let before = |age: Duration| {
        chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let cutoff = before(older_than);
    let root = &table.root;
    let journal = Journal::read(store, root, None).await?;
    for (path, problem) in journal.unreadable() {
        // Left alone, so that it cannot stop the recovery of the others.
        tracing::warn!(root = %root, path = %path, problem = %problem,
            "a journal object was left as it is");
    }
    let claims = list_claims(store, table).await?;
    let unreadable = journal.unreadable_writes();
    let old = |location: &Path| journal.modified(location).is_some_and(|at| at < cutoff);
    let retained = before(DONE_RETENTION);
    let ending = Ending {
        store,
        table,
        claims: &claims,
    };
    let mut recovered = Recovered::default();
    let mut records: Vec<&WriteRecord> = journal.records().collect();
    records.sort_by(|a, b| a.write_id.cmp(&b.write_id));
    for record in records {
        let id = &record.write_id;
        // A write with an object this version cannot read is not known
        // well enough to end.
        if unreadable.contains(id) {
            continue;
        }
        let state = match (record.kind, journal.marker(id)) {
            (WriteKind::Append, _) => {
                if !old(&record.location) {
                    continue;
                }
                // Its done marker, created first, decides: the writer's own
                // (it ended: its files were all visible) or ours (taken back).
                match ending.close_append(record).await? {
                    Closed::ByWriter => State::Committed(None),
                    Closed::ByUs => State::Aborted,
                }
            }
            (_, Some(marker)) if !marker.aborted => State::Committed(Some(marker.clone())),
            (_, Some(_)) => State::Aborted,
            (_, None) => {
                if !old(&record.location) {
                    continue;
                }
                // An abort marker, created where the commit marker would
                // be, decides: the write cannot commit after it.
                match ending.close_replace(record).await? {
                    Some(marker) => State::Committed(Some(marker)),
                    None => State::Aborted,
                }
            }
        };
        match state {
            State::Committed(marker) => {
                if let Some(marker) = &marker {
                    if let Err(e) = check_removes(table, marker) {
                        tracing::warn!(root = %root, error = %e, "a commit marker was left as it is");
                        continue;
                    }
                    // Deleting what a committed write removes is safe at any age.
                    recovered
                        .delete(store, root, marker.removes.iter().cloned())
                        .await?;
                }
                // Its claims, record and marker are its writer's while it may run.
                if !old(&record.location) {
                    continue;
                }
                ending.done(record, false).await?;
                recovered.delete(store, root, ending.held(id)).await?;
                recovered
                    .delete(store, root, [record.location.clone()])
                    .await?;
                if let Some(marker) = marker {
                    recovered.delete(store, root, [marker.location]).await?;
                }
                recovered.completed.push(id.clone());
            }
            State::Aborted => {
                // The abort marker (of a replacing write) stays until its
                // retention ends: a writer still running meets it.
                ending.done(record, true).await?;
                recovered
                    .delete(store, root, record.files.iter().cloned())
                    .await?;
                recovered.delete(store, root, ending.held(id)).await?;
                recovered
                    .delete(store, root, [record.location.clone()])
                    .await?;
                recovered.rolled_back.push(id.clone());
            }
        }
    }
    // Markers whose record is gone (a write that finished but for this, or
    // an abort marker) and done markers, past their retention.
    let lone_markers = journal
        .markers()
        .filter(|m| journal.record(&m.write_id).is_none() && !unreadable.contains(&m.write_id))
        .filter(|m| {
            journal
                .modified(&m.location)
                .is_some_and(|at| at < retained)
        })
        .map(|m| m.location.clone());
    let done = journal
        .done_markers()
        .filter(|meta| meta.last_modified < retained)
        .map(|meta| meta.location.clone());
    let expired: Vec<Path> = lone_markers.chain(done).collect();
    recovered.delete(store, root, expired).await?;
    let live: HashSet<&str> = journal.records().map(|r| r.write_id.as_str()).collect();
    let orphans: Vec<Path> = claims
        .iter()
        .filter(|c| {
            !live.contains(c.holder.as_str())
                && !unreadable.contains(&c.holder)
                && c.modified < cutoff
        })
        .map(|c| c.location.clone())
        .collect();
    recovered.delete(store, root, orphans).await?;
    recovered
        .removed
        .extend(remove_temporary(store, root, table.store_kind(), cutoff).await?);
    recovered.completed.sort();
    recovered.rolled_back.sort();
    Ok(recovered)
}

/// How recovery ends one write.
enum State {
    /// Committed: finished (its marker, for a replacing write).
    Committed(Option<CommitMarker>),
    /// Not committed and never will be: taken back.
    Aborted,
}

/// Who closed an append: its writer (its done marker) or recovery.
enum Closed {
    ByWriter,
    ByUs,
}

/// What ending writes needs: the store, the table, the claims listed.
struct Ending<'a> {
    store: &'a Arc<dyn ObjectStore>,
    table: &'a TableDefinition,
    claims: &'a [Claim],
}

impl Ending<'_> {
    /// The claims write `id` holds.
    fn held(&self, id: &str) -> Vec<Path> {
        self.claims
            .iter()
            .filter(|c| c.holder == id)
            .map(|c| c.location.clone())
            .collect()
    }

    fn cleanup_error(
        &self,
        path: &Path,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Cleanup {
            root: self.table.root.to_string(),
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Creates `record`'s done marker (`aborted`: a take-back), for readers
    /// listing meanwhile; one already there is kept.
    async fn done(&self, record: &WriteRecord, aborted: bool) -> Result<bool> {
        let root = self.table.root.prefix();
        let done = DoneMarker {
            aborted,
            ..DoneMarker::new(root, &record.write_id, touched_by_record(record, root))
        };
        match put_new(self.store, &done.location, PutPayload::from(done.encode())).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.cleanup_error(&done.location, e)),
        }
    }

    /// Races an append's writer for its done marker.
    async fn close_append(&self, record: &WriteRecord) -> Result<Closed> {
        if self.done(record, true).await? {
            return Ok(Closed::ByUs);
        }
        let location =
            DoneMarker::new(self.table.root.prefix(), &record.write_id, Touched::Table).location;
        let found = read_object(self.store, &location)
            .await
            .map_err(|e| self.cleanup_error(&location, e))?;
        match DoneMarker::decode(&location, &found) {
            Ok(done) if !done.aborted => Ok(Closed::ByWriter),
            Ok(_) => Ok(Closed::ByUs),
            Err(e) => Err(e),
        }
    }

    /// Races a replacing write's writer for its commit marker's name: the
    /// commit found there (the write committed), or `None` (aborted).
    async fn close_replace(&self, record: &WriteRecord) -> Result<Option<CommitMarker>> {
        let root = self.table.root.prefix();
        let abort = CommitMarker::abort(root, &record.write_id);
        match put_new(
            self.store,
            &abort.location,
            PutPayload::from(abort.encode()),
        )
        .await
        {
            Ok(()) => return Ok(None),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(self.cleanup_error(&abort.location, e)),
        }
        let found = read_object(self.store, &abort.location)
            .await
            .map_err(|e| self.cleanup_error(&abort.location, e))?;
        let marker = CommitMarker::decode(root, &abort.location, &found)?;
        Ok((!marker.aborted).then_some(marker))
    }
}

impl Recovered {
    /// Deletes `paths` and notes those that were there.
    async fn delete(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        root: &ListingTableUrl,
        paths: impl IntoIterator<Item = Path>,
    ) -> Result<()> {
        self.removed.extend(delete_each(store, root, paths).await?);
        Ok(())
    }
}

/// One claim on a partition, and the write holding it.
struct Claim {
    location: Path,
    holder: String,
    modified: DateTime<Utc>,
}

/// Every claim under the root (usually none: one listing request).
async fn list_claims(store: &Arc<dyn ObjectStore>, table: &TableDefinition) -> Result<Vec<Claim>> {
    let root = &table.root;
    let metas: Vec<ObjectMeta> = store
        .list(Some(&claims_prefix(root.prefix())))
        .try_collect()
        .await
        .map_err(|source| Error::Listing {
            root: root.to_string(),
            source,
        })?;
    futures::stream::iter(metas)
        .map(|meta| async move {
            let holder = read_object(store, &meta.location)
                .await
                .map(|content| claim_holder(&content));
            match holder {
                Ok(holder) => Ok(Some(Claim {
                    location: meta.location,
                    holder,
                    modified: meta.last_modified,
                })),
                // Released since the listing.
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(Error::Cleanup {
                    root: root.to_string(),
                    path: meta.location.to_string(),
                    source: e.into(),
                }),
            }
        })
        .buffer_unordered(16)
        .try_filter_map(|claim| futures::future::ready(Ok(claim)))
        .try_collect()
        .await
}

/// A marker is untrusted input: every file it removes must lie in a
/// partition it claimed (parsed from the path, whatever its spelling), or
/// it is refused, naming it, and nothing of it is deleted.
fn check_removes(table: &TableDefinition, marker: &CommitMarker) -> Result<()> {
    let claims: HashSet<&str> = marker.claims.iter().map(String::as_str).collect();
    for file in &marker.removes {
        let dir = dir_under(table.root.prefix(), file);
        let key = table
            .spec
            .values_of_dir(dir)
            .and_then(|values| table.canonical_dir(&values).ok())
            .unwrap_or_else(|| dir.to_string());
        let claimed = claims.contains(key.as_str());
        if !claimed {
            return Err(Error::WriteRecord {
                path: marker.location.to_string(),
                problem: format!("it removes '{file}', outside the partitions it claimed"),
            });
        }
    }
    Ok(())
}

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

/// Deletes `paths` (16 at once); a path already gone is not an error.
/// Returns the paths deleted.
async fn delete_each(
    store: &Arc<dyn ObjectStore>,
    root: &ListingTableUrl,
    paths: impl IntoIterator<Item = Path>,
) -> Result<Vec<Path>> {
    let found: Vec<Option<Path>> = futures::stream::iter(paths)
        .map(|path| async move {
            match deleted(store, &path).await {
                Ok(true) => Ok(Some(path)),
                // Never made visible, or removed already.
                Ok(false) => Ok(None),
                Err(source) => Err(Error::Cleanup {
                    root: root.to_string(),
                    path: path.to_string(),
                    source: source.into(),
                }),
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
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
    delete_each(store, root, doomed).await
}

/// The temporary-file part of [`recover`] on the local file system (blocking).
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
