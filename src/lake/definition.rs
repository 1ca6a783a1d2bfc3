//! [`TableDefinition`]: what a table is, independent of which files it has
//! at the moment — shared by the provider, its scans' planner and its sinks,
//! and built in one place, [`TableDefinition::try_new`], which checks it,
//! whether it comes from a builder or from the wire.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};

use super::layout::{Bucketing, SortKey, TableSort};
use super::learned::LearnedKey;
use super::partitioning::PartitionSpec;
use crate::error::{Error, Result, TableProblem};
use crate::store::{RetryPolicy, StoreKind};

/// How a table is read and written, beyond its root, partitions and schema:
/// what the builder's setters set and what the codecs ship.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableOptions {
    /// Every footer is read at `build()`/`refresh()` (always, when a sort
    /// order is declared: sorted scans are proven from footer min/max).
    pub collect_statistics: bool,
    /// The suffix that marks data files.
    pub file_extension: String,
    /// Declared hash bucketing.
    pub bucketing: Option<Bucketing>,
    /// Declared (or adopted) sort order.
    pub sort: Option<TableSort>,
    /// Retries and timeouts of the table's reads.
    pub retry: Option<RetryPolicy>,
    /// Listings discovery runs at once (see
    /// `PartitionedTableBuilder::listing_concurrency`); at least 1.
    pub listing_concurrency: usize,
    /// What `INSERT OVERWRITE` replaces.
    pub overwrite_mode: OverwriteMode,
}

/// What `INSERT OVERWRITE` replaces in a partitioned table (an
/// unpartitioned one is always replaced whole).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverwriteMode {
    /// Exactly the partitions the write produces; every other partition
    /// stays as it is (Spark's `partitionOverwriteMode=dynamic`). The
    /// default.
    #[default]
    Partitions,
    /// The whole table: partitions the write produces no rows for are
    /// emptied.
    Table,
}

impl OverwriteMode {
    /// The name DDL uses (`'overwrite_mode' 'partitions'` or `'table'`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Partitions => "partitions",
            Self::Table => "table",
        }
    }

    /// The mode a DDL name names.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "partitions" | "dynamic" => Some(Self::Partitions),
            "table" | "static" => Some(Self::Table),
            _ => None,
        }
    }
}

/// Listings discovery runs at once by default.
const DEFAULT_LISTING_CONCURRENCY: usize = 64;

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            collect_statistics: false,
            file_extension: ".parquet".to_string(),
            bucketing: None,
            sort: None,
            retry: None,
            listing_concurrency: DEFAULT_LISTING_CONCURRENCY,
            overwrite_mode: OverwriteMode::default(),
        }
    }
}

/// What a table is, independent of which files it currently has.
///
/// Only [`try_new`](Self::try_new) builds one (only it can make a
/// [`Derived`]), so every definition in use — a builder's, a decoded one —
/// has passed the same checks. Codecs take one apart by exhaustive
/// destructuring, so a new field does not compile until it travels. Its
/// fields are read, never assigned, once it is built (the derived ones
/// would go stale): a change is a new definition.
#[derive(Debug)]
pub(crate) struct TableDefinition {
    pub name: Arc<str>,
    pub root: ListingTableUrl,
    pub spec: PartitionSpec,
    pub file_schema: SchemaRef,
    pub options: TableOptions,
    pub derived: Derived,
}

/// What [`TableDefinition::try_new`] derives from the rest (private fields:
/// nothing else can make one).
#[derive(Debug)]
pub(crate) struct Derived {
    /// File columns, then partition columns.
    table_schema: SchemaRef,
    /// What kind of storage the root is on, decided once here.
    store_kind: StoreKind,
    /// What the statistics scans learn of its files are kept under.
    learned_key: Arc<LearnedKey>,
}

/// Refuses a partition spec that names one column twice (checked before a
/// listing parses directories with it, and again by `try_new`).
pub(crate) fn check_spec(root: &ListingTableUrl, spec: &PartitionSpec) -> Result<()> {
    let columns = spec.columns();
    for (i, column) in columns.iter().enumerate() {
        if columns[..i].iter().any(|c| c.name == column.name) {
            return Err(invalid(
                root,
                TableProblem::DuplicatePartitionColumn {
                    column: column.name.clone(),
                },
            ));
        }
    }
    Ok(())
}

fn invalid(root: &ListingTableUrl, problem: TableProblem) -> Error {
    Error::InvalidTable {
        root: root.to_string(),
        problem,
    }
}

impl TableDefinition {
    /// The directory of the partition with `values`, in our writer's
    /// spelling (see [`PartitionSpec::canonical_dir`]).
    pub(crate) fn canonical_dir(&self, values: &[ScalarValue]) -> Result<String> {
        self.spec.canonical_dir(&self.name, values)
    }

    /// Checks and builds a definition: partition columns are distinct and
    /// not inside the files, a bucket column is a file column and the
    /// bucket count at least 1, a declared sort order names file columns,
    /// each once. Errors name the root and what is wrong.
    pub(crate) fn try_new(
        name: Arc<str>,
        root: ListingTableUrl,
        spec: PartitionSpec,
        file_schema: SchemaRef,
        mut options: TableOptions,
    ) -> Result<Self> {
        check_spec(&root, &spec)?;
        if let Some(column) = spec
            .columns()
            .iter()
            .find(|c| file_schema.field_with_name(&c.name).is_ok())
        {
            return Err(invalid(
                &root,
                TableProblem::PartitionColumnInSchema {
                    column: column.name.clone(),
                },
            ));
        }
        if let Some(b) = &options.bucketing {
            let known = file_schema.field_with_name(&b.column).is_ok();
            if !known || b.buckets == 0 {
                return Err(invalid(
                    &root,
                    TableProblem::Bucketing {
                        column: b.column.clone(),
                        buckets: b.buckets,
                        problem: if known {
                            "the bucket count must be at least 1"
                        } else {
                            "no such column inside the files (partition columns cannot be bucket keys)"
                        },
                    },
                ));
            }
        }
        // An adopted order comes from the files and is trusted only as far
        // as footers prove it; a declared one must name file columns.
        if let Some(sort) = options.sort.as_ref().filter(|s| s.declared) {
            check_sort_keys(&root, &file_schema, &sort.keys)?;
            options.collect_statistics = true;
        }
        options.listing_concurrency = options.listing_concurrency.max(1);
        let mut fields: Vec<_> = file_schema.fields().iter().cloned().collect();
        fields.extend(spec.fields());
        let table_schema = Arc::new(Schema::new_with_metadata(
            fields,
            file_schema.metadata().clone(),
        ));
        let store_kind = StoreKind::of_root(&root);
        let learned_key = LearnedKey::new(&file_schema);
        Ok(Self {
            name,
            root,
            spec,
            file_schema,
            options,
            derived: Derived {
                table_schema,
                store_kind,
                learned_key,
            },
        })
    }

    /// The same table, with the order every one of its files records
    /// adopted (trusting only files that record it); at `build()`, before
    /// the definition is shared.
    pub(crate) fn adopting_sort(mut self, keys: Vec<SortKey>) -> Self {
        self.options.sort = Some(TableSort {
            keys,
            declared: false,
        });
        self
    }

    /// File columns, then partition columns.
    pub(crate) fn table_schema(&self) -> &SchemaRef {
        &self.derived.table_schema
    }

    /// What kind of storage the table's root is on.
    pub(crate) fn store_kind(&self) -> StoreKind {
        self.derived.store_kind
    }

    /// What the statistics scans learn of the table's files are kept under.
    pub(crate) fn learned_key(&self) -> &Arc<LearnedKey> {
        &self.derived.learned_key
    }

    /// The table's sort order as DataFusion's ordering over the table schema.
    pub(crate) fn lex_ordering(&self) -> Option<LexOrdering> {
        let sort = self.options.sort.as_ref()?;
        let keys = sort.keys.iter().map(|key| {
            let index = self.table_schema().index_of(&key.column).ok()?;
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

/// A declared sort order names file columns, each once.
fn check_sort_keys(root: &ListingTableUrl, file_schema: &Schema, keys: &[SortKey]) -> Result<()> {
    for (i, key) in keys.iter().enumerate() {
        let problem = if file_schema.field_with_name(&key.column).is_err() {
            "no such column inside the files (partition columns cannot be sort keys)"
        } else if keys[..i].iter().any(|k| k.column == key.column) {
            "the column appears twice"
        } else {
            continue;
        };
        return Err(invalid(
            root,
            TableProblem::SortOrder {
                order: SortKey::encode_all(keys),
                column: key.column.clone(),
                problem,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    fn try_new(
        spec: &[&str],
        file_columns: &[&str],
        options: TableOptions,
    ) -> Result<TableDefinition> {
        let root = ListingTableUrl::parse("memory:///t/").map_err(|e| Error::InvalidUrl {
            url: "memory:///t/".into(),
            source: Box::new(e),
        })?;
        let spec = PartitionSpec::new(spec.iter().map(|c| (c.to_string(), DataType::Utf8)));
        let schema = Schema::new(
            file_columns
                .iter()
                .map(|c| Field::new(*c, DataType::Int64, true))
                .collect::<Vec<_>>(),
        );
        TableDefinition::try_new("t".into(), root, spec, Arc::new(schema), options)
    }

    /// A decoded definition passes the checks a builder's does.
    #[test]
    fn every_definition_is_checked() {
        let problem = |result: Result<TableDefinition>| match result {
            Err(Error::InvalidTable { problem, .. }) => problem.to_string(),
            other => format!("not refused: {other:?}"),
        };
        let base = TableOptions::default;
        assert!(problem(try_new(&["d", "d"], &["x"], base())).contains("'d'"));
        assert!(problem(try_new(&["d"], &["d"], base())).contains("'d'"));
        let bucketed = |column: &str, buckets| TableOptions {
            bucketing: Some(Bucketing {
                column: column.into(),
                buckets,
            }),
            ..base()
        };
        assert!(problem(try_new(&["d"], &["x"], bucketed("x", 0))).contains("at least 1"));
        assert!(problem(try_new(&["d"], &["x"], bucketed("d", 4))).contains("no such column"));
        let sorted = |keys: &[&str], declared| TableOptions {
            sort: Some(TableSort {
                keys: keys.iter().map(|k| SortKey::from(*k)).collect(),
                declared,
            }),
            ..base()
        };
        assert!(problem(try_new(&[], &["x"], sorted(&["x", "x"], true))).contains("twice"));
        assert!(problem(try_new(&[], &["x"], sorted(&["y"], true))).contains("no such column"));
        // Declaring an order makes the table read footers; an adopted one
        // is not checked (footers decide how far it is trusted).
        let ok = try_new(&[], &["x"], sorted(&["x"], true)).map(|d| d.options.collect_statistics);
        assert!(matches!(ok, Ok(true)), "{ok:?}");
        assert!(try_new(&[], &["x"], sorted(&["y"], false)).is_ok());
        let zero = try_new(
            &[],
            &["x"],
            TableOptions {
                listing_concurrency: 0,
                ..base()
            },
        )
        .map(|d| d.options.listing_concurrency);
        assert!(matches!(zero, Ok(1)), "{zero:?}");
    }
}
