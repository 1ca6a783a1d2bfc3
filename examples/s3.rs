//! The quickstart on S3: the same events dataset, uploaded to an
//! S3-compatible server this example starts on loopback (s3s-fs, in-process),
//! registered from its `s3://` URL and options, queried, and written to.
//!
//! ```text
//! cargo run --release --features aws --example s3 [--rows-per-file N]
//! ```
//!
//! Against real S3, only the URL and the options change (or leave the
//! options out and let `AWS_*` environment variables configure the client).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

// Shared with the other examples and the tests: not every item is used here.
#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "../tests/it/s3_server.rs"]
mod s3_server;

use datafusion::error::Result;
use lakefusion::store::register_object_store_for;
use lakefusion::SessionBuilder;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use common::{generate, EXPLAINED};
use s3_server::S3Server;

#[tokio::main]
async fn main() -> Result<()> {
    let (_, rows_per_file, _) = common::parse_args(std::env::args().skip(1));
    let server = S3Server::start("warehouse").await;

    // The dataset, written locally and uploaded as another tool would.
    let local = tempfile::tempdir()?;
    let rows = generate(local.path(), rows_per_file)?;
    let ctx = SessionBuilder::new().build_context();
    // The store for `s3://warehouse`, from its URL and options, with
    // object_store's own `parse_url_opts`.
    let s3 =
        register_object_store_for(ctx.runtime_env().as_ref(), &server.url(), server.options())?;
    let started = Instant::now();
    let uploaded = upload(&s3, local.path(), local.path()).await?;
    println!(
        "uploaded {uploaded} files ({rows} rows) to {}/events/ ({:.1?})",
        server.url(),
        started.elapsed()
    );

    let started = Instant::now();
    let events =
        common::events_table_at(&format!("{}/events/", server.url()), &ctx.state()).await?;
    println!(
        "registered events: {} partitions, {} files ({:.1?}: the root's directories listed at once, one footer)",
        events.index().partitions().len(),
        events.index().file_count(),
        started.elapsed()
    );
    ctx.register_table("events", Arc::new(events))?;

    common::run_queries(&ctx).await?;

    println!("\n-- INSERT INTO: each file is PUT under its final name once every file is whole");
    let started = Instant::now();
    ctx.sql(
        "INSERT INTO events VALUES \
         (900001, 'c9001', 12.5, DATE '2026-04-01', 'eu'), \
         (900002, 'c9002', 7.0, DATE '2026-04-01', 'us')",
    )
    .await?
    .show()
    .await?;
    println!("({:.1?})", started.elapsed());
    ctx.sql("SELECT region, count(*) FROM events WHERE date = DATE '2026-04-01' GROUP BY region ORDER BY region")
        .await?
        .show()
        .await?;

    println!("\n-- EXPLAIN");
    ctx.sql(EXPLAINED).await?.show().await?;
    Ok(())
}

/// Uploads every file under `dir` to `events/<path relative to root>`.
async fn upload(store: &Arc<dyn ObjectStore>, root: &Path, dir: &Path) -> Result<usize> {
    let mut uploaded = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            uploaded += Box::pin(upload(store, root, &path)).await?;
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let key = object_store::path::Path::from(format!("events/{}", relative.display()));
        store
            .put(&key, PutPayload::from(std::fs::read(&path)?))
            .await?;
        uploaded += 1;
    }
    Ok(uploaded)
}
