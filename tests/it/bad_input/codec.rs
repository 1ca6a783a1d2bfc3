//! Codec bytes: wrong versions, garbage inside a valid envelope, the logical
//! codec's own bad bytes. (Truncation at every length, garbage envelopes,
//! unknown codecs and roots the executor does not allow are in `codec.rs`.)

use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;
use lakefusion::ballista::BallistaSetup;
use lakefusion::codec::FORMAT_VERSION;

use crate::codec::{decode, events_scan};
use crate::common::*;

fn reencode(bytes: &[u8], change: impl FnOnce(&mut Envelope)) -> Vec<u8> {
    let mut envelope: Envelope = prost::Message::decode(bytes).unwrap();
    change(&mut envelope);
    prost::Message::encode_to_vec(&envelope)
}

/// A scan encoded by the Ballista setup's composite codec.
async fn encoded_scan(dir: &std::path::Path) -> (SessionContext, Vec<u8>) {
    let (ctx, scan) = events_scan(dir, "SELECT id FROM events").await;
    let mut bytes = Vec::new();
    BallistaSetup::default()
        .physical_codec()
        .try_encode(scan, &mut bytes, &DefaultPhysicalProtoConverter {})
        .unwrap();
    (ctx, bytes)
}

fn physical_error(ctx: &SessionContext, bytes: &[u8]) -> String {
    let codec = BallistaSetup::default().physical_codec();
    let result: datafusion::error::Result<Arc<dyn ExecutionPlan>> =
        decode(codec.as_ref(), bytes, ctx);
    result.map(|_| ()).unwrap_err().to_string()
}

#[tokio::test]
async fn plan_bytes_from_a_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, bytes) = encoded_scan(dir.path()).await;
    let envelope: Envelope = prost::Message::decode(bytes.as_slice()).unwrap();
    assert_eq!(envelope.format_version, FORMAT_VERSION);
    let newer = reencode(&bytes, |e| e.format_version = FORMAT_VERSION + 1);
    let err = physical_error(&ctx, &newer);
    assert!(
        err.contains("'lakefusion.scan'")
            && err.contains(&format!("version {}", FORMAT_VERSION + 1))
            && err.contains("upgrade"),
        "{err}"
    );
    // Bytes without a version predate the checksum: they cannot be checked
    // as strictly, so they are refused, saying why.
    let unversioned = reencode(&bytes, |e| e.format_version = 0);
    let err = physical_error(&ctx, &unversioned);
    assert!(
        err.contains("'lakefusion.scan'")
            && err.contains("version 0")
            && err.contains("unversioned bytes carry no checksum"),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_inside_a_valid_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, bytes) = encoded_scan(dir.path()).await;
    let garbage = reencode(&bytes, |e| e.payload = vec![0xFF; 64]);
    let err = physical_error(&ctx, &garbage);
    assert!(
        err.contains("'lakefusion.scan'") && err.contains("fails its checksum"),
        "{err}"
    );
    // Garbage that carries its own checksum reaches the codec, which says
    // the bytes are not its node.
    let vetted = reencode(&bytes, |e| {
        e.payload = vec![0xFF; 64];
        e.checksum = crc32(&e.payload);
    });
    let err = physical_error(&ctx, &vetted);
    assert!(
        err.contains("lakefusion.scan") && err.contains("64 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn one_flipped_bit_in_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, bytes) = encoded_scan(dir.path()).await;
    let envelope: Envelope = prost::Message::decode(bytes.as_slice()).unwrap();
    for at in (0..envelope.payload.len()).step_by(13) {
        let flipped = reencode(&bytes, |e| e.payload[at] ^= 0x10);
        let err = physical_error(&ctx, &flipped);
        assert!(err.contains("fails its checksum"), "{at}: {err}");
    }
}

#[tokio::test]
async fn a_payload_cut_short_inside_a_valid_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, bytes) = encoded_scan(dir.path()).await;
    let envelope: Envelope = prost::Message::decode(bytes.as_slice()).unwrap();
    for len in 0..envelope.payload.len() {
        let cut = reencode(&bytes, |e| e.payload.truncate(len));
        let err = physical_error(&ctx, &cut);
        assert!(
            err.contains("'lakefusion.scan'") && err.contains("fails its checksum"),
            "{len}: {err}"
        );
    }
}

/// The events table encoded by the logical codec.
async fn encoded_table() -> (SessionContext, Vec<u8>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    let table = events_table(&ctx, dir.path()).await;
    let mut bytes = Vec::new();
    BallistaSetup::default()
        .logical_codec()
        .try_encode_table_provider(&TableReference::bare("events"), Arc::new(table), &mut bytes)
        .unwrap();
    (ctx, bytes, dir)
}

fn logical_error(ctx: &SessionContext, bytes: &[u8]) -> String {
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
    match BallistaSetup::default()
        .logical_codec()
        .try_decode_table_provider(
            bytes,
            &TableReference::bare("events"),
            schema,
            &ctx.task_ctx(),
        ) {
        Ok(_) => panic!("{} bytes decoded", bytes.len()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn table_bytes_from_a_newer_version() {
    let (ctx, bytes, _dir) = encoded_table().await;
    let newer = reencode(&bytes, |e| e.format_version = 7);
    let err = logical_error(&ctx, &newer);
    assert!(
        err.contains("'lakefusion.partitioned_table'") && err.contains("version 7"),
        "{err}"
    );
}

#[tokio::test]
async fn table_bytes_cut_at_every_length_or_garbage() {
    let (ctx, bytes, _dir) = encoded_table().await;
    let envelope: Envelope = prost::Message::decode(bytes.as_slice()).unwrap();
    for len in 0..envelope.payload.len() {
        let cut = reencode(&bytes, |e| e.payload.truncate(len));
        let err = logical_error(&ctx, &cut);
        assert!(
            err.contains("'lakefusion.partitioned_table'") && err.contains("fails its checksum"),
            "{len}: {err}"
        );
        // Cut inside the envelope itself (its trailing version field aside).
        let err = logical_error(&ctx, &bytes[..len.min(bytes.len() - 3)]);
        assert!(
            err.contains("LakefusionLogicalCodec") || err.contains("lakefusion.partitioned_table"),
            "{len}: {err}"
        );
    }
    let err = logical_error(&ctx, b"\x0a\xff\xff\xff\xff\x0f");
    assert!(err.contains("not a lakefusion codec envelope"), "{err}");
}

#[tokio::test]
async fn table_bytes_naming_another_codec() {
    let (ctx, bytes, _dir) = encoded_table().await;
    let other = reencode(&bytes, |e| e.codec = "vendor.table".into());
    let err = logical_error(&ctx, &other);
    assert!(err.contains("unknown codec 'vendor.table'"), "{err}");
}
