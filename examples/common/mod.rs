//! The events dataset the quickstart and the Ballista client share.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::Session;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use lakefusion::PartitionedTable;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

pub const DAYS: u32 = 14;
pub const REGIONS: [&str; 4] = ["apac", "eu", "latam", "us"];
pub const FILES_PER_PARTITION: usize = 2;

/// The queries both examples run, with a title each.
pub const QUERIES: [(&str, &str); 3] = [
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
];

/// The `EXPLAIN`ed query: partition filters answered from the index, a data
/// filter pruning row groups.
pub const EXPLAINED: &str = "EXPLAIN SELECT customer, amount FROM events \
     WHERE date = DATE '2026-03-01' AND region = 'eu' AND amount > 900";

/// The events table over `root`: Date32 `date`, Utf8 `region`.
pub async fn events_table(root: &Path, session: &dyn Session) -> Result<PartitionedTable> {
    let root = std::fs::canonicalize(root)?;
    events_table_at(&format!("file://{}/", root.display()), session).await
}

/// The events table under a root URL (`file://`, `s3://`, …).
pub async fn events_table_at(url: &str, session: &dyn Session) -> Result<PartitionedTable> {
    Ok(PartitionedTable::builder(url)
        .name("events")
        .partition_column("date", DataType::Date32)
        .partition_column("region", DataType::Utf8)
        .build(session)
        .await?)
}

/// Runs [`QUERIES`], printing each with its result and time.
pub async fn run_queries(ctx: &SessionContext) -> Result<()> {
    for (title, sql) in QUERIES {
        println!("\n-- {title}\n{sql}");
        let started = std::time::Instant::now();
        ctx.sql(sql).await?.show().await?;
        println!("({:.1?})", started.elapsed());
    }
    Ok(())
}

/// Parses `[DIR] [--rows-per-file N]` (plus any `--flag value` pairs the
/// caller handles itself, returned as the third value).
pub fn parse_args(
    args: impl Iterator<Item = String>,
) -> (Option<String>, usize, Vec<(String, String)>) {
    let mut args = args.peekable();
    let (mut dir, mut rows_per_file, mut flags) = (None, 10_000usize, Vec::new());
    while let Some(arg) = args.next() {
        if let Some(flag) = arg.strip_prefix("--") {
            let value = args.next().unwrap_or_default();
            if flag == "rows-per-file" {
                rows_per_file = value.parse().unwrap_or(rows_per_file);
            } else {
                flags.push((flag.to_string(), value));
            }
        } else {
            dir = Some(arg);
        }
    }
    (dir, rows_per_file, flags)
}

/// Writes `DAYS x REGIONS` partitions of `FILES_PER_PARTITION` files each.
pub fn generate(root: &Path, rows_per_file: usize) -> Result<usize> {
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
