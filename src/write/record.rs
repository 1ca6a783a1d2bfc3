//! A write's record: the files a write is about to make visible, kept in a
//! small object under the table root's hidden `_lakefusion/writes/` prefix
//! (hidden by the Hive rules from every reader: ours, Spark, DuckDB,
//! DataFusion's `ListingTable`) from before its first file becomes visible
//! until its last commit has succeeded.
//!
//! A write whose commit fails takes back what it made visible; what it
//! cannot take back (a delete that fails), or what a writer that died
//! mid-commit left, is found again through its record:
//! [`remove_abandoned`](super::cleanup::remove_abandoned) deletes the files
//! a record lists, then the record. A record present means "this write did
//! not finish": its files are removed, never kept.
//!
//! The record is written with one conditional PUT (`PutMode::Create`; a
//! plain PUT where the store has none: the name is unique to the write) and
//! needs no rename, so it works the same on S3 and on the local disk.
//!
//! Records are read as untrusted input: every line is checked, and only
//! files under the table root whose names carry the record's write id are
//! ever deleted through one, so a damaged or forged record cannot remove
//! another write's files.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::staging::put_new;

/// The hidden prefix under the table root where records live.
pub(crate) const RECORDS_DIR: &str = "_lakefusion/writes";

/// The first line of every record: what it is and its format version.
const HEADER: &str = "lakefusion write record 1";

/// Records are read whole: a record larger than this is not ours.
pub(crate) const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// What one write is making visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteRecord {
    /// Where the record lives: `<root>/_lakefusion/writes/<write id>`.
    pub location: Path,
    /// The write's id (also in every file name it writes).
    pub write_id: String,
    /// The files, under their final names.
    pub files: Vec<Path>,
}

/// Why a record cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("write record '{location}': {problem}")]
pub(crate) struct RecordError {
    location: String,
    problem: String,
}

impl WriteRecord {
    /// The record of write `write_id` under `root` (the table root's
    /// prefix), listing `files`.
    pub(crate) fn new(root: &Path, write_id: &str, files: Vec<Path>) -> Self {
        Self {
            location: records_prefix(root).join(write_id),
            write_id: write_id.to_string(),
            files,
        }
    }

    /// The record's bytes: the header, then one `add <path>` line per file
    /// (object paths hold no line breaks: object_store encodes them).
    pub(crate) fn encode(&self) -> Bytes {
        let mut text = String::from(HEADER);
        text.push('\n');
        for file in &self.files {
            text.push_str("add ");
            text.push_str(file.as_ref());
            text.push('\n');
        }
        Bytes::from(text)
    }

    /// Reads the record at `location` (under `root`) from `bytes`: the
    /// header must match, every line must be an `add` of a file under
    /// `root` whose name carries the record's write id.
    pub(crate) fn decode(root: &Path, location: &Path, bytes: &[u8]) -> Result<Self, RecordError> {
        let problem = |problem: String| RecordError {
            location: location.to_string(),
            problem,
        };
        let write_id = location
            .filename()
            .filter(|id| location.prefix_matches(&records_prefix(root)) && !id.is_empty())
            .ok_or_else(|| problem("not a record of this table".into()))?
            .to_string();
        let text = std::str::from_utf8(bytes).map_err(|e| problem(format!("not text: {e}")))?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(problem(format!("its first line is not '{HEADER}'")));
        }
        let mut files = Vec::new();
        for (number, line) in lines.enumerate() {
            let line_problem = |what: String| problem(format!("line {}: {what}", number + 2));
            let Some(path) = line.strip_prefix("add ") else {
                return Err(line_problem(format!(
                    "'{line}' is not an 'add <path>' line"
                )));
            };
            let file = Path::parse(path).map_err(|e| line_problem(format!("'{path}': {e}")))?;
            let ours = file.prefix_matches(root)
                && !file.prefix_matches(&records_prefix(root))
                && file
                    .filename()
                    .is_some_and(|name| name.contains(&format!("-{write_id}-")));
            if !ours {
                return Err(line_problem(format!(
                    "'{path}' is not a file of write '{write_id}' under '{root}'"
                )));
            }
            files.push(file);
        }
        Ok(Self {
            location: location.clone(),
            write_id,
            files,
        })
    }

    /// Writes the record, before the write's first file becomes visible.
    pub(crate) async fn put(&self, store: &Arc<dyn ObjectStore>) -> object_store::Result<()> {
        put_new(store, &self.location, PutPayload::from(self.encode())).await
    }

    /// Removes the record, once every file it lists is visible and the
    /// write is done — or once every file it lists is gone again.
    pub(crate) async fn remove(&self, store: &Arc<dyn ObjectStore>) -> object_store::Result<()> {
        match store.delete(&self.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// `<root>/_lakefusion/writes`.
pub(crate) fn records_prefix(root: &Path) -> Path {
    RECORDS_DIR
        .split('/')
        .fold(root.clone(), |path, part| path.join(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_refuses_what_is_not_its_own() {
        let root = Path::from("lake");
        let files = vec![
            Path::from("lake/p=1/part-abc-1-0-00000.parquet"),
            Path::from("lake/p=2/x%3Ay/bucket-00001-abc-1-0-00001.parquet"),
        ];
        let record = WriteRecord::new(&root, "abc-1-0", files);
        assert_eq!(record.location.as_ref(), "lake/_lakefusion/writes/abc-1-0");
        let bytes = record.encode();
        assert_eq!(
            WriteRecord::decode(&root, &record.location, &bytes).unwrap(),
            record
        );
        let refused = |text: &str| {
            WriteRecord::decode(&root, &record.location, text.as_bytes())
                .unwrap_err()
                .to_string()
        };
        // Another write's file, a file outside the root, a path that does
        // not parse, a record in place of a file, no header.
        for (text, says) in [
            (
                "add lake/p=1/part-other-00000.parquet",
                "not a file of write",
            ),
            (
                "add elsewhere/part-abc-1-0-00000.parquet",
                "not a file of write",
            ),
            ("add lake/../part-abc-1-0-00000.parquet", "lake/../part"),
            (
                "add lake/_lakefusion/writes/x-abc-1-0-1",
                "not a file of write",
            ),
            ("remove lake/p=1/part-abc-1-0-00000.parquet", "not an 'add"),
        ] {
            let error = refused(&format!("{HEADER}\n{text}\n"));
            assert!(error.contains(says), "{text}: {error}");
            assert!(error.contains("lake/_lakefusion/writes/abc-1-0"), "{error}");
        }
        assert!(refused("garbage\n").contains("first line"));
        let elsewhere = Path::from("other/_lakefusion/writes/abc-1-0");
        assert!(WriteRecord::decode(&root, &elsewhere, &bytes).is_err());
    }
}
