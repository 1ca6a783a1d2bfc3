//! [`PartitionedScanExec`], its [`LazyScanStream`], and their metrics.

mod exec;
mod metrics;
mod opener;
pub(crate) mod schema;
mod stream;

pub use exec::{PartitionedScanExec, ScanDescription};
pub use metrics::ScanMetrics;
pub use stream::LazyScanStream;
