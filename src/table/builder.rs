//! [`PartitionedTableBuilder`]: declares a table and runs its one-time discovery.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::listing::ListingTableUrl;

use super::definition::{TableDefinition, DEFAULT_LISTING_CONCURRENCY};
use super::discovery::{
    index_from, infer_schema, object_store_for, without_partition_columns, Lister,
};
use super::layout::{Bucketing, SortKey, TableSort};
use super::provider::PartitionedTable;
use super::spec::PartitionSpec;
use crate::error::{Error, Result, TableProblem};
use crate::store::RetryPolicy;

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
    collect_statistics: bool,
    file_extension: String,
    bucketing: Option<Bucketing>,
    sort_order: Vec<SortKey>,
    retry: Option<RetryPolicy>,
    merge_schema: bool,
    listing_concurrency: usize,
}

impl PartitionedTableBuilder {
    pub(crate) fn new(root: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            name: None,
            partition_columns: Vec::new(),
            schema: None,
            collect_statistics: false,
            file_extension: ".parquet".to_string(),
            bucketing: None,
            sort_order: Vec::new(),
            retry: None,
            merge_schema: false,
            listing_concurrency: DEFAULT_LISTING_CONCURRENCY,
        }
    }

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
        self.collect_statistics = collect;
        self
    }

    /// Only files whose names end with this are data files (default `.parquet`).
    pub fn file_extension(mut self, extension: impl Into<String>) -> Self {
        self.file_extension = extension.into();
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
        self.bucketing = Some(Bucketing {
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
        self.sort_order = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Retries transient read failures with bounded backoff and bounds every
    /// request with a timeout (see [`RetryPolicy`]), for discovery and for
    /// every scan of the table (default: none — the store's own client
    /// behaviour, and no timeout).
    pub fn retry(mut self, config: RetryPolicy) -> Self {
        self.retry = Some(config);
        self
    }

    /// How many listings discovery (`build()`, `refresh()`,
    /// `refresh_partitions`) runs at once on an object store (default 64; 1:
    /// one listing after another). A listing that has read a page (1,000
    /// keys) hands the rest of its key range, cut where the keys vary, to new
    /// listings that start there (S3's `StartAfter`), up to this many at
    /// once; the local disk and `memory://` are listed with one listing.
    /// On a store that lists after an offset by listing from the start and
    /// filtering (object_store does so for S3 Express One Zone and the
    /// Azurite emulator), each range costs a listing from the start: use 1
    /// there.
    pub fn listing_concurrency(mut self, listings: usize) -> Self {
        self.listing_concurrency = listings.max(1);
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
        let invalid = |problem| Error::InvalidTable {
            root: root.to_string(),
            problem,
        };
        for (i, (name, _)) in self.partition_columns.iter().enumerate() {
            if self.partition_columns[..i].iter().any(|(n, _)| n == name) {
                return Err(invalid(TableProblem::DuplicatePartitionColumn {
                    column: name.clone(),
                }));
            }
        }
        let store = object_store_for(state, &root, self.retry)?;
        let declared = (!self.partition_columns.is_empty())
            .then(|| PartitionSpec::new(self.partition_columns.clone()));
        let listing = Lister::new(&store, &root, self.listing_concurrency, self.retry)
            .list_partitions(declared.as_ref(), &self.file_extension)
            .await?;
        let spec = listing.spec;
        let file_schema = match &self.schema {
            Some(schema) => {
                if let Some(column) = spec
                    .columns()
                    .iter()
                    .find(|c| schema.field_with_name(&c.name).is_ok())
                {
                    return Err(invalid(TableProblem::PartitionColumnInSchema {
                        column: column.name.clone(),
                    }));
                }
                Arc::clone(schema)
            }
            // Writers such as polars keep the partition columns inside every
            // file as well; like DuckDB, the directory's value is the one read.
            None => without_partition_columns(
                infer_schema(state, &store, &listing.partitions, self.merge_schema).await?,
                &spec,
            ),
        };
        if let Some(b) = &self.bucketing {
            let known = file_schema.field_with_name(&b.column).is_ok();
            if !known || b.buckets == 0 {
                return Err(invalid(TableProblem::Bucketing {
                    column: b.column.clone(),
                    buckets: b.buckets,
                    problem: if known {
                        "the bucket count must be at least 1"
                    } else {
                        "no such column inside the files (partition columns cannot be bucket keys)"
                    },
                }));
            }
        }
        for (i, key) in self.sort_order.iter().enumerate() {
            let problem = if file_schema.field_with_name(&key.column).is_err() {
                "no such column inside the files (partition columns cannot be sort keys)"
            } else if self.sort_order[..i].iter().any(|k| k.column == key.column) {
                "the column appears twice"
            } else {
                continue;
            };
            return Err(invalid(TableProblem::SortOrder {
                order: SortKey::encode_all(&self.sort_order),
                column: key.column.clone(),
                problem,
            }));
        }
        let declared_sort = !self.sort_order.is_empty();
        let mut definition = TableDefinition::new(
            self.name.unwrap_or_else(|| root.to_string()),
            root,
            spec,
            file_schema,
            // Sorted scans are proven from footer min/max.
            self.collect_statistics || declared_sort,
            self.file_extension,
        );
        definition.bucketing = self.bucketing;
        definition.retry = self.retry;
        definition.listing_concurrency = self.listing_concurrency;
        definition.sort = declared_sort.then_some(TableSort {
            keys: self.sort_order,
            declared: true,
        });
        let mut discovered = index_from(state, &store, &definition, listing.partitions).await?;
        if definition.sort.is_none() {
            if let Some(keys) = discovered.common_sort_order.take() {
                // Every file records this order, so every file is trusted.
                definition.sort = Some(TableSort {
                    keys,
                    declared: false,
                });
                discovered.index = discovered.index.with_all_sorted();
            }
        }
        let table = PartitionedTable::new(definition, discovered.index);
        // Computed once, here, rather than by the first query to plan.
        table.compute_statistics();
        Ok(table)
    }
}
