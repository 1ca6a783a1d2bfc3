//! SessionBuilder wiring and SQL DDL.

use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use lakefusion::{
    CacheConfig, QueryContext, ScanOptions, SessionBuilder, SessionStateBuilderExt,
    SmallTableCacheRule, TableCache,
};

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

/// The same set-up as steps on DataFusion's own builder: the rules where
/// `SessionBuilder` puts them, both config extensions (keeping what the
/// config already said), and the table factory.
#[test]
fn the_extension_trait_sets_up_what_the_session_builder_does() {
    let names = |state: &datafusion::execution::SessionState| -> Vec<String> {
        state
            .physical_optimizers()
            .iter()
            .map(|r| r.name().to_string())
            .collect()
    };
    let cache = TableCache::new(CacheConfig::default());
    let ours = SessionBuilder::new()
        .with_table_cache(cache.clone())
        .build_state();
    let config = SessionConfig::new()
        .with_option_extension(ScanOptions::default().with_read_ahead_requests(3));
    let theirs = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_lakefusion()
        .with_lakefusion_query_context(QueryContext::new("q-9"))
        .with_lakefusion_cache(cache)
        .build();
    assert_eq!(names(&theirs), names(&ours));
    assert!(names(&theirs)
        .iter()
        .any(|n| n == SmallTableCacheRule::NAME));
    assert_eq!(
        QueryContext::from_session_config(theirs.config()).query_id,
        "q-9"
    );
    assert_eq!(
        ScanOptions::from_session_config(theirs.config()).read_ahead_requests,
        3
    );
    assert!(theirs.table_factories().contains_key("PARTITIONED_PARQUET"));
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
