//! `auspex simulate --brokers`: the simulator as a load generator for a running `serve`,
//! against a real Kafka-protocol broker (tansu, started here): every record of the seed's
//! stream arrives once, samples keyed by node on the samples topic and topology events on
//! theirs; `--rate` paces the producer; a malformed `--kafka-property` stops it with a message.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use auspex_kafka::KafkaSettings;
use auspex_kafka::testing::Broker;
use auspex_model::{EntityKind, MetricSample};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

const SIM: [&str; 6] = [
    "--seed",
    "5",
    "--set",
    "duration_ms=1200000",
    "--set",
    "warmup_ms=0",
];

/// Reads `topic` from the start until `n` messages arrived or 60 s passed: (key, payload).
fn read(broker: &Broker, topic: &str, n: usize) -> Vec<(String, serde_json::Value)> {
    let c: BaseConsumer = KafkaSettings::new(broker.addr.clone())
        .client_config(&[
            ("group.id", &format!("reader-{topic}")),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
        ])
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && started.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            got.push((key, serde_json::from_slice(m.payload().unwrap()).unwrap()));
        }
    }
    // Anything beyond `n` would be a duplicate.
    while let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
        got.push((
            String::new(),
            serde_json::from_slice(m.payload().unwrap()).unwrap(),
        ));
    }
    got
}

#[test]
fn simulate_produces_the_seeds_stream_to_kafka_at_the_given_rate() {
    let broker = Broker::start();
    broker.create_topic("s", 3);
    broker.create_topic("t", 1);
    // The same seed written to stdout: what the broker must end up holding.
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args(["simulate", "--stdout"])
        .args(SIM)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (samples, events): (Vec<_>, Vec<_>) = expected
        .into_iter()
        .partition(|v| v.get("metrics").is_some());
    assert!(samples.len() > 1000 && !events.is_empty());

    let rate = 4000.0;
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args([
            "simulate",
            "--brokers",
            &broker.addr,
            "--samples-topic",
            "s",
        ])
        .args(["--topology-topic", "t", "--rate", "4000"])
        .args(SIM)
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("produced {} samples to s", samples.len())),
        "{stderr}"
    );
    // Paced: no faster than the rate asked for (a lower bound only).
    let records = (samples.len() + events.len()) as f64;
    assert!(
        took >= 0.9 * records / rate,
        "{records} records at {rate}/s in {took:.2} s"
    );

    let got = read(&broker, "s", samples.len());
    assert_eq!(got.len(), samples.len(), "samples arrive once each");
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for s in &samples {
        *want.entry(s.to_string()).or_default() += 1;
    }
    let mut have: BTreeMap<String, usize> = BTreeMap::new();
    for (key, v) in &got {
        *have.entry(v.to_string()).or_default() += 1;
        // Keyed by node, so one node's samples (its own and its pods') share a partition.
        let s: MetricSample = serde_json::from_value(v.clone()).unwrap();
        match s.entity.kind {
            EntityKind::Node => assert_eq!(key, &s.entity.name, "{v}"),
            EntityKind::Pod => assert_eq!(Some(key), s.entity.node.as_ref(), "{v}"),
            _ => {}
        }
    }
    assert_eq!(have, want, "the broker holds exactly the seed's samples");
    let got = read(&broker, "t", events.len());
    assert_eq!(got.len(), events.len(), "topology events arrive once each");

    // A malformed property stops it before producing, saying which.
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args([
            "simulate",
            "--brokers",
            &broker.addr,
            "--kafka-property",
            "acks",
        ])
        .args(SIM)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--kafka-property \"acks\": expected KEY=VALUE"),
        "{stderr}"
    );
}
