//! Malformed and schema-invalid messages mixed into a stream on a real broker (tansu): every
//! one reaches the dead-letter topic unchanged, with headers naming its origin and the reason,
//! and every valid one parses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use auspex_ingest::{Origin, Record, parse_line};
use auspex_kafka::testing::Broker;
use auspex_kafka::{
    DeadLetters, HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC, KafkaSettings,
};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The schema fixtures: (file name, bytes, valid?).
fn fixtures() -> Vec<(String, Vec<u8>, bool)> {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../../fixtures/schemas/metric-sample");
    let mut out = Vec::new();
    for (dir, valid) in [("valid", true), ("invalid", false)] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&f).unwrap(), valid));
        }
    }
    out
}

fn consumer(settings: &KafkaSettings, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = settings
        .client_config(&[
            ("group.id", &format!("test-{topic}-{}", std::process::id())),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("session.timeout.ms", "10000"),
            ("max.poll.interval.ms", "20000"),
        ])
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

/// Polls until `n` messages arrived or 60 s passed; hands each to `f`.
fn read(c: &BaseConsumer, n: usize, mut f: impl FnMut(&BorrowedMessage<'_>)) -> usize {
    let (started, mut got) = (Instant::now(), 0);
    while got < n && started.elapsed() < Duration::from_secs(60) {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            f(&m.expect("a message, not an error"));
            got += 1;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_messages_reach_the_dead_letter_topic_with_their_origin() {
    let broker = Broker::start();
    broker.create_topic("samples", 3);
    broker.create_topic("dead-letters", 1);
    let settings = KafkaSettings::new(broker.addr.clone());
    assert!(!settings.plaintext_off_loopback());

    let fixtures = fixtures();
    let producer: FutureProducer = settings
        .client_config(&[("enable.idempotence", "true")])
        .create()
        .unwrap();
    for (name, bytes, _) in &fixtures {
        producer
            .send(
                FutureRecord::to("samples").key(name).payload(bytes),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    // Consume, parse, and send what is refused to the dead-letter topic.
    let dead = DeadLetters::new(&settings, "dead-letters").unwrap();
    let c = consumer(&settings, "samples");
    let mut parsed = Vec::new();
    let mut refused = Vec::new();
    let n = read(&c, fixtures.len(), |m| {
        let origin = Origin::Kafka {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
        };
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        match parse_line(m.payload().unwrap_or_default(), origin) {
            Record::DeadLetter(dl) => refused.push((key, dl)),
            other => parsed.push((key, other)),
        }
    });
    assert_eq!(n, fixtures.len(), "{}", broker.log());
    for (_, dl) in &refused {
        dead.send(dl).await.unwrap();
    }
    let valid: Vec<&str> = fixtures
        .iter()
        .filter(|f| f.2)
        .map(|f| f.0.as_str())
        .collect();
    let mut parsed_names: Vec<&str> = parsed.iter().map(|(k, _)| k.as_str()).collect();
    parsed_names.sort();
    assert_eq!(parsed_names, valid, "every valid sample parses");
    assert!(parsed.iter().all(|(_, r)| matches!(r, Record::Sample(_))));

    // The dead-letter topic: each refused message unchanged, with its origin and reason.
    let by_offset: BTreeMap<(i32, i64), &Vec<u8>> = refused
        .iter()
        .map(|(_, dl)| match &dl.origin {
            Origin::Kafka {
                partition, offset, ..
            } => ((*partition, *offset), &dl.raw),
            other => panic!("origin {other}"),
        })
        .collect();
    let invalid = fixtures.iter().filter(|f| !f.2).count();
    assert_eq!(refused.len(), invalid);
    let dc = consumer(&settings, "dead-letters");
    let mut seen = 0;
    let n = read(&dc, invalid, |m| {
        let h = m.headers().expect("dead letters carry headers");
        let get = |key: &str| {
            h.iter()
                .find(|x| x.key == key)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
                .unwrap_or_else(|| panic!("no header {key}"))
        };
        assert_eq!(get(HEADER_TOPIC), "samples");
        let at = (
            get(HEADER_PARTITION).parse().unwrap(),
            get(HEADER_OFFSET).parse().unwrap(),
        );
        let raw = by_offset
            .get(&at)
            .expect("the origin names a refused message");
        assert_eq!(m.payload().unwrap(), raw.as_slice(), "payload unchanged");
        assert!(!get(HEADER_REASON).is_empty());
        seen += 1;
    });
    assert_eq!((n, seen), (invalid, invalid), "{}", broker.log());
}
