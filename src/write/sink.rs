//! [`PartitionedSink`]: `INSERT INTO` a [`PartitionedTable`](crate::PartitionedTable).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::config::TableParquetOptions;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::{DataFusionError, Result as DFResult, ScalarValue};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, Partitioning};
use datafusion_datasource::sink::DataSink;
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use tokio::sync::mpsc;

use super::commit::{delete_all, ClosedFile, Commit, Committed};
use super::recover::temp_name;
use super::staging::{Staged, StagedWriter, Staging};
use crate::error::Error;
use crate::lake::journal::{Replaced, WriteKind, WriteRecord};
use crate::lake::layout::{SortKey, BUCKETING_KEY, BUCKET_KEY, SORT_ORDER_KEY};
use crate::lake::partitioning::{child, partition_dir};
use crate::lake::{OverwriteMode, SharedIndex, TableDefinition};

/// Writes the rows of an `INSERT INTO` (or an `INSERT OVERWRITE`) as new
/// Hive-partitioned Parquet files under the table root, and adds them to
/// the table's partition index (replacing what the overwrite replaces).
///
/// # Steps
///
/// 1. Each incoming batch is split by bucket (when the table is bucketed,
///    with DataFusion's own `BatchPartitioner` for `Partitioning::Hash`) and
///    then by partition values; each `(partition, bucket)` gets one file.
///    A partition value that cannot be a directory fails the write (see
///    [`partition_dir`](crate::partition_dir)).
/// 2. Files are written with the session's Parquet writer options, staged so
///    that nothing shows under their final names yet (see
///    the `staging` module: a hidden temporary name on the local
///    disk; on object stores, memory for a file up to one part, an
///    uncompleted multipart upload for a larger one; every staged byte
///    reserved from the session's memory pool), with what
///    the write knows recorded in their key-value metadata (bucketing, sort
///    order). A sorted table's input arrives sorted (the sink requires it),
///    and splitting keeps each file's rows in that order.
/// 3. Only when every input row has been written are the files closed and
///    committed through the commit protocol (the crate guide, and the
///    `commit` module, have its steps): a record under the root's hidden
///    `_lakefusion/writes/`, the files under their final names (names that
///    carry a unique write id: a write never overwrites a file), then for
///    an append the removal of the record, for an overwrite the claims on
///    the partitions it replaces, its commit marker and the removal of the
///    replaced files. This runs in a task of its own that finishes even if
///    the statement is cancelled meanwhile.
/// 4. At the commit, the new files (with footer statistics if the table
///    collects them) join the partition index and the replaced ones leave
///    it, in one swap, so the next query sees the write.
///
/// An `INSERT OVERWRITE` replaces, by the table's
/// [`OverwriteMode`](crate::OverwriteMode), exactly the partitions it
/// writes rows to (one that writes no rows changes nothing) or the whole
/// table; an unpartitioned table is always replaced whole. Two overwrites
/// of the same partition at once cannot both commit: the second to claim
/// it fails with [`Error::WriteConflict`](crate::Error::WriteConflict) and
/// leaves nothing.
///
/// On a failure before step 3 the staged files are aborted or deleted. On a
/// failure in step 3 before the commit the files already made visible are
/// deleted again and the record removed; a file whose delete fails stays
/// (readers that honour the journal do not read it; others do), and the
/// error names every such file and the record, which stays so that
/// [`PartitionedTable::recover`](crate::PartitionedTable::recover) removes
/// them later. A write cancelled before step 3 cannot run that clean-up: on
/// the local disk its hidden temporary files stay (never listed, never
/// read) until `recover`; on an object store a large file's uncompleted
/// upload stays invisible until the store's own lifecycle rules expire it
/// (S3's `AbortIncompleteMultipartUpload`); a small file was only in
/// memory. A process that dies during step 3 leaves its journal: readers
/// honour it, and `recover` finishes the write (if it had committed) or
/// takes it back.
///
/// # What a reader sees of a write
///
/// * **Every lakefusion reader, in any process** (this table, another
///   table object, another process's `build()`/`refresh()`): all of a
///   write or none of it, and never both the files an overwrite replaces
///   and the ones it adds. See the crate guide's commit protocol.
/// * **Readers that do not know the journal** (Spark, DuckDB, DataFusion's
///   `ListingTable`): plain Hive semantics — new files appear one by one,
///   replaced files disappear one by one, each file whole.
/// * **Queries already running** on the index from before an overwrite
///   committed may fail with a "not found" error naming a replaced file
///   that was removed under them; they never return a mix.
/// * **Memory**: every byte a write stages (a file's part being filled, its
///   parts uploading, and on object stores each small file held whole until
///   the commit) is reserved from the session's memory pool; a write whose
///   staged files do not fit fails, naming the file, with nothing visible.
#[derive(Clone)]
pub struct PartitionedSink {
    table: Arc<TableDefinition>,
    index: Arc<SharedIndex>,
    mode: SinkMode,
}

/// What a sink's write does to the rows already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkMode {
    /// `INSERT INTO`: adds files.
    Append,
    /// `INSERT OVERWRITE`: replaces the partitions the write produces, or
    /// the whole table (the table's [`OverwriteMode`]).
    Overwrite,
}

impl PartitionedSink {
    pub(crate) fn new(
        table: Arc<TableDefinition>,
        index: Arc<SharedIndex>,
        mode: SinkMode,
    ) -> Self {
        Self { table, index, mode }
    }

    /// What the write replaces: nothing for an append; for an overwrite,
    /// the partitions of `closed` or the whole table. `None`: an append or
    /// an overwrite of partitions that produced nothing, which changes
    /// nothing.
    fn replaced(&self, closed: &[ClosedFile]) -> DFResult<Option<(WriteKind, Replaced)>> {
        let table = &self.table;
        if self.mode == SinkMode::Append {
            // No rows: nothing to commit, no journal object.
            return Ok((!closed.is_empty()).then_some((WriteKind::Append, Replaced::Nothing)));
        }
        if table.spec.is_empty() || table.options.overwrite_mode == OverwriteMode::Table {
            return Ok(Some((WriteKind::Overwrite, Replaced::Table)));
        }
        let dirs: BTreeSet<String> = closed
            .iter()
            .map(|file| table.canonical_dir(&file.values))
            .collect::<crate::error::Result<_>>()?;
        if dirs.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            WriteKind::Overwrite,
            Replaced::Partitions(dirs.into_iter().collect()),
        )))
    }
}

impl fmt::Debug for PartitionedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedSink")
            .field("table", &self.table.name)
            .finish()
    }
}

impl DisplayAs for PartitionedSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionedSink: table={}", self.table.name)?;
        match (self.mode, self.table.options.overwrite_mode) {
            (SinkMode::Append, _) => {}
            (SinkMode::Overwrite, _) if self.table.spec.is_empty() => {
                write!(f, ", overwrite=table")?
            }
            (SinkMode::Overwrite, OverwriteMode::Partitions) => {
                write!(f, ", overwrite=partitions")?
            }
            (SinkMode::Overwrite, OverwriteMode::Table) => write!(f, ", overwrite=table")?,
        }
        if let Some(b) = &self.table.options.bucketing {
            write!(f, ", bucket_by={}({})", b.column, b.buckets)?;
        }
        Ok(())
    }
}

#[async_trait]
impl DataSink for PartitionedSink {
    fn schema(&self) -> &SchemaRef {
        self.table.table_schema()
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let mut write = Writing::try_new(&self.table, context)?;
        if let Err(e) = write.consume(data).await {
            write.abort().await;
            return Err(e);
        }
        let rows = write.rows;
        let id = write.id.clone();
        let (store, closed) = write.close().await?;
        let Some((kind, replaces)) = self.replaced(&closed)? else {
            return Ok(rows);
        };
        let table = Arc::clone(&self.table);
        commit_in_task(
            table,
            Arc::clone(&self.index),
            store,
            id,
            kind,
            replaces,
            closed,
            None,
        )
        .await?;
        Ok(rows)
    }
}

/// Runs the commit protocol (see the `commit` module) for `closed` in a
/// task of its own, which runs to its end even if the caller is cancelled
/// meanwhile: a cancelled commit would leave part of the write visible to
/// the next listing.
#[allow(clippy::too_many_arguments)]
async fn commit_in_task(
    table: Arc<TableDefinition>,
    index: Arc<SharedIndex>,
    store: Arc<dyn ObjectStore>,
    id: String,
    kind: WriteKind,
    replaces: Replaced,
    closed: Vec<ClosedFile>,
    inputs: Option<Vec<Path>>,
) -> DFResult<Committed> {
    let committing = tokio::spawn(async move {
        let files = closed.iter().map(|f| f.target.clone()).collect();
        let commit = Commit {
            table: &table,
            store: &store,
            record: WriteRecord::new(table.root.prefix(), &id, kind, replaces, files),
            inputs,
        };
        let ticket = index.begin_commit(commit.record.files.clone());
        commit.run(closed, ticket).await
    });
    committing
        .await
        .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?
}

/// `DELETE FROM`: removes every file of the partitions `replaces` names
/// (in our writer's spelling; every spelling is removed), or of the whole
/// table, as one replacing write.
pub(crate) async fn delete_partitions(
    table: &Arc<TableDefinition>,
    index: &Arc<SharedIndex>,
    store: Arc<dyn ObjectStore>,
    replaces: Replaced,
) -> DFResult<Committed> {
    let (table, index) = (Arc::clone(table), Arc::clone(index));
    commit_in_task(
        table,
        index,
        store,
        write_id(),
        WriteKind::Delete,
        replaces,
        Vec::new(),
        None,
    )
    .await
}

/// Compaction: writes `data` (the rows of `inputs`, in the table's order
/// for a sorted table) as new files of about `rows_per_file` rows each, and
/// replaces exactly `inputs` with them, as one replacing write over the
/// partitions `replaces` names.
pub(crate) async fn rewrite(
    table: &Arc<TableDefinition>,
    index: &Arc<SharedIndex>,
    context: &Arc<TaskContext>,
    data: SendableRecordBatchStream,
    rows_per_file: u64,
    inputs: Vec<Path>,
    replaces: Replaced,
) -> DFResult<Committed> {
    let mut write = Writing::try_new(table, context)?;
    write.rows_per_file = Some(rows_per_file.max(1));
    if let Err(e) = write.consume(data).await {
        write.abort().await;
        return Err(e);
    }
    let id = write.id.clone();
    let (store, closed) = write.close().await?;
    let (table, index) = (Arc::clone(table), Arc::clone(index));
    commit_in_task(
        table,
        index,
        store,
        id,
        WriteKind::Compact,
        replaces,
        closed,
        Some(inputs),
    )
    .await
}

/// One file being written.
struct OpenFile {
    values: Vec<ScalarValue>,
    bucket: Option<u32>,
    /// Where the file is written until its commit (see [`Staging::temporary`]).
    temp: Path,
    target: Path,
    /// Batches for the file's encoder; dropping it lets the encoder finish.
    rows: mpsc::Sender<RecordBatch>,
    encoder: SpawnedTask<DFResult<(ParquetMetaData, Staged)>>,
    /// Rows sent to it so far.
    written: u64,
}

impl OpenFile {
    /// Lets the encoder finish the file (its sender dropped).
    fn into_closing(self) -> Closing {
        Closing {
            values: self.values,
            bucket: self.bucket,
            temp: self.temp,
            target: self.target,
            encoder: self.encoder,
        }
    }
}

/// Batches waiting per file: enough to keep an encoder busy while the
/// input is split, few enough that memory stays at about one row group per
/// file (the encoder's own buffer).
const BATCHES_IN_FLIGHT: usize = 2;

/// Encodes one file's batches as they arrive and closes the file when its
/// sender is dropped. Each file has its own task, so files are encoded in
/// parallel (as DataFusion's own `COPY TO` does), while each file still
/// receives its rows in input order — a sorted table's files stay sorted.
/// If the write is aborted (`aborted` set before the sender is dropped), or
/// a write fails, the upload is aborted instead and nothing is completed.
async fn encode(
    mut writer: AsyncArrowWriter<StagedWriter>,
    mut rows: mpsc::Receiver<RecordBatch>,
    aborted: Arc<AtomicBool>,
) -> DFResult<(ParquetMetaData, Staged)> {
    let mut failure = None;
    while let Some(batch) = rows.recv().await {
        if let Err(e) = writer.write(&batch).await {
            failure = Some(e.into());
            break;
        }
    }
    if failure.is_none() && aborted.load(Ordering::Acquire) {
        failure = Some(DataFusionError::Execution("the write was aborted".into()));
    }
    let failure = match failure {
        None => match writer.finish().await {
            Ok(metadata) => return Ok((metadata, writer.into_inner().into_staged())),
            Err(e) => e.into(),
        },
        Some(e) => e,
    };
    // A failed abort leaves at most a hidden, `.`-prefixed object or an
    // uncompleted upload: nothing visible.
    let _ = writer.into_inner().abort().await;
    Err(failure)
}

/// The result of an encoder task, panics resumed, cancellation an error.
async fn finish(
    encoder: SpawnedTask<DFResult<(ParquetMetaData, Staged)>>,
) -> DFResult<(ParquetMetaData, Staged)> {
    encoder
        .join_unwind()
        .await
        .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?
}

/// The state of one `write_all`.
struct Writing<'a> {
    table: &'a TableDefinition,
    store: Arc<dyn ObjectStore>,
    staging: Staging,
    /// The file schema as it is stored (see [`storage_schema`]).
    storage_schema: SchemaRef,
    id: String,
    properties: WriterProperties,
    /// The session's memory pool: staged bytes are reserved from it.
    pool: Arc<dyn MemoryPool>,
    /// Positions of the file columns in the input (the table schema).
    file_columns: Vec<usize>,
    /// Positions of the partition columns in the input.
    partition_columns: Vec<usize>,
    rows_by_partition: Option<RowConverter>,
    buckets: Option<BatchPartitioner>,
    open: HashMap<(Vec<u8>, Option<u32>), OpenFile>,
    /// Files opened so far (names their sequence numbers).
    opened: usize,
    /// Set before the encoders' senders are dropped when the write fails.
    aborted: Arc<AtomicBool>,
    rows: u64,
    /// A file holding this many rows is closed and the next rows of its
    /// partition and bucket go to a new one (compaction's file size).
    rows_per_file: Option<u64>,
    /// Files closed early (at `rows_per_file`), their encoders finishing.
    retired: Vec<Closing>,
}

/// The file schema with string and binary views stored as plain strings and
/// binaries: DataFusion reads Parquet strings as views by default, but a
/// view type recorded in a file's Arrow schema makes other readers (and
/// DataFusion's own schema merging across old and new files) disagree
/// about the column's type.
fn storage_schema(file_schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = file_schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8)),
            DataType::BinaryView => Arc::new(f.as_ref().clone().with_data_type(DataType::Binary)),
            _ => Arc::clone(f),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(
        fields,
        file_schema.metadata().clone(),
    ))
}

fn to_storage(batch: RecordBatch, schema: &SchemaRef) -> DFResult<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Distinguishes writes started in the same nanosecond by one process.
static WRITE_SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn write_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let sequence = WRITE_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{sequence:x}", std::process::id())
}

impl<'a> Writing<'a> {
    fn try_new(table: &'a TableDefinition, context: &Arc<TaskContext>) -> DFResult<Self> {
        let store = context
            .runtime_env()
            .object_store(table.root.object_store())?;
        let mut options = TableParquetOptions {
            global: context.session_config().options().execution.parquet.clone(),
            ..Default::default()
        };
        // The Arrow schema goes into the footer as DataFusion's own Parquet
        // sink writes it (the writer below is told not to add it again).
        let storage_schema = storage_schema(&table.file_schema);
        options.arrow_schema(&storage_schema);
        let properties = WriterPropertiesBuilder::try_from(&options)?.build();
        let files = table.file_schema.fields().len();
        let partition_columns: Vec<usize> = (files..files + table.spec.len()).collect();
        let rows_by_partition = if table.spec.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                table
                    .spec
                    .columns()
                    .iter()
                    .map(|c| SortField::new(c.data_type.clone()))
                    .collect(),
            )?)
        };
        let buckets = match &table.options.bucketing {
            None => None,
            Some(b) => {
                let index = table.table_schema().index_of(&b.column)?;
                Some(BatchPartitioner::try_new(
                    Partitioning::Hash(vec![Arc::new(Column::new(&b.column, index))], b.buckets),
                    Time::new(),
                    0,
                    1,
                )?)
            }
        };
        Ok(Self {
            table,
            store,
            staging: Staging::for_store(table.store_kind()),
            storage_schema,
            id: write_id(),
            properties,
            pool: Arc::clone(&context.runtime_env().memory_pool),
            file_columns: (0..files).collect(),
            partition_columns,
            rows_by_partition,
            buckets,
            open: HashMap::new(),
            opened: 0,
            aborted: Arc::default(),
            rows: 0,
            rows_per_file: None,
            retired: Vec::new(),
        })
    }

    async fn consume(&mut self, mut data: SendableRecordBatchStream) -> DFResult<()> {
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            self.rows += batch.num_rows() as u64;
            let by_bucket: Vec<(Option<u32>, RecordBatch)> = match &mut self.buckets {
                None => vec![(None, batch)],
                Some(partitioner) => partitioner
                    .partition_iter(batch)?
                    .map(|r| r.map(|(bucket, b)| (Some(bucket as u32), b)))
                    .collect::<DFResult<_>>()?,
            };
            for (bucket, batch) in by_bucket {
                if batch.num_rows() > 0 {
                    self.write_batch(bucket, batch).await?;
                }
            }
        }
        Ok(())
    }

    /// Splits one batch (of one bucket) by partition values and appends each
    /// part to its file.
    async fn write_batch(&mut self, bucket: Option<u32>, batch: RecordBatch) -> DFResult<()> {
        let groups: Vec<(Vec<u8>, Vec<u32>)> = match &self.rows_by_partition {
            None => vec![(Vec::new(), (0..batch.num_rows() as u32).collect())],
            Some(converter) => {
                let columns: Vec<_> = self
                    .partition_columns
                    .iter()
                    .map(|&i| Arc::clone(batch.column(i)))
                    .collect();
                let rows = converter.convert_columns(&columns)?;
                let mut groups: HashMap<&[u8], Vec<u32>> = HashMap::new();
                for (i, row) in rows.iter().enumerate() {
                    groups.entry(row.data()).or_default().push(i as u32);
                }
                groups
                    .into_iter()
                    .map(|(key, rows)| (key.to_vec(), rows))
                    .collect()
            }
        };
        let whole = groups.len() == 1;
        let file_rows = to_storage(batch.project(&self.file_columns)?, &self.storage_schema)?;
        for (key, indices) in groups {
            let first = indices[0] as usize;
            let part = if whole {
                file_rows.clone()
            } else {
                take_record_batch(&file_rows, &UInt32Array::from(indices))?
            };
            let slot = (key, bucket);
            if !self.open.contains_key(&slot) {
                let file = self.open_file(&batch, first, bucket)?;
                self.open.insert(slot.clone(), file);
            }
            let part_rows = part.num_rows() as u64;
            let sent = match self.open.get_mut(&slot) {
                Some(file) => {
                    file.written += part_rows;
                    file.rows.send(part).await.is_ok()
                }
                None => true,
            };
            let full = self.rows_per_file.is_some_and(|limit| {
                self.open
                    .get(&slot)
                    .is_some_and(|file| file.written >= limit)
            });
            if sent && full {
                if let Some(file) = self.open.remove(&slot) {
                    self.retired.push(file.into_closing());
                }
            }
            if !sent {
                // The encoder stopped early: its result says why.
                if let Some(file) = self.open.remove(&slot) {
                    let error = match finish(file.encoder).await {
                        Err(e) => e,
                        Ok(_) => DataFusionError::Internal("the encoder ended early".into()),
                    };
                    let _ = self.store.delete(&file.temp).await;
                    return Err(self.write_error(file.target.as_ref(), error));
                }
            }
        }
        Ok(())
    }

    fn open_file(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        bucket: Option<u32>,
    ) -> DFResult<OpenFile> {
        let table = self.table;
        let mut values = Vec::with_capacity(table.spec.len());
        let mut dirs = Vec::with_capacity(table.spec.len());
        for (column, &i) in table.spec.columns().iter().zip(&self.partition_columns) {
            let value = ScalarValue::try_from_array(batch.column(i), row)?;
            dirs.push(partition_dir(&table.name, column, &value)?);
            values.push(value);
        }
        let sequence = self.opened;
        self.opened += 1;
        let name = match bucket {
            Some(b) => format!("bucket-{b:05}-{}-{sequence:05}.parquet", self.id),
            None => format!("part-{}-{sequence:05}.parquet", self.id),
        };
        let root = table.root.prefix();
        let target = child(root, &dirs, &name)?;
        let temp = self
            .staging
            .temporary(&target, || child(root, &dirs, &temp_name(&name)))?;
        let staged = self.staging.open(&self.store, temp.clone(), &self.pool);
        let mut writer = AsyncArrowWriter::try_new_with_options(
            staged,
            Arc::clone(&self.storage_schema),
            ArrowWriterOptions::new()
                .with_properties(self.properties.clone())
                .with_skip_arrow_metadata(true),
        )
        .map_err(|e| self.write_error(temp.as_ref(), e.into()))?;
        if let (Some(b), Some(bucketing)) = (bucket, &table.options.bucketing) {
            // The partitioner hashed the table's type of the column (the
            // INSERT's rows are checked to have exactly the table's types).
            let hashed = table.table_schema().field_with_name(&bucketing.column)?;
            writer.append_key_value_metadata(KeyValue::new(
                BUCKETING_KEY.to_string(),
                bucketing.metadata_value(hashed.data_type()),
            ));
            writer.append_key_value_metadata(KeyValue::new(BUCKET_KEY.to_string(), b.to_string()));
        }
        // Recorded even when empty: "written in no order" keeps a later
        // `sort_order` declaration from trusting this file.
        let sort_order = table.options.sort.as_ref().map_or(&[][..], |s| &s.keys);
        writer.append_key_value_metadata(KeyValue::new(
            SORT_ORDER_KEY.to_string(),
            SortKey::encode_all(sort_order),
        ));
        let (rows, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
        let encoder = SpawnedTask::spawn(encode(writer, receiver, Arc::clone(&self.aborted)));
        Ok(OpenFile {
            values,
            bucket,
            temp,
            target,
            rows,
            encoder,
            written: 0,
        })
    }

    fn write_error(&self, path: &str, source: DataFusionError) -> DataFusionError {
        Error::WriteFile {
            table: self.table.name.to_string(),
            path: path.to_string(),
            source: Box::new(source),
        }
        .into()
    }

    /// Drops every file in progress; none of them was ever visible.
    async fn abort(self) {
        self.aborted.store(true, Ordering::Release);
        for (_, file) in self.open {
            drop(file.rows);
            let _ = finish(file.encoder).await;
            let _ = self.store.delete(&file.temp).await;
        }
        // Closed early: their encoders may have finished before the abort.
        for file in self.retired {
            if let Ok((_, staged)) = finish(file.encoder).await {
                staged.discard(&self.store, &file.temp).await;
            }
            let _ = self.store.delete(&file.temp).await;
        }
    }

    /// Closes every file (its encoder finishes it; statistics computed if
    /// the table keeps them). If one fails, the files in progress are
    /// aborted and the temporary files deleted. Nothing is visible yet.
    async fn close(self) -> DFResult<(Arc<dyn ObjectStore>, Vec<ClosedFile>)> {
        let table = self.table;
        let failed = |path: &Path, source: DataFusionError| -> DataFusionError {
            Error::WriteFile {
                table: table.name.to_string(),
                path: path.to_string(),
                source: Box::new(source),
            }
            .into()
        };
        // Every sender first, so that all files close concurrently.
        let files: Vec<Closing> = self
            .retired
            .into_iter()
            .chain(self.open.into_values().map(OpenFile::into_closing))
            .collect();
        let mut closed: Vec<ClosedFile> = Vec::with_capacity(files.len());
        let mut files = files.into_iter();
        while let Some(Closing {
            values,
            bucket,
            temp,
            target,
            encoder,
        }) = files.next()
        {
            let closing = finish(encoder).await.and_then(|(metadata, staged)| {
                if !table.options.collect_statistics {
                    return Ok((None, staged));
                }
                let statistics = DFParquetMetadata::statistics_from_parquet_metadata(
                    &metadata,
                    &table.file_schema,
                )?;
                Ok((Some(Arc::new(statistics)), staged))
            });
            match closing {
                Ok((statistics, staged)) => closed.push(ClosedFile {
                    values,
                    bucket,
                    temp,
                    target,
                    staged,
                    statistics,
                }),
                Err(e) => {
                    self.aborted.store(true, Ordering::Release);
                    for file in closed {
                        file.staged.discard(&self.store, &file.temp).await;
                    }
                    // The encoders that fail or see `aborted` drop their files.
                    let mut temps = vec![temp.clone()];
                    for rest in files {
                        if let Ok((_, staged)) = finish(rest.encoder).await {
                            staged.discard(&self.store, &rest.temp).await;
                        }
                        temps.push(rest.temp);
                    }
                    // Best effort: a hidden temporary file, or one never made visible.
                    delete_all(&self.store, temps.into_iter()).await;
                    return Err(failed(&temp, e));
                }
            }
        }
        Ok((self.store, closed))
    }
}

/// A file whose rows are all sent, its encoder finishing it.
struct Closing {
    values: Vec<ScalarValue>,
    bucket: Option<u32>,
    temp: Path,
    target: Path,
    encoder: SpawnedTask<DFResult<(ParquetMetaData, Staged)>>,
}
