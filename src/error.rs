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
