//! The one integration-test binary (one link for all tests).

mod bad_input;
#[cfg(feature = "ballista")]
mod ballista;
mod cache;
mod cancel;
#[cfg(feature = "ballista")]
mod cluster;
#[cfg(feature = "ballista")]
mod codec;
mod commit_protocol;
mod common;
mod context;
#[cfg(feature = "datafusion-distributed")]
mod datafusion_distributed;
mod dynamic_filters;
mod explain;
mod faults;
mod learned;
mod load;
mod maintenance;
mod no_io;
mod parity;
mod properties;
mod read_ahead;
mod refresh;
mod s3;
mod s3_server;
mod session;
mod sorted;
mod store_conformance;
mod table;
mod trust;
#[cfg(feature = "ballista")]
mod trust_wire;
#[cfg(feature = "datafusion-distributed")]
mod workers;
mod write;
mod write_failures;
