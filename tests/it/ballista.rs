//! A real Ballista cluster in-process: one scheduler and two executors on
//! loopback, random ports, real gRPC; a client connected with `df://`.

use datafusion::prelude::SessionContext;
use lakefusion::ballista::BallistaSetup;
use lakefusion::{CacheConfig, QueryContext};

use crate::cluster::start_cluster;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_on_a_cluster_match_local_results_and_carry_the_query_context() {
    let dir = tempfile::tempdir().unwrap();
    write_events(&dir.path().join("events"));
    write_refunds(&dir.path().join("refunds"));

    let setup = BallistaSetup::new(CacheConfig::default());
    let remote = start_cluster(&setup, 2, 2, QueryContext::default())
        .await
        .expect("cluster starts");
    register_events_and_refunds(&remote, dir.path()).await;
    let local = SessionContext::new();
    register_events_and_refunds(&local, dir.path()).await;

    // Same answers.
    for sql in ENGINE_QUERIES {
        assert_eq!(
            rows(&remote, sql).await.unwrap(),
            rows(&local, sql).await.unwrap(),
            "{sql}"
        );
    }

    // The query context set on the client reaches the executors: the tasks
    // decode their plans in it, and the scans run in spans that carry it.
    let trace = trace_query_context(&remote, "ballista-q-4711").await;
    let (log, decoded) = (&trace.log, &trace.decoded);
    assert!(
        !decoded.is_empty(),
        "no executor task saw the query id:\n{log}"
    );
    // Decoded inside executor tasks: the task context names its task.
    let task_id = |line: &str| -> String {
        let value = line.split("task_id=").nth(1).unwrap_or("");
        value
            .split(' ')
            .next()
            .unwrap_or("")
            .trim_matches('"')
            .to_string()
    };
    assert!(
        decoded
            .iter()
            .all(|l| l.contains("tenant_id=umbrella") && !task_id(l).is_empty()),
        "{decoded:?}"
    );
    // The scan options set on the client reach them too.
    assert!(
        decoded.iter().all(|l| l.contains("read_ahead_requests=7")),
        "{decoded:?}"
    );
    assert!(
        trace.scans > 0,
        "no scan on an executor ran in the query's span:\n{log}"
    );

    // The small-table cache works on the executors: the scheduler decides
    // (`refunds` has exact statistics, 900 rows here), the executors fill
    // their cache on the first run and serve the second from memory.
    let cache = setup.table_cache();
    // (A query of its own: nothing above may have warmed its entries.)
    // (sum: exact statistics would answer max/count without scanning.)
    let sql = "SELECT sum(refund), count(*) FROM refunds WHERE date >= DATE '2026-03-04'";
    let before = cache.metrics();
    let first = rows(&remote, sql).await.unwrap();
    let after_first = cache.metrics();
    assert!(
        after_first.misses > before.misses && after_first.entries > before.entries,
        "{before:?} -> {after_first:?}"
    );
    let second = rows(&remote, sql).await.unwrap();
    let after_second = cache.metrics();
    assert_eq!(first, second);
    assert_eq!(first, rows(&local, sql).await.unwrap());
    // Entries cover a task's slice of file groups, and Ballista may slice a
    // re-run differently, so some lookups may miss again; hits there must be.
    assert!(
        after_second.hits > after_first.hits,
        "{after_first:?} -> {after_second:?}"
    );
}
