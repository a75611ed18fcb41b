//! Batched inference throughput per branch on the CPU (flex) backend, at batch 1024.
//!
//! `cargo bench -p auspex-nn --bench branches -- lstm`

use std::hint::black_box;

use auspex_nn::{
    GnnConfig, GnnModel, GraphSnapshot, LstmConfig, LstmModel, MlpConfig, MlpModel, NnDevice,
    Sequences, Tabular, TcnConfig, TcnModel,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 1024;
const T: usize = 32;
const M: usize = 16;
const D: usize = 48;

fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn branches(c: &mut Criterion) {
    let cpu = NnDevice::Cpu;
    let mut g = c.benchmark_group("inference_batch1024");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);

    let tab = Tabular::new(BATCH, D, values(BATCH * D)).unwrap();
    let mlp = MlpModel::init(MlpConfig::new(D), cpu, 1).unwrap();
    g.bench_function("mlp", |b| {
        b.iter(|| black_box(mlp.predict_batched(&tab, BATCH).unwrap()))
    });

    let seq = Sequences::new(BATCH, T, M, values(BATCH * T * M)).unwrap();
    let lstm = LstmModel::init(LstmConfig::new(M), cpu, 1).unwrap();
    // Serving's path on the CPU (plain loops), and the same windows through burn.
    g.bench_function("lstm_window32", |b| {
        b.iter(|| black_box(lstm.predict_batched(&seq, BATCH).unwrap()))
    });
    g.bench_function("lstm_window32_burn", |b| {
        b.iter(|| black_box(lstm.predict_batched_burn(&seq, BATCH).unwrap()))
    });
    let step = values(BATCH * M);
    let (_, state) = lstm.step(&step, None).unwrap();
    g.bench_function("lstm_step", |b| {
        b.iter(|| black_box(lstm.step(&step, Some(state.clone())).unwrap()))
    });

    let tcn = TcnModel::init(TcnConfig::new(M), cpu, 1).unwrap();
    g.bench_function("tcn_window32", |b| {
        b.iter(|| black_box(tcn.predict_batched(&seq, BATCH).unwrap()))
    });

    // 1024 nodes, ~4 typed edges each way per node.
    let n = BATCH;
    let (mut src, mut dst, mut rel) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        for j in 1..=4 {
            let u = ((i * 31 + j * 97) % n) as u32;
            src.extend_from_slice(&[u, i as u32]);
            dst.extend_from_slice(&[i as u32, u]);
            let r = (j % 3) as u8;
            rel.extend_from_slice(&[r, r + 3]);
        }
    }
    let graph = GraphSnapshot {
        n,
        d: D,
        x: values(n * D),
        edge_src: src,
        edge_dst: dst,
        edge_rel: rel,
        y: Vec::new(),
        mask: Vec::new(),
    };
    let gnn = GnnModel::init(GnnConfig::new(D), cpu, 1).unwrap();
    g.bench_function("gnn_1024_nodes", |b| {
        b.iter(|| black_box(gnn.predict(&graph).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, branches);
criterion_main!(benches);
