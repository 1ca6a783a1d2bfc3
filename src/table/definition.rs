//! [`TableDefinition`]: what a table is, independent of which files it has
//! at the moment — shared by the provider, its scans' planner and its sinks.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};

use super::layout::{Bucketing, TableSort};
use super::spec::PartitionSpec;
use crate::store::RetryPolicy;

/// What a table is, independent of which files it currently has.
#[derive(Debug)]
pub(crate) struct TableDefinition {
    pub name: Arc<str>,
    pub root: ListingTableUrl,
    pub spec: PartitionSpec,
    pub file_schema: SchemaRef,
    /// File columns, then partition columns.
    pub table_schema: SchemaRef,
    pub collect_statistics: bool,
    pub file_extension: String,
    pub bucketing: Option<Bucketing>,
    pub sort: Option<TableSort>,
    pub retry: Option<RetryPolicy>,
    /// Listings discovery runs at once (see `PartitionedTableBuilder::listing_concurrency`).
    pub listing_concurrency: usize,
}

/// Listings discovery runs at once by default.
pub(crate) const DEFAULT_LISTING_CONCURRENCY: usize = 64;

impl TableDefinition {
    pub(crate) fn new(
        name: String,
        root: ListingTableUrl,
        spec: PartitionSpec,
        file_schema: SchemaRef,
        collect_statistics: bool,
        file_extension: String,
    ) -> Self {
        let mut fields: Vec<_> = file_schema.fields().iter().cloned().collect();
        fields.extend(spec.fields());
        let table_schema = Arc::new(Schema::new_with_metadata(
            fields,
            file_schema.metadata().clone(),
        ));
        Self {
            name: name.into(),
            root,
            spec,
            file_schema,
            table_schema,
            collect_statistics,
            file_extension,
            bucketing: None,
            sort: None,
            retry: None,
            listing_concurrency: DEFAULT_LISTING_CONCURRENCY,
        }
    }

    /// The table's sort order as DataFusion's ordering over the table schema.
    pub(crate) fn lex_ordering(&self) -> Option<LexOrdering> {
        let sort = self.sort.as_ref()?;
        let keys = sort.keys.iter().map(|key| {
            let index = self.table_schema.index_of(&key.column).ok()?;
            Some(PhysicalSortExpr::new(
                Arc::new(Column::new(&key.column, index)),
                SortOptions {
                    descending: key.descending,
                    nulls_first: key.nulls_first,
                },
            ))
        });
        LexOrdering::new(keys.collect::<Option<Vec<_>>>()?)
    }
}
