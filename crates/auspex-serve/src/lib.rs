//! `auspex serve`: the streaming service.
//!
//! - [`engine`]: the state (windows, graph), the scorer and the alert lifecycle, no I/O;
//! - [`pipeline`]: the embedded default (simulator or file replay in, alerts to a sink);
//! - [`kafka`]: the consumer group in, alerts and dead letters out, at-least-once;
//! - [`shared`]: what the loops and the HTTP API share;
//! - [`http`]: the HTTP API and `/metrics`;
//! - [`alertmanager`]: on-call routing;
//! - [`model`]: which scorer serves, and reloads;
//! - [`config`]: the TOML file, environment and flags, validated;
//! - [`telemetry`]: the service's metrics.

pub mod alertmanager;
pub mod config;
pub mod engine;
pub mod http;
pub mod kafka;
pub mod model;
pub mod pipeline;
pub mod shared;
pub mod telemetry;

pub use engine::{Engine, EngineConfig, RunCounts};
pub use shared::Shared;
