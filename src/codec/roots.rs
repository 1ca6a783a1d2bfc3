//! [`AllowedRoots`]: which table roots a decoding executor may read.

use datafusion::error::{DataFusionError, Result};
use datafusion_datasource::file_scan_config::FileScanConfig;

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

    /// Refuses `config` unless every file is under an allowed root.
    pub(crate) fn check(&self, table: &str, config: &FileScanConfig) -> Result<()> {
        let Some(roots) = &self.roots else {
            return Ok(());
        };
        // `file:///`, `s3://bucket/`: the store URL ends with the slash the
        // object path lacks.
        let store = config.object_store_url.as_str();
        for file in config.file_groups.iter().flat_map(|g| g.iter()) {
            let url = format!("{store}{}", file.object_meta.location);
            // `..`, also percent-encoded: a store that builds URLs from the
            // path (HTTP, a URL-joining local store) would resolve `%2E%2E`.
            let clean = !file.object_meta.location.as_ref().split('/').any(|p| {
                let decoded = percent_encoding::percent_decode_str(p).decode_utf8_lossy();
                decoded == ".." || decoded == "." || decoded.contains('/')
            });
            if !clean || !roots.iter().any(|root| url.starts_with(root.as_str())) {
                return Err(DataFusionError::Plan(format!(
                    "table {table}: file '{url}' is outside the roots this executor allows ({})",
                    roots.join(", ")
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
        let config = FileScanConfigBuilder::new(
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
        .build();
        AllowedRoots::only(["file:///data/events"]).check("events", &config)
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
}
