//! [`ReadAhead`]: a scan's reads issued ahead of its decoders, many at a
//! time, and [`ReadAheadStore`], the store its readers read through.
//!
//! DataFusion's `FileStream` keeps one request in flight per output
//! partition: footer, then data, then the next file. On an object store
//! every request costs tens of milliseconds, so a scan of many small files
//! waits on latency, not bandwidth. A `ReadAhead` is shared by the output
//! partitions of one execution of a scan and reads, in the order the
//! partitions will open them, the files they will need next:
//!
//! * a file of at most `whole_file_bytes` in one request, footer and data
//!   together;
//! * of a larger file, its last `footer_bytes` (the footer the opener reads
//!   first), then — when the scan reads every row group ([`LargeFiles`]) —
//!   the column chunks it projects, in pieces of at most [`PIECE_BYTES`],
//!   a piece of each file being decoded in turn; otherwise the opener reads
//!   the row groups it keeps itself.
//!
//! At most `requests` reads are in flight at once, and the bytes held are
//! reserved from the session's `MemoryPool` (and at most `bytes`) before a
//! read is issued (a `LIMIT`ed scan holds at most one file per partition);
//! a file's bytes are released when its last reader is dropped, a piece's
//! as soon as the decoder has read all of it. A reader that reaches a file
//! (or a piece) before the read-ahead does claims its one read itself.
//! The readers ask their store as usual: [`ReadAheadStore`] answers from
//! what was read ahead (waiting for a read in flight rather than issuing a
//! second one) and passes everything else — and any read that failed ahead —
//! to the real store, whose error then names the file.
//!
//! Nothing is read before the first poll of a partition, and everything in
//! flight is dropped (its request cancelled) when the last partition stream
//! of the execution is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use datafusion::common::runtime::SpawnedTask;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, Gauge, MetricBuilder, MetricCategory, MetricType,
};
use futures::future::{BoxFuture, Shared};
use futures::stream::{self, BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use tokio::sync::Notify;

use super::retry::resolve_range;

/// What a read-ahead reads of a file larger than `whole_file_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LargeFiles {
    /// Its footer only: the decoders fetch the row groups they keep
    /// themselves (a scan with a predicate may prune most of them, one with
    /// a `LIMIT` may stop after a few).
    Footer,
    /// Its footer, then — once the footer is in — the column chunks of
    /// these top-level columns (`None`: all) in every row group, in file
    /// order (the order the decoder reads them), in pieces of at most
    /// [`PIECE_BYTES`].
    Columns(Option<Arc<HashSet<String>>>),
}

/// How far a read-ahead reads (a scan derives them from its
/// `ScanOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadAheadOptions {
    /// Reads in flight at once, over all partitions of the scan.
    pub requests: usize,
    /// Bytes read ahead and not yet consumed, at most.
    pub bytes: usize,
    /// Files read ahead and not yet consumed, at most.
    pub files: usize,
    /// Files up to this size are read in one request; of a larger one,
    /// the last `footer_bytes` first.
    pub whole_file_bytes: u64,
    /// The end of a large file read first: what the decoder reads for the
    /// footer (DataFusion's `metadata_size_hint`, 512 KiB by default), at
    /// least [`FOOTER_BYTES`].
    pub footer_bytes: u64,
    /// What is read of a larger file.
    pub large_files: LargeFiles,
    /// Readers decoding at once (the scan's partitions sharing the
    /// read-ahead): the large files whose pieces are issued in turn.
    pub readers: usize,
}

/// The read-ahead the partitions of one execution share: started by the
/// first of them to be polled, kept alive by the streams only (so that
/// dropping them cancels it).
#[derive(Debug, Default)]
pub(crate) struct SharedReadAhead(Mutex<Weak<ReadAhead>>);

impl SharedReadAhead {
    /// The running read-ahead, or the one `start` starts.
    pub(crate) fn get_or_start(&self, start: impl FnOnce() -> ReadAhead) -> Arc<ReadAhead> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = slot.upgrade() {
            return running;
        }
        let started = Arc::new(start());
        *slot = Arc::downgrade(&started);
        started
    }
}

/// Read ahead of a file too large to read whole, at least: its footer, as
/// a reader without a size hint would fetch it in two requests (length,
/// then footer).
pub(crate) const FOOTER_BYTES: u64 = 64 * 1024;

/// Of a large file, column chunks are read ahead in pieces of at most this
/// (and at most the byte budget's share of one request in flight, so that
/// every request in flight fits the budget at once): one connection reads
/// ~100 MB/s from S3, so a file's bandwidth comes from many requests at
/// once, each worth its round trip.
const PIECE_BYTES: u64 = 4 * 1024 * 1024;

/// ... and at least this, whatever the budget's share.
const MIN_PIECE_BYTES: u64 = 64 * 1024;

/// Column chunks this close are read in one piece, the gap with them (not
/// more: a gap is usually columns the scan does not read).
const PIECE_GAP: u64 = 16 * 1024;

/// Metrics of a scan's read-ahead (one per execution, not per partition).
#[derive(Debug, Clone)]
pub(crate) struct ReadAheadMetrics {
    /// Reads issued ahead.
    requests: Count,
    /// Bytes those reads returned.
    bytes: Count,
    /// Reads of the decoders answered from what was read ahead.
    hits: Count,
    /// The most bytes held (reserved) at once.
    peak_bytes: Gauge,
}

impl ReadAheadMetrics {
    pub(crate) fn new(metrics: &ExecutionPlanMetricsSet) -> Self {
        let builder = || {
            MetricBuilder::new(metrics)
                .with_type(MetricType::Dev)
                .with_category(MetricCategory::Bytes)
        };
        Self {
            requests: MetricBuilder::new(metrics)
                .with_type(MetricType::Summary)
                .with_category(MetricCategory::Uncategorized)
                .global_counter("read_ahead_requests"),
            bytes: builder().global_counter("read_ahead_bytes"),
            hits: MetricBuilder::new(metrics)
                .with_type(MetricType::Dev)
                .with_category(MetricCategory::Uncategorized)
                .global_counter("read_ahead_hits"),
            peak_bytes: builder().global_gauge("read_ahead_peak_bytes"),
        }
    }
}

type Fetch = Shared<BoxFuture<'static, std::result::Result<Bytes, Arc<object_store::Error>>>>;

/// One read issued ahead: a whole small file, a large file's footer, or a
/// piece of a large file's column chunks.
struct Part {
    range: Range<u64>,
    fetch: Fetch,
    /// A piece goes as soon as the decoder has read all of it (it reads
    /// each column chunk once); a footer or a whole file stays until the
    /// file's last reader closes (footers are read more than once).
    piece: bool,
    /// Bytes of it served to readers so far...
    served: u64,
    /// ... and how many the decoder will read (a piece's gaps are never
    /// read): once served, a piece goes.
    wanted: u64,
}

/// The pieces of a large file's column chunks not issued yet.
enum Pieces {
    /// Known once its footer is in.
    Unplanned,
    /// In file order; the driver issues them front first, a reader that
    /// gets to one first issues it itself.
    Planned(VecDeque<Piece>),
}

/// A range of a large file to read ahead, and how many of its bytes are
/// column chunks the scan reads (the rest is gaps between them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    range: Range<u64>,
    wanted: u64,
}

/// What the read-ahead knows of one file.
enum Entry {
    /// Read (or being read) ahead: its parts, holding `reserved` bytes.
    Ahead {
        parts: Vec<Part>,
        reserved: usize,
        pieces: Pieces,
    },
    /// Not read ahead (no budget left when its reader came), or done.
    Passed,
}

/// What [`State::claim`] found or started for a file.
enum Claim {
    /// The file's first read (whole, or its footer), started by this claim
    /// or before it.
    Read { fetch: Fetch, started_here: bool },
    /// The file is not read ahead.
    Passed,
    /// No budget for it now, but bytes are held: there will be, once a
    /// reader releases them.
    NoBudget,
    /// A large file whose footer is cached: no first read, its pieces are
    /// planned.
    Planned,
}

/// What [`State::issue_piece`] did with a piece.
enum Issued {
    Read(Fetch),
    /// No budget for it now; `ever` is false if none will ever be (nothing
    /// is held, so waiting for a release would wait forever).
    NoBudget {
        ever: bool,
    },
    /// The file is done or no longer read ahead.
    Gone,
}

/// The bytes a read-ahead holds, and how many files they are of.
struct Held {
    reservation: MemoryReservation,
    files: usize,
}

/// The state a [`ReadAhead`] shares with its driver and its store.
struct State {
    store: Arc<dyn ObjectStore>,
    /// The files the scan will read, by path.
    files: HashMap<Path, ObjectMeta>,
    entries: Mutex<HashMap<Path, Entry>>,
    /// Readers open per file: DataFusion may open a second reader of a file
    /// before it drops the first (bloom filters, then data).
    readers: Mutex<HashMap<Path, usize>>,
    /// The bytes held, and how many files they are of.
    held: Mutex<Held>,
    /// Signalled when bytes are released.
    released: Notify,
    options: ReadAheadOptions,
    metrics: ReadAheadMetrics,
    /// The footers the decoders find without reading (DataFusion's file
    /// metadata cache): of those files no footer is read ahead.
    footers: Option<Arc<FileMetadataCache>>,
}

impl State {
    fn entries(&self) -> MutexGuard<'_, HashMap<Path, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The footer of `meta`'s file as the decoders will find it in the
    /// metadata cache, if they will.
    fn cached_footer(&self, meta: &ObjectMeta) -> Option<Arc<ParquetMetaData>> {
        let entry = self.footers.as_ref()?.get(&meta.location)?;
        if !entry.is_valid_for(meta) {
            return None;
        }
        let cached = entry
            .file_metadata
            .as_any()
            .downcast_ref::<CachedParquetMetaData>()?;
        Some(Arc::clone(cached.parquet_metadata()))
    }

    /// Whether a file of `size` bytes is read whole.
    fn is_small(&self, size: u64) -> bool {
        size <= self.options.whole_file_bytes
    }

    /// Which bytes of a file its first read covers: all of a small one, the
    /// footer end of a larger one.
    fn extent(&self, size: u64) -> (u64, u64) {
        if self.is_small(size) {
            (0, size)
        } else {
            let len = self.options.footer_bytes.max(FOOTER_BYTES).min(size);
            (size - len, len)
        }
    }

    /// Reserves `len` more bytes (of one more file if `new_file`) within
    /// the budgets and the pool. `Err(true)` when nothing is held, so
    /// waiting would never succeed.
    fn try_reserve(&self, len: usize, new_file: bool) -> std::result::Result<(), bool> {
        let mut held = self.held();
        let bytes = held.reservation.size();
        if (new_file && held.files >= self.options.files)
            || bytes + len > self.options.bytes
            || held.reservation.try_grow(len).is_err()
        {
            return Err(held.reservation.size() == 0);
        }
        if new_file {
            held.files += 1;
        }
        self.metrics.peak_bytes.set_max(held.reservation.size());
        Ok(())
    }

    /// The first read of `path`: the one in flight or done, or a new one if
    /// the budgets allow. The driver claims files in order; a reader that
    /// gets to its file first claims it itself (`by_reader`), so the file
    /// is still read once — and without the budget, it is passed to the
    /// real store instead.
    fn claim(&self, path: &Path, by_reader: bool) -> Claim {
        let mut entries = self.entries();
        match entries.get(path) {
            Some(Entry::Ahead { parts, .. }) => {
                return match parts.first().filter(|p| !p.piece) {
                    Some(first) => Claim::Read {
                        fetch: first.fetch.clone(),
                        started_here: false,
                    },
                    None => Claim::Planned,
                };
            }
            Some(Entry::Passed) => return Claim::Passed,
            None => {}
        }
        let meta = self.files.get(path);
        // A large file whose footer the decoders will find cached: no
        // footer read; its pieces (if any) planned from that footer.
        if let Some(meta) = meta.filter(|m| !self.is_small(m.size)) {
            if let Some(footer) = self.cached_footer(meta) {
                let planned = match &self.options.large_files {
                    LargeFiles::Columns(columns) => self.pieces(meta, |piece, end| {
                        pieces_in(&footer, meta.size, columns.as_deref(), piece, end)
                    }),
                    LargeFiles::Footer => Vec::new(),
                };
                if planned.is_empty() || self.try_reserve(0, true).is_err() {
                    entries.insert(path.clone(), Entry::Passed);
                    return Claim::Passed;
                }
                entries.insert(
                    path.clone(),
                    Entry::Ahead {
                        parts: Vec::new(),
                        reserved: 0,
                        pieces: Pieces::Planned(planned.into()),
                    },
                );
                return Claim::Planned;
            }
        }
        let (start, len) = match meta.map(|m| self.extent(m.size)) {
            Some((start, len)) if len > 0 => (start, len),
            _ => {
                entries.insert(path.clone(), Entry::Passed);
                return Claim::Passed;
            }
        };
        if let Err(never) = self.try_reserve(len as usize, true) {
            if by_reader || never {
                entries.insert(path.clone(), Entry::Passed);
                return Claim::Passed;
            }
            return Claim::NoBudget;
        }
        let fetch = self.fetch(path.clone(), start..start + len);
        let large = meta.is_some_and(|m| !self.is_small(m.size));
        let pieces = match &self.options.large_files {
            LargeFiles::Columns(_) if large => Pieces::Unplanned,
            _ => Pieces::Planned(VecDeque::new()),
        };
        entries.insert(
            path.clone(),
            Entry::Ahead {
                parts: vec![Part {
                    range: start..start + len,
                    fetch: fetch.clone(),
                    piece: false,
                    served: 0,
                    wanted: len,
                }],
                reserved: len as usize,
                pieces,
            },
        );
        Claim::Read {
            fetch,
            started_here: true,
        }
    }

    /// Plans the pieces of `path` from its `footer` (the file's last bytes),
    /// once: nothing if the footer does not decode (the decoder will say
    /// why, naming the file). The footer is decoded outside the lock.
    fn plan(&self, path: &Path, footer: &Bytes) {
        let unplanned = |entries: &HashMap<Path, Entry>| {
            matches!(
                entries.get(path),
                Some(Entry::Ahead {
                    pieces: Pieces::Unplanned,
                    ..
                })
            )
        };
        if !unplanned(&self.entries()) {
            return;
        }
        let planned = match (&self.options.large_files, self.files.get(path)) {
            (LargeFiles::Columns(columns), Some(meta)) => {
                // Pieces stop where the first read (the file's end) starts,
                // and are at most the budget's share of one request in
                // flight, once the footers of the files read at once are held.
                let metadata = decode_footer(footer, meta.size);
                metadata.map_or_else(Vec::new, |metadata| {
                    self.pieces(meta, |piece, end| {
                        pieces_in(&metadata, meta.size, columns.as_deref(), piece, end)
                    })
                })
            }
            _ => Vec::new(),
        };
        let mut entries = self.entries();
        if unplanned(&entries) {
            if let Some(Entry::Ahead { pieces, .. }) = entries.get_mut(path) {
                *pieces = Pieces::Planned(planned.into());
            }
        }
    }

    /// The pieces `plan` makes of `meta`'s file, given their largest size
    /// and where they end: before the first read (the file's end) starts,
    /// and at most the budget's share of one request in flight, once the
    /// footers of the files read at once are held.
    fn pieces(&self, meta: &ObjectMeta, plan: impl FnOnce(u64, u64) -> Vec<Piece>) -> Vec<Piece> {
        let (footer_start, footer_len) = self.extent(meta.size);
        let footers = footer_len as usize * self.options.readers.max(1);
        let share = self.options.bytes.saturating_sub(footers) / self.options.requests.max(1);
        plan(
            (share as u64).clamp(MIN_PIECE_BYTES, PIECE_BYTES),
            footer_start,
        )
    }

    /// Issues the next planned piece of `path` within the budgets, or says
    /// why not; `None` when no piece is left.
    fn issue_piece(&self, path: &Path) -> Option<Issued> {
        let mut entries = self.entries();
        let Some(Entry::Ahead {
            parts,
            reserved,
            pieces: Pieces::Planned(planned),
        }) = entries.get_mut(path)
        else {
            return Some(Issued::Gone);
        };
        let len = planned
            .front()
            .map(|p| (p.range.end - p.range.start) as usize)?;
        if let Err(never) = self.try_reserve(len, false) {
            return Some(Issued::NoBudget { ever: !never });
        }
        let piece = planned.pop_front()?;
        let fetch = self.fetch(path.clone(), piece.range.clone());
        parts.push(Part {
            range: piece.range,
            fetch: fetch.clone(),
            piece: true,
            served: 0,
            wanted: piece.wanted,
        });
        *reserved += len;
        Some(Issued::Read(fetch))
    }

    /// One request for `range` of `location`, shared by whoever awaits it.
    fn fetch(&self, location: Path, range: Range<u64>) -> Fetch {
        let store = Arc::clone(&self.store);
        let metrics = self.metrics.clone();
        async move {
            metrics.requests.add(1);
            let options = GetOptions {
                range: Some(GetRange::Bounded(range)),
                ..Default::default()
            };
            let bytes = match store.get_opts(&location, options).await {
                Ok(result) => result.bytes().await,
                Err(e) => Err(e),
            };
            let bytes = bytes.map_err(Arc::new)?;
            metrics.bytes.add(bytes.len());
            Ok(bytes)
        }
        .boxed()
        .shared()
    }

    fn opened(&self, path: &Path) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        *readers.entry(path.clone()).or_default() += 1;
    }

    /// A reader of `path` is done; when it was the last, the file's bytes go.
    fn closed(&self, path: &Path) {
        {
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            match readers.get_mut(path) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    return;
                }
                _ => {
                    readers.remove(path);
                }
            }
        }
        self.release(path);
    }

    fn release(&self, path: &Path) {
        let reserved = match self.entries().insert(path.clone(), Entry::Passed) {
            Some(Entry::Ahead { reserved, .. }) => reserved,
            _ => return,
        };
        let mut held = self.held();
        held.reservation.shrink(reserved);
        held.files -= 1;
        drop(held);
        self.released.notify_one();
    }

    /// The reads of `path` that cover `range` together, in order, or `None`.
    /// Planned pieces within `range` that the driver has not issued yet are
    /// issued here, for the reader that got to them first, if the budget
    /// allows them all (they hold the next row groups too); otherwise they
    /// are taken out, and the reader reads the range itself.
    fn covering(&self, path: &Path, range: &Range<u64>) -> Option<Vec<(u64, Fetch)>> {
        let mut entries = self.entries();
        let Some(Entry::Ahead {
            parts,
            reserved,
            pieces,
        }) = entries.get_mut(path)
        else {
            return None;
        };
        let overlaps = |r: &Range<u64>| r.start < range.end && r.end > range.start;
        if let Pieces::Planned(planned) = pieces {
            let (wanted, rest): (VecDeque<Piece>, VecDeque<Piece>) =
                planned.drain(..).partition(|p| overlaps(&p.range));
            *planned = rest;
            let len: usize = wanted
                .iter()
                .map(|p| (p.range.end - p.range.start) as usize)
                .sum();
            // All of them or none: the reader reads the range itself.
            if !wanted.is_empty() && self.try_reserve(len, false).is_ok() {
                for piece in wanted {
                    parts.push(Part {
                        fetch: self.fetch(path.clone(), piece.range.clone()),
                        range: piece.range,
                        piece: true,
                        served: 0,
                        wanted: piece.wanted,
                    });
                }
                *reserved += len;
            }
        }
        let mut found: Vec<(u64, u64, Fetch)> = parts
            .iter()
            .filter(|p| overlaps(&p.range))
            .map(|p| (p.range.start, p.range.end, p.fetch.clone()))
            .collect();
        found.sort_by_key(|(start, _, _)| *start);
        let mut at = range.start;
        for (start, end, _) in &found {
            if *start > at {
                break;
            }
            at = at.max(*end);
        }
        if at < range.end || found.is_empty() {
            return None;
        }
        Some(found.into_iter().map(|(start, _, f)| (start, f)).collect())
    }

    /// Counts `range` as read from the pieces of `path` it covers; a piece
    /// whose column chunks were all read goes.
    fn served(&self, path: &Path, range: &Range<u64>) {
        let mut freed = 0;
        {
            let mut entries = self.entries();
            let Some(Entry::Ahead {
                parts, reserved, ..
            }) = entries.get_mut(path)
            else {
                return;
            };
            parts.retain_mut(|part| {
                if !part.piece {
                    return true;
                }
                let overlap = range
                    .end
                    .min(part.range.end)
                    .saturating_sub(range.start.max(part.range.start));
                part.served += overlap;
                let whole = part.served >= part.wanted;
                if whole {
                    freed += (part.range.end - part.range.start) as usize;
                }
                !whole
            });
            *reserved -= freed;
        }
        if freed > 0 {
            self.held().reservation.shrink(freed);
            self.released.notify_one();
        }
    }

    /// `range` (given the file's size) of `path`, from what is read ahead,
    /// if it covers the range.
    async fn read(
        &self,
        path: &Path,
        range: impl FnOnce(u64) -> Range<u64>,
    ) -> Option<(ObjectMeta, Bytes)> {
        let meta = self.files.get(path)?;
        let first = match self.claim(path, true) {
            Claim::Read { fetch, .. } => Some(fetch),
            Claim::Planned => None,
            Claim::Passed | Claim::NoBudget => return None,
        };
        let range = range(meta.size);
        if range.start >= range.end {
            return None;
        }
        // The first read is the footer (or the whole file) the decoder
        // reads before anything else: with it in, the pieces are known.
        if let Some(first) = first {
            let first = first.await.ok()?;
            self.plan(path, &first);
        }
        let reads = self.covering(path, &range)?;
        let fetched = futures::future::join_all(
            reads
                .into_iter()
                .map(|(start, fetch)| async move { fetch.await.ok().map(|bytes| (start, bytes)) }),
        )
        .await;
        let bytes: Vec<(u64, Bytes)> = fetched.into_iter().collect::<Option<_>>()?;
        let out = assemble(&bytes, &range)?;
        self.served(path, &range);
        self.metrics.hits.add(1);
        Some((meta.clone(), out))
    }
}

/// `range` from `reads` (their starts and bytes, in order, together
/// covering it): a slice of one, or the pieces copied together.
fn assemble(reads: &[(u64, Bytes)], range: &Range<u64>) -> Option<Bytes> {
    let slice = |start: u64, bytes: &Bytes, from: u64, to: u64| {
        let (from, to) = ((from - start) as usize, (to - start) as usize);
        (to <= bytes.len()).then(|| bytes.slice(from..to))
    };
    if let [(start, bytes)] = reads {
        return slice(*start, bytes, range.start, range.end);
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    let mut at = range.start;
    for (start, bytes) in reads {
        let end = start + bytes.len() as u64;
        if end <= at || at >= range.end {
            continue;
        }
        if *start > at {
            return None;
        }
        out.extend_from_slice(&slice(*start, bytes, at, end.min(range.end))?);
        at = end.min(range.end);
    }
    (at == range.end).then(|| out.freeze())
}

/// The footer of a file of `size` bytes from its last bytes, or `None` if
/// it does not decode from them: the footer is untrusted (a corrupt one may
/// even panic the decoder, see `footer_without_panics`), and the decoder
/// will report it, naming the file.
fn decode_footer(footer: &Bytes, size: u64) -> Option<ParquetMetaData> {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut reader = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
        reader.try_parse_sized(footer, size).ok()?;
        reader.finish().ok()
    }))
    .ok()
    .flatten()
}

/// The pieces to read ahead of a file of `size` bytes with `metadata`: the
/// column chunks of `columns` (top-level names; `None`: all) in every row
/// group before `end` (where the footer read starts; a chunk running into
/// it is cut there), neighbours within [`PIECE_GAP`] read together, in file
/// order, none longer than `piece` bytes. Empty if the footer names chunks
/// outside the file.
fn pieces_in(
    metadata: &ParquetMetaData,
    size: u64,
    columns: Option<&HashSet<String>>,
    piece: u64,
    end: u64,
) -> Vec<Piece> {
    let mut chunks = Vec::new();
    for group in metadata.row_groups() {
        for column in group.columns() {
            // Offsets as written, checked (`byte_range()` asserts).
            let start = column
                .dictionary_page_offset()
                .unwrap_or(column.data_page_offset());
            let (Ok(start), Ok(len)) = (
                u64::try_from(start),
                u64::try_from(column.compressed_size()),
            ) else {
                return Vec::new();
            };
            let Some(chunk_end) = start.checked_add(len).filter(|e| *e <= size) else {
                return Vec::new();
            };
            let wanted = columns.is_none_or(|names| {
                column
                    .column_path()
                    .parts()
                    .first()
                    .is_some_and(|root| names.contains(root))
            });
            if wanted && start < end.min(chunk_end) {
                chunks.push(start..end.min(chunk_end));
            }
        }
    }
    chunks.sort_by_key(|c| c.start);
    let mut pieces: Vec<Piece> = Vec::new();
    for chunk in chunks {
        match pieces.last_mut() {
            Some(last)
                if chunk.start <= last.range.end + PIECE_GAP
                    && chunk.end.max(last.range.end) - last.range.start <= piece =>
            {
                let new = chunk.end.saturating_sub(chunk.start.max(last.range.end));
                last.range.end = last.range.end.max(chunk.end);
                last.wanted += new;
            }
            _ => {
                let mut start = chunk.start;
                while chunk.end - start > piece {
                    pieces.push(Piece {
                        range: start..start + piece,
                        wanted: piece,
                    });
                    start += piece;
                }
                pieces.push(Piece {
                    range: start..chunk.end,
                    wanted: chunk.end - start,
                });
            }
        }
    }
    pieces
}

/// One execution's read-ahead (see the [module docs](self)). Dropping it
/// cancels every read in flight.
pub(crate) struct ReadAhead {
    state: Arc<State>,
    _driver: SpawnedTask<()>,
}

impl fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadAhead")
            .field("options", &self.state.options)
            .finish()
    }
}

impl ReadAhead {
    /// Starts reading `files`, in this order, from `store`. Must be called
    /// from a Tokio runtime (a stream's first poll).
    pub(crate) fn start(
        name: &str,
        store: Arc<dyn ObjectStore>,
        files: Vec<ObjectMeta>,
        options: ReadAheadOptions,
        pool: &Arc<dyn MemoryPool>,
        metrics: ReadAheadMetrics,
        footers: Option<Arc<FileMetadataCache>>,
    ) -> Self {
        let reservation = MemoryConsumer::new(format!("ReadAhead[{name}]")).register(pool);
        let order: Vec<Path> = files.iter().map(|m| m.location.clone()).collect();
        let state = Arc::new(State {
            store,
            files: files.into_iter().map(|m| (m.location.clone(), m)).collect(),
            entries: Mutex::default(),
            readers: Mutex::default(),
            held: Mutex::new(Held {
                reservation,
                files: 0,
            }),
            released: Notify::new(),
            options,
            metrics,
            footers,
        });
        let driver = SpawnedTask::spawn(drive(Arc::clone(&state), order));
        Self {
            state,
            _driver: driver,
        }
    }

    /// `store`, answering reads from what this read-ahead holds.
    pub(crate) fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(ReadAheadStore {
            state: Arc::clone(&self.state),
        })
    }

    /// What readers tell when they open and close a file.
    pub(crate) fn releaser(&self) -> Releaser {
        Releaser(Arc::clone(&self.state))
    }
}

/// Lets the bytes read ahead of a file go once its last reader is done.
#[derive(Clone)]
pub(crate) struct Releaser(Arc<State>);

impl Releaser {
    /// A reader of `path` was opened.
    pub(crate) fn opened(&self, path: &Path) {
        self.0.opened(path);
    }

    /// A reader of `path` is done: when no other is open, its bytes go.
    pub(crate) fn closed(&self, path: &Path) {
        self.0.closed(path);
    }
}

impl fmt::Debug for Releaser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Releaser")
    }
}

/// Claims the files in order, keeping at most `requests` of its reads in
/// flight, and waiting for readers to release bytes when the budget is
/// spent. Of a large file, once its footer is in, it issues the pieces (see
/// [`LargeFiles::Columns`]): a piece of each such file in turn, as the
/// `readers` decoding them at once will want them, with at most `readers`
/// large files' pieces still to issue (the next file's footer is claimed
/// when one is done). Its reads are driven here, so they progress while the
/// readers are busy decoding.
async fn drive(state: Arc<State>, order: Vec<Path>) {
    let requests = state.options.requests.max(1);
    let window = state.options.readers.max(1);
    let mut in_flight = FuturesUnordered::new();
    // Footers awaited before a large file's pieces are known.
    let mut footers = FuturesUnordered::new();
    // Large files with pieces to issue, in turn.
    let mut issuing: VecDeque<Path> = VecDeque::new();
    let mut next = order.into_iter().peekable();
    loop {
        let released = state.released.notified();
        let mut blocked = false;
        // A piece of each large file in turn.
        while in_flight.len() < requests && !blocked {
            let Some(path) = issuing.pop_front() else {
                break;
            };
            match state.issue_piece(&path) {
                Some(Issued::Read(fetch)) => {
                    in_flight.push(fetch);
                    issuing.push_back(path);
                }
                Some(Issued::NoBudget { ever: true }) => {
                    issuing.push_front(path);
                    blocked = true;
                }
                None | Some(Issued::Gone) | Some(Issued::NoBudget { ever: false }) => {}
            }
        }
        // Then the next files, in order.
        while in_flight.len() < requests && !blocked && issuing.len() + footers.len() < window {
            let Some(path) = next.peek().cloned() else {
                break;
            };
            match state.claim(&path, false) {
                Claim::Read {
                    fetch,
                    started_here,
                } => {
                    if started_here {
                        in_flight.push(fetch.clone());
                    }
                    let large = state
                        .files
                        .get(&path)
                        .is_some_and(|m| !state.is_small(m.size));
                    if large && matches!(state.options.large_files, LargeFiles::Columns(_)) {
                        footers.push(async move { (fetch.await, path) });
                    }
                }
                // Its footer is cached: its pieces are known.
                Claim::Planned => issuing.push_back(path),
                Claim::Passed => {}
                Claim::NoBudget => {
                    blocked = true;
                    continue;
                }
            }
            next.next();
        }
        if in_flight.is_empty() && footers.is_empty() && issuing.is_empty() && next.peek().is_none()
        {
            break;
        }
        if !blocked && !issuing.is_empty() && in_flight.len() < requests {
            // A file whose footer was cached joined the turn: issue its pieces.
            continue;
        }
        // Wait for a read to end, a footer to come in, or a reader to
        // release bytes, driving the reads in flight meanwhile.
        tokio::select! {
            _ = released, if blocked => {}
            Some(_) = in_flight.next(), if !in_flight.is_empty() => {}
            Some((footer, path)) = footers.next(), if !footers.is_empty() => {
                if let Ok(footer) = footer {
                    state.plan(&path, &footer);
                    issuing.push_back(path);
                }
            }
        }
    }
}

/// The store a scan's readers use while it reads ahead: ranged reads of a
/// file read ahead are answered from memory; everything else goes to the
/// real store.
struct ReadAheadStore {
    state: Arc<State>,
}

impl fmt::Debug for ReadAheadStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadAheadStore({})", self.state.store)
    }
}

impl fmt::Display for ReadAheadStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for ReadAheadStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.state.store.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.state.store.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        // Only plain ranged reads (how Parquet is read) are answered here.
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        if let (Some(range), true) = (&options.range, plain) {
            let read = self.state.read(location, |size| resolve_range(range, size));
            if let Some((meta, bytes)) = read.await {
                let range = resolve_range(range, meta.size);
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(stream::once(async { Ok(bytes) }).boxed()),
                    meta,
                    range,
                    attributes: Default::default(),
                });
            }
        }
        self.state.store.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut parts = Vec::with_capacity(ranges.len());
        for range in ranges {
            match self.state.read(location, |_| range.clone()).await {
                Some((_, bytes)) => parts.push(bytes),
                None => return self.state.store.get_ranges(location, ranges).await,
            }
        }
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.state.store.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.state.store.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.state.store.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.state.store.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.state.store.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.state.store.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    /// A file of 8 row groups of two columns (`id`, `s`), as bytes.
    fn file() -> Bytes {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let ids: Vec<i64> = (0..80_000).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("value-{i}")),
                )),
            ],
        )
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(10_000))
            .set_dictionary_enabled(false)
            .build();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        Bytes::from(bytes)
    }

    fn pieces_of(
        footer: &Bytes,
        size: u64,
        columns: Option<&HashSet<String>>,
        piece: u64,
        end: u64,
    ) -> Vec<Piece> {
        decode_footer(footer, size)
            .map_or_else(Vec::new, |m| pieces_in(&m, size, columns, piece, end))
    }

    fn ranges(pieces: Vec<Piece>) -> Vec<Range<u64>> {
        pieces.into_iter().map(|p| p.range).collect()
    }

    fn footer(file: &Bytes) -> Bytes {
        file.slice(file.len().saturating_sub(FOOTER_BYTES as usize)..)
    }

    #[test]
    fn pieces_cover_the_chunks_of_the_columns_read_in_file_order() {
        let file = file();
        let size = file.len() as u64;
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .unwrap();
        assert_eq!(metadata.num_row_groups(), 8);
        let chunks = |root: Option<&str>| -> Vec<Range<u64>> {
            metadata
                .row_groups()
                .iter()
                .flat_map(|g| g.columns())
                .filter(|c| root.is_none_or(|r| c.column_path().parts()[0] == r))
                .map(|c| {
                    let (start, len) = c.byte_range();
                    start..start + len
                })
                .collect()
        };
        let covered = |pieces: &[Range<u64>], chunk: &Range<u64>| {
            pieces
                .iter()
                .filter(|p| p.start < chunk.end && p.end > chunk.start)
                .map(|p| p.end.min(chunk.end) - p.start.max(chunk.start))
                .sum::<u64>()
                == chunk.end - chunk.start
        };
        let ids = HashSet::from(["id".to_string()]);
        let piece = 64 * 1024;
        let pieces = ranges(pieces_of(&footer(&file), size, Some(&ids), piece, size));
        assert!(chunks(Some("id")).iter().all(|c| covered(&pieces, c)));
        // Only `id`'s chunks: the `s` chunks between them are larger than
        // the gap.
        let read: u64 = pieces.iter().map(|p| p.end - p.start).sum();
        let wanted: u64 = chunks(Some("id")).iter().map(|c| c.end - c.start).sum();
        assert_eq!(read, wanted, "{pieces:?}");
        assert!(pieces.iter().all(|p| p.end - p.start <= piece));
        assert!(pieces.windows(2).all(|w| w[0].end <= w[1].start));

        // Every column: neighbours coalesce up to the piece size.
        let all = ranges(pieces_of(&footer(&file), size, None, PIECE_BYTES, size));
        assert!(chunks(None).iter().all(|c| covered(&all, c)));
        assert!(all.len() < chunks(None).len(), "{} pieces", all.len());
        // No column of that name: nothing.
        let none = HashSet::from(["nope".to_string()]);
        assert!(pieces_of(&footer(&file), size, Some(&none), piece, size).is_empty());
        // A footer that does not decode, or a size that does not fit it:
        // nothing, and no panic.
        let mut corrupt = footer(&file).to_vec();
        let at = corrupt.len() - 8;
        corrupt[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(pieces_of(&Bytes::from(corrupt), size, None, piece, size).is_empty());
        assert!(pieces_of(&footer(&file), 100, None, piece, 100).is_empty());
        // Cut where the footer read starts: nothing at or after it.
        let cut = chunks(None)[5].start + 10;
        let before = pieces_of(&footer(&file), size, None, piece, cut);
        assert!(before
            .iter()
            .all(|p| p.range.end <= cut && p.wanted <= p.range.end - p.range.start));
        assert_eq!(before.last().map(|p| p.range.end), Some(cut));
    }

    #[test]
    fn a_range_is_assembled_from_the_pieces_that_cover_it() {
        let reads = [
            (100, Bytes::from_static(b"abcd")),
            (104, Bytes::from_static(b"efgh")),
        ];
        assert_eq!(assemble(&reads[..1], &(101..103)).unwrap(), "bc");
        assert_eq!(assemble(&reads, &(102..106)).unwrap(), "cdef");
        // A short read leaves a hole: not answered.
        let short = [
            (100, Bytes::from_static(b"ab")),
            (104, Bytes::from_static(b"efgh")),
        ];
        assert!(assemble(&short, &(101..106)).is_none());
        assert!(assemble(&reads[..1], &(101..106)).is_none());
    }
}
