//! [`PagedStore`]: answers listings a page at a time, with a wait per page,
//! as S3, GCS and Azure do — and, if asked, starts a listing after an offset
//! at the first key and filters, as object_store's default
//! `list_with_offset` does (`InMemory`, `LocalFileSystem`, and any wrapper
//! that does not forward the method). It counts the pages and keys it
//! serves, so tests and benchmarks can show what a listing strategy costs
//! on each kind of store. Behind the `test-utils` feature.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Where a listing after an offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetListing {
    /// At the offset, as S3's `StartAfter` and GCS's `startOffset` do: the
    /// first page holds the keys after it.
    AtOffset,
    /// At the first key, every page read and the keys up to the offset
    /// dropped: object_store's default `list_with_offset`.
    FromStart,
    /// At the first key, nothing dropped: a wrapper that answers
    /// `list_with_offset` with `list` (a defect, but one a listing must
    /// survive).
    Ignored,
}

/// How a [`PagedStore`] answers listings.
#[derive(Debug, Clone, Copy)]
pub struct Pages {
    /// Keys a page holds (S3 and GCS: 1,000; Azure: 5,000).
    pub keys: usize,
    /// What each page waits before it is served, one after another.
    pub wait: Duration,
    /// Where a listing after an offset starts.
    pub offsets: OffsetListing,
}

/// What a [`PagedStore`] has served.
#[derive(Debug, Default)]
struct Served {
    listings: AtomicUsize,
    pages: AtomicUsize,
    keys: AtomicUsize,
}

/// Wraps a store and answers its listings in pages (see the module docs).
/// Listings come from a sorted copy of the keys taken by [`new`](Self::new),
/// so a lake of 10⁶ keys is paged without listing the inner store again;
/// every other request passes through at once.
#[derive(Debug)]
pub struct PagedStore {
    inner: Arc<dyn ObjectStore>,
    keys: Arc<Vec<ObjectMeta>>,
    pages: Pages,
    served: Arc<Served>,
}

impl PagedStore {
    /// Pages `inner`'s keys as they are now.
    pub async fn new(inner: Arc<dyn ObjectStore>, pages: Pages) -> Result<Self> {
        let mut keys: Vec<ObjectMeta> = inner.list(None).try_collect().await?;
        keys.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(Self {
            inner,
            keys: Arc::new(keys),
            pages,
            served: Arc::new(Served::default()),
        })
    }

    /// Listings started (`list`, `list_with_offset`, `list_with_delimiter`).
    pub fn listings(&self) -> usize {
        self.served.listings.load(Ordering::Relaxed)
    }

    /// Pages served: every listing is at least one.
    pub fn pages(&self) -> usize {
        self.served.pages.load(Ordering::Relaxed)
    }

    /// Keys served in pages, including those a listing from the start
    /// dropped before its offset and those of a page a caller stopped
    /// reading: what the store did.
    pub fn keys(&self) -> usize {
        self.served.keys.load(Ordering::Relaxed)
    }

    /// The keys under `prefix` after `offset`, a page at a time (an empty
    /// listing is one page too).
    fn paged(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.served.listings.fetch_add(1, Ordering::Relaxed);
        let keys = Arc::clone(&self.keys);
        let (mut lo, hi) = match prefix.map(|p| p.as_ref()) {
            None | Some("") => (0, keys.len()),
            // Keys under `p` are `p/…`, and `0` is the character after `/`.
            Some(p) => {
                let (low, high) = (format!("{p}/"), format!("{p}0"));
                (
                    keys.partition_point(|m| m.location.as_ref() < low.as_str()),
                    keys.partition_point(|m| m.location.as_ref() < high.as_str()),
                )
            }
        };
        let after = match (offset, self.pages.offsets) {
            (Some(offset), OffsetListing::AtOffset) => {
                lo = lo.max(keys.partition_point(|m| m.location <= *offset));
                None
            }
            (Some(offset), OffsetListing::FromStart) => Some(offset.clone()),
            (Some(_), OffsetListing::Ignored) | (None, _) => None,
        };
        let per_page = self.pages.keys.max(1);
        let starts: Vec<usize> = if lo < hi {
            (lo..hi).step_by(per_page).collect()
        } else {
            vec![hi]
        };
        let (served, wait) = (Arc::clone(&self.served), self.pages.wait);
        futures::stream::iter(starts)
            .then(move |start| {
                let (keys, served) = (Arc::clone(&keys), Arc::clone(&served));
                async move {
                    tokio::time::sleep(wait).await;
                    let page = keys
                        .get(start..start.saturating_add(per_page).min(hi))
                        .unwrap_or_default();
                    served.pages.fetch_add(1, Ordering::Relaxed);
                    served.keys.fetch_add(page.len(), Ordering::Relaxed);
                    page.to_vec()
                }
            })
            .flat_map(futures::stream::iter)
            .filter(move |meta| {
                let keep = after.as_ref().is_none_or(|after| meta.location > *after);
                futures::future::ready(keep)
            })
            .map(Ok)
            .boxed()
    }
}

impl fmt::Display for PagedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PagedStore({})", self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for PagedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.paged(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.paged(prefix, Some(offset))
    }

    /// The inner store's answer, after a wait per page it fills.
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.served.listings.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.list_with_delimiter(prefix).await?;
        let entries = result.objects.len() + result.common_prefixes.len();
        let pages = entries.div_ceil(self.pages.keys.max(1)).max(1);
        self.served.pages.fetch_add(pages, Ordering::Relaxed);
        self.served.keys.fetch_add(entries, Ordering::Relaxed);
        tokio::time::sleep(self.pages.wait * pages as u32).await;
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
