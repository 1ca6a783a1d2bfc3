//! [`walk`]: a `file://` root listed by reading its directories directly,
//! on up to one thread per core, instead of through object_store's
//! `LocalFileSystem`.
//!
//! `LocalFileSystem` lists a tree on one thread, asks the file system about
//! every file three times (`lstat`, then `stat` twice, to follow links) and
//! turns every path into a URL and back to make its key; and the lake's
//! symbolic-link check then looks at every listed name once more. A walk
//! that reads the directories itself needs one `statx` per file (relative to
//! its open directory), sees links in the entries' types, and spells keys
//! by appending names. It runs only where it lists exactly what the store
//! would ([`lists_like_the_disk`]), and hands back to the store's own
//! listing whenever the way holds something it does not decide itself:
//! a symbolic link anywhere below the table root (the store follows it,
//! the link check judges it), a name that is not UTF-8, or an error other
//! than an entry that vanished (the store's listing reports it as it
//! always has). Conformance with the store's listing is tested below on
//! the same trees.
//!
//! Like the link check it replaces, the walk judges the tree as it reads
//! it: a directory another process swaps for a link after its entry was
//! read is followed, as a scan follows one swapped in after `build()`.

use std::fs::Metadata;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

/// Directories the walk reads on its own thread before it shares the rest
/// among threads, per thread. Each thread then walks whole subtrees of
/// those, so a lake with fewer large partitions than that can still leave
/// a thread idle.
const DIRECTORIES_PER_THREAD: usize = 4;

/// The `file://` store discovery reads past: object_store's
/// `LocalFileSystem` over the whole file system, one for the process. A
/// `file://` table whose runtime holds this very store (not a wrapper
/// around it, not another `LocalFileSystem`) is listed by reading its
/// directories on up to one thread per core, which takes less than the
/// store's own listing (on TPC-H's 5,000 files, a whole registration takes
/// less than that listing alone) and sees symbolic links as it goes.
///
/// [`SessionBuilder`](crate::SessionBuilder) registers it on its default
/// runtime. A runtime you build yourself (for its memory pool, say) gets it
/// with:
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::execution::runtime_env::RuntimeEnv;
/// let runtime = Arc::new(RuntimeEnv::default());
/// runtime.register_object_store(
///     &url::Url::parse("file:///").unwrap(),
///     lakefusion::store::local_file_system(),
/// );
/// let ctx = lakefusion::SessionBuilder::new().with_runtime(runtime).build_context();
/// ```
pub fn local_file_system() -> Arc<dyn ObjectStore> {
    static STORE: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    Arc::clone(STORE.get_or_init(|| Arc::new(LocalFileSystem::new())))
}

/// Whether a listing of `store` is what [`walk`] finds on the disk: `store`
/// is [`local_file_system`] itself. An `ObjectStore` does not tell its type, and a
/// wrapper (retries, throttling, metrics, access control) must see every
/// listing, so any other store, even another plain `LocalFileSystem`, is
/// listed through itself.
pub(crate) fn lists_like_the_disk(store: &Arc<dyn ObjectStore>) -> bool {
    Arc::ptr_eq(store, &local_file_system())
}

/// Where `LocalFileSystem::new()` lists a prefix: its parts under `/`, as
/// its `list` maps them (through a file URL).
fn directory_of(prefix: &Path) -> Option<PathBuf> {
    let local = ObjectStoreUrl::local_filesystem();
    let mut url: url::Url = AsRef::<url::Url>::as_ref(&local).clone();
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(prefix.parts());
    url.to_file_path().ok()
}

/// What a [`walk`] found.
#[derive(Debug)]
pub(crate) enum Walked {
    /// Every file under the prefixes, as `LocalFileSystem::list` gives them,
    /// sorted by key; none is reached through a symbolic link below the
    /// root (as the walk saw the tree).
    Files(Vec<ObjectMeta>),
    /// The tree holds something only the store's listing decides (a
    /// symbolic link, a name that is not UTF-8, an error): list it
    /// through the store.
    ThroughStore,
}

/// One directory to read: where it is on disk and its key.
struct Dir {
    path: PathBuf,
    key: String,
}

/// The walk gave up: the store's listing decides.
struct HandBack;

/// Threads that walk beside the one that asked, counted across the
/// process: at most one per core, however many listings run at once.
static HELPERS: HelperSlots = HelperSlots::new();

/// A count of helper threads, bounded by the cores.
struct HelperSlots {
    taken: AtomicUsize,
}

impl HelperSlots {
    const fn new() -> Self {
        Self {
            taken: AtomicUsize::new(0),
        }
    }

    /// Takes a slot when fewer than `cap` are taken.
    fn take(&self, cap: usize) -> bool {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A taken [`HELPERS`] slot, given back when its thread ends (or unwinds).
struct HelperSlot;

impl Drop for HelperSlot {
    fn drop(&mut self) {
        HELPERS.give_back();
    }
}

/// Sets its flag when dropped: the walk a dropped listing started stops.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// [`walk`] on the blocking pool. Dropping the future (the listing it
/// serves was cancelled) stops the walk at its next directory; a walk that
/// does not finish (it panicked) hands back to the store.
pub(crate) async fn walk_off_runtime(root: Path, prefixes: Vec<Path>, threads: usize) -> Walked {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_when_dropped = StopOnDrop(Arc::clone(&stop));
    tokio::task::spawn_blocking(move || walk(&root, &prefixes, threads, &stop))
        .await
        .unwrap_or(Walked::ThroughStore)
}

/// Every file under `prefixes` (keys of `LocalFileSystem::new()`, each
/// `root` or under it), read on up to `threads` threads, at most one per
/// core (one each beside this one while the process has a core for it). Blocking. Once `stop`
/// is set, the walk ends at its next directory, handing back.
///
/// A prefix below the root is reached through directories the walk does not
/// read entries of: each is looked at with a `lstat`, so that a linked
/// partition directory is seen when a refresh lists only it.
pub(crate) fn walk(root: &Path, prefixes: &[Path], threads: usize, stop: &AtomicBool) -> Walked {
    // The whole file system is no table root.
    if root.as_ref().is_empty() {
        return Walked::ThroughStore;
    }
    let Some(root_dir) = directory_of(root) else {
        return Walked::ThroughStore;
    };
    let mut frontier = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        let (Some(below), Some(path)) = (prefix.prefix_match(root), directory_of(prefix)) else {
            return Walked::ThroughStore;
        };
        let mut on_the_way = root_dir.clone();
        for part in below {
            on_the_way.push(part.as_ref());
            match std::fs::symlink_metadata(&on_the_way) {
                Ok(metadata) if metadata.file_type().is_symlink() => return Walked::ThroughStore,
                Ok(_) => {}
                // Nothing there: nothing to list under it either.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => return Walked::ThroughStore,
            }
        }
        frontier.push(Dir {
            path,
            key: prefix.as_ref().to_string(),
        });
    }
    match walk_from(frontier, threads.max(1), stop) {
        Ok(mut files) => {
            files.sort_unstable_by(|a, b| a.location.cmp(&b.location));
            Walked::Files(files)
        }
        Err(HandBack) => Walked::ThroughStore,
    }
}

/// Reads the frontier breadth first on this thread until there are enough
/// directories to share, then walks each directory's tree on one of
/// `threads` threads (at most one per core).
fn walk_from(
    mut frontier: Vec<Dir>,
    threads: usize,
    stop: &AtomicBool,
) -> Result<Vec<ObjectMeta>, HandBack> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.min(cores);
    let mut files = Vec::new();
    while !frontier.is_empty()
        && (threads == 1 || frontier.len() < threads * DIRECTORIES_PER_THREAD)
    {
        let mut next = Vec::new();
        for dir in &frontier {
            if stop.load(Ordering::Relaxed) {
                return Err(HandBack);
            }
            read_dir(dir, &mut files, &mut next)?;
        }
        frontier = next;
    }
    if frontier.is_empty() {
        return Ok(files);
    }
    let taken = AtomicUsize::new(0);
    let handed_back = AtomicBool::new(false);
    let found = Mutex::new(files);
    let work = || {
        let mut mine = Vec::new();
        let mut stack = Vec::new();
        while let Some(dir) = frontier.get(taken.fetch_add(1, Ordering::Relaxed)) {
            stack.push(Dir {
                path: dir.path.clone(),
                key: dir.key.clone(),
            });
            while let Some(dir) = stack.pop() {
                if handed_back.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                    handed_back.store(true, Ordering::Relaxed);
                    return;
                }
                if read_dir(&dir, &mut mine, &mut stack).is_err() {
                    handed_back.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
        if let Ok(mut found) = found.lock() {
            found.append(&mut mine);
        } else {
            handed_back.store(true, Ordering::Relaxed);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads.min(frontier.len()) {
            if !HELPERS.take(cores) {
                break;
            }
            let helper = move || {
                let _slot = HelperSlot;
                work();
            };
            // A thread the system refuses leaves its share to the others.
            if std::thread::Builder::new()
                .spawn_scoped(scope, helper)
                .is_err()
            {
                HELPERS.give_back();
            }
        }
        work();
    });
    if handed_back.load(Ordering::Relaxed) {
        return Err(HandBack);
    }
    found.into_inner().map_err(|_| HandBack)
}

/// Reads one directory: its files into `files`, its subdirectories into
/// `dirs`. An entry that vanished while read is skipped, as the store
/// skips it.
fn read_dir(dir: &Dir, files: &mut Vec<ObjectMeta>, dirs: &mut Vec<Dir>) -> Result<(), HandBack> {
    let vanished = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let entries = match std::fs::read_dir(&dir.path) {
        Ok(entries) => entries,
        Err(e) if vanished(&e) => return Ok(()),
        Err(_) => return Err(HandBack),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if vanished(&e) => continue,
            Err(_) => return Err(HandBack),
        };
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(e) if vanished(&e) => continue,
            Err(_) => return Err(HandBack),
        };
        if file_type.is_symlink() {
            return Err(HandBack);
        }
        if !file_type.is_dir() && !file_type.is_file() {
            // Sockets, pipes, devices: the store lists files only.
            continue;
        }
        let name = entry.file_name();
        let name = name.to_str().ok_or(HandBack)?;
        let path = entry.path();
        let key = child_key(&dir.key, name, &path)?;
        if file_type.is_dir() {
            dirs.push(Dir { path, key });
            continue;
        }
        if !is_valid_file_name(name) {
            continue;
        }
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(e) if vanished(&e) => continue,
            Err(_) => return Err(HandBack),
        };
        if !metadata.is_file() {
            // Replaced (by a link, say) since the entry was read.
            return Err(HandBack);
        }
        let location = Path::parse(&key).map_err(|_| HandBack)?;
        files.push(object_meta(location, &metadata)?);
    }
    Ok(())
}

/// The key `LocalFileSystem::new()` gives the entry `name` of the
/// directory keyed `parent` (at `path` on disk). Its keys hold names as
/// they are on disk, through a file URL and back: a name of letters,
/// digits and `-_.=` passes that unchanged, so it is appended; any other
/// is converted as the store converts it.
fn child_key(parent: &str, name: &str, path: &std::path::Path) -> Result<String, HandBack> {
    let plain = !matches!(name, "." | "..")
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='));
    if plain {
        return Ok(format!("{parent}/{name}"));
    }
    Path::from_absolute_path(path)
        .map(|key| key.as_ref().to_string())
        .map_err(|_| HandBack)
}

/// Names `LocalFileSystem` skips: its own staging files (`name#12`).
fn is_valid_file_name(name: &str) -> bool {
    match name.split_once('#') {
        Some((_, suffix)) if !suffix.is_empty() => !suffix.bytes().all(|b| b.is_ascii_digit()),
        _ => true,
    }
}

/// What `LocalFileSystem` says of a file: its size, modification time and
/// an e-tag of its inode, modification time (µs) and size.
fn object_meta(location: Path, metadata: &Metadata) -> Result<ObjectMeta, HandBack> {
    let modified = metadata.modified().map_err(|_| HandBack)?;
    let micros = modified
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    let size = metadata.len();
    Ok(ObjectMeta {
        location,
        last_modified: modified.into(),
        size,
        e_tag: Some(format!("{inode:x}-{micros:x}-{size:x}")),
        version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    /// What the store itself lists under `prefix`, sorted.
    async fn store_listing(prefix: &Path) -> Vec<ObjectMeta> {
        let mut listed: Vec<ObjectMeta> = LocalFileSystem::new()
            .list(Some(prefix))
            .try_collect()
            .await
            .unwrap();
        listed.sort_by(|a, b| a.location.cmp(&b.location));
        listed
    }

    /// A walk nobody stops.
    fn go() -> AtomicBool {
        AtomicBool::new(false)
    }

    fn write(path: &std::path::Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, path.to_string_lossy().as_bytes()).unwrap();
    }

    #[tokio::test]
    async fn a_walk_lists_what_the_store_lists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        // Other writers' spellings, bookkeeping, the store's staging files,
        // nesting, and enough directories for every thread.
        let names = [
            "k=10%3A00/part-0.parquet",
            "k=a b+c/x.parquet",
            "k=é/x.parquet",
            "_SUCCESS",
            ".hidden/x.parquet",
            "k=1/part-0.parquet#12",
            "k=1/part-0.parquet#x1",
            "k=1/sub/deeper/y.parquet",
            "k=2/a%3Ab.parquet",
            "k=2/x#y.parquet",
            "k=2/#.parquet",
            "top.parquet",
        ];
        for name in names {
            write(&root.join(name));
        }
        for i in 0..40 {
            write(&root.join(format!("day={i:02}/hour={}/f.parquet", i % 3)));
        }
        std::fs::create_dir_all(root.join("empty/dir")).unwrap();
        // A special file, which neither lists.
        #[cfg(unix)]
        let _socket = std::os::unix::net::UnixListener::bind(root.join("k=2/sock")).unwrap();
        let prefix = Path::from_absolute_path(&root).unwrap();
        let expected = store_listing(&prefix).await;
        assert_eq!(expected.len(), names.len() - 1 + 40, "{expected:#?}");
        for threads in [1, 2, 5] {
            match walk(&prefix, std::slice::from_ref(&prefix), threads, &go()) {
                Walked::Files(files) => assert_eq!(files, expected, "{threads} threads"),
                Walked::ThroughStore => panic!("the tree holds no link"),
            }
        }
        // Prefixes below the root (one with an escape, one missing), as a
        // refresh of a few partitions lists them.
        let below: Vec<Path> = ["k=1", "k=10%3A00", "k=none"]
            .iter()
            .map(|name| Path::from_absolute_path(root.join(name)).unwrap())
            .collect();
        let mut expected = Vec::new();
        for prefix in &below {
            expected.extend(store_listing(prefix).await);
        }
        expected.sort_by(|a, b| a.location.cmp(&b.location));
        assert_eq!(expected.len(), 3, "{expected:#?}");
        let Walked::Files(files) = walk(&prefix, &below, 2, &go()) else {
            panic!("the tree holds no link");
        };
        assert_eq!(files, expected);
        // A prefix that is a file: the store lists nothing there, and says
        // so itself.
        let file = Path::from_absolute_path(root.join("top.parquet")).unwrap();
        assert!(store_listing(&file).await.is_empty());
        assert!(matches!(
            walk(&prefix, &[file], 2, &go()),
            Walked::ThroughStore
        ));
    }

    #[tokio::test]
    async fn a_dropped_listing_stops_its_walk() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            write(&dir.path().join(format!("day={i:02}/f.parquet")));
        }
        let prefix = Path::from_absolute_path(dir.path()).unwrap();
        for threads in [1, 2] {
            let stopped = AtomicBool::new(true);
            assert!(matches!(
                walk(&prefix, std::slice::from_ref(&prefix), threads, &stopped),
                Walked::ThroughStore
            ));
        }
        let walked = walk_off_runtime(prefix.clone(), vec![prefix], 2).await;
        assert!(matches!(walked, Walked::Files(files) if files.len() == 40));
    }

    #[test]
    fn helper_threads_are_bounded_across_walks() {
        let slots = HelperSlots::new();
        assert!(slots.take(2) && slots.take(2));
        assert!(!slots.take(2), "a third helper on two cores");
        slots.give_back();
        assert!(slots.take(2));
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_anywhere_below_the_root_hands_the_listing_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        for i in 0..40 {
            write(&root.join(format!("day={i:02}/hour=1/f.parquet")));
        }
        let prefix = Path::from_absolute_path(&root).unwrap();
        // The root itself may be a link: `LocalRoot` resolves it.
        let linked_root = dir.path().join("linked");
        std::os::unix::fs::symlink(&root, &linked_root).unwrap();
        let linked_prefix = Path::from_absolute_path(&linked_root).unwrap();
        assert!(matches!(
            walk(&linked_prefix, std::slice::from_ref(&linked_prefix), 2, &go()),
            Walked::Files(files) if files.len() == 40
        ));
        // A link deep in the tree, seen by every thread count; and a linked
        // directory on the way to a prefix, seen though its entries are
        // never read.
        std::os::unix::fs::symlink(root.join("day=01"), root.join("day=39/inner")).unwrap();
        std::fs::remove_dir_all(root.join("day=05")).unwrap();
        std::os::unix::fs::symlink(root.join("day=06"), root.join("day=05")).unwrap();
        let under_link = Path::from_absolute_path(root.join("day=05/hour=1")).unwrap();
        let cases = [
            (vec![prefix.clone()], 1),
            (vec![prefix.clone()], 2),
            (vec![under_link.clone()], 1),
            (vec![under_link], 2),
        ];
        for (prefixes, threads) in cases {
            assert!(
                matches!(
                    walk(&prefix, &prefixes, threads, &go()),
                    Walked::ThroughStore
                ),
                "{prefixes:?}, {threads} threads"
            );
        }
        // A prefix beside the links is still walked.
        let beside = Path::from_absolute_path(root.join("day=07")).unwrap();
        assert!(matches!(
            walk(&prefix, &[beside], 2, &go()),
            Walked::Files(files) if files.len() == 1
        ));
    }

    #[test]
    fn only_the_sessions_own_local_store_is_walked() {
        assert!(lists_like_the_disk(&local_file_system()));
        // Another plain `LocalFileSystem` (a user's, which a wrapper may
        // stand in front of) and a wrapper around ours are listed through
        // themselves.
        let other: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        assert!(!lists_like_the_disk(&other));
        let throttled: Arc<dyn ObjectStore> = Arc::new(
            object_store::throttle::ThrottledStore::new(local_file_system(), Default::default()),
        );
        assert!(!lists_like_the_disk(&throttled));
    }
}
