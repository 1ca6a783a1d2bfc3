//! Codecs (features `ballista` and `datafusion-distributed`): plans and tables as metadata on the wire.
//!
//! * [`LakefusionPhysicalCodec`] — `PartitionedScanExec` / `CachedScanExec`;
//! * [`LakefusionLogicalCodec`] — `PartitionedTable`;
//! * [`CompositePhysicalCodec`] — named codecs with a fallback, so bytes stay
//!   decodable when codecs are added;
//! * the wire form of [`DistributedScanExec`](crate::DistributedScanExec),
//!   the form a scan travels in to Ballista executors;
//! * [`ObjectStoreFactory`] and [`AllowedRoots`]: what a decoding executor
//!   injects — how to reach storage, and where it may read.
//!
//! The composite and logical codecs wrap every payload in an envelope naming
//! the codec and the [`FORMAT_VERSION`]; bytes from a newer lakefusion are
//! refused with an error saying so, rather than misread.

mod composite;
mod files;
mod logical;
mod physical;
mod roots;
mod store_factory;

pub use composite::{CompositePhysicalCodec, FORMAT_VERSION};
pub use logical::LakefusionLogicalCodec;
pub use physical::LakefusionPhysicalCodec;
pub use roots::AllowedRoots;
pub use store_factory::{ObjectStoreFactory, UrlStoreFactory};
