//! Reading ahead on an object store (`ScanOptions::read_ahead_requests`):
//! one request per small file, many requests in flight, none before the
//! first poll and none after the streams are dropped, few under a `LIMIT`,
//! bytes within the budget — and still the right rows, dynamic filters that
//! skip files, and errors that name the file. Proven with `FaultyStore`'s
//! request counters and the scan's metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::DataType;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use lakefusion::store::faults::{Fault, FaultRule, FaultyStore, RequestKind};
use lakefusion::{PartitionedScanExec, PartitionedTable, SessionBuilder};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use url::Url;

use crate::common::*;

const PARTITIONS: usize = 20;
const FILES: usize = 5;
const ROWS: usize = 100;
const TOTAL: &str = "SELECT count(*), sum(amount), min(p), max(p) FROM t";

/// `PARTITIONS × FILES` small files under `memory:///lake/p=…/`.
async fn memory_lake() -> Arc<InMemory> {
    let lake = Arc::new(InMemory::new());
    let mut next = 0;
    for p in 0..PARTITIONS {
        for f in 0..FILES {
            let batch = events_batch(next, ROWS);
            next += ROWS as i64;
            let mut bytes = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            let path = Path::from(format!("lake/p={p}/part-{f}.parquet"));
            lake.put(&path, PutPayload::from(bytes)).await.unwrap();
        }
    }
    lake
}

/// A session over `lake` seen through a counting `FaultyStore`, with the
/// table registered as `t` and the counts reset.
async fn session(lake: &Arc<InMemory>, partitions: usize) -> (SessionContext, Arc<FaultyStore>) {
    session_with(
        lake,
        SessionConfig::new().with_target_partitions(partitions),
    )
    .await
}

/// [`session`], with `config`.
async fn session_with(
    lake: &Arc<InMemory>,
    config: SessionConfig,
) -> (SessionContext, Arc<FaultyStore>) {
    let store = FaultyStore::new(Arc::clone(lake) as Arc<dyn ObjectStore>);
    let ctx = SessionBuilder::new()
        .with_config(config)
        .with_object_store(
            Url::parse("memory://").unwrap(),
            store.clone() as Arc<dyn ObjectStore>,
        )
        .build_context();
    let table = PartitionedTable::builder("memory:///lake/")
        .partition_column("p", DataType::Int32)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    store.reset_counts();
    (ctx, store)
}

fn reads(store: &FaultyStore) -> usize {
    store.requests_of(RequestKind::Read) + store.requests_of(RequestKind::Head)
}

fn scan_of(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    fn walk(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
        if plan.is::<PartitionedScanExec>() {
            return Some(Arc::clone(plan));
        }
        plan.children().into_iter().find_map(walk)
    }
    walk(plan).expect("a PartitionedScanExec in the plan")
}

fn metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    scan_of(plan)
        .metrics()
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize())
}

/// After a scan's streams were dropped: no read of `store` left in flight
/// within 2 s, and none issued in the `quiet` after.
async fn assert_cancelled(store: &FaultyStore, quiet: Duration) {
    let dropped = Instant::now();
    while store.reads_in_flight() > 0 && dropped.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.reads_in_flight(), 0, "every read was cancelled");
    let issued = store.requests();
    tokio::time::sleep(quiet).await;
    assert_eq!(store.requests(), issued, "and nothing new was issued");
}

#[tokio::test]
async fn a_small_file_is_read_in_one_request() {
    let lake = memory_lake().await;
    let (ctx, store) = session(&lake, 4).await;
    let ahead = rows(&ctx, TOTAL).await.unwrap();
    assert_eq!(
        reads(&store),
        PARTITIONS * FILES,
        "one request per file, footer and data together"
    );

    // Without reading ahead, DataFusion's reader makes a footer and a data
    // request per file: the same rows for twice the requests.
    exec(&ctx, "SET lakefusion.read_ahead_requests = 0").await;
    ctx.runtime_env()
        .cache_manager
        .get_file_metadata_cache()
        .clear();
    store.reset_counts();
    assert_eq!(rows(&ctx, TOTAL).await.unwrap(), ahead);
    assert!(
        reads(&store) >= 2 * PARTITIONS * FILES,
        "{} reads",
        reads(&store)
    );
    let total = PARTITIONS * FILES * ROWS;
    let amount: f64 = (0..total).map(|i| (i % 1000) as f64 / 10.0).sum();
    let fields: Vec<&str> = ahead[0]
        .split('|')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    assert_eq!(fields[0], total.to_string());
    assert!((fields[1].parse::<f64>().unwrap() - amount).abs() < 1e-6);
    assert_eq!(fields[2..], ["0", &(PARTITIONS - 1).to_string()]);
}

#[tokio::test]
async fn many_reads_are_in_flight_at_once_within_the_setting() {
    let lake = memory_lake().await;
    let (ctx, store) = session(&lake, 2).await;
    store.inject(FaultRule::new(Fault::Latency(Duration::from_millis(20))).on(RequestKind::Read));
    exec(&ctx, "SET lakefusion.read_ahead_requests = 16").await;
    let ahead = rows(&ctx, TOTAL).await.unwrap();
    let peak = store.peak_reads_in_flight();
    println!("peak reads in flight: {peak}");
    // 16 ahead, plus at most one read of each partition's own (a file it
    // reached before the read-ahead did).
    assert!(
        (12..=16 + 2).contains(&peak),
        "peak of {peak} reads in flight"
    );

    exec(&ctx, "SET lakefusion.read_ahead_requests = 0").await;
    store.reset_counts();
    assert_eq!(rows(&ctx, TOTAL).await.unwrap(), ahead);
    let peak = store.peak_reads_in_flight();
    assert!(
        peak <= 2,
        "without reading ahead, one read per partition: {peak}"
    );
}

#[tokio::test]
async fn nothing_is_read_before_the_first_poll_and_dropping_the_streams_cancels_every_read() {
    let lake = memory_lake().await;
    let (ctx, store) = session(&lake, 4).await;
    store.inject(FaultRule::new(Fault::Latency(Duration::from_secs(30))).on(RequestKind::Read));
    let plan = physical_plan(&ctx, "SELECT * FROM t").await;
    let scan = scan_of(&plan);
    let mut streams: Vec<_> = (0..4)
        .map(|p| scan.execute(p, ctx.task_ctx()).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.requests(), 0, "executing is not reading");

    let first = tokio::time::timeout(Duration::from_millis(200), streams[0].next()).await;
    assert!(first.is_err(), "every read takes 30 s");
    let in_flight = store.reads_in_flight();
    assert!(in_flight > 4, "read ahead: {in_flight} reads in flight");

    drop(streams);
    assert_cancelled(&store, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_limit_reads_ahead_one_file_per_partition() {
    let lake = memory_lake().await;
    let (ctx, store) = session(&lake, 4).await;
    let rows = rows(&ctx, "SELECT id FROM t LIMIT 3").await.unwrap();
    assert_eq!(rows.len(), 3);
    let reads = reads(&store);
    assert!(
        reads <= 2 * 4,
        "{reads} reads of {} files for 3 rows",
        PARTITIONS * FILES
    );
}

#[tokio::test]
async fn the_bytes_held_stay_within_the_budget() {
    let lake = memory_lake().await;
    let (ctx, _store) = session(&lake, 4).await;
    let meta = lake
        .head(&Path::from("lake/p=0/part-0.parquet"))
        .await
        .unwrap();
    let budget = 3 * meta.size as usize + meta.size as usize / 2;
    let expected = rows(&ctx, TOTAL).await.unwrap();
    exec(&ctx, &format!("SET lakefusion.read_ahead_bytes = {budget}")).await;
    let plan = physical_plan(&ctx, TOTAL).await;
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let peak = metric(&plan, "read_ahead_peak_bytes");
    assert!(
        peak > 0 && peak <= budget,
        "peak {peak} B, budget {budget} B"
    );
    assert!(metric(&plan, "read_ahead_hits") > 0);
    assert_eq!(rows(&ctx, TOTAL).await.unwrap(), expected);
}

#[tokio::test]
async fn a_file_that_fails_is_named_and_the_scan_does_not_hang() {
    let lake = memory_lake().await;
    let (ctx, store) = session(&lake, 4).await;
    store.inject(
        FaultRule::new(Fault::Permanent)
            .on(RequestKind::Read)
            .path_contains("p=7/part-3"),
    );
    let error = tokio::time::timeout(Duration::from_secs(10), rows(&ctx, TOTAL))
        .await
        .expect("the scan ends")
        .unwrap_err()
        .to_string();
    assert!(error.contains("lake/p=7/part-3.parquet"), "{error}");
}

#[tokio::test]
async fn a_join_filter_still_skips_files_read_ahead() {
    use datafusion::physical_plan::metrics::MetricValue;

    let lake = memory_lake().await;
    let (ctx, _store) = session(&lake, 1).await;
    exec(&ctx, "CREATE TABLE picks AS SELECT 3 AS p").await;
    let sql = "SELECT count(*) FROM t JOIN picks ON t.p = picks.p";
    let plan = physical_plan(&ctx, sql).await;
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    let counted = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(
        counted.contains(&format!("| {} ", FILES * ROWS)),
        "{counted}"
    );
    assert!(metric(&plan, "read_ahead_requests") > 0);
    let mut skipped = 0;
    for m in scan_of(&plan).metrics().unwrap().iter() {
        if let MetricValue::PruningMetrics {
            name,
            pruning_metrics,
        } = m.value()
        {
            if name == "files_ranges_pruned_statistics" {
                skipped += pruning_metrics.pruned();
            }
        }
    }
    assert_eq!(
        skipped,
        (PARTITIONS - 1) * FILES,
        "the hash join's filter skipped them"
    );
}

/// Large files: `LARGE_FILES` files of 40,000 rows in row groups of 2,000
/// under `memory:///lake/p=0..1/`, each well over the `whole_file_bytes`
/// the tests set (64 KiB), so only a footer is read whole.
const LARGE_FILES: usize = 4;
const LARGE_ROWS: usize = 40_000;

async fn large_lake() -> Arc<InMemory> {
    use parquet::file::properties::WriterProperties;

    let lake = Arc::new(InMemory::new());
    for f in 0..LARGE_FILES {
        let batch = events_batch((f * LARGE_ROWS) as i64, LARGE_ROWS);
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(2_000))
            .set_dictionary_enabled(false)
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        assert!(bytes.len() > 512 * 1024, "{} bytes", bytes.len());
        let path = Path::from(format!("lake/p={}/part-{f}.parquet", f % 2));
        lake.put(&path, PutPayload::from(bytes)).await.unwrap();
    }
    lake
}

/// A session over the large lake that reads files over 64 KiB in pieces
/// after their last 64 KiB (DataFusion's default footer read, 512 KiB,
/// would be half of these files), with 16 reads in flight and 2 MiB held
/// at most (so 128 KiB pieces), each read taking 2 ms (as a remote store's:
/// the read-ahead's reads run while the decoders wait).
async fn large_session(lake: &Arc<InMemory>) -> (SessionContext, Arc<FaultyStore>) {
    let mut config = SessionConfig::new().with_target_partitions(4);
    config.options_mut().execution.parquet.metadata_size_hint = Some(64 * 1024);
    let (ctx, store) = session_with(lake, config).await;
    exec(&ctx, "SET lakefusion.whole_file_bytes = 65536").await;
    exec(&ctx, "SET lakefusion.read_ahead_requests = 16").await;
    exec(&ctx, "SET lakefusion.read_ahead_bytes = 2097152").await;
    store.inject(FaultRule::new(Fault::Latency(Duration::from_millis(2))).on(RequestKind::Read));
    (ctx, store)
}

const LARGE_TOTAL: &str = "SELECT count(*), sum(amount), max(id), max(user) FROM t";

#[tokio::test]
async fn a_large_file_is_read_ahead_in_pieces_within_the_budget() {
    let lake = large_lake().await;
    let (ctx, store) = large_session(&lake).await;
    let plan = physical_plan(&ctx, LARGE_TOTAL).await;
    collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    let requests = metric(&plan, "read_ahead_requests");
    let peak = metric(&plan, "read_ahead_peak_bytes");
    let read = metric(&plan, "read_ahead_bytes");
    let store_reads = reads(&store);
    println!(
        "{requests} reads ahead, {read} B, peak {peak} B; {store_reads} reads of the store; {} hits",
        metric(&plan, "read_ahead_hits")
    );
    // A footer and more than one piece per file.
    assert!(requests > 3 * LARGE_FILES, "{requests} reads ahead");
    assert!(peak > 0 && peak <= 2 << 20, "peak {peak} B, budget 2 MiB");
    // The decoders read from the pieces: at most two reads of each file of
    // their own (pieces a decoder reached before they could be issued).
    assert!(
        store_reads <= requests + 2 * LARGE_FILES,
        "{store_reads} reads of the store, {requests} of them ahead"
    );
    let sizes: u64 = {
        let mut total = 0;
        for f in 0..LARGE_FILES {
            let path = Path::from(format!("lake/p={}/part-{f}.parquet", f % 2));
            total += lake.head(&path).await.unwrap().size;
        }
        total
    };
    assert!(read as u64 <= sizes, "{read} B read ahead of {sizes} B");

    // Without reading ahead: the same rows, a request per row group.
    let ahead = rows(&ctx, LARGE_TOTAL).await.unwrap();
    exec(&ctx, "SET lakefusion.read_ahead_requests = 0").await;
    ctx.runtime_env()
        .cache_manager
        .get_file_metadata_cache()
        .clear();
    store.reset_counts();
    assert_eq!(rows(&ctx, LARGE_TOTAL).await.unwrap(), ahead);
    let total = LARGE_FILES * LARGE_ROWS;
    assert!(ahead[0].contains(&format!("| {total} ")), "{ahead:?}");
    assert!(reads(&store) >= LARGE_FILES * 20, "{} reads", reads(&store));
}

#[tokio::test]
async fn a_large_file_scan_reads_ahead_only_the_columns_it_reads() {
    let lake = large_lake().await;
    let (ctx, _store) = large_session(&lake).await;
    let bytes_for = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let plan = physical_plan(&ctx, sql).await;
            collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
            metric(&plan, "read_ahead_bytes")
        }
    };
    let amount = bytes_for("SELECT sum(amount) FROM t").await;
    let amount_and_user = bytes_for("SELECT sum(amount), max(user) FROM t").await;
    let all = bytes_for(LARGE_TOTAL).await;
    println!("read ahead: amount {amount} B, with user {amount_and_user} B, with id too {all} B");
    assert!(amount > 0 && amount < amount_and_user && amount_and_user < all);
}

#[tokio::test]
async fn a_large_file_scan_that_may_skip_row_groups_reads_ahead_footers_only_and_not_cached_ones() {
    let lake = large_lake().await;
    let (ctx, _store) = large_session(&lake).await;
    for sql in [
        "SELECT sum(amount) FROM t WHERE id BETWEEN 1000 AND 3000",
        "SELECT id FROM t LIMIT 5",
    ] {
        let plan = physical_plan(&ctx, sql).await;
        collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
        let requests = metric(&plan, "read_ahead_requests");
        assert!(requests <= LARGE_FILES, "{sql}: {requests} reads ahead");
    }
    // Again: the footers are in DataFusion's metadata cache now, where the
    // decoders find them, so nothing is read ahead.
    let sql = "SELECT sum(amount) FROM t WHERE id BETWEEN 1000 AND 3000";
    let plan = physical_plan(&ctx, sql).await;
    collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    assert_eq!(
        metric(&plan, "read_ahead_requests"),
        0,
        "{sql}, footers cached"
    );
}

#[tokio::test]
async fn dropping_a_large_file_scan_cancels_its_pieces() {
    let lake = large_lake().await;
    let (ctx, store) = large_session(&lake).await;
    store.clear();
    store.inject(FaultRule::new(Fault::Latency(Duration::from_millis(200))).on(RequestKind::Read));
    let plan = physical_plan(&ctx, "SELECT * FROM t").await;
    let scan = scan_of(&plan);
    let mut streams: Vec<_> = (0..4)
        .map(|p| scan.execute(p, ctx.task_ctx()).unwrap())
        .collect();
    // The first batch: a footer, then the first pieces.
    let first = tokio::time::timeout(Duration::from_secs(10), streams[0].next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "a first batch");
    let in_flight = store.reads_in_flight();
    assert!(
        in_flight >= 2,
        "pieces read ahead: {in_flight} reads in flight"
    );
    drop(streams);
    assert_cancelled(&store, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_large_file_that_fails_is_named() {
    let lake = large_lake().await;
    let (ctx, store) = large_session(&lake).await;
    store.clear();
    store.inject(
        FaultRule::new(Fault::Permanent)
            .on(RequestKind::Read)
            .path_contains("p=1/part-3"),
    );
    store.inject(FaultRule::new(Fault::Latency(Duration::from_millis(2))).on(RequestKind::Read));
    let error = tokio::time::timeout(Duration::from_secs(10), rows(&ctx, LARGE_TOTAL))
        .await
        .expect("the scan ends")
        .unwrap_err()
        .to_string();
    assert!(error.contains("lake/p=1/part-3.parquet"), "{error}");
}
