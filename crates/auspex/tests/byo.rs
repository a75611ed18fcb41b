//! Bring-your-own data through the real binary: `train --format smd|nezha` then
//! `evaluate --format ... --json FILE`, checking the fixed report interface and quality.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn auspex(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args(args)
        .output()
        .expect("auspex runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "auspex {args:?}:\n{stderr}");
    stderr
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// A small deterministic generator (no test should depend on a crate's RNG stream).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

const TRAIN_ROWS: usize = 4000;
const TEST_ROWS: usize = 1200;

/// Writes an SMD-layout directory unlike SMD itself: own entity names, plain `.csv`, a
/// different number of columns per entity and `label` in the middle of the test header. Each
/// test half has anomalies where two or three metrics shift together by 5-8 of their standard
/// deviations for 20-60 rows. Returns the number of anomalies.
fn write_smd_layout(dir: &Path) -> usize {
    let mut rng = Lcg(42);
    let mut anomalies = 0;
    for (name, cols) in [("db-primary", 5), ("web-1", 4), ("cache-a", 6)] {
        let header: Vec<String> = (0..cols).map(|c| format!("m{c}")).collect();
        let phase: Vec<f64> = (0..cols).map(|_| rng.next() * 6.0).collect();
        let value = |rng: &mut Lcg, c: usize, t: usize| {
            0.5 + 0.2 * ((t as f64 / 180.0) + phase[c]).sin() + 0.03 * rng.normal()
        };
        let mut train = header.join(",") + "\n";
        for t in 0..TRAIN_ROWS {
            let row: Vec<String> = (0..cols)
                .map(|c| format!("{:.5}", value(&mut rng, c, t)))
                .collect();
            train += &(row.join(",") + "\n");
        }
        std::fs::write(dir.join(format!("{name}_train.csv")), train).unwrap();

        let mid = cols / 2;
        let mut test_header = header.clone();
        test_header.insert(mid, "label".into());
        let mut test = test_header.join(",") + "\n";
        let mut spans = Vec::new();
        let mut start = 150;
        while start + 60 < TEST_ROWS {
            let len = 20 + (rng.next() * 40.0) as usize;
            let metrics: Vec<usize> = (0..2 + usize::from(rng.next() < 0.5))
                .map(|_| (rng.next() * cols as f64) as usize)
                .collect();
            let shift = (5.0 + rng.next() * 3.0) * if rng.next() < 0.5 { -1.0 } else { 1.0 };
            spans.push((start, start + len, metrics, shift));
            start += len + 200 + (rng.next() * 150.0) as usize;
        }
        anomalies += spans.len();
        for i in 0..TEST_ROWS {
            let t = TRAIN_ROWS + i;
            let span = spans.iter().find(|(a, b, _, _)| (*a..*b).contains(&i));
            let mut row: Vec<String> = (0..cols)
                .map(|c| {
                    let mut v = value(&mut rng, c, t);
                    if let Some((_, _, ms, shift)) = span
                        && ms.contains(&c)
                    {
                        v += shift * 0.2 / 2f64.sqrt();
                    }
                    format!("{v:.5}")
                })
                .collect();
            row.insert(mid, u8::from(span.is_some()).to_string());
            let mut line = row.join(",");
            line.push('\n');
            test.write_str(&line).unwrap();
        }
        std::fs::write(dir.join(format!("{name}_test.csv")), test).unwrap();
    }
    anomalies
}

fn check_summary(s: &Value, what: &str) {
    for k in ["precision", "recall", "f1"] {
        let v = f(&s["pointwise"][k]);
        assert!((0.0..=1.0).contains(&v), "{what}: pointwise.{k} = {v}");
    }
    for k in ["precision", "recall"] {
        let v = f(&s["event"][k]);
        assert!((0.0..=1.0).contains(&v), "{what}: event.{k} = {v}");
    }
    assert!(
        s.get("mean_delay_steps").is_some(),
        "{what}: no mean_delay_steps"
    );
}

/// `auspex train --format F` on `data`, then `evaluate --format F --json`, in `tmp`; returns
/// the JSON report and the evaluation's `--out` directory.
fn train_and_evaluate(format: &str, data: &Path, tmp: &Path) -> (Value, std::path::PathBuf) {
    let (bundle, report, out) = (
        tmp.join("bundle"),
        tmp.join("report.json"),
        tmp.join("eval"),
    );
    let [d, b, r, o] = [data, &bundle, &report, &out].map(|p| p.to_str().unwrap());
    auspex(&["train", "--format", format, "--data", d, "--out", b]);
    auspex(&[
        "evaluate", "--format", format, "--model", b, "--data", d, "--json", r, "--out", o,
    ]);
    let report = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (report, out)
}

#[test]
fn smd_layout_train_and_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let anomalies = write_smd_layout(&data);
    let (report, out) = train_and_evaluate("smd", &data, tmp.path());
    check_summary(&report["overall"], "overall");
    let per_entity = report["per_entity"].as_object().unwrap();
    assert_eq!(per_entity.len(), 3, "{:?}", per_entity.keys());
    for (name, s) in per_entity {
        check_summary(s, name);
        assert_eq!(f(&s["points"]), TEST_ROWS as f64, "{name}: every test row");
    }
    let o = &report["overall"];
    let (f1, recall, precision, pr_auc) = (
        f(&o["pointwise"]["f1"]),
        f(&o["event"]["recall"]),
        f(&o["event"]["precision"]),
        f(&o["pr_auc"]),
    );
    eprintln!(
        "{anomalies} anomalies: point F1 {f1:.3}, event recall {recall:.3}, precision \
         {precision:.3}, PR-AUC {pr_auc:.3}"
    );
    // Measured (test profile, training seeds 7-10): PR-AUC 0.82-0.96, point F1 0.32-0.61,
    // event recall 0.45-1.0. The ranking is stable; the threshold, chosen on injected
    // anomalies in the validation slice, is not (seed 8 alerts late and rarely). The floors
    // fail on a detector that stops ranking anomalies first (PR-AUC near the 3 % base rate)
    // or stops alerting on them.
    assert!(pr_auc >= 0.7, "PR-AUC {pr_auc}");
    assert!(recall >= 0.4, "event recall {recall}");
    assert!(f1 >= 0.25, "point F1 {f1}");
    assert!(out.join("report.md").exists());
}

/// A shared data set, found at run time: the compile-time `CARGO_MANIFEST_DIR` is stale when a
/// shared target directory holds a binary built from another clone of the repository.
fn shared_data(set: &str) -> std::path::PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test"))
        .join("../../../shared/data")
        .join(set)
}

#[test]
fn nezha_layout_train_and_evaluate() {
    let data = shared_data("nezha-onlineboutique");
    let tmp = tempfile::tempdir().unwrap();
    let (report, _) = train_and_evaluate("nezha", &data, tmp.path());
    check_summary(&report["overall"], "overall");
    check_summary(&report["held_out"]["overall"], "held_out");
    let pods = report["per_entity"].as_object().unwrap();
    assert!(pods.len() >= 10, "{:?}", pods.keys());
    let types = report["fault_types_held_out"].as_object().unwrap();
    let (faults, detected) = types.values().fold((0.0, 0.0), |(a, b), t| {
        (a + f(&t["faults"]), b + f(&t["detected"]))
    });
    eprintln!("held-out faults detected: {detected} of {faults}");
    // Measured: 21 of 28 held-out faults; most misses are network delays.
    assert!(faults >= 20.0, "{faults} held-out faults");
    assert!(detected / faults >= 0.5, "{detected} of {faults}");
}

#[test]
fn nab_layout_train_and_evaluate() {
    let data = shared_data("nab");
    let tmp = tempfile::tempdir().unwrap();
    let (report, _) = train_and_evaluate("nab", &data, tmp.path());
    check_summary(&report["overall"], "overall");
    assert_eq!(report["per_entity"].as_object().unwrap().len(), 24);
    let o = &report["overall"];
    let (windows, recall) = (f(&o["event"]["anomalies"]), f(&o["event"]["recall"]));
    eprintln!("NAB after probation: {windows} windows, event recall {recall:.3}");
    // Measured: 23 (test profile) to 27 (release) of 48 windows after the probationary 15 %,
    // about 0.7 false alerts a series-day.
    assert!(windows >= 40.0, "{windows} windows");
    assert!(recall >= 0.35, "event recall {recall}");
}
