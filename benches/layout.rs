//! Writing and layout, ours vs DataFusion's own, in one run.
//!
//! ```text
//! cargo bench --bench layout -- [--rows 10000000] [--customers 200000] [--runs 5]
//! ```
//!
//! * `INSERT INTO` a day-partitioned table (`--rows` rows) vs DataFusion's
//!   partitioned `COPY TO` of the same rows; target ratio <= 1.2.
//! * Two tables bucketed by `customer_id` into 4 buckets (written by
//!   `INSERT`: every order, and one row per customer), read with 4 target
//!   partitions, vs `ListingTable` over the same files: `GROUP BY
//!   customer_id`, and a join of the two on `customer_id` (both sides large,
//!   so a partitioned hash join); target >= 1.3x faster.
//! * `ORDER BY amount, customer_id LIMIT 100` on a table sorted by those
//!   keys (written by `INSERT`), vs `ListingTable` over the same files;
//!   target >= 2x faster.
//! * A TopK (`ORDER BY amount DESC LIMIT 100`) with dynamic filters on vs off.
//!
//! Every pair of results is asserted equal. Medians of `--runs`, interleaved.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::median;
use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::PartitionedTable;

const BUCKETS: usize = 4;
const DAYS: i64 = 8;

fn main() -> Result<()> {
    let (mut rows, mut customers, mut runs) = (10_000_000i64, 200_000i64, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rows" => rows = args.next().and_then(|v| v.parse().ok()).expect("--rows N"),
            "--customers" => {
                customers = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--customers N")
            }
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => {}
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(rows, customers, runs))
}

fn source_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("day", DataType::Utf8, false),
    ]))
}

/// `rows` orders in batches of 64 Ki rows, spread over days and customers.
fn source(rows: i64, customers: i64) -> Result<MemTable> {
    let schema = source_schema();
    let batches = (0..rows)
        .step_by(65_536)
        .map(|start| {
            let ids: Vec<i64> = (start..(start + 65_536).min(rows)).collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(
                        ids.iter()
                            .map(|i| (i * 7_919) % customers)
                            .collect::<Vec<_>>(),
                    )),
                    Arc::new(Float64Array::from(
                        ids.iter()
                            .map(|i| (i % 100_003) as f64 / 7.0)
                            .collect::<Vec<_>>(),
                    )),
                    Arc::new(StringArray::from(
                        ids.iter()
                            .map(|i| format!("2026-03-0{}", 1 + i % DAYS))
                            .collect::<Vec<_>>(),
                    )),
                ],
            )
            .map_err(Into::into)
        })
        .collect::<Result<Vec<_>>>()?;
    MemTable::try_new(schema, vec![batches])
}

fn session() -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(BUCKETS))
}

/// How a benchmark table of ours is declared.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Plain,
    Bucketed,
    Sorted,
}

async fn ours(ctx: &SessionContext, root: &Path, layout: Layout) -> Result<PartitionedTable> {
    std::fs::create_dir_all(root)?;
    let mut builder = PartitionedTable::builder(format!("file://{}/", root.display()))
        .schema(Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, false),
        ])))
        .partition_column("day", DataType::Utf8);
    match layout {
        Layout::Plain => {}
        Layout::Bucketed => builder = builder.bucket_by("customer_id", BUCKETS),
        Layout::Sorted => builder = builder.sort_order(["amount", "customer_id"]),
    }
    Ok(builder.build(&ctx.state()).await?)
}

async fn listing(ctx: &SessionContext, root: &Path) -> Result<ListingTable> {
    let url = ListingTableUrl::parse(format!("file://{}/", root.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("day".to_string(), DataType::Utf8)]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await?;
    ListingTable::try_new(config)
}

async fn timed(ctx: &SessionContext, sql: &str) -> Result<(Duration, String)> {
    let started = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok((
        started.elapsed(),
        pretty_format_batches(&batches)?.to_string(),
    ))
}

/// Runs `a` and `b` `runs` times, interleaved; asserts equal results; prints
/// both medians and `b / a`.
async fn compare(
    title: &str,
    runs: usize,
    (ctx_a, a): (&SessionContext, &str),
    (ctx_b, b): (&SessionContext, &str),
) -> Result<()> {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (t, ra) = timed(ctx_a, a).await?;
        ta.push(t);
        let (t, rb) = timed(ctx_b, b).await?;
        tb.push(t);
        assert_eq!(ra, rb, "{title}: results differ");
    }
    let (ma, mb) = (median(&mut ta), median(&mut tb));
    println!(
        "{title}: ours {ma:.2?}, theirs {mb:.2?}, theirs/ours {:.2}",
        mb.as_secs_f64() / ma.as_secs_f64()
    );
    Ok(())
}

async fn run(rows: i64, customers: i64, runs: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ctx = session();
    ctx.register_table("src", Arc::new(source(rows, customers)?))?;
    println!("{rows} rows, {DAYS} days, {customers} customers, {BUCKETS} buckets, 2-core machine");

    // INSERT INTO vs COPY TO, each into a fresh directory per run.
    let (mut t_insert, mut t_copy) = (Vec::new(), Vec::new());
    for run in 0..runs.min(3) {
        let root = dir.path().join(format!("insert-{run}"));
        ctx.register_table("w", Arc::new(ours(&ctx, &root, Layout::Plain).await?))?;
        let started = Instant::now();
        ctx.sql("INSERT INTO w SELECT customer_id, amount, day FROM src")
            .await?
            .collect()
            .await?;
        t_insert.push(started.elapsed());
        ctx.deregister_table("w")?;
        let target = dir.path().join(format!("copy-{run}"));
        let started = Instant::now();
        ctx.sql(&format!(
            "COPY (SELECT customer_id, amount, day FROM src) TO '{}/' STORED AS PARQUET PARTITIONED BY (day)",
            target.display()
        ))
        .await?
        .collect()
        .await?;
        t_copy.push(started.elapsed());
    }
    let (i, c) = (median(&mut t_insert), median(&mut t_copy));
    println!(
        "INSERT INTO {rows} rows: ours {i:.2?}, COPY TO {c:.2?}, ours/COPY {:.2} (target <= 1.2)",
        i.as_secs_f64() / c.as_secs_f64()
    );

    // Two bucketed tables, and ListingTable over the same files.
    // `a`: every order; `b`: one row per customer (its largest order).
    // `s`: every order, sorted by amount.
    for (name, layout, select) in [
        (
            "a",
            Layout::Bucketed,
            "SELECT customer_id, amount, day FROM src",
        ),
        (
            "b",
            Layout::Bucketed,
            "SELECT customer_id, max(amount), min(day) FROM src GROUP BY customer_id",
        ),
        (
            "s",
            Layout::Sorted,
            "SELECT customer_id, amount, day FROM src",
        ),
    ] {
        let root = dir.path().join(name);
        ctx.register_table(name, Arc::new(ours(&ctx, &root, layout).await?))?;
        ctx.sql(&format!("INSERT INTO {name} {select}"))
            .await?
            .collect()
            .await?;
        let fresh = session();
        ctx.deregister_table(name)?;
        ctx.register_table(name, Arc::new(ours(&fresh, &root, layout).await?))?;
        ctx.register_table(format!("l{name}"), Arc::new(listing(&ctx, &root).await?))?;
    }
    // Integer and min/max aggregates: float sums differ in the last digit
    // with the order rows are added in.
    let group = "SELECT customer_id, count(*) AS n, max(amount) AS m FROM {a} \
                 GROUP BY customer_id ORDER BY m DESC, customer_id LIMIT 10";
    let join = "SELECT count(*) AS n, sum(x.customer_id) AS s, max(y.amount - x.amount) AS d \
                FROM {a} x JOIN {b} y ON x.customer_id = y.customer_id";
    let sorted = "SELECT customer_id, amount FROM {s} ORDER BY amount, customer_id LIMIT 100";
    for (title, sql, target) in [
        ("GROUP BY bucket key", group, 1.3),
        ("co-bucketed join", join, 1.3),
        ("ORDER BY sort key LIMIT 100", sorted, 2.0),
    ] {
        let ours_sql = sql
            .replace("{a}", "a")
            .replace("{b}", "b")
            .replace("{s}", "s");
        let theirs_sql = sql
            .replace("{a}", "la")
            .replace("{b}", "lb")
            .replace("{s}", "ls");
        let plan = ctx
            .sql(&format!("EXPLAIN {ours_sql}"))
            .await?
            .collect()
            .await?;
        let plan = pretty_format_batches(&plan)?.to_string();
        println!(
            "{title}: RepartitionExec / SortExec in our plan: {} / {}",
            plan.matches("RepartitionExec").count(),
            plan.matches("SortExec").count()
        );
        compare(
            &format!("{title} (target >= {target})"),
            runs,
            (&ctx, &ours_sql),
            (&ctx, &theirs_sql),
        )
        .await?;
    }

    // TopK with dynamic filters on vs off, same table.
    let off = SessionContext::new_with_config(
        SessionConfig::new()
            .with_target_partitions(BUCKETS)
            .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false)
            .set_bool(
                "datafusion.optimizer.enable_topk_dynamic_filter_pushdown",
                false,
            ),
    );
    off.register_table(
        "a",
        Arc::new(ours(&off, &dir.path().join("a"), Layout::Bucketed).await?),
    )?;
    let topk = "SELECT customer_id, amount FROM a ORDER BY amount DESC, customer_id LIMIT 100";
    compare(
        "TopK, dynamic filters on (ours) vs off (theirs)",
        runs,
        (&ctx, topk),
        (&off, topk),
    )
    .await?;
    Ok(())
}
