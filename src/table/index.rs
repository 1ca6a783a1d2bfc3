//! The partition index: the one listing of a table that every scan plans from.
//!
//! It is built once by [`discover`](super::listing::discover) (at `build()` or
//! `refresh()`) and then only read, so planning never touches the object store.
//! A table swaps whole indexes, never edits one, which is why a table can never
//! mix two listings.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::error::Result as DFResult;
use object_store::ObjectMeta;

use super::spec::PartitionSpec;

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
}

impl PartitionIndex {
    /// Builds an index from partitions (in any order) under `spec`.
    pub fn try_new(spec: &PartitionSpec, mut partitions: Vec<Partition>) -> DFResult<Self> {
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
        Ok(Self { partitions, values })
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
