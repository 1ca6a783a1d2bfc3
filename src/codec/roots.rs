//! [`AllowedRoots`]: which table roots a decoding executor may read.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::file_format::parquet::ParquetSink;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_datasource::file_scan_config::FileScanConfig;
use datafusion_datasource::file_sink_config::FileSink;
use datafusion_datasource::sink::DataSinkExec;
use object_store::local::LocalFileSystem;

use crate::cache::CachedScanExec;
use crate::error::Error;
use crate::scan::PartitionedScanExec;
use crate::store::local::LocalRoot;

/// The table roots an executor may open files under.
///
/// A plan arrives as bytes from the network; whoever can send one could name
/// any path the executor can reach (`file:///etc/`). With roots configured, a
/// decoded scan whose files are not all under one of them is refused before
/// anything is opened. The default allows every root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedRoots {
    roots: Option<Vec<String>>,
}

impl AllowedRoots {
    /// Every root is allowed.
    pub fn any() -> Self {
        Self::default()
    }

    /// Only files under these root URLs (e.g. `s3://lake/events/`,
    /// `file:///data/`) are allowed.
    pub fn only(roots: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let roots = roots
            .into_iter()
            .map(|r| {
                let mut r: String = r.into();
                if !r.ends_with('/') {
                    r.push('/');
                }
                r
            })
            .collect();
        Self { roots: Some(roots) }
    }

    /// Refuses a store no allowed root is in (`store` is a scheme and
    /// bucket, e.g. `s3://lake/`): checked before the executor builds or
    /// looks up the store a decoded scan names.
    pub(crate) fn check_store(&self, table: &str, store: &str) -> Result<()> {
        let Some(roots) = &self.roots else {
            return Ok(());
        };
        if roots.iter().any(|root| root.starts_with(store)) {
            return Ok(());
        }
        Err(Error::OutsideAllowedRoots {
            node: format!("table {table}"),
            url: store.to_string(),
            allowed: roots.join(", "),
        }
        .into())
    }

    /// Refuses `config` unless every file is under an allowed root.
    pub(crate) fn check(&self, table: &str, config: &FileScanConfig) -> Result<()> {
        match self.checker() {
            Some(checker) => checker.scan(&format!("table {table}"), config),
            None => Ok(()),
        }
    }

    /// Refuses `plan` unless every file any of its nodes reads or writes is
    /// under an allowed root: lakefusion's scans, DataFusion's own file scans
    /// (Parquet, CSV, JSON, Arrow, Avro: every `DataSourceExec` over a
    /// `FileScanConfig`) and file sinks (`DataSinkExec` writing Parquet, CSV
    /// or JSON files). A sink of another kind is refused: where it writes
    /// cannot be checked.
    ///
    /// Ballista roots every task plan in a shuffle writer, an extension node,
    /// so [`CompositePhysicalCodec`](super::CompositePhysicalCodec) runs this
    /// on every plan an executor decodes. A plan decoded some other way must
    /// be checked with this after decoding.
    pub fn check_plan(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
        match self.checker() {
            Some(checker) => checker.plan(plan),
            None => Ok(()),
        }
    }

    /// A checker for one plan or scan, with each local root resolved once
    /// (`None` when every root is allowed).
    fn checker(&self) -> Option<Checker<'_>> {
        let roots = self.roots.as_deref()?;
        let real_roots = roots.iter().map(|root| LocalRoot::of_url(root)).collect();
        Some(Checker {
            roots,
            real_roots,
            local: LocalFileSystem::new(),
        })
    }
}

/// The allowed roots, each local one with its real path resolved.
struct Checker<'a> {
    roots: &'a [String],
    /// For each root: its real path on the local file system, if it is a
    /// `file://` root that exists.
    real_roots: Vec<Option<LocalRoot>>,
    /// How `file:///` keys map to local paths, as the executor's store
    /// maps them.
    local: LocalFileSystem,
}

impl Checker<'_> {
    fn scan(&self, what: &str, config: &FileScanConfig) -> Result<()> {
        // `file:///`, `s3://bucket/`: the store URL ends with the slash the
        // object path lacks.
        let store = config.object_store_url.as_str();
        for file in config.file_groups.iter().flat_map(|g| g.iter()) {
            self.file(what, store, &file.object_meta.location)?;
        }
        Ok(())
    }

    /// [`url`](Self::url) for the object `location` in the store at `store`.
    /// On the local file system the path checked for links is the one
    /// object_store's `LocalFileSystem` opens: its keys hold names on disk
    /// literally (`ts=10%3A00` is that on disk), so the URL string, whose
    /// `%3A` a URL parser decodes, would name another path.
    fn file(&self, what: &str, store: &str, location: &object_store::path::Path) -> Result<()> {
        let local = (store == "file:///")
            .then(|| self.local.path_to_filesystem(location).ok())
            .flatten();
        self.url_at(what, &format!("{store}{location}"), local)
    }

    fn plan(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
        if let Some(exec) = plan.downcast_ref::<DataSourceExec>() {
            if let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() {
                self.scan(&format!("{} scan", config.file_source.file_type()), config)?;
            }
        } else if let Some(scan) = plan.downcast_ref::<PartitionedScanExec>() {
            self.scan(&format!("table {}", scan.table()), scan.file_scan_config())?;
        } else if let Some(cached) = plan.downcast_ref::<CachedScanExec>() {
            let scan = cached.inner();
            self.scan(&format!("table {}", scan.table()), scan.file_scan_config())?;
        } else if let Some(exec) = plan.downcast_ref::<DataSinkExec>() {
            let sink = exec.sink();
            let config = if let Some(s) = sink.downcast_ref::<ParquetSink>() {
                s.config()
            } else if let Some(s) = sink.downcast_ref::<CsvSink>() {
                s.config()
            } else if let Some(s) = sink.downcast_ref::<JsonSink>() {
                s.config()
            } else {
                return Err(Error::UncheckableSink {
                    sink: format!("{sink:?}"),
                    allowed: self.describe(),
                }
                .into());
            };
            // `table_paths` are the destination as URLs (the user's
            // `original_url` may be a bare local path).
            let what = "file sink";
            for path in &config.table_paths {
                self.url(what, path.as_str())?;
            }
            let store = config.object_store_url.as_str();
            for file in config.file_group.iter() {
                self.file(what, store, &file.object_meta.location)?;
            }
        }
        for child in plan.children() {
            self.plan(child)?;
        }
        Ok(())
    }

    /// Refuses `url` unless it is under an allowed root, has no `..` or `.`
    /// component (also percent-encoded), and, on the local file system, does
    /// not lead out of its root through a symbolic link.
    fn url(&self, what: &str, url: &str) -> Result<()> {
        self.url_at(what, url, None)
    }

    /// [`url`](Self::url), with the local path it names when that is not
    /// the URL's own (see [`file`](Self::file)).
    fn url_at(&self, what: &str, url: &str, local: Option<PathBuf>) -> Result<()> {
        let path = url.split_once("://").map_or(url, |(_, rest)| rest);
        // `..`, also percent-encoded: a store that builds URLs from the
        // path (HTTP, a URL-joining local store) would resolve `%2E%2E`.
        let clean = !path.split('/').skip(1).any(|p| {
            let decoded = percent_encoding::percent_decode_str(p).decode_utf8_lossy();
            decoded == ".." || decoded == "." || decoded.contains('/')
        });
        let root = self
            .roots
            .iter()
            .position(|root| url.starts_with(root.as_str()));
        match root {
            Some(i) if clean => {
                let escape = self.real_roots[i].as_ref().and_then(|real_root| {
                    let path = match local {
                        Some(path) => path,
                        None => url::Url::parse(url).ok()?.to_file_path().ok()?,
                    };
                    real_root.escape_of_nearest(path)
                });
                match escape {
                    None => Ok(()),
                    Some(target) => Err(Error::LinkOutsideRoot {
                        node: what.to_string(),
                        url: url.to_string(),
                        target: target.display().to_string(),
                        root: self.roots[i].clone(),
                    }
                    .into()),
                }
            }
            _ => Err(Error::OutsideAllowedRoots {
                node: what.to_string(),
                url: url.to_string(),
                allowed: self.describe(),
            }
            .into()),
        }
    }

    fn describe(&self) -> String {
        self.roots.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::Schema;
    use datafusion::datasource::physical_plan::ParquetSource;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion_datasource::file_scan_config::FileScanConfigBuilder;
    use datafusion_datasource::PartitionedFile;
    use object_store::path::Path;
    use object_store::ObjectMeta;

    use super::*;

    /// The check of one file at `location` (parsed as `Path::from` does, so
    /// `..` arrives encoded) in the store `store`.
    fn check(store: &str, location: &str) -> Result<()> {
        check_path(store, Path::from(location))
    }

    fn check_path(store: &str, location: Path) -> Result<()> {
        AllowedRoots::only(["file:///data/events"]).check("events", &scan_of(store, location))
    }

    /// A Parquet scan of the one file at `location` in the store `store`.
    fn scan_of(store: &str, location: Path) -> FileScanConfig {
        FileScanConfigBuilder::new(
            ObjectStoreUrl::parse(store).unwrap(),
            Arc::new(ParquetSource::new(Arc::new(Schema::empty()))),
        )
        .with_file(PartitionedFile::new_from_meta(ObjectMeta {
            location,
            last_modified: Default::default(),
            size: 10,
            e_tag: None,
            version: None,
        }))
        .build()
    }

    fn refused(store: &str, location: &str) {
        refused_path(store, Path::from(location));
    }

    fn refused_path(store: &str, location: Path) {
        let err = check_path(store, location.clone()).unwrap_err().to_string();
        assert!(
            err.contains("table events") && err.contains("outside the roots"),
            "{location}: {err}"
        );
    }

    #[test]
    fn files_under_the_root_pass() {
        check("file:///", "data/events/k=1/a.parquet").unwrap();
    }

    #[test]
    fn traversal_is_refused_also_percent_encoded() {
        // `Path::from` encodes `..` as `%2E%2E`; `Path::parse` refuses a
        // bare `..` but keeps `%2E%2E`, as a decoded plan's path carries it.
        refused("file:///", "data/events/../../etc/passwd");
        refused("file:///", "data/events/k=1/./a.parquet");
        refused_path(
            "file:///",
            Path::parse("data/events/%2E%2E/%2E%2E/etc/passwd").unwrap(),
        );
        refused_path("file:///", Path::parse("data/events/a%2F..%2F..").unwrap());
    }

    #[test]
    fn a_sibling_sharing_the_prefix_is_refused() {
        refused("file:///", "data/events2/k=1/a.parquet");
    }

    #[test]
    fn absolute_paths_elsewhere_and_other_stores_are_refused() {
        refused("file:///", "etc/passwd");
        refused("s3://data/", "events/k=1/a.parquet");
    }

    /// An allowed root whose name holds a Hive escape (`%3A`) is matched
    /// against the files' keys as written, so it is resolved as written
    /// too: a link under it is still seen.
    #[cfg(unix)]
    #[test]
    fn links_under_a_root_with_an_escaped_name_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let root = real.join("lake/ts=10%3A00");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a.parquet"), b"x").unwrap();
        std::fs::write(real.join("secret.parquet"), b"x").unwrap();
        std::os::unix::fs::symlink(real.join("secret.parquet"), root.join("b.parquet")).unwrap();
        let roots = AllowedRoots::only([format!("file://{}/", root.display())]);
        let scan = |name: &str| {
            let key = format!("{}/{name}", root.display());
            let location = Path::parse(key.trim_start_matches('/')).unwrap();
            roots.check("events", &scan_of("file:///", location))
        };
        scan("a.parquet").unwrap();
        let err = scan("b.parquet").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn only_stores_an_allowed_root_is_in_are_reached() {
        let roots = AllowedRoots::only(["s3://lake/events/"]);
        assert!(roots.check_store("t", "s3://lake/").is_ok());
        let error = roots
            .check_store("t", "s3://other/")
            .unwrap_err()
            .to_string();
        assert!(error.contains("s3://other/") && error.contains("s3://lake/events/"));
        assert!(roots.check_store("t", "file:///").is_err());
        assert!(AllowedRoots::any().check_store("t", "file:///").is_ok());
    }
}
