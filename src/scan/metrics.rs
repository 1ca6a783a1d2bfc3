//! Metrics of a [`PartitionedScanExec`](super::PartitionedScanExec).
//!
//! A scan reports three families of metrics in `EXPLAIN ANALYZE`:
//!
//! * these, recorded by `LazyScanStream`:
//!   `time_to_first_batch`, `scan_time` and `open_readers`;
//! * DataFusion's `FileStream` metrics: `files_opened`, `files_processed`,
//!   `output_rows`, `elapsed_compute`, `time_elapsed_opening`, …;
//! * DataFusion's Parquet metrics: `row_groups_pruned_statistics` (pruned and
//!   matched, i.e. read, row groups), `bytes_scanned`, `page_index_rows_pruned`,
//!   `metadata_load_time`, …;
//! * on object stores, the read-ahead's, once per execution:
//!   `read_ahead_requests` (`Summary`), `read_ahead_bytes`, `read_ahead_hits`
//!   (reads answered from it) and `read_ahead_peak_bytes` (`Dev`).
//!
//! `scan_time` and `time_to_first_batch` are `Summary` metrics (shown under
//! `datafusion.explain.analyze_level = summary`), `open_readers` is `Dev`.

use datafusion::physical_plan::metrics::{
    ExecutionPlanMetricsSet, Gauge, MetricBuilder, MetricCategory, MetricType, Time,
};

/// The scan metrics lakefusion records itself, for one output partition.
#[derive(Debug, Clone)]
pub struct ScanMetrics {
    /// Wall time from the first poll of the stream to its first batch: the
    /// latency a consumer of the scan sees, including opening the first file.
    pub time_to_first_batch: Time,
    /// Wall time from the first poll to the end of the stream: what the scan
    /// costs its consumer, waiting on storage included (`elapsed_compute`
    /// counts CPU only).
    pub scan_time: Time,
    /// Parquet readers open right now. Each holds a file's footer and
    /// buffers; it rises as files are opened and falls as they are finished
    /// or dropped, so after the stream ends — or is dropped mid-file — it is
    /// 0. A value above 0 on a finished query would be a leak.
    pub open_readers: Gauge,
}

impl ScanMetrics {
    /// Registers the metrics of output partition `partition` in `metrics`.
    pub fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let timing = || {
            MetricBuilder::new(metrics)
                .with_type(MetricType::Summary)
                .with_category(MetricCategory::Timing)
        };
        Self {
            time_to_first_batch: timing().subset_time("time_to_first_batch", partition),
            scan_time: timing().subset_time("scan_time", partition),
            open_readers: MetricBuilder::new(metrics)
                .with_type(MetricType::Dev)
                .with_category(MetricCategory::Uncategorized)
                .gauge("open_readers", partition),
        }
    }
}
