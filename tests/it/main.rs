//! The one integration-test binary (one link for all tests).

mod bad_input;
mod common;
mod counting_store;
mod explain;
mod no_io;
mod parity;
mod table;
