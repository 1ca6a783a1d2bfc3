//! QueryContext and ScanOptions: SET, round trips, errors, and propagation
//! into scans.

use std::sync::Arc;

use datafusion::common::config::ConfigExtension;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::{QueryContext, ScanOptions, SessionBuilder};

use crate::common::*;

#[test]
fn key_value_round_trip_into_a_fresh_config() {
    let original = QueryContext::new("q-17").with_tenant_id("acme");
    let pairs = original.to_key_value_pairs();
    assert_eq!(
        pairs,
        vec![
            ("query_context.query_id".to_string(), "q-17".to_string()),
            ("query_context.tenant_id".to_string(), "acme".to_string()),
        ]
    );
    let mut fresh = SessionConfig::new().with_option_extension(QueryContext::default());
    for (key, value) in &pairs {
        fresh.options_mut().set(key, value).unwrap();
    }
    assert_eq!(QueryContext::from_session_config(&fresh), original);
}

/// Scan options travel as fully prefixed entries too (Ballista re-applies
/// them by key).
#[test]
fn scan_options_round_trip_into_a_fresh_config() {
    let original = ScanOptions::default()
        .with_cache_enabled(false)
        .with_read_ahead_requests(7)
        .with_read_ahead_bytes(1 << 20)
        .with_whole_file_bytes(4096)
        .with_cap_join_in_lists(false);
    let pairs = original.to_key_value_pairs();
    assert_eq!(
        pairs,
        vec![
            ("lakefusion.cache_enabled".to_string(), "false".to_string()),
            (
                "lakefusion.read_ahead_requests".to_string(),
                "7".to_string()
            ),
            (
                "lakefusion.read_ahead_bytes".to_string(),
                "1048576".to_string()
            ),
            (
                "lakefusion.whole_file_bytes".to_string(),
                "4096".to_string()
            ),
            (
                "lakefusion.cap_join_in_lists".to_string(),
                "false".to_string()
            ),
        ]
    );
    let mut fresh = SessionConfig::new().with_option_extension(ScanOptions::default());
    for (key, value) in &pairs {
        fresh.options_mut().set(key, value).unwrap();
    }
    assert_eq!(ScanOptions::from_session_config(&fresh), original);
}

/// The settings that moved from `query_context` to `lakefusion` are refused
/// under their old key with an error naming the new one.
#[tokio::test]
async fn a_moved_setting_names_its_new_key() {
    let ctx = SessionBuilder::new().build_context();
    for key in [
        "cache_enabled",
        "read_ahead_requests",
        "read_ahead_bytes",
        "whole_file_bytes",
    ] {
        let err = ctx
            .sql(&format!("SET query_context.{key} = 1"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("lakefusion.{key}")), "{err}");
    }
    assert_eq!(
        ScanOptions::from_session_config(&ctx.copied_config()),
        ScanOptions::default()
    );
}

/// Without the extension registered, the keys are refused (so Ballista, which
/// applies them one by one, would drop them) and readers see the defaults.
#[tokio::test]
async fn a_config_without_the_extension_refuses_the_keys() {
    let mut fresh = SessionConfig::new();
    let err = fresh
        .options_mut()
        .set("query_context.query_id", "q-1")
        .unwrap_err()
        .to_string();
    assert!(err.contains(QueryContext::PREFIX), "{err}");
    assert_eq!(
        QueryContext::from_session_config(&fresh),
        QueryContext::default()
    );

    let plain = SessionContext::new();
    let err = plain
        .sql("SET query_context.query_id = 'abc'")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("query_context"), "{err}");
}

#[tokio::test]
async fn set_in_sql() {
    let ctx = SessionBuilder::new().build_context();
    exec(&ctx, "SET query_context.query_id = 'abc'").await;
    exec(&ctx, "SET query_context.tenant_id = 'globex'").await;
    exec(&ctx, "SET lakefusion.cache_enabled = false").await;
    let config = ctx.copied_config();
    assert_eq!(
        QueryContext::from_session_config(&config),
        QueryContext::new("abc").with_tenant_id("globex")
    );
    assert_eq!(
        ScanOptions::from_session_config(&config),
        ScanOptions::default().with_cache_enabled(false)
    );
}

#[tokio::test]
async fn bad_values_and_keys_name_the_key() {
    let ctx = SessionBuilder::new().build_context();
    let err = ctx
        .sql("SET lakefusion.cache_enabled = 'maybe'")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lakefusion.cache_enabled") && err.contains("maybe"),
        "{err}"
    );
    let err = ctx
        .sql("SET lakefusion.read_ahead_bytes = '-5'")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lakefusion.read_ahead_bytes") && err.contains("a number of bytes"),
        "{err}"
    );
    let err = ctx
        .sql("SET lakefusion.bogus = 1")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lakefusion.bogus") && err.contains("lakefusion.read_ahead_requests"),
        "{err}"
    );
    let err = ctx
        .sql("SET query_context.bogus = 1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("query_context.bogus"), "{err}");
    // The failed SETs changed nothing.
    assert_eq!(
        QueryContext::from_session_config(&ctx.copied_config()),
        QueryContext::default()
    );
    assert_eq!(
        ScanOptions::from_session_config(&ctx.copied_config()),
        ScanOptions::default()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_scan_span_carries_the_query_id() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let captured = capture_thread_tracing();

    let ctx = SessionBuilder::new().build_context();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    exec(&ctx, "SET query_context.query_id = 'trace-me-7'").await;
    exec(&ctx, "SET query_context.tenant_id = 'initech'").await;
    rows(&ctx, "SELECT count(*) FROM events WHERE region = 'eu'")
        .await
        .unwrap();

    let log = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("scan partition done"))
        .unwrap_or_else(|| panic!("no scan event in:\n{log}"));
    assert!(line.contains("lakefusion.scan"), "{line}");
    assert!(line.contains("query_id=trace-me-7"), "{line}");
    assert!(line.contains("tenant_id=initech"), "{line}");
    assert!(line.contains("partition="), "{line}");
}
