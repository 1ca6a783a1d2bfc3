//! [`QueryContext`]: who is asking — carried in the session config so it
//! reaches every operator (and, on Ballista, every executor) with the query.

use datafusion::common::config::ConfigExtension;

use super::setting::{config_extension, Moved, Setting};
use super::ScanOptions;

/// Per-query context: the query id and the tenant, for logs, traces and
/// metrics (each scan runs in a `lakefusion.scan` tracing span carrying
/// them).
///
/// A DataFusion [`ConfigExtension`] under the prefix `query_context`, so it is
/// set like any other option and travels wherever the session config does:
///
/// ```sql
/// SET query_context.query_id = 'q-42';
/// SET query_context.tenant_id = 'acme';
/// ```
///
/// How scans read (the small-table cache switch, reading ahead) is
/// [`ScanOptions`](crate::ScanOptions), under `lakefusion.*`; the former
/// `query_context.cache_enabled`, `query_context.read_ahead_requests`,
/// `query_context.read_ahead_bytes` and `query_context.whole_file_bytes`
/// are refused with an error naming their new key.
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
/// (empty ids). [`SessionBuilder`](crate::SessionBuilder) and
/// [`SessionStateBuilderExt`](crate::SessionStateBuilderExt) always
/// register it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryContext {
    /// The caller's id for the query (for logs, traces and metrics).
    pub query_id: String,
    /// The tenant the query runs for.
    pub tenant_id: String,
}

const SETTINGS: &[Setting<QueryContext>] = &[
    Setting {
        key: "query_id",
        description: "The caller's id for the query",
        get: |c| c.query_id.clone(),
        set: |c, v| {
            c.query_id = v.to_string();
            Ok(())
        },
    },
    Setting {
        key: "tenant_id",
        description: "The tenant the query runs for",
        get: |c| c.tenant_id.clone(),
        set: |c, v| {
            c.tenant_id = v.to_string();
            Ok(())
        },
    },
];

/// Keys that moved to [`ScanOptions`] (on 2026-12-02).
const MOVED: Moved = Moved {
    keys: &[
        "cache_enabled",
        "read_ahead_requests",
        "read_ahead_bytes",
        "whole_file_bytes",
    ],
    to: ScanOptions::PREFIX,
};

impl QueryContext {
    /// A context for the query `query_id`, with no tenant.
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
}

config_extension!(QueryContext, "query_context", SETTINGS, Some(&MOVED));
