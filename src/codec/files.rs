//! The file list of a scan in a compact wire form.
//!
//! datafusion-proto writes every file as a message of its own, with its full
//! path and each partition value as a typed scalar message; for a 5,000-file
//! scan that is 10,000 scalar messages to build and parse for what is, in a
//! Hive table, a few hundred distinct partitions. Here the columns of the
//! file list are stored as columns: paths relative to their common prefix,
//! sizes and modification times as packed integers, and each distinct tuple
//! of partition values once, referenced by index. What few files carry more
//! (a byte range, statistics, a schema of their own) carry it sparsely, so
//! nothing datafusion-proto would keep is lost.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion_datasource::file_groups::FileGroup;
use datafusion_datasource::PartitionedFile;
use datafusion_proto::protobuf::FileRange;
use datafusion_proto_common as proto;
use object_store::path::Path;
use object_store::ObjectMeta;

/// File groups as columns.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct FileGroupsNode {
    /// The prefix every path shares, stored once.
    #[prost(string, tag = "1")]
    pub prefix: String,
    /// Each file's path after `prefix`, in group order.
    #[prost(string, repeated, tag = "2")]
    pub paths: Vec<String>,
    #[prost(uint64, repeated, tag = "3")]
    pub sizes: Vec<u64>,
    #[prost(int64, repeated, tag = "4")]
    pub last_modified_ns: Vec<i64>,
    /// How many consecutive files each group holds.
    #[prost(uint32, repeated, tag = "5")]
    pub group_lengths: Vec<u32>,
    /// The number of partition columns (the width of a tuple).
    #[prost(uint32, tag = "6")]
    pub partition_columns: u32,
    /// Distinct partition-value tuples, flattened row by row.
    #[prost(message, repeated, tag = "7")]
    pub partition_values: Vec<proto::ScalarValue>,
    /// For each file, the index of its tuple in `partition_values`.
    #[prost(uint32, repeated, tag = "8")]
    pub partition_of_file: Vec<u32>,
    /// What only some files carry.
    #[prost(message, repeated, tag = "9")]
    pub file_extras: Vec<FileExtras>,
    /// Statistics of the groups that have them.
    #[prost(message, repeated, tag = "10")]
    pub group_statistics: Vec<GroupStatistics>,
    /// Each file's ETag ("" for none), or empty when no file has one. The
    /// executor's cache keys name them, as the planner's do.
    #[prost(string, repeated, tag = "11")]
    pub e_tags: Vec<String>,
    /// Each file's object version ("" for none), or empty when no file has one.
    #[prost(string, repeated, tag = "12")]
    pub versions: Vec<String>,
}

/// The optional parts of one file.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct FileExtras {
    #[prost(uint32, tag = "1")]
    pub file: u32,
    #[prost(message, optional, tag = "2")]
    pub range: Option<FileRange>,
    #[prost(message, optional, tag = "3")]
    pub statistics: Option<proto::Statistics>,
    #[prost(message, optional, tag = "4")]
    pub arrow_schema: Option<proto::Schema>,
}

/// The statistics of one group.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupStatistics {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(message, optional, tag = "2")]
    pub statistics: Option<proto::Statistics>,
}

impl FileGroupsNode {
    /// Encodes `groups`.
    pub(crate) fn encode(table: &str, groups: &[FileGroup]) -> Result<Self> {
        let files = || groups.iter().flat_map(|g| g.iter());
        let count = files().count();
        let prefix = common_prefix(files().map(|f| f.object_meta.location.as_ref()));
        let mut node = Self {
            paths: Vec::with_capacity(count),
            sizes: Vec::with_capacity(count),
            last_modified_ns: Vec::with_capacity(count),
            group_lengths: Vec::with_capacity(groups.len()),
            partition_of_file: Vec::with_capacity(count),
            partition_columns: files().next().map_or(0, |f| f.partition_values.len()) as u32,
            ..Default::default()
        };
        let mut tuples: HashMap<&[ScalarValue], u32> = HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            node.group_lengths.push(group.len() as u32);
            if let Some(stats) = group.file_statistics(None) {
                node.group_statistics.push(GroupStatistics {
                    group: g as u32,
                    statistics: Some(stats.into()),
                });
            }
        }
        // Dense columns, present only when some file has a value.
        if files().any(|f| f.object_meta.e_tag.is_some()) {
            node.e_tags = files()
                .map(|f| f.object_meta.e_tag.clone().unwrap_or_default())
                .collect();
        }
        if files().any(|f| f.object_meta.version.is_some()) {
            node.versions = files()
                .map(|f| f.object_meta.version.clone().unwrap_or_default())
                .collect();
        }
        for (i, file) in files().enumerate() {
            let meta = &file.object_meta;
            let path = meta.location.as_ref();
            node.paths.push(path[prefix.len()..].to_string());
            node.sizes.push(meta.size);
            node.last_modified_ns
                .push(meta.last_modified.timestamp_nanos_opt().ok_or_else(|| {
                    malformed(
                        table,
                        &format!("'{path}' has an unrepresentable modification time"),
                    )
                })?);
            if file.partition_values.len() != node.partition_columns as usize {
                return Err(malformed(
                    table,
                    &format!(
                        "'{path}' has {} partition values, other files {}",
                        file.partition_values.len(),
                        node.partition_columns
                    ),
                ));
            }
            let next = tuples.len() as u32;
            let tuple = *tuples
                .entry(file.partition_values.as_slice())
                .or_insert(next);
            if tuple == next {
                for value in &file.partition_values {
                    node.partition_values.push(value.try_into()?);
                }
            }
            node.partition_of_file.push(tuple);
            if file.range.is_some() || file.statistics.is_some() || file.arrow_schema.is_some() {
                node.file_extras.push(FileExtras {
                    file: i as u32,
                    range: file.range.as_ref().map(TryInto::try_into).transpose()?,
                    statistics: file.statistics.as_deref().map(Into::into),
                    arrow_schema: file
                        .arrow_schema
                        .as_deref()
                        .map(TryInto::try_into)
                        .transpose()?,
                });
            }
        }
        node.prefix = prefix.to_string();
        Ok(node)
    }

    /// Decodes the groups, checking every count and index against the others:
    /// the bytes come from the network.
    pub(crate) fn decode(self, table: &str) -> Result<Vec<FileGroup>> {
        let count = self.paths.len();
        if self.sizes.len() != count
            || self.last_modified_ns.len() != count
            || self.partition_of_file.len() != count
        {
            return Err(malformed(table, "its file columns differ in length"));
        }
        let optional_column = |column: &[String], what: &str| {
            if column.is_empty() || column.len() == count {
                Ok(())
            } else {
                Err(malformed(
                    table,
                    &format!("it lists {} {what} for {count} files", column.len()),
                ))
            }
        };
        optional_column(&self.e_tags, "ETags")?;
        optional_column(&self.versions, "versions")?;
        let optional =
            |column: &[String], i: usize| column.get(i).filter(|v| !v.is_empty()).cloned();
        let width = self.partition_columns as usize;
        let tuples = if width == 0 {
            0
        } else {
            if !self.partition_values.len().is_multiple_of(width) {
                return Err(malformed(
                    table,
                    "its partition values are not whole tuples",
                ));
            }
            self.partition_values.len() / width
        };
        let values = self
            .partition_values
            .iter()
            .map(ScalarValue::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| malformed(table, &format!("a partition value: {e}")))?;
        let mut files = Vec::with_capacity(count);
        for (i, relative) in self.paths.into_iter().enumerate() {
            let tuple = self.partition_of_file[i] as usize;
            if width > 0 && tuple >= tuples {
                return Err(malformed(
                    table,
                    &format!("file {i} names partition {tuple} of {tuples}"),
                ));
            }
            let mut path = String::with_capacity(self.prefix.len() + relative.len());
            path.push_str(&self.prefix);
            path.push_str(&relative);
            let location = Path::parse(&path)
                .map_err(|e| malformed(table, &format!("'{path}' is not a valid path: {e}")))?;
            files.push(
                PartitionedFile::new_from_meta(ObjectMeta {
                    location,
                    last_modified: Utc.timestamp_nanos(self.last_modified_ns[i]),
                    size: self.sizes[i],
                    e_tag: optional(&self.e_tags, i),
                    version: optional(&self.versions, i),
                })
                .with_partition_values(values[tuple * width..(tuple + 1) * width].to_vec()),
            );
        }
        for extras in self.file_extras {
            let file = files.get_mut(extras.file as usize).ok_or_else(|| {
                malformed(
                    table,
                    &format!("extras for file {} of {count}", extras.file),
                )
            })?;
            if let Some(range) = &extras.range {
                file.range = Some(range.try_into()?);
            }
            if let Some(stats) = &extras.statistics {
                // Statistics cover file and partition columns already, as
                // datafusion-proto assigns them.
                file.statistics = Some(Arc::new(stats.try_into()?));
            }
            if let Some(schema) = &extras.arrow_schema {
                file.arrow_schema = Some(Arc::new(schema.try_into()?));
            }
        }
        let mut groups = Vec::with_capacity(self.group_lengths.len());
        let mut rest = files.into_iter();
        for &len in &self.group_lengths {
            let group: Vec<_> = rest.by_ref().take(len as usize).collect();
            if group.len() != len as usize {
                return Err(malformed(table, "its groups hold more files than it lists"));
            }
            groups.push(FileGroup::new(group));
        }
        if rest.next().is_some() {
            return Err(malformed(table, "it lists files in no group"));
        }
        for stats in self.group_statistics {
            let group = groups.get_mut(stats.group as usize).ok_or_else(|| {
                malformed(table, &format!("statistics for group {}", stats.group))
            })?;
            if let Some(s) = &stats.statistics {
                *group = std::mem::take(group).with_statistics(Arc::new(s.try_into()?));
            }
        }
        Ok(groups)
    }
}

/// The longest prefix of all `paths` that ends at a `/` (so that it is a
/// directory, and every remainder is a valid path on its own).
fn common_prefix<'a>(mut paths: impl Iterator<Item = &'a str>) -> &'a str {
    let Some(first) = paths.next() else {
        return "";
    };
    let mut len = first.rfind('/').map_or(0, |i| i + 1);
    for path in paths {
        if len == 0 {
            break;
        }
        let shared = first.as_bytes()[..len]
            .iter()
            .zip(path.as_bytes())
            .take_while(|(a, b)| a == b)
            .count();
        // Bytes, not chars: the shared part may end inside a character.
        len = first.as_bytes()[..shared]
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(0, |i| i + 1);
    }
    &first[..len]
}

fn malformed(table: &str, why: &str) -> DataFusionError {
    crate::error::Error::MalformedPlan {
        codec: super::LakefusionPhysicalCodec::NAME,
        table: table.to_string(),
        what: "the files",
        detail: why.to_string(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn common_prefix_ends_at_a_directory() {
        let paths = ["t/d=1/a.parquet", "t/d=1/b.parquet", "t/d=2/a.parquet"];
        assert_eq!(common_prefix(paths.into_iter()), "t/");
        assert_eq!(common_prefix(["t/d=1/a", "t/d=1/b"].into_iter()), "t/d=1/");
        assert_eq!(common_prefix(["t/ab", "t/ac"].into_iter()), "t/");
        assert_eq!(common_prefix(["a", "b"].into_iter()), "");
        assert_eq!(common_prefix(std::iter::empty()), "");
    }
}
