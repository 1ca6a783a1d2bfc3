//! Bad input gives a clear error naming the file or path, never a panic.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use lakefusion::{Error, PartitionedTable};

use crate::common::*;

async fn query_error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => df
            .collect()
            .await
            .expect_err("query should fail")
            .to_string(),
    }
}

#[tokio::test]
async fn truncated_parquet_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let victim = dir
        .path()
        .join("date=2026-03-03/region=us/part-00001.parquet");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let err = query_error(&ctx, "SELECT sum(amount) FROM events").await;
    assert!(
        err.contains("date=2026-03-03/region=us/part-00001.parquet"),
        "{err}"
    );
    // A query that prunes the broken partition still works.
    let ok = rows(&ctx, "SELECT count(*) FROM events WHERE region = 'eu'")
        .await
        .unwrap();
    assert_eq!(ok.len(), 1);
}

#[tokio::test]
async fn file_that_is_not_parquet_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    std::fs::write(
        dir.path().join("date=2026-03-01/region=eu/notes.parquet"),
        b"this is not parquet",
    )
    .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let err = query_error(&ctx, "SELECT count(*) FROM events WHERE region = 'eu'").await;
    assert!(
        err.contains("date=2026-03-01/region=eu/notes.parquet"),
        "{err}"
    );
}

#[tokio::test]
async fn first_file_unreadable_fails_build_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("k=a")).unwrap();
    std::fs::write(dir.path().join("k=a/a.parquet"), b"PAR1garbage").unwrap();
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder(file_url(dir.path()))
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadFile { .. }), "{err:?}");
    assert!(err.to_string().contains("k=a/a.parquet"), "{err}");
}

#[tokio::test]
async fn partition_value_that_does_not_parse_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    write_parquet(
        &dir.path().join("date=2026-13-45/region=eu/x.parquet"),
        &events_batch(0, 3),
    );
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("date", DataType::Date32)
        .partition_column("region", DataType::Utf8)
        .build(&ctx.state())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::PartitionValue { .. }), "{err:?}");
    assert!(
        msg.contains("date=2026-13-45/region=eu/x.parquet") && msg.contains("Date32"),
        "{msg}"
    );
}

#[tokio::test]
async fn conflicting_schemas_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let bad = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, false)]));
    write_parquet(
        &dir.path().join("k=1/a.parquet"),
        &RecordBatch::try_new(good, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap(),
    );
    // "3" would cast to Int64 without complaint; the conflict must still be reported.
    write_parquet(
        &dir.path().join("k=2/b.parquet"),
        &RecordBatch::try_new(bad, vec![Arc::new(StringArray::from(vec!["3"]))]).unwrap(),
    );
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let err = query_error(&ctx, "SELECT sum(v) FROM t").await;
    assert!(err.contains("k=2/b.parquet"), "{err}");
    assert!(err.contains("column 'v'") && err.contains("Int64"), "{err}");
    assert_eq!(
        rows(&ctx, "SELECT sum(v) FROM t WHERE k = '1'")
            .await
            .unwrap(),
        vec!["| 3        |"]
    );
}

#[tokio::test]
async fn file_missing_a_nullable_column_reads_null() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Int64, true),
    ]));
    let partial = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
    write_parquet(
        &dir.path().join("k=1/a.parquet"),
        &RecordBatch::try_new(
            full.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Int64Array::from(vec![10])),
            ],
        )
        .unwrap(),
    );
    write_parquet(
        &dir.path().join("k=2/b.parquet"),
        &RecordBatch::try_new(partial, vec![Arc::new(Int64Array::from(vec![2]))]).unwrap(),
    );
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .schema(full)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let got = rows(&ctx, "SELECT a, b, k FROM t ORDER BY a")
        .await
        .unwrap();
    assert_eq!(got, vec!["| 1 | 10 | 1 |", "| 2 |    | 2 |"]);
}

#[tokio::test]
async fn empty_root_is_an_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("date", DataType::Date32)
        .schema(events_schema())
        .build(&ctx.state())
        .await
        .unwrap();
    assert_eq!(table.index().partitions().len(), 0);
    ctx.register_table("events", Arc::new(table)).unwrap();
    assert_eq!(
        rows(&ctx, "SELECT count(*) FROM events").await.unwrap(),
        vec!["| 0        |"]
    );
    assert!(
        rows(&ctx, "SELECT * FROM events WHERE date = DATE '2026-01-01'")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn missing_root_names_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/table");
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder(file_url(&missing))
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RootNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("no/such/table"), "{err}");
}

#[tokio::test]
async fn directory_that_is_not_key_value_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("k=1/a.parquet"), &events_batch(0, 2));
    write_parquet(&dir.path().join("stray/b.parquet"), &events_batch(0, 2));
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder(file_url(dir.path()))
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stray/b.parquet"), "{err}");
}

#[tokio::test]
async fn unknown_object_store_is_a_clear_error() {
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder("s3://bucket/events/")
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("s3://bucket/events/"), "{err}");
}
