//! Property tests (proptest). CI runs a few hundred cases each; set
//! `PROPTEST_CASES=10000` for the figures in RELIABILITY.md.
//!
//! * partition values round-trip through the writer's directory encoding;
//! * a pruned scan returns exactly the rows of an unpruned one filtered
//!   afterwards, NULL partition values and NULL constants included;
//! * `Exact` statistics equal what the scan then produces;
//! * codec decoding of arbitrary or damaged bytes never panics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::stats::Precision;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{collect, StatisticsArgs, StatisticsContext};
use datafusion::prelude::SessionContext;
use lakefusion::{partition_dir, PartitionColumn, HIVE_NULL, MAX_DIR_NAME_BYTES};
use lakefusion::{PartitionSpec, PartitionedScanExec, PartitionedTable};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use url::Url;

use crate::common::{proptest_config as config, rows};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Partition paths

/// Values of the types partition columns commonly have, NULLs included;
/// strings from the whole of Unicode with the characters paths care about
/// made likely.
fn partition_value() -> impl Strategy<Value = ScalarValue> {
    let text = prop_oneof![
        proptest::collection::vec(
            prop_oneof![
                Just('/'),
                Just('.'),
                Just('%'),
                Just('='),
                Just(' '),
                Just('\\'),
                Just('#'),
                Just('\u{0}'),
                any::<char>()
            ],
            0..12
        )
        .prop_map(|cs| cs.into_iter().collect::<String>()),
        Just("..".to_string()),
        Just(HIVE_NULL.to_string()),
        "[a-z]{250,260}",
    ];
    prop_oneof![
        proptest::option::of(text).prop_map(ScalarValue::Utf8),
        proptest::option::of(any::<i32>()).prop_map(ScalarValue::Int32),
        proptest::option::of(any::<i64>()).prop_map(ScalarValue::Int64),
        proptest::option::of(-50_000i32..50_000).prop_map(ScalarValue::Date32),
        proptest::option::of(any::<bool>()).prop_map(ScalarValue::Boolean),
    ]
}

#[test]
fn partition_values_round_trip_through_their_directory() {
    let refused = AtomicUsize::new(0);
    let written = AtomicUsize::new(0);
    TestRunner::new(config(2_000))
        .run(&partition_value(), |value| {
            let column = PartitionColumn {
                name: "k".into(),
                data_type: value.data_type(),
            };
            match partition_dir("t", &column, &value) {
                Ok(dir) => {
                    written.fetch_add(1, Ordering::Relaxed);
                    // One path segment, as the object store lists it back.
                    let path = ObjectPath::parse(format!("root/{dir}/f.parquet"))
                        .map_err(|e| TestCaseError::fail(format!("{dir}: {e}")))?;
                    let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_string()).collect();
                    prop_assert_eq!(parts.len(), 3, "{}", dir);
                    prop_assert!(dir.len() <= MAX_DIR_NAME_BYTES);
                    let spec = PartitionSpec::new([("k".to_string(), column.data_type.clone())]);
                    let back = spec
                        .parse_dirs(path.as_ref(), &[parts[1].as_str()])
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(back, vec![value]);
                }
                Err(e) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    // Refused only for the documented reasons.
                    let text = value.to_string();
                    let reason = e.to_string();
                    prop_assert!(
                        text.contains('/')
                            || text == "."
                            || text == ".."
                            || text.is_empty()
                            || text == HIVE_NULL
                            || reason.contains("over the limit")
                            || reason.contains("does not read back"),
                        "{:?}: {}",
                        value,
                        reason
                    );
                    prop_assert!(reason.contains("'k'"), "{}", reason);
                }
            }
            Ok(())
        })
        .unwrap();
    let (written, refused) = (written.into_inner(), refused.into_inner());
    println!("partition paths: {written} written and read back, {refused} refused");
    assert!(written > 0 && refused > 0);
}

// ---------------------------------------------------------------------------
// Tables on an in-memory store, for pruning and statistics

/// One partition: its two values and its file's `v` column.
#[derive(Debug, Clone)]
struct PartitionData {
    n: Option<i32>,
    s: Option<String>,
    v: Vec<Option<i64>>,
}

fn table_data() -> impl Strategy<Value = Vec<PartitionData>> {
    let partition = (
        proptest::option::of(-2i32..3),
        proptest::option::of(prop_oneof![Just("a"), Just("b"), Just("c d")]),
        proptest::collection::vec(proptest::option::of(-5i64..5), 0..6),
    )
        .prop_map(|(n, s, v)| PartitionData {
            n,
            s: s.map(String::from),
            v,
        });
    proptest::collection::vec(partition, 1..6)
}

fn file_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]))
}

/// Writes each partition's file (two per partition when it has rows, so row
/// counts add up across files) under the writer's directory names.
async fn put_table(store: &InMemory, data: &[PartitionData]) {
    let n_col = PartitionColumn {
        name: "n".into(),
        data_type: DataType::Int32,
    };
    let s_col = PartitionColumn {
        name: "s".into(),
        data_type: DataType::Utf8,
    };
    for (i, p) in data.iter().enumerate() {
        let dir = format!(
            "t/{}/{}",
            partition_dir("t", &n_col, &ScalarValue::Int32(p.n)).unwrap(),
            partition_dir("t", &s_col, &ScalarValue::Utf8(p.s.clone())).unwrap()
        );
        let half = p.v.len() / 2;
        for (f, part) in [&p.v[..half], &p.v[half..]].iter().enumerate() {
            let batch = RecordBatch::try_new(
                file_schema(),
                vec![Arc::new(Int64Array::from(part.to_vec()))],
            )
            .unwrap();
            let mut buf = Vec::new();
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(&mut buf, file_schema(), None).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            let path = ObjectPath::parse(format!("{dir}/part-{i}-{f}.parquet")).unwrap();
            store.put(&path, buf.into()).await.unwrap();
        }
    }
}

/// The same rows as a MemTable: what the table must return.
fn expected_table(data: &[PartitionData]) -> MemTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, true),
        Field::new("n", DataType::Int32, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let (mut v, mut n, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for p in data {
        for value in &p.v {
            v.push(*value);
            n.push(p.n);
            s.push(p.s.clone());
        }
    }
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(v)),
            Arc::new(Int32Array::from(n)),
            Arc::new(StringArray::from(s)),
        ],
    )
    .unwrap();
    MemTable::try_new(schema, vec![vec![batch]]).unwrap()
}

/// A session with `data` as `t` (ours, statistics per `statistics`) and as
/// `expected` (a MemTable).
async fn sessions(data: &[PartitionData], statistics: bool) -> SessionContext {
    let store = Arc::new(InMemory::new());
    put_table(&store, data).await;
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("memory://").unwrap(), store);
    let table = PartitionedTable::builder("memory:///t")
        .partition_column("n", DataType::Int32)
        .partition_column("s", DataType::Utf8)
        .schema(file_schema())
        .collect_statistics(statistics)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx.register_table("expected", Arc::new(expected_table(data)))
        .unwrap();
    ctx
}

/// A filter over the partition columns and `v`, as SQL.
fn filter(partition_only: bool) -> impl Strategy<Value = String> {
    let int = || {
        prop_oneof![
            (-3i32..4).prop_map(|c| c.to_string()),
            Just("NULL".to_string())
        ]
    };
    let mut leaves: Vec<BoxedStrategy<String>> = vec![
        (
            prop_oneof![Just("="), Just("<>"), Just("<"), Just(">=")],
            int(),
        )
            .prop_map(|(op, c)| format!("n {op} {c}"))
            .boxed(),
        Just("n IS NULL".to_string()).boxed(),
        (int(), int())
            .prop_map(|(a, b)| format!("n IN ({a}, {b})"))
            .boxed(),
        prop_oneof![Just("'a'"), Just("'c d'"), Just("'z'"), Just("NULL")]
            .prop_map(|c| format!("s = {c}"))
            .boxed(),
        Just("s IS NOT NULL".to_string()).boxed(),
        Just("s > 'a'".to_string()).boxed(),
        Just("coalesce(n, 0) = 0".to_string()).boxed(),
    ];
    if !partition_only {
        leaves.push((-6i64..6).prop_map(|c| format!("v > {c}")).boxed());
        leaves.push((-3i32..3).prop_map(|c| format!("v + n = {c}")).boxed());
    }
    proptest::strategy::Union::new(leaves).prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            inner.prop_map(|a| format!("(NOT {a})")),
        ]
    })
}

#[test]
fn pruned_scans_return_exactly_the_filtered_rows() {
    let rt = runtime();
    TestRunner::new(config(200))
        .run(&(table_data(), filter(false)), |(data, filter)| {
            rt.block_on(async {
                let ctx = sessions(&data, false).await;
                let ours = format!("SELECT n, s, v FROM t WHERE {filter} ORDER BY n, s, v");
                let theirs =
                    format!("SELECT n, s, v FROM expected WHERE {filter} ORDER BY n, s, v");
                let got = rows(&ctx, &ours)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{ours}: {e}")))?;
                let want = rows(&ctx, &theirs)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{theirs}: {e}")))?;
                prop_assert_eq!(got, want, "{}", filter);
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn exact_statistics_are_what_the_scan_produces() {
    let rt = runtime();
    let exact = AtomicUsize::new(0);
    TestRunner::new(config(200))
        .run(&(table_data(), filter(true)), |(data, filter)| {
            rt.block_on(async {
                let ctx = sessions(&data, true).await;
                let sql = format!("SELECT v, n, s FROM t WHERE {filter}");
                let plan = crate::common::physical_plan(&ctx, &sql).await;
                let Some(scan) = find_scan(&plan) else {
                    return Ok(()); // folded away (e.g. a filter that is always false)
                };
                let stats = StatisticsContext::new()
                    .compute(scan.as_ref(), &StatisticsArgs::new())
                    .unwrap();
                let batches = collect(Arc::clone(&scan), ctx.task_ctx()).await.unwrap();
                let produced: usize = batches.iter().map(|b| b.num_rows()).sum();
                if let Precision::Exact(n) = stats.num_rows {
                    exact.fetch_add(1, Ordering::Relaxed);
                    prop_assert_eq!(n, produced, "rows: {}", filter);
                }
                for (i, column) in stats.column_statistics.iter().enumerate() {
                    if let Precision::Exact(nulls) = column.null_count {
                        let actual: usize = batches.iter().map(|b| b.column(i).null_count()).sum();
                        prop_assert_eq!(nulls, actual, "nulls of column {}: {}", i, filter);
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    let exact = exact.into_inner();
    println!("statistics: {exact} cases had Exact row counts");
    assert!(
        exact > 0,
        "no case had Exact statistics: the property checked nothing"
    );
}

fn find_scan(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> Option<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    if plan.is::<PartitionedScanExec>() {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(find_scan)
}

// ---------------------------------------------------------------------------
// Codec bytes

/// Damage to a payload: bytes overwritten, then a cut. The checksum is
/// recomputed, so the damage reaches the decoder behind it.
#[cfg(feature = "ballista")]
fn damage() -> impl Strategy<Value = (Vec<(usize, u8)>, Option<usize>)> {
    (
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        proptest::option::of(any::<usize>()),
    )
}

#[cfg(feature = "ballista")]
#[test]
fn decoding_arbitrary_or_damaged_bytes_never_panics() {
    use datafusion::common::TableReference;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;
    use lakefusion::ballista::BallistaSetup;

    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (ctx, scan) = rt.block_on(crate::codec::events_scan(
        dir.path(),
        "SELECT id FROM events WHERE id > 10",
    ));
    let setup = BallistaSetup::default();
    let physical = setup.physical_codec();
    let logical = setup.logical_codec();
    let mut plan_bytes = Vec::new();
    physical
        .try_encode(scan, &mut plan_bytes, &DefaultPhysicalProtoConverter {})
        .unwrap();
    let table = rt.block_on(crate::common::events_table(&ctx, dir.path()));
    let mut table_bytes = Vec::new();
    logical
        .try_encode_table_provider(
            &TableReference::bare("events"),
            Arc::new(table),
            &mut table_bytes,
        )
        .unwrap();
    let task = ctx.task_ctx();
    let schema = Arc::new(Schema::empty());
    let decode_all = |bytes: &[u8]| {
        let _ = physical.try_decode(bytes, &[], &task, &DefaultPhysicalProtoConverter {});
        let _ = logical.try_decode_table_provider(
            bytes,
            &TableReference::bare("events"),
            Arc::clone(&schema),
            &task,
        );
    };
    let damaged = |good: &[u8], (writes, cut): &(Vec<(usize, u8)>, Option<usize>)| {
        let mut envelope: crate::common::Envelope = prost::Message::decode(good).unwrap();
        let len = envelope.payload.len();
        for (at, byte) in writes {
            envelope.payload[at % len] = *byte;
        }
        if let Some(cut) = cut {
            envelope.payload.truncate(cut % (len + 1));
        }
        envelope.checksum = crate::common::crc32(&envelope.payload);
        prost::Message::encode_to_vec(&envelope)
    };
    let decoded_damaged = AtomicUsize::new(0);
    let caught_panics = AtomicUsize::new(0);
    TestRunner::new(config(2_000))
        .run(
            &(
                proptest::collection::vec(any::<u8>(), 0..600),
                damage(),
                damage(),
            ),
            |(garbage, plan_damage, table_damage)| {
                decode_all(&garbage);
                let plan = damaged(&plan_bytes, &plan_damage);
                match physical.try_decode(&plan, &[], &task, &DefaultPhysicalProtoConverter {}) {
                    Ok(_) => {
                        decoded_damaged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.to_string().contains("made DataFusion's decoder fail") => {
                        caught_panics.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
                decode_all(&damaged(&table_bytes, &table_damage));
                Ok(())
            },
        )
        .unwrap();
    println!(
        "codec: {} damaged plans still decoded (damage that kept the bytes valid); \
         {} decoder panics caught and returned as errors",
        decoded_damaged.into_inner(),
        caught_panics.into_inner()
    );
}
