//! A Ballista executor process with lakefusion's codecs (its own small-table
//! cache injected), config producer and runtime producer.
//!
//! ```text
//! cargo run --features ballista --example ballista_executor -- \
//!     [--scheduler-port 50050] [--port 50051] [--grpc-port 50052] [--heartbeat-seconds 60]
//! ```

use std::sync::Arc;

use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use lakefusion::ballista::BallistaSetup;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = BallistaSetup::default();
    let config = setup.executor_config(ExecutorProcessConfig {
        bind_host: "127.0.0.1".into(),
        external_host: Some("localhost".into()),
        scheduler_host: "localhost".into(),
        scheduler_port: flag("--scheduler-port").unwrap_or(50050),
        port: flag("--port").unwrap_or(50051),
        grpc_port: flag("--grpc-port").unwrap_or(50052),
        scheduler_connect_timeout_seconds: 30,
        executor_heartbeat_interval_seconds: flag("--heartbeat-seconds").unwrap_or(60),
        ..Default::default()
    });
    println!(
        "lakefusion executor on port {} (grpc {}), scheduler localhost:{}",
        config.port, config.grpc_port, config.scheduler_port
    );
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

fn flag<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
}
