//! [`RetryPolicy`] and [`ResilientStore`]: bounded retries and timeouts for
//! the reads a table makes.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// How a table's reads survive a store that fails: how often a transient
/// failure is retried, how long to wait between attempts, and how long one
/// request may take.
///
/// Set with [`PartitionedTableBuilder::retry`](crate::PartitionedTableBuilder::retry);
/// it covers discovery (`build`, `refresh`) and every scan of the table,
/// on whichever process runs it (the codecs carry it).
///
/// A read that still fails after `max_retries` retries, a permanent error
/// (not found, permission denied, …), and a request that outlives
/// `request_timeout` each end the query with an error naming the file, in
/// at most `(max_retries + 1) × request_timeout` plus the backoff waits.
/// Timeouts and backoff use Tokio's timer: the runtime needs it enabled
/// (`enable_time`/`enable_all`, as `#[tokio::main]` does). Waits are
/// jittered (a random point in the upper half of the doubling bound).
///
/// # With object_store's own retries
///
/// object_store's HTTP stores (S3, GCS, Azure, HTTP) retry on their own
/// (`ClientOptions` / `object_store::RetryConfig`: by default up to 10
/// retries within 3 minutes). A request they give up on reaches this layer
/// as a `Generic` error and is retried here again, so the attempts multiply:
/// up to `(max_retries + 1) × (client retries + 1)`. Use one layer for
/// retries: on HTTP stores keep the client's and set `max_retries: 0` here
/// (keeping `request_timeout` and the short-read check); on stores without
/// their own (the local disk, a custom store), use this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: fail at the first error).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// The longest one request may take, a ranged read's body included.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 3 retries, 100 ms doubling up to 2 s, 30 s per request.
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The longest wait before retry number `retry` (0-based): doubling from
    /// `initial_backoff`, bounded by `max_backoff`.
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(16));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The wait before retry number `retry`: a random point in the upper half
    /// of [`backoff`](Self::backoff), so that the scans of many partitions
    /// that failed together do not retry together.
    fn jittered_backoff(&self, retry: u32) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let bound = self.backoff(retry);
        // A fresh `RandomState` is randomly keyed: a cheap random number
        // without a dependency.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let fraction = 0.5 + (random % 1_000) as f64 / 2_000.0;
        bound.mul_f64(fraction)
    }
}

/// Whether an error may go away if the request is simply made again.
///
/// Everything the store reports as a definite answer — the object is not
/// there, not allowed, not valid, not supported — is permanent. object_store
/// reports everything else as `Generic`: a dropped connection, a 503, but
/// also a local file that is a directory or unreadable. A `Generic` error is
/// transient unless an I/O error in its cause says otherwise (only
/// connection, timeout and interruption kinds are transient), or it is one
/// of this store's own final failures (a retry layer above must not retry
/// what this one gave up on).
fn is_transient(error: &object_store::Error) -> bool {
    match error {
        object_store::Error::JoinError { .. } => true,
        object_store::Error::Generic { source, .. } => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(e) = cause {
                if let Some(failure) = e.downcast_ref::<ReadFailure>() {
                    // A short read or a timed-out attempt may go better next
                    // time; what a store already gave up on is final.
                    return !matches!(failure, ReadFailure::GaveUp { .. });
                }
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    use std::io::ErrorKind::*;
                    return matches!(
                        io.kind(),
                        ConnectionReset
                            | ConnectionAborted
                            | ConnectionRefused
                            | NotConnected
                            | BrokenPipe
                            | TimedOut
                            | Interrupted
                            | UnexpectedEof
                            | WouldBlock
                    );
                }
                cause = e.source();
            }
            true
        }
        _ => false,
    }
}

/// Why a read through a [`ResilientStore`] failed for good.
#[derive(Debug, thiserror::Error)]
enum ReadFailure {
    #[error("{operation} of {path} timed out after {timeout:?} (attempt {attempt} of {attempts})")]
    Timeout {
        operation: &'static str,
        path: String,
        timeout: Duration,
        attempt: u32,
        attempts: u32,
    },
    #[error("listing {path} timed out: nothing received for {timeout:?} (a page took longer than the request timeout)")]
    ListingStalled { path: String, timeout: Duration },
    #[error("{operation} of {path} returned {got} bytes instead of {expected} (a short read)")]
    ShortRead {
        operation: &'static str,
        path: String,
        got: usize,
        expected: u64,
    },
    #[error("{operation} of {path} failed after {attempts} attempts: {source}")]
    GaveUp {
        operation: &'static str,
        path: String,
        attempts: u32,
        source: object_store::Error,
    },
}

fn failure(error: ReadFailure) -> object_store::Error {
    object_store::Error::Generic {
        store: "lakefusion",
        source: Box::new(error),
    }
}

/// Wraps any object store so that reads retry transient failures with
/// bounded exponential backoff and every request has a timeout; a ranged
/// read's body is read within the request and its length checked, so a
/// short read is caught (and retried) instead of reaching the Parquet
/// decoder.
///
/// Listings are retried whole (collected, then replayed), so a listing
/// that fails half-way never yields a partial or duplicated file list; the
/// request timeout bounds each page of a listing (the wait for its next
/// entry), not the whole listing.
/// Writes pass through unchanged: the sink's temporary files make a failed
/// write invisible, and a multipart upload cannot be replayed from here.
#[derive(Debug)]
pub struct ResilientStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl ResilientStore {
    /// `inner` with `policy`'s retries and timeouts on its reads.
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// `inner` wrapped if `policy` is given, unchanged otherwise.
    pub fn wrap(inner: Arc<dyn ObjectStore>, policy: Option<RetryPolicy>) -> Arc<dyn ObjectStore> {
        match policy {
            Some(policy) => Arc::new(Self::new(inner, policy)),
            None => inner,
        }
    }

    /// Runs `attempt` with the store's policy (see [`RetryPolicy::retry`]).
    async fn retry<T, F, Fut>(&self, operation: &'static str, path: &str, attempt: F) -> Result<T>
    where
        T: Send,
        F: Fn() -> Fut + Sync,
        Fut: Future<Output = Result<T>> + Send,
    {
        self.policy.retry(operation, path, attempt).await
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails permanently, or the retries
    /// are spent; each attempt bounded by the request timeout.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        operation: &'static str,
        path: &str,
        attempt: F,
    ) -> Result<T>
    where
        T: Send,
        F: Fn() -> Fut + Sync,
        Fut: Future<Output = Result<T>> + Send,
    {
        let timeout = self.request_timeout;
        self.retry_attempts(operation, path, |number| {
            let attempt = attempt();
            async move {
                tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(failure(ReadFailure::Timeout {
                            operation,
                            path: path.to_string(),
                            timeout,
                            attempt: number,
                            attempts: self.max_retries + 1,
                        }))
                    })
            }
        })
        .await
    }

    /// Retries a listing that is read through [`each_within`](Self::each_within):
    /// each of its pages is bounded by the request timeout, the whole of it
    /// is not — a root of a few hundred thousand keys takes many pages, one
    /// after another.
    pub(crate) async fn retry_listing<T, F, Fut>(&self, path: &str, attempt: F) -> Result<T>
    where
        T: Send,
        F: Fn() -> Fut + Sync,
        Fut: Future<Output = Result<T>> + Send,
    {
        self.retry_attempts("list", path, |_| attempt()).await
    }

    /// `listing` with each entry bounded by the request timeout: an entry
    /// that takes longer than one request may (a page that does not come)
    /// ends the listing with a transient error, retried as a timeout is.
    pub(crate) fn each_within<T: Send + 'static>(
        &self,
        path: &str,
        listing: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        let timeout = self.request_timeout;
        let path = path.to_string();
        stream::unfold(Some(listing), move |listing| {
            let path = path.clone();
            async move {
                let mut listing = listing?;
                match tokio::time::timeout(timeout, listing.next()).await {
                    Ok(Some(entry)) => Some((entry, Some(listing))),
                    Ok(None) => None,
                    Err(_) => Some((
                        Err(failure(ReadFailure::ListingStalled { path, timeout })),
                        None,
                    )),
                }
            }
        })
        .boxed()
    }

    /// The retry loop: runs `attempt(number)` (1-based) until it succeeds,
    /// fails permanently, or the retries are spent, with jittered backoff
    /// between attempts.
    async fn retry_attempts<T, F, Fut>(
        &self,
        operation: &'static str,
        path: &str,
        attempt: F,
    ) -> Result<T>
    where
        F: Fn(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let attempts = self.max_retries + 1;
        let mut number = 0;
        loop {
            number += 1;
            let error = match attempt(number).await {
                Ok(value) => return Ok(value),
                Err(e) if !is_transient(&e) => return Err(e),
                Err(e) => e,
            };
            if number >= attempts {
                return Err(failure(ReadFailure::GaveUp {
                    operation,
                    path: path.to_string(),
                    attempts,
                    source: error,
                }));
            }
            tracing::debug!(operation, path, attempt = number, error = %error, "retrying a read");
            tokio::time::sleep(self.jittered_backoff(number - 1)).await;
        }
    }
}

impl fmt::Display for ResilientStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResilientStore({})", self.inner)
    }
}

/// A read that returned fewer (or more) bytes than asked for is an error,
/// so that it is retried, not decoded.
fn check_length(operation: &'static str, path: &str, bytes: &Bytes, expected: u64) -> Result<()> {
    if bytes.len() as u64 == expected {
        return Ok(());
    }
    Err(failure(ReadFailure::ShortRead {
        operation,
        path: path.to_string(),
        got: bytes.len(),
        expected,
    }))
}

/// The bytes of an object of `size` bytes that a ranged get asks for.
pub(crate) fn resolve_range(range: &GetRange, size: u64) -> Range<u64> {
    match range {
        GetRange::Bounded(r) => r.start..r.end.min(size),
        GetRange::Offset(offset) => *offset..size,
        GetRange::Suffix(n) => size.saturating_sub(*n)..size,
    }
}

/// The bytes a ranged get must return, given the object's size.
fn expected_len(range: &GetRange, size: u64) -> u64 {
    let range = resolve_range(range, size);
    range.end.saturating_sub(range.start)
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for ResilientStore {
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
        let path = location.as_ref();
        let Some(range) = options.range.clone() else {
            // A whole-object read streams: only the request is bounded.
            return self
                .retry("get", path, || {
                    self.inner.get_opts(location, options.clone())
                })
                .await;
        };
        // A ranged read (how Parquet is read) is small enough to read whole
        // inside the attempt: the body is then covered by the timeout, and
        // its length is checked before anyone decodes it.
        self.retry("get", path, || async {
            let result = self.inner.get_opts(location, options.clone()).await?;
            let (meta, attributes, actual) = (
                result.meta.clone(),
                result.attributes.clone(),
                result.range.clone(),
            );
            let bytes = result.bytes().await?;
            check_length("get", path, &bytes, expected_len(&range, meta.size))?;
            Ok(GetResult {
                payload: GetResultPayload::Stream(stream::once(async { Ok(bytes) }).boxed()),
                meta,
                range: actual,
                attributes,
            })
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = location.as_ref();
        self.retry("get_ranges", path, || async {
            let parts = self.inner.get_ranges(location, ranges).await?;
            for (bytes, range) in parts.iter().zip(ranges) {
                check_length(
                    "get_ranges",
                    path,
                    bytes,
                    range.end.saturating_sub(range.start),
                )?;
            }
            Ok(parts)
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let policy = self.policy;
        let prefix = prefix.cloned();
        stream::once(async move {
            let path = prefix.as_ref().map_or("", |p| p.as_ref()).to_string();
            policy
                .retry_listing(&path, || {
                    policy
                        .each_within(&path, inner.list(prefix.as_ref()))
                        .try_collect::<Vec<_>>()
                })
                .await
        })
        .map_ok(|metas| stream::iter(metas.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// Streamed as the store lists, not retried here: its caller may stop
    /// early (a range of a table's listing), so only it can retry the part
    /// it wants (discovery retries each range whole with the table's policy).
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    /// One call that reads every page of the level: bounded as a whole by
    /// the request timeout (object_store gives no page-by-page form of it).
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let path = prefix.map_or("", |p| p.as_ref());
        self.retry("list", path, || self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    /// Forwarded, so a local disk's rename stays one atomic `rename(2)`
    /// (object_store's default is a copy and a delete).
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        let waits: Vec<_> = (0..5).map(|r| policy.backoff(r).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_backoff() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            ..RetryPolicy::default()
        };
        let waits: Vec<Duration> = (0..50).map(|_| policy.jittered_backoff(1)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_millis(100) && *w <= Duration::from_millis(200)));
        // Not all the same: the point of jitter.
        assert!(waits.iter().any(|w| *w != waits[0]), "{waits:?}");
    }

    #[test]
    fn generic_errors_are_transient_unless_their_cause_says_otherwise() {
        let generic =
            |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                store: "test",
                source,
            };
        let io = |kind| Box::new(std::io::Error::new(kind, "x")) as Box<_>;
        assert!(is_transient(&generic("503 Slow Down".into())));
        assert!(is_transient(&generic(io(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(is_transient(&generic(io(std::io::ErrorKind::TimedOut))));
        assert!(!is_transient(&generic(io(
            std::io::ErrorKind::PermissionDenied
        ))));
        assert!(!is_transient(&generic(io(std::io::ErrorKind::InvalidData))));
        assert!(!is_transient(&generic(io(
            std::io::ErrorKind::IsADirectory
        ))));
        // What a ResilientStore gave up on is final for a layer above.
        let gave_up = failure(ReadFailure::GaveUp {
            operation: "get",
            path: "p".into(),
            attempts: 4,
            source: generic("503".into()),
        });
        assert!(!is_transient(&gave_up));
        assert!(!is_transient(&object_store::Error::NotFound {
            path: "p".into(),
            source: "gone".into()
        }));
    }

    #[test]
    fn ranged_reads_know_their_length() {
        assert_eq!(expected_len(&GetRange::Bounded(10..20), 100), 10);
        assert_eq!(expected_len(&GetRange::Bounded(90..120), 100), 10);
        assert_eq!(expected_len(&GetRange::Offset(40), 100), 60);
        assert_eq!(expected_len(&GetRange::Suffix(8), 100), 8);
        assert_eq!(expected_len(&GetRange::Suffix(800), 100), 100);
        assert_eq!(expected_len(&GetRange::Offset(400), 100), 0);
        assert_eq!(resolve_range(&GetRange::Suffix(3), 10), 7..10);
        assert_eq!(resolve_range(&GetRange::Bounded(8..50), 10), 8..10);
    }
}
