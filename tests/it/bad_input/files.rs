//! Broken files: footers, magic, empty files, schemas that conflict, nested types.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, Int64Builder, ListBuilder, RecordBatch, StringArray,
    StringBuilder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use lakefusion::{Error, PartitionedTable};

use super::query_error;
use crate::common::*;

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
async fn every_partition_pruned_still_sorts_and_joins() {
    // Found by the pruning property: a scan left with no file had no output
    // partition, and an ORDER BY above it failed the plan's sanity check.
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    for sql in [
        "SELECT id FROM events WHERE region = 'mars' ORDER BY id",
        "SELECT id FROM events WHERE region = 'mars' ORDER BY id LIMIT 3",
        "SELECT a.id FROM events a JOIN events b ON a.id = b.id WHERE a.region = 'mars'",
        "SELECT region, count(*) FROM events WHERE region = 'mars' GROUP BY region",
    ] {
        assert!(rows(&ctx, sql).await.unwrap().is_empty(), "{sql}");
    }
    let plan = physical_plan_text(&ctx, "SELECT id FROM events WHERE region = 'mars'").await;
    assert!(
        scan_line(&plan).contains("partitions=0/15, files=0"),
        "{plan}"
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

/// A file the build does not read (it infers the schema from the first).
const VICTIM: &str = "date=2026-03-03/region=us/part-00001.parquet";
/// The first file, whose footer the build reads for the schema.
const FIRST: &str = "date=2026-03-01/region=apac/part-00000.parquet";

/// Rewrites `file` of the events table with `mangle`.
fn mangle_file(root: &Path, file: &str, mangle: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let path = root.join(file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, mangle(bytes)).unwrap();
}

/// The events table with [`VICTIM`] mangled: the build succeeds (it reads only
/// the first footer), the query reading every file fails naming the victim,
/// and a query pruning its partition still answers.
async fn victim_error(mangle: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    mangle_file(dir.path(), VICTIM, mangle);
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let err = query_error(&ctx, "SELECT sum(id), sum(amount), count(*) FROM events").await;
    assert!(err.contains(VICTIM), "{err}");
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM events WHERE region <> 'us'").await,
        (DATES.len() * 2 * FILES_PER_PARTITION * ROWS_PER_FILE) as i64
    );
    err
}

/// The build error when [`FIRST`] is mangled: a `ReadFile` naming it.
async fn first_file_error(mangle: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    mangle_file(dir.path(), FIRST, mangle);
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("date", DataType::Date32)
        .partition_column("region", DataType::Utf8)
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(FIRST), "{msg}");
    msg
}

/// The footer length field: the 4 bytes before the trailing magic.
fn set_footer_len(mut bytes: Vec<u8>, len: u32) -> Vec<u8> {
    let at = bytes.len() - 8;
    bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
    bytes
}

#[tokio::test]
async fn trailing_magic_cut_off() {
    let err = victim_error(|b| b[..b.len() - 4].to_vec()).await;
    assert!(
        err.to_lowercase().contains("magic") || err.contains("footer"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_trailing_magic() {
    let err = victim_error(|mut b| {
        let n = b.len();
        b[n - 4..].copy_from_slice(b"PARX");
        b
    })
    .await;
    assert!(
        err.to_lowercase().contains("magic") || err.contains("footer"),
        "{err}"
    );
}

#[tokio::test]
async fn footer_length_beyond_the_file() {
    // parquet 59.3 panics on this one (an unchecked subtraction) in builds
    // with overflow checks; the crate turns that into the file's error.
    victim_error(|b| set_footer_len(b, u32::MAX - 8)).await;
}

#[tokio::test]
async fn first_file_with_a_footer_length_beyond_it_fails_the_build() {
    first_file_error(|b| set_footer_len(b, u32::MAX - 8)).await;
}

#[tokio::test]
async fn footer_length_zero() {
    victim_error(|b| set_footer_len(b, 0)).await;
}

#[tokio::test]
async fn footer_bytes_are_garbage() {
    victim_error(|mut b| {
        let n = b.len();
        let footer = u32::from_le_bytes(b[n - 8..n - 4].try_into().unwrap()) as usize;
        for byte in &mut b[n - 8 - footer..n - 8] {
            *byte = 0xFF;
        }
        b
    })
    .await;
}

#[tokio::test]
async fn first_page_header_is_garbage() {
    // The bytes right after the leading magic are the first page's header.
    victim_error(|mut b| {
        for byte in &mut b[4..36] {
            *byte = 0xFF;
        }
        b
    })
    .await;
}

#[tokio::test]
async fn zero_length_file() {
    victim_error(|_| Vec::new()).await;
}

#[tokio::test]
async fn file_of_only_the_magic() {
    victim_error(|_| b"PAR1".to_vec()).await;
}

#[tokio::test]
async fn zero_length_first_file_fails_the_build() {
    first_file_error(|_| Vec::new()).await;
}

#[tokio::test]
async fn first_file_with_a_zero_footer_fails_the_build() {
    first_file_error(|b| set_footer_len(b, 0)).await;
}

/// One column `v` of `values`, written as `k=<k>/<name>.parquet` under `root`.
fn write_column(root: &Path, k: &str, values: ArrayRef) {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        values.data_type().clone(),
        true,
    )]));
    write_parquet(
        &root.join(format!("k={k}/part.parquet")),
        &RecordBatch::try_new(schema, vec![values]).unwrap(),
    );
}

/// A table over `root` declaring `v` as `declared`.
async fn declared_table(ctx: &SessionContext, root: &Path, declared: DataType, nullable: bool) {
    let schema = Arc::new(Schema::new(vec![Field::new("v", declared, nullable)]));
    let table = PartitionedTable::builder(file_url(root))
        .schema(schema)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
}

/// Asserts a query over `t` fails with a schema conflict on `v` in `k=2`.
async fn assert_conflict(ctx: &SessionContext) {
    let err = query_error(ctx, "SELECT * FROM t").await;
    assert!(
        err.contains("k=2/part.parquet") && err.contains("column 'v'"),
        "{err}"
    );
}

fn int_list(values: &[i64]) -> ArrayRef {
    let mut builder = ListBuilder::new(Int64Builder::new());
    builder.append_value(values.iter().map(|v| Some(*v)));
    Arc::new(builder.finish())
}

/// A struct column of nullable fields.
fn point(fields: &[(&str, ArrayRef)]) -> ArrayRef {
    let fields: Vec<_> = fields
        .iter()
        .map(|(n, v)| (*n, Arc::clone(v), true))
        .collect();
    point_with(&fields)
}

fn point_with(fields: &[(&str, ArrayRef, bool)]) -> ArrayRef {
    Arc::new(StructArray::from(
        fields
            .iter()
            .map(|(name, values, nullable)| {
                (
                    Arc::new(Field::new(*name, values.data_type().clone(), *nullable)),
                    Arc::clone(values),
                )
            })
            .collect::<Vec<_>>(),
    ))
}

fn point_type(fields: &[(&str, DataType, bool)]) -> DataType {
    DataType::Struct(
        fields
            .iter()
            .map(|(n, t, nullable)| Field::new(*n, t.clone(), *nullable))
            .collect(),
    )
}

#[tokio::test]
async fn float_file_under_an_integer_column() {
    let dir = tempfile::tempdir().unwrap();
    write_column(dir.path(), "1", Arc::new(Int64Array::from(vec![1])));
    write_column(dir.path(), "2", Arc::new(Float64Array::from(vec![2.5])));
    let ctx = SessionContext::new();
    declared_table(&ctx, dir.path(), DataType::Int64, true).await;
    assert_conflict(&ctx).await;
}

#[tokio::test]
async fn file_missing_a_not_null_column() {
    let dir = tempfile::tempdir().unwrap();
    write_column(dir.path(), "1", Arc::new(Int64Array::from(vec![1])));
    let other = Arc::new(Schema::new(vec![Field::new("w", DataType::Int64, true)]));
    write_parquet(
        &dir.path().join("k=2/part.parquet"),
        &RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![2]))]).unwrap(),
    );
    let ctx = SessionContext::new();
    declared_table(&ctx, dir.path(), DataType::Int64, false).await;
    let err = query_error(&ctx, "SELECT * FROM t").await;
    assert!(
        err.contains("k=2/part.parquet") && err.contains("'v'") && err.contains("NOT NULL"),
        "{err}"
    );
}

/// Files that also hold the partition column are read (polars' layout, see
/// `trust::polars_layout_with_partition_columns_inside_the_files`); a schema
/// given by hand that repeats a partition column is the mistake.
#[tokio::test]
async fn partition_column_also_in_the_given_schema() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
    write_parquet(
        &dir.path().join("k=1/part.parquet"),
        &RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringArray::from(vec!["1"]))],
        )
        .unwrap(),
    );
    let ctx = SessionContext::new();
    let err = PartitionedTable::builder(file_url(dir.path()))
        .schema(schema)
        .partition_column("k", DataType::Utf8)
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTable { .. }), "{err:?}");
    assert!(err.to_string().contains("'k'"), "{err}");
}

#[tokio::test]
async fn list_file_under_a_scalar_column() {
    let dir = tempfile::tempdir().unwrap();
    write_column(dir.path(), "1", Arc::new(Int64Array::from(vec![1])));
    write_column(dir.path(), "2", int_list(&[1, 2]));
    let ctx = SessionContext::new();
    declared_table(&ctx, dir.path(), DataType::Int64, true).await;
    assert_conflict(&ctx).await;
}

#[tokio::test]
async fn list_items_of_another_type() {
    let dir = tempfile::tempdir().unwrap();
    let declared = int_list(&[1]).data_type().clone();
    write_column(dir.path(), "1", int_list(&[1]));
    let mut strings = ListBuilder::new(StringBuilder::new());
    strings.append_value([Some("2")]);
    write_column(dir.path(), "2", Arc::new(strings.finish()));
    let ctx = SessionContext::new();
    declared_table(&ctx, dir.path(), declared, true).await;
    assert_conflict(&ctx).await;
}

#[tokio::test]
async fn struct_file_under_a_string_column() {
    let dir = tempfile::tempdir().unwrap();
    write_column(dir.path(), "1", Arc::new(StringArray::from(vec!["a"])));
    write_column(
        dir.path(),
        "2",
        point(&[("x", Arc::new(Int64Array::from(vec![1])))]),
    );
    let ctx = SessionContext::new();
    declared_table(&ctx, dir.path(), DataType::Utf8, true).await;
    assert_conflict(&ctx).await;
}

#[tokio::test]
async fn struct_field_of_another_type() {
    let dir = tempfile::tempdir().unwrap();
    let x = || -> ArrayRef { Arc::new(Int64Array::from(vec![1])) };
    write_column(dir.path(), "1", point(&[("x", x()), ("y", x())]));
    write_column(
        dir.path(),
        "2",
        point(&[("x", x()), ("y", Arc::new(StringArray::from(vec!["1"])))]),
    );
    let ctx = SessionContext::new();
    let declared = point_type(&[("x", DataType::Int64, true), ("y", DataType::Int64, true)]);
    declared_table(&ctx, dir.path(), declared, true).await;
    assert_conflict(&ctx).await;
}

#[tokio::test]
async fn struct_missing_a_not_null_field() {
    let dir = tempfile::tempdir().unwrap();
    let x = || -> ArrayRef { Arc::new(Int64Array::from(vec![1])) };
    write_column(
        dir.path(),
        "1",
        point_with(&[("x", x(), true), ("y", x(), false)]),
    );
    write_column(dir.path(), "2", point(&[("x", x())]));
    let ctx = SessionContext::new();
    let declared = point_type(&[("x", DataType::Int64, true), ("y", DataType::Int64, false)]);
    declared_table(&ctx, dir.path(), declared, true).await;
    assert_conflict(&ctx).await;
}

#[tokio::test]
async fn struct_missing_a_nullable_field_reads_null() {
    // Struct evolution: an older file lacks a field added later, or has one
    // dropped since. Both read, the missing field as NULL.
    let dir = tempfile::tempdir().unwrap();
    let ints = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    write_column(dir.path(), "1", point(&[("x", ints(1)), ("y", ints(10))]));
    write_column(dir.path(), "2", point(&[("x", ints(2)), ("gone", ints(0))]));
    let ctx = SessionContext::new();
    let declared = point_type(&[("x", DataType::Int64, true), ("y", DataType::Int64, true)]);
    declared_table(&ctx, dir.path(), declared, true).await;
    assert_eq!(
        rows(&ctx, "SELECT v['x'], v['y'], k FROM t ORDER BY k")
            .await
            .unwrap(),
        vec!["| 1      | 10     | 1 |", "| 2      |        | 2 |"]
    );
}
