//! Scans between a Ballista scheduler and its executors (feature `ballista`).
//!
//! Ballista narrows only the leaves it knows to a task's partitions, so a
//! lakefusion scan travels as a [`DistributedScanExec`] carrying the
//! `DataSourceExec` of its file scan, put in place on the scheduler by
//! [`DistributedScanRule`]; the executor's codec turns the narrowed carrier
//! back into a `PartitionedScanExec` (or a `CachedScanExec` over the
//! executor's cache). The wire format of the carrier is in `codec`.

mod exec;
mod rule;

pub(crate) use exec::executor_node;
pub use exec::DistributedScanExec;
pub use rule::DistributedScanRule;
