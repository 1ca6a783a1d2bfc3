//! The small-table cache and the query context, end to end.
//!
//! ```text
//! cargo run --example cache_and_context [-- --rows-per-file N]
//! ```
//!
//! Builds a session with `SessionBuilder` (query context + cache), joins a
//! partitioned fact table to a small dimension table twice, and shows the
//! second run served from the cache in `EXPLAIN ANALYZE`, the cache metrics,
//! and `SET lakefusion.cache_enabled = false` turning it off.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use lakefusion::{CacheConfig, PartitionedTable, QueryContext, SessionBuilder};
use parquet::arrow::ArrowWriter;

const JOIN: &str = "SELECT r.name, count(*) AS orders, round(sum(o.amount), 2) AS revenue \
                    FROM orders o JOIN regions r ON o.region_id = r.region_id \
                    WHERE o.date = DATE '2026-03-02' GROUP BY r.name ORDER BY r.name";

#[tokio::main]
async fn main() -> Result<()> {
    let rows_per_file = std::env::args()
        .skip_while(|a| a != "--rows-per-file")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000usize);
    let dir = tempfile::tempdir()?;
    generate(dir.path(), rows_per_file)?;

    // One builder: every session it builds shares its cache.
    let builder = SessionBuilder::new()
        .with_query_context(QueryContext::new("example-1").with_tenant_id("acme"))
        .with_cache(CacheConfig::default().with_max_bytes(16 * 1024));
    let ctx = builder.build_context();
    register(&ctx, dir.path()).await?;

    println!("-- the query context travels with the session config");
    ctx.sql("SET query_context.query_id = 'example-2'")
        .await?
        .collect()
        .await?;
    println!(
        "{:?}\n",
        QueryContext::from_session_config(&ctx.copied_config())
    );

    println!("-- first run: the regions scan misses and fills the cache");
    ctx.sql(JOIN).await?.show().await?;
    println!("\n-- second run: EXPLAIN ANALYZE shows the hit (cache_hits, no files opened)");
    let analyzed = ctx
        .sql(&format!("EXPLAIN ANALYZE {JOIN}"))
        .await?
        .collect()
        .await?;
    for line in pretty_format_batches(&analyzed)?.to_string().lines() {
        if line.contains("CachedScanExec") || line.contains("PartitionedScanExec") {
            println!("{}", line.trim_matches(|c| c == '|' || c == ' '));
        }
    }

    let cache = builder.table_cache().expect("cache enabled");
    println!("\n-- cache metrics: {:?}", cache.metrics());

    println!("\n-- another session from the same builder is served from the same cache");
    let other = builder.build_context();
    register(&other, dir.path()).await?;
    other.sql(JOIN).await?.collect().await?;
    println!("{:?}", cache.metrics());

    println!("\n-- SET lakefusion.cache_enabled = false: plain scans again");
    ctx.sql("SET lakefusion.cache_enabled = false")
        .await?
        .collect()
        .await?;
    let plan = ctx.sql(JOIN).await?.create_physical_plan().await?;
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string();
    println!(
        "{}",
        text.lines()
            .filter(|l| l.contains("ScanExec"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!text.contains("CachedScanExec"));
    Ok(())
}

async fn register(ctx: &SessionContext, root: &Path) -> Result<()> {
    let orders = PartitionedTable::builder(format!("file://{}/orders/", root.display()))
        .name("orders")
        .partition_column("date", DataType::Date32)
        .build(&ctx.state())
        .await?;
    let regions = PartitionedTable::builder(format!("file://{}/regions/", root.display()))
        .name("regions")
        .collect_statistics(true)
        .build(&ctx.state())
        .await?;
    ctx.register_table("orders", Arc::new(orders))?;
    ctx.register_table("regions", Arc::new(regions))?;
    Ok(())
}

fn generate(root: &Path, rows_per_file: usize) -> Result<()> {
    let orders = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("region_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    for day in 1..=7 {
        let dir = root.join(format!("orders/date=2026-03-{day:02}"));
        std::fs::create_dir_all(&dir)?;
        let ids: Vec<i64> = (0..rows_per_file as i64)
            .map(|i| day * 1_000_000 + i)
            .collect();
        let batch = RecordBatch::try_new(
            orders.clone(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 5))),
                Arc::new(Float64Array::from_iter_values(
                    ids.iter().map(|i| (i % 100) as f64),
                )),
            ],
        )?;
        write(&dir.join("part-0.parquet"), &batch)?;
    }
    let regions = Arc::new(Schema::new(vec![
        Field::new("region_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let dir = root.join("regions");
    std::fs::create_dir_all(&dir)?;
    let batch = RecordBatch::try_new(
        regions,
        vec![
            Arc::new(Int64Array::from(vec![0, 1, 2, 3, 4])),
            Arc::new(StringArray::from(vec![
                "africa", "america", "asia", "europe", "oceania",
            ])),
        ],
    )?;
    write(&dir.join("part-0.parquet"), &batch)
}

fn write(path: &Path, batch: &RecordBatch) -> Result<()> {
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    Ok(())
}
