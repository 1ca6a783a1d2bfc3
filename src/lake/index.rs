//! The partition index: the one listing of a table that every scan plans from.
//!
//! It is built by discovery (at `build()` or `refresh()`) and then only read,
//! so planning never touches the object store. A table swaps whole indexes,
//! never edits one, which is why a scan never sees a mix of two listings.
//! [`SharedIndex`](super::shared::SharedIndex) owns the swapping: what scans
//! read, what `INSERT INTO` publishes, and what a refresh installs.
//!
//! An index holds its files packed, column by column, the way the codecs
//! ship file lists: each partition's values and directory once, each file's
//! name relative to its directory, sizes and times as plain integers, ETags
//! and versions only when some file has one, statistics and buckets only
//! when some file has them. At 10⁶ files in 10⁵ partitions that is under
//! 100 bytes a file; a scan makes DataFusion's `PartitionedFile`s for the
//! files it selects only ([`FileRef::partitioned_file`]).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion_datasource::PartitionedFile;
use object_store::path::{Path, PathPart};
use object_store::ObjectMeta;

use super::partitioning::PartitionSpec;

/// A file an `INSERT` wrote, with the partition values of its directory.
#[derive(Debug, Clone)]
pub(crate) struct PublishedFile {
    pub values: Vec<ScalarValue>,
    pub file: IndexedFile,
}

/// One data file, whole: what discovery lists and an `INSERT` publishes
/// before the index packs it, and what [`FileRef::to_indexed`] unpacks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IndexedFile {
    /// Location, size, modification time and ETag from the listing.
    pub meta: ObjectMeta,
    /// Footer statistics, present when the table was built with
    /// `collect_statistics(true)`.
    pub statistics: Option<Arc<Statistics>>,
    /// The bucket the file holds, when its metadata says it was written
    /// with the table's bucketing (see [`Bucketing`](crate::Bucketing)).
    pub bucket: Option<u32>,
    /// The file's rows are in the table's sort order: its metadata records
    /// that order (or one that starts with it), or the order was declared
    /// with `sort_order` and the file records none (see
    /// [`SortKey`](crate::SortKey)).
    pub sorted: bool,
}

/// One leaf partition directory and its files, as a listing finds them
/// (the index's input; [`PartitionIndex::try_new`] packs it).
#[derive(Debug, Clone)]
pub(crate) struct ListedPartition {
    /// Typed values of the partition columns, in spec order (NULL for
    /// `__HIVE_DEFAULT_PARTITION__`).
    pub values: Vec<ScalarValue>,
    /// The files directly inside the partition directory.
    pub files: Vec<IndexedFile>,
}

/// One leaf partition directory of an index: its values, its directory,
/// and where its files are in the index ([`PartitionIndex::files`]).
#[derive(Debug, Clone)]
pub struct Partition {
    values: Vec<ScalarValue>,
    /// The directory's object path (empty for files at the store's root).
    dir: Path,
    files: Range<u32>,
}

impl Partition {
    /// Typed values of the partition columns, in spec order (NULL for
    /// `__HIVE_DEFAULT_PARTITION__`).
    pub fn values(&self) -> &[ScalarValue] {
        &self.values
    }

    /// The partition directory's object path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many files the partition holds (at least one).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The key partitions are ordered by: the order of their files' paths.
    fn order_key(&self) -> String {
        if self.dir.is_root() {
            String::new()
        } else {
            format!("{}/", self.dir)
        }
    }
}

/// Many strings in one buffer: `ends[i]` is where string `i` ends.
#[derive(Debug, Clone, Default)]
struct Strings {
    text: String,
    ends: Vec<u32>,
}

impl Strings {
    fn with_count(count: usize) -> Self {
        Self {
            text: String::new(),
            ends: vec![0; count],
        }
    }

    fn push(&mut self, s: &str) -> DFResult<()> {
        self.text.push_str(s);
        let end = u32::try_from(self.text.len()).map_err(|_| {
            DataFusionError::ResourcesExhausted(
                "a partition index holds at most 4 GiB of file names, ETags or versions".into(),
            )
        })?;
        self.ends.push(end);
        Ok(())
    }

    fn get(&self, i: usize) -> &str {
        let start = match i.checked_sub(1) {
            Some(previous) => self.ends.get(previous).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// A bucket number meaning "no trusted bucket" (in the index and on the wire).
pub(crate) const NO_BUCKET: u32 = u32::MAX;

/// The files of an index, one column per field. Optional columns exist only
/// once some file has a value; an empty ETag or version means none.
#[derive(Debug, Clone, Default)]
struct FileColumns {
    names: Strings,
    sizes: Vec<u64>,
    modified_seconds: Vec<i64>,
    modified_nanos: Vec<u32>,
    e_tags: Option<Strings>,
    versions: Option<Strings>,
    statistics: Option<Vec<Option<Arc<Statistics>>>>,
    buckets: Option<Vec<u32>>,
    sorted: Vec<bool>,
}

/// One file's fields, borrowed from wherever they are (an [`IndexedFile`]
/// or another index).
struct FileFields<'a> {
    name: &'a str,
    size: u64,
    last_modified: DateTime<Utc>,
    e_tag: Option<&'a str>,
    version: Option<&'a str>,
    statistics: Option<&'a Arc<Statistics>>,
    bucket: Option<u32>,
    sorted: bool,
}

impl FileColumns {
    fn len(&self) -> usize {
        self.sizes.len()
    }

    fn push(&mut self, file: FileFields<'_>) -> DFResult<()> {
        let count = self.len();
        self.names.push(file.name)?;
        self.sizes.push(file.size);
        self.modified_seconds.push(file.last_modified.timestamp());
        self.modified_nanos
            .push(file.last_modified.timestamp_subsec_nanos());
        push_optional(&mut self.e_tags, count, file.e_tag)?;
        push_optional(&mut self.versions, count, file.version)?;
        if let Some(stats) = file.statistics {
            self.statistics
                .get_or_insert_with(|| vec![None; count])
                .push(Some(Arc::clone(stats)));
        } else if let Some(all) = &mut self.statistics {
            all.push(None);
        }
        if let Some(bucket) = file.bucket {
            self.buckets
                .get_or_insert_with(|| vec![NO_BUCKET; count])
                .push(bucket);
        } else if let Some(all) = &mut self.buckets {
            all.push(NO_BUCKET);
        }
        self.sorted.push(file.sorted);
        Ok(())
    }

    fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.sizes.shrink_to_fit();
        self.modified_seconds.shrink_to_fit();
        self.modified_nanos.shrink_to_fit();
        self.e_tags.iter_mut().for_each(Strings::shrink_to_fit);
        self.versions.iter_mut().for_each(Strings::shrink_to_fit);
        self.statistics.iter_mut().for_each(|s| s.shrink_to_fit());
        self.buckets.iter_mut().for_each(|b| b.shrink_to_fit());
        self.sorted.shrink_to_fit();
    }
}

fn push_optional(column: &mut Option<Strings>, count: usize, value: Option<&str>) -> DFResult<()> {
    match (column.as_mut(), value) {
        (Some(strings), value) => strings.push(value.unwrap_or("")),
        (None, Some(value)) if !value.is_empty() => {
            let mut strings = Strings::with_count(count);
            strings.push(value)?;
            *column = Some(strings);
            Ok(())
        }
        (None, _) => Ok(()),
    }
}

/// One file of an index, read in place.
#[derive(Debug, Clone, Copy)]
pub struct FileRef<'a> {
    files: &'a FileColumns,
    dir: &'a Path,
    i: usize,
}

impl<'a> FileRef<'a> {
    /// The file's name inside its partition directory.
    pub fn name(&self) -> &'a str {
        self.files.names.get(self.i)
    }

    /// The file's object path.
    pub fn location(&self) -> DFResult<Path> {
        // One allocation: the name is one segment of a path already
        // encoded, so it is checked, never encoded again.
        let name = PathPart::parse(self.name()).map_err(|e| {
            DataFusionError::Internal(format!(
                "the index holds an invalid file name in '{}': {e}",
                self.dir
            ))
        })?;
        Ok(self.dir.clone().join(name))
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.files.sizes.get(self.i).copied().unwrap_or(0)
    }

    /// When the file was last modified, as listed.
    pub fn last_modified(&self) -> DateTime<Utc> {
        let seconds = self.files.modified_seconds.get(self.i).copied();
        let nanos = self.files.modified_nanos.get(self.i).copied();
        seconds
            .and_then(|s| DateTime::from_timestamp(s, nanos.unwrap_or(0)))
            .unwrap_or_default()
    }

    /// The file's ETag, if the listing gave one.
    pub fn e_tag(&self) -> Option<&'a str> {
        let e_tag = self.files.e_tags.as_ref()?.get(self.i);
        (!e_tag.is_empty()).then_some(e_tag)
    }

    /// The file's object version, if the listing gave one.
    pub fn version(&self) -> Option<&'a str> {
        let version = self.files.versions.as_ref()?.get(self.i);
        (!version.is_empty()).then_some(version)
    }

    /// Footer statistics, when the table collects them.
    pub fn statistics(&self) -> Option<&'a Arc<Statistics>> {
        self.files.statistics.as_ref()?.get(self.i)?.as_ref()
    }

    /// The bucket the file is proven to hold (see [`IndexedFile::bucket`]).
    pub fn bucket(&self) -> Option<u32> {
        let bucket = *self.files.buckets.as_ref()?.get(self.i)?;
        (bucket != NO_BUCKET).then_some(bucket)
    }

    /// Whether the file's rows are in the table's sort order (see
    /// [`IndexedFile::sorted`]).
    pub fn sorted(&self) -> bool {
        self.files.sorted.get(self.i).copied().unwrap_or(false)
    }

    /// The file as the object store lists it.
    pub fn meta(&self) -> DFResult<ObjectMeta> {
        Ok(ObjectMeta {
            location: self.location()?,
            last_modified: self.last_modified(),
            size: self.size(),
            e_tag: self.e_tag().map(str::to_string),
            version: self.version().map(str::to_string),
        })
    }

    /// The file, unpacked.
    pub fn to_indexed(&self) -> DFResult<IndexedFile> {
        Ok(IndexedFile {
            meta: self.meta()?,
            statistics: self.statistics().cloned(),
            bucket: self.bucket(),
            sorted: self.sorted(),
        })
    }

    /// The file as DataFusion's file scan takes it, with `values` (its
    /// partition's) as partition values.
    pub fn partitioned_file(&self, values: &[ScalarValue]) -> DFResult<PartitionedFile> {
        let file =
            PartitionedFile::new_from_meta(self.meta()?).with_partition_values(values.to_vec());
        Ok(match self.statistics() {
            Some(stats) => file.with_statistics(Arc::clone(stats)),
            None => file,
        })
    }

    fn fields(&self) -> FileFields<'a> {
        FileFields {
            name: self.name(),
            size: self.size(),
            last_modified: self.last_modified(),
            e_tag: self.e_tag(),
            version: self.version(),
            statistics: self.statistics(),
            bucket: self.bucket(),
            sorted: self.sorted(),
        }
    }
}

/// The directory and name of an object path (`""` and the path for one at
/// the store's root).
fn split_location(location: &Path) -> (&str, &str) {
    location
        .as_ref()
        .rsplit_once('/')
        .unwrap_or(("", location.as_ref()))
}

impl<'a> FileFields<'a> {
    fn of(file: &'a IndexedFile) -> Self {
        Self {
            name: split_location(&file.meta.location).1,
            size: file.meta.size,
            last_modified: file.meta.last_modified,
            e_tag: file.meta.e_tag.as_deref(),
            version: file.meta.version.as_deref(),
            statistics: file.statistics.as_ref(),
            bucket: file.bucket,
            sorted: file.sorted,
        }
    }
}

/// Packs partitions into an index, one at a time.
#[derive(Default)]
struct IndexBuilder {
    partitions: Vec<Partition>,
    files: FileColumns,
}

impl IndexBuilder {
    /// Adds a partition of `files` (at least one, all directly in `dir`),
    /// in name order.
    fn push<'f>(
        &mut self,
        values: Vec<ScalarValue>,
        dir: &Path,
        files: impl IntoIterator<Item = FileFields<'f>>,
    ) -> DFResult<()> {
        let start = self.files.len();
        for file in files {
            self.files.push(file)?;
        }
        let (start, end) = (start as u32, self.files.len() as u32);
        if end > start {
            self.partitions.push(Partition {
                values,
                dir: dir.clone(),
                files: start..end,
            });
        }
        Ok(())
    }

    /// Adds listed partitions: their files sorted by name, each checked to
    /// be directly inside its partition's directory.
    fn push_listed(&mut self, partitions: Vec<ListedPartition>) -> DFResult<()> {
        for ListedPartition { values, mut files } in partitions {
            files.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
            let Some(first) = files.first() else {
                continue;
            };
            let dir = split_location(&first.meta.location).0.to_string();
            if let Some(stray) = files
                .iter()
                .find(|f| split_location(&f.meta.location).0 != dir)
            {
                return Err(DataFusionError::Internal(format!(
                    "file '{}' is listed in partition directory '{dir}'",
                    stray.meta.location
                )));
            }
            let dir = Path::parse(&dir).map_err(|e| {
                DataFusionError::Internal(format!("partition directory '{dir}': {e}"))
            })?;
            self.push(values, &dir, files.iter().map(FileFields::of))?;
        }
        Ok(())
    }

    fn finish(mut self, spec: &PartitionSpec) -> DFResult<PartitionIndex> {
        // Listings grow these vectors by doubling; an index lives until the
        // next refresh, so it keeps no spare capacity.
        self.files.shrink_to_fit();
        self.partitions.shrink_to_fit();
        self.partitions.sort_by_cached_key(Partition::order_key);
        let values = values_batch(spec, &self.partitions)?;
        Ok(PartitionIndex {
            partitions: self.partitions,
            files: self.files,
            values,
            bucket_note: None,
            table_statistics: OnceLock::new(),
        })
    }
}

/// One row per partition, one column per partition column.
fn values_batch(spec: &PartitionSpec, partitions: &[Partition]) -> DFResult<RecordBatch> {
    let schema = Arc::new(Schema::new(spec.fields()));
    let columns: Vec<ArrayRef> = spec
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            if partitions.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(&column.data_type));
            }
            let values = partitions
                .iter()
                .map(|p| {
                    p.values.get(i).cloned().ok_or_else(|| {
                        DataFusionError::Internal(format!(
                            "partition '{}' has {} values for {} partition columns",
                            p.dir,
                            p.values.len(),
                            spec.len()
                        ))
                    })
                })
                .collect::<DFResult<Vec<_>>>()?;
            ScalarValue::iter_to_array(values)
        })
        .collect::<DFResult<_>>()?;
    if columns.is_empty() {
        Ok(RecordBatch::try_new_with_options(
            schema,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(partitions.len())),
        )?)
    } else {
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// A snapshot of the table's files, grouped by partition.
#[derive(Debug, Clone)]
pub struct PartitionIndex {
    /// Sorted by path.
    partitions: Vec<Partition>,
    files: FileColumns,
    /// One row per partition, one column per partition column: the pruning
    /// predicate is evaluated against this batch in a single vectorised pass.
    values: RecordBatch,
    /// Why some file of a bucketed table has no trusted bucket (the first
    /// reason found at discovery), for `EXPLAIN`.
    bucket_note: Option<Arc<str>>,
    /// The statistics of the whole table, computed once per index (they are
    /// a pass over every file: at 10⁶ files, ~90 ms).
    table_statistics: OnceLock<Arc<Statistics>>,
}

impl PartitionIndex {
    /// Builds an index from listed partitions (in any order) under `spec`.
    /// A partition without files is left out.
    pub(crate) fn try_new(
        spec: &PartitionSpec,
        partitions: Vec<ListedPartition>,
    ) -> DFResult<Self> {
        let mut builder = IndexBuilder::default();
        builder.push_listed(partitions)?;
        builder.finish(spec)
    }

    /// The same index, noting why some file of a bucketed table has no
    /// trusted bucket.
    pub(crate) fn with_bucket_note(mut self, note: Option<Arc<str>>) -> Self {
        self.bucket_note = note;
        self
    }

    /// Why some file of a bucketed table has no trusted bucket, if one has none.
    pub fn bucket_note(&self) -> Option<&str> {
        self.bucket_note.as_deref()
    }

    /// The statistics of the whole table: `compute`d the first time, then
    /// reused for as long as this index is the table's.
    pub(crate) fn table_statistics(&self, compute: impl FnOnce() -> Statistics) -> Arc<Statistics> {
        Arc::clone(self.table_statistics.get_or_init(|| Arc::new(compute())))
    }

    /// All partitions, sorted by path.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// The files of `partition` (one of [`partitions`](Self::partitions)),
    /// sorted by name.
    pub fn files<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> impl ExactSizeIterator<Item = FileRef<'a>> + Clone + 'a {
        let range = partition.files.start as usize..partition.files.end as usize;
        range.map(move |i| FileRef {
            files: &self.files,
            dir: &partition.dir,
            i,
        })
    }

    /// Every file of the table, partition by partition, sorted by path.
    pub fn all_files(&self) -> impl Iterator<Item = FileRef<'_>> + '_ {
        self.partitions.iter().flat_map(|p| self.files(p))
    }

    /// The partition values as a batch (one row per partition).
    pub fn values(&self) -> &RecordBatch {
        &self.values
    }

    /// The same index with every file marked as sorted in the table's order
    /// (the table adopted the order all of them record).
    pub(crate) fn with_all_sorted(mut self) -> Self {
        self.files.sorted.iter_mut().for_each(|s| *s = true);
        self
    }

    /// The number of files in the table.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Whether some file has footer statistics (the table collects them).
    pub fn has_statistics(&self) -> bool {
        self.files.statistics.is_some()
    }

    /// The total size in bytes of the table's files.
    pub fn total_bytes(&self) -> u64 {
        self.files.sizes.iter().sum()
    }

    /// The first file of the table, if it has one (used for schema inference).
    pub fn first_file(&self) -> Option<FileRef<'_>> {
        self.all_files().next()
    }

    /// Copies `partition` of this index into `builder`, with `added` (files
    /// of the same directory) merged in by name; an added file the
    /// partition already holds is kept once.
    fn copy_into(
        &self,
        builder: &mut IndexBuilder,
        partition: &Partition,
        added: &[IndexedFile],
    ) -> DFResult<()> {
        if added.is_empty() {
            return builder.push(
                partition.values.clone(),
                &partition.dir,
                self.files(partition).map(|f| f.fields()),
            );
        }
        let mut merged: Vec<FileFields<'_>> = self
            .files(partition)
            .map(|f| f.fields())
            .chain(added.iter().map(FileFields::of))
            .collect();
        merged.sort_by(|a, b| a.name.cmp(b.name));
        merged.dedup_by(|later, earlier| later.name == earlier.name);
        builder.push(partition.values.clone(), &partition.dir, merged)
    }

    /// This index with `published` added to their partitions (new partitions
    /// created as needed); a file already listed under the same path is kept
    /// once.
    pub(crate) fn with_files(
        &self,
        spec: &PartitionSpec,
        published: impl IntoIterator<Item = PublishedFile>,
    ) -> DFResult<Self> {
        // Published files by directory, in the order they came.
        let mut by_dir: HashMap<String, (Vec<ScalarValue>, Vec<IndexedFile>)> = HashMap::new();
        for PublishedFile { values, file } in published {
            let dir = split_location(&file.meta.location).0.to_string();
            by_dir
                .entry(dir)
                .or_insert_with(|| (values, Vec::new()))
                .1
                .push(file);
        }
        let mut builder = IndexBuilder::default();
        for partition in &self.partitions {
            let added = by_dir
                .remove(partition.dir().as_ref())
                .map(|(_, files)| files)
                .unwrap_or_default();
            self.copy_into(&mut builder, partition, &added)?;
        }
        builder.push_listed(
            by_dir
                .into_values()
                .map(|(values, mut files)| {
                    // The same file published twice is kept once.
                    let mut seen = HashSet::new();
                    files.retain(|f| seen.insert(f.meta.location.clone()));
                    ListedPartition { values, files }
                })
                .collect(),
        )?;
        Ok(builder
            .finish(spec)?
            .with_bucket_note(self.bucket_note.clone()))
    }

    /// This index without the files at `excluded` (object paths); a
    /// partition left with no file is left out.
    pub(crate) fn without(&self, spec: &PartitionSpec, excluded: &HashSet<&str>) -> DFResult<Self> {
        let mut builder = IndexBuilder::default();
        let mut path = String::new();
        for partition in &self.partitions {
            let kept = self.files(partition).filter(|file| {
                path.clear();
                if !partition.dir.as_ref().is_empty() {
                    path.push_str(partition.dir.as_ref());
                    path.push('/');
                }
                path.push_str(file.name());
                !excluded.contains(path.as_str())
            });
            let kept: Vec<FileFields<'_>> = kept.map(|f| f.fields()).collect();
            builder.push(partition.values.clone(), &partition.dir, kept)?;
        }
        Ok(builder
            .finish(spec)?
            .with_bucket_note(self.bucket_note.clone()))
    }

    /// This index with the partitions `replaced` marks (one flag per
    /// partition) left out and every partition of `listed` added.
    pub(crate) fn replacing(
        &self,
        spec: &PartitionSpec,
        replaced: &[bool],
        listed: &Self,
    ) -> DFResult<Self> {
        let mut builder = IndexBuilder::default();
        let kept = self
            .partitions
            .iter()
            .zip(replaced.iter().copied().chain(std::iter::repeat(false)))
            .filter(|(_, replaced)| !replaced);
        for (partition, _) in kept {
            self.copy_into(&mut builder, partition, &[])?;
        }
        for partition in &listed.partitions {
            listed.copy_into(&mut builder, partition, &[])?;
        }
        let note = listed
            .bucket_note
            .clone()
            .or_else(|| self.bucket_note.clone());
        Ok(builder.finish(spec)?.with_bucket_note(note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    fn file(path: &str, e_tag: Option<&str>) -> IndexedFile {
        IndexedFile {
            meta: ObjectMeta {
                location: Path::from(path),
                last_modified: DateTime::from_timestamp(1_700_000_000, 123_456_789)
                    .unwrap_or_default(),
                size: path.len() as u64,
                e_tag: e_tag.map(str::to_string),
                version: None,
            },
            statistics: None,
            bucket: None,
            sorted: false,
        }
    }

    fn spec() -> PartitionSpec {
        PartitionSpec::new([("p".to_string(), DataType::Int32)])
    }

    fn listed(p: i32, names: &[&str]) -> ListedPartition {
        ListedPartition {
            values: vec![ScalarValue::Int32(Some(p))],
            files: names
                .iter()
                .map(|n| file(&format!("t/p={p}/{n}"), (p == 2).then_some("\"e\"")))
                .collect(),
        }
    }

    #[test]
    fn an_index_gives_back_every_field_it_packed() {
        let mut with_stats = file("t/p=1/b.parquet", Some("\"x\""));
        with_stats.statistics = Some(Arc::new(Statistics::default()));
        with_stats.bucket = Some(3);
        with_stats.sorted = true;
        let mut one = listed(1, &["c.parquet", "a.parquet"]);
        one.files.push(with_stats.clone());
        let index =
            PartitionIndex::try_new(&spec(), vec![listed(10, &["x.parquet"]), one]).unwrap();
        assert_eq!(index.file_count(), 4);
        let dirs: Vec<&str> = index
            .partitions()
            .iter()
            .map(|p| p.dir().as_ref())
            .collect();
        assert_eq!(dirs, ["t/p=1", "t/p=10"]);
        let files: Vec<IndexedFile> = index.all_files().map(|f| f.to_indexed().unwrap()).collect();
        let paths: Vec<String> = files.iter().map(|f| f.meta.location.to_string()).collect();
        assert_eq!(
            paths,
            [
                "t/p=1/a.parquet",
                "t/p=1/b.parquet",
                "t/p=1/c.parquet",
                "t/p=10/x.parquet"
            ]
        );
        assert_eq!(files[1].meta, with_stats.meta);
        assert_eq!(files[1].bucket, Some(3));
        assert!(files[1].sorted && files[1].statistics.is_some());
        assert_eq!(files[0].meta, file("t/p=1/a.parquet", None).meta);
        assert_eq!((files[0].bucket, files[0].sorted), (None, false));
        assert!(files[0].statistics.is_none());
        assert_eq!(
            index.total_bytes(),
            paths.iter().map(|p| p.len() as u64).sum::<u64>()
        );
    }

    #[test]
    fn an_index_keeps_no_spare_capacity() {
        let mut files = Vec::with_capacity(64);
        files.extend((0..10).map(|i| file(&format!("t/p=1/part-{i}.parquet"), None)));
        let mut partitions = Vec::with_capacity(64);
        partitions.push(ListedPartition {
            values: vec![ScalarValue::Int32(Some(1))],
            files,
        });
        let index = PartitionIndex::try_new(&spec(), partitions).unwrap();
        assert_eq!(index.partitions.capacity(), 1);
        assert_eq!(index.files.sizes.capacity(), 10);
        assert_eq!(
            index.files.names.text.capacity(),
            index.files.names.text.len()
        );
        assert!(index.files.e_tags.is_none() && index.files.statistics.is_none());
        assert_eq!(index.file_count(), 10);
    }

    #[test]
    fn appending_merges_by_directory_and_keeps_a_path_once() {
        let index = PartitionIndex::try_new(
            &spec(),
            vec![
                listed(1, &["a.parquet", "c.parquet"]),
                listed(2, &["a.parquet"]),
            ],
        )
        .unwrap();
        let published = [
            PublishedFile {
                values: vec![ScalarValue::Int32(Some(1))],
                file: file("t/p=1/b.parquet", None),
            },
            PublishedFile {
                values: vec![ScalarValue::Int32(Some(1))],
                file: file("t/p=1/a.parquet", None),
            },
            PublishedFile {
                values: vec![ScalarValue::Int32(Some(3))],
                file: file("t/p=3/a.parquet", None),
            },
        ];
        let appended = index.with_files(&spec(), published).unwrap();
        let paths: Vec<String> = appended
            .all_files()
            .map(|f| f.location().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "t/p=1/a.parquet",
                "t/p=1/b.parquet",
                "t/p=1/c.parquet",
                "t/p=2/a.parquet",
                "t/p=3/a.parquet"
            ]
        );
        // Only p=2's files had ETags; the others still have none.
        let e_tags: Vec<Option<&str>> = appended.all_files().map(|f| f.e_tag()).collect();
        assert_eq!(e_tags, [None, None, None, Some("\"e\""), None]);
        assert_eq!(appended.values().num_rows(), 3);

        let replaced = appended
            .replacing(
                &spec(),
                &[true, false, false],
                &PartitionIndex::try_new(&spec(), vec![listed(1, &["z.parquet"])]).unwrap(),
            )
            .unwrap();
        let paths: Vec<String> = replaced
            .all_files()
            .map(|f| f.location().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            ["t/p=1/z.parquet", "t/p=2/a.parquet", "t/p=3/a.parquet"]
        );
    }

    #[test]
    fn a_file_outside_its_partition_directory_is_an_error() {
        let mut partition = listed(1, &["a.parquet"]);
        partition.files.push(file("t/p=2/b.parquet", None));
        let error = PartitionIndex::try_new(&spec(), vec![partition]).unwrap_err();
        assert!(error.to_string().contains("t/p=2/b.parquet"), "{error}");
    }
}
