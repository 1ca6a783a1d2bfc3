//! A coordinator of lakefusion on datafusion-distributed: generates the
//! quickstart's events dataset, registers it, runs the quickstart's queries
//! with their tasks on the workers, and checks each answer against one
//! machine's.
//!
//! ```text
//! cargo run --features datafusion-distributed --example distributed_client -- \
//!     [--workers 30660,30661] [DIR] [--rows-per-file N]
//! ```
//!
//! The workers must reach DIR under the same path (one machine, or a shared
//! mount).

#[allow(dead_code)] // shared with the quickstart, which uses all of it
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_distributed::{
    display_plan_ascii, DistributedExec, DistributedExt, SessionStateBuilderExt, WorkerResolver,
};
use lakefusion::datafusion_distributed::DistributedSessionExt;
use lakefusion::{Deployment, QueryContext, SessionStateBuilderExt as _};
use url::Url;

/// The workers, by URL.
#[derive(Clone)]
struct Workers(Vec<Url>);

impl WorkerResolver for Workers {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.clone())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (dir, rows_per_file, flags) = common::parse_args(std::env::args().skip(1));
    let ports = flags
        .iter()
        .find(|(k, _)| k == "workers")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "30660,30661".into());
    let workers = Workers(
        ports
            .split(',')
            .map(|p| Url::parse(&format!("http://localhost:{p}")))
            .collect::<Result<_, _>>()?,
    );
    let temp = tempfile::tempdir()?;
    let root = dir
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().join("events"));
    let rows = common::generate(&root, rows_per_file)?;
    println!("generated {rows} rows under {}", root.display());

    // Scans of more than 64 KiB per partition are split across the workers.
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(SessionConfig::new().with_target_partitions(2))
        .with_lakefusion_query_context(QueryContext::new("distributed-client"))
        .with_lakefusion_coordinator(&Deployment::default())
        .with_distributed_worker_resolver(workers.clone())
        .with_distributed_planner()
        .with_distributed_file_scan_config_bytes_per_partition(64 << 10)?
        .build();
    let ctx = SessionContext::new_with_state(state);
    let local = SessionContext::new();
    let events = common::events_table(&root, &ctx.state()).await?;
    ctx.register_table("events", Arc::new(events))?;
    local.register_table(
        "events",
        Arc::new(common::events_table(&root, &local.state()).await?),
    )?;
    wait_for_workers(&ctx).await?;

    let mut distributed = 0;
    for (title, sql) in common::QUERIES {
        println!("\n-- {title} (on {} workers)\n{sql}", workers.0.len());
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        if plan.is::<DistributedExec>() {
            distributed += 1;
            println!("{}", display_plan_ascii(plan.as_ref(), false));
        }
        let started = Instant::now();
        let batches = ctx.sql(sql).await?.collect().await?;
        let elapsed = started.elapsed();
        let answer = pretty_format_batches(&batches)?.to_string();
        println!("{answer}\n({elapsed:.1?})");
        let expected = pretty_format_batches(&local.sql(sql).await?.collect().await?)?.to_string();
        if answer != expected {
            return Err(format!(
                "{title}: the workers answered\n{answer}\none machine\n{expected}"
            )
            .into());
        }
    }
    if distributed == 0 {
        return Err("no query was distributed".into());
    }
    println!(
        "\n{distributed} of {} queries ran on the workers; every answer matched one machine's",
        common::QUERIES.len()
    );
    Ok(())
}

/// Retries a first query while the workers start up.
async fn wait_for_workers(ctx: &SessionContext) -> Result<(), Box<dyn std::error::Error>> {
    let mut attempts = 0;
    loop {
        match ctx
            .sql("SELECT sum(amount) FROM events")
            .await?
            .collect()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if attempts < 60 => {
                attempts += 1;
                if attempts == 1 {
                    println!("waiting for the workers: {e}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
