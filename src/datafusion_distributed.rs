//! Running on datafusion-distributed (feature `datafusion-distributed`): one
//! call on the coordinator's session builder, one on each worker's.
//!
//! ```text
//! coordinator ──plans, with the session's own rules; our scans split per task──▶
//! workers ──decode scans with lakefusion's codec (their cache, stores, allowed roots)
//! ```
//!
//! [`DistributedSessionExt`] adds to DataFusion's `SessionStateBuilder`:
//!
//! * [`with_lakefusion_coordinator`](DistributedSessionExt::with_lakefusion_coordinator)
//!   — where queries are planned: the table factory, the small-table cache
//!   rule, the deployment's stores, lakefusion's codec as the engine's user
//!   codec, [`QueryContext`] and [`ScanOptions`] sent with every task, and
//!   the handlers that split our scans across tasks;
//! * [`with_lakefusion_worker`](DistributedSessionExt::with_lakefusion_worker)
//!   — in the session builder of every worker: the codec with the worker's
//!   cache, store factory and allowed roots injected, the settings read back
//!   from the task's headers, and a check of every decoded plan against the
//!   allowed roots. The deployment's store factory serves lakefusion's scans;
//!   DataFusion's own Parquet scans look their store up while the engine
//!   decodes them, so their stores must be registered on the worker
//!   ([`Deployment::with_object_store`]). [`worker_session_builder`] is that call as a
//!   `WorkerSessionBuilder`, for `Worker::from_session_builder`.
//!
//! The worker resolver (where the workers are), the channel resolver and
//! `with_distributed_planner()` stay the application's: they describe its
//! cluster, not its tables.
//!
//! # How our scans are distributed
//!
//! The engine keeps the session's physical optimizer rules, so scans are
//! planned exactly as on one machine — pruning, the cache rule, declared
//! partitioning and order — and then split: a [`PartitionedScanExec`] (or a
//! [`CachedScanExec`]) asks for as many tasks as DataFusion's own file
//! scans of the same bytes would (`distributed.file_scan_config_bytes_per_partition`
//! per output partition), and becomes the engine's `DistributedLeafExec`
//! with one copy of the scan per task ([`PartitionedScanExec::split_across`]).
//! Each task is sent only its copy; the worker decodes it into a
//! `PartitionedScanExec` of its own (or a `CachedScanExec` over its own
//! cache, keyed from what it decoded), so file-named errors, the per-file
//! type check, the `lakefusion.scan` span and the cache work there. The
//! tasks of a stage that reads a cached scan go to the workers in URL order,
//! so that a re-run finds each entry where it was filled. A scan that
//! declares `Hash` partitioning (a bucketed table) runs in one task: the
//! engine numbers a shuffle's partitions across tasks, so its buckets cannot
//! be split off (see `desired_task_count`). DataFusion's own file scans (a
//! `ListingTable`) are split by the engine.
//!
//! # What the engine does not do
//!
//! * **No task retry**: a task that fails — a worker killed, a connection
//!   lost — fails the query, with the engine's error.
//! * **No distributed writes**: an `INSERT INTO` is planned as usual; the
//!   query under it may be distributed, and the write itself runs where the
//!   query was submitted, through lakefusion's commit protocol.
//! * **Settings travel as HTTP headers**: a `query_context.*` or
//!   `lakefusion.*` value that is not visible ASCII cannot be sent: the
//!   query fails (with the engine's error on the coordinator for control
//!   characters, naming the setting on the worker for other bytes).

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::{ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedConfig, DistributedExt,
    DistributedGetterExt, DistributedLeafExec, NetworkBoundaryExt, RouteTasksEvent,
    RouteTasksEventResponse, ScaleUpLeafNodeEvent, ScaleUpLeafNodeEventResponse,
    WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse, WorkerQueryContext,
    WorkerSessionBuilder,
};
use http::HeaderMap;

use crate::cache::CachedScanExec;
use crate::codec::{AllowedRoots, CompositePhysicalCodec, LakefusionPhysicalCodec};
use crate::deployment::Deployment;
use crate::scan::PartitionedScanExec;
use crate::session::{default_runtime, SessionStateBuilderExt};
use crate::settings::{registered, QueryContext, ScanOptions};

/// lakefusion's set-up of a datafusion-distributed coordinator and its
/// workers, as steps on DataFusion's `SessionStateBuilder` (see the module
/// docs). Sealed: only DataFusion's builder implements it.
///
/// ```no_run
/// use datafusion::execution::session_state::SessionStateBuilder;
/// use datafusion_distributed::{SessionStateBuilderExt as _, Worker};
/// use lakefusion::datafusion_distributed::{worker_session_builder, DistributedSessionExt};
/// use lakefusion::Deployment;
///
/// let deployment = Deployment::default();
/// // On the coordinator (with the application's worker resolver):
/// let state = SessionStateBuilder::new()
///     .with_default_features()
///     .with_lakefusion_coordinator(&deployment)
///     .with_distributed_planner()
///     .build();
/// // On each worker, served with tonic:
/// let worker = Worker::from_session_builder(worker_session_builder(deployment));
/// ```
pub trait DistributedSessionExt: sealed::Sealed + Sized {
    /// Sets up the session queries are planned in: lakefusion's tables and
    /// settings ([`with_lakefusion`](SessionStateBuilderExt::with_lakefusion)),
    /// the deployment's small-table cache and stores, lakefusion's codec as
    /// the distributed user codec, [`QueryContext`] and [`ScanOptions`] sent
    /// to every task (their values now, then whatever `SET` makes them), and
    /// the handlers that split lakefusion scans across tasks.
    ///
    /// Call it after `with_config` and `with_runtime_env`: those replace
    /// the config and runtime this sets up.
    fn with_lakefusion_coordinator(self, deployment: &Deployment) -> Self;

    /// Sets up the session a worker runs one task in, from the headers the
    /// task came with: the settings they carry, the codec with this worker's
    /// cache, store factory and allowed roots, the deployment's stores, and
    /// a check that every file the decoded plan reads — lakefusion's scans
    /// and DataFusion's own — lies under an allowed root.
    fn with_lakefusion_worker(self, deployment: &Deployment, headers: &HeaderMap) -> Result<Self>;
}

impl DistributedSessionExt for SessionStateBuilder {
    fn with_lakefusion_coordinator(mut self, deployment: &Deployment) -> Self {
        deployment.register_object_stores(runtime_of(&mut self));
        let mut builder = self
            .with_lakefusion()
            .with_lakefusion_cache(deployment.table_cache().clone())
            .with_distributed_user_codec_arc(user_codec(deployment))
            .with_distributed_desired_task_count_handler(desired_task_count)
            .with_distributed_scale_up_leaf_node_handler(scale_up)
            .with_distributed_route_tasks_handler(cached_scan_routing);
        // Re-registered with the values the config has, so that sending
        // them does not reset them to the defaults.
        let config = builder.config().get_or_insert_default();
        let query = QueryContext::from_session_config(config);
        let scan = ScanOptions::from_session_config(config);
        builder = builder
            .with_distributed_option_extension(query)
            .with_distributed_option_extension(scan);
        builder
    }

    fn with_lakefusion_worker(
        mut self,
        deployment: &Deployment,
        headers: &HeaderMap,
    ) -> Result<Self> {
        deployment.register_object_stores(runtime_of(&mut self));
        let check = PlanCheck {
            allowed_roots: deployment.allowed_roots().clone(),
        };
        let mut builder = self.with_lakefusion();
        let config = builder.config().get_or_insert_default();
        settings_from_headers::<QueryContext>(config, headers)?;
        settings_from_headers::<ScanOptions>(config, headers)?;
        Ok(builder
            .with_distributed_user_codec_arc(user_codec(deployment))
            .with_distributed_worker_plan_rewrite_handler(move |ev: WorkerPlanRewriteEvent<'_>| {
                check.plan(ev.plan)
            }))
    }
}

/// How datafusion-distributed names a config extension's entry in a task's
/// headers: this, then the entry's key (`x-…-config-query_context.` and then
/// ours, `query_context.query_id`, which is already prefixed).
const CONFIG_HEADER: &str = "x-datafusion-distributed-config-";

/// Sets `T`'s entries from the headers a task came with, and registers `T`
/// to be sent on with the task's own requests.
///
/// The engine's `with_distributed_option_extension_from_headers` strips the
/// extension's prefix with `trim_start_matches`, which removes it twice from
/// our keys (`query_context.query_context.query_id` becomes `query_id`), and
/// then skips them as unknown: our `entries()` keys carry the prefix (see
/// [`QueryContext`] for why). So they are read here, prefix stripped once;
/// a value our settings refuse is an error naming its key, a key this
/// version does not know is skipped with a warning.
fn settings_from_headers<T>(config: &mut SessionConfig, headers: &HeaderMap) -> Result<()>
where
    T: ConfigExtension + ExtensionOptions + Default + Clone,
{
    let mut settings = registered::<T>(config);
    let ours = format!("{CONFIG_HEADER}{}.", T::PREFIX);
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(&ours) else {
            continue;
        };
        let value = value.to_str().map_err(|_| {
            DataFusionError::Configuration(format!(
                "the task's value of '{key}' is not visible ASCII"
            ))
        })?;
        // A key this version does not know (a newer coordinator during a
        // rolling upgrade) is skipped, as the engine skips them; a value
        // our settings refuse is an error naming its key.
        if !settings.entries().iter().any(|entry| entry.key == key) {
            tracing::warn!(
                key,
                "a task header names a setting this worker does not know"
            );
            continue;
        }
        settings.set(key, value)?;
    }
    config.set_distributed_option_extension(settings);
    Ok(())
}

/// [`with_lakefusion_worker`](DistributedSessionExt::with_lakefusion_worker)
/// as the `WorkerSessionBuilder` a datafusion-distributed `Worker` is made
/// from: `Worker::from_session_builder(worker_session_builder(deployment))`.
pub fn worker_session_builder(deployment: Deployment) -> impl WorkerSessionBuilder + Clone {
    move |ctx: WorkerQueryContext| {
        let deployment = deployment.clone();
        async move {
            Ok::<SessionState, DataFusionError>(
                ctx.builder
                    .with_lakefusion_worker(&deployment, &ctx.headers)?
                    .build(),
            )
        }
    }
}

/// The builder's runtime, lakefusion's default one if it has none yet.
fn runtime_of(builder: &mut SessionStateBuilder) -> &Arc<RuntimeEnv> {
    builder.runtime_env().get_or_insert_with(default_runtime)
}

/// lakefusion's scan codec, with the deployment's cache, store factory and
/// allowed roots, inside the versioned, checksummed envelope of
/// [`CompositePhysicalCodec`] (which refuses what no lakefusion codec wrote;
/// the engine's own nodes are encoded by the engine before ours is asked).
fn user_codec(deployment: &Deployment) -> Arc<CompositePhysicalCodec> {
    Arc::new(
        CompositePhysicalCodec::new(
            LakefusionPhysicalCodec::NAME,
            Arc::new(deployment.scan_codec()),
        )
        .with_allowed_roots(deployment.allowed_roots().clone()),
    )
}

/// The file scan of a lakefusion scan node, if `plan` is one.
fn scan_of(plan: &Arc<dyn ExecutionPlan>) -> Option<&PartitionedScanExec> {
    plan.downcast_ref::<PartitionedScanExec>().or_else(|| {
        plan.downcast_ref::<CachedScanExec>()
            .map(|c| c.inner().as_ref())
    })
}

/// As many tasks as the engine gives DataFusion's own file scan of the same
/// bytes: one per `file_scan_config_bytes_per_partition` per output
/// partition the session plans for.
///
/// A scan that declares `Hash` partitioning (a bucketed table) runs in one
/// task. The engine numbers the partitions of a shuffle across all tasks of
/// the consuming stage (task `t`'s partition `p` is the shuffle's partition
/// `t × P + p`), so bucket `p` split off into some task would no longer meet
/// the shuffled rows of the same hash a join or aggregate above expects
/// beside it (`a_bucketed_table_joined_on_workers_matches_one_machine` lost
/// half the rows of a join that way).
fn desired_task_count(
    ev: DesiredTaskCountEvent<'_>,
) -> Option<Result<DesiredTaskCountEventResponse>> {
    let scan = scan_of(ev.plan)?;
    if scan.file_scan_config().output_partitioning.is_some() {
        return Some(Ok(DesiredTaskCountEventResponse::maximum(1)));
    }
    let per_partition = match DistributedConfig::from_session_config(ev.session_config) {
        Ok(config) => config.file_scan_config_bytes_per_partition.max(1) as u64,
        Err(e) => return Some(Err(e)),
    };
    let bytes: u64 = scan
        .file_scan_config()
        .file_groups
        .iter()
        .flat_map(|group| group.iter())
        .map(|file| file.effective_size())
        .sum();
    let partitions = ev.session_config.target_partitions().max(1) as u64;
    let tasks = bytes.div_ceil(per_partition).div_ceil(partitions).max(1);
    Some(Ok(DesiredTaskCountEventResponse::desired(
        usize::try_from(tasks).unwrap_or(usize::MAX),
    )))
}

/// One copy of the scan per task (see
/// [`PartitionedScanExec::split_across`]), as the engine's
/// `DistributedLeafExec`; a cached scan's copies are cached scans too.
fn scale_up(ev: ScaleUpLeafNodeEvent<'_>) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let cached = ev.plan.downcast_ref::<CachedScanExec>();
    let scan = scan_of(ev.plan)?;
    if ev.task_count <= 1 {
        return None;
    }
    let copies = match scan.split_across(ev.task_count, ev.session_config.options()) {
        Ok(copies) => copies,
        Err(e) => return Some(Err(e)),
    };
    let copies = copies.into_iter().map(|copy| -> Arc<dyn ExecutionPlan> {
        match cached {
            Some(cached) => Arc::new(CachedScanExec::new(Arc::new(copy), cached.cache().clone())),
            None => Arc::new(copy),
        }
    });
    Some(
        DistributedLeafExec::try_new(Arc::clone(ev.plan), copies)
            .map(|leaf| ScaleUpLeafNodeEventResponse::new(Arc::new(leaf))),
    )
}

/// Sends task `i` of a stage that reads a cached scan to the `i`-th worker
/// (workers in URL order), so that a re-run finds each task's cache entry
/// on the worker that filled it. The engine's own routing starts at a
/// random worker for every query. Stages without a cached scan are left to
/// the engine.
fn cached_scan_routing(ev: RouteTasksEvent<'_>) -> Option<Result<RouteTasksEventResponse>> {
    let mut cached = false;
    ev.plan
        .apply(|node| {
            if node.is_network_boundary() {
                return Ok(TreeNodeRecursion::Jump);
            }
            let leaf = node.downcast_ref::<DistributedLeafExec>();
            cached = node.is::<CachedScanExec>()
                || leaf.is_some_and(|leaf| leaf.original().is::<CachedScanExec>());
            Ok(if cached {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
        .ok()?;
    if !cached {
        return None;
    }
    let urls = ev
        .task_ctx
        .session_config()
        .get_distributed_worker_resolver()
        .and_then(|resolver| resolver.get_urls());
    let mut urls = match urls {
        Ok(urls) if !urls.is_empty() => urls,
        Ok(_) => return None,
        Err(e) => return Some(Err(e)),
    };
    urls.sort();
    Some(Ok(RouteTasksEventResponse::new(
        (0..ev.task_count)
            .map(|i| urls[i % urls.len()].clone())
            .collect(),
    )))
}

/// What a worker checks in every plan it decoded, before running it.
struct PlanCheck {
    allowed_roots: AllowedRoots,
}

impl PlanCheck {
    /// Every file under an allowed root: lakefusion's scans were checked as
    /// they were decoded; DataFusion's own file scans and sinks, which the
    /// engine decodes without our codec, are checked here.
    fn plan(&self, plan: Arc<dyn ExecutionPlan>) -> Result<WorkerPlanRewriteEventResponse> {
        self.allowed_roots.check_plan(&plan)?;
        Ok(WorkerPlanRewriteEventResponse::new(plan))
    }
}

mod sealed {
    /// Keeps [`DistributedSessionExt`](super::DistributedSessionExt)
    /// implemented by DataFusion's builder only.
    #[allow(unreachable_pub)]
    pub trait Sealed {}

    impl Sealed for datafusion::execution::session_state::SessionStateBuilder {}
}

#[cfg(test)]
mod tests {
    use datafusion::execution::object_store::ObjectStoreUrl;

    use super::*;

    #[test]
    fn a_coordinator_without_a_runtime_lists_local_roots_by_reading_directories() {
        let walked = |state: SessionState| {
            let store = state
                .runtime_env()
                .object_store(ObjectStoreUrl::local_filesystem())
                .ok();
            store.is_some_and(|store| crate::store::local_walk::lists_like_the_disk(&store))
        };
        let deployment = Deployment::default();
        let coordinator = SessionStateBuilder::new().with_lakefusion_coordinator(&deployment);
        assert!(walked(coordinator.build()));
        // A runtime the user gave stays theirs.
        let coordinator = SessionStateBuilder::new()
            .with_runtime_env(Arc::new(RuntimeEnv::default()))
            .with_lakefusion_coordinator(&deployment);
        assert!(!walked(coordinator.build()));
    }
}
