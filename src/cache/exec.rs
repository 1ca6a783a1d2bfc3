//! [`CachedScanExec`]: a small scan served from the [`TableCache`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, Statistics};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coop::make_cooperative;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricCategory, MetricType, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{StreamExt, TryStreamExt};

use super::table_cache::{CacheFill, CacheKey, TableCache};
use crate::scan::PartitionedScanExec;

/// A [`PartitionedScanExec`] whose rows come from the shared [`TableCache`].
///
/// Put in place by [`SmallTableCacheRule`](super::SmallTableCacheRule) for
/// scans small enough to cache. It has the inner scan's schema, partitioning
/// and ordering.
///
/// # Runtime steps
///
/// 1. `execute(partition)` returns a stream; nothing happens until it is polled.
/// 2. On the first poll it looks the scan's [`CacheKey`] up in the cache.
/// 3. On a miss it runs every partition of the inner scan (once, however many
///    partitions and queries miss at the same time), caches the batches, and
///    serves its partition from them. On a hit it serves them from memory with
///    no object-store request at all.
///
/// `EXPLAIN` prints the key and the inner scan; `EXPLAIN ANALYZE` adds
/// `cache_hits`, `cache_misses` (per output partition), `cache_serve_time` (wall time
/// until the last batch was served) and, after a miss, the inner scan's metrics.
pub struct CachedScanExec {
    inner: Arc<PartitionedScanExec>,
    key: CacheKey,
    cache: TableCache,
    metrics: ExecutionPlanMetricsSet,
}

impl CachedScanExec {
    /// Serves `inner` through `cache`.
    pub fn new(inner: Arc<PartitionedScanExec>, cache: TableCache) -> Self {
        let inner = Arc::new(inner.without_runtime_filters());
        let key = cache_key(&inner);
        Self::with_key(inner, cache, key)
    }

    /// Serves `inner` through `cache` under `key`, which the caller vouches
    /// describes `inner`'s rows ([`new`](Self::new) computes it from the scan). Decoded plans
    /// never use this: an executor recomputes the key from the scan it
    /// decoded.
    pub fn with_key(inner: Arc<PartitionedScanExec>, cache: TableCache, key: CacheKey) -> Self {
        // Each output partition is served from a fill; fills must split the
        // rows across partitions identically, so no work stealing inside.
        // An entry outlives the query, so it is filled without the query's
        // dynamic filters.
        let inner = Arc::new(inner.without_runtime_filters().with_work_stealing(false));
        Self {
            inner,
            key,
            cache,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The scan this node caches.
    pub fn inner(&self) -> &Arc<PartitionedScanExec> {
        &self.inner
    }

    /// The cache key of the scan.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// The cache the rows live in.
    pub fn cache(&self) -> &TableCache {
        &self.cache
    }
}

/// The key of a scan: everything that determines its rows and their split into
/// output partitions — the store, every file with its size, modification time,
/// ETag and byte range (in group order), the partition values, the output
/// schema, the filters and the limit. A refresh that finds a changed file
/// therefore yields a different key, never a stale hit.
///
/// Every part is written with its length before it (`location=11:t/a.parquet`),
/// so the description reads back one way only: a file name or ETag (from
/// storage, or from a forged plan) that contains the text of other parts
/// cannot make two different scans describe themselves alike.
pub(crate) fn cache_key(scan: &PartitionedScanExec) -> CacheKey {
    let config = scan.file_scan_config();
    let mut d = KeyText::default();
    d.part("store", config.object_store_url.as_str());
    d.part("groups", config.file_groups.len());
    for group in &config.file_groups {
        d.part("files", group.len());
        for file in group.iter() {
            let meta = &file.object_meta;
            d.part("location", &meta.location);
            d.part("size", meta.size);
            d.part(
                "modified",
                meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
            );
            d.part("e_tag", meta.e_tag.as_deref().unwrap_or(""));
            match &file.range {
                Some(range) => d.part("range", format!("{}..{}", range.start, range.end)),
                None => d.part("range", ""),
            }
            d.part("values", file.partition_values.len());
            for value in &file.partition_values {
                d.part("value", format!("{value:?}"));
            }
        }
    }
    d.part("schema", format!("{:?}", scan.schema().fields()));
    d.part(
        "partition_filters",
        format!("{:?}", scan.partition_filters()),
    );
    d.part(
        "row_group_filters",
        format!("{:?}", scan.row_group_filters()),
    );
    d.part("limit", format!("{:?}", scan.limit()));
    CacheKey::new(d.0)
}

/// A cache key's description, built of length-prefixed parts.
#[derive(Default)]
struct KeyText(String);

impl KeyText {
    /// Appends `label=<length>:<value>;` (the length in bytes).
    fn part(&mut self, label: &str, value: impl fmt::Display) {
        use std::fmt::Write;
        let value = value.to_string();
        let _ = write!(self.0, "{label}={}:{value};", value.len());
    }
}

impl fmt::Debug for CachedScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedScanExec")
            .field("key", &self.key.digest())
            .field("inner", &self.inner)
            .finish()
    }
}

impl DisplayAs for CachedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !matches!(t, DisplayFormatType::TreeRender) {
            write!(f, "CachedScanExec: ")?;
        }
        write!(f, "key={}, ", self.key)?;
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for CachedScanExec {
    fn name(&self) -> &str {
        "CachedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::scan::leaf_without_children(self, children)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let partitions = self.inner.properties().partitioning.partition_count();
        if partition >= partitions.max(1) {
            return internal_err!(
                "CachedScanExec has {partitions} partitions, partition {partition} requested"
            );
        }
        let summary = || MetricBuilder::new(&self.metrics).with_type(MetricType::Summary);
        let hits: Count = summary().counter("cache_hits", partition);
        let misses: Count = summary().counter("cache_misses", partition);
        // Not `scan_time`: the inner scan reports its own under that name, and
        // `EXPLAIN ANALYZE` would add the two.
        let serve_time: Time = summary()
            .with_category(MetricCategory::Timing)
            .subset_time("cache_serve_time", partition);
        let (inner, key, cache) = (
            Arc::clone(&self.inner),
            self.key.clone(),
            self.cache.clone(),
        );
        let schema = self.schema();
        let batches = futures::stream::once(async move {
            let started = Instant::now();
            let pool = Arc::clone(&context.runtime_env().memory_pool);
            let filled = AtomicBool::new(false);
            let cached = cache
                .get_or_fill(&key, &pool, |reservation| {
                    filled.store(true, Ordering::Relaxed);
                    collect_reserved(inner, context, reservation)
                })
                .await?;
            if filled.load(Ordering::Relaxed) {
                misses.add(1);
            } else {
                hits.add(1);
            }
            let batches = cached.get(partition).cloned().unwrap_or_default();
            // Served from memory: the scan's wall time ends once the last batch
            // has been handed out.
            let done = futures::stream::once(async move {
                serve_time.add_duration(started.elapsed());
                None
            })
            .filter_map(futures::future::ready);
            Ok::<_, datafusion::error::DataFusionError>(
                futures::stream::iter(batches.into_iter().map(Ok)).chain(done),
            )
        })
        .try_flatten()
        .boxed();
        // Batches served from memory are always ready: without the task
        // budget a hit would never yield to the runtime.
        Ok(make_cooperative(Box::pin(RecordBatchStreamAdapter::new(
            schema, batches,
        ))))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        let mut metrics = self.metrics.clone_inner();
        if let Some(inner) = self.inner.metrics() {
            for metric in inner.iter() {
                metrics.push(Arc::clone(metric));
            }
        }
        Some(metrics)
    }

    #[allow(deprecated)]
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.inner.partition_statistics(partition)
    }
}

/// Runs every partition of `scan`, each in its own task, and collects its
/// batches, reserving each batch's memory in `fill` as it arrives. Dropping
/// the future aborts the tasks.
async fn collect_reserved(
    scan: Arc<PartitionedScanExec>,
    context: Arc<TaskContext>,
    fill: CacheFill,
) -> Result<Vec<Vec<RecordBatch>>> {
    let tasks = (0..scan.properties().output_partitioning().partition_count())
        .map(|partition| {
            let mut stream = scan.execute(partition, Arc::clone(&context))?;
            let fill = fill.clone();
            Ok(SpawnedTask::spawn(async move {
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    fill.grow(batch.get_array_memory_size());
                    batches.push(batch);
                }
                Ok::<_, DataFusionError>(batches)
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut partitions = Vec::with_capacity(tasks.len());
    for task in tasks {
        partitions.push(
            task.join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??,
        );
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_datasource::file_groups::FileGroup;
    use datafusion_datasource::PartitionedFile;
    use object_store::path::Path;
    use object_store::ObjectMeta;

    fn file(location: &str, size: u64, e_tag: &str) -> PartitionedFile {
        PartitionedFile::new_from_meta(ObjectMeta {
            location: Path::from_iter(location.split('/')),
            last_modified: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            size,
            e_tag: Some(e_tag.to_string()),
            version: None,
        })
    }

    /// A scan of `files`, in one group.
    fn scan(files: Vec<PartitionedFile>) -> PartitionedScanExec {
        PartitionedScanExec::for_tests(vec![FileGroup::new(files)])
    }

    /// A forged one-file scan whose ETag spells out the rest of another
    /// scan's two-file description must not get that scan's key: the key's
    /// parts cannot run into each other.
    #[test]
    fn a_forged_description_does_not_reach_another_scans_key() {
        let victim = scan(vec![
            file("t/a.parquet", 10, "x"),
            file("t/b.parquet", 20, "y"),
        ]);
        let nanos = 1_700_000_000_000_000_000i64;
        let forged = scan(vec![file(
            "t/a.parquet",
            10,
            &format!("x:[]|t/b.parquet:20:{nanos}:y"),
        )]);
        let (victim, forged) = (cache_key(&victim), cache_key(&forged));
        assert_ne!(victim.description(), forged.description());
        assert_ne!(victim, forged);
        // A name with the separators in it is no different.
        let named = scan(vec![file(
            &format!("t/a.parquet:10:{nanos}:x:[]|t/b.parquet"),
            20,
            "y",
        )]);
        assert_ne!(cache_key(&named).description(), victim.description());
    }
}
