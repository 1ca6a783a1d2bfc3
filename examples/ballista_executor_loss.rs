//! Executor loss: runs a full-scan, shuffling query on a lakefusion Ballista
//! cluster, kills one executor (`kill -9 PID`) while the query runs, and
//! reports what happened: the right rows, or a clear error, and how long it
//! took. Exits non-zero on wrong rows or when the query outlives `--bound-seconds`.
//!
//! ```text
//! cargo run --features ballista --example ballista_executor_loss -- \
//!     --scheduler df://localhost:50050 --stop-pid PID [--after-ms 1500] \
//!     [--bound-seconds 120] [DIR] [--rows-per-file N]
//! ```
//!
//! Ballista notices a lost executor when its heartbeats stop (the scheduler's
//! `--executor-timeout-seconds`) or when fetching a shuffle file from it
//! fails; `.ci/run` starts the cluster with a 10 s timeout and 2 s heartbeats.

#[allow(dead_code)] // shared with the quickstart, which uses all of it
mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista::prelude::SessionContextExt;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use lakefusion::ballista::BallistaSetup;
use lakefusion::QueryContext;

/// Two shuffles over every row: a high-cardinality aggregation (one group per
/// customer and order bucket), then its total.
const QUERY: &str = "SELECT count(*) AS groups, sum(n) AS orders, round(sum(spend), 2) AS revenue \
     FROM (SELECT customer, order_id % 100000 AS bucket, count(*) AS n, sum(amount) AS spend \
     FROM events GROUP BY customer, order_id % 100000)";

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (dir, rows_per_file, flags) = common::parse_args(std::env::args().skip(1));
    let flag = |name: &str| {
        flags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let scheduler = flag("scheduler").unwrap_or_else(|| "df://localhost:50050".into());
    let pid = flag("stop-pid").ok_or("--stop-pid PID (the executor to kill) is required")?;
    let after = Duration::from_millis(flag("after-ms").map_or(Ok(1500), |v| v.parse())?);
    let bound = Duration::from_secs(flag("bound-seconds").map_or(Ok(120), |v| v.parse())?);

    let temp = tempfile::tempdir()?;
    let root = dir
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().join("events"));
    let rows = common::generate(&root, rows_per_file)?;
    println!("generated {rows} rows under {}", root.display());

    // The answer, computed here alone.
    let local = SessionContext::new();
    local.register_table(
        "events",
        Arc::new(common::events_table(&root, &local.state()).await?),
    )?;
    let expected = pretty_format_batches(&local.sql(QUERY).await?.collect().await?)?.to_string();

    let setup = BallistaSetup::default();
    let ctx = SessionContext::remote_with_state(
        &scheduler,
        setup.client_state(QueryContext::new("executor-loss")),
    )
    .await?;
    ctx.register_table(
        "events",
        Arc::new(common::events_table(&root, &ctx.state()).await?),
    )?;

    let started = Instant::now();
    let query = {
        let ctx = ctx.clone();
        tokio::spawn(async move { ctx.sql(QUERY).await?.collect().await })
    };
    tokio::time::sleep(after).await;
    if query.is_finished() {
        let outcome = match query.await? {
            Ok(_) => "rows".to_string(),
            Err(e) => format!("an error: {e}"),
        };
        println!("the query finished within {after:?}, before the kill, with {outcome}");
        return Ok(ExitCode::FAILURE);
    }
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()?;
    if !killed.success() {
        println!("kill -9 {pid} failed");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "killed executor {pid} {:.1?} into the query",
        started.elapsed()
    );

    let outcome = tokio::time::timeout(bound, query).await;
    let took = started.elapsed();
    Ok(match outcome {
        Err(_) => {
            println!("OUTCOME: no answer within {bound:?}: the query hangs");
            ExitCode::FAILURE
        }
        Ok(joined) => match joined? {
            Ok(batches) => {
                let got = pretty_format_batches(&batches)?.to_string();
                if got == expected {
                    println!("OUTCOME: completed with the right rows after {took:.1?}\n{got}");
                    ExitCode::SUCCESS
                } else {
                    println!("OUTCOME: WRONG ROWS after {took:.1?}\n{got}\nexpected\n{expected}");
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                println!("OUTCOME: failed with a clear error after {took:.1?}: {e}");
                ExitCode::SUCCESS
            }
        },
    })
}
