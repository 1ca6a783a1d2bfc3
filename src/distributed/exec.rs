//! [`DistributedScanExec`]: the form a lakefusion scan takes between a
//! Ballista scheduler and its executors.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, Statistics};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_datasource::file_scan_config::FileScanConfig;

use crate::cache::CachedScanExec;
use crate::scan::{PartitionedScanExec, ScanDescription};

/// A planned lakefusion scan in transit to Ballista executors.
///
/// Ballista 55 runs every partition of a task's plan and narrows only the
/// leaves it knows — `DataSourceExec` among them — to the partitions of the
/// task. So between scheduler and executors a [`PartitionedScanExec`] (or a
/// [`CachedScanExec`]) travels as this node, whose only child is the
/// `DataSourceExec` of its file scan: Ballista narrows the child, and the
/// executor's codec turns the pair back into a `PartitionedScanExec` (or a
/// `CachedScanExec` over the executor's own cache) over the narrowed files.
///
/// It is a carrier, not an operator: executing it runs the same scan a
/// `PartitionedScanExec` would, so a plan that never leaves the process still
/// returns the right rows.
#[derive(Clone)]
pub struct DistributedScanExec {
    description: ScanDescription,
    child: Arc<dyn ExecutionPlan>,
    cached: bool,
}

impl DistributedScanExec {
    /// The carrier of `scan`; `cached` if the scheduler chose to cache it.
    pub fn new(scan: &PartitionedScanExec, cached: bool) -> Self {
        Self::from_parts(
            scan.description().clone(),
            DataSourceExec::from_data_source(scan.file_scan_config().clone()),
            cached,
        )
    }

    pub(crate) fn from_parts(
        description: ScanDescription,
        child: Arc<dyn ExecutionPlan>,
        cached: bool,
    ) -> Self {
        Self {
            description,
            child,
            cached,
        }
    }

    /// The carried scan's description.
    pub fn description(&self) -> &ScanDescription {
        &self.description
    }

    /// Whether the scheduler chose to serve this scan from the small-table cache.
    pub fn cached(&self) -> bool {
        self.cached
    }

    /// The file scan, as narrowed so far.
    pub fn file_scan_config(&self) -> Result<&FileScanConfig> {
        match self
            .child
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        {
            Some(config) => Ok(config),
            None => internal_err!(
                "DistributedScanExec of table {} lost its file scan (child is {})",
                self.description.table,
                self.child.name()
            ),
        }
    }

    /// The scan this node carries, over the file scan of its child.
    pub fn to_scan(&self) -> Result<PartitionedScanExec> {
        Ok(PartitionedScanExec::new(
            self.description.clone(),
            self.file_scan_config()?.clone(),
        ))
    }
}

impl fmt::Debug for DistributedScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributedScanExec")
            .field("table", &self.description.table)
            .field("cached", &self.cached)
            .finish()
    }
}

impl DisplayAs for DistributedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DistributedScanExec: table={}, partitions={}/{}, cached={}",
            self.description.table,
            self.description.selected_partitions,
            self.description.total_partitions,
            self.cached
        )
    }
}

impl ExecutionPlan for DistributedScanExec {
    fn name(&self) -> &str {
        "DistributedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.child.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.child]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    /// Takes a new child. An optimizer that re-plans a stage (Ballista runs
    /// DataFusion's `EnsureRequirements` again) may place an operator — say a
    /// `CoalescePartitionsExec` — between this node and its file scan. This
    /// node passes its child through unchanged, so that operator is hoisted
    /// above it: the carrier always sits directly on the `DataSourceExec`
    /// that Ballista narrows to each task.
    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!(
                "DistributedScanExec takes exactly one child, got {}",
                children.len()
            );
        }
        let child = children.remove(0);
        if is_file_scan(&child) {
            let mut node = self.as_ref().clone();
            node.child = child;
            return Ok(Arc::new(node));
        }
        match child.children().as_slice() {
            [grandchild] => {
                let carrier =
                    Arc::clone(&self).replace_children(vec![Arc::clone(grandchild)], options)?;
                Arc::clone(&child).replace_children(vec![carrier], options)
            }
            _ => internal_err!(
                "DistributedScanExec of table {} cannot carry {} (expected a file scan)",
                self.description.table,
                child.name()
            ),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // The expressions live in the child, which is visited as a child.
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.to_scan()?
            .with_work_stealing(false)
            .execute(partition, context)
    }

    #[allow(deprecated)]
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.child.partition_statistics(partition)
    }
}

fn is_file_scan(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<DataSourceExec>().is_some_and(|exec| {
        exec.data_source()
            .downcast_ref::<FileScanConfig>()
            .is_some()
    })
}

/// Turns a decoded carrier into the node the executor runs: a
/// `PartitionedScanExec`, or a `CachedScanExec` over `cache` when the
/// scheduler chose to cache it and the executor has a cache.
///
/// The cache entry covers the task's slice of file groups; Ballista may slice
/// a stage differently on a re-run, and a differently sliced task misses.
pub(crate) fn executor_node(
    carrier: &DistributedScanExec,
    cache: Option<&crate::cache::TableCache>,
) -> Result<Arc<dyn ExecutionPlan>> {
    // A task runs every partition of its own copy: no queue shared across copies.
    let scan = Arc::new(carrier.to_scan()?.with_work_stealing(false));
    Ok(match cache {
        Some(cache) if carrier.cached() => Arc::new(CachedScanExec::new(scan, cache.clone())),
        _ => scan,
    })
}
