//! Partitioning, in one place: which `key=value` directory levels a table
//! has and their types ([`PartitionSpec`]), and every Hive path rule — what
//! a `key=value` directory means, how values are percent-encoded and
//! decoded, what NULL looks like ([`HIVE_NULL`]), which names are a writer's
//! bookkeeping rather than data, and how the writer turns partition values
//! back into directories. The reader ([`PartitionSpec::parse_dirs`]) and the
//! writer ([`partition_dir`]) are each other's inverse, tested below.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use object_store::path::{Path, PathPart};
use percent_encoding::percent_decode_str;

use crate::error::{Error, PathProblem, Result, ValueProblem};

/// One declared partition column: a directory level `name=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionColumn {
    /// The column name, which is also the directory key.
    pub name: String,
    /// The type values are parsed into.
    pub data_type: DataType,
}

/// The ordered list of partition columns of a table.
///
/// The order is the directory nesting order: the first column is the top-level
/// directory under the table root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionSpec {
    columns: Vec<PartitionColumn>,
}

impl PartitionSpec {
    /// The directory of the partition with `values`, in our writer's
    /// spelling (`date=2026-03-01/region=eu`; `""` for an unpartitioned
    /// table): the one name of a partition whatever other writers called
    /// its directory (`hour=07`, `hour=7`). Errors name `table`.
    pub(crate) fn canonical_dir(&self, table: &str, values: &[ScalarValue]) -> Result<String> {
        let dirs = self
            .columns
            .iter()
            .zip(values)
            .map(|(column, value)| partition_dir(table, column, value))
            .collect::<Result<Vec<_>>>()?;
        Ok(dirs.join("/"))
    }

    /// The partition values of directory `dir` (relative to the root, in
    /// any writer's spelling: `hour=07` is 7), or `None` if it is not a
    /// partition directory of this spec.
    pub(crate) fn values_of_dir(&self, dir: &str) -> Option<Vec<ScalarValue>> {
        let segments: Vec<&str> = if dir.is_empty() {
            Vec::new()
        } else {
            dir.split('/').collect()
        };
        if segments.len() != self.columns.len() {
            return None;
        }
        self.columns
            .iter()
            .zip(segments)
            .map(|(column, segment)| {
                let (key, raw) = split_key_value(dir, segment).ok()?;
                (key == column.name).then_some(())?;
                parse_value(dir, column, raw).ok()
            })
            .collect()
    }

    /// A spec from `(name, type)` pairs, outermost directory first.
    pub fn new(columns: impl IntoIterator<Item = (String, DataType)>) -> Self {
        Self {
            columns: columns
                .into_iter()
                .map(|(name, data_type)| PartitionColumn { name, data_type })
                .collect(),
        }
    }

    /// The columns, outermost directory first.
    pub fn columns(&self) -> &[PartitionColumn] {
        &self.columns
    }

    /// Whether the table has no partition columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The number of partition columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Position of a partition column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The Arrow fields of the partition columns (always nullable: a Hive NULL
    /// directory can appear in any partition column).
    pub fn fields(&self) -> Vec<FieldRef> {
        self.columns
            .iter()
            .map(|c| Arc::new(Field::new(&c.name, c.data_type.clone(), true)))
            .collect()
    }

    /// Parses the directory parts of one object path (relative to the table
    /// root, file name excluded) into typed partition values.
    ///
    /// `path` is the full object path, used only to name it in errors.
    pub fn parse_dirs(&self, path: &str, dirs: &[&str]) -> Result<Vec<ScalarValue>> {
        if dirs.len() != self.columns.len() {
            return Err(Error::PartitionPath {
                path: path.to_string(),
                problem: PathProblem::Depth {
                    expected: self.columns.iter().map(|c| c.name.clone()).collect(),
                    found: dirs.len(),
                },
            });
        }
        self.columns
            .iter()
            .zip(dirs)
            .map(|(column, dir)| {
                let (key, raw) = split_key_value(path, dir)?;
                if key != column.name {
                    return Err(Error::PartitionPath {
                        path: path.to_string(),
                        problem: PathProblem::UnexpectedKey {
                            dir: dir.to_string(),
                            found: key,
                            expected: column.name.clone(),
                        },
                    });
                }
                parse_value(path, column, raw)
            })
            .collect()
    }
}

/// The directory value Hive and Spark write for a NULL partition value.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Whether a path segment is a writer's bookkeeping rather than data: names
/// starting with `.` (`.part-0.crc`, `.inprogress-…`), and names starting
/// with `_` that are not `key=value` partition directories (`_SUCCESS`,
/// `_temporary/`, `_delta_log/`). This is Spark's rule
/// (`InMemoryFileIndex.shouldFilterOutPathName`): a partition column may
/// itself start with `_` (`_src=a/`).
pub(crate) fn is_hidden(segment: &str) -> bool {
    segment.starts_with('.') || (segment.starts_with('_') && !segment.contains('='))
}

/// Splits a `key=value` directory name, percent-decoding the key.
pub(crate) fn split_key_value<'a>(path: &str, dir: &'a str) -> Result<(String, &'a str)> {
    match dir.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((decode(path, key)?, value)),
        _ => Err(Error::PartitionPath {
            path: path.to_string(),
            problem: PathProblem::NotKeyValue {
                dir: dir.to_string(),
            },
        }),
    }
}

fn decode(path: &str, raw: &str) -> Result<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|source| Error::PartitionPath {
            path: path.to_string(),
            problem: PathProblem::PercentEncoding {
                raw: raw.to_string(),
                source,
            },
        })
}

/// Parses one raw (still percent-encoded) directory value as the column's type.
///
/// [`HIVE_NULL`] is NULL. Anything that does not parse is an error naming the
/// path: a silent NULL would make rows disappear from equality filters.
pub(crate) fn parse_value(path: &str, column: &PartitionColumn, raw: &str) -> Result<ScalarValue> {
    let invalid = |value: String| Error::PartitionValue {
        path: path.to_string(),
        column: column.name.clone(),
        value,
        data_type: column.data_type.clone(),
    };
    if raw == HIVE_NULL {
        return ScalarValue::try_from(&column.data_type).map_err(|_| invalid(raw.to_string()));
    }
    let value = decode(path, raw)?;
    match ScalarValue::try_from_string(value.clone(), &column.data_type) {
        Ok(scalar) if !scalar.is_null() => Ok(scalar),
        _ => Err(invalid(value)),
    }
}

/// The longest `key=value` directory name written: 255 bytes is the name
/// limit of common file systems (ext4, XFS, APFS, NTFS).
pub const MAX_DIR_NAME_BYTES: usize = 255;

/// The directory `file` is in, relative to the table root `root` (`""`
/// for a file at the root: an unpartitioned table's).
pub(crate) fn dir_under<'a>(root: &Path, file: &'a Path) -> &'a str {
    let (path, root) = (file.as_ref(), root.as_ref());
    let relative = if root.is_empty() {
        path
    } else {
        path.strip_prefix(root)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(path)
    };
    relative.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The directory `key=value` for one partition value, or an error naming the
/// table, column and value when the value cannot be a directory: a value
/// containing `/`, a value `.` or `..`, the literal `__HIVE_DEFAULT_PARTITION__`
/// (it would read back as NULL), or a name over [`MAX_DIR_NAME_BYTES`]. NULL
/// is written as `__HIVE_DEFAULT_PARTITION__`. Everything else is kept, with
/// the characters object stores reserve percent-encoded (which the reader
/// decodes).
pub fn partition_dir(table: &str, column: &PartitionColumn, value: &ScalarValue) -> Result<String> {
    let invalid = |value: String, problem| Error::InvalidPartitionValue {
        table: table.to_string(),
        column: column.name.clone(),
        value,
        problem,
    };
    let text = if value.is_null() {
        HIVE_NULL.to_string()
    } else {
        let text = value.to_string();
        if text.contains('/') {
            return Err(invalid(text, ValueProblem::ContainsSlash));
        }
        if text == "." || text == ".." {
            return Err(invalid(text, ValueProblem::RelativeComponent));
        }
        if text.is_empty() {
            return Err(invalid(text, ValueProblem::Empty));
        }
        if text == HIVE_NULL {
            return Err(invalid(text, ValueProblem::ReadsAsNull));
        }
        // The reader parses what is written: a value that does not survive
        // (e.g. a float printed in a form its type does not parse) is refused.
        match ScalarValue::try_from_string(text.clone(), &column.data_type) {
            Ok(back) if back == *value => {}
            _ => return Err(invalid(text, ValueProblem::DoesNotRoundTrip)),
        }
        text
    };
    let key = PathPart::from(column.name.as_str());
    let value_part = PathPart::from(text.as_str());
    let name = format!("{}={}", key.as_ref(), value_part.as_ref());
    if name.len() > MAX_DIR_NAME_BYTES {
        return Err(invalid(
            text,
            ValueProblem::TooLong {
                bytes: name.len(),
                limit: MAX_DIR_NAME_BYTES,
            },
        ));
    }
    Ok(name)
}

/// `root` followed by already-encoded directory names and a file name.
pub(crate) fn child(root: &Path, dirs: &[String], file: &str) -> Result<Path> {
    let mut path = root.as_ref().to_string();
    for dir in dirs.iter().map(String::as_str).chain(std::iter::once(file)) {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(dir);
    }
    // `parse`, not `from`: the parts are encoded already.
    Path::parse(&path).map_err(|source| Error::PartitionPath {
        path: path.clone(),
        problem: PathProblem::ObjectPath { source },
    })
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    fn spec() -> PartitionSpec {
        PartitionSpec::new([
            ("date".to_string(), DataType::Date32),
            ("shop".to_string(), DataType::Int32),
        ])
    }

    #[test]
    fn parses_typed_values_and_hive_null() {
        let v = spec()
            .parse_dirs(
                "t/date=2026-03-01/shop=__HIVE_DEFAULT_PARTITION__/f",
                &["date=2026-03-01", "shop=__HIVE_DEFAULT_PARTITION__"],
            )
            .unwrap();
        assert_eq!(v[0], ScalarValue::Date32(Some(20513)));
        assert_eq!(v[1], ScalarValue::Int32(None));
    }

    #[test]
    fn percent_decodes_strings() {
        let s = PartitionSpec::new([("region".to_string(), DataType::Utf8)]);
        let v = s.parse_dirs("p", &["region=eu%2Fwest%20"]).unwrap();
        assert_eq!(v[0], ScalarValue::Utf8(Some("eu/west ".into())));
    }

    #[test]
    fn bad_value_names_path_column_and_type() {
        let err = spec()
            .parse_dirs(
                "t/date=2026-03-01/shop=abc/f.parquet",
                &["date=2026-03-01", "shop=abc"],
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t/date=2026-03-01/shop=abc/f.parquet"),
            "{err}"
        );
        assert!(
            err.contains("'shop'") && err.contains("Int32") && err.contains("'abc'"),
            "{err}"
        );
    }

    #[test]
    fn wrong_key_or_depth_is_an_error() {
        let e = spec()
            .parse_dirs("p1", &["day=1", "shop=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("p1") && e.contains("'day'"), "{e}");
        let e = spec()
            .parse_dirs("p2", &["date=2026-03-01"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("p2") && e.contains("expected 2"), "{e}");
        let e = spec()
            .parse_dirs("p3", &["nokey", "shop=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("p3") && e.contains("key=value"), "{e}");
    }
}

#[cfg(test)]
mod path_rule_tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    #[test]
    fn a_files_directory_is_taken_relative_to_the_root() {
        let dir =
            |root: &str, file: &str| dir_under(&Path::from(root), &Path::from(file)).to_string();
        assert_eq!(dir("lake", "lake/d=1/r=eu/x.parquet"), "d=1/r=eu");
        assert_eq!(dir("lake", "lake/x.parquet"), "");
        assert_eq!(dir("", "d=1/x.parquet"), "d=1");
        // Not under the root: the path's own directory.
        assert_eq!(dir("lake", "lakehouse/d=1/x.parquet"), "lakehouse/d=1");
    }

    #[test]
    fn bookkeeping_is_hidden_but_underscore_partitions_are_not() {
        for hidden in [
            "_SUCCESS",
            "_temporary",
            "_delta_log",
            ".part-0.crc",
            ".inprogress-x",
        ] {
            assert!(is_hidden(hidden), "{hidden}");
        }
        for shown in ["_src=a", "date=2026-03-01", "part-0.parquet", "a_b"] {
            assert!(!is_hidden(shown), "{shown}");
        }
    }

    fn column(data_type: DataType) -> PartitionColumn {
        PartitionColumn {
            name: "k".into(),
            data_type,
        }
    }

    #[test]
    fn values_round_trip_through_the_reader() {
        let cases = [
            (ScalarValue::from("eu"), DataType::Utf8),
            (ScalarValue::from("a%b #c=d ü"), DataType::Utf8),
            (ScalarValue::Int32(Some(-7)), DataType::Int32),
            (ScalarValue::Date32(Some(20_513)), DataType::Date32),
            (ScalarValue::Boolean(Some(true)), DataType::Boolean),
            (ScalarValue::Int64(None), DataType::Int64),
        ];
        for (value, data_type) in cases {
            let col = column(data_type.clone());
            let dir = partition_dir("t", &col, &value).unwrap();
            let spec = PartitionSpec::new([("k".to_string(), data_type)]);
            let path = format!("{dir}/f.parquet");
            let back = spec.parse_dirs(&path, &[dir.as_str()]).unwrap();
            assert_eq!(back, vec![value], "{dir}");
        }
    }

    #[test]
    fn values_that_cannot_be_directories_are_refused() {
        let col = column(DataType::Utf8);
        let cases = [
            ("a/b", ValueProblem::ContainsSlash),
            ("..", ValueProblem::RelativeComponent),
            (".", ValueProblem::RelativeComponent),
            ("", ValueProblem::Empty),
            (HIVE_NULL, ValueProblem::ReadsAsNull),
        ];
        for (bad, expected) in cases {
            let err = partition_dir("events", &col, &ScalarValue::from(bad)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("events") && text.contains("'k'"), "{text}");
            assert!(
                matches!(err, Error::InvalidPartitionValue { problem, .. } if problem == expected),
                "{bad}"
            );
        }
        let long = "x".repeat(300);
        let err = partition_dir("events", &col, &ScalarValue::from(long.as_str())).unwrap_err();
        assert!(err.to_string().contains("over the limit of 255"), "{err}");
        assert!(matches!(
            err,
            Error::InvalidPartitionValue {
                problem: ValueProblem::TooLong {
                    bytes: 302,
                    limit: 255
                },
                ..
            }
        ));
    }
}
