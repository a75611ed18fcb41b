//! The published JSON Schemas (`schemas/*.json`) are generated from the Rust types; these tests
//! fail when the two drift, and check every fixture under `fixtures/schemas/` against both the
//! schema and the Rust parser: valid fixtures must pass both and round-trip, invalid ones must
//! fail both.
//!
//! `UPDATE_SCHEMAS=1 cargo test -p auspex-model --test schemas` rewrites the schema files.

use std::path::PathBuf;

use auspex_model::{Alert, IncidentLabel, MetricSample, SCHEMA_VERSION, TopologyEvent};
use serde_json::Value;

fn root() -> PathBuf {
    // Read at run time: the compile-time value is stale when a shared target directory holds
    // a binary built from another clone of the repository.
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test")).join("../..")
}

struct Wire {
    /// File stem under schemas/ and fixtures/schemas/.
    name: &'static str,
    schema: fn() -> schemars::Schema,
    /// Parses with the Rust type (including its semantic validation) and re-serialises.
    parse: fn(&[u8]) -> Result<Value, String>,
}

fn parse_with<T: serde::de::DeserializeOwned + serde::Serialize>(
    check: fn(&[u8]) -> Result<T, String>,
) -> impl Fn(&[u8]) -> Result<Value, String> {
    move |b| check(b).map(|t| serde_json::to_value(t).expect("serialises"))
}

fn wires() -> Vec<Wire> {
    vec![
        Wire {
            name: "metric-sample",
            schema: || schemars::schema_for!(MetricSample),
            parse: |b| parse_with(|b| MetricSample::from_json(b).map_err(|e| e.to_string()))(b),
        },
        Wire {
            name: "topology-event",
            schema: || schemars::schema_for!(TopologyEvent),
            parse: |b| parse_with(|b| TopologyEvent::from_json(b).map_err(|e| e.to_string()))(b),
        },
        Wire {
            name: "alert",
            schema: || schemars::schema_for!(Alert),
            parse: |b| {
                parse_with(|b| serde_json::from_slice::<Alert>(b).map_err(|e| e.to_string()))(b)
            },
        },
        Wire {
            name: "incident-label",
            schema: || schemars::schema_for!(IncidentLabel),
            parse: |b| {
                parse_with(|b| {
                    serde_json::from_slice::<IncidentLabel>(b).map_err(|e| e.to_string())
                })(b)
            },
        },
    ]
}

/// The schema as published: generated, with a versioned `$id` and title.
fn published(w: &Wire) -> Value {
    let mut v = serde_json::to_value((w.schema)()).expect("schema serialises");
    let obj = v.as_object_mut().expect("schema is an object");
    obj.insert(
        "$id".into(),
        Value::String(format!(
            "https://auspex.dev/schemas/{}.v{SCHEMA_VERSION}.schema.json",
            w.name
        )),
    );
    v
}

fn schema_path(w: &Wire) -> PathBuf {
    root()
        .join("schemas")
        .join(format!("{}.v{SCHEMA_VERSION}.schema.json", w.name))
}

#[test]
fn schemas_match_rust_types() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    for w in wires() {
        let want = serde_json::to_string_pretty(&published(&w)).unwrap() + "\n";
        let path = schema_path(&w);
        if update {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SCHEMAS=1)", path.display()));
        assert!(
            have == want,
            "{} drifted from the Rust type; run `UPDATE_SCHEMAS=1 cargo test -p auspex-model --test schemas` and review the diff",
            path.display()
        );
    }
}

fn fixtures(name: &str, which: &str) -> Vec<PathBuf> {
    let dir = root().join("fixtures/schemas").join(name).join(which);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_fixture_is_judged_alike_by_schema_and_parser() {
    for w in wires() {
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(schema_path(&w)).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{}: invalid schema: {e}", w.name));

        let valid = fixtures(w.name, "valid");
        assert!(!valid.is_empty(), "no valid fixtures for {}", w.name);
        for p in valid {
            let bytes = std::fs::read(&p).unwrap();
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{}: schema rejects it: {errors:?}",
                p.display()
            );
            let back = (w.parse)(&bytes)
                .unwrap_or_else(|e| panic!("{}: the Rust type rejects it: {e}", p.display()));
            assert!(
                validator.is_valid(&back),
                "{}: re-serialised form fails the schema",
                p.display()
            );
            let again = (w.parse)(back.to_string().as_bytes()).unwrap();
            assert_eq!(
                back,
                again,
                "{}: parse ∘ serialise is not stable",
                p.display()
            );
        }

        let invalid = fixtures(w.name, "invalid");
        assert!(!invalid.is_empty(), "no invalid fixtures for {}", w.name);
        for p in invalid {
            let bytes = std::fs::read(&p).unwrap();
            let rust = (w.parse)(&bytes);
            assert!(rust.is_err(), "{}: the Rust type accepts it", p.display());
            if let Ok(doc) = serde_json::from_slice::<Value>(&bytes) {
                assert!(
                    !validator.is_valid(&doc),
                    "{}: the schema accepts what the parser rejects ({})",
                    p.display(),
                    rust.unwrap_err()
                );
            }
        }
    }
}

/// docs/METRICS.md is generated from `metrics::CANONICAL` so the documented names cannot drift.
#[test]
fn metric_docs_match_canonical_list() {
    use auspex_model::metrics::{CANONICAL, MetricType};
    let mut want = String::from(
        "# Canonical metric names\n\n\
         Generated from `crates/auspex-model/src/metrics.rs` (`UPDATE_SCHEMAS=1 cargo test -p auspex-model --test schemas`).\n\
         Samples may carry any other metric name too: unknown gauges are kept, and names ending in `_total` are treated as counters.\n\
         Counters are cumulative and may reset to zero (a container restart); auspex uses their per-second rate.\n\n\
         | name | unit | type | limit metric | meaning |\n|---|---|---|---|---|\n",
    );
    for s in CANONICAL {
        let ty = match s.metric_type {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
        };
        want += &format!(
            "| `{}` | {} | {} | {} | {} |\n",
            s.name,
            s.unit,
            ty,
            s.limit.map(|l| format!("`{l}`")).unwrap_or_default(),
            s.doc
        );
    }
    let path = root().join("docs/METRICS.md");
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date; run with UPDATE_SCHEMAS=1",
        path.display()
    );
}
