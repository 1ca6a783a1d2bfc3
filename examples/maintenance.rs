//! Keeping a lake: `INSERT OVERWRITE` of a day, `DELETE` of old days,
//! compaction of the small files streaming appends left, and what another
//! process's fresh `build()` sees after each.
//!
//! ```text
//! cargo run --example maintenance [-- --appends N]
//! ```
//!
//! 1. Declares an `events` table partitioned by `day` and sorted by `ts`,
//!    and appends to it `--appends` times (many small files, as a streaming
//!    job leaves them).
//! 2. Restates one day with `INSERT OVERWRITE`: only that day changes.
//! 3. Drops the oldest day with `DELETE FROM … WHERE day = …`.
//! 4. Compacts: each day's small files become one file, still sorted.
//! 5. After each step, a second table object (as another process would
//!    build it) counts the rows and files.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use lakefusion::{CompactOptions, PartitionedTable, SortKey};

async fn events(ctx: &SessionContext, root: &str) -> Result<PartitionedTable> {
    Ok(PartitionedTable::builder(root)
        .name("events")
        .schema(Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("amount", DataType::Int64, false),
        ])))
        .partition_column("day", DataType::Utf8)
        .sort_order([SortKey::asc("ts")])
        .build(&ctx.state())
        .await?)
}

/// What a fresh `build()` (another process's view) reads.
async fn seen_by_another_reader(root: &str, step: &str) -> Result<()> {
    let ctx = SessionContext::new();
    let table = events(&ctx, root).await?;
    let files = table.index().file_count();
    ctx.register_table("events", Arc::new(table))?;
    let batches = ctx
        .sql("SELECT day, count(*) AS rows, sum(amount) AS total FROM events GROUP BY day ORDER BY day")
        .await?
        .collect()
        .await?;
    println!(
        "{step}: {files} files\n{}",
        pretty_format_batches(&batches)?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let appends: i64 = std::env::args()
        .skip_while(|a| a != "--appends")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let root = format!("file://{}/", dir.path().display());
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events(&ctx, &root).await?))?;

    for i in 0..appends {
        ctx.sql(&format!(
            "INSERT INTO events SELECT value AS ts, value % 10 AS amount, \
             concat('2026-03-0', CAST(1 + value % 3 AS VARCHAR)) AS day \
             FROM generate_series({}, {})",
            i * 100,
            i * 100 + 99
        ))
        .await?
        .collect()
        .await?;
    }
    seen_by_another_reader(&root, "after the appends").await?;

    ctx.sql(
        "INSERT OVERWRITE events SELECT value AS ts, 1 AS amount, '2026-03-02' AS day \
         FROM generate_series(1, 10)",
    )
    .await?
    .collect()
    .await?;
    seen_by_another_reader(&root, "after INSERT OVERWRITE of 2026-03-02").await?;

    let deleted = ctx
        .sql("DELETE FROM events WHERE day = '2026-03-01'")
        .await?
        .collect()
        .await?;
    println!(
        "DELETE of 2026-03-01:\n{}",
        pretty_format_batches(&deleted)?
    );
    seen_by_another_reader(&root, "after the DELETE").await?;

    let table = events(&ctx, &root).await?;
    let done = table
        .compact(&ctx.state(), None, CompactOptions::default())
        .await?;
    println!(
        "compaction: {} files -> {} in {} partitions, {} rows",
        done.files_in, done.files_out, done.partitions, done.rows
    );
    seen_by_another_reader(&root, "after compaction").await?;

    // Sorted still: ORDER BY ts needs no SortExec on the compacted files.
    ctx.deregister_table("events")?;
    ctx.register_table("events", Arc::new(table))?;
    let plan = ctx
        .sql("EXPLAIN SELECT ts FROM events WHERE day = '2026-03-03' ORDER BY ts")
        .await?
        .collect()
        .await?;
    println!("{}", pretty_format_batches(&plan)?);

    // Nothing for recover() to do: every write ended.
    let recovered = table_recover(&ctx, &root).await?;
    println!("recover(): {recovered:?}");
    Ok(())
}

async fn table_recover(ctx: &SessionContext, root: &str) -> Result<lakefusion::Recovered> {
    let table = events(ctx, root).await?;
    Ok(table
        .recover(&ctx.state(), Duration::from_secs(3600))
        .await?)
}
