//! Real training on small synthetic tasks, asserting quality that a broken branch would miss.
//! Bounds were measured (see the crate report) and set with a margin.

use auspex_nn::{
    GnnConfig, GnnModel, GraphSnapshot, K, Labeled, Labels, LstmConfig, LstmModel, MlpConfig,
    MlpModel, NnDevice, Sequences, Tabular, TcnConfig, TcnModel, TrainConfig, fit_gnn, fit_lstm,
    fit_mlp, fit_tcn, recall_at, roc_auc,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CPU: NnDevice = NnDevice::Cpu;

fn head(v: &[f32], k: usize) -> Vec<f32> {
    v.iter().skip(k).step_by(K).copied().collect()
}

fn auc(p: &[f32], y: &Labels, k: usize) -> f64 {
    roc_auc(&head(p, k), &head(&y.y, k)).expect("both classes present")
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    // Box–Muller
    let u1: f32 = rng.random::<f32>().max(1e-7);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// XOR of the signs of x0 and x1 → head 0; x2 > 0.3 → head 1; x0 > 0.5 → head 2; noise → head 3.
fn xor_set(n: usize, seed: u64) -> (Tabular, Labels) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let r: [f32; 4] = std::array::from_fn(|_| rng.random::<f32>() * 2.0 - 1.0);
        x.extend_from_slice(&r);
        y.extend_from_slice(&[
            f32::from(u8::from((r[0] > 0.0) != (r[1] > 0.0))),
            f32::from(u8::from(r[2] > 0.3)),
            f32::from(u8::from(r[0] > 0.5)),
            f32::from(u8::from(rng.random::<f32>() < 0.3)),
        ]);
    }
    (Tabular::new(n, 4, x).unwrap(), Labels::new(n, y).unwrap())
}

fn mlp_train_config() -> TrainConfig {
    TrainConfig::new()
        .with_batch_size(64)
        .with_max_epochs(40)
        .with_patience(5)
}

#[test]
fn mlp_learns_xor_and_round_trips() {
    let (xt, yt) = xor_set(1500, 1);
    let (xv, yv) = xor_set(400, 2);
    let (xs, ys) = xor_set(1000, 3);
    let cfg = MlpConfig::new(4)
        .with_hidden(vec![32, 16])
        .with_dropout(0.05);
    let mut calls = 0;
    let mut progress = |_e: usize, _t: f32, _v: f32| calls += 1;
    let (model, hist) = fit_mlp(
        &cfg,
        &mlp_train_config(),
        Labeled {
            x: &xt,
            labels: &yt,
        },
        Labeled {
            x: &xv,
            labels: &yv,
        },
        CPU,
        Some(&mut progress),
    )
    .unwrap();
    assert_eq!(calls, hist.epochs.len());
    let p = model.predict(&xs).unwrap();
    let (a0, a1, a2) = (auc(&p, &ys, 0), auc(&p, &ys, 1), auc(&p, &ys, 2));
    eprintln!(
        "mlp xor auc {a0:.3}, threshold {a1:.3}, {a2:.3}; epochs {}",
        hist.epochs.len()
    );
    assert!(a0 >= 0.95, "xor head auc {a0}");
    assert!(a1 >= 0.97, "threshold head auc {a1}");
    assert!(a2 >= 0.97, "threshold head auc {a2}");

    let bytes = model.to_bytes().unwrap();
    let loaded = MlpModel::from_bytes(&bytes, CPU).unwrap();
    assert_eq!(
        loaded.predict(&xs).unwrap(),
        p,
        "loaded MLP predicts differently"
    );
    assert_eq!(loaded.config().hidden, vec![32, 16]);
    assert!(
        LstmModel::from_bytes(&bytes, CPU).is_err(),
        "an MLP loaded as an LSTM"
    );
    assert!(MlpModel::from_bytes(&bytes[..bytes.len() / 2], CPU).is_err());
}

/// Windows of `t` steps, channels [value, mask=1]. Each window's level is random (so the last
/// value alone says little); head 0: the value rises over the window (it falls otherwise);
/// head 1: a spike sits in the last quarter (every window has one spike somewhere); head 2:
/// level > 0; head 3: noise.
fn trend_set(n: usize, t: usize, seed: u64) -> (Sequences, Labels) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let level = normal(&mut rng) * 2.0;
        let rising = rng.random::<bool>();
        let slope = if rising { 0.08 } else { -0.08 };
        let late = rng.random::<bool>();
        let spike_at = if late {
            t - 1 - rng.random_range(0..t / 4)
        } else {
            rng.random_range(0..t - t / 4)
        };
        for s in 0..t {
            let mut v = level + slope * (s as f32 - t as f32 / 2.0) + 0.1 * normal(&mut rng);
            if s == spike_at {
                v += 3.0;
            }
            x.extend_from_slice(&[v, 1.0]);
        }
        y.extend_from_slice(&[
            f32::from(u8::from(rising)),
            f32::from(u8::from(late)),
            f32::from(u8::from(level > 0.0)),
            f32::from(u8::from(rng.random::<f32>() < 0.3)),
        ]);
    }
    (
        Sequences::new(n, t, 2, x).unwrap(),
        Labels::new(n, y).unwrap(),
    )
}

fn seq_train_config() -> TrainConfig {
    TrainConfig::new()
        .with_batch_size(64)
        .with_max_epochs(30)
        .with_patience(4)
        .with_learning_rate(1e-2)
}

#[test]
fn lstm_learns_a_rising_trend_and_steps_like_windows() {
    let t = 16;
    let (xt, yt) = trend_set(1024, t, 11);
    let (xv, yv) = trend_set(256, t, 12);
    let (xs, ys) = trend_set(512, t, 13);
    let cfg = LstmConfig::new(2).with_hidden(16);
    let (model, hist) = fit_lstm(
        &cfg,
        &seq_train_config(),
        Labeled {
            x: &xt,
            labels: &yt,
        },
        Labeled {
            x: &xv,
            labels: &yv,
        },
        CPU,
        None,
    )
    .unwrap();
    let p = model.predict(&xs).unwrap();
    let (a0, a1) = (auc(&p, &ys, 0), auc(&p, &ys, 1));
    eprintln!(
        "lstm rising auc {a0:.3}, late spike {a1:.3}; epochs {}",
        hist.epochs.len()
    );
    assert!(a0 >= 0.95, "rising auc {a0}");
    assert!(a1 >= 0.85, "late-spike auc {a1}");

    // Stepping every window sample by sample ends where the whole-window pass does.
    let mut state = None;
    let mut last = Vec::new();
    for s in 0..t {
        let step: Vec<f32> = (0..xs.n)
            .flat_map(|i| xs.x[(i * t + s) * 2..(i * t + s + 1) * 2].to_vec())
            .collect();
        let (probs, next) = model.step(&step, state).unwrap();
        state = Some(next);
        last = probs;
    }
    let max_diff = last
        .iter()
        .zip(&p)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max_diff < 1e-4, "stepped vs windowed differ by {max_diff}");

    // A per-step model sees only the last sample: the level hides the trend.
    let last_step = |s: &Sequences| {
        let x = (0..s.n)
            .flat_map(|i| s.x[((i + 1) * t - 1) * 2..(i + 1) * t * 2].to_vec())
            .collect();
        Tabular::new(s.n, 2, x).unwrap()
    };
    let (per_step, _) = fit_mlp(
        &MlpConfig::new(2).with_hidden(vec![16]),
        &mlp_train_config(),
        Labeled {
            x: &last_step(&xt),
            labels: &yt,
        },
        Labeled {
            x: &last_step(&xv),
            labels: &yv,
        },
        CPU,
        None,
    )
    .unwrap();
    let step_auc = auc(&per_step.predict(&last_step(&xs)).unwrap(), &ys, 0);
    eprintln!("per-step mlp rising auc {step_auc:.3}");
    assert!(step_auc <= 0.75, "per-step auc {step_auc}");

    let loaded = LstmModel::from_bytes(&model.to_bytes().unwrap(), CPU).unwrap();
    assert_eq!(
        loaded.predict(&xs).unwrap(),
        p,
        "loaded LSTM predicts differently"
    );
}

#[test]
fn tcn_learns_a_rising_trend_and_a_late_spike() {
    let t = 16;
    let (xt, yt) = trend_set(1024, t, 21);
    let (xv, yv) = trend_set(256, t, 22);
    let (xs, ys) = trend_set(512, t, 23);
    let cfg = TcnConfig::new(2).with_channels(16);
    let (model, hist) = fit_tcn(
        &cfg,
        &seq_train_config(),
        Labeled {
            x: &xt,
            labels: &yt,
        },
        Labeled {
            x: &xv,
            labels: &yv,
        },
        CPU,
        None,
    )
    .unwrap();
    let p = model.predict(&xs).unwrap();
    let (a0, a1) = (auc(&p, &ys, 0), auc(&p, &ys, 1));
    eprintln!(
        "tcn rising auc {a0:.3}, late spike {a1:.3}; epochs {}",
        hist.epochs.len()
    );
    assert!(a0 >= 0.95, "rising auc {a0}");
    assert!(a1 >= 0.90, "late-spike auc {a1}");

    let loaded = TcnModel::from_bytes(&model.to_bytes().unwrap(), CPU).unwrap();
    assert_eq!(
        loaded.predict(&xs).unwrap(),
        p,
        "loaded TCN predicts differently"
    );
}

/// A forest: every node but the roots has one upstream parent (relation 0, reverse 3) and a
/// few random peers (relations 1 / 4). Feature 0 is uniform noise per node, feature 1 noise.
/// Head 0: the parent's feature 0 > 0.7 — the node's own features say nothing about it.
fn neighbour_graph(n: usize, seed: u64) -> GraphSnapshot {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let f0: Vec<f32> = (0..n).map(|_| rng.random()).collect();
    let mut x = Vec::new();
    for &v in &f0 {
        x.extend_from_slice(&[v, rng.random::<f32>()]);
    }
    let (mut src, mut dst, mut rel) = (Vec::new(), Vec::new(), Vec::new());
    let mut y = vec![0.0; n * K];
    for i in 0..n {
        if i >= 5 {
            let parent = rng.random_range(0..i);
            src.extend_from_slice(&[parent as u32, i as u32]);
            dst.extend_from_slice(&[i as u32, parent as u32]);
            rel.extend_from_slice(&[0, 3]);
            y[i * K] = f32::from(u8::from(f0[parent] > 0.7));
        }
        for _ in 0..2 {
            let peer = rng.random_range(0..n) as u32;
            src.extend_from_slice(&[peer, i as u32]);
            dst.extend_from_slice(&[i as u32, peer]);
            rel.extend_from_slice(&[1, 4]);
        }
        y[i * K + 1] = f32::from(u8::from(f0[i] > 0.5));
    }
    let mask = (0..n).map(|_| rng.random::<f32>() < 0.9).collect();
    GraphSnapshot {
        n,
        d: 2,
        x,
        edge_src: src,
        edge_dst: dst,
        edge_rel: rel,
        y,
        mask,
    }
}

#[test]
fn gnn_learns_a_neighbour_rule_an_mlp_cannot() {
    let train: Vec<GraphSnapshot> = (0..4).map(|s| neighbour_graph(300, 100 + s)).collect();
    let val = vec![neighbour_graph(300, 200)];
    let test = neighbour_graph(600, 300);
    let tc = TrainConfig::new()
        .with_max_epochs(60)
        .with_patience(8)
        .with_learning_rate(1e-2)
        .with_graphs_per_batch(1);
    let cfg = GnnConfig::new(2).with_hidden(16).with_dropout(0.0);
    let (model, hist) = fit_gnn(&cfg, &tc, &train, &val, CPU, None).unwrap();
    let p = model.predict(&test).unwrap();
    let labels = Labels::new(test.n, test.y.clone()).unwrap();
    let gnn_auc = auc(&p, &labels, 0);

    // The same nodes, own features only.
    let tab = |g: &GraphSnapshot| {
        (
            Tabular::new(g.n, g.d, g.x.clone()).unwrap(),
            Labels::new(g.n, g.y.clone()).unwrap(),
        )
    };
    let (xt, yt) = tab(&train[0]);
    let (xv, yv) = tab(&val[0]);
    let (xs, ys) = tab(&test);
    let (mlp, _) = fit_mlp(
        &MlpConfig::new(2).with_hidden(vec![16]),
        &mlp_train_config(),
        Labeled {
            x: &xt,
            labels: &yt,
        },
        Labeled {
            x: &xv,
            labels: &yv,
        },
        CPU,
        None,
    )
    .unwrap();
    let mlp_auc = auc(&mlp.predict(&xs).unwrap(), &ys, 0);
    eprintln!(
        "gnn neighbour auc {gnn_auc:.3} (epochs {}), mlp on own features {mlp_auc:.3}",
        hist.epochs.len()
    );
    assert!(gnn_auc >= 0.95, "gnn auc {gnn_auc}");
    assert!((0.4..=0.6).contains(&mlp_auc), "mlp auc {mlp_auc}");

    let loaded = GnnModel::from_bytes(&model.to_bytes().unwrap(), CPU).unwrap();
    assert_eq!(
        loaded.predict(&test).unwrap(),
        p,
        "loaded GNN predicts differently"
    );
}

/// Pure-noise labels on few rows: the network can only memorise, so validation loss rises.
#[test]
fn early_stopping_returns_the_best_validation_epoch() {
    let noise = |n: usize, seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<f32> = (0..n * 16).map(|_| normal(&mut rng)).collect();
        let y: Vec<f32> = (0..n * K)
            .map(|_| f32::from(u8::from(rng.random::<bool>())))
            .collect();
        (Tabular::new(n, 16, x).unwrap(), Labels::new(n, y).unwrap())
    };
    let (xt, yt) = noise(48, 5);
    let (xv, yv) = noise(200, 6);
    let tc = TrainConfig::new()
        .with_max_epochs(200)
        .with_patience(5)
        .with_batch_size(16)
        .with_weight_decay(0.0)
        .with_learning_rate(2e-3);
    let cfg = MlpConfig::new(16)
        .with_hidden(vec![128, 128])
        .with_dropout(0.0);
    let (model, hist) = fit_mlp(
        &cfg,
        &tc,
        Labeled {
            x: &xt,
            labels: &yt,
        },
        Labeled {
            x: &xv,
            labels: &yv,
        },
        CPU,
        None,
    )
    .unwrap();
    let n_epochs = hist.epochs.len();
    eprintln!("early stop: {n_epochs} epochs, best {}", hist.best_epoch);
    assert!(hist.stopped_early && n_epochs < 40, "ran {n_epochs} epochs");
    assert_eq!(n_epochs, hist.best_epoch + tc.patience);
    let best = hist
        .epochs
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .unwrap();
    assert_eq!(best.epoch, hist.best_epoch);
    assert!(hist.epochs.last().unwrap().train_loss < hist.epochs[0].train_loss);

    // The returned weights are that epoch's: recompute its validation loss from predictions.
    let p = model.predict(&xv).unwrap();
    let mut loss = 0.0f64;
    for (i, (&q, &y)) in p.iter().zip(&yv.y).enumerate() {
        let pw = f64::from(hist.pos_weight[i % K]);
        let q = f64::from(q).clamp(1e-12, 1.0 - 1e-12);
        loss -= pw * f64::from(y) * q.ln() + (1.0 - f64::from(y)) * (1.0 - q).ln();
    }
    loss /= (xv.n * K) as f64;
    assert!(
        (loss - f64::from(hist.best_val_loss)).abs() < 1e-3,
        "returned model's val loss {loss} vs best {}",
        hist.best_val_loss
    );
}

#[test]
fn same_seed_same_model_even_when_trained_concurrently() {
    let (xt, yt) = xor_set(400, 31);
    let (xv, yv) = xor_set(200, 32);
    let cfg = MlpConfig::new(4).with_hidden(vec![16]).with_dropout(0.2);
    let run = |seed: u64| {
        let tc = mlp_train_config().with_max_epochs(5).with_seed(seed);
        let (m, _) = fit_mlp(
            &cfg,
            &tc,
            Labeled {
                x: &xt,
                labels: &yt,
            },
            Labeled {
                x: &xv,
                labels: &yv,
            },
            CPU,
            None,
        )
        .unwrap();
        m.predict(&xv).unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(7));
        let b = s.spawn(|| run(7));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, b, "same seed, different predictions");
    assert_ne!(a, run(8), "different seeds, same predictions");
}

/// 2 % positives, overlapping classes: unweighted BCE puts almost every positive under 0.5.
#[test]
fn class_weights_lift_recall_on_rare_positives() {
    let set = |n: usize, seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let pos = rng.random::<f32>() < 0.02;
            let shift = if pos { 1.2 } else { 0.0 };
            x.extend_from_slice(&[
                normal(&mut rng) + shift,
                normal(&mut rng) + shift,
                normal(&mut rng),
            ]);
            y.extend_from_slice(&[f32::from(u8::from(pos)); K]);
        }
        (Tabular::new(n, 3, x).unwrap(), Labels::new(n, y).unwrap())
    };
    let (xt, yt) = set(3000, 41);
    let (xv, yv) = set(1000, 42);
    let (xs, ys) = set(5000, 43);
    let cfg = MlpConfig::new(3).with_hidden(vec![16]);
    let recall = |weighted: bool| {
        let tc = mlp_train_config().with_class_weighting(weighted);
        let (m, h) = fit_mlp(
            &cfg,
            &tc,
            Labeled {
                x: &xt,
                labels: &yt,
            },
            Labeled {
                x: &xv,
                labels: &yv,
            },
            CPU,
            None,
        )
        .unwrap();
        let p = m.predict(&xs).unwrap();
        (
            recall_at(&head(&p, 0), &head(&ys.y, 0), 0.5).unwrap(),
            h.pos_weight[0],
        )
    };
    let (r_w, pw) = recall(true);
    let (r_u, pw_u) = recall(false);
    eprintln!("recall@0.5 weighted {r_w:.3} (pos_weight {pw:.1}), unweighted {r_u:.3}");
    assert!(pw > 20.0 && pw_u == 1.0);
    assert!(r_w >= 0.6, "weighted recall {r_w}");
    assert!(r_u <= 0.3, "unweighted recall {r_u}");
}

/// The CPU kernel scores windows as burn does, on trained weights (larger than initial ones,
/// so gates saturate) and inputs with masked (zero) channels and large values.
#[test]
fn lstm_cpu_kernel_gives_burns_probabilities() {
    let t = 16;
    let (xt, yt) = trend_set(512, t, 21);
    let (xv, yv) = trend_set(128, t, 22);
    // 301: the last group of windows the kernel scores together is short.
    let (mut xs, _) = trend_set(301, t, 23);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (i, v) in xs.x.iter_mut().enumerate() {
        if i % 7 == 0 {
            *v = 0.0;
        } else if i % 11 == 0 {
            *v = 8.0 * normal(&mut rng);
        }
    }
    let (model, _) = fit_lstm(
        &LstmConfig::new(2).with_hidden(24),
        &seq_train_config(),
        Labeled {
            x: &xt,
            labels: &yt,
        },
        Labeled {
            x: &xv,
            labels: &yv,
        },
        CPU,
        None,
    )
    .unwrap();
    let fast = model.predict(&xs).unwrap();
    let burn = model.predict_batched_burn(&xs, 128).unwrap();
    assert_eq!(fast.len(), burn.len());
    let worst = fast
        .iter()
        .zip(&burn)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "largest difference {worst}");
    let (lo, hi) = fast
        .iter()
        .fold((1.0f32, 0.0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    assert!(
        hi - lo > 0.5,
        "trained probabilities spread only {lo}..{hi}"
    );
}
