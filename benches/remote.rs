//! PartitionedTable vs ListingTable on a remote-like lake, in one run.
//!
//! ```text
//! cargo bench --bench remote -- [--partitions 102] [--files-per-partition 10]
//!     [--rows 1000] [--latency-ms 20] [--runs 3] [--large 12x1250000,3x8000000]
//! ```
//!
//! The lake (by default 1,020 files of 1,000 rows in 102 partitions) lives
//! in an in-memory store behind object_store's `ThrottledStore`, which waits
//! `--latency-ms` before every request; requests are counted by the crate's
//! `FaultyStore`. Every measurement starts from a fresh `SessionContext` and
//! fresh store wrappers, so no cache is warm (target_partitions 4):
//!
//! * registration + first full scan (`count(*)`, `sum`);
//! * a repeated full scan on the same context;
//! * registration + a first one-partition query.
//!
//! Each line prints both times and `listing / ours` (above 1 means lakefusion
//! is faster), then requests per file and the read-ahead's peak bytes held
//! against its budget.
//!
//! Then lakes of large files (`--large 12x1250000,3x8000000`: 12 files of
//! ~20 MB and 3 of ~128 MB, 10 row groups each, in one partition directory
//! `p=0`), behind a store that also waits 10 ns a byte (one connection's
//! 100 MB/s): a cold full scan (fresh session: registration + scan), the
//! same scan again, and a selective filter on `id`, ours against
//! ListingTable, with the bytes read ahead and the bandwidth limit: bytes ÷
//! (100 MB/s × requests in flight) + a round trip per wave of requests.
//!
//! Then writing on S3: an S3-compatible server on loopback (s3s-fs,
//! in-process, object_store's `AmazonS3` client on its defaults), the whole
//! lake written with `INSERT INTO` a `PartitionedTable` (a multipart upload
//! per file, completed when all are whole) and with DataFusion's
//! `COPY … TO … PARTITIONED BY`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::median;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::store::faults::FaultyStore;
use lakefusion::{PartitionedTable, ScanOptions, SessionBuilder};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use url::Url;

#[path = "../tests/it/s3_server.rs"]
mod s3_server;

struct Args {
    partitions: usize,
    files_per_partition: usize,
    rows: usize,
    latency: Duration,
    runs: usize,
    /// Large-file lakes: files, rows a file (row groups of a tenth of it).
    large: Vec<(usize, usize)>,
}

fn parse_args() -> Args {
    let mut args = Args {
        partitions: 102,
        files_per_partition: 10,
        rows: 1000,
        latency: Duration::from_millis(20),
        runs: 3,
        large: vec![(12, 1_250_000), (3, 8_000_000)],
    };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> usize {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} N"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--partitions" => args.partitions = number(it.next(), "--partitions"),
            "--files-per-partition" => {
                args.files_per_partition = number(it.next(), "--files-per-partition")
            }
            "--rows" => args.rows = number(it.next(), "--rows"),
            "--latency-ms" => {
                args.latency = Duration::from_millis(number(it.next(), "--latency-ms") as u64)
            }
            "--runs" => args.runs = number(it.next(), "--runs"),
            // `12x1250000,3x8000000`; empty: none.
            "--large" => {
                args.large = it
                    .next()
                    .expect("--large FILESxROWS,…")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|shape| {
                        let (files, rows) = shape.split_once('x').expect("FILESxROWS");
                        (files.parse().expect("files"), rows.parse().expect("rows"))
                    })
                    .collect()
            }
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

const ROOT: &str = "memory:///lake/";
const FULL_SCAN: &str = "SELECT count(*), sum(v), count(DISTINCT s) FROM t";
const ONE_PARTITION: &str = "SELECT count(*), sum(v) FROM t WHERE p = 7";

fn main() -> Result<()> {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn write_lake(args: &Args) -> Result<Arc<InMemory>> {
    let store = Arc::new(InMemory::new());
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    let mut bytes = 0;
    for p in 0..args.partitions {
        for f in 0..args.files_per_partition {
            let base = ((p * args.files_per_partition + f) * args.rows) as i64;
            let ids: Vec<i64> = (base..base + args.rows as i64).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 97))),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|i| format!("s{}", i % 13)),
                    )),
                ],
            )?;
            let mut buffer = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut buffer, Arc::clone(&schema), None)?;
            writer.write(&batch)?;
            writer.close()?;
            bytes += buffer.len();
            let path = Path::from(format!("lake/p={p}/part-{f}.parquet"));
            store.put(&path, PutPayload::from(buffer)).await?;
        }
    }
    let files = args.partitions * args.files_per_partition;
    println!(
        "lake: {files} files, {} partitions, {} rows a file, {} KiB a file on average, {} ms a request",
        args.partitions,
        args.rows,
        bytes / files / 1024,
        args.latency.as_millis()
    );
    Ok(store)
}

/// A fresh context over a fresh throttled, counted view of `lake`.
fn fresh(lake: &Arc<InMemory>, latency: Duration) -> (SessionContext, Arc<FaultyStore>) {
    fresh_with(lake, latency, Duration::ZERO)
}

/// [`fresh`], with reads also waiting `per_byte` for each byte.
fn fresh_with(
    lake: &Arc<InMemory>,
    latency: Duration,
    per_byte: Duration,
) -> (SessionContext, Arc<FaultyStore>) {
    let throttled = ThrottledStore::new(
        Arc::clone(lake) as Arc<dyn ObjectStore>,
        ThrottleConfig {
            wait_get_per_call: latency,
            wait_get_per_byte: per_byte,
            wait_list_per_call: latency,
            wait_list_with_delimiter_per_call: latency,
            wait_put_per_call: latency,
            ..Default::default()
        },
    );
    let store = FaultyStore::new(Arc::new(throttled));
    let ctx = SessionBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(4))
        .with_object_store(
            Url::parse("memory://").expect("url"),
            store.clone() as Arc<dyn ObjectStore>,
        )
        .build_context();
    (ctx, store)
}

async fn ours(ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
    let table = PartitionedTable::builder(ROOT)
        .partition_column("p", DataType::Int32)
        .build(&ctx.state())
        .await?;
    Ok(Arc::new(table))
}

async fn listing(ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
    let options = ListingOptions::new(Arc::new(
        ParquetFormat::default().with_options(ctx.state().table_options().parquet.clone()),
    ))
    .with_file_extension(".parquet")
    .with_table_partition_cols(vec![("p".to_string(), DataType::Int32)]);
    let config = ListingTableConfig::new(ListingTableUrl::parse(ROOT)?)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await?;
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// Runs `sql`, returning its rows as text and the largest
/// `read_ahead_peak_bytes` any scan in the plan reported.
async fn run_query(ctx: &SessionContext, sql: &str) -> Result<(String, usize)> {
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await?;
    let rows = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    Ok((rows, peak_read_ahead(&plan)))
}

fn peak_read_ahead(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name("read_ahead_peak_bytes"))
        .map_or(0, |v| v.as_usize());
    plan.children()
        .into_iter()
        .map(peak_read_ahead)
        .fold(own, usize::max)
}

#[derive(Default)]
struct Side {
    first_full: Vec<Duration>,
    repeated_full: Vec<Duration>,
    first_partition: Vec<Duration>,
    requests_first_full: usize,
    requests_repeated: usize,
    peak: usize,
}

async fn measure(
    lake: &Arc<InMemory>,
    args: &Args,
    ours_side: bool,
    side: &mut Side,
) -> Result<String> {
    let register = |ctx: SessionContext| async move {
        let table = if ours_side {
            ours(&ctx).await?
        } else {
            listing(&ctx).await?
        };
        ctx.register_table("t", table)?;
        Result::<SessionContext>::Ok(ctx)
    };
    // Registration + first full scan, then the same scan again.
    let (ctx, store) = fresh(lake, args.latency);
    let started = Instant::now();
    let ctx = register(ctx).await?;
    let (rows, peak) = run_query(&ctx, FULL_SCAN).await?;
    side.first_full.push(started.elapsed());
    side.requests_first_full = store.requests();
    side.peak = side.peak.max(peak);
    store.reset_counts();
    let started = Instant::now();
    let (again, _) = run_query(&ctx, FULL_SCAN).await?;
    side.repeated_full.push(started.elapsed());
    side.requests_repeated = store.requests();
    assert_eq!(rows, again, "a repeated scan changed its answer");

    // Registration + a first one-partition query.
    let (ctx, _) = fresh(lake, args.latency);
    let started = Instant::now();
    let ctx = register(ctx).await?;
    run_query(&ctx, ONE_PARTITION).await?;
    side.first_partition.push(started.elapsed());
    Ok(rows)
}

fn print_row(name: &str, ours: &mut [Duration], listing: &mut [Duration]) -> f64 {
    let (o, l) = (median(ours), median(listing));
    let ratio = l.as_secs_f64() / o.as_secs_f64();
    println!(
        "{name:<44} {:>10.1} ms {:>10.1} ms {ratio:>8.2}x",
        o.as_secs_f64() * 1e3,
        l.as_secs_f64() * 1e3
    );
    ratio
}

async fn run(args: Args) -> Result<()> {
    let lake = write_lake(&args).await?;
    let files = args.partitions * args.files_per_partition;
    let (mut ours_side, mut listing_side) = (Side::default(), Side::default());
    for _ in 0..args.runs {
        let a = measure(&lake, &args, true, &mut ours_side).await?;
        let b = measure(&lake, &args, false, &mut listing_side).await?;
        assert_eq!(a, b, "the two tables disagree");
    }
    println!(
        "{:<44} {:>13} {:>13} {:>9}",
        "median of runs", "ours", "ListingTable", "listing/ours"
    );
    print_row(
        "registration + first full scan",
        &mut ours_side.first_full,
        &mut listing_side.first_full,
    );
    print_row(
        "repeated full scan",
        &mut ours_side.repeated_full,
        &mut listing_side.repeated_full,
    );
    print_row(
        "registration + first one-partition query",
        &mut ours_side.first_partition,
        &mut listing_side.first_partition,
    );
    let per_file = |n: usize| n as f64 / files as f64;
    println!(
        "requests per file, registration + first full scan: ours {:.2}, ListingTable {:.2}",
        per_file(ours_side.requests_first_full),
        per_file(listing_side.requests_first_full)
    );
    println!(
        "requests per file, repeated full scan: ours {:.2}, ListingTable {:.2}",
        per_file(ours_side.requests_repeated),
        per_file(listing_side.requests_repeated)
    );
    for &(files, rows) in &args.large {
        large_files(files, rows, &args).await?;
    }
    write_on_s3(&lake, &args).await?;
    let budget = ScanOptions::default();
    println!(
        "read-ahead: peak {} KiB held, budget {} KiB, {} requests in flight at most",
        ours_side.peak / 1024,
        budget.read_ahead_bytes / 1024,
        budget.read_ahead_requests
    );
    Ok(())
}

/// `INSERT INTO` a `PartitionedTable` vs `COPY TO`, both writing the whole
/// lake to the S3 server, `--runs` times each (fresh prefixes).
async fn write_on_s3(lake: &Arc<InMemory>, args: &Args) -> Result<()> {
    let server = s3_server::S3Server::start("warehouse").await;
    let (ctx, _) = fresh(lake, Duration::ZERO);
    ctx.register_table("t", ours(&ctx).await?)?;
    ctx.register_object_store(&Url::parse(&server.url()).expect("url"), server.store());
    let schema = ctx.table("t").await?.schema().as_arrow().clone();
    let file_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| f.name() != "p")
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let (mut insert, mut copy) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let target = PartitionedTable::builder(format!("{}/insert-{run}/", server.url()))
            .schema(Arc::clone(&file_schema))
            .partition_column("p", DataType::Int32)
            .build(&ctx.state())
            .await?;
        ctx.register_table(format!("insert_{run}"), Arc::new(target))?;
        let started = Instant::now();
        ctx.sql(&format!("INSERT INTO insert_{run} SELECT * FROM t"))
            .await?
            .collect()
            .await?;
        insert.push(started.elapsed());
        let started = Instant::now();
        ctx.sql(&format!(
            "COPY (SELECT * FROM t) TO '{}/copy-{run}/' STORED AS PARQUET PARTITIONED BY (p)",
            server.url()
        ))
        .await?
        .collect()
        .await?;
        copy.push(started.elapsed());
    }
    println!("writing the lake to the S3 server (second column: DataFusion's COPY TO)");
    print_row(
        "INSERT INTO a PartitionedTable vs COPY TO",
        &mut insert,
        &mut copy,
    );
    Ok(())
}

/// `files` files of `rows` rows in 10 row groups each, under `lake/p=0/`.
async fn write_large_lake(files: usize, rows: usize) -> Result<(Arc<InMemory>, usize)> {
    use parquet::file::properties::WriterProperties;
    let store = Arc::new(InMemory::new());
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    let mut bytes = 0;
    for f in 0..files {
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows.div_ceil(10)))
            .build();
        let mut buffer = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buffer, Arc::clone(&schema), Some(properties))?;
        let base = (f * rows) as i64;
        for chunk in (0..rows).step_by(100_000) {
            let ids: Vec<i64> =
                (base + chunk as i64..base + (chunk + 100_000).min(rows) as i64).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Int64Array::from_iter_values(
                        ids.iter().map(|i| (i * 7919) % 1_000_003),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|i| format!("s{}", i % 13)),
                    )),
                ],
            )?;
            writer.write(&batch)?;
        }
        writer.close()?;
        bytes += buffer.len();
        let path = Path::from(format!("lake/p=0/part-{f}.parquet"));
        store.put(&path, PutPayload::from(buffer)).await?;
    }
    Ok((store, bytes))
}

/// Cold, warm and selective scans of a lake of large files, ours against
/// ListingTable, behind 20 ms a request and 10 ns a byte.
async fn large_files(files: usize, rows: usize, args: &Args) -> Result<()> {
    const PER_BYTE: Duration = Duration::from_nanos(10);
    let (lake, bytes) = write_large_lake(files, rows).await?;
    println!(
        "large files: {files} files of {:.1} MB ({rows} rows, 10 row groups), {} ms a request and 10 ns a byte",
        bytes as f64 / files as f64 / 1e6,
        args.latency.as_millis()
    );
    let last = (files * rows) as i64 - 1;
    let selective = format!(
        "SELECT count(*), sum(v) FROM t WHERE id BETWEEN {} AND {}",
        last / 2,
        last / 2 + 1000
    );
    let (mut cold, mut warm, mut filtered) = (
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
    );
    let (mut read_ahead, mut requests) = (0, 0);
    for _ in 0..args.runs {
        let mut answers = Vec::new();
        for (side, ours_side) in [(0, true), (1, false)] {
            let (ctx, store) = fresh_with(&lake, args.latency, PER_BYTE);
            let started = Instant::now();
            let table = if ours_side {
                ours(&ctx).await?
            } else {
                listing(&ctx).await?
            };
            ctx.register_table("t", table)?;
            let plan = ctx.sql(FULL_SCAN).await?.create_physical_plan().await?;
            let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await?;
            cold[side].push(started.elapsed());
            if ours_side {
                read_ahead = metric_sum(&plan, "read_ahead_bytes");
                requests = metric_sum(&plan, "read_ahead_requests");
            }
            let started = Instant::now();
            let again = collect(
                ctx.sql(FULL_SCAN).await?.create_physical_plan().await?,
                ctx.task_ctx(),
            )
            .await?;
            warm[side].push(started.elapsed());
            let started = Instant::now();
            let picked = ctx.sql(&selective).await?.collect().await?;
            filtered[side].push(started.elapsed());
            let text = |b: &[RecordBatch]| {
                datafusion::arrow::util::pretty::pretty_format_batches(b).map(|t| t.to_string())
            };
            assert_eq!(text(&batches)?, text(&again)?);
            answers.push((text(&batches)?, text(&picked)?));
            drop(store);
        }
        assert_eq!(answers[0], answers[1], "the two tables disagree");
    }
    println!(
        "{:<44} {:>13} {:>13} {:>9}",
        "median of runs", "ours", "ListingTable", "listing/ours"
    );
    let [ours_cold, listing_cold] = &mut cold;
    print_row("registration + first full scan", ours_cold, listing_cold);
    let [ours_warm, listing_warm] = &mut warm;
    print_row("repeated full scan", ours_warm, listing_warm);
    let [ours_filtered, listing_filtered] = &mut filtered;
    print_row("selective filter on id", ours_filtered, listing_filtered);
    let in_flight = ScanOptions::default().read_ahead_requests;
    let waves = requests.div_ceil(in_flight);
    let limit =
        read_ahead as f64 / (100e6 * in_flight as f64) + waves as f64 * args.latency.as_secs_f64();
    println!(
        "bandwidth limit of the full scan: {:.1} MB read ahead in {requests} requests, {in_flight} in flight, {waves} waves: {:.1} ms",
        read_ahead as f64 / 1e6,
        limit * 1e3
    );
    Ok(())
}

/// The sum of metric `name` over every node of `plan`.
fn metric_sum(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize());
    own + plan
        .children()
        .into_iter()
        .map(|c| metric_sum(c, name))
        .sum::<usize>()
}
