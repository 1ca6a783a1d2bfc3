//! Discovery: listings of the table root, turned into partitions for a
//! [`PartitionIndex`](crate::PartitionIndex) — the whole root at `build()`
//! and `refresh()`, or only the partitions a predicate selects
//! (`refresh_partitions`).
//!
//! This is the only place that lists the object store. It never runs while
//! planning or executing a query.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::ListingTableUrl;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use percent_encoding::percent_decode_str;

use crate::error::{Error, PathProblem, Result, TableProblem};
use crate::store::RetryPolicy;
use crate::table::hive::{is_hidden, parse_value, partition_dir, split_key_value};
use crate::table::index::{IndexedFile, ListedPartition};
use crate::table::spec::PartitionSpec;
use crate::table::TableDefinition;

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
    /// Listings run at once.
    concurrency: usize,
    /// How a range listing (streamed, so not retried by the store) is retried.
    retry: Option<RetryPolicy>,
}

impl<'a> Lister<'a> {
    pub(crate) fn new(
        store: &'a Arc<dyn ObjectStore>,
        root: &'a ListingTableUrl,
        concurrency: usize,
        retry: Option<RetryPolicy>,
    ) -> Self {
        Self {
            store,
            root,
            concurrency: concurrency.max(1),
            retry,
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
            definition.listing_concurrency,
            definition.retry,
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
        let objects = self.list_root().await?;
        partitions_from(objects, self.root, declared, extension).await
    }

    /// Every object under the root, sorted by path.
    ///
    /// One recursive listing is one request per 1,000 keys, one after
    /// another. On an object store whose root holds several directories,
    /// the directories (from one delimiter listing) are split into up to
    /// `concurrency` runs of neighbours, listed at once: a run of one
    /// directory with a listing of it, a longer run with one listing that
    /// starts after its first directory (S3's `StartAfter`) and is dropped
    /// once past its last. The local disk and `memory://` (no request
    /// latency to hide) and a root with at most one directory are listed
    /// with one listing.
    async fn list_root(&self) -> Result<Vec<ObjectMeta>> {
        let prefix = self.root.prefix();
        let url: &url::Url = self.root.as_ref();
        let single = self.concurrency == 1 || matches!(url.scheme(), "file" | "memory");
        if single {
            return self.list_under(vec![prefix.clone()]).await;
        }
        let top = self
            .store
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| self.listing_error(e))?;
        // Keys of a directory sort as `dir/…`: order the directories so.
        let mut dirs: Vec<String> = top
            .common_prefixes
            .iter()
            .filter(|d| !d.filename().is_some_and(is_hidden))
            .map(|d| format!("{d}/"))
            .collect();
        dirs.sort();
        if dirs.len() < 2 {
            return self.list_under(vec![prefix.clone()]).await;
        }
        let per_run = dirs.len().div_ceil(self.concurrency);
        // Each run: its first directory, the next run's (where it stops),
        // and whether it is a single directory.
        let runs: Vec<(String, Option<String>, bool)> = dirs
            .chunks(per_run)
            .enumerate()
            .map(|(i, run)| {
                let end = dirs.get((i + 1) * per_run).cloned();
                (run[0].clone(), end, run.len() == 1)
            })
            .collect();
        let listed = futures::stream::iter(runs)
            .map(|(start, end, single)| async move {
                if single {
                    self.list_prefix(&start).await
                } else {
                    self.list_range(prefix, &start, end.as_deref()).await
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.listing_error(e))?;
        let mut objects = top.objects;
        objects.extend(listed.into_iter().flatten());
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// Every object under `dir` (`…/`), one listing.
    async fn list_prefix(&self, dir: &str) -> object_store::Result<Vec<ObjectMeta>> {
        let dir = Path::parse(dir.trim_end_matches('/'))?;
        self.store.list(Some(&dir)).try_collect().await
    }

    /// The objects whose keys lie in `[start, end)` (directories `…/`, in
    /// key order) under `prefix`: one listing after `start`, dropped at
    /// `end`; retried whole with the table's policy (the store streams a
    /// range listing, so it cannot retry it).
    async fn list_range(
        &self,
        prefix: &Path,
        start: &str,
        end: Option<&str>,
    ) -> object_store::Result<Vec<ObjectMeta>> {
        let offset = Path::parse(start.trim_end_matches('/'))?;
        // Keys below the root's own level (`<prefix>/<dir>/…`), not its files.
        let nested = match prefix.as_ref() {
            "" => 0,
            p => p.len() + 1,
        };
        let attempt = || {
            self.store
                .list_with_offset(Some(prefix), &offset)
                .try_take_while(move |m| {
                    futures::future::ready(Ok(end.is_none_or(|end| m.location.as_ref() < end)))
                })
                // After `start` without its slash come neighbours that sort
                // before `start/` (`p=1-x/` before `p=1/`), and files at the
                // root: theirs are other runs' and the delimiter listing's.
                .try_filter(move |m| {
                    let key = m.location.as_ref();
                    let in_run = key >= start && key.get(nested..).is_some_and(|k| k.contains('/'));
                    futures::future::ready(in_run)
                })
                .try_collect::<Vec<_>>()
        };
        match &self.retry {
            Some(policy) => policy.retry("list", start, attempt).await,
            None => attempt().await,
        }
    }

    /// Every object under each of `prefixes` (recursive listings, several at
    /// once), sorted by path.
    async fn list_under(&self, prefixes: Vec<Path>) -> Result<Vec<ObjectMeta>> {
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
        Ok(objects)
    }

    /// The partitions under the directories of the first `levels` partition
    /// columns whose values `select` accepts, listed as [`list_partitions`](Self::list_partitions)
    /// lists the whole root.
    ///
    /// The directories are found level by level: where `pinned` gives a
    /// column's values (from an `=`/`IN` in the predicate) and they encode to
    /// plain directory names, those names are used without a request; otherwise
    /// the level is found with delimiter listings (several at once). `select`
    /// sees a batch of the candidates' values (the first `levels` partition
    /// columns) and says which to re-list. Files outside the selected
    /// directories are not looked at.
    pub(crate) async fn list_selected_partitions(
        &self,
        spec: &PartitionSpec,
        extension: &str,
        levels: usize,
        pinned: &[Option<Vec<ScalarValue>>],
        select: impl FnOnce(&RecordBatch) -> Result<Vec<bool>>,
    ) -> Result<Listing> {
        let (store, root) = (self.store, self.root);
        let table = root.to_string();
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
            let listed = futures::stream::iter(dirs.into_iter().map(|(dir, values)| {
                async move {
                    let listing = store.list_with_delimiter(Some(&dir)).await?;
                    Ok::<_, object_store::Error>((values, listing.common_prefixes))
                }
                .boxed()
            }))
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|source| Error::Listing {
                root: table.clone(),
                source,
            })?;
            let mut next = Vec::new();
            for (values, children) in listed {
                for child in children {
                    let Some(name) = child.filename().map(str::to_string) else {
                        continue;
                    };
                    if is_hidden(&name) {
                        continue;
                    }
                    let path = child.to_string();
                    let (key, raw) = split_key_value(&path, &name)?;
                    if key != column.name {
                        return Err(Error::PartitionPath {
                            path,
                            problem: PathProblem::UnexpectedKey {
                                dir: name.clone(),
                                found: key,
                                expected: column.name.clone(),
                            },
                        });
                    }
                    let mut values = values.clone();
                    values.push(parse_value(&path, column, raw)?);
                    next.push((child, values));
                }
            }
            dirs = next;
        }
        let fields = spec.fields().into_iter().take(levels).collect::<Vec<_>>();
        let columns = (0..fields.len())
            .map(|level| ScalarValue::iter_to_array(dirs.iter().map(|(_, v)| v[level].clone())))
            .collect::<datafusion::error::Result<Vec<_>>>();
        let selected: Vec<Path> =
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
        let objects = self.list_under(selected).await?;
        partitions_from(objects, root, Some(spec), extension).await
    }
}

/// Groups listed objects into partitions: data files only (see
/// [`list_partitions`]), symbolic links checked on `file://` roots, values
/// parsed once per directory.
async fn partitions_from(
    objects: Vec<ObjectMeta>,
    root: &ListingTableUrl,
    declared: Option<&PartitionSpec>,
    extension: &str,
) -> Result<Listing> {
    let prefix = root.prefix();
    // Where a path's parts under the root begin.
    let below = if prefix.as_ref().is_empty() {
        0
    } else {
        prefix.as_ref().len() + 1
    };
    // The data files (at 10⁶ files, no allocation per file here: their
    // parts are read from the path itself).
    let files: Vec<ObjectMeta> = objects
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

    // The file system checks block: off the async runtime.
    let files = if LocalLinks::applies(root) {
        let owned = root.clone();
        tokio::task::spawn_blocking(move || {
            if files.is_empty() {
                check_local_root_exists(&owned)?;
            }
            if let Some(mut links) = LocalLinks::new(&owned) {
                for meta in &files {
                    let path = meta.location.as_ref();
                    links.check(path, path.get(below..).unwrap_or("").split('/'))?;
                }
            }
            Ok::<_, Error>(files)
        })
        .await
        .map_err(|source| Error::InvalidTable {
            root: root.to_string(),
            problem: TableProblem::BlockingTask {
                what: "the symbolic-link check of the listing",
                source,
            },
        })??
    } else {
        files
    };

    let mut spec = declared.cloned();
    let mut by_dir: BTreeMap<String, ListedPartition> = BTreeMap::new();
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
        // Files share their directory's values: parse them once per directory.
        if let Some(partition) = by_dir.get_mut(key) {
            partition.files.push(file);
            continue;
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
        let values = spec.parse_dirs(path, &dirs)?;
        let key = key.to_string();
        by_dir.insert(
            key,
            ListedPartition {
                values,
                files: vec![file],
            },
        );
    }
    Ok(Listing {
        spec: spec.unwrap_or_default(),
        partitions: by_dir.into_values().collect(),
    })
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

/// The symbolic-link check of a `file://` root: every directory and data file
/// under the root is looked at (`lstat`, each directory once); a link must
/// resolve to somewhere inside the root's real path.
struct LocalLinks {
    root: String,
    dir: PathBuf,
    real_root: PathBuf,
    checked: HashSet<PathBuf>,
}

impl LocalLinks {
    /// Whether `root` is on the local file system.
    fn applies(root: &ListingTableUrl) -> bool {
        let url: &url::Url = root.as_ref();
        url.scheme() == "file"
    }

    /// `None` for roots that are not on the local file system.
    fn new(root: &ListingTableUrl) -> Option<Self> {
        let url: &url::Url = root.as_ref();
        if url.scheme() != "file" {
            return None;
        }
        let dir = url.to_file_path().ok()?;
        let real_root = std::fs::canonicalize(&dir).ok()?;
        Some(Self {
            root: root.to_string(),
            dir,
            real_root,
            checked: HashSet::new(),
        })
    }

    /// Checks the directories and the file named by `parts` (relative to the
    /// root, as object-store path parts); `path` names the file in errors.
    fn check<'p>(&mut self, path: &str, parts: impl Iterator<Item = &'p str>) -> Result<()> {
        let mut local = self.dir.clone();
        for part in parts {
            local.push(percent_decode_str(part).decode_utf8_lossy().as_ref());
            if !self.checked.insert(local.clone()) {
                continue;
            }
            let is_link = std::fs::symlink_metadata(&local)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if !is_link {
                continue;
            }
            let inside = std::fs::canonicalize(&local)
                .map(|target| (target.starts_with(&self.real_root), target))
                .ok();
            match inside {
                Some((true, _)) => {}
                Some((false, target)) => {
                    return Err(Error::PartitionPath {
                        path: path.to_string(),
                        problem: PathProblem::LinkOutsideRoot {
                            link: local.display().to_string(),
                            target: target.display().to_string(),
                            root: self.root.clone(),
                        },
                    })
                }
                None => {
                    return Err(Error::PartitionPath {
                        path: path.to_string(),
                        problem: PathProblem::BrokenLink {
                            link: local.display().to_string(),
                        },
                    })
                }
            }
        }
        Ok(())
    }
}

/// Object stores have no directories, so an empty listing is an empty table;
/// on the local file system a root that does not exist at all is almost always
/// a typo, so it is reported.
fn check_local_root_exists(root: &ListingTableUrl) -> Result<()> {
    let url: &url::Url = root.as_ref();
    if url.scheme() != "file" {
        return Ok(());
    }
    match url.to_file_path() {
        Ok(path) if !path.exists() => Err(Error::RootNotFound {
            root: root.to_string(),
        }),
        _ => Ok(()),
    }
}
