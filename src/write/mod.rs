//! Writing: `INSERT INTO`, `INSERT OVERWRITE`, the removals of `DELETE
//! FROM` and the rewrites of a compaction of a
//! [`PartitionedTable`](crate::PartitionedTable), all through one commit
//! protocol.
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
//!   stages each file (rolling to a new one at a row count, for
//!   compaction), then hands the closed files to the commit; also the
//!   entry points of a `DELETE`'s removal and a compaction's rewrite;
//! * `staging`: how a file stays invisible until its commit (a hidden name
//!   renamed on the local disk; one PUT or a multipart upload completed at
//!   the commit on object stores), its bytes reserved from the memory pool;
//! * `commit`: the commit protocol's steps — record, files, claims, a
//!   listing as one moment of the table, marker, removal of what is
//!   replaced, done marker — and what each failure leaves;
//! * `recover`: finishing committed writes and taking back the others that
//!   writers which died left, and removing hidden temporary files.

mod commit;
mod recover;
mod sink;
mod staging;

pub(crate) use commit::claim_key;
pub(crate) use recover::recover;
pub use recover::Recovered;
pub use sink::PartitionedSink;
pub(crate) use sink::{delete_partitions, rewrite, SinkMode};
