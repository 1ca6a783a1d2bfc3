//! [`SiblingState`]: what the partitions of one execution of a scan share —
//! DataFusion's work-stealing queue of the scan's files and the read-ahead
//! over it — handed out per round of execution.

use std::any::Any;
use std::sync::{Arc, Mutex};

use datafusion::config::ConfigOptions;
use datafusion_datasource::file_scan_config::FileScanConfig;
use datafusion_datasource::source::DataSource;

use crate::store::read_ahead::SharedReadAhead;

/// Hands out what the partitions of one execution share, per *round* of
/// execution: DataFusion's sibling work-stealing state (one shared queue of
/// the scan's files) and the read-ahead over that queue. The first `execute`
/// of a round creates them, and once every partition has started, the next
/// `execute` starts a new round. A plan executed again — a re-run, a cache
/// re-fill — therefore never finds the previous round's drained queue.
#[derive(Debug, Default)]
pub(crate) struct SiblingState {
    round: Mutex<Round>,
}

/// The round under way.
#[derive(Debug, Default)]
struct Round {
    /// Partitions of the round started so far.
    started: usize,
    /// What they share (`None`: the scan cannot share its files).
    shared: Option<Siblings>,
}

/// What the partitions of one round share.
#[derive(Debug, Clone)]
pub(crate) struct Siblings {
    /// DataFusion's shared work queue.
    pub(crate) queue: Arc<dyn Any + Send + Sync>,
    /// The read-ahead over that queue.
    pub(crate) read_ahead: Arc<SharedReadAhead>,
}

impl SiblingState {
    /// What partition of a scan of `partitions` partitions shares with its
    /// siblings of this round.
    pub(crate) fn for_partition(
        &self,
        config: &FileScanConfig,
        partitions: usize,
        options: &ConfigOptions,
    ) -> Option<Siblings> {
        let mut round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        if round.started == 0 {
            round.shared = config.create_sibling_state(options).map(|queue| Siblings {
                queue,
                read_ahead: Arc::default(),
            });
        }
        round.started += 1;
        let shared = round.shared.clone();
        if round.started >= partitions {
            *round = Round::default();
        }
        shared
    }
}
