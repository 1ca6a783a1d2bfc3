//! Declared data layout: bucketing, and how our writer records it in each
//! file's Parquet key-value metadata so that a later `build()` can trust it.

/// Key-value metadata key: the bucketing spec a file was written with.
pub const BUCKETING_KEY: &str = "lakefusion.bucketing";
/// Key-value metadata key: the bucket a file holds.
pub const BUCKET_KEY: &str = "lakefusion.bucket";

/// The name of the hash our writer assigns buckets with: DataFusion's
/// `RepartitionExec` hash (`create_hashes` with `REPARTITION_RANDOM_STATE`,
/// seed 0) modulo the bucket count — rows are assigned by DataFusion's own
/// `BatchPartitioner`, so a scan may declare `Partitioning::Hash` and
/// DataFusion's repartitioned side of a join agrees with it row for row.
pub const BUCKET_HASH: &str = "datafusion-repartition-hash-seed0";

/// A table hash-bucketed on one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucketing {
    /// The column rows are bucketed by.
    pub column: String,
    /// The number of buckets.
    pub buckets: usize,
}

impl Bucketing {
    /// The value recorded under [`BUCKETING_KEY`]: column, count and hash, so
    /// that files bucketed another way (another count, another tool's hash)
    /// never match.
    pub fn metadata_value(&self) -> String {
        format!("{}/{}/{BUCKET_HASH}", self.column, self.buckets)
    }
}
