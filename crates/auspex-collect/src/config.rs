//! `collect`'s configuration: one struct per component, each key documented on its field and
//! checked by [`CollectConfig::validate`] with an error naming the key. Loading the layers (TOML
//! file, `AUSPEX_COLLECT__` environment variables, `--set` flags) is the binary's job, with the
//! same loader as `serve`. The reference is docs/COLLECT.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::mapping::MappingConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectConfig {
    /// The remote-write receiver, `/metrics` and the probes.
    pub http: HttpSection,
    /// How series become samples.
    pub mapping: MappingConfig,
    /// Where samples go when `kafka.brokers` is set.
    pub kafka: KafkaSection,
    /// Where samples go without brokers: NDJSON.
    pub output: OutputSection,
    /// Scrape mode: poll a Prometheus HTTP API (set `scrape.url`).
    pub scrape: ScrapeSection,
    /// The Kubernetes topology watcher (docs/WATCH.md): present (even as an empty `[watch]`
    /// table), pods, nodes, services and EndpointSlices become topology events on
    /// `kafka.topology_topic` (or in the NDJSON output). It needs the in-cluster service
    /// account (or `KUBECONFIG`) and the read-only RBAC in deploy/kubernetes/collect.
    pub watch: Option<auspex_watch::WatchConfig>,
    /// Service-to-service `calls` edges from the mesh's request counters (`calls.mesh`: `none`,
    /// `istio` or `linkerd`), received by remote write or scrape mode: published to
    /// `kafka.topology_topic` (or the NDJSON output) like the watcher's events. Independent of
    /// `[watch]`: it needs no Kubernetes API.
    pub calls: auspex_watch::CallsConfig,
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Address to listen on (`ip:port`) for `POST /api/v1/write`, `/metrics`, `/healthz` and
    /// `/readyz`.
    pub listen: String,
    /// Largest compressed remote-write body, in bytes; larger ones get 413. Prometheus sends
    /// at most `max_samples_per_send` (default 2000) samples a request: a few hundred KiB.
    pub max_body_bytes: usize,
    /// Largest decompressed body, in bytes, as the snappy header announces it (checked before
    /// decompressing); larger ones get 413.
    pub max_decoded_bytes: usize,
    /// When set, `POST /api/v1/write` requires `Authorization: Bearer <token>` (Prometheus:
    /// `remote_write[].authorization.credentials`).
    pub bearer_token: Option<String>,
    /// Longest a request may take, in milliseconds, before it is answered 503.
    pub request_timeout_ms: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "0.0.0.0:9201".into(),
            max_body_bytes: 8 << 20,
            max_decoded_bytes: 64 << 20,
            bearer_token: None,
            request_timeout_ms: 10_000,
        }
    }
}

/// `[kafka]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// `host:port[,host:port...]`; empty: write NDJSON to `output.path` instead.
    pub brokers: String,
    /// The topic `serve` consumes samples from; each sample is keyed by its node (else its
    /// entity id).
    pub samples_topic: String,
    /// The (compacted) topic `serve` reads topology events from, written when `[watch]` is on;
    /// each event is keyed by what it is about (an entity id, or `from|kind|to` for an edge).
    pub topology_topic: String,
    /// librdkafka properties passed through (SASL, TLS, ...); they override auspex's defaults
    /// but not `enable.idempotence` and `acks`.
    pub properties: BTreeMap<String, String>,
    /// How long librdkafka retries one sample before it counts as failed, in milliseconds
    /// (`message.timeout.ms`).
    pub delivery_timeout_ms: u64,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            brokers: String::new(),
            samples_topic: "samples".into(),
            topology_topic: "topology".into(),
            properties: BTreeMap::new(),
            delivery_timeout_ms: 30_000,
        }
    }
}

impl KafkaSection {
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }
}

/// `[output]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSection {
    /// Without brokers: the NDJSON file samples are appended to, `-` for stdout.
    pub path: String,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection { path: "-".into() }
    }
}

/// `[scrape]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeSection {
    /// Base URL of a Prometheus HTTP API (`http://prometheus:9090`); absent: scrape mode off.
    pub url: Option<String>,
    /// How often to query, in milliseconds.
    pub interval_ms: u64,
    /// Timeout of one query, in milliseconds.
    pub timeout_ms: u64,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub bearer_token: Option<String>,
}

impl Default for ScrapeSection {
    fn default() -> Self {
        ScrapeSection {
            url: None,
            interval_ms: 15_000,
            timeout_ms: 10_000,
            bearer_token: None,
        }
    }
}

impl CollectConfig {
    /// Every section's checks; the error names the key (`section.key`) and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "http.listen = {:?}: not ip:port (e.g. 0.0.0.0:9201)",
                self.http.listen
            ));
        }
        if self.http.max_body_bytes == 0 {
            return Err("http.max_body_bytes: must be at least 1".into());
        }
        if self.http.max_decoded_bytes < self.http.max_body_bytes {
            return Err(format!(
                "http.max_decoded_bytes = {}: must be at least http.max_body_bytes ({})",
                self.http.max_decoded_bytes, self.http.max_body_bytes
            ));
        }
        if let Some(t) = &self.http.bearer_token
            && (t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err("http.bearer_token: must be non-empty, without spaces".into());
        }
        if self.http.request_timeout_ms == 0 {
            return Err("http.request_timeout_ms: must be at least 1".into());
        }
        self.mapping.validate()?;
        if self.kafka.enabled() {
            if self.kafka.samples_topic.trim().is_empty() {
                return Err("kafka.samples_topic: must not be empty".into());
            }
            if self.kafka.delivery_timeout_ms == 0 {
                return Err("kafka.delivery_timeout_ms: must be at least 1".into());
            }
            for k in ["enable.idempotence", "acks"] {
                if self.kafka.properties.contains_key(k) {
                    return Err(format!(
                        "kafka.properties.{k}: collect always publishes idempotently with \
                         acks=all; remove it"
                    ));
                }
            }
        }
        if self.output.path.is_empty() {
            return Err("output.path: must be a file or `-` for stdout".into());
        }
        if let Some(w) = &self.watch {
            w.validate()
                .map_err(|e| format!("watch.{}: {}", e.key, e.reason))?;
        }
        self.calls
            .validate()
            .map_err(|(key, reason)| format!("calls.{key}: {reason}"))?;
        if self.publishes_topology()
            && self.kafka.enabled()
            && self.kafka.topology_topic.trim().is_empty()
        {
            return Err(
                "kafka.topology_topic: must not be empty when [watch] or calls.mesh is on".into(),
            );
        }
        if let Some(url) = &self.scrape.url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(format!(
                        "scrape.url = {url:?}: not an http(s) URL (e.g. http://prometheus:9090)"
                    ));
                }
            }
            if self.scrape.interval_ms < 1000 {
                return Err(format!(
                    "scrape.interval_ms = {}: must be at least 1000",
                    self.scrape.interval_ms
                ));
            }
            if self.scrape.timeout_ms == 0 || self.scrape.timeout_ms > self.scrape.interval_ms {
                return Err(format!(
                    "scrape.timeout_ms = {}: must be between 1 and scrape.interval_ms ({})",
                    self.scrape.timeout_ms, self.scrape.interval_ms
                ));
            }
        }
        Ok(())
    }

    /// Whether anything writes topology events: the watcher or the call edges.
    pub fn publishes_topology(&self) -> bool {
        self.watch.is_some() || self.calls.mesh != auspex_watch::Mesh::None
    }

    /// A copy safe to print: tokens and secret-looking Kafka properties replaced.
    pub fn redacted(&self) -> CollectConfig {
        let mut c = self.clone();
        for (k, v) in c.kafka.properties.iter_mut() {
            if ["password", "secret", "token", "key"]
                .iter()
                .any(|s| k.contains(s))
            {
                *v = "<redacted>".into();
            }
        }
        for t in [&mut c.http.bearer_token, &mut c.scrape.bearer_token] {
            if t.is_some() {
                *t = Some("<redacted>".into());
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_keys_are_checked_and_need_no_watcher() {
        let mut c = CollectConfig::default();
        c.calls.mesh = auspex_watch::Mesh::Istio;
        assert!(c.watch.is_none() && c.publishes_topology());
        assert_eq!(c.validate(), Ok(()));
        c.calls.expire_after_secs = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("calls.expire_after_secs"),
            "{:?}",
            c.validate()
        );
        c.calls.expire_after_secs = 60;
        c.kafka.brokers = "k0:9092".into();
        c.kafka.topology_topic = " ".into();
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("kafka.topology_topic")
        );
        c.calls.mesh = auspex_watch::Mesh::None;
        assert_eq!(c.validate(), Ok(()));
    }
}
