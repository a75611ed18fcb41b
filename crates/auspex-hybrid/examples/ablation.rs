//! Leave-one-out ablation on held-out simulator seeds: trains the ensemble once with a
//! leave-one-out meta-learner for every branch (`HybridConfig::ablate`), then prints, per kind,
//! and held-out seed, the PR-AUC of each branch alone, of the ensemble, and of the ensemble
//! without each branch, then the mean PR-AUC each branch's removal costs. Base branches are fitted independently of each other, so "without X" is exactly the
//! ensemble that training without X gives (its meta-learner on the same out-of-fold scores).
//!
//! ```text
//! cargo run --release -p auspex-hybrid --example ablation -- \
//!     --train 1,2 --test 101,102,103 --branches gbdt,logistic,mlp,lstm,tcn,gnn
//! ```
//! The simulator runs are `auspex train/evaluate --data sim --seeds ...`'s (default config).

use std::time::Instant;

use auspex_ensemble::metrics::average_precision;
use auspex_hybrid::{Branch, HybridConfig, train};
use auspex_ingest::simulator::SimulatorSource;
use auspex_model::AnomalyKind;
use auspex_nn::NnDevice;
use auspex_sim::SimConfig;
use auspex_train::{Dataset, DatasetConfig, build};

fn seeds(s: &str) -> Vec<u64> {
    s.split(',')
        .map(|v| v.trim().parse().expect("a seed"))
        .collect()
}

fn dataset(seeds: &[u64], config: &DatasetConfig) -> Dataset {
    let parts: Vec<Dataset> = seeds
        .iter()
        .map(|&seed| {
            let sim = SimConfig {
                seed,
                ..SimConfig::default()
            };
            build(&mut SimulatorSource::new(sim).expect("a valid sim"), config).expect("built")
        })
        .collect();
    Dataset::concat(&parts).expect("same spec")
}

fn main() {
    let (mut train_seeds, mut test_seeds) = (vec![1, 2], vec![101, 102, 103]);
    let mut branches = Branch::ALL.to_vec();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--train" => train_seeds = seeds(&v),
            "--test" => test_seeds = seeds(&v),
            "--branches" => {
                branches = v
                    .split(',')
                    .map(|b| b.parse().expect("a branch name"))
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let mut config = HybridConfig::default().with_branches(branches.clone());
    config.ablate = branches.clone();
    let started = Instant::now();
    let train_ds = dataset(&train_seeds, &config.dataset);
    let model = train(&train_ds, &config, NnDevice::Cpu, &mut |m| {
        eprintln!("  {m}")
    })
    .unwrap();
    eprintln!(
        "trained on seeds {train_seeds:?} in {:.0} s (with {} leave-one-out meta-learners per kind)",
        started.elapsed().as_secs_f64(),
        branches.len()
    );
    let mut header = vec!["seed".to_string(), "kind".to_string()];
    header.extend(branches.iter().map(|b| b.name().to_string()));
    header.push("ensemble".into());
    header.extend(branches.iter().map(|b| format!("without {b}")));
    println!(
        "held-out PR-AUC\n\n| {} |\n|{}",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    let b = branches.len();
    // Per branch: the sum over (seed, kind) of what dropping it costs, and the count.
    let mut cost = vec![0f64; b];
    let mut cells = 0usize;
    for &seed in &test_seeds {
        let test = dataset(&[seed], &config.dataset);
        let scores = model.score_dataset(&test).unwrap();
        for (k, kind) in AnomalyKind::ALL.into_iter().enumerate() {
            let y: Vec<u8> = (0..test.len())
                .map(|i| u8::from(test.label(i, kind)))
                .collect();
            if model.kinds[k].meta.is_none() || !y.contains(&1) {
                continue;
            }
            let rs = &scores[k];
            let mut row = vec![seed.to_string(), kind.as_str().to_string()];
            for j in 0..b {
                let s: Vec<f64> = rs
                    .branch
                    .chunks_exact(b)
                    .map(|r| if r[j].is_nan() { 0.0 } else { r[j] })
                    .collect();
                row.push(format!("{:.3}", average_precision(&s, &y)));
            }
            let full = average_precision(&rs.proba, &y);
            row.push(format!("{full:.3}"));
            for (j, &br) in branches.iter().enumerate() {
                let p = model
                    .ensemble_without(k, br, rs, &test.context)
                    .unwrap()
                    .expect("every branch ablated");
                let without = average_precision(&p, &y);
                cost[j] += full - without;
                row.push(format!("{without:.3}"));
            }
            cells += 1;
            println!("| {} |", row.join(" | "));
        }
    }
    println!("\nmean PR-AUC lost by dropping each branch (over seeds and kinds):\n");
    for (br, c) in branches.iter().zip(&cost) {
        println!("- {br}: {:+.4}", c / cells.max(1) as f64);
    }
}
