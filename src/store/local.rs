//! [`LocalRoot`]: where a `file://` root really is on this machine, and the
//! one home of the symbolic-link escape check — a link under a root must
//! not lead out of it. Discovery asks it of every link it lists; a decoding
//! executor asks it of every local URL in a plan.

use std::path::{Path, PathBuf};

/// A `file://` root resolved to its real path (symbolic links followed).
#[derive(Debug, Clone)]
pub(crate) struct LocalRoot {
    real: PathBuf,
}

/// Where a local path really leads, seen from a [`LocalRoot`].
#[derive(Debug)]
pub(crate) enum LinkTarget {
    /// Inside the root.
    Inside,
    /// Outside the root: its real path.
    Outside(PathBuf),
    /// Nowhere: it does not resolve (a broken link, or no such path).
    Broken,
}

impl LocalRoot {
    /// The root of the local directory `dir`; `None` when it does not exist.
    pub(crate) fn of_dir(dir: &Path) -> Option<Self> {
        let real = std::fs::canonicalize(dir).ok()?;
        Some(Self { real })
    }

    /// The root a `file://` URL names; `None` for every other scheme and
    /// for a directory that does not exist.
    ///
    /// A `file:///` URL is read as written, because the object keys matched
    /// against it hold names on disk literally (`LocalFileSystem` decodes a
    /// file URL's escapes once): parsed as a URL, a `%3A` in it would name
    /// another directory, and links under it would go unseen.
    #[cfg_attr(not(feature = "wire"), allow(dead_code))]
    pub(crate) fn of_url(url: &str) -> Option<Self> {
        match url.strip_prefix("file://") {
            Some(path) if path.starts_with('/') => Self::of_dir(Path::new(path)),
            // `to_file_path` refuses every scheme but `file`.
            _ => Self::of_dir(&url::Url::parse(url).ok()?.to_file_path().ok()?),
        }
    }

    /// Where `local` (a path under the root, possibly through links) leads.
    pub(crate) fn resolve(&self, local: &Path) -> LinkTarget {
        match std::fs::canonicalize(local) {
            Ok(real) if real.starts_with(&self.real) => LinkTarget::Inside,
            Ok(real) => LinkTarget::Outside(real),
            Err(_) => LinkTarget::Broken,
        }
    }

    /// Where `path` really leads when that is outside the root; a path that
    /// does not exist yet (a sink's target) is judged by its deepest
    /// existing ancestor. `None` when it stays inside.
    #[cfg_attr(not(feature = "wire"), allow(dead_code))]
    pub(crate) fn escape_of_nearest(&self, mut path: PathBuf) -> Option<PathBuf> {
        loop {
            match self.resolve(&path) {
                LinkTarget::Inside => return None,
                LinkTarget::Outside(real) => return Some(real),
                LinkTarget::Broken if !path.pop() => return None,
                LinkTarget::Broken => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_root_are_seen_wherever_they_are_asked_about() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("inner"))?;
        std::fs::create_dir_all(&outside)?;
        std::os::unix::fs::symlink(&outside, root.join("escape"))?;
        std::os::unix::fs::symlink(root.join("inner"), root.join("stay"))?;
        std::os::unix::fs::symlink(dir.path().join("none"), root.join("broken"))?;
        let Some(local) = LocalRoot::of_dir(&root) else {
            panic!("the root exists");
        };
        assert!(matches!(
            local.resolve(&root.join("stay")),
            LinkTarget::Inside
        ));
        assert!(matches!(
            local.resolve(&root.join("escape")),
            LinkTarget::Outside(_)
        ));
        assert!(matches!(
            local.resolve(&root.join("broken")),
            LinkTarget::Broken
        ));
        // A file not written yet, under a link that leads out.
        assert!(local
            .escape_of_nearest(root.join("escape/p=1/new.parquet"))
            .is_some());
        assert!(local
            .escape_of_nearest(root.join("stay/p=1/new.parquet"))
            .is_none());
        Ok(())
    }
}
