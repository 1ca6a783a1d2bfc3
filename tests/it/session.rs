//! SessionBuilder wiring and SQL DDL.

use lakefusion::{CacheConfig, SessionBuilder, SmallTableCacheRule};

use crate::common::*;

#[test]
fn cache_rule_sits_right_before_sanity_check() {
    let plain: Vec<String> = SessionBuilder::new()
        .build_state()
        .physical_optimizers()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert!(!plain.iter().any(|n| n == SmallTableCacheRule::NAME));
    let names: Vec<String> = SessionBuilder::new()
        .with_cache(CacheConfig::default())
        .build_state()
        .physical_optimizers()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert_eq!(names.len(), plain.len() + 1);
    let rule = names
        .iter()
        .position(|n| n == SmallTableCacheRule::NAME)
        .unwrap();
    assert_eq!(names[rule + 1], "SanityCheckPlan");
    // Everything else is DataFusion's default order.
    let mut without: Vec<String> = names.clone();
    without.remove(rule);
    assert_eq!(without, plain);
}

#[tokio::test]
async fn create_external_table_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionBuilder::new().build_context();
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE events (date DATE, region VARCHAR) STORED AS PARTITIONED_PARQUET \
         LOCATION '{}' PARTITIONED BY (date, region)",
        file_url(dir.path())
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let plan = physical_plan_text(
        &ctx,
        "SELECT count(*) FROM events WHERE date = DATE '2026-03-02' AND region = 'us'",
    )
    .await;
    assert!(plan.contains("table=events, partitions=1/15"), "{plan}");
    let got = rows(
        &ctx,
        "SELECT count(*) FROM events WHERE date = DATE '2026-03-02' AND region = 'us'",
    )
    .await
    .unwrap();
    assert_eq!(got, vec!["| 600      |"]);

    // Without types, partition columns are Utf8.
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE events2 STORED AS PARTITIONED_PARQUET LOCATION '{}' PARTITIONED BY (date, region)",
        file_url(dir.path())
    ))
    .await
    .unwrap();
    let table = ctx.table_provider("events2").await.unwrap();
    assert_eq!(
        table.schema().field_with_name("date").unwrap().data_type(),
        &datafusion::arrow::datatypes::DataType::Utf8
    );

    // A bad option names the table and the option.
    let err = ctx
        .sql(&format!(
            "CREATE EXTERNAL TABLE bad STORED AS PARTITIONED_PARQUET LOCATION '{}' OPTIONS ('collect_statistics' 'sometimes')",
            file_url(dir.path())
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad") && err.contains("collect_statistics"),
        "{err}"
    );
}
