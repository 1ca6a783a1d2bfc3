//! Test data and helpers shared by the integration tests.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use datafusion::arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use lakefusion::PartitionedTable;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

pub const DATES: [&str; 5] = [
    "2026-03-01",
    "2026-03-02",
    "2026-03-03",
    "2026-03-04",
    "2026-03-05",
];
pub const REGIONS: [&str; 3] = ["apac", "eu", "us"];
pub const FILES_PER_PARTITION: usize = 3;
pub const ROWS_PER_FILE: usize = 200;
pub const ROWS_PER_ROW_GROUP: usize = 50;

pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("qty", DataType::Int32, true),
    ]))
}

/// Writes one Parquet file with small row groups (so pruning is visible).
pub fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROWS_PER_ROW_GROUP))
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// Rows with ids `start..start+n`: ids increase, so each row group has a narrow id range.
pub fn events_batch(start: i64, n: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let users: Vec<String> = ids.iter().map(|i| format!("user{}", i % 17)).collect();
    let amounts: Vec<f64> = ids.iter().map(|i| (i % 1000) as f64 / 10.0).collect();
    let qty: Vec<Option<i32>> = ids
        .iter()
        .map(|i| {
            if i % 7 == 0 {
                None
            } else {
                Some((i % 5) as i32)
            }
        })
        .collect();
    RecordBatch::try_new(
        events_schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(users)),
            Arc::new(Float64Array::from(amounts)),
            Arc::new(Int32Array::from(qty)),
        ],
    )
    .unwrap()
}

/// 5 dates x 3 regions = 15 partitions, 3 files each, 200 rows per file.
pub fn write_events(root: &Path) {
    let mut next = 0i64;
    for date in DATES {
        for region in REGIONS {
            for f in 0..FILES_PER_PARTITION {
                let path = root.join(format!("date={date}/region={region}/part-{f:05}.parquet"));
                write_parquet(&path, &events_batch(next, ROWS_PER_FILE));
                next += ROWS_PER_FILE as i64;
            }
        }
    }
}

/// A second partitioned table for joins: refunds of every 10th event, by date.
pub fn write_refunds(root: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Int64, false),
        Field::new("refund", DataType::Float64, false),
    ]));
    let per_date = (REGIONS.len() * FILES_PER_PARTITION * ROWS_PER_FILE) as i64;
    for (d, date) in DATES.iter().enumerate() {
        for f in 0..2 {
            let ids: Vec<i64> = (0..per_date)
                .map(|i| d as i64 * per_date + i)
                .filter(|i| i % 10 == f)
                .collect();
            let refunds: Vec<f64> = ids.iter().map(|i| (i % 13) as f64).collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(Float64Array::from(refunds)),
                ],
            )
            .unwrap();
            write_parquet(&root.join(format!("date={date}/part-{f}.parquet")), &batch);
        }
    }
}

pub fn file_url(path: &Path) -> String {
    format!("file://{}/", path.display())
}

/// Our table over `root` with the events partition spec.
pub async fn events_table(ctx: &SessionContext, root: &Path) -> PartitionedTable {
    events_table_with(ctx, root, false).await
}

/// [`events_table`], reading every footer for statistics if `statistics`.
pub async fn events_table_with(
    ctx: &SessionContext,
    root: &Path,
    statistics: bool,
) -> PartitionedTable {
    PartitionedTable::builder(file_url(root))
        .partition_column("date", DataType::Date32)
        .partition_column("region", DataType::Utf8)
        .collect_statistics(statistics)
        .build(&ctx.state())
        .await
        .unwrap()
}

/// DataFusion's ListingTable over the same files, same partition columns.
pub async fn listing_table(
    ctx: &SessionContext,
    root: &Path,
    partitions: &[(&str, DataType)],
) -> ListingTable {
    let url = ListingTableUrl::parse(file_url(root)).unwrap();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partitions
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
        );
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await
        .unwrap();
    ListingTable::try_new(config).unwrap()
}

/// Runs a statement (`SET`, DDL) to completion.
pub async fn exec(ctx: &SessionContext, sql: &str) {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs `sql` and returns its rows as pretty-printed lines (header excluded).
pub async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<String>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let text = pretty_format_batches(&batches)?.to_string();
    Ok(text
        .lines()
        .skip(3)
        .filter(|l| !l.starts_with('+'))
        .map(|l| l.to_string())
        .collect())
}

/// The physical plan DataFusion makes for `sql`.
pub async fn physical_plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .create_physical_plan()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The physical plan of `sql` as `EXPLAIN` prints it (file lists capped).
pub async fn explain_text(ctx: &SessionContext, sql: &str) -> String {
    let plan = physical_plan(ctx, sql).await;
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string();
    text
}

/// The physical plan of `sql` as `EXPLAIN VERBOSE` prints it (every file).
pub async fn physical_plan_text(ctx: &SessionContext, sql: &str) -> String {
    let plan = physical_plan(ctx, sql).await;
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    text
}

thread_local! {
    static CAPTURE: RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { RefCell::new(None) };
}

/// What every thread logs while a test captures the whole process.
static PROCESS_CAPTURE: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Writes into the current thread's capture buffer and, while one is active,
/// the process-wide one.
struct CaptureWriter;

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(captured) = c.borrow().as_ref() {
                captured.lock().unwrap().extend_from_slice(buf);
            }
        });
        if let Some(all) = PROCESS_CAPTURE.lock().unwrap().as_mut() {
            all.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One global subscriber for the whole test binary: thread-scoped subscribers
/// (`set_default`) race with other test threads over tracing's cached
/// callsite interest and can miss spans.
fn install_subscriber() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| CaptureWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
}

/// Captures what tracing prints on this thread from now on.
pub fn capture_thread_tracing() -> Arc<Mutex<Vec<u8>>> {
    install_subscriber();
    let captured = Arc::new(Mutex::new(Vec::new()));
    CAPTURE.with(|c| *c.borrow_mut() = Some(Arc::clone(&captured)));
    captured
}

/// Captures what tracing prints on every thread until
/// [`ProcessCapture::end`] (for work on other threads, such as in-process
/// executors and workers). One capture at a time: a second test waits for
/// the first to end. Look for values unique to the test: other tests'
/// output lands here too.
#[cfg_attr(not(feature = "wire"), allow(dead_code))]
pub fn capture_process_tracing() -> ProcessCapture {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    install_subscriber();
    *PROCESS_CAPTURE.lock().unwrap() = Some(Vec::new());
    ProcessCapture { _turn: turn }
}

/// A process-wide tracing capture under way.
pub struct ProcessCapture {
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl ProcessCapture {
    /// Stops the capture and returns what it caught.
    #[cfg_attr(not(feature = "wire"), allow(dead_code))]
    pub fn end(self) -> String {
        let captured = PROCESS_CAPTURE.lock().unwrap().take().unwrap_or_default();
        String::from_utf8_lossy(&captured).into_owned()
    }
}

/// Every file under `root`, hidden ones included, relative to it — but the
/// done markers (`_lakefusion/writes/<id>.done`) every write leaves for a
/// while (see the commit protocol), so that a finished write shows as its
/// files only.
pub fn all_files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                let done =
                    relative.starts_with("_lakefusion/writes/") && relative.ends_with(".done");
                if !done {
                    out.insert(relative);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

/// The error `sql` fails with while it runs (it must plan).
pub async fn execution_error(ctx: &SessionContext, sql: &str) -> String {
    ctx.sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err()
        .to_string()
}

pub async fn count(ctx: &SessionContext, sql: &str) -> i64 {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

/// The `PartitionedScanExec` line of a plan's text.
pub fn scan_line(plan: &str) -> &str {
    plan.lines()
        .find(|l| l.contains("PartitionedScanExec"))
        .expect("a PartitionedScanExec")
}

/// CRC-32 (IEEE), written out so codec tests do not share the crate's code.
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The codec envelope's wire layout, written independently of the crate.
#[cfg(feature = "ballista")]
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    #[prost(string, tag = "1")]
    pub codec: String,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub format_version: u32,
    #[prost(uint32, tag = "4")]
    pub checksum: u32,
}

/// `text` with the temporary directory `root` written as `ROOT`, so plans
/// can be compared as snapshots (`file:///tmp/.tmpX/` and the object path
/// `tmp/.tmpX/...` both become `…ROOT…`).
pub fn redacted(text: &str, root: &Path) -> String {
    let absolute = root.display().to_string();
    let relative = absolute.trim_start_matches('/');
    text.replace(&absolute, "/ROOT").replace(relative, "ROOT")
}

/// The first node of type `T` in `plan`, depth first.
pub fn find<T: ExecutionPlan + 'static>(
    plan: &Arc<dyn ExecutionPlan>,
) -> Option<Arc<dyn ExecutionPlan>> {
    if plan.is::<T>() {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(find::<T>)
}

/// Runs `plan` and returns its rows as sorted pretty-printed lines.
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub async fn sorted_rows(
    plan: Arc<dyn ExecutionPlan>,
    ctx: Arc<datafusion::execution::TaskContext>,
) -> Vec<String> {
    let batches = datafusion::physical_plan::collect(plan, ctx).await.unwrap();
    let text = pretty_format_batches(&batches).unwrap().to_string();
    let mut lines: Vec<String> = text
        .lines()
        .skip(3)
        .filter(|l| !l.starts_with('+'))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// A session with `target_partitions` partitions that never plans a
/// single-partition (collect-left) join, so a declared `Hash` partitioning
/// meets DataFusion's own repartitioning.
pub fn partitioned_join_session(target_partitions: usize) -> SessionContext {
    SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new()
            .with_target_partitions(target_partitions)
            .set_u64(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                0,
            )
            .set_u64(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                0,
            ),
    )
}

/// A pool that remembers the most it ever had reserved.
#[derive(Debug)]
pub struct PeakPool {
    inner: GreedyMemoryPool,
    peak: AtomicUsize,
}

impl PeakPool {
    /// A greedy pool of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self {
            inner: GreedyMemoryPool::new(bytes),
            peak: AtomicUsize::new(0),
        }
    }

    /// The most that was ever reserved at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn record(&self) {
        self.peak
            .fetch_max(self.inner.reserved(), Ordering::Relaxed);
    }
}

impl std::fmt::Display for PeakPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeakPool({})", self.inner)
    }
}

impl MemoryPool for PeakPool {
    fn name(&self) -> &str {
        "PeakPool(Greedy)"
    }
    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }
    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }
    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.record();
    }
    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }
    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.inner.try_grow(reservation, additional)?;
        self.record();
        Ok(())
    }
    fn reserved(&self) -> usize {
        self.inner.reserved()
    }
    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// Every key in `store`, sorted — but done markers (see [`all_files`]).
pub async fn keys(store: &Arc<dyn object_store::ObjectStore>) -> Vec<String> {
    use futures::TryStreamExt;
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_filter(|k| {
            futures::future::ready(!(k.contains("_lakefusion/writes/") && k.ends_with(".done")))
        })
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Whether the journal object at `path` (local) is an abort marker: left
/// by a take-back until its retention ends, hiding nothing.
pub fn is_abort_marker(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".committed")
        && std::fs::read_to_string(path).is_ok_and(|text| text.starts_with("lakefusion aborted"))
}

/// Cases per property: `PROPTEST_CASES` if set, else `default`.
pub fn proptest_config(default: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// One non-null `id: Int64` column: the file schema of the write tests.
pub fn id_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]))
}

/// `events` and `refunds` (written by `write_events` / `write_refunds` under
/// `dir`), as the engines' tests register them.
#[cfg_attr(not(feature = "wire"), allow(dead_code))]
pub async fn register_events_and_refunds(ctx: &SessionContext, dir: &std::path::Path) {
    ctx.register_table(
        "events",
        Arc::new(events_table(ctx, &dir.join("events")).await),
    )
    .unwrap();
    let refunds = PartitionedTable::builder(file_url(&dir.join("refunds")))
        .name("refunds")
        .partition_column("date", DataType::Date32)
        .collect_statistics(true)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("refunds", Arc::new(refunds)).unwrap();
}

/// Queries every engine must answer exactly as one machine does: pruning,
/// aggregates, a join, an ordered range, a limit, a small table.
#[cfg_attr(not(feature = "wire"), allow(dead_code))]
pub const ENGINE_QUERIES: &[&str] = &[
    "SELECT count(*) FROM events WHERE date = DATE '2026-03-02' AND region = 'eu'",
    "SELECT region, count(*), sum(qty), min(id), max(id) FROM events WHERE amount > 50 GROUP BY region ORDER BY region",
    "SELECT e.region, count(*), sum(r.refund) FROM events e JOIN refunds r ON e.id = r.event_id WHERE e.date <= DATE '2026-03-03' GROUP BY e.region ORDER BY e.region",
    "SELECT id, region FROM events WHERE id BETWEEN 100 AND 104 ORDER BY id",
    "SELECT count(*) FROM (SELECT id FROM events WHERE region = 'us' LIMIT 17)",
    "SELECT count(*), sum(refund) FROM refunds WHERE date >= DATE '2026-03-02'",
];

/// What the tasks of a query run with `query_id` (tenant `umbrella`, the
/// cache off, `lakefusion.read_ahead_requests = 7`) logged where they ran:
/// the lines of plans decoded with the query id, and how many scans ran in
/// a span carrying it.
#[cfg_attr(not(feature = "wire"), allow(dead_code))]
pub struct ContextTrace {
    pub log: String,
    pub decoded: Vec<String>,
    pub scans: usize,
}

/// Sets the query context and scan options on `ctx`, runs a scan with them
/// and gathers the [`ContextTrace`]; the cache and read-ahead settings are
/// put back afterwards.
#[cfg_attr(not(feature = "wire"), allow(dead_code))]
pub async fn trace_query_context(ctx: &SessionContext, query_id: &str) -> ContextTrace {
    let capture = capture_process_tracing();
    exec(ctx, &format!("SET query_context.query_id = '{query_id}'")).await;
    exec(ctx, "SET query_context.tenant_id = 'umbrella'").await;
    exec(ctx, "SET lakefusion.cache_enabled = false").await;
    exec(ctx, "SET lakefusion.read_ahead_requests = 7").await;
    rows(
        ctx,
        "SELECT count(*) FROM events WHERE region = 'apac' AND amount > 1",
    )
    .await
    .unwrap();
    exec(ctx, "SET lakefusion.cache_enabled = true").await;
    exec(ctx, "SET lakefusion.read_ahead_requests = 64").await;
    let log = capture.end();
    let decoded = log
        .lines()
        .filter(|l| l.contains("decoding plan node") && l.contains(&format!("query_id={query_id}")))
        .map(str::to_string)
        .collect();
    let scans = log
        .lines()
        .filter(|l| {
            l.contains(&format!(
                "lakefusion.scan{{query_id={query_id} tenant_id=umbrella"
            )) && l.contains("scan partition done")
        })
        .count();
    ContextTrace {
        log,
        decoded,
        scans,
    }
}

/// Four files with an `Int32` column `n` under `k=0` … `k=3`, and one under
/// `k=9` where `n` is `Int64`; returns the schema the table declares
/// (`Int32`), which the `k=9` file conflicts with.
#[cfg_attr(not(feature = "wire"), allow(dead_code))]
pub fn write_conflicting_types(root: &Path) -> SchemaRef {
    let narrow = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
    let wide = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    for k in 0..4 {
        let batch = RecordBatch::try_new(
            Arc::clone(&narrow),
            vec![Arc::new(Int32Array::from(vec![k, k + 1]))],
        )
        .unwrap();
        write_parquet(&root.join(format!("k={k}/part-0.parquet")), &batch);
    }
    let batch =
        RecordBatch::try_new(wide, vec![Arc::new(Int64Array::from(vec![7_i64, 8]))]).unwrap();
    write_parquet(&root.join("k=9/part-0.parquet"), &batch);
    narrow
}
