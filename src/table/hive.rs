//! The Hive path rules, in one place: what a `key=value` directory means,
//! how values are percent-encoded and decoded, what NULL looks like, which
//! names are a writer's bookkeeping rather than data, and how the writer
//! turns partition values back into directories. The reader
//! ([`PartitionSpec::parse_dirs`](super::PartitionSpec::parse_dirs)) and the
//! writer ([`partition_dir`]) are each other's inverse, tested below.

use datafusion::common::ScalarValue;
use object_store::path::{Path, PathPart};
use percent_encoding::percent_decode_str;

use super::spec::PartitionColumn;
use crate::error::{Error, PathProblem, Result, ValueProblem};

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
mod tests {
    use super::*;
    use crate::table::PartitionSpec;
    use datafusion::arrow::datatypes::DataType;

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
