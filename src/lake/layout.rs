//! Declared data layout: bucketing and sort order, and how our writer records it in each
//! file's Parquet key-value metadata so that a later `build()` can trust it; and
//! the row counts footers record ([`rows_in`]).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::kernels::boolean::is_not_null;
use datafusion::arrow::compute::{cast, concat, filter};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::Partitioning;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::ParquetMetaData;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// Key-value metadata key: the bucketing spec a file was written with.
pub(crate) const BUCKETING_KEY: &str = "lakefusion.bucketing";
/// Key-value metadata key: the bucket a file holds.
pub(crate) const BUCKET_KEY: &str = "lakefusion.bucket";

/// The name of the hash our writer assigns buckets with: DataFusion's
/// `RepartitionExec` hash (`create_hashes` with `REPARTITION_RANDOM_STATE`,
/// seed 0) modulo the bucket count — rows are assigned by DataFusion's own
/// `BatchPartitioner`, so a scan may declare `Partitioning::Hash` and
/// DataFusion's repartitioned side of a join agrees with it row for row.
pub(crate) const BUCKET_HASH: &str = "datafusion-repartition-hash-seed0";

/// A table hash-bucketed on one column.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bucketing {
    /// The column rows are bucketed by.
    pub column: String,
    /// The number of buckets.
    pub buckets: usize,
}

impl Bucketing {
    /// The value our writer records under `lakefusion.bucketing`: column, count,
    /// hash, the exact Arrow type it hashed and the DataFusion version that
    /// hashed it. DataFusion's hash differs between `Utf8`, `LargeUtf8` and
    /// `Utf8View`, between `Int32` and `Int64`, and between dictionaries and
    /// plain columns: a declared `Hash` is true only for the type hashed.
    pub fn metadata_value(&self, hashed: &DataType) -> String {
        format!(
            "{}/{}/{BUCKET_HASH}/{hashed}/datafusion-{}",
            self.column,
            self.buckets,
            datafusion::DATAFUSION_VERSION
        )
    }

    /// Whether a file whose metadata records `recorded` may back this
    /// table's `Hash` declaration when its scans produce `scanned` (the
    /// table's type of the column); otherwise why not.
    pub(crate) fn accepts(&self, recorded: &str, scanned: &DataType) -> Result<(), String> {
        let same_bucketing = format!("{}/{}/{BUCKET_HASH}/", self.column, self.buckets);
        let Some(rest) = recorded.strip_prefix(&same_bucketing) else {
            return Err(format!(
                "written with another bucketing ('{recorded}', this table: '{same_bucketing}…')"
            ));
        };
        match rest.rsplit_once("/datafusion-") {
            Some((hashed, _)) if hashed == scanned.to_string() => Ok(()),
            Some((hashed, _)) => Err(format!(
                "hashed as {hashed}, but the scan produces {scanned}, which hashes differently"
            )),
            None => Err(format!(
                "its bucket metadata ('{recorded}') does not record the Arrow type it hashed"
            )),
        }
    }

    /// Proves, with today's hash, that the file's rows are in `bucket`: the
    /// footer's min and max of the bucket column in every row group, read as
    /// `scanned`, must hash to it. A hash that changed since the file was
    /// written (another DataFusion) fails this for almost every file.
    pub(crate) fn prove(
        &self,
        footer: &ParquetMetaData,
        scanned: &DataType,
        bucket: u32,
    ) -> Result<(), String> {
        let file_schema = parquet_to_arrow_schema(
            footer.file_metadata().schema_descr(),
            footer.file_metadata().key_value_metadata(),
        )
        .map_err(|e| format!("its schema: {e}"))?;
        let converter = StatisticsConverter::try_new(
            &self.column,
            &file_schema,
            footer.file_metadata().schema_descr(),
        )
        .map_err(|e| format!("its statistics of '{}': {e}", self.column))?;
        let bounds = [
            converter.row_group_mins(footer.row_groups()),
            converter.row_group_maxes(footer.row_groups()),
        ]
        .into_iter()
        .map(|a| {
            let a = a.map_err(|e| format!("its min/max of '{}': {e}", self.column))?;
            cast(&a, scanned).map_err(|e| format!("its min/max of '{}': {e}", self.column))
        })
        .collect::<Result<Vec<ArrayRef>, String>>()?;
        let values = concat(&[bounds[0].as_ref(), bounds[1].as_ref()])
            .and_then(|a| filter(&a, &is_not_null(&a)?))
            .map_err(|e| format!("its min/max of '{}': {e}", self.column))?;
        if values.is_empty() {
            return Err(format!(
                "it has no min/max of '{}' to prove its bucket with",
                self.column
            ));
        }
        let schema = Arc::new(Schema::new(vec![Field::new(
            &self.column,
            scanned.clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![values]).map_err(|e| e.to_string())?;
        let mut partitioner = BatchPartitioner::try_new(
            Partitioning::Hash(vec![Arc::new(Column::new(&self.column, 0))], self.buckets),
            Time::new(),
            0,
            1,
        )
        .map_err(|e| e.to_string())?;
        for part in partitioner
            .partition_iter(batch)
            .map_err(|e| e.to_string())?
        {
            let (hashed_to, rows) = part.map_err(|e| e.to_string())?;
            if rows.num_rows() > 0 && hashed_to != bucket as usize {
                return Err(format!(
                    "its min/max of '{}' hash to bucket {hashed_to} with this DataFusion's hash, not to its bucket {bucket}",
                    self.column
                ));
            }
        }
        Ok(())
    }
}

/// Key-value metadata key: the sort order of a file's rows, as
/// [`SortKey::encode_all`] writes it. Our writer always records it; an empty
/// value means the rows are in no particular order.
pub(crate) const SORT_ORDER_KEY: &str = "lakefusion.sort_order";

/// One key of a table's sort order: a column inside the files, its
/// direction, and where its NULLs go.
///
/// `SortKey::from("ts")` is `ts ASC NULLS LAST`, and [`SortKey::desc`] is
/// `DESC NULLS FIRST`: what `ORDER BY ts` and `ORDER BY ts DESC` mean in
/// DataFusion's SQL by default, so that such queries match the declaration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SortKey {
    /// The column (inside the files; partition columns cannot be sort keys).
    pub column: String,
    /// Descending instead of ascending.
    pub descending: bool,
    /// NULLs before the other values instead of after them.
    pub nulls_first: bool,
}

impl SortKey {
    /// `column ASC NULLS LAST`.
    pub fn asc(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            descending: false,
            nulls_first: false,
        }
    }

    /// `column DESC NULLS FIRST`.
    pub fn desc(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            descending: true,
            nulls_first: true,
        }
    }

    /// The same key with NULLs first (`true`) or last.
    pub fn nulls_first(mut self, nulls_first: bool) -> Self {
        self.nulls_first = nulls_first;
        self
    }

    /// The value recorded under `lakefusion.sort_order` for `keys`: one
    /// `column ASC|DESC NULLS FIRST|LAST` per key, comma-separated, with
    /// the column name percent-encoded so any name survives.
    pub fn encode_all(keys: &[Self]) -> String {
        let keys: Vec<String> = keys
            .iter()
            .map(|k| {
                format!(
                    "{} {} NULLS {}",
                    utf8_percent_encode(&k.column, NAME),
                    if k.descending { "DESC" } else { "ASC" },
                    if k.nulls_first { "FIRST" } else { "LAST" }
                )
            })
            .collect();
        keys.join(",")
    }

    /// Parses what [`encode_all`](Self::encode_all) wrote; `None` for
    /// anything else (a file whose order cannot be read is not trusted).
    pub fn decode_all(value: &str) -> Option<Vec<Self>> {
        if value.is_empty() {
            return Some(Vec::new());
        }
        value
            .split(',')
            .map(|key| {
                let parts: Vec<&str> = key.split(' ').collect();
                let [column, direction, "NULLS", nulls] = parts.as_slice() else {
                    return None;
                };
                let descending = match *direction {
                    "ASC" => false,
                    "DESC" => true,
                    _ => return None,
                };
                let nulls_first = match *nulls {
                    "FIRST" => true,
                    "LAST" => false,
                    _ => return None,
                };
                let column = percent_decode_str(column).decode_utf8().ok()?.into_owned();
                Some(Self {
                    column,
                    descending,
                    nulls_first,
                })
            })
            .collect()
    }
}

impl From<&str> for SortKey {
    fn from(column: &str) -> Self {
        Self::asc(column)
    }
}

impl From<String> for SortKey {
    fn from(column: String) -> Self {
        Self::asc(column)
    }
}

/// What a column name must escape inside [`SORT_ORDER_KEY`]'s value.
const NAME: &AsciiSet = &CONTROLS.add(b' ').add(b',').add(b'%');

/// A table's sort order and how far files without a recorded order are
/// trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableSort {
    pub keys: Vec<SortKey>,
    /// The user declared the order (`sort_order`): files that record no
    /// order (written by another tool) are taken to follow it, as
    /// `ListingOptions::file_sort_order` takes them. An order adopted from
    /// our writer's metadata trusts only files that record it.
    pub declared: bool,
}

impl TableSort {
    /// Whether a file that recorded `recorded` under [`SORT_ORDER_KEY`]
    /// (`None`: no such key) holds its rows in this order. A file sorted by
    /// more keys than the table's is sorted by the table's.
    pub(crate) fn trusts(&self, recorded: Option<&str>) -> bool {
        match recorded {
            None => self.declared,
            Some(value) => SortKey::decode_all(value)
                .is_some_and(|keys| !self.keys.is_empty() && keys.starts_with(&self.keys)),
        }
    }
}

/// The rows of each of `files`, in order, from their footers (16 read at
/// once; through `cache`, the runtime's footer cache, when a scan will read
/// them next).
pub(crate) async fn rows_in(
    store: &Arc<dyn object_store::ObjectStore>,
    files: &[object_store::ObjectMeta],
    cache: Option<Arc<datafusion::execution::cache::cache_manager::FileMetadataCache>>,
) -> crate::error::Result<Vec<u64>> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(files.iter().cloned().map(|meta| {
        let cache = cache.clone();
        async move {
            datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata::new(
                store.as_ref(),
                &meta,
            )
            .with_file_metadata_cache(cache)
            .fetch_metadata()
            .await
            .map(|footer| footer.file_metadata().num_rows().max(0) as u64)
            .map_err(|e| crate::error::Error::ReadFile {
                path: meta.location.to_string(),
                source: Box::new(e),
            })
        }
    }))
    .buffered(16)
    .try_collect()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_orders_round_trip_through_their_metadata_value() {
        let keys = vec![
            SortKey::asc("ts"),
            SortKey::desc("a, b %c").nulls_first(false),
        ];
        let value = SortKey::encode_all(&keys);
        assert_eq!(value, "ts ASC NULLS LAST,a%2C%20b%20%25c DESC NULLS LAST");
        assert_eq!(SortKey::decode_all(&value), Some(keys));
        assert_eq!(SortKey::decode_all(""), Some(vec![]));
        assert_eq!(SortKey::decode_all("ts UP NULLS LAST"), None);
        assert_eq!(SortKey::decode_all("ts ASC"), None);
    }

    #[test]
    fn a_table_order_trusts_only_files_that_follow_it() {
        let adopted = TableSort {
            keys: vec![SortKey::asc("ts")],
            declared: false,
        };
        assert!(adopted.trusts(Some("ts ASC NULLS LAST")));
        assert!(adopted.trusts(Some("ts ASC NULLS LAST,id ASC NULLS LAST")));
        assert!(!adopted.trusts(Some("ts DESC NULLS FIRST")));
        assert!(!adopted.trusts(Some("id ASC NULLS LAST,ts ASC NULLS LAST")));
        assert!(!adopted.trusts(Some("")));
        assert!(!adopted.trusts(Some("garbage")));
        assert!(!adopted.trusts(None));
        let declared = TableSort {
            declared: true,
            ..adopted
        };
        assert!(declared.trusts(None));
        assert!(!declared.trusts(Some("")));
    }
}
