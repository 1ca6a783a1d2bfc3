//! Discovery: everything a table learns from storage, at `build()` and
//! `refresh()` only — one listing of the root into partitions
//! ([`listing`]), refreshes that install a new listing ([`refresh`]), the schema from one footer or all of them, and, when the
//! table needs them, every footer's statistics and layout metadata
//! (bucketing, sort order). Never while planning or executing a query.

mod refresh;

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::Statistics;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::DataFusionError;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore};

pub(in crate::table) use crate::lake::listing::Lister;
pub(in crate::table) use refresh::{refresh, refresh_partitions};

use crate::error::{Error, Result, TableProblem};
use crate::lake::index::{ListedPartition, PartitionIndex};
use crate::lake::layout::{SortKey, BUCKETING_KEY, BUCKET_KEY, SORT_ORDER_KEY};
use crate::lake::partitioning::PartitionSpec;
use crate::lake::TableDefinition;
use crate::scan::reader::footer_without_panics;
use crate::scan::schema::merge_schemas;
use crate::store::{ResilientStore, RetryPolicy};

/// How many footers discovery reads at once.
const FOOTER_READ_CONCURRENCY: usize = 16;

/// The store `definition`'s table reads through (see [`object_store_for`]).
pub(in crate::table) fn table_store(
    state: &dyn Session,
    definition: &TableDefinition,
) -> Result<Arc<dyn ObjectStore>> {
    object_store_for(state, &definition.root, definition.options.retry)
}

/// The store a table's discovery reads through: the runtime's, with the
/// table's retries and timeouts.
pub(in crate::table) fn object_store_for(
    state: &dyn Session,
    root: &ListingTableUrl,
    retry: Option<RetryPolicy>,
) -> Result<Arc<dyn ObjectStore>> {
    let store = state
        .runtime_env()
        .object_store(root.object_store())
        .map_err(|e| Error::InvalidUrl {
            url: root.to_string(),
            source: Box::new(e),
        })?;
    Ok(ResilientStore::wrap(store, retry))
}

/// Reads one footer (every footer when `merge`), with the session's Parquet
/// options, so the inferred types (e.g. string views) are the ones
/// DataFusion's own Parquet tables would use.
pub(in crate::table) async fn infer_schema(
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    partitions: &[ListedPartition],
    merge: bool,
) -> Result<SchemaRef> {
    let format = &parquet_format(state);
    let read = |meta: ObjectMeta| async move {
        let read = format.infer_schema(state, store, std::slice::from_ref(&meta));
        footer_without_panics(read, DataFusionError::Execution)
            .await
            .map(|schema| (meta.location.to_string(), schema))
            .map_err(|e| Error::ReadFile {
                path: meta.location.to_string(),
                source: Box::new(e),
            })
    };
    if !merge {
        let first = partitions.iter().find_map(|p| p.files.first());
        return match first {
            Some(first) => Ok(read(first.meta.clone()).await?.1),
            None => Ok(Arc::new(Schema::empty())),
        };
    }
    let metas: Vec<ObjectMeta> = partitions
        .iter()
        .flat_map(|p| p.files.iter().map(|f| f.meta.clone()))
        .collect();
    let schemas: Vec<(String, SchemaRef)> = futures::stream::iter(metas)
        .map(read)
        .buffered(FOOTER_READ_CONCURRENCY)
        .try_collect()
        .await?;
    merge_schemas(&schemas)
}

/// `schema` without the columns that are also partition columns.
pub(in crate::table) fn without_partition_columns(
    schema: SchemaRef,
    spec: &PartitionSpec,
) -> SchemaRef {
    if !spec
        .columns()
        .iter()
        .any(|c| schema.field_with_name(&c.name).is_ok())
    {
        return schema;
    }
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| spec.index_of(f.name()).is_none())
        .cloned()
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn parquet_format(state: &dyn Session) -> ParquetFormat {
    ParquetFormat::default().with_options(state.table_options().parquet.clone())
}

/// What discovery found: the index, and the sort order every file records
/// (when they all record the same non-empty one), which a table that
/// declared none adopts.
pub(in crate::table) struct Discovered {
    pub index: PartitionIndex,
    pub common_sort_order: Option<Vec<SortKey>>,
}

/// What our writer recorded in one file's key-value metadata.
struct RecordedLayout {
    /// For a bucketed table: the bucket the file's rows are proven to hold,
    /// or why it cannot back the table's `Hash` declaration.
    bucket: Option<std::result::Result<u32, String>>,
    sort_order: Option<String>,
}

/// Builds the index from a listing: reads every footer's statistics if the
/// table collects them, and every footer's layout metadata if the table is
/// bucketed, sorted, or collects statistics (to adopt a recorded order).
pub(in crate::table) async fn index_from(
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    definition: &TableDefinition,
    mut partitions: Vec<ListedPartition>,
) -> Result<Discovered> {
    let reads_layout = definition.options.bucketing.is_some()
        || definition.options.sort.is_some()
        || definition.options.collect_statistics;
    // Only footers to read need a copy of every file's location: at 10⁶
    // files, cloning them for nothing costs a good part of a registration.
    let metas: Vec<ObjectMeta> = if reads_layout {
        partitions
            .iter()
            .flat_map(|p| p.files.iter().map(|f| f.meta.clone()))
            .collect()
    } else {
        Vec::new()
    };
    if definition.options.collect_statistics {
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
    let mut bucket_note = None;
    let mut common_sort_order = None;
    if reads_layout && !metas.is_empty() {
        let layouts = read_layouts(state, store, metas, definition).await?;
        let files = partitions.iter_mut().flat_map(|p| p.files.iter_mut());
        for (file, layout) in files.zip(&layouts) {
            // A file written another way (another tool, count or type), or
            // whose min/max do not hash to its bucket, has no bucket: the
            // scan then declares nothing, and EXPLAIN says why.
            file.bucket = match &layout.bucket {
                Some(Ok(bucket)) => Some(*bucket),
                Some(Err(reason)) => {
                    bucket_note.get_or_insert_with(|| format!("{}: {reason}", file.meta.location));
                    None
                }
                None => None,
            };
            file.sorted = definition
                .options
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
    let index = PartitionIndex::try_new(&definition.spec, partitions)
        .map_err(|e| Error::InvalidTable {
            root: definition.root.to_string(),
            problem: TableProblem::Index {
                source: Box::new(e),
            },
        })?
        .with_bucket_note(bucket_note.map(Arc::from));
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
    definition: &TableDefinition,
) -> Result<Vec<RecordedLayout>> {
    // The bucketing, and the type of its column the table's scans produce.
    let bucketing = definition.options.bucketing.as_ref().and_then(|b| {
        let field = definition.table_schema().field_with_name(&b.column).ok()?;
        Some((b, field.data_type()))
    });
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
            let bucket = bucketing.map(|(b, scanned)| {
                let recorded = get(BUCKETING_KEY)
                    .ok_or("it records no bucketing (written by another tool)")?;
                b.accepts(&recorded, scanned)?;
                let bucket = get(BUCKET_KEY)
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|n| (*n as usize) < b.buckets)
                    .ok_or("its bucket number is missing or out of range")?;
                b.prove(&footer, scanned, bucket)?;
                Ok(bucket)
            });
            Ok::<_, Error>(RecordedLayout {
                bucket,
                sort_order: get(SORT_ORDER_KEY),
            })
        })
        .buffered(FOOTER_READ_CONCURRENCY)
        .try_collect()
        .await
}
