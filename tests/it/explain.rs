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
