//! Lake scale: `PartitionedTable` over 10⁵ and 10⁶ files, and `ListingTable`
//! over the 10⁵-file lake, in one run (issue 14's measurements).
//!
//! ```text
//! cargo bench --bench scale -- [--files 1000000,100000] [--listing-files 100000]
//!     [--statistics-files 100000] [--shapes-files 1000000] [--runs 5]
//! ```
//!
//! Each lake is `p=0..N/10` partitions of 10 tiny Parquet files in an
//! `InMemory` store. First, registration on three kinds of store behind
//! `s3://`, each against one plain listing of it (issue 22): S3's shape,
//! object_store's default `list_with_offset` (from the first key), and
//! `InMemory` itself. Then, per lake and side:
//!
//! * registration (`build()` / `ListingTable` inference and creation) on the
//!   store as it is (`memory://`), and behind a *paged* store that answers
//!   listings as S3 does (as `s3://`): 1,000 keys a page, 20 ms a page,
//!   pages one after another, a listing after an offset starting there;
//! * `refresh_partitions` of one partition and of the last ten, on the
//!   paged store;
//! * bytes the registered table holds per file (a counting global allocator:
//!   what registration allocated and did not free);
//! * planning (`create_physical_plan`) a one-partition query the first time
//!   and again (median), and a query over every file (median, with the
//!   allocations it makes per file);
//! * bytes held per file by a table that collects footer statistics, with
//!   and without DataFusion's file metadata cache.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::median;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{col, lit, SessionConfig, SessionContext};
use futures::StreamExt;
use lakefusion::store::paged::{OffsetListing, PagedStore, Pages};
use lakefusion::PartitionedTable;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

/// Counts the bytes allocated and not yet freed, process-wide.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Allocations made (not bytes), process-wide.
static ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FILES_PER_PARTITION: usize = 10;

/// Listings as S3 answers them: 1,000 keys a page, 20 ms a page, one page
/// after another, a listing after an offset starting there (`StartAfter`).
fn s3_pages(offsets: OffsetListing) -> Pages {
    Pages {
        keys: 1_000,
        wait: Duration::from_millis(20),
        offsets,
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]))
}

/// One tiny Parquet file, shared by every object of the lake.
fn tiny_parquet() -> Bytes {
    let batch = RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])
        .expect("batch");
    let mut out = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut out, schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    Bytes::from(out)
}

async fn lake(files: usize) -> Arc<dyn ObjectStore> {
    let store = Arc::new(InMemory::new());
    let bytes = tiny_parquet();
    for i in 0..files {
        let path = Path::from(format!(
            "lake/p={}/part-{}.parquet",
            i / FILES_PER_PARTITION,
            i % FILES_PER_PARTITION
        ));
        store
            .put(&path, PutPayload::from_bytes(bytes.clone()))
            .await
            .expect("put");
    }
    store
}

/// The lake without latency, as `memory:///lake/`.
const MEMORY_ROOT: &str = "memory:///lake/";
/// The lake behind the paged store, as an S3 bucket would be.
const PAGED_ROOT: &str = "s3://bench/lake/";

fn context(store: Arc<dyn ObjectStore>, root: &str) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
    let url = Url::parse(root).expect("url");
    ctx.register_object_store(&url, store);
    ctx
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ours,
    Listing,
}

async fn register(side: Side, ctx: &SessionContext, root: &str) -> Result<Arc<dyn TableProvider>> {
    Ok(match side {
        Side::Ours => Arc::new(
            PartitionedTable::builder(root)
                .schema(schema())
                .partition_column("p", DataType::Int32)
                .build(&ctx.state())
                .await?,
        ),
        Side::Listing => {
            let url = ListingTableUrl::parse(root)?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![("p".to_string(), DataType::Int32)]);
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .infer_schema(&ctx.state())
                .await?;
            Arc::new(ListingTable::try_new(config)?)
        }
    })
}

async fn plan_time(ctx: &SessionContext, sql: &str) -> Result<Duration> {
    let started = Instant::now();
    ctx.sql(sql).await?.create_physical_plan().await?;
    Ok(started.elapsed())
}

async fn measure(side: Side, files: usize, runs: usize) -> Result<()> {
    let name = match side {
        Side::Ours => "PartitionedTable",
        Side::Listing => "ListingTable",
    };
    let store = lake(files).await;

    // Paged registration first: nothing cached yet.
    let paged_store =
        Arc::new(PagedStore::new(Arc::clone(&store), s3_pages(OffsetListing::AtOffset)).await?);
    let paged = context(Arc::clone(&paged_store) as _, PAGED_ROOT);
    let started = Instant::now();
    let on_paged = register(side, &paged, PAGED_ROOT).await?;
    let paged_registration = started.elapsed();
    let paged_pages = paged_store.pages();
    if let Some(table) = on_paged.downcast_ref::<PartitionedTable>() {
        // New data in one partition (pinned: no delimiter listing), and in
        // the last ten (found by a delimiter listing of the root).
        let started = Instant::now();
        table
            .refresh_partitions(&paged.state(), col("p").eq(lit(4321)))
            .await?;
        let one = started.elapsed();
        let last = (files / FILES_PER_PARTITION) as i32 - 10;
        let started = Instant::now();
        table
            .refresh_partitions(&paged.state(), col("p").gt_eq(lit(last)))
            .await?;
        println!(
            "{name:<17} {files:>9} files: refresh_partitions on the paged store: p = 4321 {one:>9.2?}, p >= {last} (10 partitions) {:>9.2?}",
            started.elapsed()
        );
    }
    drop(on_paged);

    let ctx = context(Arc::clone(&store), MEMORY_ROOT);
    let before = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let table = register(side, &ctx, MEMORY_ROOT).await?;
    let registration = started.elapsed();
    let held = LIVE.load(Ordering::Relaxed) - before;
    ctx.register_table("t", table)?;

    let one = "SELECT sum(v) FROM t WHERE p = 4321";
    let all = "SELECT sum(v) FROM t";
    let first_one = plan_time(&ctx, one).await?;
    let mut again = Vec::new();
    for _ in 0..runs {
        again.push(plan_time(&ctx, one).await?);
    }
    let mut every = Vec::new();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..runs {
        every.push(plan_time(&ctx, all).await?);
    }
    let allocations_per_file =
        (ALLOCATIONS.load(Ordering::Relaxed) - allocations) as f64 / (runs * files) as f64;
    println!(
        "{name:<17} {files:>9} files: registration {registration:>9.2?} (paged 20 ms/1,000 keys: {paged_registration:>9.2?}, {paged_pages} pages), \
         held {:>5} B/file, plan one partition first {first_one:>9.2?} / again {:>9.2?}, plan all files {:>9.2?} ({allocations_per_file:.1} allocations per file)",
        held / files as isize,
        median(&mut again),
        median(&mut every)
    );
    Ok(())
}

/// Registration on three kinds of store behind the same `s3://` root,
/// against one plain listing (`list`) of the same store: S3's shape, where
/// a listing after an offset starts there; object_store's default
/// `list_with_offset` (pages as S3's, but each listing after an offset
/// reads from the first key), as `LocalFileSystem`, S3 Express One Zone,
/// Azurite or a wrapper that does not forward the method give; and
/// `InMemory` itself, which holds every key after its first answer.
async fn measure_listing_shapes(files: usize) -> Result<()> {
    let store = lake(files).await;
    let shapes: [(&str, Arc<dyn ObjectStore>); 3] = [
        (
            "S3's shape (offsets start there)",
            Arc::new(PagedStore::new(Arc::clone(&store), s3_pages(OffsetListing::AtOffset)).await?),
        ),
        (
            "default list_with_offset (from the first key)",
            Arc::new(
                PagedStore::new(Arc::clone(&store), s3_pages(OffsetListing::FromStart)).await?,
            ),
        ),
        ("InMemory as s3:// (one answer)", Arc::clone(&store)),
    ];
    for (shape, shaped) in shapes {
        let started = Instant::now();
        let listed = shaped.list(Some(&Path::from("lake"))).count().await;
        let plain = started.elapsed();
        assert_eq!(listed, files);
        let ctx = context(shaped, PAGED_ROOT);
        let started = Instant::now();
        let table = register(Side::Ours, &ctx, PAGED_ROOT).await?;
        let registration = started.elapsed();
        let table = table
            .downcast_ref::<PartitionedTable>()
            .expect("our side registers a PartitionedTable");
        assert_eq!(table.index().file_count(), files);
        println!(
            "PartitionedTable  {files:>9} files: registration on {shape:<46} {registration:>9.2?}, one plain listing {plain:>9.2?}: {:.2}× the listing",
            registration.as_secs_f64() / plain.as_secs_f64()
        );
    }
    Ok(())
}

/// Bytes held per file by a table that collects footer statistics (every
/// footer read at registration): in a default session, whose runtime also
/// caches the footers it read (DataFusion's file metadata cache, 50 MiB by
/// default), and in one with that cache off, which leaves the table's own.
async fn measure_with_statistics(files: usize) -> Result<()> {
    let store = lake(files).await;
    for metadata_cache in [true, false] {
        let config = SessionConfig::new().with_target_partitions(4);
        let mut runtime = RuntimeEnvBuilder::new();
        if !metadata_cache {
            runtime = runtime.with_metadata_cache_limit(0);
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
        ctx.register_object_store(&Url::parse(MEMORY_ROOT).expect("url"), Arc::clone(&store));
        let before = LIVE.load(Ordering::Relaxed);
        let started = Instant::now();
        let table = PartitionedTable::builder(MEMORY_ROOT)
            .schema(schema())
            .partition_column("p", DataType::Int32)
            .collect_statistics(true)
            .build(&ctx.state())
            .await?;
        let registration = started.elapsed();
        let held = LIVE.load(Ordering::Relaxed) - before;
        assert_eq!(table.index().file_count(), files);
        println!(
            "{:<17} {files:>9} files: with statistics, metadata cache {}: registration {registration:>9.2?}, held {:>5} B/file",
            "PartitionedTable",
            if metadata_cache { "on " } else { "off" },
            held / files as isize
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut files = vec![1_000_000, 100_000];
    let mut statistics_files = vec![100_000];
    let mut listing_files = vec![100_000];
    let mut shapes_files = vec![1_000_000];
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let list = |v: Option<String>| -> Vec<usize> {
            v.expect("a comma-separated list")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("a number of files"))
                .collect()
        };
        match a.as_str() {
            "--files" => files = list(args.next()),
            "--listing-files" => listing_files = list(args.next()),
            "--statistics-files" => statistics_files = list(args.next()),
            "--shapes-files" => shapes_files = list(args.next()),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => {} // cargo bench passes --bench
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "machine: {} cores; {FILES_PER_PARTITION} files per partition; medians of {runs}",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for &n in &shapes_files {
            measure_listing_shapes(n).await?;
        }
        for &n in &files {
            measure(Side::Ours, n, runs).await?;
        }
        for &n in &statistics_files {
            measure_with_statistics(n).await?;
        }
        for &n in &listing_files {
            measure(Side::Listing, n, runs).await?;
        }
        Ok(())
    })
}
