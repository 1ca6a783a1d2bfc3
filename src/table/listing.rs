//! Discovery: one listing of the table root, turned into a [`PartitionIndex`].
//!
//! This is the only place that lists the object store. It runs at `build()` and
//! `refresh()`, never while planning or executing a query.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::listing::ListingTableUrl;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore};

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
    let columns = dirs
        .iter()
        .map(|dir| split_key_value(path, dir).map(|(key, _)| (key, DataType::Utf8)))
        .collect::<Result<Vec<_>>>()?;
    Ok(PartitionSpec::new(columns))
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
