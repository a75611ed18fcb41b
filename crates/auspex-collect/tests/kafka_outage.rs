//! The Kafka output when the broker goes away (a real tansu broker, killed and restarted): samples that librdkafka gives up on are counted and `/readyz` says 503; once
//! the broker is back, the next publish succeeds, `/readyz` recovers and the new samples are on
//! the topic, keyed by node.

use std::time::{Duration, Instant};

use auspex_collect::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use auspex_collect::{CollectConfig, Collector};
use auspex_kafka::KafkaSettings;
use auspex_kafka::testing::Broker;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

mod common;
use common::handle;

fn body(pod: &str, ts: i64) -> Vec<u8> {
    remote_write::encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label::new("__name__", "container_memory_working_set_bytes"),
                Label::new("container", "app"),
                Label::new("namespace", "shop"),
                Label::new("node", "worker-1"),
                Label::new("pod", pod),
            ],
            samples: vec![Sample {
                value: 1e6,
                timestamp: ts,
            }],
        }],
        metadata: vec![],
    })
}

async fn post(url: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn wait_ready(base: &str, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pods of the samples on the topic, from the start, until `pod` is among them (30 s at
/// most); every message is keyed by its node.
fn read_until(broker: &Broker, pod: &str) -> Vec<String> {
    let c: BaseConsumer = KafkaSettings::new(broker.addr.clone())
        .client_config(&[
            ("group.id", &format!("outage-reader-{pod}")),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
        ])
        .create()
        .unwrap();
    c.subscribe(&["samples"]).unwrap();
    let mut pods = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) && !pods.iter().any(|p| p == pod) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let s = auspex_model::MetricSample::from_json(m.payload().unwrap()).unwrap();
            assert_eq!(m.key(), Some(&b"worker-1"[..]));
            pods.push(s.entity.name);
        }
    }
    pods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_turns_readiness_off_and_back_on() {
    // Memory storage: tansu 0.6's SQLite engine panics on an idempotent producer's batch after
    // a restart ("more or less than one row", tansu-storage lite.rs) and then refuses every
    // request, which would test tansu, not collect. The topic is created again after the restart.
    let mut broker = Broker::start();
    broker.create_topic("samples", 1);
    let mut cfg = CollectConfig::default();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.mapping.resolution_ms = 1_000;
    cfg.mapping.flush_after_ms = 200;
    cfg.kafka.brokers = broker.addr.clone();
    cfg.kafka.delivery_timeout_ms = 2_000;
    cfg.kafka
        .properties
        .insert("reconnect.backoff.max.ms".into(), "200".into());
    let collector = Collector::start(cfg, handle()).await.unwrap();
    let base = format!("http://{}", collector.local_addr());
    let url = format!("{base}/api/v1/write");

    assert_eq!(
        post(&url, body("before", auspex_collect::now_ms())).await,
        204
    );
    wait_ready(&base, 200, Duration::from_secs(10)).await;

    broker.stop();
    assert_eq!(
        post(&url, body("during", auspex_collect::now_ms())).await,
        204
    );
    wait_ready(&base, 503, Duration::from_secs(20)).await;

    broker.restart();
    broker.create_topic("samples", 1);
    // Publishes are retried only for new samples: send one until readiness comes back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert_eq!(
            post(&url, body("after", auspex_collect::now_ms())).await,
            204
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let ready = reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status();
        if ready == 200 {
            break;
        }
        if Instant::now() >= deadline {
            let m = reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            panic!(
                "/readyz did not recover; broker log:\n{}\n{m}",
                broker.log()
            );
        }
    }
    collector.stop().await.unwrap();

    // The broker lost the topic's past with its memory (seen above before the outage); here,
    // that samples flow again.
    let pods = tokio::task::block_in_place(|| read_until(&broker, "after"));
    assert!(pods.iter().any(|p| p == "after"), "{pods:?}");
}
