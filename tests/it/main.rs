//! The one integration-test binary (one link for all tests).

#[cfg(feature = "ballista")]
mod ballista;
mod bad_input;
mod cache;
#[cfg(feature = "ballista")]
mod codec;
mod common;
mod context;
mod counting_store;
mod explain;
mod no_io;
mod parity;
mod session;
mod table;
