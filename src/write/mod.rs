//! Writing: `INSERT INTO` a [`PartitionedTable`](crate::PartitionedTable).
//!
//! The table writes its own files, so it knows their layout: partition
//! directories encoded so the reader parses them back to the same values,
//! bucket files assigned with DataFusion's own hash partitioner and recorded
//! in their metadata, and files that become visible only whole.

mod path;
mod sink;

pub use path::{partition_dir, MAX_DIR_NAME_BYTES};
pub use sink::PartitionedSink;
