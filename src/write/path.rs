//! Partition values to directory names: the inverse of
//! [`PartitionSpec::parse_dirs`](crate::PartitionSpec::parse_dirs).

use datafusion::common::ScalarValue;
use object_store::path::{Path, PathPart};

use crate::error::{Error, Result};
use crate::table::{PartitionColumn, HIVE_NULL};

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
    let invalid = |value: String, reason: &str| Error::InvalidPartitionValue {
        table: table.to_string(),
        column: column.name.clone(),
        value,
        reason: reason.to_string(),
    };
    let text = if value.is_null() {
        HIVE_NULL.to_string()
    } else {
        let text = value.to_string();
        if text.contains('/') {
            return Err(invalid(text, "it contains '/'"));
        }
        if text == "." || text == ".." {
            return Err(invalid(text, "it is a relative path component"));
        }
        if text.is_empty() {
            return Err(invalid(text, "it is empty"));
        }
        if text == HIVE_NULL {
            return Err(invalid(text, "it would read back as NULL"));
        }
        // The reader parses what is written: a value that does not survive
        // (e.g. a float printed in a form its type does not parse) is refused.
        match ScalarValue::try_from_string(text.clone(), &column.data_type) {
            Ok(back) if back == *value => {}
            _ => return Err(invalid(text, "it does not read back as the same value")),
        }
        text
    };
    let key = PathPart::from(column.name.as_str());
    let value_part = PathPart::from(text.as_str());
    let name = format!("{}={}", key.as_ref(), value_part.as_ref());
    if name.len() > MAX_DIR_NAME_BYTES {
        return Err(invalid(
            text,
            &format!(
                "the directory name would be {} bytes, over the limit of {MAX_DIR_NAME_BYTES}",
                name.len()
            ),
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
    Path::parse(&path).map_err(|e| Error::PartitionPath {
        path: path.clone(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::PartitionSpec;
    use datafusion::arrow::datatypes::DataType;

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
        for bad in ["a/b", "..", ".", "", HIVE_NULL] {
            let err = partition_dir("events", &col, &ScalarValue::from(bad)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("events") && text.contains("'k'"), "{text}");
        }
        let long = "x".repeat(300);
        let err = partition_dir("events", &col, &ScalarValue::from(long.as_str())).unwrap_err();
        assert!(err.to_string().contains("over the limit of 255"), "{err}");
    }
}
