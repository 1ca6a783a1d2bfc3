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
//!   first; its row groups are then read by the opener itself, coalesced).
//!
//! At most `requests` reads are in flight at once, and the bytes held are
//! reserved from the session's `MemoryPool` (and at most `bytes`) before a
//! read is issued (a `LIMIT`ed scan holds at most one file per partition);
//! a file's bytes are released when its last reader is dropped. A reader
//! that reaches a file before the read-ahead does claims the file's one read
//! itself.
//! The readers ask their store as usual: [`ReadAheadStore`] answers from
//! what was read ahead (waiting for a read in flight rather than issuing a
//! second one) and passes everything else — and any read that failed ahead —
//! to the real store, whose error then names the file.
//!
//! Nothing is read before the first poll of a partition, and everything in
//! flight is dropped (its request cancelled) when the last partition stream
//! of the execution is dropped.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::common::runtime::SpawnedTask;
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
use tokio::sync::Notify;

use super::retry::resolve_range;

/// How far a read-ahead reads (a scan derives them from its
/// `ScanOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadAheadOptions {
    /// Reads in flight at once, over all partitions of the scan.
    pub requests: usize,
    /// Bytes read ahead and not yet consumed, at most.
    pub bytes: usize,
    /// Files read ahead and not yet consumed, at most.
    pub files: usize,
    /// Files up to this size are read in one request; of a larger one,
    /// the last [`FOOTER_BYTES`].
    pub whole_file_bytes: u64,
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

/// Read ahead of a file too large to read whole: its footer, as a reader
/// without a size hint would fetch it in two requests (length, then footer).
const FOOTER_BYTES: u64 = 64 * 1024;

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

/// What the read-ahead knows of one file.
enum Entry {
    /// Read (or being read) ahead: `reserved` bytes (see [`State::extent`]).
    Ahead { fetch: Fetch, reserved: usize },
    /// Not read ahead (no budget left when its reader came), or done.
    Passed,
}

/// What [`State::claim`] found or started for a file.
enum Claim {
    /// A read of the file, started by this claim or before it.
    Read { fetch: Fetch, started_here: bool },
    /// The file is not read ahead.
    Passed,
    /// No budget for it now; `ever` is false if none will ever be (nothing
    /// is held, so waiting for a release would wait forever).
    NoBudget { ever: bool },
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
}

impl State {
    fn entries(&self) -> MutexGuard<'_, HashMap<Path, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Which bytes of a file are read ahead: all of a small one, the footer
    /// end of a larger one.
    fn extent(&self, size: u64) -> (u64, u64) {
        if size <= self.options.whole_file_bytes {
            (0, size)
        } else {
            let len = FOOTER_BYTES.min(size);
            (size - len, len)
        }
    }

    /// Reserves `len` bytes of one more file within the budgets and the
    /// pool. `Err(true)` when nothing is held, so waiting would never
    /// succeed.
    fn try_reserve(&self, len: usize) -> std::result::Result<(), bool> {
        let mut held = self.held();
        let bytes = held.reservation.size();
        if held.files >= self.options.files
            || bytes + len > self.options.bytes
            || held.reservation.try_grow(len).is_err()
        {
            return Err(held.files == 0);
        }
        held.files += 1;
        self.metrics.peak_bytes.set_max(held.reservation.size());
        Ok(())
    }

    /// The read of `path`: the one in flight or done, or a new one if the
    /// budgets allow. The driver claims files in order; a reader that gets
    /// to its file first claims it itself (`by_reader`), so the file is
    /// still read once — and without the budget, it is passed to the real
    /// store instead.
    fn claim(&self, path: &Path, by_reader: bool) -> Claim {
        let mut entries = self.entries();
        match entries.get(path) {
            Some(Entry::Ahead { fetch, .. }) => {
                return Claim::Read {
                    fetch: fetch.clone(),
                    started_here: false,
                }
            }
            Some(Entry::Passed) => return Claim::Passed,
            None => {}
        }
        let extent = self.files.get(path).map(|m| self.extent(m.size));
        let (start, len) = match extent {
            Some((start, len)) if len > 0 => (start, len),
            _ => {
                entries.insert(path.clone(), Entry::Passed);
                return Claim::Passed;
            }
        };
        if let Err(never) = self.try_reserve(len as usize) {
            if by_reader || never {
                entries.insert(path.clone(), Entry::Passed);
                return Claim::Passed;
            }
            return Claim::NoBudget { ever: !never };
        }
        let fetch = self.fetch(path.clone(), start..start + len);
        entries.insert(
            path.clone(),
            Entry::Ahead {
                fetch: fetch.clone(),
                reserved: len as usize,
            },
        );
        Claim::Read {
            fetch,
            started_here: true,
        }
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

    /// `range` (given the file's size) of `path`, from what is read ahead,
    /// if it covers the range.
    async fn read(
        &self,
        path: &Path,
        range: impl FnOnce(u64) -> Range<u64>,
    ) -> Option<(ObjectMeta, Bytes)> {
        let meta = self.files.get(path)?;
        let Claim::Read { fetch, .. } = self.claim(path, true) else {
            return None;
        };
        let range = range(meta.size);
        let (start, _) = self.extent(meta.size);
        let bytes = fetch.await.ok()?;
        let end = start + bytes.len() as u64;
        if range.start < start || range.end > end || range.start > range.end {
            return None;
        }
        self.metrics.hits.add(1);
        let from = (range.start - start) as usize;
        let to = (range.end - start) as usize;
        Some((meta.clone(), bytes.slice(from..to)))
    }
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
/// spent. Its reads are driven here, so they progress while the readers
/// are busy decoding.
async fn drive(state: Arc<State>, order: Vec<Path>) {
    let mut in_flight = FuturesUnordered::new();
    for path in order {
        while in_flight.len() >= state.options.requests {
            in_flight.next().await;
        }
        loop {
            let released = state.released.notified();
            match state.claim(&path, false) {
                Claim::Read {
                    fetch,
                    started_here: true,
                } => in_flight.push(fetch),
                Claim::Read {
                    started_here: false,
                    ..
                }
                | Claim::Passed
                | Claim::NoBudget { ever: false } => {}
                Claim::NoBudget { ever: true } => {
                    // Wait for a reader to finish a file, driving the reads
                    // in flight meanwhile.
                    tokio::select! {
                        _ = released => {}
                        Some(_) = in_flight.next(), if !in_flight.is_empty() => {}
                    }
                    continue;
                }
            }
            break;
        }
    }
    while in_flight.next().await.is_some() {}
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
