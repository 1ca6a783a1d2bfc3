//! The crate's error type, and its conversion to and from [`DataFusionError`].
//!
//! Errors are named by kind, as `object_store` names its own: each variant
//! says what failed and carries the table root, file, path, key or codec it
//! is about as fields, with the underlying error as its `source` — so an
//! operator reading a failed query's message knows which object to look at
//! without re-running anything, and code can match on what happened
//! ([`PathProblem`], [`TableProblem`], [`ValueProblem`] and [`WireVersion`]
//! say which kind of path, table, value or version problem it was).

use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;

/// Result alias for the crate's own (non-DataFusion) APIs.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by lakefusion.
///
/// Inside DataFusion trait implementations these travel as
/// [`DataFusionError::External`]; [`Error::from_datafusion`] and the `From`
/// impls convert in both directions without losing the original message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The table URL could not be parsed, or names no object store the session knows.
    #[error("invalid table URL '{url}': {source}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// DataFusion's error for it.
        #[source]
        source: Box<DataFusionError>,
    },

    /// The table root does not exist (only detectable for `file://` roots: object
    /// stores have no directories, so there an absent root is an empty table).
    #[error("table root '{root}' does not exist")]
    RootNotFound {
        /// The table root URL.
        root: String,
    },

    /// Listing the table root failed in the object store.
    #[error("listing table root '{root}' failed: {source}")]
    Listing {
        /// The table root URL.
        root: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },

    /// A file lies under a directory that does not match the partition spec,
    /// or is reached through a symbolic link out of the table root.
    #[error("invalid partition path '{path}': {problem}")]
    PartitionPath {
        /// The offending object's path.
        path: String,
        /// What is wrong with it.
        problem: PathProblem,
    },

    /// A partition directory's value does not parse as the column's declared type.
    #[error(
        "partition value '{value}' of column '{column}' in '{path}' is not a valid {data_type}"
    )]
    PartitionValue {
        /// The offending object's path.
        path: String,
        /// The partition column.
        column: String,
        /// The (percent-decoded) value found in the path.
        value: String,
        /// The declared type.
        data_type: DataType,
    },

    /// A file's column has a type that conflicts with the table schema.
    #[error("file '{path}': column '{column}' has type {found} but the table declares {expected}")]
    SchemaConflict {
        /// The file.
        path: String,
        /// The column.
        column: String,
        /// The type in the table schema.
        expected: DataType,
        /// The type in the file.
        found: DataType,
    },

    /// The table definition itself is inconsistent (e.g. a partition column that
    /// is also in the schema given with `.schema()`), or its index could not
    /// be assembled.
    #[error("table '{root}': {problem}")]
    InvalidTable {
        /// The table root URL.
        root: String,
        /// What is inconsistent.
        problem: TableProblem,
    },

    /// Reading (or reading the footer of) a Parquet file failed.
    #[error("reading Parquet file '{path}': {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// What went wrong, as DataFusion or the object store reported it.
        #[source]
        source: Box<DataFusionError>,
    },

    /// A row's partition value cannot become a directory name, so the write
    /// was refused before any file became visible.
    #[error("table '{table}': cannot write partition column '{column}' value '{value}' as a directory: {problem}")]
    InvalidPartitionValue {
        /// The table being written.
        table: String,
        /// The partition column.
        column: String,
        /// The value, as text.
        value: String,
        /// Why it cannot be a directory.
        problem: ValueProblem,
    },

    /// Finding or deleting the temporary files unfinished writes left failed.
    #[error(
        "table root '{root}': removing the abandoned temporary file '{path}' failed: {source}"
    )]
    Cleanup {
        /// The table root URL.
        root: String,
        /// The temporary file (or the directory being searched).
        path: String,
        /// The store's or the file system's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A setting (`SET query_context.…`, a `CREATE EXTERNAL TABLE` option)
    /// was given a value it cannot take.
    #[error("{scope}: invalid value '{value}' for '{key}': expected {expected}")]
    InvalidSetting {
        /// What the setting configures (`query_context`, `table events`).
        scope: String,
        /// The setting's full key.
        key: String,
        /// The value given.
        value: String,
        /// What it accepts.
        expected: &'static str,
    },

    /// A setting that moved to another key.
    #[error("'{key}' is now '{now}' (SET {now} = …)")]
    MovedSetting {
        /// The key given.
        key: String,
        /// Where the setting is now.
        now: String,
    },

    /// A setting that does not exist.
    #[error("{scope}: unknown option '{key}' (known: {known})")]
    UnknownSetting {
        /// What the setting would configure.
        scope: String,
        /// The key given.
        key: String,
        /// The keys that exist, comma-separated.
        known: String,
    },

    #[cfg(feature = "wire")]
    /// Bytes from another process are not what the codec writes: not an
    /// envelope, not a plan node, or DataFusion's own decoder failed on them.
    #[error("codec '{codec}': {bytes} bytes are not a {what}: {source}")]
    CodecBytes {
        /// The codec that read them.
        codec: String,
        /// What they should have been (an envelope, a plan node, a table).
        what: &'static str,
        /// How many bytes.
        bytes: usize,
        /// The decoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[cfg(feature = "wire")]
    /// Bytes of another wire format version than this build's.
    #[error(
        "codec '{codec}' wrote wire format version {found}, but this build reads version {expected}: {kind}"
    )]
    WireFormatVersion {
        /// The codec that wrote the bytes.
        codec: String,
        /// The version the bytes carry (0: none).
        found: u32,
        /// The version this build reads.
        expected: u32,
        /// Which way they differ, and what to do.
        kind: WireVersion,
    },

    #[cfg(feature = "wire")]
    /// A payload whose checksum does not match: corrupt or cut short.
    #[error("codec '{codec}': the {bytes} byte payload fails its checksum (corrupt or cut short)")]
    WireChecksum {
        /// The codec that wrote the payload.
        codec: String,
        /// The payload's length.
        bytes: usize,
    },

    #[cfg(feature = "wire")]
    /// An envelope names a codec this process does not have.
    #[error("unknown codec '{codec}' (known: {known})")]
    UnknownCodec {
        /// The codec the bytes name.
        codec: String,
        /// The codecs this process has, comma-separated.
        known: String,
    },

    #[cfg(feature = "wire")]
    /// A decoded plan node or table is inconsistent (a missing part, counts
    /// that disagree, an index out of range).
    #[error("codec '{codec}': cannot decode {what} of table {table}: {detail}")]
    MalformedPlan {
        /// The codec that decoded it.
        codec: &'static str,
        /// The table it describes ("?" when the bytes do not say).
        table: String,
        /// The part that is malformed (the scan, its files, the table).
        what: &'static str,
        /// Which field is wrong, and how.
        detail: String,
    },

    #[cfg(feature = "wire")]
    /// A decoded plan names a file outside the roots the executor allows.
    #[error("{node}: file '{url}' is outside the roots this executor allows ({allowed})")]
    OutsideAllowedRoots {
        /// The node that names it (a table, or DataFusion's node kind).
        node: String,
        /// The file's URL.
        url: String,
        /// The allowed roots, comma-separated.
        allowed: String,
    },

    #[cfg(feature = "wire")]
    /// A decoded plan names a local file under an allowed root that a
    /// symbolic link leads out of it.
    #[error("{node}: file '{url}' leads through a symbolic link to '{target}', outside the root '{root}' this executor allows")]
    LinkOutsideRoot {
        /// The node that names it.
        node: String,
        /// The file's URL.
        url: String,
        /// Where the link leads.
        target: String,
        /// The allowed root the URL is under.
        root: String,
    },

    #[cfg(feature = "wire")]
    /// A decoded plan writes through a sink whose destination cannot be
    /// checked against the allowed roots.
    #[error("a plan writes through a sink whose destination cannot be checked ({sink}); this executor only allows files under {allowed}")]
    UncheckableSink {
        /// The sink, as it prints itself.
        sink: String,
        /// The allowed roots, comma-separated.
        allowed: String,
    },

    #[cfg(feature = "wire")]
    /// A decoded plan needs an object store this executor neither has nor can
    /// create.
    #[error("no object store registered for '{url}' on this executor, and no ObjectStoreFactory to create one")]
    NoObjectStore {
        /// The store's URL.
        url: String,
    },

    /// No object store could be built for a URL (a backend not compiled in,
    /// a bad option value, a URL of no known store).
    #[error("cannot build an object store for '{url}': {source}")]
    ObjectStoreUrl {
        /// The URL as given.
        url: String,
        /// object_store's reason.
        #[source]
        source: object_store::Error,
    },

    /// Writing a file (or making it visible) failed; nothing of the write is
    /// visible.
    #[error("table '{table}': writing '{path}' failed: {source}")]
    WriteFile {
        /// The table being written.
        table: String,
        /// The file (its temporary or final path).
        path: String,
        /// What went wrong.
        #[source]
        source: Box<DataFusionError>,
    },

    /// A write failed before its commit, and some files it had already
    /// made visible could not be removed again. Readers that honour the
    /// write's journal (every lakefusion reader) do not read them, since
    /// its record stays; readers that do not (Spark, DuckDB,
    /// `ListingTable`) see them until `PartitionedTable::recover` removes
    /// them, guided by that record.
    #[error(
        "table '{table}': writing '{path}' failed: {source}; {count} file(s) of the write \
         could not be removed: lakefusion readers do not read them (the write's record \
         '{record}' lists them), other readers see them until recover() removes them: {files}",
        count = left.len(),
        files = left.join(", ")
    )]
    WriteLeftVisible {
        /// The table being written.
        table: String,
        /// The file whose commit failed first.
        path: String,
        /// Why it failed.
        #[source]
        source: Box<DataFusionError>,
        /// The files left visible.
        left: Vec<String>,
        /// The write's record, under the root's `_lakefusion/writes/`.
        record: String,
    },

    /// An object in a table's journal (`_lakefusion/writes/`) is not a
    /// record or commit marker this version can read.
    #[error("write journal object '{path}' cannot be read: {problem}")]
    WriteRecord {
        /// The object.
        path: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A write that replaces partitions (`INSERT OVERWRITE`, `DELETE`,
    /// compaction) found another such write holding a claim on one of them:
    /// of two writes racing on the same partitions only one commits. This
    /// one was taken back whole; nothing of it is visible.
    #[error(
        "table '{table}': another write is replacing partition(s) {partitions} \
         (claimed by write(s) {holders}); this write was taken back and changed nothing. \
         Try again; if that writer died, recover() removes its claim once it is older than \
         the bound given",
        partitions = partitions.join(", "),
        holders = holders.join(", ")
    )]
    WriteConflict {
        /// The table being written.
        table: String,
        /// The partitions claimed by another write (directories in our
        /// writer's spelling).
        partitions: Vec<String>,
        /// The ids of the writes holding them.
        holders: Vec<String>,
    },

    /// A compaction found some of the files it rewrote already replaced by
    /// another write (an overwrite, a delete, another compaction): it was
    /// taken back and changed nothing; a second run compacts what is there.
    #[error(
        "table '{table}': some files being compacted in partition(s) {partitions} were replaced \
         by another write meanwhile; the compaction of them was taken back and changed nothing",
        partitions = partitions.join(", ")
    )]
    FilesReplaced {
        /// The table being compacted.
        table: String,
        /// The partitions (directories in our writer's spelling).
        partitions: Vec<String>,
    },

    /// A write that replaces partitions needs a conditional PUT
    /// (`PutMode::Create`) to claim them, and the store has none.
    #[error(
        "table '{table}': the store refuses conditional PUTs ('{path}': {source}), which \
         INSERT OVERWRITE, DELETE and compaction need to claim partitions"
    )]
    NoConditionalPut {
        /// The table being written.
        table: String,
        /// The claim that could not be created.
        path: String,
        /// The store's answer.
        #[source]
        source: object_store::Error,
    },

    /// Writes kept committing while the table root was listed, every time:
    /// no listing could be taken as one moment of the table.
    #[error(
        "table root '{root}': writes committed during each of {attempts} listings; \
         no consistent view of the table could be taken (try again)"
    )]
    ListingRaced {
        /// The table root.
        root: String,
        /// How many listings were tried.
        attempts: usize,
    },
}

/// What is wrong with a partition path ([`Error::PartitionPath`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathProblem {
    /// A directory level that is not `key=value`.
    #[error("directory '{dir}' is not of the form key=value")]
    NotKeyValue {
        /// The directory name.
        dir: String,
    },
    /// A directory level whose key is not the partition column of its level.
    #[error(
        "directory '{dir}' has key '{found}' where partition column '{expected}' was expected"
    )]
    UnexpectedKey {
        /// The directory name.
        dir: String,
        /// Its key.
        found: String,
        /// The partition column of that level.
        expected: String,
    },
    /// Another number of directory levels than partition columns.
    #[error("expected {} partition directories ({}), found {found}", .expected.len(), .expected.iter().map(|c| format!("{c}=…")).collect::<Vec<_>>().join("/"))]
    Depth {
        /// The partition columns, outermost first.
        expected: Vec<String>,
        /// The directory levels found.
        found: usize,
    },
    /// One partition key twice in a path.
    #[error("partition key '{key}' appears twice")]
    RepeatedKey {
        /// The key.
        key: String,
    },
    /// A value that is not valid percent-encoded UTF-8.
    #[error("'{raw}' is not valid percent-encoded UTF-8: {source}")]
    PercentEncoding {
        /// The raw value.
        raw: String,
        /// The decoder's error.
        #[source]
        source: std::str::Utf8Error,
    },
    /// Directory names that do not make an object path.
    #[error("not a valid object path: {source}")]
    ObjectPath {
        /// object_store's error.
        #[source]
        source: object_store::path::Error,
    },
    /// A symbolic link under a `file://` root leads out of it.
    #[error("'{link}' is a symbolic link to '{target}', outside the table root '{root}'")]
    LinkOutsideRoot {
        /// The link.
        link: String,
        /// Where it leads.
        target: String,
        /// The table root.
        root: String,
    },
    /// A symbolic link that does not resolve.
    #[error("'{link}' is a symbolic link that does not resolve")]
    BrokenLink {
        /// The link.
        link: String,
    },
}

/// What is inconsistent about a table ([`Error::InvalidTable`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableProblem {
    /// A partition column declared twice.
    #[error("partition column '{column}' is declared twice")]
    DuplicatePartitionColumn {
        /// The column.
        column: String,
    },
    /// A partition column also in the schema given by hand.
    #[error("'{column}' is a partition column and also in the schema given with .schema(): leave it out of the schema, the directories supply it")]
    PartitionColumnInSchema {
        /// The column.
        column: String,
    },
    /// `bucket_by` that cannot be honoured.
    #[error("bucket_by('{column}', {buckets}): {problem}")]
    Bucketing {
        /// The bucket column.
        column: String,
        /// The bucket count.
        buckets: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// `sort_order` that cannot be honoured.
    #[error("sort_order [{order}]: '{column}': {problem}")]
    SortOrder {
        /// The whole order, as recorded in metadata.
        order: String,
        /// The key at fault.
        column: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The partition index could not be assembled from what was listed.
    #[error("building its partition index: {source}")]
    Index {
        /// DataFusion's error.
        #[source]
        source: Box<DataFusionError>,
    },
    /// A partial refresh's predicate names a column that is not a
    /// partition column (only partitions can be re-listed).
    #[error("refresh_partitions: '{column}' is not a partition column ({partition_columns})")]
    RefreshPredicate {
        /// The column the predicate names.
        column: String,
        /// The table's partition columns, comma-separated.
        partition_columns: String,
    },
    /// Evaluating a partial refresh's predicate failed.
    #[error("refresh_partitions: the predicate cannot be evaluated: {source}")]
    RefreshEvaluation {
        /// DataFusion's error.
        #[source]
        source: Box<DataFusionError>,
    },
    /// Blocking work for the table (file system checks) did not finish.
    #[error("{what} did not finish: {source}")]
    BlockingTask {
        /// What the task did.
        what: &'static str,
        /// Tokio's error.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Why a partition value cannot be a directory ([`Error::InvalidPartitionValue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueProblem {
    /// It contains `/`.
    #[error("it contains '/'")]
    ContainsSlash,
    /// It is `.` or `..`.
    #[error("it is a relative path component")]
    RelativeComponent,
    /// It is empty.
    #[error("it is empty")]
    Empty,
    /// It is `__HIVE_DEFAULT_PARTITION__`, which reads back as NULL.
    #[error("it would read back as NULL")]
    ReadsAsNull,
    /// Its text does not parse back as the same value of its type.
    #[error("it does not read back as the same value")]
    DoesNotRoundTrip,
    /// The directory name would be longer than file systems allow.
    #[error("the directory name would be {bytes} bytes, over the limit of {limit}")]
    TooLong {
        /// The name's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// What went wrong with bytes another process sent (see the `Wire*`,
/// `Codec*` and `*Roots` variants of [`Error`]).
#[cfg(feature = "wire")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireVersion {
    /// Written before format versions existed: no checksum to check them by.
    Unversioned,
    /// Written by an older lakefusion.
    Older,
    /// Written by a newer lakefusion.
    Newer,
}

#[cfg(feature = "wire")]
impl std::fmt::Display for WireVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unversioned => {
                "unversioned bytes carry no checksum and are refused; plan the query again with this build"
            }
            Self::Older => {
                "run the same lakefusion version on every process of the deployment"
            }
            Self::Newer => "upgrade lakefusion here to the version the planner runs",
        })
    }
}

/// A column whose type in one file conflicts with the table's, raised by
/// the per-file check (which cannot know the file); [`Error::read_file`]
/// turns it into [`Error::SchemaConflict`], naming the file.
#[derive(Debug, thiserror::Error)]
#[error("column '{column}' is {found} in the file but {expected} in the table")]
pub(crate) struct ColumnConflict {
    pub column: String,
    pub expected: DataType,
    pub found: DataType,
}

impl Error {
    /// Attaches a file path to a DataFusion error raised while reading that file.
    ///
    /// If the error already names a lakefusion file error it is returned as is, so
    /// messages never repeat the path.
    pub fn read_file(path: impl Into<String>, source: DataFusionError) -> DataFusionError {
        let wrap = |path: String, source| {
            DataFusionError::External(Box::new(Self::ReadFile {
                path,
                source: Box::new(source),
            }))
        };
        match source {
            DataFusionError::External(e) => match e.downcast::<ColumnConflict>() {
                // Raised by the per-file type check, which cannot know the path.
                Ok(conflict) => Self::SchemaConflict {
                    path: path.into(),
                    column: conflict.column,
                    expected: conflict.expected,
                    found: conflict.found,
                }
                .into(),
                Err(e) if e.is::<Self>() => DataFusionError::External(e),
                Err(e) => wrap(path.into(), DataFusionError::External(e)),
            },
            other if Self::from_datafusion_ref(&other).is_some() => other,
            other => wrap(path.into(), other),
        }
    }

    /// Finds a lakefusion [`Error`] inside a DataFusion error (through `Context`,
    /// `Shared` and `External` wrappers), if there is one.
    pub fn from_datafusion_ref(err: &DataFusionError) -> Option<&Self> {
        match err {
            DataFusionError::External(e) => e.downcast_ref::<Self>(),
            DataFusionError::Context(_, inner) => Self::from_datafusion_ref(inner),
            DataFusionError::Shared(inner) => Self::from_datafusion_ref(inner),
            _ => None,
        }
    }

    /// Converts a DataFusion error back into a lakefusion error when it carries
    /// one; otherwise returns the DataFusion error unchanged.
    pub fn from_datafusion(err: DataFusionError) -> std::result::Result<Self, DataFusionError> {
        match err {
            DataFusionError::External(e) => match e.downcast::<Self>() {
                Ok(ours) => Ok(*ours),
                Err(other) => Err(DataFusionError::External(other)),
            },
            other => Err(other),
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(err: Error) -> Self {
        Self::External(Box::new(err))
    }
}

/// The message of a caught panic (`panic!` with a string or a format).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}
