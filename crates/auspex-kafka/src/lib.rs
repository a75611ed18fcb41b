//! Kafka in and out for `auspex serve` (issue 4), over rdkafka with its bundled librdkafka.
//!
//! - [`KafkaSettings`]: the brokers and any librdkafka property (SASL, TLS, timeouts...) passed
//!   through, with a warning for plaintext to a broker off the loopback interface;
//! - [`DeadLetters`]: the dead-letter topic. A message that cannot be parsed or fails schema
//!   validation is published there unchanged, with headers naming where it came from and
//!   why it was refused ([`HEADER_TOPIC`], [`HEADER_PARTITION`], [`HEADER_OFFSET`],
//!   [`HEADER_REASON`]), by the idempotent producer with `acks=all`; [`DeadLetters::send`]
//!   returns once the broker has acknowledged it. `serve`'s loop publishes with the same key
//!   and headers ([`dead_letter_key`], [`headers_of`]) from its own producer;
//! - [`offsets::OffsetTracker`]: which offset is safe to store per partition (one past the
//!   longest prefix of messages that are applied and whose outputs are all acknowledged);
//! - `testing` (feature): a real tansu broker for integration tests.
//!
//! The consumer loop itself lives in `auspex-serve` (`kafka.rs`), next to the engine it feeds.

pub mod offsets;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::time::Duration;

use auspex_ingest::{DeadLetter, Origin};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Header: the topic the refused message was read from.
pub const HEADER_TOPIC: &str = "auspex.origin.topic";
/// Header: its partition.
pub const HEADER_PARTITION: &str = "auspex.origin.partition";
/// Header: its offset.
pub const HEADER_OFFSET: &str = "auspex.origin.offset";
/// Header: why it was refused.
pub const HEADER_REASON: &str = "auspex.reason";

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("dead letter to {topic}: {reason}")]
    Delivery { topic: String, reason: String },
}

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// librdkafka properties passed through as given (`security.protocol`,
    /// `sasl.mechanisms`, `sasl.username`, `ssl.ca.location`, ...); they override the
    /// defaults auspex sets.
    pub properties: BTreeMap<String, String>,
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Plaintext (no TLS) to a broker that is not on the loopback interface: worth a warning,
    /// since samples and alerts cross the network readable to anyone on the path.
    pub fn plaintext_off_loopback(&self) -> bool {
        let protocol = self
            .properties
            .get("security.protocol")
            .map_or("plaintext", String::as_str)
            .to_ascii_lowercase();
        let tls = protocol == "ssl" || protocol == "sasl_ssl";
        !tls && self.brokers.split(',').any(|b| {
            let host = b.trim().rsplit_once(':').map_or(b.trim(), |(h, _)| h);
            !matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
        })
    }

    /// A client configuration: the brokers, then `extra` (auspex's defaults for the client
    /// kind), then the user's properties, which win.
    pub fn client_config(&self, extra: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in extra {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// The dead-letter topic.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl DeadLetters {
    /// An idempotent producer (`acks=all`) for `topic`.
    pub fn new(settings: &KafkaSettings, topic: impl Into<String>) -> Result<Self, KafkaError> {
        let producer = settings
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("message.timeout.ms", "30000"),
            ])
            .create()?;
        Ok(Self {
            producer,
            topic: topic.into(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Publishes `dl` (its raw bytes, with the origin and reason as headers) and waits for the
    /// broker's acknowledgement; returns the dead letter's (partition, offset).
    pub async fn send(&self, dl: &DeadLetter) -> Result<(i32, i64), KafkaError> {
        let headers = headers_of(dl);
        let key = dead_letter_key(dl);
        let record = FutureRecord::to(&self.topic)
            .payload(&dl.raw)
            .key(&key)
            .headers(headers);
        self.producer
            .send(record, self.timeout)
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| KafkaError::Delivery {
                topic: self.topic.clone(),
                reason: e.to_string(),
            })
    }
}

/// A dead letter's key: where it came from (`topic/partition`), so one partition's dead letters
/// stay in order.
pub fn dead_letter_key(dl: &DeadLetter) -> String {
    match &dl.origin {
        Origin::Kafka {
            topic, partition, ..
        } => format!("{topic}/{partition}"),
        other => other.to_string(),
    }
}

/// The headers of a dead letter: where it came from and why it was refused.
pub fn headers_of(dl: &DeadLetter) -> OwnedHeaders {
    let mut fields: Vec<(&str, String)> = Vec::with_capacity(4);
    match &dl.origin {
        Origin::Kafka {
            topic,
            partition,
            offset,
        } => {
            fields.push((HEADER_TOPIC, topic.clone()));
            fields.push((HEADER_PARTITION, partition.to_string()));
            fields.push((HEADER_OFFSET, offset.to_string()));
        }
        other => fields.push(("auspex.origin", other.to_string())),
    }
    fields.push((HEADER_REASON, dl.reason.clone()));
    fields.iter().fold(
        OwnedHeaders::new_with_capacity(fields.len()),
        |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_off_loopback_is_flagged_and_user_properties_win() {
        assert!(!KafkaSettings::new("127.0.0.1:9092,localhost:9093").plaintext_off_loopback());
        let mut s = KafkaSettings::new("kafka-0.kafka:9092");
        assert!(s.plaintext_off_loopback());
        s.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        assert!(!s.plaintext_off_loopback());
        s.properties.insert("acks".into(), "1".into());
        let c = s.client_config(&[("acks", "all")]);
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("bootstrap.servers"), Some("kafka-0.kafka:9092"));
    }
}
