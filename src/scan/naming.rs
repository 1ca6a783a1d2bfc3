//! Opening files: DataFusion's Parquet source, wrapped so that every error
//! names the file it came from.
//!
//! DataFusion's own errors for a bad footer ("Invalid Parquet file. Corrupt
//! footer") do not say which of thousands of files is broken; the wrappers
//! here attach the path at each step of a file's life: planning its morsels,
//! the I/O future that reads its metadata, and the batch stream of each morsel.
//!
//! [`NamingSource`] wraps the `FileSource` so that DataFusion's own
//! `FileScanConfig::open_with_args` — with its sibling work stealing — drives
//! the wrapped morselizer.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Statistics;
use datafusion::error::Result;
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion_datasource::file::FileSource;
use datafusion_datasource::file_scan_config::FileScanConfig;
use datafusion_datasource::file_stream::FileOpener;
use datafusion_datasource::morsel::{Morsel, MorselPlan, MorselPlanner, Morselizer};
use datafusion_datasource::table_schema::TableSchema;
use datafusion_datasource::PartitionedFile;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::ObjectStore;

use crate::error::Error;

/// A [`FileSource`] whose morselizer names the file in every error.
///
/// It exists only for the duration of opening a scan (it is never planned,
/// displayed or serialized), so it delegates what opening uses and leaves the
/// planning-time hooks at their defaults.
#[derive(Clone)]
pub(crate) struct NamingSource {
    inner: Arc<dyn FileSource>,
}

impl NamingSource {
    pub(crate) fn new(inner: Arc<dyn FileSource>) -> Self {
        Self { inner }
    }
}

impl FileSource for NamingSource {
    fn create_file_opener(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        self.inner
            .create_file_opener(object_store, base_config, partition)
    }

    fn create_morselizer(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Box<dyn Morselizer>> {
        let inner = self
            .inner
            .create_morselizer(object_store, base_config, partition)?;
        let unknown = Arc::new(Statistics::new_unknown(
            self.inner.table_schema().file_schema(),
        ));
        Ok(Box::new(NamingMorselizer::new(inner, unknown)))
    }

    fn table_schema(&self) -> &TableSchema {
        self.inner.table_schema()
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        Arc::new(Self::new(self.inner.with_batch_size(batch_size)))
    }

    fn filter(&self) -> Option<Arc<dyn PhysicalExpr>> {
        self.inner.filter()
    }

    fn projection(&self) -> Option<&ProjectionExprs> {
        self.inner.projection()
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        self.inner.metrics()
    }

    fn file_type(&self) -> &str {
        self.inner.file_type()
    }

    fn reorder_files(&self, files: Vec<PartitionedFile>) -> Vec<PartitionedFile> {
        self.inner.reorder_files(files)
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }
}

/// A [`Morselizer`] that names the file in every error of the inner one.
///
/// It also gives every file statistics: files of a table built without
/// `collect_statistics` have none, and DataFusion's Parquet opener only
/// prunes a file before opening it (by its partition values, under a
/// dynamic filter) when the file carries statistics, even unknown ones.
pub(crate) struct NamingMorselizer {
    inner: Box<dyn Morselizer>,
    unknown: Arc<Statistics>,
}

impl NamingMorselizer {
    pub(crate) fn new(inner: Box<dyn Morselizer>, unknown: Arc<Statistics>) -> Self {
        Self { inner, unknown }
    }
}

impl fmt::Debug for NamingMorselizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamingMorselizer")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Morselizer for NamingMorselizer {
    fn plan_file(&self, mut file: PartitionedFile) -> Result<Box<dyn MorselPlanner>> {
        let path: Arc<str> = Arc::from(file.object_meta.location.as_ref());
        if file.statistics.is_none() {
            // Partition-column statistics are derived from the file's values.
            file = file.with_statistics(Arc::clone(&self.unknown));
        }
        let inner = self
            .inner
            .plan_file(file)
            .map_err(|e| Error::read_file(path.as_ref(), e))?;
        Ok(Box::new(NamingPlanner { inner, path }))
    }
}

#[derive(Debug)]
struct NamingPlanner {
    inner: Box<dyn MorselPlanner>,
    path: Arc<str>,
}

impl MorselPlanner for NamingPlanner {
    fn plan(self: Box<Self>) -> Result<Option<MorselPlan>> {
        let path = self.path;
        let Some(mut plan) = self
            .inner
            .plan()
            .map_err(|e| Error::read_file(path.as_ref(), e))?
        else {
            return Ok(None);
        };
        Ok(Some(wrap_plan(&mut plan, &path)))
    }
}

fn wrap_plan(plan: &mut MorselPlan, path: &Arc<str>) -> MorselPlan {
    let morsels = plan
        .take_morsels()
        .into_iter()
        .map(|inner| {
            Box::new(NamingMorsel {
                inner,
                path: Arc::clone(path),
            }) as Box<dyn Morsel>
        })
        .collect();
    let planners = plan
        .take_ready_planners()
        .into_iter()
        .map(|inner| {
            Box::new(NamingPlanner {
                inner,
                path: Arc::clone(path),
            }) as Box<dyn MorselPlanner>
        })
        .collect();
    let mut wrapped = MorselPlan::new()
        .with_morsels(morsels)
        .with_planners(planners);
    if let Some(pending) = plan.take_pending_planner() {
        let path = Arc::clone(path);
        wrapped.set_pending_planner(async move {
            match pending.await {
                Ok(inner) => Ok(Box::new(NamingPlanner { inner, path }) as Box<dyn MorselPlanner>),
                Err(e) => Err(Error::read_file(path.as_ref(), e)),
            }
        });
    }
    wrapped
}

#[derive(Debug)]
struct NamingMorsel {
    inner: Box<dyn Morsel>,
    path: Arc<str>,
}

impl Morsel for NamingMorsel {
    fn into_stream(self: Box<Self>) -> BoxStream<'static, Result<RecordBatch>> {
        let path = self.path;
        self.inner
            .into_stream()
            .map(move |r| r.map_err(|e| Error::read_file(path.as_ref(), e)))
            .boxed()
    }
}
