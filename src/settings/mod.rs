//! Settings that travel with a query in the session config, as DataFusion
//! config extensions (so `SET` changes them and Ballista ships them):
//!
//! * `query_context`: [`QueryContext`], who is asking (query id, tenant);
//! * `scan_options`: [`ScanOptions`], how scans read (`lakefusion.*`: the
//!   small-table cache switch and how far scans read ahead).
//!
//! Both implement `ExtensionOptions` by hand over one table of
//! [`Setting`]s each (see [`QueryContext`] for why not with DataFusion's
//! macro).

mod query_context;
mod scan_options;

pub use query_context::QueryContext;
pub use scan_options::ScanOptions;

use datafusion::common::config::{ConfigEntry, ConfigExtension};
use datafusion::prelude::SessionConfig;

use crate::error::Error;

/// One setting of a config extension: its key (without the prefix), what
/// it means, and how it is read and parsed.
pub(crate) struct Setting<T> {
    pub key: &'static str,
    pub description: &'static str,
    pub get: fn(&T) -> String,
    /// Sets the value, or says what the setting accepts.
    pub set: fn(&mut T, &str) -> Result<(), &'static str>,
}

/// `ExtensionOptions::set` over `settings`: `key` comes without the prefix
/// (`query_id`), as `ConfigOptions::set` strips it; a prefixed key is
/// accepted too.
pub(crate) fn set<T: ConfigExtension>(
    settings: &[Setting<T>],
    target: &mut T,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let key = key
        .strip_prefix(T::PREFIX)
        .and_then(|k| k.strip_prefix('.'))
        .unwrap_or(key);
    let Some(setting) = settings.iter().find(|s| s.key == key) else {
        return Err(Error::UnknownSetting {
            scope: T::PREFIX.to_string(),
            key: format!("{}.{key}", T::PREFIX),
            known: settings
                .iter()
                .map(|s| format!("{}.{}", T::PREFIX, s.key))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    (setting.set)(target, value).map_err(|expected| Error::InvalidSetting {
        scope: T::PREFIX.to_string(),
        key: format!("{}.{key}", T::PREFIX),
        value: value.to_string(),
        expected,
    })
}

/// `ExtensionOptions::entries` over `settings`, with fully prefixed keys
/// (`query_context.query_id`): Ballista re-applies entries by their key.
pub(crate) fn entries<T: ConfigExtension>(settings: &[Setting<T>], source: &T) -> Vec<ConfigEntry> {
    settings
        .iter()
        .map(|s| ConfigEntry {
            key: format!("{}.{}", T::PREFIX, s.key),
            value: Some((s.get)(source)),
            description: s.description,
        })
        .collect()
}

/// A count (`u64`), for the settings that take one.
pub(crate) fn parse_count(value: &str, expected: &'static str) -> Result<u64, &'static str> {
    value.trim().parse::<u64>().map_err(|_| expected)
}

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
