//! `auspex serve`: the streaming service.
//!
//! TODO(issue 4, docs/SERVE.md): engine, Kafka loop, HTTP API, metrics, configuration.

pub mod alertmanager;
