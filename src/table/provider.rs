//! [`PartitionedTable`]: the `TableProvider` — a thin layer over the
//! definition, the shared index, the planner and the sink.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{ScanArgs, ScanResult, Session};
use datafusion::common::not_impl_err;
use datafusion::common::Statistics;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::LexRequirement;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_datasource::sink::DataSinkExec;

use super::discovery::{refresh, table_store};
use super::maintenance::{compact, plan_delete, CompactOptions, Compaction};
use super::planner::{plan_scan, table_statistics};
use super::pushdown::classify;
use crate::error::Result;
use crate::lake::index::PartitionIndex;
use crate::lake::layout::{Bucketing, SortKey};
use crate::lake::partitioning::PartitionSpec;
use crate::lake::{SharedIndex, TableDefinition};
use crate::store::RetryPolicy;
use crate::write::{recover, PartitionedSink, Recovered, SinkMode};

/// A Hive-partitioned Parquet table on any object store.
///
/// Built once with [`PartitionedTable::builder`], which lists the table root
/// into a [`PartitionIndex`] the table holds. From then on planning a query is
/// pure computation over that index: partition filters are evaluated against
/// the partition values, and the surviving files become a
/// [`PartitionedScanExec`](crate::PartitionedScanExec) — no object-store request is made until the scan's
/// stream is polled. [`refresh`](Self::refresh) lists again and swaps the whole
/// index atomically, so a scan always sees exactly one listing.
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::arrow::array::{Int64Array, RecordBatch};
/// # use datafusion::arrow::datatypes::{DataType, Field, Schema};
/// use datafusion::prelude::SessionContext;
/// use lakefusion::PartitionedTable;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datafusion::error::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # for (date, region, amount) in [("2026-03-01", "eu", 10), ("2026-03-01", "us", 20), ("2026-03-02", "eu", 30)] {
/// #     let part = dir.path().join(format!("date={date}/region={region}"));
/// #     std::fs::create_dir_all(&part)?;
/// #     let schema = Arc::new(Schema::new(vec![Field::new("amount", DataType::Int64, false)]));
/// #     let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![amount]))])?;
/// #     let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(part.join("part-0.parquet"))?, schema, None)?;
/// #     w.write(&batch)?;
/// #     w.close()?;
/// # }
/// # let root = format!("file://{}/", dir.path().display());
/// let ctx = SessionContext::new();
/// let events = PartitionedTable::builder(root)       // e.g. "file:///data/events/"
///     .partition_column("date", DataType::Date32)
///     .partition_column("region", DataType::Utf8)
///     .build(&ctx.state())                           // lists the root once, here
///     .await?;
/// ctx.register_table("events", Arc::new(events))?;
///
/// let batches = ctx
///     .sql("SELECT region, sum(amount) AS total FROM events \
///           WHERE date = DATE '2026-03-01' GROUP BY region ORDER BY region")
///     .await?
///     .collect()
///     .await?;
/// datafusion::assert_batches_eq!(
///     ["+--------+-------+",
///      "| region | total |",
///      "+--------+-------+",
///      "| eu     | 10    |",
///      "| us     | 20    |",
///      "+--------+-------+"],
///     &batches
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PartitionedTable {
    definition: Arc<TableDefinition>,
    /// Shared with the sinks of `INSERT INTO`, which add their files.
    index: Arc<SharedIndex>,
}

impl PartitionedTable {
    /// A table of a checked definition and its discovered index: no I/O.
    pub(crate) fn new(definition: TableDefinition, index: PartitionIndex) -> Self {
        Self {
            definition: Arc::new(definition),
            index: Arc::new(SharedIndex::new(index)),
        }
    }

    /// What the table is (for codecs that ship it).
    #[cfg_attr(not(feature = "wire"), allow(dead_code))]
    pub(crate) fn definition(&self) -> &TableDefinition {
        &self.definition
    }

    /// The order the rows of the table's files are sorted in, declared with
    /// [`PartitionedTableBuilder::sort_order`](crate::PartitionedTableBuilder::sort_order) or adopted from our writer's
    /// metadata; empty if none.
    pub fn sort_order(&self) -> &[SortKey] {
        self.definition
            .options
            .sort
            .as_ref()
            .map_or(&[], |s| &s.keys)
    }

    /// The retries and timeouts of the table's reads, if set with
    /// [`PartitionedTableBuilder::retry`](crate::PartitionedTableBuilder::retry).
    pub fn retry_policy(&self) -> Option<RetryPolicy> {
        self.definition.options.retry
    }

    /// How the table is bucketed, if it is (see
    /// [`PartitionedTableBuilder::bucket_by`](crate::PartitionedTableBuilder::bucket_by)).
    pub fn bucketing(&self) -> Option<&Bucketing> {
        self.definition.options.bucketing.as_ref()
    }

    /// The name `EXPLAIN` and errors use for the table.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// Whether `build`/`refresh` read every footer for statistics.
    pub fn collects_statistics(&self) -> bool {
        self.definition.options.collect_statistics
    }

    /// The suffix that marks data files.
    pub fn file_extension(&self) -> &str {
        &self.definition.options.file_extension
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
        refresh(state, &self.definition, &self.index).await?;
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
        super::discovery::refresh_partitions(state, &self.definition, &self.index, predicate)
            .await?;
        self.compute_statistics();
        Ok(())
    }

    /// Computes the whole table's statistics for the current index (a pass
    /// over every file), so that no query planning pays for it.
    pub(crate) fn compute_statistics(&self) {
        table_statistics(&self.definition, &self.index());
    }

    /// Finishes or takes back what writes that never ended left under the
    /// table root (a writer process that died, a write whose clean-up
    /// failed), as each write's journal says: a write that had committed
    /// is finished (the files it replaced are deleted, whatever its age: a
    /// writer still finishing is not disturbed); one that had not is taken
    /// back if last modified more than `older_than` ago (its files
    /// deleted); claims older than that whose write is gone are released;
    /// then the hidden temporary files of cancelled or killed writes older
    /// than that are deleted. Pick a bound longer than any write takes: a
    /// running write looks the same as a dead one. Readers that honour the
    /// journal see the same rows before and after; readers that do not
    /// (Spark, DuckDB, `ListingTable`) stop seeing the leftovers. One
    /// listing of the journal, one of the claims and one of the root, and
    /// one delete per object.
    pub async fn recover(
        &self,
        state: &dyn Session,
        older_than: std::time::Duration,
    ) -> Result<Recovered> {
        let store = table_store(state, &self.definition)?;
        recover(&store, &self.definition, older_than).await
    }

    /// Rewrites, in each partition `predicate` selects (an expression over
    /// partition columns; `None`: every partition), the files smaller than
    /// `options.target_file_bytes` into files of about that size, and
    /// returns what it did. A partition with fewer than `options.min_files`
    /// such files is left as it is. The same rows stay, with every
    /// declaration true: a sorted table's files are merged in its order
    /// (sorted again only where a file is not), a bucketed table's rows stay
    /// in their buckets, statistics are read from the new files' footers.
    ///
    /// Each partition is one replacing write (see the crate guide's commit
    /// protocol): readers that honour the journal see it before or after,
    /// never both; readers that do not (Spark, DuckDB, `ListingTable`) see
    /// the new files appear, then the old ones disappear, file by file — so
    /// for a moment both. A partition whose files another write replaces
    /// meanwhile fails with [`Error::WriteConflict`](crate::Error::WriteConflict)
    /// and is left as it was; partitions compacted before it stay compacted.
    pub async fn compact(
        &self,
        state: &dyn Session,
        predicate: Option<Expr>,
        options: CompactOptions,
    ) -> Result<Compaction> {
        let done = compact(&self.definition, &self.index, state, predicate, &options).await?;
        self.compute_statistics();
        Ok(done)
    }

    /// [`recover`](Self::recover), returning only the paths it deleted (the
    /// name this had before writes could replace files).
    pub async fn remove_abandoned_writes(
        &self,
        state: &dyn Session,
        older_than: std::time::Duration,
    ) -> Result<Vec<object_store::path::Path>> {
        Ok(self.recover(state, older_than).await?.removed)
    }
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
        Arc::clone(self.definition.table_schema())
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
            .map(|f| classify(f, &self.definition.spec, self.definition.table_schema()).into())
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

    /// Plans a scan from the partition index alone: no I/O (the table's
    /// `planner` module).
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
        let mode = match insert_op {
            InsertOp::Append => SinkMode::Append,
            InsertOp::Overwrite => SinkMode::Overwrite,
            InsertOp::Replace => {
                return not_impl_err!(
                    "table {}: REPLACE INTO is not supported (rows have no keys to replace by); \
                     INSERT OVERWRITE replaces partitions",
                    self.definition.name
                )
            }
        };
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
        let sink =
            PartitionedSink::new(Arc::clone(&self.definition), Arc::clone(&self.index), mode);
        // A sorted table's files must each be sorted: DataFusion sorts the
        // input (the sink takes one partition, so the whole input) first.
        let sort_requirement = self.definition.lex_ordering().map(LexRequirement::from);
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::new(sink),
            sort_requirement,
        )))
    }

    /// `DELETE FROM t WHERE <predicate over partition columns>`: when the
    /// plan runs, removes every file of the partitions the predicate
    /// selects (from a fresh listing: partitions other processes wrote
    /// count), as one replacing write, and returns the rows removed
    /// (counted from the files' footers). A predicate that names a column
    /// inside the files is refused: removing some rows of a file would mean
    /// rewriting it. No predicate removes every file.
    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        plan_delete(&self.definition, &self.index, state, filters)
    }

    /// `TRUNCATE t`: [`delete_from`](Self::delete_from) with no predicate.
    async fn truncate(&self, state: &dyn Session) -> DFResult<Arc<dyn ExecutionPlan>> {
        plan_delete(&self.definition, &self.index, state, Vec::new())
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
