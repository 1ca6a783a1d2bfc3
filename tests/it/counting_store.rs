//! An object store wrapper that counts requests: how tests and benchmarks prove
//! that planning makes none.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tokio::sync::Notify;

/// Counts every request made through it, by kind.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    pub gets: AtomicUsize,
    pub lists: AtomicUsize,
    pub others: AtomicUsize,
    /// While set, every listing is read whole, then held until released:
    /// how a test stages a race with a listing that has already looked.
    pub hold: Mutex<Option<ListHold>>,
}

/// The two signals of a held listing.
#[derive(Debug, Clone, Default)]
#[allow(dead_code)] // the benchmark that includes this file holds no listing
pub struct ListHold {
    /// Notified once a held listing has read everything it will return.
    pub listed: Arc<Notify>,
    /// Notify to let the held listing return.
    pub release: Arc<Notify>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gets: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            others: AtomicUsize::new(0),
            hold: Mutex::new(None),
        })
    }

    /// All requests so far.
    pub fn requests(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
            + self.lists.load(Ordering::SeqCst)
            + self.others.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.gets.store(0, Ordering::SeqCst);
        self.lists.store(0, Ordering::SeqCst);
        self.others.store(0, Ordering::SeqCst);
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        let listing = self.inner.list(prefix);
        let Some(hold) = self.hold.lock().unwrap().clone() else {
            return listing;
        };
        futures::stream::once(async move {
            let items: Vec<_> = listing.collect().await;
            hold.listed.notify_one();
            hold.release.notified().await;
            futures::stream::iter(items)
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.others.fetch_add(1, Ordering::SeqCst);
        self.inner.copy_opts(from, to, options).await
    }
}
