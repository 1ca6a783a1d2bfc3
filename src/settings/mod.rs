//! Settings that travel with a query in the session config, as DataFusion
//! config extensions (so `SET` changes them and Ballista ships them):
//!
//! * `query_context`: [`QueryContext`], who is asking (query id, tenant);
//! * `scan_options`: [`ScanOptions`], how scans read (`lakefusion.*`: the
//!   small-table cache switch and how far scans read ahead).
//!
//! Both implement `ExtensionOptions` by hand over one table of settings
//! each (`setting`; see [`QueryContext`] for why not with DataFusion's
//! macro).
//!
//! The one DataFusion option lakefusion changes is set here too:
//! [`join_in_lists_capped`].

mod query_context;
mod scan_options;
mod setting;

pub use query_context::QueryContext;
pub use scan_options::ScanOptions;
#[cfg(feature = "datafusion-distributed")]
pub(crate) use setting::registered;

use datafusion::config::ConfigOptions;
use datafusion::prelude::SessionConfig;

/// `config` with both extensions registered: the ones it has kept, the
/// defaults otherwise, and `query` in place of its query context if given,
/// and with [`join_in_lists_capped`]. Every session lakefusion builds goes
/// through here (on Ballista, every scheduler and executor config too), or
/// `SET` values would be dropped.
pub(crate) fn with_settings(config: SessionConfig, query: Option<QueryContext>) -> SessionConfig {
    let query = query.unwrap_or_else(|| QueryContext::from_session_config(&config));
    let scan = ScanOptions::from_session_config(&config);
    let config = if scan.cap_join_in_lists {
        join_in_lists_capped(config)
    } else {
        config
    };
    config
        .with_option_extension(query)
        .with_option_extension(scan)
}

/// `config` with `datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values`
/// lowered to `datafusion.execution.parquet.max_in_list_size` (20), if it
/// still has DataFusion's default (150).
///
/// A hash join pushes its build side into the probe side's scan as a dynamic
/// filter: an `IN` list when the build side has at most that many distinct
/// keys per partition, a lookup in its hash table otherwise. DataFusion 55
/// puts one list entry per build-side row, not per distinct key
/// (apache/datafusion#24236), and every file the scan opens simplifies the
/// whole list several times (file, row-group and page-index pruning). On a
/// lake of thousands of files that costs more than the join (TPC-H Q17,
/// docs/benchmarks.md). Statistics pruning uses a list only up to
/// `max_in_list_size` entries, so longer lists prune nothing there that the
/// filter's min/max bounds (kept either way) do not. What a longer list can
/// still do is let bloom filters on the join key skip row groups, when the
/// join's build side is in one partition; a user whose files have
/// such bloom filters sets `lakefusion.cap_join_in_lists = false` and the
/// option back. A value other than the default is kept; the default itself
/// cannot be told from a value set to it, which is why the switch exists.
fn join_in_lists_capped(mut config: SessionConfig) -> SessionConfig {
    let default = ConfigOptions::default()
        .optimizer
        .hash_join_inlist_pushdown_max_distinct_values;
    let options = config.options_mut();
    let cap = options.execution.parquet.max_in_list_size;
    let distinct = &mut options
        .optimizer
        .hash_join_inlist_pushdown_max_distinct_values;
    if *distinct == default && cap < default {
        *distinct = cap;
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct(config: &SessionConfig) -> usize {
        config
            .options()
            .optimizer
            .hash_join_inlist_pushdown_max_distinct_values
    }

    #[test]
    fn join_in_lists_are_capped_at_what_pruning_uses_unless_set() {
        let capped = with_settings(SessionConfig::new(), None);
        assert_eq!(distinct(&capped), 20);
        assert_eq!(
            distinct(&capped),
            capped.options().execution.parquet.max_in_list_size
        );

        let mut chosen = SessionConfig::new();
        chosen
            .options_mut()
            .optimizer
            .hash_join_inlist_pushdown_max_distinct_values = 64;
        assert_eq!(distinct(&with_settings(chosen, None)), 64);

        let mut wider_pruning = SessionConfig::new();
        wider_pruning
            .options_mut()
            .execution
            .parquet
            .max_in_list_size = 500;
        assert_eq!(distinct(&with_settings(wider_pruning, None)), 150);
    }

    /// Ballista's scheduler sets up a client's config again, after the
    /// client's values: with the switch off, the default survives that.
    #[test]
    fn with_the_switch_off_a_config_set_up_again_keeps_the_default() {
        let mut config = with_settings(SessionConfig::new(), None);
        config
            .options_mut()
            .set("lakefusion.cap_join_in_lists", "false")
            .unwrap();
        config
            .options_mut()
            .set(
                "datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
                "150",
            )
            .unwrap();
        assert_eq!(distinct(&with_settings(config, None)), 150);
    }
}
