//! `EXPLAIN` shows what will be read, and `EXPLAIN ANALYZE` what was. Plans
//! are compared as snapshots (`tests/it/snapshots/`), as DataFusion compares
//! its own.

use std::sync::Arc;

use datafusion::prelude::{SessionConfig, SessionContext};

use crate::common::*;

async fn ctx_with_events(dir: &std::path::Path) -> SessionContext {
    write_events(dir);
    // Fixed, so the snapshots do not depend on the machine's cores.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    ctx.register_table("events", Arc::new(events_table(&ctx, dir).await))
        .unwrap();
    ctx
}

#[tokio::test]
async fn partition_predicate_is_exact_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_events(dir.path()).await;
    let plan = explain_text(
        &ctx,
        "SELECT id FROM events WHERE date = DATE '2026-03-02' AND region = 'eu'",
    )
    .await;
    insta::assert_snapshot!("partition_predicate", redacted(&plan, dir.path()));
}

#[tokio::test]
async fn data_predicate_keeps_filter_and_prunes_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_events(dir.path()).await;
    let sql = "SELECT id, amount FROM events WHERE id BETWEEN 1000 AND 1010";
    let plan = explain_text(&ctx, sql).await;
    insta::assert_snapshot!("data_predicate", redacted(&plan, dir.path()));

    let analyzed = rows(&ctx, &format!("EXPLAIN ANALYZE {sql}"))
        .await
        .unwrap()
        .join("\n");
    // 45 files x 4 row groups; ids 1000..=1010 live in exactly one row group.
    assert!(
        analyzed.contains("row_groups_pruned_statistics=180 total \u{2192} 1 matched"),
        "{analyzed}"
    );
    assert!(analyzed.contains("files_opened=45,"), "{analyzed}");
    assert!(analyzed.contains("bytes_scanned="), "{analyzed}");
    assert!(analyzed.contains("time_to_first_batch="), "{analyzed}");
    assert!(analyzed.contains("output_rows="), "{analyzed}");
}

#[tokio::test]
async fn limit_is_pushed_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_events(dir.path()).await;
    let plan = explain_text(&ctx, "SELECT * FROM events WHERE region = 'us' LIMIT 7").await;
    insta::assert_snapshot!("limit", redacted(&plan, dir.path()));
    let got = rows(&ctx, "SELECT * FROM events WHERE region = 'us' LIMIT 7")
        .await
        .unwrap();
    assert_eq!(got.len(), 7);
}

/// `bucket-00001-<write id>-00003.parquet` → `bucket-00001-ID-00003.parquet`:
/// write ids differ from run to run.
fn without_write_ids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("bucket-") {
        let (before, after) = rest.split_at(at + "bucket-".len() + 6);
        out.push_str(before);
        let end = after.find(".parquet").unwrap_or(0);
        let name = &after[..end];
        match name.rfind('-') {
            Some(dash) if end > 0 => {
                out.push_str("ID");
                out.push_str(&name[dash..]);
                rest = &after[end..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// A sorted, bucketed table compacted from many small INSERTs still
/// declares its order and its hash partitioning: the plan is the one its
/// `INSERT`ed files had, with fewer files.
#[tokio::test]
async fn compaction_keeps_the_declared_order_and_buckets() {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use lakefusion::{CompactOptions, PartitionedTable, SortKey};
    let dir = tempfile::tempdir().unwrap();
    let build = |ctx: SessionContext| {
        let root = file_url(dir.path());
        async move {
            PartitionedTable::builder(root)
                .schema(Arc::new(Schema::new(vec![Field::new(
                    "id",
                    DataType::Int64,
                    false,
                )])))
                .partition_column("k", DataType::Utf8)
                .sort_order(vec![SortKey::asc("id")])
                .bucket_by("id", 2)
                .build(&ctx.state())
                .await
                .unwrap()
        }
    };
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    ctx.register_table("t", Arc::new(build(ctx.clone()).await))
        .unwrap();
    for i in 0..4 {
        exec(
            &ctx,
            &format!(
                "INSERT INTO t SELECT value AS id, 'a' AS k FROM generate_series({}, {})",
                i * 100,
                i * 100 + 99
            ),
        )
        .await;
    }
    let sql = "SELECT id, count(*) FROM t GROUP BY id ORDER BY id";
    let table = build(ctx.clone()).await;
    let done = table
        .compact(&ctx.state(), None, CompactOptions::default())
        .await
        .unwrap();
    assert_eq!((done.files_in, done.files_out), (8, 2), "{done:?}");
    let fresh = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    fresh
        .register_table("t", Arc::new(build(fresh.clone()).await))
        .unwrap();
    let plan = explain_text(&fresh, sql).await;
    assert!(plan.contains("output_ordering=[id@"), "{plan}");
    insta::assert_snapshot!(
        "compacted_sorted_bucketed",
        without_write_ids(&redacted(&plan, dir.path()))
    );
}
