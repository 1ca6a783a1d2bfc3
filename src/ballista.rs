//! Running on Apache Ballista (feature `ballista`): one call per role.
//!
//! ```text
//! client ──LakefusionLogicalCodec: PartitionedTable as metadata──▶ scheduler
//! scheduler ──CompositePhysicalCodec(lakefusion.scan, ballista): scans as metadata──▶ executors
//! ```
//!
//! [`BallistaSetup`] holds what every role must agree on (the cache limits) and
//! what executors inject (their [`TableCache`], object stores, allowed roots),
//! and builds each role's configuration:
//!
//! * [`BallistaSetup::client_state`] — the client's `SessionState`, for
//!   `SessionContext::remote_with_state`;
//! * [`BallistaSetup::scheduler_config`] — a Ballista `SchedulerConfig`;
//! * [`BallistaSetup::executor_config`] — a Ballista `ExecutorProcessConfig`.
//!
//! # Pitfalls these helpers avoid
//!
//! * **Codecs replace Ballista's.** A custom physical codec that does not fall
//!   back to `BallistaPhysicalExtensionCodec` cannot ship shuffle readers and
//!   writers; a logical codec that does not delegate to
//!   `BallistaLogicalExtensionCodec` breaks `COPY`/`write_parquet` file formats.
//!   Both fall back here.
//! * **Codecs go into the client's `SessionConfig` before the context exists**
//!   (`with_ballista_*_extension_codec`); added later they are ignored.
//! * **`QueryContext` and `ScanOptions` must be registered where configs are
//!   produced**, on the scheduler and on every executor, or Ballista drops
//!   `query_context.*` and `lakefusion.*` values (logging only at debug
//!   level). Both config producers register them.
//! * **The scheduler's session builder keeps the incoming config** and wires
//!   the table factory, so `SET query_context.…` issued by the client is seen
//!   where plans are made.
//! * **Ballista 55 restricts only the leaf operators it knows to a task's
//!   partitions.** Its task builder narrows `DataSourceExec` (and its own
//!   shuffle readers) to the slice of partitions a task runs; any other leaf
//!   is left whole, and since a task runs every partition of its plan, each
//!   task would read the whole table (measured: every row 2× on a 3-partition
//!   scan, 13× on a 15-partition one). So the scheduler's sessions end
//!   planning with [`DistributedScanRule`]: each scan travels as a
//!   [`DistributedScanExec`](crate::DistributedScanExec) whose child is the `DataSourceExec` of the
//!   planned file scan. Ballista narrows that child; the executor's codec
//!   rebuilds a `PartitionedScanExec` — or a `CachedScanExec` over the
//!   executor's own cache — over the narrowed files, so file-named errors, the
//!   per-file type check, the `lakefusion.scan` span and the cache all work on
//!   executors.
//! * **Ballista 55's adaptive planner duplicated rows of lakefusion plans.**
//!   With it on (the default), a plain `DataSourceExec` over a lakefusion
//!   file scan came back with every row counted twice on a 3-partition scan,
//!   where a `ListingTable` over the same files was exact; with it off, exact.
//!   The configs built here set `ballista.planner.adaptive.enabled = false`.

use std::sync::Arc;

use ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::{
    BallistaCodec, BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec,
};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor_process::ExecutorProcessConfig;
use ballista_scheduler::config::SchedulerConfig;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::SessionState;
use datafusion::prelude::SessionConfig;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use object_store::ObjectStore;
use url::Url;

use crate::cache::{CacheConfig, TableCache};
use crate::codec::{
    AllowedRoots, CompositePhysicalCodec, LakefusionLogicalCodec, LakefusionPhysicalCodec,
    ObjectStoreFactory,
};
use crate::deployment::Deployment;
use crate::distributed::DistributedScanRule;
use crate::session::SessionBuilder;
use crate::settings::{with_settings, QueryContext};

/// The name Ballista's own physical codec is registered under in the
/// [`CompositePhysicalCodec`].
pub const BALLISTA_CODEC: &str = "ballista";

/// lakefusion's configuration for one Ballista deployment: build one per process
/// (client, scheduler, executor) from the same settings.
///
/// What the processes share and inject is a [`Deployment`]; this builds each
/// Ballista role's configuration from it.
#[derive(Clone, Debug, Default)]
pub struct BallistaSetup {
    deployment: Deployment,
}

impl From<Deployment> for BallistaSetup {
    fn from(deployment: Deployment) -> Self {
        Self { deployment }
    }
}

impl BallistaSetup {
    /// A deployment whose small-table cache has these limits (each process
    /// that builds from this value holds its own cache with them).
    pub fn new(cache_config: CacheConfig) -> Self {
        Deployment::new(cache_config).into()
    }

    /// Registers `store` for `url` in every runtime this builds.
    pub fn with_object_store(self, url: Url, store: Arc<dyn ObjectStore>) -> Self {
        self.deployment.with_object_store(url, store).into()
    }

    /// Creates stores that are not registered when an executor first meets them.
    pub fn with_object_store_factory(self, factory: Arc<dyn ObjectStoreFactory>) -> Self {
        self.deployment.with_object_store_factory(factory).into()
    }

    /// Executors decode only plans whose files lie under these roots.
    pub fn with_allowed_roots(self, roots: AllowedRoots) -> Self {
        self.deployment.with_allowed_roots(roots).into()
    }

    /// This process's cache (shared by every task an executor runs).
    pub fn table_cache(&self) -> &TableCache {
        self.deployment.table_cache()
    }

    /// The deployment this set-up configures Ballista for.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The logical codec every role uses: `PartitionedTable`, then Ballista's.
    pub fn logical_codec(&self) -> Arc<dyn LogicalExtensionCodec> {
        Arc::new(LakefusionLogicalCodec::new(Arc::new(
            BallistaLogicalExtensionCodec::default(),
        )))
    }

    /// The physical codec: lakefusion's scans (with this process's cache,
    /// store factory and allowed roots injected), then Ballista's nodes.
    pub fn physical_codec(&self) -> Arc<dyn PhysicalExtensionCodec> {
        Arc::new(
            CompositePhysicalCodec::new(
                BALLISTA_CODEC,
                Arc::new(BallistaPhysicalExtensionCodec::default()),
            )
            .with_codec(
                LakefusionPhysicalCodec::NAME,
                Arc::new(self.deployment.scan_codec()),
            )
            .with_allowed_roots(self.deployment.allowed_roots().clone()),
        )
    }

    /// Both codecs, as Ballista's in-process helpers take them.
    pub fn codec(&self) -> BallistaCodec {
        BallistaCodec::new(self.logical_codec(), self.physical_codec())
    }

    /// A Ballista session config with the codecs, `QueryContext` and
    /// `ScanOptions` registered,
    /// and Ballista's adaptive planner off (see the module docs).
    pub fn session_config(&self, base: SessionConfig) -> SessionConfig {
        let config = base
            .with_ballista_logical_extension_codec(self.logical_codec())
            .with_ballista_physical_extension_codec(self.physical_codec())
            .set_str(BALLISTA_ADAPTIVE_PLANNER_ENABLED, "false");
        with_settings(config, None)
    }

    fn session_builder(&self, config: SessionConfig) -> SessionBuilder {
        self.deployment
            .session_builder(config)
            .with_physical_optimizer_rule(Arc::new(DistributedScanRule))
    }

    /// The client's state: codecs in the config before the context exists,
    /// `QueryContext` registered. Pass it to `SessionContext::remote_with_state`.
    pub fn client_state(&self, query_context: QueryContext) -> SessionState {
        self.session_builder(self.session_config(SessionConfig::new_with_ballista()))
            .with_query_context(query_context)
            .build_state()
    }

    /// Produces the config every scheduler and executor session starts from.
    pub fn config_producer(&self) -> ConfigProducer {
        let this = self.clone();
        Arc::new(move || this.session_config(SessionConfig::new_with_ballista()))
    }

    /// The scheduler's session builder: keeps the incoming config (with the
    /// client's `query_context.*` values), wires the table factory and
    /// [`SmallTableCacheRule`](crate::SmallTableCacheRule), and ends planning
    /// with [`DistributedScanRule`].
    pub fn scheduler_session_builder(
        &self,
    ) -> ballista_scheduler::scheduler_server::SessionBuilder {
        let this = self.clone();
        Arc::new(move |config: SessionConfig| {
            Ok(this
                .session_builder(this.session_config(config))
                .build_state())
        })
    }

    /// The executor's runtime: the given stores registered in a fresh runtime.
    pub fn runtime_producer(&self) -> RuntimeProducer {
        let deployment = self.deployment.clone();
        Arc::new(move |_config: &SessionConfig| {
            let runtime = RuntimeEnv::default();
            deployment.register_object_stores(&runtime);
            Ok(Arc::new(runtime))
        })
    }

    /// A Ballista `SchedulerConfig` with codecs, config producer and session
    /// builder set; bind address and the rest from `base`.
    pub fn scheduler_config(&self, base: SchedulerConfig) -> SchedulerConfig {
        SchedulerConfig {
            override_logical_codec: Some(self.logical_codec()),
            override_physical_codec: Some(self.physical_codec()),
            override_config_producer: Some(self.config_producer()),
            override_session_builder: Some(self.scheduler_session_builder()),
            ..base
        }
    }

    /// A Ballista `ExecutorProcessConfig` with codecs, config producer and
    /// runtime producer set; addresses and the rest from `base`.
    pub fn executor_config(&self, base: ExecutorProcessConfig) -> ExecutorProcessConfig {
        ExecutorProcessConfig {
            override_logical_codec: Some(self.logical_codec()),
            override_physical_codec: Some(self.physical_codec()),
            override_config_producer: Some(self.config_producer()),
            override_runtime_producer: Some(self.runtime_producer()),
            ..base
        }
    }
}
