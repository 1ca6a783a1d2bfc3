//! [`Deployment`]: what every process of one distributed deployment must
//! agree on, and what the processes that run tasks inject into the plans
//! they decode — whichever engine carries the plans (Ballista with feature
//! `ballista`, datafusion-distributed with feature `datafusion-distributed`).

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
#[cfg(feature = "ballista")]
use datafusion::prelude::SessionConfig;
use object_store::ObjectStore;
use url::Url;

use crate::cache::{CacheConfig, TableCache};
use crate::codec::{AllowedRoots, LakefusionPhysicalCodec, ObjectStoreFactory};
#[cfg(feature = "ballista")]
use crate::session::SessionBuilder;

/// lakefusion's side of one distributed deployment: build one per process
/// (client or coordinator, scheduler, executor or worker) from the same
/// settings.
///
/// * the small-table cache's limits (each process holds its own
///   [`TableCache`] with them: where plans are made it decides what is
///   cached, where tasks run it serves the rows);
/// * the object stores every runtime registers, and the
///   [`ObjectStoreFactory`] that creates the ones a task meets first;
/// * the [`AllowedRoots`] a process decoding a plan reads under: a plan
///   naming any other file is refused before anything is read.
///
/// The engines' set-ups take it: `ballista::BallistaSetup`
/// holds one, and datafusion-distributed's coordinator and worker sessions
/// are built from one (`datafusion_distributed`).
#[derive(Clone, Debug)]
pub struct Deployment {
    cache: TableCache,
    object_stores: Vec<(Url, Arc<dyn ObjectStore>)>,
    object_store_factory: Option<Arc<dyn ObjectStoreFactory>>,
    allowed_roots: AllowedRoots,
}

impl Default for Deployment {
    fn default() -> Self {
        Self::new(CacheConfig::default())
    }
}

impl Deployment {
    /// A deployment whose small-table cache has these limits, every root
    /// allowed and no store registered.
    pub fn new(cache_config: CacheConfig) -> Self {
        Self {
            cache: TableCache::new(cache_config),
            object_stores: Vec::new(),
            object_store_factory: None,
            allowed_roots: AllowedRoots::any(),
        }
    }

    /// Registers `store` for `url` in every runtime this deployment sets up.
    pub fn with_object_store(mut self, url: Url, store: Arc<dyn ObjectStore>) -> Self {
        self.object_stores.push((url, store));
        self
    }

    /// Creates the stores a decoded plan needs and the runtime lacks.
    pub fn with_object_store_factory(mut self, factory: Arc<dyn ObjectStoreFactory>) -> Self {
        self.object_store_factory = Some(factory);
        self
    }

    /// Processes that run tasks decode only plans whose files lie under these roots.
    pub fn with_allowed_roots(mut self, roots: AllowedRoots) -> Self {
        self.allowed_roots = roots;
        self
    }

    /// This process's cache (shared by every task it runs).
    pub fn table_cache(&self) -> &TableCache {
        &self.cache
    }

    /// The roots decoded plans may read under.
    pub fn allowed_roots(&self) -> &AllowedRoots {
        &self.allowed_roots
    }

    /// The factory for stores a decoded plan needs, if any.
    pub fn object_store_factory(&self) -> Option<&Arc<dyn ObjectStoreFactory>> {
        self.object_store_factory.as_ref()
    }

    /// Registers the deployment's stores in `runtime`.
    pub fn register_object_stores(&self, runtime: &RuntimeEnv) {
        for (url, store) in &self.object_stores {
            runtime.register_object_store(url, Arc::clone(store));
        }
    }

    /// A session builder with this deployment's cache and stores, starting
    /// from `config`.
    #[cfg(feature = "ballista")]
    pub(crate) fn session_builder(&self, config: SessionConfig) -> SessionBuilder {
        self.object_stores.iter().fold(
            SessionBuilder::new()
                .with_config(config)
                .with_table_cache(self.cache.clone()),
            |builder, (url, store)| builder.with_object_store(url.clone(), Arc::clone(store)),
        )
    }

    /// The codec of lakefusion's scans with this process's cache, store
    /// factory and allowed roots injected: what a decoded scan runs with.
    pub fn scan_codec(&self) -> LakefusionPhysicalCodec {
        let codec = LakefusionPhysicalCodec::new()
            .with_cache(self.cache.clone())
            .with_allowed_roots(self.allowed_roots.clone());
        match &self.object_store_factory {
            Some(factory) => codec.with_object_store_factory(Arc::clone(factory)),
            None => codec,
        }
    }
}
