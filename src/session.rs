//! Wiring lakefusion into a DataFusion session: [`SessionBuilder`], one
//! call that builds a whole session, and [`SessionStateBuilderExt`], the
//! same set-up as steps on DataFusion's own `SessionStateBuilder` (as
//! `datafusion-distributed` offers its own).

use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use url::Url;

use crate::cache::{CacheConfig, SmallTableCacheRule, TableCache};
use crate::settings::{with_settings, QueryContext};
use crate::store::local_walk;
use crate::table::PartitionedTableFactory;

/// The runtime lakefusion makes where none is given: DataFusion's default,
/// with [`local_file_system`](crate::store::local_file_system) for
/// `file://`, so that discovery knows nothing stands between it and the
/// disk and reads the directories itself.
pub(crate) fn default_runtime() -> Arc<RuntimeEnv> {
    let runtime = Arc::new(RuntimeEnv::default());
    runtime.register_object_store(
        ObjectStoreUrl::local_filesystem().as_ref(),
        local_walk::local_file_system(),
    );
    runtime
}

/// Builds `SessionState`s and `SessionContext`s with lakefusion wired in.
///
/// ```
/// use lakefusion::{CacheConfig, QueryContext, SessionBuilder};
///
/// let ctx = SessionBuilder::new()
///     .with_query_context(QueryContext::new("q-42").with_tenant_id("acme"))
///     .with_cache(CacheConfig::default())
///     .build_context();
/// assert_eq!(QueryContext::from_session_config(&ctx.copied_config()).query_id, "q-42");
/// ```
///
/// # What is wired, in this order
///
/// 1. **Config**: the given [`SessionConfig`] (or the default), with
///    [`QueryContext`] and [`ScanOptions`](crate::ScanOptions) registered as
///    config extensions — so `SET query_context.…` and `SET lakefusion.…`
///    work and the values reach every operator.
/// 2. **Runtime**: the given [`RuntimeEnv`] (or the default), with the object
///    stores given to [`with_object_store`](Self::with_object_store)
///    registered in its `ObjectStoreRegistry`. The default runtime's
///    `file://` store is [`store::local_file_system`](crate::store::local_file_system),
///    which discovery reads past: a `file://` table in such a session is
///    listed by reading its directories on up to one thread per core (TPC-H's
///    eight tables register 5.9–6.8× faster than `ListingTable`'s, see
///    docs/benchmarks.md). A runtime given here (unless its `file://` store
///    is `local_file_system()`), a `file://` store given to
///    `with_object_store`, or a table with a retry policy is listed through
///    its store.
/// 3. **Everything DataFusion has by default**: functions, file formats,
///    table factories, optimizer rules.
/// 4. **The table factory** for `STORED AS PARTITIONED_PARQUET`.
/// 5. **The cache rule** (with [`with_cache`](Self::with_cache)):
///    [`SmallTableCacheRule`] inserted into DataFusion's default physical
///    optimizer rules immediately before the rule named `SanityCheckPlan`
///    (found by name, so DataFusion reordering its rules does not misplace it).
///
/// Every session built by one builder (and every clone of it) shares one
/// [`TableCache`]. Steps 1, 4 and 5 are [`SessionStateBuilderExt`]'s, for
/// sessions assembled with DataFusion's own builder.
#[derive(Clone, Default)]
pub struct SessionBuilder {
    config: Option<SessionConfig>,
    runtime: Option<Arc<RuntimeEnv>>,
    query_context: Option<QueryContext>,
    cache: Option<TableCache>,
    object_stores: Vec<(Url, Arc<dyn ObjectStore>)>,
    extra_rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
}

impl std::fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("query_context", &self.query_context)
            .field("cache", &self.cache)
            .field(
                "object_stores",
                &self
                    .object_stores
                    .iter()
                    .map(|(u, _)| u.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SessionBuilder {
    /// A builder with DataFusion's defaults and no cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from this config (target partitions, batch size, …).
    pub fn with_config(mut self, config: SessionConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Uses this runtime (memory pool, disk manager, object store registry).
    pub fn with_runtime(mut self, runtime: Arc<RuntimeEnv>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The query context sessions start with (`SET query_context.…` changes it).
    pub fn with_query_context(mut self, query_context: QueryContext) -> Self {
        self.query_context = Some(query_context);
        self
    }

    /// Enables the small-table cache with these limits: a new [`TableCache`]
    /// shared by every session this builder builds, and [`SmallTableCacheRule`].
    pub fn with_cache(self, config: CacheConfig) -> Self {
        self.with_table_cache(TableCache::new(config))
    }

    /// Enables the small-table cache with an existing [`TableCache`], to share
    /// it with other builders.
    pub fn with_table_cache(mut self, cache: TableCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The cache sessions of this builder share, if enabled.
    pub fn table_cache(&self) -> Option<&TableCache> {
        self.cache.as_ref()
    }

    /// Registers `store` for URLs of `url`'s scheme and authority
    /// (e.g. `s3://bucket`, `memory://`).
    pub fn with_object_store(mut self, url: Url, store: Arc<dyn ObjectStore>) -> Self {
        self.object_stores.push((url, store));
        self
    }

    /// Adds a physical optimizer rule, run after every DataFusion rule but
    /// `SanityCheckPlan` (and after the cache rule), in the order added.
    pub fn with_physical_optimizer_rule(
        mut self,
        rule: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
    ) -> Self {
        self.extra_rules.push(rule);
        self
    }

    /// Builds a `SessionState`: DataFusion's defaults, then the
    /// lakefusion set-up through [`SessionStateBuilderExt`].
    pub fn build_state(&self) -> SessionState {
        let runtime = self.runtime.clone().unwrap_or_else(default_runtime);
        for (url, store) in &self.object_stores {
            runtime.register_object_store(url, Arc::clone(store));
        }
        let mut builder = SessionStateBuilder::new()
            .with_config(self.config.clone().unwrap_or_default())
            .with_runtime_env(runtime)
            .with_default_features()
            .with_lakefusion();
        if let Some(query_context) = &self.query_context {
            builder = builder.with_lakefusion_query_context(query_context.clone());
        }
        if let Some(cache) = &self.cache {
            builder = builder.with_lakefusion_cache(cache.clone());
        }
        // After the cache rule: each insert goes right before the check.
        builder
            .with_rules_before_sanity_check(self.extra_rules.clone())
            .build()
    }

    /// Builds a `SessionContext`.
    pub fn build_context(&self) -> SessionContext {
        SessionContext::new_with_state(self.build_state())
    }
}

/// The lakefusion set-up as steps on DataFusion's [`SessionStateBuilder`],
/// for applications that assemble their sessions themselves:
///
/// ```
/// use datafusion::execution::session_state::SessionStateBuilder;
/// use lakefusion::{CacheConfig, QueryContext, SessionStateBuilderExt, TableCache};
///
/// let state = SessionStateBuilder::new()
///     .with_default_features()
///     .with_lakefusion()
///     .with_lakefusion_query_context(QueryContext::new("q-42"))
///     .with_lakefusion_cache(TableCache::new(CacheConfig::default()))
///     .build();
/// assert_eq!(QueryContext::from_session_config(state.config()).query_id, "q-42");
/// ```
///
/// [`SessionBuilder`] is built on these steps. The trait is sealed: only
/// DataFusion's `SessionStateBuilder` implements it, so methods can be
/// added without breaking anyone.
pub trait SessionStateBuilderExt: sealed::Sealed + Sized {
    /// Registers [`QueryContext`] and [`ScanOptions`](crate::ScanOptions) as
    /// config extensions (keeping values the config already has) and the
    /// table factory for `STORED AS PARTITIONED_PARQUET`.
    fn with_lakefusion(self) -> Self;

    /// Sets the query context sessions start with (`SET query_context.…`
    /// changes it).
    fn with_lakefusion_query_context(self, query_context: QueryContext) -> Self;

    /// Enables the small-table cache: [`SmallTableCacheRule`] over `cache`,
    /// right before DataFusion's `SanityCheckPlan`.
    fn with_lakefusion_cache(self, cache: TableCache) -> Self;

    /// Inserts `rules`, in this order, right before the physical optimizer
    /// rule named `SanityCheckPlan` (found by name, so DataFusion
    /// reordering its rules does not misplace them; last if there is none),
    /// into the rules the builder has (DataFusion's defaults if none).
    fn with_rules_before_sanity_check(
        self,
        rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    ) -> Self;
}

impl SessionStateBuilderExt for SessionStateBuilder {
    fn with_lakefusion(mut self) -> Self {
        let config = self.config().take().unwrap_or_default();
        *self.config() = Some(with_settings(config, None));
        self.with_table_factory(
            PartitionedTableFactory::FORMAT.to_string(),
            Arc::new(PartitionedTableFactory),
        )
    }

    fn with_lakefusion_query_context(mut self, query_context: QueryContext) -> Self {
        let config = self.config().take().unwrap_or_default();
        *self.config() = Some(with_settings(config, Some(query_context)));
        self
    }

    fn with_lakefusion_cache(self, cache: TableCache) -> Self {
        self.with_rules_before_sanity_check(vec![Arc::new(SmallTableCacheRule::new(cache))])
    }

    fn with_rules_before_sanity_check(
        mut self,
        ours: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    ) -> Self {
        let mut rules = self.physical_optimizers().take().unwrap_or_default().rules;
        // A DataFusion without the check: last, where it would have been.
        let at = rules
            .iter()
            .position(|r| r.name() == "SanityCheckPlan")
            .unwrap_or(rules.len());
        rules.splice(at..at, ours);
        self.with_physical_optimizer_rules(rules)
    }
}

mod sealed {
    /// Keeps [`SessionStateBuilderExt`](super::SessionStateBuilderExt)
    /// implemented by DataFusion's builder only (public in a private
    /// module: nameable by no one outside).
    #[allow(unreachable_pub)]
    pub trait Sealed {}

    impl Sealed for datafusion::execution::session_state::SessionStateBuilder {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_store(ctx: &SessionContext) -> Arc<dyn ObjectStore> {
        let url = ObjectStoreUrl::local_filesystem();
        match ctx.runtime_env().object_store(&url) {
            Ok(store) => store,
            Err(e) => panic!("a session has a file:// store: {e}"),
        }
    }

    #[test]
    fn only_the_default_runtimes_file_store_is_walked() {
        let walked = |ctx: &SessionContext| local_walk::lists_like_the_disk(&file_store(ctx));
        assert!(walked(&SessionBuilder::new().build_context()));
        // A runtime the user made, or a `file://` store the user gave, is
        // theirs: listed through itself.
        let runtime = Arc::new(RuntimeEnv::default());
        assert!(!walked(
            &SessionBuilder::new().with_runtime(runtime).build_context()
        ));
        let mine: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let ctx = SessionBuilder::new()
            .with_object_store(Url::parse("file:///").unwrap(), mine)
            .build_context();
        assert!(!walked(&ctx));
        // ... unless it is the crate's own.
        let runtime = Arc::new(RuntimeEnv::default());
        runtime.register_object_store(
            ObjectStoreUrl::local_filesystem().as_ref(),
            crate::store::local_file_system(),
        );
        assert!(walked(
            &SessionBuilder::new().with_runtime(runtime).build_context()
        ));
    }
}
