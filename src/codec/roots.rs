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
            let clean = !file
                .object_meta
                .location
                .as_ref()
                .split('/')
                .any(|p| p == "..");
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
