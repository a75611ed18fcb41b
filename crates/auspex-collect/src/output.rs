//! Where samples go: the samples topic (the idempotent producer, `acks=all`, keyed by node,
//! else entity id) or NDJSON on stdout or a file. Publishing waits for Kafka's
//! acknowledgements, so a slow broker slows the flusher and, through the mapper's group limit,
//! the remote-write receiver (503: Prometheus retries from its WAL) instead of growing memory.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use auspex_kafka::KafkaSettings;
use auspex_model::{MetricSample, TopologyEvent};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::{CollectConfig, KafkaSection};
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("kafka.brokers = {brokers:?}: cannot create the producer: {source}")]
    Producer { brokers: String, source: KafkaError },
    #[error("output.path = {path:?}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("{failed} of {total} samples were not delivered to {topic}: {reason}")]
    Delivery {
        topic: String,
        failed: usize,
        total: usize,
        reason: String,
    },
    #[error("writing NDJSON: {0}")]
    Write(std::io::Error),
}

/// Batches in a row with no sample delivered before the producer is recreated.
const RECREATE_AFTER_FAILED_BATCHES: u32 = 3;

/// The partitioning key: the node, so one node's samples stay in order on one partition.
pub fn key_of(sample: &MetricSample) -> String {
    match (&sample.entity.node, sample.entity.kind) {
        (Some(node), _) => node.clone(),
        (None, auspex_model::EntityKind::Node) => sample.entity.name.clone(),
        (None, _) => sample.entity.id().to_string(),
    }
}

/// What the output publishes: metric samples to the samples topic, topology events to the
/// topology topic.
pub trait Outgoing: serde::Serialize {
    /// The Kafka message key.
    fn key(&self) -> String;
    /// The topic, from the `[kafka]` section.
    fn topic(k: &KafkaSection) -> &str;
    /// Counters of what was delivered and what failed.
    const PUBLISHED: &'static str;
    const FAILED: &'static str;
}

impl Outgoing for MetricSample {
    fn key(&self) -> String {
        key_of(self)
    }
    fn topic(k: &KafkaSection) -> &str {
        &k.samples_topic
    }
    const PUBLISHED: &'static str = telemetry::SAMPLES_PUBLISHED;
    const FAILED: &'static str = telemetry::PUBLISH_FAILED;
}

impl Outgoing for TopologyEvent {
    /// What the event is about, so a compacted topic keeps the latest word on each entity and
    /// edge.
    fn key(&self) -> String {
        self.change.key()
    }
    fn topic(k: &KafkaSection) -> &str {
        &k.topology_topic
    }
    const PUBLISHED: &'static str = telemetry::TOPOLOGY_PUBLISHED;
    const FAILED: &'static str = telemetry::TOPOLOGY_FAILED;
}

pub enum Output {
    Kafka {
        /// Replaced when librdkafka reports a fatal error (the idempotent producer can enter
        /// one after deliveries time out): a fatal producer never sends again.
        producer: Mutex<FutureProducer>,
        config: rdkafka::ClientConfig,
        /// Batches in a row of which no sample was delivered.
        failures: AtomicU32,
        brokers: String,
        /// The topics (and the rest of the `[kafka]` section).
        section: KafkaSection,
        timeout: Duration,
    },
    Ndjson(Mutex<Box<dyn Write + Send>>),
}

impl Output {
    pub fn open(config: &CollectConfig) -> Result<Output, OutputError> {
        if config.kafka.enabled() {
            return Self::kafka(&config.kafka);
        }
        let w: Box<dyn Write + Send> = if config.output.path == "-" {
            Box::new(std::io::stdout())
        } else {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.output.path)
                .map_err(|source| OutputError::File {
                    path: config.output.path.clone(),
                    source,
                })?;
            Box::new(std::io::BufWriter::new(f))
        };
        Ok(Output::Ndjson(Mutex::new(w)))
    }

    fn kafka(k: &KafkaSection) -> Result<Output, OutputError> {
        let settings = KafkaSettings {
            brokers: k.brokers.clone(),
            properties: k.properties.clone(),
        };
        if settings.plaintext_off_loopback() {
            tracing::warn!(
                brokers = %k.brokers,
                "samples go to Kafka in plaintext: set kafka.properties.security.protocol"
            );
        }
        let timeout = k.delivery_timeout_ms.to_string();
        let mut cfg = settings.client_config(&[
            ("message.timeout.ms", &timeout),
            ("linger.ms", "20"),
            ("compression.type", "zstd"),
        ]);
        // Set after the user's properties, which validation keeps from naming them.
        cfg.set("enable.idempotence", "true").set("acks", "all");
        let producer: FutureProducer = cfg.create().map_err(|source| OutputError::Producer {
            brokers: k.brokers.clone(),
            source,
        })?;
        Ok(Output::Kafka {
            producer: Mutex::new(producer),
            config: cfg,
            failures: AtomicU32::new(0),
            brokers: k.brokers.clone(),
            section: k.clone(),
            timeout: Duration::from_millis(k.delivery_timeout_ms),
        })
    }

    /// Writes `samples` (metric samples or topology events); for Kafka, returns once every one
    /// is acknowledged or has failed.
    pub async fn publish<T: Outgoing>(&self, samples: &[T]) -> Result<(), OutputError> {
        if samples.is_empty() {
            return Ok(());
        }
        match self {
            Output::Ndjson(w) => {
                let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                for s in samples {
                    serde_json::to_writer(&mut *w, s).map_err(|e| OutputError::Write(e.into()))?;
                    w.write_all(b"\n").map_err(OutputError::Write)?;
                }
                w.flush().map_err(OutputError::Write)?;
                metrics::counter!(T::PUBLISHED).increment(samples.len() as u64);
                Ok(())
            }
            Output::Kafka {
                producer: slot,
                config,
                failures,
                brokers,
                section,
                timeout,
            } => {
                let producer = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let result = Self::send_all(&producer, T::topic(section), *timeout, samples).await;
                let all_failed = matches!(
                    &result,
                    Err(OutputError::Delivery { failed, total, .. }) if failed == total
                );
                let streak = if all_failed {
                    failures.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    failures.store(0, Ordering::Relaxed);
                    0
                };
                let fatal = producer.client().fatal_error();
                // A fatal producer never sends again; and one whose every delivery failed for
                // several batches in a row may hold a producer id the broker no longer accepts
                // (seen with tansu after a restart): a fresh producer gets a new id.
                if fatal.is_some() || streak >= RECREATE_AFTER_FAILED_BATCHES {
                    tracing::error!(?fatal, streak, "recreating the Kafka producer");
                    failures.store(0, Ordering::Relaxed);
                    match config.create::<FutureProducer>() {
                        Ok(p) => *slot.lock().unwrap_or_else(|p| p.into_inner()) = p,
                        Err(source) => {
                            return Err(OutputError::Producer {
                                brokers: brokers.clone(),
                                source,
                            });
                        }
                    }
                }
                result
            }
        }
    }

    async fn send_all<T: Outgoing>(
        producer: &FutureProducer,
        topic: &str,
        timeout: Duration,
        samples: &[T],
    ) -> Result<(), OutputError> {
        let mut pending = Vec::with_capacity(samples.len());
        let mut failed = 0usize;
        let mut reason = String::new();
        for s in samples {
            let payload = match serde_json::to_vec(s) {
                Ok(p) => p,
                Err(e) => {
                    failed += 1;
                    reason = e.to_string();
                    continue;
                }
            };
            let key = s.key();
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let record = FutureRecord::to(topic).key(&key).payload(&payload);
                match producer.send_result(record) {
                    Ok(f) => {
                        pending.push(f);
                        break;
                    }
                    // librdkafka's queue is full: wait for deliveries to drain it.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err((e, _)) => {
                        failed += 1;
                        reason = e.to_string();
                        break;
                    }
                }
            }
        }
        for f in pending {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    failed += 1;
                    reason = e.to_string();
                }
                Err(_) => {
                    failed += 1;
                    reason = "the producer was dropped".into();
                }
            }
        }
        let ok = samples.len() - failed;
        metrics::counter!(T::PUBLISHED).increment(ok as u64);
        if failed > 0 {
            metrics::counter!(T::FAILED).increment(failed as u64);
            return Err(OutputError::Delivery {
                topic: topic.to_string(),
                failed,
                total: samples.len(),
                reason,
            });
        }
        Ok(())
    }

    /// Waits (bounded) for anything still queued.
    pub fn close(&self, wait: Duration) {
        match self {
            Output::Kafka { producer, .. } => {
                let producer = producer.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if let Err(e) = producer.flush(wait) {
                    tracing::warn!(%e, "samples still queued for Kafka at shutdown");
                }
            }
            Output::Ndjson(w) => {
                let _ = w.lock().unwrap_or_else(|p| p.into_inner()).flush();
            }
        }
    }
}
