//! [`LakefusionPhysicalCodec`]: `PartitionedScanExec` and `CachedScanExec` as metadata.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_datasource::file_scan_config::{FileScanConfig, FileScanConfigBuilder};
use datafusion_proto::logical_plan::from_proto::parse_exprs;
use datafusion_proto::logical_plan::to_proto::serialize_exprs;
use datafusion_proto::logical_plan::DefaultLogicalExtensionCodec;
use datafusion_proto::physical_plan::{
    AsExecutionPlan, DefaultPhysicalExtensionCodec, PhysicalExtensionCodec,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use datafusion_proto::protobuf::{LogicalExprNode, PhysicalPlanNode};
use prost::Message;

use super::composite::decode_without_panics;
use super::files::FileGroupsNode;
use super::roots::AllowedRoots;
use super::store_factory::{ensure_store, ObjectStoreFactory};
use crate::cache::{CachedScanExec, TableCache};
use crate::distributed::{executor_node, DistributedScanExec};
use crate::error::Error;
use crate::scan::{PartitionedScanExec, ScanDescription};
use crate::store::RetryPolicy;

/// The wire form of a [`ScanDescription`]: one message for every form a
/// scan travels in. (Its bucketing note is for `EXPLAIN` where the scan was
/// planned, and is not sent.)
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ScanDescriptionNode {
    #[prost(string, tag = "1")]
    pub table: String,
    #[prost(uint64, tag = "2")]
    pub selected_partitions: u64,
    #[prost(uint64, tag = "3")]
    pub total_partitions: u64,
    #[prost(message, repeated, tag = "4")]
    pub partition_filters: Vec<LogicalExprNode>,
    #[prost(message, repeated, tag = "5")]
    pub row_group_filters: Vec<LogicalExprNode>,
    #[prost(message, optional, tag = "6")]
    pub retry: Option<RetryNode>,
    /// For `EXPLAIN` on the executor: the files skipped by statistics.
    #[prost(uint64, tag = "7")]
    pub files_skipped: u64,
}

impl ScanDescriptionNode {
    fn encode(description: &ScanDescription) -> Result<Self> {
        let logical = DefaultLogicalExtensionCodec {};
        Ok(Self {
            table: description.table.to_string(),
            selected_partitions: description.selected_partitions as u64,
            total_partitions: description.total_partitions as u64,
            partition_filters: serialize_exprs(&description.partition_filters, &logical)?,
            row_group_filters: serialize_exprs(&description.row_group_filters, &logical)?,
            retry: description.retry.map(RetryNode::from),
            files_skipped: description.files_skipped as u64,
        })
    }

    fn decode(self, ctx: &TaskContext) -> Result<ScanDescription> {
        let logical = DefaultLogicalExtensionCodec {};
        Ok(ScanDescription {
            partition_filters: parse_exprs(&self.partition_filters, ctx, &logical)?,
            row_group_filters: parse_exprs(&self.row_group_filters, ctx, &logical)?,
            table: Arc::from(self.table),
            selected_partitions: self.selected_partitions as usize,
            total_partitions: self.total_partitions as usize,
            retry: self.retry.map(RetryPolicy::from),
            bucketing_note: None,
            files_skipped: self.files_skipped as usize,
        })
    }
}

/// The wire form of a [`PartitionedScanExec`]: its description and its files.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ScanNode {
    #[prost(message, optional, tag = "1")]
    pub description: Option<ScanDescriptionNode>,
    /// The file scan (schema, partition columns, projection, row-group
    /// predicate, Parquet options, limit, statistics) as datafusion-proto
    /// writes a Parquet `DataSourceExec`, without its files: those are in
    /// `files`.
    #[prost(message, optional, tag = "2")]
    pub file_scan: Option<PhysicalPlanNode>,
    /// The file groups, in a compact columnar form.
    #[prost(message, optional, tag = "3")]
    pub files: Option<FileGroupsNode>,
}

/// The wire form of a [`RetryPolicy`] (durations in milliseconds).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RetryNode {
    #[prost(uint32, tag = "1")]
    pub max_retries: u32,
    #[prost(uint64, tag = "2")]
    pub initial_backoff_ms: u64,
    #[prost(uint64, tag = "3")]
    pub max_backoff_ms: u64,
    #[prost(uint64, tag = "4")]
    pub request_timeout_ms: u64,
}

impl From<RetryPolicy> for RetryNode {
    /// Taken apart exhaustively: a field added to the policy does not
    /// compile here until it travels.
    fn from(policy: RetryPolicy) -> Self {
        let RetryPolicy {
            max_retries,
            initial_backoff,
            max_backoff,
            request_timeout,
        } = policy;
        Self {
            max_retries,
            initial_backoff_ms: initial_backoff.as_millis() as u64,
            max_backoff_ms: max_backoff.as_millis() as u64,
            request_timeout_ms: request_timeout.as_millis() as u64,
        }
    }
}

impl From<RetryNode> for RetryPolicy {
    fn from(node: RetryNode) -> Self {
        Self {
            max_retries: node.max_retries,
            initial_backoff: Duration::from_millis(node.initial_backoff_ms),
            max_backoff: Duration::from_millis(node.max_backoff_ms),
            request_timeout: Duration::from_millis(node.request_timeout_ms),
        }
    }
}

/// The wire form of a [`CachedScanExec`]: its scan. The cache key is not on
/// the wire: an executor computes it from the scan it decoded, so a plan
/// cannot name another entry's key and be served that entry's rows. (Tag 2
/// carried the planner's key before; it is ignored.)
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CachedScanNode {
    #[prost(message, optional, tag = "1")]
    pub scan: Option<ScanNode>,
}

/// The wire form of a [`DistributedScanExec`]: its scan's description; the
/// file scan itself is the node's input, which datafusion-proto encodes.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DistributedScanNode {
    #[prost(message, optional, tag = "1")]
    pub description: Option<ScanDescriptionNode>,
    #[prost(bool, tag = "2")]
    pub cached: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PlanNode {
    #[prost(oneof = "plan_node::Node", tags = "1, 2, 3")]
    pub node: Option<plan_node::Node>,
}

pub(crate) mod plan_node {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Node {
        #[prost(message, tag = "1")]
        Scan(super::ScanNode),
        #[prost(message, tag = "2")]
        CachedScan(super::CachedScanNode),
        #[prost(message, tag = "3")]
        DistributedScan(super::DistributedScanNode),
    }
}

/// Encodes [`PartitionedScanExec`] and [`CachedScanExec`] as metadata only:
/// the table root, schema and partition columns, the file groups (paths,
/// sizes, byte ranges, partition values), the projection, the filters (with
/// datafusion-proto's expression serialization), the limit and the
/// statistics. A cached scan's key is not sent: the executor computes it from
/// the decoded scan (files with their ETags included).
///
/// No connection, object store or cache is ever encoded. On decode they come
/// from what was injected here: the executor's [`TableCache`] for cached
/// scans, and an [`ObjectStoreFactory`] for stores the executor's registry
/// does not have yet. The declared partitioning and ordering follow from the
/// decoded file groups, exactly as on the planning side.
#[derive(Debug, Clone, Default)]
pub struct LakefusionPhysicalCodec {
    cache: Option<TableCache>,
    object_stores: Option<Arc<dyn ObjectStoreFactory>>,
    allowed_roots: AllowedRoots,
}

impl LakefusionPhysicalCodec {
    /// The stable name this codec is registered under in a
    /// [`CompositePhysicalCodec`](super::CompositePhysicalCodec).
    pub const NAME: &'static str = "lakefusion.scan";

    /// A codec with nothing injected: cached scans decode uncached, and only
    /// stores already in the executor's registry can be used.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cached scans decode into this (the executor's) cache.
    pub fn with_cache(mut self, cache: TableCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Stores missing from the executor's registry are created with `factory`.
    pub fn with_object_store_factory(mut self, factory: Arc<dyn ObjectStoreFactory>) -> Self {
        self.object_stores = Some(factory);
        self
    }

    /// Only plans whose files are all under these roots are decoded.
    pub fn with_allowed_roots(mut self, roots: AllowedRoots) -> Self {
        self.allowed_roots = roots;
        self
    }

    fn encode_scan(scan: &PartitionedScanExec) -> Result<ScanNode> {
        // Everything but the files, which are encoded apart (and not copied).
        let config = scan.file_scan_config();
        let without_files = FileScanConfigBuilder::new(
            config.object_store_url.clone(),
            Arc::clone(&config.file_source),
        )
        .with_constraints(config.constraints.clone())
        .with_statistics(config.statistics())
        .with_limit(config.limit)
        .with_preserve_order(config.preserve_order)
        .with_output_ordering(config.output_ordering.clone())
        .with_output_partitioning(config.output_partitioning.clone())
        .with_file_compression_type(config.file_compression_type)
        .with_batch_size(config.batch_size)
        .build();
        let data_source =
            Arc::new(DataSourceExec::new(Arc::new(without_files))) as Arc<dyn ExecutionPlan>;
        let file_scan = PhysicalPlanNode::try_from_physical_plan(
            data_source,
            &DefaultPhysicalExtensionCodec {},
        )?;
        Ok(ScanNode {
            description: Some(ScanDescriptionNode::encode(scan.description())?),
            file_scan: Some(file_scan),
            files: Some(FileGroupsNode::encode(scan.table(), &config.file_groups)?),
        })
    }

    fn decode_scan(&self, node: ScanNode, ctx: &TaskContext) -> Result<PartitionedScanExec> {
        let description = node
            .description
            .ok_or_else(|| malformed("?", "a scan without its description"))?
            .decode(ctx)?;
        let table = &description.table;
        let file_scan = node
            .file_scan
            .as_ref()
            .ok_or_else(|| malformed(table, "it has no file scan"))?;
        // DataFusion's decoding of a Parquet scan looks its store up: the
        // store must be allowed, and reachable, before.
        let Some(PhysicalPlanType::ParquetScan(parquet)) = &file_scan.physical_plan_type else {
            return Err(malformed(table, "its file scan is not a Parquet file scan"));
        };
        // An empty URL is the local file system, as DataFusion decodes it.
        let store = match parquet
            .base_conf
            .as_ref()
            .map(|c| c.object_store_url.as_str())
        {
            None | Some("") => ObjectStoreUrl::local_filesystem(),
            Some(url) => ObjectStoreUrl::parse(url)
                .map_err(|_| malformed(table, "its object store URL does not parse"))?,
        };
        self.allowed_roots.check_store(table, store.as_str())?;
        ensure_store(
            ctx.runtime_env().as_ref(),
            &store,
            self.object_stores.as_ref(),
        )?;
        let plan = file_scan.try_into_physical_plan(ctx, &DefaultPhysicalExtensionCodec {})?;
        let not_parquet = || malformed(table, "its file scan is not a Parquet file scan");
        let source: Arc<dyn Any + Send + Sync> = plan
            .downcast_ref::<DataSourceExec>()
            .map(|exec| Arc::clone(exec.data_source()))
            .ok_or_else(not_parquet)?;
        // With the decoded plan gone, its file list is ours to take, not copy.
        drop(plan);
        let mut config = Arc::unwrap_or_clone(
            source
                .downcast::<FileScanConfig>()
                .map_err(|_| not_parquet())?,
        );
        if let Some(files) = node.files {
            config.file_groups = files.decode(table)?;
        }
        self.allowed_roots.check(table, &config)?;
        // On Ballista a task runs one partition of its own copy of the plan:
        // sharing a work queue between copies would read every file in every
        // task. On datafusion-distributed a task's partitions may be pulled
        // at different times by different consumers, so each reads its own
        // group there too.
        Ok(PartitionedScanExec::new(description, config).with_work_stealing(false))
    }

    /// Refuses files outside the allowed roots, and makes sure this
    /// executor can reach the scan's store.
    fn check_and_reach(
        &self,
        table: &str,
        config: &FileScanConfig,
        ctx: &TaskContext,
    ) -> Result<()> {
        self.allowed_roots.check(table, config)?;
        ensure_store(
            ctx.runtime_env().as_ref(),
            &config.object_store_url,
            self.object_stores.as_ref(),
        )
    }
}

fn malformed(table: &str, why: &str) -> DataFusionError {
    Error::MalformedPlan {
        codec: LakefusionPhysicalCodec::NAME,
        table: table.to_string(),
        what: "the scan",
        detail: why.to_string(),
    }
    .into()
}

impl PhysicalExtensionCodec for LakefusionPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        decode_without_panics::<Arc<dyn ExecutionPlan>>(Self::NAME, buf.len(), || {
            let node = PlanNode::decode(buf).map_err(|e| Error::CodecBytes {
                codec: Self::NAME.to_string(),
                what: "lakefusion plan node",
                bytes: buf.len(),
                source: Box::new(e),
            })?;
            match node.node {
                Some(plan_node::Node::Scan(scan)) => Ok(Arc::new(self.decode_scan(scan, ctx)?)),
                Some(plan_node::Node::CachedScan(cached)) => {
                    let scan_node = cached
                        .scan
                        .ok_or_else(|| malformed("?", "a cached scan without its scan"))?;
                    let scan = self.decode_scan(scan_node, ctx)?;
                    Ok(match &self.cache {
                        // The key is computed here, from what this executor
                        // will read, never taken from the bytes.
                        Some(cache) => Arc::new(CachedScanExec::new(Arc::new(scan), cache.clone())),
                        // No cache on this executor: run the scan itself.
                        None => Arc::new(scan),
                    })
                }
                Some(plan_node::Node::DistributedScan(node)) => {
                    let description = node
                        .description
                        .ok_or_else(|| {
                            malformed("?", "a distributed scan without its description")
                        })?
                        .decode(ctx)?;
                    let [child] = inputs else {
                        return Err(malformed(
                            &description.table,
                            &format!(
                                "a distributed scan with {} inputs, expected 1",
                                inputs.len()
                            ),
                        ));
                    };
                    let carrier = DistributedScanExec::from_parts(
                        description,
                        Arc::clone(child),
                        node.cached,
                    );
                    self.check_and_reach(
                        &carrier.description().table,
                        carrier.file_scan_config()?,
                        ctx,
                    )?;
                    executor_node(&carrier, self.cache.as_ref())
                }
                None => Err(malformed("?", "a plan node without a node type")),
            }
        })
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let node = if let Some(scan) = node.downcast_ref::<PartitionedScanExec>() {
            plan_node::Node::Scan(Self::encode_scan(scan)?)
        } else if let Some(carrier) = node.downcast_ref::<DistributedScanExec>() {
            plan_node::Node::DistributedScan(DistributedScanNode {
                description: Some(ScanDescriptionNode::encode(carrier.description())?),
                cached: carrier.cached(),
            })
        } else if let Some(cached) = node.downcast_ref::<CachedScanExec>() {
            plan_node::Node::CachedScan(CachedScanNode {
                scan: Some(Self::encode_scan(cached.inner())?),
            })
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} does not encode {}",
                Self::NAME,
                node.name()
            )));
        };
        PlanNode { node: Some(node) }
            .encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("{}: encoding: {e}", Self::NAME)))
    }
}
