//! Filter pushdown: which filters the table answers exactly from its partition
//! index, which it uses to skip row groups, and which it leaves to DataFusion;
//! and which partitions a partition predicate selects ([`matches`], for
//! planning and for `refresh_partitions`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;

use crate::lake::partitioning::PartitionSpec;

/// How one filter is handled by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterKind {
    /// Only partition columns: evaluated exactly against the partition index.
    Partition,
    /// Touches data columns and can prune row groups through Parquet statistics;
    /// DataFusion still applies it on top of the scan.
    RowGroup,
    /// Neither: left entirely to DataFusion.
    Unsupported,
}

impl From<FilterKind> for TableProviderFilterPushDown {
    fn from(kind: FilterKind) -> Self {
        match kind {
            FilterKind::Partition => Self::Exact,
            FilterKind::RowGroup => Self::Inexact,
            FilterKind::Unsupported => Self::Unsupported,
        }
    }
}

/// Classifies `filter` for a table with this spec and full (file + partition) schema.
///
/// `supports_filters_pushdown` sees table-qualified columns (`events.id`) while
/// `scan` sees them unqualified; both are classified unqualified, against the
/// table's own (unqualified) schema.
pub(crate) fn classify(
    filter: &Expr,
    spec: &PartitionSpec,
    table_schema: &SchemaRef,
) -> FilterKind {
    let filter = &unnormalize_col(filter.clone());
    let columns = filter.column_refs();
    if columns.is_empty() {
        return FilterKind::Unsupported;
    }
    if columns.iter().all(|c| spec.index_of(&c.name).is_some()) {
        if is_partition_predicate(filter) {
            return FilterKind::Partition;
        }
        return FilterKind::Unsupported;
    }
    if can_prune_row_groups(filter, table_schema) {
        FilterKind::RowGroup
    } else {
        FilterKind::Unsupported
    }
}

/// How the scan itself treats `filter`: as [`classify`], except that every
/// filter over partition columns alone — or over no column at all — is
/// applied to the partition index, whatever its shape.
///
/// DataFusion simplifies the filters a table accepted as `Exact` before
/// handing them to `scan`: `NOT n IN (-1, NULL)`, accepted whole, arrives as
/// `n != -1` and a bare `NULL`. Dropping the `NULL` (no columns, so not a
/// partition predicate) would return rows the query excludes; nothing above
/// the scan re-applies an `Exact` filter.
pub(crate) fn classify_for_scan(
    filter: &Expr,
    spec: &PartitionSpec,
    table_schema: &SchemaRef,
) -> FilterKind {
    match classify(filter, spec, table_schema) {
        FilterKind::Unsupported
            if unnormalize_col(filter.clone())
                .column_refs()
                .iter()
                .all(|c| spec.index_of(&c.name).is_some()) =>
        {
            FilterKind::Partition
        }
        kind => kind,
    }
}

/// The shapes answered exactly from partition values: comparisons, `IN`,
/// `BETWEEN`, `IS [NOT] NULL`, and `AND`/`OR`/`NOT` of those, over columns,
/// literals and casts (the planner casts literals to the column's type).
fn is_partition_predicate(expr: &Expr) -> bool {
    let mut ok = true;
    expr.apply(|e| {
        let allowed = match e {
            Expr::Column(_) | Expr::Literal(..) | Expr::Cast(_) | Expr::TryCast(_) => true,
            Expr::BinaryExpr(BinaryExpr { op, .. }) => matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ),
            Expr::InList(_) | Expr::Between(_) | Expr::Not(_) => true,
            Expr::IsNull(_) | Expr::IsNotNull(_) => true,
            Expr::IsTrue(_) | Expr::IsFalse(_) | Expr::IsNotTrue(_) | Expr::IsNotFalse(_) => true,
            _ => false,
        };
        if allowed {
            Ok(TreeNodeRecursion::Continue)
        } else {
            ok = false;
            Ok(TreeNodeRecursion::Stop)
        }
    })
    .ok();
    ok
}

/// Whether DataFusion's [`PruningPredicate`] can use `filter` to rule out row
/// groups (it is not trivially "always true" against the table's columns).
fn can_prune_row_groups(filter: &Expr, table_schema: &SchemaRef) -> bool {
    let Ok(df_schema) = DFSchema::try_from(table_schema.as_ref().clone()) else {
        return false;
    };
    let Ok(physical) = create_physical_expr(
        filter,
        &df_schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    ) else {
        return false;
    };
    PruningPredicateBuilder::new()
        .with_file_schema(Arc::clone(table_schema))
        .build(physical)
        .is_some()
}

/// Which rows of `values` (partition values, one row per partition or
/// directory) `predicate` selects. NULL (unknown) is not a match: `shop = 1`
/// must not select the NULL partition.
pub(in crate::table) fn matches(
    state: &dyn Session,
    predicate: &Expr,
    values: &RecordBatch,
    table: &str,
) -> DFResult<Vec<bool>> {
    let df_schema = DFSchema::try_from(values.schema())?;
    let physical = state.create_physical_expr(predicate.clone(), &df_schema)?;
    selected_by(&physical, values, table)
}

/// [`matches`] for a predicate already planned over the partition columns.
pub(in crate::table) fn selected_by(
    physical: &Arc<dyn PhysicalExpr>,
    values: &RecordBatch,
    table: &str,
) -> DFResult<Vec<bool>> {
    let result = physical.evaluate(values)?.into_array(values.num_rows())?;
    let mask = result.as_boolean_opt().ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!(
            "partition filter on table {table} did not evaluate to a boolean"
        ))
    })?;
    Ok((0..values.num_rows())
        .map(|i| mask.is_valid(i) && mask.value(i))
        .collect())
}
