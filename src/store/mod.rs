//! What stands between the scans and remote storage that fails: retries
//! with bounded backoff and per-request timeouts ([`ResilientStore`], set per
//! table with [`RetryPolicy`]), and — behind the `test-utils` feature — a
//! fault-injecting store ([`faults::FaultyStore`]) to prove they work.

#[cfg(feature = "test-utils")]
pub mod faults;
mod retry;

pub use retry::{ResilientStore, RetryPolicy};
