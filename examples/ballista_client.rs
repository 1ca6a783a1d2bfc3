//! A client of a lakefusion Ballista cluster: generates the quickstart's events
//! dataset, registers it, and runs the quickstart's queries on the cluster.
//!
//! ```text
//! cargo run --features ballista --example ballista_client -- \
//!     [--scheduler df://localhost:50050] [DIR] [--rows-per-file N]
//! ```
//!
//! The scheduler and executors must reach DIR under the same path (one machine,
//! or a shared mount).

#[allow(dead_code)] // shared with the quickstart, which uses all of it
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista::prelude::SessionContextExt;
use datafusion::prelude::SessionContext;
use lakefusion::ballista::BallistaSetup;
use lakefusion::QueryContext;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (dir, rows_per_file, flags) = common::parse_args(std::env::args().skip(1));
    let scheduler = flags
        .iter()
        .find(|(k, _)| k == "scheduler")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "df://localhost:50050".into());
    let temp = tempfile::tempdir()?;
    let root = dir
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().join("events"));
    let rows = common::generate(&root, rows_per_file)?;
    println!("generated {rows} rows under {}", root.display());

    let setup = BallistaSetup::default();
    let ctx = connect(&scheduler, &setup).await?;
    let events = common::events_table(&root, &ctx.state()).await?;
    ctx.register_table("events", Arc::new(events))?;
    ctx.sql("SET query_context.query_id = 'ballista-client'")
        .await?
        .collect()
        .await?;

    for (title, sql) in common::QUERIES {
        println!("\n-- {title} (on {scheduler})\n{sql}");
        let started = Instant::now();
        ctx.sql(sql).await?.show().await?;
        println!("({:.1?})", started.elapsed());
    }
    Ok(())
}

/// Connects, retrying while the scheduler starts up.
async fn connect(
    scheduler: &str,
    setup: &BallistaSetup,
) -> Result<SessionContext, Box<dyn std::error::Error>> {
    let mut attempts = 0;
    loop {
        match SessionContext::remote_with_state(
            scheduler,
            setup.client_state(QueryContext::new("ballista-client")),
        )
        .await
        {
            Ok(ctx) => return Ok(ctx),
            Err(e) if attempts < 60 => {
                attempts += 1;
                if attempts == 1 {
                    println!("waiting for the scheduler at {scheduler}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
