//! `refresh_partitions`: re-lists only the partitions a predicate can
//! select, finds new partition directories, leaves every other partition as
//! it was, and keeps what an `INSERT` published meanwhile. Requests counted
//! with `FaultyStore`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{col, lit, SessionContext};
use futures::TryStreamExt;
use lakefusion::store::faults::{FaultyStore, ListHold, RequestKind};
use lakefusion::{PartitionedTable, SessionBuilder};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use url::Url;

use crate::common::*;

const ROWS: usize = 10;

async fn put_file(store: &Arc<dyn ObjectStore>, path: &str) {
    let batch = events_batch(0, ROWS);
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    // Parsed, not encoded: `%3A` stays as another writer spelled it.
    store
        .put(&Path::parse(path).unwrap(), PutPayload::from(bytes))
        .await
        .unwrap();
}

/// A session over a counting view of `lake`, with `columns` as the table's
/// partition columns, registered as `t`.
async fn table_over(
    lake: &Arc<dyn ObjectStore>,
    columns: &[(&str, DataType)],
) -> (SessionContext, Arc<FaultyStore>, Arc<PartitionedTable>) {
    let store = FaultyStore::new(Arc::clone(lake));
    let ctx = SessionBuilder::new()
        .with_object_store(
            Url::parse("memory://").unwrap(),
            store.clone() as Arc<dyn ObjectStore>,
        )
        .build_context();
    let mut builder = PartitionedTable::builder("memory:///lake/");
    for (name, data_type) in columns {
        builder = builder.partition_column(*name, data_type.clone());
    }
    let table = Arc::new(builder.build(&ctx.state()).await.unwrap());
    ctx.register_table("t", Arc::clone(&table) as _).unwrap();
    (ctx, store, table)
}

/// Files per partition value, as the index holds them.
fn files_of(table: &PartitionedTable, p: i32) -> usize {
    table
        .index()
        .partitions()
        .iter()
        .find(|part| part.values()[0] == datafusion::common::ScalarValue::Int32(Some(p)))
        .map_or(0, |part| part.file_count())
}

/// `p=0..10`, two files each.
async fn ten_partitions() -> Arc<dyn ObjectStore> {
    let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for p in 0..10 {
        for f in 0..2 {
            put_file(&lake, &format!("lake/p={p}/part-{f}.parquet")).await;
        }
    }
    lake
}

#[tokio::test]
async fn only_the_selected_partitions_are_listed_again() {
    let lake = ten_partitions().await;
    let (ctx, store, table) = table_over(&lake, &[("p", DataType::Int32)]).await;
    assert_eq!(table.index().file_count(), 20);

    // Another writer: a file in p=9 and a new partition p=10 (selected), a
    // file in p=2 (not selected), one of p=8's files deleted (selected).
    put_file(&lake, "lake/p=9/part-2.parquet").await;
    put_file(&lake, "lake/p=10/part-0.parquet").await;
    put_file(&lake, "lake/p=2/part-2.parquet").await;
    lake.delete(&Path::from("lake/p=8/part-0.parquet"))
        .await
        .unwrap();

    store.reset_counts();
    table
        .refresh_partitions(&ctx.state(), col("p").gt_eq(lit(8)))
        .await
        .unwrap();
    // One delimiter listing of the root, then p=8, p=9 and p=10; the
    // journal before and after.
    assert_eq!(store.requests_of(RequestKind::List), 6);
    assert_eq!(store.requests(), 6, "no footer is read");
    assert_eq!(files_of(&table, 8), 1);
    assert_eq!(files_of(&table, 9), 3);
    assert_eq!(files_of(&table, 10), 1);
    assert_eq!(files_of(&table, 2), 2, "p=2 was not re-listed");
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM t").await,
        (21 * ROWS) as i64
    );

    // Pinned values need no delimiter listing: p=2 and an absent p=42.
    store.reset_counts();
    table
        .refresh_partitions(&ctx.state(), col("p").in_list(vec![lit(2), lit(42)], false))
        .await
        .unwrap();
    // p=2 and p=42, and the journal before and after.
    assert_eq!(store.requests_of(RequestKind::List), 4);
    assert_eq!(files_of(&table, 2), 3);
    assert_eq!(files_of(&table, 42), 0);
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM t").await,
        (22 * ROWS) as i64
    );
}

#[tokio::test]
async fn a_predicate_on_the_second_level_walks_the_first() {
    let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for date in ["2026-11-29", "2026-11-30"] {
        for region in ["eu", "us"] {
            put_file(
                &lake,
                &format!("lake/date={date}/region={region}/part-0.parquet"),
            )
            .await;
        }
    }
    let columns = [("date", DataType::Date32), ("region", DataType::Utf8)];
    let (ctx, store, table) = table_over(&lake, &columns).await;
    put_file(&lake, "lake/date=2026-11-30/region=eu/part-1.parquet").await;
    put_file(&lake, "lake/date=2026-11-30/region=us/part-1.parquet").await;
    store.reset_counts();
    table
        .refresh_partitions(&ctx.state(), col("region").eq(lit("eu")))
        .await
        .unwrap();
    // The dates by a delimiter listing; `region=eu` under each, pinned;
    // the journal before and after.
    assert_eq!(store.requests_of(RequestKind::List), 5);
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM t WHERE region = 'eu'").await,
        (3 * ROWS) as i64
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM t WHERE region = 'us'").await,
        (2 * ROWS) as i64,
        "region=us was not re-listed"
    );
}

#[tokio::test]
async fn a_predicate_on_a_data_column_is_refused() {
    let lake = ten_partitions().await;
    let (ctx, _, table) = table_over(&lake, &[("p", DataType::Int32)]).await;
    let error = table
        .refresh_partitions(&ctx.state(), col("amount").gt(lit(1.0)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("'amount' is not a partition column (p)"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_during_a_partial_refresh_is_kept() {
    let lake = ten_partitions().await;
    let (ctx, store, table) = table_over(&lake, &[("p", DataType::Int32)]).await;
    let hold = ListHold::default();
    store.hold_listings(Some(hold.clone()));
    let refreshing = {
        let table = Arc::clone(&table);
        let state = ctx.state();
        tokio::spawn(async move { table.refresh_partitions(&state, col("p").eq(lit(9))).await })
    };
    // The listing of p=9 has looked; now an INSERT publishes into p=9.
    hold.listed.notified().await;
    store.hold_listings(None);
    exec(&ctx, "INSERT INTO t VALUES (1, 'u', 1.0, 1, 9)").await;
    hold.release.notify_one();
    refreshing.await.unwrap().unwrap();
    assert_eq!(files_of(&table, 9), 3, "the INSERT's file survived");
}

/// A partial refresh of an unchanged lake changes no answer, however other
/// writers spelled the directories: zero-padded numbers (`hour=07`) and
/// Spark's escapes (`ts=10%3A00` for `'10:00'`) are re-listed under their
/// own names, and a file added there is found.
#[tokio::test]
async fn a_partial_refresh_keeps_directories_other_writers_spelled_their_way() {
    let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put_file(&lake, "lake/hour=07/part-0.parquet").await;
    put_file(&lake, "lake/hour=8/part-0.parquet").await;
    let (ctx, store, table) = table_over(&lake, &[("hour", DataType::Int32)]).await;
    let hour_7 = "SELECT count(*) FROM t WHERE hour = 7";
    assert_eq!(count(&ctx, hour_7).await, ROWS as i64);
    for predicate in [
        col("hour").eq(lit(7i32)),
        col("hour").in_list(vec![lit(7i32), lit(9i32)], false),
    ] {
        table
            .refresh_partitions(&ctx.state(), predicate)
            .await
            .unwrap();
        assert_eq!(count(&ctx, hour_7).await, ROWS as i64, "hour=07 was kept");
    }
    // A file another writer adds to `hour=07/` is found there.
    put_file(&lake, "lake/hour=07/part-1.parquet").await;
    store.reset_counts();
    table
        .refresh_partitions(&ctx.state(), col("hour").eq(lit(7i32)))
        .await
        .unwrap();
    assert_eq!(count(&ctx, hour_7).await, 2 * ROWS as i64);
    assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 3 * ROWS as i64);

    // A pinned level whose directory is not there (`hour=7/`), then a
    // walked one: the refresh still relists `hour=07/minute=5/`.
    let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put_file(&lake, "lake/hour=07/minute=5/part-0.parquet").await;
    let columns = [("hour", DataType::Int32), ("minute", DataType::Int32)];
    let (ctx, _, table) = table_over(&lake, &columns).await;
    put_file(&lake, "lake/hour=07/minute=5/part-1.parquet").await;
    table
        .refresh_partitions(
            &ctx.state(),
            col("hour").eq(lit(7i32)).and(col("minute").gt(lit(3i32))),
        )
        .await
        .unwrap();
    assert_eq!(count(&ctx, hour_7).await, 2 * ROWS as i64);

    let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put_file(&lake, "lake/ts=10%3A00/part-0.parquet").await;
    let (ctx, _, table) = table_over(&lake, &[("ts", DataType::Utf8)]).await;
    let ten = "SELECT count(*) FROM t WHERE ts = '10:00'";
    assert_eq!(count(&ctx, ten).await, ROWS as i64);
    table
        .refresh_partitions(&ctx.state(), col("ts").eq(lit("10:00")))
        .await
        .unwrap();
    assert_eq!(count(&ctx, ten).await, ROWS as i64, "ts=10%3A00 was kept");
}

/// `build()` and the delimiter listings of `refresh_partitions` follow the
/// same Hive rules: a directory of no data files that is not `key=value`
/// (`tmp/` with notes in it) is ignored by both; one holding a data file is
/// refused by both.
#[tokio::test]
async fn a_partial_refresh_ignores_what_build_ignores() {
    let lake = ten_partitions().await;
    lake.put(
        &Path::from("lake/tmp/notes.txt"),
        PutPayload::from_static(b"x"),
    )
    .await
    .unwrap();
    lake.put(
        &Path::from("lake/p=x/notes.txt"),
        PutPayload::from_static(b"x"),
    )
    .await
    .unwrap();
    let (ctx, _, table) = table_over(&lake, &[("p", DataType::Int32)]).await;
    table
        .refresh_partitions(&ctx.state(), col("p").gt_eq(lit(8)))
        .await
        .unwrap();
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM t").await,
        (20 * ROWS) as i64
    );
    // A data file in such a directory: both refuse it, naming it.
    put_file(&lake, "lake/tmp/part-0.parquet").await;
    let build = PartitionedTable::builder("memory:///lake/")
        .partition_column("p", DataType::Int32)
        .build(&ctx.state())
        .await
        .unwrap_err()
        .to_string();
    let refresh = table
        .refresh_partitions(&ctx.state(), col("p").gt_eq(lit(8)))
        .await
        .unwrap_err()
        .to_string();
    for error in [build, refresh] {
        assert!(error.contains("lake/tmp/part-0.parquet"), "{error}");
    }
}

/// A `refresh()` that lists while an INSERT commits (one partition's commit
/// is slow) must not show part of the INSERT through the table; and when
/// that commit then fails, the refresh must not keep the files the failure
/// deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_during_an_inserts_commit_shows_all_of_it_or_none() {
    use lakefusion::store::faults::{Fault, FaultRule};
    use std::time::Duration;
    for fails in [false, true] {
        let lake = ten_partitions().await;
        let (ctx, store, table) = table_over(&lake, &[("p", DataType::Int32)]).await;
        let slow = Duration::from_millis(1500);
        store.inject(
            FaultRule::new(if fails {
                Fault::SlowFailure(slow)
            } else {
                Fault::Latency(slow)
            })
            .on(RequestKind::Write)
            .path_contains("p=3/part-"),
        );
        let inserting = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                rows(
                    &ctx,
                    "INSERT INTO t VALUES (1, 'u', 1.0, 1, 1), (2, 'u', 1.0, 1, 3)",
                )
                .await
            })
        };
        // p=1's new file is in place; p=3's commit is still running.
        loop {
            let listed: Vec<_> = lake
                .list(Some(&Path::from("lake/p=1")))
                .try_collect()
                .await
                .unwrap();
            if listed.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        table.refresh(&ctx.state()).await.unwrap();
        assert_eq!(
            count(&ctx, "SELECT count(*) FROM t").await,
            (20 * ROWS) as i64,
            "none of the INSERT while it commits (fails: {fails})"
        );
        let inserted = inserting.await.unwrap();
        assert_eq!(inserted.is_err(), fails, "{inserted:?}");
        let after = if fails { 20 * ROWS } else { 20 * ROWS + 2 };
        assert_eq!(
            count(&ctx, "SELECT count(*) FROM t").await,
            after as i64,
            "all of the INSERT or none of it (fails: {fails})"
        );
    }
}
