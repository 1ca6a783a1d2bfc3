//! [`PartitionedTableBuilder`]: declares a table and runs its one-time discovery.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::listing::ListingTableUrl;

use super::discovery::{
    index_from, infer_schema, object_store_for, without_partition_columns, Lister,
};
use super::provider::PartitionedTable;
use crate::error::{Error, Result};
use crate::lake::definition::check_spec;
use crate::lake::layout::{Bucketing, SortKey, TableSort};
use crate::lake::partitioning::PartitionSpec;
use crate::lake::snapshot::{snapshot, Scope};
use crate::lake::{OverwriteMode, TableDefinition, TableOptions};
use crate::store::{RetryPolicy, StoreKind};

impl PartitionedTable {
    /// Starts declaring a table rooted at `root` (a URL such as
    /// `file:///data/events/`, `s3://bucket/events/` or `memory:///events/`, or
    /// a local path).
    pub fn builder(root: impl Into<String>) -> PartitionedTableBuilder {
        PartitionedTableBuilder {
            root: root.into(),
            name: None,
            partition_columns: Vec::new(),
            schema: None,
            merge_schema: false,
            options: TableOptions::default(),
        }
    }
}

/// Declares a [`PartitionedTable`]; [`build`](Self::build) discovers it.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use datafusion::arrow::datatypes::DataType;
/// # use datafusion::prelude::SessionContext;
/// # use lakefusion::PartitionedTable;
/// # async fn f() -> datafusion::error::Result<()> {
/// let ctx = SessionContext::new();
/// let events = PartitionedTable::builder("file:///data/events/")
///     .partition_column("date", DataType::Date32)
///     .partition_column("region", DataType::Utf8)
///     .build(&ctx.state())
///     .await?;
/// ctx.register_table("events", Arc::new(events))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PartitionedTableBuilder {
    root: String,
    name: Option<String>,
    partition_columns: Vec<(String, DataType)>,
    schema: Option<SchemaRef>,
    merge_schema: bool,
    /// Everything else the table is declared with, as the definition keeps it.
    options: TableOptions,
}

impl PartitionedTableBuilder {
    /// Declares the next partition directory level, `name=value`, with the type
    /// its values parse into. Declare them outermost first. Without any, the
    /// columns are inferred from the directories, as Utf8.
    pub fn partition_column(mut self, name: impl Into<String>, data_type: DataType) -> Self {
        self.partition_columns.push((name.into(), data_type));
        self
    }

    /// The schema of the data inside the files (without partition columns).
    /// Without it, the schema is read from one file's footer (or, with
    /// [`merge_schema`](Self::merge_schema), from all of them).
    pub fn schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Reads every file's footer at `build()` and merges their schemas, like
    /// Spark's `mergeSchema` (default: off — the schema is the first file's,
    /// and a column only later files have is not part of the table).
    ///
    /// Merging follows the per-file rules scans apply: a column some files
    /// lack is nullable (they read as NULL), a column stored in a narrower
    /// or another lossless variant of a type in some files takes the wider
    /// type (`Int32` and `Int64` give `Int64`), and a real conflict (`Utf8`
    /// in one file, `Int64` in another) is an error naming the file. Columns
    /// appear in the order files introduce them. Ignored when
    /// [`schema`](Self::schema) is given.
    pub fn merge_schema(mut self, merge: bool) -> Self {
        self.merge_schema = merge;
        self
    }

    /// Reads every file's footer at `build()`/`refresh()`, for exact row counts
    /// and column min/max (default: off, so discovery is one listing and one
    /// footer however many files there are).
    pub fn collect_statistics(mut self, collect: bool) -> Self {
        self.options.collect_statistics = collect;
        self
    }

    /// Only files whose names end with this are data files (default `.parquet`).
    pub fn file_extension(mut self, extension: impl Into<String>) -> Self {
        self.options.file_extension = extension.into();
        self
    }

    /// Declares the table hash-bucketed on `column` into `buckets` buckets.
    ///
    /// `INSERT INTO` then writes one file per bucket and partition, assigning
    /// rows with DataFusion's own `RepartitionExec` hash, and records the
    /// bucketing in each file's metadata. `build()`/`refresh()` read every
    /// footer's metadata, and a scan declares `Partitioning::Hash([column],
    /// buckets)` — so that `GROUP BY column` and joins of tables bucketed
    /// alike need no `RepartitionExec` — only when every file it reads says it
    /// was written with exactly this bucketing, the column is projected, and
    /// the session's `target_partitions` equals `buckets`. Otherwise the scan
    /// declares nothing and DataFusion repartitions as usual.
    pub fn bucket_by(mut self, column: impl Into<String>, buckets: usize) -> Self {
        self.options.bucketing = Some(Bucketing {
            column: column.into(),
            buckets,
        });
        self
    }

    /// Declares that the rows of every file are sorted by `keys` (columns
    /// inside the files; `"ts"` means `ts ASC NULLS LAST`, see [`SortKey`]).
    ///
    /// `INSERT INTO` then sorts what it writes and records the order in each
    /// file's metadata. A scan declares the order to DataFusion — so that
    /// `ORDER BY ts`, `ORDER BY ts LIMIT n` and windows over `ts` need no
    /// `SortExec` — only where it is true of each output partition as a
    /// whole: the partition's files are each sorted and, by their footer
    /// min/max, follow each other without overlapping (files are grouped so
    /// that they do, as DataFusion's
    /// `FileScanConfig::split_groups_by_statistics_with_target_partitions`
    /// groups them). Proving that needs footer statistics, so a sorted table
    /// reads every footer at `build()`/`refresh()`, as with
    /// `collect_statistics(true)`. Files whose metadata records another
    /// order, files whose ranges overlap in a way no grouping avoids, and
    /// NULLs in a sort column of a multi-file partition make the scan declare
    /// nothing.
    ///
    /// Without this call, a table that collects statistics adopts the order
    /// every one of its files records (tables our writer filled), trusting
    /// only files that record it.
    pub fn sort_order<K: Into<SortKey>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        let keys: Vec<SortKey> = keys.into_iter().map(Into::into).collect();
        self.options.sort = (!keys.is_empty()).then_some(TableSort {
            keys,
            declared: true,
        });
        self
    }

    /// Retries transient read failures with bounded backoff and bounds every
    /// request with a timeout (see [`RetryPolicy`]), for discovery and for
    /// every scan of the table (default: none — the store's own client
    /// behaviour, and no timeout).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = Some(policy);
        self
    }

    /// How many listings discovery (`build()`, `refresh()`,
    /// `refresh_partitions`) runs at once on an object store (default 64; 1:
    /// one listing after another). A listing that has read a page (1,000
    /// keys) hands the rest of its key range, cut where the keys vary, to new
    /// listings that start there (S3's `StartAfter`), up to this many at
    /// once; the local disk and `memory://` are listed with one listing.
    /// Splitting is adaptive: it starts only once the store's pages are
    /// seen to wait, and where a listing after an offset reads from the
    /// start and filters (object_store's default `list_with_offset`: S3
    /// Express One Zone, Azurite, `InMemory` behind another scheme, a
    /// wrapper that does not forward the method) the listing notices slow
    /// range listings and lists the root with one listing instead, so no
    /// store needs a setting here.
    pub fn listing_concurrency(mut self, listings: usize) -> Self {
        self.options.listing_concurrency = listings;
        self
    }

    /// What `INSERT OVERWRITE` replaces (default
    /// [`OverwriteMode::Partitions`]: exactly the partitions the write
    /// produces; [`OverwriteMode::Table`]: the whole table). DDL:
    /// `OPTIONS ('overwrite_mode' 'table')`. An unpartitioned table is
    /// always replaced whole.
    pub fn overwrite_mode(mut self, mode: OverwriteMode) -> Self {
        self.options.overwrite_mode = mode;
        self
    }

    /// The name `EXPLAIN` and errors use for the table (default: the root URL).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs discovery: lists the root into a partition index, reads the schema
    /// from one footer (unless given) and, with `collect_statistics(true)`,
    /// every footer. This is the only I/O the table does outside of scans.
    pub async fn build(self, state: &dyn Session) -> Result<PartitionedTable> {
        let mut root_str = self.root.clone();
        if !root_str.ends_with('/') {
            root_str.push('/');
        }
        let root = ListingTableUrl::parse(&root_str).map_err(|e| Error::InvalidUrl {
            url: self.root.clone(),
            source: Box::new(e),
        })?;
        let declared = (!self.partition_columns.is_empty())
            .then(|| PartitionSpec::new(self.partition_columns.clone()));
        if let Some(spec) = &declared {
            check_spec(&root, spec)?;
        }
        let options = self.options;
        let store = object_store_for(state, &root, options.retry)?;
        // Before a definition exists (the listing finds the spec), the
        // kind of storage is the root's.
        let kind = StoreKind::of_root(&root);
        let lister = Lister::new(
            &store,
            &root,
            kind,
            options.listing_concurrency,
            options.retry,
        );
        let listing = snapshot(
            &lister,
            Scope::Table(declared.as_ref()),
            &options.file_extension,
        )
        .await?;
        let spec = listing.spec;
        let file_schema = match self.schema {
            // Checked by the definition: no partition column inside.
            Some(schema) => schema,
            // Writers such as polars keep the partition columns inside every
            // file as well; like DuckDB, the directory's value is the one read.
            None => without_partition_columns(
                infer_schema(state, &store, &listing.partitions, self.merge_schema).await?,
                &spec,
            ),
        };
        let name = self.name.unwrap_or_else(|| root.to_string());
        let mut definition =
            TableDefinition::try_new(name.into(), root, spec, file_schema, options)?;
        let mut discovered = index_from(state, &store, &definition, listing.partitions).await?;
        if definition.options.sort.is_none() {
            if let Some(keys) = discovered.common_sort_order.take() {
                // Every file records this order, so every file is trusted.
                definition = definition.adopting_sort(keys);
                discovered.index = discovered.index.with_all_sorted();
            }
        }
        let table = PartitionedTable::new(definition, discovered.index);
        // Computed once, here, rather than by the first query to plan.
        table.compute_statistics();
        Ok(table)
    }
}
