//! lakefusion on datafusion-distributed: a coordinator and workers on
//! loopback, real gRPC (workers in this process, or — for a worker killed
//! mid-query — in processes of their own).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{display_plan_ascii, DistributedExec, DistributedLeafExec};
use lakefusion::codec::AllowedRoots;
use lakefusion::{CacheConfig, Deployment, PartitionedScanExec, PartitionedTable};
use object_store::local::LocalFileSystem;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use url::Url;

use crate::common::*;
use crate::workers::{cluster, coordinator, start_workers, WorkerUrls};

/// Joins and aggregates beyond the engines' common set: a distributed
/// plan shuffles these between stages.
const JOINS_AND_AGGREGATES: &[&str] = &[
    "SELECT user, count(*), round(sum(amount), 4), count(DISTINCT region) FROM events GROUP BY user ORDER BY user",
    "SELECT e.date, e.region, count(*), sum(r.refund), max(e.qty) FROM events e JOIN refunds r ON e.id = r.event_id GROUP BY e.date, e.region ORDER BY e.date, e.region",
    "SELECT region, id, rank() OVER (PARTITION BY region ORDER BY amount DESC, id) AS r FROM events WHERE date = DATE '2026-03-04' ORDER BY region, r LIMIT 12",
    "SELECT count(*) FROM events e LEFT JOIN refunds r ON e.id = r.event_id WHERE r.event_id IS NULL",
    "SELECT user FROM events WHERE id % 97 = 0 EXCEPT SELECT user FROM events WHERE region = 'us' ORDER BY user",
];

/// The leaves of the distributed plan of `sql`: every `DistributedLeafExec`'s
/// number of copies (one per task).
fn leaf_tasks(plan: &Arc<dyn ExecutionPlan>) -> Vec<usize> {
    let mut found = Vec::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if let Some(leaf) = node.downcast_ref::<DistributedLeafExec>() {
            found.push(leaf.variants().len());
        }
        stack.extend(node.children().into_iter().cloned());
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_on_workers_match_local_results_and_carry_the_query_context() {
    let dir = tempfile::tempdir().unwrap();
    write_events(&dir.path().join("events"));
    write_refunds(&dir.path().join("refunds"));
    let deployment = Deployment::new(CacheConfig::default());
    let (remote, _workers) = cluster(&deployment, 2).await;
    register_events_and_refunds(&remote, dir.path()).await;
    let local = SessionContext::new();
    register_events_and_refunds(&local, dir.path()).await;

    for sql in ENGINE_QUERIES.iter().chain(JOINS_AND_AGGREGATES) {
        assert_eq!(
            rows(&remote, sql).await.unwrap(),
            rows(&local, sql).await.unwrap(),
            "{sql}"
        );
    }

    // Our scan is split across both workers, and EXPLAIN shows the stages
    // and what the scan reads.
    let sql = "SELECT region, count(*) FROM events WHERE date <= DATE '2026-03-02' GROUP BY region";
    exec(&remote, "SET lakefusion.cache_enabled = false").await;
    let plan = physical_plan(&remote, sql).await;
    assert!(
        plan.is::<DistributedExec>(),
        "{}",
        display_plan_ascii(plan.as_ref(), false)
    );
    assert_eq!(
        leaf_tasks(&plan),
        vec![2],
        "{}",
        display_plan_ascii(plan.as_ref(), false)
    );
    exec(&remote, "SET lakefusion.cache_enabled = false").await;
    let explain = explain_text(&remote, sql).await;
    exec(&remote, "SET lakefusion.cache_enabled = true").await;
    assert!(
        explain.contains("[Stage 1]")
            && explain.contains("input_tasks=2")
            && explain.contains("DistributedLeafExec: PartitionedScanExec: table=")
            && explain.contains("partitions=6/15"),
        "{explain}"
    );

    // The query context set on the coordinator reaches the workers: they
    // decode their plans in it, and the scans run in spans that carry it.
    let trace = trace_query_context(&remote, "dd-q-4711").await;
    let (log, decoded) = (&trace.log, &trace.decoded);
    // Plans are decoded only where tasks run: on the workers.
    assert!(
        decoded.len() >= 2,
        "the workers did not see the query id:\n{log}"
    );
    assert!(
        decoded
            .iter()
            .all(|l| l.contains("tenant_id=umbrella") && l.contains("read_ahead_requests=7")),
        "{decoded:?}"
    );
    assert!(
        trace.scans >= 2,
        "no scan on a worker ran in the query's span:\n{log}"
    );
}

/// The coordinator's cache rule decides what is cached; each worker fills
/// and serves its own cache, keyed from the scan it decoded, and each task
/// of a cached scan goes to the same worker every time, so re-runs hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_fill_and_serve_their_own_cache() {
    let dir = tempfile::tempdir().unwrap();
    write_events(&dir.path().join("events"));
    write_refunds(&dir.path().join("refunds"));
    let coordinator_side = Deployment::new(CacheConfig::default());
    let worker_sides = [
        Deployment::new(CacheConfig::default()),
        Deployment::new(CacheConfig::default()),
    ];
    let workers = start_workers(&worker_sides).await;
    let remote = coordinator(&coordinator_side, &workers.urls, 2, 1024);
    register_events_and_refunds(&remote, dir.path()).await;
    let local = SessionContext::new();
    register_events_and_refunds(&local, dir.path()).await;

    let sql = "SELECT sum(refund), count(*) FROM refunds WHERE date >= DATE '2026-03-02'";
    let plan = physical_plan(&remote, sql).await;
    assert_eq!(leaf_tasks(&plan), vec![2]);
    assert!(explain_text(&remote, sql).await.contains("CachedScanExec"));
    let metrics = || {
        worker_sides
            .iter()
            .map(|d| d.table_cache().metrics())
            .collect::<Vec<_>>()
    };
    let expected = rows(&local, sql).await.unwrap();
    assert_eq!(rows(&remote, sql).await.unwrap(), expected);
    let filled = metrics();
    // Each worker filled its own cache with its task's share.
    assert!(
        filled.iter().all(|m| m.misses > 0 && m.entries > 0),
        "{filled:?}"
    );
    for _ in 0..4 {
        assert_eq!(rows(&remote, sql).await.unwrap(), expected);
    }
    let after = metrics();
    for (f, a) in filled.iter().zip(&after) {
        // Every re-run found each task's entry where it had been filled.
        assert_eq!(a.misses, f.misses, "{filled:?} -> {after:?}");
        assert!(a.hits > f.hits, "{filled:?} -> {after:?}");
    }
    // The coordinator planned but never filled.
    assert_eq!(coordinator_side.table_cache().metrics().entries, 0);
}

/// Workers check each file's column types as strictly as a local scan does,
/// and the error names the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_refuse_conflicting_file_types_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = write_conflicting_types(dir.path());
    let deployment = Deployment::default();
    let (remote, _workers) = cluster(&deployment, 2).await;
    exec(&remote, "SET lakefusion.cache_enabled = false").await;
    let table = PartitionedTable::builder(file_url(dir.path()))
        .name("t")
        .schema(narrow)
        .partition_column("k", DataType::Int32)
        .build(&remote.state())
        .await
        .unwrap();
    remote.register_table("t", Arc::new(table)).unwrap();
    let plan = physical_plan(&remote, "SELECT sum(n) FROM t").await;
    assert_eq!(leaf_tasks(&plan), vec![2]);
    let err = rows(&remote, "SELECT sum(n) FROM t")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("k=9/part-0.parquet"), "{err}");
}

/// Workers with allowed roots refuse a plan naming a file outside them —
/// lakefusion's scans as they are decoded, DataFusion's own file scans
/// before they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_refuse_files_outside_their_allowed_roots() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, secret) = (dir.path().join("lake"), dir.path().join("secret"));
    write_events(&lake);
    write_events(&secret);
    let worker_side =
        Deployment::default().with_allowed_roots(AllowedRoots::only([file_url(&lake)]));
    let workers = start_workers(&[worker_side.clone(), worker_side.clone()]).await;
    let remote = coordinator(&Deployment::default(), &workers.urls, 2, 1024);
    exec(&remote, "SET lakefusion.cache_enabled = false").await;
    remote
        .register_table("events", Arc::new(events_table(&remote, &lake).await))
        .unwrap();
    remote
        .register_table("secret", Arc::new(events_table(&remote, &secret).await))
        .unwrap();
    exec(
        &remote,
        &format!(
            "CREATE EXTERNAL TABLE secret_listing STORED AS PARQUET LOCATION '{}/'",
            secret.display()
        ),
    )
    .await;

    let local = SessionContext::new();
    local
        .register_table("events", Arc::new(events_table(&local, &lake).await))
        .unwrap();
    let sql = "SELECT count(*) FROM events WHERE amount > 1";
    assert_eq!(count(&remote, sql).await, count(&local, sql).await);
    for sql in [
        "SELECT count(*) FROM secret WHERE amount > 1",
        "SELECT count(*) FROM secret_listing WHERE amount > 1",
    ] {
        let plan = physical_plan(&remote, sql).await;
        assert_eq!(leaf_tasks(&plan), vec![2], "{sql}");
        let err = rows(&remote, sql).await.expect_err(sql).to_string();
        assert!(
            err.contains("outside the roots") && err.contains("secret/date="),
            "{sql}: {err}"
        );
    }
}

/// The engine has no distributed writes: an `INSERT INTO` runs its query on
/// the workers and its write where it was submitted, through the commit
/// protocol; every reader then sees the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insert_into_writes_on_the_coordinator_what_the_workers_read() {
    let dir = tempfile::tempdir().unwrap();
    write_events(&dir.path().join("events"));
    let deployment = Deployment::default();
    let (remote, _workers) = cluster(&deployment, 2).await;
    exec(&remote, "SET lakefusion.cache_enabled = false").await;
    remote
        .register_table(
            "events",
            Arc::new(events_table(&remote, &dir.path().join("events")).await),
        )
        .unwrap();
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    exec(
        &remote,
        &format!(
            "CREATE EXTERNAL TABLE copy (id BIGINT, amount DOUBLE, region VARCHAR) \
             STORED AS PARTITIONED_PARQUET PARTITIONED BY (region) LOCATION '{}'",
            file_url(&copy)
        ),
    )
    .await;
    let insert = "INSERT INTO copy SELECT id, amount, region FROM events WHERE amount > 50";
    let plan = explain_text(&remote, insert).await;
    assert!(plan.contains("DataSinkExec"), "{plan}");
    let selected = count(&remote, "SELECT count(*) FROM events WHERE amount > 50").await;
    let inserted = rows(&remote, insert).await.unwrap();
    assert!(
        inserted[0].contains(&format!(" {selected} ")),
        "{inserted:?}"
    );
    assert_eq!(
        rows(&remote, "SELECT region, count(*), sum(id) AS s FROM copy GROUP BY region ORDER BY region")
            .await
            .unwrap(),
        rows(
            &remote,
            "SELECT region, count(*), sum(id) AS s FROM events WHERE amount > 50 GROUP BY region ORDER BY region"
        )
        .await
        .unwrap()
    );
}

const WORKER_PORT: &str = "LAKEFUSION_TEST_WORKER_PORT";

/// A worker the kill test starts as a process of its own, on the port in
/// `WORKER_PORT`, reading local files through a store that waits 40 ms per
/// request (so that a query is still running when the worker is killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the datafusion-distributed tests"]
async fn worker_process() {
    let Ok(port) = std::env::var(WORKER_PORT) else {
        return;
    };
    let slow = ThrottledStore::new(
        LocalFileSystem::new(),
        ThrottleConfig {
            wait_get_per_call: Duration::from_millis(40),
            ..ThrottleConfig::default()
        },
    );
    let deployment =
        Deployment::default().with_object_store(Url::parse("file:///").unwrap(), Arc::new(slow));
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    println!("LISTENING");
    let worker = datafusion_distributed::Worker::from_session_builder(
        lakefusion::datafusion_distributed::worker_session_builder(deployment),
    );
    tonic::transport::Server::builder()
        .add_service(worker.into_worker_server())
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .unwrap();
}

fn start_worker_process(port: u16) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "datafusion_distributed::worker_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(WORKER_PORT, port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it listens.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("LISTENING") {
        line.clear();
        if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
            panic!("the worker process ended before listening");
        }
    }
    child
}

/// A free loopback port (below 32768 is not needed: the kernel picks).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The engine has no task retry: a worker killed mid-query fails the query
/// with a clear error, in bounded time, and the next query on the
/// remaining worker succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_query_fails_it_clearly_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ports = [free_port(), free_port()];
    let mut children: Vec<Child> = ports.iter().map(|&p| start_worker_process(p)).collect();
    let urls = WorkerUrls(
        ports
            .iter()
            .map(|p| Url::parse(&format!("http://127.0.0.1:{p}")).unwrap())
            .collect(),
    );
    let deployment = Deployment::default();
    let remote = coordinator(&deployment, &urls, 2, 1024);
    exec(&remote, "SET lakefusion.cache_enabled = false").await;
    exec(&remote, "SET lakefusion.read_ahead_requests = 1").await;
    remote
        .register_table("events", Arc::new(events_table(&remote, dir.path()).await))
        .unwrap();
    let sql = "SELECT region, count(*), round(sum(amount), 4) FROM events GROUP BY region ORDER BY region";
    let expected = {
        let local = SessionContext::new();
        local
            .register_table("events", Arc::new(events_table(&local, dir.path()).await))
            .unwrap();
        rows(&local, sql).await.unwrap()
    };
    // Both workers up: the right rows, slowly.
    let started = Instant::now();
    assert_eq!(rows(&remote, sql).await.unwrap(), expected);
    let whole = started.elapsed();
    assert!(
        whole > Duration::from_millis(400),
        "too fast to interrupt: {whole:?}"
    );

    let query = tokio::spawn({
        let remote = remote.clone();
        async move { rows(&remote, sql).await }
    });
    tokio::time::sleep(whole / 4).await;
    children[1].kill().unwrap();
    children[1].wait().unwrap();
    let killed = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(60), query)
        .await
        .expect("the query ends within 60 s of the kill")
        .unwrap();
    let err = result
        .expect_err("a task on the killed worker fails the query")
        .to_string();
    assert!(
        [
            "transport error",
            "Connection refused",
            "connection",
            "broken pipe",
            "h2 protocol"
        ]
        .iter()
        .any(|e| err.to_lowercase().contains(&e.to_lowercase())),
        "{err}"
    );
    eprintln!("failed {:?} after the kill: {err}", killed.elapsed());

    // The survivor alone answers the next query.
    let survivor = coordinator(&deployment, &WorkerUrls(vec![urls.0[0].clone()]), 2, 1024);
    exec(&survivor, "SET lakefusion.cache_enabled = false").await;
    survivor
        .register_table(
            "events",
            Arc::new(events_table(&survivor, dir.path()).await),
        )
        .unwrap();
    assert_eq!(rows(&survivor, sql).await.unwrap(), expected);
    children[0].kill().unwrap();
    children[0].wait().unwrap();
}

/// A scan split across tasks reads each file once, keeps a declared
/// bucketing's groups whole (a bucket in one task's one partition), and
/// keeps the partition count in every copy.
#[tokio::test]
async fn split_across_reads_each_file_once_and_keeps_buckets_whole() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(4),
    );
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let plan = physical_plan(&ctx, "SELECT * FROM events").await;
    let scan = find::<PartitionedScanExec>(&plan).unwrap();
    let scan = scan.downcast_ref::<PartitionedScanExec>().unwrap();
    let files = |s: &PartitionedScanExec| -> Vec<String> {
        s.file_scan_config()
            .file_groups
            .iter()
            .flat_map(|g| g.iter().map(|f| f.object_meta.location.to_string()))
            .collect()
    };
    let mut all = files(scan);
    all.sort();
    for tasks in [1, 2, 3, 7, 64] {
        let copies = scan
            .split_across(tasks, ctx.state().config_options())
            .unwrap();
        assert_eq!(copies.len(), tasks);
        let widths: Vec<usize> = copies
            .iter()
            .map(|c| c.properties().partitioning.partition_count())
            .collect();
        assert!(
            widths.iter().all(|w| *w == widths[0] && *w >= 4),
            "{widths:?}"
        );
        let mut read: Vec<String> = copies.iter().flat_map(files).collect();
        read.sort();
        assert_eq!(read, all, "{tasks} tasks");
        if tasks <= 3 {
            assert!(copies.iter().all(|c| !files(c).is_empty()), "{tasks} tasks");
        }
    }

    // A bucketed table: group g (bucket g) whole in copy g % tasks, empty elsewhere.
    let bucketed = dir.path().join("bucketed");
    std::fs::create_dir_all(&bucketed).unwrap();
    let build = |ctx: SessionContext| {
        let root = file_url(&bucketed);
        async move {
            PartitionedTable::builder(root)
                .schema(Arc::new(Schema::new(vec![Field::new(
                    "id",
                    DataType::Int64,
                    false,
                )])))
                .partition_column("k", DataType::Utf8)
                .bucket_by("id", 4)
                .build(&ctx.state())
                .await
                .unwrap()
        }
    };
    ctx.register_table("b", Arc::new(build(ctx.clone()).await))
        .unwrap();
    exec(
        &ctx,
        "INSERT INTO b SELECT value AS id, 'a' AS k FROM generate_series(1, 400)",
    )
    .await;
    ctx.deregister_table("b").unwrap();
    ctx.register_table("b", Arc::new(build(ctx.clone()).await))
        .unwrap();
    let plan = physical_plan(&ctx, "SELECT id, count(*) FROM b GROUP BY id").await;
    let scan = find::<PartitionedScanExec>(&plan).unwrap();
    let scan = scan.downcast_ref::<PartitionedScanExec>().unwrap();
    assert!(
        matches!(
            scan.properties().partitioning,
            datafusion::physical_plan::Partitioning::Hash(_, 4)
        ),
        "{:?}",
        scan.properties().partitioning
    );
    let copies = scan.split_across(3, ctx.state().config_options()).unwrap();
    for (t, copy) in copies.iter().enumerate() {
        assert!(matches!(
            copy.properties().partitioning,
            datafusion::physical_plan::Partitioning::Hash(_, 4)
        ));
        for (g, group) in copy.file_scan_config().file_groups.iter().enumerate() {
            let original = &scan.file_scan_config().file_groups[g];
            if g % 3 == t {
                assert_eq!(group.len(), original.len());
            } else {
                assert!(group.is_empty());
            }
        }
    }
}

/// A bucketed table declares `Hash` partitioning; joined with a table the
/// engine shuffles, the answer is the local one. (Splitting its buckets
/// across tasks lost rows: the engine numbers a shuffle's partitions across
/// all tasks, so bucket `p` of the scan and partition `p` of the shuffled
/// side no longer met in one task.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucketed_table_joined_on_workers_matches_one_machine() {
    let dir = tempfile::tempdir().unwrap();
    write_events(&dir.path().join("events"));
    let bucketed = dir.path().join("bucketed");
    std::fs::create_dir_all(&bucketed).unwrap();
    let deployment = Deployment::default();
    let workers = start_workers(&[deployment.clone(), deployment.clone()]).await;
    let remote = coordinator(&deployment, &workers.urls, 2, 1024);
    let local = partitioned_join_session(2);
    exec(&remote, "SET lakefusion.cache_enabled = false").await;
    for ctx in [&remote, &local] {
        for setting in [
            "SET datafusion.optimizer.hash_join_single_partition_threshold = 0",
            "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0",
        ] {
            exec(ctx, setting).await;
        }
        ctx.register_table(
            "events",
            Arc::new(events_table(ctx, &dir.path().join("events")).await),
        )
        .unwrap();
    }
    let build = |ctx: SessionContext| {
        let root = file_url(&bucketed);
        async move {
            PartitionedTable::builder(root)
                .schema(Arc::new(Schema::new(vec![
                    Field::new("id", DataType::Int64, false),
                    Field::new("v", DataType::Int64, false),
                ])))
                .partition_column("k", DataType::Utf8)
                .bucket_by("id", 2)
                .build(&ctx.state())
                .await
                .unwrap()
        }
    };
    local
        .register_table("b", Arc::new(build(local.clone()).await))
        .unwrap();
    exec(
        &local,
        "INSERT INTO b SELECT id, id % 13 AS v, 'a' AS k FROM events WHERE id % 3 = 0",
    )
    .await;
    for ctx in [&remote, &local] {
        let _ = ctx.deregister_table("b");
        ctx.register_table("b", Arc::new(build(ctx.clone()).await))
            .unwrap();
    }
    let sql = "SELECT count(*), sum(b.v), sum(e.qty) FROM b JOIN events e ON b.id = e.id";
    let plan = explain_text(&local, sql).await;
    assert!(
        plan.contains("Hash([id@0], 2)"),
        "the table declares its buckets:\n{plan}"
    );
    assert_eq!(
        rows(&remote, sql).await.unwrap(),
        rows(&local, sql).await.unwrap(),
        "{}",
        explain_text(&remote, sql).await
    );
}
