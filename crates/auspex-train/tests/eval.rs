//! Metrics against hand-computed values, the report's JSON shape, and the plots.

use auspex_model::{AnomalyKind, EntityRef, IncidentLabel};
use auspex_train::plot;
use auspex_train::{
    AblationTable, EvalConfig, Series, average_precision, best_f1, evaluate, event_metrics,
    lead_times, pointwise, pr_curve, segments, vus_pr,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn pointwise_by_hand() {
    let scores = [0.1, 0.4, 0.35, 0.8];
    let labels = [false, false, true, true];
    let m = pointwise(&scores, &labels, 0.4);
    assert_eq!((m.tp, m.fp, m.fn_, m.tn), (1, 1, 1, 1));
    assert!(close(m.precision, 0.5) && close(m.recall, 0.5) && close(m.f1, 0.5));
    // The threshold is inclusive.
    let m = pointwise(&scores, &labels, 0.35);
    assert_eq!((m.tp, m.fp), (2, 1));
    assert!(close(m.f1, 0.8));
    // Nothing alerts: precision and F1 are 0 by convention.
    let m = pointwise(&scores, &labels, 2.0);
    assert_eq!((m.tp, m.fp, m.fn_, m.tn), (0, 0, 2, 2));
    assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
    // NaN never alerts.
    let m = pointwise(&[f64::NAN, 1.0], &[true, true], 0.0);
    assert_eq!((m.tp, m.fn_), (1, 1));
}

#[test]
fn no_positives_and_all_positives() {
    let scores = [0.3, 0.9, 0.1];
    let none = [false; 3];
    let m = pointwise(&scores, &none, 0.5);
    assert_eq!(
        (m.precision, m.recall, m.f1, m.fp, m.tn),
        (0.0, 0.0, 0.0, 1, 2)
    );
    assert_eq!(average_precision(&scores, &none), 0.0);
    assert_eq!(best_f1(&scores, &none).f1, 0.0);
    assert_eq!(vus_pr(&scores, &none, 4), None);

    let all = [true; 3];
    assert!(close(average_precision(&scores, &all), 1.0));
    let m = pointwise(&scores, &all, 0.0);
    assert_eq!((m.precision, m.recall, m.f1), (1.0, 1.0, 1.0));
    assert!(close(best_f1(&scores, &all).f1, 1.0));
    assert_eq!(best_f1(&scores, &all).threshold, 0.1);
}

#[test]
fn ties_enter_together() {
    let scores = [0.5, 0.5, 0.5, 0.1];
    let labels = [true, false, true, false];
    let curve = pr_curve(&scores, &labels);
    assert_eq!(curve.len(), 2);
    assert!(close(curve[0].precision, 2.0 / 3.0) && close(curve[0].recall, 1.0));
    assert!(close(curve[1].precision, 0.5) && close(curve[1].recall, 1.0));
    assert!(close(average_precision(&scores, &labels), 2.0 / 3.0));
    let b = best_f1(&scores, &labels);
    assert!(close(b.f1, 0.8));
    assert_eq!(b.threshold, 0.5);
    // scikit-learn's example: average_precision_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.8333.
    let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
    assert!(close(ap, 5.0 / 6.0), "{ap}");
}

#[test]
fn perfect_and_random_scorers() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 20_000;
    let labels: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.1).collect();
    let perfect: Vec<f64> = labels.iter().map(|&y| if y { 0.9 } else { 0.2 }).collect();
    let random: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
    let prevalence = labels.iter().filter(|&&y| y).count() as f64 / n as f64;
    assert!(close(average_precision(&perfect, &labels), 1.0));
    let ap = average_precision(&random, &labels);
    assert!(
        (ap - prevalence).abs() < 0.02,
        "random AP {ap} vs prevalence {prevalence}"
    );

    // VUS-PR: 1 for a perfect scorer at every buffer window; low for a random one.
    let mut seg_labels = vec![false; 2_000];
    for s in [100, 700, 1500] {
        seg_labels[s..s + 30].fill(true);
    }
    let perfect: Vec<f64> = seg_labels.iter().map(|&y| f64::from(u8::from(y))).collect();
    for w in [0, 10, 40] {
        let v = vus_pr(&perfect, &seg_labels, w).unwrap();
        assert!(close(v, 1.0), "window {w}: {v}");
    }
    let random: Vec<f64> = (0..2_000).map(|_| rng.random::<f64>()).collect();
    let v = vus_pr(&random, &seg_labels, 20).unwrap();
    assert!(v < 0.2, "random VUS-PR {v}");
}

#[test]
fn segments_events_and_delays() {
    assert_eq!(segments(&[]), vec![]);
    let s = segments(&[true, true, false, true]);
    assert_eq!((s[0].start, s[0].end, s[1].start, s[1].end), (0, 1, 3, 3));

    let ts: Vec<i64> = (0..12).map(|i| i * 60_000).collect();
    let b = |v: &[u8]| v.iter().map(|&x| x == 1).collect::<Vec<bool>>();
    let labels = b(&[0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0]);
    let alerts = b(&[0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1]);

    let (m, delays) = event_metrics(&ts, &labels, &alerts, 0);
    assert_eq!(
        (
            m.anomalies,
            m.detected,
            m.alerts,
            m.true_alerts,
            m.false_alerts
        ),
        (2, 1, 4, 1, 3)
    );
    assert!(close(m.recall, 0.5) && close(m.precision, 0.25));
    assert_eq!(delays[0].map(|d| (d.steps, d.ms)), Some((2, 120_000)));
    assert_eq!(delays[1], None);

    // One step of early credit: both anomalies found a step ahead.
    let (m, delays) = event_metrics(&ts, &labels, &alerts, 60_000);
    assert_eq!((m.detected, m.true_alerts, m.false_alerts), (2, 3, 1));
    assert!(close(m.recall, 1.0) && close(m.precision, 0.75));
    assert_eq!(delays[0].map(|d| d.steps), Some(-1));
    assert_eq!(delays[1].map(|d| d.ms), Some(-60_000));
}

#[test]
fn report_has_the_bring_your_own_keys_and_pools_entities() {
    let ts: Vec<i64> = (0..12).map(|i| i * 60_000).collect();
    let b = |v: &[u8]| v.iter().map(|&x| x == 1).collect::<Vec<bool>>();
    let a = Series {
        name: "node/m1".into(),
        timestamps_ms: ts.clone(),
        scores: b(&[0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1])
            .iter()
            .map(|&x| if x { 0.9 } else { 0.1 })
            .collect(),
        labels: b(&[0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0]),
    };
    let quiet = Series {
        name: "node/m2".into(),
        timestamps_ms: ts.clone(),
        scores: vec![0.0; 12],
        labels: vec![false; 12],
    };
    let config = EvalConfig {
        threshold: 0.5,
        vus_window: 4,
        ..EvalConfig::default()
    };
    let r = evaluate(&[a.clone(), quiet.clone()], &config).unwrap();
    let m1 = &r.per_entity["node/m1"];
    assert_eq!(m1.mean_delay_steps, Some(2.0));
    assert_eq!(m1.mean_delay_seconds, Some(120.0));
    // 12 one-minute points: 1/120 day; 3 false alerts.
    assert!(close(m1.days, 12.0 / 1440.0));
    assert!(close(m1.false_alerts_per_day.unwrap(), 360.0));
    assert!(m1.vus_pr.is_some());
    let m2 = &r.per_entity["node/m2"];
    assert_eq!(m2.mean_delay_steps, None);
    assert_eq!(m2.event.alerts, 0);
    // Pooled: the quiet entity adds points and days but no events.
    assert_eq!(r.overall.points, 24);
    assert_eq!(r.overall.pointwise.tp, m1.pointwise.tp);
    assert_eq!(r.overall.pointwise.tn, m1.pointwise.tn + 12);
    assert!(close(r.overall.false_alerts_per_day.unwrap(), 180.0));
    assert_eq!(r.overall.vus_pr, m1.vus_pr);

    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    for summary in [
        &v["overall"],
        &v["per_entity"]["node/m1"],
        &v["per_entity"]["node/m2"],
    ] {
        for k in ["precision", "recall", "f1"] {
            assert!(summary["pointwise"][k].is_number(), "pointwise.{k}");
        }
        for k in ["precision", "recall"] {
            assert!(summary["event"][k].is_number(), "event.{k}");
        }
        assert!(summary.get("mean_delay_steps").is_some());
    }
    assert!(v["overall"]["mean_delay_steps"].is_number());

    // Bad input is refused.
    let mut short = a.clone();
    short.scores.pop();
    assert!(evaluate(&[short], &config).is_err());
    assert!(evaluate(&[a.clone(), a.clone()], &config).is_err());
    let mut back = a.clone();
    back.timestamps_ms.swap(0, 1);
    assert!(evaluate(&[back], &config).is_err());

    // The ablation table takes summaries.
    let mut t = AblationTable::for_summaries();
    t.push_summary("zscore", &r.overall).unwrap();
    t.push_summary("m2", m2).unwrap();
    let md = t.render();
    assert!(md.starts_with("| name | F1 |"));
    assert!(md.contains("| zscore |"));
}

#[test]
fn lead_times_are_measured_from_the_incident() {
    let ts: Vec<i64> = (0..20).map(|i| i * 60_000).collect();
    let mut scores = vec![0.0; 20];
    scores[7] = 1.0;
    let s = Series {
        name: EntityRef::pod("ns", "p").id().as_str().to_string(),
        timestamps_ms: ts,
        scores,
        labels: vec![false; 20],
    };
    let label = |incident: i64, end: i64| IncidentLabel {
        entity: EntityRef::pod("ns", "p"),
        kind: AnomalyKind::MemoryExhaustion,
        fault: "x".into(),
        onset_ms: incident - 120_000,
        incident_ms: incident,
        end_ms: end,
        root_cause: true,
    };
    let leads = lead_times(
        &[s],
        &[
            label(10 * 60_000, 12 * 60_000),
            label(16 * 60_000, 18 * 60_000),
        ],
        0.5,
        5 * 60_000,
    );
    assert_eq!(leads.len(), 2);
    assert_eq!(leads[0].lead_ms, Some(3 * 60_000));
    assert_eq!(
        leads[1].lead_ms, None,
        "the alert at 7 is outside 16's horizon"
    );
}

#[test]
fn plots_are_svg_with_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let labels = [true, false, true, false, false, true];
    let a = pr_curve(&[0.9, 0.8, 0.7, 0.3, 0.2, 0.6], &labels);
    let b = pr_curve(&[0.1, 0.8, 0.7, 0.3, 0.9, 0.2], &labels);
    let read = |name: &str| {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.trim_start().starts_with("<svg"), "{name}");
        assert!(text.trim_end().ends_with("</svg>"), "{name}");
        text
    };

    plot::pr_curves(
        &dir.path().join("pr.svg"),
        "PR curves",
        &[("lstm_branch", &a), ("ensemble_meta", &b)],
    )
    .unwrap();
    let pr = read("pr.svg");
    assert!(pr.contains("lstm_branch") && pr.contains("ensemble_meta") && pr.contains("PR curves"));

    plot::lead_time_histogram(
        &dir.path().join("lead.svg"),
        "Lead time",
        &[60.0, 300.0, 320.0, 900.0, -30.0],
        6,
    )
    .unwrap();
    let lead = read("lead.svg");
    assert!(lead.contains("Lead time") && lead.contains("5 incidents"));
    assert!(lead.matches("<rect").count() >= 6);

    let ts: Vec<i64> = (0..60).map(|i| i * 60_000).collect();
    let scores: Vec<f64> = (0..60).map(|i| (i as f64 / 5.0).sin()).collect();
    plot::score_timeline(
        &dir.path().join("timeline.svg"),
        "memory leak on cart-1",
        &ts,
        &scores,
        0.7,
        &[(20 * 60_000, 30 * 60_000)],
    )
    .unwrap();
    let tl = read("timeline.svg");
    for name in [
        "score",
        "threshold",
        "labelled incident",
        "memory leak on cart-1",
    ] {
        assert!(tl.contains(name), "{name}");
    }
    assert!(plot::score_timeline(&dir.path().join("x.svg"), "x", &ts, &[0.0], 0.5, &[]).is_err());
}

proptest::proptest! {
    /// Invariants of the curves and event counts on arbitrary inputs.
    #[test]
    fn curve_and_event_invariants(
        data in proptest::collection::vec((0u8..20, proptest::bool::ANY, proptest::bool::ANY), 1..200),
        threshold in 0u8..20,
    ) {
        let scores: Vec<f64> = data.iter().map(|d| f64::from(d.0)).collect();
        let labels: Vec<bool> = data.iter().map(|d| d.1).collect();
        let curve = pr_curve(&scores, &labels);
        for w in curve.windows(2) {
            proptest::prop_assert!(w[0].threshold > w[1].threshold);
            proptest::prop_assert!(w[0].recall <= w[1].recall);
        }
        let ap = average_precision(&scores, &labels);
        proptest::prop_assert!((0.0..=1.0 + 1e-12).contains(&ap));
        let b = best_f1(&scores, &labels);
        let p = pointwise(&scores, &labels, f64::from(threshold));
        proptest::prop_assert!(p.f1 <= b.f1 + 1e-12, "a fixed threshold never beats the best");

        let ts: Vec<i64> = (0..data.len() as i64).map(|i| i * 1000).collect();
        let alerts: Vec<bool> = data.iter().map(|d| d.2).collect();
        let (m, delays) = event_metrics(&ts, &labels, &alerts, 2000);
        proptest::prop_assert_eq!(m.true_alerts + m.false_alerts, m.alerts);
        proptest::prop_assert_eq!(delays.len() as u64, m.anomalies);
        proptest::prop_assert_eq!(delays.iter().filter(|d| d.is_some()).count() as u64, m.detected);
        for d in delays.into_iter().flatten() {
            proptest::prop_assert!(d.steps >= -2 && d.ms == d.steps * 1000);
        }
    }
}
