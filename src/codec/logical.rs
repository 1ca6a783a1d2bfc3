//! [`LakefusionLogicalCodec`]: `PartitionedTable` for the client-to-scheduler hop.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::{Statistics, TableReference};
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
use crate::lake::index::{FileRef, IndexedFile, ListedPartition, PartitionIndex, NO_BUCKET};
use crate::lake::layout::{Bucketing, SortKey, TableSort};
use crate::lake::partitioning::PartitionSpec;
use crate::lake::{OverwriteMode, TableDefinition, TableOptions};
use crate::store::RetryPolicy;
use crate::table::PartitionedTable;

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
    /// Tag 7 was a message per partition and per file, before the index
    /// was packed.
    #[prost(message, optional, tag = "13")]
    index: Option<IndexNode>,
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
    /// Listings a refresh runs at once (0, from bytes before it travelled:
    /// the default).
    #[prost(uint64, tag = "14")]
    listing_concurrency: u64,
    /// `INSERT OVERWRITE`'s mode ("", from bytes before it travelled: the
    /// default).
    #[prost(string, tag = "15")]
    overwrite_mode: String,
}

/// The partition index, packed as the index holds it: one entry per
/// partition (its directory, relative to the root) and one column per file
/// field. Partition values are not shipped: the decoder parses them from the
/// directories, as discovery does, so they cannot disagree with the paths.
#[derive(Clone, PartialEq, prost::Message)]
struct IndexNode {
    /// Each partition's directory below the root (`""` for the root itself).
    #[prost(string, repeated, tag = "1")]
    dirs: Vec<String>,
    /// How many files each partition holds, in `dirs` order.
    #[prost(uint32, repeated, tag = "2")]
    file_counts: Vec<u32>,
    /// Each file's name in its directory, partition by partition.
    #[prost(string, repeated, tag = "3")]
    names: Vec<String>,
    #[prost(uint64, repeated, tag = "4")]
    sizes: Vec<u64>,
    #[prost(int64, repeated, tag = "5")]
    modified_seconds: Vec<i64>,
    #[prost(uint32, repeated, tag = "6")]
    modified_nanos: Vec<u32>,
    /// Each file's ETag (`""`: none), or empty when no file has one.
    #[prost(string, repeated, tag = "7")]
    e_tags: Vec<String>,
    /// Each file's object version (`""`: none), or empty when no file has one.
    #[prost(string, repeated, tag = "8")]
    versions: Vec<String>,
    /// Footer statistics of the files that have them.
    #[prost(message, repeated, tag = "9")]
    statistics: Vec<FileStatisticsNode>,
    /// Each file's bucket (`u32::MAX`: none), or empty when no file has one.
    #[prost(uint32, repeated, tag = "10")]
    buckets: Vec<u32>,
    /// Whether each file is in the table's sort order.
    #[prost(bool, repeated, tag = "11")]
    sorted: Vec<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileStatisticsNode {
    /// The file's position in the node's file columns.
    #[prost(uint32, tag = "1")]
    file: u32,
    #[prost(message, optional, tag = "2")]
    statistics: Option<datafusion_proto_common::Statistics>,
}

impl IndexNode {
    fn encode(table: &PartitionedTable, index: &PartitionIndex) -> Result<Self> {
        let count = index.file_count();
        let root = table.root().prefix().as_ref();
        let mut node = Self {
            names: Vec::with_capacity(count),
            sizes: Vec::with_capacity(count),
            modified_seconds: Vec::with_capacity(count),
            modified_nanos: Vec::with_capacity(count),
            sorted: Vec::with_capacity(count),
            ..Default::default()
        };
        let has = |field: fn(&FileRef<'_>) -> bool| index.all_files().any(|f| field(&f));
        let (e_tags, versions) = (has(|f| f.e_tag().is_some()), has(|f| f.version().is_some()));
        let buckets = has(|f| f.bucket().is_some());
        for partition in index.partitions() {
            let dir = below_root(root, partition.dir().as_ref()).ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "{TABLE}: table {}: partition '{}' is not under the root '{root}'",
                    table.name(),
                    partition.dir()
                ))
            })?;
            node.dirs.push(dir.to_string());
            node.file_counts.push(partition.file_count() as u32);
            for file in index.files(partition) {
                if let Some(stats) = file.statistics() {
                    node.statistics.push(FileStatisticsNode {
                        file: node.names.len() as u32,
                        statistics: Some(stats.as_ref().into()),
                    });
                }
                node.names.push(file.name().to_string());
                node.sizes.push(file.size());
                let modified = file.last_modified();
                node.modified_seconds.push(modified.timestamp());
                node.modified_nanos.push(modified.timestamp_subsec_nanos());
                if e_tags {
                    node.e_tags
                        .push(file.e_tag().unwrap_or_default().to_string());
                }
                if versions {
                    node.versions
                        .push(file.version().unwrap_or_default().to_string());
                }
                if buckets {
                    node.buckets.push(file.bucket().unwrap_or(NO_BUCKET));
                }
                node.sorted.push(file.sorted());
            }
        }
        Ok(node)
    }

    /// The partitions the node describes, every field checked: directories
    /// and names must make valid paths under `root` (names one segment
    /// each), partition values parse from the directories under `spec`,
    /// and every column has one entry per file.
    fn decode(
        &self,
        root: &ListingTableUrl,
        spec: &PartitionSpec,
        bad: &dyn Fn(String) -> DataFusionError,
    ) -> Result<Vec<ListedPartition>> {
        let files = self.names.len();
        let total: u64 = self.file_counts.iter().map(|&c| u64::from(c)).sum();
        let column = |name: &str, len: usize, optional: bool| -> Result<()> {
            if len == files || (optional && len == 0) {
                Ok(())
            } else {
                Err(bad(format!("{len} {name} for {files} files")))
            }
        };
        if total != files as u64 || self.dirs.len() != self.file_counts.len() {
            return Err(bad(format!(
                "{} directories, {} file counts adding up to {total}, for {files} files",
                self.dirs.len(),
                self.file_counts.len()
            )));
        }
        column("sizes", self.sizes.len(), false)?;
        column("modification times", self.modified_seconds.len(), false)?;
        column("modification times", self.modified_nanos.len(), false)?;
        column("sort flags", self.sorted.len(), false)?;
        column("ETags", self.e_tags.len(), true)?;
        column("versions", self.versions.len(), true)?;
        column("buckets", self.buckets.len(), true)?;
        let mut statistics: Vec<Option<Arc<Statistics>>> = vec![None; files];
        for entry in &self.statistics {
            let slot = statistics
                .get_mut(entry.file as usize)
                .ok_or_else(|| bad(format!("statistics of file {} of {files}", entry.file)))?;
            let stats = entry
                .statistics
                .as_ref()
                .ok_or_else(|| bad(format!("empty statistics of file {}", entry.file)))?;
            *slot = Some(Arc::new(Statistics::try_from(stats).map_err(|e| {
                bad(format!("statistics of file {}: {e}", entry.file))
            })?));
        }
        let root_prefix = root.prefix().as_ref();
        let optional =
            |column: &[String], i: usize| column.get(i).filter(|value| !value.is_empty()).cloned();
        let mut next = 0usize;
        let mut partitions = Vec::with_capacity(self.dirs.len());
        for (dir, &count) in self.dirs.iter().zip(&self.file_counts) {
            let segments: Vec<&str> = if dir.is_empty() {
                Vec::new()
            } else {
                dir.split('/').collect()
            };
            let full_dir = [root_prefix, dir.as_str()]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("/");
            let values = spec
                .parse_dirs(&full_dir, &segments)
                .map_err(|e| bad(format!("partition directory '{dir}': {e}")))?;
            let mut listed = Vec::with_capacity(count as usize);
            for i in next..next + count as usize {
                let name = &self.names[i];
                if name.is_empty() || name.contains('/') {
                    return Err(bad(format!("file name '{name}' in '{dir}'")));
                }
                let path = if full_dir.is_empty() {
                    name.clone()
                } else {
                    format!("{full_dir}/{name}")
                };
                // An object path already (percent-encoded where the store
                // needs it): parsed as one, never encoded a second time.
                let location =
                    Path::parse(&path).map_err(|e| bad(format!("file path '{path}': {e}")))?;
                let nanos = self.modified_nanos[i];
                let last_modified =
                    chrono::DateTime::from_timestamp(self.modified_seconds[i], nanos)
                        .ok_or_else(|| bad(format!("modification time of '{path}'")))?;
                listed.push(IndexedFile {
                    meta: ObjectMeta {
                        location,
                        last_modified,
                        size: self.sizes[i],
                        e_tag: optional(&self.e_tags, i),
                        version: optional(&self.versions, i),
                    },
                    statistics: statistics.get_mut(i).and_then(Option::take),
                    bucket: self.buckets.get(i).copied().filter(|&b| b != NO_BUCKET),
                    sorted: self.sorted[i],
                });
            }
            next += count as usize;
            partitions.push(ListedPartition {
                values,
                files: listed,
            });
        }
        Ok(partitions)
    }
}

/// `dir` relative to the root's object path, if it is under it.
fn below_root<'a>(root: &str, dir: &'a str) -> Option<&'a str> {
    if root.is_empty() {
        return Some(dir);
    }
    let rest = dir.strip_prefix(root)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix('/')
    }
}

/// Encodes [`PartitionedTable`] for the client-to-scheduler hop: its root,
/// name, schema, partition spec and its whole partition index (files with
/// sizes, modification times, ETags and footer statistics), so the scheduler
/// plans from exactly the listing the client had, without listing again.
///
/// Everything else — logical extension nodes, other table providers, file
/// formats (`COPY … TO`, `write_parquet`), functions — goes to the wrapped
/// codec (Ballista's `BallistaLogicalExtensionCodec` in `ballista`).
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

    /// Every field of the definition, taken apart exhaustively: a field
    /// added to it does not compile here until it travels.
    fn encode_table(table: &PartitionedTable) -> Result<TableNode> {
        let TableDefinition {
            name,
            root,
            spec,
            file_schema,
            options,
            derived: _,
        } = table.definition();
        let TableOptions {
            collect_statistics,
            file_extension,
            bucketing,
            sort,
            retry,
            listing_concurrency,
            overwrite_mode,
        } = options;
        let partition_schema = Schema::new(spec.fields());
        let index = IndexNode::encode(table, &table.index())?;
        Ok(TableNode {
            name: name.to_string(),
            root: root.to_string(),
            file_schema: Some(protobuf::Schema::try_from(file_schema.as_ref())?),
            partition_columns: Some(protobuf::Schema::try_from(&partition_schema)?),
            collect_statistics: *collect_statistics,
            file_extension: file_extension.clone(),
            index: Some(index),
            bucket_column: bucketing
                .as_ref()
                .map(|b| b.column.clone())
                .unwrap_or_default(),
            buckets: bucketing.as_ref().map_or(0, |b| b.buckets as u64),
            sort_order: SortKey::encode_all(sort.as_ref().map_or(&[], |s| &s.keys)),
            sort_declared: sort.as_ref().is_some_and(|s| s.declared),
            retry: retry.map(RetryNode::from),
            listing_concurrency: *listing_concurrency as u64,
            overwrite_mode: overwrite_mode.as_str().to_string(),
        })
    }

    /// A table from the wire, checked as a builder's is
    /// ([`TableDefinition::try_new`]).
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
        let sort = match SortKey::decode_all(&node.sort_order) {
            Some(keys) if keys.is_empty() => None,
            Some(keys) => Some(TableSort {
                keys,
                declared: node.sort_declared,
            }),
            None => return Err(bad(format!("sort order '{}'", node.sort_order))),
        };
        let count = |value: u64, what: &str| {
            usize::try_from(value).map_err(|_| bad(format!("{what} {value}")))
        };
        let options = TableOptions {
            collect_statistics: node.collect_statistics,
            file_extension: node.file_extension.clone(),
            bucketing: match node.buckets {
                0 => None,
                buckets => Some(Bucketing {
                    column: node.bucket_column.clone(),
                    buckets: count(buckets, "bucket count")?,
                }),
            },
            sort,
            retry: node.retry.clone().map(RetryPolicy::from),
            listing_concurrency: match node.listing_concurrency {
                0 => TableOptions::default().listing_concurrency,
                listings => count(listings, "listing concurrency")?,
            },
            overwrite_mode: match node.overwrite_mode.as_str() {
                "" => OverwriteMode::default(),
                name => OverwriteMode::parse(name)
                    .ok_or_else(|| bad(format!("overwrite mode '{name}'")))?,
            },
        };
        // Checked as a builder's definition is, before the index is read;
        // refused as bytes that are not a table.
        let definition =
            TableDefinition::try_new(node.name.as_str().into(), root, spec, file_schema, options)
                .map_err(|e| bad(e.to_string()))?;
        let partitions = node
            .index
            .as_ref()
            .ok_or_else(|| bad("no partition index".to_string()))?
            .decode(&definition.root, &definition.spec, &bad)?;
        let index = PartitionIndex::try_new(&definition.spec, partitions)?;
        Ok(PartitionedTable::new(definition, index))
    }
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;

    use super::*;

    fn file(path: &str, e_tag: Option<&str>, bucket: Option<u32>) -> IndexedFile {
        IndexedFile {
            meta: ObjectMeta {
                location: Path::parse(path).unwrap(),
                last_modified: chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
                size: 42,
                e_tag: e_tag.map(str::to_string),
                version: None,
            },
            statistics: None,
            bucket,
            sorted: bucket.is_some(),
        }
    }

    /// `day=1` (two files, one with an ETag and a bucket) and
    /// `day=__HIVE_DEFAULT_PARTITION__` (a NULL, one file whose name needs
    /// percent-encoding in a path).
    fn table() -> PartitionedTable {
        let mut with_stats = file("lake/t/day=1/b.parquet", None, None);
        with_stats.statistics = Some(Arc::new(Statistics::new_unknown(&Schema::new(vec![
            Field::new("id", DataType::Int64, false),
        ]))));
        let partitions = vec![
            ListedPartition {
                values: vec![ScalarValue::Int32(Some(1))],
                files: vec![
                    file("lake/t/day=1/a.parquet", Some("\"e1\""), Some(3)),
                    with_stats,
                ],
            },
            ListedPartition {
                values: vec![ScalarValue::Int32(None)],
                files: vec![file(
                    "lake/t/day=__HIVE_DEFAULT_PARTITION__/a%20b.parquet",
                    None,
                    None,
                )],
            },
        ];
        table_at("memory:///lake/t/", partitions)
    }

    /// A table partitioned by `day` (Int32) at `root`, of `partitions`.
    fn table_at(root: &str, partitions: Vec<ListedPartition>) -> PartitionedTable {
        let spec = PartitionSpec::new([("day".to_string(), DataType::Int32)]);
        let index = PartitionIndex::try_new(&spec, partitions).unwrap();
        table_with(root, spec, index, TableOptions::default())
    }

    /// A table with `id` (Int64) inside its files, of `options`.
    fn table_with(
        root: &str,
        spec: PartitionSpec,
        index: PartitionIndex,
        options: TableOptions,
    ) -> PartitionedTable {
        let file_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let root = ListingTableUrl::parse(root).unwrap();
        let definition =
            TableDefinition::try_new("t".into(), root, spec, file_schema, options).unwrap();
        PartitionedTable::new(definition, index)
    }

    /// Every option of a definition arrives as it left (the listing
    /// concurrency once did not travel).
    #[test]
    fn every_option_of_a_table_travels() {
        let spec = PartitionSpec::new([("day".to_string(), DataType::Int32)]);
        let index = PartitionIndex::try_new(&spec, Vec::new()).unwrap();
        let options = TableOptions {
            collect_statistics: true,
            file_extension: ".pq".to_string(),
            bucketing: Some(Bucketing {
                column: "id".to_string(),
                buckets: 8,
            }),
            sort: Some(TableSort {
                keys: vec![SortKey::desc("id")],
                declared: true,
            }),
            retry: Some(RetryPolicy::default()),
            listing_concurrency: 3,
            overwrite_mode: OverwriteMode::Table,
        };
        let table = table_with("memory:///lake/t/", spec, index, options.clone());
        let node = LakefusionLogicalCodec::encode_table(&table).unwrap();
        let decoded = LakefusionLogicalCodec::decode_table(node.clone()).unwrap();
        assert_eq!(decoded.definition().options, options);
        assert_eq!(decoded.name(), "t");
        assert_eq!(decoded.file_schema(), table.file_schema());
        assert_eq!(decoded.partition_spec(), table.partition_spec());
        // Bytes from before the field travelled: the default, not 0.
        let old = TableNode {
            listing_concurrency: 0,
            overwrite_mode: String::new(),
            ..node.clone()
        };
        let decoded = LakefusionLogicalCodec::decode_table(old).unwrap();
        assert_eq!(decoded.definition().options.listing_concurrency, 64);
        assert_eq!(
            decoded.definition().options.overwrite_mode,
            OverwriteMode::Partitions
        );
        // A decoded definition is checked as a builder's is.
        let forged = TableNode {
            bucket_column: "day".to_string(),
            ..node
        };
        let err = LakefusionLogicalCodec::decode_table(forged)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("day") && err.contains("no such column"),
            "{err}"
        );
    }

    fn decode(table: &PartitionedTable, node: &IndexNode) -> Result<Vec<ListedPartition>> {
        let bad = |detail: String| DataFusionError::Plan(detail);
        node.decode(table.root(), table.partition_spec(), &bad)
    }

    #[test]
    fn the_packed_index_round_trips_every_field() {
        let table = table();
        let node = IndexNode::encode(&table, &table.index()).unwrap();
        // Directories relative to the root, names relative to directories,
        // no partition values on the wire.
        assert_eq!(node.dirs, ["day=1", "day=__HIVE_DEFAULT_PARTITION__"]);
        assert_eq!(node.names, ["a.parquet", "b.parquet", "a%20b.parquet"]);
        assert_eq!(node.e_tags, ["\"e1\"", "", ""]);
        assert!(node.versions.is_empty());
        assert_eq!(node.buckets, [3, NO_BUCKET, NO_BUCKET]);
        assert_eq!(node.statistics.len(), 1);
        let decoded =
            PartitionIndex::try_new(table.partition_spec(), decode(&table, &node).unwrap())
                .unwrap();
        let original = table.index();
        let unpack = |index: &PartitionIndex| -> Vec<(Vec<ScalarValue>, Vec<String>)> {
            index
                .partitions()
                .iter()
                .map(|p| {
                    let files = index
                        .files(p)
                        .map(|f| {
                            let f = f.to_indexed().unwrap();
                            format!(
                                "{} {:?} {} {:?} {:?} {} {}",
                                f.meta.location,
                                f.meta.e_tag,
                                f.meta.last_modified,
                                f.bucket,
                                f.sorted,
                                f.meta.size,
                                f.statistics.is_some()
                            )
                        })
                        .collect();
                    (p.values().to_vec(), files)
                })
                .collect()
        };
        assert_eq!(unpack(&decoded), unpack(&original));
    }

    /// The wire form is the packed index: no path and no partition value
    /// per file (10,000 files in 1,000 partitions, S3-like ETags).
    #[test]
    fn the_shipped_index_is_packed() {
        let partitions = (0..1_000)
            .map(|day| ListedPartition {
                values: vec![ScalarValue::Int32(Some(day))],
                files: (0..10)
                    .map(|f| {
                        let e_tag = format!("\"{:032x}\"", day * 10 + f);
                        file(
                            &format!("warehouse/events/day={day}/part-{f:05}.parquet"),
                            Some(&e_tag),
                            None,
                        )
                    })
                    .collect(),
            })
            .collect();
        let table = table_at("s3://bucket/warehouse/events/", partitions);
        let bytes = IndexNode::encode(&table, &table.index())
            .unwrap()
            .encode_to_vec()
            .len();
        let per_file = bytes / 10_000;
        // 64 when written: the name (16) and the ETag (34) with their
        // framing, size and time as varints; a full path alone is 48.
        assert!(per_file <= 66, "{per_file} bytes per file");
    }

    #[test]
    fn a_tampered_index_is_rejected_naming_what() {
        let table = table();
        let good = IndexNode::encode(&table, &table.index()).unwrap();
        type Tamper = Box<dyn Fn(&mut IndexNode)>;
        let cases: Vec<(Tamper, &str)> = vec![
            (
                Box::new(|n| n.names[0] = "../../etc/passwd".into()),
                "../../etc/passwd",
            ),
            (Box::new(|n| n.names[1] = String::new()), "file name ''"),
            (Box::new(|n| n.dirs[0] = "..".into()), "'..'"),
            (Box::new(|n| n.dirs[0] = "day=x".into()), "day=x"),
            (
                Box::new(|n| n.dirs[0] = "day=1/extra=2".into()),
                "day=1/extra=2",
            ),
            (Box::new(|n| n.file_counts[0] = 7), "file counts"),
            (Box::new(|n| n.sizes.pop().map(drop).unwrap_or(())), "sizes"),
            (Box::new(|n| n.e_tags.push("x".into())), "ETags"),
            (
                Box::new(|n| n.statistics[0].file = 99),
                "statistics of file 99",
            ),
            (
                Box::new(|n| n.modified_nanos[0] = u32::MAX),
                "modification time",
            ),
        ];
        for (tamper, named) in cases {
            let mut node = good.clone();
            tamper(&mut node);
            let error = decode(&table, &node).map(|_| ()).unwrap_err().to_string();
            assert!(error.contains(named), "{named}: {error}");
        }
        decode(&table, &good).unwrap();
    }
}
