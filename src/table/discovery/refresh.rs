//! Refreshing a built table: the whole root listed again ([`refresh`]), or
//! only the partitions a predicate selects ([`refresh_partitions`]), each
//! installed whole into the table's [`SharedIndex`] (see
//! `PartitionedTable::refresh` and `PartitionedTable::refresh_partitions`
//! for what users are promised).

use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::utils::{Guarantee, LiteralGuarantee};

use super::{index_from, table_store};
use crate::error::{Error, Result, TableProblem};
use crate::lake::listing::{dirs_at_level, Lister};
use crate::lake::partitioning::PartitionSpec;
use crate::lake::snapshot::{consistent, snapshot, without_hidden, Scope};
use crate::lake::{SharedIndex, TableDefinition};
use crate::table::pushdown::matches;

/// Lists the table root again and installs the new index (see
/// `PartitionedTable::refresh`).
pub(in crate::table) async fn refresh(
    state: &dyn Session,
    definition: &TableDefinition,
    index: &SharedIndex,
) -> Result<()> {
    let ticket = index.begin_refresh();
    let store = table_store(state, definition)?;
    let lister = Lister::of_table(&store, definition);
    let listing = snapshot(
        &lister,
        Scope::Table(Some(&definition.spec)),
        &definition.options.file_extension,
    )
    .await?;
    let listed = index_from(state, &store, definition, listing.partitions)
        .await?
        .index;
    index
        .finish_refresh(ticket, &definition.spec, listed)
        .map_err(|e| index_error(definition, e))?;
    Ok(())
}

/// Re-lists the partitions `predicate` selects and installs them, whole
/// (see `PartitionedTable::refresh_partitions`).
pub(in crate::table) async fn refresh_partitions(
    state: &dyn Session,
    definition: &TableDefinition,
    index: &SharedIndex,
    predicate: Expr,
) -> Result<()> {
    let spec = &definition.spec;
    let mut levels = 0;
    for column in predicate.column_refs() {
        let Some(i) = spec.index_of(&column.name) else {
            return Err(Error::InvalidTable {
                root: definition.root.to_string(),
                problem: TableProblem::RefreshPredicate {
                    column: column.name.clone(),
                    partition_columns: spec
                        .columns()
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            });
        };
        levels = levels.max(i + 1);
    }
    if levels == 0 {
        return refresh(state, definition, index).await;
    }
    let evaluation = |source: DataFusionError| Error::InvalidTable {
        root: definition.root.to_string(),
        problem: TableProblem::RefreshEvaluation {
            source: Box::new(source),
        },
    };
    let pinned = pinned_values(state, &predicate, spec, levels).map_err(evaluation)?;
    let ticket = index.begin_refresh();
    // The directories the table holds for the predicate, as their
    // writers spelled them: listed again whatever our writer would
    // call them (`hour=07` for `hour = 7`).
    let known = {
        let current = index.snapshot();
        let selected =
            matches(state, &predicate, current.values(), &definition.name).map_err(evaluation)?;
        dirs_at_level(&current, &selected, &definition.root, levels)
    };
    let store = table_store(state, definition)?;
    let lister = Lister::of_table(&store, definition);
    let ((mut listing, coverage), hidden) = consistent(&lister, || {
        lister.list_selected_partitions(
            spec,
            &definition.options.file_extension,
            levels,
            &pinned,
            known.clone(),
            |candidates| {
                matches(state, &predicate, candidates, &definition.name).map_err(evaluation)
            },
        )
    })
    .await?;
    without_hidden(&mut listing.partitions, &hidden);
    let listed = index_from(state, &store, definition, listing.partitions)
        .await?
        .index;
    index
        .finish_partial_refresh(ticket, spec, listed, |current| {
            current
                .partitions()
                .iter()
                .map(|partition| coverage.covers(partition.dir()))
                .collect()
        })
        .map_err(|e| index_error(definition, e))?;
    Ok(())
}

/// A refresh whose listing cannot become an index.
fn index_error(definition: &TableDefinition, source: DataFusionError) -> Error {
    Error::InvalidTable {
        root: definition.root.to_string(),
        problem: TableProblem::Index {
            source: Box::new(source),
        },
    }
}

/// For each of the first `levels` partition columns, the values
/// `predicate` pins it to (DataFusion's `LiteralGuarantee`: an `=` or `IN`
/// that must hold), if any.
fn pinned_values(
    state: &dyn Session,
    predicate: &Expr,
    spec: &PartitionSpec,
    levels: usize,
) -> datafusion::error::Result<Vec<Option<Vec<ScalarValue>>>> {
    let schema = Schema::new(spec.fields());
    let df_schema = DFSchema::try_from(schema)?;
    let physical = state.create_physical_expr(predicate.clone(), &df_schema)?;
    let guarantees = LiteralGuarantee::analyze(&physical);
    Ok(spec
        .columns()
        .iter()
        .take(levels)
        .map(|column| {
            guarantees
                .iter()
                .find(|g| g.column.name() == column.name && g.guarantee == Guarantee::In)
                .map(|g| {
                    let mut values: Vec<ScalarValue> = g.literals.iter().cloned().collect();
                    values.sort_by_key(|v| v.to_string());
                    values
                })
        })
        .collect())
}
