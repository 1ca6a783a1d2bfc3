//! The small-table cache: [`TableCache`] (shared, memory-bounded),
//! [`CachedScanExec`] (a scan served from it) and [`SmallTableCacheRule`]
//! (which decides what is cached).

mod exec;
mod rule;
mod table_cache;

pub use exec::CachedScanExec;
pub use rule::SmallTableCacheRule;
pub use table_cache::{
    CacheConfig, CacheFill, CacheKey, CacheMetrics, CachedPartitions, TableCache,
};
