//! `CREATE EXTERNAL TABLE … STORED AS PARTITIONED_PARQUET` support.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::catalog::{Session, TableProviderFactory};
use datafusion::common::plan_err;
use datafusion::datasource::TableProvider;
use datafusion::error::Result;
use datafusion::logical_expr::CreateExternalTable;

use super::provider::PartitionedTable;
use crate::error::Error;
use crate::lake::OverwriteMode;

/// Creates [`PartitionedTable`]s from SQL DDL:
///
/// ```sql
/// CREATE EXTERNAL TABLE events
/// STORED AS PARTITIONED_PARQUET
/// LOCATION 'file:///data/events/'
/// PARTITIONED BY (date, region);
/// ```
///
/// A partition column's type is the one given in the column list
/// (`CREATE EXTERNAL TABLE events (amount DOUBLE, date DATE) … PARTITIONED BY (date)`),
/// Utf8 otherwise. Other listed columns become the file schema; without any,
/// it is read from one footer. `OPTIONS ('collect_statistics' 'true')` reads
/// every footer at creation; `OPTIONS ('merge_schema' 'true')` merges every
/// footer's schema (see [`PartitionedTableBuilder::merge_schema`](super::PartitionedTableBuilder::merge_schema)).
#[derive(Debug, Default, Clone, Copy)]
pub struct PartitionedTableFactory;

impl PartitionedTableFactory {
    /// The `STORED AS` name this factory is registered under.
    pub const FORMAT: &'static str = "PARTITIONED_PARQUET";
}

#[async_trait]
impl TableProviderFactory for PartitionedTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let [location] = cmd.locations.as_slice() else {
            return plan_err!(
                "table {}: STORED AS {} takes exactly one LOCATION, got {}",
                cmd.name,
                Self::FORMAT,
                cmd.locations.len()
            );
        };
        let declared = cmd.schema.as_arrow();
        let mut builder = PartitionedTable::builder(location.clone()).name(cmd.name.to_string());
        for column in &cmd.table_partition_cols {
            let data_type = declared
                .field_with_name(column)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Utf8);
            builder = builder.partition_column(column.clone(), data_type);
        }
        let file_fields: Vec<_> = declared
            .fields()
            .iter()
            .filter(|f| !cmd.table_partition_cols.contains(f.name()))
            .cloned()
            .collect();
        if !file_fields.is_empty() {
            builder = builder.schema(Arc::new(Schema::new(file_fields)));
        }
        for (key, value) in &cmd.options {
            // DataFusion prefixes keys written without a namespace with
            // `format.`: `OPTIONS (collect_statistics true)` arrives as
            // `format.collect_statistics`.
            let bare = key.strip_prefix("format.").unwrap_or(key);
            match bare {
                "collect_statistics" | "merge_schema" => {
                    let on = value.parse::<bool>().map_err(|_| Error::InvalidSetting {
                        scope: format!("table {}", cmd.name),
                        key: key.clone(),
                        value: value.clone(),
                        expected: "true or false",
                    })?;
                    builder = if bare == "collect_statistics" {
                        builder.collect_statistics(on)
                    } else {
                        builder.merge_schema(on)
                    };
                }
                "overwrite_mode" => {
                    let mode =
                        OverwriteMode::parse(value).ok_or_else(|| Error::InvalidSetting {
                            scope: format!("table {}", cmd.name),
                            key: key.clone(),
                            value: value.clone(),
                            expected: "partitions or table",
                        })?;
                    builder = builder.overwrite_mode(mode);
                }
                _ => {
                    return Err(Error::UnknownSetting {
                        scope: format!("table {} (STORED AS {})", cmd.name, Self::FORMAT),
                        key: key.clone(),
                        known: "collect_statistics, merge_schema, overwrite_mode".to_string(),
                    }
                    .into())
                }
            }
        }
        Ok(Arc::new(builder.build(state).await?))
    }
}
