//! Load: 64 concurrent mixed queries over shared tables, a shared small-table
//! cache with a small capacity, and a `GreedyMemoryPool` of limited size.
//! Every result must equal the one a plain session computes alone, the cache
//! must stay within its capacity and the pool within its limit, and the whole
//! round must finish (no deadlock). Prints throughput and p50/p99 latency.
//!
//! `LAKEFUSION_LOAD_ROUNDS` (default 2) sets how many rounds of 64 run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::{CacheConfig, PartitionedTable, SessionBuilder};

use crate::common::*;

/// The mix: scans, pruned scans, aggregations, a join with a small (cached)
/// table, TopK, a full sort, a window, a distinct count.
const QUERIES: [&str; 8] = [
    "SELECT region, count(*), sum(qty) FROM events WHERE date <= DATE '2026-03-02' GROUP BY region ORDER BY region",
    "SELECT e.region, sum(r.refund) FROM events e JOIN refunds r ON e.id = r.event_id GROUP BY e.region ORDER BY e.region",
    "SELECT id, amount FROM events ORDER BY amount DESC, id LIMIT 10",
    "SELECT user, id FROM events WHERE region = 'eu' ORDER BY user, id LIMIT 5 OFFSET 1000",
    "SELECT date, count(DISTINCT user) FROM events GROUP BY date ORDER BY date",
    "SELECT id, row_number() OVER (PARTITION BY user ORDER BY id) AS n FROM events WHERE date = DATE '2026-03-04' ORDER BY id LIMIT 20",
    "SELECT count(*) FROM events WHERE region = 'us' AND id BETWEEN 2000 AND 2500",
    "SELECT r.date, count(*), max(r.refund) FROM refunds r WHERE r.date >= DATE '2026-03-03' GROUP BY r.date ORDER BY r.date",
];

const CONCURRENT: usize = 64;
const POOL_BYTES: usize = 16 * 1024 * 1024;
const CACHE_BYTES: usize = 256 * 1024;
const SORT_RESERVATION_BYTES: usize = 256 * 1024;

async fn register(ctx: &SessionContext, events: &std::path::Path, refunds: &std::path::Path) {
    ctx.register_table("events", Arc::new(events_table(ctx, events).await))
        .unwrap();
    let refunds = PartitionedTable::builder(file_url(refunds))
        .partition_column("date", DataType::Date32)
        .collect_statistics(true)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("refunds", Arc::new(refunds)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_queries_are_correct_and_bounded() {
    let rounds: usize = std::env::var("LAKEFUSION_LOAD_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let events = tempfile::tempdir().unwrap();
    let refunds = tempfile::tempdir().unwrap();
    write_events(events.path());
    write_refunds(refunds.path());

    // The answers, computed alone in a plain session.
    let plain = SessionContext::new();
    register(&plain, events.path(), refunds.path()).await;
    let mut expected = Vec::new();
    for sql in QUERIES {
        expected.push(rows(&plain, sql).await.unwrap());
    }

    let pool = Arc::new(PeakPool::new(POOL_BYTES));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::clone(&pool) as Arc<dyn MemoryPool>)
        .build_arc()
        .unwrap();
    let builder = SessionBuilder::new()
        // DataFusion reserves 10 MB per sorting partition up front by
        // default; a memory-limited deployment lowers that.
        .with_config(
            SessionConfig::new()
                .with_target_partitions(4)
                .with_sort_spill_reservation_bytes(SORT_RESERVATION_BYTES),
        )
        .with_runtime(runtime)
        .with_cache(CacheConfig::default().with_capacity_bytes(CACHE_BYTES));
    let ctx = Arc::new(builder.build_context());
    register(&ctx, events.path(), refunds.path()).await;
    let cache = builder.table_cache().unwrap().clone();

    // Watches the cache's size while the queries run.
    let cache_peak = Arc::new(AtomicUsize::new(0));
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (cache, peak, watching) = (cache.clone(), cache_peak.clone(), watching.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                peak.fetch_max(cache.metrics().bytes, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };

    let expected = Arc::new(expected);
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..rounds {
        let mut queries = Vec::new();
        for i in 0..CONCURRENT {
            let (ctx, expected) = (Arc::clone(&ctx), Arc::clone(&expected));
            queries.push(tokio::spawn(async move {
                let q = i % QUERIES.len();
                let start = Instant::now();
                let got = rows(&ctx, QUERIES[q]).await;
                (q, got, start.elapsed(), expected)
            }));
        }
        let all =
            tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(queries))
                .await
                .expect("64 concurrent queries did not finish within 120 s: deadlock?");
        for joined in all {
            let (q, got, took, expected) = joined.unwrap();
            let got = got.unwrap_or_else(|e| panic!("query {q} failed under load: {e}"));
            assert_eq!(got, expected[q], "query {q} under load: {}", QUERIES[q]);
            latencies.push(took);
        }
    }
    let wall = started.elapsed();
    watching.store(false, Ordering::Relaxed);
    watcher.await.unwrap();

    let metrics = cache.metrics();
    let cache_peak = cache_peak.load(Ordering::Relaxed);
    let pool_peak = pool.peak();
    assert!(
        cache_peak <= CACHE_BYTES,
        "cache {cache_peak} > {CACHE_BYTES}"
    );
    assert!(pool_peak <= POOL_BYTES, "pool {pool_peak} > {POOL_BYTES}");
    assert!(metrics.hits > 0, "the cache was never used: {metrics:?}");
    assert_eq!(
        pool.reserved(),
        metrics.bytes,
        "only the cache holds memory after the queries"
    );

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "load: {} queries ({rounds} rounds of {CONCURRENT} concurrent) in {wall:?} = {:.1} queries/s; \
         p50 {:?}, p99 {:?}, max {:?}; pool peak {} of {POOL_BYTES} bytes; cache peak {cache_peak} of \
         {CACHE_BYTES} bytes; cache {metrics:?}",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies[latencies.len() - 1],
        pool_peak,
    );
}
