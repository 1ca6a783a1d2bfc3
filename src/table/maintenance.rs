//! Keeping a table: `DELETE FROM` over partition columns ([`plan_delete`])
//! and compaction ([`compact`]). Both choose what to replace from a fresh,
//! journal-consistent listing (what other processes wrote since `build()`
//! counts), then replace it through the writer's commit protocol (see
//! `write::commit`), so every reader that honours the journal sees the
//! change whole.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{ScanArgs, Session};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
};
use datafusion_datasource::sink::{DataSink, DataSinkExec};
use futures::StreamExt;
use object_store::ObjectStore;

use super::discovery::{index_from, table_store};
use super::planner::plan_scan;
use super::pushdown::{matches, selected_by};
use crate::error::{Error, Result};
use crate::lake::index::{IndexedFile, ListedPartition, PartitionIndex};
use crate::lake::journal::Replaced;
use crate::lake::layout::rows_in;
use crate::lake::listing::Lister;
use crate::lake::snapshot::{snapshot, Scope};
use crate::lake::{SharedIndex, TableDefinition};
use crate::store::ResilientStore;
use crate::write::{claim_key, delete_partitions, rewrite};

/// The current partitions of the table, from a journal-consistent listing
/// (files of writes under way and files committed writes removed left out).
async fn current_partitions(
    store: &Arc<dyn ObjectStore>,
    definition: &TableDefinition,
) -> Result<Vec<ListedPartition>> {
    let lister = Lister::of_table(store, definition);
    let scope = Scope::Table(Some(&definition.spec));
    Ok(snapshot(&lister, scope, &definition.options.file_extension)
        .await?
        .partitions)
}

/// `partitions` with one entry per value, whatever the spellings of its
/// directories (`h=07` and `h=7`): each is one write, one claim.
fn one_per_value(partitions: Vec<ListedPartition>) -> Vec<ListedPartition> {
    let mut by_values: HashMap<Vec<ScalarValue>, usize> = HashMap::new();
    let mut merged: Vec<ListedPartition> = Vec::with_capacity(partitions.len());
    for partition in partitions {
        match by_values.get(&partition.values) {
            Some(&at) => merged[at].files.extend(partition.files),
            None => {
                by_values.insert(partition.values.clone(), merged.len());
                merged.push(partition);
            }
        }
    }
    merged
}

/// `files` of the partition with `values`, one listed partition per
/// directory they are in (an index holds one directory per partition).
fn by_directory(values: &[ScalarValue], files: Vec<IndexedFile>) -> Vec<ListedPartition> {
    let mut dirs: BTreeMap<String, Vec<IndexedFile>> = BTreeMap::new();
    for file in files {
        let location = file.meta.location.as_ref();
        let dir = location
            .rsplit_once('/')
            .map_or("", |(dir, _)| dir)
            .to_string();
        dirs.entry(dir).or_default().push(file);
    }
    dirs.into_values()
        .map(|files| ListedPartition {
            values: values.to_vec(),
            files,
        })
        .collect()
}

/// `DELETE FROM t WHERE …`: checks that `filters` name partition columns
/// only, and returns the plan that, when run, removes the matching
/// partitions' files and returns the rows removed. An empty `filters`
/// removes every file of the table.
pub(in crate::table) fn plan_delete(
    definition: &Arc<TableDefinition>,
    index: &Arc<SharedIndex>,
    state: &dyn Session,
    filters: Vec<Expr>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let spec = &definition.spec;
    for filter in &filters {
        if let Some(column) = filter
            .column_refs()
            .into_iter()
            .find(|c| spec.index_of(&c.name).is_none())
        {
            let partition_columns: Vec<&str> =
                spec.columns().iter().map(|c| c.name.as_str()).collect();
            return Err(DataFusionError::Plan(format!(
                "table {}: DELETE can only remove whole partitions, and its predicate names \
                 '{}', a column inside the files (removing some rows of a file would mean \
                 rewriting it); use a predicate over the partition columns ({})",
                definition.name,
                column.name,
                if partition_columns.is_empty() {
                    "none: the table is unpartitioned; DELETE FROM with no WHERE empties it"
                        .to_string()
                } else {
                    partition_columns.join(", ")
                }
            )));
        }
    }
    let predicate = match conjunction(filters) {
        None => None,
        Some(predicate) => {
            let schema = DFSchema::try_from(Schema::new(spec.fields()))?;
            Some(state.create_physical_expr(predicate, &schema)?)
        }
    };
    let sink = PartitionDelete {
        definition: Arc::clone(definition),
        index: Arc::clone(index),
        predicate,
    };
    let input = Arc::new(EmptyExec::new(Arc::clone(definition.table_schema())));
    Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
}

/// The `DataSink` of a `DELETE`: its input is empty; running it removes
/// the partitions its predicate selects (every partition without one).
struct PartitionDelete {
    definition: Arc<TableDefinition>,
    index: Arc<SharedIndex>,
    /// Over the partition columns.
    predicate: Option<Arc<dyn PhysicalExpr>>,
}

impl fmt::Debug for PartitionDelete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionDelete")
            .field("table", &self.definition.name)
            .finish()
    }
}

impl DisplayAs for PartitionDelete {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionDelete: table={}", self.definition.name)?;
        match &self.predicate {
            Some(predicate) => write!(f, ", partitions where {predicate}"),
            None => write!(f, ", every partition"),
        }
    }
}

#[async_trait]
impl DataSink for PartitionDelete {
    fn schema(&self) -> &SchemaRef {
        self.definition.table_schema()
    }

    async fn write_all(
        &self,
        _data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let definition = &self.definition;
        let store = context
            .runtime_env()
            .object_store(definition.root.object_store())?;
        let store = ResilientStore::wrap(store, definition.options.retry);
        let replaces = match &self.predicate {
            // An unpartitioned table's one "partition" is the table.
            None => Replaced::Table,
            Some(_) if definition.spec.is_empty() => Replaced::Table,
            Some(predicate) => {
                let partitions = current_partitions(&store, definition).await?;
                let index = PartitionIndex::try_new(&definition.spec, partitions)?;
                let selected = selected_by(predicate, index.values(), &definition.name)?;
                let dirs = index
                    .partitions()
                    .iter()
                    .zip(selected)
                    .filter(|(_, selected)| *selected)
                    .map(|(partition, _)| definition.canonical_dir(partition.values()))
                    .collect::<Result<BTreeSet<_>>>()?;
                if dirs.is_empty() {
                    return Ok(0);
                }
                Replaced::Partitions(dirs.into_iter().collect())
            }
        };
        let committed = delete_partitions(definition, &self.index, store, replaces).await?;
        Ok(committed.rows_removed)
    }
}

/// What [`PartitionedTable::compact`](crate::PartitionedTable::compact) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactOptions {
    /// Files smaller than this are compacted, into files of about this
    /// size (default 128 MiB).
    pub target_file_bytes: u64,
    /// A partition is compacted only if it has at least this many files
    /// smaller than the target (default 2: one small file is left as it is).
    pub min_files: usize,
    /// Partitions compacted at once (default 8: on an object store each
    /// partition's compaction is a few hundred requests, mostly one after
    /// another).
    pub partitions_at_once: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 * 1024 * 1024,
            min_files: 2,
            partitions_at_once: 8,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compaction {
    /// Partitions compacted.
    pub partitions: usize,
    /// Files replaced.
    pub files_in: usize,
    /// Files written in their place.
    pub files_out: usize,
    /// Bytes of the files replaced.
    pub bytes_in: u64,
    /// Bytes of the files written.
    pub bytes_out: u64,
    /// Rows rewritten (the same rows, in fewer files).
    pub rows: u64,
}

/// Compacts the partitions `predicate` selects (every partition without
/// one): see `PartitionedTable::compact`.
pub(in crate::table) async fn compact(
    definition: &Arc<TableDefinition>,
    index: &Arc<SharedIndex>,
    state: &dyn Session,
    predicate: Option<Expr>,
    options: &CompactOptions,
) -> Result<Compaction> {
    let store = table_store(state, definition)?;
    let partitions = current_partitions(&store, definition).await?;
    let selected = match &predicate {
        None => vec![true; partitions.len()],
        Some(predicate) => {
            let listed = PartitionIndex::try_new(&definition.spec, partitions.clone())
                .map_err(|e| failed(definition, e))?;
            // The index orders partitions by directory; match them back by values.
            let keep = matches(state, predicate, listed.values(), &definition.name)
                .map_err(|e| failed(definition, e))?;
            let chosen: std::collections::HashSet<&[ScalarValue]> = listed
                .partitions()
                .iter()
                .zip(keep)
                .filter(|(_, keep)| *keep)
                .map(|(p, _)| p.values())
                .collect();
            partitions
                .iter()
                .map(|p| chosen.contains(p.values.as_slice()))
                .collect()
        }
    };
    let work = one_per_value(partitions)
        .into_iter()
        .zip(selected)
        .filter(|(_, selected)| *selected)
        .filter_map(|(partition, _)| {
            let small: Vec<_> = partition
                .files
                .into_iter()
                .filter(|f| f.meta.size < options.target_file_bytes)
                .collect();
            (small.len() >= options.min_files.max(2)).then_some((partition.values, small))
        });
    let store = &store;
    let results: Vec<Result<Compaction>> = futures::stream::iter(work.map(|(values, small)| {
        compact_partition(definition, index, state, store, values, small, options)
    }))
    .buffer_unordered(options.partitions_at_once.max(1))
    .collect()
    .await;
    let mut done = Compaction::default();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(one) if one.files_in > 0 => {
                done.partitions += 1;
                done.files_in += one.files_in;
                done.files_out += one.files_out;
                done.bytes_in += one.bytes_in;
                done.bytes_out += one.bytes_out;
                done.rows += one.rows;
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        // The partitions compacted stay compacted; a second run does the rest.
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// Rewrites `files` (one partition's small files) into files of about the
/// target size, merged in the table's order where they are sorted.
async fn compact_partition(
    definition: &Arc<TableDefinition>,
    index: &Arc<SharedIndex>,
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    values: Vec<ScalarValue>,
    files: Vec<IndexedFile>,
    options: &CompactOptions,
) -> Result<Compaction> {
    // Layout (bucket, sortedness) as discovery reads it, so that files
    // merge within their bucket and the scan below declares what the files
    // prove.
    let discovered = index_from(state, store, definition, by_directory(&values, files))
        .await?
        .index;
    let mut by_bucket: BTreeMap<Option<u32>, Vec<IndexedFile>> = BTreeMap::new();
    for partition in discovered.partitions() {
        for file in discovered.files(partition) {
            let file = file.to_indexed().map_err(|e| failed(definition, e))?;
            by_bucket.entry(file.bucket).or_default().push(file);
        }
    }
    // A bucket with a single small file has nothing to merge it with.
    let files: Vec<IndexedFile> = by_bucket
        .into_values()
        .filter(|files| files.len() >= options.min_files.max(2))
        .flatten()
        .collect();
    if files.is_empty() {
        return Ok(Compaction::default());
    }
    // Claimed by our writer's spelling, or, for a value it cannot spell,
    // as another tool spelled it.
    let dir = claim_key(definition, &values, &files[0].meta.location);
    let bytes_in: u64 = files.iter().map(|f| f.meta.size).sum();
    let inputs: Vec<_> = files.iter().map(|f| f.meta.location.clone()).collect();
    let metas: Vec<_> = files.iter().map(|f| f.meta.clone()).collect();
    // Through the footer cache: the scan below reads them next.
    let footers = state.runtime_env().cache_manager.get_file_metadata_cache();
    let rows: u64 = rows_in(store, &metas, Some(footers)).await?.iter().sum();
    let chosen = PartitionIndex::try_new(&definition.spec, by_directory(&values, files))
        .map_err(|e| failed(definition, e))?;
    let scan: Arc<dyn ExecutionPlan> = Arc::new(
        plan_scan(definition, &chosen, state, &ScanArgs::default())
            .map_err(|e| failed(definition, e))?,
    );
    let input: Arc<dyn ExecutionPlan> = match definition.lex_ordering() {
        // Files already sorted are merged; anything else is sorted.
        Some(ordering) => {
            let declared = scan.output_ordering().is_some_and(|have| {
                have.iter()
                    .zip(ordering.iter())
                    .take(ordering.len())
                    .all(|(a, b)| a == b)
                    && have.len() >= ordering.len()
            });
            if declared {
                Arc::new(SortPreservingMergeExec::new(ordering, scan))
            } else {
                Arc::new(SortExec::new(
                    ordering,
                    Arc::new(CoalescePartitionsExec::new(scan)),
                ))
            }
        }
        None => Arc::new(CoalescePartitionsExec::new(scan)),
    };
    let context = state.task_ctx();
    let stream = input
        .execute(0, Arc::clone(&context))
        .map_err(|e| failed(definition, e))?;
    let target_files = bytes_in.div_ceil(options.target_file_bytes.max(1)).max(1);
    let rows_per_file = rows.div_ceil(target_files).max(1);
    // An unpartitioned table's one "partition" is the table.
    let replaces = if definition.spec.is_empty() {
        Replaced::Table
    } else {
        Replaced::Partitions(vec![dir])
    };
    let committed = rewrite(
        definition,
        index,
        &context,
        stream,
        rows_per_file,
        inputs,
        replaces,
    )
    .await
    .map_err(|e| failed(definition, e))?;
    Ok(Compaction {
        partitions: 1,
        files_in: committed.removed.len(),
        files_out: committed.added.len(),
        bytes_in: committed.removed.iter().map(|m| m.size).sum(),
        bytes_out: committed.added.iter().map(|f| f.file.meta.size).sum(),
        rows,
    })
}

/// A DataFusion error of a compaction: the crate's own error it carries,
/// or one naming the table.
fn failed(definition: &TableDefinition, error: DataFusionError) -> Error {
    Error::from_datafusion(error).unwrap_or_else(|error| Error::WriteFile {
        table: definition.name.to_string(),
        path: definition.root.to_string(),
        source: Box::new(error),
    })
}
