//! [`StoreKind`]: the one place that decides, from a root URL's scheme, what
//! kind of storage a table is on and what that storage does well.

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::object_store::ObjectStoreUrl;

/// The kind of storage under a table root. Listing, reading ahead, staging
/// writes, cleaning up and the symbolic-link check each ask it instead of
/// looking at scheme strings themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// `file://`: the local file system.
    LocalDisk,
    /// `memory://`: object_store's in-memory store.
    Memory,
    /// Everything else (`s3://`, `gs://`, `az://`, `http://`, a custom
    /// store): requests cross a network.
    Remote,
}

impl StoreKind {
    /// The kind of storage a URL with `scheme` names.
    pub(crate) fn of_scheme(scheme: &str) -> Self {
        match scheme {
            "file" => Self::LocalDisk,
            "memory" => Self::Memory,
            _ => Self::Remote,
        }
    }

    /// The kind of storage under a table root.
    pub(crate) fn of_root(root: &ListingTableUrl) -> Self {
        Self::of_scheme(root.scheme())
    }

    /// The kind of storage an object store URL names.
    pub(crate) fn of_store(url: &ObjectStoreUrl) -> Self {
        let parsed: &url::Url = url.as_ref();
        Self::of_scheme(parsed.scheme())
    }

    /// Requests have latency worth hiding: many in flight at once pay off
    /// (reading ahead, listings split into ranges).
    pub(crate) fn has_request_latency(self) -> bool {
        self == Self::Remote
    }

    /// A rename is one cheap, atomic step (`rename(2)`): a written file can
    /// stay under a hidden name until its commit renames it. Elsewhere a
    /// rename is a copy and a delete (S3 has none at all), so files go to
    /// their final names only at the commit.
    pub(crate) fn renames_atomically(self) -> bool {
        self == Self::LocalDisk
    }

    /// Paths are files of this machine: directories exist on their own, and
    /// symbolic links can lead out of the root.
    pub(crate) fn is_local_disk(self) -> bool {
        self == Self::LocalDisk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_has_one_kind() {
        let kind = |url: &str| StoreKind::of_root(&ListingTableUrl::parse(url).unwrap());
        assert_eq!(kind("file:///data/lake/"), StoreKind::LocalDisk);
        assert_eq!(kind("memory:///lake/"), StoreKind::Memory);
        assert_eq!(kind("s3://bucket/lake/"), StoreKind::Remote);
        assert_eq!(
            StoreKind::of_store(&ObjectStoreUrl::parse("gs://bucket").unwrap()),
            StoreKind::Remote
        );
        assert!(StoreKind::LocalDisk.renames_atomically());
        assert!(!StoreKind::Memory.renames_atomically());
        assert!(!StoreKind::Memory.has_request_latency());
        assert!(StoreKind::Remote.has_request_latency());
    }
}
