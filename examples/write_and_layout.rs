//! Writing with `INSERT INTO`, bucketed and sorted tables whose declared
//! partitioning and ordering DataFusion trusts, and dynamic filters, with
//! their `EXPLAIN`s.
//!
//! ```text
//! cargo run --example write_and_layout [-- --rows N]
//! ```
//!
//! 1. Declares an empty `orders` table (partitioned by `day`, bucketed by
//!    `customer_id` into 4 buckets) and fills it with `INSERT INTO`.
//! 2. Shows the files the write made: one per (day, bucket), named by bucket.
//! 3. `EXPLAIN`s a `GROUP BY customer_id` and a join of two tables bucketed
//!    alike: no `RepartitionExec`, because the scans declare
//!    `Hash([customer_id], 4)`.
//! 4. Fills a `ledger` table sorted by `amount` (the write sorts and records
//!    the order) and `EXPLAIN`s an `ORDER BY amount LIMIT` and a running
//!    total: no `SortExec`, because the scan declares its output ordering.
//! 5. `EXPLAIN ANALYZE`s a TopK whose dynamic filter skips row groups.

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::{PartitionedTable, SessionBuilder};

const BUCKETS: usize = 4;

#[tokio::main]
async fn main() -> Result<()> {
    let rows = std::env::args()
        .skip_while(|a| a != "--rows")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000i64);
    let dir = tempfile::tempdir()?;
    // As many target partitions as buckets: the scan's declaration holds.
    let ctx = SessionBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(BUCKETS))
        .build_context();
    ctx.register_table("staging", Arc::new(staging(rows)?))?;

    for name in ["orders", "returns"] {
        let root = dir.path().join(name);
        std::fs::create_dir_all(&root)?;
        let table = PartitionedTable::builder(format!("file://{}/", root.display()))
            .name(name)
            .schema(Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Int64, false),
                Field::new("amount", DataType::Float64, false),
            ])))
            .partition_column("day", DataType::Utf8)
            .bucket_by("customer_id", BUCKETS)
            .build(&ctx.state())
            .await?;
        ctx.register_table(name, Arc::new(table))?;
        let filter = if name == "returns" {
            "WHERE customer_id % 10 = 0"
        } else {
            ""
        };
        let sql =
            format!("INSERT INTO {name} SELECT customer_id, amount, day FROM staging {filter}");
        println!("== {sql}");
        show(&ctx, &sql).await?;
    }

    println!("== files written for orders (one per day and bucket)");
    let mut files: Vec<String> = walk(&dir.path().join("orders"));
    files.sort();
    for file in files.iter().take(8) {
        println!("  {file}");
    }
    println!("  ... {} files", files.len());

    for (title, sql) in [
        (
            "GROUP BY the bucket key: no RepartitionExec",
            "SELECT customer_id, count(*) AS orders, round(sum(amount), 2) AS spend \
             FROM orders GROUP BY customer_id ORDER BY spend DESC LIMIT 3",
        ),
        (
            "A join of two tables bucketed alike (no RepartitionExec on either side)",
            "SELECT count(*) AS returned FROM orders o JOIN returns r \
             ON o.customer_id = r.customer_id AND o.day = r.day AND o.amount = r.amount",
        ),
    ] {
        println!("== {title}");
        show(&ctx, sql).await?;
        show(&ctx, &format!("EXPLAIN {sql}")).await?;
    }

    let root = dir.path().join("ledger");
    std::fs::create_dir_all(&root)?;
    let ledger = PartitionedTable::builder(format!("file://{}/", root.display()))
        .name("ledger")
        .schema(Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, false),
        ])))
        .partition_column("day", DataType::Utf8)
        .sort_order(["amount"])
        .build(&ctx.state())
        .await?;
    ctx.register_table("ledger", Arc::new(ledger))?;
    let sql = "INSERT INTO ledger SELECT customer_id, amount, day FROM staging";
    println!("== {sql} (sorted by amount as it is written)");
    show(&ctx, sql).await?;
    for (title, sql) in [
        (
            "ORDER BY the sort key: no SortExec, the scan's output_ordering is merged",
            "SELECT day, amount FROM ledger ORDER BY amount LIMIT 3",
        ),
        (
            "A window over the sort key: no SortExec either",
            "SELECT amount, sum(amount) OVER (ORDER BY amount ROWS UNBOUNDED PRECEDING) AS running \
             FROM ledger ORDER BY amount LIMIT 3",
        ),
    ] {
        println!("== {title}");
        show(&ctx, sql).await?;
        show(&ctx, &format!("EXPLAIN {sql}")).await?;
    }

    println!("== A TopK: its dynamic filter skips row groups (see runtime_filters and row_groups_pruned_statistics)");
    show(
        &ctx,
        "EXPLAIN ANALYZE SELECT amount FROM orders ORDER BY amount DESC LIMIT 5",
    )
    .await?;
    Ok(())
}

/// Rows to insert: `rows` orders over 7 days and 1,000 customers, amounts
/// increasing so that a TopK has something to skip.
fn staging(rows: i64) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("day", DataType::Utf8, false),
    ]));
    let ids: Vec<i64> = (0..rows).collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(
                ids.iter().map(|i| (i * 7919) % 1_000).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| *i as f64 / 10.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| format!("2026-03-0{}", 1 + i * 7 / rows.max(1)))
                    .collect::<Vec<_>>(),
            )),
        ],
    )?;
    MemTable::try_new(schema, vec![vec![batch]])
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if let Some(parent) = path.parent().and_then(|p| p.file_name()) {
            out.push(format!(
                "{}/{}",
                parent.to_string_lossy(),
                path.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
    }
    out
}

async fn show(ctx: &SessionContext, sql: &str) -> Result<()> {
    let batches = ctx.sql(sql).await?.collect().await?;
    println!("{}", pretty_format_batches(&batches)?);
    Ok(())
}
