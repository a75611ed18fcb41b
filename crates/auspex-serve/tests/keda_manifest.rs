//! `deploy/keda/scaledobject.yaml` asks for what the shipped forecast model serves: each
//! external trigger's metadata parses as the scaler parses it, against the model's own
//! horizons and quantiles.

use std::path::Path;

use auspex_forecast::ForecastModel;
use auspex_keda::proto::ScaledObjectRef;
use auspex_keda::{Resource, Trigger};
use auspex_nn::NnDevice;

#[test]
fn the_example_scaled_object_asks_for_what_the_model_serves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = ForecastModel::load(&root.join("fixtures/forecast/model.bin"), NnDevice::Cpu)
        .expect("the shipped forecast model loads");
    let c = model.config();
    let horizons_s: Vec<u64> = c
        .features
        .horizons
        .iter()
        .map(|h| (*h as i64 * c.features.step_ms / 1000) as u64)
        .collect();
    let text = std::fs::read_to_string(root.join("deploy/keda/scaledobject.yaml")).unwrap();
    let so: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so["kind"], "ScaledObject");
    let namespace = so["metadata"]["namespace"].as_str().unwrap();
    let triggers = so["spec"]["triggers"].as_sequence().expect("triggers");
    let mut resources = Vec::new();
    for t in triggers {
        assert_eq!(t["type"], "external");
        let metadata = t["metadata"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_string(),
                    v.as_str().expect("metadata values are strings").to_string(),
                )
            })
            .collect();
        let r = ScaledObjectRef {
            name: so["metadata"]["name"].as_str().unwrap().into(),
            namespace: namespace.into(),
            scaler_metadata: metadata,
        };
        let trigger =
            Trigger::parse(&r, &horizons_s, &c.quantiles).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(trigger.workload.to_string(), "payments/checkout");
        assert_eq!(
            trigger.workload.name,
            so["spec"]["scaleTargetRef"]["name"].as_str().unwrap(),
            "the trigger forecasts the workload it scales"
        );
        resources.push(trigger.resource);
    }
    assert_eq!(resources, [Resource::Cpu, Resource::Memory]);
}
