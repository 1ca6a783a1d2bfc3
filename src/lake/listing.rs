//! Discovery: listings of the table root, turned into partitions for a
//! [`PartitionIndex`](crate::PartitionIndex) — the whole root at `build()`
//! and `refresh()`, or only the partitions a predicate selects
//! (`refresh_partitions`).
//!
//! This is the only place that lists the object store. It never runs while
//! planning or executing a query.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::ListingTableUrl;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use crate::error::{Error, PathProblem, Result, TableProblem};
use crate::lake::index::{IndexedFile, ListedPartition, PartitionIndex};
use crate::lake::partitioning::{
    is_hidden, parse_value, partition_dir, split_key_value, PartitionSpec,
};
use crate::lake::TableDefinition;
use crate::store::local::{LinkTarget, LocalRoot};
use crate::store::local_walk::{self, Walked};
use crate::store::{RetryPolicy, StoreKind};

/// What one listing found: the (declared or inferred) spec and the partitions.
pub(crate) struct Listing {
    pub spec: PartitionSpec,
    pub partitions: Vec<ListedPartition>,
}

/// How one table lists its store: the one home of the listing strategy,
/// used by `build()`, `refresh()` and `refresh_partitions`.
pub(crate) struct Lister<'a> {
    store: &'a Arc<dyn ObjectStore>,
    root: &'a ListingTableUrl,
    /// What kind of storage the root is on.
    kind: StoreKind,
    /// Listings run at once.
    concurrency: usize,
    /// How a range listing (streamed, so not retried by the store) is retried.
    retry: Option<RetryPolicy>,
    /// Keys a listing reads before it splits the rest of its range (S3's
    /// page: the next page is the next request).
    split_after: usize,
    /// The store is the session's own `LocalFileSystem`: the disk is
    /// walked instead ([`local_walk`]).
    walks_the_disk: bool,
}

/// What one listing of the store returned.
struct Listed {
    /// The objects, sorted by key.
    objects: Vec<ObjectMeta>,
    /// Read by the disk walk, which saw no symbolic link below the root
    /// (as it read the tree): nothing for the link check to look at.
    without_links: bool,
}

impl Listed {
    /// Objects a listing through the store returned.
    fn through_store(objects: Vec<ObjectMeta>) -> Self {
        Self {
            objects,
            without_links: false,
        }
    }
}

/// Keys after `after` (exclusive; `None`: from the first) up to `until`
/// (inclusive; `None`: to the last), under the listed prefix.
#[derive(Debug, Clone, Default)]
struct KeyRange {
    after: Option<String>,
    until: Option<String>,
}

/// What the range listings of one splitting listing share.
struct Splitting {
    /// Where a listing posts the ranges it cut off its own.
    splits: tokio::sync::mpsc::UnboundedSender<KeyRange>,
    /// Ranges posted and not yet listed whole.
    outstanding: AtomicUsize,
    /// The root listing's wait for its first key: what one request takes.
    request: OnceLock<Duration>,
    /// Set once the root listing's keys arrive at the pace of requests
    /// (each page waits): only then does a range of its own pay.
    paged: AtomicBool,
    /// Range listings whose first key came later than [`SLOW_FIRST_KEY`]
    /// requests.
    slow: AtomicUsize,
    /// Set when the ranges do not hold or do not pay: the root is then
    /// listed again with one listing.
    fallback: OnceLock<Fallback>,
}

/// Why a splitting listing gave up its ranges for one listing.
#[derive(Debug, Clone, Copy)]
enum Fallback {
    /// A listing saw keys out of order: ranges of keys do not partition
    /// what the store lists.
    Unordered,
    /// Listings after an offset start at the first key (object_store's
    /// default `list_with_offset`): each range would cost a listing of
    /// everything before it.
    FromStart,
    /// A listing after an offset returned a key at or before it: the store
    /// (or a wrapper) ignores the offset.
    OffsetIgnored,
}

impl Splitting {
    fn give_up(&self, why: Fallback) {
        let _ = self.fallback.set(why);
    }
}

/// Keys a listing reads before it splits: one S3 page.
const SPLIT_AFTER: usize = 1_000;
/// At most this many cuts at once: the farthest part stays one range,
/// which splits in its turn.
const MAX_SPLIT_POINTS: usize = 64;
/// A wait between two of the root listing's keys of at least a request's
/// wait over this is the wait for a page...
const PAGE_WAIT: u32 = 8;
/// ... and after this many, the store is known to make each page wait:
/// only then does a range of its own pay. (A store that holds every key
/// after its first answer, as `InMemory` does, streams them without such
/// waits: splitting would only repeat that first answer. One wait may be
/// the scheduler's.)
const PAGE_WAITS: usize = 2;
/// A range listing whose first key takes longer than this many requests
/// has read from the start of the root to reach its offset.
const SLOW_FIRST_KEY: u32 = 8;
/// ... but never judged so before this (a request that answers in a few
/// milliseconds is within a scheduler's noise).
const MIN_SLOW_FIRST_KEY: Duration = Duration::from_millis(20);
/// Slow range listings that make the splitting give up: one may be a
/// request that was slow by chance.
const SLOW_LISTINGS: usize = 2;

/// Where to cut the keys after `last` (up to `end`, inclusive) into
/// neighbouring ranges, given that the stretch just listed ran from
/// `first` to `last`: keys vary from where `first` and `last` differ, so
/// cuts go there and at every shallower position down to where `last` and
/// `end` (or the root, at `floor`) differ, at the next values of the same
/// kind (digits after a digit, letters after a letter), never inside a
/// `key=` name: after `p=10098/part-9` and before `p=2`, the cuts are
/// `p=101` … `p=109`, then `p=11` … `p=19`. Sorted, each after `last` and
/// before `end`. A cut in the wrong place only costs a listing of an empty
/// range.
fn split_points(first: &str, last: &str, end: Option<&str>, floor: usize) -> Vec<String> {
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let deep = common(first, last).min(last.len().saturating_sub(1));
    let shallow = end.map_or(floor, |end| common(last, end).max(floor));
    let mut points = Vec::new();
    for depth in (shallow..=deep).rev() {
        let (Some(head), Some(&at)) = (last.get(..depth), last.as_bytes().get(depth)) else {
            continue;
        };
        // Inside a `key=` name every directory of the level agrees: only
        // values and file names vary.
        let segment_start = head.rfind('/').map_or(0, |i| i + 1);
        let segment_end = last[depth..].find('/').map_or(last.len(), |i| depth + i);
        if last[segment_start..segment_end]
            .find('=')
            .is_some_and(|eq| segment_start + eq >= depth)
        {
            continue;
        }
        let next = match at {
            b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => at + 1,
            _ => continue,
        };
        let last_of_kind = match at {
            b'0'..=b'9' => b'9',
            b'a'..=b'z' => b'z',
            _ => b'Z',
        };
        for c in next..=last_of_kind {
            let point = format!("{head}{}", c as char);
            if end.is_some_and(|end| point.as_str() >= end) {
                break;
            }
            if Path::parse(&point).is_ok() {
                points.push(point);
            }
        }
    }
    points.sort();
    points.dedup();
    points.truncate(MAX_SPLIT_POINTS);
    points
}

impl<'a> Lister<'a> {
    /// How `root` (on `kind` of storage) is listed in `store`, with at most
    /// `concurrency` listings at once and `retry`'s policy.
    pub(crate) fn new(
        store: &'a Arc<dyn ObjectStore>,
        root: &'a ListingTableUrl,
        kind: StoreKind,
        concurrency: usize,
        retry: Option<RetryPolicy>,
    ) -> Self {
        Self {
            store,
            root,
            kind,
            concurrency: concurrency.max(1),
            retry,
            split_after: SPLIT_AFTER,
            walks_the_disk: kind.is_local_disk() && local_walk::lists_like_the_disk(store),
        }
    }

    /// How `definition`'s table lists `store` (its root, concurrency and retries).
    pub(crate) fn of_table(
        store: &'a Arc<dyn ObjectStore>,
        definition: &'a TableDefinition,
    ) -> Self {
        Self::new(
            store,
            &definition.root,
            definition.store_kind(),
            definition.options.listing_concurrency,
            definition.options.retry,
        )
    }

    fn listing_error(&self, source: object_store::Error) -> Error {
        Error::Listing {
            root: self.root.to_string(),
            source,
        }
    }

    /// Lists everything under the root and groups the data files into
    /// partitions.
    ///
    /// Writers' bookkeeping is skipped at any level (see [`is_hidden`]:
    /// `_SUCCESS`, `_temporary/`, `.part-0.crc`; but `_src=a/` is a partition
    /// directory), as are files whose names start with `_` and files without
    /// `extension`. Without a `declared` spec, the partition columns are
    /// inferred from the first file's `key=value` directories, as Utf8; every
    /// other file must then have the same keys.
    ///
    /// On the local file system a listing follows symbolic links, so a link
    /// under the root could make the table read any file the process can
    /// reach; a data file reached through a link that leads outside the root
    /// is refused (see [`LocalLinks`]).
    pub(crate) async fn list_partitions(
        &self,
        declared: Option<&PartitionSpec>,
        extension: &str,
    ) -> Result<Listing> {
        let listed = self.list_root().await?;
        partitions_from(listed, self.root, self.kind, declared, extension).await
    }

    /// The store the lister lists.
    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        self.store
    }

    /// The table root it lists.
    pub(crate) fn root(&self) -> &ListingTableUrl {
        self.root
    }

    /// The partitions whose values are among `targets` (one value per
    /// partition column each), in every spelling other writers gave their
    /// directories (`hour=07` and `hour=7`): each level is listed with a
    /// delimiter under the directories that still match a target, so a
    /// write that replaces a few partitions lists a few directories, not
    /// the table.
    pub(crate) async fn list_partitions_with(
        &self,
        spec: &PartitionSpec,
        extension: &str,
        targets: &[Vec<ScalarValue>],
    ) -> Result<Vec<ListedPartition>> {
        let root = self.root;
        let mut dirs: Vec<(Path, Vec<ScalarValue>)> = vec![(root.prefix().clone(), Vec::new())];
        for (level, column) in spec.columns().iter().enumerate() {
            let listed = self.subdirectories(dirs).await?;
            let mut next = Vec::new();
            for (_, values, children) in listed {
                for child in children {
                    let Some(name) = child.filename().filter(|name| !is_hidden(name)) else {
                        continue;
                    };
                    let path = child.to_string();
                    let value = split_key_value(&path, name)
                        .ok()
                        .filter(|(key, _)| *key == column.name)
                        .and_then(|(_, raw)| parse_value(&path, column, raw).ok());
                    let Some(value) = value else {
                        continue;
                    };
                    let wanted = targets.iter().any(|t| {
                        t.get(..level) == Some(values.as_slice()) && t.get(level) == Some(&value)
                    });
                    if wanted {
                        let mut values = values.clone();
                        values.push(value);
                        next.push((child, values));
                    }
                }
            }
            dirs = next;
        }
        if dirs.is_empty() {
            return Ok(Vec::new());
        }
        let listed = self
            .list_under(dirs.into_iter().map(|(dir, _)| dir).collect())
            .await?;
        let listing = partitions_from(listed, root, self.kind, Some(spec), extension).await?;
        Ok(listing.partitions)
    }

    /// The subdirectories of each of `dirs` (with the partition values
    /// that led there), one delimiter listing each, several at once.
    async fn subdirectories(
        &self,
        dirs: Vec<(Path, Vec<ScalarValue>)>,
    ) -> Result<Vec<(Path, Vec<ScalarValue>, Vec<Path>)>> {
        let store = self.store;
        futures::stream::iter(dirs.into_iter().map(|(dir, values)| {
            async move {
                let listing = store.list_with_delimiter(Some(&dir)).await?;
                Ok::<_, object_store::Error>((dir, values, listing.common_prefixes))
            }
            .boxed()
        }))
        .buffer_unordered(self.concurrency)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|source| Error::Listing {
            root: self.root.to_string(),
            source,
        })
    }

    /// Every object under the root, sorted by path.
    ///
    /// One recursive listing is one request per 1,000 keys, one after
    /// another. On an object store, the listing splits itself instead: a
    /// listing that has read `split_after` keys (S3's page) and still has
    /// keys to go hands the rest of its key range, cut at [`split_points`],
    /// to new listings that start there (`list_with_offset`, S3's
    /// `StartAfter`), while at most `concurrency` run at once. Nothing is
    /// listed first to find where to cut: the keys read so far say where
    /// they vary (`p=10098/…` after `p=0/…`: cut at `p=2`, `p=3`, …), so a
    /// lake of 10⁶ files in 10⁵ directories is read in about as many pages
    /// as one listing reads, `concurrency` at a time. The ranges partition
    /// the key space, so every object is listed by exactly one of them; each
    /// is retried whole with the table's policy.
    ///
    /// Splitting pays only on a store whose pages each wait for a request
    /// and whose listings after an offset start there, and the root's URL
    /// does not say which stores do (`InMemory` or a wrapper that does not
    /// forward `list_with_offset` can stand behind `s3://`). So the listing
    /// watches the store and falls back to one listing of the root, which
    /// bounds what it costs to about one listing more:
    ///
    /// * it splits only once the first listing has waited for pages
    ///   ([`PAGE_WAITS`] waits of a good part of its first request's): a
    ///   store that answers with every key at once is listed by that one
    ///   listing;
    /// * a range listing whose first key takes longer than
    ///   [`SLOW_FIRST_KEY`] requests has read from the root's start to
    ///   reach its offset (object_store's default `list_with_offset`); after
    ///   [`SLOW_LISTINGS`] of them, or one key at or before an offset, the
    ///   ranges are dropped for one listing;
    /// * a listing that sees a key out of order (the ranges hold only on a
    ///   store that lists in key order, as S3, GCS and Azure do) drops them
    ///   too.
    ///
    /// The local disk and `memory://` (no request latency to hide) are
    /// listed with one listing (the local disk with a walk, see
    /// [`list_under`](Self::list_under)).
    async fn list_root(&self) -> Result<Listed> {
        let prefix = self.root.prefix();
        if self.concurrency == 1 || !self.kind.has_request_latency() {
            return self.list_under(vec![prefix.clone()]).await;
        }
        // Where keys begin to differ below the root: never cut above it.
        let floor = offset_below(prefix);
        let (splits, mut posted) = tokio::sync::mpsc::unbounded_channel::<KeyRange>();
        let shared = Splitting {
            splits,
            outstanding: AtomicUsize::new(1),
            request: OnceLock::new(),
            paged: AtomicBool::new(false),
            slow: AtomicUsize::new(0),
            fallback: OnceLock::new(),
        };
        let mut pending = VecDeque::from([KeyRange::default()]);
        let mut running = FuturesUnordered::new();
        let mut objects = Vec::new();
        loop {
            while running.len() < self.concurrency {
                let Some(range) = pending.pop_front() else {
                    break;
                };
                running.push(self.list_splitting(prefix, floor, range, &shared));
            }
            if running.is_empty() {
                // Every listing is done; what one posted as it ended is here.
                match posted.try_recv() {
                    Ok(range) => {
                        pending.push_back(range);
                        continue;
                    }
                    Err(_) => break,
                }
            }
            tokio::select! {
                Some(listed) = running.next() => {
                    objects.extend(listed.map_err(|e| self.listing_error(e))?);
                    shared.outstanding.fetch_sub(1, AtomicOrdering::Relaxed);
                }
                Some(range) = posted.recv() => pending.push_back(range),
            }
            if let Some(why) = shared.fallback.get() {
                tracing::debug!(root = %self.root, reason = ?why,
                    "range listings do not pay on this store: listing the root with one listing");
                drop(running);
                return self.list_under(vec![prefix.clone()]).await;
            }
        }
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(Listed::through_store(objects))
    }

    /// The objects in `range` under `prefix`, from one listing that starts
    /// after `range.after` and stops past `range.until`; every `split_after`
    /// keys, once the store is known to page (see [`list_root`](Self::list_root))
    /// and while fewer than twice `concurrency` ranges are outstanding (so
    /// a listing that ends finds another waiting), the rest of the range is
    /// cut and posted to `splits`. A failed listing is retried whole, up to
    /// where its range ends by then (what it posted is other listings').
    /// A listing that shows the ranges do not hold or do not pay sets
    /// `fallback` and ends with nothing.
    async fn list_splitting(
        &self,
        prefix: &Path,
        floor: usize,
        range: KeyRange,
        shared: &Splitting,
    ) -> object_store::Result<Vec<ObjectMeta>> {
        let Splitting {
            splits,
            outstanding,
            request,
            paged,
            slow,
            ..
        } = shared;
        let name = range.after.as_deref().unwrap_or(prefix.as_ref());
        let until = std::sync::Mutex::new(range.until);
        let after = range.after.as_deref().map(Path::parse).transpose()?;
        // A range counts as slow once, however often it is retried.
        let struck = AtomicBool::new(false);
        let attempt = || async {
            let mut end = until
                .lock()
                .map_or_else(|e| e.into_inner().clone(), |e| e.clone());
            let began = tokio::time::Instant::now();
            let mut listing = match (&after, &self.retry) {
                // Each page within the request timeout, not the whole range
                // (a resilient store streams offset listings unbounded).
                (Some(after), Some(policy)) => {
                    policy.each_within(name, self.store.list_with_offset(Some(prefix), after))
                }
                (Some(after), None) => self.store.list_with_offset(Some(prefix), after),
                // A resilient store collects a plain listing whole (to retry
                // it whole): the root's keys would arrive only at its end.
                // Every key under `prefix` is after `prefix` itself, so this
                // streams the same keys, retried here.
                (None, Some(policy)) if !prefix.as_ref().is_empty() => {
                    policy.each_within(name, self.store.list_with_offset(Some(prefix), prefix))
                }
                (None, _) => self.store.list(Some(prefix)),
            };
            // A range listing on a store that lists from the start waits
            // for every key before its offset: past this, it is slow.
            let slow_after = request.get().map_or(MIN_SLOW_FIRST_KEY, |r| {
                (*r * SLOW_FIRST_KEY).max(MIN_SLOW_FIRST_KEY)
            });
            let mut first_key_at = None;
            // The root listing's time of its last key, and the waits for
            // pages it saw.
            let (mut last_key_at, mut waits) = (None, 0);
            let mut objects = Vec::new();
            let mut stretch = 0;
            loop {
                let next = match (&after, first_key_at) {
                    (Some(_), None) => {
                        match tokio::time::timeout(slow_after, listing.try_next()).await {
                            Ok(next) => next?,
                            Err(_) => {
                                let first_strike = !struck.swap(true, AtomicOrdering::Relaxed);
                                if first_strike
                                    && slow.fetch_add(1, AtomicOrdering::Relaxed) + 1
                                        >= SLOW_LISTINGS
                                {
                                    shared.give_up(Fallback::FromStart);
                                    return Ok(Vec::new());
                                }
                                // Perhaps one slow request: wait it out.
                                listing.try_next().await?
                            }
                        }
                    }
                    _ => listing.try_next().await?,
                };
                let Some(meta) = next else {
                    break;
                };
                let key = meta.location.as_ref();
                if first_key_at.is_none() {
                    first_key_at = Some(tokio::time::Instant::now());
                    match &after {
                        // A key the range excludes: the store ignored the offset.
                        Some(after) if meta.location <= *after => {
                            shared.give_up(Fallback::OffsetIgnored);
                            return Ok(Vec::new());
                        }
                        Some(_) => {}
                        None => {
                            let _ = request.set(began.elapsed());
                        }
                    }
                }
                if objects
                    .last()
                    .is_some_and(|previous: &ObjectMeta| key < previous.location.as_ref())
                {
                    shared.give_up(Fallback::Unordered);
                    return Ok(Vec::new());
                }
                if end.as_deref().is_some_and(|end| key > end) {
                    // The range ends here, if keys come in order: the next
                    // one must not be smaller. (Without this check, a range
                    // whose first key is already past its end would end
                    // without comparing any two keys.)
                    if let Some(next) = listing.try_next().await? {
                        if next.location.as_ref() < key {
                            shared.give_up(Fallback::Unordered);
                            return Ok(Vec::new());
                        }
                    }
                    break;
                }
                stretch += 1;
                if after.is_none() && !paged.load(AtomicOrdering::Relaxed) {
                    // A wait between two keys that is a good part of a
                    // request is a page the store fetched: its pages wait.
                    let now = tokio::time::Instant::now();
                    let request = request.get().copied().unwrap_or_default();
                    if last_key_at.is_some_and(|at| (now - at) * PAGE_WAIT >= request) {
                        waits += 1;
                        if waits >= PAGE_WAITS {
                            paged.store(true, AtomicOrdering::Relaxed);
                        }
                    }
                    last_key_at = Some(now);
                }
                let first = objects.len() + 1 - stretch;
                if stretch >= self.split_after
                    && paged.load(AtomicOrdering::Relaxed)
                    && outstanding.load(AtomicOrdering::Relaxed) < 2 * self.concurrency
                {
                    let first_key = objects
                        .get(first)
                        .map_or(key, |m: &ObjectMeta| m.location.as_ref());
                    let points = split_points(first_key, key, end.as_deref(), floor);
                    if let Some(nearest) = points.first().cloned() {
                        let ends = points.iter().skip(1).cloned().map(Some);
                        for (after, until) in points.iter().cloned().zip(ends.chain([end.clone()]))
                        {
                            outstanding.fetch_add(1, AtomicOrdering::Relaxed);
                            // The receiver lives until every listing is done.
                            let _ = splits.send(KeyRange {
                                after: Some(after),
                                until,
                            });
                        }
                        end = Some(nearest);
                        *until.lock().unwrap_or_else(|e| e.into_inner()) = end.clone();
                    }
                    stretch = 0;
                }
                objects.push(meta);
            }
            Ok(objects)
        };
        match &self.retry {
            Some(policy) => policy.retry_listing(name, attempt).await,
            None => attempt().await,
        }
    }

    /// Every object under each of `prefixes` (recursive listings, several at
    /// once), sorted by path.
    ///
    /// Where the store is [`local_file_system`](crate::store::local_file_system)
    /// (`SessionBuilder`'s default), the directories are read directly on up
    /// to one thread per core (at most `concurrency`), which lists the same
    /// objects in less time and sees the symbolic links below the root as it
    /// reads ([`local_walk`]); a tree that holds a link is listed through
    /// the store, and its links checked.
    async fn list_under(&self, prefixes: Vec<Path>) -> Result<Listed> {
        if self.walks_the_disk {
            let root = self.root.prefix().clone();
            let walked =
                local_walk::walk_off_runtime(root, prefixes.clone(), self.concurrency).await;
            if let Walked::Files(objects) = walked {
                return Ok(Listed {
                    objects,
                    without_links: true,
                });
            }
        }
        let listings = futures::stream::iter(prefixes.into_iter().map(|prefix| {
            async move {
                self.store
                    .list(Some(&prefix))
                    .try_collect::<Vec<ObjectMeta>>()
                    .await
            }
            .boxed()
        }))
        .buffer_unordered(self.concurrency)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| self.listing_error(e))?;
        let mut objects: Vec<ObjectMeta> = listings.into_iter().flatten().collect();
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(Listed::through_store(objects))
    }

    /// The partitions under the directories of the first `levels` partition
    /// columns whose values `select` accepts, listed as [`list_partitions`](Self::list_partitions)
    /// lists the whole root, and what the listing covered.
    ///
    /// The directories are found level by level: where `pinned` gives a
    /// column's values (from an `=`/`IN` in the predicate) and they encode to
    /// plain directory names, those names (our writer's spelling) are used
    /// without a request; otherwise the level is found with delimiter
    /// listings (several at once). `select` sees a batch of the candidates'
    /// values (the first `levels` partition columns) and says which to
    /// re-list. `known` adds directories (of `levels` levels) the table
    /// already holds for the predicate, under whatever spelling their writer
    /// used (`hour=07`, `ts=10%3A00`): they are re-listed too. A directory at
    /// a walked level that is not this column's `key=value` (`tmp/`) is
    /// listed as well, so that the Hive rules of `build()` decide about it
    /// (ignored without data files, an error with them). Files outside the
    /// listed directories are not looked at.
    pub(crate) async fn list_selected_partitions(
        &self,
        spec: &PartitionSpec,
        extension: &str,
        levels: usize,
        pinned: &[Option<Vec<ScalarValue>>],
        known: Vec<Path>,
        select: impl FnOnce(&RecordBatch) -> Result<Vec<bool>>,
    ) -> Result<(Listing, Coverage)> {
        let root = self.root;
        let table = root.to_string();
        let mut coverage = Coverage::default();
        // Directories that are no partition of this table's spec: listed
        // whole, for the Hive rules to judge what is in them.
        let mut odd: Vec<Path> = Vec::new();
        let mut dirs: Vec<(Path, Vec<ScalarValue>)> = vec![(root.prefix().clone(), Vec::new())];
        for (level, column) in spec.columns().iter().enumerate().take(levels) {
            let pinned_names = pinned
                .get(level)
                .and_then(Option::as_ref)
                .and_then(|values| {
                    values
                        .iter()
                        .map(|v| {
                            let v = v.cast_to(&column.data_type).ok()?;
                            let name = partition_dir(&table, column, &v).ok()?;
                            // A name with escapes may be spelled otherwise by
                            // another writer: list that level instead.
                            (!name.contains('%')).then_some((name, v))
                        })
                        .collect::<Option<Vec<_>>>()
                });
            if let Some(names) = pinned_names {
                dirs = dirs
                    .into_iter()
                    .flat_map(|(dir, values)| {
                        names.iter().map(move |(name, value)| {
                            let mut values = values.clone();
                            values.push(value.clone());
                            let path = Path::parse(format!("{dir}/{name}"));
                            path.map(|path| (path, values))
                        })
                    })
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|source| Error::PartitionPath {
                        path: table.clone(),
                        problem: PathProblem::ObjectPath { source },
                    })?;
                continue;
            }
            let listed = self.subdirectories(dirs).await?;
            let mut next = Vec::new();
            for (parent, values, children) in listed {
                let mut names = HashSet::with_capacity(children.len());
                for child in children {
                    let Some(name) = child.filename().map(str::to_string) else {
                        continue;
                    };
                    if is_hidden(&name) {
                        continue;
                    }
                    names.insert(name.clone());
                    let path = child.to_string();
                    let value = split_key_value(&path, &name)
                        .ok()
                        .filter(|(key, _)| *key == column.name)
                        .and_then(|(_, raw)| parse_value(&path, column, raw).ok());
                    let Some(value) = value else {
                        odd.push(child);
                        continue;
                    };
                    let mut values = values.clone();
                    values.push(value);
                    next.push((child, values));
                }
                coverage.walked.insert(parent.to_string(), names);
            }
            dirs = next;
        }
        let fields = spec.fields().into_iter().take(levels).collect::<Vec<_>>();
        // No candidate left (a pinned directory that is not there, a level
        // of odd directories only): nothing to evaluate.
        let columns = if dirs.is_empty() {
            Ok(Vec::new())
        } else {
            (0..fields.len())
                .map(|level| ScalarValue::iter_to_array(dirs.iter().map(|(_, v)| v[level].clone())))
                .collect::<datafusion::error::Result<Vec<_>>>()
        };
        let mut selected: Vec<Path> =
            match columns {
                Ok(columns) if !dirs.is_empty() => {
                    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                        .map_err(|e| Error::InvalidTable {
                            root: table.clone(),
                            problem: TableProblem::RefreshEvaluation {
                                source: Box::new(e.into()),
                            },
                        })?;
                    let keep = select(&batch)?;
                    dirs.into_iter()
                        .zip(keep)
                        .filter_map(|((dir, _), keep)| keep.then_some(dir))
                        .collect()
                }
                Ok(_) => Vec::new(),
                Err(e) => {
                    return Err(Error::InvalidTable {
                        root: table,
                        problem: TableProblem::RefreshEvaluation {
                            source: Box::new(e),
                        },
                    })
                }
            };
        selected.extend(known);
        selected.extend(odd);
        selected.sort();
        selected.dedup();
        coverage.listed = selected.iter().map(|dir| dir.to_string()).collect();
        coverage.root = root.prefix().to_string();
        let listed = self.list_under(selected).await?;
        let listing = partitions_from(listed, root, self.kind, Some(spec), extension).await?;
        Ok((listing, coverage))
    }
}

/// What a partial listing saw whole: which partitions of the index it
/// replaces. A partition is replaced when the listing looked where it is —
/// its directory lies in a directory listed whole — or when a walked level
/// shows it is gone (its directory at that level is no longer there). Every
/// other partition stays as it was: a refresh never removes what it did
/// not look at.
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    /// The table root's prefix.
    root: String,
    /// Directories listed whole, recursively.
    listed: HashSet<String>,
    /// Directories whose children were listed (delimiter listings), with
    /// the names of the children that are there.
    walked: HashMap<String, HashSet<String>>,
}

impl Coverage {
    /// Whether the partition whose directory is `dir` is replaced by what
    /// the listing found: one lookup per level of `dir` below the root.
    pub(crate) fn covers(&self, dir: &Path) -> bool {
        let dir = dir.as_ref();
        let relative = match self.root.as_str() {
            "" => Some(dir),
            root => dir
                .strip_prefix(root)
                .and_then(|rest| rest.strip_prefix('/')),
        };
        let Some(relative) = relative else {
            return false;
        };
        // `ancestor` runs through the root, then each level of `dir`.
        let mut ancestor = self.root.as_str();
        let mut end = match self.root.len() {
            // Where the parts below the root begin (as `below` computes).
            0 => 0,
            len => len + 1,
        };
        for child in relative.split('/') {
            let gone = self
                .walked
                .get(ancestor)
                .is_some_and(|names| !names.contains(child));
            if gone || self.listed.contains(ancestor) {
                return true;
            }
            end += child.len();
            ancestor = dir.get(..end).unwrap_or(dir);
            end += 1;
        }
        self.listed.contains(ancestor)
    }
}

/// The directories, `levels` deep below `root`, of the partitions of
/// `index` that `selected` marks (one flag per partition), spelled as the
/// index holds them.
pub(crate) fn dirs_at_level(
    index: &PartitionIndex,
    selected: &[bool],
    root: &ListingTableUrl,
    levels: usize,
) -> Vec<Path> {
    let below = offset_below(root.prefix());
    let mut dirs: Vec<Path> = index
        .partitions()
        .iter()
        .zip(selected)
        .filter(|(_, selected)| **selected)
        .filter_map(|(partition, _)| {
            let dir = partition.dir().as_ref();
            let end = dir
                .get(below..)?
                .match_indices('/')
                .nth(levels.checked_sub(1)?)
                .map_or(dir.len(), |(i, _)| below + i);
            Path::parse(&dir[..end]).ok()
        })
        .collect();
    dirs.dedup();
    dirs
}

/// The offset in a key under `prefix` where the parts below it begin
/// (after `prefix/`).
fn offset_below(prefix: &Path) -> usize {
    match prefix.as_ref() {
        "" => 0,
        p => p.len() + 1,
    }
}

/// Groups listed objects into partitions: data files only (see
/// [`list_partitions`]), symbolic links checked on `file://` roots, values
/// parsed once per run of a directory's files (once per directory when
/// `objects` are in key order, as every listing here returns them; any
/// order gives the same partitions).
async fn partitions_from(
    listed: Listed,
    root: &ListingTableUrl,
    kind: StoreKind,
    declared: Option<&PartitionSpec>,
    extension: &str,
) -> Result<Listing> {
    let prefix = root.prefix();
    // Where a path's parts under the root begin.
    let below = offset_below(prefix);
    // The data files (at 10⁶ files, no allocation per file here: their
    // parts are read from the path itself).
    let files: Vec<ObjectMeta> = listed
        .objects
        .into_iter()
        .filter(|meta| {
            // Not under the root: never read.
            if meta.location.prefix_match(prefix).is_none() {
                return false;
            }
            let relative = meta.location.as_ref().get(below..).unwrap_or("");
            let Some(file_name) = relative.rsplit('/').next().filter(|n| !n.is_empty()) else {
                return false;
            };
            !relative.split('/').any(is_hidden)
                && !file_name.starts_with('_')
                && file_name.ends_with(extension)
        })
        .collect();

    // A walk that saw no link leaves nothing to check but that an empty
    // root exists.
    let needs_check = !listed.without_links || files.is_empty();
    let files = if kind.is_local_disk() && needs_check {
        let threads = link_check_threads(files.len());
        check_local_links(root, files, below, threads).await?
    } else {
        files
    };

    let mut spec = declared.cloned();
    // One entry per run of files in the same directory. A listing in key
    // order gives a directory's files one after another (unless files sit
    // in a directory above another's, which the depth check refuses), so
    // most files join the last run without a lookup; the runs are sorted
    // and joined by directory at the end.
    let mut runs: Vec<(String, ListedPartition)> = Vec::new();
    for meta in files {
        let file = IndexedFile {
            meta,
            statistics: None,
            bucket: None,
            sorted: false,
        };
        let path = file.meta.location.as_ref();
        let relative = path.get(below..).unwrap_or("");
        let key = relative.rsplit_once('/').map_or("", |(dirs, _)| dirs);
        if let Some((dir, partition)) = runs.last_mut() {
            if dir == key {
                partition.files.push(file);
                continue;
            }
        }
        let dirs: Vec<&str> = if key.is_empty() {
            Vec::new()
        } else {
            key.split('/').collect()
        };
        let spec = match &spec {
            Some(spec) => spec,
            None => spec.insert(infer_spec(path, &dirs)?),
        };
        // Files share their directory's values: parsed once per run.
        let values = spec.parse_dirs(path, &dirs)?;
        runs.push((
            key.to_string(),
            ListedPartition {
                values,
                files: vec![file],
            },
        ));
    }
    // Nearly in order after a listing in key order: only a directory whose
    // name begins another's moves (`p=1-2/…` lists before `p=1/…`).
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1.files.append(&mut later.1.files);
        }
        same
    });
    Ok(Listing {
        spec: spec.unwrap_or_default(),
        partitions: runs.into_iter().map(|(_, partition)| partition).collect(),
    })
}

/// Files a thread of the link check takes at least: below twice this, one
/// thread checks them all.
const LINK_CHECK_CHUNK: usize = 1_024;

/// How many threads check the links of `files` data files: one per
/// [`LINK_CHECK_CHUNK`], at most one per core.
fn link_check_threads(files: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (files / LINK_CHECK_CHUNK).clamp(1, cores)
}

/// The `file://` checks of a listing, off the async runtime (they block):
/// that a root with no files exists, and every data file's links
/// ([`LocalLinks`]). Each data file costs a `lstat` or a lookup in its
/// directory's entries, and the store's listing before this ran on one
/// core: the files are checked in `threads` runs of neighbours (a
/// directory's files mostly in one run). The error is the first bad file's
/// in listing order, as with one thread.
async fn check_local_links(
    root: &ListingTableUrl,
    files: Vec<ObjectMeta>,
    below: usize,
    threads: usize,
) -> Result<Vec<ObjectMeta>> {
    let blocking_failed = |source| Error::InvalidTable {
        root: root.to_string(),
        problem: TableProblem::BlockingTask {
            what: "the symbolic-link check of the listing",
            source,
        },
    };
    if files.is_empty() {
        let owned = root.clone();
        tokio::task::spawn_blocking(move || check_local_root_exists(&owned))
            .await
            .map_err(blocking_failed)??;
        return Ok(files);
    }
    let threads = threads.clamp(1, files.len());
    let per_thread = files.len().div_ceil(threads);
    let files = Arc::new(files);
    let checks: Vec<_> = (0..threads)
        .map(|t| {
            let (files, owned) = (Arc::clone(&files), root.clone());
            tokio::task::spawn_blocking(move || {
                let Some(mut links) = LocalLinks::new(&owned) else {
                    return Ok(());
                };
                let end = files.len().min((t + 1) * per_thread);
                for meta in files.get(t * per_thread..end).unwrap_or_default() {
                    let path = meta.location.as_ref();
                    links.check(path, path.get(below..).unwrap_or("").split('/'))?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    // Joined in order, so that the first run's error is the one reported.
    for check in futures::future::join_all(checks).await {
        check.map_err(blocking_failed)??;
    }
    // The checks are done and hold no copy: this takes the list back.
    Ok(Arc::try_unwrap(files).unwrap_or_else(|files| files.as_ref().clone()))
}

fn infer_spec(path: &str, dirs: &[&str]) -> Result<PartitionSpec> {
    let mut columns: Vec<(String, DataType)> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let (key, _) = split_key_value(path, dir)?;
        if columns.iter().any(|(k, _)| *k == key) {
            return Err(Error::PartitionPath {
                path: path.to_string(),
                problem: PathProblem::RepeatedKey { key },
            });
        }
        columns.push((key, DataType::Utf8));
    }
    Ok(PartitionSpec::new(columns))
}

/// Children of one directory looked at with a `lstat` each before
/// [`LocalLinks`] reads that directory's entries instead.
const READ_PARENT_AFTER: usize = 16;

/// The symbolic-link check of a `file://` root: every directory and data file
/// under the root is looked at; a link must resolve to somewhere inside the
/// root's real path ([`LocalRoot`]).
///
/// Names are taken from the listing's keys as they are: `LocalFileSystem`'s
/// keys hold the names on disk literally (it decodes a file URL's escapes
/// once), so a Hive-escaped `ts=10%3A00` is that on disk too, and decoding
/// it again would look at another path.
///
/// A name is looked at with a `lstat`, until [`READ_PARENT_AFTER`] children
/// of its directory have been; then that directory's entries are read,
/// once per thread (their types come with the entries on most file
/// systems; `std` asks with a `lstat` where they do not). So a
/// daily-partitioned root's thousands of directories cost one `read_dir`
/// of the root, and a refresh of a few partitions a `lstat` each. A
/// directory whose entries cannot all be read (permissions, descriptors)
/// goes on with a `lstat` per name.
struct LocalLinks {
    root: String,
    dir: PathBuf,
    real_root: LocalRoot,
    /// Directories found not to be links, or links that stay inside.
    checked: HashSet<PathBuf>,
    /// What is known of each directory whose children were looked at.
    parents: HashMap<PathBuf, ParentEntries>,
}

/// What [`LocalLinks`] knows of one directory's entries.
enum ParentEntries {
    /// This many children were looked at with a `lstat` each.
    Looked(usize),
    /// The entries were read: the names of the links among them.
    Links(HashSet<std::ffi::OsString>),
    /// The entries could not all be read: a `lstat` per name.
    Unreadable,
}

impl LocalLinks {
    /// `None` for roots that are not on the local file system.
    fn new(root: &ListingTableUrl) -> Option<Self> {
        let url: &url::Url = root.as_ref();
        let dir = url.to_file_path().ok()?;
        let real_root = LocalRoot::of_dir(&dir)?;
        Some(Self {
            root: root.to_string(),
            dir,
            real_root,
            checked: HashSet::new(),
            parents: HashMap::new(),
        })
    }

    /// Checks the directories and the file named by `parts` (relative to the
    /// root, as object-store path parts); `path` names the file in errors.
    fn check<'p>(&mut self, path: &str, parts: impl Iterator<Item = &'p str>) -> Result<()> {
        let mut local = self.dir.clone();
        let mut parts = parts.peekable();
        while let Some(name) = parts.next() {
            let is_dir = parts.peek().is_some();
            let child = local.join(name);
            let known = is_dir && self.checked.contains(&child);
            if !known && self.is_link(&local, name, &child) {
                let problem = match self.real_root.resolve(&child) {
                    LinkTarget::Inside => None,
                    LinkTarget::Outside(target) => Some(PathProblem::LinkOutsideRoot {
                        link: child.display().to_string(),
                        target: target.display().to_string(),
                        root: self.root.clone(),
                    }),
                    LinkTarget::Broken => Some(PathProblem::BrokenLink {
                        link: child.display().to_string(),
                    }),
                };
                if let Some(problem) = problem {
                    return Err(Error::PartitionPath {
                        path: path.to_string(),
                        problem,
                    });
                }
            }
            if is_dir && !known {
                self.checked.insert(child.clone());
            }
            local = child;
        }
        Ok(())
    }

    /// Whether `parent`'s entry `name` (at `child`) is a symbolic link.
    fn is_link(&mut self, parent: &std::path::Path, name: &str, child: &std::path::Path) -> bool {
        let lstat = || std::fs::symlink_metadata(child).is_ok_and(|m| m.file_type().is_symlink());
        if !self.parents.contains_key(parent) {
            self.parents
                .insert(parent.to_path_buf(), ParentEntries::Looked(0));
        }
        let Some(entries) = self.parents.get_mut(parent) else {
            return lstat();
        };
        if let ParentEntries::Looked(looked) = entries {
            if *looked < READ_PARENT_AFTER {
                *looked += 1;
                return lstat();
            }
            *entries =
                links_among_entries(parent).map_or(ParentEntries::Unreadable, ParentEntries::Links);
        }
        match entries {
            ParentEntries::Links(links) => links.contains(std::ffi::OsStr::new(name)),
            ParentEntries::Looked(_) | ParentEntries::Unreadable => lstat(),
        }
    }
}

/// The names of the symbolic links among `dir`'s entries; `None` unless
/// every entry and its type could be read.
fn links_among_entries(dir: &std::path::Path) -> Option<HashSet<std::ffi::OsString>> {
    let mut links = HashSet::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        if entry.file_type().ok()?.is_symlink() {
            links.insert(entry.file_name());
        }
    }
    Some(links)
}

/// Object stores have no directories, so an empty listing is an empty table;
/// on the local file system a root that does not exist at all is almost always
/// a typo, so it is reported.
fn check_local_root_exists(root: &ListingTableUrl) -> Result<()> {
    let url: &url::Url = root.as_ref();
    match url.to_file_path() {
        Ok(path) if !path.exists() => Err(Error::RootNotFound {
            root: root.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_go_where_keys_vary_and_stay_inside_the_range() {
        // The stretch ran from `p=10001` to `p=10098`: values vary from their
        // third digit.
        let points = split_points("t/p=10001/a", "t/p=10098/part-9", Some("t/p=2"), 2);
        let expected: Vec<String> = (1..=9)
            .map(|d| format!("t/p=10{d}"))
            .chain((1..=9).map(|d| format!("t/p=1{d}")))
            .collect();
        // `t/p=101` … `t/p=109`, then `t/p=11` … `t/p=19`: `t/p=10099…`
        // stays in the listing's own range.
        assert_eq!(points, expected);
        // From the root's first page (`p=0` … `p=10098`): the first digit.
        let points = split_points("t/p=0/a", "t/p=10098/part-9", Some("t/p=2"), 2);
        assert!(points.is_empty(), "{points:?}");
        let points = split_points("t/p=0/a", "t/p=10098/part-9", None, 2);
        assert_eq!(
            points,
            (2..=9).map(|d| format!("t/p={d}")).collect::<Vec<_>>()
        );
        // A flat table: file names vary.
        let points = split_points("t/part-00001.parquet", "t/part-00999.parquet", None, 2);
        assert_eq!(points.first().map(String::as_str), Some("t/part-01"));
        // Unbounded: down to the root's level, never in a key; letters
        // after letters.
        let points = split_points("t/region=eu/a", "t/region=us/b", None, 2);
        assert_eq!(
            points,
            [
                "t/region=v",
                "t/region=w",
                "t/region=x",
                "t/region=y",
                "t/region=z"
            ]
        );
        assert!(points.iter().all(|p| p.as_str() > "t/region=us/b"));
        assert!(points.windows(2).all(|w| w[0] < w[1]));
        assert!(points.len() <= MAX_SPLIT_POINTS);
        // Nothing to cut between neighbours.
        assert!(split_points("t/p=1/a", "t/p=1/b", Some("t/p=1/c"), 2).is_empty());
        // Never above the root.
        assert!(split_points("a/x", "b/y", None, 2)
            .iter()
            .all(|p| p.starts_with("b/")));
    }

    #[tokio::test]
    async fn a_directorys_files_make_one_partition_in_any_listing_order() {
        let root = ListingTableUrl::parse("memory:///t/").unwrap();
        let meta = |key: &str| ObjectMeta {
            location: Path::from(key),
            last_modified: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            size: 1,
            e_tag: None,
            version: None,
        };
        // Key order lists `p=1-2/` before `p=1/` (`-` sorts before `/`),
        // directory order after it; and a store that does not list in key
        // order splits `p=1/`'s files into three runs.
        let listed = [
            "t/p=1-2/a.parquet",
            "t/p=1/a.parquet",
            "t/p=10/a.parquet",
            "t/p=1/b.parquet",
            "t/_SUCCESS",
            "t/p=10/b.parquet",
            "t/p=1/c.parquet",
        ];
        let listing = partitions_from(
            Listed::through_store(listed.iter().map(|k| meta(k)).collect()),
            &root,
            StoreKind::Memory,
            None,
            ".parquet",
        )
        .await
        .unwrap();
        let got: Vec<(ScalarValue, Vec<&str>)> = listing
            .partitions
            .iter()
            .map(|p| {
                let files = p.files.iter().map(|f| f.meta.location.as_ref()).collect();
                (p.values[0].clone(), files)
            })
            .collect();
        let utf8 = |v: &str| ScalarValue::Utf8(Some(v.into()));
        assert_eq!(
            got,
            vec![
                (
                    utf8("1"),
                    vec!["t/p=1/a.parquet", "t/p=1/b.parquet", "t/p=1/c.parquet"]
                ),
                (utf8("1-2"), vec!["t/p=1-2/a.parquet"]),
                (utf8("10"), vec!["t/p=10/a.parquet", "t/p=10/b.parquet"]),
            ]
        );
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_link_check_in_runs_checks_every_file_and_names_the_first_bad_one() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.parquet");
        std::fs::write(&secret, b"x").unwrap();
        let tree = Tree::of(&(0..12).map(|i| format!("k={i:02}")).collect::<Vec<_>>());
        let keys = |files: &[ObjectMeta]| -> Vec<String> {
            files.iter().map(|f| f.location.to_string()).collect()
        };
        // Four runs of three files, on four threads.
        let files = tree.listed().await;
        let checked = tree.check(files.clone(), 4).await.unwrap();
        assert_eq!(keys(&checked), keys(&files));

        // A link out of the root in the last run is found...
        std::os::unix::fs::symlink(&secret, tree.real.join("k=11/b.parquet")).unwrap();
        let (path, _) = link_error(tree.check(tree.listed().await, 4).await);
        assert!(path.ends_with("k=11/b.parquet"), "{path}");
        // ... and with another in an earlier run, that one is named.
        std::os::unix::fs::symlink(&secret, tree.real.join("k=04/b.parquet")).unwrap();
        let (path, _) = link_error(tree.check(tree.listed().await, 4).await);
        assert!(path.ends_with("k=04/b.parquet"), "{path}");
    }

    /// A temporary table root on the local disk.
    #[cfg(unix)]
    struct Tree {
        _dir: tempfile::TempDir,
        /// Its real path.
        real: PathBuf,
        url: ListingTableUrl,
    }

    #[cfg(unix)]
    impl Tree {
        /// A root with `dirs`, each holding one data file.
        fn of(dirs: &[String]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let real = std::fs::canonicalize(dir.path()).unwrap();
            for d in dirs {
                std::fs::create_dir_all(real.join(d)).unwrap();
                std::fs::write(real.join(d).join("a.parquet"), b"x").unwrap();
            }
            let url = ListingTableUrl::parse(format!("file://{}/", real.display())).unwrap();
            Self {
                _dir: dir,
                real,
                url,
            }
        }

        /// Its files, as object_store's `LocalFileSystem` lists them.
        async fn listed(&self) -> Vec<ObjectMeta> {
            let mut files: Vec<ObjectMeta> = object_store::local::LocalFileSystem::new()
                .list(Some(self.url.prefix()))
                .try_collect()
                .await
                .unwrap();
            files.sort_by(|a, b| a.location.cmp(&b.location));
            files
        }

        async fn check(&self, files: Vec<ObjectMeta>, threads: usize) -> Result<Vec<ObjectMeta>> {
            check_local_links(&self.url, files, offset_below(self.url.prefix()), threads).await
        }
    }

    /// The file and the link of a link-out-of-the-root error.
    #[cfg(unix)]
    fn link_error(result: Result<Vec<ObjectMeta>>) -> (String, String) {
        match result {
            Err(Error::PartitionPath {
                path,
                problem: PathProblem::LinkOutsideRoot { link, .. },
            }) => (path, link),
            other => panic!("not a link error: {:?}", other.map(|files| files.len())),
        }
    }

    /// Below the first level, among few siblings (each looked at with a
    /// `lstat`) and among many (the parent's entries read once).
    #[cfg(unix)]
    #[tokio::test]
    async fn a_directory_link_below_the_first_level_is_checked() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("d=9")).unwrap();
        std::fs::write(outside.path().join("d=9/secret.parquet"), b"x").unwrap();
        for siblings in [2, READ_PARENT_AFTER + 4] {
            let tree = Tree::of(
                &(0..siblings)
                    .map(|i| format!("m=1/d={i:02}"))
                    .collect::<Vec<_>>(),
            );
            // A link that stays inside the root, two levels down.
            std::os::unix::fs::symlink(tree.real.join("m=1/d=00"), tree.real.join("m=1/d=90"))
                .unwrap();
            let files = tree.listed().await;
            assert_eq!(files.len(), siblings + 1);
            tree.check(files, 1).await.unwrap();

            // One that leads out of it, looked up after all the others.
            std::os::unix::fs::symlink(outside.path().join("d=9"), tree.real.join("m=1/d=99"))
                .unwrap();
            let (path, link) = link_error(tree.check(tree.listed().await, 1).await);
            assert!(
                path.ends_with("m=1/d=99/secret.parquet"),
                "{siblings}: {path}"
            );
            assert!(link.ends_with("m=1/d=99"), "{siblings}: {link}");
        }
    }

    /// A data file linked out of the root among many files of one directory
    /// (found in the directory's entries, read once).
    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_link_among_many_files_of_a_directory_is_checked() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.parquet");
        std::fs::write(&secret, b"x").unwrap();
        let tree = Tree::of(&["k=1".to_string()]);
        for i in 0..READ_PARENT_AFTER + 4 {
            std::fs::write(tree.real.join(format!("k=1/f{i:02}.parquet")), b"x").unwrap();
        }
        std::os::unix::fs::symlink(&secret, tree.real.join("k=1/z.parquet")).unwrap();
        let (path, _) = link_error(tree.check(tree.listed().await, 1).await);
        assert!(path.ends_with("k=1/z.parquet"), "{path}");
    }

    #[cfg(feature = "test-utils")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_splitting_listing_lists_every_key_once() {
        use crate::store::faults::{Fault, FaultRule, FaultyStore, RequestKind};
        use crate::store::paged::{OffsetListing, PagedStore, Pages};
        use object_store::memory::InMemory;
        use object_store::{ObjectStoreExt, PutPayload};

        let memory = Arc::new(InMemory::new());
        let mut keys = vec![
            "lake/_SUCCESS".to_string(),
            "lake/.hidden/x.parquet".to_string(),
            "lakehouse/p=1/not-ours.parquet".to_string(),
        ];
        for p in 0..300 {
            for f in 0..(1 + p % 7) {
                keys.push(format!("lake/p={p}/part-{f}.parquet"));
            }
        }
        keys.extend((0..40).map(|i| format!("lake/name=v{i:02}/x.parquet")));
        for key in &keys {
            memory
                .put(&Path::from(key.as_str()), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        let mut expected: Vec<String> = keys
            .iter()
            .filter(|k| k.starts_with("lake/"))
            .cloned()
            .collect();
        expected.sort();
        // Pages of 7 keys that wait 5 ms each, as S3's do (a page that waits
        // is what makes a listing split).
        let pages = Pages {
            keys: 7,
            wait: std::time::Duration::from_millis(5),
            offsets: OffsetListing::AtOffset,
        };
        let inner: Arc<dyn ObjectStore> = Arc::new(
            PagedStore::new(Arc::clone(&memory) as Arc<dyn ObjectStore>, pages)
                .await
                .unwrap(),
        );
        // `lake/` as an S3 root, listed splitting every `split_after` keys.
        async fn list_root(
            store: &Arc<dyn ObjectStore>,
            concurrency: usize,
            split_after: usize,
            retry: Option<RetryPolicy>,
        ) -> Vec<String> {
            let root = ListingTableUrl::parse("s3://bucket/lake/").unwrap();
            let mut lister = Lister::new(store, &root, StoreKind::Remote, concurrency, retry);
            lister.split_after = split_after;
            let listed = lister.list_root().await.unwrap();
            listed
                .objects
                .iter()
                .map(|m| m.location.to_string())
                .collect()
        }
        let policy = RetryPolicy {
            max_retries: 5,
            initial_backoff: std::time::Duration::from_millis(1),
            max_backoff: std::time::Duration::from_millis(5),
            request_timeout: std::time::Duration::from_secs(10),
        };
        for (concurrency, split_after, faults) in
            [(4, 7, false), (32, 50, false), (2, 3, false), (8, 10, true)]
        {
            let faulty = FaultyStore::new(Arc::clone(&inner) as Arc<dyn ObjectStore>);
            if faults {
                faulty.inject(
                    FaultRule::new(Fault::Transient)
                        .on(RequestKind::List)
                        .every(3)
                        .times(5),
                );
            }
            // With a retry policy, as a table lists: through the store's
            // `ResilientStore` (whose plain listing is collected whole, to
            // be retried whole).
            let store = crate::store::ResilientStore::wrap(
                Arc::clone(&faulty) as Arc<dyn ObjectStore>,
                faults.then_some(policy),
            );
            let listed =
                list_root(&store, concurrency, split_after, faults.then_some(policy)).await;
            assert_eq!(
                listed, expected,
                "{concurrency} at once, split after {split_after}"
            );
            let listings = faulty.requests_of(RequestKind::List);
            assert!(listings > 10, "the listing split: {listings} listings");
            if faults {
                assert_eq!(faulty.injected(), 5);
            }
        }
        // A store that lists out of key order: the ranges would not hold,
        // so the root is listed again with one listing.
        let faulty = FaultyStore::new(Arc::clone(&inner) as Arc<dyn ObjectStore>);
        faulty.inject(
            FaultRule::new(Fault::Unordered)
                .on(RequestKind::List)
                .times(1),
        );
        let store: Arc<dyn ObjectStore> = Arc::clone(&faulty) as _;
        assert_eq!(list_root(&store, 4, 7, None).await, expected);
        assert_eq!(
            faulty.requests_of(RequestKind::List),
            2,
            "one listing, then one again"
        );
        // Out of order in a range listing, not the first: a range whose
        // first key is already past its end must still notice.
        for nth in 2..=8 {
            let faulty = FaultyStore::new(Arc::clone(&inner) as Arc<dyn ObjectStore>);
            faulty.inject(
                FaultRule::new(Fault::Unordered)
                    .on(RequestKind::List)
                    .every(nth)
                    .times(1),
            );
            let store: Arc<dyn ObjectStore> = Arc::clone(&faulty) as _;
            assert_eq!(
                list_root(&store, 2, 7, None).await,
                expected,
                "listing {nth} out of order"
            );
        }
    }

    /// What a splitting listing costs on each kind of store, counted in
    /// the keys the store serves: about one listing's worth where a
    /// listing after an offset starts there (S3's shape); at most two where
    /// it starts at the first key (object_store's default `list_with_offset`:
    /// `InMemory`, `LocalFileSystem`, wrappers) or ignores the offset; and
    /// exactly one listing where every key comes with the first answer.
    #[cfg(feature = "test-utils")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn splitting_costs_at_most_one_listing_more_on_any_store() {
        use crate::store::paged::{OffsetListing, PagedStore, Pages};
        use object_store::memory::InMemory;
        use object_store::{ObjectStoreExt, PutPayload};
        use std::time::Duration;

        const FILES: usize = 50_000;
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut expected = Vec::with_capacity(FILES);
        for i in 0..FILES {
            let key = format!("lake/p={}/part-{}.parquet", i / 10, i % 10);
            memory
                .put(&Path::from(key.as_str()), PutPayload::from_static(b"x"))
                .await
                .unwrap();
            expected.push(key);
        }
        expected.sort();
        let root = ListingTableUrl::parse("s3://bucket/lake/").unwrap();
        let s3_pages = |offsets| Pages {
            keys: 1_000,
            wait: Duration::from_millis(10),
            offsets,
        };
        // Every key with the first answer, as `InMemory` gives them.
        let one_answer = Pages {
            keys: usize::MAX,
            wait: Duration::from_millis(100),
            offsets: OffsetListing::FromStart,
        };
        for (shape, pages) in [
            ("offsets start there", s3_pages(OffsetListing::AtOffset)),
            (
                "offsets start at the first key",
                s3_pages(OffsetListing::FromStart),
            ),
            ("offsets ignored", s3_pages(OffsetListing::Ignored)),
            ("every key at once", one_answer),
        ] {
            let paged = Arc::new(PagedStore::new(Arc::clone(&memory), pages).await.unwrap());
            let store: Arc<dyn ObjectStore> = Arc::clone(&paged) as _;
            let lister = Lister::new(&store, &root, StoreKind::Remote, 4, None);
            let started = std::time::Instant::now();
            let listed: Vec<String> = lister
                .list_root()
                .await
                .unwrap()
                .objects
                .iter()
                .map(|m| m.location.to_string())
                .collect();
            assert_eq!(listed, expected, "{shape}");
            let (listings, keys) = (paged.listings(), paged.keys());
            println!(
                "{shape}: {keys} keys served in {listings} listings, {:?}",
                started.elapsed()
            );
            match pages.offsets {
                _ if pages.keys == usize::MAX => {
                    assert_eq!((listings, keys), (1, FILES), "{shape}: one listing")
                }
                OffsetListing::AtOffset => {
                    assert!(
                        listings > 4,
                        "{shape}: the listing split: {listings} listings"
                    );
                    // Each key served once, but for the end of each
                    // range's last page.
                    assert!(
                        keys <= FILES + listings * pages.keys,
                        "{shape}: {keys} keys served in {listings} listings"
                    );
                }
                OffsetListing::FromStart | OffsetListing::Ignored => assert!(
                    keys <= 2 * FILES,
                    "{shape}: {keys} keys served in {listings} listings, for {FILES}"
                ),
            }
        }
    }
}
