//! Vigie's agent ↔ manager protocol: the gRPC service and messages of
//! `proto/vigie.proto` (compiled in pure Rust by `protox`, no system
//! `protoc`), plus the batch codec both sides share.
//!
//! * [`pb`]: the generated messages, [`pb::agent_service_client`] and
//!   [`pb::agent_service_server`].
//! * [`encode_batch`] / [`decode_batch`]: events and alerts travel as ECS JSON
//!   documents (exactly what `vigie_event` writes) inside a protobuf
//!   [`pb::Records`] envelope compressed with zstd; see docs/vigie-proto.md
//!   for why.
//! * Limits ([`MAX_MESSAGE_BYTES`], [`MAX_BATCH_DECOMPRESSED`],
//!   [`MAX_RECORDS_PER_BATCH`]) that the manager enforces on every message.

use prost::Message;

/// The generated protobuf types and gRPC stubs.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("vigie.v1");
}

pub use prost;
pub use tonic;

/// Largest gRPC message either side accepts (compressed size).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest decompressed batch the manager accepts (zip-bomb guard).
pub const MAX_BATCH_DECOMPRESSED: usize = 32 * 1024 * 1024;
/// Most records (events + alerts) in one batch.
pub const MAX_RECORDS_PER_BATCH: usize = 10_000;
/// zstd level for batches: level 3 is zstd's default and costs little CPU.
pub const ZSTD_LEVEL: i32 = 3;

/// Why a batch cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(
        "batch payload is not valid zstd or is larger than {MAX_BATCH_DECOMPRESSED} bytes once decompressed: {0}"
    )]
    Decompress(std::io::Error),
    #[error("batch payload is not a Records message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("batch has {0} records, more than the limit of {MAX_RECORDS_PER_BATCH}")]
    TooManyRecords(usize),
    #[error("unknown compression {0}")]
    Compression(i32),
}

/// Build a compressed batch from already serialised ECS JSON records.
pub fn encode_batch(seq: u64, events: Vec<Vec<u8>>, alerts: Vec<Vec<u8>>) -> pb::Batch {
    let records = pb::Records { events, alerts };
    let raw = records.encode_to_vec();
    // Compressing an in-memory buffer cannot fail except on allocation.
    let payload = zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd compresses a buffer");
    pb::Batch {
        seq,
        compression: pb::Compression::Zstd as i32,
        payload,
    }
}

/// Decompress and decode a batch, enforcing the size and count limits.
pub fn decode_batch(batch: &pb::Batch) -> Result<pb::Records, BatchError> {
    let raw = match pb::Compression::try_from(batch.compression) {
        Ok(pb::Compression::Zstd) => zstd::bulk::decompress(&batch.payload, MAX_BATCH_DECOMPRESSED)
            .map_err(BatchError::Decompress)?,
        Ok(pb::Compression::None) => batch.payload.clone(),
        Err(_) => return Err(BatchError::Compression(batch.compression)),
    };
    let records = pb::Records::decode(raw.as_slice())?;
    let n = records.events.len() + records.alerts.len();
    if n > MAX_RECORDS_PER_BATCH {
        return Err(BatchError::TooManyRecords(n));
    }
    Ok(records)
}

/// Serialise an event as ECS JSON bytes (the record format of a batch).
pub fn event_record(event: &vigie_event::Event) -> Vec<u8> {
    // Serialising our own typed values to a Vec cannot fail.
    serde_json::to_vec(event).expect("events serialise")
}

/// Serialise an alert as ECS JSON bytes.
pub fn alert_record(alert: &vigie_event::Alert) -> Vec<u8> {
    serde_json::to_vec(alert).expect("alerts serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let b = encode_batch(7, vec![b"{\"a\":1}".to_vec(); 100], vec![b"{}".to_vec()]);
        assert_eq!(b.seq, 7);
        assert!(b.payload.len() < 100 * 7, "repeated records compress");
        let r = decode_batch(&b).unwrap();
        assert_eq!(r.events.len(), 100);
        assert_eq!(r.alerts, vec![b"{}".to_vec()]);
    }

    #[test]
    fn garbage_and_bombs_are_refused() {
        let bad = pb::Batch {
            seq: 1,
            compression: pb::Compression::Zstd as i32,
            payload: b"not zstd".to_vec(),
        };
        assert!(matches!(decode_batch(&bad), Err(BatchError::Decompress(_))));
        // 64 MiB of zeros compresses to a few KiB: refused once decompressed.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
        let bomb = pb::Batch {
            seq: 1,
            compression: 1,
            payload: bomb,
        };
        assert!(decode_batch(&bomb).is_err());
        let unknown = pb::Batch {
            seq: 1,
            compression: 9,
            payload: vec![],
        };
        assert!(matches!(
            decode_batch(&unknown),
            Err(BatchError::Compression(9))
        ));
        let too_many = encode_batch(1, vec![vec![]; MAX_RECORDS_PER_BATCH + 1], vec![]);
        assert!(matches!(
            decode_batch(&too_many),
            Err(BatchError::TooManyRecords(_))
        ));
    }
}
