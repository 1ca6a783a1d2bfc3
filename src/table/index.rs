//! The partition index: the one listing of a table that every scan plans from.
//!
//! It is built by discovery (at `build()` or `refresh()`) and then only read,
//! so planning never touches the object store. A table swaps whole indexes,
//! never edits one, which is why a scan never sees a mix of two listings.
//! [`SharedIndex`] owns the swapping: what scans read, what `INSERT INTO`
//! publishes, and what a refresh installs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::error::Result as DFResult;
use object_store::ObjectMeta;

use super::spec::PartitionSpec;

/// A file an `INSERT` wrote, with the partition values of its directory.
#[derive(Debug, Clone)]
pub(crate) struct PublishedFile {
    pub values: Vec<ScalarValue>,
    pub file: IndexedFile,
}

/// One data file of the table, as the listing saw it.
#[derive(Debug, Clone)]
pub struct IndexedFile {
    /// Location, size, modification time and ETag from the listing.
    pub meta: ObjectMeta,
    /// Footer statistics, present when the table was built with
    /// `collect_statistics(true)`.
    pub statistics: Option<Arc<Statistics>>,
    /// The bucket the file holds, when its metadata says it was written
    /// with the table's bucketing (see [`Bucketing`](super::Bucketing)).
    pub bucket: Option<u32>,
    /// The file's rows are in the table's sort order: its metadata records
    /// that order (or one that starts with it), or the order was declared
    /// with `sort_order` and the file records none (see
    /// [`SortKey`](super::SortKey)).
    pub sorted: bool,
}

/// One leaf partition directory and its files.
#[derive(Debug, Clone)]
pub struct Partition {
    /// Typed values of the partition columns, in spec order (NULL for
    /// `__HIVE_DEFAULT_PARTITION__`).
    pub values: Vec<ScalarValue>,
    /// The files directly inside the partition directory, sorted by path.
    pub files: Vec<IndexedFile>,
}

/// A snapshot of the table's files, grouped by partition.
#[derive(Debug, Clone)]
pub struct PartitionIndex {
    partitions: Vec<Partition>,
    /// One row per partition, one column per partition column: the pruning
    /// predicate is evaluated against this batch in a single vectorised pass.
    values: RecordBatch,
    /// Why some file of a bucketed table has no trusted bucket (the first
    /// reason found at discovery), for `EXPLAIN`.
    bucket_note: Option<Arc<str>>,
    /// The statistics of the whole table, computed once per index (they are
    /// a pass over every file: at 10⁶ files, ~90 ms).
    table_statistics: OnceLock<Arc<Statistics>>,
}

impl PartitionIndex {
    /// Builds an index from partitions (in any order) under `spec`.
    pub fn try_new(spec: &PartitionSpec, mut partitions: Vec<Partition>) -> DFResult<Self> {
        // Listings grow these vectors by doubling; an index lives until the
        // next refresh, so it keeps no spare capacity (at 10⁶ files, a
        // quarter of what the index held).
        for partition in &mut partitions {
            partition.files.shrink_to_fit();
        }
        partitions.shrink_to_fit();
        partitions.sort_by(|a, b| {
            let pa = a.files.first().map(|f| f.meta.location.as_ref());
            let pb = b.files.first().map(|f| f.meta.location.as_ref());
            pa.cmp(&pb)
        });
        let schema = Arc::new(Schema::new(spec.fields()));
        let columns: Vec<ArrayRef> = spec
            .columns()
            .iter()
            .enumerate()
            .map(|(i, column)| {
                if partitions.is_empty() {
                    return Ok(datafusion::arrow::array::new_empty_array(&column.data_type));
                }
                ScalarValue::iter_to_array(partitions.iter().map(|p| p.values[i].clone()))
            })
            .collect::<DFResult<_>>()?;
        let values = if columns.is_empty() {
            RecordBatch::try_new_with_options(
                schema,
                columns,
                &datafusion::arrow::array::RecordBatchOptions::new()
                    .with_row_count(Some(partitions.len())),
            )?
        } else {
            RecordBatch::try_new(schema, columns)?
        };
        Ok(Self {
            partitions,
            values,
            bucket_note: None,
            table_statistics: OnceLock::new(),
        })
    }

    /// The same index, noting why some file of a bucketed table has no
    /// trusted bucket.
    pub(crate) fn with_bucket_note(mut self, note: Option<Arc<str>>) -> Self {
        self.bucket_note = note;
        self
    }

    /// Why some file of a bucketed table has no trusted bucket, if one has none.
    pub fn bucket_note(&self) -> Option<&str> {
        self.bucket_note.as_deref()
    }

    /// The statistics of the whole table: `compute`d the first time, then
    /// reused for as long as this index is the table's.
    pub(crate) fn table_statistics(&self, compute: impl FnOnce() -> Statistics) -> Arc<Statistics> {
        Arc::clone(self.table_statistics.get_or_init(|| Arc::new(compute())))
    }

    /// All partitions, sorted by path.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// The partition values as a batch (one row per partition).
    pub fn values(&self) -> &RecordBatch {
        &self.values
    }

    /// The same index with every file marked as sorted in the table's order
    /// (the table adopted the order all of them record).
    pub(crate) fn with_all_sorted(mut self) -> Self {
        for file in self.partitions.iter_mut().flat_map(|p| p.files.iter_mut()) {
            file.sorted = true;
        }
        self
    }

    /// The number of files in the table.
    pub fn file_count(&self) -> usize {
        self.partitions.iter().map(|p| p.files.len()).sum()
    }

    /// The total size in bytes of the table's files.
    pub fn total_bytes(&self) -> u64 {
        self.partitions
            .iter()
            .flat_map(|p| &p.files)
            .map(|f| f.meta.size)
            .sum()
    }

    /// The first file of the table, if it has one (used for schema inference).
    pub fn first_file(&self) -> Option<&IndexedFile> {
        self.partitions.iter().flat_map(|p| &p.files).next()
    }
}

impl PartitionIndex {
    /// This index with `published` added to their partitions (new partitions
    /// created as needed); a file already listed under the same path is kept
    /// once.
    pub(crate) fn with_files(
        &self,
        spec: &PartitionSpec,
        published: impl IntoIterator<Item = PublishedFile>,
    ) -> DFResult<Self> {
        let mut partitions: Vec<Partition> = self.partitions.clone();
        let mut position: HashMap<Vec<ScalarValue>, usize> = partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (p.values.clone(), i))
            .collect();
        let mut known: HashSet<object_store::path::Path> = partitions
            .iter()
            .flat_map(|p| p.files.iter().map(|f| f.meta.location.clone()))
            .collect();
        for PublishedFile { values, file } in published {
            if !known.insert(file.meta.location.clone()) {
                continue;
            }
            let i = *position.entry(values.clone()).or_insert_with(|| {
                partitions.push(Partition {
                    values,
                    files: Vec::new(),
                });
                partitions.len() - 1
            });
            partitions[i].files.push(file);
        }
        for partition in &mut partitions {
            partition
                .files
                .sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
        }
        Ok(Self::try_new(spec, partitions)?.with_bucket_note(self.bucket_note.clone()))
    }
}

/// The one home of a table's current [`PartitionIndex`]: scans take
/// snapshots, `INSERT INTO` appends what it published, a refresh installs a
/// new listing.
///
/// A refresh lists while INSERTs may publish; a listing that looked before
/// an INSERT's files existed would drop them. So while any refresh is under
/// way, every append is also logged, and a refresh installs its listing
/// together with what was appended since it began.
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
}

/// A refresh under way: [`SharedIndex::finish_refresh`] installs its listing;
/// dropping it (a cancelled refresh) installs nothing.
#[derive(Debug)]
pub(crate) struct RefreshTicket<'a> {
    index: &'a SharedIndex,
    /// The length of the append log when the refresh began.
    start: usize,
}

impl Drop for RefreshTicket<'_> {
    fn drop(&mut self) {
        let mut state = self.index.write();
        state.refreshes = state.refreshes.saturating_sub(1);
        if state.refreshes == 0 {
            state.appended = Vec::new();
        }
    }
}

impl SharedIndex {
    pub(crate) fn new(index: PartitionIndex) -> Self {
        Self {
            state: RwLock::new(Shared {
                current: Arc::new(index),
                refreshes: 0,
                appended: Vec::new(),
            }),
        }
    }

    /// The current index (a later append or refresh does not change it).
    pub(crate) fn snapshot(&self) -> Arc<PartitionIndex> {
        Arc::clone(&self.read().current)
    }

    /// Adds files an INSERT published, in one swap: concurrent INSERTs never
    /// lose each other's files, and a scan sees all of them or none.
    pub(crate) fn append(&self, spec: &PartitionSpec, files: Vec<PublishedFile>) -> DFResult<()> {
        let mut state = self.write();
        state.current = Arc::new(state.current.with_files(spec, files.iter().cloned())?);
        if state.refreshes > 0 {
            state.appended.extend(files);
        }
        Ok(())
    }

    /// Marks the start of a refresh: call before listing.
    pub(crate) fn begin_refresh(&self) -> RefreshTicket<'_> {
        let mut state = self.write();
        state.refreshes += 1;
        RefreshTicket {
            index: self,
            start: state.appended.len(),
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
            let since = state.appended.get(ticket.start..).unwrap_or_default();
            let merged = listed.with_files(spec, since.iter().cloned())?;
            state.current = Arc::new(merged);
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
        relisted: impl FnOnce(&PartitionIndex) -> DFResult<Vec<bool>>,
    ) -> DFResult<()> {
        {
            let mut state = self.write();
            let current = Arc::clone(&state.current);
            let replaced = relisted(&current)?;
            let mut partitions: Vec<Partition> = current
                .partitions()
                .iter()
                .zip(replaced)
                .filter(|(_, replaced)| !replaced)
                .map(|(p, _)| p.clone())
                .collect();
            partitions.extend(listed.partitions().iter().cloned());
            let note = listed
                .bucket_note
                .clone()
                .or_else(|| current.bucket_note.clone());
            let mut merged = PartitionIndex::try_new(spec, partitions)?.with_bucket_note(note);
            let since = state.appended.get(ticket.start..).unwrap_or_default();
            // Merging copies the whole index: only when there is something to merge.
            if !since.is_empty() {
                merged = merged.with_files(spec, since.iter().cloned())?;
            }
            state.current = Arc::new(merged);
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    fn file(path: &str) -> IndexedFile {
        IndexedFile {
            meta: ObjectMeta {
                location: object_store::path::Path::from(path),
                last_modified: chrono::DateTime::default(),
                size: 1,
                e_tag: None,
                version: None,
            },
            statistics: None,
            bucket: None,
            sorted: false,
        }
    }

    #[test]
    fn an_index_keeps_no_spare_capacity() {
        let spec = PartitionSpec::new([("p".to_string(), DataType::Int32)]);
        let mut files = Vec::with_capacity(64);
        files.extend((0..10).map(|i| file(&format!("t/p=1/part-{i}.parquet"))));
        let mut partitions = Vec::with_capacity(64);
        partitions.push(Partition {
            values: vec![ScalarValue::Int32(Some(1))],
            files,
        });
        let index = PartitionIndex::try_new(&spec, partitions).unwrap();
        assert_eq!(index.partitions.capacity(), 1);
        assert_eq!(index.partitions()[0].files.capacity(), 10);
        assert_eq!(index.file_count(), 10);
    }
}
