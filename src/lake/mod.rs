//! The lake: what reading and writing a table both need, below both.
//!
//! * `definition`: [`TableDefinition`], what a table is, built and checked
//!   in one place;
//! * `partitioning`: the partition spec and every Hive path rule (parse,
//!   write, NULL, hidden names, percent-encoding);
//! * `layout`: bucketing and sort order, as our writer records them in each
//!   file;
//! * `index`: the partition index, its files packed column by column;
//! * `shared`: [`SharedIndex`], the one home of a table's current index,
//!   and the only place it changes;
//! * `learned`: the statistics scans learn from the footers they read,
//!   kept in the runtime's file statistics cache for later plans.
//!
//! `table/` (reading, discovery, the provider) and `write/` (the sink)
//! both sit on this module; it imports neither.

pub(crate) mod definition;
pub(crate) mod index;
pub(crate) mod journal;
pub(crate) mod layout;
pub(crate) mod learned;
pub(crate) mod listing;
pub(crate) mod partitioning;
pub(crate) mod shared;
pub(crate) mod snapshot;

pub(crate) use definition::{OverwriteMode, TableDefinition, TableOptions};
pub(crate) use index::PublishedFile;
pub(crate) use shared::SharedIndex;
