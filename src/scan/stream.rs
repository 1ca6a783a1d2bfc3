//! [`LazyScanStream`]: the stream of one output partition of a scan.

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{ParquetFileReaderFactory, ParquetSource};
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion_datasource::file_scan_config::{FileScanConfig, FileScanConfigBuilder};
use datafusion_datasource::source::{DataSource, OpenArgs};
use futures::{ready, Stream, StreamExt};

use super::metrics::ScanMetrics;
use super::naming::NamingSource;
use super::reader::PageIndexCachingReaderFactory;
use crate::context::QueryContext;
use crate::store::{ResilientStore, RetryPolicy};

/// The record batches of one output partition of a
/// [`PartitionedScanExec`](super::PartitionedScanExec).
///
/// A state machine that does no I/O until it is first polled:
///
/// ```text
/// Uninitialized ──first poll──▶ Opening ──first batch──▶ Streaming ──end / error──▶ Done
///                 (build the file    (footers read,           (row groups of
///                  stream: no I/O)    row groups pruned)       projected columns)
/// ```
///
/// Reading is DataFusion's own Parquet machinery (`ParquetSource`'s morselizer
/// driven by a `FileStream`, with work stealing between sibling partitions
/// where the scan allows it), so it decodes only the projected columns, skips
/// the row groups the pruning predicate rules out, appends the partition
/// columns as typed constants, and stops at the limit. Dropping the stream
/// drops the in-flight reads: nothing is spawned that could outlive it.
pub struct LazyScanStream {
    state: State,
    /// `lakefusion.scan`, entered on every poll: whatever the stream (and
    /// DataFusion's reader under it) logs carries the query, tenant, table and
    /// partition.
    span: tracing::Span,
    rows: usize,
    first_poll: Option<Instant>,
    schema: SchemaRef,
    config: Arc<FileScanConfig>,
    partition: usize,
    context: Arc<TaskContext>,
    /// DataFusion's work-stealing queue shared with the sibling partitions of
    /// this execution (see [`SiblingState`](super::exec)), if any.
    sibling_state: Option<Arc<dyn Any + Send + Sync>>,
    /// Retries and timeouts around the store the files are read from.
    retry: Option<RetryPolicy>,
    scan_metrics: ScanMetrics,
}

enum State {
    Uninitialized,
    Opening {
        stream: SendableRecordBatchStream,
        started: Instant,
    },
    Streaming(SendableRecordBatchStream),
    Done,
}

impl LazyScanStream {
    pub(crate) fn new(
        table: &str,
        config: Arc<FileScanConfig>,
        schema: SchemaRef,
        partition: usize,
        context: Arc<TaskContext>,
        metrics: &ExecutionPlanMetricsSet,
        sibling_state: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Self {
        let query = QueryContext::from_task_context(&context);
        let span = tracing::info_span!(
            "lakefusion.scan",
            query_id = %query.query_id,
            tenant_id = %query.tenant_id,
            table = %table,
            partition,
        );
        Self {
            state: State::Uninitialized,
            span,
            rows: 0,
            first_poll: None,
            schema,
            config,
            partition,
            context,
            sibling_state,
            retry: None,
            scan_metrics: ScanMetrics::new(metrics, partition),
        }
    }

    /// Reads the files through a [`ResilientStore`] with `retry`'s
    /// retries and timeouts (none: the runtime's store as it is).
    pub fn with_retry(mut self, retry: Option<RetryPolicy>) -> Self {
        self.retry = retry;
        self
    }

    /// Which state the stream is in: `"Uninitialized"`, `"Opening"`,
    /// `"Streaming"` or `"Done"`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Uninitialized => "Uninitialized",
            State::Opening { .. } => "Opening",
            State::Streaming(_) => "Streaming",
            State::Done => "Done",
        }
    }

    /// Moves to `Done`, dropping the file stream (and with it any read in
    /// flight), and records the scan's wall time.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(started) = self.first_poll.take() {
            self.scan_metrics.scan_time.add_duration(started.elapsed());
        }
    }

    /// Builds DataFusion's file stream over this partition's file group. Pure
    /// construction: the first I/O happens when the file stream is polled.
    fn open(&self) -> Result<SendableRecordBatchStream> {
        let config = &self.config;
        let mut source = Arc::clone(&config.file_source);
        if let Some(parquet) = source.downcast_ref::<ParquetSource>() {
            // Footers go through the runtime's metadata cache, as in a
            // ListingTable scan: a repeated query does not re-read them. The
            // cache lives in the executing runtime, so it is attached here,
            // not at planning time.
            let store = ResilientStore::wrap(
                self.context
                    .runtime_env()
                    .object_store(&config.object_store_url)?,
                self.retry,
            );
            let cache = self
                .context
                .runtime_env()
                .cache_manager
                .get_file_metadata_cache();
            let cached = CachedParquetFileReaderFactory::new(store, cache);
            let factory: Arc<dyn ParquetFileReaderFactory> =
                Arc::new(PageIndexCachingReaderFactory::new(
                    cached,
                    parquet.table_parquet_options().global.enable_page_index,
                    self.scan_metrics.open_readers.clone(),
                ));
            source = Arc::new(parquet.clone().with_parquet_file_reader_factory(factory));
        }
        let files = config
            .file_groups
            .get(self.partition)
            .map_or(0, |g| g.len());
        tracing::debug!(files, "opening scan partition");
        let opening = FileScanConfigBuilder::from(config.as_ref().clone())
            .with_source(Arc::new(NamingSource::new(source)))
            .build();
        let args = OpenArgs::new(self.partition, Arc::clone(&self.context))
            .with_shared_state(self.sibling_state.clone());
        opening.open_with_args(args)
    }
}

impl Stream for LazyScanStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let span = this.span.clone();
        let _entered = span.enter();
        loop {
            let polled = match &mut this.state {
                State::Uninitialized => {
                    this.first_poll = Some(Instant::now());
                    match this.open() {
                        Ok(stream) => {
                            this.state = State::Opening {
                                stream,
                                started: Instant::now(),
                            }
                        }
                        Err(e) => {
                            this.finish();
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                    continue;
                }
                State::Opening { stream, .. } | State::Streaming(stream) => {
                    ready!(stream.poll_next_unpin(cx))
                }
                State::Done => return Poll::Ready(None),
            };
            match polled {
                Some(Ok(batch)) => {
                    if let State::Opening { started, .. } = &this.state {
                        this.scan_metrics
                            .time_to_first_batch
                            .add_duration(started.elapsed());
                        if let State::Opening { stream, .. } =
                            std::mem::replace(&mut this.state, State::Done)
                        {
                            this.state = State::Streaming(stream);
                        }
                    }
                    this.rows += batch.num_rows();
                    return Poll::Ready(Some(Ok(batch)));
                }
                // Errors end the stream: a half-read partition must not be
                // continued as if the failed rows never existed.
                Some(Err(e)) => {
                    tracing::debug!(error = %e, rows = this.rows, "scan partition failed");
                    this.finish();
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    tracing::debug!(rows = this.rows, "scan partition done");
                    this.finish();
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl RecordBatchStream for LazyScanStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}
