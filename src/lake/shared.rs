//! [`SharedIndex`]: the one home of a table's current [`PartitionIndex`],
//! and the only place it changes — scans take snapshots, writes publish
//! what they committed (and what they removed), a refresh installs a new
//! listing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use datafusion::error::Result as DFResult;
use object_store::path::Path;

use super::index::{PartitionIndex, PublishedFile};
use super::partitioning::PartitionSpec;

/// The one home of a table's current [`PartitionIndex`]: scans take
/// snapshots, writes publish what they committed (an overwrite, a delete or
/// a compaction also what it removed, in the same swap), a refresh installs a
/// new listing.
///
/// A refresh lists while INSERTs may publish; a listing that looked before
/// an INSERT's files existed would drop them. So while any refresh is under
/// way, every append is also logged, and a refresh installs its listing
/// together with what was appended since it began.
///
/// A listing that runs while an INSERT commits may also see *some* of its
/// files before the INSERT publishes them (or takes them back, if a commit
/// fails). So an INSERT registers its files before its first commit
/// ([`begin_commit`](Self::begin_commit)); a refresh leaves out of its
/// listing every file of a write that is committing when it installs, or
/// that ended (published or taken back) since it began. A published write's
/// files come back through the append log; a failed write's never do; the
/// files a published write removed are taken out again through the removal
/// log, whether the listing saw them or not.
#[derive(Debug)]
pub(crate) struct SharedIndex {
    state: RwLock<Shared>,
}

#[derive(Debug)]
struct Shared {
    current: Arc<PartitionIndex>,
    /// Refreshes begun and not yet finished or dropped.
    refreshes: usize,
    /// What was appended since the oldest running refresh began (empty when
    /// none runs).
    appended: Vec<PublishedFile>,
    /// What replacing writes removed since the oldest running refresh
    /// began (empty when none runs).
    removed: Vec<Path>,
    /// The files of the writes committing now, by write.
    committing: HashMap<u64, Vec<Path>>,
    /// The files of the writes that ended since the oldest running refresh
    /// began (empty when none runs).
    settled: Vec<Path>,
    /// The number of the next write to begin its commit.
    next_write: u64,
}

/// A refresh under way: [`SharedIndex::finish_refresh`] installs its listing;
/// dropping it (a cancelled refresh) installs nothing.
#[derive(Debug)]
pub(crate) struct RefreshTicket<'a> {
    index: &'a SharedIndex,
    /// The length of the append log when the refresh began.
    start: usize,
    /// The length of the settled log when the refresh began.
    settled_start: usize,
    /// The length of the removal log when the refresh began.
    removed_start: usize,
}

impl Drop for RefreshTicket<'_> {
    fn drop(&mut self) {
        let mut state = self.index.write();
        state.refreshes = state.refreshes.saturating_sub(1);
        if state.refreshes == 0 {
            state.appended = Vec::new();
            state.removed = Vec::new();
            state.settled = Vec::new();
        }
    }
}

/// A write whose files are being made visible (see
/// [`SharedIndex::begin_commit`]): [`publish`](Self::publish) adds them to
/// the index; dropping it (a failed write) withdraws them.
#[derive(Debug)]
pub(crate) struct CommitTicket {
    index: Arc<SharedIndex>,
    write: u64,
}

impl CommitTicket {
    /// Adds the written files in one swap — concurrent INSERTs never lose
    /// each other's files, and a scan sees all of them or none — and ends
    /// the commit, both under one lock, so that no refresh can install
    /// between the two.
    pub(crate) fn publish(self, spec: &PartitionSpec, files: Vec<PublishedFile>) -> DFResult<()> {
        let mut state = self.index.write();
        state.apply(spec, files, &HashSet::new())?;
        state.settle(self.write);
        Ok(())
    }

    /// Like [`publish`](Self::publish), for a write that also removes
    /// files (an overwrite, a delete, a compaction): the added files in and
    /// the removed ones out, in one swap.
    pub(crate) fn publish_replacing(
        self,
        spec: &PartitionSpec,
        removed: &HashSet<Path>,
        files: Vec<PublishedFile>,
    ) -> DFResult<()> {
        let mut state = self.index.write();
        state.apply(spec, files, removed)?;
        state.settle(self.write);
        Ok(())
    }
}

impl Drop for CommitTicket {
    fn drop(&mut self) {
        self.index.write().settle(self.write);
    }
}

impl SharedIndex {
    pub(crate) fn new(index: PartitionIndex) -> Self {
        Self {
            state: RwLock::new(Shared {
                current: Arc::new(index),
                refreshes: 0,
                appended: Vec::new(),
                removed: Vec::new(),
                committing: HashMap::new(),
                settled: Vec::new(),
                next_write: 0,
            }),
        }
    }

    /// The current index (a later append or refresh does not change it).
    pub(crate) fn snapshot(&self) -> Arc<PartitionIndex> {
        Arc::clone(&self.read().current)
    }

    /// Registers the files a write is about to make visible: call before
    /// its first commit; publish through the ticket.
    pub(crate) fn begin_commit(self: &Arc<Self>, files: Vec<Path>) -> CommitTicket {
        let mut state = self.write();
        let write = state.next_write;
        state.next_write += 1;
        state.committing.insert(write, files);
        CommitTicket {
            index: Arc::clone(self),
            write,
        }
    }

    /// Marks the start of a refresh: call before listing.
    pub(crate) fn begin_refresh(&self) -> RefreshTicket<'_> {
        let mut state = self.write();
        state.refreshes += 1;
        RefreshTicket {
            index: self,
            start: state.appended.len(),
            settled_start: state.settled.len(),
            removed_start: state.removed.len(),
        }
    }

    /// Installs `listed`, with every file appended since `ticket` began that
    /// the listing did not see.
    pub(crate) fn finish_refresh(
        &self,
        ticket: RefreshTicket<'_>,
        spec: &PartitionSpec,
        listed: PartitionIndex,
    ) -> DFResult<()> {
        {
            let mut state = self.write();
            let listed = state.without_unsettled(&ticket, spec, listed)?;
            let since = state.appended.get(ticket.start..).unwrap_or_default();
            let listed = if since.is_empty() {
                listed
            } else {
                listed.with_files(spec, since.iter().cloned())?
            };
            state.current = Arc::new(state.without_removed(&ticket, spec, listed)?);
        }
        drop(ticket);
        Ok(())
    }

    /// Installs a partial refresh: the partitions `relisted` marks in the
    /// current index are replaced, whole, by `listed` (with every file
    /// appended since `ticket` began); every other partition stays as it is.
    /// `relisted` runs under the lock, on the index it replaces.
    pub(crate) fn finish_partial_refresh(
        &self,
        ticket: RefreshTicket<'_>,
        spec: &PartitionSpec,
        listed: PartitionIndex,
        relisted: impl FnOnce(&PartitionIndex) -> Vec<bool>,
    ) -> DFResult<()> {
        {
            let mut state = self.write();
            let listed = state.without_unsettled(&ticket, spec, listed)?;
            let current = Arc::clone(&state.current);
            let replaced = relisted(&current);
            let mut merged = current.replacing(spec, &replaced, &listed)?;
            let since = state.appended.get(ticket.start..).unwrap_or_default();
            // Merging copies the whole index: only when there is something to merge.
            if !since.is_empty() {
                merged = merged.with_files(spec, since.iter().cloned())?;
            }
            state.current = Arc::new(state.without_removed(&ticket, spec, merged)?);
        }
        drop(ticket);
        Ok(())
    }

    // A poisoned lock only means a panic elsewhere while swapping an Arc or
    // extending the log; both are whole at every step.
    fn read(&self) -> RwLockReadGuard<'_, Shared> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Shared> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shared {
    /// Adds published files to the current index and takes removed ones
    /// out, built aside and swapped in whole (a failure changes nothing),
    /// and logs both while a refresh runs.
    fn apply(
        &mut self,
        spec: &PartitionSpec,
        files: Vec<PublishedFile>,
        removed: &HashSet<Path>,
    ) -> DFResult<()> {
        let mut next = self.current.with_files(spec, files.iter().cloned())?;
        if !removed.is_empty() {
            let excluded: HashSet<&str> = removed.iter().map(|p| p.as_ref()).collect();
            next = next.without(spec, &excluded)?;
        }
        self.current = Arc::new(next);
        if self.refreshes > 0 {
            self.appended.extend(files);
            self.removed.extend(removed.iter().cloned());
        }
        Ok(())
    }

    /// `index` without what replacing writes removed since `ticket`'s
    /// refresh began (its listing may have seen those files before they
    /// went).
    fn without_removed(
        &self,
        ticket: &RefreshTicket<'_>,
        spec: &PartitionSpec,
        index: PartitionIndex,
    ) -> DFResult<PartitionIndex> {
        let since = self.removed.get(ticket.removed_start..).unwrap_or_default();
        if since.is_empty() {
            return Ok(index);
        }
        let excluded: HashSet<&str> = since.iter().map(|p| p.as_ref()).collect();
        index.without(spec, &excluded)
    }

    /// Ends write `write`'s commit (once; later calls do nothing): its files
    /// are no longer committing, and running refreshes leave them out of
    /// their listings (a published write's come back from the append log).
    fn settle(&mut self, write: u64) {
        if let Some(files) = self.committing.remove(&write) {
            if self.refreshes > 0 {
                self.settled.extend(files);
            }
        }
    }

    /// Removes from what `ticket`'s refresh listed every file of a write
    /// that is committing now or ended since the refresh began.
    fn without_unsettled(
        &self,
        ticket: &RefreshTicket<'_>,
        spec: &PartitionSpec,
        listed: PartitionIndex,
    ) -> DFResult<PartitionIndex> {
        let settled = self.settled.get(ticket.settled_start..).unwrap_or_default();
        let excluded: HashSet<&str> = self
            .committing
            .values()
            .flatten()
            .chain(settled)
            .map(|path| path.as_ref())
            .collect();
        if excluded.is_empty() {
            return Ok(listed);
        }
        listed.without(spec, &excluded)
    }
}
