//! A 10,000-pod cluster builds and ticks.

use auspex_model::EntityKind;
use auspex_sim::{SimConfig, Simulator};

#[test]
fn ten_thousand_pods() {
    let config = SimConfig {
        nodes: 300,
        services: 1000,
        replicas: 10,
        node_cpu_cores: 48.0,
        node_memory_bytes: 192 << 30,
        duration_ms: 2 * 3_600_000,
        warmup_ms: 0,
        fault_rate_per_hour: 10.0,
        ..SimConfig::default()
    };
    let started = std::time::Instant::now();
    let mut sim = Simulator::new(config).unwrap();
    let built = started.elapsed();
    assert!(!sim.labels().is_empty(), "faults are planned at scale too");
    for i in 0..3 {
        let t = std::time::Instant::now();
        let tick = sim.next_tick().unwrap();
        let count = |k| tick.samples.iter().filter(|s| s.entity.kind == k).count();
        assert_eq!(count(EntityKind::Pod), 10_000);
        assert_eq!(count(EntityKind::Service), 1000);
        assert_eq!(count(EntityKind::Node), 300);
        if i == 0 {
            assert!(tick.topology.len() > 30_000);
        }
        eprintln!("tick {i}: {:?}", t.elapsed());
    }
    eprintln!("built in {built:?}");
}
