//! [`LakefusionLogicalCodec`]: `PartitionedTable` for the client-to-scheduler hop.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::{ScalarValue, Statistics, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::protobuf;
use object_store::path::Path;
use object_store::ObjectMeta;
use prost::Message;

use super::composite::{decode_without_panics, Envelope};
use super::physical::RetryNode;
use crate::error::Error;
use crate::store::RetryPolicy;
use crate::table::layout::TableSort;
use crate::table::{
    Bucketing, IndexedFile, Partition, PartitionIndex, PartitionSpec, PartitionedTable, SortKey,
};

#[derive(Clone, PartialEq, prost::Message)]
struct TableNode {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    root: String,
    #[prost(message, optional, tag = "3")]
    file_schema: Option<protobuf::Schema>,
    /// The partition columns, outermost first, as a schema.
    #[prost(message, optional, tag = "4")]
    partition_columns: Option<protobuf::Schema>,
    #[prost(bool, tag = "5")]
    collect_statistics: bool,
    #[prost(string, tag = "6")]
    file_extension: String,
    #[prost(message, repeated, tag = "7")]
    partitions: Vec<PartitionNode>,
    /// The bucketing column and count (count 0: not bucketed).
    #[prost(string, tag = "8")]
    bucket_column: String,
    #[prost(uint64, tag = "9")]
    buckets: u64,
    /// The sort order as recorded in file metadata (empty: not sorted), and
    /// whether it was declared (trusting files that record none).
    #[prost(string, tag = "10")]
    sort_order: String,
    #[prost(bool, tag = "11")]
    sort_declared: bool,
    #[prost(message, optional, tag = "12")]
    retry: Option<RetryNode>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PartitionNode {
    #[prost(message, repeated, tag = "1")]
    values: Vec<protobuf::ScalarValue>,
    #[prost(message, repeated, tag = "2")]
    files: Vec<FileNode>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileNode {
    #[prost(string, tag = "1")]
    location: String,
    #[prost(uint64, tag = "2")]
    size: u64,
    #[prost(int64, tag = "3")]
    last_modified_nanos: i64,
    #[prost(string, optional, tag = "4")]
    e_tag: Option<String>,
    #[prost(string, optional, tag = "5")]
    version: Option<String>,
    #[prost(message, optional, tag = "6")]
    statistics: Option<datafusion_proto_common::Statistics>,
    #[prost(uint32, optional, tag = "7")]
    bucket: Option<u32>,
    #[prost(bool, tag = "8")]
    sorted: bool,
}

/// Encodes [`PartitionedTable`] for the client-to-scheduler hop: its root,
/// name, schema, partition spec and its whole partition index (files with
/// sizes, modification times, ETags and footer statistics), so the scheduler
/// plans from exactly the listing the client had, without listing again.
///
/// Everything else — logical extension nodes, other table providers, file
/// formats (`COPY … TO`, `write_parquet`), functions — goes to the wrapped
/// codec (Ballista's `BallistaLogicalExtensionCodec` in [`crate::ballista`]).
/// Table bytes are wrapped in a named envelope, so the two never mix up.
#[derive(Debug)]
pub struct LakefusionLogicalCodec {
    inner: Arc<dyn LogicalExtensionCodec>,
}

const TABLE: &str = "lakefusion.partitioned_table";
const INNER: &str = "inner";

impl LakefusionLogicalCodec {
    /// Encodes `PartitionedTable`s itself and delegates everything else to `inner`.
    pub fn new(inner: Arc<dyn LogicalExtensionCodec>) -> Self {
        Self { inner }
    }

    fn encode_table(table: &PartitionedTable) -> Result<TableNode> {
        let spec = table.partition_spec();
        let partition_schema = Schema::new(spec.fields());
        let index = table.index();
        let partitions = index
            .partitions()
            .iter()
            .map(|p| {
                Ok(PartitionNode {
                    values: p
                        .values
                        .iter()
                        .map(protobuf::ScalarValue::try_from)
                        .collect::<Result<_, _>>()?,
                    files: p
                        .files
                        .iter()
                        .map(|f| FileNode {
                            location: f.meta.location.to_string(),
                            size: f.meta.size,
                            last_modified_nanos: f
                                .meta
                                .last_modified
                                .timestamp_nanos_opt()
                                .unwrap_or_default(),
                            e_tag: f.meta.e_tag.clone(),
                            version: f.meta.version.clone(),
                            statistics: f
                                .statistics
                                .as_deref()
                                .map(datafusion_proto_common::Statistics::from),
                            bucket: f.bucket,
                            sorted: f.sorted,
                        })
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, datafusion_proto::protobuf::ToProtoError>>()
            .map_err(|e| {
                DataFusionError::Internal(format!("{TABLE}: encoding table {}: {e}", table.name()))
            })?;
        Ok(TableNode {
            name: table.name().to_string(),
            root: table.root().to_string(),
            file_schema: Some(protobuf::Schema::try_from(table.file_schema().as_ref())?),
            partition_columns: Some(protobuf::Schema::try_from(&partition_schema)?),
            collect_statistics: table.collects_statistics(),
            file_extension: table.file_extension().to_string(),
            partitions,
            bucket_column: table
                .bucketing()
                .map(|b| b.column.clone())
                .unwrap_or_default(),
            buckets: table.bucketing().map_or(0, |b| b.buckets as u64),
            sort_order: SortKey::encode_all(table.sort_order()),
            sort_declared: table.table_sort().is_some_and(|s| s.declared),
            retry: table.retry_config().map(RetryNode::from),
        })
    }

    fn decode_table(node: TableNode) -> Result<PartitionedTable> {
        let bad = |detail: String| -> DataFusionError {
            Error::MalformedPlan {
                codec: TABLE,
                table: node.name.clone(),
                what: "the definition",
                detail,
            }
            .into()
        };
        let schema = |s: &Option<protobuf::Schema>, what: &str| -> Result<SchemaRef> {
            let s = s.as_ref().ok_or_else(|| bad(format!("no {what}")))?;
            Ok(Arc::new(
                Schema::try_from(s).map_err(|e| bad(format!("{what}: {e}")))?,
            ))
        };
        let file_schema = schema(&node.file_schema, "file schema")?;
        let partition_schema = schema(&node.partition_columns, "partition columns")?;
        let spec = PartitionSpec::new(
            partition_schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone())),
        );
        let root = ListingTableUrl::parse(&node.root)
            .map_err(|e| bad(format!("root '{}': {e}", node.root)))?;
        let partitions = node
            .partitions
            .iter()
            .map(|p| {
                if p.values.len() != spec.len() {
                    return Err(bad(format!(
                        "a partition has {} values for {} columns",
                        p.values.len(),
                        spec.len()
                    )));
                }
                let values = p
                    .values
                    .iter()
                    .map(|v| {
                        ScalarValue::try_from(v).map_err(|e| bad(format!("partition value: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let files = p
                    .files
                    .iter()
                    .map(|f| {
                        let statistics = f
                            .statistics
                            .as_ref()
                            .map(|s| {
                                Statistics::try_from(s)
                                    .map_err(|e| bad(format!("statistics of {}: {e}", f.location)))
                            })
                            .transpose()?;
                        // The location is an object path already (percent-
                        // encoded where the store needs it): parse it as one.
                        // `Path::from` would encode its `%` a second time.
                        let location = Path::parse(&f.location)
                            .map_err(|e| bad(format!("file path '{}': {e}", f.location)))?;
                        Ok(IndexedFile {
                            meta: ObjectMeta {
                                location,
                                last_modified: chrono_from_nanos(f.last_modified_nanos),
                                size: f.size,
                                e_tag: f.e_tag.clone(),
                                version: f.version.clone(),
                            },
                            statistics: statistics.map(Arc::new),
                            bucket: f.bucket,
                            sorted: f.sorted,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Partition { values, files })
            })
            .collect::<Result<Vec<_>>>()?;
        let index = PartitionIndex::try_new(&spec, partitions)?;
        let sort = match SortKey::decode_all(&node.sort_order) {
            Some(keys) if keys.is_empty() => None,
            Some(keys) => Some(keys),
            None => return Err(bad(format!("sort order '{}'", node.sort_order))),
        };
        Ok(PartitionedTable::from_parts(
            node.name.clone(),
            root,
            spec,
            file_schema,
            node.collect_statistics,
            node.file_extension.clone(),
            index,
        )
        .with_bucketing((node.buckets > 0).then(|| Bucketing {
            column: node.bucket_column.clone(),
            buckets: node.buckets as usize,
        }))
        .with_sort(sort.map(|keys| TableSort {
            keys,
            declared: node.sort_declared,
        }))
        .with_retry(node.retry.clone().map(RetryPolicy::from)))
    }
}

fn chrono_from_nanos(nanos: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_nanos(nanos)
}

impl LogicalExtensionCodec for LakefusionLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        const CODEC: &str = "LakefusionLogicalCodec";
        decode_without_panics::<Arc<dyn TableProvider>>(CODEC, buf.len(), || {
            let envelope = Envelope::decode_from(buf, CODEC)?;
            match envelope.codec.as_str() {
                TABLE => {
                    let node = TableNode::decode(envelope.payload.as_slice()).map_err(|e| {
                        Error::CodecBytes {
                            codec: TABLE.to_string(),
                            what: "table",
                            bytes: envelope.payload.len(),
                            source: Box::new(e),
                        }
                    })?;
                    Ok(Arc::new(Self::decode_table(node)?))
                }
                INNER => {
                    self.inner
                        .try_decode_table_provider(&envelope.payload, table_ref, schema, ctx)
                }
                other => Err(Error::UnknownCodec {
                    codec: other.to_string(),
                    known: [TABLE, INNER].join(", "),
                }
                .into()),
            }
        })
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(table) = node.downcast_ref::<PartitionedTable>() {
            let payload = Self::encode_table(table)?.encode_to_vec();
            return Envelope::encode_into(TABLE, payload, buf);
        }
        let mut payload = Vec::new();
        self.inner
            .try_encode_table_provider(table_ref, node, &mut payload)?;
        Envelope::encode_into(INNER, payload, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}
