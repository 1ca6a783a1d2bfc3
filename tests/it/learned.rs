//! Statistics learned from the footers scans read (`lake::learned`): later
//! plans skip whole files and bound a `LIMIT`'s files without opening
//! them, and never trust what is not true of the file they would read; and
//! what scans keep when the runtime's caches are too small for the table.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::TableReference;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, CachedFileMetadata, CachedFileMetadataEntry,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::cache::{Cache, CacheEntryInfo, TableScopedPath};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::store::faults::{Fault, FaultRule};
use lakefusion::{PartitionedScanExec, PartitionedTable};
use object_store::local::LocalFileSystem;
use url::Url;

use crate::common::*;

/// The files the scan of `sql`'s plan reads (none when DataFusion answers
/// from exact statistics and plans no scan at all).
async fn planned_files(ctx: &SessionContext, sql: &str) -> usize {
    let plan = physical_plan(ctx, sql).await;
    find::<PartitionedScanExec>(&plan).map_or(0, |scan| {
        scan.downcast_ref::<PartitionedScanExec>()
            .expect("a lakefusion scan")
            .file_count()
    })
}

async fn events_session(root: &std::path::Path) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    let table = events_table(&ctx, root).await;
    ctx.register_table("events", Arc::new(table)).unwrap();
    ctx
}

/// ids ascend across the 45 files (200 each): ids 4000..4150 are in one.
const SELECTIVE: &str = "SELECT count(*), sum(amount) FROM events WHERE id BETWEEN 4000 AND 4150";

#[tokio::test]
async fn a_repeated_filter_skips_the_files_its_first_scan_learned() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = events_session(dir.path()).await;

    // Nothing is known before the first scan: every file is planned.
    assert_eq!(planned_files(&ctx, SELECTIVE).await, 45);
    let first = rows(&ctx, SELECTIVE).await.unwrap();
    // The first scan read every footer; the next plan reads one file.
    assert_eq!(planned_files(&ctx, SELECTIVE).await, 1);
    assert_eq!(rows(&ctx, SELECTIVE).await.unwrap(), first);

    // The same answer as ListingTable's (which reads every footer itself).
    let listing = SessionContext::new();
    let table = listing_table(
        &listing,
        dir.path(),
        &[("date", DataType::Date32), ("region", DataType::Utf8)],
    )
    .await;
    listing.register_table("events", Arc::new(table)).unwrap();
    assert_eq!(rows(&listing, SELECTIVE).await.unwrap(), first);
    assert!(first[0].contains("151"), "{first:?}");
}

#[tokio::test]
async fn skipped_files_are_not_read_at_all() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let store = lakefusion::store::faults::FaultyStore::new(Arc::new(LocalFileSystem::new()));
    // No footer cache: a file the scan opens costs a footer read, every time.
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_metadata_cache_limit(0))
        .build_arc()
        .unwrap();
    let ctx =
        SessionContext::new_with_config_rt(SessionConfig::new().with_target_partitions(2), runtime);
    ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());
    let table = events_table(&ctx, dir.path()).await;
    ctx.register_table("events", Arc::new(table)).unwrap();
    store.reset_counts();
    let first = rows(&ctx, SELECTIVE).await.unwrap();
    let first_reads = store.requests();
    assert!(first_reads >= 45, "{first_reads} requests for 45 files");
    // ids 4000..4150 are in the third file of 2026-03-03/apac: reading any
    // other file now fails the query.
    for date in DATES {
        for region in REGIONS {
            for f in 0..FILES_PER_PARTITION {
                let path = format!("date={date}/region={region}/part-{f:05}.parquet");
                if path != "date=2026-03-03/region=apac/part-00002.parquet" {
                    store.inject(FaultRule::new(Fault::Permanent).path_contains(path));
                }
            }
        }
    }
    store.reset_counts();
    assert_eq!(rows(&ctx, SELECTIVE).await.unwrap(), first);
    // One file: its footer, page index and matching row group.
    let reads = store.requests();
    assert!(reads <= 5, "{reads} requests for one file");
}

#[tokio::test]
async fn a_limit_plans_only_the_files_it_needs_once_their_rows_are_known() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = events_session(dir.path()).await;
    let limit = "SELECT * FROM events LIMIT 10";
    assert_eq!(planned_files(&ctx, limit).await, 45);
    // A full scan teaches every file's row count.
    rows(&ctx, "SELECT count(*) FROM events WHERE amount >= 0")
        .await
        .unwrap();
    assert_eq!(planned_files(&ctx, limit).await, 1);
    assert_eq!(rows(&ctx, limit).await.unwrap().len(), 10);
    // 450 rows need three files of 200.
    let more = "SELECT * FROM events LIMIT 450";
    assert_eq!(planned_files(&ctx, more).await, 3);
    assert_eq!(rows(&ctx, more).await.unwrap().len(), 450);
}

#[tokio::test]
async fn a_rewritten_file_is_not_pruned_by_what_was_learned_of_its_old_version() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = events_session(dir.path()).await;
    let wanted = "SELECT count(*) FROM events WHERE id BETWEEN 1000000 AND 1000099";
    assert_eq!(rows(&ctx, wanted).await.unwrap(), vec!["| 0        |"]);
    // Every file is known not to hold them.
    assert_eq!(planned_files(&ctx, wanted).await, 0);
    // Another tool rewrites one file in place with the wanted ids (a new
    // size), and the table is refreshed.
    let path = dir
        .path()
        .join("date=2026-03-01/region=eu/part-00001.parquet");
    write_parquet(&path, &events_batch(1_000_000, 100));
    let table = events_table(&ctx, dir.path()).await;
    ctx.deregister_table("events").unwrap();
    ctx.register_table("events", Arc::new(table)).unwrap();
    // The 44 files still known are skipped; the rewritten one, whose
    // statistics are no longer known, is not.
    assert_eq!(planned_files(&ctx, wanted).await, 1);
    assert_eq!(rows(&ctx, wanted).await.unwrap(), vec!["| 100      |"]);
}

/// Writes `k={k}/part-0.parquet` holding the timestamps `seconds` (in
/// nanoseconds), with time zone `tz`.
fn write_timestamps(root: &std::path::Path, k: i64, seconds: [i64; 2], tz: Option<&str>) {
    let array = TimestampNanosecondArray::from(seconds.map(|s| s * 1_000_000_000).to_vec())
        .with_timezone_opt(tz);
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        array.data_type().clone(),
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(array)]).unwrap();
    write_parquet(&root.join(format!("k={k}/part-0.parquet")), &batch);
}

/// A file whose column type conflicts with the table's (a timestamp
/// without a time zone where the table's has one) is never skipped by
/// statistics, so its scan fails every time, and it does not stop the
/// other files from being skipped.
#[tokio::test]
async fn a_file_whose_types_conflict_is_never_skipped_by_statistics() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..4 {
        write_timestamps(dir.path(), k, [k * 10, k * 10 + 5], Some("UTC"));
    }
    write_timestamps(dir.path(), 9, [90, 95], None);
    let ctx = SessionContext::new();
    let utc = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let table = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("k", DataType::Int64)
        .schema(Arc::new(Schema::new(vec![Field::new("ts", utc, false)])))
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    // The four good files are learned (k=9 is pruned by its partition).
    let good = "SELECT count(*) FROM t WHERE k < 9 AND ts >= TIMESTAMP '1970-01-01T00:00:00Z'";
    assert_eq!(rows(&ctx, good).await.unwrap(), vec!["| 8        |"]);
    // k=9's footer says no row is before 00:00:12, but its scan must fail,
    // every time.
    let sql = "SELECT count(*) FROM t WHERE ts < TIMESTAMP '1970-01-01T00:00:12Z'";
    for _ in 0..2 {
        let error = execution_error(&ctx, sql).await;
        assert!(error.contains("k=9/part-0.parquet"), "{error}");
    }
    // k=0 and k=1 may hold such rows; k=2 and k=3 are skipped; k=9 is not.
    assert_eq!(planned_files(&ctx, sql).await, 3);
}

#[tokio::test]
async fn a_runtime_that_keeps_no_statistics_learns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_file_statistics_cache_limit(0))
        .build_arc()
        .unwrap();
    let ctx =
        SessionContext::new_with_config_rt(SessionConfig::new().with_target_partitions(2), runtime);
    let table = events_table(&ctx, dir.path()).await;
    ctx.register_table("events", Arc::new(table)).unwrap();
    let first = rows(&ctx, SELECTIVE).await.unwrap();
    assert_eq!(planned_files(&ctx, SELECTIVE).await, 45);
    assert_eq!(rows(&ctx, SELECTIVE).await.unwrap(), first);
}

/// Statistics are learned per file schema: a second table over the same
/// files that declares a column the files lack learns nothing wrong from
/// the first (and answers the same).
#[tokio::test]
async fn two_tables_over_the_same_files_with_other_schemas_do_not_share_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    for k in 0..4_i64 {
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(k * 10..k * 10 + 10))],
        )
        .unwrap();
        write_parquet(&dir.path().join(format!("k={k}/part-0.parquet")), &batch);
    }
    let ctx = SessionContext::new();
    let narrow = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("k", DataType::Int64)
        .build(&ctx.state())
        .await
        .unwrap();
    let wide = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("k", DataType::Int64)
        .schema(Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("extra", DataType::Int64, true),
        ])))
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("narrow", Arc::new(narrow)).unwrap();
    ctx.register_table("wide", Arc::new(wide)).unwrap();
    let sql = |t: &str| format!("SELECT count(*) FROM {t} WHERE id >= 35");
    let narrow_rows = rows(&ctx, &sql("narrow")).await.unwrap();
    assert_eq!(planned_files(&ctx, &sql("narrow")).await, 1);
    // Nothing learned under the narrow schema is used for the wide one.
    assert_eq!(planned_files(&ctx, &sql("wide")).await, 4);
    assert_eq!(rows(&ctx, &sql("wide")).await.unwrap(), narrow_rows);
    // Each keeps what it learned: neither evicts the other's.
    assert_eq!(planned_files(&ctx, &sql("wide")).await, 1);
    assert_eq!(planned_files(&ctx, &sql("narrow")).await, 1);
    assert_eq!(rows(&ctx, &sql("narrow")).await.unwrap(), narrow_rows);
}

/// The runtime's statistics cache, counting what is put in it.
struct CountingCache {
    inner: DefaultCache<TableScopedPath, CachedFileMetadata>,
    puts: AtomicUsize,
}

#[deny(clippy::missing_trait_methods)]
impl Cache<TableScopedPath, CachedFileMetadata> for CountingCache {
    fn get(&self, key: &TableScopedPath) -> Option<CachedFileMetadata> {
        self.inner.get(key)
    }
    fn put(&self, key: &TableScopedPath, value: CachedFileMetadata) -> Option<CachedFileMetadata> {
        self.puts.fetch_add(1, AtomicOrdering::Relaxed);
        self.inner.put(key, value)
    }
    fn remove(&self, k: &TableScopedPath) -> Option<CachedFileMetadata> {
        self.inner.remove(k)
    }
    fn contains_key(&self, k: &TableScopedPath) -> bool {
        self.inner.contains_key(k)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
    fn clear(&self) {
        self.inner.clear()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
    fn cache_limit(&self) -> usize {
        self.inner.cache_limit()
    }
    fn update_cache_limit(&self, limit: usize) {
        self.inner.update_cache_limit(limit)
    }
    fn cache_ttl(&self) -> Option<Duration> {
        self.inner.cache_ttl()
    }
    fn update_cache_ttl(&self, ttl: Option<Duration>) {
        self.inner.update_cache_ttl(ttl)
    }
    fn drop_table_entries(&self, table_ref: &TableReference) -> datafusion::error::Result<()> {
        self.inner.drop_table_entries(table_ref)
    }
    fn list_entries(
        &self,
    ) -> datafusion::common::HashMap<TableScopedPath, CacheEntryInfo<CachedFileMetadata>> {
        self.inner.list_entries()
    }
}

/// A session over the events lake at `root` with `caches` (two target
/// partitions, or `config`), reading `file://` through `store` if given.
async fn events_session_with(
    root: &std::path::Path,
    caches: CacheManagerConfig,
    config: Option<SessionConfig>,
    store: Option<&Arc<lakefusion::store::faults::FaultyStore>>,
) -> SessionContext {
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .build_arc()
        .unwrap();
    let config = config.unwrap_or_else(|| SessionConfig::new().with_target_partitions(2));
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    if let Some(store) = store {
        ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());
    }
    let table = events_table(&ctx, root).await;
    ctx.register_table("events", Arc::new(table)).unwrap();
    ctx
}

/// A session whose statistics cache is `cache`, limited to `limit` bytes.
async fn session_with_statistics_cache(
    root: &std::path::Path,
    cache: Arc<CountingCache>,
    limit: usize,
) -> SessionContext {
    let caches = CacheManagerConfig::default()
        .with_file_statistics_cache(Some(cache))
        .with_file_statistics_cache_limit(limit);
    events_session_with(root, caches, None, None).await
}

/// Every plan of a table, every partition of each, learns under the
/// table's one schema fingerprint, so that checking an entry against the
/// schema compares pointers, not the schema's columns, on every footer a
/// scan reads. (Each scan partition built its own fingerprint before: a
/// short query's every open paid for the copy and the comparison.)
#[tokio::test]
async fn a_tables_scans_learn_under_one_schema_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let cache = Arc::new(CountingCache {
        inner: DefaultCache::new(64 << 20),
        puts: AtomicUsize::new(0),
    });
    let ctx = session_with_statistics_cache(dir.path(), Arc::clone(&cache), 64 << 20).await;
    // Two plans, each learning files the other does not: the 15 files of
    // one region, then the 30 others.
    rows(
        &ctx,
        "SELECT count(*) FROM events WHERE region = 'apac' AND amount >= 0",
    )
    .await
    .unwrap();
    assert_eq!(cache.puts.load(AtomicOrdering::Relaxed), 15);
    rows(&ctx, "SELECT count(*) FROM events WHERE amount >= 0")
        .await
        .unwrap();
    assert_eq!(cache.puts.load(AtomicOrdering::Relaxed), 45);
    let entries = cache.inner.list_entries();
    assert_eq!(entries.len(), 45);
    let mut fingerprints = entries.values().map(|e| &e.value.schema_fingerprint);
    let first = fingerprints.next().unwrap();
    assert!(
        fingerprints.all(|f| Arc::ptr_eq(f, first)),
        "the files were learned under more than one fingerprint"
    );
}

/// A cache too small for the table keeps what the first scan learned: a
/// later scan computes no statistics to evict others with (each would be
/// evicted before its next use, and a scan would pay for every file's).
#[tokio::test]
async fn a_statistics_cache_too_small_for_the_table_is_not_churned() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let full_scan = "SELECT count(*), sum(amount) FROM events WHERE amount >= 0";
    let counting = |limit| {
        Arc::new(CountingCache {
            inner: DefaultCache::new(limit),
            puts: AtomicUsize::new(0),
        })
    };
    // What the 45 files' statistics take.
    let roomy = counting(64 << 20);
    let ctx = session_with_statistics_cache(dir.path(), Arc::clone(&roomy), 64 << 20).await;
    let answer = rows(&ctx, full_scan).await.unwrap();
    assert_eq!(roomy.len(), 45);
    let per_file = roomy.inner.memory_used() / 45;

    // Room for about ten files.
    let limit = per_file * 10 + per_file / 2;
    let small = counting(limit);
    let ctx = session_with_statistics_cache(dir.path(), Arc::clone(&small), limit).await;
    assert_eq!(rows(&ctx, full_scan).await.unwrap(), answer);
    let kept = small.len();
    assert!((8..=11).contains(&kept), "{kept} files' statistics kept");
    let first_puts = small.puts.load(AtomicOrdering::Relaxed);
    // The first scan stops learning once the cache is full (one put that
    // evicts per scan partition at most), not at the 45th file.
    assert!(first_puts <= kept + 2, "{first_puts} puts for {kept} kept");
    for _ in 0..2 {
        small.puts.store(0, AtomicOrdering::Relaxed);
        assert_eq!(rows(&ctx, full_scan).await.unwrap(), answer);
        let puts = small.puts.load(AtomicOrdering::Relaxed);
        assert!(puts <= 2, "a repeated scan put {puts} files' statistics");
        assert!(small.len() >= kept - 2, "{} kept of {kept}", small.len());
    }
}

/// A session reading `root` through `store`, whose footer cache is `cache`
/// limited to `limit` bytes; footers are read without a size hint, so that
/// a page index is a request of its own.
async fn session_with_footer_cache(
    root: &std::path::Path,
    store: &Arc<lakefusion::store::faults::FaultyStore>,
    cache: Arc<DefaultCache<object_store::path::Path, CachedFileMetadataEntry>>,
    limit: usize,
    page_index: bool,
) -> SessionContext {
    let caches = CacheManagerConfig::default()
        .with_file_metadata_cache(Some(cache))
        .with_metadata_cache_limit(limit);
    let mut config = SessionConfig::new().with_target_partitions(2);
    config.options_mut().execution.parquet.metadata_size_hint = None;
    config.options_mut().execution.parquet.enable_page_index = page_index;
    events_session_with(root, caches, Some(config), Some(store)).await
}

/// A footer cache too small for the table: once a footer evicts another,
/// a scan stops asking for the page index with each footer (it would be
/// evicted before its next use, and every open would read and decode it);
/// without a data filter, a repeated scan then reads no page index.
#[tokio::test]
async fn a_footer_cache_too_small_for_the_table_does_not_make_scans_read_page_indexes() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let store = lakefusion::store::faults::FaultyStore::new(Arc::new(LocalFileSystem::new()));
    let full_scan = "SELECT count(*), sum(amount) FROM events";
    // What the 45 footers take, with their page indexes.
    let roomy = Arc::new(DefaultCache::new(64 << 20));
    let ctx =
        session_with_footer_cache(dir.path(), &store, Arc::clone(&roomy), 64 << 20, true).await;
    let answer = rows(&ctx, full_scan).await.unwrap();
    assert_eq!(roomy.len(), 45);
    // Room for about ten of them.
    let limit = roomy.memory_used() / 45 * 10;

    // The requests of a repeated scan when the page index is never asked for.
    let ctx = session_with_footer_cache(
        dir.path(),
        &store,
        Arc::new(DefaultCache::new(limit)),
        limit,
        false,
    )
    .await;
    rows(&ctx, full_scan).await.unwrap();
    store.reset_counts();
    assert_eq!(rows(&ctx, full_scan).await.unwrap(), answer);
    let without_index = store.requests();

    let small = Arc::new(DefaultCache::new(limit));
    let ctx = session_with_footer_cache(dir.path(), &store, Arc::clone(&small), limit, true).await;
    assert_eq!(rows(&ctx, full_scan).await.unwrap(), answer);
    assert!(small.len() < 45, "the cache holds {} footers", small.len());
    for _ in 0..2 {
        store.reset_counts();
        assert_eq!(rows(&ctx, full_scan).await.unwrap(), answer);
        let requests = store.requests();
        // At most one page index per scan partition: the read that finds
        // the cache full.
        assert!(
            requests <= without_index + 2 * 2,
            "{requests} requests against {without_index} without page indexes"
        );
    }
}
