//! Writes that replace, against what a user would do instead, in one run.
//!
//! ```text
//! cargo bench --bench maintenance -- [--partitions 100] [--files-per-partition 100]
//!     [--rows 100] [--latency-ms 20] [--runs 3]
//! ```
//!
//! Each part runs on the local disk (a temporary directory) and on an
//! in-memory store behind object_store's `ThrottledStore`, which waits
//! `--latency-ms` before every request (reads, listings, writes, deletes);
//! requests are counted by the crate's `FaultyStore`.
//!
//! 1. **Compaction.** A lake of `--partitions` × `--files-per-partition`
//!    small files: a full scan (a fresh session: `build()`, then
//!    `count(*)` and `sum`) before and after `compact()`, the ratio, and
//!    compaction's own time. Compaction changes the lake, so it runs once
//!    per store; the scans are medians of `--runs`.
//! 2. **`INSERT OVERWRITE` of one partition** (`--files-per-partition` ×
//!    `--rows` rows) against DataFusion's `COPY … TO` of the same rows into
//!    a fresh directory (what a user has without it), medians of `--runs`.
//! 3. **The protocol's own cost**: the requests of an `INSERT INTO` one
//!    partition and of a `build()` on the latency store, by kind, with
//!    their times (the journal's objects and listings are part of them).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::median;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::store::faults::{FaultyStore, RequestKind};
use lakefusion::{CompactOptions, PartitionedTable, SessionBuilder};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use url::Url;

struct Args {
    partitions: usize,
    files_per_partition: usize,
    rows: usize,
    latency: Duration,
    runs: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        partitions: 100,
        files_per_partition: 100,
        rows: 100,
        latency: Duration::from_millis(20),
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> usize {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} N"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--partitions" => args.partitions = number(it.next(), "--partitions"),
            "--files-per-partition" => {
                args.files_per_partition = number(it.next(), "--files-per-partition")
            }
            "--rows" => args.rows = number(it.next(), "--rows"),
            "--latency-ms" => {
                args.latency = Duration::from_millis(number(it.next(), "--latency-ms") as u64)
            }
            "--runs" => args.runs = number(it.next(), "--runs"),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn main() -> Result<()> {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

const FULL_SCAN: &str = "SELECT count(*), sum(v) FROM t";

/// Where a lake lives: a store, the URL sessions register it under, and
/// the table root.
struct Lake {
    name: &'static str,
    /// The store as written to (unthrottled).
    raw: Arc<dyn ObjectStore>,
    url: String,
    root: String,
    latency: Duration,
    _dir: Option<tempfile::TempDir>,
}

impl Lake {
    fn local() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let raw = Arc::new(LocalFileSystem::new_with_prefix(dir.path())?);
        Ok(Self {
            name: "local disk",
            raw,
            url: "file://".into(),
            root: format!("file://{}/lake/", dir.path().display()),
            latency: Duration::ZERO,
            _dir: Some(dir),
        })
    }

    fn remote(latency: Duration) -> Self {
        Self {
            name: "latency store",
            raw: Arc::new(InMemory::new()),
            url: "memory://".into(),
            root: "memory:///lake/".into(),
            latency,
            _dir: None,
        }
    }

    /// A fresh session over a fresh counted (and, for the remote lake,
    /// throttled) view of the store.
    fn session(&self) -> (SessionContext, Arc<FaultyStore>) {
        let inner: Arc<dyn ObjectStore> = if self.latency.is_zero() {
            Arc::new(LocalFileSystem::new())
        } else {
            let l = self.latency;
            Arc::new(ThrottledStore::new(
                Arc::clone(&self.raw),
                ThrottleConfig {
                    wait_get_per_call: l,
                    wait_list_per_call: l,
                    wait_list_with_delimiter_per_call: l,
                    wait_put_per_call: l,
                    wait_delete_per_call: l,
                    ..Default::default()
                },
            ))
        };
        let store = FaultyStore::new(inner);
        let ctx = SessionBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(4))
            .with_object_store(
                Url::parse(&self.url).expect("url"),
                store.clone() as Arc<dyn ObjectStore>,
            )
            .build_context();
        (ctx, store)
    }

    async fn table(&self, ctx: &SessionContext) -> Result<PartitionedTable> {
        Ok(PartitionedTable::builder(&self.root)
            .partition_column("p", DataType::Int32)
            .build(&ctx.state())
            .await?)
    }

    /// Writes `partitions` × `files` files of `rows` rows (ids ascending).
    async fn write(&self, args: &Args) -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        for p in 0..args.partitions {
            for f in 0..args.files_per_partition {
                let base = ((p * args.files_per_partition + f) * args.rows) as i64;
                let ids: Vec<i64> = (base..base + args.rows as i64).collect();
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from(ids.clone())),
                        Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 97))),
                        Arc::new(StringArray::from_iter_values(
                            ids.iter().map(|i| format!("s{}", i % 13)),
                        )),
                    ],
                )?;
                let mut buffer = Vec::new();
                let mut writer = ArrowWriter::try_new(&mut buffer, Arc::clone(&schema), None)?;
                writer.write(&batch)?;
                writer.close()?;
                let path = Path::from(format!("lake/p={p}/part-{f}.parquet"));
                self.raw.put(&path, PutPayload::from(buffer)).await?;
            }
        }
        Ok(())
    }

    /// A fresh session's `build()` and full scan.
    async fn full_scan(&self) -> Result<Duration> {
        let (ctx, _) = self.session();
        let started = Instant::now();
        ctx.register_table("t", Arc::new(self.table(&ctx).await?))?;
        ctx.sql(FULL_SCAN).await?.collect().await?;
        Ok(started.elapsed())
    }
}

async fn medians(runs: usize, mut f: impl AsyncFnMut() -> Result<Duration>) -> Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(f().await?);
    }
    Ok(median(&mut times))
}

async fn run(args: Args) -> Result<()> {
    println!(
        "{} partitions x {} files x {} rows; {} ms a request on the latency store; medians of {} runs; {} cores",
        args.partitions,
        args.files_per_partition,
        args.rows,
        args.latency.as_millis(),
        args.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for lake in [Lake::local()?, Lake::remote(args.latency)] {
        lake.write(&args).await?;
        compaction(&lake, &args).await?;
    }
    for lake in [Lake::local()?, Lake::remote(args.latency)] {
        lake.write(&args).await?;
        overwrite_vs_copy(&lake, &args).await?;
    }
    protocol_requests(&args).await
}

/// Part 1: a full scan before and after `compact()`, and its own time.
async fn compaction(lake: &Lake, args: &Args) -> Result<()> {
    let before = medians(args.runs, async || lake.full_scan().await).await?;
    let (ctx, store) = lake.session();
    let table = lake.table(&ctx).await?;
    store.reset_counts();
    let started = Instant::now();
    let done = table
        .compact(&ctx.state(), None, CompactOptions::default())
        .await?;
    let took = started.elapsed();
    let requests = store.requests();
    let after = medians(args.runs, async || lake.full_scan().await).await?;
    println!(
        "compaction on the {}: {} files -> {} in {} partitions ({} KiB -> {} KiB), took {took:.2?} ({requests} requests)",
        lake.name,
        done.files_in,
        done.files_out,
        done.partitions,
        done.bytes_in / 1024,
        done.bytes_out / 1024,
    );
    println!(
        "  build + full scan: before {before:.2?}, after {after:.2?}, before/after {:.2}",
        before.as_secs_f64() / after.as_secs_f64()
    );
    Ok(())
}

/// Part 2: `INSERT OVERWRITE` of one partition vs `COPY TO` of its rows.
async fn overwrite_vs_copy(lake: &Lake, args: &Args) -> Result<()> {
    let rows = args.files_per_partition * args.rows;
    let source = format!(
        "SELECT value AS id, value % 97 AS v, concat('s', CAST(value % 13 AS VARCHAR)) AS s, 7 AS p \
         FROM generate_series(1, {rows})"
    );
    let mut run = 0;
    let overwrite = medians(args.runs, async || {
        let (ctx, _) = lake.session();
        ctx.register_table("t", Arc::new(lake.table(&ctx).await?))?;
        let started = Instant::now();
        ctx.sql(&format!(
            "INSERT OVERWRITE t SELECT id, v, s, CAST(p AS INT) FROM ({source})"
        ))
        .await?
        .collect()
        .await?;
        Ok(started.elapsed())
    })
    .await?;
    let copy = medians(args.runs, async || {
        run += 1;
        let (ctx, _) = lake.session();
        let target = format!("{}copy-{run}/p=7/", lake.root.trim_end_matches("lake/"));
        let started = Instant::now();
        ctx.sql(&format!(
            "COPY (SELECT id, v, s FROM ({source})) TO '{target}' STORED AS PARQUET"
        ))
        .await?
        .collect()
        .await?;
        Ok(started.elapsed())
    })
    .await?;
    println!(
        "INSERT OVERWRITE of one partition ({rows} rows) on the {}: ours {overwrite:.2?}, COPY TO a fresh directory {copy:.2?}, ours/COPY {:.2}",
        lake.name,
        overwrite.as_secs_f64() / copy.as_secs_f64()
    );
    Ok(())
}

/// Part 3: what the protocol asks of the store, on the latency store.
async fn protocol_requests(args: &Args) -> Result<()> {
    let lake = Lake::remote(args.latency);
    lake.write(&Args {
        partitions: 10,
        files_per_partition: 1,
        ..*args
    })
    .await?;
    let (ctx, store) = lake.session();
    let started = Instant::now();
    let table = lake.table(&ctx).await?;
    let build = started.elapsed();
    let build_lists = store.requests_of(RequestKind::List);
    ctx.register_table("t", Arc::new(table))?;
    store.reset_counts();
    let started = Instant::now();
    ctx.sql("INSERT INTO t VALUES (1, 1, 'x', 3)")
        .await?
        .collect()
        .await?;
    let insert = started.elapsed();
    let writes = store.requests_of(RequestKind::Write);
    let heads = store.requests_of(RequestKind::Head);
    store.reset_counts();
    let started = Instant::now();
    ctx.sql("INSERT OVERWRITE t VALUES (2, 2, 'y', 3)")
        .await?
        .collect()
        .await?;
    let overwrite = started.elapsed();
    println!(
        "protocol on the latency store: build() {build:.2?} with {build_lists} listings (2 of the journal); \
         INSERT INTO one file {insert:.2?} with {writes} writes (the file, the record, its done marker, the record's delete) and {heads} HEAD; \
         INSERT OVERWRITE of one file {overwrite:.2?} with {} listings, {} reads, {} writes",
        store.requests_of(RequestKind::List),
        store.requests_of(RequestKind::Read) + store.requests_of(RequestKind::Head),
        store.requests_of(RequestKind::Write),
    );
    Ok(())
}
