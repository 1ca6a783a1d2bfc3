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
//!    at a time). If one fails, the ones made visible are deleted again,
//!    a done marker is put and the record removed.
//! 3. An append then creates its **done marker** (the partitions it wrote,
//!    for readers whose listing the whole write ran inside; an aborted one
//!    already there means `recover()` took the write back: it stops) and
//!    **commits by removing its record**, and is done.
//! 4. A replacing write **claims** each partition it replaces: one
//!    conditional PUT of `_lakefusion/claims/<partition dir>` per partition,
//!    in sorted order, while step 2 runs (a whole-table replace claims
//!    `_table` as well). A claim already there is another replacing
//!    write's: this one loses with [`Error::WriteConflict`], takes back its
//!    files and record, then releases its claims. It then **lists** the
//!    claimed partitions (the whole table, for a whole-table replace, which
//!    claims every partition it shows until no new one appears) as one
//!    moment of the table (see `lake::snapshot`): the files to remove are
//!    the ones there that belong to no write under way (for a compaction,
//!    exactly its inputs). If its own record is gone (`recover()` took it
//!    back), it stops. A `DELETE`, which then reads every footer to count
//!    the rows, lists again if a write committed in its partitions
//!    meanwhile. After 8 rounds it gives up ([`Error::ListingRaced`]).
//! 5. **Commit** — create `_lakefusion/writes/<id>.committed` (a
//!    conditional PUT) listing the claims and the files removed. Its
//!    presence, with the record, is the commit: from here on readers read
//!    the new files and hide the removed ones. The table's own index swaps
//!    both in one step. An object already at that name is this write's own
//!    (a retried PUT that landed) or an abort marker (`recover()` took the
//!    write back: it stops). A failed PUT is checked with HEAD: absent, the
//!    write creates an abort marker there itself (so a PUT still in flight
//!    cannot land later) and is taken back; unknown, everything stays for
//!    `recover()`.
//! 6. **Remove** the replaced files, put the done marker, release the
//!    claims and remove the record, and last the marker. A failure here
//!    leaves the write committed: the marker stays, readers keep hiding
//!    what it removes, and `recover()` finishes it.
//!
//! Every write ends by removing done markers past their retention.
//!
//! A writer that dies anywhere leaves its record (and marker, claims):
//! `recover()` finishes a committed write and takes back any other.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result as DFResult, ScalarValue, Statistics};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::staging::{put_new, Staged};
use crate::error::Error;
use crate::lake::index::IndexedFile;
use crate::lake::journal::{
    claim_holder, claim_path, list_done_markers, read_object, touched_by_files, CommitMarker,
    DoneMarker, Journal, Replaced, Touched, WriteKind, WriteRecord, DONE_RETENTION,
};
use crate::lake::layout::rows_in;
use crate::lake::listing::Lister;
use crate::lake::partitioning::dir_under;
use crate::lake::shared::CommitTicket;
use crate::lake::snapshot::{snapshot, Scope};
use crate::lake::{PublishedFile, TableDefinition};

/// Rounds of claiming and listing before a replacing write gives up on a
/// table whose writes keep moving.
const ATTEMPTS: usize = 8;

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

/// How a commit marker's PUT ended.
enum Outcome {
    Committed,
    /// The write cannot commit (an abort marker is there): take it back.
    Aborted(Error),
    /// Nobody can tell: everything stays for `recover()`.
    Unknown(Error),
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
    files: Vec<ObjectMeta>,
    /// The rows in `files` (counted for a delete only).
    rows: u64,
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
        let record = &self.record;
        if let Err(e) = put_new(store, &record.location, PutPayload::from(record.encode())).await {
            for file in closed {
                file.staged.discard(store, &file.temp).await;
            }
            return Err(self.error(&record.location, e.into()));
        }
        if record.kind == WriteKind::Append {
            let added = self.make_visible(closed).await?;
            return self.commit_append(added, ticket).await;
        }
        // The partitions known up front are claimed while the files become
        // visible (readers hide both until the commit).
        let first = self.first_claims(&closed);
        let mut claimed = BTreeSet::new();
        let (made, claiming) = futures::join!(
            self.make_visible(closed),
            self.claim_all(&first, &mut claimed)
        );
        let added = match made {
            Ok(added) => added,
            Err(e) => {
                self.release(&claimed).await;
                return Err(e);
            }
        };
        let visible = || {
            added
                .iter()
                .map(|w| w.file.meta.location.clone())
                .collect::<Vec<_>>()
        };
        if let Err(e) = claiming {
            let error = self.take_back_error(e, visible()).await;
            self.release(&claimed).await;
            return Err(error);
        }
        let removal = match self.claim_and_list(&mut claimed).await {
            Ok(found) => found,
            Err(e) => {
                let error = self.take_back_error(e, visible()).await;
                self.release(&claimed).await;
                return Err(error);
            }
        };
        let marker = CommitMarker::new(
            self.table.root.prefix(),
            &record.write_id,
            claimed.iter().cloned().collect(),
            removal.files.iter().map(|f| f.location.clone()).collect(),
        );
        match self.commit_marker(&marker).await {
            Outcome::Committed => {}
            Outcome::Aborted(e) => {
                // Taken back, first the files, then the claims: while the
                // claims hold, no other write can count this one committed.
                let error = self.take_back_error(e, visible()).await;
                self.release(&claimed).await;
                return Err(error);
            }
            Outcome::Unknown(e) => return Err(e.into()),
        }
        // Committed: the table's own index swaps in one step.
        let removed: HashSet<Path> = removal.files.iter().map(|f| f.location.clone()).collect();
        if let Err(e) = ticket.publish_replacing(&self.table.spec, &removed, added.clone()) {
            tracing::warn!(table = %self.table.name, error = %e,
                "committed; this table's index could not take the write in (refresh() does)");
        }
        self.finish(&marker, &claimed).await;
        Ok(Committed {
            added,
            removed: removal.files,
            rows_removed: removal.rows,
        })
    }

    /// Step 3: an append commits by removing its record, once its done
    /// marker is there.
    async fn commit_append(
        &self,
        added: Vec<PublishedFile>,
        ticket: CommitTicket,
    ) -> DFResult<Committed> {
        let store = self.store;
        let location = &self.record.location;
        let policy = self.table.options.retry.unwrap_or_default();
        let touched = self.touched_by(&added);
        let visible = || added.iter().map(|w| w.file.meta.location.clone()).collect();
        // Its done marker is created, not overwritten: one `recover()` put
        // first (taking the write back) stops it here.
        if let Err(e) = self.end(touched).await {
            return Err(self.take_back_error(e, visible()).await);
        }
        // Retried: a write whose record cannot be removed is taken back
        // whole. Old done markers go meanwhile.
        let (removed, ()) = futures::join!(
            policy.retry("delete", location.as_ref(), || remove(store, location)),
            self.collect_done()
        );
        if let Err(e) = removed {
            return Err(self.take_back(location, e.into(), visible()).await);
        }
        if let Err(e) = ticket.publish(&self.table.spec, added.clone()) {
            tracing::warn!(table = %self.table.name, error = %e,
                "committed; this table's index could not take the write in (refresh() does)");
        }
        Ok(Committed {
            added,
            ..Committed::default()
        })
    }

    /// Step 5: puts the commit marker (a conditional PUT). One already
    /// there is either this write's own (a retried PUT that landed) or an
    /// abort marker (`recover()` took the write back). After a failed PUT
    /// whose marker a HEAD finds absent, the write closes its own door with
    /// an abort marker, so that a PUT still in flight cannot land later.
    async fn commit_marker(&self, marker: &CommitMarker) -> Outcome {
        let payload = PutPayload::from(marker.encode());
        let failure = match put_new(self.store, &marker.location, payload).await {
            Ok(()) => return Outcome::Committed,
            Err(object_store::Error::AlreadyExists { .. }) => return self.settled(marker).await,
            Err(e) => e,
        };
        let policy = self.table.options.retry.unwrap_or_default();
        let location = marker.location.as_ref();
        let head = policy
            .retry("head", location, || async {
                match self.store.head(&marker.location).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await;
        match head {
            Ok(true) => self.settled(marker).await,
            Ok(false) => {
                let abort = CommitMarker::abort(self.table.root.prefix(), &self.record.write_id);
                match put_new(
                    self.store,
                    &abort.location,
                    PutPayload::from(abort.encode()),
                )
                .await
                {
                    Ok(()) => Outcome::Aborted(self.write_error(&marker.location, failure.into())),
                    // Our commit landed after all (or `recover()` aborted).
                    Err(object_store::Error::AlreadyExists { .. }) => self.settled(marker).await,
                    Err(_) => Outcome::Unknown(self.unknown(marker, failure)),
                }
            }
            Err(_) => Outcome::Unknown(self.unknown(marker, failure)),
        }
    }

    /// What the object at `marker`'s name says: committed (ours) or aborted.
    async fn settled(&self, marker: &CommitMarker) -> Outcome {
        let root = self.table.root.prefix();
        let found = read_object(self.store, &marker.location).await;
        match found.map(|bytes| CommitMarker::decode(root, &marker.location, &bytes)) {
            Ok(Ok(found)) if !found.aborted => Outcome::Committed,
            Ok(Ok(_)) => Outcome::Aborted(Error::WriteFile {
                table: self.table.name.to_string(),
                path: marker.location.to_string(),
                source: Box::new(DataFusionError::Execution(
                    "recover() took the write back (its abort marker is there): nothing was committed".into(),
                )),
            }),
            Ok(Err(e)) => Outcome::Unknown(e),
            Err(e) => Outcome::Unknown(self.unknown(marker, e)),
        }
    }

    fn unknown(&self, marker: &CommitMarker, source: object_store::Error) -> Error {
        Error::WriteFile {
            table: self.table.name.to_string(),
            path: marker.location.to_string(),
            source: Box::new(DataFusionError::Execution(format!(
                "{source}; whether the write committed is unknown: its record, claims and \
                 files stay, and recover() finishes or takes it back"
            ))),
        }
    }

    fn write_error(&self, path: &Path, source: DataFusionError) -> Error {
        Error::WriteFile {
            table: self.table.name.to_string(),
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Step 6: what follows the commit. Failures are logged, not returned:
    /// the write has taken effect, and its marker lets readers and
    /// `recover()` finish it.
    async fn finish(&self, marker: &CommitMarker, claimed: &BTreeSet<String>) {
        let store = self.store;
        let touched = match &self.record.replaces {
            Replaced::Table => Touched::Table,
            _ => Touched::Partitions(claimed.iter().cloned().collect()),
        };
        let (left, done) = futures::join!(
            delete_all(store, marker.removes.iter().cloned()),
            self.end(touched)
        );
        if !left.is_empty() {
            tracing::warn!(table = %self.table.name, record = %self.record.location, left = ?left,
                "committed; replaced files could not all be removed (readers that honour the journal \
                 do not read them; recover() removes them)");
            return;
        }
        let ended = async {
            done.map_err(|e| object_store::Error::Generic {
                store: "lakefusion",
                source: Box::new(e),
            })?;
            let (released, record) =
                futures::join!(self.release(claimed), remove(store, &self.record.location));
            record?;
            if !released {
                // Claims left: the marker stays too, for `recover()`.
                return Ok(());
            }
            remove(store, &marker.location).await
        };
        if let Err(e) = ended.await {
            tracing::warn!(table = %self.table.name, record = %self.record.location, error = %e,
                "committed; the write's journal objects could not all be removed (recover() removes them)");
        }
        self.collect_done().await;
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

    /// Step 4: claims the partitions to replace, then lists what to remove
    /// as one moment of the table (see `lake::snapshot`); a whole-table
    /// replace claims the table and every partition the listing shows,
    /// until no new one appears. Returns the removal and the journal it
    /// stands on.
    async fn claim_and_list(
        &self,
        claimed: &mut BTreeSet<String>,
    ) -> crate::error::Result<Removal> {
        let table = self.table;
        let mut needed = claimed.clone();
        let inputs: Option<HashSet<&Path>> = self.inputs.as_ref().map(|i| i.iter().collect());
        let lister = Lister::of_table(self.store, table);
        let extension = &table.options.file_extension;
        // Rows counted once per file, across rounds.
        let mut counted: HashMap<Path, u64> = HashMap::new();
        for _ in 0..ATTEMPTS {
            let new: BTreeSet<String> = needed.difference(claimed).cloned().collect();
            self.claim_all(&new, claimed).await?;
            let targets: Vec<Vec<ScalarValue>>;
            let scope = match &self.record.replaces {
                // Only the claimed partitions, in every spelling.
                Replaced::Partitions(_) => {
                    targets = claimed
                        .iter()
                        .map(|dir| {
                            table
                                .spec
                                .values_of_dir(dir)
                                .ok_or_else(|| Error::WriteRecord {
                                    path: self.record.location.to_string(),
                                    problem: format!(
                                        "'{dir}' is no partition of table {}",
                                        table.name
                                    ),
                                })
                        })
                        .collect::<crate::error::Result<_>>()?;
                    Scope::Partitions(&table.spec, &targets)
                }
                _ => Scope::Table(Some(&table.spec)),
            };
            let taken = snapshot(&lister, scope, extension).await?;
            if taken.journal.record(&self.record.write_id).is_none() {
                // Taken back by `recover()`, which judged the write dead.
                return Err(Error::WriteFile {
                    table: table.name.to_string(),
                    path: self.record.location.to_string(),
                    source: Box::new(DataFusionError::Execution(
                        "the write's record is gone (recover() took the write back): nothing was committed".into(),
                    )),
                });
            }
            let mut files = Vec::new();
            let mut found_inputs = 0;
            for partition in taken.partitions {
                let Some(sample) = partition.files.first() else {
                    continue;
                };
                let dir = claim_key(table, &partition.values, &sample.meta.location);
                if matches!(self.record.replaces, Replaced::Partitions(_))
                    && !claimed.contains(&dir)
                {
                    continue;
                }
                for file in partition.files {
                    if let Some(inputs) = &inputs {
                        if !inputs.contains(&file.meta.location) {
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
                    return Err(Error::FilesReplaced {
                        table: table.name.to_string(),
                        partitions: claimed.iter().cloned().collect(),
                    });
                }
            }
            if !needed.is_subset(claimed) {
                continue;
            }
            if self.record.kind != WriteKind::Delete {
                return Ok(Removal { files, rows: 0 });
            }
            let uncounted: Vec<ObjectMeta> = files
                .iter()
                .filter(|f| !counted.contains_key(&f.location))
                .cloned()
                .collect();
            let rows = rows_in(self.store, &uncounted, None).await?;
            counted.extend(uncounted.into_iter().map(|meta| meta.location).zip(rows));
            let rows = files.iter().filter_map(|f| counted.get(&f.location)).sum();
            // Counting took a while: whatever moved in the claimed
            // partitions since the listing (an append that committed
            // there) is listed again first.
            let now = Journal::read(self.store, &table.root, Some(&taken.journal)).await?;
            let moved = match now.touched_since(&taken.journal, table.root.prefix()) {
                Touched::Table => true,
                Touched::Partitions(dirs) => {
                    dirs.iter().any(|d| claimed.contains(d))
                        || matches!(self.record.replaces, Replaced::Table) && !dirs.is_empty()
                }
            };
            if moved {
                continue;
            }
            return Ok(Removal { files, rows });
        }
        Err(Error::ListingRaced {
            root: table.root.to_string(),
            attempts: ATTEMPTS,
        })
    }

    /// What a replacing write claims before it lists: the partitions it
    /// replaces, or, for the whole table, the table itself (`""`: two
    /// whole-table replaces always meet there, whatever each sees) and the
    /// partitions it writes.
    fn first_claims(&self, closed: &[ClosedFile]) -> BTreeSet<String> {
        match &self.record.replaces {
            Replaced::Partitions(dirs) => dirs.iter().cloned().collect(),
            _ => std::iter::once(String::new())
                .chain(
                    closed
                        .iter()
                        .map(|f| claim_key(self.table, &f.values, &f.target)),
                )
                .collect(),
        }
    }

    /// Claims `dirs` in sorted order (so two writes that want the same
    /// partitions meet at the first of them), adding each to `claimed`.
    async fn claim_all(
        &self,
        dirs: &BTreeSet<String>,
        claimed: &mut BTreeSet<String>,
    ) -> crate::error::Result<()> {
        for dir in dirs {
            if !claimed.contains(dir) {
                self.claim(dir).await?;
                claimed.insert(dir.clone());
            }
        }
        Ok(())
    }

    /// Claims the partition in `dir`: one conditional PUT (again, a few
    /// times, if the claim it met was released before it could be read).
    async fn claim(&self, dir: &str) -> crate::error::Result<()> {
        let mut result = self.claim_once(dir).await;
        for _ in 0..3 {
            match &result {
                Err(Error::WriteConflict { holders, .. })
                    if holders.iter().all(|h| h.is_empty()) =>
                {
                    result = self.claim_once(dir).await;
                }
                _ => break,
            }
        }
        result.map_err(|e| match e {
            Error::WriteConflict {
                table,
                partitions,
                holders,
            } if holders.iter().all(|h| h.is_empty()) => Error::WriteConflict {
                table,
                partitions,
                holders: vec!["(released while it was read)".into()],
            },
            other => other,
        })
    }

    /// One conditional PUT of the claim on `dir`.
    async fn claim_once(&self, dir: &str) -> crate::error::Result<()> {
        let table = self.table;
        let path = claim_path(table.root.prefix(), dir).map_err(|source| Error::PartitionPath {
            path: format!("{} (table {})", dir, table.name),
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
                let holder = match read_object(self.store, &path).await {
                    Ok(content) => claim_holder(&content),
                    // Released since: "" asks for another try.
                    Err(object_store::Error::NotFound { .. }) => String::new(),
                    Err(_) => "unknown".into(),
                };
                // A retried create whose first attempt landed: ours.
                if holder == self.record.write_id {
                    return Ok(());
                }
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
    /// is left); whether all went.
    async fn release(&self, claimed: &BTreeSet<String>) -> bool {
        let root = self.table.root.prefix();
        let claims: Vec<Path> = claimed
            .iter()
            .filter_map(|dir| claim_path(root, dir).ok())
            .collect();
        let left = delete_all(self.store, claims.into_iter()).await;
        if !left.is_empty() {
            tracing::warn!(table = %self.table.name, left = ?left, "claims left for recover()");
        }
        left.is_empty()
    }

    /// The partitions `added` are in (the table, unpartitioned).
    fn touched_by(&self, added: &[PublishedFile]) -> Touched {
        if self.table.spec.is_empty() {
            return Touched::Table;
        }
        Touched::Partitions(
            added
                .iter()
                .map(|f| claim_key(self.table, &f.values, &f.file.meta.location))
                .collect(),
        )
    }

    /// Puts this write's done marker (a reader whose listing this whole
    /// write ran inside lists `touched` again), creating it: one already
    /// there is this write's own (a retried PUT that landed) or the one
    /// `recover()` put to take the write back, which stops it.
    async fn end(&self, touched: Touched) -> crate::error::Result<()> {
        let done = DoneMarker::new(self.table.root.prefix(), &self.record.write_id, touched);
        match put_new(self.store, &done.location, PutPayload::from(done.encode())).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let found = read_object(self.store, &done.location).await;
                match found.map(|bytes| DoneMarker::decode(&done.location, &bytes)) {
                    Ok(Ok(found)) if !found.aborted => Ok(()),
                    Ok(Ok(_)) => Err(self.write_error(
                        &done.location,
                        DataFusionError::Execution(
                            "recover() took the write back (its done marker says so): nothing was committed".into(),
                        ),
                    )),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(self.write_error(&done.location, e.into())),
                }
            }
            Err(e) => Err(self.write_error(&done.location, e.into())),
        }
    }

    /// Removes done markers past their retention (one listing of the
    /// journal), best effort.
    async fn collect_done(&self) {
        let Ok(done) = list_done_markers(self.store, &self.table.root).await else {
            return;
        };
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(chrono::Duration::from_std(DONE_RETENTION).unwrap_or_default())
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let old = done
            .into_iter()
            .filter(|meta| meta.last_modified < cutoff)
            .map(|meta| meta.location);
        delete_all(self.store, old).await;
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
            // A reader whose listing this whole write ran inside may have
            // seen some of its files: the done marker says where. Then the
            // record, which would list only files that are gone.
            let touched = match &self.record.replaces {
                Replaced::Table => Touched::Table,
                _ => touched_by_files(self.table.root.prefix(), &self.record.files),
            };
            if self.end(touched).await.is_ok() {
                let _ = remove(self.store, &self.record.location).await;
            }
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
    deleted(store, location).await.map(|_| ())
}

/// Deletes `location`: whether it was there (gone already is no error).
pub(super) async fn deleted(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
) -> object_store::Result<bool> {
    match store.delete(location).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
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

/// The key a partition is claimed (and named in journals) by: its
/// directory in our writer's spelling, or, for values our writer cannot
/// spell (another tool's directory), the directory `file` is in, as it is.
pub(crate) fn claim_key(table: &TableDefinition, values: &[ScalarValue], file: &Path) -> String {
    table
        .canonical_dir(values)
        .unwrap_or_else(|_| dir_under(table.root.prefix(), file).to_string())
}
