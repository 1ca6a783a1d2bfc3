//! [`PartitionedTableBuilder`]: declares a table and runs its one-time discovery.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::Statistics;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::DataFusionError;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore};

use super::index::{Partition, PartitionIndex};
use super::layout::{Bucketing, SortKey, TableSort, BUCKETING_KEY, BUCKET_KEY, SORT_ORDER_KEY};
use super::listing::list_partitions;
use super::provider::{PartitionedTable, TableDefinition};
use super::spec::PartitionSpec;
use crate::error::{Error, Result};
use crate::scan::reader::footer_without_panics;
use crate::store::{ResilientStore, RetryConfig};

/// How many footers `collect_statistics(true)` reads concurrently.
const FOOTER_READ_CONCURRENCY: usize = 16;

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
    retry: Option<RetryConfig>,
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
    /// Without it, the schema is read from one file's footer.
    pub fn schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
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
    /// request with a timeout (see [`RetryConfig`]), for discovery and for
    /// every scan of the table (default: none — the store's own client
    /// behaviour, and no timeout).
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = Some(config);
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
            reason: e.to_string(),
        })?;
        for (i, (name, _)) in self.partition_columns.iter().enumerate() {
            if self.partition_columns[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::InvalidTable {
                    root: root.to_string(),
                    reason: format!("partition column '{name}' is declared twice"),
                });
            }
        }
        let store = object_store_for(state, &root, self.retry)?;
        let declared = (!self.partition_columns.is_empty())
            .then(|| PartitionSpec::new(self.partition_columns.clone()));
        let listing =
            list_partitions(&store, &root, declared.as_ref(), &self.file_extension).await?;
        let spec = listing.spec;
        let file_schema = match &self.schema {
            Some(schema) => Arc::clone(schema),
            None => infer_schema(state, &store, &listing.partitions).await?,
        };
        for column in spec.columns() {
            if file_schema.field_with_name(&column.name).is_ok() {
                return Err(Error::InvalidTable {
                    root: root.to_string(),
                    reason: format!(
                        "'{}' is declared as a partition column but is also a column inside the files",
                        column.name
                    ),
                });
            }
        }
        if let Some(b) = &self.bucketing {
            let known = file_schema.field_with_name(&b.column).is_ok();
            if !known || b.buckets == 0 {
                return Err(Error::InvalidTable {
                    root: root.to_string(),
                    reason: format!(
                        "bucket_by('{}', {}): {}",
                        b.column,
                        b.buckets,
                        if known {
                            "the bucket count must be at least 1"
                        } else {
                            "no such column inside the files (partition columns cannot be bucket keys)"
                        }
                    ),
                });
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
            return Err(Error::InvalidTable {
                root: root.to_string(),
                reason: format!(
                    "sort_order [{}]: '{}': {problem}",
                    SortKey::encode_all(&self.sort_order),
                    key.column
                ),
            });
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
        Ok(PartitionedTable::new(definition, discovered.index))
    }
}

/// The store a table's discovery reads through: the runtime's, with the
/// table's retries and timeouts.
pub(super) fn object_store_for(
    state: &dyn Session,
    root: &ListingTableUrl,
    retry: Option<RetryConfig>,
) -> Result<Arc<dyn ObjectStore>> {
    let store = state
        .runtime_env()
        .object_store(root.object_store())
        .map_err(|e| Error::InvalidUrl {
            url: root.to_string(),
            reason: e.to_string(),
        })?;
    Ok(ResilientStore::wrap(store, retry))
}

/// Reads one footer, with the session's Parquet options, so the inferred types
/// (e.g. string views) are the ones DataFusion's own Parquet tables would use.
async fn infer_schema(
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    partitions: &[Partition],
) -> Result<SchemaRef> {
    let Some(first) = partitions.iter().flat_map(|p| &p.files).next() else {
        return Ok(Arc::new(Schema::empty()));
    };
    let format = parquet_format(state);
    let read = format.infer_schema(state, store, std::slice::from_ref(&first.meta));
    footer_without_panics(read, DataFusionError::Execution)
        .await
        .map_err(|e| Error::ReadFile {
            path: first.meta.location.to_string(),
            source: Box::new(e),
        })
}

fn parquet_format(state: &dyn Session) -> ParquetFormat {
    ParquetFormat::default().with_options(state.table_options().parquet.clone())
}

/// What discovery found: the index, and the sort order every file records
/// (when they all record the same non-empty one), which a table that
/// declared none adopts.
pub(super) struct Discovered {
    pub index: PartitionIndex,
    pub common_sort_order: Option<Vec<SortKey>>,
}

/// What our writer recorded in one file's key-value metadata.
struct RecordedLayout {
    bucketing: Option<String>,
    bucket: Option<String>,
    sort_order: Option<String>,
}

/// Builds the index from a listing: reads every footer's statistics if the
/// table collects them, and every footer's layout metadata if the table is
/// bucketed, sorted, or collects statistics (to adopt a recorded order).
pub(super) async fn index_from(
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    definition: &TableDefinition,
    mut partitions: Vec<Partition>,
) -> Result<Discovered> {
    let metas: Vec<ObjectMeta> = partitions
        .iter()
        .flat_map(|p| p.files.iter().map(|f| f.meta.clone()))
        .collect();
    if definition.collect_statistics {
        let format = &parquet_format(state);
        let file_schema = &definition.file_schema;
        // `buffered` keeps the listing order, so results zip back onto the files.
        let stats: Vec<Statistics> = futures::stream::iter(metas.clone())
            .map(|meta| async move {
                let read = format.infer_stats(state, store, Arc::clone(file_schema), &meta);
                footer_without_panics(read, DataFusionError::Execution)
                    .await
                    .map_err(|e| Error::ReadFile {
                        path: meta.location.to_string(),
                        source: Box::new(e),
                    })
            })
            .buffered(FOOTER_READ_CONCURRENCY)
            .try_collect()
            .await?;
        let files = partitions.iter_mut().flat_map(|p| p.files.iter_mut());
        for (file, stats) in files.zip(stats) {
            file.statistics = Some(Arc::new(stats));
        }
    }
    let reads_layout = definition.bucketing.is_some()
        || definition.sort.is_some()
        || definition.collect_statistics;
    let mut common_sort_order = None;
    if reads_layout && !metas.is_empty() {
        let layouts = read_layouts(state, store, metas).await?;
        let expected = definition.bucketing.as_ref().map(Bucketing::metadata_value);
        let files = partitions.iter_mut().flat_map(|p| p.files.iter_mut());
        for (file, layout) in files.zip(&layouts) {
            // A file written another way (another tool, another count) has
            // no bucket: the scan then declares nothing.
            file.bucket = match (&definition.bucketing, &expected, &layout.bucketing) {
                (Some(bucketing), Some(expected), Some(spec)) if spec == expected => layout
                    .bucket
                    .as_deref()
                    .and_then(|b| b.parse::<u32>().ok())
                    .filter(|b| (*b as usize) < bucketing.buckets),
                _ => None,
            };
            file.sorted = definition
                .sort
                .as_ref()
                .is_some_and(|sort| sort.trusts(layout.sort_order.as_deref()));
        }
        let first = layouts[0].sort_order.as_deref();
        if layouts.iter().all(|l| l.sort_order.as_deref() == first) {
            common_sort_order = first
                .and_then(SortKey::decode_all)
                .filter(|keys| !keys.is_empty());
        }
    }
    let index =
        PartitionIndex::try_new(&definition.spec, partitions).map_err(|e| Error::InvalidTable {
            root: definition.root.to_string(),
            reason: e.to_string(),
        })?;
    Ok(Discovered {
        index,
        common_sort_order,
    })
}

/// Reads the layout metadata of every file (in listing order).
async fn read_layouts(
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    metas: Vec<ObjectMeta>,
) -> Result<Vec<RecordedLayout>> {
    let size_hint = state.table_options().parquet.global.metadata_size_hint;
    let footer_cache = state.runtime_env().cache_manager.get_file_metadata_cache();
    let footer_cache = &footer_cache;
    futures::stream::iter(metas)
        .map(|meta| async move {
            // Through the runtime's footer cache, like `infer_stats` and the
            // scans: a table that also collects statistics, and the first
            // query after `build()`, do not read the footer again.
            let reader = DFParquetMetadata::new(store.as_ref(), &meta)
                .with_metadata_size_hint(size_hint)
                .with_file_metadata_cache(Some(Arc::clone(footer_cache)));
            let footer = footer_without_panics(reader.fetch_metadata(), DataFusionError::Execution)
                .await
                .map_err(|e| Error::ReadFile {
                    path: meta.location.to_string(),
                    source: Box::new(e),
                })?;
            let kv = footer.file_metadata().key_value_metadata();
            let get = |key: &str| {
                kv.and_then(|kv| kv.iter().find(|e| e.key == key))
                    .and_then(|e| e.value.clone())
            };
            Ok::<_, Error>(RecordedLayout {
                bucketing: get(BUCKETING_KEY),
                bucket: get(BUCKET_KEY),
                sort_order: get(SORT_ORDER_KEY),
            })
        })
        .buffered(FOOTER_READ_CONCURRENCY)
        .try_collect()
        .await
}
