//! Training time of the hybrid ensemble on a small simulator data set, and batched inference
//! throughput (entity-windows per second) of each branch and of the whole ensemble on the CPU
//! (flex) backend, for one scoring tick of a larger simulated cluster.
//!
//! `cargo bench -p auspex-hybrid -- --quick`. Sample sizes are at criterion's minimum: a
//! training run takes seconds.

use std::hint::black_box;
use std::time::Instant;

use auspex_hybrid::{Branch, BranchTimings, HybridConfig, ScoreInput, train};
use auspex_ingest::simulator::SimulatorSource;
use auspex_nn::NnDevice;
use auspex_sim::SimConfig;
use auspex_train::{Dataset, build};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Every branch, with short fits so one training takes seconds.
fn config() -> HybridConfig {
    let mut c = HybridConfig::default().with_branches(Branch::ALL.to_vec());
    c.gbdt.iterations = 40;
    c.negatives_keep = 0.15;
    c.min_positives = 5;
    c.nn = c.nn.clone().with_max_epochs(4).with_patience(2);
    c.seq_nn = c.seq_nn.clone().with_max_epochs(2).with_patience(1);
    c.seq_max_rows = 3_000;
    c.gnn_nn = c.gnn_nn.clone().with_max_epochs(4).with_patience(2);
    c.gnn_max_snapshots = 200;
    c.meta.epochs = 100;
    c
}

fn sim(seed: u64, minutes: u64, nodes: usize, services: usize) -> SimConfig {
    SimConfig {
        seed,
        duration_ms: minutes * 60_000,
        fault_rate_per_hour: 6.0,
        warmup_ms: 20 * 60_000,
        nodes,
        services,
        ..SimConfig::default()
    }
}

fn dataset(sim: SimConfig, config: &HybridConfig) -> Dataset {
    build(&mut SimulatorSource::new(sim).unwrap(), &config.dataset).unwrap()
}

fn hybrid(c: &mut Criterion) {
    let config = config();
    // Training: 2 hours of the default cluster (6 nodes, 10 services).
    let small = dataset(sim(1, 120, 6, 10), &config);
    let started = Instant::now();
    let model = train(&small, &config, NnDevice::Cpu, &mut |_| {}).unwrap();
    eprintln!(
        "training data: {} rows; one training run {:.1} s",
        small.len(),
        started.elapsed().as_secs_f64()
    );
    let mut g = c.benchmark_group("train_2h_sim");
    g.sample_size(10);
    g.bench_function("all_branches", |b| {
        b.iter(|| black_box(train(&small, &config, NnDevice::Cpu, &mut |_| {}).unwrap()))
    });
    g.finish();

    // Inference: the last tick of 15 minutes of a larger cluster (40 nodes, 120 services).
    let big = dataset(sim(2, 15, 40, 120), &config);
    let last = *big.tick_at_ms.last().unwrap();
    let rows: Vec<usize> = (0..big.len())
        .filter(|&i| big.tick_at_ms[i] == last)
        .collect();
    let mut tick = big.select(&rows);
    tick.snapshots.retain(|s| s.tick_ms == last);
    assert_eq!(tick.snapshots.len(), 1, "one snapshot per tick");
    let snapshot = &tick.snapshots[0].graph;
    let n = tick.len();
    let seq = tick.sequences.as_ref().unwrap();
    let gnn = model.gnn_rows(&tick).unwrap();
    let input = ScoreInput {
        n,
        features: &tick.features,
        context: &tick.context,
        sequences: Some((&seq.values, &seq.mask)),
        gnn: gnn.as_deref(),
    };
    eprintln!(
        "inference: {n} entity-windows in one tick, graph of {} nodes and {} edges",
        snapshot.len(),
        snapshot.edge_count()
    );
    let mut g = c.benchmark_group("inference_one_tick");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    for branch in Branch::ALL {
        if branch == Branch::Gnn {
            // One forward pass over the whole graph, mapped to the scored rows.
            g.bench_function("gnn", |b| {
                b.iter(|| black_box(model.gnn_rows(&tick).unwrap()))
            });
            continue;
        }
        g.bench_function(branch.name(), |b| {
            b.iter(|| black_box(model.branch_probabilities(branch, &input).unwrap()))
        });
    }
    // The meta-learners alone, over the tick's branch scores (every branch, the GNN's too).
    let branch = model
        .branch_scores(&ScoreInput {
            gnn: gnn.as_deref(),
            ..input
        })
        .unwrap();
    g.bench_function("meta", |b| {
        b.iter(|| {
            black_box(
                model
                    .combine_timed(
                        branch.clone(),
                        &tick.context,
                        n,
                        &mut BranchTimings::default(),
                    )
                    .unwrap(),
            )
        })
    });
    // The whole model per tick: the GNN over the graph, every branch, the meta-learners; with
    // all six branches, and with the default set (trained the same way).
    let default_config = HybridConfig {
        branches: Branch::DEFAULT.to_vec(),
        ..config.clone()
    };
    let default_model = train(&small, &default_config, NnDevice::Cpu, &mut |_| {}).unwrap();
    for (name, m) in [
        ("ensemble_default", &default_model),
        ("ensemble_all", &model),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let gnn = m.gnn_rows(&tick).unwrap();
                let input = ScoreInput {
                    gnn: gnn.as_deref(),
                    ..input
                };
                black_box(m.score_inputs(&input).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, hybrid);
criterion_main!(benches);
