//! Scrape mode, for clusters whose Prometheus cannot remote-write to us: on an interval, ask
//! its HTTP API (`GET /api/v1/query`) for the raw samples of the mapped series over the last
//! two intervals (a range-vector selector, so every sample keeps its own timestamp and rates
//! are exact) and feed them through the same mapping. Samples already seen are recognised by
//! their timestamp and skipped. With `calls.mesh` set, the mesh's request counters are
//! queried too and go to the call edges.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::calls::Calls;
use crate::config::ScrapeSection;
use crate::mapping::{KNOWN_METRICS, Mapper};
use crate::remote_write::Label;
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("scrape.url: querying {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("scrape.url: {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("scrape.url: {url}: not a Prometheus query response: {reason}")]
    Body { url: String, reason: String },
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// The query: the raw samples of every mapped series, and of `extra` (the mesh's request
/// counters), over `lookback`.
pub fn query(lookback: Duration, extra: &[&str]) -> String {
    let names: Vec<&str> = KNOWN_METRICS.iter().chain(extra).copied().collect();
    format!(
        "{{__name__=~\"{}\"}}[{}ms]",
        names.join("|"),
        lookback.as_millis()
    )
}

pub struct Poller {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    lookback: Duration,
}

impl Poller {
    pub fn new(config: &ScrapeSection) -> Result<Option<Poller>, ScrapeError> {
        let Some(base) = &config.url else {
            return Ok(None);
        };
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|source| ScrapeError::Http {
                url: url.clone(),
                source,
            })?;
        Ok(Some(Poller {
            client,
            url,
            token: config.bearer_token.clone(),
            lookback: Duration::from_millis(config.interval_ms.saturating_mul(2)),
        }))
    }

    /// One query, fed to `calls` (the mesh's request counters, when set) and `mapper` (the
    /// rest); returns the number of samples read.
    pub async fn poll(
        &self,
        mapper: &Arc<Mutex<Mapper>>,
        calls: Option<&Calls>,
    ) -> Result<u64, ScrapeError> {
        let extra = calls.map_or(&[][..], Calls::request_metrics);
        let result = self.fetch(extra).await;
        metrics::counter!(telemetry::POLLS, "result" => if result.is_ok() { "ok" } else { "error" })
            .increment(1);
        let series = result?;
        let mut n = 0u64;
        let mut read = Vec::with_capacity(series.len());
        for s in series {
            let mut labels: Vec<Label> = s
                .metric
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect();
            labels.sort();
            let samples: Vec<(i64, f64)> = s
                .values
                .into_iter()
                .chain(s.value)
                .map(|(t, v)| {
                    let value = v.parse::<f64>().unwrap_or(f64::INFINITY);
                    ((t * 1000.0).round() as i64, value)
                })
                .collect();
            n += samples.len() as u64;
            read.push((labels, samples));
        }
        let series = read
            .iter()
            .map(|(labels, samples)| (labels.as_slice(), samples.iter().copied()));
        let rest = match calls {
            Some(c) => c.take_mesh_series(series),
            None => series.collect(),
        };
        let now = crate::now_ms();
        let mut mapper = mapper.lock().unwrap_or_else(|p| p.into_inner());
        for (labels, samples) in rest {
            mapper.ingest(labels, samples, now);
        }
        metrics::counter!(telemetry::SAMPLES_RECEIVED, "source" => "query").increment(n);
        Ok(n)
    }

    async fn fetch(&self, extra: &[&str]) -> Result<Vec<Series>, ScrapeError> {
        let mut req = self
            .client
            .get(&self.url)
            .query(&[("query", query(self.lookback, extra))]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let http = |source| ScrapeError::Http {
            url: self.url.clone(),
            source,
        };
        let resp = req.send().await.map_err(http)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(http)?;
        if !status.is_success() {
            return Err(ScrapeError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            });
        }
        let bad = |reason: String| ScrapeError::Body {
            url: self.url.clone(),
            reason,
        };
        let r: Response = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        if r.status != "success" {
            return Err(bad(r.error.unwrap_or(r.status)));
        }
        let data = r.data.ok_or_else(|| bad("no data".into()))?;
        if !matches!(data.result_type.as_str(), "matrix" | "vector") {
            return Err(bad(format!("resultType {}", data.result_type)));
        }
        Ok(data.result)
    }
}
