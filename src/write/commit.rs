//! The commit protocol, the writer's side: how a write's closed files
//! become visible, and what it replaces disappears, so that every reader
//! that honours the journal (see `lake::journal`) sees the write whole or
//! not at all, in any process.
//!
//! The steps of one write ([`Commit::run`]):
//!
//! 1. **Record** — put `_lakefusion/writes/<id>` (a conditional PUT): the
//!    kind of write, the partitions it replaces, the files it adds. From
//!    here on, readers hide the files it adds.
//! 2. **Files** — make every closed file visible under its final name (16
//!    at a time). If one fails, the ones made visible are deleted again
//!    and the record removed.
//! 3. An append then **commits by removing its record** (after rewriting
//!    `_lakefusion/writes/latest`, so a reader that listed while the whole
//!    write ran knows to list again), and is done.
//! 4. A replacing write **claims** each partition it replaces: one
//!    conditional PUT of `_lakefusion/claims/<partition dir>` per partition,
//!    in sorted order. A claim already there is another replacing write's:
//!    this one loses with [`Error::WriteConflict`], releases its claims and
//!    takes back its files and record. It then **lists** the table and
//!    reads the journal (in that order: a write whose files the listing saw
//!    has put its record before), and the files to remove are the ones in
//!    the claimed partitions that belong to no write still under way (or,
//!    for a compaction, exactly its inputs). A replace of the whole table
//!    claims every partition the listing shows, and lists again until no
//!    new one appears.
//! 5. **Commit** — put `_lakefusion/writes/<id>.committed` (a conditional
//!    PUT) listing the claims and the files removed. Its presence is the
//!    commit: from here on readers read the new files and hide the removed
//!    ones. The table's own index swaps both in one step.
//! 6. **Remove** the replaced files, rewrite `latest`, release the claims,
//!    remove the record, and last the marker. A failure here leaves the
//!    write committed: the marker stays, readers keep hiding what it
//!    removes, and `recover()` finishes it.
//!
//! A writer that dies anywhere leaves its record (and marker, claims):
//! `recover()` finishes a committed write and takes back any other.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result as DFResult, ScalarValue, Statistics};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::staging::{put_new, Staged};
use crate::error::Error;
use crate::lake::index::IndexedFile;
use crate::lake::journal::{
    claim_path, latest_path, CommitMarker, Journal, Replaced, WriteKind, WriteRecord,
};
use crate::lake::listing::Lister;
use crate::lake::shared::CommitTicket;
use crate::lake::{PublishedFile, TableDefinition};

/// Files committed (or deleted) at once: on an object store each is a
/// request, so one at a time is latency-bound.
pub(super) const COMMIT_CONCURRENCY: usize = 16;

/// A closed file, whole and not yet visible, ready for its commit.
pub(super) struct ClosedFile {
    pub values: Vec<ScalarValue>,
    pub bucket: Option<u32>,
    pub temp: Path,
    pub target: Path,
    pub staged: Staged,
    pub statistics: Option<Arc<Statistics>>,
}

/// How one file's commit ended.
enum Made {
    /// Visible under its final name.
    Visible(PublishedFile),
    /// Its commit failed (the target may exist: a commit may have succeeded
    /// before the `head` that followed it failed).
    Failed {
        target: Path,
        error: object_store::Error,
    },
    /// Not started: an earlier commit had failed; the file was dropped.
    Skipped,
}

/// What a committed write did.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    /// The files it added.
    pub added: Vec<PublishedFile>,
    /// The files it removed (for a replacing write).
    pub removed: Vec<ObjectMeta>,
    /// The rows in the files it removed (counted from their footers for a
    /// delete; 0 for other writes).
    pub rows_removed: u64,
}

/// The files a replacing write removes, once it holds its claims.
struct Removal {
    claims: Vec<String>,
    files: Vec<ObjectMeta>,
}

/// The commit of one write: see the module's steps.
pub(crate) struct Commit<'a> {
    pub table: &'a TableDefinition,
    pub store: &'a Arc<dyn ObjectStore>,
    pub record: WriteRecord,
    /// For a compaction: exactly the files it replaces.
    pub inputs: Option<Vec<Path>>,
}

impl Commit<'_> {
    /// Runs the protocol for `closed` (see the module), publishing to the
    /// table's index through `ticket` at the commit point.
    pub(crate) async fn run(
        &self,
        closed: Vec<ClosedFile>,
        ticket: CommitTicket,
    ) -> DFResult<Committed> {
        let store = self.store;
        if let Err(e) = put_new(
            store,
            &self.record.location,
            PutPayload::from(self.record.encode()),
        )
        .await
        {
            for file in closed {
                file.staged.discard(store, &file.temp).await;
            }
            return Err(self.error(&self.record.location, e.into()));
        }
        let added = self.make_visible(closed).await?;
        if self.record.kind == WriteKind::Append {
            // Every file is visible: the write commits by removing its
            // record (a record left behind would have the write taken
            // back). Retried: a write whose record cannot be removed is
            // taken back whole.
            let policy = self.table.options.retry.unwrap_or_default();
            let location = self.record.location.as_ref();
            let ended = async {
                self.put_latest().await?;
                policy
                    .retry("delete", location, || remove(store, &self.record.location))
                    .await
            };
            if let Err(e) = ended.await {
                let visible = added.into_iter().map(|w| w.file.meta.location).collect();
                return Err(self
                    .take_back(&self.record.location, e.into(), visible)
                    .await);
            }
            ticket.publish(&self.table.spec, added.clone())?;
            return Ok(Committed {
                added,
                ..Committed::default()
            });
        }
        let visible = || {
            added
                .iter()
                .map(|w| w.file.meta.location.clone())
                .collect::<Vec<_>>()
        };
        let mut claimed = BTreeSet::new();
        let removal = match self.claim_and_list(&added, &mut claimed).await {
            Ok(removal) => removal,
            Err(e) => {
                self.release(&claimed).await;
                return Err(self.take_back_error(e, visible()).await);
            }
        };
        let rows_removed = if self.record.kind == WriteKind::Delete {
            match self.count_rows(&removal.files).await {
                Ok(rows) => rows,
                Err(e) => {
                    self.release(&claimed).await;
                    return Err(self.take_back_error(e, visible()).await);
                }
            }
        } else {
            0
        };
        let marker = CommitMarker::new(
            self.table.root.prefix(),
            &self.record.write_id,
            removal.claims.clone(),
            removal.files.iter().map(|f| f.location.clone()).collect(),
        );
        if let Err(e) = put_new(store, &marker.location, PutPayload::from(marker.encode())).await {
            // A PUT that failed may still have landed: the marker decides.
            let landed = store.head(&marker.location).await.is_ok();
            if !landed {
                self.release(&claimed).await;
                return Err(self.take_back(&marker.location, e.into(), visible()).await);
            }
        }
        // Committed: the table's own index swaps in one step.
        let removed: HashSet<Path> = removal.files.iter().map(|f| f.location.clone()).collect();
        ticket.publish_replacing(&self.table.spec, &removed, added.clone())?;
        self.finish(&marker, &claimed).await;
        Ok(Committed {
            added,
            removed: removal.files,
            rows_removed,
        })
    }

    /// Step 6: what follows the commit. Failures are logged, not returned:
    /// the write has taken effect, and its marker lets readers and
    /// `recover()` finish it.
    async fn finish(&self, marker: &CommitMarker, claimed: &BTreeSet<String>) {
        let store = self.store;
        let left = delete_all(store, marker.removes.iter().cloned()).await;
        if !left.is_empty() {
            tracing::warn!(table = %self.table.name, record = %self.record.location, left = ?left,
                "committed; replaced files could not all be removed (readers that honour the journal \
                 do not read them; recover() removes them)");
            return;
        }
        let ended = async {
            self.put_latest().await?;
            self.release(claimed).await;
            remove(store, &self.record.location).await?;
            remove(store, &marker.location).await
        };
        if let Err(e) = ended.await {
            tracing::warn!(table = %self.table.name, record = %self.record.location, error = %e,
                "committed; the write's journal objects could not all be removed (recover() removes them)");
        }
    }

    /// Step 2: makes every closed file visible (several at once), or none
    /// of them for long.
    async fn make_visible(&self, closed: Vec<ClosedFile>) -> DFResult<Vec<PublishedFile>> {
        let store = self.store;
        let failed = AtomicBool::new(false);
        let failed = &failed;
        let sorted = self.table.options.sort.is_some();
        let outcomes: Vec<Made> =
            futures::stream::iter(closed.into_iter().map(|file| async move {
                // No commit starts once one has failed.
                if failed.load(Ordering::Acquire) {
                    file.staged.discard(store, &file.temp).await;
                    return Made::Skipped;
                }
                match file.staged.commit(store, &file.temp, &file.target).await {
                    Ok(meta) => Made::Visible(PublishedFile {
                        values: file.values,
                        file: IndexedFile {
                            meta,
                            statistics: file.statistics,
                            bucket: file.bucket,
                            // The input was sorted in the table's order (the
                            // sink's required ordering), and this file says so.
                            sorted,
                        },
                    }),
                    Err(error) => {
                        failed.store(true, Ordering::Release);
                        if file.temp != file.target {
                            // The hidden temporary file a failed rename left.
                            let _ = store.delete(&file.temp).await;
                        }
                        Made::Failed {
                            target: file.target,
                            error,
                        }
                    }
                }
            }))
            .buffer_unordered(COMMIT_CONCURRENCY)
            .collect()
            .await;
        let mut written = Vec::with_capacity(outcomes.len());
        let mut failure = None;
        let mut maybe_visible = Vec::new();
        for outcome in outcomes {
            match outcome {
                Made::Visible(file) => written.push(file),
                Made::Failed { target, error } => {
                    maybe_visible.push(target.clone());
                    failure.get_or_insert((target, DataFusionError::from(error)));
                }
                Made::Skipped => {}
            }
        }
        let Some((path, source)) = failure else {
            return Ok(written);
        };
        maybe_visible.extend(written.into_iter().map(|w| w.file.meta.location));
        Err(self.take_back(&path, source, maybe_visible).await)
    }

    /// Step 4: claims the partitions to replace, then lists what to remove;
    /// a whole-table replace claims what each listing shows until no new
    /// partition appears.
    async fn claim_and_list(
        &self,
        added: &[PublishedFile],
        claimed: &mut BTreeSet<String>,
    ) -> crate::error::Result<Removal> {
        let table = self.table;
        let own: HashSet<&Path> = added.iter().map(|f| &f.file.meta.location).collect();
        let mut needed: BTreeSet<String> = match &self.record.replaces {
            Replaced::Partitions(dirs) => dirs.iter().cloned().collect(),
            Replaced::Table | Replaced::Nothing => added
                .iter()
                .map(|f| table.canonical_dir(&f.values))
                .collect::<crate::error::Result<_>>()?,
        };
        let inputs: Option<HashSet<&Path>> = self.inputs.as_ref().map(|i| i.iter().collect());
        loop {
            let new: Vec<String> = needed.difference(claimed).cloned().collect();
            for dir in new {
                self.claim(&dir).await?;
                claimed.insert(dir);
            }
            let lister = Lister::of_table(self.store, table);
            let extension = &table.options.file_extension;
            let partitions = match &self.record.replaces {
                // Only the claimed partitions, in every spelling.
                Replaced::Partitions(_) => {
                    let targets: Vec<_> = claimed
                        .iter()
                        .filter_map(|dir| table.values_of_dir(dir))
                        .collect();
                    lister
                        .list_partitions_with(&table.spec, extension, &targets)
                        .await?
                }
                Replaced::Table | Replaced::Nothing => {
                    lister
                        .list_partitions(Some(&table.spec), extension)
                        .await?
                        .partitions
                }
            };
            // After the listing: a write whose files it saw put its record before.
            let hidden = Journal::read(self.store, &table.root).await?.hidden();
            let mut files = Vec::new();
            let mut found_inputs = 0;
            for partition in partitions {
                let dir = table.canonical_dir(&partition.values)?;
                let replaced = match &self.record.replaces {
                    Replaced::Table => true,
                    Replaced::Partitions(_) => claimed.contains(&dir),
                    Replaced::Nothing => false,
                };
                if !replaced {
                    continue;
                }
                for file in partition.files {
                    let location = &file.meta.location;
                    if own.contains(location) || hidden.contains(location) {
                        continue;
                    }
                    if let Some(inputs) = &inputs {
                        if !inputs.contains(location) {
                            continue;
                        }
                        found_inputs += 1;
                    }
                    needed.insert(dir.clone());
                    files.push(file.meta);
                }
            }
            if let Some(inputs) = &inputs {
                if found_inputs < inputs.len() {
                    // Another write replaced some of the inputs meanwhile.
                    return Err(Error::WriteConflict {
                        table: table.name.to_string(),
                        partitions: claimed.iter().cloned().collect(),
                        holders: vec!["(a write that removed some of the compacted files)".into()],
                    });
                }
            }
            if needed.is_subset(claimed) {
                return Ok(Removal {
                    claims: claimed.iter().cloned().collect(),
                    files,
                });
            }
        }
    }

    /// The rows of `files`, from their footers.
    async fn count_rows(&self, files: &[ObjectMeta]) -> crate::error::Result<u64> {
        let store = self.store;
        futures::stream::iter(files.iter().cloned().map(|meta| async move {
            DFParquetMetadata::new(store.as_ref(), &meta)
                .fetch_metadata()
                .await
                .map(|footer| footer.file_metadata().num_rows().max(0) as u64)
                .map_err(|e| Error::ReadFile {
                    path: meta.location.to_string(),
                    source: Box::new(e),
                })
        }))
        .buffer_unordered(COMMIT_CONCURRENCY)
        .try_fold(0u64, |total, rows| futures::future::ready(Ok(total + rows)))
        .await
    }

    /// Claims the partition in `dir`: one conditional PUT.
    async fn claim(&self, dir: &str) -> crate::error::Result<()> {
        let table = self.table;
        let path = claim_path(table.root.prefix(), dir).map_err(|source| Error::PartitionPath {
            path: dir.to_string(),
            problem: crate::error::PathProblem::ObjectPath { source },
        })?;
        let payload = PutPayload::from(self.record.write_id.clone());
        match self
            .store
            .put_opts(&path, payload, PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let holder = match self.store.get(&path).await {
                    Ok(got) => got
                        .bytes()
                        .await
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_else(|_| "unknown".into()),
                    Err(_) => "unknown (released since)".into(),
                };
                Err(Error::WriteConflict {
                    table: table.name.to_string(),
                    partitions: vec![dir.to_string()],
                    holders: vec![holder],
                })
            }
            Err(
                source @ (object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. }),
            ) => Err(Error::NoConditionalPut {
                table: table.name.to_string(),
                path: path.to_string(),
                source,
            }),
            Err(source) => Err(Error::WriteFile {
                table: table.name.to_string(),
                path: path.to_string(),
                source: Box::new(source.into()),
            }),
        }
    }

    /// Deletes this write's claims (best effort: `recover()` removes what
    /// is left).
    async fn release(&self, claimed: &BTreeSet<String>) {
        let root = self.table.root.prefix();
        let claims: Vec<Path> = claimed
            .iter()
            .filter_map(|dir| claim_path(root, dir).ok())
            .collect();
        let left = delete_all(self.store, claims.into_iter()).await;
        if !left.is_empty() {
            tracing::warn!(table = %self.table.name, left = ?left, "claims left for recover()");
        }
    }

    /// Rewrites `latest`: a reader whose listing spanned this whole write
    /// sees it changed and lists again.
    async fn put_latest(&self) -> object_store::Result<()> {
        let location = latest_path(self.table.root.prefix());
        self.store
            .put(&location, PutPayload::from(self.record.write_id.clone()))
            .await
            .map(|_| ())
    }

    /// Takes the write back after `error` (raised by the write's own
    /// step, naming what failed): the error as it is if nothing stays
    /// visible.
    async fn take_back_error(&self, error: Error, visible: Vec<Path>) -> DataFusionError {
        let left = self.withdraw(visible).await;
        if left.is_empty() {
            return error.into();
        }
        self.left_visible(&self.record.location, error.into(), left)
    }

    /// Deletes `visible` after `path` failed with `source`.
    async fn take_back(
        &self,
        path: &Path,
        source: DataFusionError,
        visible: Vec<Path>,
    ) -> DataFusionError {
        let left = self.withdraw(visible).await;
        if left.is_empty() {
            return self.error(path, source);
        }
        self.left_visible(path, source, left)
    }

    /// Deletes `visible`; removes the record if that worked; returns what
    /// stays visible.
    async fn withdraw(&self, visible: Vec<Path>) -> Vec<String> {
        let store = self.store;
        let left: Vec<String> =
            futures::stream::iter(visible.into_iter().map(|target| async move {
                match store.delete(&target).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => None,
                    // A failed commit may never have made its file visible:
                    // only a file that is there is left.
                    Err(_) => match store.head(&target).await {
                        Err(object_store::Error::NotFound { .. }) => None,
                        _ => Some(target.to_string()),
                    },
                }
            }))
            .buffer_unordered(COMMIT_CONCURRENCY)
            .filter_map(futures::future::ready)
            .collect()
            .await;
        if left.is_empty() {
            // A record left behind would list only files that are gone:
            // `recover()` removes it and nothing else.
            let _ = remove(self.store, &self.record.location).await;
        }
        left
    }

    fn left_visible(
        &self,
        path: &Path,
        source: DataFusionError,
        left: Vec<String>,
    ) -> DataFusionError {
        Error::WriteLeftVisible {
            table: self.table.name.to_string(),
            path: path.to_string(),
            source: Box::new(source),
            left,
            record: self.record.location.to_string(),
        }
        .into()
    }

    fn error(&self, path: &Path, source: DataFusionError) -> DataFusionError {
        Error::WriteFile {
            table: self.table.name.to_string(),
            path: path.to_string(),
            source: Box::new(source),
        }
        .into()
    }
}

/// Deletes `location`; gone already is done.
pub(super) async fn remove(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
) -> object_store::Result<()> {
    match store.delete(location).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes `paths` (16 at once); returns those that could not be (gone
/// already counts as deleted).
pub(super) async fn delete_all(
    store: &Arc<dyn ObjectStore>,
    paths: impl Iterator<Item = Path>,
) -> Vec<Path> {
    futures::stream::iter(paths.map(|path| async move {
        match remove(store, &path).await {
            Ok(()) => None,
            Err(_) => Some(path),
        }
    }))
    .buffer_unordered(COMMIT_CONCURRENCY)
    .filter_map(futures::future::ready)
    .collect()
    .await
}
