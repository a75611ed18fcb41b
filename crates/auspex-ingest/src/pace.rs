//! Replay speed: [`Paced`] wraps any source and releases its records as fast as possible, in
//! event time scaled to wall time (`--speed`), or at a fixed number of records a second
//! (`--rate`). It changes when records come out, never their order or content.
//!
//! The wrapper blocks in `next_batch` for at most [`Paced::max_wait`] at a time; when the next
//! record is not yet due after that it returns an empty batch ("nothing yet"), so a caller can
//! check for shutdown between waits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use auspex_model::IncidentLabel;

use crate::{IngestError, Record, Source};

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Pacing {
    /// No waiting (the default).
    #[default]
    AsFastAsPossible,
    /// Event time mapped to wall time: `speed` 1.0 is real time, 60.0 plays a minute a second.
    /// The first timestamped record sets the origin; dead letters are never held back.
    RealTime { speed: f64 },
    /// A fixed number of records a second, whatever their timestamps.
    Rate { records_per_second: f64 },
}

impl Pacing {
    /// From the CLI's `--speed` and `--rate` flags (at most one of them).
    pub fn from_flags(speed: Option<f64>, rate: Option<f64>) -> Result<Pacing, IngestError> {
        let positive = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(IngestError::Config {
                    key,
                    reason: format!("{v} is not a positive finite number"),
                })
            }
        };
        match (speed, rate) {
            (Some(_), Some(_)) => Err(IngestError::Config {
                key: "speed/rate",
                reason: "give --speed or --rate, not both".into(),
            }),
            (Some(s), None) => Ok(Pacing::RealTime {
                speed: positive("speed", s)?,
            }),
            (None, Some(r)) => Ok(Pacing::Rate {
                records_per_second: positive("rate", r)?,
            }),
            (None, None) => Ok(Pacing::AsFastAsPossible),
        }
    }
}

/// A source replayed at a [`Pacing`].
pub struct Paced<S: Source> {
    inner: S,
    pacing: Pacing,
    pending: VecDeque<Record>,
    inner_done: bool,
    /// (first event time, the wall time it was released at).
    anchor: Option<(i64, Instant)>,
    started: Option<Instant>,
    released: u64,
    max_wait: Duration,
}

impl<S: Source> Paced<S> {
    /// Wraps `inner`; invalid speeds or rates are rejected here.
    pub fn new(inner: S, pacing: Pacing) -> Result<Self, IngestError> {
        let check = |key, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(IngestError::Config {
                    key,
                    reason: format!("{v} is not a positive finite number"),
                })
            }
        };
        match pacing {
            Pacing::AsFastAsPossible => {}
            Pacing::RealTime { speed } => check("speed", speed)?,
            Pacing::Rate { records_per_second } => check("rate", records_per_second)?,
        }
        Ok(Paced {
            inner,
            pacing,
            pending: VecDeque::new(),
            inner_done: false,
            anchor: None,
            started: None,
            released: 0,
            max_wait: Duration::from_millis(100),
        })
    }

    /// The longest one `next_batch` call blocks before answering "nothing yet".
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// When the front record is due; `None` means now.
    fn due(&mut self, now: Instant) -> Option<Instant> {
        let front = self.pending.front()?;
        match self.pacing {
            Pacing::AsFastAsPossible => None,
            Pacing::RealTime { speed } => {
                let ts = front.timestamp_ms()?;
                let (t0, w0) = *self.anchor.get_or_insert((ts, now));
                let offset_ms = (ts - t0) as f64 / speed;
                (offset_ms > 0.0).then(|| w0 + Duration::from_secs_f64(offset_ms / 1000.0))
            }
            Pacing::Rate { records_per_second } => {
                let start = *self.started.get_or_insert(now);
                Some(start + Duration::from_secs_f64(self.released as f64 / records_per_second))
            }
        }
    }

    fn take_due(&mut self, max: usize, out: &mut Vec<Record>) {
        while out.len() < max {
            let now = Instant::now();
            match self.due(now) {
                Some(at) if at > now => break,
                _ => {}
            }
            let Some(r) = self.pending.pop_front() else {
                break;
            };
            self.released += 1;
            out.push(r);
        }
    }
}

impl<S: Source> Source for Paced<S> {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        if self.pending.is_empty() && !self.inner_done {
            match self.inner.next_batch(max)? {
                Some(batch) => self.pending.extend(batch),
                None => self.inner_done = true,
            }
        }
        if self.pending.is_empty() {
            return Ok(if self.inner_done {
                None
            } else {
                Some(Vec::new())
            });
        }
        let mut out = Vec::new();
        self.take_due(max, &mut out);
        if out.is_empty() {
            // Nothing due: wait for the front record, at most max_wait, then try once more.
            let now = Instant::now();
            if let Some(at) = self.due(now) {
                std::thread::sleep(at.saturating_duration_since(now).min(self.max_wait));
            }
            self.take_due(max, &mut out);
        }
        Ok(Some(out))
    }

    fn sample_interval_ms(&self) -> Option<u64> {
        self.inner.sample_interval_ms()
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.inner.labels()
    }

    fn describe(&self) -> String {
        match self.pacing {
            Pacing::AsFastAsPossible => self.inner.describe(),
            Pacing::RealTime { speed } => format!("{} at {speed}x", self.inner.describe()),
            Pacing::Rate { records_per_second } => {
                format!(
                    "{} at {records_per_second} records/s",
                    self.inner.describe()
                )
            }
        }
    }
}
