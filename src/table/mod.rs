//! [`PartitionedTable`]: a Hive-partitioned Parquet table, by job:
//!
//! * `builder`: declares a table and runs its one-time discovery;
//! * `discovery`: what storage says at `build()`/`refresh()` (the listing,
//!   the refreshes, the schema, footers and layout metadata);
//! * `planner`, `pushdown` and `file_pruning`: filters and an index
//!   snapshot turned into a scan, without I/O (`file_pruning` skips whole
//!   files by their footer statistics);
//! * `maintenance`: `DELETE FROM` over partitions and compaction, chosen
//!   from a fresh listing and replaced through the writer's commit;
//! * `provider`: the thin `TableProvider`; `factory`: SQL DDL.
//!
//! What a table is and the index it plans from live below, in `lake`,
//! shared with the writer.

mod builder;
mod discovery;
mod factory;
mod file_pruning;
mod maintenance;
mod planner;
mod provider;
mod pushdown;

pub use builder::PartitionedTableBuilder;
pub use factory::PartitionedTableFactory;
pub use maintenance::{CompactOptions, Compaction};
pub use provider::PartitionedTable;
