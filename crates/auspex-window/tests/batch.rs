//! Arrow batches: schemas, and values that agree with the feature vectors and sequences.

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_schema::DataType;
use auspex_model::{Entity, EntityKind, MetricSample};
use auspex_window::{ENTITY_COLUMN, MASK_SUFFIX, WindowConfig, WindowError, WindowStore};

const T0: i64 = 1_700_000_040_000;

fn filled_store() -> (WindowStore, Vec<auspex_model::EntityId>) {
    let config = WindowConfig {
        resolution_ms: 1000,
        length: 6,
        ..WindowConfig::default()
    };
    let mut store = WindowStore::new(config).unwrap();
    let mut ids = Vec::new();
    for p in 0..4 {
        let entity = Entity::new(EntityKind::Pod, Some("shop"), &format!("p{p}"));
        ids.push(entity.id());
        for slot in 0..8i64 {
            if (slot + p) % 3 == 0 {
                continue; // gaps
            }
            let x = (slot * (p + 1)) as f64;
            let metrics = [
                ("cpu_usage_cores", 0.1 * x),
                ("cpu_limit_cores", 2.0),
                ("memory_working_set_bytes", 1e8 + 1e6 * x),
                ("network_rx_bytes_total", 1e4 * x),
                ("ready", 1.0),
            ];
            store.push(&MetricSample {
                timestamp_ms: T0 + slot * 1000,
                entity: entity.clone(),
                metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            });
        }
    }
    (store, ids)
}

#[test]
fn feature_batch_schema_and_values_match_vectors() {
    let (store, ids) = filled_store();
    let batch = store.feature_batch(&ids).unwrap();
    let schema = batch.schema();
    assert_eq!(batch.num_rows(), ids.len());
    assert_eq!(batch.num_columns(), store.spec().len() + 1);
    assert_eq!(schema.field(0).name(), ENTITY_COLUMN);
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    for (i, name) in store.spec().names.iter().enumerate() {
        let f = schema.field(i + 1);
        assert_eq!(f.name(), name);
        assert_eq!(f.data_type(), &DataType::Float32);
    }
    let entity = batch.column(0).as_string::<i32>();
    for (row, id) in ids.iter().enumerate() {
        assert_eq!(entity.value(row), id.as_str());
        let want = store.features(id).unwrap();
        for (j, w) in want.iter().enumerate() {
            let got = batch.column(j + 1).as_primitive::<Float32Type>().value(row);
            assert_eq!(got, *w, "row {row} feature {}", store.spec().names[j]);
        }
    }
    // Not every feature is zero: the batch carries real data.
    let util = store
        .spec()
        .index_of("cpu_usage_cores.utilisation")
        .unwrap();
    assert!(
        batch
            .column(util + 1)
            .as_primitive::<Float32Type>()
            .value(3)
            > 0.0
    );
    assert_eq!(store.feature_batch(&[]).unwrap().num_rows(), 0);
}

#[test]
fn sequence_batch_schema_and_values_match_matrix() {
    let (store, ids) = filled_store();
    let batch = store.sequence_batch(&ids).unwrap();
    let metrics = &store.spec().metrics;
    let (l, m) = (store.config().length, metrics.len());
    assert_eq!(batch.num_columns(), 1 + 2 * m);
    assert_eq!(batch.schema().field(0).name(), ENTITY_COLUMN);
    let (mut vals, mut mask) = (Vec::new(), Vec::new());
    store.sequence_matrix(&ids, &mut vals, &mut mask).unwrap();
    for (c, metric) in metrics.iter().enumerate() {
        let values_field = batch.schema().field(1 + 2 * c).clone();
        let mask_field = batch.schema().field(2 + 2 * c).clone();
        assert_eq!(values_field.name(), metric);
        assert_eq!(mask_field.name(), &format!("{metric}{MASK_SUFFIX}"));
        assert!(
            matches!(values_field.data_type(), DataType::FixedSizeList(item, n)
            if *n as usize == l && item.data_type() == &DataType::Float32)
        );
        let values = batch.column(1 + 2 * c).as_fixed_size_list();
        let masks = batch.column(2 + 2 * c).as_fixed_size_list();
        for row in 0..ids.len() {
            let v = values.value(row);
            let v = v.as_primitive::<Float32Type>();
            let k = masks.value(row);
            let k = k.as_primitive::<Float32Type>();
            assert_eq!(v.len(), l);
            for t in 0..l {
                let at = (row * l + t) * m + c;
                assert_eq!(v.value(t), vals[at], "{metric} row {row} slot {t}");
                assert_eq!(k.value(t), mask[at], "{metric} mask row {row} slot {t}");
            }
        }
    }
    // Spot check: entity p0 has gaps at slots 3 and 6 (window is slots 2..=7).
    let cpu = batch.column(2).as_fixed_size_list().value(0);
    let cpu_mask: Vec<f32> = cpu.as_primitive::<Float32Type>().values().to_vec();
    assert_eq!(cpu_mask, [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]);
}

#[test]
fn unknown_entity_is_an_error() {
    let (store, mut ids) = filled_store();
    ids.push(Entity::new(EntityKind::Node, None, "gone").id());
    assert!(
        matches!(store.sequence_batch(&ids), Err(WindowError::UnknownEntity(id)) if id.as_str() == "node/gone")
    );
    let mut out = vec![0.0; 3];
    assert!(matches!(
        store.features_into(&ids[0], &mut out),
        Err(WindowError::BufferSize { .. })
    ));
}
