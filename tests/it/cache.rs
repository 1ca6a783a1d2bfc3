//! The small-table cache: the rule's decisions, hits with zero requests,
//! freshness after refresh, LRU by bytes, memory limits, single flight.

use lakefusion::store::faults::FaultyStore;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Statistics;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::displayable;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::{CacheConfig, PartitionedTable, SessionBuilder, SmallTableCacheRule, TableCache};
use object_store::local::LocalFileSystem;
use url::Url;

use crate::common::*;

async fn table(
    ctx: &SessionContext,
    root: &std::path::Path,
    collect_statistics: bool,
) -> Arc<PartitionedTable> {
    Arc::new(
        PartitionedTable::builder(file_url(root))
            .partition_column("date", DataType::Date32)
            .partition_column("region", DataType::Utf8)
            .collect_statistics(collect_statistics)
            .build(&ctx.state())
            .await
            .unwrap(),
    )
}

fn counting_builder(cache: CacheConfig) -> (SessionBuilder, Arc<FaultyStore>) {
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    let builder = SessionBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(2))
        .with_cache(cache)
        .with_object_store(Url::parse("file://").unwrap(), store.clone());
    (builder, store)
}

const QUERY: &str = "SELECT region, count(*), sum(qty), min(id) FROM events WHERE date <= DATE '2026-03-02' GROUP BY region ORDER BY region";

#[tokio::test]
async fn second_execution_is_served_from_memory_with_zero_requests() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let (builder, store) = counting_builder(CacheConfig::default());
    let ctx = builder.build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    let cache = builder.table_cache().unwrap().clone();

    let plan = physical_plan_text(&ctx, QUERY).await;
    assert!(plan.contains("CachedScanExec: key="), "{plan}");
    assert!(plan.contains("PartitionedScanExec: table="), "{plan}");

    store.reset_counts();
    let first = rows(&ctx, QUERY).await.unwrap();
    assert!(store.requests() > 0);
    let after_fill = cache.metrics();
    assert_eq!(after_fill.misses, 1);
    assert_eq!(after_fill.entries, 1);
    assert!(after_fill.bytes > 0);

    store.reset_counts();
    let second = rows(&ctx, QUERY).await.unwrap();
    assert_eq!(store.requests(), 0, "a cache hit must not touch the store");
    assert_eq!(first, second);
    assert!(cache.metrics().hits >= 2, "{:?}", cache.metrics());

    // Same rows as without the cache.
    let plain = SessionContext::new();
    plain
        .register_table("events", table(&plain, dir.path(), false).await)
        .unwrap();
    assert_eq!(first, rows(&plain, QUERY).await.unwrap());

    // A session from the same builder shares the cache: served without I/O.
    let other = builder.build_context();
    other
        .register_table("events", table(&other, dir.path(), false).await)
        .unwrap();
    store.reset_counts();
    assert_eq!(rows(&other, QUERY).await.unwrap(), first);
    assert_eq!(store.requests(), 0);

    // EXPLAIN ANALYZE shows the hit.
    let analyzed = rows(&ctx, &format!("EXPLAIN ANALYZE {QUERY}"))
        .await
        .unwrap()
        .join("\n");
    assert!(analyzed.contains("cache_hits=2"), "{analyzed}");
    assert!(analyzed.contains("cache_misses=0"), "{analyzed}");
}

#[tokio::test]
async fn unrelated_plans_are_unchanged() {
    let ctx = SessionContext::new();
    let plan = physical_plan(
        &ctx,
        "SELECT a, count(*) FROM (VALUES (1), (2), (2)) AS t(a) GROUP BY a",
    )
    .await;
    let before = displayable(plan.as_ref()).indent(true).to_string();
    let rule = SmallTableCacheRule::new(TableCache::new(CacheConfig::default()));
    let after = rule.optimize(plan, ctx.state().config_options()).unwrap();
    assert_eq!(before, displayable(after.as_ref()).indent(true).to_string());
}

#[tokio::test]
async fn large_tables_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionBuilder::new()
        .with_cache(CacheConfig::default().with_max_rows(1000))
        .build_context();
    ctx.register_table("events", table(&ctx, dir.path(), true).await)
        .unwrap();
    // 9000 rows (exact, from footers) > 1000.
    let plan = physical_plan_text(&ctx, "SELECT sum(qty) FROM events").await;
    assert!(
        !plan.contains("CachedScanExec") && plan.contains("PartitionedScanExec"),
        "{plan}"
    );
    // One partition of 600 rows fits. (Not count(*): exact statistics answer
    // that without any scan.)
    let plan = physical_plan_text(
        &ctx,
        "SELECT sum(qty) FROM events WHERE date = DATE '2026-03-01' AND region = 'eu'",
    )
    .await;
    assert!(plan.contains("CachedScanExec"), "{plan}");
    // By bytes too: the listing's file sizes exceed 1 KiB.
    let ctx = SessionBuilder::new()
        .with_cache(CacheConfig::default().with_max_bytes(1024))
        .build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    let plan = physical_plan_text(&ctx, "SELECT sum(qty) FROM events").await;
    assert!(
        !plan.contains("CachedScanExec") && plan.contains("PartitionedScanExec"),
        "{plan}"
    );
}

#[test]
fn absent_statistics_are_never_cached() {
    let schema = events_schema();
    let unknown = Statistics::new_unknown(&schema);
    assert!(!SmallTableCacheRule::fits(
        &unknown,
        &CacheConfig::default()
    ));
}

#[tokio::test]
async fn cache_switched_off_per_query() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionBuilder::new()
        .with_cache(CacheConfig::default())
        .build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    exec(&ctx, "SET lakefusion.cache_enabled = false").await;
    let plan = physical_plan_text(&ctx, QUERY).await;
    assert!(
        !plan.contains("CachedScanExec") && plan.contains("PartitionedScanExec"),
        "{plan}"
    );
    exec(&ctx, "SET lakefusion.cache_enabled = true").await;
    assert!(physical_plan_text(&ctx, QUERY)
        .await
        .contains("CachedScanExec"));
}

#[tokio::test]
async fn refresh_with_changed_files_never_serves_stale_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionBuilder::new()
        .with_cache(CacheConfig::default())
        .build_context();
    let events = table(&ctx, dir.path(), false).await;
    ctx.register_table("events", events.clone()).unwrap();
    let sql =
        "SELECT count(*), sum(id) FROM events WHERE date = DATE '2026-03-01' AND region = 'eu'";
    let before = rows(&ctx, sql).await.unwrap();
    assert_eq!(rows(&ctx, sql).await.unwrap(), before);

    // Replace a file in place with different rows, then refresh.
    write_parquet(
        &dir.path()
            .join("date=2026-03-01/region=eu/part-00001.parquet"),
        &events_batch(500_000, 7),
    );
    events.refresh(&ctx.state()).await.unwrap();
    let after = rows(&ctx, sql).await.unwrap();
    assert_ne!(after, before);
    let plain = SessionContext::new();
    plain
        .register_table("events", table(&plain, dir.path(), false).await)
        .unwrap();
    assert_eq!(after, rows(&plain, sql).await.unwrap());
}

#[tokio::test]
async fn least_recently_used_entries_are_evicted_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let one_day = |d: &str| format!("SELECT id, user FROM events WHERE date = DATE '{d}'");
    // Measure one entry, then allow a little more than one.
    let probe_bytes = entry_bytes(dir.path(), &one_day("2026-03-01")).await;

    let builder = SessionBuilder::new()
        .with_cache(CacheConfig::default().with_capacity_bytes(probe_bytes * 3 / 2));
    let ctx = builder.build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    let cache = builder.table_cache().unwrap();
    for day in ["2026-03-01", "2026-03-02", "2026-03-03"] {
        rows(&ctx, &one_day(day)).await.unwrap();
        let m = cache.metrics();
        assert!(m.bytes <= cache.config().capacity_bytes, "{m:?}");
        assert_eq!(m.entries, 1, "{m:?}");
    }
    assert_eq!(cache.metrics().evictions, 2);
    // The first day was evicted: asking again misses.
    let misses = cache.metrics().misses;
    rows(&ctx, &one_day("2026-03-01")).await.unwrap();
    assert_eq!(cache.metrics().misses, misses + 1);
}

/// A builder with the default cache whose sessions share a memory pool of
/// `bytes`.
fn pool_limited_builder(bytes: usize) -> (SessionBuilder, Arc<dyn MemoryPool>) {
    let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(bytes));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool.clone())
        .build_arc()
        .unwrap();
    let builder = SessionBuilder::new()
        .with_runtime(runtime)
        .with_cache(CacheConfig::default());
    (builder, pool)
}

/// The bytes one query's cache entry takes.
async fn entry_bytes(root: &std::path::Path, sql: &str) -> usize {
    let builder = SessionBuilder::new().with_cache(CacheConfig::default());
    let ctx = builder.build_context();
    ctx.register_table("events", table(&ctx, root, false).await)
        .unwrap();
    rows(&ctx, sql).await.unwrap();
    builder.table_cache().unwrap().metrics().bytes
}

#[tokio::test]
async fn a_memory_limited_pool_is_never_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let (builder, pool) = pool_limited_builder(64 * 1024);
    let ctx = builder.build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    // The whole table's id+user columns need far more than 64 KiB.
    let got = rows(&ctx, "SELECT id, user FROM events").await.unwrap();
    assert_eq!(
        got.len(),
        9000,
        "the query succeeds even though its rows are not cached"
    );
    let m = builder.table_cache().unwrap().metrics();
    assert_eq!(m.entries, 0, "{m:?}");
    assert!(m.rejected >= 1, "{m:?}");
    assert!(pool.reserved() <= 64 * 1024);
    // A small scan still fits and is held within the pool.
    rows(
        &ctx,
        "SELECT id FROM events WHERE date = DATE '2026-03-01' AND region = 'eu'",
    )
    .await
    .unwrap();
    let m = builder.table_cache().unwrap().metrics();
    assert_eq!(m.entries, 1, "{m:?}");
    assert_eq!(pool.reserved(), m.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fill_once() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let (builder, _store) = counting_builder(CacheConfig::default());
    let ctx = builder.build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    let runs: Vec<_> = (0..8).map(|_| rows(&ctx, QUERY)).collect();
    let results = futures::future::try_join_all(runs).await.unwrap();
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    let m = builder.table_cache().unwrap().metrics();
    assert_eq!(m.misses, 1, "{m:?}");
    assert_eq!(m.hits, 8 * 2 - 1, "{m:?}");
}

/// Issue 12, defect 12: when the pool refuses a fill, least recently used
/// entries are evicted first, so a new entry that fits the pool alone is
/// cached instead of rejected.
#[tokio::test]
async fn a_pool_refusal_evicts_least_recently_used_entries_first() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let first = "SELECT id FROM events WHERE date = DATE '2026-03-01' AND region = 'eu'";
    let second = "SELECT id, user FROM events WHERE date = DATE '2026-03-02' AND region = 'us'";
    let (a, b) = (
        entry_bytes(dir.path(), first).await,
        entry_bytes(dir.path(), second).await,
    );
    // Room for the larger entry, not for both.
    let (builder, pool) = pool_limited_builder(a.max(b) + a.min(b) / 2);
    let ctx = builder.build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    let cache = builder.table_cache().unwrap().clone();
    rows(&ctx, first).await.unwrap();
    assert_eq!(cache.metrics().entries, 1);
    rows(&ctx, second).await.unwrap();
    let m = cache.metrics();
    assert_eq!((m.entries, m.evictions, m.rejected), (1, 1, 0), "{m:?}");
    assert_eq!(m.bytes, b, "{m:?}");
    assert_eq!(pool.reserved(), b);
    // The second is the one held: asking again hits.
    let hits = m.hits;
    rows(&ctx, second).await.unwrap();
    assert!(cache.metrics().hits > hits);
}

/// A pool that refuses a fill evicts only entries reserved in that pool:
/// entries another session (another pool) holds free nothing there, so
/// they stay cached.
#[tokio::test]
async fn a_pool_refusal_evicts_only_entries_of_that_pool() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let small = "SELECT id FROM events WHERE date = DATE '2026-03-01' AND region = 'eu'";
    let large = "SELECT id, user FROM events";
    let cache = TableCache::new(CacheConfig::default().with_max_rows(1_000_000));
    // Session A, with a pool of its own, fills one entry.
    let roomy = SessionBuilder::new().with_table_cache(cache.clone());
    let a = roomy.build_context();
    a.register_table("events", table(&a, dir.path(), false).await)
        .unwrap();
    rows(&a, small).await.unwrap();
    assert_eq!(cache.metrics().entries, 1);
    // Session B's pool cannot hold its scan: its fill is refused.
    let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(16 * 1024));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool.clone())
        .build_arc()
        .unwrap();
    let tight = SessionBuilder::new()
        .with_runtime(runtime)
        .with_table_cache(cache.clone());
    let b = tight.build_context();
    b.register_table("events", table(&b, dir.path(), false).await)
        .unwrap();
    assert_eq!(rows(&b, large).await.unwrap().len(), 9000);
    let m = cache.metrics();
    assert_eq!((m.entries, m.evictions), (1, 0), "A's entry stays: {m:?}");
    assert!(m.rejected >= 1, "{m:?}");
}

/// Batches served from the cache are always ready; the stream still yields
/// to the runtime once the task's budget is spent (DataFusion's `cooperative`).
#[tokio::test(flavor = "current_thread")]
async fn cache_hits_yield_to_the_runtime() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let builder = SessionBuilder::new()
        .with_config(
            SessionConfig::new()
                .with_batch_size(8)
                .with_target_partitions(1),
        )
        .with_cache(CacheConfig::default());
    let ctx = builder.build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    let sql = "SELECT id FROM events";
    rows(&ctx, sql).await.unwrap();
    let plan = physical_plan(&ctx, sql).await;
    let text = displayable(plan.as_ref()).indent(true).to_string();
    assert!(text.contains("CachedScanExec"), "{text}");
    let mut stream = datafusion::physical_plan::execute_stream(plan, ctx.task_ctx()).unwrap();
    let (mut batches, mut pending) = (0, 0);
    loop {
        match futures::poll!(stream.next()) {
            std::task::Poll::Ready(Some(batch)) => {
                batch.unwrap();
                batches += 1;
            }
            std::task::Poll::Ready(None) => break,
            std::task::Poll::Pending => {
                pending += 1;
                tokio::task::yield_now().await;
            }
        }
    }
    assert!(batches > 256, "{batches} batches");
    assert!(
        pending > 0,
        "{batches} batches served without yielding once"
    );
}

/// Single flight (issue 12, defect 12): a fill that fails or is cancelled
/// leaves no in-flight marker, and the next lookup fills the entry.
#[tokio::test]
async fn failed_and_cancelled_fills_leave_no_marker() {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::error::DataFusionError;
    use datafusion::execution::memory_pool::UnboundedMemoryPool;
    use lakefusion::CacheKey;

    let cache = TableCache::new(CacheConfig::default());
    let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
    let key = CacheKey::new("t|one file");
    let err = cache
        .get_or_fill(&key, &pool, |_| async {
            Err(DataFusionError::Execution("storage went away".into()))
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("storage went away"));
    assert_eq!(cache.metrics().in_flight, 0);

    let started = Arc::new(tokio::sync::Notify::new());
    let fill = tokio::spawn({
        let (cache, pool, key, started) =
            (cache.clone(), pool.clone(), key.clone(), started.clone());
        async move {
            cache
                .get_or_fill(&key, &pool, |_| async move {
                    started.notify_one();
                    futures::future::pending::<()>().await;
                    Ok(vec![])
                })
                .await
        }
    });
    started.notified().await;
    assert_eq!(cache.metrics().in_flight, 1);
    fill.abort();
    assert!(fill.await.unwrap_err().is_cancelled());
    assert_eq!(cache.metrics().in_flight, 0, "the cancelled fill's marker");

    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
    let filled = cache
        .get_or_fill(&key, &pool, |reserve| async move {
            reserve.grow(batch.get_array_memory_size());
            Ok(vec![vec![batch]])
        })
        .await
        .unwrap();
    assert_eq!(filled[0][0].num_rows(), 2);
    let m = cache.metrics();
    assert_eq!((m.entries, m.in_flight), (1, 0), "{m:?}");
    assert_eq!(pool.reserved(), m.bytes);
}

/// The cached scan reports its wall time as `cache_serve_time`, not under
/// the inner scan's `scan_time` (which `EXPLAIN ANALYZE` would add to it):
/// a hit, where the inner scan never runs, has no `scan_time` at all.
#[tokio::test]
async fn a_cache_hit_reports_its_own_time_not_the_scans() {
    use datafusion::physical_plan::collect;
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let builder = SessionBuilder::new().with_cache(CacheConfig::default());
    let ctx = builder.build_context();
    ctx.register_table("events", table(&ctx, dir.path(), false).await)
        .unwrap();
    let sql = "SELECT id FROM events WHERE region = 'eu'";
    let cached_node = |plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>| {
        find::<lakefusion::CachedScanExec>(plan).expect("a cached scan")
    };
    // A miss: the inner scan ran and reports its own scan_time.
    let miss = physical_plan(&ctx, sql).await;
    collect(Arc::clone(&miss), ctx.task_ctx()).await.unwrap();
    let metrics = cached_node(&miss).metrics().unwrap();
    assert!(metrics.sum_by_name("cache_serve_time").is_some());
    assert!(metrics.sum_by_name("scan_time").is_some());
    // A hit: only the cache's own time.
    let hit = physical_plan(&ctx, sql).await;
    collect(Arc::clone(&hit), ctx.task_ctx()).await.unwrap();
    let metrics = cached_node(&hit).metrics().unwrap();
    assert!(metrics
        .sum_by_name("cache_hits")
        .is_some_and(|v| v.as_usize() > 0));
    assert!(metrics.sum_by_name("cache_serve_time").is_some());
    assert!(metrics.sum_by_name("scan_time").is_none(), "{metrics}");
}
