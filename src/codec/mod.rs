//! Codecs (feature `ballista`): plans and tables as metadata on the wire.
//!
//! * [`LakefusionPhysicalCodec`] — `PartitionedScanExec` / `CachedScanExec`;
//! * [`LakefusionLogicalCodec`] — `PartitionedTable`;
//! * [`CompositePhysicalCodec`] — named codecs with a fallback, so bytes stay
//!   decodable when codecs are added;
//! * [`DistributedScanExec`] — the form a scan travels in to Ballista
//!   executors, so that Ballista can narrow it to each task's partitions;
//! * [`ObjectStoreFactory`] and [`AllowedRoots`]: what a decoding executor
//!   injects — how to reach storage, and where it may read.
//!
//! The composite and logical codecs wrap every payload in an envelope naming
//! the codec and the [`FORMAT_VERSION`]; bytes from a newer lakefusion are
//! refused with an error saying so, rather than misread.

mod composite;
mod distributed;
mod files;
mod logical;
mod object_store;
mod physical;
mod roots;

pub use composite::{CompositePhysicalCodec, FORMAT_VERSION};
pub use distributed::DistributedScanExec;
pub use logical::LakefusionLogicalCodec;
pub use object_store::ObjectStoreFactory;
pub use physical::LakefusionPhysicalCodec;
pub use roots::AllowedRoots;
