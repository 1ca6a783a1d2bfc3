//! [`DistributedScanRule`]: turns the scheduler's scans into carriers.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use super::DistributedScanExec;
use crate::cache::CachedScanExec;
use crate::scan::PartitionedScanExec;

/// Wraps each [`PartitionedScanExec`] (or [`CachedScanExec`]) in a
/// [`DistributedScanExec`], whose `DataSourceExec` child Ballista narrows to
/// the partitions of each task (see `ballista`). Runs on the scheduler,
/// after [`SmallTableCacheRule`](crate::SmallTableCacheRule) has decided what
/// is cached.
#[derive(Debug, Default, Clone, Copy)]
pub struct DistributedScanRule;

impl DistributedScanRule {
    /// The rule's name.
    pub const NAME: &'static str = "lakefusion.DistributedScanRule";
}

impl PhysicalOptimizerRule for DistributedScanRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let carrier = if let Some(cached) = node.downcast_ref::<CachedScanExec>() {
                DistributedScanExec::new(cached.inner(), true)
            } else if let Some(scan) = node.downcast_ref::<PartitionedScanExec>() {
                DistributedScanExec::new(scan, false)
            } else {
                return Ok(Transformed::no(node));
            };
            Ok(Transformed::yes(Arc::new(carrier) as Arc<dyn ExecutionPlan>))
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
