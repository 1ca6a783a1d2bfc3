//! Codec round trips: every node we own encodes to metadata and decodes to a
//! plan that prints and runs the same; bad bytes are clear errors.

use lakefusion::store::faults::FaultyStore;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{displayable, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::{DefaultLogicalExtensionCodec, LogicalExtensionCodec};
use datafusion_proto::physical_plan::{
    AsExecutionPlan, DefaultPhysicalExtensionCodec, DefaultPhysicalProtoConverter,
    PhysicalExtensionCodec,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use lakefusion::ballista::BallistaSetup;
use lakefusion::codec::{
    AllowedRoots, CompositePhysicalCodec, LakefusionLogicalCodec, LakefusionPhysicalCodec,
};
use lakefusion::{
    CacheConfig, CachedScanExec, PartitionedScanExec, PartitionedTable, SessionBuilder, SortKey,
};
use object_store::local::LocalFileSystem;
use url::Url;

use crate::common::*;

fn text(plan: &Arc<dyn ExecutionPlan>) -> String {
    displayable(plan.as_ref()).indent(true).to_string()
}

/// Encodes a whole plan with `codec` and decodes it in `ctx`.
fn round_trip(
    plan: &Arc<dyn ExecutionPlan>,
    codec: &dyn PhysicalExtensionCodec,
    ctx: &TaskContext,
) -> Arc<dyn ExecutionPlan> {
    let proto = PhysicalPlanNode::try_from_physical_plan(Arc::clone(plan), codec).unwrap();
    let bytes = prost::Message::encode_to_vec(&proto);
    let decoded: PhysicalPlanNode = prost::Message::decode(bytes.as_slice()).unwrap();
    decoded.try_into_physical_plan(ctx, codec).unwrap()
}

/// Decodes a node with `codec`, as an executor would (no inputs).
pub fn decode(
    codec: &dyn PhysicalExtensionCodec,
    bytes: &[u8],
    ctx: &SessionContext,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    codec.try_decode(
        bytes,
        &[],
        &ctx.task_ctx(),
        &DefaultPhysicalProtoConverter {},
    )
}

/// A context with the events table under `dir`, and the scan `sql` plans.
pub async fn events_scan(
    dir: &std::path::Path,
    sql: &str,
) -> (SessionContext, Arc<dyn ExecutionPlan>) {
    write_events(dir);
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir).await))
        .unwrap();
    let plan = physical_plan(&ctx, sql).await;
    let scan = find::<PartitionedScanExec>(&plan).expect("a PartitionedScanExec");
    (ctx, scan)
}

#[tokio::test]
async fn every_node_we_own_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let setup = BallistaSetup::new(CacheConfig::default().with_max_rows(1_000_000));
    let ctx = SessionBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(3))
        .with_table_cache(setup.table_cache().clone())
        .build_context();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let codec = setup.physical_codec();
    for sql in [
        // partition filters, data filters, projection
        "SELECT id, region, amount FROM events WHERE date = DATE '2026-03-02' AND amount > 50.5",
        // limit pushed into the scan
        "SELECT * FROM events WHERE region = 'us' LIMIT 9",
        // aggregate over a cached scan
        "SELECT region, count(*), sum(qty) FROM events WHERE date <= DATE '2026-03-02' GROUP BY region",
    ] {
        let plan = physical_plan(&ctx, sql).await;
        assert!(find::<PartitionedScanExec>(&plan).is_some() || find::<CachedScanExec>(&plan).is_some(), "{sql}");
        let decoded = round_trip(&plan, codec.as_ref(), &ctx.task_ctx());
        assert_eq!(text(&plan), text(&decoded), "{sql}");
        let expected = sorted_rows(plan, ctx.task_ctx()).await;
        assert!(!expected.is_empty());
        assert_eq!(sorted_rows(decoded, ctx.task_ctx()).await, expected, "{sql}");
    }
    // The cached scan decoded into the injected cache, with the same key.
    let plan = physical_plan(&ctx, "SELECT sum(qty) FROM events").await;
    let cached = find::<CachedScanExec>(&plan).expect("small enough to cache");
    let decoded = round_trip(&cached, codec.as_ref(), &ctx.task_ctx());
    let decoded = decoded.downcast_ref::<CachedScanExec>().unwrap();
    assert_eq!(
        decoded.key(),
        cached.downcast_ref::<CachedScanExec>().unwrap().key()
    );
}

/// Every field of every file survives the compact file list: paths, sizes,
/// modification times, partition values (NULL included), byte ranges and
/// per-file statistics, in the same groups and order.
#[tokio::test]
async fn the_file_list_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    // A NULL partition and a value that needs percent-encoding.
    let odd = dir
        .path()
        .join("date=__HIVE_DEFAULT_PARTITION__/region=a%2Fb");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(
        dir.path()
            .join("date=2026-03-01/region=eu/part-00000.parquet"),
        odd.join("part-0.parquet"),
    )
    .unwrap();
    // Many more partitions than files, and a tiny split size: files are
    // split into byte ranges.
    let config = SessionConfig::new()
        .with_target_partitions(64)
        .set_u64("datafusion.optimizer.repartition_file_min_size", 1);
    let ctx = SessionContext::new_with_config(config);
    let table = events_table_with(&ctx, dir.path(), true).await;
    ctx.register_table("events", Arc::new(table)).unwrap();
    let plan = physical_plan(&ctx, "SELECT id, date, region FROM events WHERE amount > 1").await;
    let scan = find::<PartitionedScanExec>(&plan).expect("a PartitionedScanExec");
    let mut bytes = Vec::new();
    let codec = LakefusionPhysicalCodec::new();
    codec
        .try_encode(
            Arc::clone(&scan),
            &mut bytes,
            &DefaultPhysicalProtoConverter {},
        )
        .unwrap();
    let decoded = decode(&codec, &bytes, &ctx).unwrap();

    let groups = |plan: &Arc<dyn ExecutionPlan>| {
        let scan = plan.downcast_ref::<PartitionedScanExec>().unwrap();
        scan.file_scan_config()
            .file_groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|f| {
                        (
                            f.object_meta.location.to_string(),
                            f.object_meta.size,
                            f.object_meta.last_modified,
                            f.partition_values.clone(),
                            f.range.clone(),
                            f.statistics.as_deref().cloned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let (before, after) = (groups(&scan), groups(&decoded));
    let files: Vec<_> = before.iter().flatten().collect();
    assert!(
        files.iter().any(|f| f.4.is_some()),
        "some file is split into ranges"
    );
    assert!(
        files.iter().all(|f| f.5.is_some()),
        "every file has statistics"
    );
    assert!(
        files.iter().any(|f| f.3[0].is_null()),
        "the NULL partition is scanned"
    );
    assert!(files
        .iter()
        .any(|f| f.3[1] == datafusion::common::ScalarValue::from("a/b")));
    assert_eq!(before, after);
    assert_eq!(text(&scan), text(&decoded));
    assert_eq!(
        sorted_rows(decoded, ctx.task_ctx()).await,
        sorted_rows(scan, ctx.task_ctx()).await
    );
}

#[tokio::test]
async fn adding_a_codec_keeps_old_bytes_decodable() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, scan) = events_scan(dir.path(), "SELECT id FROM events WHERE region = 'eu'").await;

    let old = CompositePhysicalCodec::new("default", Arc::new(DefaultPhysicalExtensionCodec {}))
        .with_codec(
            LakefusionPhysicalCodec::NAME,
            Arc::new(LakefusionPhysicalCodec::new()),
        );
    let mut bytes = Vec::new();
    old.try_encode(
        Arc::clone(&scan),
        &mut bytes,
        &DefaultPhysicalProtoConverter {},
    )
    .unwrap();

    // A newer deployment put another codec first.
    let new = CompositePhysicalCodec::new("default", Arc::new(DefaultPhysicalExtensionCodec {}))
        .with_codec("someone.else", Arc::new(DefaultPhysicalExtensionCodec {}))
        .with_codec(
            LakefusionPhysicalCodec::NAME,
            Arc::new(LakefusionPhysicalCodec::new()),
        );
    let decoded = decode(&new, &bytes, &ctx).unwrap();
    assert_eq!(text(&scan), text(&decoded));
}

#[tokio::test]
async fn bad_bytes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, scan) = events_scan(dir.path(), "SELECT id FROM events").await;
    let codec = BallistaSetup::default().physical_codec();
    let mut good = Vec::new();
    codec
        .try_encode(scan, &mut good, &DefaultPhysicalProtoConverter {})
        .unwrap();
    let decode_error = |bytes: &[u8]| {
        decode(codec.as_ref(), bytes, &ctx)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };

    // Truncated at every length: an error, never a panic and never another
    // plan.
    let expected = text(&decode(codec.as_ref(), &good, &ctx).unwrap());
    for len in 0..good.len() {
        match decode(codec.as_ref(), &good[..len], &ctx) {
            Ok(plan) => assert_eq!(text(&plan), expected, "{len}"),
            Err(e) => {
                let err = e.to_string();
                assert!(
                    err.contains("codec") || err.contains("lakefusion"),
                    "{len}: {err}"
                );
            }
        }
    }
    let err = decode_error(b"\xff\xfe garbage \x00\x01");
    assert!(err.contains("not a lakefusion codec envelope"), "{err}");

    // A well-formed envelope naming a codec nobody registered.
    let mut unknown = Vec::new();
    prost::Message::encode(
        &Envelope {
            codec: "vendor.v9".into(),
            payload: vec![1, 2, 3],
            format_version: lakefusion::codec::FORMAT_VERSION,
            checksum: crc32(&[1, 2, 3]),
        },
        &mut unknown,
    )
    .unwrap();
    let err = decode_error(&unknown);
    assert!(
        err.contains("unknown codec 'vendor.v9'") && err.contains(LakefusionPhysicalCodec::NAME),
        "{err}"
    );
}

#[tokio::test]
async fn a_plan_outside_the_allowed_roots_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, scan) = events_scan(dir.path(), "SELECT id FROM events").await;
    let mut bytes = Vec::new();
    LakefusionPhysicalCodec::new()
        .try_encode(scan, &mut bytes, &DefaultPhysicalProtoConverter {})
        .unwrap();

    let strict =
        LakefusionPhysicalCodec::new().with_allowed_roots(AllowedRoots::only(["file:///etc/"]));
    let err = decode(&strict, &bytes, &ctx).unwrap_err().to_string();
    assert!(
        err.contains("outside the roots") && err.contains("date=2026-03-01"),
        "{err}"
    );

    let allowed = LakefusionPhysicalCodec::new()
        .with_allowed_roots(AllowedRoots::only([file_url(dir.path())]));
    decode(&allowed, &bytes, &ctx).unwrap();
}

#[tokio::test]
async fn partitioned_table_round_trips_without_io() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .name("events")
        .partition_column("date", DataType::Date32)
        .partition_column("region", DataType::Utf8)
        .collect_statistics(true)
        .sort_order(["id"])
        .build(&ctx.state())
        .await
        .unwrap();
    let codec = LakefusionLogicalCodec::new(Arc::new(DefaultLogicalExtensionCodec {}));
    let table_ref = TableReference::bare("events");
    let mut bytes = Vec::new();
    codec
        .try_encode_table_provider(&table_ref, Arc::new(table), &mut bytes)
        .unwrap();

    // Decoding on the "scheduler" makes no object-store request.
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    let remote = SessionContext::new();
    remote.register_object_store(&Url::parse("file://").unwrap(), store.clone());
    let decoded = codec
        .try_decode_table_provider(&bytes, &table_ref, events_schema(), &remote.task_ctx())
        .unwrap();
    assert_eq!(store.requests(), 0);
    let decoded_table = decoded.downcast_ref::<PartitionedTable>().unwrap();
    assert_eq!(decoded_table.index().file_count(), 45);
    assert_eq!(decoded_table.partition_spec().len(), 2);
    assert_eq!(decoded_table.sort_order(), &[SortKey::asc("id")]);
    assert_eq!(decoded.statistics(), {
        let fresh = events_table_with(&ctx, dir.path(), true).await;
        fresh.statistics()
    });
    remote.register_table("events", decoded).unwrap();
    // The sort order travels, and with it the declared ordering.
    let ordered = physical_plan_text(&remote, "SELECT id FROM events ORDER BY id").await;
    assert!(
        ordered.contains("output_ordering=[id@0 ASC NULLS LAST]"),
        "{ordered}"
    );
    assert!(!ordered.contains("SortExec"), "{ordered}");
    let local = SessionContext::new();
    local
        .register_table("events", Arc::new(events_table(&local, dir.path()).await))
        .unwrap();
    let sql = "SELECT region, count(*) FROM events WHERE date > DATE '2026-03-03' GROUP BY region ORDER BY region";
    assert_eq!(
        rows(&remote, sql).await.unwrap(),
        rows(&local, sql).await.unwrap()
    );

    // Garbage is an error naming the codec.
    let err = codec
        .try_decode_table_provider(
            b"nonsense!",
            &table_ref,
            events_schema(),
            &remote.task_ctx(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("LakefusionLogicalCodec"), "{err}");
}

/// The scheduler-to-executor carrier decodes into the node the executor runs:
/// the same scan (same text, same rows), cached when the scheduler chose so and
/// the executor has a cache.
#[tokio::test]
async fn distributed_scan_decodes_into_the_executor_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, scan) = events_scan(
        dir.path(),
        "SELECT id, qty FROM events WHERE region = 'us' AND id > 100",
    )
    .await;
    let original = scan.downcast_ref::<PartitionedScanExec>().unwrap();
    let setup = BallistaSetup::default();
    let codec = setup.physical_codec();
    for cached in [false, true] {
        let carrier: Arc<dyn ExecutionPlan> =
            Arc::new(lakefusion::DistributedScanExec::new(original, cached));
        assert_eq!(
            sorted_rows(Arc::clone(&carrier), ctx.task_ctx()).await,
            sorted_rows(Arc::clone(&scan), ctx.task_ctx()).await
        );
        let decoded = round_trip(&carrier, codec.as_ref(), &ctx.task_ctx());
        let decoded_scan = if cached {
            Arc::clone(
                decoded
                    .downcast_ref::<CachedScanExec>()
                    .expect("cached on the executor")
                    .inner(),
            ) as Arc<dyn ExecutionPlan>
        } else {
            assert!(decoded.is::<PartitionedScanExec>(), "{}", text(&decoded));
            Arc::clone(&decoded)
        };
        assert_eq!(text(&decoded_scan), text(&scan));
        assert_eq!(
            sorted_rows(decoded, ctx.task_ctx()).await,
            sorted_rows(Arc::clone(&scan), ctx.task_ctx()).await
        );
    }
}
