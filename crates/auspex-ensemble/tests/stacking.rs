//! End to end on synthetic data: out-of-fold base scores from purged time folds, the gated
//! meta-learner on top, a threshold for a target precision, and a bundle that restores the
//! exact same predictions.

use auspex_ensemble::metrics::roc_auc;
use auspex_ensemble::{
    Bundle, BundleWriter, Error, Features, FoldConfig, Folds, Gbdt, GbdtConfig, LogisticConfig,
    LogisticRegression, MetaConfig, MetaLearner, sha256_hex, sigmoid, threshold_for_precision,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const D: usize = 4;

struct Data {
    x: Vec<f64>,
    y: Vec<u8>,
    ts: Vec<i64>,
    entity: Vec<String>,
    kind: Vec<f64>,
}

/// 8 entities × 400 minutes. Kind-0 entities fail on a linear signal (x0), kind-1 entities on
/// an interaction (x1 > 0.5 and x2 > 0.5) that only the trees can see.
fn data(seed: u64) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut d = Data {
        x: Vec::new(),
        y: Vec::new(),
        ts: Vec::new(),
        entity: Vec::new(),
        kind: Vec::new(),
    };
    for e in 0..8 {
        let kind = e % 2;
        for m in 0..400i64 {
            let row: Vec<f64> = (0..D).map(|_| rng.random::<f64>()).collect();
            let eta = if kind == 0 {
                6.0 * (row[0] - 0.7)
            } else if row[1] > 0.5 && row[2] > 0.5 {
                1.5
            } else {
                -2.5
            };
            d.y.push(u8::from(rng.random::<f64>() < sigmoid(eta)));
            d.x.extend(row);
            d.ts.push(m * 60);
            d.entity.push(format!("pod-{e}"));
            d.kind.push(f64::from(kind));
        }
    }
    d
}

fn subset(x: &[f64], rows: &[usize]) -> Vec<f64> {
    rows.iter()
        .flat_map(|&r| x[r * D..(r + 1) * D].iter().copied())
        .collect()
}

#[test]
fn stacking_pipeline_round_trips_through_a_bundle() {
    let d = data(1);
    let n = d.y.len();
    let gcfg = GbdtConfig {
        iterations: 80,
        ..GbdtConfig::default()
    };
    let lcfg = LogisticConfig::default();
    let folds = Folds::new(
        &FoldConfig {
            blocks: 4,
            purge_secs: 600,
            ..FoldConfig::default()
        },
        &d.ts,
        &d.entity,
    )
    .unwrap();

    let oof = |which: usize| -> Vec<f64> {
        folds
            .out_of_fold::<_, Error>(|fold| {
                let tx = subset(&d.x, &fold.train);
                let ty: Vec<u8> = fold.train.iter().map(|&r| d.y[r]).collect();
                let hx = subset(&d.x, &fold.holdout);
                let (ft, fh) = (Features::f64(&tx, D)?, Features::f64(&hx, D)?);
                if which == 0 {
                    Gbdt::fit(&gcfg, ft, &ty, None, None)?.predict_proba(fh)
                } else {
                    LogisticRegression::fit(&lcfg, ft, &ty, None)?.predict_proba(fh)
                }
            })
            .unwrap()
            .into_iter()
            .map(|s| s.expect("blocked folds score every row"))
            .collect()
    };
    let (oof_gbdt, oof_lr) = (oof(0), oof(1));
    let scores: Vec<f64> = oof_gbdt
        .iter()
        .zip(&oof_lr)
        .flat_map(|(a, b)| [*a, *b])
        .collect();
    let fs = Features::f64(&scores, 2).unwrap();
    let fc = Features::f64(&d.kind, 1).unwrap();
    let meta = MetaLearner::fit(&MetaConfig::default(), fs, Some(fc), &d.y, None).unwrap();
    let pred = meta.predict(fs, Some(fc)).unwrap();
    let (auc_g, auc_l, auc_m) = (
        roc_auc(&oof_gbdt, &d.y),
        roc_auc(&oof_lr, &d.y),
        roc_auc(&pred.proba, &d.y),
    );
    let mean_w = |k: f64| {
        let rows: Vec<usize> = (0..n).filter(|&r| d.kind[r] == k).collect();
        rows.iter().map(|&r| pred.weights_of(r)[0]).sum::<f64>() / rows.len() as f64
    };
    println!(
        "OOF AUC gbdt {auc_g:.4} logistic {auc_l:.4} meta {auc_m:.4}; \
         gbdt weight kind0 {:.3} kind1 {:.3}",
        mean_w(0.0),
        mean_w(1.0)
    );
    assert!(auc_g > 0.75 && auc_l > 0.6, "{auc_g} {auc_l}");
    assert!(auc_m >= auc_g.max(auc_l) - 0.005, "meta {auc_m}");
    // The trees are the only branch that sees kind 1's interaction.
    assert!(mean_w(1.0) > mean_w(0.0), "{} {}", mean_w(1.0), mean_w(0.0));

    let choice = threshold_for_precision(&pred.proba, &d.y, 0.8, 10)
        .unwrap()
        .unwrap();
    assert!(choice.precision >= 0.8);

    // Final base models on every row, then a bundle.
    let fx = Features::f64(&d.x, D).unwrap();
    let gbdt = Gbdt::fit(&gcfg, fx, &d.y, None, None).unwrap();
    let lr = LogisticRegression::fit(&lcfg, fx, &d.y, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model-v1");
    let mut w = BundleWriter::new(&dir).unwrap();
    w.add_file("branches/gbdt.json", &gbdt.to_bytes().unwrap())
        .unwrap();
    w.add_file("branches/logistic.json", &lr.to_bytes().unwrap())
        .unwrap();
    w.add_file("meta.json", &meta.to_bytes().unwrap()).unwrap();
    let data_bytes: Vec<u8> = d.x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let manifest = w
        .finish(serde_json::json!({
            "data_sha256": sha256_hex(&data_bytes),
            "threshold": choice.threshold,
            "oof_auc": {"gbdt": auc_g, "logistic": auc_l, "meta": auc_m},
        }))
        .unwrap();
    assert_eq!(manifest.files.len(), 3);

    let bundle = Bundle::open(&dir).unwrap();
    let gbdt2 = Gbdt::from_bytes(&bundle.read("branches/gbdt.json").unwrap()).unwrap();
    let lr2 =
        LogisticRegression::from_bytes(&bundle.read("branches/logistic.json").unwrap()).unwrap();
    let meta2 = MetaLearner::from_bytes(&bundle.read("meta.json").unwrap()).unwrap();
    assert_eq!(
        gbdt2.predict_proba(fx).unwrap(),
        gbdt.predict_proba(fx).unwrap()
    );
    assert_eq!(
        lr2.predict_proba(fx).unwrap(),
        lr.predict_proba(fx).unwrap()
    );
    assert_eq!(meta2.predict(fs, Some(fc)).unwrap(), pred);
    assert_eq!(bundle.metadata()["threshold"], choice.threshold);
}
