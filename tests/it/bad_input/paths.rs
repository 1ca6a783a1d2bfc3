//! Partition paths: values that do not parse, directories that are not
//! `key=value`, traversal in values, and symbolic links leaving the root.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use lakefusion::{Error, PartitionedTable};

use super::query_error;
use crate::common::*;

/// Sessions whose `file://` listings differ: a plain `SessionContext`'s go
/// through its `LocalFileSystem`; `SessionBuilder`'s read the directories.
fn sessions() -> [SessionContext; 2] {
    [
        SessionContext::new(),
        lakefusion::SessionBuilder::new().build_context(),
    ]
}

/// The build error of a table over `root` with `partitions` declared (none:
/// inferred): the same in both [`sessions`].
async fn build_error(root: &Path, partitions: &[(&str, DataType)]) -> Error {
    let mut errors = Vec::new();
    for ctx in sessions() {
        let mut builder = PartitionedTable::builder(file_url(root));
        for (name, data_type) in partitions {
            builder = builder.partition_column(*name, data_type.clone());
        }
        errors.push(builder.build(&ctx.state()).await.unwrap_err());
    }
    let walked = errors.pop().unwrap();
    assert_eq!(errors.pop().unwrap().to_string(), walked.to_string());
    walked
}

/// The table over `root`, partitioned by `k` (Utf8), built in `ctx`.
async fn k_table(ctx: &SessionContext, root: &Path) -> PartitionedTable {
    PartitionedTable::builder(file_url(root))
        .partition_column("k", DataType::Utf8)
        .build(&ctx.state())
        .await
        .unwrap()
}

/// One events file at `root/<relative>`.
fn file_at(root: &Path, relative: &str) {
    write_parquet(&root.join(relative), &events_batch(0, 3));
}

/// Asserts that a directory `dir` fails the build
/// with a `PartitionValue` error naming the path, column, value and type.
async fn assert_bad_value(dir: &str, column: &str, data_type: DataType, value: &str) {
    let root = tempfile::tempdir().unwrap();
    file_at(root.path(), &format!("{dir}/b.parquet"));
    let err = build_error(root.path(), &[(column, data_type.clone())]).await;
    let msg = err.to_string();
    assert!(matches!(err, Error::PartitionValue { .. }), "{err:?}");
    assert!(
        msg.contains(&format!("{dir}/b.parquet"))
            && msg.contains(&format!("'{column}'"))
            && msg.contains(&format!("'{value}'"))
            && msg.contains(&data_type.to_string()),
        "{msg}"
    );
}

/// Asserts that the build fails with a `PartitionPath` error naming `file`
/// and containing `reason`.
async fn assert_bad_path(root: &Path, partitions: &[(&str, DataType)], file: &str, reason: &str) {
    let err = build_error(root, partitions).await;
    let msg = err.to_string();
    assert!(matches!(err, Error::PartitionPath { .. }), "{err:?}");
    assert!(msg.contains(file) && msg.contains(reason), "{msg}");
}

#[tokio::test]
async fn integer_partition_value_that_is_not_a_number() {
    assert_bad_value("shop=abc", "shop", DataType::Int32, "abc").await;
}

#[tokio::test]
async fn integer_partition_value_that_overflows() {
    assert_bad_value("shop=99999999999", "shop", DataType::Int32, "99999999999").await;
}

#[tokio::test]
async fn boolean_partition_value_that_is_neither() {
    assert_bad_value("flag=maybe", "flag", DataType::Boolean, "maybe").await;
}

#[tokio::test]
async fn date_partition_value_that_is_not_a_day() {
    assert_bad_value("day=2026-02-30", "day", DataType::Date32, "2026-02-30").await;
}

#[tokio::test]
async fn directory_with_an_empty_key() {
    let root = tempfile::tempdir().unwrap();
    file_at(root.path(), "k=1/a.parquet");
    file_at(root.path(), "=2/b.parquet");
    assert_bad_path(
        root.path(),
        &[("k", DataType::Utf8)],
        "=2/b.parquet",
        "not of the form key=value",
    )
    .await;
}

#[tokio::test]
async fn directories_in_the_wrong_order() {
    let root = tempfile::tempdir().unwrap();
    file_at(root.path(), "date=2026-03-01/region=eu/a.parquet");
    file_at(root.path(), "region=eu/date=2026-03-02/b.parquet");
    assert_bad_path(
        root.path(),
        &[("date", DataType::Date32), ("region", DataType::Utf8)],
        "region=eu/date=2026-03-02/b.parquet",
        "key 'region' where partition column 'date' was expected",
    )
    .await;
}

#[tokio::test]
async fn a_directory_level_too_many() {
    let root = tempfile::tempdir().unwrap();
    file_at(root.path(), "k=1/a.parquet");
    file_at(root.path(), "k=2/extra/b.parquet");
    assert_bad_path(
        root.path(),
        &[("k", DataType::Utf8)],
        "k=2/extra/b.parquet",
        "expected 1 partition directories",
    )
    .await;
}

#[tokio::test]
async fn a_file_above_the_partition_directories() {
    let root = tempfile::tempdir().unwrap();
    file_at(root.path(), "k=1/a.parquet");
    file_at(root.path(), "loose.parquet");
    assert_bad_path(
        root.path(),
        &[("k", DataType::Utf8)],
        "loose.parquet",
        "found 0",
    )
    .await;
}

#[tokio::test]
async fn inferred_partitions_with_different_keys() {
    let root = tempfile::tempdir().unwrap();
    file_at(root.path(), "k=1/a.parquet");
    file_at(root.path(), "j=2/b.parquet");
    // Inferred from the first file listed (`j=2/…`); `k=1/…` then disagrees.
    assert_bad_path(
        root.path(),
        &[],
        "k=1/a.parquet",
        "has key 'k' where partition column 'j' was expected",
    )
    .await;
}

#[tokio::test]
async fn traversal_and_slashes_in_read_values_are_data() {
    // Hive and Spark write a value `a/b` as the directory `k=a%2Fb`: reading
    // it must work. The value is data only — files are found by listing,
    // never by building a path from a value — so `..` or an absolute path in
    // a value cannot lead outside the root.
    let root = tempfile::tempdir().unwrap();
    for (i, dir) in ["k=a%2Fb", "k=%2E%2E", "k=%2Fetc%2Fpasswd", "k=plain"]
        .iter()
        .enumerate()
    {
        write_parquet(
            &root.path().join(format!("{dir}/f.parquet")),
            &events_batch(i as i64 * 10, 2),
        );
    }
    let ctx = SessionContext::new();
    let table = k_table(&ctx, root.path()).await;
    ctx.register_table("t", Arc::new(table)).unwrap();
    assert_eq!(
        rows(&ctx, "SELECT k, min(id) FROM t GROUP BY k ORDER BY k")
            .await
            .unwrap(),
        vec![
            "| ..          | 10        |",
            "| /etc/passwd | 20        |",
            "| a/b         | 0         |",
            "| plain       | 30        |",
        ]
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM t WHERE k = '..'").await,
        2
    );
}

#[tokio::test]
async fn an_absolute_path_as_a_written_value_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(root.path()))
        .partition_column("k", DataType::Utf8)
        .schema(events_schema())
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let target = outside.path().display().to_string();
    let err = query_error(
        &ctx,
        &format!("INSERT INTO t VALUES (1, 'u', 1.0, 1, '{target}')"),
    )
    .await;
    assert!(
        err.contains("partition column 'k'") && err.contains(&target) && err.contains("'/'"),
        "{err}"
    );
    assert!(all_files(root.path()).is_empty());
    assert!(all_files(outside.path()).is_empty());
}

/// A table root with one good partition and, in `link` under it, a symbolic
/// link to `target`.
fn root_with_link(target: &Path, link: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    file_at(root.path(), "k=1/a.parquet");
    let link = root.path().join(link);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, &link).unwrap();
    root
}

#[tokio::test]
async fn a_file_linked_from_outside_the_root_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    file_at(outside.path(), "secret.parquet");
    let root = root_with_link(&outside.path().join("secret.parquet"), "k=2/b.parquet");
    assert_bad_path(
        root.path(),
        &[("k", DataType::Utf8)],
        "k=2/b.parquet",
        "outside the table root",
    )
    .await;
}

#[tokio::test]
async fn a_directory_linked_from_outside_the_root_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    file_at(outside.path(), "secret.parquet");
    let root = root_with_link(outside.path(), "k=2");
    let err = build_error(root.path(), &[("k", DataType::Utf8)]).await;
    assert!(
        matches!(
            &err,
            lakefusion::Error::PartitionPath {
                problem: lakefusion::PathProblem::LinkOutsideRoot { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("k=2/secret.parquet")
            && msg.contains("outside the table root")
            && msg.contains(&outside.path().display().to_string()),
        "{msg}"
    );
}

/// Hive writes `:` in a value as `%3A`: the directory's name on disk holds
/// the `%`, and so does the listing's key (object_store decodes a file
/// URL's escapes once). A link under such a name is still checked.
#[tokio::test]
async fn links_whose_names_hold_hive_escapes_are_checked() {
    let outside = tempfile::tempdir().unwrap();
    file_at(outside.path(), "secret.parquet");
    let columns = [("k", DataType::Utf8)];
    // A linked directory, and a linked file in a plain directory.
    let root = root_with_link(outside.path(), "k=10%3A00");
    assert_bad_path(
        root.path(),
        &columns,
        "k=10%3A00/secret.parquet",
        "outside the table root",
    )
    .await;
    let root = root_with_link(&outside.path().join("secret.parquet"), "k=11/b%3Ac.parquet");
    assert_bad_path(
        root.path(),
        &columns,
        "k=11/b%3Ac.parquet",
        "outside the table root",
    )
    .await;
}

#[tokio::test]
async fn a_link_that_stays_inside_the_root_is_read() {
    let root = tempfile::tempdir().unwrap();
    file_at(root.path(), "k=1/a.parquet");
    std::os::unix::fs::symlink(root.path().join("k=1"), root.path().join("k=2")).unwrap();
    for ctx in sessions() {
        let table = k_table(&ctx, root.path()).await;
        ctx.register_table("t", Arc::new(table)).unwrap();
        assert_eq!(count(&ctx, "SELECT count(*) FROM t WHERE k = '2'").await, 3);
    }
}

/// A partition directory linked out of the root after `build()`: a refresh
/// that lists only that partition starts below the root, and must still
/// see the link on its way there — on every session a user makes.
#[tokio::test]
async fn a_refresh_of_a_partition_linked_from_outside_the_root_is_refused() {
    use datafusion::prelude::{col, lit};
    let outside = tempfile::tempdir().unwrap();
    file_at(outside.path(), "secret.parquet");
    for ctx in sessions() {
        let root = tempfile::tempdir().unwrap();
        file_at(root.path(), "k=1/a.parquet");
        let table = k_table(&ctx, root.path()).await;
        std::os::unix::fs::symlink(outside.path(), root.path().join("k=2")).unwrap();
        for predicate in [col("k").eq(lit("2")), col("k").gt_eq(lit("2"))] {
            let err = table
                .refresh_partitions(&ctx.state(), predicate.clone())
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &err,
                    Error::PartitionPath {
                        problem: lakefusion::PathProblem::LinkOutsideRoot { .. },
                        ..
                    }
                ),
                "{predicate}: {err:?}"
            );
            assert!(err.to_string().contains("k=2/secret.parquet"), "{err}");
        }
        ctx.register_table("t", Arc::new(table)).unwrap();
        assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 3);
    }
}
