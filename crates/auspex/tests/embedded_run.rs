//! The embedded end-to-end run: the real binary, simulator in, alerts out, scored against the
//! simulator's labels.
//!
//! Seeds 101 and 102 are held out: the statistical scorer's settings were chosen on seeds 1-3
//! and never looked at these. Measured on them (release build, `auspex run --seed N`):
//! seed 101: event recall 0.97, precision 0.60; seed 102: recall 0.94, precision 0.67; memory
//! exhaustion predicted a median 600-650 s ahead, CPU exhaustion 225-405 s ahead. The bounds
//! below leave room for noise and catch a scorer that stops finding faults or starts
//! flooding.

use std::process::Command;

use serde_json::Value;

fn run(seed: u64, dir: &std::path::Path) -> (Value, Vec<Value>) {
    run_with(seed, dir, &[])
}

fn run_with(seed: u64, dir: &std::path::Path, extra: &[&str]) -> (Value, Vec<Value>) {
    let alerts = dir.join(format!("alerts-{seed}.ndjson"));
    let summary = dir.join(format!("summary-{seed}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args(["run", "--seed", &seed.to_string()])
        .args(extra)
        .arg("--alerts")
        .arg(&alerts)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--dead-letters")
        .arg(dir.join("dead.ndjson"))
        .output()
        .expect("auspex runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("against"), "summary printed: {stderr}");
    let summary: Value = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    let alerts = std::fs::read_to_string(alerts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, alerts)
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

#[test]
fn embedded_run_finds_the_injected_faults() {
    let dir = tempfile::tempdir().unwrap();
    for seed in [101, 102] {
        let (summary, alerts) = run(seed, dir.path());
        let counts = &summary["counts"];
        assert!(f(&counts["samples"]) > 100_000.0, "{counts}");
        assert_eq!(f(&counts["dead_letters"]), 0.0);

        let strict = &summary["evaluation"]["strict"];
        let overall = &strict["overall"];
        let (recall, precision) = (f(&overall["recall"]), f(&overall["precision"]));
        eprintln!("seed {seed}: recall {recall:.3} precision {precision:.3}");
        assert!(recall >= 0.85, "seed {seed}: event recall {recall}");
        assert!(precision >= 0.5, "seed {seed}: event precision {precision}");
        for (kind, r) in strict["by_kind"].as_object().unwrap() {
            assert!(
                f(&r["recall"]) >= 0.75,
                "seed {seed}: {kind} recall {}",
                r["recall"]
            );
        }
        // Exhaustion is predicted, not just detected: alerts come minutes ahead.
        for kind in ["memory_exhaustion", "cpu_exhaustion"] {
            let lead = f(&strict["by_kind"][kind]["median_lead_time_s"]);
            assert!(lead >= 120.0, "seed {seed}: {kind} median lead {lead} s");
        }
        assert!(f(&strict["false_alerts_per_entity_day"]) < 5.0);

        // Every alert is a valid Alert, fires once per episode, and carries its evidence.
        let mut ids = std::collections::HashMap::new();
        for a in &alerts {
            let alert: auspex_model::Alert = serde_json::from_value(a.clone()).unwrap();
            assert!((0.0..=1.0).contains(&alert.probability));
            let state = *ids.entry(alert.id.clone()).or_insert(alert.state);
            if alert.state == auspex_model::AlertState::Firing {
                assert!(!alert.top_features.is_empty(), "{a}");
                assert!(!alert.branch_scores.is_empty(), "{a}");
                assert_eq!(state, alert.state, "one firing message per id");
            }
        }
    }
}

/// The bundle shipped in `fixtures/model` (trained by the command in the README) still loads —
/// its manifest verifies and its feature spec matches the store's — and finds a held-out
/// seed's incidents through the whole pipeline.
#[test]
fn shipped_bundle_finds_the_injected_faults() {
    let dir = tempfile::tempdir().unwrap();
    // Read at run time: the compile-time value is stale when a shared target directory holds
    // a binary built from another clone of the repository.
    let model = format!(
        "{}/../../fixtures/model",
        std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test")
    );
    let (summary, alerts) = run_with(102, dir.path(), &["--model", &model]);
    let overall = &summary["evaluation"]["strict"]["overall"];
    let (recall, precision) = (f(&overall["recall"]), f(&overall["precision"]));
    eprintln!("shipped bundle, seed 102: recall {recall:.3} precision {precision:.3}");
    // Measured (release, `auspex run --seed 102 --model fixtures/model`): recall 0.897,
    // precision 0.489, median lead 795 s (the bundle before the detector context column, the
    // branch-alone rule and SMOTE: 0.928 / 0.573 / 668 s). Retrain the bundle (README) when
    // features or the context change.
    assert!(recall >= 0.8, "event recall {recall}");
    assert!(precision >= 0.45, "event precision {precision}");
    assert!(
        alerts
            .iter()
            .any(|a| a["branch_scores"].as_object().is_some_and(|b| b.len() >= 2))
    );
}

#[test]
fn same_seed_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let a = run(5, &dir.path().join("a").tap_mkdir()).1;
    let b = run(5, &dir.path().join("b").tap_mkdir()).1;
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

trait Mkdir {
    fn tap_mkdir(self) -> Self;
}

impl Mkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn bad_config_stops_with_a_message_naming_the_field() {
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args(["run", "--set", "interval_ms=0", "--alerts", "-"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interval_ms"), "{err}");
}

#[test]
fn malformed_lines_go_to_dead_letters_and_the_rest_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let mut text = String::new();
    for i in 0..200 {
        text += &format!(
            r#"{{"timestamp_ms":{},"entity":{{"kind":"pod","namespace":"a","name":"p","node":"n1"}},"metrics":{{"cpu_usage_cores":0.2,"cpu_limit_cores":1}}}}"#,
            1_767_571_200_000_i64 + i * 15_000
        );
        text.push('\n');
        if i % 50 == 7 {
            text += "{not json\n";
        }
    }
    std::fs::write(&input, text).unwrap();
    let dead = dir.path().join("dead.ndjson");
    let summary = dir.path().join("s.json");
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args(["run", "--alerts", "-", "--source"])
        .arg(format!("ndjson:{}", input.display()))
        .arg("--dead-letters")
        .arg(&dead)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    assert_eq!(f(&s["counts"]["samples"]), 200.0);
    assert_eq!(f(&s["counts"]["dead_letters"]), 4.0);
    let dead = std::fs::read_to_string(dead).unwrap();
    assert_eq!(dead.lines().count(), 4);
    assert!(dead.contains("invalid JSON"), "{dead}");
}

/// `simulate --out` then `run --source dir:` sees exactly what the in-process simulator
/// source sees: file replay and the embedded default give the same alerts, and the files are
/// byte-identical for the same seed.
#[test]
fn file_replay_matches_the_in_process_run() {
    let dir = tempfile::tempdir().unwrap();
    let sim = |out: &std::path::Path| {
        let st = Command::new(env!("CARGO_BIN_EXE_auspex"))
            .args([
                "simulate",
                "--seed",
                "9",
                "--set",
                "duration_ms=10800000",
                "--out",
            ])
            .arg(out)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    sim(&a);
    sim(&b);
    for f in ["samples.ndjson", "topology.ndjson", "labels.ndjson"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(!x.is_empty(), "{f} is empty");
        assert!(x == y, "{f} differs between two runs with the same seed");
    }

    let alerts = |extra: &[&str], name: &str| -> Vec<Value> {
        let path = dir.path().join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
            .arg("run")
            .args(extra)
            .arg("--alerts")
            .arg(&path)
            .arg("--dead-letters")
            .arg(dir.path().join("dead.ndjson"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let from_files = alerts(
        &["--source", &format!("dir:{}", a.display())],
        "files.ndjson",
    );
    let in_process = alerts(
        &["--seed", "9", "--set", "duration_ms=10800000"],
        "embedded.ndjson",
    );
    assert!(!from_files.is_empty());
    assert_eq!(from_files, in_process);
}

/// `train` writes a bundle, `evaluate` reports on a held-out seed, `run --model` alerts with
/// it, and a tampered bundle stops start-up with a message naming the file.
#[test]
fn train_evaluate_and_run_with_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let short = [
        "--set",
        "duration_ms=10800000",
        "--set",
        "fault_rate_per_hour=6",
    ];
    let auspex = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let b = bundle.to_str().unwrap();
    let mut train = vec![
        "train",
        "--seeds",
        "3",
        "--branches",
        "gbdt,logistic",
        "--out",
        b,
    ];
    train.extend(short);
    let (ok, err) = auspex(&train);
    assert!(ok, "{err}");
    assert!(bundle.join("manifest.json").exists());

    let eval_dir = dir.path().join("eval");
    let e = eval_dir.to_str().unwrap();
    let mut evaluate = vec!["evaluate", "--model", b, "--seeds", "4", "--out", e];
    evaluate.extend(short);
    let (ok, err) = auspex(&evaluate);
    assert!(ok, "{err}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(eval_dir.join("report.json")).unwrap()).unwrap();
    let kinds = report.as_object().unwrap();
    assert!(!kinds.is_empty(), "no kind evaluated: {report}");
    for (kind, branches) in kinds {
        let ens = &branches["ensemble"];
        for key in ["pointwise", "event", "pr_auc"] {
            assert!(ens.get(key).is_some(), "{kind}: no {key} in {ens}");
        }
    }
    assert!(
        std::fs::read_to_string(eval_dir.join("report.md"))
            .unwrap()
            .contains("ensemble")
    );

    let alerts = dir.path().join("alerts.ndjson");
    let mut run = vec![
        "run",
        "--seed",
        "4",
        "--model",
        b,
        "--alerts",
        alerts.to_str().unwrap(),
    ];
    run.extend(short);
    let (ok, err) = auspex(&run);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&alerts).unwrap();
    assert!(text.lines().count() > 0, "no alert from the trained model");
    assert!(
        text.contains("\"model_version\":\"hybrid-sha256:"),
        "{}",
        &text[..200.min(text.len())]
    );

    let meta = bundle.join("feature_spec.json");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&meta, bytes).unwrap();
    let (ok, err) = auspex(&run);
    assert!(!ok);
    assert!(err.contains("feature_spec.json"), "{err}");
}

/// `serve` does not judge an entity before `engine.min_history_ms` of it: on a fault-free
/// start (300 entities, 8 minutes, the shipped bundle) scoring every pod from its first sample
/// fires cpu_exhaustion alerts in the first minutes, the default 5 minutes none.
#[test]
fn serve_waits_for_history_before_judging_new_entities() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let firing =
        |min_history_ms: Option<&str>| -> usize {
            let alerts = dir.path().join(format!(
                "alerts-{}.ndjson",
                min_history_ms.unwrap_or("default")
            ));
            let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
            .current_dir(dir.path())
            .args(["serve", "--set"])
            .arg(format!("model.path={}", root.join("fixtures/model").display()))
            .args([
                "--set",
                "embedded.seed=3",
                "--set",
                "embedded.sim={ nodes = 30, services = 54, replicas = 4, duration_ms = 480000 }",
                "--set",
                "http.listen=",
            ])
            .args(
                min_history_ms
                    .iter()
                    .flat_map(|m| ["--set".to_string(), format!("engine.min_history_ms={m}")]),
            )
            .arg("--set")
            .arg(format!("embedded.alerts={}", alerts.display()))
            .output()
            .expect("auspex serve runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::read_to_string(alerts)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|a| a["state"] == "firing")
                .count()
        };
    let eager = firing(Some("0"));
    assert!(eager > 0, "scoring at once fires on start-up (measured: 8)");
    assert_eq!(firing(None), 0, "the default waits five minutes");
}
