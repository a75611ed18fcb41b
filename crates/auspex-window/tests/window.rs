//! Behaviour of the window store through its public API: hand-computed features, counters,
//! gaps, late and duplicate samples, eviction, scheduling.

use std::collections::BTreeMap;

use auspex_model::{Entity, EntityId, EntityKind, MetricSample};
use auspex_window::{PushOutcome, WindowConfig, WindowError, WindowStore};

/// Slot 0 of the tests' grid (a multiple of every resolution used here).
const T0: i64 = 1_700_000_040_000;

fn pod(name: &str) -> Entity {
    Entity::new(EntityKind::Pod, Some("shop"), name)
}

fn sample(entity: &Entity, ts: i64, metrics: &[(&str, f64)]) -> MetricSample {
    MetricSample {
        timestamp_ms: ts,
        entity: entity.clone(),
        metrics: metrics
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Length 5, cpu (gauge with a limit) and restarts (counter).
fn small(resolution_ms: u64) -> WindowConfig {
    WindowConfig {
        resolution_ms,
        length: 5,
        step: 1,
        metrics: vec!["cpu_usage_cores".into(), "restarts_total".into()],
        stale_after_ms: 60_000,
        ewma_alpha: 0.5,
        max_lateness_slots: 2,
        tte_cap_seconds: 100.0,
        baseline_ms: 86_400_000,
    }
}

fn feature(store: &WindowStore, id: &EntityId, name: &str) -> f32 {
    let i = store
        .spec()
        .index_of(name)
        .unwrap_or_else(|| panic!("no feature {name}"));
    store.features(id).expect("entity is live")[i]
}

fn assert_close(got: f32, want: f64, what: &str) {
    assert!(
        (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

/// The imputed series and mask of metric `c` for one entity.
fn sequence(store: &WindowStore, id: &EntityId, c: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut v, mut m) = (Vec::new(), Vec::new());
    store
        .sequence_matrix(std::slice::from_ref(id), &mut v, &mut m)
        .unwrap();
    let n = store.spec().metrics.len();
    (
        v.iter().skip(c).step_by(n).copied().collect(),
        m.iter().skip(c).step_by(n).copied().collect(),
    )
}

#[test]
fn features_match_hand_computed_values() {
    // 2 s slots so that per-slot and per-second slopes differ.
    let mut store = WindowStore::new(small(2000)).unwrap();
    let p = pod("a");
    let cpu = [1.0, 3.0, 2.0, 5.0, 4.0];
    let restarts = [0.0, 0.0, 1.0, 1.0, 3.0];
    for i in 0..5 {
        // Jitter inside the slot: the grid, not the timestamp, decides.
        let ts = T0 + i * 2000 + 137;
        let mut m = vec![
            ("cpu_usage_cores", cpu[i as usize]),
            ("restarts_total", restarts[i as usize]),
        ];
        if i == 0 {
            m.push(("cpu_limit_cores", 8.0));
        }
        assert_eq!(store.push(&sample(&p, ts, &m)), PushOutcome::Accepted);
    }
    let id = p.id();
    let f = |n: &str| feature(&store, &id, n);
    // cpu: mean 3, population variance (4+0+1+4+1)/5 = 2, least-squares slope 0.8 per slot.
    assert_close(f("cpu_usage_cores.mean"), 3.0, "mean");
    assert_close(f("cpu_usage_cores.std"), 2f64.sqrt(), "std");
    assert_close(f("cpu_usage_cores.min"), 1.0, "min");
    assert_close(f("cpu_usage_cores.max"), 5.0, "max");
    assert_close(f("cpu_usage_cores.last"), 4.0, "last");
    assert_close(f("cpu_usage_cores.slope"), 0.4, "slope per second");
    // EWMA with alpha 0.5: 1, 2, 2, 3.5, 3.75.
    assert_close(f("cpu_usage_cores.ewma"), 3.75, "ewma");
    assert_close(f("cpu_usage_cores.zscore"), 1.0 / 2f64.sqrt(), "zscore");
    // A day-long baseline over 5 samples is their plain mean (3) and variance (2).
    let bz = 0.75 / 2f64.sqrt();
    assert_close(f("cpu_usage_cores.baseline_z"), bz, "baseline_z");
    assert_close(
        f("restarts_total.baseline_z"),
        0.0,
        "counters have no baseline",
    );
    assert_close(f("window.max_abs_baseline_z"), bz, "max |baseline_z|");
    assert_close(
        f("window.mean_abs_baseline_z"),
        bz / 2.0,
        "mean |baseline_z|",
    );
    assert!(f64::from(f("window.max_abs_zscore")) >= 1.0 / 2f64.sqrt() - 1e-6);
    assert_close(f("cpu_usage_cores.missing_ratio"), 0.0, "missing");
    assert_close(f("cpu_usage_cores.utilisation"), 0.5, "utilisation");
    // (8 - 4) / 0.4 per second.
    assert_close(f("cpu_usage_cores.time_to_exhaustion_seconds"), 10.0, "tte");

    // restarts: rates over 2 s: slot 0 has no predecessor, then 0, 0.5, 0, 1.
    assert_close(f("restarts_total.mean"), 0.375, "rate mean");
    assert_close(f("restarts_total.std"), (0.171875f64).sqrt(), "rate std");
    assert_close(f("restarts_total.max"), 1.0, "rate max");
    assert_close(f("restarts_total.last"), 1.0, "rate last");
    // slope 0.25 per slot over slots 1..4.
    assert_close(f("restarts_total.slope"), 0.125, "rate slope");
    // imputed [0, 0, 0.5, 0, 1]: 0, 0, 0.25, 0.125, 0.5625.
    assert_close(f("restarts_total.ewma"), 0.5625, "rate ewma");
    assert_close(f("restarts_total.missing_ratio"), 0.2, "rate missing");
    // (5 + 4) observed cells of 10.
    assert_close(f("window.completeness"), 0.9, "completeness");
    assert_eq!(store.window_end_ms(&id), Some(T0 + 5 * 2000));
}

#[test]
fn time_to_exhaustion_caps_and_clamps() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let (falling, full, unlimited) = (pod("falling"), pod("full"), pod("unlimited"));
    for i in 0..5 {
        let ts = T0 + i * 1000;
        let x = i as f64;
        store.push(&sample(
            &falling,
            ts,
            &[("cpu_usage_cores", 4.0 - x), ("cpu_limit_cores", 8.0)],
        ));
        store.push(&sample(
            &full,
            ts,
            &[("cpu_usage_cores", 6.0 + x), ("cpu_limit_cores", 8.0)],
        ));
        store.push(&sample(&unlimited, ts, &[("cpu_usage_cores", x)]));
    }
    let tte = "cpu_usage_cores.time_to_exhaustion_seconds";
    assert_eq!(
        feature(&store, &falling.id(), tte),
        100.0,
        "not rising: cap"
    );
    assert_eq!(feature(&store, &full.id(), tte), 0.0, "over the limit: 0");
    assert_close(
        feature(&store, &full.id(), "cpu_usage_cores.utilisation"),
        1.25,
        "util > 1",
    );
    assert_eq!(
        feature(&store, &unlimited.id(), tte),
        100.0,
        "no limit: cap"
    );
    assert_eq!(
        feature(&store, &unlimited.id(), "cpu_usage_cores.utilisation"),
        0.0
    );
}

#[test]
fn counter_resets_give_non_negative_rates() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let p = pod("a");
    for (i, raw) in [10.0, 20.0, 5.0, 15.0].into_iter().enumerate() {
        store.push(&sample(
            &p,
            T0 + i as i64 * 1000,
            &[("restarts_total", raw)],
        ));
    }
    let (rates, mask) = sequence(&store, &p.id(), 1);
    // Window is slots -1..=3; slot -1 never seen, slot 0 has no predecessor (back-filled).
    assert_eq!(mask, [0.0, 0.0, 1.0, 1.0, 1.0]);
    // 20-10 = 10; reset to 5 counts 5 since; 15-5 = 10.
    assert_eq!(rates, [10.0, 10.0, 10.0, 5.0, 10.0]);
    assert_eq!(feature(&store, &p.id(), "restarts_total.min"), 5.0);
}

#[test]
fn counter_rate_survives_the_window_sliding() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let p = pod("a");
    for i in 0..12 {
        store.push(&sample(
            &p,
            T0 + i * 1000,
            &[("restarts_total", 3.0 * i as f64)],
        ));
    }
    // The oldest slot in the window still has a rate, from the raw value that left it.
    let (rates, mask) = sequence(&store, &p.id(), 1);
    assert_eq!(mask, [1.0; 5]);
    assert_eq!(rates, [3.0; 5]);
    // Jump far ahead: the anchor is the newest value that left, over the whole gap.
    store.push(&sample(
        &p,
        T0 + 20 * 1000,
        &[("restarts_total", 33.0 + 9.0 * 3.0)],
    ));
    let (rates, mask) = sequence(&store, &p.id(), 1);
    assert_eq!(mask, [0.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(rates, [3.0; 5]);
}

#[test]
fn gaps_are_imputed_masked_and_counted() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let p = pod("a");
    for (slot, v) in [(0, 1.0), (3, 4.0), (4, 7.0)] {
        store.push(&sample(&p, T0 + slot * 1000, &[("cpu_usage_cores", v)]));
    }
    let (vals, mask) = sequence(&store, &p.id(), 0);
    assert_eq!(vals, [1.0, 2.0, 3.0, 4.0, 7.0]);
    assert_eq!(mask, [1.0, 0.0, 0.0, 1.0, 1.0]);
    let f = |n: &str| feature(&store, &p.id(), n);
    assert_close(f("cpu_usage_cores.missing_ratio"), 0.4, "missing");
    assert_close(f("cpu_usage_cores.mean"), 4.0, "mean of observed only");
    // EWMA over the imputed series 1, 2, 3, 4, 7.
    assert_close(f("cpu_usage_cores.ewma"), 5.0625, "ewma");
    // restarts never reported: all zero, fully missing, and not part of completeness.
    assert_eq!(f("restarts_total.mean"), 0.0);
    assert_eq!(f("restarts_total.missing_ratio"), 1.0);
    assert_close(f("window.completeness"), 0.6, "completeness");

    // Leading and trailing gaps: first value carried back, last carried forward.
    store.push(&sample(&p, T0 + 7 * 1000, &[("restarts_total", 1.0)]));
    let (vals, mask) = sequence(&store, &p.id(), 0);
    assert_eq!(mask, [1.0, 1.0, 0.0, 0.0, 0.0], "window is slots 3..=7");
    assert_eq!(vals, [4.0, 7.0, 7.0, 7.0, 7.0]);
}

#[test]
fn late_samples_fill_their_slot_and_fix_rates() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let p = pod("a");
    for (slot, raw) in [(0, 0.0), (1, 10.0), (3, 30.0)] {
        store.push(&sample(
            &p,
            T0 + slot * 1000,
            &[("restarts_total", raw), ("cpu_usage_cores", 1.0)],
        ));
    }
    let (rates, mask) = sequence(&store, &p.id(), 1);
    assert_eq!(mask, [0.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(rates, [10.0, 10.0, 10.0, 10.0, 10.0], "30-10 over 2 s");

    // Slot 2 arrives late (1 slot behind, within the bound of 2).
    let late = sample(
        &p,
        T0 + 2 * 1000,
        &[("restarts_total", 15.0), ("cpu_usage_cores", 9.0)],
    );
    assert_eq!(store.push(&late), PushOutcome::Accepted);
    let (rates, mask) = sequence(&store, &p.id(), 1);
    assert_eq!(mask, [0.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(
        rates,
        [10.0, 10.0, 10.0, 5.0, 15.0],
        "both neighbours' rates recomputed"
    );
    assert_eq!(sequence(&store, &p.id(), 0).0, [1.0, 1.0, 1.0, 9.0, 1.0]);
    assert_eq!(store.stats().accepted, 4);
}

#[test]
fn duplicates_overwrite_and_are_counted() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let p = pod("a");
    store.push(&sample(&p, T0, &[("cpu_usage_cores", 1.0)]));
    // Same slot, another metric: not a duplicate (metrics may arrive split).
    assert_eq!(
        store.push(&sample(&p, T0 + 10, &[("restarts_total", 1.0)])),
        PushOutcome::Accepted
    );
    assert_eq!(
        store.push(&sample(&p, T0 + 999, &[("cpu_usage_cores", 2.0)])),
        PushOutcome::Duplicate
    );
    assert_eq!(feature(&store, &p.id(), "cpu_usage_cores.last"), 2.0);
    let s = store.stats();
    assert_eq!((s.accepted, s.duplicates), (2, 1));
}

#[test]
fn too_late_samples_are_dropped() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let p = pod("a");
    store.push(&sample(&p, T0 + 10 * 1000, &[("cpu_usage_cores", 1.0)]));
    // 3 slots behind, bound is 2.
    assert_eq!(
        store.push(&sample(&p, T0 + 7 * 1000, &[("cpu_usage_cores", 5.0)])),
        PushOutcome::TooLate
    );
    // Before the window altogether.
    assert_eq!(
        store.push(&sample(&p, T0, &[("cpu_usage_cores", 5.0)])),
        PushOutcome::TooLate
    );
    assert_eq!(
        store.push(&sample(&p, T0 + 8 * 1000, &[("cpu_usage_cores", 3.0)])),
        PushOutcome::Accepted
    );
    assert_eq!(store.stats().too_late, 2);
    assert_eq!(feature(&store, &p.id(), "cpu_usage_cores.max"), 3.0);
    assert_eq!(feature(&store, &p.id(), "cpu_usage_cores.last"), 1.0);
}

#[test]
fn unknown_and_non_finite_values_are_ignored_and_counted() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let p = pod("a");
    let out = store.push(&sample(
        &p,
        T0,
        &[
            ("aaa_custom", 1.0),
            ("cpu_limit_cores", 2.0),
            ("cpu_request_cores", 1.0),
            ("cpu_usage_cores", f64::NAN),
            ("zzz_total", 3.0),
        ],
    ));
    assert_eq!(out, PushOutcome::Accepted);
    let s = store.stats();
    assert_eq!(
        s.unknown_metrics, 3,
        "custom, request and zzz; the limit is side info"
    );
    assert_eq!(s.non_finite_values, 1);
    assert_eq!(
        feature(&store, &p.id(), "cpu_usage_cores.missing_ratio"),
        1.0
    );
}

#[test]
fn stale_entities_are_evicted_and_their_slot_reused_clean() {
    let mut store = WindowStore::new(small(1000)).unwrap();
    let (a, b, c) = (pod("a"), pod("b"), pod("c"));
    for i in 0..5 {
        store.push(&sample(
            &a,
            T0 + i * 1000,
            &[("cpu_usage_cores", 9.0), ("restarts_total", i as f64)],
        ));
    }
    store.push(&sample(&b, T0 + 100_000, &[("cpu_usage_cores", 1.0)]));
    assert_eq!(store.len(), 2);
    // a was last seen at T0 + 4 s, stale after 60 s.
    assert!(store.evict_stale(T0 + 64_000).is_empty());
    assert_eq!(store.evict_stale(T0 + 64_001), vec![a.id()]);
    assert_eq!(store.len(), 1);
    assert!(!store.contains(&a.id()));
    assert!(store.features(&a.id()).is_none());
    assert!(matches!(
        store.feature_batch(&[a.id()]),
        Err(WindowError::UnknownEntity(_))
    ));
    assert_eq!(store.stats().evicted, 1);

    // c takes a's storage; nothing of a's window may show through.
    store.push(&sample(&c, T0 + 4 * 1000, &[("restarts_total", 100.0)]));
    let f = |n: &str| feature(&store, &c.id(), n);
    assert_eq!(f("cpu_usage_cores.missing_ratio"), 1.0);
    assert_eq!(
        f("restarts_total.missing_ratio"),
        1.0,
        "no anchor inherited"
    );
    let mut ids: Vec<_> = store.entities().cloned().collect();
    ids.sort();
    assert_eq!(ids, vec![b.id(), c.id()]);
}

#[test]
fn due_honours_step_and_now() {
    let mut store = WindowStore::new(WindowConfig {
        step: 3,
        ..small(1000)
    })
    .unwrap();
    let p = pod("a");
    let mut due_at = Vec::new();
    for slot in (0..10).chain([15, 16, 17, 18]) {
        let ts = T0 + slot * 1000;
        store.push(&sample(&p, ts, &[("cpu_usage_cores", 1.0)]));
        if store.due(ts) == vec![p.id()] {
            due_at.push(slot);
        }
    }
    // New at 0 (T0 is slot 1_700_000_040, a multiple of 3), then every multiple of 3; after
    // the gap, at once (15 is a multiple), then 18.
    assert_eq!(due_at, [0, 3, 6, 9, 15, 18]);

    // A window ending after `now` waits for a later tick.
    let q = pod("b");
    store.push(&sample(&q, T0 + 21 * 1000, &[("cpu_usage_cores", 1.0)]));
    assert!(store.due(T0 + 20 * 1000).is_empty());
    assert_eq!(store.due(T0 + 21 * 1000), vec![q.id()]);
    assert!(store.due(T0 + 21 * 1000).is_empty(), "marked as scored");
}

#[test]
fn grid_is_shared_across_entities_for_step() {
    let mut store = WindowStore::new(WindowConfig {
        step: 4,
        ..small(1000)
    })
    .unwrap();
    let (a, b) = (pod("a"), pod("b"));
    store.push(&sample(&a, T0, &[("cpu_usage_cores", 1.0)]));
    store.push(&sample(&b, T0 + 2000, &[("cpu_usage_cores", 1.0)]));
    assert_eq!(store.due(T0 + 2000).len(), 2, "both new");
    for slot in 3..=4 {
        store.push(&sample(&a, T0 + slot * 1000, &[("cpu_usage_cores", 1.0)]));
        store.push(&sample(&b, T0 + slot * 1000, &[("cpu_usage_cores", 1.0)]));
    }
    // Both next due at slot 4 (the next multiple of 4), so they batch together.
    assert_eq!(store.due(T0 + 4000).len(), 2);
}
