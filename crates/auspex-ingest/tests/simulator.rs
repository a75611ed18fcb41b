//! The simulator source: ticks flattened topology-first, `max` respected across ticks, labels
//! passed through.

use auspex_ingest::simulator::SimulatorSource;
use auspex_ingest::{IngestError, Record, Source};
use auspex_sim::{SimConfig, Simulator};

fn config() -> SimConfig {
    SimConfig {
        duration_ms: 2 * 60 * 60 * 1000,
        ..SimConfig::default()
    }
}

#[test]
fn yields_each_tick_topology_then_samples_in_bounded_batches() {
    // The same config replays the same run: compare against the ticks read directly.
    let mut sim = Simulator::new(config()).unwrap();
    let mut expected = Vec::new();
    let mut ticks = 0;
    while let Some(t) = sim.next_tick() {
        ticks += 1;
        expected.extend(t.topology.into_iter().map(Record::Topology));
        expected.extend(t.samples.into_iter().map(Record::Sample));
    }
    assert!(ticks > 0 && !expected.is_empty());

    let mut src = SimulatorSource::new(config()).unwrap();
    let mut got = Vec::new();
    let mut batches = 0;
    // An odd batch size splits ticks.
    while let Some(b) = src.next_batch(7).unwrap() {
        assert!(!b.is_empty() && b.len() <= 7);
        batches += 1;
        got.extend(b);
    }
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "records differ from the simulator's ticks");
    assert_eq!(batches, expected.len().div_ceil(7));
    assert_eq!(src.ticks(), ticks);
    assert!(src.next_batch(7).unwrap().is_none(), "stays ended");

    let mut last = i64::MIN;
    for r in &got {
        let ts = r
            .timestamp_ms()
            .expect("the simulator makes no dead letters");
        assert!(ts >= last);
        last = ts;
    }
    assert_eq!(src.labels(), sim.labels().to_vec());
}

#[test]
fn invalid_config_is_a_simulator_error() {
    let bad = SimConfig {
        interval_ms: 0,
        ..SimConfig::default()
    };
    match SimulatorSource::new(bad) {
        Err(IngestError::Simulator(reason)) => assert!(reason.contains("interval_ms"), "{reason}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("accepted an invalid config"),
    }
}

#[test]
fn a_simulation_written_as_a_directory_replays_identically() {
    use auspex_ingest::{DirectorySource, NdjsonSink, Sink};
    let dir = tempfile::tempdir().unwrap();
    let mut src = SimulatorSource::new(config()).unwrap();
    let records = src.drain().unwrap();
    let mut samples = NdjsonSink::create(dir.path().join("samples.ndjson")).unwrap();
    let mut topology = NdjsonSink::create(dir.path().join("topology.ndjson.gz")).unwrap();
    let mut labels = NdjsonSink::create(dir.path().join("labels.ndjson")).unwrap();
    for r in &records {
        match r {
            Record::Sample(s) => samples.send(s).unwrap(),
            Record::Topology(t) => topology.send(t).unwrap(),
            Record::DeadLetter(_) => unreachable!("the simulator makes no dead letters"),
        }
    }
    for l in src.labels() {
        labels.send(&l).unwrap();
    }
    drop((samples, topology, labels));
    let mut back = DirectorySource::open(dir.path()).unwrap();
    assert_eq!(back.labels(), src.labels());
    let replayed = back.drain().unwrap();
    assert_eq!(replayed.len(), records.len());
    assert!(
        replayed == records,
        "merge by time, topology first, restores the simulator's order"
    );
}
