//! Per-file schema checks: a file may lack a nullable column (read as NULL) or
//! store a column in a lossless variant of the table's type, but a real type
//! conflict is an error, not a silent cast. The same rules apply inside
//! structs (a struct may lack a nullable field, or carry a field the table
//! dropped) and to list items.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};

use crate::error::{ColumnConflict, Error};

/// Checks each file's schema against the table's, then adapts expressions with
/// DataFusion's default adapter (which fills missing nullable columns with NULL).
///
/// DataFusion's default would also cast, say, a Utf8 column to the table's
/// Int64 and fail (or not) row by row; here such a file is rejected up front.
/// The error carries no path: the morselizer wrapper adds it.
#[derive(Debug, Default)]
pub(crate) struct StrictExprAdapterFactory;

impl PhysicalExprAdapterFactory for StrictExprAdapterFactory {
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
    // The path is attached by the caller, which knows the file.
    DataFusionError::External(Box::new(ColumnConflict {
        column: column.to_string(),
        expected: expected.clone(),
        found: found.clone(),
    }))
}

/// Merges the schemas of `files` (path, schema) for a table that reads all
/// of them under the rules above: a column some files lack becomes nullable,
/// a column whose types are compatible one way takes the wider type, and a
/// conflict is an error naming the first file that conflicts.
pub(crate) fn merge_schemas(files: &[(String, SchemaRef)]) -> crate::error::Result<SchemaRef> {
    let Some((_, first)) = files.first() else {
        return Ok(Arc::new(Schema::empty()));
    };
    let mut fields: Vec<Field> = first.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (path, schema) in &files[1..] {
        for field in &mut fields {
            if schema.field_with_name(field.name()).is_err() {
                field.set_nullable(true);
            }
        }
        for found in schema.fields() {
            match fields.iter_mut().find(|f| f.name() == found.name()) {
                None => fields.push(found.as_ref().clone().with_nullable(true)),
                Some(field) => {
                    if compatible(found.data_type(), field.data_type()) {
                        // Ours is already the wider: keep it.
                    } else if compatible(field.data_type(), found.data_type()) {
                        field.set_data_type(found.data_type().clone());
                    } else {
                        return Err(Error::SchemaConflict {
                            path: path.clone(),
                            column: found.name().clone(),
                            expected: field.data_type().clone(),
                            found: found.data_type().clone(),
                        });
                    }
                    if found.is_nullable() {
                        field.set_nullable(true);
                    }
                }
            }
        }
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        first.metadata().clone(),
    )))
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
            // A dictionary's values are what is read: the file's values must
            // fit the table's, whichever side is dictionary-encoded.
            (Dictionary(_, found), expected) => compatible(found, expected),
            (found, Dictionary(_, expected)) => compatible(found, expected),
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

    #[test]
    fn dictionaries_are_checked_in_the_direction_of_the_read() {
        let dict = |v: DataType| DataType::Dictionary(Box::new(DataType::Int8), Box::new(v));
        // Widening into or out of a dictionary: fine.
        assert!(compatible(&DataType::Int32, &dict(DataType::Int64)));
        assert!(compatible(&dict(DataType::Int32), &DataType::Int64));
        // Narrowing, either way: refused.
        assert!(!compatible(&DataType::Int64, &dict(DataType::Int32)));
        assert!(!compatible(&dict(DataType::Int64), &DataType::Int32));
    }
}
