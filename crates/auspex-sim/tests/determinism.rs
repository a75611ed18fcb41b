//! Same seed, same bytes; another seed, other bytes.

use auspex_sim::{SimConfig, Simulator};

fn bytes(config: SimConfig) -> Vec<u8> {
    let mut sim = Simulator::new(config).unwrap();
    let mut out = serde_json::to_vec(sim.labels()).unwrap();
    while let Some(tick) = sim.next_tick() {
        for e in &tick.topology {
            serde_json::to_writer(&mut out, e).unwrap();
            out.push(b'\n');
        }
        for s in &tick.samples {
            serde_json::to_writer(&mut out, s).unwrap();
            out.push(b'\n');
        }
    }
    out
}

fn short(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        duration_ms: 4 * 3_600_000,
        warmup_ms: 1_800_000,
        fault_rate_per_hour: 4.0,
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_same_bytes() {
    let a = bytes(short(11));
    let b = bytes(short(11));
    assert!(a.len() > 1_000_000);
    assert!(a == b, "two runs of one config differ");
}

#[test]
fn another_seed_other_bytes() {
    assert_ne!(bytes(short(11)), bytes(short(12)));
}

#[test]
fn config_round_trips_through_json() {
    let c = short(3);
    let back: SimConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(bytes(back), bytes(c));
}
