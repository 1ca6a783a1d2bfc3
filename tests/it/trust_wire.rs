//! Defects of what travels between processes (issue 12): each test failed on
//! the code before its fix.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::{DefaultLogicalExtensionCodec, LogicalExtensionCodec};
use datafusion_proto::physical_plan::{
    DefaultPhysicalExtensionCodec, DefaultPhysicalProtoConverter, PhysicalExtensionCodec,
    PhysicalProtoConverterExtension,
};
use lakefusion::ballista::BallistaSetup;
use lakefusion::codec::{CompositePhysicalCodec, LakefusionLogicalCodec};
use lakefusion::{
    CacheConfig, CachedScanExec, PartitionedScanExec, PartitionedTable, QueryContext,
    SessionBuilder,
};

use crate::cluster::start_cluster;
use crate::codec::decode;
use crate::common::*;

/// Defect 5: paths holding `%` (our writer percent-encodes what object
/// stores reserve: `a%b` is `a%25b`, `x[1]` is `x%5B1%5D`) reach the
/// scheduler unchanged, and the decoded table reads them.
#[tokio::test]
async fn percent_encoded_paths_survive_the_logical_codec() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .name("t")
        .schema(Arc::new(Schema::new(vec![Field::new(
            "id",
            DataType::Int64,
            false,
        )])))
        .partition_column("region", DataType::Utf8)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    exec(
        &ctx,
        "INSERT INTO t VALUES (1, 'a%b'), (2, 'x[1]'), (3, '10:00')",
    )
    .await;
    let written = all_files(dir.path());
    assert!(
        written.iter().any(|f| f.starts_with("region=a%25b/"))
            && written.iter().any(|f| f.starts_with("region=x%5B1%5D/")),
        "{written:?}"
    );
    let fresh = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .name("t")
        .partition_column("region", DataType::Utf8)
        .build(&fresh.state())
        .await
        .unwrap();
    let locations = |t: &PartitionedTable| -> Vec<String> {
        t.index()
            .all_files()
            .map(|f| f.location().unwrap().to_string())
            .collect()
    };
    let before = locations(&table);

    let codec = LakefusionLogicalCodec::new(Arc::new(DefaultLogicalExtensionCodec {}));
    let table_ref = TableReference::bare("t");
    let schema = table.schema();
    let mut bytes = Vec::new();
    codec
        .try_encode_table_provider(&table_ref, Arc::new(table), &mut bytes)
        .unwrap();
    let scheduler = SessionContext::new();
    let decoded = codec
        .try_decode_table_provider(&bytes, &table_ref, schema, &scheduler.task_ctx())
        .unwrap();
    assert_eq!(
        locations(decoded.downcast_ref::<PartitionedTable>().unwrap()),
        before
    );
    scheduler.register_table("t", decoded).unwrap();
    assert_eq!(
        rows(&scheduler, "SELECT id, region FROM t ORDER BY id")
            .await
            .unwrap(),
        vec!["| 1  | a%b    |", "| 2  | x[1]   |", "| 3  | 10:00  |"]
    );
}

/// Defect 6: an executor recomputes a cached scan's key from the scan it
/// decoded, so a plan naming another entry's key is not served that entry's
/// rows; and the key it computes includes each file's ETag, as the
/// planner's does.
#[tokio::test]
async fn a_decoded_cached_scan_does_not_trust_the_key_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let setup = BallistaSetup::new(CacheConfig::default().with_max_rows(1_000_000));
    let ctx = SessionBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(2))
        .with_table_cache(setup.table_cache().clone())
        .build_context();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let cached = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let plan = physical_plan(&ctx, sql).await;
            find::<CachedScanExec>(&plan).expect("small enough to cache")
        }
    };
    // The other tenant's entry: filled in the executor's cache.
    let us = cached("SELECT id FROM events WHERE region = 'us'").await;
    let us_rows = sorted_rows(Arc::clone(&us), ctx.task_ctx()).await;
    let us_key = us.downcast_ref::<CachedScanExec>().unwrap().key().clone();
    assert!(setup.table_cache().contains(&us_key));

    let eu = cached("SELECT id FROM events WHERE region = 'eu'").await;
    let eu = eu.downcast_ref::<CachedScanExec>().unwrap();
    let eu_rows = sorted_rows(Arc::clone(eu.inner()) as _, ctx.task_ctx()).await;
    assert_ne!(eu_rows, us_rows);
    let forged: Arc<dyn ExecutionPlan> = Arc::new(CachedScanExec::with_key(
        Arc::clone(eu.inner()),
        setup.table_cache().clone(),
        us_key.clone(),
    ));
    let codec = setup.physical_codec();
    let mut bytes = Vec::new();
    codec
        .try_encode(forged, &mut bytes, &DefaultPhysicalProtoConverter {})
        .unwrap();
    let decoded = decode(codec.as_ref(), &bytes, &ctx).unwrap();
    let decoded_key = decoded
        .downcast_ref::<CachedScanExec>()
        .unwrap()
        .key()
        .clone();
    assert_eq!(decoded_key, *eu.key(), "the key of the scan it carries");
    assert_eq!(sorted_rows(decoded, ctx.task_ctx()).await, eu_rows);

    // The executor's key names every file's ETag, as the planner's does.
    let etag = eu.inner().file_scan_config().file_groups[0].files()[0]
        .object_meta
        .e_tag
        .clone()
        .expect("the local store gives ETags");
    assert!(decoded_key.description().contains(&etag), "{decoded_key}");
}

/// A codec that recognises every node and fails to encode it.
#[derive(Debug)]
struct Failing;

impl PhysicalExtensionCodec for Failing {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::NotImplemented("decoding".into()))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        _buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        Err(DataFusionError::Execution(format!(
            "the statistics of {} overflow the wire format",
            node.name()
        )))
    }
}

/// Defect 8: a named codec's own error is what the composite reports, not
/// "no codec can encode".
#[tokio::test]
async fn a_named_codecs_encoding_error_is_surfaced() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let plan = physical_plan(&ctx, "SELECT id FROM events").await;
    let scan = find::<PartitionedScanExec>(&plan).unwrap();
    let composite =
        CompositePhysicalCodec::new("fallback", Arc::new(DefaultPhysicalExtensionCodec {}))
            .with_codec("failing", Arc::new(Failing));
    let err = composite
        .try_encode(scan, &mut Vec::new(), &DefaultPhysicalProtoConverter {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("overflow the wire format") && err.contains("'failing'"),
        "{err}"
    );
}

/// Defect 3: executors check each file's column types as strictly as a local
/// scan does: a file whose column conflicts with the table's type is an
/// error naming the file on the cluster too, not a silent cast.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executors_refuse_conflicting_file_types_like_a_local_scan() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = write_conflicting_types(dir.path());

    let register = |ctx: SessionContext| {
        let root = file_url(dir.path());
        let narrow = Arc::clone(&narrow);
        async move {
            let table = PartitionedTable::builder(root)
                .name("t")
                .schema(narrow)
                .partition_column("k", DataType::Int32)
                .build(&ctx.state())
                .await
                .unwrap();
            ctx.register_table("t", Arc::new(table)).unwrap();
            ctx
        }
    };
    let sql = "SELECT sum(n) FROM t";
    let local = register(SessionContext::new()).await;
    let err = rows(&local, sql).await.unwrap_err().to_string();
    assert!(err.contains("k=9/part-0.parquet"), "{err}");

    let setup = BallistaSetup::new(CacheConfig::default());
    let remote = start_cluster(&setup, 2, 2, QueryContext::default())
        .await
        .expect("cluster starts");
    exec(&remote, "SET lakefusion.cache_enabled = false").await;
    let remote = register(remote).await;
    let result = rows(&remote, sql).await;
    let err = result
        .expect_err("the conflicting file is refused")
        .to_string();
    assert!(err.contains("k=9/part-0.parquet"), "{err}");
}

/// The decoded plan of `sql` in a fresh context, wrapped in a shuffle writer
/// as Ballista's scheduler sends every task: encoded with the setup's
/// physical codec and decoded with it.
async fn task_round_trip(
    setup: &BallistaSetup,
    ctx: &SessionContext,
    sql: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;
    let plan = physical_plan(ctx, sql).await;
    let task: Arc<dyn ExecutionPlan> = Arc::new(
        ballista_core::execution_plans::ShuffleWriterExec::try_new(
            "job-1".into(),
            1,
            plan,
            std::env::temp_dir().display().to_string(),
        )
        .unwrap(),
    );
    let codec = setup.physical_codec();
    let proto = PhysicalPlanNode::try_from_physical_plan(task, codec.as_ref())?;
    let bytes = prost::Message::encode_to_vec(&proto);
    let decoded: PhysicalPlanNode = prost::Message::decode(bytes.as_slice()).unwrap();
    decoded.try_into_physical_plan(&ctx.task_ctx(), codec.as_ref())
}

/// Defect 7: an executor with allowed roots refuses every decoded node that
/// names a file outside them — DataFusion's own file scans (Parquet, CSV,
/// JSON, Arrow) and file sinks, not only lakefusion's — and, on `file://`,
/// a symbolic link under an allowed root that leads out of it.
#[tokio::test]
async fn allowed_roots_check_datafusions_own_file_scans_and_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, secret) = (dir.path().join("lake"), dir.path().join("secret"));
    write_events(&lake);
    std::fs::create_dir_all(&secret).unwrap();
    let ctx = SessionContext::new();
    // The same rows in every format DataFusion writes, outside the lake.
    ctx.register_table("events", Arc::new(events_table(&ctx, &lake).await))
        .unwrap();
    for format in ["parquet", "csv", "json", "arrow"] {
        exec(
            &ctx,
            &format!(
                "COPY (SELECT id, user FROM events LIMIT 5) TO '{}/{format}/' STORED AS {format}",
                secret.display()
            ),
        )
        .await;
        exec(
            &ctx,
            &format!(
                "CREATE EXTERNAL TABLE secret_{format} STORED AS {format} LOCATION '{}/{format}/'",
                secret.display()
            ),
        )
        .await;
    }
    exec(
        &ctx,
        "CREATE EXTERNAL TABLE hostname (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname' \
         OPTIONS ('format.has_header' 'false')",
    )
    .await;
    let setup = BallistaSetup::default()
        .with_allowed_roots(lakefusion::codec::AllowedRoots::only([file_url(&lake)]));

    // The lake itself decodes and runs.
    let allowed = task_round_trip(&setup, &ctx, "SELECT count(*) FROM events")
        .await
        .expect("the lake is allowed");
    // Run what the writer wraps: a decoded shuffle writer has no work
    // directory (Ballista's executor sets one) and would write its shuffle
    // files into the current directory.
    let input = Arc::clone(allowed.children()[0]);
    assert!(!collect(input, ctx.task_ctx()).await.unwrap().is_empty());

    let mut refused = Vec::new();
    for format in ["parquet", "csv", "json", "arrow"] {
        refused.push((
            format!("SELECT * FROM secret_{format}"),
            format!("secret/{format}/"),
        ));
    }
    refused.push(("SELECT * FROM hostname".into(), "/etc/hostname".into()));
    for format in ["parquet", "csv", "json"] {
        refused.push((
            format!(
                "COPY (SELECT 1 AS x) TO '{}/out-{format}/' STORED AS {format}",
                secret.display()
            ),
            format!("out-{format}"),
        ));
    }
    for (sql, path) in refused {
        let err = task_round_trip(&setup, &ctx, &sql)
            .await
            .map(|_| ())
            .expect_err(&sql);
        // Named by kind, with the file as a field.
        assert!(
            matches!(
                lakefusion::Error::from_datafusion_ref(&err),
                Some(lakefusion::Error::OutsideAllowedRoots { url, .. }) if url.contains(&path)
            ),
            "{sql}: {err:?}"
        );
        let err = err.to_string();
        assert!(
            err.contains("outside the roots") && err.contains(&path),
            "{sql}: {err}"
        );
        // Checked by hand after decoding some other way, too.
        let plan = physical_plan(&ctx, &sql).await;
        assert!(setup_roots(&lake).check_plan(&plan).is_err(), "{sql}");
    }

    // A symbolic link under the lake that leads out of it; and the same
    // under a Hive-escaped name (the name on disk holds `%3A`, and so does
    // the file's object path).
    for (table, link) in [("linked", "linked"), ("linked_escaped", "linked%3A1")] {
        std::os::unix::fs::symlink(secret.join("csv"), lake.join(link)).unwrap();
        exec(
            &ctx,
            &format!(
                "CREATE EXTERNAL TABLE {table} STORED AS CSV LOCATION '{}/'",
                lake.join(link).display()
            ),
        )
        .await;
        let err = task_round_trip(&setup, &ctx, &format!("SELECT * FROM {table}"))
            .await
            .map(|_| ())
            .expect_err(link)
            .to_string();
        assert!(err.contains("symbolic link"), "{link}: {err}");
    }
}

fn setup_roots(lake: &std::path::Path) -> lakefusion::codec::AllowedRoots {
    lakefusion::codec::AllowedRoots::only([file_url(lake)])
}
