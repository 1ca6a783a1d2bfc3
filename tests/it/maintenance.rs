//! Writes that replace: `INSERT OVERWRITE` (partitions or the whole table),
//! `DELETE FROM` over partition columns, compaction and recovery — each
//! seen whole by every lakefusion reader, with nothing left over.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use lakefusion::{CompactOptions, Error, OverwriteMode, PartitionedTable, SortKey};

use crate::common::*;

async fn ids_by_k(ctx: &SessionContext, root: &Path, mode: OverwriteMode) -> PartitionedTable {
    PartitionedTable::builder(file_url(root))
        .schema(id_schema())
        .partition_column("k", DataType::Utf8)
        .overwrite_mode(mode)
        .build(&ctx.state())
        .await
        .unwrap()
}

async fn fresh_count(root: &Path, sql: &str) -> i64 {
    let ctx = SessionContext::new();
    let table = ids_by_k(&ctx, root, OverwriteMode::Partitions).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    count(&ctx, sql).await
}

async fn fresh_sum(root: &Path) -> i64 {
    fresh_count(root, "SELECT sum(id) FROM t").await
}

/// Data files only (the journal is hidden under `_lakefusion/`).
fn data_files(root: &Path) -> BTreeSet<String> {
    all_files(root)
        .into_iter()
        .filter(|f| !f.starts_with("_lakefusion"))
        .collect()
}

#[tokio::test]
async fn overwrite_replaces_exactly_the_partitions_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Partitions).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(
        &ctx,
        "INSERT INTO t VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'c')",
    )
    .await;
    exec(&ctx, "INSERT INTO t VALUES (5, 'a')").await;
    let b_and_c: BTreeSet<String> = data_files(dir.path())
        .into_iter()
        .filter(|f| !f.starts_with("k=a"))
        .collect();

    let written = rows(
        &ctx,
        "INSERT OVERWRITE t VALUES (10, 'a'), (11, 'a'), (12, 'd')",
    )
    .await
    .unwrap();
    assert!(written[0].contains("| 3 "), "{written:?}");
    let expected = [
        "+----+---+",
        "| id | k |",
        "+----+---+",
        "| 3  | b |",
        "| 4  | c |",
        "| 10 | a |",
        "| 11 | a |",
        "| 12 | d |",
        "+----+---+",
    ];
    let got = ctx
        .sql("SELECT id, k FROM t ORDER BY id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    datafusion::assert_batches_eq!(expected, &got);
    // Partitions it did not write are untouched, file for file; the old
    // files of `a` are gone; nothing is left in the journal.
    let after = data_files(dir.path());
    assert!(after.is_superset(&b_and_c));
    assert_eq!(
        after.iter().filter(|f| f.starts_with("k=a")).count(),
        1,
        "{after:?}"
    );
    assert!(all_files(dir.path())
        .iter()
        .all(|f| !f.starts_with("_lakefusion/writes")));
    assert!(
        !dir.path().join("_lakefusion/claims").exists()
            || all_files(&dir.path().join("_lakefusion/claims")).is_empty()
    );
    // Another process's fresh build reads the same rows.
    assert_eq!(
        fresh_count(dir.path(), "SELECT sum(id) FROM t").await,
        3 + 4 + 10 + 11 + 12
    );
    // So does DataFusion's own listing, once the write is done.
    let listing = listing_table(&ctx, dir.path(), &[("k", DataType::Utf8)]).await;
    ctx.register_table("plain", Arc::new(listing)).unwrap();
    assert_eq!(count(&ctx, "SELECT count(*) FROM plain").await, 5);
}

#[tokio::test]
async fn overwrite_of_the_table_mode_replaces_everything_and_empty_dynamic_overwrite_changes_nothing(
) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Table).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(&ctx, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')").await;
    exec(&ctx, "INSERT OVERWRITE t VALUES (7, 'b')").await;
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 7);
    assert_eq!(
        data_files(dir.path()).len(),
        1,
        "{:?}",
        data_files(dir.path())
    );
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 7);

    // Dynamic mode with no rows produces no partition: nothing replaced.
    let ctx = SessionContext::new();
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Partitions).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(
        &ctx,
        "INSERT OVERWRITE t SELECT id, k FROM t WHERE id > 100",
    )
    .await;
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 7);
    // Table mode with no rows empties the table.
    let ctx = SessionContext::new();
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Table).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(
        &ctx,
        "INSERT OVERWRITE t SELECT id, k FROM t WHERE id > 100",
    )
    .await;
    assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 0);
    assert!(data_files(dir.path()).is_empty());
}

#[tokio::test]
async fn an_unpartitioned_table_is_overwritten_whole_and_replace_into_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .schema(id_schema())
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(&ctx, "INSERT INTO t VALUES (1), (2)").await;
    exec(&ctx, "INSERT INTO t VALUES (3)").await;
    exec(&ctx, "INSERT OVERWRITE t VALUES (9)").await;
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 9);
    assert_eq!(data_files(dir.path()).len(), 1);
    // Compaction and DELETE work on it as on one partition.
    exec(&ctx, "INSERT INTO t VALUES (10)").await;
    let table = PartitionedTable::builder(file_url(dir.path()))
        .schema(id_schema())
        .build(&ctx.state())
        .await
        .unwrap();
    let done = table
        .compact(&ctx.state(), None, CompactOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (done.files_in, done.files_out, done.rows),
        (2, 1, 2),
        "{done:?}"
    );
    assert_eq!(data_files(dir.path()).len(), 1);
    ctx.deregister_table("t").unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 19);
    let deleted = rows(&ctx, "DELETE FROM t").await.unwrap();
    assert!(deleted[0].contains("| 2 "), "{deleted:?}");
    assert!(data_files(dir.path()).is_empty());
    let error = match ctx.sql("REPLACE INTO t VALUES (1)").await {
        Err(e) => e.to_string(),
        Ok(df) => df.collect().await.unwrap_err().to_string(),
    };
    assert!(error.contains("REPLACE INTO is not supported"), "{error}");
}

/// A value other writers spelled differently (`h=07` for 7) is one
/// partition: an overwrite of it removes every spelling.
#[tokio::test]
async fn overwrite_removes_every_spelling_of_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let batch =
        RecordBatch::try_new(id_schema(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
    write_parquet(&dir.path().join("h=07/part-0.parquet"), &batch);
    write_parquet(&dir.path().join("h=8/part-0.parquet"), &batch);
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("h", DataType::Int32)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(&ctx, "INSERT OVERWRITE t VALUES (100, 7)").await;
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t WHERE h = 7").await, 100);
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 103);
    let files = data_files(dir.path());
    assert!(!files.contains("h=07/part-0.parquet"), "{files:?}");
    assert!(files.contains("h=8/part-0.parquet"), "{files:?}");

    // Compaction takes both spellings as one partition: one write, one claim.
    write_parquet(&dir.path().join("h=08/part-1.parquet"), &batch);
    let table = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("h", DataType::Int32)
        .build(&ctx.state())
        .await
        .unwrap();
    let done = table
        .compact(&ctx.state(), None, CompactOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (done.partitions, done.files_in, done.files_out),
        (1, 2, 1),
        "{done:?}"
    );
    let files = data_files(dir.path());
    assert_eq!(
        files
            .iter()
            .filter(|f| f.starts_with("h=8/") || f.starts_with("h=08/"))
            .count(),
        1,
        "{files:?}"
    );
    ctx.deregister_table("t").unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t WHERE h = 8").await, 6);
}

#[tokio::test]
async fn delete_removes_the_partitions_its_predicate_selects() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Partitions).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(
        &ctx,
        "INSERT INTO t VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'c')",
    )
    .await;
    exec(&ctx, "INSERT INTO t VALUES (5, 'a')").await;
    // EXPLAIN does not delete.
    let plan = rows(&ctx, "EXPLAIN DELETE FROM t WHERE k = 'a'")
        .await
        .unwrap()
        .join("\n");
    assert!(plan.contains("PartitionDelete: table="), "{plan}");
    assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 5);

    let deleted = rows(&ctx, "DELETE FROM t WHERE k IN ('a', 'zz')")
        .await
        .unwrap();
    assert!(deleted[0].contains("| 3 "), "{deleted:?}");
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 7);
    assert!(data_files(dir.path()).iter().all(|f| !f.starts_with("k=a")));
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 7);
    // Nothing selected: nothing removed.
    let deleted = rows(&ctx, "DELETE FROM t WHERE k = 'zz'").await.unwrap();
    assert!(deleted[0].contains("| 0 "), "{deleted:?}");

    // A predicate over a column inside the files is refused, saying why.
    let error = ctx.sql("DELETE FROM t WHERE id = 3").await;
    let error = match error {
        Err(e) => e.to_string(),
        Ok(df) => df.collect().await.unwrap_err().to_string(),
    };
    assert!(
        error.contains("names 'id', a column inside the files"),
        "{error}"
    );
    assert!(error.contains("partition columns (k)"), "{error}");
    assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 2);

    // No predicate: every file.
    let deleted = rows(&ctx, "DELETE FROM t").await.unwrap();
    assert!(deleted[0].contains("| 2 "), "{deleted:?}");
    assert!(data_files(dir.path()).is_empty());
    assert_eq!(fresh_count(dir.path(), "SELECT count(*) FROM t").await, 0);
}

/// Files of a write that has not committed are not read; files a committed
/// write removes are not read even while they exist — by a fresh build in
/// any process. The journal objects are written here as a writer leaves them.
#[tokio::test]
async fn readers_honour_the_journal_a_writer_left() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Partitions).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(&ctx, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let old_a = data_files(dir.path())
        .into_iter()
        .find(|f| f.starts_with("k=a"))
        .unwrap();
    // An overwrite of `a` that made its file visible and had not committed.
    let batch =
        RecordBatch::try_new(id_schema(), vec![Arc::new(Int64Array::from(vec![100]))]).unwrap();
    write_parquet(&dir.path().join("k=a/part-a1-1-0-00000.parquet"), &batch);
    let root = dir.path().display().to_string();
    let root = root.trim_start_matches('/');
    let writes = dir.path().join("_lakefusion/writes");
    std::fs::create_dir_all(&writes).unwrap();
    std::fs::write(
        writes.join("a1-1-0"),
        format!("lakefusion write record 2\nkind overwrite\nreplaces k=a\nadd {root}/k=a/part-a1-1-0-00000.parquet\n"),
    )
    .unwrap();
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 3);
    // Committed: the new file is read, the old one is not, though it is there.
    std::fs::write(
        writes.join("a1-1-0.committed"),
        format!("lakefusion commit 1\nclaim k=a\nremove {root}/{old_a}\n"),
    )
    .unwrap();
    assert!(dir.path().join(&old_a).exists());
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 102);
    // A refresh of the table built before honours it too.
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Partitions).await;
    table.refresh(&ctx.state()).await.unwrap();
    ctx.deregister_table("t").unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 102);

    // recover() deletes what the committed write removes whatever its age;
    // its journal objects are its writer's until they are older than the
    // bound, then it finishes the write. The answer does not change.
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Partitions).await;
    let recovered = table
        .recover(&ctx.state(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(recovered.completed.is_empty(), "{recovered:?}");
    assert!(!dir.path().join(&old_a).exists());
    assert!(writes.join("a1-1-0.committed").exists());
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 102);
    let recovered = table.recover(&ctx.state(), Duration::ZERO).await.unwrap();
    assert_eq!(recovered.completed, vec!["a1-1-0".to_string()]);
    assert!(!dir.path().join(&old_a).exists());
    assert!(!writes.join("a1-1-0").exists() && !writes.join("a1-1-0.committed").exists());
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 102);

    // A record this version cannot read stops readers, naming it.
    std::fs::write(writes.join("a2-1-0"), "lakefusion write record 9\n").unwrap();
    let ctx = SessionContext::new();
    let error = PartitionedTable::builder(file_url(dir.path()))
        .schema(id_schema())
        .partition_column("k", DataType::Utf8)
        .build(&ctx.state())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::WriteRecord { .. }), "{error}");
    assert!(
        error.to_string().contains("_lakefusion/writes/a2-1-0"),
        "{error}"
    );
}

/// An uncommitted write older than the bound is taken back; a younger one
/// is left for its writer.
#[tokio::test]
async fn recover_takes_back_only_uncommitted_writes_older_than_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Partitions).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(&ctx, "INSERT INTO t VALUES (1, 'a')").await;
    let before = all_files(dir.path());
    let batch =
        RecordBatch::try_new(id_schema(), vec![Arc::new(Int64Array::from(vec![100]))]).unwrap();
    write_parquet(&dir.path().join("k=b/part-a3-1-0-00000.parquet"), &batch);
    let root = dir.path().display().to_string();
    let root = root.trim_start_matches('/');
    let writes = dir.path().join("_lakefusion/writes");
    std::fs::create_dir_all(&writes).unwrap();
    std::fs::write(
        writes.join("a3-1-0"),
        format!("lakefusion write record 2\nkind overwrite\nreplaces k=b\nadd {root}/k=b/part-a3-1-0-00000.parquet\n"),
    )
    .unwrap();
    let claims = dir.path().join("_lakefusion/claims");
    std::fs::create_dir_all(&claims).unwrap();
    std::fs::write(claims.join("k=b"), "a3-1-0").unwrap();
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 1);
    // The claim blocks an overwrite of `b` meanwhile, naming the holder.
    let error = execution_error(&ctx, "INSERT OVERWRITE t VALUES (5, 'b')").await;
    assert!(
        error.contains("another write is replacing partition(s) k=b"),
        "{error}"
    );
    assert!(error.contains("a3-1-0"), "{error}");
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 1);

    let table = ids_by_k(&ctx, dir.path(), OverwriteMode::Partitions).await;
    let young = table
        .recover(&ctx.state(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        young.rolled_back.is_empty() && young.removed.is_empty(),
        "{young:?}"
    );
    let old = table.recover(&ctx.state(), Duration::ZERO).await.unwrap();
    assert_eq!(old.rolled_back, vec!["a3-1-0".to_string()]);
    let mut left = all_files(dir.path());
    // The abort marker recover() left (it hides nothing) stays for its retention.
    left.retain(|f| !is_abort_marker(&dir.path().join(f)));
    let expected = before.clone();

    assert_eq!(left, expected);
    // The overwrite goes through now.
    exec(&ctx, "INSERT OVERWRITE t VALUES (5, 'b')").await;
    assert_eq!(fresh_count(dir.path(), "SELECT sum(id) FROM t").await, 6);
}

#[tokio::test]
async fn compaction_keeps_rows_sort_order_and_buckets_true() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let build = |ctx: SessionContext| {
        let root = file_url(dir.path());
        async move {
            PartitionedTable::builder(root)
                .schema(id_schema())
                .partition_column("k", DataType::Utf8)
                .sort_order(vec![SortKey::asc("id")])
                .bucket_by("id", 2)
                .build(&ctx.state())
                .await
                .unwrap()
        }
    };
    ctx.register_table("t", Arc::new(build(ctx.clone()).await))
        .unwrap();
    for i in 0..6i64 {
        exec(
            &ctx,
            &format!(
                "INSERT INTO t VALUES ({}, 'a'), ({}, 'a'), ({}, 'b')",
                i * 10,
                i * 10 + 5,
                i
            ),
        )
        .await;
    }
    let files_before = data_files(dir.path()).len();
    let sum_before = count(&ctx, "SELECT sum(id) FROM t").await;
    let table = build(ctx.clone()).await;
    // Only partition `a`.
    let done = table
        .compact(
            &ctx.state(),
            Some(col("k").eq(lit("a"))),
            CompactOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(done.partitions, 1);
    assert_eq!(done.rows, 12);
    assert!(done.files_out < done.files_in, "{done:?}");
    assert_eq!(done.files_out, 2, "one file per bucket: {done:?}");
    let files = data_files(dir.path());
    assert_eq!(files.len(), files_before - done.files_in + done.files_out);
    assert_eq!(files.iter().filter(|f| f.starts_with("k=a")).count(), 2);
    ctx.deregister_table("t").unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, sum_before);
    // The declarations hold on a fresh build: sorted and bucketed.
    let fresh = SessionContext::new();
    fresh
        .register_table("t", Arc::new(build(fresh.clone()).await))
        .unwrap();
    let plan = physical_plan_text(&fresh, "SELECT id FROM t WHERE k = 'a' ORDER BY id").await;
    assert!(!plan.contains("SortExec"), "{plan}");
    let scan = physical_plan_text(&fresh, "SELECT id FROM t WHERE k = 'a'").await;
    assert!(
        scan_line(&scan).contains("output_ordering=[id@0 ASC"),
        "{scan}"
    );
    assert!(
        scan.contains("Hash([id@0], 2)") || scan_line(&scan).contains("Hash"),
        "{scan}"
    );
    assert_eq!(
        count(&fresh, "SELECT count(*) FROM t WHERE k = 'a'").await,
        12
    );
    // The rest: partition b's six small files, once; then nothing to do.
    let table = build(fresh.clone()).await;
    let again = table
        .compact(&fresh.state(), None, CompactOptions::default())
        .await
        .unwrap();
    assert_eq!(again.partitions, 1, "{again:?}");
    assert!(
        again.files_in >= 2 && again.files_out < again.files_in,
        "{again:?}"
    );
    let table = build(fresh.clone()).await;
    let nothing = table
        .compact(&fresh.state(), None, CompactOptions::default())
        .await
        .unwrap();
    assert_eq!(nothing.files_in, 0, "{nothing:?}");
    // One file per partition and bucket is left.
    let files = data_files(dir.path());
    let slots: BTreeSet<String> = files
        .iter()
        .map(|f| f[..f.find("bucket-").unwrap() + 12].to_string())
        .collect();
    assert_eq!(slots.len(), files.len(), "{files:?}");
    assert_eq!(fresh_sum(dir.path()).await, sum_before);
}
