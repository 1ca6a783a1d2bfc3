//! A Ballista scheduler process with lakefusion's codecs, config producer and
//! session builder.
//!
//! ```text
//! cargo run --features ballista --example ballista_scheduler -- [--port 50050] \
//!     [--executor-timeout-seconds 180] [--expire-interval-seconds 15]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use lakefusion::ballista::BallistaSetup;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = flag("--port").unwrap_or(50050);
    let setup = BallistaSetup::default();
    let config = setup.scheduler_config(SchedulerConfig {
        bind_host: "127.0.0.1".into(),
        external_host: "localhost".into(),
        bind_port: port,
        // How soon a silent executor is declared lost (Ballista's default
        // is 180 s; tests of executor loss use less).
        executor_timeout_seconds: flag("--executor-timeout-seconds").unwrap_or(180),
        expire_dead_executor_interval_seconds: flag("--expire-interval-seconds").unwrap_or(15),
        ..Default::default()
    });
    let address: SocketAddr = format!("{}:{}", config.bind_host, config.bind_port).parse()?;
    println!("lakefusion scheduler listening on {address}");
    let cluster = BallistaCluster::new_from_config(&config).await?;
    start_server(cluster, address, Arc::new(config)).await?;
    Ok(())
}

fn flag<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
}
