//! Settings that travel with a query in the session config, as DataFusion
//! config extensions (so `SET` changes them and Ballista ships them):
//!
//! * `query_context`: [`QueryContext`], who is asking (query id, tenant);
//! * `scan_options`: [`ScanOptions`], how scans read (`lakefusion.*`: the
//!   small-table cache switch and how far scans read ahead).
//!
//! Both implement `ExtensionOptions` by hand over one table of settings
//! each (`setting`; see [`QueryContext`] for why not with DataFusion's
//! macro).

mod query_context;
mod scan_options;
mod setting;

pub use query_context::QueryContext;
pub use scan_options::ScanOptions;
#[cfg(feature = "datafusion-distributed")]
pub(crate) use setting::registered;

use datafusion::prelude::SessionConfig;

/// `config` with both extensions registered: the ones it has kept, the
/// defaults otherwise, and `query` in place of its query context if given.
/// Every session lakefusion builds goes through here (on Ballista, every
/// scheduler and executor config too), or `SET` values would be dropped.
pub(crate) fn with_settings(config: SessionConfig, query: Option<QueryContext>) -> SessionConfig {
    let query = query.unwrap_or_else(|| QueryContext::from_session_config(&config));
    let scan = ScanOptions::from_session_config(&config);
    config
        .with_option_extension(query)
        .with_option_extension(scan)
}
