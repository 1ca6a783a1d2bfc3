//! [`LazyScanStream`]: the stream of one output partition of a scan.

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
use datafusion_datasource::file::FileSource;
use datafusion_datasource::file_groups::FileGroup;
use datafusion_datasource::file_scan_config::{FileScanConfig, FileScanConfigBuilder};
use datafusion_datasource::source::{DataSource, OpenArgs};
use futures::{ready, Stream, StreamExt};
use object_store::ObjectStore;

use super::metrics::ScanMetrics;
use super::naming::NamingSource;
use super::read_ahead::{file_reads, read_ahead_options, read_order};
use super::reader::{IndexWithFooter, PageIndexCachingReaderFactory};
use super::siblings::Siblings;
use crate::lake::learned::{LearnedKey, LearnedStatistics};
use crate::settings::{QueryContext, ScanOptions};
use crate::store::read_ahead::{ReadAhead, ReadAheadMetrics};
use crate::store::{ResilientStore, RetryPolicy, StoreKind};

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
/// drops its in-flight reads. On an object store it reads through the
/// execution's read-ahead, whose reads run in a task of its own; that task
/// is aborted, its requests with it, when the last stream of the execution
/// ends or is dropped, so nothing outlives the streams.
pub(crate) struct LazyScanStream {
    state: State,
    /// `lakefusion.scan`, entered on every poll: whatever the stream (and
    /// DataFusion's reader under it) logs carries the query, tenant, table and
    /// partition.
    span: tracing::Span,
    /// The table's display name (names the read-ahead's memory reservation).
    table: Arc<str>,
    rows: usize,
    first_poll: Option<Instant>,
    schema: SchemaRef,
    config: Arc<FileScanConfig>,
    partition: usize,
    context: Arc<TaskContext>,
    /// DataFusion's work-stealing queue and the read-ahead shared with the
    /// sibling partitions of this execution (see `SiblingState`), if any.
    siblings: Option<Siblings>,
    /// The read-ahead this stream reads through while it is open.
    read_ahead: Option<Arc<ReadAhead>>,
    metrics: ExecutionPlanMetricsSet,
    /// Retries and timeouts around the store the files are read from.
    retry: Option<RetryPolicy>,
    scan_metrics: ScanMetrics,
    /// What the footers this stream reads teach is kept under.
    learned_key: Arc<LearnedKey>,
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
    // What every partition of the scan shares, and its own partition,
    // context and siblings: grouping them would only rename the exec.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        table: Arc<str>,
        config: Arc<FileScanConfig>,
        schema: SchemaRef,
        partition: usize,
        context: Arc<TaskContext>,
        metrics: &ExecutionPlanMetricsSet,
        siblings: Option<Siblings>,
        learned_key: Arc<LearnedKey>,
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
            table,
            rows: 0,
            first_poll: None,
            schema,
            config,
            partition,
            context,
            siblings,
            read_ahead: None,
            metrics: metrics.clone(),
            retry: None,
            scan_metrics: ScanMetrics::new(metrics, partition),
            learned_key,
        }
    }

    /// Reads the files through a [`ResilientStore`] with `retry`'s
    /// retries and timeouts (none: the runtime's store as it is).
    pub(crate) fn with_retry(mut self, retry: Option<RetryPolicy>) -> Self {
        self.retry = retry;
        self
    }

    /// Moves to `Done`, dropping the file stream (and with it any read in
    /// flight), and records the scan's wall time.
    fn finish(&mut self) {
        self.state = State::Done;
        // The last stream of an execution to let go cancels what is still
        // being read ahead.
        self.read_ahead = None;
        if let Some(started) = self.first_poll.take() {
            self.scan_metrics.scan_time.add_duration(started.elapsed());
        }
    }

    /// Builds DataFusion's file stream over this partition's file group. Pure
    /// construction: the first I/O happens when the file stream is polled.
    fn open(&mut self) -> Result<SendableRecordBatchStream> {
        let config = Arc::clone(&self.config);
        let mut source = Arc::clone(&config.file_source);
        if let Some(parquet) = source.downcast_ref::<ParquetSource>() {
            // Footers go through the runtime's metadata cache, as in a
            // ListingTable scan: a repeated query does not re-read them. The
            // cache lives in the executing runtime, so it is attached here,
            // not at planning time.
            let mut store = ResilientStore::wrap(
                self.context
                    .runtime_env()
                    .object_store(&config.object_store_url)?,
                self.retry,
            );
            self.read_ahead = self.start_read_ahead(&store);
            if let Some(read_ahead) = &self.read_ahead {
                store = read_ahead.store();
            }
            let cache = self
                .context
                .runtime_env()
                .cache_manager
                .get_file_metadata_cache();
            let page_index = parquet
                .table_parquet_options()
                .global
                .enable_page_index
                .then(|| IndexWithFooter::new(Arc::clone(&cache)));
            let cached = CachedParquetFileReaderFactory::new(store, cache);
            let factory: Arc<dyn ParquetFileReaderFactory> =
                Arc::new(PageIndexCachingReaderFactory::new(
                    cached,
                    page_index,
                    self.scan_metrics.open_readers.clone(),
                    self.read_ahead.as_ref().map(|r| r.releaser()),
                    LearnedStatistics::of(self.context.runtime_env().as_ref(), &self.learned_key),
                ));
            source = Arc::new(parquet.clone().with_parquet_file_reader_factory(factory));
        }
        let files = config
            .file_groups
            .get(self.partition)
            .map_or(0, |g| g.len());
        tracing::debug!(files, "opening scan partition");
        let opening = opening_config(&config, self.partition, Arc::new(NamingSource::new(source)));
        let args = OpenArgs::new(self.partition, Arc::clone(&self.context))
            .with_shared_state(self.siblings.as_ref().map(|s| Arc::clone(&s.queue)));
        opening.open_with_args(args)
    }

    /// The read-ahead this partition reads through: the one its siblings
    /// share (started here if this is the first of them to be polled), or
    /// one over its own file group; `None` where the session's
    /// [`ScanOptions`] say not to read ahead.
    fn start_read_ahead(&self, store: &Arc<dyn ObjectStore>) -> Option<Arc<ReadAhead>> {
        let config = &self.config;
        let shared = self.siblings.as_ref().map(|s| &s.read_ahead);
        let options = read_ahead_options(
            StoreKind::of_store(&config.object_store_url),
            || ScanOptions::from_task_context(&self.context),
            config.file_groups.len(),
            config.limit,
            shared.is_some(),
            || file_reads(config),
        )?;
        let start = || {
            let files = read_order(config, shared.is_none().then_some(self.partition));
            ReadAhead::start(
                &self.table,
                Arc::clone(store),
                files,
                options,
                &self.context.runtime_env().memory_pool,
                ReadAheadMetrics::new(&self.metrics),
                Some(
                    self.context
                        .runtime_env()
                        .cache_manager
                        .get_file_metadata_cache(),
                ),
            )
        };
        Some(match shared {
            Some(shared) => shared.get_or_start(start),
            None => Arc::new(start()),
        })
    }
}

/// `config` as the file stream of its `partition` opens it: reading
/// through `source`, with that partition's file group only (the others
/// empty) and unknown statistics. Opening reads neither the other groups
/// (sibling partitions share theirs through the work-stealing queue, built
/// from the scan's own config) nor the statistics, and copying them for
/// every partition cost a short query more than the rest of its opening,
/// and a scan of many files one copy of every file per partition.
fn opening_config(
    config: &FileScanConfig,
    partition: usize,
    source: Arc<dyn FileSource>,
) -> FileScanConfig {
    let file_groups = config
        .file_groups
        .iter()
        .enumerate()
        .map(|(i, group)| {
            if i == partition {
                group.clone()
            } else {
                FileGroup::default()
            }
        })
        .collect();
    FileScanConfigBuilder::new(config.object_store_url.clone(), source)
        .with_limit(config.limit)
        .with_preserve_order(config.preserve_order)
        .with_constraints(config.constraints.clone())
        .with_file_groups(file_groups)
        .with_output_ordering(config.output_ordering.clone())
        .with_output_partitioning(config.output_partitioning.clone())
        .with_file_compression_type(config.file_compression_type)
        .with_batch_size(config.batch_size)
        .with_expr_adapter(config.expr_adapter_factory.clone())
        .build()
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::{Constraint, Constraints};
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_expr::{LexOrdering, Partitioning, PhysicalSortExpr};
    use datafusion_datasource::file_compression_type::FileCompressionType;
    use datafusion_datasource::{PartitionedFile, TableSchema};

    use super::*;
    use crate::scan::schema::StrictExprAdapterFactory;

    /// Every field of the planned scan that opening reads reaches the
    /// partition's file stream unchanged; of the files, only its own group.
    #[test]
    fn a_partition_opens_the_scan_as_planned_with_only_its_own_files() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let source: Arc<dyn FileSource> = Arc::new(ParquetSource::new(
            TableSchema::builder(Arc::clone(&schema)).build(),
        ));
        let group = |names: &[&str]| {
            FileGroup::new(
                names
                    .iter()
                    .map(|n| PartitionedFile::new(n.to_string(), 10))
                    .collect(),
            )
        };
        let ordering = LexOrdering::new(vec![PhysicalSortExpr::new_default(Arc::new(
            Column::new("v", 0),
        ))])
        .unwrap();
        let planned = FileScanConfigBuilder::new(
            ObjectStoreUrl::parse("s3://bucket").unwrap(),
            Arc::clone(&source),
        )
        .with_limit(Some(7))
        .with_constraints(Constraints::new_unverified(vec![Constraint::Unique(vec![
            0,
        ])]))
        .with_file_groups(vec![group(&["a", "b"]), group(&["c"]), group(&["d"])])
        .with_output_ordering(vec![ordering])
        .with_output_partitioning(Some(Partitioning::UnknownPartitioning(3)))
        .with_file_compression_type(FileCompressionType::ZSTD)
        .with_batch_size(Some(5))
        .with_expr_adapter(Some(Arc::new(StrictExprAdapterFactory)))
        .build();
        let naming: Arc<dyn FileSource> = Arc::new(NamingSource::new(Arc::clone(&source)));
        let opening = opening_config(&planned, 1, Arc::clone(&naming));

        assert_eq!(opening.object_store_url, planned.object_store_url);
        assert!(Arc::ptr_eq(&opening.file_source, &naming));
        assert_eq!(opening.limit, Some(7));
        assert!(opening.preserve_order && planned.preserve_order);
        assert_eq!(opening.constraints, planned.constraints);
        assert_eq!(opening.output_ordering, planned.output_ordering);
        assert_eq!(
            format!("{:?}", opening.output_partitioning),
            format!("{:?}", planned.output_partitioning)
        );
        assert_eq!(opening.file_compression_type, FileCompressionType::ZSTD);
        assert_eq!(opening.batch_size, Some(5));
        assert!(matches!(
            (&opening.expr_adapter_factory, &planned.expr_adapter_factory),
            (Some(a), Some(b)) if Arc::ptr_eq(a, b)
        ));
        assert_eq!(
            crate::scan::group_paths(&opening.file_groups),
            vec![vec![], vec!["c".to_string()], vec![]]
        );
        assert_eq!(
            opening.projected_schema().unwrap(),
            planned.projected_schema().unwrap()
        );
    }
}
