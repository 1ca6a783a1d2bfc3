//! [`QueryContext`]: who is asking and how — carried in the session config so it
//! reaches every operator (and, on Ballista, every executor) with the query.

use std::any::Any;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::prelude::SessionConfig;

use crate::error::Error;

/// Per-query context: the query id, the tenant, whether the small-table
/// cache may be used, and how far scans of object stores read ahead.
///
/// A DataFusion [`ConfigExtension`] under the prefix `query_context`, so it is
/// set like any other option and travels wherever the session config does:
///
/// ```sql
/// SET query_context.query_id = 'q-42';
/// SET query_context.tenant_id = 'acme';
/// SET query_context.cache_enabled = false;
/// SET query_context.read_ahead_requests = 32;
/// ```
///
/// # Reading ahead
///
/// On an object store, a scan reads the files its partitions will open next
/// before they ask (see `PartitionedScanExec`'s runtime steps):
/// `read_ahead_requests` reads in flight at once per scan (0 turns reading
/// ahead off), holding at most `read_ahead_bytes` (reserved from the
/// session's memory pool), with files of at most `whole_file_bytes` read in
/// one request. Scans of the local disk (`file://`) never read ahead.
///
/// Operators read it back with [`QueryContext::from_task_context`].
///
/// # Why `ExtensionOptions` is implemented by hand
///
/// DataFusion's `extensions_options!` macro makes `entries()` return bare keys
/// (`query_id`). Ballista ships a session's options to the scheduler and
/// executors as `entries()` key/value pairs and re-applies them with the full
/// key, so bare keys are silently dropped there. Here `entries()` returns
/// `query_context.query_id` and `set()` accepts the key without the prefix,
/// which is what `ConfigOptions::set` passes to an extension.
///
/// # Without the extension registered
///
/// A session whose config never registered `QueryContext` (e.g. a plain
/// `SessionContext::new()`) rejects `SET query_context.… ` with DataFusion's
/// "Could not find config namespace" error, and
/// [`from_session_config`](Self::from_session_config) /
/// [`from_task_context`](Self::from_task_context) return the defaults
/// (empty ids, cache enabled). [`SessionBuilder`](crate::SessionBuilder)
/// always registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryContext {
    /// The caller's id for the query (for logs, traces and metrics).
    pub query_id: String,
    /// The tenant the query runs for.
    pub tenant_id: String,
    /// Whether the small-table cache may serve or fill entries for this query.
    pub cache_enabled: bool,
    /// Reads a scan keeps in flight ahead of its partitions (0: none).
    pub read_ahead_requests: usize,
    /// Bytes a scan may hold read ahead and not yet decoded.
    pub read_ahead_bytes: usize,
    /// Files up to this size are read ahead in one request, footer and data.
    pub whole_file_bytes: u64,
}

impl Default for QueryContext {
    fn default() -> Self {
        Self {
            query_id: String::new(),
            tenant_id: String::new(),
            cache_enabled: true,
            // About what one client keeps in flight against S3 before
            // latency, not requests, bounds a scan of small files.
            read_ahead_requests: 64,
            read_ahead_bytes: 256 * 1024 * 1024,
            whole_file_bytes: 8 * 1024 * 1024,
        }
    }
}

const QUERY_ID: &str = "query_id";
const TENANT_ID: &str = "tenant_id";
const CACHE_ENABLED: &str = "cache_enabled";
const READ_AHEAD_REQUESTS: &str = "read_ahead_requests";
const READ_AHEAD_BYTES: &str = "read_ahead_bytes";
const WHOLE_FILE_BYTES: &str = "whole_file_bytes";
const KEYS: [&str; 6] = [
    QUERY_ID,
    TENANT_ID,
    CACHE_ENABLED,
    READ_AHEAD_REQUESTS,
    READ_AHEAD_BYTES,
    WHOLE_FILE_BYTES,
];

impl QueryContext {
    /// A context for the query `query_id`, with no tenant and the cache enabled.
    pub fn new(query_id: impl Into<String>) -> Self {
        Self {
            query_id: query_id.into(),
            ..Self::default()
        }
    }

    /// Sets the tenant.
    pub fn with_tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = tenant_id.into();
        self
    }

    /// Enables or disables the small-table cache for the query.
    pub fn with_cache_enabled(mut self, enabled: bool) -> Self {
        self.cache_enabled = enabled;
        self
    }

    /// The context of the query a task belongs to (defaults if the session
    /// never registered the extension).
    pub fn from_task_context(ctx: &TaskContext) -> Self {
        Self::from_session_config(ctx.session_config())
    }

    /// The context registered in a session config (defaults if none is).
    pub fn from_session_config(config: &SessionConfig) -> Self {
        config
            .options()
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_default()
    }

    /// The fully prefixed key/value pairs of this context
    /// (`query_context.query_id`, …), as `SET` and Ballista expect them.
    pub fn to_key_value_pairs(&self) -> Vec<(String, String)> {
        self.entries()
            .into_iter()
            .filter_map(|e| e.value.map(|v| (e.key, v)))
            .collect()
    }
}

impl ConfigExtension for QueryContext {
    const PREFIX: &'static str = "query_context";
}

impl ExtensionOptions for QueryContext {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    /// `key` comes without the prefix (`query_id`), as `ConfigOptions::set`
    /// strips it; a prefixed key is accepted too.
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = key
            .strip_prefix(Self::PREFIX)
            .and_then(|k| k.strip_prefix('.'))
            .unwrap_or(key);
        let invalid = |expected: &'static str| Error::InvalidSetting {
            scope: Self::PREFIX.to_string(),
            key: format!("{}.{key}", Self::PREFIX),
            value: value.to_string(),
            expected,
        };
        let count = |expected| value.trim().parse::<u64>().map_err(|_| invalid(expected));
        match key {
            QUERY_ID => self.query_id = value.to_string(),
            TENANT_ID => self.tenant_id = value.to_string(),
            CACHE_ENABLED => {
                self.cache_enabled = value
                    .trim()
                    .to_ascii_lowercase()
                    .parse()
                    .map_err(|_| invalid("true or false"))?
            }
            READ_AHEAD_REQUESTS => {
                self.read_ahead_requests = count("a number of requests")? as usize
            }
            READ_AHEAD_BYTES => self.read_ahead_bytes = count("a number of bytes")? as usize,
            WHOLE_FILE_BYTES => self.whole_file_bytes = count("a number of bytes")?,
            _ => {
                return Err(Error::UnknownSetting {
                    scope: Self::PREFIX.to_string(),
                    key: format!("{}.{key}", Self::PREFIX),
                    known: KEYS.map(|k| format!("{}.{k}", Self::PREFIX)).join(", "),
                }
                .into())
            }
        }
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        let entry = |key: &str, value: String, description: &'static str| ConfigEntry {
            key: format!("{}.{key}", Self::PREFIX),
            value: Some(value),
            description,
        };
        vec![
            entry(
                QUERY_ID,
                self.query_id.clone(),
                "The caller's id for the query",
            ),
            entry(
                TENANT_ID,
                self.tenant_id.clone(),
                "The tenant the query runs for",
            ),
            entry(
                CACHE_ENABLED,
                self.cache_enabled.to_string(),
                "Whether the small-table cache may be used",
            ),
            entry(
                READ_AHEAD_REQUESTS,
                self.read_ahead_requests.to_string(),
                "Reads a scan of an object store keeps in flight ahead of its partitions (0: none)",
            ),
            entry(
                READ_AHEAD_BYTES,
                self.read_ahead_bytes.to_string(),
                "Bytes a scan may hold read ahead and not yet decoded",
            ),
            entry(
                WHOLE_FILE_BYTES,
                self.whole_file_bytes.to_string(),
                "Files up to this size are read ahead in one request",
            ),
        ]
    }
}
