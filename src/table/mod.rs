//! [`PartitionedTable`]: a Hive-partitioned Parquet table, by job:
//!
//! * `builder` and `definition`: what a table is, declared and validated;
//! * `discovery`: what storage says at `build()`/`refresh()` (the listing,
//!   the schema, footers and layout metadata);
//! * `index`: the partition index, and the one home of the table's current
//!   snapshot ([`SharedIndex`](index::SharedIndex));
//! * `planner` and `pushdown`: filters and an index snapshot turned into a
//!   scan, without I/O;
//! * `hive`: every Hive path rule (parse, write, NULL, hidden names,
//!   percent-encoding);
//! * `layout`: bucketing and sort order, as our writer records them;
//! * `provider`: the thin `TableProvider`; `factory`: SQL DDL.

mod builder;
mod definition;
mod discovery;
mod factory;
pub(crate) mod hive;
mod index;
pub mod layout;
mod planner;
mod provider;
mod pushdown;
mod spec;

pub use builder::PartitionedTableBuilder;
pub(crate) use definition::TableDefinition;
pub use factory::PartitionedTableFactory;
pub use hive::HIVE_NULL;
#[cfg(feature = "ballista")]
pub(crate) use index::NO_BUCKET;
pub use index::{FileRef, IndexedFile, ListedPartition, Partition, PartitionIndex};
pub(crate) use index::{PublishedFile, SharedIndex};
pub use layout::{Bucketing, SortKey};
pub use provider::PartitionedTable;
pub use spec::{PartitionColumn, PartitionSpec};
