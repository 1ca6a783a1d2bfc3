//! [`PartitionedTable`]: the `TableProvider` — a thin layer over the
//! definition, the shared index, the planner and the sink.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{ScanArgs, ScanResult, Session};
use datafusion::common::not_impl_err;
use datafusion::common::{DFSchema, ScalarValue, Statistics};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::utils::{Guarantee, LiteralGuarantee};
use datafusion::physical_expr::LexRequirement;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_datasource::sink::DataSinkExec;

use super::builder::PartitionedTableBuilder;
use super::definition::TableDefinition;
use super::discovery::{dirs_at_level, index_from, object_store_for, Lister};
use super::index::{PartitionIndex, SharedIndex};
use super::layout::{Bucketing, SortKey, TableSort};
use super::planner::{matches, plan_scan, table_statistics};
use super::pushdown::classify;
use super::spec::PartitionSpec;
use crate::error::{Error, Result, TableProblem};
use crate::store::RetryPolicy;
use crate::write::PartitionedSink;

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
    index: Arc<SharedIndex>,
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
            index: Arc::new(SharedIndex::new(index)),
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
    pub(crate) fn with_retry(self, retry: Option<RetryPolicy>) -> Self {
        self.assembling(|d| d.retry = retry)
    }

    /// The retries and timeouts of the table's reads, if set with
    /// [`PartitionedTableBuilder::retry`].
    pub fn retry_config(&self) -> Option<RetryPolicy> {
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
        self.index.snapshot()
    }

    /// Lists the table root again (and re-reads footers if the table collects
    /// statistics), then swaps in the new index. The schema and partition spec
    /// stay those of `build()`. Files an `INSERT INTO` on this table published
    /// while the refresh listed are kept, whether the listing saw them or not.
    pub async fn refresh(&self, state: &dyn Session) -> Result<()> {
        let definition = &self.definition;
        let ticket = self.index.begin_refresh();
        let store = object_store_for(state, &definition.root, definition.retry)?;
        let lister = Lister::of_table(&store, definition);
        let listing = lister
            .list_partitions(Some(&definition.spec), &definition.file_extension)
            .await?;
        let index = index_from(state, &store, definition, listing.partitions)
            .await?
            .index;
        self.index
            .finish_refresh(ticket, &definition.spec, index)
            .map_err(|e| index_error(definition, e))?;
        self.compute_statistics();
        Ok(())
    }

    /// Re-lists only the partitions `predicate` can select — an expression
    /// over partition columns, e.g. `col("date").gt_eq(lit(today))` — and
    /// swaps them, whole, into the index in one step; files elsewhere stay
    /// as they were (a file another writer added there is not seen until a
    /// refresh that covers it). New partition directories are found: the
    /// levels up to the last column the predicate names are walked with
    /// delimiter listings, or, where it pins a column to values (`=`, `IN`),
    /// taken directly from them with no request (in our writer's spelling:
    /// `hour=7`); each selected directory is then listed (several at once),
    /// and so is every directory the index already holds for the predicate,
    /// in its writer's spelling (`hour=07`, `ts=10%3A00`). Only partitions
    /// the refresh looked at are replaced: a partition under a listed
    /// directory, or under a walked level where its directory is gone. So a
    /// partial refresh of an unchanged lake changes no answer. A directory
    /// of a pinned value that another writer spelled otherwise and that the
    /// index does not hold yet is not found this way: [`refresh`](Self::refresh),
    /// or a predicate that does not pin that column, finds it. Directories
    /// that are not partitions (`tmp/`) are judged by the same Hive rules
    /// as in `build()`. Footers are read for the re-listed partitions only,
    /// if the table collects statistics or layout. Like
    /// [`refresh`](Self::refresh), files an `INSERT INTO` published
    /// meanwhile are kept, and no query sees a mix of two listings of one
    /// partition.
    ///
    /// A predicate that names no partition column re-lists everything (it is
    /// [`refresh`](Self::refresh)); one that names another column is an error.
    pub async fn refresh_partitions(&self, state: &dyn Session, predicate: Expr) -> Result<()> {
        let definition = &self.definition;
        let spec = &definition.spec;
        let mut levels = 0;
        for column in predicate.column_refs() {
            let Some(i) = spec.index_of(&column.name) else {
                return Err(Error::InvalidTable {
                    root: definition.root.to_string(),
                    problem: TableProblem::RefreshPredicate {
                        column: column.name.clone(),
                        partition_columns: spec
                            .columns()
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    },
                });
            };
            levels = levels.max(i + 1);
        }
        if levels == 0 {
            return self.refresh(state).await;
        }
        let evaluation = |source: DataFusionError| Error::InvalidTable {
            root: definition.root.to_string(),
            problem: TableProblem::RefreshEvaluation {
                source: Box::new(source),
            },
        };
        let pinned = pinned_values(state, &predicate, spec, levels).map_err(evaluation)?;
        let ticket = self.index.begin_refresh();
        // The directories the table holds for the predicate, as their
        // writers spelled them: listed again whatever our writer would
        // call them (`hour=07` for `hour = 7`).
        let known = {
            let current = self.index.snapshot();
            let selected = matches(state, &predicate, current.values(), &definition.name)
                .map_err(evaluation)?;
            dirs_at_level(&current, &selected, &definition.root, levels)
        };
        let store = object_store_for(state, &definition.root, definition.retry)?;
        let lister = Lister::of_table(&store, definition);
        let (listing, coverage) = lister
            .list_selected_partitions(
                spec,
                &definition.file_extension,
                levels,
                &pinned,
                known,
                |candidates| {
                    matches(state, &predicate, candidates, &definition.name).map_err(evaluation)
                },
            )
            .await?;
        let listed = index_from(state, &store, definition, listing.partitions)
            .await?
            .index;
        self.index
            .finish_partial_refresh(ticket, spec, listed, |current| {
                current
                    .partitions()
                    .iter()
                    .map(|partition| coverage.covers(partition.dir()))
                    .collect()
            })
            .map_err(|e| index_error(definition, e))?;
        self.compute_statistics();
        Ok(())
    }

    /// Computes the whole table's statistics for the current index (a pass
    /// over every file), so that no query planning pays for it.
    pub(crate) fn compute_statistics(&self) {
        table_statistics(&self.definition, &self.index());
    }

    /// Deletes what writes that never finished left under the table root,
    /// if last modified more than `older_than` ago, and returns the paths
    /// deleted: the files of every write record (the visible files of an
    /// `INSERT` that failed during its commit and could not delete them, or
    /// whose process died then — readers that list the root see those), and
    /// the record itself; then the hidden temporary files of a cancelled
    /// `INSERT` or a writer process that died (never read: that part only
    /// frees space). Pick a bound longer than any write takes: a running
    /// write's record and temporary files look the same. One listing of the
    /// records and one of the root, one delete per file. The table's own
    /// index is not changed: call [`refresh`](Self::refresh) after it if
    /// this table listed such files.
    pub async fn remove_abandoned_writes(
        &self,
        state: &dyn Session,
        older_than: std::time::Duration,
    ) -> Result<Vec<object_store::path::Path>> {
        let definition = &self.definition;
        let store = object_store_for(state, &definition.root, definition.retry)?;
        crate::write::cleanup::remove_abandoned(&store, &definition.root, older_than).await
    }
}

/// A refresh whose listing cannot become an index.
fn index_error(definition: &TableDefinition, source: DataFusionError) -> Error {
    Error::InvalidTable {
        root: definition.root.to_string(),
        problem: TableProblem::Index {
            source: Box::new(source),
        },
    }
}

/// For each of the first `levels` partition columns, the values
/// `predicate` pins it to (DataFusion's `LiteralGuarantee`: an `=` or `IN`
/// that must hold), if any.
fn pinned_values(
    state: &dyn Session,
    predicate: &Expr,
    spec: &PartitionSpec,
    levels: usize,
) -> datafusion::error::Result<Vec<Option<Vec<ScalarValue>>>> {
    let schema = Schema::new(spec.fields());
    let df_schema = DFSchema::try_from(schema)?;
    let physical = state.create_physical_expr(predicate.clone(), &df_schema)?;
    let guarantees = LiteralGuarantee::analyze(&physical);
    Ok(spec
        .columns()
        .iter()
        .take(levels)
        .map(|column| {
            guarantees
                .iter()
                .find(|g| g.column.name() == column.name && g.guarantee == Guarantee::In)
                .map(|g| {
                    let mut values: Vec<ScalarValue> = g.literals.iter().cloned().collect();
                    values.sort_by_key(|v| v.to_string());
                    values
                })
        })
        .collect())
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

    /// Plans a scan from the partition index alone: no I/O (see
    /// [`planner`](super::planner)).
    async fn scan_with_args<'a>(
        &self,
        state: &dyn Session,
        args: ScanArgs<'a>,
    ) -> DFResult<ScanResult> {
        let scan = plan_scan(&self.definition, &self.index(), state, &args)?;
        Ok(ScanResult::new(Arc::new(scan)))
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

    /// The whole table's statistics, computed once per index snapshot (at
    /// `build()`/`refresh()`, or after an `INSERT` at the first call).
    fn statistics(&self) -> Option<Statistics> {
        Some(
            table_statistics(&self.definition, &self.index())
                .as_ref()
                .clone(),
        )
    }
}
