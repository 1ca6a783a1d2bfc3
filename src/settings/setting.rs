//! What both config extensions share: a table of [`Setting`]s, and the
//! `ExtensionOptions` methods and lookups written once over it.

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::prelude::SessionConfig;

use crate::error::Error;

/// One setting of a config extension: its key (without the prefix), what
/// it means, and how it is read and parsed.
pub(crate) struct Setting<T> {
    pub(crate) key: &'static str,
    pub(crate) description: &'static str,
    pub(crate) get: fn(&T) -> String,
    /// Sets the value, or says what the setting accepts.
    pub(crate) set: fn(&mut T, &str) -> Result<(), &'static str>,
}

/// Keys an extension no longer has, and the key each is now.
pub(crate) struct Moved {
    pub(crate) keys: &'static [&'static str],
    /// The prefix they moved under (same key after it).
    pub(crate) to: &'static str,
}

/// `ExtensionOptions::set` over `settings`: `key` comes without the prefix
/// (`query_id`), as `ConfigOptions::set` strips it; a prefixed key is
/// accepted too. A key in `moved` is refused naming where it is now.
pub(crate) fn set<T: ConfigExtension>(
    settings: &[Setting<T>],
    moved: Option<&Moved>,
    target: &mut T,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let key = key
        .strip_prefix(T::PREFIX)
        .and_then(|k| k.strip_prefix('.'))
        .unwrap_or(key);
    let Some(setting) = settings.iter().find(|s| s.key == key) else {
        if let Some(moved) = moved.filter(|m| m.keys.contains(&key)) {
            return Err(Error::MovedSetting {
                key: format!("{}.{key}", T::PREFIX),
                now: format!("{}.{key}", moved.to),
            });
        }
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

/// The fully prefixed key/value pairs of `options`, as `SET` and Ballista
/// take them.
pub(crate) fn key_value_pairs(options: &dyn ExtensionOptions) -> Vec<(String, String)> {
    options
        .entries()
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.key, v)))
        .collect()
}

/// The extension registered in `config`, or its defaults if none is.
pub(crate) fn registered<T: ConfigExtension + Clone + Default>(config: &SessionConfig) -> T {
    config
        .options()
        .extensions
        .get::<T>()
        .cloned()
        .unwrap_or_default()
}

/// A count (`u64`), for the settings that take one.
pub(crate) fn parse_count(value: &str, expected: &'static str) -> Result<u64, &'static str> {
    value.trim().parse::<u64>().map_err(|_| expected)
}

/// `value` as `true` or `false`, in any case and with spaces around.
pub(crate) fn parse_bool(value: &str) -> Result<bool, &'static str> {
    value
        .trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| "true or false")
}

/// Implements a config extension over its table of settings, once for
/// both: `ConfigExtension` with `$prefix`, `ExtensionOptions` over
/// `$settings` (refusing the keys of `$moved`, an `Option<&Moved>`), and
/// the lookups `from_task_context`, `from_session_config` and
/// `to_key_value_pairs`.
macro_rules! config_extension {
    ($type:ty, $prefix:literal, $settings:expr, $moved:expr) => {
        impl $type {
            /// The value of the session a task runs in (defaults if the
            /// session never registered the extension).
            pub fn from_task_context(ctx: &datafusion::execution::TaskContext) -> Self {
                Self::from_session_config(ctx.session_config())
            }

            /// The value registered in a session config (defaults if none is).
            pub fn from_session_config(config: &datafusion::prelude::SessionConfig) -> Self {
                $crate::settings::setting::registered(config)
            }

            #[doc = concat!("The fully prefixed key/value pairs (`", $prefix, ".…`), as `SET` and Ballista expect them.")]
            pub fn to_key_value_pairs(&self) -> Vec<(String, String)> {
                $crate::settings::setting::key_value_pairs(self)
            }
        }

        impl datafusion::common::config::ConfigExtension for $type {
            const PREFIX: &'static str = $prefix;
        }

        impl datafusion::common::config::ExtensionOptions for $type {
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }

            fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
                self
            }

            fn cloned(&self) -> Box<dyn datafusion::common::config::ExtensionOptions> {
                Box::new(self.clone())
            }

            fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
                Ok($crate::settings::setting::set(
                    $settings, $moved, self, key, value,
                )?)
            }

            fn entries(&self) -> Vec<datafusion::common::config::ConfigEntry> {
                $crate::settings::setting::entries($settings, self)
            }
        }
    };
}

pub(crate) use config_extension;
