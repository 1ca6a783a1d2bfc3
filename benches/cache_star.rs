//! The small-table cache on a star query over slow storage, cache on vs off, in one run.
//!
//! ```text
//! cargo bench --bench cache_star -- [--runs 50] [--data DIR]
//! ```
//!
//! A partitioned fact table joined to two small dimension tables, all behind
//! `object_store`'s `ThrottledStore` (10 ms per request) standing in for remote
//! storage. The query runs `--runs` times with the cache on and as many with it
//! off (`SET lakefusion.cache_enabled`), interleaved. Printed:
//!
//! * the time spent in the dimension scans (wall time from first poll to last
//!   batch: `scan_time` uncached, `cache_serve_time` cached), on/off;
//! * the whole query, on/off;
//! * the most bytes the cache held, against its `capacity_bytes`;
//! * planning time with the cache rule vs a session without it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::median;
use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::{
    CacheConfig, CachedScanExec, PartitionedScanExec, PartitionedTable, SessionBuilder,
};
use object_store::local::LocalFileSystem;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use url::Url;

const DAYS: usize = 30;
const FACT_ROWS_PER_FILE: usize = 50_000;
const CUSTOMERS: i64 = 20_000;
const PRODUCTS: i64 = 1_000;
const QUERY: &str =
    "SELECT c.segment, p.category, count(*) AS orders, round(sum(f.amount), 2) AS revenue \
    FROM sales f JOIN customers c ON f.customer_id = c.customer_id \
    JOIN products p ON f.product_id = p.product_id \
    WHERE f.day BETWEEN 10 AND 12 GROUP BY c.segment, p.category ORDER BY c.segment, p.category";

fn main() -> Result<()> {
    let mut runs = 50usize;
    let mut data =
        PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .join("lakefusion-bench");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--data" => data = PathBuf::from(args.next().expect("--data DIR")),
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(runs, &data))
}

fn throttled() -> Arc<dyn ObjectStore> {
    let wait = Duration::from_millis(10);
    Arc::new(ThrottledStore::new(
        LocalFileSystem::new(),
        ThrottleConfig {
            wait_get_per_call: wait,
            wait_list_per_call: wait,
            wait_list_with_delimiter_per_call: wait,
            ..Default::default()
        },
    ))
}

async fn register(ctx: &SessionContext, root: &Path) -> Result<()> {
    let url = |t: &str| format!("file://{}/{t}/", root.display());
    let sales = PartitionedTable::builder(url("sales"))
        .name("sales")
        .partition_column("day", DataType::Int32);
    ctx.register_table("sales", Arc::new(sales.build(&ctx.state()).await?))?;
    for dim in ["customers", "products"] {
        let table = PartitionedTable::builder(url(dim))
            .name(dim)
            .collect_statistics(true);
        ctx.register_table(dim, Arc::new(table.build(&ctx.state()).await?))?;
    }
    Ok(())
}

async fn run(runs: usize, data: &Path) -> Result<()> {
    let root = generate(data)?;
    let config = SessionConfig::new();
    // Dimension-sized entries only: the fact table's three days (about 3.5 MB
    // of Parquet) must stay uncached, as in a real star schema.
    let cache_config = CacheConfig::default().with_max_bytes(1024 * 1024);
    let cached = SessionBuilder::new()
        .with_config(config.clone())
        .with_cache(cache_config)
        .with_object_store(Url::parse("file://").expect("url"), throttled());
    let uncached = SessionBuilder::new()
        .with_config(config)
        .with_object_store(Url::parse("file://").expect("url"), throttled());
    let ctx = cached.build_context();
    register(&ctx, &root).await?;
    let cache = cached.table_cache().expect("cache").clone();

    let expected = execute(&ctx, false).await?.0;
    let mut on = Samples::default();
    let mut off = Samples::default();
    let mut peak_bytes = 0;
    execute(&ctx, true).await?; // fill (and leaves the cache enabled)
    let plan = ctx.sql(QUERY).await?.create_physical_plan().await?;
    assert_eq!(
        cached_tables(&plan),
        ["customers", "products"],
        "only the dimensions are cached"
    );
    for i in 0..runs {
        for cache_on in if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let (rows, total, dims) = execute(&ctx, cache_on).await?;
            assert_eq!(rows, expected, "cache {cache_on} changed the result");
            let samples = if cache_on { &mut on } else { &mut off };
            samples.total.push(total);
            samples.dims.push(dims);
            peak_bytes = peak_bytes.max(cache.metrics().bytes);
        }
    }
    let capacity = cache.config().capacity_bytes;
    assert!(peak_bytes <= capacity);

    println!("star query, {runs} runs each, 10 ms per object-store request (median)");
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "", "cache on", "cache off", "off/on"
    );
    let row = |name: &str, a: Duration, b: Duration| {
        println!(
            "{:<28} {:>12} {:>12} {:>8.1}",
            name,
            format!("{a:.2?}"),
            format!("{b:.2?}"),
            b.as_secs_f64() / a.as_secs_f64().max(1e-9)
        );
    };
    row(
        "dimension scans",
        median(&mut on.dims),
        median(&mut off.dims),
    );
    row("whole query", median(&mut on.total), median(&mut off.total));
    println!(
        "cache: {:?}; peak bytes {} <= capacity {}",
        cache.metrics(),
        peak_bytes,
        capacity
    );

    // Planning: the same query in a session with the rule and one without.
    let plain = uncached.build_context();
    register(&plain, &root).await?;
    let mut with_rule = Vec::new();
    let mut without_rule = Vec::new();
    for i in 0..runs * 4 {
        for rule in if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let c = if rule { &ctx } else { &plain };
            let started = Instant::now();
            c.sql(QUERY).await?.create_physical_plan().await?;
            if rule {
                with_rule.push(started.elapsed())
            } else {
                without_rule.push(started.elapsed())
            }
        }
    }
    let (a, b) = (median(&mut with_rule), median(&mut without_rule));
    println!(
        "{:<28} {:>12} {:>12} {:>8.3}  (with rule / without)",
        "planning",
        format!("{a:.2?}"),
        format!("{b:.2?}"),
        a.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}

#[derive(Default)]
struct Samples {
    total: Vec<Duration>,
    dims: Vec<Duration>,
}

/// Runs the query; returns its rows as text, its wall time, and the summed
/// wall time of the dimension scans.
async fn execute(ctx: &SessionContext, cache_on: bool) -> Result<(String, Duration, Duration)> {
    ctx.sql(&format!("SET lakefusion.cache_enabled = {cache_on}"))
        .await?
        .collect()
        .await?;
    let started = Instant::now();
    let plan = ctx.sql(QUERY).await?.create_physical_plan().await?;
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await?;
    let total = started.elapsed();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    Ok((text, total, dimension_scan_time(&plan)))
}

fn cached_tables(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut tables: Vec<String> = plan
        .children()
        .into_iter()
        .flat_map(cached_tables)
        .collect();
    if let Some(cached) = plan.downcast_ref::<CachedScanExec>() {
        tables.push(cached.inner().table().to_string());
    }
    tables.sort();
    tables
}

fn dimension_scan_time(plan: &Arc<dyn ExecutionPlan>) -> Duration {
    // A cached scan's wall time (fill included) is its `cache_serve_time`;
    // its `scan_time` is the inner scan's, present after a fill only.
    let (table, metric) = if let Some(scan) = plan.downcast_ref::<PartitionedScanExec>() {
        (Some(scan.table().to_string()), "scan_time")
    } else {
        let cached = plan.downcast_ref::<CachedScanExec>();
        (
            cached.map(|c| c.inner().table().to_string()),
            "cache_serve_time",
        )
    };
    let own = match table.as_deref() {
        Some("customers") | Some("products") => plan
            .metrics()
            .and_then(|m| m.sum_by_name(metric))
            .map(|v| Duration::from_nanos(v.as_usize() as u64))
            .unwrap_or_default(),
        _ => Duration::ZERO,
    };
    own + plan
        .children()
        .into_iter()
        .map(dimension_scan_time)
        .sum::<Duration>()
}

fn write(path: &Path, batch: &RecordBatch) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("parent"))?;
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    Ok(())
}

fn generate(data: &Path) -> Result<PathBuf> {
    let root = data.join("star");
    if root.join("_COMPLETE").exists() {
        return Ok(root);
    }
    let _ = std::fs::remove_dir_all(&root);
    let sales = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    for day in 0..DAYS {
        for f in 0..2 {
            let n = FACT_ROWS_PER_FILE as i64;
            let base = (day * 2 + f) as i64 * n;
            let batch = RecordBatch::try_new(
                sales.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        (0..n).map(|i| (base + i) * 7919 % CUSTOMERS),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        (0..n).map(|i| (base + i) * 31 % PRODUCTS),
                    )),
                    Arc::new(Float64Array::from_iter_values(
                        (0..n).map(|i| ((base + i) % 1000) as f64 / 10.0),
                    )),
                ],
            )?;
            write(
                &root.join(format!("sales/day={day}/part-{f}.parquet")),
                &batch,
            )?;
        }
    }
    let segments = ["consumer", "corporate", "home office", "small business"];
    for part in 0..4i64 {
        let ids: Vec<i64> = (0..CUSTOMERS).filter(|i| i % 4 == part).collect();
        let customers = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Int64, false),
                Field::new("segment", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| segments[(i % 7 % 4) as usize]),
                )),
            ],
        )?;
        write(
            &root.join(format!("customers/part-{part}.parquet")),
            &customers,
        )?;
    }
    let products = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("product_id", DataType::Int64, false),
            Field::new("category", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(0..PRODUCTS)),
            Arc::new(StringArray::from_iter_values(
                (0..PRODUCTS).map(|i| format!("cat{:02}", i % 12)),
            )),
        ],
    )?;
    write(&root.join("products/part-0.parquet"), &products)?;
    std::fs::write(root.join("_COMPLETE"), b"")?;
    Ok(root)
}
