//! The Prometheus remote-write protocol, version 1: the protobuf messages (written by hand with
//! prost's derive, no protoc) and the decoder of a request body (snappy block format, then
//! protobuf), with size limits checked before anything is decompressed.
//!
//! This module owns the wire format only; what the series mean is `mapping`'s business.

use prost::Message;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata` (decoded so a request carrying it is valid; not used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// Over `limit` bytes, compressed or (as the snappy header announces) decompressed.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("not valid snappy (block format): {0}")]
    Snappy(String),
    #[error("not a valid prometheus.WriteRequest: {0}")]
    Protobuf(String),
}

/// Limits on one request body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Compressed bytes.
    pub max_body_bytes: usize,
    /// Decompressed bytes, as announced by the snappy header (checked before decompressing).
    pub max_decoded_bytes: usize,
}

/// Decodes a remote-write body: snappy block format, then protobuf.
pub fn decode(body: &[u8], limits: Limits) -> Result<WriteRequest, DecodeError> {
    if body.len() > limits.max_body_bytes {
        return Err(DecodeError::TooLarge {
            what: "the body",
            size: body.len() as u64,
            limit: limits.max_body_bytes as u64,
        });
    }
    let decoded_len =
        snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if decoded_len > limits.max_decoded_bytes {
        return Err(DecodeError::TooLarge {
            what: "the decompressed body",
            size: decoded_len as u64,
            limit: limits.max_decoded_bytes as u64,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Encodes a request as Prometheus sends it (tests and tools).
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input shorter than 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_body_bytes: 1 << 20,
        max_decoded_bytes: 4 << 20,
    };

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label::new("__name__", "container_cpu_usage_seconds_total"),
                    Label::new("namespace", "shop"),
                    Label::new("pod", "cart-1"),
                    Label::new("container", "server"),
                ],
                samples: vec![Sample {
                    value: 12.5,
                    timestamp: 1_700_000_000_000,
                }],
            }],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "container_cpu_usage_seconds_total".into(),
                help: "Cumulative cpu time consumed".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn round_trips() {
        let r = request();
        assert_eq!(decode(&encode(&r), LIMITS).unwrap(), r);
    }

    #[test]
    fn malformed_snappy_is_refused() {
        let e = decode(b"\xff\xff\xff\xff\xff\xff", LIMITS).unwrap_err();
        assert!(matches!(e, DecodeError::Snappy(_)), "{e}");
        // A valid header announcing 10 bytes, then garbage.
        let e = decode(&[10, 0xff, 0xff, 0xff], LIMITS).unwrap_err();
        assert!(matches!(e, DecodeError::Snappy(_)), "{e}");
        // Uncompressed protobuf (a client that forgot snappy).
        let e = decode(&request().encode_to_vec(), LIMITS).unwrap_err();
        assert!(
            matches!(e, DecodeError::Snappy(_) | DecodeError::Protobuf(_)),
            "{e}"
        );
    }

    #[test]
    fn malformed_protobuf_is_refused() {
        let body = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff\xff\x0f")
            .unwrap();
        let e = decode(&body, LIMITS).unwrap_err();
        assert!(matches!(e, DecodeError::Protobuf(_)), "{e}");
    }

    #[test]
    fn oversized_bodies_are_refused_before_decompressing() {
        let body = encode(&request());
        let e = decode(
            &body,
            Limits {
                max_body_bytes: body.len() - 1,
                max_decoded_bytes: 1 << 20,
            },
        )
        .unwrap_err();
        assert!(matches!(
            e,
            DecodeError::TooLarge {
                what: "the body",
                ..
            }
        ));
        // A tiny body whose header claims 1 GiB: refused from the header alone.
        let mut bomb = Vec::new();
        let mut n: u64 = 1 << 30;
        while n >= 0x80 {
            bomb.push((n as u8) | 0x80);
            n >>= 7;
        }
        bomb.push(n as u8);
        bomb.extend_from_slice(&[0; 8]);
        let e = decode(&bomb, LIMITS).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::TooLarge {
                    what: "the decompressed body",
                    size: 1073741824,
                    ..
                }
            ),
            "{e}"
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body, LIMITS);
        }

        #[test]
        fn never_panics_on_snappy_wrapped_garbage(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
            let _ = decode(&body, LIMITS);
        }

        #[test]
        fn decode_inverts_encode(values in proptest::collection::vec((-1e12f64..1e12, 0i64..4_000_000_000_000), 0..50)) {
            let r = WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: vec![Label::new("__name__", "x")],
                    samples: values.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
                }],
                metadata: vec![],
            };
            prop_assert_eq!(decode(&encode(&r), LIMITS).unwrap(), r);
        }
    }
}
