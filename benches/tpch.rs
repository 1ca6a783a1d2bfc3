//! TPC-H on a daily-partitioned lake: PartitionedTable against DataFusion's
//! ListingTable on the same files, in one run.
//!
//! ```text
//! cargo bench --bench tpch -- [--sf 1] [--runs 5] [--data DIR] [--queries 1,6,19]
//!     [--explain] [--no-cache] [--latency-ms 5]
//! ```
//!
//! * The lake: the eight TPC-H tables (tpchgen) written once with our own
//!   `INSERT INTO`, `lineitem` partitioned by `l_shipdate` and `orders` by
//!   `o_orderdate` (one directory a day), the others unpartitioned; kept
//!   under `--data` (default `$CARGO_TARGET_DIR/lakefusion-bench`).
//! * Registration: all eight tables, then the first plan of Q1, each side
//!   in a fresh session, `--runs` times alternately (medians); and one
//!   plain listing of the eight roots through the same store, the floor
//!   of any registration that lists through it (`ListingTable`'s; on the
//!   local disk ours reads the directories itself, through
//!   `SessionBuilder`'s `file://` store, so it can take less).
//! * Queries: the 22 TPC-H queries (`benches/tpch_queries.sql`), each side
//!   in its own session made as a user would (ours with `SessionBuilder`
//!   and the small-table cache at `CacheConfig::default()`; `--no-cache`
//!   without it; ListingTable with a plain `SessionContext`; both with
//!   DataFusion's default options, but for the one lakefusion's set-up
//!   lowers, docs/session-and-cache.md), answers compared, medians of at least
//!   `--runs` warm runs taken alternately (more for short queries, until
//!   each side has run 1 s), and `ours / listing` printed (below 1.0
//!   means lakefusion is faster), then the geometric mean.
//! * `--latency-ms N`: the same lake copied into an `InMemory` store behind
//!   object_store's `ThrottledStore` (N ms per get and per listing),
//!   registered as `s3://tpch` in both sessions: a remote lake's request
//!   latency (a listing waits once, not once a page: the `scale` bench
//!   models pages). With thousands of files, `ListingTable` needs minutes
//!   there; pick a few queries.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    alternating, file_url, median, print_header, print_pair, print_row, query, time_pair,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use lakefusion::{CacheConfig, PartitionedTable, SessionBuilder};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{ObjectStore, ObjectStoreExt};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

const QUERIES: &str = include_str!("tpch_queries.sql");

/// The eight tables and the column each is partitioned by (daily), if any.
const TABLES: [(&str, Option<&str>); 8] = [
    ("lineitem", Some("l_shipdate")),
    ("orders", Some("o_orderdate")),
    ("customer", None),
    ("part", None),
    ("partsupp", None),
    ("supplier", None),
    ("nation", None),
    ("region", None),
];

struct Args {
    sf: f64,
    runs: usize,
    data: PathBuf,
    queries: Option<Vec<usize>>,
    explain: bool,
    /// Ours without the small-table cache, to show what the cache adds.
    no_cache: bool,
    /// Serve the lake from memory behind this much latency per request.
    latency_ms: Option<u64>,
}

fn parse_args() -> Args {
    let mut args = Args {
        sf: 1.0,
        runs: 5,
        data: PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .join("lakefusion-bench"),
        queries: None,
        explain: false,
        no_cache: false,
        latency_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sf" => args.sf = it.next().and_then(|v| v.parse().ok()).expect("--sf N"),
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--data" => args.data = PathBuf::from(it.next().expect("--data DIR")),
            "--queries" => {
                let list = it.next().expect("--queries 1,6,19");
                args.queries = Some(list.split(',').filter_map(|q| q.parse().ok()).collect());
            }
            "--explain" => args.explain = true,
            "--no-cache" => args.no_cache = true,
            "--latency-ms" => {
                args.latency_ms = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--latency-ms N"),
                )
            }
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn main() -> Result<()> {
    let args = parse_args();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// Where both sides read the lake: the local directory, or (with
/// `--latency-ms`) a throttled in-memory copy registered as `s3://tpch`.
enum Lake {
    Local(PathBuf),
    Remote(Arc<dyn ObjectStore>),
}

impl Lake {
    const REMOTE: &'static str = "s3://tpch";

    async fn open(dir: PathBuf, latency_ms: Option<u64>) -> Result<Self> {
        let Some(ms) = latency_ms else {
            return Ok(Self::Local(dir));
        };
        let memory = InMemory::new();
        let mut stack = vec![dir.clone()];
        while let Some(next) = stack.pop() {
            for entry in std::fs::read_dir(&next)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(&dir) {
                    let key = ObjectPath::parse(relative.to_string_lossy())
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    memory.put(&key, std::fs::read(&path)?.into()).await?;
                }
            }
        }
        let wait = Duration::from_millis(ms);
        Ok(Self::Remote(Arc::new(ThrottledStore::new(
            memory,
            ThrottleConfig {
                wait_get_per_call: wait,
                wait_list_per_call: wait,
                wait_list_with_delimiter_per_call: wait,
                ..Default::default()
            },
        ))))
    }

    fn url(&self, table: &str) -> String {
        match self {
            Self::Remote(_) => format!("{}/{table}/", Self::REMOTE),
            Self::Local(dir) => file_url(&dir.join(table)),
        }
    }

    fn remote_url(&self) -> Option<(url::Url, Arc<dyn ObjectStore>)> {
        let Self::Remote(store) = self else {
            return None;
        };
        Some((url::Url::parse(Self::REMOTE).ok()?, Arc::clone(store)))
    }

    /// Our side's session, as docs/session-and-cache.md sets one up:
    /// `SessionBuilder` with the small-table cache at its default limits
    /// (`--no-cache`: without it).
    fn ours_session(&self, no_cache: bool) -> SessionContext {
        let mut builder = SessionBuilder::new();
        if let Some((url, store)) = self.remote_url() {
            builder = builder.with_object_store(url, store);
        }
        if !no_cache {
            builder = builder.with_cache(CacheConfig::default());
        }
        builder.build_context()
    }

    /// ListingTable's side: a plain `SessionContext`.
    fn listing_session(&self) -> SessionContext {
        let ctx = SessionContext::new();
        if let Some((url, store)) = self.remote_url() {
            ctx.register_object_store(&url, store);
        }
        ctx
    }
}

/// The queries of `tpch_queries.sql`, numbered from 1.
fn queries() -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for block in QUERIES.split("\n-- q").skip(1) {
        let (number, sql) = block.split_once('\n').expect("a query after its number");
        out.push((
            number.trim().parse().expect("query number"),
            sql.trim().to_string(),
        ));
    }
    out
}

async fn run(args: Args) -> Result<()> {
    let dir = generate(&args.data, args.sf).await?;
    println!(
        "machine: {} cores; TPC-H sf{}; runs per query: at least {}, and more until each side has run {:?} (median, warm); ours: SessionBuilder {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        args.sf,
        args.runs,
        common::MIN_TIME_PER_SIDE,
        if args.no_cache {
            "without the small-table cache"
        } else {
            "with the small-table cache (CacheConfig::default())"
        }
    );
    let files = |name: &str| walk_parquet(&dir.join(name));
    println!(
        "lake: lineitem {} files, orders {} files",
        files("lineitem"),
        files("orders")
    );
    let lake = Lake::open(dir, args.latency_ms).await?;
    if let Some(ms) = args.latency_ms {
        println!(
            "store: the lake in memory behind {ms} ms per request, as {}",
            Lake::REMOTE
        );
    }

    // ---- registration: fresh sessions, alternating, medians ----
    let q1 = &queries()[0].1;
    let (mut reg, mut first) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut listings = Vec::new();
    for run in 0..args.runs.max(1) {
        listings.push(list_roots(&lake).await?);
        for side in alternating(run) {
            let ctx = if side == 0 {
                lake.ours_session(args.no_cache)
            } else {
                lake.listing_session()
            };
            let started = Instant::now();
            if side == 0 {
                register_ours(&ctx, &lake).await?;
            } else {
                register_listing(&ctx, &lake).await?;
            }
            reg[side].push(started.elapsed());
            ctx.sql(q1).await?.create_physical_plan().await?;
            first[side].push(started.elapsed());
        }
    }
    print_header("registration");
    let (ours_reg, listing_reg) = (median(&mut reg[0]), median(&mut reg[1]));
    print_row("8 tables", ours_reg, listing_reg);
    // ListingTable lists every root through the store: it cannot take less
    // than that. On the local disk, ours reads the directories itself
    // (`SessionBuilder`'s `file://` store), so it can.
    let floor = median(&mut listings);
    let ours_lists = if args.latency_ms.is_some() {
        "ours lists through the store too"
    } else {
        "ours reads the directories instead"
    };
    println!(
        "{:<34} {:>12} {:>12} {:>8.3}   (ListingTable / one listing = {:.2}×; {ours_lists})",
        "one listing of the 8 roots",
        format!("{floor:.2?}"),
        format!("{listing_reg:.2?}"),
        floor.as_secs_f64() / listing_reg.as_secs_f64(),
        listing_reg.as_secs_f64() / floor.as_secs_f64(),
    );
    print_row(
        "8 tables + first Q1 plan",
        median(&mut first[0]),
        median(&mut first[1]),
    );
    let ours_ctx = lake.ours_session(args.no_cache);
    register_ours(&ours_ctx, &lake).await?;
    let listing_ctx = lake.listing_session();
    register_listing(&listing_ctx, &lake).await?;

    // ---- queries ----
    print_header("query");
    let mut ratios = Vec::new();
    for (number, sql) in queries() {
        if args
            .queries
            .as_ref()
            .is_some_and(|only| !only.contains(&number))
        {
            continue;
        }
        let ours = answer(&ours_ctx, &sql).await?;
        let listing = answer(&listing_ctx, &sql).await?;
        if ours != listing {
            return Err(DataFusionError::Execution(format!(
                "Q{number}: the answers differ\nours:\n{ours}\nlisting:\n{listing}"
            )));
        }
        if args.explain {
            for (side, ctx) in [("ours", &ours_ctx), ("listing", &listing_ctx)] {
                let plan = answer(ctx, &format!("EXPLAIN ANALYZE {sql}")).await?;
                println!("--- {side}: Q{number}\n{plan}");
            }
        }
        let times = time_pair(
            args.runs,
            || query(&ours_ctx, &sql),
            || query(&listing_ctx, &sql),
        )
        .await?;
        print_pair(&format!("Q{number}"), &times);
        ratios.push(times.ours.as_secs_f64() / times.listing.as_secs_f64());
    }
    if !ratios.is_empty() {
        let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        let slower = ratios.iter().filter(|&&r| r > 1.0).count();
        println!(
            "{:<34} {:>12} {:>12} {:>8.3}   ({:.2}x faster; {slower} of {} queries slower)",
            "geometric mean",
            "",
            "",
            geomean,
            1.0 / geomean,
            ratios.len()
        );
    }
    Ok(())
}

/// One plain listing of each table's root through the store both sides
/// read (a fresh session's, as registration gets it).
async fn list_roots(lake: &Lake) -> Result<Duration> {
    let ctx = lake.listing_session();
    let started = Instant::now();
    for (name, _) in TABLES {
        let url = ListingTableUrl::parse(lake.url(name))?;
        let store = ctx.runtime_env().object_store(&url)?;
        let listed: Vec<_> = store.list(Some(url.prefix())).try_collect().await?;
        assert!(!listed.is_empty(), "{name} lists no file");
    }
    Ok(started.elapsed())
}

async fn register_ours(ctx: &SessionContext, lake: &Lake) -> Result<()> {
    for (name, partition) in TABLES {
        let mut builder = PartitionedTable::builder(lake.url(name)).name(name);
        if let Some(column) = partition {
            builder = builder.partition_column(column, DataType::Date32);
        }
        let table = builder.build(&ctx.state()).await?;
        ctx.register_table(name, Arc::new(table))?;
    }
    Ok(())
}

async fn register_listing(ctx: &SessionContext, lake: &Lake) -> Result<()> {
    for (name, partition) in TABLES {
        let options = ListingOptions::new(Arc::new(
            ParquetFormat::default().with_options(ctx.state().table_options().parquet.clone()),
        ))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partition
                .map(|c| vec![(c.to_string(), DataType::Date32)])
                .unwrap_or_default(),
        );
        let config = ListingTableConfig::new(ListingTableUrl::parse(lake.url(name))?)
            .with_listing_options(options)
            .infer_schema(&ctx.state())
            .await?;
        let table: Arc<dyn TableProvider> = Arc::new(ListingTable::try_new(config)?);
        ctx.register_table(name, table)?;
    }
    Ok(())
}

/// Writes the lake under `<data>/tpch-sf<sf>-daily/`, once, with our own
/// `INSERT INTO` from the generated tables.
async fn generate(data: &Path, sf: f64) -> Result<PathBuf> {
    let root = data.join(format!("tpch-sf{sf}-daily"));
    let done = root.join("_COMPLETE");
    if done.exists() {
        return Ok(root);
    }
    let _ = std::fs::remove_dir_all(&root);
    let started = Instant::now();
    let ctx = SessionBuilder::new().build_context();
    for (name, partition) in TABLES {
        let batches: Vec<RecordBatch> = match name {
            "lineitem" => LineItemArrow::new(LineItemGenerator::new(sf, 1, 1)).collect(),
            "orders" => OrderArrow::new(OrderGenerator::new(sf, 1, 1)).collect(),
            "customer" => CustomerArrow::new(CustomerGenerator::new(sf, 1, 1)).collect(),
            "part" => PartArrow::new(PartGenerator::new(sf, 1, 1)).collect(),
            "partsupp" => PartSuppArrow::new(PartSuppGenerator::new(sf, 1, 1)).collect(),
            "supplier" => SupplierArrow::new(SupplierGenerator::new(sf, 1, 1)).collect(),
            "nation" => NationArrow::new(NationGenerator::new(sf, 1, 1)).collect(),
            _ => RegionArrow::new(RegionGenerator::new(sf, 1, 1)).collect(),
        };
        let schema = batches[0].schema();
        ctx.register_table(
            format!("gen_{name}"),
            Arc::new(MemTable::try_new(Arc::clone(&schema), vec![batches])?),
        )?;
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let file_columns: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| Some(f.name().as_str()) != partition)
            .cloned()
            .collect();
        let mut builder = PartitionedTable::builder(file_url(&dir))
            .name(name)
            .schema(Arc::new(datafusion::arrow::datatypes::Schema::new(
                file_columns.clone(),
            )));
        if let Some(column) = partition {
            builder = builder.partition_column(column, DataType::Date32);
        }
        ctx.register_table(name, Arc::new(builder.build(&ctx.state()).await?))?;
        let mut columns: Vec<String> = file_columns.iter().map(|f| f.name().clone()).collect();
        columns.extend(partition.map(str::to_string));
        ctx.sql(&format!(
            "INSERT INTO {name} SELECT {} FROM gen_{name}",
            columns.join(", ")
        ))
        .await?
        .collect()
        .await?;
        ctx.deregister_table(format!("gen_{name}"))?;
    }
    std::fs::write(&done, b"")?;
    println!(
        "wrote the TPC-H sf{sf} lake with INSERT INTO in {:.1?}",
        started.elapsed()
    );
    Ok(root)
}

fn walk_parquet(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_parquet(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// The answer as text, its rows sorted (ties of an ORDER BY may come in
/// any order).
async fn answer(ctx: &SessionContext, sql: &str) -> Result<String> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let text = pretty_format_batches(&batches)?.to_string();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    Ok(lines.join("\n"))
}
