//! Object stores: built from a table root's URL and options
//! ([`object_store_for_url`], [`register_object_store_for`]), and what
//! stands between the scans and remote storage that fails: retries
//! with bounded backoff and per-request timeouts ([`ResilientStore`], set per
//! table with [`RetryPolicy`]), the read-ahead that keeps many requests in
//! flight for a scan (`read_ahead`), what kind of storage a root is on
//! (`kind`), where a local root really is (`local`, the symbolic-link
//! check), a `file://` root listed by reading its directories
//! (`local_walk`, for the store [`local_file_system`]), and — behind the `test-utils` feature — a fault-injecting store
//! (`faults::FaultyStore`) and a store that lists in pages as S3 does, or
//! from the start as object_store's default does (`paged::PagedStore`), to
//! prove they work.

#[cfg(feature = "test-utils")]
pub mod faults;
mod kind;
pub(crate) mod local;
pub(crate) mod local_walk;
#[cfg(feature = "test-utils")]
pub mod paged;
pub(crate) mod read_ahead;
mod retry;
mod url;

pub(crate) use kind::StoreKind;
pub use local_walk::local_file_system;
pub use retry::{ResilientStore, RetryPolicy};
pub use url::{object_store_for_url, register_object_store_for};
