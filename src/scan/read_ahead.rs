//! What a scan reads ahead: the files its partitions will open, in the
//! order they will open them, and how far to read, from the session's
//! [`ScanOptions`]. The reading itself is `store::read_ahead`.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::physical_expr::utils::collect_columns;
use datafusion_datasource::file_scan_config::FileScanConfig;
use object_store::ObjectMeta;

use crate::settings::ScanOptions;
use crate::store::read_ahead::{LargeFiles, ReadAheadOptions, FOOTER_BYTES};
use crate::store::StoreKind;

/// The read-ahead `options` ask for one read-ahead of a scan of `groups`
/// file groups with `limit`, shared by all partitions of an execution
/// (`shared`) or of one partition's own group (then each gets its share of
/// the requests and bytes), reading large files as `reads` says; `None` when the scan
/// must not read ahead: on the local disk (`file://`), which has no request
/// latency to hide, or turned off.
///
/// The options and the file reads are worked out only off the local disk:
/// a short local query would otherwise pay for them on every partition.
pub(crate) fn read_ahead_options(
    store: StoreKind,
    options: impl FnOnce() -> ScanOptions,
    groups: usize,
    limit: Option<usize>,
    shared: bool,
    reads: impl FnOnce() -> FileReads,
) -> Option<ReadAheadOptions> {
    if store.is_local_disk() {
        return None;
    }
    let options = options();
    if options.read_ahead_requests == 0 {
        return None;
    }
    let reads = reads();
    let share = if shared { 1 } else { groups.max(1) };
    let requests = (options.read_ahead_requests / share).max(1);
    // A limited scan may stop after its first file: hold at most the
    // next file of each partition, so that a LIMIT does not pay for
    // requests it never needed.
    let files = match limit {
        Some(_) => (groups.max(1) / share).max(1),
        None => usize::MAX,
    };
    Some(ReadAheadOptions {
        requests: requests.min(files),
        bytes: options.read_ahead_bytes / share,
        files,
        whole_file_bytes: options.whole_file_bytes,
        footer_bytes: reads.footer_bytes,
        readers: if shared { groups.max(1) } else { 1 },
        large_files: match limit {
            Some(_) => LargeFiles::Footer,
            None => reads.large_files,
        },
    })
}

/// How a scan's decoders read its large files, as the read-ahead needs to
/// know it.
#[derive(Debug, Clone)]
pub(crate) struct FileReads {
    /// What to read ahead of a large file beyond its footer.
    pub large_files: LargeFiles,
    /// The end of a file the decoder reads for its footer.
    pub footer_bytes: u64,
}

impl FileReads {
    /// The footer only, of [`FOOTER_BYTES`].
    #[cfg(test)]
    fn footers() -> Self {
        Self {
            large_files: LargeFiles::Footer,
            footer_bytes: FOOTER_BYTES,
        }
    }
}

/// How `config`'s scan reads its files: the footer's end as its Parquet
/// options ask (`metadata_size_hint`), and of large files the column chunks
/// it projects (and filters on) in every row group when it reads them all —
/// no predicate that could prune row groups (a dynamic filter is one), no
/// `LIMIT` that could stop early — and otherwise the footers only, so that
/// the read-ahead never reads what the decoder would skip.
pub(crate) fn file_reads(config: &FileScanConfig) -> FileReads {
    let footer_bytes = config
        .file_source
        .downcast_ref::<ParquetSource>()
        .and_then(|p| p.table_parquet_options().global.metadata_size_hint)
        .map_or(FOOTER_BYTES, |hint| (hint as u64).max(FOOTER_BYTES));
    FileReads {
        large_files: large_files(config),
        footer_bytes,
    }
}

fn large_files(config: &FileScanConfig) -> LargeFiles {
    if config.limit.is_some() || config.file_source.filter().is_some() {
        return LargeFiles::Footer;
    }
    let columns = config.file_source.projection().map(|projection| {
        let names: HashSet<String> = projection
            .iter()
            .flat_map(|e| collect_columns(&e.expr))
            .map(|column| column.name().to_string())
            .collect();
        Arc::new(names)
    });
    LargeFiles::Columns(columns)
}

/// The files a scan's reads will open, in the order they will open them:
/// DataFusion's shared work queue (every group in turn, reordered by the
/// file source) for the partitions of one execution, or one partition's own
/// group.
pub(crate) fn read_order(config: &FileScanConfig, partition: Option<usize>) -> Vec<ObjectMeta> {
    let files: Vec<_> = match partition {
        Some(p) => config
            .file_groups
            .get(p)
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default(),
        None => config.file_source.reorder_files(
            config
                .file_groups
                .iter()
                .flat_map(|g| g.iter().cloned())
                .collect(),
        ),
    };
    // A file split into byte ranges appears once per range: read it once.
    let mut seen = HashSet::new();
    files
        .into_iter()
        .map(|f| f.object_meta)
        .filter(|m| seen.insert(m.location.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_read_ahead_on_the_local_disk_or_when_turned_off() {
        let context = ScanOptions::default();
        assert!(read_ahead_options(
            StoreKind::LocalDisk,
            || context.clone(),
            4,
            None,
            true,
            FileReads::footers
        )
        .is_none());
        let on = read_ahead_options(
            StoreKind::Remote,
            || context.clone(),
            4,
            None,
            true,
            FileReads::footers,
        );
        assert_eq!(
            on.as_ref().map(|o| o.requests),
            Some(context.read_ahead_requests)
        );
        // A partition reading ahead on its own gets its share.
        let own = read_ahead_options(
            StoreKind::Remote,
            || context.clone(),
            4,
            None,
            false,
            FileReads::footers,
        );
        assert_eq!(
            own.as_ref().map(|o| o.requests),
            Some(context.read_ahead_requests / 4)
        );
        assert_eq!(own.map(|o| o.bytes), Some(context.read_ahead_bytes / 4));
        let off = ScanOptions::default().with_read_ahead_requests(0);
        assert!(read_ahead_options(
            StoreKind::Remote,
            || off.clone(),
            4,
            None,
            true,
            FileReads::footers
        )
        .is_none());
    }

    #[test]
    fn a_limited_scan_reads_ahead_one_file_per_partition() {
        let context = ScanOptions::default();
        let limited = read_ahead_options(
            StoreKind::Remote,
            || context.clone(),
            4,
            Some(10),
            true,
            FileReads::footers,
        );
        assert_eq!(
            limited.as_ref().map(|o| (o.requests, o.files)),
            Some((4, 4))
        );
        let own = read_ahead_options(
            StoreKind::Remote,
            || context.clone(),
            4,
            Some(10),
            false,
            FileReads::footers,
        );
        assert_eq!(own.as_ref().map(|o| (o.requests, o.files)), Some((1, 1)));
        let unlimited = read_ahead_options(
            StoreKind::Remote,
            || context.clone(),
            4,
            None,
            true,
            FileReads::footers,
        );
        assert_eq!(unlimited.as_ref().map(|o| o.files), Some(usize::MAX));
    }
}
