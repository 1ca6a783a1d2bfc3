//! An in-process Ballista cluster on loopback (shared by the cluster test and
//! the `ballista_cluster` benchmark).

use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::prelude::SessionContext;
use lakefusion::ballista::BallistaSetup;
use lakefusion::QueryContext;

/// Starts a scheduler and `executors` executors with `slots` task slots each,
/// all wired by `setup`, on random loopback ports; returns a client session
/// connected to the scheduler with `query_context`.
pub async fn start_cluster(
    setup: &BallistaSetup,
    executors: usize,
    slots: usize,
    query_context: QueryContext,
) -> Result<SessionContext, Box<dyn std::error::Error>> {
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_with_builder(
        setup.scheduler_session_builder(),
        setup.config_producer(),
        setup.codec(),
    )
    .await?;
    let url = format!("http://localhost:{}", addr.port());
    let mut attempts = 0;
    let client = loop {
        match SchedulerGrpcClient::connect(url.clone()).await {
            Ok(client) => break client,
            Err(e) if attempts >= 50 => return Err(e.into()),
            Err(_) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    for _ in 0..executors {
        ballista_executor::new_standalone_executor_from_builder(
            client.clone(),
            slots,
            setup.config_producer(),
            setup.runtime_producer(),
            setup.codec(),
            Default::default(),
        )
        .await?;
    }
    let client = SessionContext::remote_with_state(
        &format!("df://localhost:{}", addr.port()),
        setup.client_state(query_context),
    )
    .await?;
    Ok(client)
}
