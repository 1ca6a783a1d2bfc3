//! The Parquet reader factory scans use: DataFusion's cached reader, with the
//! page index kept in the cache and every open reader counted.

use std::future::Future;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, Gauge};
use datafusion_datasource::PartitionedFile;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::ObjectMeta;
use parquet::arrow::arrow_reader::ArrowReaderOptions;

use crate::error::panic_message;
use crate::lake::learned::{CacheFull, LearnedStatistics};
use crate::store::read_ahead::Releaser;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

/// Reads footers through the runtime's metadata cache (as `ListingTable`
/// does), asking for the page index along with the footer.
///
/// DataFusion's Parquet opener first fetches the footer *without* the page
/// index and loads the index later, outside the cache; so with a warm cache a
/// page-index-pruned query still re-reads every file's page index, every time.
/// (`ListingTable` avoids this only because collecting statistics cached the
/// footers with their index.) Asking for the index as `Optional` on the first
/// fetch — DataFusion's own heuristic when a cache is present — puts it in the
/// cache once; later queries read neither footer nor index. Once a footer
/// read leaves the cache with no more entries than before (a table with more
/// footers than the cache holds), the scan partition asks as the opener does: the
/// index would be evicted before its next use, and every open would pay for
/// reading and decoding it (see [`IndexWithFooter`]).
///
/// Every reader it creates counts itself in `open_readers` until it is
/// dropped, which is how tests prove that a cancelled scan lets go of its
/// files. A dropped reader also lets the scan's read-ahead release the bytes
/// it held of the reader's file. Every footer a reader reads teaches the
/// runtime its file's statistics (`lake::learned`), so that later plans
/// prune the file without opening it.
#[derive(Debug)]
pub(crate) struct PageIndexCachingReaderFactory {
    inner: CachedParquetFileReaderFactory,
    /// Where footers are cached, when the scan reads the page index.
    page_index: Option<IndexWithFooter>,
    open_readers: Gauge,
    read_ahead: Option<Releaser>,
    learned: Option<LearnedStatistics>,
}

/// Asking for the page index with each footer, while the runtime's footer
/// cache keeps what it is given.
#[derive(Debug, Clone)]
pub(crate) struct IndexWithFooter {
    /// The runtime's footer cache, the one `inner` reads through.
    cache: Arc<FileMetadataCache>,
    /// Whether a footer read here found the cache full.
    full: CacheFull,
}

impl IndexWithFooter {
    pub(crate) fn new(cache: Arc<FileMetadataCache>) -> Self {
        Self {
            cache,
            full: CacheFull::default(),
        }
    }
}

impl PageIndexCachingReaderFactory {
    pub(crate) fn new(
        inner: CachedParquetFileReaderFactory,
        page_index: Option<IndexWithFooter>,
        open_readers: Gauge,
        read_ahead: Option<Releaser>,
        learned: Option<LearnedStatistics>,
    ) -> Self {
        Self {
            inner,
            page_index,
            open_readers,
            read_ahead,
            learned,
        }
    }
}

impl ParquetFileReaderFactory for PageIndexCachingReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let location = partitioned_file.object_meta.location.clone();
        let learning = self
            .learned
            .clone()
            .map(|learned| (learned, partitioned_file.object_meta.clone()));
        let inner = self.inner.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        self.open_readers.add(1);
        if let Some(read_ahead) = &self.read_ahead {
            read_ahead.opened(&location);
        }
        Ok(Box::new(PageIndexCachingReader {
            inner,
            location,
            page_index: self.page_index.clone(),
            open_readers: self.open_readers.clone(),
            read_ahead: self.read_ahead.clone(),
            learning,
        }))
    }
}

struct PageIndexCachingReader {
    inner: Box<dyn AsyncFileReader + Send>,
    location: object_store::path::Path,
    page_index: Option<IndexWithFooter>,
    open_readers: Gauge,
    read_ahead: Option<Releaser>,
    /// Where the file's statistics are learned, and the file as listed.
    learning: Option<(LearnedStatistics, ObjectMeta)>,
}

impl Drop for PageIndexCachingReader {
    fn drop(&mut self) {
        self.open_readers.sub(1);
        if let Some(read_ahead) = &self.read_ahead {
            read_ahead.closed(&self.location);
        }
    }
}

impl AsyncFileReader for PageIndexCachingReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let asking = self
            .page_index
            .clone()
            .filter(|index| !index.full.is_full());
        async move {
            let options = options.cloned().unwrap_or_default();
            let options = if asking.is_some() {
                options.with_page_index_policy(PageIndexPolicy::Optional)
            } else {
                options
            };
            // (DataFusion adding a page index to an entry the cache held
            // is not watched: a later miss notices.)
            let before = asking
                .as_ref()
                .and_then(|index| CacheFull::before_put(index.cache.as_ref(), &self.location));
            let metadata =
                footer_without_panics(self.inner.get_metadata(Some(&options)), |message| {
                    parquet::errors::ParquetError::General(message)
                })
                .await?;
            if let Some(index) = &asking {
                index.full.after_put(index.cache.as_ref(), before);
            }
            if let Some((learned, meta)) = &self.learning {
                learned.learn(meta, &metadata);
            }
            Ok(metadata)
        }
        .boxed()
    }
}

/// Runs a footer read, turning a panic of the Parquet decoder into an error.
///
/// parquet 59.3 subtracts a file's footer-length field from the file size
/// without checking it, so a corrupt length panics (with overflow checks on,
/// as in debug builds) instead of failing. One corrupt file must fail its
/// query, not the process; every footer read in this crate goes through here.
pub(crate) async fn footer_without_panics<T, E>(
    read: impl Future<Output = std::result::Result<T, E>>,
    to_error: impl FnOnce(String) -> E,
) -> std::result::Result<T, E> {
    match AssertUnwindSafe(read).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(to_error(format!(
            "corrupt footer: the Parquet decoder gave up on it ({})",
            panic_message(panic.as_ref())
        ))),
    }
}
