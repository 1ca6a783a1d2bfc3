//! [`SmallTableCacheRule`]: the physical optimizer rule that puts small scans
//! behind the [`TableCache`].

use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Statistics;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use super::exec::CachedScanExec;
use super::table_cache::{CacheConfig, TableCache};
use crate::scan::PartitionedScanExec;
use crate::settings::ScanOptions;

/// Replaces each [`PartitionedScanExec`] that is small enough with a
/// [`CachedScanExec`] over the shared [`TableCache`].
///
/// A scan is small enough when its statistics are within the cache's
/// [`CacheConfig::max_rows`] and [`CacheConfig::max_bytes`]. `Exact` and
/// `Inexact` statistics both count; an `Absent` statistic cannot show a scan to
/// be small, so a scan with neither a row count nor a byte size is never cached
/// (a table built without `collect_statistics` has an inexact byte size from
/// its listing, and is judged by that). Nothing is cached when the query's
/// [`ScanOptions::cache_enabled`] (`lakefusion.cache_enabled`) is false. Every other node is left as is.
///
/// [`SessionBuilder`](crate::SessionBuilder) inserts it right before
/// DataFusion's `SanityCheckPlan`, after every rule that may still move, split
/// or limit the scan, so the cached scan is the one that runs.
#[derive(Debug, Clone)]
pub struct SmallTableCacheRule {
    cache: TableCache,
}

impl SmallTableCacheRule {
    /// The rule's name, as `PhysicalOptimizerRule::name` reports it.
    pub const NAME: &'static str = "SmallTableCacheRule";

    /// A rule that caches into `cache`.
    pub fn new(cache: TableCache) -> Self {
        Self { cache }
    }

    /// Whether statistics show a scan within the cache's limits.
    pub fn fits(stats: &Statistics, config: &CacheConfig) -> bool {
        let value = |p: &Precision<usize>| match p {
            Precision::Exact(n) | Precision::Inexact(n) => Some(*n),
            Precision::Absent => None,
        };
        let (rows, bytes) = (value(&stats.num_rows), value(&stats.total_byte_size));
        if rows.is_none() && bytes.is_none() {
            return false;
        }
        rows.is_none_or(|r| r <= config.max_rows) && bytes.is_none_or(|b| b <= config.max_bytes)
    }
}

impl PhysicalOptimizerRule for SmallTableCacheRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let enabled = config
            .extensions
            .get::<ScanOptions>()
            .is_none_or(|options| options.cache_enabled);
        if !enabled {
            return Ok(plan);
        }
        plan.transform_down(|node| {
            let Some(scan) = node.downcast_ref::<PartitionedScanExec>() else {
                return Ok(Transformed::no(node));
            };
            #[allow(deprecated)]
            let stats = scan.partition_statistics(None)?;
            if !Self::fits(&stats, self.cache.config()) {
                return Ok(Transformed::no(node));
            }
            let cached = CachedScanExec::new(Arc::new(scan.clone()), self.cache.clone());
            Ok(Transformed::yes(Arc::new(cached) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        Self::NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}
