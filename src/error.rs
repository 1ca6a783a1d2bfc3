//! The crate's error type, and its conversion to and from [`DataFusionError`].
//!
//! Every variant names the table root, file, path or key it is about, so that an
//! operator reading a failed query's message knows which object to look at
//! without re-running anything.

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
    #[error("invalid table URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
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

    /// A file lies under a directory that does not match the partition spec.
    #[error("invalid partition path '{path}': {reason}")]
    PartitionPath {
        /// The offending object's path.
        path: String,
        /// What is wrong with it.
        reason: String,
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
    /// is also in the schema given with `.schema()`).
    #[error("table '{root}': {reason}")]
    InvalidTable {
        /// The table root URL.
        root: String,
        /// What is inconsistent.
        reason: String,
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
    #[error("table '{table}': cannot write partition column '{column}' value '{value}' as a directory: {reason}")]
    InvalidPartitionValue {
        /// The table being written.
        table: String,
        /// The partition column.
        column: String,
        /// The value, as text.
        value: String,
        /// Why it cannot be a directory.
        reason: String,
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

    /// A payload whose checksum does not match: corrupt or cut short.
    #[error("codec '{codec}': the {bytes} byte payload fails its checksum (corrupt or cut short)")]
    WireChecksum {
        /// The codec that wrote the payload.
        codec: String,
        /// The payload's length.
        bytes: usize,
    },

    /// An envelope names a codec this process does not have.
    #[error("unknown codec '{codec}' (known: {known})")]
    UnknownCodec {
        /// The codec the bytes name.
        codec: String,
        /// The codecs this process has, comma-separated.
        known: String,
    },

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

    /// A decoded plan writes through a sink whose destination cannot be
    /// checked against the allowed roots.
    #[error("a plan writes through a sink whose destination cannot be checked ({sink}); this executor only allows files under {allowed}")]
    UncheckableSink {
        /// The sink, as it prints itself.
        sink: String,
        /// The allowed roots, comma-separated.
        allowed: String,
    },

    /// A decoded plan needs an object store this executor neither has nor can
    /// create.
    #[error("no object store registered for '{url}' on this executor, and no ObjectStoreFactory to create one")]
    NoObjectStore {
        /// The store's URL.
        url: String,
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
}

/// What went wrong with bytes another process sent (see the `Wire*`,
/// `Codec*` and `*Roots` variants of [`Error`]).
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

impl std::fmt::Display for WireVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireVersion::Unversioned => {
                "unversioned bytes carry no checksum and are refused; plan the query again with this build"
            }
            WireVersion::Older => {
                "run the same lakefusion version on every process of the deployment"
            }
            WireVersion::Newer => "upgrade lakefusion here to the version the planner runs",
        })
    }
}

impl Error {
    /// Attaches a file path to a DataFusion error raised while reading that file.
    ///
    /// If the error already names a lakefusion file error it is returned as is, so
    /// messages never repeat the path.
    pub fn read_file(path: impl Into<String>, source: DataFusionError) -> DataFusionError {
        let wrap = |path: String, source| {
            DataFusionError::External(Box::new(Error::ReadFile {
                path,
                source: Box::new(source),
            }))
        };
        match source {
            DataFusionError::External(e) => match e.downcast::<Error>() {
                // Raised by a per-file check that cannot know the path itself.
                Ok(ours) => match *ours {
                    Error::SchemaConflict {
                        path: p,
                        column,
                        expected,
                        found,
                    } if p.is_empty() => Error::SchemaConflict {
                        path: path.into(),
                        column,
                        expected,
                        found,
                    }
                    .into(),
                    other => other.into(),
                },
                Err(e) => wrap(path.into(), DataFusionError::External(e)),
            },
            other if Self::from_datafusion_ref(&other).is_some() => other,
            other => wrap(path.into(), other),
        }
    }

    /// Finds a lakefusion [`Error`] inside a DataFusion error (through `Context`,
    /// `Shared` and `External` wrappers), if there is one.
    pub fn from_datafusion_ref(err: &DataFusionError) -> Option<&Error> {
        match err {
            DataFusionError::External(e) => e.downcast_ref::<Error>(),
            DataFusionError::Context(_, inner) => Self::from_datafusion_ref(inner),
            DataFusionError::Shared(inner) => Self::from_datafusion_ref(inner),
            _ => None,
        }
    }

    /// Converts a DataFusion error back into a lakefusion error when it carries
    /// one; otherwise returns the DataFusion error unchanged.
    pub fn from_datafusion(err: DataFusionError) -> std::result::Result<Error, DataFusionError> {
        match err {
            DataFusionError::External(e) => match e.downcast::<Error>() {
                Ok(ours) => Ok(*ours),
                Err(other) => Err(DataFusionError::External(other)),
            },
            other => Err(other),
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(err: Error) -> Self {
        DataFusionError::External(Box::new(err))
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
