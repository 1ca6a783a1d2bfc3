//! The README's main job: generate a small Hive-partitioned events dataset,
//! register it as a `PartitionedTable`, and query it.
//!
//! ```text
//! cargo run --release --example quickstart [DIR] [--rows-per-file N]
//! ```
//!
//! Without DIR the data goes to a temporary directory that is removed at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use lakefusion::PartitionedTable;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

const DAYS: u32 = 14;
const REGIONS: [&str; 4] = ["apac", "eu", "latam", "us"];
const FILES_PER_PARTITION: usize = 2;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut rows_per_file = 10_000usize;
    while let Some(arg) = args.next() {
        if arg == "--rows-per-file" {
            rows_per_file = args.next().and_then(|n| n.parse().ok()).ok_or_else(|| {
                datafusion::error::DataFusionError::Configuration(
                    "--rows-per-file needs a number".into(),
                )
            })?;
        } else {
            dir = Some(PathBuf::from(arg));
        }
    }
    let temp = tempfile::tempdir()?;
    let root = dir.unwrap_or_else(|| temp.path().join("events"));

    let started = Instant::now();
    let rows = generate(&root, rows_per_file)?;
    println!(
        "generated {rows} rows in {} partitions under {} ({:.1?})",
        DAYS as usize * REGIONS.len(),
        root.display(),
        started.elapsed()
    );

    let ctx = SessionContext::new();
    let started = Instant::now();
    let events = PartitionedTable::builder(format!(
        "file://{}/",
        std::fs::canonicalize(&root)?.display()
    ))
    .name("events")
    .partition_column("date", DataType::Date32)
    .partition_column("region", DataType::Utf8)
    .build(&ctx.state())
    .await?;
    println!(
        "registered events: {} partitions, {} files, {} bytes ({:.1?}: one listing, one footer)",
        events.index().partitions().len(),
        events.index().file_count(),
        events.index().total_bytes(),
        started.elapsed()
    );
    ctx.register_table("events", Arc::new(events))?;

    for (title, sql) in [
        (
            "Orders per region on one day (reads 4 of 56 partitions)",
            "SELECT region, count(*) AS orders, round(sum(amount), 2) AS revenue \
             FROM events WHERE date = DATE '2026-03-01' GROUP BY region ORDER BY region",
        ),
        (
            "Daily revenue in Europe, first week",
            "SELECT date, round(sum(amount), 2) AS revenue FROM events \
             WHERE region = 'eu' AND date BETWEEN DATE '2026-03-01' AND DATE '2026-03-07' \
             GROUP BY date ORDER BY date",
        ),
        (
            "Top 5 customers by spend on large orders",
            "SELECT customer, count(*) AS orders, round(sum(amount), 2) AS spend FROM events \
             WHERE amount > 900 GROUP BY customer ORDER BY spend DESC, customer LIMIT 5",
        ),
    ] {
        println!("\n-- {title}\n{sql}");
        let started = Instant::now();
        ctx.sql(sql).await?.show().await?;
        println!("({:.1?})", started.elapsed());
    }

    println!("\n-- EXPLAIN: partition filters are answered from the index, data filters prune row groups");
    ctx.sql(
        "EXPLAIN SELECT customer, amount FROM events \
         WHERE date = DATE '2026-03-01' AND region = 'eu' AND amount > 900",
    )
    .await?
    .show()
    .await?;
    Ok(())
}

/// Writes `DAYS x REGIONS` partitions of `FILES_PER_PARTITION` files each.
fn generate(root: &Path, rows_per_file: usize) -> Result<usize> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_file.div_ceil(4).max(1)))
        .build();
    let mut order_id = 0i64;
    for day in 1..=DAYS {
        for region in REGIONS {
            let dir = root.join(format!("date=2026-03-{day:02}/region={region}"));
            std::fs::create_dir_all(&dir)?;
            for f in 0..FILES_PER_PARTITION {
                let ids: Vec<i64> = (order_id..order_id + rows_per_file as i64).collect();
                order_id += rows_per_file as i64;
                // Amounts rise through each file, so row groups have disjoint ranges.
                let amounts: Vec<f64> = (0..rows_per_file)
                    .map(|i| (i * 1000 / rows_per_file.max(1)) as f64 + 0.5)
                    .collect();
                let customers: Vec<String> = ids
                    .iter()
                    .map(|i| format!("c{:04}", (i * 7919) % 5000))
                    .collect();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(ids)),
                        Arc::new(StringArray::from(customers)),
                        Arc::new(Float64Array::from(amounts)),
                    ],
                )?;
                let file = std::fs::File::create(dir.join(format!("part-{f:05}.parquet")))?;
                let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props.clone()))?;
                writer.write(&batch)?;
                writer.close()?;
            }
        }
    }
    Ok(order_id as usize)
}
