//! The journal of a table's writes: the small objects the commit protocol
//! keeps under the root's hidden `_lakefusion/` prefix (hidden by the Hive
//! rules from every reader: ours, Spark, DuckDB, DataFusion's
//! `ListingTable`), what they say, and what a reader makes of them.
//!
//! * `_lakefusion/writes/<id>`: a write's [`WriteRecord`] — what kind of
//!   write it is, the partitions it replaces, the files it adds. Put before
//!   its first visible change; removed when it is done.
//! * `_lakefusion/writes/<id>.committed`: a replacing write's
//!   [`CommitMarker`] — the partitions it claimed and the files it removes.
//!   Its presence *is* the commit.
//! * `_lakefusion/writes/<id>.done`: a [`DoneMarker`], put by every write
//!   as it ends (committed or taken back), naming the partitions it
//!   touched, so that a reader whose listing a whole write ran inside knows
//!   which partitions to list again. Kept [`DONE_RETENTION`], then removed
//!   by later writes.
//! * `_lakefusion/claims/<partition dir>`: a replacing write's claim on one
//!   partition (its content: the write id), created with a conditional PUT,
//!   so two writes that replace the same partition cannot both commit.
//!
//! The protocol's steps are on the writer's side (`write::commit`); a
//! reader's rule is [`Journal::hidden`]: the files of a write not committed
//! are not read, nor the files a committed write removes. Every object here
//! is read as untrusted input: each line is checked, and a record can only
//! add files whose names carry its write id, under the table root.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::ListingTableUrl;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::partitioning::dir_under;
use crate::error::{Error, Result};

/// The hidden prefix, under the table root, of every journal object.
pub(crate) const JOURNAL_DIR: &str = "_lakefusion";

/// The suffix of a commit marker's name (after the write id).
pub(crate) const COMMITTED_SUFFIX: &str = ".committed";

/// The suffix of a done marker's name (after the write id).
pub(crate) const DONE_SUFFIX: &str = ".done";

/// How long done markers are kept: a reader whose listing takes longer
/// than this could miss a write that began and ended inside it.
pub(crate) const DONE_RETENTION: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The first line of every done marker.
const DONE_HEADER: &str = "lakefusion done 1";

/// The first line of a record written before replacing writes existed
/// (appends only): still read.
const RECORD_HEADER_V1: &str = "lakefusion write record 1";

/// The first line of every record.
const RECORD_HEADER: &str = "lakefusion write record 2";

/// The first line of every commit marker.
const MARKER_HEADER: &str = "lakefusion commit 1";

/// The only line of an abort marker (at a commit marker's name).
const ABORTED_HEADER: &str = "lakefusion aborted 1";

/// The line of a done marker put by a write that was taken back.
const ABORTED_LINE: &str = "aborted";

/// Journal objects are read whole: one larger than this is not ours.
pub(crate) const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// Journal objects read at once (each at most [`MAX_RECORD_BYTES`]).
const READ_CONCURRENCY: usize = 4;

/// What a write does to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// `INSERT INTO`: adds files.
    Append,
    /// `INSERT OVERWRITE`: adds files, replaces what was in their
    /// partitions (or the whole table).
    Overwrite,
    /// `DELETE FROM`: removes every file of some partitions.
    Delete,
    /// Compaction: replaces some files with fewer, larger ones.
    Compact,
}

impl WriteKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Overwrite => "overwrite",
            Self::Delete => "delete",
            Self::Compact => "compact",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Append, Self::Overwrite, Self::Delete, Self::Compact]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// The partitions a write replaces (and claims before it commits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// None: the write only adds files.
    Nothing,
    /// These partitions, by their directory in our writer's spelling
    /// (`date=2026-03-01/region=eu`), whatever other writers called them.
    Partitions(Vec<String>),
    /// The whole table.
    Table,
}

/// What one write is doing: `_lakefusion/writes/<write id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteRecord {
    /// Where the record lives.
    pub location: Path,
    /// The write's id (also in every file name it writes).
    pub write_id: String,
    pub kind: WriteKind,
    pub replaces: Replaced,
    /// The files it adds, under their final names.
    pub files: Vec<Path>,
}

/// A replacing write's commit: `_lakefusion/writes/<write id>.committed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitMarker {
    pub location: Path,
    pub write_id: String,
    /// The partitions it claimed (directories in our writer's spelling).
    pub claims: Vec<String>,
    /// The files it removes, under the table root.
    pub removes: Vec<Path>,
    /// An abort marker, not a commit: put (with a conditional PUT, at the
    /// same name) by `recover()` or by a writer whose commit PUT failed, so
    /// that the write can no longer commit.
    pub aborted: bool,
}

/// `<root>/_lakefusion/<parts…>`.
fn journal_path(root: &Path, parts: &[&str]) -> Path {
    parts
        .iter()
        .fold(root.clone().join(JOURNAL_DIR), |path, part| {
            path.join(*part)
        })
}

/// `<root>/_lakefusion/writes`: records, commit markers and done markers.
pub(crate) fn writes_prefix(root: &Path) -> Path {
    journal_path(root, &["writes"])
}

/// `<root>/_lakefusion/claims`.
pub(crate) fn claims_prefix(root: &Path) -> Path {
    journal_path(root, &["claims"])
}

/// The claim on the partition in directory `dir` (our writer's spelling,
/// relative to the root; `""`, the root of an unpartitioned table, is
/// claimed as `_table`).
pub(crate) fn claim_path(
    root: &Path,
    dir: &str,
) -> std::result::Result<Path, object_store::path::Error> {
    if dir.is_empty() {
        return Ok(claims_prefix(root).join("_table"));
    }
    Path::parse(format!("{}/{dir}", claims_prefix(root)))
}

/// Whether `id` has the form our writer gives write ids
/// (`<hex nanos>-<hex pid>-<hex sequence>`): names are checked against it,
/// so a journal object named otherwise cannot claim other writes' files.
pub(crate) fn is_write_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `name` is the name of a file our writer wrote for write `id`:
/// `part-<id>-<seq>.parquet…` or `bucket-<n>-<id>-<seq>.…`.
fn is_file_of(name: &str, id: &str) -> bool {
    let rest = name.strip_prefix("part-").or_else(|| {
        name.strip_prefix("bucket-")
            .and_then(|r| r.split_once('-').map(|(_, r)| r))
    });
    rest.and_then(|r| r.strip_prefix(id))
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|r| {
            r.split('.')
                .next()
                .is_some_and(|seq| !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Appends the line `<word> <value>` to a journal object's text.
fn push_line(text: &mut String, word: &str, value: &str) {
    text.push_str(word);
    text.push(' ');
    text.push_str(value);
    text.push('\n');
}

fn problem(location: &Path, problem: String) -> Error {
    Error::WriteRecord {
        path: location.to_string(),
        problem,
    }
}

/// Whether `file` can be a data file of the table at `root`: under it, and
/// not in the journal.
fn in_table(root: &Path, file: &Path) -> bool {
    file.prefix_matches(root) && !file.prefix_matches(&root.clone().join(JOURNAL_DIR))
}

impl WriteRecord {
    /// The record of write `write_id` under `root` (the table root's prefix).
    pub(crate) fn new(
        root: &Path,
        write_id: &str,
        kind: WriteKind,
        replaces: Replaced,
        files: Vec<Path>,
    ) -> Self {
        Self {
            location: writes_prefix(root).join(write_id),
            write_id: write_id.to_string(),
            kind,
            replaces,
            files,
        }
    }

    /// The record's bytes: the header, the kind, one `replaces` line per
    /// partition (`replaces-table` for the whole table), one `add <path>`
    /// line per file (object paths hold no line breaks: object_store
    /// encodes them).
    pub(crate) fn encode(&self) -> Bytes {
        let mut text = format!("{RECORD_HEADER}\nkind {}\n", self.kind.as_str());
        match &self.replaces {
            Replaced::Nothing => {}
            Replaced::Table => text.push_str("replaces-table\n"),
            Replaced::Partitions(dirs) => {
                for dir in dirs {
                    push_line(&mut text, "replaces", dir);
                }
            }
        }
        for file in &self.files {
            push_line(&mut text, "add", file.as_ref());
        }
        Bytes::from(text)
    }

    /// Reads the record at `location` (under `root`) from `bytes`: the
    /// header must match, and every added file must be under `root`, out of
    /// the journal, with the record's write id in its name.
    pub(crate) fn decode(root: &Path, location: &Path, bytes: &[u8]) -> Result<Self> {
        let write_id = location
            .filename()
            .filter(|id| location.prefix_matches(&writes_prefix(root)) && is_write_id(id))
            .ok_or_else(|| problem(location, "not a record of this table".into()))?
            .to_string();
        let text =
            std::str::from_utf8(bytes).map_err(|e| problem(location, format!("not text: {e}")))?;
        let mut lines = text.lines().enumerate();
        let (mut kind, mut replaces) = match lines.next() {
            Some((_, RECORD_HEADER_V1)) => (Some(WriteKind::Append), Replaced::Nothing),
            Some((_, RECORD_HEADER)) => (None, Replaced::Nothing),
            _ => {
                return Err(problem(
                    location,
                    format!(
                        "its first line is not '{RECORD_HEADER}' (written by another version?)"
                    ),
                ))
            }
        };
        let mut files = Vec::new();
        for (number, line) in lines {
            let line_problem =
                |what: String| problem(location, format!("line {}: {what}", number + 1));
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match (word, kind) {
                ("kind", None) => {
                    kind =
                        Some(WriteKind::parse(rest).ok_or_else(|| {
                            line_problem(format!("'{rest}' is no kind of write"))
                        })?);
                }
                ("replaces-table", Some(_)) if rest.is_empty() => replaces = Replaced::Table,
                // Never "": an unpartitioned table is replaced as a table.
                ("replaces", Some(_)) if !rest.is_empty() => match &mut replaces {
                    Replaced::Nothing => replaces = Replaced::Partitions(vec![rest.to_string()]),
                    Replaced::Partitions(dirs) => dirs.push(rest.to_string()),
                    Replaced::Table => {
                        return Err(line_problem("a partition after 'replaces-table'".into()))
                    }
                },
                ("add", Some(_)) => {
                    let file =
                        Path::parse(rest).map_err(|e| line_problem(format!("'{rest}': {e}")))?;
                    let ours = in_table(root, &file)
                        && file
                            .filename()
                            .is_some_and(|name| is_file_of(name, &write_id));
                    if !ours {
                        return Err(line_problem(format!(
                            "'{rest}' is not a file of write '{write_id}' under '{root}'"
                        )));
                    }
                    files.push(file);
                }
                _ => return Err(line_problem(format!("'{line}' is not a line of a record"))),
            }
        }
        let kind = kind.ok_or_else(|| problem(location, "it names no kind of write".into()))?;
        if (kind == WriteKind::Append) != (replaces == Replaced::Nothing) {
            return Err(problem(
                location,
                format!(
                    "a write of kind '{}' with replaced partitions {replaces:?}",
                    kind.as_str()
                ),
            ));
        }
        Ok(Self {
            location: location.clone(),
            write_id,
            kind,
            replaces,
            files,
        })
    }
}

impl CommitMarker {
    /// The commit marker of write `write_id` under `root`.
    pub(crate) fn new(
        root: &Path,
        write_id: &str,
        claims: Vec<String>,
        removes: Vec<Path>,
    ) -> Self {
        Self {
            location: writes_prefix(root).join(format!("{write_id}{COMMITTED_SUFFIX}")),
            write_id: write_id.to_string(),
            claims,
            removes,
            aborted: false,
        }
    }

    /// The abort marker of write `write_id`: once it is there, the write
    /// cannot commit.
    pub(crate) fn abort(root: &Path, write_id: &str) -> Self {
        Self {
            aborted: true,
            ..Self::new(root, write_id, Vec::new(), Vec::new())
        }
    }

    /// The marker's bytes: the header, one `claim <dir>` line per claimed
    /// partition, one `remove <path>` line per removed file.
    pub(crate) fn encode(&self) -> Bytes {
        if self.aborted {
            return Bytes::from(format!("{ABORTED_HEADER}\n"));
        }
        let mut text = format!("{MARKER_HEADER}\n");
        for dir in &self.claims {
            push_line(&mut text, "claim", dir);
        }
        for file in &self.removes {
            push_line(&mut text, "remove", file.as_ref());
        }
        Bytes::from(text)
    }

    /// Reads the marker at `location` (under `root`): every removed file
    /// must be a data file under `root`.
    pub(crate) fn decode(root: &Path, location: &Path, bytes: &[u8]) -> Result<Self> {
        let write_id = location
            .filename()
            .filter(|_| location.prefix_matches(&writes_prefix(root)))
            .and_then(|name| name.strip_suffix(COMMITTED_SUFFIX))
            .filter(|id| is_write_id(id))
            .ok_or_else(|| problem(location, "not a commit marker of this table".into()))?
            .to_string();
        let text =
            std::str::from_utf8(bytes).map_err(|e| problem(location, format!("not text: {e}")))?;
        let mut lines = text.lines().enumerate();
        let first = lines.next().map(|(_, line)| line);
        if first == Some(ABORTED_HEADER) && lines.next().is_none() {
            return Ok(Self::abort(root, &write_id));
        }
        if first != Some(MARKER_HEADER) {
            return Err(problem(
                location,
                format!("its first line is not '{MARKER_HEADER}' (written by another version?)"),
            ));
        }
        let (mut claims, mut removes) = (Vec::new(), Vec::new());
        for (number, line) in lines {
            let line_problem =
                |what: String| problem(location, format!("line {}: {what}", number + 1));
            match line.split_once(' ') {
                Some(("claim", dir)) => claims.push(dir.to_string()),
                Some(("remove", path)) => {
                    let file =
                        Path::parse(path).map_err(|e| line_problem(format!("'{path}': {e}")))?;
                    if !in_table(root, &file) {
                        return Err(line_problem(format!(
                            "'{path}' is not a data file under '{root}'"
                        )));
                    }
                    removes.push(file);
                }
                _ => {
                    return Err(line_problem(format!(
                        "'{line}' is not a line of a commit marker"
                    )))
                }
            }
        }
        Ok(Self {
            location: location.clone(),
            write_id,
            claims,
            removes,
            aborted: false,
        })
    }
}

/// The partitions a write touched (or the whole table), as directories in
/// our writer's spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Touched {
    Table,
    Partitions(BTreeSet<String>),
}

impl Touched {
    fn nothing() -> Self {
        Self::Partitions(BTreeSet::new())
    }

    /// This and `other` together.
    fn with(self, other: Self) -> Self {
        match (self, other) {
            (Self::Partitions(mut a), Self::Partitions(b)) => {
                a.extend(b);
                Self::Partitions(a)
            }
            _ => Self::Table,
        }
    }

    #[cfg(test)]
    fn is_nothing(&self) -> bool {
        matches!(self, Self::Partitions(dirs) if dirs.is_empty())
    }
}

/// A write's end: `_lakefusion/writes/<write id>.done`, naming what it
/// touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DoneMarker {
    pub location: Path,
    pub touched: Touched,
    /// Put by a take-back (`recover()`, with a conditional PUT, so that
    /// the write can no longer commit), not by the write's own end.
    pub aborted: bool,
}

impl DoneMarker {
    pub(crate) fn new(root: &Path, write_id: &str, touched: Touched) -> Self {
        Self {
            location: writes_prefix(root).join(format!("{write_id}{DONE_SUFFIX}")),
            touched,
            aborted: false,
        }
    }

    /// The header, then `table` or one `partition <dir>` line per partition.
    pub(crate) fn encode(&self) -> Bytes {
        let mut text = format!("{DONE_HEADER}\n");
        if self.aborted {
            text.push_str(ABORTED_LINE);
            text.push('\n');
        }
        match &self.touched {
            Touched::Table => text.push_str("table\n"),
            Touched::Partitions(dirs) => {
                for dir in dirs {
                    push_line(&mut text, "partition", dir);
                }
            }
        }
        Bytes::from(text)
    }

    pub(crate) fn decode(location: &Path, bytes: &[u8]) -> Result<Self> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| problem(location, format!("not text: {e}")))?;
        let mut lines = text.lines();
        if lines.next() != Some(DONE_HEADER) {
            return Err(problem(
                location,
                format!("its first line is not '{DONE_HEADER}'"),
            ));
        }
        let mut touched = Touched::nothing();
        let mut aborted = false;
        for line in lines {
            if line == ABORTED_LINE {
                aborted = true;
                continue;
            }
            touched = touched.with(match line.split_once(' ') {
                None if line == "table" => Touched::Table,
                Some(("partition", dir)) if !dir.is_empty() => {
                    Touched::Partitions(BTreeSet::from([dir.to_string()]))
                }
                _ => {
                    return Err(problem(
                        location,
                        format!("'{line}' is not a line of a done marker"),
                    ))
                }
            });
        }
        Ok(Self {
            location: location.clone(),
            touched,
            aborted,
        })
    }
}

/// What the journal of a table says at one moment: every write under way
/// (its record), every replacing write that has committed and not yet
/// finished (its marker), and the writes that ended lately (their done
/// markers, read only when they appeared since an earlier reading).
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// Everything listed under `_lakefusion/writes/`, by location.
    objects: BTreeMap<Path, ObjectMeta>,
    records: HashMap<String, WriteRecord>,
    markers: HashMap<String, CommitMarker>,
    /// Done markers read (those new since the earlier reading), by location.
    dones: HashMap<Path, DoneMarker>,
    /// The objects that are no record or marker this version can read:
    /// where, and why.
    unreadable: Vec<(String, String)>,
}

/// Whether two listings of one object show the same object.
fn same(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.location == b.location
        && a.size == b.size
        && a.last_modified == b.last_modified
        && a.e_tag == b.e_tag
}

impl Journal {
    /// Lists `root`'s journal (one listing request) and reads every record
    /// and marker in it (usually none), reusing what `earlier` read of
    /// objects unchanged since; done markers are read only if they are new
    /// since `earlier` (with no `earlier`, none is read).
    pub(crate) async fn read(
        store: &Arc<dyn ObjectStore>,
        root: &ListingTableUrl,
        earlier: Option<&Self>,
    ) -> Result<Self> {
        let objects = list_writes(store, root).await?;
        let prefix = root.prefix();
        let mut journal = Self::default();
        let mut to_read = Vec::new();
        for meta in &objects {
            let location = &meta.location;
            let unchanged = earlier
                .and_then(|e| e.objects.get(location))
                .is_some_and(|old| same(old, meta));
            let done = location.as_ref().ends_with(DONE_SUFFIX);
            match (earlier, unchanged) {
                (Some(earlier), true) => journal.reuse(earlier, location),
                (None, _) if done => {}
                _ => to_read.push(meta.clone()),
            }
        }
        let read: Vec<Option<Result<Entry>>> = futures::stream::iter(to_read)
            .map(|meta| async move { read_entry(store, prefix, meta).await })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        for entry in read.into_iter().flatten() {
            match entry {
                Err(Error::WriteRecord { path, problem }) => {
                    journal.unreadable.push((path, problem))
                }
                Err(other) => return Err(other),
                Ok(Entry::Record(record)) => {
                    journal.records.insert(record.write_id.clone(), record);
                }
                Ok(Entry::Marker(marker)) => {
                    journal.markers.insert(marker.write_id.clone(), marker);
                }
                Ok(Entry::Done(done)) => {
                    journal.dones.insert(done.location.clone(), done);
                }
            }
        }
        journal.objects = objects
            .into_iter()
            .map(|m| (m.location.clone(), m))
            .collect();
        Ok(journal)
    }

    /// Takes over what `earlier` read of the (unchanged) object at `location`.
    fn reuse(&mut self, earlier: &Self, location: &Path) {
        if let Some(record) = earlier.records.values().find(|r| &r.location == location) {
            self.records.insert(record.write_id.clone(), record.clone());
        } else if let Some(marker) = earlier.markers.values().find(|m| &m.location == location) {
            self.markers.insert(marker.write_id.clone(), marker.clone());
        } else if let Some(done) = earlier.dones.get(location) {
            self.dones.insert(location.clone(), done.clone());
        } else if let Some(bad) = earlier
            .unreadable
            .iter()
            .find(|(p, _)| p == location.as_ref())
        {
            self.unreadable.push(bad.clone());
        }
    }

    /// What the writes that moved between `earlier` and this reading
    /// touched: a write that began, committed or ended (a record, a marker
    /// or a done marker that appeared, changed or went). A listing taken
    /// between the two readings may hold part of such a write in those
    /// partitions; everywhere else it is whole. `root` is the table root's
    /// prefix (records name their files under it).
    pub(crate) fn touched_since(&self, earlier: &Self, root: &Path) -> Touched {
        let mut touched = Touched::nothing();
        let moved = self
            .objects
            .values()
            .filter(|now| {
                earlier
                    .objects
                    .get(&now.location)
                    .is_none_or(|old| !same(old, now))
            })
            .map(|now| &now.location)
            .chain(
                earlier
                    .objects
                    .keys()
                    .filter(|location| !self.objects.contains_key(*location)),
            );
        for location in moved {
            let name = location.filename().unwrap_or_default();
            // A write that only began (its record appeared, no marker):
            // its files are hidden by this reading, wherever the listing
            // caught them.
            let began = !earlier.objects.contains_key(location)
                && !name.ends_with(COMMITTED_SUFFIX)
                && !name.ends_with(DONE_SUFFIX);
            if began {
                continue;
            }
            let part = if name.ends_with(DONE_SUFFIX) {
                match self.dones.get(location) {
                    Some(done) => done.touched.clone(),
                    // A done marker removed by its retention: long ended.
                    None if !self.objects.contains_key(location) => Touched::nothing(),
                    // Unreadable: the write is not known.
                    None => Touched::Table,
                }
            } else {
                let id = name.strip_suffix(COMMITTED_SUFFIX).unwrap_or(name);
                let record = self.records.get(id).or_else(|| earlier.records.get(id));
                match record {
                    Some(record) => touched_by_record(record, root),
                    // A marker whose record is gone: its removes are gone
                    // too (a record is removed only after them).
                    None if name.ends_with(COMMITTED_SUFFIX) => Touched::nothing(),
                    None => Touched::Table,
                }
            };
            touched = touched.with(part);
            if touched == Touched::Table {
                break;
            }
        }
        touched
    }

    /// The data files a reader must not read: those of every write that
    /// has not committed, and those every committed write removes (a
    /// marker counts only with its record: a writer removes its record only
    /// once the files it removes are gone, and a marker that lands after
    /// its write was taken back must change nothing).
    pub(crate) fn hidden(&self) -> HashSet<Path> {
        let uncommitted = self
            .records
            .values()
            .filter(|record| !self.is_committed(record))
            .flat_map(|record| record.files.iter().cloned());
        let removed = self
            .records
            .values()
            .filter(|record| self.is_committed(record))
            .filter_map(|record| self.markers.get(&record.write_id))
            .flat_map(|m| m.removes.iter().cloned());
        uncommitted.chain(removed).collect()
    }

    /// Whether `record`'s write has committed: an append commits by
    /// removing its record (so a record present means "not yet"); a
    /// replacing write by putting its marker.
    pub(crate) fn is_committed(&self, record: &WriteRecord) -> bool {
        record.kind != WriteKind::Append
            && self
                .markers
                .get(&record.write_id)
                .is_some_and(|marker| !marker.aborted)
    }

    /// The records (writes under way), in no order.
    pub(crate) fn records(&self) -> impl Iterator<Item = &WriteRecord> {
        self.records.values()
    }

    /// The record of write `write_id`, if it is under way.
    pub(crate) fn record(&self, write_id: &str) -> Option<&WriteRecord> {
        self.records.get(write_id)
    }

    /// The commit (or abort) marker of write `write_id`.
    pub(crate) fn marker(&self, write_id: &str) -> Option<&CommitMarker> {
        self.markers.get(write_id)
    }

    /// The write ids whose journal objects cannot be read: left alone.
    pub(crate) fn unreadable_writes(&self) -> HashSet<String> {
        self.unreadable
            .iter()
            .filter_map(|(path, _)| {
                let name = path.rsplit('/').next()?;
                let id = name
                    .strip_suffix(COMMITTED_SUFFIX)
                    .or_else(|| name.strip_suffix(DONE_SUFFIX))
                    .unwrap_or(name);
                Some(id.to_string())
            })
            .collect()
    }

    /// The commit markers, in no order.
    pub(crate) fn markers(&self) -> impl Iterator<Item = &CommitMarker> {
        self.markers.values()
    }

    /// The done markers listed, with when they were last modified.
    pub(crate) fn done_markers(&self) -> impl Iterator<Item = &ObjectMeta> {
        self.objects
            .values()
            .filter(|meta| meta.location.as_ref().ends_with(DONE_SUFFIX))
    }

    /// When the journal object at `location` was last modified, as listed.
    pub(crate) fn modified(&self, location: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
        self.objects.get(location).map(|meta| meta.last_modified)
    }

    /// The objects that are no record or marker this version can read
    /// (where, and why): recovery leaves them alone.
    pub(crate) fn unreadable(&self) -> &[(String, String)] {
        &self.unreadable
    }

    /// Refuses a journal with an object this version cannot read: a reader
    /// cannot tell what it hides.
    pub(crate) fn refuse_unreadable(&self) -> Result<()> {
        match self.unreadable.first() {
            None => Ok(()),
            Some((path, problem)) => Err(Error::WriteRecord {
                path: path.clone(),
                problem: format!(
                    "{problem}; readers cannot tell what it hides, so the table is not read \
                     until it is removed"
                ),
            }),
        }
    }
}

/// What a record's write touches: the partitions it replaces (or the
/// table), and the partitions of the files it adds.
pub(crate) fn touched_by_record(record: &WriteRecord, root: &Path) -> Touched {
    match &record.replaces {
        Replaced::Table => Touched::Table,
        Replaced::Nothing => touched_by_files(root, &record.files),
        Replaced::Partitions(dirs) => Touched::Partitions(dirs.iter().cloned().collect())
            .with(touched_by_files(root, &record.files)),
    }
}

/// The partition directories `files` (paths under `root`) are in; the
/// table for a file at the root (an unpartitioned table).
pub(crate) fn touched_by_files(root: &Path, files: &[Path]) -> Touched {
    let mut dirs = BTreeSet::new();
    for file in files {
        match dir_under(root, file) {
            "" => return Touched::Table,
            dir => {
                dirs.insert(dir.to_string());
            }
        }
    }
    Touched::Partitions(dirs)
}

enum Entry {
    Record(WriteRecord),
    Marker(CommitMarker),
    Done(DoneMarker),
}

/// The whole of the journal object at `location` (one GET).
pub(crate) async fn read_object(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
) -> object_store::Result<Bytes> {
    store.get(location).await?.bytes().await
}

/// The write id a claim's content names.
pub(crate) fn claim_holder(content: &[u8]) -> String {
    String::from_utf8_lossy(content).trim().to_string()
}

/// The done markers under `root`'s journal (one listing; none is read).
pub(crate) async fn list_done_markers(
    store: &Arc<dyn ObjectStore>,
    root: &ListingTableUrl,
) -> Result<Vec<ObjectMeta>> {
    let mut objects = list_writes(store, root).await?;
    objects.retain(|meta| meta.location.as_ref().ends_with(DONE_SUFFIX));
    Ok(objects)
}

/// Everything under `_lakefusion/writes/`.
async fn list_writes(
    store: &Arc<dyn ObjectStore>,
    root: &ListingTableUrl,
) -> Result<Vec<ObjectMeta>> {
    store
        .list(Some(&writes_prefix(root.prefix())))
        .try_collect()
        .await
        .map_err(|source| Error::Listing {
            root: root.to_string(),
            source,
        })
}

/// Reads one journal object: `None` for an empty object (a console's
/// folder marker) or one gone since the listing; `Some(Err)` for one that
/// is no journal object of this version.
async fn read_entry(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    meta: ObjectMeta,
) -> Result<Option<Result<Entry>>> {
    let location = &meta.location;
    if meta.size == 0 {
        return Ok(None);
    }
    if meta.size > MAX_RECORD_BYTES {
        let size = meta.size;
        return Ok(Some(Err(problem(
            location,
            format!("{size} bytes is too large for a journal object"),
        ))));
    }
    let bytes = match read_object(store, location).await {
        Ok(bytes) => bytes,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => {
            return Err(Error::ReadFile {
                path: location.to_string(),
                source: Box::new(e.into()),
            })
        }
    };
    let name = location.as_ref();
    Ok(Some(if name.ends_with(COMMITTED_SUFFIX) {
        CommitMarker::decode(root, location, &bytes).map(Entry::Marker)
    } else if name.ends_with(DONE_SUFFIX) {
        DoneMarker::decode(location, &bytes).map(Entry::Done)
    } else {
        WriteRecord::decode(root, location, &bytes).map(Entry::Record)
    }))
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
        for (kind, replaces) in [
            (WriteKind::Append, Replaced::Nothing),
            (
                WriteKind::Overwrite,
                Replaced::Partitions(vec!["p=1".into(), "p=2/x%3Ay".into()]),
            ),
            (WriteKind::Overwrite, Replaced::Table),
        ] {
            let record = WriteRecord::new(&root, "abc-1-0", kind, replaces, files.clone());
            assert_eq!(record.location.as_ref(), "lake/_lakefusion/writes/abc-1-0");
            let bytes = record.encode();
            assert_eq!(
                WriteRecord::decode(&root, &record.location, &bytes).unwrap(),
                record
            );
        }
        // A record of the first version (appends only) still reads.
        let location = Path::from("lake/_lakefusion/writes/abc-1-0");
        let v1 = format!("{RECORD_HEADER_V1}\nadd lake/p=1/part-abc-1-0-00000.parquet\n");
        let old = WriteRecord::decode(&root, &location, v1.as_bytes()).unwrap();
        assert_eq!((old.kind, old.files.len()), (WriteKind::Append, 1));

        let refused = |text: &str| {
            WriteRecord::decode(&root, &location, text.as_bytes())
                .unwrap_err()
                .to_string()
        };
        // Another write's file, a file outside the root, a path that does
        // not parse, a journal object in place of a file, an unknown line,
        // an append that replaces, an overwrite that replaces nothing.
        for (text, says) in [
            (
                "kind append\nadd lake/p=1/part-other-00000.parquet",
                "not a file of write",
            ),
            (
                "kind append\nadd elsewhere/part-abc-1-0-00000.parquet",
                "not a file of write",
            ),
            (
                "kind append\nadd lake/../part-abc-1-0-00000.parquet",
                "lake/../part",
            ),
            (
                "kind append\nadd lake/_lakefusion/writes/x-abc-1-0-1",
                "not a file of write",
            ),
            (
                "kind append\nremove lake/p=1/part-abc-1-0-00000.parquet",
                "not a line of a record",
            ),
            ("kind append\nreplaces p=1", "a write of kind 'append'"),
            ("kind overwrite", "a write of kind 'overwrite'"),
            ("kind rename", "no kind of write"),
            (
                "add lake/p=1/part-abc-1-0-00000.parquet",
                "not a line of a record",
            ),
        ] {
            let error = refused(&format!("{RECORD_HEADER}\n{text}\n"));
            assert!(error.contains(says), "{text}: {error}");
            assert!(error.contains("lake/_lakefusion/writes/abc-1-0"), "{error}");
        }
        assert!(refused("garbage\n").contains("first line"));
        let elsewhere = Path::from("other/_lakefusion/writes/abc-1-0");
        let bytes = WriteRecord::new(
            &root,
            "abc-1-0",
            WriteKind::Append,
            Replaced::Nothing,
            files,
        )
        .encode();
        assert!(WriteRecord::decode(&root, &elsewhere, &bytes).is_err());
    }

    #[test]
    fn a_marker_reads_back_and_removes_only_data_files_of_its_table() {
        let root = Path::from("lake");
        let marker = CommitMarker::new(
            &root,
            "abc-1-0",
            vec!["p=1".into()],
            vec![
                Path::from("lake/p=1/part-0.parquet"),
                Path::from("lake/p=01/x.parquet"),
            ],
        );
        assert_eq!(
            marker.location.as_ref(),
            "lake/_lakefusion/writes/abc-1-0.committed"
        );
        assert_eq!(
            CommitMarker::decode(&root, &marker.location, &marker.encode()).unwrap(),
            marker
        );
        for text in [
            "remove other/p=1/part-0.parquet",
            "remove lake/_lakefusion/writes/abc-1-0",
            "add lake/p=1/part-0.parquet",
        ] {
            let bytes = format!("{MARKER_HEADER}\n{text}\n");
            let error =
                CommitMarker::decode(&root, &marker.location, bytes.as_bytes()).unwrap_err();
            assert!(error.to_string().contains("line 2"), "{text}: {error}");
        }
        let record_location = Path::from("lake/_lakefusion/writes/abc-1-0");
        assert!(CommitMarker::decode(&root, &record_location, &marker.encode()).is_err());
    }

    #[test]
    fn readers_hide_uncommitted_adds_and_committed_removes() {
        let root = Path::from("lake");
        let add = |id: &str| Path::from(format!("lake/p=1/part-{id}-00000.parquet"));
        let mut journal = Journal::default();
        for (id, kind, replaces) in [
            ("a-1-0", WriteKind::Append, Replaced::Nothing),
            (
                "b-1-0",
                WriteKind::Overwrite,
                Replaced::Partitions(vec!["p=1".into()]),
            ),
            (
                "c-1-0",
                WriteKind::Overwrite,
                Replaced::Partitions(vec!["p=1".into()]),
            ),
        ] {
            let record = WriteRecord::new(&root, id, kind, replaces, vec![add(id)]);
            journal.records.insert(id.into(), record);
        }
        let old = Path::from("lake/p=1/old.parquet");
        journal.markers.insert(
            "c-1-0".into(),
            CommitMarker::new(&root, "c-1-0", vec!["p=1".into()], vec![old.clone()]),
        );
        let hidden = journal.hidden();
        assert!(hidden.contains(&add("a-1-0")));
        assert!(hidden.contains(&add("b-1-0")));
        assert!(!hidden.contains(&add("c-1-0")));
        assert!(hidden.contains(&old));
        assert_eq!(hidden.len(), 3);
        // A marker without its record (it landed after its write was taken
        // back) hides nothing.
        let stray = Path::from("lake/p=1/kept.parquet");
        journal.markers.insert(
            "d-1-0".into(),
            CommitMarker::new(&root, "d-1-0", vec!["p=1".into()], vec![stray.clone()]),
        );
        assert!(!journal.hidden().contains(&stray));
    }

    #[test]
    fn names_follow_the_writers_grammar() {
        assert!(is_write_id("18ed65df417b5838-1cd0-0"));
        for id in ["0", "a-b", "x-1-0", "a--0", "a-1-0-0", ""] {
            assert!(!is_write_id(id), "{id}");
        }
        assert!(is_file_of("part-a-1-0-00000.parquet", "a-1-0"));
        assert!(is_file_of("bucket-00003-a-1-0-00012.parquet", "a-1-0"));
        // A first write of another process is not write `1-0`'s file.
        assert!(!is_file_of("part-18e-1cd0-0-00000.parquet", "1cd0-0"));
        assert!(!is_file_of("part-a-1-0x-00000.parquet", "a-1-0"));
        assert!(!is_file_of("part-a-1-0-.parquet", "a-1-0"));
    }

    fn meta(location: &str, tag: &str) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(location),
            last_modified: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            size: 10,
            e_tag: Some(tag.into()),
            version: None,
        }
    }

    /// What a reader lists again: the partitions of each write that moved
    /// between two readings of the journal, and nothing when none did.
    #[test]
    fn what_moved_between_two_readings_is_what_is_listed_again() {
        let root = Path::from("lake");
        let record = WriteRecord::new(
            &root,
            "a-1-0",
            WriteKind::Append,
            Replaced::Nothing,
            vec![Path::from("lake/p=1/part-a-1-0-00000.parquet")],
        );
        let mut earlier = Journal::default();
        earlier
            .objects
            .insert(record.location.clone(), meta(record.location.as_ref(), "1"));
        earlier.records.insert("a-1-0".into(), record.clone());
        // Unchanged: nothing.
        let same = Journal {
            objects: earlier.objects.clone(),
            records: earlier.records.clone(),
            ..Journal::default()
        };
        assert!(same.touched_since(&earlier, &root).is_nothing());
        // The append ended (its record went): its partition.
        let ended = Journal::default();
        assert_eq!(
            ended.touched_since(&earlier, &root),
            Touched::Partitions(BTreeSet::from(["p=1".to_string()]))
        );
        // A whole write inside the window: its done marker says where.
        let done = DoneMarker::new(
            &root,
            "b-1-0",
            Touched::Partitions(BTreeSet::from(["p=2".to_string()])),
        );
        let mut later = Journal {
            objects: earlier.objects.clone(),
            records: earlier.records.clone(),
            ..Journal::default()
        };
        later
            .objects
            .insert(done.location.clone(), meta(done.location.as_ref(), "2"));
        later.dones.insert(
            done.location.clone(),
            DoneMarker::decode(&done.location, &done.encode()).unwrap(),
        );
        assert_eq!(
            later.touched_since(&earlier, &root),
            Touched::Partitions(BTreeSet::from(["p=2".to_string()]))
        );
        // One that replaced the table, or one that cannot be read: everything.
        let table = DoneMarker::new(&root, "c-1-0", Touched::Table);
        later
            .objects
            .insert(table.location.clone(), meta(table.location.as_ref(), "3"));
        later.dones.insert(table.location.clone(), table);
        assert_eq!(later.touched_since(&earlier, &root), Touched::Table);
        let mut unread = Journal::default();
        unread.objects.insert(
            Path::from("lake/_lakefusion/writes/d-1-0.done"),
            meta("lake/_lakefusion/writes/d-1-0.done", "4"),
        );
        assert_eq!(
            unread.touched_since(&Journal::default(), &root),
            Touched::Table
        );
    }
}
