//! [`ScanOptions`]: how scans read — the small-table cache switch, how
//! far scans of object stores read ahead, and whether join `IN` lists are
//! capped — under `lakefusion.*`.

#[cfg(doc)]
use datafusion::common::config::ConfigExtension;

use super::setting::{config_extension, parse_bool, parse_count, Setting};

/// How scans read: a DataFusion [`ConfigExtension`] under the prefix
/// `lakefusion`, set like any other option and shipped with the query:
///
/// ```sql
/// SET lakefusion.cache_enabled = false;
/// SET lakefusion.read_ahead_requests = 32;
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
/// A session that never registered it reads with the defaults;
/// [`SessionBuilder`](crate::SessionBuilder) and
/// [`SessionStateBuilderExt`](crate::SessionStateBuilderExt) register it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Whether the small-table cache may serve or fill entries.
    pub cache_enabled: bool,
    /// Reads a scan keeps in flight ahead of its partitions (0: none).
    pub read_ahead_requests: usize,
    /// Bytes a scan may hold read ahead and not yet decoded.
    pub read_ahead_bytes: usize,
    /// Files up to this size are read ahead in one request, footer and data.
    pub whole_file_bytes: u64,
    /// Whether lakefusion's set-up lowers DataFusion's
    /// `hash_join_inlist_pushdown_max_distinct_values` (see
    /// docs/session-and-cache.md). Turning it off, then setting that option,
    /// keeps the value where the set-up runs again (Ballista's scheduler);
    /// datafusion-distributed workers, which receive no `datafusion.*`
    /// option, then use DataFusion's default.
    pub cap_join_in_lists: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            cache_enabled: true,
            // About what one client keeps in flight against S3 before
            // latency, not requests, bounds a scan of small files.
            read_ahead_requests: 64,
            read_ahead_bytes: 256 * 1024 * 1024,
            whole_file_bytes: 8 * 1024 * 1024,
            cap_join_in_lists: true,
        }
    }
}

const SETTINGS: &[Setting<ScanOptions>] = &[
    Setting {
        key: "cache_enabled",
        description: "Whether the small-table cache may be used",
        get: |o| o.cache_enabled.to_string(),
        set: |o, v| {
            o.cache_enabled = parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        key: "read_ahead_requests",
        description:
            "Reads a scan of an object store keeps in flight ahead of its partitions (0: none)",
        get: |o| o.read_ahead_requests.to_string(),
        set: |o, v| {
            let count = parse_count(v, "a number of requests")?;
            o.read_ahead_requests = usize::try_from(count).map_err(|_| "a number of requests")?;
            Ok(())
        },
    },
    Setting {
        key: "read_ahead_bytes",
        description: "Bytes a scan may hold read ahead and not yet decoded",
        get: |o| o.read_ahead_bytes.to_string(),
        set: |o, v| {
            let count = parse_count(v, "a number of bytes")?;
            o.read_ahead_bytes = usize::try_from(count).map_err(|_| "a number of bytes")?;
            Ok(())
        },
    },
    Setting {
        key: "whole_file_bytes",
        description: "Files up to this size are read ahead in one request",
        get: |o| o.whole_file_bytes.to_string(),
        set: |o, v| {
            o.whole_file_bytes = parse_count(v, "a number of bytes")?;
            Ok(())
        },
    },
    Setting {
        key: "cap_join_in_lists",
        description: "Whether lakefusion's set-up lowers datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
        get: |o| o.cap_join_in_lists.to_string(),
        set: |o, v| {
            o.cap_join_in_lists = parse_bool(v)?;
            Ok(())
        },
    },
];

impl ScanOptions {
    /// Sets whether the small-table cache may be used.
    pub fn with_cache_enabled(mut self, enabled: bool) -> Self {
        self.cache_enabled = enabled;
        self
    }

    /// Sets how many reads a scan keeps in flight ahead of its partitions
    /// (0: none).
    pub fn with_read_ahead_requests(mut self, requests: usize) -> Self {
        self.read_ahead_requests = requests;
        self
    }

    /// Sets how many bytes a scan may hold read ahead.
    pub fn with_read_ahead_bytes(mut self, bytes: usize) -> Self {
        self.read_ahead_bytes = bytes;
        self
    }

    /// Sets the size up to which files are read ahead in one request.
    pub fn with_whole_file_bytes(mut self, bytes: u64) -> Self {
        self.whole_file_bytes = bytes;
        self
    }

    /// Sets whether lakefusion's set-up lowers DataFusion's join `IN`-list
    /// limit.
    pub fn with_cap_join_in_lists(mut self, cap: bool) -> Self {
        self.cap_join_in_lists = cap;
        self
    }
}

config_extension!(ScanOptions, "lakefusion", SETTINGS, None);
