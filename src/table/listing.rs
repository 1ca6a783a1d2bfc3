//! Discovery: one listing of the table root, turned into a [`PartitionIndex`].
//!
//! This is the only place that lists the object store. It runs at `build()` and
//! `refresh()`, never while planning or executing a query.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::listing::ListingTableUrl;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore};
use percent_encoding::percent_decode_str;

use super::index::{IndexedFile, Partition};
use super::spec::{split_key_value, PartitionSpec};
use crate::error::{Error, Result};

/// What one listing found: the (declared or inferred) spec and the partitions.
pub(crate) struct Listing {
    pub spec: PartitionSpec,
    pub partitions: Vec<Partition>,
}

/// Lists everything under `root` and groups the data files into partitions.
///
/// Names starting with `.` or `_` (at any level: `_SUCCESS`, `_temporary/`,
/// `.part-0.crc`) are the bookkeeping of writers and are skipped, as are files
/// without `extension`. Without a `declared` spec, the partition columns are
/// inferred from the first file's `key=value` directories, as Utf8; every other
/// file must then have the same keys.
///
/// On the local file system a listing follows symbolic links, so a link
/// under the root could make the table read any file the process can reach;
/// a data file reached through a link that leads outside the root is refused
/// (see [`LocalLinks`]).
pub(crate) async fn list_partitions(
    store: &Arc<dyn ObjectStore>,
    root: &ListingTableUrl,
    declared: Option<&PartitionSpec>,
    extension: &str,
) -> Result<Listing> {
    let prefix = root.prefix();
    let mut objects: Vec<ObjectMeta> =
        store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Listing {
                root: root.to_string(),
                source,
            })?;
    if objects.is_empty() {
        check_local_root_exists(root)?;
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let mut links = LocalLinks::new(root);

    let mut spec = declared.cloned();
    let mut by_dir: BTreeMap<String, Partition> = BTreeMap::new();
    for meta in objects {
        let Some(parts) = meta.location.prefix_match(prefix) else {
            continue; // not under the root: never read
        };
        let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
        let Some((file_name, dirs)) = parts.split_last() else {
            continue;
        };
        if parts
            .iter()
            .any(|p| p.starts_with('.') || p.starts_with('_'))
            || !file_name.ends_with(extension)
        {
            continue;
        }
        if let Some(links) = links.as_mut() {
            links.check(meta.location.as_ref(), &parts)?;
        }
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let key = dirs.join("/");
        // Files share their directory's values: parse them once per directory.
        if let Some(partition) = by_dir.get_mut(&key) {
            partition.files.push(IndexedFile {
                meta,
                statistics: None,
                bucket: None,
                sorted: false,
            });
            continue;
        }
        let path = meta.location.to_string();
        let spec = match &spec {
            Some(spec) => spec,
            None => spec.insert(infer_spec(&path, &dirs)?),
        };
        let values = spec.parse_dirs(&path, &dirs)?;
        by_dir.insert(
            key,
            Partition {
                values,
                files: vec![IndexedFile {
                    meta,
                    statistics: None,
                    bucket: None,
                    sorted: false,
                }],
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
                reason: format!("partition key '{key}' appears twice"),
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
    fn check(&mut self, path: &str, parts: &[String]) -> Result<()> {
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
                        reason: format!(
                            "'{}' is a symbolic link to '{}', outside the table root '{}'",
                            local.display(),
                            target.display(),
                            self.root
                        ),
                    })
                }
                None => {
                    return Err(Error::PartitionPath {
                        path: path.to_string(),
                        reason: format!(
                            "'{}' is a symbolic link that does not resolve",
                            local.display()
                        ),
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
