//! Dynamic filters: TopK and hash-join build sides tighten a filter while the
//! query runs; the scan skips what can no longer match, counts it, and
//! returns the same rows as with dynamic filters off.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::physical_expr::expressions::{lit, DynamicFilterPhysicalExpr};
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::{CacheConfig, CachedScanExec, PartitionedScanExec, TableCache};

use crate::common::*;

/// A one-partition session (so that the order files are read in, and with it
/// what the filter has seen, is fixed), with dynamic filters on or off, over
/// the events table (with or without footer statistics), `picks` (3 ids) and
/// `days` (one date).
async fn session(dir: &std::path::Path, dynamic: bool, statistics: bool) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .set_bool(
            "datafusion.optimizer.enable_dynamic_filter_pushdown",
            dynamic,
        )
        .set_bool(
            "datafusion.optimizer.enable_topk_dynamic_filter_pushdown",
            dynamic,
        )
        .set_bool(
            "datafusion.optimizer.enable_join_dynamic_filter_pushdown",
            dynamic,
        );
    let ctx = SessionContext::new_with_config(config);
    let events = events_table_with(&ctx, dir, statistics).await;
    ctx.register_table("events", Arc::new(events)).unwrap();
    exec(
        &ctx,
        "CREATE TABLE days AS SELECT DATE '2026-03-04' AS date",
    )
    .await;
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let picks = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![4_321, 4_330, 4_399]))],
    )
    .unwrap();
    ctx.register_table(
        "picks",
        Arc::new(MemTable::try_new(schema, vec![vec![picks]]).unwrap()),
    )
    .unwrap();
    ctx
}

fn find_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&PartitionedScanExec> {
    if let Some(scan) = plan.downcast_ref::<PartitionedScanExec>() {
        return Some(scan);
    }
    plan.children().into_iter().find_map(find_scan)
}

/// `(pruned, matched)` summed over the scan's pruning metric `name`.
fn pruning(plan: &Arc<dyn ExecutionPlan>, name: &str) -> (usize, usize) {
    let scan = find_scan(plan).expect("a PartitionedScanExec");
    let mut total = (0, 0);
    for metric in scan.metrics().unwrap().iter() {
        if let MetricValue::PruningMetrics {
            name: n,
            pruning_metrics,
        } = metric.value()
        {
            if n == name {
                total.0 += pruning_metrics.pruned();
                total.1 += pruning_metrics.matched();
            }
        }
    }
    total
}

struct Run {
    rows: Vec<String>,
    files_pruned: usize,
    row_groups_read: usize,
    runtime_filters: usize,
}

async fn run(ctx: &SessionContext, sql: &str) -> Run {
    let plan = physical_plan(ctx, sql).await;
    let runtime_filters = find_scan(&plan).unwrap().runtime_filters().len();
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    let mut rows: Vec<String> = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
        .lines()
        .skip(3)
        .filter(|l| !l.starts_with('+'))
        .map(String::from)
        .collect();
    rows.sort();
    Run {
        rows,
        files_pruned: pruning(&plan, "files_ranges_pruned_statistics").0,
        row_groups_read: pruning(&plan, "row_groups_pruned_statistics").1,
        runtime_filters,
    }
}

async fn on_and_off(sql: &str, statistics: bool) -> (Run, Run) {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let on = run(&session(dir.path(), true, statistics).await, sql).await;
    let off = run(&session(dir.path(), false, statistics).await, sql).await;
    (on, off)
}

const TOPK: &str = "SELECT amount FROM events ORDER BY amount DESC LIMIT 10";

#[tokio::test]
async fn topk_reads_fewer_row_groups_with_the_same_rows() {
    // Without footer statistics a file is opened (its footer is cached) and
    // its row groups are pruned.
    let (on, off) = on_and_off(TOPK, false).await;
    assert_eq!(on.rows.len(), 10);
    assert_eq!(on.rows, off.rows);
    assert_eq!((on.runtime_filters, off.runtime_filters), (1, 0));
    // 45 files x 4 row groups; off, every one is read.
    assert_eq!((off.row_groups_read, off.files_pruned), (180, 0));
    assert!(
        on.row_groups_read < 60,
        "on: {} row groups read",
        on.row_groups_read
    );
    // With them, whole files are skipped before they are opened.
    let (on, off) = on_and_off(TOPK, true).await;
    assert_eq!(on.rows, off.rows);
    assert_eq!(off.files_pruned, 0);
    assert!(
        on.files_pruned >= 20,
        "on: {} files skipped",
        on.files_pruned
    );
    assert!(
        on.row_groups_read < 60,
        "on: {} row groups read",
        on.row_groups_read
    );
}

#[tokio::test]
async fn a_selective_join_skips_files_of_the_probe_side() {
    let sql = "SELECT e.id, e.region FROM picks p JOIN events e ON e.id = p.id";
    let (on, off) = on_and_off(sql, true).await;
    assert_eq!(on.rows.len(), 3);
    assert_eq!(on.rows, off.rows);
    assert_eq!((on.runtime_filters, off.runtime_filters), (1, 0));
    assert_eq!((off.row_groups_read, off.files_pruned), (180, 0));
    // ids 4,321..4,399 are in one file (200 ids each), in two of its row groups.
    assert_eq!(on.files_pruned, 44);
    assert_eq!(on.row_groups_read, 2);
}

#[tokio::test]
async fn a_join_on_a_partition_column_skips_partitions() {
    // No footer statistics needed: the files' partition values decide.
    let sql = "SELECT count(*) FROM days d JOIN events e ON e.date = d.date";
    let (on, off) = on_and_off(sql, false).await;
    assert_eq!(on.rows, off.rows);
    assert!(on.rows[0].contains(" 1800 "), "{:?}", on.rows);
    assert_eq!(off.files_pruned, 0);
    // 4 of 5 dates, 9 files each.
    assert_eq!(on.files_pruned, 36);
}

#[tokio::test]
async fn explain_analyze_shows_the_runtime_filter_and_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = session(dir.path(), true, false).await;
    let text = rows(
        &ctx,
        "EXPLAIN ANALYZE SELECT amount FROM events ORDER BY amount DESC LIMIT 10",
    )
    .await
    .unwrap()
    .join("\n");
    let scan = text
        .lines()
        .find(|l| l.contains("PartitionedScanExec"))
        .expect("the scan in EXPLAIN ANALYZE");
    assert!(scan.contains("runtime_filters=[DynamicFilter"), "{scan}");
    assert!(scan.contains("files_ranges_pruned_statistics="), "{scan}");
    assert!(scan.contains("row_groups_pruned_statistics="), "{scan}");
}

/// A cache entry outlives the query: it must hold the whole scan, not what
/// one query's dynamic filter let through.
#[tokio::test]
async fn a_cached_scan_is_filled_without_the_dynamic_filter() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = session(dir.path(), true, false).await;
    let plan = physical_plan(&ctx, TOPK).await;
    let scan = find_scan(&plan).unwrap().clone();
    // The TopK has seen rows that exclude everything else.
    scan.runtime_filters()[0]
        .downcast_ref::<DynamicFilterPhysicalExpr>()
        .expect("the TopK's dynamic filter")
        .update(lit(false))
        .unwrap();
    let count = |batches: Vec<RecordBatch>| batches.iter().map(|b| b.num_rows()).sum::<usize>();
    let scanned = collect(Arc::new(scan.clone()), ctx.task_ctx())
        .await
        .unwrap();
    assert_eq!(count(scanned), 0, "the scan skips what the filter excludes");

    let cache = TableCache::new(CacheConfig::default().with_max_rows(1_000_000));
    let cached = CachedScanExec::new(Arc::new(scan), cache.clone());
    let inner_filters = cached.inner().runtime_filters().len();
    let filled = collect(Arc::new(cached), ctx.task_ctx()).await.unwrap();
    assert_eq!(count(filled), 9_000, "the entry holds every row");
    assert_eq!(inner_filters, 0);
    assert_eq!(cache.metrics().entries, 1);
}
