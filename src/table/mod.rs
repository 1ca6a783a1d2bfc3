//! [`PartitionedTable`]: a Hive-partitioned Parquet table, its builder, its
//! partition spec and index, discovery, and filter pushdown.

mod builder;
mod factory;
mod index;
pub mod layout;
mod listing;
mod provider;
mod pushdown;
mod spec;

pub use builder::PartitionedTableBuilder;
pub use factory::PartitionedTableFactory;
pub use index::{IndexedFile, Partition, PartitionIndex};
pub use layout::{Bucketing, SortKey};
pub use provider::PartitionedTable;
pub(crate) use provider::TableDefinition;
pub use spec::{PartitionColumn, PartitionSpec, HIVE_NULL};
