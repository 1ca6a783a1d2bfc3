//! [`FaultyStore`]: wraps any object store, counts its requests by kind, and
//! injects faults by request kind and path, so tests can show what a table
//! does when storage fails — and prove that planning makes no request at all.
//! Behind the `test-utils` feature.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The kinds of request a fault can target, and requests are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `get_opts` with a range, and `get_ranges`: reading file contents.
    Read,
    /// `head`, and `get_opts` without a range.
    Head,
    /// `list`, `list_with_delimiter`.
    List,
    /// `put`, multipart uploads, `copy`, `rename`, `delete`.
    Write,
}

impl RequestKind {
    const ALL: [Self; 4] = [Self::Read, Self::Head, Self::List, Self::Write];

    fn index(self) -> usize {
        self as usize
    }
}

/// The two signals of a held listing (see [`FaultyStore::hold_listings`]).
#[derive(Debug, Clone, Default)]
pub struct ListHold {
    /// Notified once a held listing has read everything it will return.
    pub listed: Arc<tokio::sync::Notify>,
    /// Notify to let the held listing return.
    pub release: Arc<tokio::sync::Notify>,
    /// Hold only listings of exactly this prefix (`None`: every listing).
    pub prefix: Option<String>,
}

/// What happens to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with a `Generic` error, as a dropped connection or a 503 does.
    Transient,
    /// Fails with `PermissionDenied` naming the path.
    Permanent,
    /// Waits this long, then runs the request.
    Latency(Duration),
    /// Runs a read, then returns only the first half of each range's bytes.
    ShortRead,
    /// Never answers.
    Hang,
    /// Answers a listing with its keys in reverse order, as a store that
    /// does not list in key order (a local file system) may; other requests
    /// run as they are.
    Unordered,
    /// Waits this long, then fails as [`Permanent`](Self::Permanent) does:
    /// a request that is slow *and* fails, to stage a race with a failure.
    SlowFailure(Duration),
}

/// One fault and which requests it applies to.
#[derive(Debug, Clone)]
pub struct FaultRule {
    fault: Fault,
    kind: Option<RequestKind>,
    path_contains: Option<String>,
    remaining: Option<usize>,
    every: usize,
}

impl FaultRule {
    /// `fault` on every request, until narrowed.
    pub fn new(fault: Fault) -> Self {
        Self {
            fault,
            kind: None,
            path_contains: None,
            remaining: None,
            every: 1,
        }
    }

    /// Only requests of this kind.
    pub fn on(mut self, kind: RequestKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only requests whose path contains `pattern` (a copy's or rename's
    /// path is `<from> -> <to>`: the pattern may match either).
    pub fn path_contains(mut self, pattern: impl Into<String>) -> Self {
        self.path_contains = Some(pattern.into());
        self
    }

    /// Only the first `n` matching requests (then the rule is spent).
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Only every `n`-th matching request (the `n`-th, `2n`-th, …).
    pub fn every(mut self, n: usize) -> Self {
        self.every = n.max(1);
        self
    }
}

#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    seen: usize,
}

/// An object store that counts its requests by [`RequestKind`], injects
/// [`Fault`]s into the requests that match its [`FaultRule`]s (the first
/// matching rule wins), counts what it injected, and can hold listings to
/// stage a race.
#[derive(Debug)]
pub struct FaultyStore {
    /// Itself, for the streams and uploads that outlive a `&self` call.
    this: Weak<Self>,
    inner: Arc<dyn ObjectStore>,
    rules: Mutex<Vec<ActiveRule>>,
    injected: AtomicUsize,
    requests: [AtomicUsize; 4],
    /// Reads running now, and the most that ever ran at once.
    reading: Arc<(AtomicUsize, AtomicUsize)>,
    hold: Mutex<Option<ListHold>>,
    /// Multipart uploads aborted through this store.
    aborted_uploads: AtomicUsize,
}

/// Counts one read as running until dropped (a cancelled read included).
struct Reading(Arc<(AtomicUsize, AtomicUsize)>);

impl Reading {
    fn start(counts: &Arc<(AtomicUsize, AtomicUsize)>) -> Self {
        let now = counts.0.fetch_add(1, Ordering::SeqCst) + 1;
        counts.1.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(counts))
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FaultyStore {
    /// `inner` with no faults yet.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            this: Weak::clone(this),
            inner,
            rules: Mutex::new(Vec::new()),
            injected: AtomicUsize::new(0),
            requests: Default::default(),
            reading: Arc::default(),
            hold: Mutex::new(None),
            aborted_uploads: AtomicUsize::new(0),
        })
    }

    /// Multipart uploads aborted through this store so far.
    pub fn aborted_uploads(&self) -> usize {
        self.aborted_uploads.load(Ordering::SeqCst)
    }

    /// Adds a rule (after the existing ones).
    pub fn inject(&self, rule: FaultRule) {
        self.lock().push(ActiveRule { rule, seen: 0 });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    /// Requests seen so far, faulty or not.
    pub fn requests(&self) -> usize {
        RequestKind::ALL.iter().map(|&k| self.requests_of(k)).sum()
    }

    /// Requests of `kind` seen so far.
    pub fn requests_of(&self, kind: RequestKind) -> usize {
        self.requests[kind.index()].load(Ordering::SeqCst)
    }

    /// Reads (`get_opts`, `get_ranges`) running right now: started and
    /// neither finished nor dropped.
    pub fn reads_in_flight(&self) -> usize {
        self.reading.0.load(Ordering::SeqCst)
    }

    /// The most reads that ran at once since the counts were last reset.
    pub fn peak_reads_in_flight(&self) -> usize {
        self.reading.1.load(Ordering::SeqCst)
    }

    /// Starts counting requests (and the peak of reads in flight) from zero again.
    pub fn reset_counts(&self) {
        for count in &self.requests {
            count.store(0, Ordering::SeqCst);
        }
        self.reading
            .1
            .store(self.reading.0.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// While `hold` is set, every listing is read whole, then held until
    /// `hold.release` is notified: how a test stages a race with a listing
    /// that has already looked.
    pub fn hold_listings(&self, hold: Option<ListHold>) {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = hold;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ActiveRule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault for this request, if any rule fires.
    fn fault_for(&self, kind: RequestKind, path: &str) -> Option<Fault> {
        self.requests[kind.index()].fetch_add(1, Ordering::SeqCst);
        let mut rules = self.lock();
        for active in rules.iter_mut() {
            let rule = &active.rule;
            let matches = rule.kind.is_none_or(|k| k == kind)
                && rule
                    .path_contains
                    .as_deref()
                    .is_none_or(|p| path.contains(p))
                && rule.remaining != Some(0);
            if !matches {
                continue;
            }
            active.seen += 1;
            if active.seen % active.rule.every != 0 {
                return None;
            }
            if let Some(n) = active.rule.remaining.as_mut() {
                *n -= 1;
            }
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Some(active.rule.fault);
        }
        None
    }

    /// Applies the fault that must act before a request runs. Returns
    /// whether the request's result must be cut short.
    async fn before(&self, kind: RequestKind, path: &str) -> Result<bool> {
        match self.fault_for(kind, path) {
            None => Ok(false),
            Some(Fault::Transient) => Err(object_store::Error::Generic {
                store: "FaultyStore",
                source: format!("injected transient fault on {path}").into(),
            }),
            Some(Fault::Permanent) => Err(object_store::Error::PermissionDenied {
                path: path.to_string(),
                source: "injected permanent fault".into(),
            }),
            Some(Fault::Latency(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(false)
            }
            Some(Fault::ShortRead) => Ok(true),
            Some(Fault::Hang) => futures::future::pending().await,
            Some(Fault::Unordered) => Ok(false),
            Some(Fault::SlowFailure(delay)) => {
                tokio::time::sleep(delay).await;
                Err(object_store::Error::PermissionDenied {
                    path: path.to_string(),
                    source: "injected slow permanent fault".into(),
                })
            }
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

fn half(bytes: Bytes) -> Bytes {
    bytes.slice(..bytes.len() / 2)
}

impl FaultyStore {
    /// A listing (`listing` starts the inner one) with the faults and holds
    /// that apply to `prefix`.
    fn faulty_listing(
        &self,
        prefix: Option<&Path>,
        listing: impl FnOnce() -> BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let path = prefix.map_or("", |p| p.as_ref()).to_string();
        let hold = self
            .hold
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|hold| hold.prefix.as_ref().is_none_or(|p| *p == path));
        match self.fault_for(RequestKind::List, &path) {
            None | Some(Fault::ShortRead) if hold.is_some() => {
                let listing = listing();
                let hold = hold.unwrap_or_default();
                stream::once(async move {
                    let items: Vec<_> = listing.collect().await;
                    hold.listed.notify_one();
                    hold.release.notified().await;
                    stream::iter(items)
                })
                .flatten()
                .boxed()
            }
            None | Some(Fault::ShortRead) => listing(),
            Some(Fault::Latency(delay)) => {
                let listing = listing();
                stream::once(tokio::time::sleep(delay))
                    .flat_map(move |_| stream::empty())
                    .chain(listing)
                    .boxed()
            }
            Some(Fault::Transient) => {
                // Half a listing, then the failure: what a dropped connection
                // in the middle of a paginated listing looks like.
                let listing = listing().take(1);
                let error = object_store::Error::Generic {
                    store: "FaultyStore",
                    source: format!("injected transient fault listing {path}").into(),
                };
                listing.chain(stream::once(async { Err(error) })).boxed()
            }
            Some(Fault::Permanent) => stream::once(async move {
                Err(object_store::Error::PermissionDenied {
                    path,
                    source: "injected permanent fault".into(),
                })
            })
            .boxed(),
            Some(Fault::SlowFailure(delay)) => stream::once(async move {
                tokio::time::sleep(delay).await;
                Err(object_store::Error::PermissionDenied {
                    path,
                    source: "injected slow permanent fault".into(),
                })
            })
            .boxed(),
            Some(Fault::Hang) => stream::pending().boxed(),
            Some(Fault::Unordered) => {
                let listing = listing();
                stream::once(async move {
                    let mut items: Vec<_> = listing.collect().await;
                    items.reverse();
                    stream::iter(items)
                })
                .flatten()
                .boxed()
            }
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.before(RequestKind::Write, location.as_ref()).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.before(RequestKind::Write, location.as_ref()).await?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(match self.this.upgrade() {
            Some(store) => Box::new(FaultyUpload {
                store,
                location: location.clone(),
                inner: upload,
            }),
            None => upload,
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let kind = if options.range.is_some() {
            RequestKind::Read
        } else {
            RequestKind::Head
        };
        let _reading = Reading::start(&self.reading);
        let short = self.before(kind, location.as_ref()).await?;
        let result = self.inner.get_opts(location, options).await?;
        if !short {
            return Ok(result);
        }
        let (meta, range, attributes) = (
            result.meta.clone(),
            result.range.clone(),
            result.attributes.clone(),
        );
        let bytes = half(result.bytes().await?);
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let _reading = Reading::start(&self.reading);
        let short = self.before(RequestKind::Read, location.as_ref()).await?;
        let parts = self.inner.get_ranges(location, ranges).await?;
        Ok(if short {
            parts.into_iter().map(half).collect()
        } else {
            parts
        })
    }

    /// Each deletion is a `Write` request, faults applied per path.
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let this = self.this.upgrade();
        let checked = locations
            .then(move |location| {
                let this = this.clone();
                async move {
                    let location = location?;
                    if let Some(this) = this {
                        this.before(RequestKind::Write, location.as_ref()).await?;
                    }
                    Ok(location)
                }
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let owned = prefix.cloned();
        self.faulty_listing(prefix, move || inner.list(owned.as_ref()))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let (owned, offset) = (prefix.cloned(), offset.clone());
        self.faulty_listing(prefix, move || {
            inner.list_with_offset(owned.as_ref(), &offset)
        })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.before(RequestKind::List, prefix.map_or("", |p| p.as_ref()))
            .await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.before(RequestKind::Write, &format!("{from} -> {to}"))
            .await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.before(RequestKind::Write, &format!("{from} -> {to}"))
            .await?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload through a [`FaultyStore`]: its completion is a
/// `Write` request of the object's path (faults apply), its abort is counted.
#[derive(Debug)]
struct FaultyUpload {
    store: Arc<FaultyStore>,
    location: Path,
    inner: Box<dyn MultipartUpload>,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.store
            .before(RequestKind::Write, self.location.as_ref())
            .await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.store.aborted_uploads.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await
    }
}
