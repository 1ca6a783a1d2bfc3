//! A listing that is one moment of the table: taken between two readings
//! of the journal, with what writes moved meanwhile listed again, and the
//! files the journal hides left out.
//!
//! A listing is not a snapshot: it reads directories and pages one after
//! another while writes go on. With the journal read before and after it,
//! every partition no write touched in between is whole: a write under way
//! throughout only adds files the journal hides, and a committed one only
//! removes files the journal hides. The partitions of the writes that did
//! move (began, committed or ended, each named by its record, its marker or
//! its done marker) are listed again, between the second reading and a
//! third, until no write moves during one — a few directories, usually one
//! round. Two more listing requests per discovery when nothing moved.

use std::collections::HashSet;
use std::time::Duration;

use datafusion::common::ScalarValue;
use object_store::path::Path;

use super::index::ListedPartition;
use super::journal::{Journal, Touched};
use super::listing::Lister;
use super::partitioning::PartitionSpec;
use crate::error::{Error, Result};

/// How many times what moved is listed again before giving up.
const ATTEMPTS: u32 = 8;

/// What a snapshot lists.
pub(crate) enum Scope<'a> {
    /// The whole table, with the declared spec (or one the listing infers).
    Table(Option<&'a PartitionSpec>),
    /// Only the partitions with these values (every spelling).
    Partitions(&'a PartitionSpec, &'a [Vec<ScalarValue>]),
}

/// What to list again after a reading of the journal.
enum Again {
    /// These partitions (none: the listing stands).
    Partitions(Vec<Vec<ScalarValue>>),
    /// Everything in scope.
    All,
}

/// A listing as one moment of the table.
pub(crate) struct Snapshot {
    pub spec: PartitionSpec,
    /// The partitions, without the files the journal hides (and without
    /// partitions left with none).
    pub partitions: Vec<ListedPartition>,
    /// The journal as last read: the moment the listing stands for.
    pub journal: Journal,
}

/// Lists `scope` through `lister` as one moment of the table (see the
/// module).
pub(crate) async fn snapshot(
    lister: &Lister<'_>,
    scope: Scope<'_>,
    extension: &str,
) -> Result<Snapshot> {
    let (store, root) = (lister.store(), lister.root());
    let mut before = Journal::read(store, root, None).await?;
    before.refuse_unreadable()?;
    let (mut spec, mut partitions) = match &scope {
        Scope::Table(declared) => {
            let listing = lister.list_partitions(*declared, extension).await?;
            (listing.spec, listing.partitions)
        }
        Scope::Partitions(spec, targets) => {
            let listed = lister
                .list_partitions_with(spec, extension, targets)
                .await?;
            ((*spec).clone(), listed)
        }
    };
    for attempt in 0..ATTEMPTS {
        let after = Journal::read(store, root, Some(&before)).await?;
        after.refuse_unreadable()?;
        let again = match after.touched_since(&before, root.prefix()) {
            Touched::Partitions(dirs) => {
                let values: Option<Vec<Vec<ScalarValue>>> =
                    dirs.iter().map(|dir| spec.values_of_dir(dir)).collect();
                match values {
                    Some(mut values) => {
                        if let Scope::Partitions(_, targets) = &scope {
                            values.retain(|v| targets.contains(v));
                        }
                        Again::Partitions(values)
                    }
                    // Not a partition of this spec: list it all again.
                    None => Again::All,
                }
            }
            Touched::Table => Again::All,
        };
        match again {
            Again::Partitions(values) if values.is_empty() => {
                without_hidden(&mut partitions, &after.hidden());
                return Ok(Snapshot {
                    spec,
                    partitions,
                    journal: after,
                });
            }
            Again::Partitions(values) => {
                tracing::debug!(root = %root, attempt, partitions = values.len(),
                    "writes moved while the table was listed: listing their partitions again");
                let listed = lister
                    .list_partitions_with(&spec, extension, &values)
                    .await?;
                partitions.retain(|p| !values.contains(&p.values));
                partitions.extend(listed);
            }
            Again::All => {
                tracing::debug!(root = %root, attempt,
                    "a write over the whole table moved while it was listed: listing again");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                partitions = match &scope {
                    // Declared, or inferred again (a first listing of an
                    // empty table inferred no partition columns).
                    Scope::Table(declared) => {
                        let listing = lister.list_partitions(*declared, extension).await?;
                        spec = listing.spec;
                        listing.partitions
                    }
                    Scope::Partitions(spec, targets) => {
                        lister
                            .list_partitions_with(spec, extension, targets)
                            .await?
                    }
                };
            }
        }
        before = after;
    }
    Err(Error::ListingRaced {
        root: root.to_string(),
        attempts: ATTEMPTS as usize,
    })
}

/// Runs `list` between two readings of the journal, again (the whole of
/// it) until no write moved meanwhile, and returns it with the files the
/// journal hides — for listings too small to be worth listing in part
/// again (`refresh_partitions`).
pub(crate) async fn consistent<T, F, Fut>(
    lister: &Lister<'_>,
    mut list: F,
) -> Result<(T, HashSet<Path>)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (store, root) = (lister.store(), lister.root());
    let mut before = Journal::read(store, root, None).await?;
    before.refuse_unreadable()?;
    for attempt in 0..ATTEMPTS {
        let listing = list().await?;
        let after = Journal::read(store, root, Some(&before)).await?;
        after.refuse_unreadable()?;
        let moved = match after.touched_since(&before, root.prefix()) {
            Touched::Partitions(dirs) => !dirs.is_empty(),
            Touched::Table => true,
        };
        if !moved {
            return Ok((listing, after.hidden()));
        }
        tracing::debug!(root = %root, attempt, "a write moved while the table was listed: listing again");
        tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
        before = after;
    }
    Err(Error::ListingRaced {
        root: root.to_string(),
        attempts: ATTEMPTS as usize,
    })
}

/// Leaves the `hidden` files out of `partitions`, and the partitions left
/// with none.
pub(crate) fn without_hidden(partitions: &mut Vec<ListedPartition>, hidden: &HashSet<Path>) {
    if hidden.is_empty() {
        return;
    }
    for partition in partitions.iter_mut() {
        partition
            .files
            .retain(|f| !hidden.contains(&f.meta.location));
    }
    partitions.retain(|p| !p.files.is_empty());
}
