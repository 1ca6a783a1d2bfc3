//! What the benchmarks share: timing two sides alternately, medians, the
//! printed `ours / listing` row, and local table URLs. Each bench is a
//! binary of its own that includes this module (`mod common;`) and uses
//! part of it.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use datafusion::error::Result;
use datafusion::prelude::SessionContext;

/// The middle of `times` (the upper middle for an even count).
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The order of the two sides (0 and 1) in run `run`: each goes first every
/// other run, so neither always runs on a warmer cache.
pub fn alternating(run: usize) -> [usize; 2] {
    if run.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// Runs `a` and `b` once each to warm up, then `runs` times each in
/// [`alternating`] order, and returns their medians.
pub async fn time_pair<A, B, FA, FB>(
    runs: usize,
    mut a: A,
    mut b: B,
) -> Result<(Duration, Duration)>
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = Result<()>>,
    FB: Future<Output = Result<()>>,
{
    a().await?;
    b().await?;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 0..runs.max(1) {
        for side in alternating(i) {
            let started = Instant::now();
            if side == 0 {
                a().await?;
                ta.push(started.elapsed());
            } else {
                b().await?;
                tb.push(started.elapsed());
            }
        }
    }
    Ok((median(&mut ta), median(&mut tb)))
}

/// Prints `name`, both times and `ours / listing` (below 1.0: lakefusion
/// is faster), in the columns of [`print_header`].
pub fn print_row(name: &str, ours: Duration, listing: Duration) {
    println!(
        "{:<34} {:>12} {:>12} {:>8.3}",
        name,
        format!("{ours:.2?}"),
        format!("{listing:.2?}"),
        ours.as_secs_f64() / listing.as_secs_f64()
    );
}

/// The header of a block of [`print_row`] lines.
pub fn print_header(title: &str) {
    println!(
        "\n{:<34} {:>12} {:>12} {:>8}",
        title, "ours", "listing", "ratio"
    );
}

/// Runs `sql` to the end, discarding the rows.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<()> {
    ctx.sql(sql).await?.collect().await.map(|_| ())
}

/// The `file://` URL of a local directory (canonical where it exists), as
/// a table root: with its trailing slash.
pub fn file_url(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("file://{}/", path.display())
}
