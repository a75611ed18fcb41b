//! `auspex serve`: the streaming service.
//!
//! - [`engine`]: the state (windows, graph), the scorer and the alert lifecycle, no I/O;
//! - [`pipeline`]: the embedded default (simulator or file replay in, alerts to a sink);
//! - [`kafka`]: the consumer group in, alerts and dead letters out, at-least-once;
//! - [`shared`]: what the loops and the HTTP API share;
//! - [`http`]: the HTTP API and `/metrics`;
//! - [`alertmanager`]: on-call routing;
//! - [`model`]: which scorer serves, and reloads;
//! - [`remediation`]: the recommended action on every alert (rule table, read-only);
//! - [`config`]: the TOML file, environment and flags, validated;
//! - [`telemetry`]: the service's metrics.

pub mod alertmanager;
pub mod config;
pub mod engine;
pub mod forecasts;
pub mod http;
pub mod kafka;
pub mod model;
pub mod pipeline;
pub mod remediation;
pub mod shared;
pub mod telemetry;

pub use engine::{Engine, EngineConfig, RunCounts};
pub use shared::Shared;

/// Keeps freed scratch memory on the heap for the next tick instead of handing it back to the
/// kernel (glibc only; elsewhere a no-op).
///
/// A scoring tick allocates and frees buffers of megabytes (at 1,000 entities the sequence
/// matrices alone are 6 MB). glibc serves blocks that large with `mmap`, or trims the heap
/// top back after a free, so every tick faulted its pages in again: 7 % of serve's time and
/// nearly all of its system time in a profile of the embedded run. With the thresholds at
/// 64 MiB (mmap) and 256 MiB (trim) the same run took 15.7 s instead of 17.1 s at the same
/// peak RSS. `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` in the environment win.
pub fn keep_scratch_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |var: &str| std::env::var_os(var).is_some();
        // SAFETY: mallopt only sets allocator tunables and takes glibc's own locks.
        unsafe {
            if !set("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
            }
            if !set("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            }
        }
    }
}
