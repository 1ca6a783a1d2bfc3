//! The commit protocol under stress: a writer process killed after each of
//! its steps, two processes racing on the same partitions, a reader in
//! another process querying throughout an overwrite, a failure injected at
//! each step, and random sequences of writes checked against a `MemTable`
//! model on `memory://` and on an S3 server.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use lakefusion::store::faults::{Fault, FaultRule, FaultyStore, RequestKind};
use lakefusion::{CompactOptions, OverwriteMode, PartitionedTable};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use url::Url;

use crate::common::*;
use crate::s3_server::S3Server;

const ROOT: &str = "LAKEFUSION_PROTOCOL_ROOT";
const FAULTS: &str = "LAKEFUSION_PROTOCOL_FAULTS";
const SQL: &str = "LAKEFUSION_PROTOCOL_SQL";
const GO: &str = "LAKEFUSION_PROTOCOL_GO";

async fn table_at(ctx: &SessionContext, root: String) -> PartitionedTable {
    PartitionedTable::builder(root)
        .schema(id_schema())
        .partition_column("k", DataType::Utf8)
        .overwrite_mode(OverwriteMode::Partitions)
        .build(&ctx.state())
        .await
        .unwrap()
}

/// The sum of ids a fresh build of the table at `root` reads.
async fn fresh_sum(root: &Path) -> i64 {
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(table_at(&ctx, file_url(root)).await))
        .unwrap();
    count(&ctx, "SELECT coalesce(sum(id), 0) FROM t").await
}

/// `FaultyStore` rules from `kind:pattern` or `latency-<ms>:pattern`
/// entries, `;`-separated (all on writes).
fn rules(spec: &str) -> Vec<FaultRule> {
    spec.split(';')
        .filter(|r| !r.is_empty())
        .map(|rule| {
            let (fault, pattern) = rule.split_once(':').unwrap();
            let fault = match fault {
                "hang" => Fault::Hang,
                "fail" => Fault::Permanent,
                latency => Fault::Latency(Duration::from_millis(
                    latency.trim_start_matches("latency-").parse().unwrap(),
                )),
            };
            FaultRule::new(fault)
                .on(RequestKind::Write)
                .path_contains(pattern)
        })
        .collect()
}

/// The writer the tests below start as a process of its own: runs `SQL` on
/// the table at `ROOT`, through a store with the `FAULTS` rules, once the
/// file `GO` exists (if set), and prints how it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the commit protocol tests"]
async fn writer_process() {
    let Ok(root) = std::env::var(ROOT) else {
        return;
    };
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    for rule in rules(&std::env::var(FAULTS).unwrap_or_default()) {
        store.inject(rule);
    }
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("file://").unwrap(), store);
    let table = table_at(&ctx, file_url(Path::new(&root))).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    if let Ok(go) = std::env::var(GO) {
        std::fs::write(format!("{go}.ready-{}", std::process::id()), "").unwrap();
        while !Path::new(&go).exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let sql = std::env::var(SQL).unwrap();
    let result = match ctx.sql(&sql).await {
        Ok(df) => df.collect().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => println!("RESULT ok"),
        Err(e) => println!("RESULT error: {e}"),
    }
}

fn start_writer(root: &Path, sql: &str, faults: &str, go: Option<&Path>) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "commit_protocol::writer_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(ROOT, root)
        .env(SQL, sql)
        .env(FAULTS, faults)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(go) = go {
        command.env(GO, go);
    }
    command.spawn().unwrap()
}

/// How a writer process ended: its RESULT line.
fn outcome(child: Child) -> String {
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result from the writer: {text}"))
        .to_string()
}

fn wait_for(what: &str, mut reached: impl FnMut() -> bool) {
    let started = Instant::now();
    while !reached() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the writer never reached: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The journal objects under `root` — but abort markers, which a take-back
/// leaves until their retention ends (they hide nothing).
fn journal(root: &Path) -> BTreeSet<String> {
    all_files(root)
        .into_iter()
        .filter(|f| f.starts_with("_lakefusion") && !is_abort_marker(&root.join(f)))
        .collect()
}

fn data_files(root: &Path) -> BTreeSet<String> {
    all_files(root)
        .into_iter()
        .filter(|f| !f.starts_with("_lakefusion"))
        .collect()
}

/// One step of an overwrite of `a` and `b`.
struct Step {
    name: &'static str,
    /// The fault rules that stop (or fail) the writer there, given the id
    /// of the write that wrote the old files.
    fault: fn(&str) -> String,
    /// Whether the writer got there (the table root, the old write id).
    reached: fn(&Path, &str) -> bool,
    /// Whether the write has committed there.
    committed: bool,
}

/// A table with (1, a), (2, a), (3, b), (4, c), one file per partition;
/// returns the id of the write that wrote them.
async fn seeded(root: &Path) -> String {
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(table_at(&ctx, file_url(root)).await))
        .unwrap();
    exec(
        &ctx,
        "INSERT INTO t VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'c')",
    )
    .await;
    let file = data_files(root).into_iter().next().unwrap();
    // k=a/part-<id>-00000.parquet
    let name = file.rsplit('/').next().unwrap();
    name["part-".len()..name.len() - "-00000.parquet".len()].to_string()
}

/// After each step of an overwrite of `a` and `b`, the writer process is
/// killed: a fresh build in this process sees the table exactly before or
/// exactly after, and `recover()` leaves it exactly after (committed) or
/// before (not), with no file left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_after_each_step_leaves_the_table_before_or_after() {
    const BEFORE: i64 = 10;
    const AFTER: i64 = 10 + 20 + 4;
    let steps = [
        Step {
            name: "record written, no file visible",
            fault: |_| "hang:/part-".into(),
            reached: |root, _| {
                journal(root)
                    .iter()
                    .any(|f| f.starts_with("_lakefusion/writes/") && !f.ends_with(".committed"))
            },
            committed: false,
        },
        Step {
            name: "some files visible",
            fault: |_| "hang:k=b/part-".into(),
            reached: |root, old| {
                data_files(root)
                    .iter()
                    .any(|f| f.starts_with("k=a/part-") && !f.contains(old))
            },
            committed: false,
        },
        Step {
            name: "partitions claimed, not committed",
            fault: |_| "hang:.committed".into(),
            reached: |root, _| journal(root).contains("_lakefusion/claims/k=b"),
            committed: false,
        },
        Step {
            name: "committed, nothing removed",
            fault: |old| format!("hang:{old}"),
            reached: |root, _| journal(root).iter().any(|f| f.ends_with(".committed")),
            committed: true,
        },
        Step {
            name: "committed, some old files removed",
            fault: |old| format!("hang:k=b/part-{old}"),
            reached: |root, old| {
                !data_files(root)
                    .iter()
                    .any(|f| f.starts_with("k=a/") && f.contains(old))
            },
            committed: true,
        },
    ];
    for Step {
        name: step,
        fault: faults,
        reached,
        committed,
    } in steps
    {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = seeded(root).await;
        let before = data_files(root);
        let mut child = start_writer(
            root,
            "INSERT OVERWRITE t VALUES (10, 'a'), (20, 'b')",
            &faults(&old),
            None,
        );
        wait_for(step, || reached(root, &old));
        child.kill().unwrap();
        child.wait().unwrap();

        let seen = fresh_sum(root).await;
        let expected = if committed { AFTER } else { BEFORE };
        assert_eq!(seen, expected, "{step}: a fresh build");
        let ctx = SessionContext::new();
        let table = table_at(&ctx, file_url(root)).await;
        let recovered = table.recover(&ctx.state(), Duration::ZERO).await.unwrap();
        assert_eq!(
            (recovered.completed.len(), recovered.rolled_back.len()),
            if committed { (1, 0) } else { (0, 1) },
            "{step}: {recovered:?}"
        );
        assert_eq!(fresh_sum(root).await, expected, "{step}: after recover()");
        assert!(journal(root).is_empty(), "{step}: {:?}", journal(root));
        let files = data_files(root);
        if committed {
            assert_eq!(files.len(), 3, "{step}: {files:?}");
            assert!(
                files
                    .iter()
                    .filter(|f| f.contains(&old))
                    .all(|f| f.starts_with("k=c/")),
                "{step}: {files:?}"
            );
        } else {
            assert_eq!(files, before, "{step}");
        }
    }
}

/// Two processes overwrite the same partition at once: one commits, the
/// other fails with the conflict error and leaves nothing; overwrites of
/// different partitions both commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_overwrites_of_one_partition_commit_once() {
    for (sqls, both) in [
        (
            [
                "INSERT OVERWRITE t VALUES (100, 'a')",
                "INSERT OVERWRITE t VALUES (200, 'a')",
            ],
            false,
        ),
        (
            [
                "INSERT OVERWRITE t VALUES (100, 'a')",
                "INSERT OVERWRITE t VALUES (200, 'b')",
            ],
            true,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        seeded(root).await;
        let gate = tempfile::tempdir().unwrap();
        let go = gate.path().join("go");
        // The commit waits 1.5 s with the claims held: both writers claim
        // within that time.
        let children: Vec<Child> = sqls
            .iter()
            .map(|sql| start_writer(root, sql, "latency-1500:.committed", Some(&go)))
            .collect();
        wait_for("both writers ready", || {
            std::fs::read_dir(gate.path()).unwrap().count() == 2
        });
        std::fs::write(&go, "").unwrap();
        let outcomes: Vec<String> = children.into_iter().map(outcome).collect();
        let ok = outcomes.iter().filter(|o| *o == "ok").count();
        let sum = fresh_sum(root).await;
        if both {
            assert_eq!(ok, 2, "{outcomes:?}");
            assert_eq!(sum, 100 + 200 + 4);
        } else {
            assert_eq!(ok, 1, "{outcomes:?}");
            let loser = outcomes.iter().find(|o| *o != "ok").unwrap();
            assert!(
                loser.contains("another write is replacing partition(s) k=a"),
                "{loser}"
            );
            // Exactly the winner's row in `a`, nothing lost elsewhere.
            assert!(sum == 100 + 3 + 4 || sum == 200 + 3 + 4, "{sum}");
            assert_eq!(
                data_files(root)
                    .iter()
                    .filter(|f| f.starts_with("k=a/"))
                    .count(),
                1
            );
        }
        assert!(journal(root).is_empty(), "{:?}", journal(root));
    }
}

/// A reader in another process querying throughout an overwrite (each
/// step slowed down) sees the sum before or the sum after, never another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_during_an_overwrite_sees_before_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seeded(root).await;
    let mut child = start_writer(
        root,
        "INSERT OVERWRITE t VALUES (10, 'a'), (20, 'b'), (30, 'a')",
        "latency-100:",
        None,
    );
    let mut seen = BTreeSet::new();
    let mut reads = 0;
    loop {
        let done = child.try_wait().unwrap().is_some();
        seen.insert(fresh_sum(root).await);
        reads += 1;
        if done {
            break;
        }
    }
    assert_eq!(outcome(child), "ok");
    assert!(
        seen.is_subset(&BTreeSet::from([10, 10 + 20 + 30 + 4])),
        "{seen:?} in {reads} reads"
    );
    assert!(seen.contains(&(10 + 20 + 30 + 4)));
    assert!(reads > 3, "{reads} reads");
}

/// A failure injected at each step before the commit leaves the table as
/// it was, with nothing left over; one after it leaves the write done,
/// its leftovers for `recover()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_step_leaves_the_table_as_it_was() {
    let failing = |name, fault, committed| Step {
        name,
        fault,
        reached: |_, _| true,
        committed,
    };
    let steps = [
        failing("the record", |_| "fail:_lakefusion/writes/".into(), false),
        failing("a file's commit", |_| "fail:k=b/part-".into(), false),
        failing("a claim", |_| "fail:_lakefusion/claims/k=b".into(), false),
        failing("the commit marker", |_| "fail:.committed".into(), false),
        failing(
            "removing a replaced file",
            |old| format!("fail:k=b/part-{old}"),
            true,
        ),
    ];
    for Step {
        name: step,
        fault,
        committed,
        ..
    } in steps
    {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = seeded(root).await;
        let before = data_files(root);
        let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
        for rule in rules(&fault(&old)) {
            store.inject(rule.times(1));
        }
        let ctx = SessionContext::new();
        ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());
        ctx.register_table("t", Arc::new(table_at(&ctx, file_url(root)).await))
            .unwrap();
        let result = ctx
            .sql("INSERT OVERWRITE t VALUES (10, 'a'), (20, 'b')")
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(store.injected(), 1, "{step}: the fault was met");
        if committed {
            result.unwrap();
            assert_eq!(fresh_sum(root).await, 34, "{step}");
            assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 34, "{step}");
            let table = table_at(&ctx, file_url(root)).await;
            table.recover(&ctx.state(), Duration::ZERO).await.unwrap();
            assert_eq!(data_files(root).len(), 3, "{step}");
        } else {
            let error = result.unwrap_err().to_string();
            assert!(error.contains("injected"), "{step}: {error}");
            assert_eq!(fresh_sum(root).await, 10, "{step}");
            assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 10, "{step}");
            assert_eq!(data_files(root), before, "{step}");
        }
        assert!(journal(root).is_empty(), "{step}: {:?}", journal(root));
    }
}

// ---------------------------------------------------------------------------
// Random sequences of writes against a MemTable model

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(i64, u8)>),
    Overwrite(Vec<(i64, u8)>),
    OverwriteTable(Vec<(i64, u8)>),
    Delete(Vec<u8>),
    Compact,
}

fn rows_strategy() -> impl Strategy<Value = Vec<(i64, u8)>> {
    proptest::collection::vec((0i64..1000, 0u8..4), 0..6)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => rows_strategy().prop_map(Op::Append),
        2 => rows_strategy().prop_map(Op::Overwrite),
        1 => rows_strategy().prop_map(Op::OverwriteTable),
        1 => proptest::collection::vec(0u8..4, 1..3).prop_map(Op::Delete),
        1 => Just(Op::Compact),
    ]
}

fn values(rows: &[(i64, u8)]) -> String {
    rows.iter()
        .map(|(id, k)| format!("({id}, 'k{k}')"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn keys_of(ks: &[u8]) -> String {
    ks.iter()
        .map(|k| format!("'k{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `ops` on our table at `url` (served by `store`) and on a MemTable
/// model of the same operations; after each, a fresh build reads what the
/// model holds.
async fn check_against_model(store: Arc<dyn ObjectStore>, url: &str, root: &str, ops: &[Op]) {
    let session = || {
        let ctx = SessionContext::new();
        ctx.register_object_store(&Url::parse(url).unwrap(), Arc::clone(&store));
        ctx
    };
    let build = |ctx: SessionContext, mode: OverwriteMode| async move {
        PartitionedTable::builder(root)
            .schema(id_schema())
            .partition_column("k", DataType::Utf8)
            .overwrite_mode(mode)
            .build(&ctx.state())
            .await
            .unwrap()
    };
    let ctx = session();
    ctx.register_table(
        "t",
        Arc::new(build(ctx.clone(), OverwriteMode::Partitions).await),
    )
    .unwrap();
    ctx.register_table(
        "whole",
        Arc::new(build(ctx.clone(), OverwriteMode::Table).await),
    )
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Utf8, false),
    ]));
    let model = MemTable::try_new(schema, vec![vec![]]).unwrap();
    ctx.register_table("m", Arc::new(model)).unwrap();
    for op in ops {
        match op {
            Op::Append(rows) if !rows.is_empty() => {
                exec(&ctx, &format!("INSERT INTO t VALUES {}", values(rows))).await;
                exec(&ctx, &format!("INSERT INTO m VALUES {}", values(rows))).await;
            }
            Op::Overwrite(rows) if !rows.is_empty() => {
                exec(&ctx, &format!("INSERT OVERWRITE t VALUES {}", values(rows))).await;
                let ks: Vec<u8> = rows.iter().map(|(_, k)| *k).collect();
                exec(
                    &ctx,
                    &format!("DELETE FROM m WHERE k IN ({})", keys_of(&ks)),
                )
                .await;
                exec(&ctx, &format!("INSERT INTO m VALUES {}", values(rows))).await;
            }
            Op::OverwriteTable(rows) => {
                let select = if rows.is_empty() {
                    "SELECT id, k FROM m WHERE false".to_string()
                } else {
                    format!("VALUES {}", values(rows))
                };
                exec(&ctx, &format!("INSERT OVERWRITE whole {select}")).await;
                // MemTable has no overwrite: the model empties, then inserts.
                exec(&ctx, "DELETE FROM m").await;
                if !rows.is_empty() {
                    exec(&ctx, &format!("INSERT INTO m VALUES {}", values(rows))).await;
                }
            }
            Op::Delete(ks) => {
                exec(&ctx, &format!("DELETE FROM t WHERE k IN ({})", keys_of(ks))).await;
                exec(&ctx, &format!("DELETE FROM m WHERE k IN ({})", keys_of(ks))).await;
            }
            Op::Compact => {
                let table = build(ctx.clone(), OverwriteMode::Partitions).await;
                let options = CompactOptions {
                    target_file_bytes: 1 << 20,
                    ..CompactOptions::default()
                };
                table.compact(&ctx.state(), None, options).await.unwrap();
            }
            _ => {}
        }
        let expected = rows(&ctx, "SELECT k, id FROM m ORDER BY k, id")
            .await
            .unwrap();
        let fresh = session();
        fresh
            .register_table(
                "t",
                Arc::new(build(fresh.clone(), OverwriteMode::Partitions).await),
            )
            .unwrap();
        let got = rows(&fresh, "SELECT k, id FROM t ORDER BY k, id")
            .await
            .unwrap();
        assert_eq!(got, expected, "after {op:?}");
        // The table object the writes went through, refreshed, agrees.
        let table = build(ctx.clone(), OverwriteMode::Partitions).await;
        ctx.deregister_table("t").unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
    }
}

#[test]
fn writes_equal_a_memtable_model_on_memory() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(proptest_config(24));
    runner
        .run(&proptest::collection::vec(op(), 1..7), |ops| {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            runtime.block_on(check_against_model(
                store,
                "memory://",
                "memory:///lake/t/",
                &ops,
            ));
            Ok(())
        })
        .unwrap();
}

#[test]
fn writes_equal_a_memtable_model_on_s3() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(S3Server::start("protocol"));
    let mut runner = TestRunner::new(proptest_config(8));
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&proptest::collection::vec(op(), 1..6), |ops| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let root = format!("{}/lake{case}/", server.url());
            runtime.block_on(check_against_model(
                server.store(),
                &server.url(),
                &root,
                &ops,
            ));
            Ok(())
        })
        .unwrap();
}

/// On S3 (no rename; claims by `If-None-Match: *`), two overwrites of one
/// partition racing in two sessions: one commits, the other loses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_overwrites_on_s3_commit_once() {
    let server = S3Server::start("race").await;
    let root = format!("{}/lake/", server.url());
    let session = || {
        let store = FaultyStore::new(server.store());
        store.inject(
            FaultRule::new(Fault::Latency(Duration::from_millis(800)))
                .on(RequestKind::Write)
                .path_contains(".committed"),
        );
        let ctx = SessionContext::new();
        ctx.register_object_store(&Url::parse(&server.url()).unwrap(), store);
        ctx
    };
    let seed = session();
    seed.register_table("t", Arc::new(table_at(&seed, root.clone()).await))
        .unwrap();
    exec(&seed, "INSERT INTO t VALUES (1, 'a'), (3, 'b')").await;
    let (one, two) = (session(), session());
    one.register_table("t", Arc::new(table_at(&one, root.clone()).await))
        .unwrap();
    two.register_table("t", Arc::new(table_at(&two, root.clone()).await))
        .unwrap();
    let run = |ctx: SessionContext, sql: &'static str, after: u64| async move {
        tokio::time::sleep(Duration::from_millis(after)).await;
        ctx.sql(sql).await?.collect().await.map(|_| ())
    };
    // The second starts while the first holds its claim (its commit waits
    // 800 ms): s3s-fs checks `If-None-Match` and then writes, not
    // atomically as S3 does, so claims sent at the same instant could both
    // pass there.
    let (a, b) = tokio::join!(
        run(one, "INSERT OVERWRITE t VALUES (100, 'a')", 0),
        run(two, "INSERT OVERWRITE t VALUES (200, 'a')", 300)
    );
    let outcomes = [a, b];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    let loser = outcomes
        .iter()
        .find_map(|o| o.as_ref().err())
        .unwrap()
        .to_string();
    assert!(
        loser.contains("another write is replacing partition(s) k=a"),
        "{loser}"
    );
    let fresh = SessionContext::new();
    fresh.register_object_store(&Url::parse(&server.url()).unwrap(), server.store());
    fresh
        .register_table("t", Arc::new(table_at(&fresh, root.clone()).await))
        .unwrap();
    let sum = count(&fresh, "SELECT sum(id) FROM t").await;
    assert!(sum == 103 || sum == 203, "{sum}");
    let journal: Vec<String> = keys(&server.store())
        .await
        .into_iter()
        .filter(|k| k.contains("_lakefusion"))
        .collect();
    assert!(journal.iter().all(|k| k.ends_with(".done")), "{journal:?}");
}

/// A whole overwrite runs inside a reader's listing (held after it read
/// everything): the reader's second reading of the journal finds the
/// write's done marker and lists that one partition again, so it installs
/// the new file, not the replaced one it had listed (which is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_inside_a_readers_listing_is_listed_again() {
    use lakefusion::store::faults::ListHold;
    let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let session = |store: Arc<dyn ObjectStore>| {
        let ctx = SessionContext::new();
        ctx.register_object_store(&Url::parse("memory://").unwrap(), store);
        ctx
    };
    let root = "memory:///lake/".to_string();
    let writer = session(Arc::clone(&lake));
    writer
        .register_table("t", Arc::new(table_at(&writer, root.clone()).await))
        .unwrap();
    exec(&writer, "INSERT INTO t VALUES (1, 'a'), (3, 'b'), (4, 'c')").await;

    let store = FaultyStore::new(Arc::clone(&lake));
    let hold = ListHold {
        prefix: Some("lake".into()),
        ..ListHold::default()
    };
    store.hold_listings(Some(hold.clone()));
    let reader = session(store.clone());
    let building = {
        let reader = reader.clone();
        let root = root.clone();
        tokio::spawn(async move { table_at(&reader, root).await })
    };
    hold.listed.notified().await;
    store.hold_listings(None);
    exec(&writer, "INSERT OVERWRITE t VALUES (20, 'b')").await;
    store.reset_counts();
    hold.release.notify_one();
    let table = building.await.unwrap();
    // The journal again, `b` again (a delimiter listing of the root, then
    // its directory), and the journal once more; not the whole table.
    assert_eq!(store.requests_of(RequestKind::List), 4);
    reader.register_table("t", Arc::new(table)).unwrap();
    assert_eq!(count(&reader, "SELECT sum(id) FROM t").await, 1 + 20 + 4);
}

/// A commit marker whose PUT fails and whose presence cannot be checked
/// leaves the write as it is — record, claims, files — for `recover()`,
/// which takes it back (the marker is not there); readers see the table
/// as it was throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_commit_is_left_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seeded(root).await;
    let before = data_files(root);
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    store.inject(
        FaultRule::new(Fault::Permanent)
            .on(RequestKind::Write)
            .path_contains(".committed"),
    );
    store.inject(
        FaultRule::new(Fault::Permanent)
            .on(RequestKind::Head)
            .path_contains(".committed"),
    );
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("file://").unwrap(), store);
    ctx.register_table("t", Arc::new(table_at(&ctx, file_url(root)).await))
        .unwrap();
    let error = execution_error(&ctx, "INSERT OVERWRITE t VALUES (10, 'a')").await;
    assert!(
        error.contains("whether the write committed is unknown"),
        "{error}"
    );
    assert!(journal(root)
        .iter()
        .any(|f| f.starts_with("_lakefusion/claims/")));
    assert_eq!(fresh_sum(root).await, 10);
    let fresh = SessionContext::new();
    let table = table_at(&fresh, file_url(root)).await;
    let recovered = table.recover(&fresh.state(), Duration::ZERO).await.unwrap();
    assert_eq!(recovered.rolled_back.len(), 1, "{recovered:?}");
    assert!(journal(root).is_empty(), "{:?}", journal(root));
    assert_eq!(data_files(root), before);
    assert_eq!(fresh_sum(root).await, 10);
}

/// On the S3 server: a writer stopped before its commit, and one stopped
/// after it (each hangs on its next request, as a dead process would
/// leave it); `recover()` takes the first back and finishes the second,
/// and a fresh build sees before, then after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_on_s3_takes_back_or_finishes_a_stopped_writer() {
    let server = S3Server::start("recover").await;
    for (hang, committed) in [(".committed", false), ("k=b/part-", true)] {
        let root = format!("{}/lake-{committed}/", server.url());
        let plain = SessionContext::new();
        plain.register_object_store(&Url::parse(&server.url()).unwrap(), server.store());
        plain
            .register_table("t", Arc::new(table_at(&plain, root.clone()).await))
            .unwrap();
        exec(&plain, "INSERT INTO t VALUES (1, 'a'), (3, 'b')").await;
        // The writer hangs on its marker, or on removing the old file of b
        // (the new one, written first, is `k=b/part-…` too: hang from the
        // second such request on).
        let store = FaultyStore::new(server.store());
        let rule = FaultRule::new(Fault::Hang)
            .on(RequestKind::Write)
            .path_contains(hang);
        store.inject(if committed { rule.every(2) } else { rule });
        let writer = SessionContext::new();
        writer.register_object_store(&Url::parse(&server.url()).unwrap(), store.clone());
        writer
            .register_table("t", Arc::new(table_at(&writer, root.clone()).await))
            .unwrap();
        let running = tokio::spawn(async move {
            let _ = writer
                .sql("INSERT OVERWRITE t VALUES (10, 'a'), (20, 'b')")
                .await
                .unwrap()
                .collect()
                .await;
        });
        let started = Instant::now();
        while store.injected() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the writer never stopped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sum = || async {
            let fresh = SessionContext::new();
            fresh.register_object_store(&Url::parse(&server.url()).unwrap(), server.store());
            fresh
                .register_table("t", Arc::new(table_at(&fresh, root.clone()).await))
                .unwrap();
            count(&fresh, "SELECT sum(id) FROM t").await
        };
        let (before, after) = (4, 30);
        assert_eq!(sum().await, if committed { after } else { before });
        let table = table_at(&plain, root.clone()).await;
        let recovered = table.recover(&plain.state(), Duration::ZERO).await.unwrap();
        assert_eq!(
            (recovered.completed.len(), recovered.rolled_back.len()),
            if committed { (1, 0) } else { (0, 1) },
            "{recovered:?}"
        );
        assert_eq!(sum().await, if committed { after } else { before });
        let prefix = if committed {
            "lake-true/"
        } else {
            "lake-false/"
        };
        let left: Vec<String> = keys(&server.store())
            .await
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect();
        for key in left.iter().filter(|k| k.contains("_lakefusion")) {
            let text = server
                .store()
                .get(&object_store::path::Path::from(key.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert!(text.starts_with(b"lakefusion aborted"), "{key} is left");
        }
        let data: Vec<&String> = left.iter().filter(|k| !k.contains("_lakefusion")).collect();
        assert_eq!(data.len(), 2, "one file per partition: {left:?}");
        running.abort();
    }
}

/// `recover()` with too short a bound meets a live writer about to commit:
/// its abort marker, created at the name the commit marker would take,
/// wins, and the writer, whose commit PUT then finds it, takes its write
/// back with an error that says so. Readers see the table as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_and_a_live_writer_race_for_one_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seeded(root).await;
    let before = data_files(root);
    // The writer's commit marker PUT waits 1 s before it runs.
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    store.inject(
        FaultRule::new(Fault::Latency(Duration::from_millis(1000)))
            .on(RequestKind::Write)
            .path_contains(".committed"),
    );
    let writer = SessionContext::new();
    writer.register_object_store(&Url::parse("file://").unwrap(), store.clone());
    writer
        .register_table("t", Arc::new(table_at(&writer, file_url(root)).await))
        .unwrap();
    let running = tokio::spawn(async move {
        writer
            .sql("INSERT OVERWRITE t VALUES (10, 'a')")
            .await
            .unwrap()
            .collect()
            .await
            .map(|_| ())
    });
    wait_for("the writer's claim", || {
        journal(root).contains("_lakefusion/claims/k=a")
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ctx = SessionContext::new();
    let table = table_at(&ctx, file_url(root)).await;
    let recovered = table.recover(&ctx.state(), Duration::ZERO).await.unwrap();
    assert_eq!(recovered.rolled_back.len(), 1, "{recovered:?}");
    let error = running.await.unwrap().unwrap_err().to_string();
    assert!(error.contains("recover() took the write back"), "{error}");
    assert_eq!(fresh_sum(root).await, 10);
    assert_eq!(data_files(root), before);
    // Only the abort marker stays (until its retention), and it hides nothing.
    assert!(journal(root).is_empty(), "{:?}", journal(root));
    assert!(all_files(root)
        .iter()
        .any(|f| is_abort_marker(&root.join(f))));
}

/// A `refresh()` of the very table an overwrite goes through, its listing
/// held while the overwrite commits: the refreshed index holds the new
/// file and not the replaced one (it was listed, then removed), and the
/// table answers with the rows after the overwrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_during_an_overwrite_installs_no_replaced_file() {
    use lakefusion::store::faults::ListHold;
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("memory://").unwrap(), store.clone());
    let table = Arc::new(table_at(&ctx, "memory:///lake/".into()).await);
    ctx.register_table("t", Arc::clone(&table) as _).unwrap();
    exec(&ctx, "INSERT INTO t VALUES (1, 'a'), (3, 'b')").await;
    let old_a = table
        .index()
        .all_files()
        .map(|f| f.location().unwrap().to_string())
        .find(|f| f.contains("k=a/"))
        .unwrap();
    let hold = ListHold {
        prefix: Some("lake".into()),
        ..ListHold::default()
    };
    store.hold_listings(Some(hold.clone()));
    let refreshing = {
        let (table, state) = (Arc::clone(&table), ctx.state());
        tokio::spawn(async move { table.refresh(&state).await })
    };
    hold.listed.notified().await;
    store.hold_listings(None);
    exec(&ctx, "INSERT OVERWRITE t VALUES (10, 'a')").await;
    hold.release.notify_one();
    refreshing.await.unwrap().unwrap();
    let files: Vec<String> = table
        .index()
        .all_files()
        .map(|f| f.location().unwrap().to_string())
        .collect();
    assert!(!files.contains(&old_a), "{files:?}");
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(count(&ctx, "SELECT sum(id) FROM t").await, 13);
}
