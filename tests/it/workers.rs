//! datafusion-distributed workers on loopback, real gRPC, and a coordinator
//! session that sends them tasks (shared by the engine's tests and the
//! `engines` benchmark).

use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_distributed::{DistributedExt, SessionStateBuilderExt, Worker, WorkerResolver};
use lakefusion::datafusion_distributed::{worker_session_builder, DistributedSessionExt};
use lakefusion::Deployment;
use tokio::task::JoinHandle;
use url::Url;

/// The workers' addresses, as the coordinator resolves them.
#[derive(Clone, Debug)]
pub struct WorkerUrls(pub Vec<Url>);

impl WorkerResolver for WorkerUrls {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.clone())
    }
}

/// Workers served in this process; dropped, they stop.
pub struct Workers {
    pub urls: WorkerUrls,
    servers: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

/// Starts one worker per deployment (clones of one deployment share its
/// cache), on random loopback ports.
pub async fn start_workers(deployments: &[Deployment]) -> Workers {
    let mut urls = Vec::new();
    let mut servers = Vec::new();
    for deployment in deployments {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let worker = Worker::from_session_builder(worker_session_builder(deployment.clone()));
        servers.push(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(worker.into_worker_server())
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        }));
        urls.push(Url::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    }
    Workers {
        urls: WorkerUrls(urls),
        servers,
    }
}

/// A coordinator's session: lakefusion set up by `deployment`, tasks sent to
/// `workers`, and every file scan split into tasks of at most
/// `bytes_per_partition` bytes per partition (small, so that the tests' small
/// tables are spread over every worker).
pub fn coordinator(
    deployment: &Deployment,
    workers: &WorkerUrls,
    target_partitions: usize,
    bytes_per_partition: usize,
) -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(SessionConfig::new().with_target_partitions(target_partitions))
        .with_lakefusion_coordinator(deployment)
        .with_distributed_worker_resolver(workers.clone())
        .with_distributed_planner()
        .with_distributed_file_scan_config_bytes_per_partition(bytes_per_partition)
        .expect("a valid setting")
        .build();
    SessionContext::new_with_state(state)
}

/// A coordinator and `count` in-process workers sharing nothing but `deployment`'s settings.
#[allow(dead_code)]
pub async fn cluster(deployment: &Deployment, count: usize) -> (SessionContext, Workers) {
    let workers = start_workers(&vec![deployment.clone(); count]).await;
    let ctx = coordinator(deployment, &workers.urls, 2, 1024);
    (ctx, workers)
}
