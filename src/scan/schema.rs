//! Per-file schema checks: a file may lack a nullable column (read as NULL) or
//! store a column in a lossless variant of the table's type, but a real type
//! conflict is an error, not a silent cast. The same rules apply inside
//! structs (a struct may lack a nullable field, or carry a field the table
//! dropped) and to list items.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};

use crate::error::Error;

/// Checks each file's schema against the table's, then adapts expressions with
/// DataFusion's default adapter (which fills missing nullable columns with NULL).
///
/// DataFusion's default would also cast, say, a Utf8 column to the table's
/// Int64 and fail (or not) row by row; here such a file is rejected up front.
/// The error carries no path: the morselizer wrapper adds it.
#[derive(Debug, Default)]
pub(crate) struct StrictSchemaAdapterFactory;

impl PhysicalExprAdapterFactory for StrictSchemaAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        for expected in logical_file_schema.fields() {
            match physical_file_schema.field_with_name(expected.name()) {
                Ok(found) if !compatible(found.data_type(), expected.data_type()) => {
                    return Err(conflict(
                        expected.name(),
                        expected.data_type(),
                        found.data_type(),
                    ));
                }
                Err(_) if !expected.is_nullable() => {
                    return Err(DataFusionError::Execution(format!(
                        "file lacks column '{}', which the table declares NOT NULL",
                        expected.name()
                    )));
                }
                _ => {}
            }
        }
        DefaultPhysicalExprAdapterFactory.create(logical_file_schema, physical_file_schema)
    }
}

fn conflict(column: &str, expected: &DataType, found: &DataType) -> DataFusionError {
    DataFusionError::External(Box::new(Error::SchemaConflict {
        // The path is attached by the caller, which knows the file.
        path: String::new(),
        column: column.to_string(),
        expected: expected.clone(),
        found: found.clone(),
    }))
}

/// Whether a file column of type `found` can be read as the table's `expected`
/// without losing or reinterpreting values.
fn compatible(found: &DataType, expected: &DataType) -> bool {
    use DataType::*;
    if found.equals_datatype(expected) {
        return true;
    }
    let rank = |t: &DataType| match t {
        Int8 => Some((0, 1)),
        Int16 => Some((0, 2)),
        Int32 => Some((0, 3)),
        Int64 => Some((0, 4)),
        UInt8 => Some((1, 1)),
        UInt16 => Some((1, 2)),
        UInt32 => Some((1, 3)),
        UInt64 => Some((1, 4)),
        Float16 => Some((2, 1)),
        Float32 => Some((2, 2)),
        Float64 => Some((2, 3)),
        Utf8 | LargeUtf8 | Utf8View => Some((3, 0)),
        Binary | LargeBinary | BinaryView => Some((4, 0)),
        _ => None,
    };
    match (rank(found), rank(expected)) {
        (Some((family_f, width_f)), Some((family_e, width_e))) => {
            family_f == family_e && width_f <= width_e
        }
        _ => match (found, expected) {
            (Dictionary(_, value), other) | (other, Dictionary(_, value)) => {
                compatible(value, other)
            }
            (Timestamp(unit_f, tz_f), Timestamp(unit_e, tz_e)) => {
                unit_f == unit_e && tz_f.is_some() == tz_e.is_some()
            }
            (Struct(found), Struct(expected)) => {
                expected
                    .iter()
                    .all(|e| match found.iter().find(|f| f.name() == e.name()) {
                        Some(f) => compatible(f.data_type(), e.data_type()),
                        None => e.is_nullable(),
                    })
            }
            (List(f), List(e)) | (LargeList(f), LargeList(e)) => {
                compatible(f.data_type(), e.data_type())
            }
            (FixedSizeList(f, n), FixedSizeList(e, m)) => {
                n == m && compatible(f.data_type(), e.data_type())
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_and_string_variants_are_compatible() {
        assert!(compatible(&DataType::Int32, &DataType::Int64));
        assert!(compatible(&DataType::Utf8, &DataType::Utf8View));
        assert!(compatible(&DataType::Float32, &DataType::Float64));
    }

    #[test]
    fn real_conflicts_are_not() {
        assert!(!compatible(&DataType::Utf8, &DataType::Int64));
        assert!(!compatible(&DataType::Int64, &DataType::Int32));
        assert!(!compatible(&DataType::Int64, &DataType::Float64));
        assert!(!compatible(&DataType::Boolean, &DataType::Utf8));
    }
}
