//! Statistics learned from the footers scans read, so that later plans
//! prune whole files and stop a `LIMIT` early without opening them.
//!
//! A table reads one footer at registration (unless it collects
//! statistics), so its first scan knows no file's min/max and must open
//! every file to prune its row groups. That scan reads the footers anyway:
//! each one it reads is turned into the file's [`Statistics`] (DataFusion's
//! own `statistics_from_parquet_metadata`, as `ListingTable` does) and kept
//! in the runtime's file statistics cache — DataFusion's `FileStatisticsCache`,
//! the one `ListingTable` keeps its statistics in, bounded by
//! `datafusion.runtime.file_statistics_cache_limit` (20 MiB by default) and
//! least recently used first out. Planning takes them from there, without
//! I/O.
//!
//! What is kept is true of the file it was read from: an entry is used
//! only for a file of the same size, modification time (and ETag, where
//! both have one) and for the same file schema. A file whose column types
//! differ from the table's (which its scan rejects) teaches nothing, so a
//! plan never prunes away a file whose scan should have failed.
//!
//! The cache is the executing runtime's: on one machine, the session's; on
//! a distributed engine, what workers learn stays on the workers.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Statistics, TableReference};
use datafusion::datasource::physical_plan::parquet::apply_file_schema_type_coercions;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::execution::cache::cache_manager::{CachedFileMetadata, FileStatisticsCache};
use datafusion::execution::cache::{
    Cache, CacheKey, CacheValue, SchemaFingerprint, TableScopedPath,
};
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectMeta;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::ParquetMetaData;

/// The statistics a runtime has learned of one table's files (see the
/// module's documentation): where they are kept and for which file schema.
#[derive(Clone)]
pub(crate) struct LearnedStatistics {
    cache: Arc<FileStatisticsCache>,
    key: Arc<LearnedKey>,
    /// Whether the cache is full: learning more would then only trade one
    /// file's statistics for another's, at the cost of computing them, and
    /// a scan of more files than the cache holds would do it for every
    /// file, every time.
    full: CacheFull,
}

/// What a table's learned statistics are kept under and checked against:
/// its file schema. Built once per table, and by a scan not planned by a
/// table (one decoded, or run from a distributed carrier) from its own file
/// schema, not per footer read: an entry learned under the same `Arc` of
/// the fingerprint is checked by comparing pointers, not the schema's
/// columns.
#[derive(Debug)]
pub(crate) struct LearnedKey {
    file_schema: SchemaRef,
    fingerprint: Arc<SchemaFingerprint>,
    /// What the cache's keys are scoped to: the file schema, so that tables
    /// reading the same files with other schemas keep their own entries
    /// rather than evicting each other's.
    scope: TableReference,
}

impl LearnedKey {
    /// The key of the files read with `file_schema` (the table's columns
    /// without its partition columns).
    pub(crate) fn new(file_schema: &SchemaRef) -> Arc<Self> {
        let fingerprint = SchemaFingerprint::from_schema(file_schema);
        // The fingerprint hashes as the hash of its columns (names, types,
        // nullability), computed once.
        let mut hasher = DefaultHasher::new();
        fingerprint.hash(&mut hasher);
        Arc::new(Self {
            file_schema: Arc::clone(file_schema),
            fingerprint: Arc::new(fingerprint),
            scope: TableReference::bare(format!("lakefusion:{:016x}", hasher.finish())),
        })
    }
}

/// Notices that one of the runtime's caches is full, for the readers of one
/// scan partition: a put of a key the cache did not hold that leaves it with
/// no more entries than before evicted others or was refused. With more
/// files than a cache holds, least recently used first out evicts each
/// entry before its next use, so putting more only costs. Each partition of
/// a scan finds it full on its own (one put each), and a later scan tries
/// again. (A put by another reader in between only delays noticing.)
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheFull(Arc<AtomicBool>);

impl CacheFull {
    /// Whether a put was seen to leave the cache full.
    pub(crate) fn is_full(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Before a put of `key` into `cache`: what [`after_put`](Self::after_put)
    /// compares with (`None` when the cache holds the key: replacing it
    /// says nothing).
    pub(crate) fn before_put<K: CacheKey, V: CacheValue>(
        cache: &dyn Cache<K, V>,
        key: &K,
    ) -> Option<usize> {
        (!cache.contains_key(key)).then(|| cache.len())
    }

    /// After the put: notes the cache full if it holds no more entries.
    pub(crate) fn after_put<K: CacheKey, V: CacheValue>(
        &self,
        cache: &dyn Cache<K, V>,
        before: Option<usize>,
    ) {
        if before.is_some_and(|before| cache.len() <= before) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for LearnedStatistics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnedStatistics")
            .field("cache", &self.cache.name())
            .finish_non_exhaustive()
    }
}

impl LearnedStatistics {
    /// The statistics `runtime` keeps of the files `key` describes; `None`
    /// when the runtime keeps no file statistics (its cache limit is 0).
    pub(crate) fn of(runtime: &RuntimeEnv, key: &Arc<LearnedKey>) -> Option<Self> {
        Some(Self {
            cache: runtime.cache_manager.get_file_statistic_cache()?,
            key: Arc::clone(key),
            full: CacheFull::default(),
        })
    }

    /// Whether nothing has been learned yet, of any file (planning then
    /// looks nothing up).
    pub(crate) fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The statistics learned of the file `meta` describes, if they were
    /// learned from this very version of it.
    pub(crate) fn get(&self, meta: &ObjectMeta) -> Option<Arc<Statistics>> {
        let cached = self.cache.get(&self.key(meta))?;
        let same_version = cached.is_valid_for(meta, &self.key.fingerprint)
            && match (&cached.meta.e_tag, &meta.e_tag) {
                (Some(learned), Some(listed)) => learned == listed,
                _ => true,
            };
        same_version.then_some(cached.statistics)
    }

    /// Keeps the statistics of the file `meta` describes, from its footer
    /// `metadata`, unless they are already kept, its column types are not
    /// exactly the table's, or the cache is full.
    pub(crate) fn learn(&self, meta: &ObjectMeta, metadata: &ParquetMetaData) {
        if self.full.is_full() || self.get(meta).is_some() || !self.types_match(metadata) {
            return;
        }
        // A footer DataFusion cannot summarise teaches nothing; the scan
        // itself reports what is wrong with the file.
        let Ok(statistics) =
            DFParquetMetadata::statistics_from_parquet_metadata(metadata, &self.key.file_schema)
        else {
            return;
        };
        let key = self.key(meta);
        let before = CacheFull::before_put(self.cache.as_ref(), &key);
        self.cache.put(
            &key,
            CachedFileMetadata::new(
                meta.clone(),
                Arc::clone(&self.key.fingerprint),
                Arc::new(statistics),
                None,
            ),
        );
        self.full.after_put(self.cache.as_ref(), before);
    }

    /// The cache key of the file `meta` describes. A hash collision of two
    /// file schemas only shares a key: every entry is still checked against
    /// the exact schema before it is used.
    fn key(&self, meta: &ObjectMeta) -> TableScopedPath {
        TableScopedPath {
            table: Some(self.key.scope.clone()),
            path: meta.location.clone(),
        }
    }

    /// Whether every table column the file has is stored with the table's
    /// type, once DataFusion's own coercions of string and binary columns
    /// to their view types are applied, as the scan applies them (a column
    /// the file lacks has no min/max, which prunes nothing). A lossless
    /// variant (`Int32` for `Int64`) is read fine but its footer min/max are
    /// not of the table's type, so it is not learned.
    fn types_match(&self, metadata: &ParquetMetaData) -> bool {
        let file = metadata.file_metadata();
        let Ok(mut schema) =
            parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        else {
            return false;
        };
        if let Some(coerced) = apply_file_schema_type_coercions(&self.key.file_schema, &schema) {
            schema = coerced;
        }
        self.key.file_schema.fields().iter().all(|expected| {
            match schema.field_with_name(expected.name()) {
                Ok(found) => found.data_type().equals_datatype(expected.data_type()),
                Err(_) => expected.is_nullable(),
            }
        })
    }
}
