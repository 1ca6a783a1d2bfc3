//! [`PartitionedTable`]: the `TableProvider`.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{ScanArgs, ScanResult, Session};
use datafusion::common::not_impl_err;
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, LexRequirement, PhysicalSortExpr};
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion_datasource::sink::DataSinkExec;
use datafusion_datasource::PartitionedFile;
use datafusion_datasource::TableSchema;

use super::builder::{index_from, object_store_for, PartitionedTableBuilder};
use super::index::{IndexedFile, Partition, PartitionIndex};
use super::layout::{Bucketing, SortKey, TableSort};
use super::listing::list_partitions;
use super::pushdown::{classify, classify_for_scan, FilterKind};
use super::spec::PartitionSpec;
use crate::error::Result;
use crate::scan::schema::StrictSchemaAdapterFactory;
use crate::scan::{PartitionedScanExec, ScanDescription};
use crate::store::RetryConfig;
use crate::write::PartitionedSink;

/// What a table is, independent of which files it currently has.
#[derive(Debug)]
pub(crate) struct TableDefinition {
    pub name: Arc<str>,
    pub root: ListingTableUrl,
    pub spec: PartitionSpec,
    pub file_schema: SchemaRef,
    /// File columns, then partition columns.
    pub table_schema: SchemaRef,
    pub collect_statistics: bool,
    pub file_extension: String,
    pub bucketing: Option<Bucketing>,
    pub sort: Option<TableSort>,
    pub retry: Option<RetryConfig>,
}

impl TableDefinition {
    pub(crate) fn new(
        name: String,
        root: ListingTableUrl,
        spec: PartitionSpec,
        file_schema: SchemaRef,
        collect_statistics: bool,
        file_extension: String,
    ) -> Self {
        let mut fields: Vec<_> = file_schema.fields().iter().cloned().collect();
        fields.extend(spec.fields());
        let table_schema = Arc::new(Schema::new_with_metadata(
            fields,
            file_schema.metadata().clone(),
        ));
        Self {
            name: name.into(),
            root,
            spec,
            file_schema,
            table_schema,
            collect_statistics,
            file_extension,
            bucketing: None,
            sort: None,
            retry: None,
        }
    }

    /// The table's sort order as DataFusion's ordering over the table schema.
    fn lex_ordering(&self) -> Option<LexOrdering> {
        let sort = self.sort.as_ref()?;
        let keys = sort.keys.iter().map(|key| {
            let index = self.table_schema.index_of(&key.column).ok()?;
            Some(PhysicalSortExpr::new(
                Arc::new(Column::new(&key.column, index)),
                SortOptions {
                    descending: key.descending,
                    nulls_first: key.nulls_first,
                },
            ))
        });
        LexOrdering::new(keys.collect::<Option<Vec<_>>>()?)
    }
}

/// A Hive-partitioned Parquet table on any object store.
///
/// Built once with [`PartitionedTable::builder`], which lists the table root
/// into a [`PartitionIndex`] the table holds. From then on planning a query is
/// pure computation over that index: partition filters are evaluated against
/// the partition values, and the surviving files become a
/// [`PartitionedScanExec`] — no object-store request is made until the scan's
/// stream is polled. [`refresh`](Self::refresh) lists again and swaps the whole
/// index atomically, so a scan always sees exactly one listing.
#[derive(Debug)]
pub struct PartitionedTable {
    definition: Arc<TableDefinition>,
    /// Shared with the sinks of `INSERT INTO`, which add their files.
    index: Arc<RwLock<Arc<PartitionIndex>>>,
}

impl PartitionedTable {
    /// Starts declaring a table rooted at `root` (a URL such as
    /// `file:///data/events/`, `s3://bucket/events/` or `memory:///events/`, or
    /// a local path).
    pub fn builder(root: impl Into<String>) -> PartitionedTableBuilder {
        PartitionedTableBuilder::new(root)
    }

    pub(crate) fn new(definition: TableDefinition, index: PartitionIndex) -> Self {
        Self {
            definition: Arc::new(definition),
            index: Arc::new(RwLock::new(Arc::new(index))),
        }
    }

    /// A table from an already discovered definition and index: no I/O. Used
    /// by codecs that ship a table's listing to another process.
    pub fn from_parts(
        name: String,
        root: ListingTableUrl,
        spec: PartitionSpec,
        file_schema: SchemaRef,
        collect_statistics: bool,
        file_extension: String,
        index: PartitionIndex,
    ) -> Self {
        let definition = TableDefinition::new(
            name,
            root,
            spec,
            file_schema,
            collect_statistics,
            file_extension,
        );
        Self::new(definition, index)
    }

    /// Changes the definition of a table being assembled (a builder or a
    /// codec): once scans exist the definition is shared and stays as it is.
    #[cfg_attr(not(feature = "ballista"), allow(dead_code))]
    fn assembling(mut self, change: impl FnOnce(&mut TableDefinition)) -> Self {
        if let Some(definition) = Arc::get_mut(&mut self.definition) {
            change(definition);
        }
        self
    }

    /// Declares the table's bucketing (for a table being assembled).
    #[cfg_attr(not(feature = "ballista"), allow(dead_code))]
    pub(crate) fn with_bucketing(self, bucketing: Option<Bucketing>) -> Self {
        self.assembling(|d| d.bucketing = bucketing)
    }

    /// Declares the table's sort order (for a table being assembled).
    #[cfg_attr(not(feature = "ballista"), allow(dead_code))]
    pub(crate) fn with_sort(self, sort: Option<TableSort>) -> Self {
        self.assembling(|d| d.sort = sort)
    }

    /// The order the rows of the table's files are sorted in, declared with
    /// [`PartitionedTableBuilder::sort_order`] or adopted from our writer's
    /// metadata; empty if none.
    pub fn sort_order(&self) -> &[SortKey] {
        self.definition.sort.as_ref().map_or(&[], |s| &s.keys)
    }

    /// The table's sort order with how far it trusts files (for codecs).
    #[cfg_attr(not(feature = "ballista"), allow(dead_code))]
    pub(crate) fn table_sort(&self) -> Option<&TableSort> {
        self.definition.sort.as_ref()
    }

    /// Sets the table's retries and timeouts (for a table being assembled).
    #[cfg_attr(not(feature = "ballista"), allow(dead_code))]
    pub(crate) fn with_retry(self, retry: Option<RetryConfig>) -> Self {
        self.assembling(|d| d.retry = retry)
    }

    /// The retries and timeouts of the table's reads, if set with
    /// [`PartitionedTableBuilder::retry`].
    pub fn retry_config(&self) -> Option<RetryConfig> {
        self.definition.retry
    }

    /// How the table is bucketed, if it is (see
    /// [`PartitionedTableBuilder::bucket_by`]).
    pub fn bucketing(&self) -> Option<&Bucketing> {
        self.definition.bucketing.as_ref()
    }

    /// The name `EXPLAIN` and errors use for the table.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// Whether `build`/`refresh` read every footer for statistics.
    pub fn collects_statistics(&self) -> bool {
        self.definition.collect_statistics
    }

    /// The suffix that marks data files.
    pub fn file_extension(&self) -> &str {
        &self.definition.file_extension
    }

    /// The table root URL.
    pub fn root(&self) -> &ListingTableUrl {
        &self.definition.root
    }

    /// The partition spec (declared or inferred).
    pub fn partition_spec(&self) -> &PartitionSpec {
        &self.definition.spec
    }

    /// The schema of the data inside the files (no partition columns).
    pub fn file_schema(&self) -> SchemaRef {
        Arc::clone(&self.definition.file_schema)
    }

    /// The current partition index (a snapshot: a later `refresh` does not
    /// change the returned value).
    pub fn index(&self) -> Arc<PartitionIndex> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc;
        // the Arc inside is still whole.
        Arc::clone(&self.index.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Lists the table root again (and re-reads footers if the table collects
    /// statistics), then swaps in the new index. The schema and partition spec
    /// stay those of `build()`.
    pub async fn refresh(&self, state: &dyn Session) -> Result<()> {
        let definition = &self.definition;
        let store = object_store_for(state, &definition.root, definition.retry)?;
        let listing = list_partitions(
            &store,
            &definition.root,
            Some(&definition.spec),
            &definition.file_extension,
        )
        .await?;
        let index = index_from(state, &store, definition, listing.partitions)
            .await?
            .index;
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(index);
        Ok(())
    }

    /// Indices of the partitions that satisfy every partition filter.
    fn prune(
        &self,
        index: &PartitionIndex,
        filters: &[Expr],
        state: &dyn Session,
    ) -> DFResult<Vec<usize>> {
        let all = index.partitions().len();
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return Ok((0..all).collect());
        };
        let batch = index.values();
        let df_schema = DFSchema::try_from(batch.schema())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        let result = physical.evaluate(batch)?.into_array(batch.num_rows())?;
        let mask = result.as_boolean_opt().ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(format!(
                "partition filter on table {} did not evaluate to a boolean",
                self.definition.name
            ))
        })?;
        // NULL (unknown) is not a match: `shop = 1` must not return the NULL partition.
        Ok((0..all)
            .filter(|&i| mask.is_valid(i) && mask.value(i))
            .collect())
    }

    /// One file group per bucket, and the `Hash` partitioning they make true,
    /// when the table is bucketed, every selected file says (in its metadata)
    /// which bucket it holds, and there are as many target partitions as
    /// buckets. The bucket column must exist in the table schema; whether
    /// the scan projects it is DataFusion's to check (it falls back to
    /// unknown partitioning when the column is projected away).
    fn bucket_groups(
        &self,
        index: &PartitionIndex,
        selected: &[usize],
        target_partitions: usize,
    ) -> Option<(Vec<FileGroup>, Partitioning)> {
        let bucketing = self.definition.bucketing.as_ref()?;
        if bucketing.buckets != target_partitions {
            return None;
        }
        let column = self
            .definition
            .table_schema
            .index_of(&bucketing.column)
            .ok()?;
        let mut groups = vec![Vec::new(); bucketing.buckets];
        for &i in selected {
            let partition = &index.partitions()[i];
            for file in &partition.files {
                let bucket = file.bucket? as usize;
                groups
                    .get_mut(bucket)?
                    .push(partitioned_file(partition, file));
            }
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
    fn statistics_of(&self, index: &PartitionIndex, selected: &[usize]) -> Statistics {
        let definition = &self.definition;
        let files: Vec<_> = selected
            .iter()
            .flat_map(|&i| &index.partitions()[i].files)
            .collect();
        let file_stats: Option<Vec<&Statistics>> =
            files.iter().map(|f| f.statistics.as_deref()).collect();
        let mut stats = match file_stats.as_ref().and_then(|s| {
            Statistics::try_merge_iter(s.iter().copied(), &definition.file_schema).ok()
        }) {
            Some(merged) if !files.is_empty() => merged,
            _ => {
                let mut s = Statistics::new_unknown(&definition.file_schema);
                s.total_byte_size =
                    Precision::Inexact(files.iter().map(|f| f.meta.size as usize).sum());
                if files.is_empty() {
                    s.num_rows = Precision::Exact(0);
                    s.total_byte_size = Precision::Exact(0);
                }
                s
            }
        };
        for c in 0..definition.spec.len() {
            let mut col = ColumnStatistics::new_unknown();
            let values = selected
                .iter()
                .map(|&i| &index.partitions()[i].values[c])
                .filter(|v| !v.is_null());
            let (min, max) = values.fold(
                (None::<&ScalarValue>, None::<&ScalarValue>),
                |(lo, hi), v| {
                    (
                        Some(lo.map_or(v, |lo| if v < lo { v } else { lo })),
                        Some(hi.map_or(v, |hi| if v > hi { v } else { hi })),
                    )
                },
            );
            // Inexact: a partition directory may hold files with no rows.
            col.min_value = min.map_or(Precision::Absent, |v| Precision::Inexact(v.clone()));
            col.max_value = max.map_or(Precision::Absent, |v| Precision::Inexact(v.clone()));
            if file_stats.is_some() {
                let nulls: usize = selected
                    .iter()
                    .filter(|&&i| index.partitions()[i].values[c].is_null())
                    .flat_map(|&i| &index.partitions()[i].files)
                    .filter_map(|f| {
                        f.statistics
                            .as_ref()
                            .and_then(|s| s.num_rows.get_value().copied())
                    })
                    .sum();
                col.null_count = Precision::Exact(nulls);
            }
            stats.column_statistics.push(col);
        }
        stats
    }
}

/// A file of the index as DataFusion's file scan takes it.
fn partitioned_file(partition: &Partition, file: &IndexedFile) -> PartitionedFile {
    let pf = PartitionedFile::new_from_meta(file.meta.clone())
        .with_partition_values(partition.values.clone());
    match &file.statistics {
        Some(stats) => pf.with_statistics(Arc::clone(stats)),
        None => pf,
    }
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

fn describe(schema: &Schema) -> String {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    fields.join(", ")
}

#[async_trait]
impl TableProvider for PartitionedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.definition.table_schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| classify(f, &self.definition.spec, &self.definition.table_schema).into())
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let args = ScanArgs::default()
            .with_projection(projection.map(|p| p.as_slice()))
            .with_filters(Some(filters))
            .with_limit(limit);
        Ok(self.scan_with_args(state, args).await?.into_inner())
    }

    /// Plans a scan from the partition index alone: no I/O.
    async fn scan_with_args<'a>(
        &self,
        state: &dyn Session,
        args: ScanArgs<'a>,
    ) -> DFResult<ScanResult> {
        let definition = &self.definition;
        let index = self.index();
        let (mut partition_filters, mut row_group_filters) = (Vec::new(), Vec::new());
        for filter in args.filters().unwrap_or(&[]) {
            match classify_for_scan(filter, &definition.spec, &definition.table_schema) {
                FilterKind::Partition => partition_filters.push(filter.clone()),
                FilterKind::RowGroup => row_group_filters.push(filter.clone()),
                FilterKind::Unsupported => {}
            }
        }
        let selected = self.prune(&index, &partition_filters, state)?;

        let target_partitions = state.config_options().execution.target_partitions.max(1);
        // The table's order holds for the scan only if every file is sorted in it.
        let ordering = definition.lex_ordering().filter(|_| {
            selected
                .iter()
                .flat_map(|&i| &index.partitions()[i].files)
                .all(|f| f.sorted)
        });
        let schema = &definition.table_schema;
        let (groups, partitioning, ordering) = if let Some((groups, partitioning)) =
            self.bucket_groups(&index, &selected, target_partitions)
        {
            match ordering.and_then(|o| Some((order_each_group(&groups, schema, &o)?, o))) {
                Some((ordered, o)) => (ordered, Some(partitioning), Some(o)),
                None => (groups, Some(partitioning), None),
            }
        } else {
            let all: FileGroup = selected
                .iter()
                .flat_map(|&i| {
                    let partition = &index.partitions()[i];
                    partition
                        .files
                        .iter()
                        .map(move |file| partitioned_file(partition, file))
                })
                .collect();
            let in_order = ordering
                .and_then(|o| Some((group_in_order(&all, schema, &o, target_partitions)?, o)));
            match in_order {
                // One empty partition, as `ListingTable`'s `EmptyExec` has:
                // with none, an ORDER BY above finds no single partition to
                // sort and fails the plan's sanity check.
                _ if all.is_empty() => (vec![FileGroup::default()], None, None),
                Some((groups, o)) => (groups, None, Some(o)),
                None => (all.split_files(target_partitions), None, None),
            }
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
        if let Some(predicate) = conjunction(row_group_filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(definition.table_schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let object_store_url = definition.root.object_store();
        let config = FileScanConfigBuilder::new(object_store_url, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(args.projection().map(|p| p.to_vec()))?
            .with_limit(args.limit())
            .with_statistics(self.statistics_of(&index, &selected))
            .with_output_partitioning(partitioning)
            .with_output_ordering(ordering.into_iter().collect())
            .with_expr_adapter(Some(Arc::new(StrictSchemaAdapterFactory)))
            .build();
        let exec = PartitionedScanExec::new(ScanDescription {
            table: Arc::clone(&definition.name),
            config,
            selected_partitions: selected.len(),
            total_partitions: index.partitions().len(),
            partition_filters,
            row_group_filters,
            retry: definition.retry,
        });
        Ok(ScanResult::new(Arc::new(exec)))
    }

    /// `INSERT INTO` / `DataFrame::write_table`: appends the input as new
    /// files through a [`PartitionedSink`]; the next scan sees them.
    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return not_impl_err!(
                "table {}: only appending inserts are supported (got {insert_op}); files are never overwritten",
                self.definition.name
            );
        }
        let (table, rows) = (self.schema(), input.schema());
        let mismatch = table.fields().len() != rows.fields().len()
            || table
                .fields()
                .iter()
                .zip(rows.fields())
                .any(|(t, r)| t.data_type() != r.data_type());
        if mismatch {
            return Err(DataFusionError::Plan(format!(
                "table {}: the inserted rows ({}) do not match the table's columns ({})",
                self.definition.name,
                describe(&rows),
                describe(&table)
            )));
        }
        let sink = PartitionedSink::new(Arc::clone(&self.definition), Arc::clone(&self.index));
        // A sorted table's files must each be sorted: DataFusion sorts the
        // input (the sink takes one partition, so the whole input) first.
        let sort_requirement = self.definition.lex_ordering().map(LexRequirement::from);
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::new(sink),
            sort_requirement,
        )))
    }

    fn statistics(&self) -> Option<Statistics> {
        let index = self.index();
        let all: Vec<usize> = (0..index.partitions().len()).collect();
        Some(self.statistics_of(&index, &all))
    }
}
