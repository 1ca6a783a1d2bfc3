//! lakefusion on an in-process Ballista cluster (2 executors) vs locally, and
//! the codec's cost per scan node, in one run.
//!
//! ```text
//! cargo bench --features ballista --bench ballista_cluster -- [--sf 1] [--runs 5]
//! ```
//!
//! * The Q1-style aggregate of `scan_vs_listing` on TPC-H lineitem (generated
//!   there, shared under `<target>/lakefusion-bench`), on the cluster and on a
//!   local `SessionContext`; the shuffle bytes are the bytes the executors
//!   wrote to their work directories (the process's `TMPDIR` is pointed at a
//!   fresh directory for that).
//! * A `PartitionedScanExec` over 5,000 files: encoded bytes, encode and decode time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;
use lakefusion::ballista::BallistaSetup;
use lakefusion::{PartitionedScanExec, PartitionedTable, QueryContext};

#[path = "../tests/it/cluster.rs"]
mod cluster;

const Q1: &str = "SELECT l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice), \
     sum(l_extendedprice * (1 - l_discount)), avg(l_quantity), avg(l_discount), count(*) \
     FROM lineitem WHERE l_shipdate <= DATE '1998-09-02' \
     GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus";

fn main() -> Result<()> {
    let mut sf = 1.0f64;
    let mut runs = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sf" => sf = args.next().and_then(|v| v.parse().ok()).expect("--sf N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => {}
        }
    }
    let data = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("lakefusion-bench");
    let lineitem = data.join(format!("lineitem-sf{sf}"));
    let planning = data.join("planning-5000");
    for (path, bench) in [
        (&lineitem, "scan_vs_listing"),
        (&planning, "scan_vs_listing"),
    ] {
        if !path.join("_COMPLETE").exists() {
            eprintln!(
                "{} is missing: run `cargo bench --bench {bench}` first (it generates the data)",
                path.display()
            );
            std::process::exit(2);
        }
    }
    // Executors put their shuffle files in a temporary work directory: give
    // them one of ours, before any thread exists, to measure what they write.
    let work = data.join("ballista-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    std::env::set_var("TMPDIR", &work);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&lineitem, &planning, &work, runs))
}

async fn register(ctx: &SessionContext, root: &Path) -> Result<()> {
    let table = PartitionedTable::builder(format!("file://{}/", root.display()))
        .name("lineitem")
        .partition_column("year", DataType::Int32)
        .partition_column("month", DataType::Int32)
        .build(&ctx.state())
        .await?;
    ctx.register_table("lineitem", Arc::new(table))?;
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

async fn run(lineitem: &Path, planning: &Path, work: &Path, runs: usize) -> Result<()> {
    let setup = BallistaSetup::default();
    let remote = cluster::start_cluster(&setup, 2, 1, QueryContext::new("bench"))
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(e.to_string().into()))?;
    register(&remote, lineitem).await?;
    let local = SessionContext::new();
    register(&local, lineitem).await?;

    let pretty = |b: &[datafusion::arrow::array::RecordBatch]| {
        datafusion::arrow::util::pretty::pretty_format_batches(b).map(|t| t.to_string())
    };
    let expected = pretty(&local.sql(Q1).await?.collect().await?)?;
    let before = dir_bytes(work);
    let got = pretty(&remote.sql(Q1).await?.collect().await?)?;
    let shuffle_bytes = dir_bytes(work) - before;
    assert_eq!(got, expected, "the cluster's Q1 differs from the local one");

    let mut t_local = Vec::new();
    let mut t_remote = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        local.sql(Q1).await?.collect().await?;
        t_local.push(started.elapsed());
        let started = Instant::now();
        remote.sql(Q1).await?.collect().await?;
        t_remote.push(started.elapsed());
    }
    t_local.sort();
    t_remote.sort();
    let (l, r) = (t_local[runs / 2], t_remote[runs / 2]);
    println!("Q1 (TPC-H lineitem, {runs} runs, median): local {l:.2?}, Ballista 2 executors {r:.2?}, ratio cluster/local {:.2}", r.as_secs_f64() / l.as_secs_f64());
    println!("Q1 shuffle bytes written by the executors: {shuffle_bytes}");

    // The codec on a 5,000-file scan node.
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(format!("file://{}/", planning.display()))
        .partition_column("day", DataType::Int32)
        .build(&ctx.state())
        .await?;
    ctx.register_table("t", Arc::new(table))?;
    let plan = ctx
        .sql("SELECT v FROM t WHERE v > 10")
        .await?
        .create_physical_plan()
        .await?;
    let scan = find_scan(&plan).expect("a scan");
    let files = scan
        .downcast_ref::<PartitionedScanExec>()
        .map(|s| s.file_count())
        .unwrap_or(0);
    let codec = setup.physical_codec();
    let mut encode = Vec::new();
    let mut decode = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..(runs * 4).max(20) {
        bytes.clear();
        let started = Instant::now();
        codec.try_encode(
            Arc::clone(&scan),
            &mut bytes,
            &DefaultPhysicalProtoConverter {},
        )?;
        encode.push(started.elapsed());
        let started = Instant::now();
        codec.try_decode(
            &bytes,
            &[],
            &ctx.task_ctx(),
            &DefaultPhysicalProtoConverter {},
        )?;
        decode.push(started.elapsed());
    }
    encode.sort();
    decode.sort();
    let (e, d) = (encode[encode.len() / 2], decode[decode.len() / 2]);
    println!(
        "scan node with {files} files: {} bytes ({:.0} bytes/file), encode {e:.2?}, decode {d:.2?}, encode+decode {:.2?} (target < 5 ms)",
        bytes.len(),
        bytes.len() as f64 / files.max(1) as f64,
        e + d
    );
    Ok(())
}

fn find_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if plan.is::<PartitionedScanExec>() {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(find_scan)
}
