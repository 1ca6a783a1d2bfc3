//! [`TableCache`]: the shared, memory-bounded store of small scans' results.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use futures::Future;

/// Limits of the small-table cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// A scan whose statistics show more rows than this is not cached.
    pub max_rows: usize,
    /// A scan whose statistics show more bytes than this is not cached.
    pub max_bytes: usize,
    /// The most bytes the whole cache holds; least recently used entries are
    /// evicted to make room.
    pub capacity_bytes: usize,
}

impl Default for CacheConfig {
    /// Dimension-table sized: up to 1M rows / 64 MiB per table, 256 MiB in all.
    fn default() -> Self {
        Self {
            max_rows: 1_000_000,
            max_bytes: 64 * 1024 * 1024,
            capacity_bytes: 256 * 1024 * 1024,
        }
    }
}

impl CacheConfig {
    /// Sets `max_rows`.
    pub fn with_max_rows(mut self, max_rows: usize) -> Self {
        self.max_rows = max_rows;
        self
    }

    /// Sets `max_bytes`.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets `capacity_bytes`.
    pub fn with_capacity_bytes(mut self, capacity_bytes: usize) -> Self {
        self.capacity_bytes = capacity_bytes;
        self
    }
}

/// The identity of a cached scan: a digest for display and lookups, and the
/// full description it was computed from, compared on lookup so that a digest
/// collision can never serve another scan's rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    digest: u64,
    description: Arc<str>,
}

impl CacheKey {
    /// A key for a scan described by `description` (which must contain
    /// everything that determines the scan's rows).
    pub fn new(description: impl Into<Arc<str>>) -> Self {
        use std::hash::{Hash, Hasher};
        let description = description.into();
        // FNV-1a: stable across Rust releases and processes, unlike
        // `DefaultHasher`, so a key printed by one process matches another's.
        let mut hasher = Fnv1a::default();
        description.hash(&mut hasher);
        Self {
            digest: hasher.finish(),
            description,
        }
    }

    /// The short form shown in `EXPLAIN`.
    pub fn digest(&self) -> String {
        format!("{:016x}", self.digest)
    }

    /// The full description the key was computed from.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digest())
    }
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The rows of one cached scan, one `Vec` per output partition.
pub type CachedPartitions = Arc<Vec<Vec<RecordBatch>>>;

/// Counters of a [`TableCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Lookups served from memory.
    pub hits: u64,
    /// Lookups that had to run the scan.
    pub misses: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Fills not cached because the entry was larger than the capacity or the
    /// memory pool refused its bytes (after evicting every other entry).
    pub rejected: u64,
    /// Bytes held now.
    pub bytes: usize,
    /// Entries held now.
    pub entries: usize,
    /// Keys being filled now (0 when no fill runs: a failed or cancelled
    /// fill leaves no marker behind).
    pub in_flight: usize,
}

/// A cache of small scans' record batches, shared by every session built from
/// the same [`SessionBuilder`](crate::SessionBuilder) (or holding a clone of it).
///
/// * Entries are evicted least recently used, by bytes, to stay within
///   [`CacheConfig::capacity_bytes`].
/// * Every entry's bytes are reserved from the memory pool of the session that
///   filled it, batch by batch while the fill collects them. If the pool
///   refuses, least recently used entries reserved in that same pool are
///   evicted first (other sessions' entries free nothing there); if it still
///   refuses, the rows are returned to that query but not cached. The cache
///   never pushes a memory-limited runtime over its limit.
/// * Concurrent lookups that miss on the same key run the scan once; the others
///   wait for it and are served from memory ("single flight").
/// * Hits and misses are counted per lookup; `CachedScanExec` looks up once per
///   output partition.
#[derive(Clone)]
pub struct TableCache {
    inner: Arc<Inner>,
}

struct Inner {
    config: CacheConfig,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    rejected: AtomicU64,
}

#[derive(Default)]
struct State {
    entries: HashMap<CacheKey, Entry>,
    /// Keys being filled, each with a lock its waiters queue on.
    in_flight: HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>,
    bytes: usize,
    clock: u64,
}

struct Entry {
    partitions: CachedPartitions,
    bytes: usize,
    last_used: u64,
    /// Held for as long as the entry lives; dropping it returns the bytes to
    /// the pool.
    _reservation: Arc<MemoryReservation>,
    /// The pool the bytes are reserved from (sessions sharing the cache may
    /// each have their own): evicting the entry frees memory there only.
    pool: Arc<dyn MemoryPool>,
}

impl fmt::Debug for TableCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableCache")
            .field("config", &self.inner.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl TableCache {
    /// An empty cache with these limits.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        }
    }

    /// The cache's limits.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Current counters.
    pub fn metrics(&self) -> CacheMetrics {
        let state = self.state();
        CacheMetrics {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
            bytes: state.bytes,
            entries: state.entries.len(),
            in_flight: state.in_flight.len(),
        }
    }

    /// Whether `key` is cached now.
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.state().entries.contains_key(key)
    }

    /// Drops every entry whose description contains `needle` (e.g. a table
    /// root), returning how many were dropped.
    pub fn invalidate_matching(&self, needle: &str) -> usize {
        let mut state = self.state();
        let doomed: Vec<CacheKey> = state
            .entries
            .keys()
            .filter(|k| k.description.contains(needle))
            .cloned()
            .collect();
        for key in &doomed {
            if let Some(entry) = state.entries.remove(key) {
                state.bytes -= entry.bytes;
            }
        }
        doomed.len()
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut state = self.state();
        state.entries.clear();
        state.bytes = 0;
    }

    /// Returns the cached partitions for `key`, or runs `fill`, caches its
    /// result (if it fits the capacity) and returns it.
    ///
    /// `fill` must [`grow`](CacheFill::grow) the [`CacheFill`] it is given by
    /// every batch it holds: the rows are reserved from `pool` while they are
    /// collected, not after. When the pool refuses, least recently used
    /// entries are evicted to make room; if it still refuses, the fill gives
    /// its reservation back and its rows are returned to this query only,
    /// not cached.
    ///
    /// Single flight: concurrent misses on one key run `fill` once; the
    /// others wait and are served the entry. The fill's marker is removed
    /// only after its entry is in place (or it failed, or was cancelled).
    pub async fn get_or_fill<F, Fut>(
        &self,
        key: &CacheKey,
        pool: &Arc<dyn MemoryPool>,
        fill: F,
    ) -> Result<CachedPartitions>
    where
        F: FnOnce(CacheFill) -> Fut,
        Fut: Future<Output = Result<Vec<Vec<RecordBatch>>>>,
    {
        if let Some(hit) = self.lookup(key) {
            return Ok(hit);
        }
        let flight = {
            let mut state = self.state();
            Arc::clone(state.in_flight.entry(key.clone()).or_default())
        };
        let _turn = flight.lock().await;
        // Whoever held the turn before us may have filled the entry.
        if let Some(hit) = self.lookup(key) {
            return Ok(hit);
        }
        // A fill before ours failed or was cancelled and removed the marker:
        // put ours back, so that later arrivals wait for this fill.
        self.state()
            .in_flight
            .entry(key.clone())
            .or_insert_with(|| Arc::clone(&flight));
        // Removes the marker when this turn ends: after the entry is
        // inserted, when the fill fails, or when this future is dropped.
        let _marker = FlightMarker {
            cache: self,
            key,
            flight: &flight,
        };
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        let reservation =
            Arc::new(MemoryConsumer::new(format!("lakefusion TableCache[{key}]")).register(pool));
        let refused = Arc::new(AtomicBool::new(false));
        let filled = fill(CacheFill {
            cache: self.clone(),
            reservation: Arc::clone(&reservation),
            pool: Arc::clone(pool),
            refused: Arc::clone(&refused),
        })
        .await?;
        let partitions = Arc::new(filled);
        if refused.load(Ordering::Relaxed) {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        } else {
            self.insert(key, Arc::clone(&partitions), reservation, pool);
        }
        Ok(partitions)
    }

    fn lookup(&self, key: &CacheKey) -> Option<CachedPartitions> {
        let mut state = self.state();
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(key)?;
        entry.last_used = now;
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        Some(Arc::clone(&entry.partitions))
    }

    /// Evicts the least recently used entry (of those reserved in `pool`, if
    /// given), returning its bytes to its pool; `false` if there was none.
    fn evict_oldest(&self, state: &mut State, pool: Option<&Arc<dyn MemoryPool>>) -> bool {
        let Some(oldest) = state
            .entries
            .iter()
            .filter(|(_, e)| pool.is_none_or(|pool| same_pool(&e.pool, pool)))
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        if let Some(evicted) = state.entries.remove(&oldest) {
            state.bytes -= evicted.bytes;
            self.inner.evictions.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Caches `partitions`, whose bytes `reservation` holds, evicting least
    /// recently used entries to stay within the capacity.
    fn insert(
        &self,
        key: &CacheKey,
        partitions: CachedPartitions,
        reservation: Arc<MemoryReservation>,
        pool: &Arc<dyn MemoryPool>,
    ) {
        let bytes: usize = partitions
            .iter()
            .flatten()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let capacity = self.inner.config.capacity_bytes;
        if bytes > capacity {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Batches sharing buffers count them once in the entry, as in the pool.
        reservation.resize(bytes);
        let mut state = self.state();
        if state.entries.contains_key(key) {
            return;
        }
        while state.bytes + bytes > capacity && self.evict_oldest(&mut state, None) {}
        state.clock += 1;
        let last_used = state.clock;
        state.bytes += bytes;
        state.entries.insert(
            key.clone(),
            Entry {
                partitions,
                bytes,
                last_used,
                _reservation: reservation,
                pool: Arc::clone(pool),
            },
        );
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements; a panic elsewhere while
        // holding the lock cannot leave it half-updated in a harmful way.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The memory a cache fill holds, reserved batch by batch from the pool of
/// the session that fills it (see [`TableCache::get_or_fill`]).
#[derive(Clone)]
pub struct CacheFill {
    cache: TableCache,
    reservation: Arc<MemoryReservation>,
    /// The pool `reservation` is in.
    pool: Arc<dyn MemoryPool>,
    /// Set once the pool refused: the fill is then not cached.
    refused: Arc<AtomicBool>,
}

impl fmt::Debug for CacheFill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheFill")
            .field("reserved", &self.reservation.size())
            .finish()
    }
}

impl CacheFill {
    /// Reserves `bytes` more for the rows being collected. When the pool
    /// refuses, the cache's least recently used entries *reserved in that
    /// pool* are evicted (returning their bytes to it) until it grants them
    /// — entries of other sessions' pools would free nothing there; if none
    /// is left, the fill gives back what it reserved and will not be cached.
    pub fn grow(&self, bytes: usize) {
        while !self.refused.load(Ordering::Relaxed) {
            if self.reservation.try_grow(bytes).is_ok() {
                return;
            }
            let mut state = self.cache.state();
            if !self.cache.evict_oldest(&mut state, Some(&self.pool)) {
                self.refused.store(true, Ordering::Relaxed);
                self.reservation.free();
            }
        }
    }
}

/// Whether two handles are the same pool (compared by address: pools have
/// no identity of their own).
fn same_pool(a: &Arc<dyn MemoryPool>, b: &Arc<dyn MemoryPool>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// Removes a key's in-flight marker when the turn that filled it ends, however
/// it ends, unless a newer flight replaced it.
struct FlightMarker<'a> {
    cache: &'a TableCache,
    key: &'a CacheKey,
    flight: &'a Arc<tokio::sync::Mutex<()>>,
}

impl Drop for FlightMarker<'_> {
    fn drop(&mut self) {
        let mut state = self.cache.state();
        if state
            .in_flight
            .get(self.key)
            .is_some_and(|f| Arc::ptr_eq(f, self.flight))
        {
            state.in_flight.remove(self.key);
        }
    }
}
