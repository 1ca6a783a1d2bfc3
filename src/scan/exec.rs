//! [`PartitionedScanExec`]: the physical plan node of a [`PartitionedTable`](crate::PartitionedTable) scan.

use std::fmt;
use std::sync::{Arc, OnceLock};

use datafusion::common::internal_err;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Statistics;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_datasource::file::FileSource;
use datafusion_datasource::file_groups::FileGroup;
use datafusion_datasource::file_scan_config::FileScanConfig;
use datafusion_datasource::source::DataSource;

use super::schema::StrictExprAdapterFactory;
use super::siblings::SiblingState;
use super::stream::LazyScanStream;
use crate::lake::learned::LearnedKey;
use crate::store::RetryPolicy;

/// Scans the selected partitions of a [`PartitionedTable`](crate::PartitionedTable).
///
/// Built by `PartitionedTable::scan` from the table's partition index, without
/// I/O. It is a *description* of what will be read — the files of the partitions
/// that survived pruning (less those whose footer statistics, collected or
/// learned by earlier scans, rule them out: `files_skipped_by_statistics`),
/// split into one group per output partition, the
/// projection, the row-group predicate and the limit — and prints exactly that
/// in `EXPLAIN`:
///
/// ```text
/// PartitionedScanExec: table=events, partitions=1/50, files=4, file_groups={2 groups: [[…], […]]},
///   projection=[region, amount], limit=10, file_type=parquet, predicate=amount@1 > 5,
///   pruning_predicate=…, partition_filters=[date = …], row_group_filters=[amount > 5]
/// ```
///
/// Everything from `file_groups` to `pruning_predicate` is DataFusion's own
/// description of the file scan, as a `DataSourceExec` prints it.
///
/// # Runtime steps
///
/// 1. `execute(partition)` returns a `LazyScanStream` over that partition's
///    file group. Nothing is opened yet.
/// 2. On the first poll the stream opens DataFusion's `FileStream` through
///    `FileScanConfig::open_with_args`, with `ParquetSource` wrapped so that
///    every error names its file, footers (and page indexes) read through the
///    runtime's metadata cache, and — unless disabled with
///    [`with_work_stealing`](Self::with_work_stealing) — files shared with the
///    sibling partitions of this execution through DataFusion's work stealing.
///    On an object store (not `file://`), the partitions of one execution
///    read through a shared read-ahead (`store::read_ahead`): the files they
///    will open next, in order, with many requests in flight
///    ([`ScanOptions`](crate::ScanOptions)' `read_ahead_requests`) and at
///    most `read_ahead_bytes` held, reserved from the memory pool; small files
///    in one request. Without work stealing, each partition reads ahead its
///    own group with its share of both.
/// 3. For each file: the footer is read (and the file's statistics kept in
///    the runtime's file statistics cache, for later plans: `lake::learned`);
///    row groups are pruned with the
///    row-group predicate (DataFusion's `PruningPredicate`) and, if enabled in
///    the session's Parquet options, the page index and bloom filters.
///    Dynamic filters (from a TopK or a hash join's build side, see
///    [`runtime_filters`](Self::runtime_filters)) are evaluated as they stand
///    when each file is opened: a file whose partition values or statistics
///    cannot match is skipped unopened (`files_ranges_pruned_statistics`), and
///    its row groups are pruned with them (`row_groups_pruned_statistics`).
/// 4. The surviving row groups are decoded, projected columns only; partition
///    columns are appended as typed constants.
/// 5. The stream stops at the limit, and ends at the first error.
///
/// Metrics (see [`ScanMetrics`](super::ScanMetrics)) appear in `EXPLAIN ANALYZE`.
/// Each stream runs inside a `lakefusion.scan` tracing span carrying the
/// [`QueryContext`](crate::QueryContext)'s query and tenant ids, the table and
/// the partition.
#[derive(Clone)]
pub struct PartitionedScanExec {
    description: ScanDescription,
    config: Arc<FileScanConfig>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    sibling_state: Arc<SiblingState>,
    work_stealing: bool,
    runtime: RuntimeFilters,
    /// What the statistics its streams learn are kept under: the table's
    /// (set by the planner), or built from the file schema at the first
    /// partition's execution (a scan not planned by a table).
    learned_key: OnceLock<Arc<LearnedKey>>,
}

/// From this many files on, a scan already split into the target number of
/// groups is not regrouped (see `repartitioned`).
const MANY_FILES: usize = 10_000;

/// Filters DataFusion pushed into the scan while optimizing (the dynamic
/// filters of TopK and of hash-join build sides), and the file source from
/// before they were added, so that they can be taken out again.
#[derive(Clone, Default)]
struct RuntimeFilters {
    filters: Vec<Arc<dyn PhysicalExpr>>,
    static_source: Option<Arc<dyn FileSource>>,
}

/// What a scan is, besides the files it reads: the one description every
/// form of a lakefusion scan holds — [`PartitionedScanExec`], the carrier
/// that takes it to Ballista executors, and their one wire message.
///
/// The files, projection, predicate, limit and statistics are DataFusion's
/// [`FileScanConfig`], which travels beside it (in a carrier, as the child
/// Ballista narrows).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanDescription {
    /// The table's name for display (its root URL unless named).
    pub table: Arc<str>,
    /// Partitions left after pruning.
    pub selected_partitions: usize,
    /// Partitions in the table's index.
    pub total_partitions: usize,
    /// Filters answered exactly by partition pruning.
    pub partition_filters: Vec<Expr>,
    /// Filters used to prune row groups (still applied above the scan).
    pub row_group_filters: Vec<Expr>,
    /// Retries and timeouts for the scan's reads (the table's).
    pub retry: Option<RetryPolicy>,
    /// Why a bucketed table's scan declares no `Hash` partitioning, shown in
    /// `EXPLAIN` (planning side only: not sent to executors).
    pub bucketing_note: Option<Arc<str>>,
    /// Files of the selected partitions the scan leaves out because their
    /// footer statistics (collected, or learned by earlier scans) prove
    /// that no row of theirs passes the filters, or that the limit's rows
    /// are in earlier files; shown in `EXPLAIN` (planning side only).
    pub files_skipped: usize,
}

impl PartitionedScanExec {
    /// A scan of what `description` describes.
    ///
    /// This is the one constructor every scan goes through — planned by a
    /// table, decoded by a codec, rebuilt on a Ballista executor — so the
    /// behaviour that is not data, such as the per-file type check
    /// (`scan::schema`), is attached here and cannot be lost
    /// on the way.
    pub fn new(description: ScanDescription, mut config: FileScanConfig) -> Self {
        // The check is behaviour, not data: it is never on the wire.
        config.expr_adapter_factory = Some(Arc::new(StrictExprAdapterFactory));
        // The stream is wrapped in `cooperative()` (as DataSourceExec's is), so
        // DataFusion need not add a CooperativeExec that would spend the task
        // budget a second time per batch.
        let properties = Arc::new(
            PlanProperties::new(
                config.eq_properties(),
                config.output_partitioning(),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )
            .with_scheduling_type(SchedulingType::Cooperative),
        );
        Self {
            description,
            config: Arc::new(config),
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            sibling_state: Arc::default(),
            work_stealing: true,
            runtime: RuntimeFilters::default(),
            learned_key: OnceLock::new(),
        }
    }

    /// The same scan, keeping what its files teach under `key`: the
    /// table's, built once per table, rather than one of its own built from
    /// its file schema at its first execution (as a decoded scan does).
    pub(crate) fn with_learned_key(self, key: Arc<LearnedKey>) -> Self {
        Self {
            learned_key: OnceLock::from(key),
            ..self
        }
    }

    /// What this scan is, besides its files.
    pub fn description(&self) -> &ScanDescription {
        &self.description
    }

    /// The dynamic filters DataFusion pushed into this scan (empty before the
    /// physical optimizer's post-optimization filter pushdown, or when
    /// `datafusion.optimizer.enable_dynamic_filter_pushdown` is off).
    pub fn runtime_filters(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.runtime.filters
    }

    /// The same scan without its dynamic filters.
    ///
    /// A dynamic filter is true of one query only (the rows that can still
    /// reach *this* TopK or join), so whatever outlives the query — a cache
    /// entry — must be filled without it.
    pub fn without_runtime_filters(&self) -> Self {
        let Some(source) = &self.runtime.static_source else {
            return self.clone();
        };
        let mut config = self.config.as_ref().clone();
        config.file_source = Arc::clone(source);
        let mut scan = self.with_config(config);
        scan.runtime = RuntimeFilters::default();
        scan
    }

    /// The same scan, with DataFusion's work stealing between its partitions
    /// on or off (it is on by default).
    ///
    /// Work stealing lets sibling partitions take files from one shared queue,
    /// which balances uneven files, but makes which rows land in which output
    /// partition depend on timing. It is only correct when every partition of
    /// this plan instance runs in this process in one round, so it is off for
    /// scans decoded for a distributed task (each task runs one partition of
    /// its own copy) and for the scan inside a `CachedScanExec` (whose
    /// partitions may come from separate fills).
    pub fn with_work_stealing(mut self, enabled: bool) -> Self {
        self.work_stealing = enabled;
        self
    }

    /// The table's display name.
    pub fn table(&self) -> &str {
        &self.description.table
    }

    /// DataFusion's file-scan description this node executes.
    pub fn file_scan_config(&self) -> &FileScanConfig {
        &self.config
    }

    /// `(selected, total)` partitions.
    pub fn partitions(&self) -> (usize, usize) {
        (
            self.description.selected_partitions,
            self.description.total_partitions,
        )
    }

    /// The number of files this scan reads.
    pub fn file_count(&self) -> usize {
        self.config.file_groups.iter().map(|g| g.len()).sum()
    }

    /// Filters answered exactly by partition pruning.
    pub fn partition_filters(&self) -> &[Expr] {
        &self.description.partition_filters
    }

    /// Filters used to prune row groups.
    pub fn row_group_filters(&self) -> &[Expr] {
        &self.description.row_group_filters
    }

    /// The retries and timeouts of the scan's reads.
    pub fn retry(&self) -> Option<RetryPolicy> {
        self.description.retry
    }

    /// The row limit, if one was pushed into the scan.
    pub fn limit(&self) -> Option<usize> {
        self.config.limit
    }

    /// This scan as `tasks` copies that together read each file once, for
    /// an engine that runs one copy per task (datafusion-distributed's
    /// `DistributedLeafExec`). Every copy has this scan's partition count,
    /// padded with empty groups, so a stage's plan is the same in every task.
    ///
    /// A scan that declares `Hash` partitioning or an order keeps its file
    /// groups whole — group `g` goes to copy `g % tasks` — because they are
    /// what the declaration was proven for: each group stays in order, and
    /// a bucket's rows all land in one task's partition `g`. (That keeps
    /// `Hash` true within each copy, not across tasks: an engine that
    /// numbers shuffled partitions across tasks must not split a scan that
    /// declares it — `datafusion_distributed` keeps it in one task.) Any other scan is
    /// regrouped into `partitions × tasks` groups first, as
    /// [`repartitioned`](ExecutionPlan::repartitioned) does for more
    /// partitions in one process, and the groups are dealt round robin.
    pub fn split_across(&self, tasks: usize, config: &ConfigOptions) -> Result<Vec<Self>> {
        let tasks = tasks.max(1);
        let partitions = self.config.file_groups.len().max(1);
        let keep_groups = self.config.output_partitioning.is_some()
            || self.properties.eq_properties.output_ordering().is_some();
        let groups = if keep_groups {
            self.config.file_groups.clone()
        } else {
            let regrouped = self.config.repartitioned(
                partitions * tasks,
                config.optimizer.repartition_file_min_size,
                None,
            )?;
            Self::downcast_config(regrouped)
                .map(|c| c.file_groups)
                .unwrap_or_else(|| self.config.file_groups.clone())
        };
        let mut dealt = vec![Vec::with_capacity(partitions); tasks];
        if keep_groups {
            for (g, group) in groups.into_iter().enumerate() {
                for (t, copy) in dealt.iter_mut().enumerate() {
                    copy.push(if g % tasks == t {
                        group.clone()
                    } else {
                        FileGroup::default()
                    });
                }
            }
        } else {
            for (g, group) in groups.into_iter().enumerate() {
                dealt[g % tasks].push(group);
            }
            let width = dealt.iter().map(Vec::len).fold(partitions, usize::max);
            for copy in &mut dealt {
                copy.resize_with(width, FileGroup::default);
            }
        }
        Ok(dealt
            .into_iter()
            .map(|file_groups| {
                let mut config = self.config.as_ref().clone();
                config.file_groups = file_groups;
                self.with_config(config)
            })
            .collect())
    }

    fn with_config(&self, config: FileScanConfig) -> Self {
        let scan = Self::new(self.description.clone(), config);
        let mut scan = scan.with_work_stealing(self.work_stealing);
        scan.runtime = self.runtime.clone();
        // The file schema is the same: so is the key.
        scan.learned_key = self.learned_key.clone();
        scan
    }

    fn downcast_config(source: Option<Arc<dyn DataSource>>) -> Option<FileScanConfig> {
        source.and_then(|s| s.downcast_ref::<FileScanConfig>().cloned())
    }
}

impl fmt::Debug for PartitionedScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedScanExec")
            .field("table", &self.description.table)
            .field("partitions", &self.partitions())
            .field("files", &self.file_count())
            .field("limit", &self.config.limit)
            .finish()
    }
}

fn join_exprs(exprs: &[Expr]) -> String {
    exprs
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `table=…, partitions=K/N, files=F`, then DataFusion's own description of
/// the file scan (`FileScanConfig`'s: file groups capped as DataFusion caps
/// them, projection, limit, ordering, declared partitioning, the Parquet
/// predicate and pruning predicate), then what only a lakefusion scan has:
/// the filters partition pruning answered, the row-group filters, why a
/// bucketed table declares no partitioning, and the dynamic filters.
impl DisplayAs for PartitionedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let description = &self.description;
        if matches!(t, DisplayFormatType::TreeRender) {
            writeln!(f, "table={}", description.table)?;
            writeln!(
                f,
                "partitions={}/{}",
                description.selected_partitions, description.total_partitions
            )?;
            return DataSource::fmt_as(self.config.as_ref(), t, f);
        }
        write!(
            f,
            "PartitionedScanExec: table={}, partitions={}/{}, files={}, ",
            description.table,
            description.selected_partitions,
            description.total_partitions,
            self.file_count()
        )?;
        DataSource::fmt_as(self.config.as_ref(), t, f)?;
        if !description.partition_filters.is_empty() {
            write!(
                f,
                ", partition_filters=[{}]",
                join_exprs(&description.partition_filters)
            )?;
        }
        if !description.row_group_filters.is_empty() {
            write!(
                f,
                ", row_group_filters=[{}]",
                join_exprs(&description.row_group_filters)
            )?;
        }
        if description.files_skipped > 0 {
            write!(
                f,
                ", files_skipped_by_statistics={}",
                description.files_skipped
            )?;
        }
        if let Some(note) = &description.bucketing_note {
            write!(f, ", bucketing=not declared ({note})")?;
        }
        if !self.runtime.filters.is_empty() {
            let filters: Vec<_> = self.runtime.filters.iter().map(|e| e.to_string()).collect();
            write!(f, ", runtime_filters=[{}]", filters.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for PartitionedScanExec {
    fn name(&self) -> &str {
        "PartitionedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::scan::leaf_without_children(self, children)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.config.apply_expressions(f)
    }

    /// Regroups the files into `target_partitions` groups with DataFusion's
    /// `FileGroupPartitioner` (splitting large files by byte range when
    /// `repartition_file_min_size` allows), like a `ListingTable` scan —
    /// except a scan of at least 10,000 files already in that many groups,
    /// which stays as planned.
    fn repartitioned(
        &self,
        target_partitions: usize,
        config: &ConfigOptions,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        // With this many files in as many groups as asked for, regrouping by
        // byte ranges balances little and copies every file description.
        if self.file_count() >= MANY_FILES && self.config.file_groups.len() >= target_partitions {
            return Ok(None);
        }
        let repartitioned = self.config.repartitioned(
            target_partitions,
            config.optimizer.repartition_file_min_size,
            self.properties.eq_properties.output_ordering(),
        )?;
        Ok(Self::downcast_config(repartitioned).map(|c| Arc::new(self.with_config(c)) as _))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let groups = self.config.file_groups.len();
        if partition >= groups.max(1) {
            return internal_err!(
                "PartitionedScanExec of table {} has {groups} partitions, partition {partition} requested",
                self.description.table
            );
        }
        let siblings = if self.work_stealing {
            self.sibling_state.for_partition(
                &self.config,
                groups,
                context.session_config().options(),
            )
        } else {
            None
        };
        Ok(Box::pin(
            LazyScanStream::new(
                Arc::clone(&self.description.table),
                Arc::clone(&self.config),
                self.schema(),
                partition,
                context,
                &self.metrics,
                siblings,
                Arc::clone(
                    self.learned_key
                        .get_or_init(|| LearnedKey::new(self.config.file_schema())),
                ),
            )
            .with_retry(self.description.retry),
        ))
    }

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(self.with_config(self.config.as_ref().clone())))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        let mut metrics = self.metrics.clone_inner();
        for metric in self.config.file_source.metrics().clone_inner().iter() {
            metrics.push(Arc::clone(metric));
        }
        Some(metrics)
    }

    /// The file scan's statistics, cut by the pushed limit. Every output
    /// partition applies the limit on its own, so over the whole scan a limit
    /// `L` with `K` groups yields between `L` and `K × L` rows: the row count
    /// stays `Exact` only when the whole scan has no more than `L` rows.
    #[allow(deprecated)]
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let stats = self.config.partition_statistics(partition)?;
        let Some(limit) = self.config.limit else {
            return Ok(stats);
        };
        let within_limit = matches!(stats.num_rows, Precision::Exact(n) if n <= limit);
        let mut limited = Arc::unwrap_or_clone(stats).with_fetch(Some(limit), 0, 1)?;
        if partition.is_none() && self.config.file_groups.len() > 1 && !within_limit {
            limited.num_rows = limited.num_rows.to_inexact();
            limited.total_byte_size = limited.total_byte_size.to_inexact();
        }
        Ok(Arc::new(limited))
    }

    /// Takes DataFusion's dynamic filters (offered in the post-optimization
    /// phase only) into the Parquet source, whose opener evaluates their
    /// current state each time it opens a file: files and partitions whose
    /// statistics or partition values cannot match are skipped, and row
    /// groups are pruned with them. They are used for pruning only, so the
    /// scan reports every filter as not pushed down and its producer keeps
    /// applying it; that is also what makes
    /// [`without_runtime_filters`](Self::without_runtime_filters) safe.
    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let filters: Vec<_> = child_pushdown_result
            .parent_filters
            .into_iter()
            .map(|f| f.filter)
            .collect();
        let not_pushed = vec![PushedDown::No; filters.len()];
        if phase != FilterPushdownPhase::Post || filters.is_empty() {
            return Ok(FilterPushdownPropagation::with_parent_pushdown_result(
                not_pushed,
            ));
        }
        let pushed = self.config.try_pushdown_filters(filters.clone(), config)?;
        let Some(config) = Self::downcast_config(pushed.updated_node) else {
            return Ok(FilterPushdownPropagation::with_parent_pushdown_result(
                not_pushed,
            ));
        };
        let mut scan = self.with_config(config);
        scan.runtime
            .static_source
            .get_or_insert_with(|| Arc::clone(&self.config.file_source));
        scan.runtime.filters.extend(filters);
        Ok(
            FilterPushdownPropagation::with_parent_pushdown_result(not_pushed)
                .with_updated_node(Arc::new(scan) as _),
        )
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        Self::downcast_config(self.config.with_fetch(limit))
            .map(|c| Arc::new(self.with_config(c)) as _)
    }

    fn fetch(&self) -> Option<usize> {
        self.config.limit
    }
}

#[cfg(test)]
impl PartitionedScanExec {
    /// A scan of table `t` (one `Int64` column) over `groups` on the
    /// local disk: for unit tests of what a scan plans and declares.
    pub(crate) fn for_tests(groups: Vec<datafusion_datasource::file_groups::FileGroup>) -> Self {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::physical_plan::ParquetSource;
        use datafusion::execution::object_store::ObjectStoreUrl;
        use datafusion_datasource::file_scan_config::FileScanConfigBuilder;
        use datafusion_datasource::TableSchema;
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let source = ParquetSource::new(TableSchema::builder(schema).build());
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_groups(groups)
                .build();
        let description = ScanDescription {
            table: Arc::from("t"),
            selected_partitions: 1,
            total_partitions: 1,
            partition_filters: Vec::new(),
            row_group_filters: Vec::new(),
            retry: None,
            bucketing_note: None,
            files_skipped: 0,
        };
        Self::new(description, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_datasource::file_groups::FileGroup;
    use datafusion_datasource::PartitionedFile;

    /// A scan of `files` files of 1 MiB, in `groups` groups.
    fn scan(files: usize, groups: usize) -> PartitionedScanExec {
        let all: FileGroup = (0..files)
            .map(|i| PartitionedFile::new(format!("t/part-{i:07}.parquet"), 1 << 20))
            .collect();
        PartitionedScanExec::for_tests(all.split_files(groups))
    }

    #[test]
    fn a_scan_of_many_files_in_enough_groups_is_not_regrouped() {
        let options = ConfigOptions::default();
        assert!(scan(MANY_FILES, 4)
            .repartitioned(4, &options)
            .unwrap()
            .is_none());
        // Fewer groups than asked for, or fewer files: DataFusion regroups.
        assert!(scan(MANY_FILES, 2)
            .repartitioned(4, &options)
            .unwrap()
            .is_some());
        assert!(scan(100, 4).repartitioned(4, &options).unwrap().is_some());
    }
}
