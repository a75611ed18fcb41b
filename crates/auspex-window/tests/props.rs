//! Properties of the window store that hold for any input.

use std::collections::BTreeMap;

use auspex_model::{Entity, EntityKind, MetricSample};
use auspex_window::{PushOutcome, WindowConfig, WindowStore};
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;

fn sample(entity: &Entity, ts: i64, metrics: &[(&str, f64)]) -> MetricSample {
    MetricSample {
        timestamp_ms: ts,
        entity: entity.clone(),
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

fn one_metric(metric: &str, length: usize, lateness: usize) -> WindowConfig {
    WindowConfig {
        resolution_ms: 1000,
        length,
        metrics: vec![metric.into()],
        max_lateness_slots: lateness,
        ..WindowConfig::default()
    }
}

proptest! {
    /// The window holds exactly the accepted slots of the last `length`, never more, with the
    /// last value written to each; checked against a naive model.
    #[test]
    fn window_matches_a_naive_model(
        length in 2usize..12,
        lateness_frac in 0.0f64..1.0,
        pushes in prop::collection::vec((0i64..60, -1e6f64..1e6), 1..80),
    ) {
        let lateness = ((length - 1) as f64 * lateness_frac) as usize;
        let mut store = WindowStore::new(one_metric("requests_per_second", length, lateness)).unwrap();
        let p = Entity::new(EntityKind::Pod, Some("ns"), "p");
        let mut model: BTreeMap<i64, f32> = BTreeMap::new();
        let mut head: Option<i64> = None;
        for &(slot, v) in &pushes {
            let out = store.push(&sample(&p, T0 + slot * 1000 + 999, &[("requests_per_second", v)]));
            let expected = match head {
                Some(h) if slot <= h && (h - slot >= length as i64 || h - slot > lateness as i64) => {
                    PushOutcome::TooLate
                }
                _ => {
                    head = Some(head.map_or(slot, |h| h.max(slot)));
                    if model.insert(slot, v as f32).is_some() { PushOutcome::Duplicate } else { PushOutcome::Accepted }
                }
            };
            prop_assert_eq!(out, expected, "slot {}", slot);
        }
        let head = head.unwrap();
        let (mut vals, mut mask) = (Vec::new(), Vec::new());
        store.sequence_matrix(&[p.id()], &mut vals, &mut mask).unwrap();
        prop_assert_eq!(vals.len(), length);
        prop_assert!(mask.iter().filter(|&&m| m == 1.0).count() <= length);
        for (i, t) in (head - length as i64 + 1..=head).enumerate() {
            match model.get(&t) {
                Some(&v) => {
                    prop_assert_eq!(mask[i], 1.0, "slot {} should be observed", t);
                    prop_assert_eq!(vals[i], v);
                }
                None => prop_assert_eq!(mask[i], 0.0, "slot {} should be missing", t),
            }
        }
    }

    /// Whatever a counter does (increments, resets, negative junk, gaps, disorder), its rates
    /// are never negative.
    #[test]
    fn counter_rates_are_never_negative(
        steps in prop::collection::vec((0u8..4, 0.0f64..1e9, 0i64..3), 1..100),
        shuffle in prop::collection::vec(0usize..100, 0..20),
    ) {
        let metric = "network_rx_bytes_total";
        let mut store = WindowStore::new(one_metric(metric, 8, 3)).unwrap();
        let p = Entity::new(EntityKind::Pod, Some("ns"), "p");
        let (mut raw, mut slot) = (0.0, 0i64);
        let mut samples = Vec::new();
        for &(op, x, gap) in &steps {
            raw = match op {
                0 => x.min(100.0),      // reset to a small value
                1 => -x,                // junk: a negative counter
                _ => raw + x,           // increment
            };
            slot += gap;
            samples.push((slot, raw));
        }
        // Disorder: swap some neighbours so late samples land.
        for &i in &shuffle {
            if i + 1 < samples.len() {
                samples.swap(i, i + 1);
            }
        }
        let features_of = |store: &WindowStore| store.features(&p.id()).unwrap();
        for &(slot, raw) in &samples {
            store.push(&sample(&p, T0 + slot * 1000, &[(metric, raw)]));
            let (mut vals, mut mask) = (Vec::new(), Vec::new());
            store.sequence_matrix(&[p.id()], &mut vals, &mut mask).unwrap();
            prop_assert!(vals.iter().all(|&v| v >= 0.0 && v.is_finite()), "{:?}", vals);
            let f = features_of(&store);
            for stat in ["mean", "min", "max", "last", "ewma"] {
                let i = store.spec().index_of(&format!("{metric}.{stat}")).unwrap();
                prop_assert!(f[i] >= 0.0, "{} = {}", stat, f[i]);
            }
        }
    }

    /// Any mix of metrics, values and times gives vectors of the spec's width with no NaN or
    /// infinity, and the arrow batch agrees with them.
    #[test]
    fn features_have_fixed_width_and_are_finite(
        pushes in prop::collection::vec(
            (0usize..3, -5i64..40, prop::collection::vec((0usize..28, prop_oneof![
                -1e30f64..1e30, -10.0f64..10.0, Just(0.0), Just(1e300), Just(-1e300)
            ]), 0..12)),
            1..60,
        ),
    ) {
        let config = WindowConfig { resolution_ms: 1000, length: 6, max_lateness_slots: 5, ..WindowConfig::default() };
        let mut names: Vec<String> = config.metrics.clone();
        names.extend(["cpu_limit_cores", "memory_limit_bytes", "cpu_request_cores", "custom_total"].map(String::from));
        let mut store = WindowStore::new(config).unwrap();
        let entities: Vec<Entity> = (0..3).map(|i| Entity::new(EntityKind::Pod, Some("ns"), &format!("p{i}"))).collect();
        for (who, slot, metrics) in &pushes {
            let metrics: Vec<(&str, f64)> = metrics.iter().map(|&(m, v)| (names[m % names.len()].as_str(), v)).collect();
            store.push(&sample(&entities[*who], T0 + slot * 1000, &metrics));
        }
        let ids: Vec<_> = store.entities().cloned().collect();
        let width = store.spec().len();
        let mut matrix = Vec::new();
        store.feature_matrix(&ids, &mut matrix).unwrap();
        prop_assert_eq!(matrix.len(), ids.len() * width);
        prop_assert!(matrix.iter().all(|v| v.is_finite()));
        for (id, row) in ids.iter().zip(matrix.chunks(width)) {
            prop_assert_eq!(&store.features(id).unwrap()[..], row);
        }
        let (mut vals, mut mask) = (Vec::new(), Vec::new());
        store.sequence_matrix(&ids, &mut vals, &mut mask).unwrap();
        prop_assert!(vals.iter().all(|v| v.is_finite()));
        // The one-pass reading gives both exactly, into buffers holding stale values.
        let (mut rows2, mut vals2, mut mask2) = (vec![7.0; 3], vec![7.0; 5], vec![7.0; 900]);
        store.feature_and_sequence_matrix(&ids, &mut rows2, &mut vals2, &mut mask2).unwrap();
        prop_assert_eq!(&rows2, &matrix);
        prop_assert_eq!(&vals2, &vals);
        prop_assert_eq!(&mask2, &mask);
    }
}
