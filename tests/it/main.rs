//! The one integration-test binary (one link for all tests).

mod bad_input;
mod cache;
mod common;
mod context;
mod counting_store;
mod explain;
mod no_io;
mod parity;
mod session;
mod table;
