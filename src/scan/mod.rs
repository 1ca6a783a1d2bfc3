//! [`PartitionedScanExec`], the stream of each of its partitions
//! (`stream`), what its partitions share (`siblings`) and read ahead
//! (`read_ahead`), the per-file type check (`schema`), the wrappers that
//! name the file in every error (`naming`), the footer reader (`reader`),
//! and [`ScanMetrics`].

mod exec;
mod metrics;
mod naming;
mod read_ahead;
pub(crate) mod reader;
pub(crate) mod schema;
mod siblings;
mod stream;

pub use exec::{PartitionedScanExec, ScanDescription};
pub use metrics::ScanMetrics;

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

/// The paths of each file group's files, in order: what tests compare
/// groupings by.
#[cfg(test)]
pub(crate) fn group_paths(
    groups: &[datafusion_datasource::file_groups::FileGroup],
) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|f| f.object_meta.location.to_string())
                .collect()
        })
        .collect()
}
