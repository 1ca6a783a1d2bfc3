//! [`CompositePhysicalCodec`]: a chain of named physical codecs.

use std::fmt;
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use prost::Message;

use super::roots::AllowedRoots;
use crate::error::{Error, WireVersion};
use crate::settings::{QueryContext, ScanOptions};

/// The version of lakefusion's wire format this build writes, and the only
/// one it reads. Raised when bytes change in a way another version would
/// misread (a new field an older reader merely ignores does not raise it).
/// Plans are made and run by the processes of one deployment, so bytes of
/// another version — older, newer, or unversioned (written before versions
/// existed, without a checksum) — are refused with an error saying which.
///
/// Version 2: a scan's description is one message, shared by every form a
/// scan travels in; cached scans no longer carry a key; file lists carry
/// ETags and object versions.
pub const FORMAT_VERSION: u32 = 2;

/// The bytes a named codec writes: the codec's name, then its payload.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Envelope {
    /// The stable name of the codec that wrote `payload`.
    #[prost(string, tag = "1")]
    pub codec: String,
    /// The codec's own bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    /// The [`FORMAT_VERSION`] of the writer (0: written before versions, refused).
    #[prost(uint32, tag = "3")]
    pub format_version: u32,
    /// CRC-32 of `payload`. Protobuf cannot tell a message cut at a field
    /// boundary from a shorter one, so without it a damaged payload could
    /// decode into a plan with fewer files — wrong rows, no error.
    #[prost(uint32, tag = "4")]
    pub checksum: u32,
}

/// Runs a decode, turning a panic into an error.
///
/// DataFusion's protobuf conversions `unwrap` some fields (in 55.2, e.g. a
/// Parquet scan's options without their `global` part), so bytes that pass
/// the checksum but were forged or written by a buggy encoder could panic
/// the decoding executor. `what` names the decoder in the error.
pub(crate) fn decode_without_panics<T>(
    codec: &str,
    bytes: usize,
    decode: impl FnOnce() -> Result<T>,
) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        Err(Error::CodecBytes {
            codec: codec.to_string(),
            what: "plan (they made DataFusion's decoder fail: corrupt or forged)",
            bytes,
            source: crate::error::panic_message(panic.as_ref()).into(),
        }
        .into())
    })
}

/// Whether an encoding error only says the codec does not handle the node.
fn is_not_mine(error: &DataFusionError) -> bool {
    matches!(error.find_root(), DataFusionError::NotImplemented(_))
}

impl Envelope {
    pub(crate) fn encode_into(codec: &str, payload: Vec<u8>, buf: &mut Vec<u8>) -> Result<()> {
        Self {
            codec: codec.to_string(),
            checksum: crc32fast::hash(&payload),
            payload,
            format_version: FORMAT_VERSION,
        }
        .encode(buf)
        .map_err(|e| {
            DataFusionError::Internal(format!("encoding the envelope of codec '{codec}': {e}"))
        })
    }

    fn version_error(&self, kind: WireVersion) -> DataFusionError {
        Error::WireFormatVersion {
            codec: self.codec.clone(),
            found: self.format_version,
            expected: FORMAT_VERSION,
            kind,
        }
        .into()
    }

    /// Decodes an envelope; `decoder` names the decoder in errors.
    pub(crate) fn decode_from(buf: &[u8], decoder: &str) -> Result<Self> {
        let not_an_envelope =
            |source: Box<dyn std::error::Error + Send + Sync>| Error::CodecBytes {
                codec: decoder.to_string(),
                what: "lakefusion codec envelope (truncated, corrupt, or written by another codec)",
                bytes: buf.len(),
                source,
            };
        let envelope = Self::decode(buf).map_err(|e| not_an_envelope(Box::new(e)))?;
        if envelope.codec.is_empty() {
            return Err(not_an_envelope("it names no codec".into()).into());
        }
        // Unversioned bytes predate the checksum, so a cut or damaged payload
        // could not be told from a whole one: they are refused, not trusted.
        match envelope.format_version {
            0 => return Err(envelope.version_error(WireVersion::Unversioned)),
            v if v < FORMAT_VERSION => return Err(envelope.version_error(WireVersion::Older)),
            v if v > FORMAT_VERSION => return Err(envelope.version_error(WireVersion::Newer)),
            _ => {}
        }
        if crc32fast::hash(&envelope.payload) != envelope.checksum {
            return Err(Error::WireChecksum {
                codec: envelope.codec,
                bytes: envelope.payload.len(),
            }
            .into());
        }
        Ok(envelope)
    }
}

/// A physical codec made of named codecs, tried in order, with a fallback.
///
/// Encoding asks each codec in turn; the first that accepts the node writes
/// its payload, wrapped with the codec's name. Decoding reads the name and
/// hands the payload to that codec alone. Because the name, not the position,
/// selects the codec, adding or reordering codecs never breaks bytes written
/// before (DataFusion's `ComposedPhysicalExtensionCodec` stores a position).
///
/// The fallback (Ballista's `BallistaPhysicalExtensionCodec` in
/// `ballista`) encodes whatever no named codec accepts — Ballista's
/// own shuffle nodes — under its own name.
///
/// Unknown names, truncated bytes and garbage are errors naming the codec (or
/// saying no envelope could be read), never panics.
pub struct CompositePhysicalCodec {
    codecs: Vec<(String, Arc<dyn PhysicalExtensionCodec>)>,
    fallback: (String, Arc<dyn PhysicalExtensionCodec>),
    allowed_roots: AllowedRoots,
}

impl fmt::Debug for CompositePhysicalCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.codecs.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("CompositePhysicalCodec")
            .field("codecs", &names)
            .field("fallback", &self.fallback.0)
            .finish()
    }
}

impl CompositePhysicalCodec {
    /// A composite that falls back to `fallback`, registered as `name`.
    pub fn new(name: impl Into<String>, fallback: Arc<dyn PhysicalExtensionCodec>) -> Self {
        Self {
            codecs: Vec::new(),
            fallback: (name.into(), fallback),
            allowed_roots: AllowedRoots::any(),
        }
    }

    /// Every node this composite decodes, with all the nodes beneath it, is
    /// checked against `roots` ([`AllowedRoots::check_plan`]): DataFusion's
    /// own file scans and sinks included, which datafusion-proto decodes
    /// without asking any codec. Ballista roots every task plan in a shuffle
    /// writer, which this composite decodes, so a task's whole plan is
    /// checked before it runs.
    pub fn with_allowed_roots(mut self, roots: AllowedRoots) -> Self {
        self.allowed_roots = roots;
        self
    }

    /// Adds a codec under a stable `name` (tried before the fallback, after
    /// codecs added earlier).
    pub fn with_codec(
        mut self,
        name: impl Into<String>,
        codec: Arc<dyn PhysicalExtensionCodec>,
    ) -> Self {
        self.codecs.push((name.into(), codec));
        self
    }

    /// The names of the codecs, in the order they are tried, fallback last.
    pub fn names(&self) -> Vec<&str> {
        self.codecs
            .iter()
            .chain(std::iter::once(&self.fallback))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn by_name(&self, name: &str) -> Option<&Arc<dyn PhysicalExtensionCodec>> {
        self.codecs
            .iter()
            .chain(std::iter::once(&self.fallback))
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }
}

impl PhysicalExtensionCodec for CompositePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let envelope = Envelope::decode_from(buf, "CompositePhysicalCodec")?;
        // Plans are decoded where they run (on an executor, inside the task's
        // context): what the settings say here is what the task sees.
        let query = QueryContext::from_task_context(ctx);
        let scan = ScanOptions::from_task_context(ctx);
        tracing::debug!(
            codec = %envelope.codec,
            query_id = %query.query_id,
            tenant_id = %query.tenant_id,
            read_ahead_requests = scan.read_ahead_requests,
            task_id = ctx.task_id().as_deref().unwrap_or(""),
            "decoding plan node"
        );
        let codec = self
            .by_name(&envelope.codec)
            .ok_or_else(|| Error::UnknownCodec {
                codec: envelope.codec.clone(),
                known: self.names().join(", "),
            })?;
        let decoded = decode_without_panics(&envelope.codec, envelope.payload.len(), || {
            codec.try_decode(&envelope.payload, inputs, ctx, proto_converter)
        })
        .map_err(|e| e.context(format!("decoding with codec '{}'", envelope.codec)))?;
        self.allowed_roots.check_plan(&decoded)?;
        Ok(decoded)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        // A codec says "not mine" with `NotImplemented`; any other error is
        // the real reason the node cannot be sent, and is what the caller sees.
        for (name, codec) in self.codecs.iter().chain(std::iter::once(&self.fallback)) {
            let mut payload = Vec::new();
            match codec.try_encode(Arc::clone(&node), &mut payload, proto_converter) {
                Ok(()) => return Envelope::encode_into(name, payload, buf),
                Err(e) if is_not_mine(&e) => continue,
                Err(e) => return Err(e.context(format!("codec '{name}' encoding {}", node.name()))),
            }
        }
        Err(DataFusionError::NotImplemented(format!(
            "no codec of {:?} can encode {}",
            self.names(),
            node.name()
        )))
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.fallback.1.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.fallback.1.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.fallback.1.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.fallback.1.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.fallback.1.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.fallback.1.try_encode_udwf(node, buf)
    }
}
