//! Writing: `INSERT INTO` a [`PartitionedTable`](crate::PartitionedTable).
//!
//! The table writes its own files, so it knows their layout: partition
//! directories encoded so the reader parses them back to the same values,
//! bucket files assigned with DataFusion's own hash partitioner and recorded
//! in their metadata, and files that become visible only whole.
//!
//! What a reader sees of a write, and what a failed, cancelled or killed
//! write leaves, is documented on [`PartitionedSink`] (the user's side).
//! Here, by file:
//!
//! * `sink`: the `DataSink` — partitions, buckets and sorts the input,
//!   stages each file, then commits them a few at a time and publishes them
//!   to the table's index in one swap;
//! * `staging`: how a file stays invisible until its commit (a hidden name
//!   renamed on the local disk; one PUT or a multipart upload completed at
//!   the commit on object stores), its bytes reserved from the memory pool;
//! * `record`: the record a write keeps under the root's hidden
//!   `_lakefusion/writes/` while it commits;
//! * `cleanup`: removing what unfinished writes left.

mod commit;
mod recover;
mod sink;
mod staging;

pub(crate) use recover::recover;
pub use recover::Recovered;
pub use sink::PartitionedSink;
pub(crate) use sink::{delete_partitions, rewrite, SinkMode};
