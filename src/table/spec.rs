//! The partition spec: which `key=value` directory levels a table has, their
//! types, and how one object path turns into typed partition values (with
//! the Hive path rules of `hive`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;

use super::hive::{parse_value, split_key_value};
use crate::error::{Error, PathProblem, Result};

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

#[cfg(test)]
mod tests {
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
