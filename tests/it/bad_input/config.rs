//! Settings: `SET query_context.*`, `CREATE EXTERNAL TABLE` options, table
//! URLs and builder options that contradict each other or the files.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use lakefusion::{
    Error, PartitionedTable, PathProblem, QueryContext, ScanOptions, SessionBuilder, TableProblem,
};

use crate::common::*;

/// The error of `SET`; afterwards the query context is still the default.
async fn set_error(sql: &str) -> String {
    let ctx = SessionBuilder::new().build_context();
    let err = match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => df.collect().await.unwrap_err().to_string(),
    };
    assert_eq!(
        QueryContext::from_session_config(&ctx.copied_config()),
        QueryContext::default(),
        "a failed SET changed the context"
    );
    assert_eq!(
        ScanOptions::from_session_config(&ctx.copied_config()),
        ScanOptions::default(),
        "a failed SET changed the scan options"
    );
    err
}

#[tokio::test]
async fn set_cache_switch_to_an_empty_value() {
    let err = set_error("SET lakefusion.cache_enabled = ''").await;
    assert!(
        err.contains("lakefusion.cache_enabled") && err.contains("expected true or false"),
        "{err}"
    );
}

#[tokio::test]
async fn set_cache_switch_to_a_number() {
    let err = set_error("SET lakefusion.cache_enabled = 2").await;
    assert!(
        err.contains("lakefusion.cache_enabled") && err.contains("'2'"),
        "{err}"
    );
}

#[tokio::test]
async fn set_a_misspelt_key_lists_the_known_ones() {
    let err = set_error("SET query_context.tenant = 'acme'").await;
    assert!(
        err.contains("'query_context.tenant'") && err.contains("query_context.tenant_id"),
        "{err}"
    );
}

#[tokio::test]
async fn set_a_key_below_a_known_one() {
    let err = set_error("SET query_context.query_id.extra = 'x'").await;
    assert!(err.contains("query_context.query_id.extra"), "{err}");
}

/// The error of `CREATE EXTERNAL TABLE … STORED AS PARTITIONED_PARQUET` over
/// the events data with `options`.
async fn create_error(options: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionBuilder::new().build_context();
    let sql = format!(
        "CREATE EXTERNAL TABLE events STORED AS PARTITIONED_PARQUET LOCATION '{}' OPTIONS ({options})",
        file_url(dir.path())
    );
    let err = match ctx.sql(&sql).await {
        Err(e) => e.to_string(),
        Ok(df) => df.collect().await.unwrap_err().to_string(),
    };
    assert!(err.contains("table events"), "{err}");
    assert!(ctx.table_exist("events").is_ok_and(|exists| !exists));
    err
}

#[tokio::test]
async fn create_table_with_an_unknown_option() {
    let err = create_error("'colect_statistics' 'true'").await;
    assert!(
        err.contains("unknown option 'format.colect_statistics'")
            && err.contains("known: collect_statistics"),
        "{err}"
    );
}

#[tokio::test]
async fn create_table_with_a_bad_option_value() {
    let err = create_error("'collect_statistics' 'yes'").await;
    assert!(
        err.contains("collect_statistics'") && err.contains("'yes'"),
        "{err}"
    );
}

/// The `InvalidTable` error of building the events table with `configure`:
/// its message, after `kind` has checked its problem.
async fn invalid_table(
    configure: impl FnOnce(lakefusion::PartitionedTableBuilder) -> lakefusion::PartitionedTableBuilder,
    kind: impl FnOnce(&lakefusion::TableProblem) -> bool,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    let err = configure(PartitionedTable::builder(file_url(dir.path())))
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTable { problem, .. } if kind(problem)),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&file_url(dir.path())), "{msg}");
    msg
}

#[tokio::test]
async fn a_partition_column_declared_twice() {
    let msg = invalid_table(
        |b| {
            b.partition_column("date", DataType::Date32)
                .partition_column("date", DataType::Utf8)
        },
        |p| matches!(p, TableProblem::DuplicatePartitionColumn { column } if column == "date"),
    )
    .await;
    assert!(msg.contains("'date' is declared twice"), "{msg}");
}

#[tokio::test]
async fn a_partition_key_twice_in_one_path() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("k=1/k=2/a.parquet"), &events_batch(0, 2));
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder(file_url(dir.path()))
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PartitionPath { problem: PathProblem::RepeatedKey { key }, .. } if key == "k"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("k=1/k=2/a.parquet")
            && err.to_string().contains("'k' appears twice"),
        "{err}"
    );
}

#[tokio::test]
async fn bucketing_on_an_unknown_column() {
    let msg = invalid_table(
        |b| b.bucket_by("customer", 8),
        |p| matches!(p, TableProblem::Bucketing { buckets: 8, .. }),
    )
    .await;
    assert!(msg.contains("bucket_by('customer', 8)"), "{msg}");
}

#[tokio::test]
async fn bucketing_into_zero_buckets() {
    let msg = invalid_table(
        |b| b.bucket_by("id", 0),
        |p| matches!(p, TableProblem::Bucketing { buckets: 0, .. }),
    )
    .await;
    assert!(msg.contains("at least 1"), "{msg}");
}

#[tokio::test]
async fn a_table_url_that_does_not_parse() {
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder("file://[not a host]/x")
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("[not a host]"), "{err}");
}

#[tokio::test]
async fn a_registered_table_over_a_vanished_root() {
    // The root disappears after registration: the query names a file.
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    std::fs::remove_dir_all(dir.path()).unwrap();
    let err = super::query_error(&ctx, "SELECT count(*) FROM events WHERE id >= 0").await;
    let root = dir.path().display().to_string();
    assert!(
        err.contains("reading Parquet file")
            && err.contains(root.trim_start_matches('/'))
            && err.contains(".parquet")
            && err.contains("not found"),
        "{err}"
    );
}
