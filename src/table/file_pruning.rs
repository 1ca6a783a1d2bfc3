//! Whole files skipped by their footer statistics, at planning time and
//! without I/O: a file whose min/max no row of the filter can be in is not
//! planned, and a `LIMIT` plans only the leading files whose exact row
//! counts reach it. The statistics are those collected at discovery (in
//! the index) or learned by earlier scans (`lake::learned`); a file with
//! neither is always kept.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, ColumnStatistics, ScalarValue, Statistics};
use datafusion::error::Result as DFResult;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion_datasource::PartitionedFile;

use crate::lake::index::{Partition, PartitionIndex};
use crate::lake::learned::LearnedStatistics;

/// Where a plan finds the footer statistics of a file: the index (when the
/// table collected them) or, failing that, what scans learned.
pub(super) struct FileStatistics {
    /// `None` when nothing may be looked up (no filter or limit to use it,
    /// or the runtime keeps none).
    pub(super) learned: Option<LearnedStatistics>,
}

/// A selected file as the scan will read it, with what grouping needs.
pub(super) struct Described<'a> {
    /// The file, with its statistics (and its partition's values appended
    /// to them) where they are known.
    pub(super) file: PartitionedFile,
    pub(super) partition: &'a Partition,
    pub(super) size: u64,
    pub(super) bucket: Option<u32>,
    /// Its footer statistics over the file schema, without the partition
    /// columns.
    pub(super) statistics: Option<Arc<Statistics>>,
}

impl Described<'_> {
    /// The values of the file's partition columns.
    pub(super) fn values(&self) -> &[ScalarValue] {
        self.partition.values()
    }
}

impl FileStatistics {
    /// The files of the `selected` partitions, in index order, each with
    /// the statistics known of it.
    pub(super) fn describe<'a>(
        &self,
        index: &'a PartitionIndex,
        selected: &[usize],
    ) -> DFResult<Vec<Described<'a>>> {
        let mut files = Vec::new();
        for &i in selected {
            let partition = &index.partitions()[i];
            for file in index.files(partition) {
                let mut described = file.partitioned_file(partition.values())?;
                let mut statistics = file.statistics().cloned();
                if statistics.is_none() {
                    if let Some(learned) = self.learned.as_ref() {
                        statistics = learned.get(&described.object_meta);
                        if let Some(statistics) = &statistics {
                            described = described.with_statistics(Arc::clone(statistics));
                        }
                    }
                }
                files.push(Described {
                    file: described,
                    partition,
                    size: file.size(),
                    bucket: file.bucket(),
                    statistics,
                });
            }
        }
        Ok(files)
    }
}

/// The files a scan needs: those whose footer min/max may hold a row
/// `predicate` (over the table `schema`) accepts — DataFusion's
/// `PruningPredicate`, the one that prunes row groups, applied to whole
/// files — and, for a `limit`, only the leading files whose exact row
/// counts reach it (as `ListingTable` takes them). Files whose statistics
/// are not known are kept.
pub(super) fn skip_by_statistics<'a>(
    mut files: Vec<Described<'a>>,
    predicate: Option<&Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    schema: &SchemaRef,
) -> DFResult<Vec<Described<'a>>> {
    if let Some(predicate) = predicate {
        if files.iter().any(|f| f.statistics.is_some()) {
            // A predicate DataFusion cannot turn into a pruning one prunes
            // nothing, as for row groups.
            if let Ok(pruning) = PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(schema))
                .try_build(Arc::clone(predicate))
            {
                let keep = pruning.prune(&FilesPruningStatistics {
                    files: &files,
                    schema,
                })?;
                let mut keep = keep.into_iter();
                files.retain(|_| keep.next().unwrap_or(true));
            }
        }
    }
    if let Some(limit) = limit {
        let mut rows = 0_usize;
        let needed = files
            .iter()
            .position(|f| {
                let enough = rows >= limit;
                if let Some(Precision::Exact(n)) = f.statistics.as_ref().map(|s| s.num_rows) {
                    rows = rows.saturating_add(n);
                }
                enough
            })
            .unwrap_or(files.len());
        files.truncate(needed);
    }
    Ok(files)
}

/// The files' statistics (over the table schema: the partition columns
/// are appended to each file's) as DataFusion's pruning reads them, one
/// container per file.
///
/// Unlike DataFusion's `PrunableStatistics`, a value that is not known
/// (a file whose statistics are not known, or a column a file lacks) is
/// a null *of the column's type*: `PrunableStatistics` builds it as an
/// untyped null, which makes the whole column's array fail to build
/// beside known values, so one unknown file would stop every file from
/// being pruned.
struct FilesPruningStatistics<'a, 'b> {
    files: &'a [Described<'b>],
    schema: &'a SchemaRef,
}

impl FilesPruningStatistics<'_, '_> {
    /// The column's exact statistic `get` of each file, as one array
    /// (`None` when no file has it, or a value is of another type).
    fn exact(
        &self,
        column: &Column,
        get: impl Fn(&ColumnStatistics) -> &Precision<ScalarValue>,
    ) -> Option<ArrayRef> {
        let index = self.schema.index_of(column.name()).ok()?;
        let unknown = ScalarValue::try_from(self.schema.field(index).data_type()).ok()?;
        let mut known = false;
        let values = self.files.iter().map(|f| {
            match f
                .file
                .statistics
                .as_ref()
                .and_then(|s| s.column_statistics.get(index))
                .map(&get)
            {
                Some(Precision::Exact(value)) if !value.is_null() => {
                    known = true;
                    value.clone()
                }
                _ => unknown.clone(),
            }
        });
        let array = ScalarValue::iter_to_array(values).ok()?;
        known.then_some(array)
    }

    /// One number per file from its statistics, null where not exact
    /// (`None` when no file's is).
    fn counts(&self, get: impl Fn(&Statistics) -> Option<usize>) -> Option<ArrayRef> {
        let counts: UInt64Array = self
            .files
            .iter()
            .map(|f| {
                f.file
                    .statistics
                    .as_deref()
                    .and_then(&get)
                    .and_then(|n| u64::try_from(n).ok())
            })
            .collect();
        (counts.null_count() < counts.len()).then(|| Arc::new(counts) as ArrayRef)
    }
}

impl PruningStatistics for FilesPruningStatistics<'_, '_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.exact(column, |c| &c.min_value)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.exact(column, |c| &c.max_value)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let index = self.schema.index_of(column.name()).ok()?;
        self.counts(|s| match s.column_statistics.get(index)?.null_count {
            Precision::Exact(n) => Some(n),
            _ => None,
        })
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        self.counts(|s| match s.num_rows {
            Precision::Exact(n) => Some(n),
            _ => None,
        })
    }

    #[allow(clippy::mutable_key_type)] // DataFusion's signature
    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
