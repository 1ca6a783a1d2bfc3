//! A datafusion-distributed worker with lakefusion set up: its own
//! small-table cache, and every task's session built with
//! `worker_session_builder` (lakefusion's codec, the settings the task
//! came with, the allowed-roots check).
//!
//! ```text
//! cargo run --features datafusion-distributed --example distributed_worker -- [--port 30660]
//! ```

use std::net::{Ipv4Addr, SocketAddr};

use datafusion_distributed::Worker;
use lakefusion::datafusion_distributed::worker_session_builder;
use lakefusion::Deployment;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = flag("--port").unwrap_or(30660);
    let worker = Worker::from_session_builder(worker_session_builder(Deployment::default()));
    println!("lakefusion worker on localhost:{port}");
    tonic::transport::Server::builder()
        .add_service(worker.into_worker_server())
        .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await?;
    Ok(())
}

fn flag<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
}
