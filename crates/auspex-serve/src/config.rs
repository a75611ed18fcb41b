//! `serve`'s configuration: a TOML file, then environment variables, then `--set` flags, each
//! overriding the one before; validated before anything starts, with errors that name the key,
//! where it came from and why it is wrong. Every key is documented on its field; the reference
//! is `docs/CONFIG.md`.
//!
//! - File: `auspex serve --config auspex.toml`.
//! - Environment: `AUSPEX__<SECTION>__<KEY>=value`, e.g. `AUSPEX__KAFKA__BROKERS=k0:9092`
//!   (double underscores separate the levels; names are lower-cased).
//! - Flags: `--set kafka.brokers=k0:9092` (repeatable).
//!
//! Values from the environment and flags are read as TOML values (`5`, `true`, `[1, 2]`,
//! `"text"`), and as a plain string when they do not parse as one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use auspex_graph::GraphConfig;
use auspex_score::AlertPolicy;
use auspex_window::WindowConfig;
use serde::Deserialize;

use crate::alertmanager::AlertmanagerConfig;
use crate::http::HttpConfig;
use crate::kafka::KafkaConfig;

/// Prefix of the environment variables that configure `serve`.
pub const ENV_PREFIX: &str = "AUSPEX__";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Which model scores.
    pub model: ModelConfig,
    /// Kafka in and out; without brokers `serve` runs on the embedded default.
    pub kafka: KafkaConfig,
    /// The HTTP API and `/metrics`.
    pub http: HttpConfig,
    /// On-call routing: present (with a `url`) to POST alerts to an Alertmanager.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// When alerts fire and resolve (`fire_threshold`, per-kind `thresholds`,
    /// `resolve_ratio`, `fire_after_ticks`, `resolve_after_ticks`, `stale_after_ms`).
    pub alerts: AlertPolicy,
    /// Window settings (`resolution_ms`, `length`, `step`, `metrics`, ...). A model bundle sets
    /// the ones it was trained with; these apply to the statistical scorer.
    pub windows: WindowConfig,
    /// Topology graph settings (per-kind TTLs).
    pub graph: GraphConfig,
    /// The engine's own settings.
    pub engine: EngineSection,
    /// The embedded default's source and sinks (used when `kafka.brokers` is empty).
    pub embedded: EmbeddedConfig,
    /// The rule table behind each alert's recommended action, and the parameters actions
    /// are sized with.
    pub remediation: crate::remediation::RemediationConfig,
    /// Per-workload demand forecasts (`model`: a file from `auspex evaluate-forecast
    /// --save-model`).
    pub forecast: crate::forecasts::ForecastSettings,
    /// KEDA's external scaler over gRPC (`listen`, `stream_interval_ms`); needs
    /// `forecast.model`.
    pub keda: auspex_keda::KedaConfig,
}

/// `[model]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A bundle written by `auspex train` (checksums verified at load). Absent: the
    /// statistical scorer, which needs no training.
    pub path: Option<PathBuf>,
    /// `cpu` (default) or `wgpu` (a build with the `gpu` feature).
    pub device: String,
    /// Use the per-kind thresholds the bundle chose on validation data, at start-up and at
    /// every reload; `alerts.thresholds` entries still override single kinds. `false`: the
    /// configured thresholds, which a reload leaves.
    pub bundle_thresholds: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: None,
            device: "cpu".into(),
            bundle_thresholds: true,
        }
    }
}

/// `[engine]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    /// Alert messages (firing and resolved) kept for `GET /v1/alerts`.
    pub recent_alerts: usize,
    /// An entity is first scored once it has been seen for this long (event time, ms), so a
    /// pod that has just started is not judged on a few samples; 0 scores it at once.
    pub min_history_ms: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            recent_alerts: 1000,
            min_history_ms: 300_000,
        }
    }
}

/// `[embedded]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// `sim` (the in-process simulator), `dir:PATH` (what `auspex simulate --out` wrote) or
    /// `ndjson:PATH` (`-` for stdin).
    pub source: String,
    /// The simulator's seed.
    pub seed: u64,
    /// Simulator fields to override (as in `auspex simulate --print-config`), e.g.
    /// `{ nodes = 12, duration_ms = 3600000 }`.
    pub sim: toml::Table,
    /// Replay in event time scaled by this factor (1.0 = real time); absent: as fast as
    /// possible.
    pub speed: Option<f64>,
    /// Where alerts go, as NDJSON: a file, or `-` for stdout.
    pub alerts: String,
    /// Where records that could not be parsed go, with the reason (NDJSON).
    pub dead_letters: PathBuf,
    /// Keep the HTTP API (and the KEDA scaler) up after the source ends, until SIGTERM or
    /// Ctrl-C: to look at what a replay left behind.
    pub hold: bool,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            source: "sim".into(),
            seed: 7,
            sim: toml::Table::new(),
            speed: None,
            alerts: "-".into(),
            dead_letters: "dead-letters.ndjson".into(),
            hold: false,
        }
    }
}

impl ServeConfig {
    /// Reads `file` (if any), then the `AUSPEX__` variables of `env`, then `sets`
    /// (`section.key=value`), and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<ServeConfig> {
        load_layered(file, env, ENV_PREFIX, sets, ServeConfig::validate)
    }

    /// A copy safe to print: passwords, secrets and tokens replaced.
    pub fn redacted(&self) -> ServeConfig {
        let mut c = self.clone();
        for (k, v) in c.kafka.properties.iter_mut() {
            if ["password", "secret", "token", "key"]
                .iter()
                .any(|s| k.contains(s))
            {
                *v = "<redacted>".into();
            }
        }
        if c.http.bearer_token.is_some() {
            c.http.bearer_token = Some("<redacted>".into());
        }
        c
    }

    /// Every section's checks; the error names the key (`section.key`) and why.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.model.device.as_str(), "cpu" | "wgpu") {
            return Err(format!(
                "model.device = {:?}: must be \"cpu\" or \"wgpu\"",
                self.model.device
            ));
        }
        if let Some(p) = &self.model.path
            && !p.is_dir()
        {
            return Err(format!(
                "model.path = {}: no such directory (a bundle written by `auspex train`)",
                p.display()
            ));
        }
        self.kafka.validate()?;
        self.http.validate()?;
        if let Some(am) = &self.alertmanager {
            am.validate()?;
        }
        self.alerts.validate().map_err(|e| format!("alerts.{e}"))?;
        self.windows
            .validate()
            .map_err(|e| format!("windows: {e}"))?;
        self.graph.validate().map_err(|e| format!("graph: {e}"))?;
        self.remediation.validate()?;
        if let Some(p) = &self.forecast.model
            && !p.is_file()
        {
            return Err(format!(
                "forecast.model = {}: no such file (a model written by `auspex evaluate-forecast --save-model`)",
                p.display()
            ));
        }
        self.keda.validate()?;
        if !self.keda.listen.is_empty() && self.forecast.model.is_none() {
            return Err(format!(
                "keda.listen = {:?}: the KEDA scaler answers from demand forecasts; set forecast.model too",
                self.keda.listen
            ));
        }
        if self.engine.recent_alerts == 0 {
            return Err("engine.recent_alerts: must be at least 1".into());
        }
        if let Some(s) = self.embedded.speed
            && !(s.is_finite() && s > 0.0)
        {
            return Err(format!("embedded.speed = {s}: must be a positive number"));
        }
        let scheme = self.embedded.source.split(':').next().unwrap_or("");
        if !matches!(scheme, "sim" | "dir" | "ndjson") {
            return Err(format!(
                "embedded.source = {:?}: expected sim, dir:PATH or ndjson:PATH",
                self.embedded.source
            ));
        }
        Ok(())
    }
}

/// The layered loader behind [`ServeConfig::load`], for any config struct (`auspex collect`
/// uses it too): `file` (TOML, if any), then the variables of `env` starting with `prefix`
/// (`PREFIX<SECTION>__<KEY>`), then `sets` (`section.key=value`), each overriding the one
/// before; deserialised into `T` and checked by `validate`. Errors name the key and where the
/// configuration came from.
pub fn load_layered<T: serde::de::DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
    sets: &[String],
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config file {}", path.display()))?;
            toml::from_str::<toml::Table>(&text)
                .with_context(|| format!("{}: not valid TOML", path.display()))?
        }
        None => toml::Table::new(),
    };
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect();
    env.sort();
    for (k, v) in env {
        let mut path: Vec<String> = k[prefix.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        // librdkafka names use dots, never underscores:
        // AUSPEX__KAFKA__PROPERTIES__SASL_PASSWORD sets `sasl.password`.
        if path.len() > 2 && path[0] == "kafka" && path[1] == "properties" {
            let name = path[2..].join(".").replace('_', ".");
            path.truncate(2);
            path.push(name);
        }
        insert(&mut table, &path, &v).with_context(|| format!("environment variable {k}"))?;
    }
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s:?}: expected section.key=value"))?;
        let mut path: Vec<String> = k.trim().split('.').map(str::to_string).collect();
        // `kafka.properties.sasl.mechanisms=...`: the rest is one librdkafka name.
        if path.len() > 2 && path[0] == "kafka" && path[1] == "properties" {
            let name = path[2..].join(".");
            path.truncate(2);
            path.push(name);
        }
        insert(&mut table, &path, v.trim()).with_context(|| format!("--set {s:?}"))?;
    }
    let from = file.map_or_else(
        || "the configuration".to_string(),
        |p| format!("the configuration ({} with overrides)", p.display()),
    );
    let de = toml::Value::Table(table);
    let config: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        anyhow::anyhow!("{from}: key `{key}`: {}", e.inner())
    })?;
    validate(&config).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
    Ok(config)
}

/// Sets `path` in `table` to `raw`, read as a TOML value when it parses as one.
fn insert(table: &mut toml::Table, path: &[String], raw: &str) -> Result<()> {
    let Some((last, parents)) = path.split_last() else {
        bail!("empty key");
    };
    if path.iter().any(|p| p.is_empty()) {
        bail!("empty key segment in {:?}", path.join("."));
    }
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("`{p}` is a value, not a section"),
        };
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str, env: &[(&str, &str)], sets: &[&str]) -> Result<ServeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auspex.toml");
        std::fs::write(&path, toml_text).unwrap();
        ServeConfig::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn file_then_environment_then_flags() {
        let c = load(
            "[kafka]\nbrokers = \"a:1\"\ngroup_id = \"g\"\n[alerts]\nfire_threshold = 0.7\n",
            &[
                ("AUSPEX__KAFKA__BROKERS", "b:2"),
                ("AUSPEX__ALERTS__FIRE_AFTER_TICKS", "3"),
                ("AUSPEX__KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret"),
                ("OTHER", "x"),
            ],
            &[
                "kafka.brokers=c:3",
                "kafka.properties.security.protocol=SASL_SSL",
            ],
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "c:3");
        assert_eq!(c.kafka.group_id, "g");
        assert_eq!(c.alerts.fire_threshold, 0.7);
        assert_eq!(c.alerts.fire_after_ticks, 3);
        assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
        assert_eq!(c.kafka.properties["sasl.password"], "s3cret");
    }

    #[test]
    fn errors_name_the_key_and_the_source() {
        let e = load("[windows]\nlenght = 20\n", &[], &[]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("windows") && msg.contains("lenght"), "{msg}");
        assert!(msg.contains("auspex.toml"), "{msg}");

        let e = load("", &[("AUSPEX__KAFKA__COMMIT_INTERVAL_MS", "soon")], &[]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("kafka.commit_interval_ms"), "{msg}");

        let e = load("", &[], &["alerts.resolve_ratio=1.5"]).unwrap_err();
        assert!(format!("{e:#}").contains("alerts.resolve_ratio"), "{e:#}");

        let e = load("", &[], &["model.device=tpu"]).unwrap_err();
        assert!(format!("{e:#}").contains("model.device"), "{e:#}");

        let e = load(
            "[kafka]\nbrokers = \"k:1\"\nsamples_topic = \"x\"\nalerts_topic = \"x\"\n",
            &[],
            &[],
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("kafka.alerts_topic"), "{e:#}");

        let e = load("not = [toml", &[], &[]).unwrap_err();
        assert!(format!("{e:#}").contains("not valid TOML"), "{e:#}");

        let e = load("", &[], &["model.path=/nonexistent/bundle"]).unwrap_err();
        assert!(format!("{e:#}").contains("model.path"), "{e:#}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
        let c = ServeConfig::load(
            Some(&root.join("deploy/kubernetes/base/auspex.toml")),
            Vec::new(),
            &[],
        )
        .unwrap();
        assert!(c.kafka.enabled());
        assert!(c.alertmanager.is_some());
        let shown = format!("{:?}", c.redacted());
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn the_defaults_validate_and_run_embedded() {
        let c = ServeConfig::load(None, Vec::new(), &[]).unwrap();
        assert!(!c.kafka.enabled());
        assert_eq!(c.embedded.source, "sim");
    }
}
