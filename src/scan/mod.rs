//! [`PartitionedScanExec`], its [`LazyScanStream`], and their metrics.

mod exec;
mod metrics;
mod naming;
mod read_ahead;
pub(crate) mod reader;
pub(crate) mod schema;
mod stream;

pub use exec::{PartitionedScanExec, ScanDescription};
pub use metrics::ScanMetrics;
pub use stream::LazyScanStream;

use std::sync::Arc;

use datafusion::common::internal_err;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;

/// `replace_children` of a leaf node: no children to replace, none accepted.
pub(crate) fn leaf_without_children(
    node: Arc<dyn ExecutionPlan>,
    children: Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if !children.is_empty() {
        return internal_err!("{} is a leaf and takes no children", node.name());
    }
    Ok(node)
}
