//! The same queries over PartitionedTable and DataFusion's ListingTable on the
//! same files return the same rows.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::PartitionedTable;

use crate::common::*;

const QUERIES: &[&str] = &[
    // partition filters
    "SELECT count(*) FROM events WHERE date = DATE '2026-03-02'",
    "SELECT count(*), sum(amount) FROM events WHERE region = 'eu'",
    "SELECT count(*) FROM events WHERE region != 'eu' AND date >= DATE '2026-03-04'",
    "SELECT count(*) FROM events WHERE region IN ('us', 'apac') OR date < DATE '2026-03-02'",
    "SELECT count(*) FROM events WHERE date BETWEEN DATE '2026-03-02' AND DATE '2026-03-03'",
    "SELECT count(*) FROM events WHERE NOT (region = 'us')",
    "SELECT count(*) FROM events WHERE region IS NOT NULL AND date > DATE '2026-03-05'",
    // data filters (row-group pruning)
    "SELECT id, amount FROM events WHERE id BETWEEN 1000 AND 1010 ORDER BY id",
    "SELECT count(*) FROM events WHERE amount > 90.5",
    "SELECT count(*) FROM events WHERE qty IS NULL",
    "SELECT user, count(*) FROM events WHERE user = 'user3' GROUP BY user",
    // mixed
    "SELECT region, count(*) FROM events WHERE date = DATE '2026-03-01' AND amount < 10 GROUP BY region ORDER BY region",
    "SELECT id FROM events WHERE region = 'us' OR id < 5 ORDER BY id LIMIT 20",
    // projection
    "SELECT region, date FROM events WHERE id = 1234",
    "SELECT qty FROM events WHERE id IN (7, 8, 9) ORDER BY qty",
    // limit
    "SELECT count(*) FROM (SELECT * FROM events LIMIT 17)",
    "SELECT count(*) FROM (SELECT id FROM events WHERE date = DATE '2026-03-03' LIMIT 250)",
    // aggregates
    "SELECT date, region, count(*), min(id), max(id), sum(qty), round(avg(amount), 6) FROM events GROUP BY date, region ORDER BY date, region",
    "SELECT count(DISTINCT user), count(qty) FROM events",
    // order by
    "SELECT id, region FROM events ORDER BY amount DESC, id LIMIT 15",
    "SELECT date, round(sum(amount), 6) AS s FROM events GROUP BY date ORDER BY s DESC",
    // join of two partitioned tables
    "SELECT e.region, count(*), sum(r.refund) FROM events e JOIN refunds r ON e.id = r.event_id AND e.date = r.date WHERE e.date <= DATE '2026-03-02' GROUP BY e.region ORDER BY e.region",
    "SELECT count(*) FROM events e LEFT JOIN refunds r ON e.id = r.event_id WHERE r.event_id IS NULL",
];

async fn contexts(dir: &std::path::Path) -> (SessionContext, SessionContext) {
    let events = dir.join("events");
    let refunds = dir.join("refunds");
    write_events(&events);
    write_refunds(&refunds);
    // Several target partitions so that file groups and repartitioning are exercised.
    let config = SessionConfig::new().with_target_partitions(4);
    let ours = SessionContext::new_with_config(config.clone());
    ours.register_table("events", Arc::new(events_table(&ours, &events).await))
        .unwrap();
    let refunds_table = PartitionedTable::builder(file_url(&refunds))
        .partition_column("date", DataType::Date32)
        .build(&ours.state())
        .await
        .unwrap();
    ours.register_table("refunds", Arc::new(refunds_table))
        .unwrap();

    let theirs = SessionContext::new_with_config(config);
    let partitions = [("date", DataType::Date32), ("region", DataType::Utf8)];
    theirs
        .register_table(
            "events",
            Arc::new(listing_table(&theirs, &events, &partitions).await),
        )
        .unwrap();
    let refunds_listing = listing_table(&theirs, &refunds, &[("date", DataType::Date32)]).await;
    theirs
        .register_table("refunds", Arc::new(refunds_listing))
        .unwrap();
    (ours, theirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_rows_as_listing_table() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = contexts(dir.path()).await;
    assert!(QUERIES.len() >= 20);
    for sql in QUERIES {
        let mut a = rows(&ours, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut b = rows(&theirs, sql)
            .await
            .unwrap_or_else(|e| panic!("listing {sql}: {e}"));
        assert!(!b.is_empty(), "reference returned nothing for {sql}");
        if !sql.contains("ORDER BY") || sql.contains("LIMIT") && !sql.contains("ORDER BY id") {
            a.sort();
            b.sort();
        }
        assert_eq!(a, b, "{sql}");
    }
}

#[tokio::test]
async fn table_shape_is_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    let table = events_table(&ctx, dir.path()).await;
    let index = table.index();
    assert_eq!(index.partitions().len(), DATES.len() * REGIONS.len());
    assert_eq!(
        index.file_count(),
        DATES.len() * REGIONS.len() * FILES_PER_PARTITION
    );
    let total = rows(
        &{
            ctx.register_table("events", Arc::new(table)).unwrap();
            ctx
        },
        "SELECT count(*) FROM events",
    )
    .await
    .unwrap();
    let expected = DATES.len() * REGIONS.len() * FILES_PER_PARTITION * ROWS_PER_FILE;
    assert_eq!(total, vec![format!("| {expected:<8} |")]);
}
