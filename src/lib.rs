//! # lakefusion
//!
//! Apache DataFusion extensions for Hive-partitioned Parquet data lakes.
//!
//! A [`PartitionedTable`] is a table over `key=value` directories of Parquet
//! files on any object store the session knows (`file://`, `memory://`, `s3://`,
//! …). Compared with DataFusion's `ListingTable` it:
//!
//! * **plans without I/O**: the table root is listed once, at
//!   [`build`](PartitionedTableBuilder::build), into a [`PartitionIndex`];
//!   planning prunes partitions against that index in memory and makes zero
//!   object-store requests, however many files the table has;
//! * **reads typed Hive partitions, NULLs included**: `shop=__HIVE_DEFAULT_PARTITION__`
//!   under an `Int32` partition column is a NULL, not a failed query; a value
//!   that does not parse is an error naming the path;
//! * **says what it will read**: `EXPLAIN` shows `partitions=K/N`, the files,
//!   the projection, the filters and the limit;
//! * **names the file** in every read error, and rejects files whose column
//!   types conflict with the table instead of casting them silently.
//!
//! Reading itself is DataFusion's own Parquet machinery (`ParquetSource`), so
//! projection, row-group pruning, page-index pruning and limits behave exactly
//! as in `ListingTable`.
//!
//! ## Data flow
//!
//! ```text
//! SQL / DataFrame
//!   ▼
//! PartitionedTable::scan(projection, filters, limit)      planning: NO I/O
//!   │  partition filters (Exact) evaluated against the partition index;
//!   │  data filters (Inexact) become the row-group pruning predicate
//!   ▼
//! PartitionedScanExec   one output partition per file group (target_partitions)
//!   ▼
//! execute(partition) → LazyScanStream                       NO I/O until the first poll
//!      Uninitialized → Opening (footers, pruning) → Streaming → Done
//!      on object stores, the partitions of one execution share a read-ahead:
//!      the files they will open next, many requests in flight, within a
//!      byte budget reserved from the memory pool (small files: one request)
//!   ▼
//! RecordBatches (partition columns appended, projection + limit applied, metrics recorded)
//! ```
//!
//! With [`SessionBuilder`] (or [`SessionStateBuilderExt`] on DataFusion's own
//! builder), [`SmallTableCacheRule`] may replace a small scan with a
//! [`CachedScanExec`] served from a shared, memory-bounded [`TableCache`],
//! and each scan runs in a `lakefusion.scan` tracing span carrying the
//! [`QueryContext`]; [`ScanOptions`] (`SET lakefusion.…`) say how scans
//! read. On Ballista (feature `ballista`), tables and scans travel as
//! metadata through the codecs in `codec`; on datafusion-distributed
//! (feature `datafusion-distributed`), scans are split into one copy per
//! task and travel through the same codec. What every process of a
//! deployment shares is a `Deployment`.
//!
//! Dynamic filters (TopK, hash-join build sides) reach the scan while the
//! query runs and skip files and row groups that can no longer match.
//! `INSERT INTO` and `INSERT OVERWRITE` go through [`PartitionedSink`],
//! `DELETE FROM` (over partition columns) and [`PartitionedTable::compact`]
//! through the same commit protocol (below): every lakefusion reader, in
//! any process, sees each write whole or not at all; a table declared with
//! [`bucket_by`](PartitionedTableBuilder::bucket_by) is written with
//! DataFusion's own hash partitioner and records the Arrow type it hashed,
//! so its scans declare `Hash` partitioning only where DataFusion can trust
//! it (each file's bucket proven with today's hash); one declared with
//! [`sort_order`](PartitionedTableBuilder::sort_order) is written sorted, and
//! its scans declare the order wherever footer min/max prove it, so ordered
//! queries need no `SortExec`. A table given a
//! [`RetryPolicy`] reads through a
//! [`ResilientStore`](store::ResilientStore): transient failures retried with
//! bounded backoff, every request under a timeout, short reads caught.
//!
//! On S3, GCS and Azure (features `aws`, `gcp`, `azure`), a table's store is
//! built from its URL and options with object_store's own `parse_url_opts`
//! ([`store::register_object_store_for`]; on Ballista executors,
//! `codec::UrlStoreFactory`). There, scans read ahead, many requests in
//! flight, and `INSERT INTO` writes each file straight to its final name at
//! the commit (a conditional PUT, or a multipart upload completed then), as
//! S3 has no rename.
//!
//! How to use it — the quick start, each capability, the benchmarks — is
//! the README and its `docs/` chapters; this guide is the map of the code.
//!
//! ## The commit protocol
//!
//! Every write — `INSERT INTO`, `INSERT OVERWRITE`, `DELETE FROM`, a
//! compaction — keeps a journal under the table root's hidden
//! `_lakefusion/` prefix (hidden by the Hive rules from every reader), with
//! no rename, so it works the same on the local disk and on S3:
//!
//! ```text
//! _lakefusion/writes/<id>            record: kind, partitions replaced, files added
//! _lakefusion/claims/<partition>     a replacing write's claim (conditional PUT)
//! _lakefusion/writes/<id>.committed  commit marker: claims, files removed (or an abort marker)
//! _lakefusion/writes/<id>.done       done marker: what it touched (kept 15 min)
//! ```
//!
//! A write puts its record (1), makes its files visible (2); an append then
//! puts its done marker and commits by removing its record (3). A replacing
//! write claims its partitions — a claim already held is a
//! [`WriteConflict`](Error::WriteConflict) — and lists them as one moment
//! of the table (4), commits by putting its marker (5), then removes the
//! replaced files, puts its done marker, releases its claims and removes
//! its record and, last, its marker (6). A reader (`build()`, `refresh()`,
//! a writer choosing what to replace) reads the journal before and after
//! its listing and lists again the partitions of every write that moved
//! meanwhile (`lake::snapshot`); it reads neither the files of a write not
//! committed nor those a committed write removes. So each write is seen
//! whole or not at all, and never with the files it replaced; a writer
//! that dies leaves a journal that readers honour and
//! [`PartitionedTable::recover`] finishes (committed) or takes back (not),
//! after creating an abort marker where the commit would go, so that a
//! writer still alive cannot commit behind its back.
//! Readers that do not know the journal (Spark, DuckDB, DataFusion's
//! `ListingTable`) see plain Hive semantics: new files appear one by one,
//! replaced ones disappear one by one. The steps, each failure and each
//! race are documented on `write::commit`, and the user's view in
//! `docs/maintenance.md`.
//!
//! ## Modules
//!
//! This map is the guide to the code as it is (it supersedes the first plan
//! in the design notes). The user's guide is the README and `docs/`.
//!
//! The layers, each importing only those below it (no two modules import
//! each other, and no folder imports a folder above it):
//!
//! ```text
//! ballista.rs                      the per-role Ballista set-up (feature `ballista`)
//! datafusion_distributed.rs        the coordinator and worker set-up on datafusion-distributed
//! deployment.rs                    Deployment: what every process of a deployment shares
//! codec/                           wire formats (either engine's feature)
//! session.rs                       SessionBuilder, SessionStateBuilderExt
//! distributed/                     the carrier of scans to Ballista executors
//! cache/                           TableCache, CachedScanExec, SmallTableCacheRule
//! table/                           PartitionedTable: builder, discovery, planner, provider
//! write/                           writes: the sink, staging, the commit protocol, recovery
//! scan/                            PartitionedScanExec and its streams
//! lake/                            what reading and writing share: definition, partitioning,
//!                                  index, listing, the journal and snapshots of it
//! store/                           stores, retries, read-ahead, what kind of storage a root is,
//!                                  the local disk's walk
//! settings/                        QueryContext, ScanOptions
//! error.rs                         Error
//! ```
//!
//! * `lake`: what a table is (`TableDefinition`,
//!   built and checked in one place, `try_new`), its partitioning (the
//!   [`PartitionSpec`] and every Hive path rule: parse, write, NULL, hidden
//!   names, percent-encoding), its layout (bucketing, sort order, as our
//!   writer records them), the [`PartitionIndex`] (files packed column by
//!   column) and `SharedIndex`, the one home of a table's current index;
//!   the listing (`listing`: the whole root — split into ranges listed at
//!   once on object stores where that pays, the directories read on every
//!   core on the local disk, one listing elsewhere — or the
//!   partitions a predicate or a set of
//!   values selects), the journal's objects and what a reader makes of them
//!   (`journal`), a listing taken as one moment of the table
//!   (`snapshot`), and the file statistics scans learn from the footers
//!   they read (`learned`);
//! * `table`: [`PartitionedTable`] by job — `builder`, `discovery`
//!   (`refresh`, schema, footers: `build()`, `refresh()`,
//!   `refresh_partitions()` only), `planner`/`pushdown`/`file_pruning` (filters and a
//!   snapshot into a scan, no I/O), `maintenance` (`DELETE FROM` and
//!   compaction, chosen from a fresh snapshot), `provider` (the thin
//!   `TableProvider`), `factory` (SQL DDL);
//! * `write`: writes as new Hive-partitioned files ([`PartitionedSink`] for
//!   `INSERT INTO` and `INSERT OVERWRITE`; the rewrites of a compaction; the
//!   removal of a `DELETE`), how a file stays invisible until its commit on
//!   stores with and without rename, its bytes reserved from the memory
//!   pool (`staging`), the commit protocol's steps (`commit`), and
//!   finishing or taking back what writers that died left (`recover`);
//! * `scan`: [`PartitionedScanExec`] and its one [`ScanDescription`], the
//!   stream of each partition (`stream`), what partitions of one execution
//!   share (`siblings`) and what they read ahead (`read_ahead`), the
//!   per-file type check (`schema`), the wrappers that name the file in
//!   every error (`naming`) and [`ScanMetrics`];
//! * [`store`]: stores from a root's URL and options
//!   ([`store::object_store_for_url`], features `aws`, `gcp`, `azure`),
//!   what kind of storage a root is on (`kind`: local disk, memory, remote,
//!   and what each does well), where a local root really is (`local`: the
//!   symbolic-link check), a `file://` root listed by reading its
//!   directories for the store [`store::local_file_system`] (`local_walk`),
//!   the read-ahead engine and the store its readers
//!   use (`read_ahead`), [`RetryPolicy`] and [`store::ResilientStore`]
//!   (retries, timeouts per request and per listing page, short reads), and
//!   with `test-utils` a fault-injecting store (`faults`) and a store that
//!   lists in pages as S3 does, or from the first key as object_store's
//!   default does (`paged`);
//! * `settings`: [`QueryContext`] (who is asking) and [`ScanOptions`] (how
//!   scans read), the config extensions that travel with a query, and the
//!   one DataFusion option every lakefusion config lowers (the join `IN`
//!   lists pushed into scans, docs/session-and-cache.md);
//! * `session`: [`SessionBuilder`] and [`SessionStateBuilderExt`], which
//!   wire everything into a session;
//! * `cache`: [`TableCache`], [`CachedScanExec`] and [`SmallTableCacheRule`];
//! * `distributed` (either engine's feature; used on Ballista): the carrier a scan travels in to
//!   Ballista executors, and the rule that puts it in place;
//! * `codec` (either engine's feature): wire formats only — scans, tables and
//!   file lists as metadata, the named composite codec, and what a decoding
//!   executor checks (`AllowedRoots`) and injects;
//! * `deployment`: `Deployment`, the cache limits, stores, store factory
//!   and allowed roots every process of one deployment agrees on, and the
//!   scan codec it injects them into;
//! * `ballista` (feature `ballista`): the per-role Ballista configuration;
//! * `datafusion_distributed` (feature `datafusion-distributed`): the
//!   coordinator's and workers' set-up, the handlers that split our scans
//!   across tasks, and the check of every plan a worker decodes;
//! * `error`: the crate's [`Error`] and its conversion to and from DataFusion's.

#![deny(rustdoc::broken_intra_doc_links, rustdoc::bare_urls, rust_2018_idioms)]
#![warn(
    missing_copy_implementations,
    missing_debug_implementations,
    missing_docs,
    clippy::explicit_iter_loop,
    clippy::future_not_send,
    clippy::use_self,
    clippy::clone_on_ref_ptr,
    unreachable_pub
)]

#[cfg(feature = "ballista")]
pub mod ballista;
mod cache;
#[cfg(feature = "wire")]
pub mod codec;
#[cfg(feature = "datafusion-distributed")]
pub mod datafusion_distributed;
#[cfg(feature = "wire")]
mod deployment;
#[cfg(feature = "wire")]
mod distributed;
mod error;
mod lake;
mod scan;
mod session;
mod settings;
pub mod store;
mod table;
mod write;

pub use cache::{
    CacheConfig, CacheFill, CacheKey, CacheMetrics, CachedPartitions, CachedScanExec,
    SmallTableCacheRule, TableCache,
};
#[cfg(feature = "wire")]
pub use deployment::Deployment;
#[cfg(feature = "wire")]
pub use distributed::{DistributedScanExec, DistributedScanRule};
#[cfg(feature = "wire")]
pub use error::WireVersion;
pub use error::{Error, PathProblem, Result, TableProblem, ValueProblem};
pub use lake::definition::OverwriteMode;
pub use lake::index::{FileRef, IndexedFile, Partition, PartitionIndex};
pub use lake::layout::{Bucketing, SortKey};
pub use lake::partitioning::{
    partition_dir, PartitionColumn, PartitionSpec, HIVE_NULL, MAX_DIR_NAME_BYTES,
};
pub use scan::{PartitionedScanExec, ScanDescription, ScanMetrics};
pub use session::{SessionBuilder, SessionStateBuilderExt};
pub use settings::{QueryContext, ScanOptions};
pub use store::RetryPolicy;
pub use table::{
    CompactOptions, Compaction, PartitionedTable, PartitionedTableBuilder, PartitionedTableFactory,
};
pub use write::{PartitionedSink, Recovered};
