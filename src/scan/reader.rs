//! The Parquet reader factory scans use: DataFusion's cached reader, with the
//! page index kept in the cache.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::Result;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion_datasource::PartitionedFile;
use futures::future::BoxFuture;
use futures::FutureExt;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
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
/// cache once; later queries read neither footer nor index.
#[derive(Debug)]
pub(crate) struct PageIndexCachingReaderFactory {
    inner: CachedParquetFileReaderFactory,
}

impl PageIndexCachingReaderFactory {
    pub(crate) fn new(inner: CachedParquetFileReaderFactory) -> Self {
        Self { inner }
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
        let inner = self.inner.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(PageIndexCachingReader { inner }))
    }
}

struct PageIndexCachingReader {
    inner: Box<dyn AsyncFileReader + Send>,
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
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.inner.get_metadata(Some(&options)).await }.boxed()
    }
}
