//! Writing: `INSERT INTO` a [`PartitionedTable`](crate::PartitionedTable).
//!
//! The table writes its own files, so it knows their layout: partition
//! directories encoded so the reader parses them back to the same values,
//! bucket files assigned with DataFusion's own hash partitioner and recorded
//! in their metadata, and files that become visible only whole.
//!
//! # What a reader sees of a write
//!
//! * **In this process**, through the table the `INSERT` went through: all
//!   of a write or none of it. Its files join the table's index in one swap
//!   after every file is in place; a refresh running meanwhile keeps them
//!   if they were published, and leaves out whatever it listed of a write
//!   still committing or taken back.
//! * **In other processes** (another table object, another session's
//!   `build()`/`refresh()`, another engine listing the root): file by file.
//!   Files are committed under their final names a few at a time (renamed
//!   on the local disk; on object stores written with one PUT, or their
//!   multipart uploads completed: see `staging`), so a listing that runs
//!   during the commit can see some of a write's files. Each file is whole;
//!   there is no cross-process atomicity.
//! * **A write whose commit fails** deletes the files it had made visible;
//!   one whose delete fails stays visible to other processes, and is named
//!   in the error. Before its first commit every write puts a record of the
//!   files it is about to make visible under the root's hidden
//!   `_lakefusion/writes/` (see `record`), removed when the write is done;
//!   so what a failed write could not take back, and what a process that
//!   died during the commit left visible, is found and deleted by
//!   [`PartitionedTable::remove_abandoned_writes`](crate::PartitionedTable::remove_abandoned_writes).
//! * **A write cancelled before its commit, or whose process died**, leaves
//!   on the local disk hidden temporary files (`.<name>.inprogress`, and the
//!   store's staging files for them): never listed or read;
//!   `remove_abandoned_writes` deletes those older than a bound. On an
//!   object store it leaves at most the uncompleted multipart uploads of
//!   files larger than a part: invisible to listings and reads, and removed
//!   by the store's lifecycle rules (S3's `AbortIncompleteMultipartUpload`),
//!   not by this crate.
//! * **Memory**: every byte a write stages (a file's part being filled, its
//!   parts uploading, and on object stores each small file held whole until
//!   the commit) is reserved from the session's memory pool; a write whose
//!   staged files do not fit fails, naming the file, with nothing visible.

mod cleanup;
mod record;
mod sink;
mod staging;

pub(crate) use cleanup::remove_abandoned;
pub use sink::PartitionedSink;
