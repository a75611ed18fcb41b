//! `serve` on Kafka: the samples topic in as a consumer group, the topology topic in whole,
//! alerts and dead letters out; at-least-once.
//!
//! One thread runs the loop: poll a batch, apply it to the engine, hand what it derives to the
//! idempotent producer, serve delivery reports, store offsets. Everything is bounded: librdkafka's
//! fetch queue, the producer's queue, and the outputs awaiting acknowledgement — past
//! `max_in_flight` the assigned partitions are paused until the broker has caught up.
//!
//! **At-least-once.** `enable.auto.offset.store=false`: an offset is stored (and auto-committed
//! every `commit_interval_ms`) only when every message before it is done ([`OffsetTracker`]).
//! A sample is done once the tick that scores its slot has run and every output derived from
//! it is acknowledged: an alert holds back the oldest unfinished message of its entity's
//! partition, which is at or before that entity's samples of the tick. A failed delivery is sent
//! again, so nothing derived is lost while the broker is away; the consumer pauses meanwhile.
//!
//! **Restart and rebalance.** On the first message of a newly assigned partition at offset
//! `c > 0`, the loop seeks back `rebuild_messages` and replays up to `c` to rebuild windows and
//! episodes. An alert on an entity whose partition is still replaying is not sent again: the
//! entity's samples of that tick are before the committed offset, and a sample is done only
//! after its tick's alerts were acknowledged. Revoked
//! partitions' entities are forgotten. Offsets never move backwards: only the tracker stores
//! them, and replayed messages are not tracked.
//!
//! **Event time.** The watermark is the smallest newest-timestamp over the assigned partitions
//! that delivered something within `idle_partition_ms` (a partition not heard from yet holds it
//! back for that long). Records wait in a bounded reorder buffer until the watermark passes
//! their slot, so the ticks, and the alerts, are those of one stream in event-time order
//! however the partitions interleave.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use auspex_ingest::{DeadLetter, Origin, Record, parse_line};
use auspex_kafka::offsets::{OffsetTracker, Partition};
use auspex_kafka::{KafkaSettings, dead_letter_key, headers_of};
use auspex_model::{Alert, TimestampMs};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;

use crate::shared::Shared;
use crate::telemetry as t;

/// The `[kafka]` section: where and how `serve` reads and writes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`. Empty: no Kafka, `serve` runs on the embedded default.
    pub brokers: String,
    /// Consumer group of the samples topic; instances in one group split its partitions.
    pub group_id: String,
    /// Metric samples (and optionally topology events), keyed by node.
    pub samples_topic: String,
    /// Topology events (compacted, keyed by entity); every instance reads all of it. Empty:
    /// the graph is built from the samples' own hints (and topology events on the samples topic).
    pub topology_topic: String,
    /// Alerts out, keyed by entity id.
    pub alerts_topic: String,
    /// Messages that could not be parsed or failed validation, unchanged, with origin and
    /// reason headers.
    pub dead_letter_topic: String,
    /// How often stored offsets are committed; duplicates after a crash come from at most
    /// this much consumption.
    pub commit_interval_ms: u64,
    /// Messages per partition re-read before the committed offset to rebuild windows on
    /// assignment (about window length × entities per partition).
    pub rebuild_messages: i64,
    /// Outputs handed to the producer and not yet acknowledged before consumption pauses.
    pub max_in_flight: usize,
    /// Messages applied per lock of the engine.
    pub batch: usize,
    /// A partition silent this long no longer holds the watermark back.
    pub idle_partition_ms: u64,
    /// With no message at all for this long, the last slot is scored (a stream that went
    /// quiet still alerts on what it sent).
    pub idle_flush_ms: u64,
    /// Records (samples, topology events) held until the watermark passes their slot; past
    /// this many the oldest are applied early (a partition far behind the others).
    pub reorder_buffer: usize,
    /// Upper bound on the stop: consumption stops, then the producer gets this long to
    /// deliver what is in flight before the final commit.
    pub drain_timeout_ms: u64,
    /// librdkafka `session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// librdkafka `max.poll.interval.ms` (at least `session_timeout_ms`).
    pub max_poll_interval_ms: u64,
    /// Any librdkafka property, passed through as given to every client (SASL, TLS...):
    /// `security.protocol`, `sasl.mechanisms`, `sasl.username`, `sasl.password`,
    /// `ssl.ca.location`, ... They override auspex's defaults.
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            group_id: "auspex".into(),
            samples_topic: "auspex.samples".into(),
            topology_topic: "auspex.topology".into(),
            alerts_topic: "auspex.alerts".into(),
            dead_letter_topic: "auspex.dead-letters".into(),
            commit_interval_ms: 1000,
            rebuild_messages: 20_000,
            max_in_flight: 10_000,
            batch: 512,
            idle_partition_ms: 30_000,
            idle_flush_ms: 30_000,
            reorder_buffer: 200_000,
            drain_timeout_ms: 10_000,
            session_timeout_ms: 20_000,
            max_poll_interval_ms: 60_000,
            properties: Default::default(),
        }
    }
}

impl KafkaConfig {
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    pub fn settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: self.brokers.clone(),
            properties: self.properties.clone(),
        }
    }

    /// Errors name the key (`kafka.<key>`) and say why.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        for (key, v) in [
            ("group_id", &self.group_id),
            ("samples_topic", &self.samples_topic),
            ("alerts_topic", &self.alerts_topic),
            ("dead_letter_topic", &self.dead_letter_topic),
        ] {
            if v.trim().is_empty() {
                return Err(format!(
                    "kafka.{key}: must not be empty when brokers are set"
                ));
            }
        }
        if self.samples_topic == self.alerts_topic || self.samples_topic == self.dead_letter_topic {
            return Err("kafka.alerts_topic / kafka.dead_letter_topic: must differ from samples_topic (auspex would read its own output)".into());
        }
        for (key, v) in [
            ("commit_interval_ms", self.commit_interval_ms),
            ("max_in_flight", self.max_in_flight as u64),
            ("batch", self.batch as u64),
            ("idle_partition_ms", self.idle_partition_ms),
            ("idle_flush_ms", self.idle_flush_ms),
            ("reorder_buffer", self.reorder_buffer as u64),
            ("session_timeout_ms", self.session_timeout_ms),
        ] {
            if v == 0 {
                return Err(format!("kafka.{key}: must be greater than 0"));
            }
        }
        if self.rebuild_messages < 0 {
            return Err("kafka.rebuild_messages: must not be negative".into());
        }
        if self.max_poll_interval_ms < self.session_timeout_ms {
            return Err(format!(
                "kafka.max_poll_interval_ms: {} is below session_timeout_ms {} (librdkafka refuses that)",
                self.max_poll_interval_ms, self.session_timeout_ms
            ));
        }
        for key in [
            "enable.auto.offset.store",
            "enable.auto.commit",
            "enable.idempotence",
            "group.id",
            "bootstrap.servers",
        ] {
            if self.properties.contains_key(key) {
                return Err(format!(
                    "kafka.properties.{key}: auspex sets this itself (at-least-once depends on it; brokers go in kafka.brokers)"
                ));
            }
        }
        Ok(())
    }
}

/// What a Kafka run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct KafkaStats {
    pub consumed: u64,
    pub replayed: u64,
    pub alerts_sent: u64,
    pub alerts_suppressed_in_replay: u64,
    pub dead_letters_sent: u64,
    pub redeliveries: u64,
    pub pauses: u64,
    pub offsets_stored: u64,
}

/// An output awaiting the broker's acknowledgement.
struct Pending {
    /// The message it derives from (None: nothing to hold back, e.g. topology dead letters).
    from: Option<(Partition, i64)>,
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: Option<OwnedHeaders>,
    /// When the message that produced it was read (alert latency).
    read_at: Instant,
    is_alert: bool,
}

#[derive(Default)]
// Boxed: the producer's delivery opaque is a `Box`, and a retry sends the same box again.
#[allow(clippy::vec_box)]
struct Reports {
    delivered: Vec<Box<Pending>>,
    failed: Vec<(String, Box<Pending>)>,
}

struct ProducerCtx {
    reports: Mutex<Reports>,
}

impl ClientContext for ProducerCtx {}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<Pending>;
    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        let mut r = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => r.delivered.push(pending),
            Err((e, _)) => r.failed.push((e.to_string(), pending)),
        }
    }
}

/// Rebalances, recorded by the callback (which runs inside `poll`) for the loop to act on.
#[derive(Default)]
struct Rebalances {
    assigned: Vec<Partition>,
    revoked: Vec<Partition>,
}

struct ConsumerCtx {
    events: Mutex<Rebalances>,
    samples_topic: String,
}

impl ClientContext for ConsumerCtx {
    /// Consumer lag from librdkafka's statistics (every `statistics.interval.ms`, inside
    /// `poll`): high watermark minus position, summed over the samples topic's assigned
    /// partitions. Reading it costs no request: a `ListOffsets` per partition queued behind the
    /// consumer's long fetch timed out, and librdkafka drops the connection on a timeout,
    /// taking the fetch in flight with it.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(topic) = statistics.topics.get(&self.samples_topic) else {
            return;
        };
        let lag: i64 = topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        metrics::gauge!(t::CONSUMER_LAG, "topic" => self.samples_topic.clone()).set(lag as f64);
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Commit what is stored (only fully acknowledged prefixes) before the partitions
            // go: the next owner starts there. Outputs still in flight are re-derived by it.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(%e, "commit on revoke");
            }
            let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
            ev.revoked.extend(partitions(tpl));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => ev.assigned.extend(partitions(tpl)),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(%e, "rebalance error"),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// One assigned partition's place in event time.
struct Lane {
    assigned_at: Instant,
    last_message: Option<Instant>,
    /// The offset after the last message read from this partition.
    next_offset: Option<i64>,
    newest_ts: Option<TimestampMs>,
    /// Not started: the first message decides whether to rebuild.
    started: bool,
    /// Offsets below this are replayed to rebuild state.
    replay_until: Option<i64>,
    /// After a rebuild: ticks at or before this boundary scored only replayed samples of this
    /// partition, so their alerts were acknowledged before and are not sent again
    /// (`i64::MAX` until the first live message tells where live data starts).
    quiet_until: Option<TimestampMs>,
}

impl Lane {
    fn new() -> Self {
        Lane {
            assigned_at: Instant::now(),
            last_message: None,
            next_offset: None,
            newest_ts: None,
            started: false,
            replay_until: None,
            quiet_until: None,
        }
    }
}

/// The loop's state.
struct Loop<'a> {
    cfg: &'a KafkaConfig,
    shared: &'a Shared,
    consumer: BaseConsumer<ConsumerCtx>,
    topology: Option<BaseConsumer>,
    producer: BaseProducer<ProducerCtx>,
    tracker: OffsetTracker,
    lanes: HashMap<Partition, Lane>,
    /// Which partition an entity's samples last came from (to forget it on revoke).
    owner: HashMap<auspex_model::EntityId, Partition>,
    /// Records waiting for the watermark to pass their slot, oldest first.
    reorder: BinaryHeap<Reverse<Buffered>>,
    seq: u64,
    /// Live messages applied to the engine whose tick has not run yet.
    awaiting_tick: Vec<(Partition, i64, TimestampMs)>,
    #[allow(clippy::vec_box)]
    retry: Vec<Box<Pending>>,
    in_flight: usize,
    paused: bool,
    last_any_message: Instant,
    flushed_since_last_message: bool,
    /// How many partitions were behind when the loop last went quiet (logged once).
    quiet_but_behind: Option<usize>,
    watermark: Option<TimestampMs>,
    stats: KafkaStats,
    alerts: Vec<Alert>,
}

/// A record waiting in the reorder buffer, ordered by (event time, arrival).
struct Buffered {
    ts: TimestampMs,
    seq: u64,
    record: Record,
    /// The live message it came from (None: replayed, or from the topology topic).
    from: Option<(Partition, i64)>,
    /// The samples partition it came from (None: the topology topic).
    lane: Option<Partition>,
}
impl PartialEq for Buffered {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Buffered {}
impl PartialOrd for Buffered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Buffered {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(o.ts, o.seq))
    }
}

/// Runs `serve` on Kafka until `stop` is set, then drains and commits.
pub fn run(shared: &Shared, cfg: &KafkaConfig, stop: Arc<AtomicBool>) -> Result<KafkaStats> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let settings = cfg.settings();
    if settings.plaintext_off_loopback() {
        tracing::warn!(
            brokers = %cfg.brokers,
            "plaintext Kafka to a broker off loopback: samples and alerts cross the network unencrypted (set kafka.properties.\"security.protocol\" = \"SASL_SSL\" or \"SSL\")"
        );
    }
    let session = cfg.session_timeout_ms.to_string();
    let poll_interval = cfg.max_poll_interval_ms.to_string();
    let commit = cfg.commit_interval_ms.to_string();
    let consumer_config = settings.client_config(&[
        ("group.id", &cfg.group_id),
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", &commit),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", &session),
        ("max.poll.interval.ms", &poll_interval),
        ("enable.partition.eof", "false"),
        ("statistics.interval.ms", "5000"),
    ]);
    let consumer: BaseConsumer<ConsumerCtx> = consumer_config
        .create_with_context(ConsumerCtx {
            events: Mutex::new(Rebalances::default()),
            samples_topic: cfg.samples_topic.clone(),
        })
        .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[&cfg.samples_topic])
        .with_context(|| format!("subscribing to kafka.samples_topic {:?}", cfg.samples_topic))?;
    let producer: BaseProducer<ProducerCtx> = settings
        .client_config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "120000"),
            ("queue.buffering.max.messages", "200000"),
        ])
        .create_with_context(ProducerCtx {
            reports: Mutex::new(Reports::default()),
        })
        .context("creating the Kafka producer")?;
    let topology = if cfg.topology_topic.trim().is_empty() {
        None
    } else {
        Some(topology_consumer(cfg, &settings)?)
    };
    shared
        .readiness
        .needs_assignment
        .store(true, Ordering::Relaxed);
    let mut l = Loop {
        cfg,
        shared,
        consumer,
        topology,
        producer,
        tracker: OffsetTracker::new(),
        lanes: HashMap::new(),
        owner: HashMap::new(),
        reorder: BinaryHeap::new(),
        seq: 0,
        awaiting_tick: Vec::new(),
        retry: Vec::new(),
        in_flight: 0,
        paused: false,
        last_any_message: Instant::now(),
        flushed_since_last_message: true,
        quiet_but_behind: None,
        watermark: None,
        stats: KafkaStats::default(),
        alerts: Vec::new(),
    };
    let mut last_gauges = Instant::now() - Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) {
        l.serve_reports();
        l.backpressure();
        let busy = if l.paused {
            // Keep polling (rebalances, heartbeats), fetch nothing.
            l.consumer.poll(Duration::ZERO);
            l.producer.poll(Duration::from_millis(20));
            false
        } else {
            l.consume_batch()?
        };
        l.act_on_rebalances();
        l.consume_topology();
        l.idle_flush();
        if last_gauges.elapsed() > Duration::from_secs(5) {
            l.gauges();
            last_gauges = Instant::now();
        }
        if !busy {
            l.producer.poll(Duration::from_millis(1));
        }
    }
    l.drain();
    Ok(l.stats)
}

/// The partition's high watermark as of librdkafka's last fetch response: no request to the
/// broker, so it answers at once while the broker is unreachable (`None` until a fetch told).
fn cached_high_watermark(consumer: &BaseConsumer<ConsumerCtx>, p: &Partition) -> Option<i64> {
    let topic = std::ffi::CString::new(p.0.as_str()).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle is live for the borrow of `consumer`; librdkafka reads the
    // NUL-terminated `topic` and writes the two integers, keeping none of the pointers.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            p.1,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

fn topology_consumer(cfg: &KafkaConfig, settings: &KafkaSettings) -> Result<BaseConsumer> {
    // No group: every instance reads the whole (compacted) topic from the start.
    let c: BaseConsumer = settings
        .client_config(&[
            ("group.id", &format!("{}-topology-unused", cfg.group_id)),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ])
        .create()
        .context("creating the topology consumer")?;
    let md = c
        .fetch_metadata(Some(&cfg.topology_topic), Duration::from_secs(10))
        .with_context(|| format!("kafka.topology_topic {:?}: metadata", cfg.topology_topic))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)?;
        }
    }
    if tpl.count() == 0 {
        tracing::warn!(topic = %cfg.topology_topic, "the topology topic has no partitions yet; the graph comes from the samples' hints");
    }
    c.assign(&tpl).context("assigning the topology topic")?;
    Ok(c)
}

impl Loop<'_> {
    /// Polls up to `batch` messages and applies them under one lock of the engine. Returns
    /// whether anything came.
    fn consume_batch(&mut self) -> Result<bool> {
        let mut got = 0;
        let mut timeout = Duration::from_millis(50);
        // Messages are taken out of librdkafka before the lock, so HTTP waits only on the apply.
        let mut batch: Vec<(Partition, i64, Vec<u8>, Instant)> = Vec::new();
        while got < self.cfg.batch {
            let Some(m) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%e, "consumer error");
                    break;
                }
            };
            got += 1;
            batch.push((
                (m.topic().to_string(), m.partition()),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
                Instant::now(),
            ));
        }
        // An assignment arrives inside `poll`, before its partitions' first messages: take it
        // up first, so partitions not heard from yet hold the watermark back.
        self.act_on_rebalances();
        if batch.is_empty() {
            return Ok(false);
        }
        self.last_any_message = Instant::now();
        self.flushed_since_last_message = false;
        let mut skip: HashSet<Partition> = HashSet::new();
        let shared = self.shared;
        let mut engine = shared.engine();
        let last_read = batch.last().map_or_else(Instant::now, |b| b.3);
        for (p, offset, payload, read_at) in batch {
            if skip.contains(&p) {
                continue;
            }
            let started = self.lanes.get(&p).is_some_and(|l| l.started);
            // Live data starts at the group's committed offset. The first message read may
            // lie past it (tansu 0.6 answered a fetch from inside a record batch with the
            // next batch): the skipped ones are re-read below and count as live.
            let live_from = if started || self.cfg.rebuild_messages == 0 {
                offset
            } else {
                self.committed(&p).map_or(offset, |c| c.min(offset))
            };
            let lane = self.lanes.entry(p.clone()).or_insert_with(Lane::new);
            if !lane.started {
                lane.started = true;
                if live_from > 0 && self.cfg.rebuild_messages > 0 {
                    // Rebuild: re-read what came before the committed offset.
                    let from = (live_from - self.cfg.rebuild_messages).max(0);
                    lane.replay_until = Some(live_from);
                    lane.quiet_until = Some(TimestampMs::MAX);
                    match self.consumer.seek(
                        &p.0,
                        p.1,
                        Offset::Offset(from),
                        Duration::from_secs(10),
                    ) {
                        Ok(()) => {
                            tracing::info!(topic = %p.0, partition = p.1, from, until = live_from, first_read = offset, "rebuilding windows");
                            skip.insert(p);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(%e, "seek for the rebuild failed; starting cold");
                            lane.replay_until = None;
                            lane.quiet_until = None;
                        }
                    }
                }
            }
            let replay = match lane.replay_until {
                Some(u) if offset < u => true,
                Some(_) => {
                    lane.replay_until = None;
                    false
                }
                None => false,
            };
            lane.last_message = Some(read_at);
            lane.next_offset = Some(offset + 1);
            let origin = Origin::Kafka {
                topic: p.0.clone(),
                partition: p.1,
                offset,
            };
            let record = parse_line(&payload, origin);
            let ts = record.timestamp_ms();
            t::record_in(&record, &p.0);
            if replay {
                self.stats.replayed += 1;
            } else {
                self.stats.consumed += 1;
                self.tracker.consumed(&p, offset);
            }
            if let Some(ts) = ts {
                let lane = self.lanes.get_mut(&p).expect("inserted above");
                if !replay && lane.quiet_until == Some(TimestampMs::MAX) {
                    // The first live sample: slots wholly before it were scored before.
                    let tick = engine.tick_ms();
                    lane.quiet_until = Some(ts.div_euclid(tick) * tick);
                    tracing::info!(topic = %p.0, partition = p.1, offset, ts, quiet_until = ?lane.quiet_until, "rebuilt; live from here");
                }
                lane.newest_ts = Some(lane.newest_ts.map_or(ts, |n| n.max(ts)));
            }
            let from = (!replay).then(|| (p.clone(), offset));
            match record {
                Record::DeadLetter(d) => {
                    engine.apply(Record::DeadLetter(d.clone()));
                    if let Some(from) = from {
                        self.dead_letter(&d, Some(from.clone()), read_at);
                        self.tracker.applied(&from.0, from.1);
                    }
                }
                Record::Sample(s) => {
                    self.owner.insert(s.entity.id(), p.clone());
                    self.buffer(&mut engine, Record::Sample(s), from, Some(p));
                }
                record => self.buffer(&mut engine, record, from, Some(p)),
            }
        }
        let w = self.watermark();
        self.release(&mut engine, w, last_read);
        drop(engine);
        self.store_offsets();
        Ok(true)
    }

    /// The smallest newest-timestamp over partitions that count (see the module docs).
    fn watermark(&self) -> Option<TimestampMs> {
        let idle = Duration::from_millis(self.cfg.idle_partition_ms);
        let mut w: Option<TimestampMs> = None;
        for (p, lane) in &self.lanes {
            let silent = match lane.last_message {
                Some(at) => at.elapsed() > idle,
                None => lane.assigned_at.elapsed() > idle,
            };
            // Silent means nothing written, not nothing read: a partition behind its high
            // watermark (a fetch stalled, the broker away) still holds the watermark back.
            if silent && self.behind(p, lane).is_none() {
                continue;
            }
            let ts = lane.newest_ts?; // heard from recently but no timestamp yet: wait
            w = Some(w.map_or(ts, |w| w.min(ts)));
        }
        w
    }

    /// `(next offset, high watermark)` when the partition has messages written that it has
    /// not read yet, as of librdkafka's last fetch response.
    fn behind(&self, p: &Partition, lane: &Lane) -> Option<(i64, i64)> {
        let next = lane.next_offset?;
        let high = cached_high_watermark(&self.consumer, p)?;
        (high > next).then_some((next, high))
    }

    /// The watermark reached `w`: applies the buffered records of the slots before its
    /// boundary, then runs the tick.
    fn release(
        &mut self,
        engine: &mut crate::engine::Engine,
        w: Option<TimestampMs>,
        read_at: Instant,
    ) {
        let Some(w) = w else {
            return;
        };
        if self.watermark.is_some_and(|x| w <= x) {
            return;
        }
        self.watermark = Some(w);
        metrics::gauge!(t::WATERMARK).set(w as f64 / 1000.0);
        let boundary = w.div_euclid(engine.tick_ms()) * engine.tick_ms();
        // Record by record in event time, as one ordered stream would come: every slot
        // boundary crossed gets its tick.
        while self.reorder.peek().is_some_and(|b| b.0.ts < boundary) {
            let Reverse(b) = self.reorder.pop().expect("peeked");
            if let Some(boundary) = engine.advance(b.ts, &mut self.alerts) {
                self.after_tick(boundary, read_at);
            }
            self.apply_buffered(engine, b);
        }
        if let Some(boundary) = engine.advance(w, &mut self.alerts) {
            self.after_tick(boundary, read_at);
        }
    }

    fn apply_buffered(&mut self, engine: &mut crate::engine::Engine, b: Buffered) {
        engine.apply(b.record);
        if let Some(from) = b.from {
            self.awaiting_tick.push((from.0, from.1, b.ts));
        }
    }

    /// Holds a record until the watermark passes its slot (a late one is applied at once).
    fn buffer(
        &mut self,
        engine: &mut crate::engine::Engine,
        record: Record,
        from: Option<(Partition, i64)>,
        lane: Option<Partition>,
    ) {
        let Some(ts) = record.timestamp_ms() else {
            return;
        };
        self.seq += 1;
        let b = Buffered {
            ts,
            seq: self.seq,
            record,
            from,
            lane,
        };
        let tick = engine.tick_ms();
        if self
            .watermark
            .is_some_and(|w| ts < w.div_euclid(tick) * tick)
        {
            self.apply_buffered(engine, b);
            return;
        }
        self.reorder.push(Reverse(b));
        while self.reorder.len() > self.cfg.reorder_buffer {
            // A partition far behind the others: apply the oldest early rather than grow.
            let Reverse(b) = self.reorder.pop().expect("non-empty");
            self.apply_buffered(engine, b);
        }
    }

    /// Sends a tick's alerts, each holding back its entity's partition, then marks the
    /// samples the tick scored as applied.
    fn after_tick(&mut self, boundary: TimestampMs, read_at: Instant) {
        tracing::trace!(
            boundary,
            alerts = self.alerts.len(),
            done = self.awaiting_tick.len(),
            "tick"
        );
        for a in std::mem::take(&mut self.alerts) {
            let owner = self.owner.get(&a.entity.id());
            // The entity's samples of this tick were replayed (before the committed offset):
            // they were done, so this alert was acknowledged before.
            if owner
                .and_then(|p| self.lanes.get(p))
                .and_then(|l| l.quiet_until)
                .is_some_and(|q| boundary <= q)
            {
                self.stats.alerts_suppressed_in_replay += 1;
                tracing::debug!(id = %a.id, entity = %a.entity.id(), state = ?a.state, boundary, partition = ?owner, "alert of a replayed slot not sent again");
                continue;
            }
            let from = owner.and_then(|p| self.tracker.oldest(p).map(|o| (p.clone(), o)));
            self.send_alert(&a, from, read_at);
        }
        for (p, offset, ts) in std::mem::take(&mut self.awaiting_tick) {
            if ts >= boundary {
                tracing::warn!(?p, offset, ts, boundary, "done before its tick");
            }
            self.tracker.applied(&p, offset);
        }
    }

    fn send_alert(&mut self, a: &Alert, from: Option<(Partition, i64)>, read_at: Instant) {
        tracing::trace!(id = %a.id, entity = %a.entity.id(), state = ?a.state, holds = ?from, "alert");
        t::record_alert(a);
        self.shared.route(a);
        let payload = match serde_json::to_vec(a) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%e, "alert not serialisable");
                return;
            }
        };
        self.produce(Box::new(Pending {
            from,
            topic: self.cfg.alerts_topic.clone(),
            key: a.entity.id().as_str().to_string(),
            payload,
            headers: None,
            read_at,
            is_alert: true,
        }));
    }

    fn dead_letter(&mut self, d: &DeadLetter, from: Option<(Partition, i64)>, read_at: Instant) {
        metrics::counter!(t::DEAD_LETTERS, "source" => source_of(&d.origin)).increment(1);
        tracing::debug!(origin = %d.origin, reason = %d.reason, "dead letter");
        self.produce(Box::new(Pending {
            from,
            topic: self.cfg.dead_letter_topic.clone(),
            key: dead_letter_key(d),
            payload: d.raw.clone(),
            headers: Some(headers_of(d)),
            read_at,
            is_alert: false,
        }));
    }

    /// Hands an output to the producer; when its queue is full, keeps it for a retry.
    fn produce(&mut self, pending: Box<Pending>) {
        if let Some((p, o)) = &pending.from {
            self.tracker.output_sent(p, *o);
        }
        self.in_flight += 1;
        self.send_raw(pending);
    }

    fn send_raw(&mut self, pending: Box<Pending>) {
        let topic = pending.topic.clone();
        let key = pending.key.clone();
        let payload = pending.payload.clone();
        let mut record = BaseRecord::with_opaque_to(&topic, pending)
            .key(&key)
            .payload(&payload);
        if let Some(h) = record.delivery_opaque.headers.clone() {
            record = record.headers(h);
        }
        if let Err((e, record)) = self.producer.send(record) {
            tracing::debug!(%e, "producer queue full; retrying");
            self.retry.push(record.delivery_opaque);
        }
    }

    /// Serves delivery reports: acknowledged outputs release offsets; failed ones go again.
    fn serve_reports(&mut self) {
        self.producer.poll(Duration::ZERO);
        let reports = {
            let ctx = self.producer.context();
            let mut r = ctx.reports.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *r)
        };
        for p in reports.delivered {
            self.in_flight -= 1;
            if p.is_alert {
                self.stats.alerts_sent += 1;
                metrics::histogram!(t::ALERT_LATENCY).record(p.read_at.elapsed().as_secs_f64());
            } else {
                self.stats.dead_letters_sent += 1;
            }
            if let Some((part, o)) = &p.from {
                self.tracker.output_acked(part, *o);
            }
        }
        for (e, p) in reports.failed {
            // Not lost: the offset it holds back stays unstored until it is delivered.
            tracing::warn!(error = %e, topic = %p.topic, "delivery failed; sending again");
            self.stats.redeliveries += 1;
            self.retry.push(p);
        }
        for p in std::mem::take(&mut self.retry) {
            self.send_raw(p);
        }
        self.store_offsets();
    }

    /// The group's committed offset of `p`, if it has one (a request to the coordinator, once
    /// per partition taken up).
    fn committed(&self, p: &Partition) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.0, p.1);
        match self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
        {
            Ok(got) => got.elements().first().and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            }),
            Err(e) => {
                tracing::warn!(%e, topic = %p.0, partition = p.1, "reading the committed offset");
                None
            }
        }
    }

    fn store_offsets(&mut self) {
        let mut tpl = TopicPartitionList::new();
        for (p, lane) in &self.lanes {
            if !lane.started {
                continue;
            }
            if let Some(next) = self.tracker.storable(p)
                && tpl
                    .add_partition_offset(&p.0, p.1, Offset::Offset(next))
                    .is_err()
            {
                continue;
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.store_offsets(&tpl) {
            Ok(()) => {
                tracing::trace!(?tpl, watermark = ?self.watermark, "offsets stored");
                self.stats.offsets_stored += 1;
                metrics::counter!(t::OFFSETS_STORED).increment(1);
            }
            // A partition revoked meanwhile: its next owner starts from the last commit.
            Err(e) => tracing::debug!(%e, "offset store"),
        }
    }

    /// Pauses the assigned partitions while too much output awaits acknowledgement.
    fn backpressure(&mut self) {
        let max = self.cfg.max_in_flight;
        let want_pause = self.in_flight >= max || !self.retry.is_empty();
        let want_resume = self.in_flight <= max / 2 && self.retry.is_empty();
        if !self.paused && want_pause {
            if let Ok(a) = self.consumer.assignment()
                && self.consumer.pause(&a).is_ok()
            {
                self.paused = true;
                self.stats.pauses += 1;
                metrics::gauge!(t::PAUSED).set(1.0);
                tracing::info!(
                    in_flight = self.in_flight,
                    "output is slow: consumption paused"
                );
            }
        } else if self.paused && want_resume {
            if let Ok(a) = self.consumer.assignment() {
                let _ = self.consumer.resume(&a);
            }
            self.paused = false;
            metrics::gauge!(t::PAUSED).set(0.0);
            // Paused partitions did not go silent: don't let the pause exclude them.
            let now = Instant::now();
            for lane in self.lanes.values_mut() {
                if lane.last_message.is_some() {
                    lane.last_message = Some(now);
                }
            }
            tracing::info!("consumption resumed");
        }
    }

    fn act_on_rebalances(&mut self) {
        let ev = {
            let ctx = self.consumer.context();
            let mut e = ctx.events.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *e)
        };
        if ev.assigned.is_empty() && ev.revoked.is_empty() {
            return;
        }
        if !ev.revoked.is_empty() {
            let revoked: HashSet<Partition> = ev.revoked.iter().cloned().collect();
            let gone: Vec<auspex_model::EntityId> = self
                .owner
                .iter()
                .filter(|(_, p)| revoked.contains(*p))
                .map(|(id, _)| id.clone())
                .collect();
            let mut engine = self.shared.engine();
            for id in &gone {
                engine.forget(id);
                self.owner.remove(id);
            }
            drop(engine);
            for p in &revoked {
                self.tracker.revoke(p);
                self.lanes.remove(p);
            }
            // Their buffered records and unfinished messages are the next owner's now.
            let kept: Vec<Reverse<Buffered>> = std::mem::take(&mut self.reorder)
                .into_vec()
                .into_iter()
                .filter(|b| !b.0.lane.as_ref().is_some_and(|l| revoked.contains(l)))
                .collect();
            self.reorder = kept.into();
            self.awaiting_tick.retain(|(p, _, _)| !revoked.contains(p));
            if self.lanes.is_empty() {
                // Nothing left: event time starts again with the next assignment, whose
                // rebuild replays older samples and must tick through them.
                self.watermark = None;
                self.reorder.clear();
                self.shared.engine().reset_clock();
            }
            tracing::info!(
                partitions = revoked.len(),
                entities = gone.len(),
                "partitions revoked; their entities forgotten"
            );
        }
        for p in ev.assigned {
            self.lanes.entry(p).or_insert_with(Lane::new);
        }
        self.paused = false; // a new assignment starts unpaused
        let n = self.lanes.len();
        metrics::gauge!(t::ASSIGNED_PARTITIONS).set(n as f64);
        self.shared
            .readiness
            .assigned
            .store(n > 0, Ordering::Relaxed);
        tracing::info!(partitions = n, "assignment changed");
    }

    fn consume_topology(&mut self) {
        let Some(c) = &self.topology else {
            return;
        };
        let mut got: Vec<(Record, Instant)> = Vec::new();
        while got.len() < self.cfg.batch {
            match c.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    let origin = Origin::Kafka {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                    };
                    got.push((
                        parse_line(m.payload().unwrap_or_default(), origin),
                        Instant::now(),
                    ));
                }
                Some(Err(e)) => {
                    tracing::warn!(%e, "topology consumer error");
                    break;
                }
                None => break,
            }
        }
        if got.is_empty() {
            return;
        }
        let shared = self.shared;
        let mut engine = shared.engine();
        for (r, read_at) in got {
            t::record_in(&r, &self.cfg.topology_topic);
            match r {
                Record::Topology(e) => self.buffer(&mut engine, Record::Topology(e), None, None),
                Record::Sample(s) => {
                    tracing::debug!(entity = %s.entity.id(), "a sample on the topology topic is ignored")
                }
                Record::DeadLetter(d) => {
                    engine.apply(Record::DeadLetter(d.clone()));
                    // Not tracked: the topology topic is re-read from the start on restart.
                    self.dead_letter(&d, None, read_at);
                }
            }
        }
    }

    /// The stream went quiet: score its last slot.
    ///
    /// Quiet means the end of what was written, not that nothing arrives: while a partition
    /// is behind its high watermark (the broker is unreachable, a fetch stalls), the slots it
    /// has yet to deliver are not scored early, or its samples would come in after their
    /// ticks and never be scored.
    fn idle_flush(&mut self) {
        if self.flushed_since_last_message
            || self.paused
            || self.last_any_message.elapsed() < Duration::from_millis(self.cfg.idle_flush_ms)
        {
            return;
        }
        let behind: Vec<(i32, i64, i64)> = self
            .lanes
            .iter()
            .filter_map(|(p, l)| self.behind(p, l).map(|(next, high)| (p.1, next, high)))
            .collect();
        if !behind.is_empty() {
            if self.quiet_but_behind != Some(behind.len()) {
                tracing::debug!(
                    ?behind,
                    "quiet, but partitions are behind their high watermark (partition, next, high): not the end of the stream"
                );
                self.quiet_but_behind = Some(behind.len());
            }
            return;
        }
        self.quiet_but_behind = None;
        self.flushed_since_last_message = true;
        let shared = self.shared;
        let mut engine = shared.engine();
        let Some(newest) = self.lanes.values().filter_map(|l| l.newest_ts).max() else {
            return;
        };
        let w = newest + engine.tick_ms();
        tracing::debug!(
            watermark = w,
            lanes = ?self.lanes.iter().map(|(p, l)| (p.1, l.newest_ts)).collect::<Vec<_>>(),
            "the stream went quiet: scoring its last slot"
        );
        self.release(&mut engine, Some(w), Instant::now());
        drop(engine);
        self.store_offsets();
    }

    fn gauges(&self) {
        let engine = self.shared.engine();
        metrics::gauge!(t::ENTITIES).set(engine.tracked_entities() as f64);
        metrics::gauge!(t::GRAPH_VERTICES).set(engine.graph().len() as f64);
        metrics::gauge!(t::GRAPH_EDGES).set(engine.graph().edge_count() as f64);
        metrics::gauge!(t::ALERTS_ACTIVE).set(engine.active_alerts().len() as f64);
        drop(engine);
        metrics::gauge!(t::PRODUCER_IN_FLIGHT).set(self.in_flight as f64);
    }

    /// SIGTERM: stop consuming, deliver what is in flight (bounded), store, commit.
    fn drain(&mut self) {
        self.shared
            .readiness
            .draining
            .store(true, Ordering::Relaxed);
        if let Ok(a) = self.consumer.assignment() {
            let _ = self.consumer.pause(&a);
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.drain_timeout_ms);
        while (self.in_flight > 0 || !self.retry.is_empty()) && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(20));
            self.serve_reports();
        }
        if self.in_flight > 0 {
            tracing::warn!(
                in_flight = self.in_flight,
                "drain timed out: these outputs' messages stay uncommitted and are read again on restart"
            );
        }
        self.store_offsets();
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%e, "final commit");
        }
        let _ = self
            .producer
            .flush(Duration::from_millis(self.cfg.drain_timeout_ms / 4 + 1));
        self.consumer.unsubscribe();
        tracing::info!(stats = ?self.stats, "kafka loop stopped");
    }
}

fn source_of(o: &Origin) -> String {
    match o {
        Origin::Kafka { topic, .. } => topic.clone(),
        other => other.to_string(),
    }
}

/// Hands `record` to `producer`, waiting while its queue is full; serves delivery reports.
pub fn send<C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> Result<()>
where
    C: ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e).context("producing"),
        }
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

/// The topic, key and payload a record is published with (see [`publish`]): samples keyed
/// by node on `samples_topic`, topology events keyed by subject on `topology_topic` (the
/// samples topic when that is empty). Invalid records are refused.
pub fn message_of<'a>(
    r: &Record,
    samples_topic: &'a str,
    topology_topic: &'a str,
) -> Result<(&'a str, String, Vec<u8>)> {
    Ok(match r {
        Record::Sample(s) => {
            let key = match (&s.entity.node, s.entity.kind) {
                (_, auspex_model::EntityKind::Node) => s.entity.name.clone(),
                (Some(node), _) => node.clone(),
                (None, _) => s.entity.id().as_str().to_string(),
            };
            (samples_topic, key, serde_json::to_vec(s)?)
        }
        Record::Topology(e) => {
            let topic = if topology_topic.is_empty() {
                samples_topic
            } else {
                topology_topic
            };
            (topic, e.change.key(), serde_json::to_vec(e)?)
        }
        Record::DeadLetter(d) => {
            anyhow::bail!("refusing to publish an invalid record: {}", d.reason)
        }
    })
}

/// Publishes a stream of records to Kafka the way collectors should: samples keyed by the node
/// they run on (pods and containers by their node, nodes by name, others by entity id) on
/// `samples_topic`; topology events keyed by their subject on `topology_topic` (or on the
/// samples topic when that is empty). Returns (samples, topology events) sent, after every
/// one is acknowledged.
pub fn publish(
    settings: &KafkaSettings,
    samples_topic: &str,
    topology_topic: &str,
    records: impl IntoIterator<Item = Record>,
) -> Result<(u64, u64)> {
    let producer: BaseProducer = settings
        .client_config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("queue.buffering.max.messages", "500000"),
        ])
        .create()
        .context("creating the Kafka producer")?;
    let (mut n, mut m) = (0u64, 0u64);
    for r in records {
        let (topic, key, payload) = message_of(&r, samples_topic, topology_topic)?;
        match r {
            Record::Sample(_) => n += 1,
            _ => m += 1,
        }
        send(&producer, BaseRecord::to(topic).key(&key).payload(&payload))?;
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the broker to acknowledge what was published")?;
    Ok((n, m))
}
