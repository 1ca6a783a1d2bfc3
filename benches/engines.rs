//! lakefusion on one machine, on an in-process Ballista cluster (2
//! executors) and on in-process datafusion-distributed workers (2), in one
//! run, and the wire cost of a scan node.
//!
//! ```text
//! cargo bench --features ballista,datafusion-distributed --bench engines -- [--sf 1] [--runs 5]
//! ```
//!
//! * TPC-H Q1 and a join (each line item against the last line of its
//!   order) on the lineitem lake of `scan_vs_listing` (generated there,
//!   shared under `<target>/lakefusion-bench`): locally, on Ballista, on
//!   datafusion-distributed; every answer checked against the local one.
//!   Ballista's shuffle bytes are the bytes its executors wrote to their work
//!   directories (the process's `TMPDIR` is pointed at a fresh directory).
//! * A `PartitionedScanExec` over 5,000 files: encoded bytes, encode and
//!   decode time, whole (as Ballista's scheduler sends the carrier's scan) and
//!   as the copy one of 2 datafusion-distributed tasks is sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;
use lakefusion::ballista::BallistaSetup;
use lakefusion::{Deployment, PartitionedScanExec, PartitionedTable, QueryContext};

#[path = "../tests/it/cluster.rs"]
mod cluster;
#[path = "../tests/it/workers.rs"]
mod workers;

const Q1: &str = "SELECT l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice), \
     sum(l_extendedprice * (1 - l_discount)), avg(l_quantity), avg(l_discount), count(*) \
     FROM lineitem WHERE l_shipdate <= DATE '1998-09-02' \
     GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus";

/// A join of the lake with an aggregate of itself: every line item against
/// the last line of its order (two scans, a shuffle on each side).
const JOIN: &str = "SELECT l.l_returnflag, count(*), sum(l.l_extendedprice) \
     FROM lineitem l JOIN (SELECT l_orderkey, max(l_linenumber) AS last FROM lineitem GROUP BY l_orderkey) o \
     ON l.l_orderkey = o.l_orderkey AND l.l_linenumber = o.last \
     GROUP BY l.l_returnflag ORDER BY l.l_returnflag";

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

    let deployment = Deployment::default();
    let (distributed, _workers) = {
        let workers = workers::start_workers(&[deployment.clone(), deployment.clone()]).await;
        let ctx = workers::coordinator(&deployment, &workers.urls, 2, 16 << 20);
        (ctx, workers)
    };
    register(&distributed, lineitem).await?;

    let pretty = |b: &[datafusion::arrow::array::RecordBatch]| {
        datafusion::arrow::util::pretty::pretty_format_batches(b).map(|t| t.to_string())
    };
    let engines = [
        ("local", &local),
        ("Ballista 2 executors", &remote),
        ("datafusion-distributed 2 workers", &distributed),
    ];
    for (name, sql) in [("Q1", Q1), ("join", JOIN)] {
        let expected = pretty(&local.sql(sql).await?.collect().await?)?;
        let before = dir_bytes(work);
        for (engine, ctx) in &engines[1..] {
            let got = pretty(&ctx.sql(sql).await?.collect().await?)?;
            assert_eq!(
                got, expected,
                "{engine}'s {name} differs from the local one"
            );
        }
        let shuffle_bytes = dir_bytes(work) - before;
        let mut times = vec![Vec::new(); engines.len()];
        for _ in 0..runs {
            for (i, (_, ctx)) in engines.iter().enumerate() {
                let started = Instant::now();
                ctx.sql(sql).await?.collect().await?;
                times[i].push(started.elapsed());
            }
        }
        let medians: Vec<_> = times
            .iter_mut()
            .map(|t| {
                t.sort();
                t[runs / 2]
            })
            .collect();
        println!("{name} (TPC-H lineitem, {runs} runs, median):");
        for ((engine, _), median) in engines.iter().zip(&medians) {
            println!(
                "  {engine:<34} {median:>10.2?}  ratio to local {:.2}",
                median.as_secs_f64() / medians[0].as_secs_f64()
            );
        }
        println!(
            "  datafusion-distributed / Ballista {:.2}; Ballista shuffle bytes written {shuffle_bytes}",
            medians[2].as_secs_f64() / medians[1].as_secs_f64()
        );
    }

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
    let scan_exec = scan
        .downcast_ref::<PartitionedScanExec>()
        .expect("a lakefusion scan");
    let copy: Arc<dyn ExecutionPlan> = Arc::new(
        scan_exec
            .split_across(2, ctx.state().config_options())?
            .swap_remove(0),
    );
    let codec = setup.physical_codec();
    for (form, node) in [
        ("whole (Ballista)", Arc::clone(&scan)),
        ("one of 2 tasks' copies (datafusion-distributed)", copy),
    ] {
        let mut encode = Vec::new();
        let mut decode = Vec::new();
        let mut bytes = Vec::new();
        for _ in 0..(runs * 4).max(20) {
            bytes.clear();
            let started = Instant::now();
            codec.try_encode(
                Arc::clone(&node),
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
            "scan node over {files} files, {form}: {} bytes ({:.0} bytes/file of the table), encode {e:.2?}, decode {d:.2?}, encode+decode {:.2?}",
            bytes.len(),
            bytes.len() as f64 / files.max(1) as f64,
            e + d
        );
    }
    Ok(())
}

fn find_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if plan.is::<PartitionedScanExec>() {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(find_scan)
}
