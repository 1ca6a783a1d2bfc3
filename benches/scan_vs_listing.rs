//! PartitionedTable vs DataFusion's ListingTable on the same files, in one run.
//!
//! ```text
//! cargo bench --bench scan_vs_listing -- [--sf 1] [--runs 7] [--data DIR]
//! ```
//!
//! * Scans: TPC-H `lineitem` (tpchgen) partitioned by ship year and month:
//!   a Q1-style aggregate, one partition, a selective data filter, `LIMIT 10`.
//! * Planning: a 500-partition, 5,000-file table, registration + first query and
//!   a repeated query, on the local disk and on a `ThrottledStore` (10 ms per
//!   request) standing in for remote storage; requests counted.
//! * Peak memory of the full scan, each side in a child process of its own.
//!
//! Every line prints `ours / listing` (below 1.0 means lakefusion is faster);
//! repeated measurements are medians of at least `--runs` runs per side,
//! more for short ones (until each side has run 1 s).
//!
//! ```text
//! cargo bench --bench scan_vs_listing -- --instructions
//! ```
//!
//! instead counts the instructions each side executes for one warm run of
//! each scan query, under valgrind's callgrind (Debian's `valgrind`, which
//! must be installed). On this 2-core machine a timed ratio moves by ±7 %
//! from one run of the bench to the next; instruction counts repeat within
//! a fraction of a percent, so they tell which side does more work when the
//! timed ratio is within noise. They do not see time spent waiting (for the
//! disk, or for another thread), so they complement the timings, not
//! replace them. Each side runs in two child processes: one warm-up run of
//! the query, and the warm-up plus `repeats` runs; the difference divided
//! by `repeats` is one warm run.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{file_url, print_header, print_pair, print_row, query, time_pair};
use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::store::faults::FaultyStore;
use lakefusion::PartitionedTable;
use object_store::local::LocalFileSystem;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tpchgen::generators::LineItemGenerator;
use tpchgen_arrow::LineItemArrow;
use url::Url;

const PLANNING_PARTITIONS: usize = 500;
const PLANNING_FILES_PER_PARTITION: usize = 10;

struct Args {
    explain: bool,
    instructions: bool,
    sf: f64,
    runs: usize,
    data: PathBuf,
}

/// What a child process of this bench does.
enum Child {
    /// Runs the Q1 full scan once on `side` and prints its peak RSS.
    PeakMemory { side: String, root: PathBuf },
    /// Runs scan query `query` (an index into [`SCAN_QUERIES`]) `runs` times
    /// on `side`, for callgrind to count.
    Count {
        side: String,
        root: PathBuf,
        query: usize,
        runs: usize,
    },
}

/// The scan queries: a name, the SQL, and how many warm runs the
/// instruction count averages over (callgrind runs them ~50× slower).
const SCAN_QUERIES: [(&str, &str, usize); 4] = [
    (
        "Q1 full-scan aggregate",
        "SELECT l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice), \
         sum(l_extendedprice * (1 - l_discount)), avg(l_quantity), avg(l_discount), count(*) \
         FROM lineitem WHERE l_shipdate <= DATE '1998-09-02' \
         GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus",
        2,
    ),
    (
        "single partition",
        "SELECT l_returnflag, count(*), sum(l_extendedprice) FROM lineitem \
         WHERE year = 1995 AND month = 6 GROUP BY l_returnflag ORDER BY l_returnflag",
        20,
    ),
    (
        "selective data filter",
        "SELECT count(*), sum(l_extendedprice) FROM lineitem WHERE l_orderkey BETWEEN 3000000 AND 3010000",
        20,
    ),
    ("SELECT * LIMIT 10", "SELECT * FROM lineitem LIMIT 10", 20),
];

fn parse_args() -> (Args, Option<Child>) {
    let mut args = Args {
        explain: false,
        instructions: false,
        sf: 1.0,
        runs: 7,
        data: PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .join("lakefusion-bench"),
    };
    let mut child = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--explain" => args.explain = true,
            "--sf" => args.sf = it.next().and_then(|v| v.parse().ok()).expect("--sf N"),
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--data" => args.data = PathBuf::from(it.next().expect("--data DIR")),
            "--instructions" => args.instructions = true,
            "--child" => {
                child = Some(Child::PeakMemory {
                    side: it.next().expect("--child ours|listing"),
                    root: PathBuf::from(it.next().expect("--child side DIR")),
                })
            }
            "--count" => {
                let mut next = |what: &str| it.next().unwrap_or_else(|| panic!("--count {what}"));
                child = Some(Child::Count {
                    side: next("ours|listing"),
                    root: PathBuf::from(next("DIR")),
                    query: next("QUERY").parse().expect("--count QUERY index"),
                    runs: next("RUNS").parse().expect("--count RUNS"),
                })
            }
            _ => {} // cargo bench passes --bench
        }
    }
    (args, child)
}

fn main() -> Result<()> {
    let (args, child) = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match child {
        Some(Child::PeakMemory { side, root }) => runtime.block_on(child_full_scan(&side, &root)),
        Some(Child::Count {
            side,
            root,
            query,
            runs,
        }) => runtime.block_on(child_count(&side, &root, query, runs)),
        None if args.instructions => instructions(&args),
        None => runtime.block_on(run(args)),
    }
}

fn config() -> SessionConfig {
    SessionConfig::new()
}

async fn ours(
    ctx: &SessionContext,
    root: &Path,
    partitions: &[(&str, DataType)],
) -> Result<PartitionedTable> {
    let mut builder = PartitionedTable::builder(file_url(root));
    for (name, t) in partitions {
        builder = builder.partition_column(*name, t.clone());
    }
    Ok(builder.build(&ctx.state()).await?)
}

async fn listing(
    ctx: &SessionContext,
    root: &Path,
    partitions: &[(&str, DataType)],
) -> Result<ListingTable> {
    let options = ListingOptions::new(Arc::new(
        ParquetFormat::default().with_options(ctx.state().table_options().parquet.clone()),
    ))
    .with_file_extension(".parquet")
    .with_table_partition_cols(
        partitions
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
    );
    let config = ListingTableConfig::new(ListingTableUrl::parse(file_url(root))?)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await?;
    ListingTable::try_new(config)
}

fn lineitem_partitions() -> Vec<(&'static str, DataType)> {
    vec![("year", DataType::Int32), ("month", DataType::Int32)]
}

async fn run(args: Args) -> Result<()> {
    let lineitem = generate_lineitem(&args.data, args.sf)?;
    let explain = args.explain;
    println!(
        "machine: {} cores; runs per measurement: at least {}, and more until each side has run {:?} (median)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        args.runs,
        common::MIN_TIME_PER_SIDE
    );

    // ---- scans ----
    let ctx_ours = SessionContext::new_with_config(config());
    ctx_ours.register_table(
        "lineitem",
        Arc::new(ours(&ctx_ours, &lineitem, &lineitem_partitions()).await?),
    )?;
    let ctx_listing = SessionContext::new_with_config(config());
    ctx_listing.register_table(
        "lineitem",
        Arc::new(listing(&ctx_listing, &lineitem, &lineitem_partitions()).await?),
    )?;

    print_header("scan (TPC-H lineitem)");
    for (name, sql, _) in SCAN_QUERIES {
        let (a, b) = (
            rows_of(&ctx_ours, sql).await?,
            rows_of(&ctx_listing, sql).await?,
        );
        if sql.contains("LIMIT 10") {
            // Any 10 rows are a right answer without ORDER BY.
            assert_eq!(
                a.lines().count(),
                b.lines().count(),
                "row counts differ for {name}"
            );
        } else {
            assert_eq!(a, b, "results differ for {name}");
        }
        if explain {
            for (side, ctx) in [("ours", &ctx_ours), ("listing", &ctx_listing)] {
                println!(
                    "--- {side}: {name}\n{}",
                    rows_of(ctx, &format!("EXPLAIN ANALYZE {sql}")).await?
                );
            }
        }
        let times = time_pair(
            args.runs,
            || query(&ctx_ours, sql),
            || query(&ctx_listing, sql),
        )
        .await?;
        print_pair(name, &times);
    }

    // ---- peak memory of the full scan, one child process per side ----
    let exe = std::env::current_exe()?;
    let peak = |side: &str| -> Result<u64> {
        let out = std::process::Command::new(&exe)
            .args(["--child", side, &lineitem.display().to_string()])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("peak_kb=")
                    .and_then(|v| v.trim().parse().ok())
            })
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!(
                    "child {side} failed: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            })
    };
    let (m_ours, m_listing) = (peak("ours")?, peak("listing")?);
    println!(
        "{:<34} {:>9} MB {:>9} MB {:>8.2}",
        "peak RSS, Q1 full scan",
        m_ours / 1024,
        m_listing / 1024,
        m_ours as f64 / m_listing as f64
    );

    // ---- planning ----
    let planning = generate_planning_table(&args.data)?;
    println!(
        "\nplanning ({} partitions, {} files)         {:>12} {:>12} {:>8}",
        PLANNING_PARTITIONS,
        PLANNING_PARTITIONS * PLANNING_FILES_PER_PARTITION,
        "ours",
        "listing",
        "ratio"
    );
    for (store_name, throttle) in [
        ("local", None),
        ("throttled 10ms", Some(Duration::from_millis(10))),
    ] {
        planning_bench(&planning, store_name, throttle, args.runs).await?;
    }
    Ok(())
}

async fn planning_bench(
    root: &Path,
    store_name: &str,
    throttle: Option<Duration>,
    runs: usize,
) -> Result<()> {
    let sql = "SELECT count(*), sum(v) FROM t WHERE day = 250";
    let partitions = [("day", DataType::Int32)];
    let make_ctx = || {
        let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let inner: Arc<dyn ObjectStore> = match throttle {
            Some(wait) => Arc::new(ThrottledStore::new(
                local,
                ThrottleConfig {
                    wait_get_per_call: wait,
                    wait_list_per_call: wait,
                    wait_list_with_delimiter_per_call: wait,
                    ..Default::default()
                },
            )),
            None => local,
        };
        let store = FaultyStore::new(inner);
        let ctx = SessionContext::new_with_config(config());
        ctx.register_object_store(&Url::parse("file://").expect("url"), store.clone());
        (ctx, store)
    };

    // Registration + first query, each side on a fresh context and store.
    let (ctx_o, store_o) = make_ctx();
    let started = Instant::now();
    let table: Arc<dyn TableProvider> = Arc::new(ours(&ctx_o, root, &partitions).await?);
    ctx_o.register_table("t", table)?;
    let registered_o = store_o.requests();
    let plan_started = Instant::now();
    ctx_o.sql(sql).await?.create_physical_plan().await?;
    let (first_o, first_plan_o) = (started.elapsed(), plan_started.elapsed());
    let plan_requests_o = store_o.requests() - registered_o;

    let (ctx_l, store_l) = make_ctx();
    let started = Instant::now();
    let table: Arc<dyn TableProvider> = Arc::new(listing(&ctx_l, root, &partitions).await?);
    ctx_l.register_table("t", table)?;
    let registered_l = store_l.requests();
    let plan_started = Instant::now();
    ctx_l.sql(sql).await?.create_physical_plan().await?;
    let (first_l, first_plan_l) = (started.elapsed(), plan_started.elapsed());
    let plan_requests_l = store_l.requests() - registered_l;
    print_row(
        &format!("{store_name}: first plan"),
        first_plan_o,
        first_plan_l,
    );
    print_row(
        &format!("{store_name}: register + first plan"),
        first_o,
        first_l,
    );
    println!(
        "{:<34} {:>12} {:>12}",
        format!("{store_name}: requests (reg/plan)"),
        format!("{registered_o}/{plan_requests_o}"),
        format!("{registered_l}/{plan_requests_l}")
    );

    store_o.reset_counts();
    let times = time_pair(
        runs * 3,
        || async {
            ctx_o
                .sql(sql)
                .await?
                .create_physical_plan()
                .await
                .map(|_| ())
        },
        || async {
            ctx_l
                .sql(sql)
                .await?
                .create_physical_plan()
                .await
                .map(|_| ())
        },
    )
    .await?;
    print_pair(&format!("{store_name}: repeated plan"), &times);
    println!(
        "{:<34} {:>12}",
        format!("{store_name}: requests, repeated"),
        store_o.requests()
    );
    Ok(())
}

async fn rows_of(ctx: &SessionContext, sql: &str) -> Result<String> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
}

/// A session with `lineitem` registered on one side only (`ours` or
/// `listing`), for the child processes.
async fn one_side(side: &str, root: &Path) -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config(config());
    let table: Arc<dyn TableProvider> = match side {
        "ours" => Arc::new(ours(&ctx, root, &lineitem_partitions()).await?),
        _ => Arc::new(listing(&ctx, root, &lineitem_partitions()).await?),
    };
    ctx.register_table("lineitem", table)?;
    Ok(ctx)
}

/// Runs scan query `index` `runs` times on one side (the `--count` child).
async fn child_count(side: &str, root: &Path, index: usize, runs: usize) -> Result<()> {
    let ctx = one_side(side, root).await?;
    let (_, sql, _) = SCAN_QUERIES[index];
    for _ in 0..runs {
        query(&ctx, sql).await?;
    }
    Ok(())
}

/// `--instructions`: one warm run of each scan query, counted by callgrind
/// on each side (see the module docs).
fn instructions(args: &Args) -> Result<()> {
    let lineitem = generate_lineitem(&args.data, args.sf)?;
    let exe = std::env::current_exe()?;
    let count = |side: &str, index: usize, runs: usize| -> Result<u64> {
        let out = std::process::Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(&exe)
            .args(["--count", side])
            .arg(&lineitem)
            .args([index.to_string(), runs.to_string()])
            .output()
            .map_err(|e| {
                datafusion::error::DataFusionError::Execution(format!(
                    "--instructions runs valgrind (Debian package `valgrind`): {e}"
                ))
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // callgrind ends with "==PID== Collected : N".
        stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .filter(|_| out.status.success())
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!(
                    "callgrind child ({side}, query {index}, {runs} runs) failed: {stderr}"
                ))
            })
    };
    println!(
        "instructions per warm run (callgrind, millions)   {:>12} {:>12} {:>8}",
        "ours", "listing", "ratio"
    );
    for (index, (name, _, repeats)) in SCAN_QUERIES.iter().enumerate() {
        let mut per_run = [0.0f64; 2];
        for (slot, side) in ["ours", "listing"].into_iter().enumerate() {
            let warm = count(side, index, 1)?;
            let more = count(side, index, 1 + repeats)?;
            per_run[slot] = more.saturating_sub(warm) as f64 / *repeats as f64 / 1e6;
        }
        println!(
            "{:<48} {:>12.1} {:>12.1} {:>8.3}",
            format!("{name} (mean of {repeats})"),
            per_run[0],
            per_run[1],
            per_run[0] / per_run[1]
        );
    }
    Ok(())
}

/// Runs the Q1 full scan once and prints the process's peak RSS.
async fn child_full_scan(side: &str, root: &Path) -> Result<()> {
    let ctx = one_side(side, root).await?;
    query(
        &ctx,
        "SELECT l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice), avg(l_discount), count(*) \
         FROM lineitem WHERE l_shipdate <= DATE '1998-09-02' GROUP BY l_returnflag, l_linestatus",
    )
    .await?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!("peak_kb={peak}");
    Ok(())
}

/// Days since 1970-01-01 to (year, month) (proleptic Gregorian).
fn year_month(days: i32) -> (i32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month)
}

/// Writes lineitem at `sf` under `<data>/lineitem-sf<sf>/year=Y/month=M/`, once.
fn generate_lineitem(data: &Path, sf: f64) -> Result<PathBuf> {
    let root = data.join(format!("lineitem-sf{sf}"));
    let done = root.join("_COMPLETE");
    if done.exists() {
        return Ok(root);
    }
    let _ = std::fs::remove_dir_all(&root);
    let started = Instant::now();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(16 * 1024))
        .build();
    let mut writers: HashMap<(i32, u32), ArrowWriter<std::fs::File>> = HashMap::new();
    let mut rows = 0usize;
    for batch in LineItemArrow::new(LineItemGenerator::new(sf, 1, 1)).with_batch_size(64 * 1024) {
        let ship = batch
            .column_by_name("l_shipdate")
            .expect("l_shipdate")
            .as_primitive::<Date32Type>()
            .clone();
        let mut groups: HashMap<(i32, u32), Vec<u32>> = HashMap::new();
        for i in 0..ship.len() {
            groups
                .entry(year_month(ship.value(i)))
                .or_default()
                .push(i as u32);
        }
        for (key, idx) in groups {
            let part = take_record_batch(&batch, &UInt32Array::from(idx))?;
            let writer = match writers.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let dir = root.join(format!("year={}/month={}", key.0, key.1));
                    std::fs::create_dir_all(&dir)?;
                    let file = std::fs::File::create(dir.join("part-00000.parquet"))?;
                    e.insert(ArrowWriter::try_new(
                        file,
                        batch.schema(),
                        Some(props.clone()),
                    )?)
                }
            };
            writer.write(&part)?;
        }
        rows += batch.num_rows();
    }
    let files = writers.len();
    for (_, w) in writers {
        w.close()?;
    }
    std::fs::write(&done, b"")?;
    println!(
        "generated lineitem sf{sf}: {rows} rows, {files} files in {:.1?}",
        started.elapsed()
    );
    Ok(root)
}

/// 500 partitions x 10 tiny files: the shape where per-file work dominates planning.
fn generate_planning_table(data: &Path) -> Result<PathBuf> {
    let root = data.join("planning-5000");
    let done = root.join("_COMPLETE");
    if done.exists() {
        return Ok(root);
    }
    let _ = std::fs::remove_dir_all(&root);
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    for day in 0..PLANNING_PARTITIONS {
        let dir = root.join(format!("day={day}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..PLANNING_FILES_PER_PARTITION {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(
                    (0..10).map(|i| (day * 100 + f * 10 + i) as i64),
                ))],
            )?;
            let mut w = ArrowWriter::try_new(
                std::fs::File::create(dir.join(format!("part-{f:05}.parquet")))?,
                schema.clone(),
                None,
            )?;
            w.write(&batch)?;
            w.close()?;
        }
    }
    std::fs::write(&done, b"")?;
    Ok(root)
}
