//! The planner: a table's definition, a snapshot of its index and the
//! filters DataFusion pushed, turned into a [`PartitionedScanExec`] — pure
//! computation, no I/O, so every planning rule is testable without storage.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{ScanArgs, Session};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::Partitioning;
use datafusion_datasource::TableSchema;

use super::file_pruning::{skip_by_statistics, Described, FileStatistics};
use super::pushdown::{classify_for_scan, matches, FilterKind};
use crate::lake::index::PartitionIndex;
use crate::lake::learned::LearnedStatistics;
use crate::lake::TableDefinition;
use crate::scan::{PartitionedScanExec, ScanDescription};

/// Plans the scan `args` asks for: the partitions that survive the
/// partition filters, their files grouped into output partitions (by bucket,
/// in sort order, or evenly), the declared partitioning and ordering where
/// they are proven true, statistics of the selected files, and the Parquet
/// source with the row-group predicate. No I/O: everything comes from
/// `definition` and `index`; `state` gives the session's options and turns
/// filters into physical expressions.
pub(super) fn plan_scan(
    definition: &TableDefinition,
    index: &PartitionIndex,
    state: &dyn Session,
    args: &ScanArgs<'_>,
) -> DFResult<PartitionedScanExec> {
    let (mut partition_filters, mut row_group_filters) = (Vec::new(), Vec::new());
    for filter in args.filters().unwrap_or(&[]) {
        match classify_for_scan(filter, &definition.spec, definition.table_schema()) {
            FilterKind::Partition => partition_filters.push(filter.clone()),
            FilterKind::RowGroup => row_group_filters.push(filter.clone()),
            FilterKind::Unsupported => {}
        }
    }
    let selected = prune(definition, index, &partition_filters, state)?;
    let predicate = match conjunction(row_group_filters.iter().cloned()) {
        Some(predicate) => {
            let df_schema = DFSchema::try_from(definition.table_schema().as_ref().clone())?;
            Some(state.create_physical_expr(predicate, &df_schema)?)
        }
        None => None,
    };

    let target_partitions = state.config_options().execution.target_partitions.max(1);
    // Footer statistics prune whole files and bound a LIMIT's files only
    // when the scan has a data filter or a limit, and some file's are known.
    let learned = LearnedStatistics::of(state.runtime_env(), definition.learned_key())
        .filter(|learned| !learned.is_empty());
    let known = FileStatistics {
        learned: learned.filter(|_| predicate.is_some() || args.limit().is_some()),
    };
    let by_statistics = known.learned.is_some()
        || ((predicate.is_some() || args.limit().is_some()) && index.has_statistics());
    let all_selected = selected.len() == index.partitions().len();
    // The table's order holds for the scan only if every file is sorted in it.
    let ordering = definition.lex_ordering().filter(|_| {
        selected
            .iter()
            .all(|&i| index.files(&index.partitions()[i]).all(|f| f.sorted()))
    });
    let schema = definition.table_schema();
    let mut statistics = None;
    let mut files_skipped = 0;
    let (groups, partitioning, ordering) = if !by_statistics
        && definition.options.bucketing.is_none()
        && ordering.is_none()
    {
        (
            even_groups(index, &selected, target_partitions)?,
            None,
            None,
        )
    } else {
        let mut files = known.describe(index, &selected)?;
        if by_statistics {
            let before = files.len();
            files = skip_by_statistics(files, predicate.as_ref(), args.limit(), schema)?;
            files_skipped = before - files.len();
            if files_skipped > 0 {
                statistics = Some(summarize(
                    definition,
                    files
                        .iter()
                        .map(|f| (f.values(), f.size, f.statistics.as_deref())),
                ));
            }
        }
        if let Some((groups, partitioning)) = bucket_groups(definition, &files, target_partitions) {
            match ordering.and_then(|o| Some((order_each_group(&groups, schema, &o)?, o))) {
                Some((ordered, o)) => (ordered, Some(partitioning), Some(o)),
                None => (groups, Some(partitioning), None),
            }
        } else {
            let all: FileGroup = files.into_iter().map(|f| f.file).collect();
            match ordering {
                _ if all.is_empty() => (vec![FileGroup::default()], None, None),
                Some(ordering) => {
                    match group_in_order(&all, schema, &ordering, target_partitions) {
                        Some(groups) => (groups, None, Some(ordering)),
                        None => (all.split_files(target_partitions), None, None),
                    }
                }
                None => (all.split_files(target_partitions), None, None),
            }
        }
    };
    let statistics = match statistics {
        Some(statistics) => statistics,
        None if all_selected => table_statistics(definition, index).as_ref().clone(),
        None => statistics_of(definition, index, &selected),
    };

    let options = state.table_options().parquet.clone();
    let metadata_size_hint = options.global.metadata_size_hint;
    let table_schema = TableSchema::builder(Arc::clone(&definition.file_schema))
        .with_table_partition_cols(definition.spec.fields())
        .build();
    let mut source = ParquetSource::new(table_schema).with_table_parquet_options(options);
    if let Some(hint) = metadata_size_hint {
        source = source.with_metadata_size_hint(hint);
    }
    if let Some(predicate) = predicate {
        source = source.with_predicate(predicate);
    }
    let object_store_url = definition.root.object_store();
    let config = FileScanConfigBuilder::new(object_store_url, Arc::new(source))
        .with_file_groups(groups)
        .with_projection_indices(args.projection().map(|p| p.to_vec()))?
        .with_limit(args.limit())
        .with_statistics(statistics)
        .with_output_partitioning(partitioning.clone())
        .with_output_ordering(ordering.into_iter().collect())
        .build();
    let bucketing_note = match &definition.options.bucketing {
        Some(b) if partitioning.is_none() && !selected.is_empty() => {
            Some(Arc::from(if b.buckets != target_partitions {
                format!(
                    "{} buckets, {target_partitions} target partitions",
                    b.buckets
                )
            } else {
                index
                    .bucket_note()
                    .unwrap_or("a selected file has no bucket")
                    .to_string()
            }))
        }
        _ => None,
    };
    let exec = PartitionedScanExec::new(
        ScanDescription {
            table: Arc::clone(&definition.name),
            selected_partitions: selected.len(),
            total_partitions: index.partitions().len(),
            partition_filters,
            row_group_filters,
            retry: definition.options.retry,
            bucketing_note,
            files_skipped,
        },
        config,
    )
    .with_learned_key(Arc::clone(definition.learned_key()));
    Ok(exec)
}

/// Indices of the partitions that satisfy every partition filter.
fn prune(
    definition: &TableDefinition,
    index: &PartitionIndex,
    filters: &[Expr],
    state: &dyn Session,
) -> DFResult<Vec<usize>> {
    let all = index.partitions().len();
    let Some(predicate) = conjunction(filters.iter().cloned()) else {
        return Ok((0..all).collect());
    };
    let mask = matches(state, &predicate, index.values(), &definition.name)?;
    Ok((0..all).filter(|&i| mask[i]).collect())
}

/// One file group per bucket, and the `Hash` partitioning they make true,
/// when the table is bucketed, every file says (in its metadata) which
/// bucket it holds, and there are as many target partitions as buckets.
/// The bucket column must exist in the table schema; whether the scan
/// projects it is DataFusion's to check (it falls back to unknown
/// partitioning when the column is projected away).
fn bucket_groups(
    definition: &TableDefinition,
    files: &[Described<'_>],
    target_partitions: usize,
) -> Option<(Vec<FileGroup>, Partitioning)> {
    let bucketing = definition.options.bucketing.as_ref()?;
    let column = definition.table_schema().index_of(&bucketing.column).ok()?;
    if bucketing.buckets != target_partitions {
        return None;
    }
    let mut groups = vec![Vec::new(); bucketing.buckets];
    for file in files {
        groups
            .get_mut(file.bucket? as usize)?
            .push(file.file.clone());
    }
    let partitioning = Partitioning::Hash(
        vec![Arc::new(Column::new(&bucketing.column, column))],
        bucketing.buckets,
    );
    Some((
        groups.into_iter().map(FileGroup::new).collect(),
        partitioning,
    ))
}

/// Statistics of a set of partitions, over the table schema, with honest
/// precision: row counts and file-column min/max only from footers,
/// byte size from the listing otherwise (inexact: files are compressed).
/// The statistics of the whole table, once per index snapshot.
pub(super) fn table_statistics(
    definition: &TableDefinition,
    index: &PartitionIndex,
) -> Arc<Statistics> {
    index.table_statistics(|| {
        let all: Vec<usize> = (0..index.partitions().len()).collect();
        statistics_of(definition, index, &all)
    })
}

pub(super) fn statistics_of(
    definition: &TableDefinition,
    index: &PartitionIndex,
    selected: &[usize],
) -> Statistics {
    summarize(
        definition,
        selected.iter().flat_map(|&i| {
            let partition = &index.partitions()[i];
            index.files(partition).map(move |f| {
                (
                    partition.values(),
                    f.size(),
                    f.statistics().map(|s| s.as_ref()),
                )
            })
        }),
    )
}

/// The statistics of a set of files, each given as its partition's values,
/// its size and its footer statistics (over the file schema), if known.
fn summarize<'a>(
    definition: &TableDefinition,
    files: impl Iterator<Item = (&'a [ScalarValue], u64, Option<&'a Statistics>)>,
) -> Statistics {
    let columns = definition.spec.len();
    let (mut count, mut bytes) = (0_usize, 0_u64);
    let mut file_stats: Option<Vec<&Statistics>> = Some(Vec::new());
    let mut bounds: Vec<(Option<&ScalarValue>, Option<&ScalarValue>)> = vec![(None, None); columns];
    let mut nulls = vec![0_usize; columns];
    for (values, size, stats) in files {
        count += 1;
        bytes += size;
        match (stats, file_stats.as_mut()) {
            (Some(stats), Some(all)) => all.push(stats),
            _ => file_stats = None,
        }
        for (c, v) in values.iter().enumerate().take(columns) {
            if v.is_null() {
                nulls[c] += stats
                    .and_then(|s| s.num_rows.get_value().copied())
                    .unwrap_or(0);
                continue;
            }
            let (lo, hi) = &mut bounds[c];
            *lo = Some(lo.map_or(v, |lo| if v < lo { v } else { lo }));
            *hi = Some(hi.map_or(v, |hi| if v > hi { v } else { hi }));
        }
    }
    let mut stats = match file_stats
        .as_ref()
        .and_then(|s| Statistics::try_merge_iter(s.iter().copied(), &definition.file_schema).ok())
    {
        Some(merged) if count > 0 => merged,
        _ => {
            let mut s = Statistics::new_unknown(&definition.file_schema);
            s.total_byte_size = Precision::Inexact(bytes as usize);
            if count == 0 {
                s.num_rows = Precision::Exact(0);
                s.total_byte_size = Precision::Exact(0);
            }
            s
        }
    };
    for (c, (min, max)) in bounds.into_iter().enumerate() {
        let mut col = ColumnStatistics::new_unknown();
        // Inexact: a partition directory may hold files with no rows.
        col.min_value = min.map_or(Precision::Absent, |v| Precision::Inexact(v.clone()));
        col.max_value = max.map_or(Precision::Absent, |v| Precision::Inexact(v.clone()));
        if file_stats.is_some() {
            col.null_count = Precision::Exact(nulls[c]);
        }
        stats.column_statistics.push(col);
    }
    stats
}

/// Scans of at least this many files make their file descriptions on
/// several threads.
const PARALLEL_FILES: usize = 50_000;

/// The files in index (path) order, in `target_partitions` groups of
/// neighbouring files, as DataFusion's `FileGroup::split_files` makes them,
/// built in place: at 10⁶ files, moving every file description through one
/// list and then into groups is most of what planning costs. Groups are
/// built on up to as many threads as there are cores once the scan has
/// [`PARALLEL_FILES`] files (making a description is mostly allocating,
/// which glibc serves from one arena per thread). One empty group when
/// there is no file, as `ListingTable`'s `EmptyExec` has: with none, an
/// ORDER BY above finds no single partition to sort and fails the plan's
/// sanity check.
fn even_groups(
    index: &PartitionIndex,
    selected: &[usize],
    target_partitions: usize,
) -> DFResult<Vec<FileGroup>> {
    let partitions = index.partitions();
    let count: usize = selected.iter().map(|&i| partitions[i].file_count()).sum();
    if count == 0 {
        return Ok(vec![FileGroup::default()]);
    }
    let per_group = count.div_ceil(target_partitions);
    // Each group as slices of partitions: (partition, first file, files).
    let mut groups: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new()];
    let mut room = per_group;
    for &i in selected {
        let (mut first, mut left) = (0, partitions[i].file_count());
        while left > 0 {
            if room == 0 {
                groups.push(Vec::new());
                room = per_group;
            }
            let take = left.min(room);
            if let Some(group) = groups.last_mut() {
                group.push((i, first, take));
            }
            (first, left, room) = (first + take, left - take, room - take);
        }
    }
    let build = |slices: &[(usize, usize, usize)]| -> DFResult<FileGroup> {
        let mut files = Vec::with_capacity(slices.iter().map(|s| s.2).sum());
        for &(i, first, take) in slices {
            let partition = &partitions[i];
            for file in index.files(partition).skip(first).take(take) {
                files.push(file.partitioned_file(partition.values())?);
            }
        }
        Ok(FileGroup::new(files))
    };
    // Asked only when there are files enough to share: the standard library
    // reads the process's CPU quota from the cgroup files on every call,
    // which a short query's plan would pay for.
    let threads = if count < PARALLEL_FILES || groups.len() < 2 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    if threads < 2 {
        return groups.iter().map(|slices| build(slices)).collect();
    }
    let per_thread = groups.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = groups
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || chunk.iter().map(|slices| build(slices)).collect::<Vec<_>>())
            })
            .collect();
        let mut built = Vec::with_capacity(groups.len());
        for worker in workers {
            let groups = worker.join().map_err(|_| {
                DataFusionError::Internal("a thread making file descriptions panicked".into())
            })?;
            for group in groups {
                built.push(group?);
            }
        }
        Ok(built)
    })
}

/// Groups files so that each group reads its rows in `ordering`: files in
/// one group follow each other by footer min/max without overlapping
/// (DataFusion's own grouping by statistics, which aims for
/// `target_partitions` groups and makes more when overlaps demand it).
/// `None` when some file lacks min/max for a sort column, or NULLs could
/// break the order (see [`nulls_keep_order`]).
fn group_in_order(
    files: &FileGroup,
    schema: &SchemaRef,
    ordering: &LexOrdering,
    target_partitions: usize,
) -> Option<Vec<FileGroup>> {
    let groups = FileScanConfig::split_groups_by_statistics_with_target_partitions(
        schema,
        std::slice::from_ref(files),
        ordering,
        target_partitions,
    )
    .ok()?;
    groups
        .iter()
        .all(|g| nulls_keep_order(g, ordering))
        .then_some(groups)
}

/// Puts the files of each (bucket) group in `ordering`, or `None` if the
/// files of some group overlap: groups are fixed by the bucketing, so they
/// cannot be split further.
fn order_each_group(
    groups: &[FileGroup],
    schema: &SchemaRef,
    ordering: &LexOrdering,
) -> Option<Vec<FileGroup>> {
    groups
        .iter()
        .map(|group| {
            if group.len() <= 1 {
                return Some(group.clone());
            }
            let mut split = FileScanConfig::split_groups_by_statistics(
                schema,
                std::slice::from_ref(group),
                ordering,
            )
            .ok()?;
            let ordered = split.pop().filter(|_| split.is_empty())?;
            nulls_keep_order(&ordered, ordering).then_some(ordered)
        })
        .collect()
}

/// Footer min/max say nothing of NULLs, which sort before or after every
/// value: a file with NULLs in a sort column cannot be followed (or, NULLs
/// first, preceded) by another file in the same group. Only groups of one
/// file, or files with no NULL in any sort column, keep the order.
fn nulls_keep_order(group: &FileGroup, ordering: &LexOrdering) -> bool {
    group.len() <= 1
        || group.iter().all(|file| {
            file.statistics.as_ref().is_some_and(|stats| {
                ordering.iter().all(|key| {
                    key.expr
                        .downcast_ref::<Column>()
                        .and_then(|c| stats.column_statistics.get(c.index()))
                        .is_some_and(|c| c.null_count == Precision::Exact(0))
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::listing::ListingTableUrl;
    use datafusion::logical_expr::{col, lit};
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use object_store::path::Path;
    use object_store::ObjectMeta;

    use super::*;
    use crate::lake::index::{IndexedFile, ListedPartition};
    use crate::lake::partitioning::PartitionSpec;
    use crate::lake::TableOptions;

    /// An index of `files` files of `size` bytes in each partition
    /// `column=v`, `v` in `values`.
    fn index_of(
        column: &str,
        values: std::ops::RangeInclusive<i32>,
        files: usize,
        size: u64,
    ) -> PartitionIndex {
        let spec = PartitionSpec::new([(column.to_string(), DataType::Int32)]);
        let partitions = values
            .map(|v| ListedPartition {
                values: vec![ScalarValue::Int32(Some(v))],
                files: (0..files)
                    .map(|f| IndexedFile {
                        meta: ObjectMeta {
                            location: Path::from(format!("t/{column}={v}/part-{f}.parquet")),
                            last_modified: Default::default(),
                            size,
                            e_tag: None,
                            version: None,
                        },
                        statistics: None,
                        bucket: None,
                        sorted: false,
                    })
                    .collect(),
            })
            .collect();
        PartitionIndex::try_new(&spec, partitions).unwrap()
    }

    /// A definition and an index of 3 days × 2 files, built in memory: the
    /// planner needs nothing else (no store is even registered).
    fn table() -> (TableDefinition, PartitionIndex) {
        let spec = PartitionSpec::new([("day".to_string(), DataType::Int32)]);
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let root = ListingTableUrl::parse("memory:///t/").unwrap();
        let definition =
            TableDefinition::try_new("t".into(), root, spec, schema, TableOptions::default())
                .unwrap();
        (definition, index_of("day", 1..=3, 2, 1_000))
    }

    #[test]
    fn partition_filters_prune_without_io() {
        let (definition, index) = table();
        let state =
            SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2)).state();
        let filters = [col("day").gt_eq(lit(2)), col("id").gt(lit(7_i64))];
        let args = ScanArgs::default().with_filters(Some(&filters));
        let scan = plan_scan(&definition, &index, &state, &args).unwrap();
        assert_eq!(scan.partitions(), (2, 3));
        assert_eq!(scan.file_count(), 4);
        assert_eq!(scan.partition_filters(), &filters[..1]);
        assert_eq!(scan.row_group_filters(), &filters[1..]);
        assert_eq!(scan.properties().output_partitioning().partition_count(), 2);
        // Unknown row counts stay unknown, never 0.
        let stats = statistics_of(&definition, &index, &[0, 1]);
        assert_eq!(stats.num_rows, Precision::Absent);
        assert_eq!(stats.total_byte_size, Precision::Inexact(4_000));
    }

    /// `even_groups` makes the groups DataFusion's `split_files` makes of
    /// the same files, on one thread and on several.
    #[test]
    fn groups_are_the_ones_split_files_makes() {
        let paths = crate::scan::group_paths;
        // 60,000 files: built on several threads (when the machine has them).
        for (index, target) in [
            (index_of("p", 0..=6, 3, 1), 4),
            (index_of("p", 0..=5_999, 10, 1), 4),
            (index_of("p", 0..=4, 1, 1), 8),
        ] {
            let all: Vec<usize> = (0..index.partitions().len()).collect();
            let some: Vec<usize> = all.iter().copied().filter(|i| i % 3 != 1).collect();
            for selected in [all, some] {
                let files: FileGroup = selected
                    .iter()
                    .flat_map(|&i| {
                        let partition = &index.partitions()[i];
                        index
                            .files(partition)
                            .map(|f| f.partitioned_file(partition.values()).unwrap())
                    })
                    .collect();
                let expected = paths(&files.split_files(target));
                let groups = even_groups(&index, &selected, target).unwrap();
                assert_eq!(paths(&groups), expected, "{} files", index.file_count());
                let values = groups[0].iter().next().map(|f| f.partition_values.clone());
                assert_eq!(values, Some(vec![ScalarValue::Int32(Some(0))]));
            }
        }
        let groups = even_groups(&index_of("p", 0..=2, 1, 1), &[], 4).unwrap();
        assert_eq!(groups.len(), 1);
        assert!(groups[0].is_empty());
    }

    #[test]
    fn a_fully_pruned_scan_keeps_one_empty_partition() {
        let (definition, index) = table();
        let state = SessionContext::new().state();
        let filters = [col("day").eq(lit(9))];
        let args = ScanArgs::default().with_filters(Some(&filters));
        let scan = plan_scan(&definition, &index, &state, &args).unwrap();
        assert_eq!(scan.partitions(), (0, 3));
        assert_eq!(scan.file_count(), 0);
        assert_eq!(scan.properties().output_partitioning().partition_count(), 1);
    }
}
