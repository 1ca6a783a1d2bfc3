//! Codecs (feature `ballista`): plans and tables as metadata on the wire.
//!
//! * [`LakefusionPhysicalCodec`] — `PartitionedScanExec` / `CachedScanExec`;
//! * [`LakefusionLogicalCodec`] — `PartitionedTable`;
//! * [`CompositePhysicalCodec`] — named codecs with a fallback, so bytes stay
//!   decodable when codecs are added;
//! * [`ObjectStoreFactory`] and [`AllowedRoots`]: what a decoding executor
//!   injects — how to reach storage, and where it may read.

mod composite;
mod logical;
mod object_store;
mod physical;
mod roots;

pub use composite::CompositePhysicalCodec;
pub use logical::LakefusionLogicalCodec;
pub use object_store::ObjectStoreFactory;
pub use physical::LakefusionPhysicalCodec;
pub use roots::AllowedRoots;
