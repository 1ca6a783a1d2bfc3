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

/// Short measurements run until each side has spent this long, so that a
/// query of a few milliseconds is a median of hundreds of runs rather than
/// of `--runs` (on this 2-core machine single runs of the same query move
/// by tens of percent, more than the differences measured).
pub const MIN_TIME_PER_SIDE: Duration = Duration::from_secs(1);
/// ... but at most this many runs per side.
pub const MAX_RUNS: usize = 1_000;

/// The medians of two sides timed alternately, and how many runs each.
pub struct PairTimes {
    pub ours: Duration,
    pub listing: Duration,
    pub runs: usize,
}

/// Runs `ours` and `listing` once each to warm up, then at least `runs`
/// times each in [`alternating`] order, and more (up to [`MAX_RUNS`]) until
/// each side has run for [`MIN_TIME_PER_SIDE`]; returns their medians.
pub async fn time_pair<A, B, FA, FB>(runs: usize, mut ours: A, mut listing: B) -> Result<PairTimes>
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = Result<()>>,
    FB: Future<Output = Result<()>>,
{
    ours().await?;
    listing().await?;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let (mut spent_a, mut spent_b) = (Duration::ZERO, Duration::ZERO);
    let mut run = 0;
    while run < runs.max(1) || (run < MAX_RUNS && spent_a.min(spent_b) < MIN_TIME_PER_SIDE) {
        for side in alternating(run) {
            let started = Instant::now();
            if side == 0 {
                ours().await?;
                let took = started.elapsed();
                spent_a += took;
                ta.push(took);
            } else {
                listing().await?;
                let took = started.elapsed();
                spent_b += took;
                tb.push(took);
            }
        }
        run += 1;
    }
    Ok(PairTimes {
        ours: median(&mut ta),
        listing: median(&mut tb),
        runs: run,
    })
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

/// [`print_row`] for a [`time_pair`] measurement, with its number of runs.
pub fn print_pair(name: &str, times: &PairTimes) {
    println!(
        "{:<34} {:>12} {:>12} {:>8.3}   ({} runs)",
        name,
        format!("{:.2?}", times.ours),
        format!("{:.2?}", times.listing),
        times.ours.as_secs_f64() / times.listing.as_secs_f64(),
        times.runs
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
