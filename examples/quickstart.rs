//! The README's main job: generate a small Hive-partitioned events dataset,
//! register it as a `PartitionedTable`, and query it.
//!
//! ```text
//! cargo run --release --example quickstart [DIR] [--rows-per-file N]
//! ```
//!
//! Without DIR the data goes to a temporary directory that is removed at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

mod common;

use datafusion::error::Result;
use lakefusion::SessionBuilder;

use common::{generate, DAYS, EXPLAINED, REGIONS};

#[tokio::main]
async fn main() -> Result<()> {
    let (dir, rows_per_file, _) = common::parse_args(std::env::args().skip(1));
    let dir = dir.map(PathBuf::from);
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

    // lakefusion's session: its `file://` store lets discovery read the
    // directories itself (see `SessionBuilder`).
    let ctx = SessionBuilder::new().build_context();
    let started = Instant::now();
    let events = common::events_table(&root, &ctx.state()).await?;
    println!(
        "registered events: {} partitions, {} files, {} bytes ({:.1?}: one listing, one footer)",
        events.index().partitions().len(),
        events.index().file_count(),
        events.index().total_bytes(),
        started.elapsed()
    );
    ctx.register_table("events", Arc::new(events))?;

    common::run_queries(&ctx).await?;

    println!("\n-- EXPLAIN: partition filters are answered from the index, data filters prune row groups");
    ctx.sql(EXPLAINED).await?.show().await?;
    Ok(())
}
