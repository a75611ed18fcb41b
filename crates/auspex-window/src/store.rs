//! The window store: per-entity ring buffers of the tracked metrics on a shared time grid.
//!
//! Storage is struct-of-arrays over entity slots: one flat array of gauge values (`f32`), one of
//! raw counter values (`f64`, so large byte counters keep their precision), one presence mask,
//! each laid out `[entity][ring position][metric]`, so that a push touches one row of each (a
//! few cache lines) and an entity's whole window is one contiguous block. The ring position of
//! slot `t` is `t mod length`; a window always ends at the entity's newest slot (its *head*),
//! and rows are cleared as the head advances over them. Counter rates are not stored: they are derived from
//! the raw values when a window is read, so a late sample that fills a gap corrects the rates on
//! both sides of it exactly. The raw value of the newest slot that left the window is kept as an
//! *anchor*, so the oldest observed slot still gets a rate.

use std::collections::{BTreeMap, HashMap};

use auspex_model::metrics::{MetricType, metric_type};
use auspex_model::{EntityId, EntityKind, MetricSample};

use crate::batch::Schemas;
use crate::features::{ewma_weights, to_f32};
use crate::spec::limit_of;
use crate::{FeatureSpec, WindowConfig, WindowError};

/// What happened to one pushed sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored.
    Accepted,
    /// Stored, but a tracked metric already had a value in that slot: the last value wins.
    Duplicate,
    /// Older than the window or the lateness bound allows: dropped.
    TooLate,
}

/// Running counts since the store was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Samples stored without collision.
    pub accepted: u64,
    /// Samples stored that overwrote a value already in their slot.
    pub duplicates: u64,
    /// Samples dropped as too late.
    pub too_late: u64,
    /// Metric values ignored because the metric is neither tracked nor the limit of a tracked
    /// metric.
    pub unknown_metrics: u64,
    /// Metric values ignored because they were NaN or infinite.
    pub non_finite_values: u64,
    /// Entities created.
    pub entities_created: u64,
    /// Entities removed by [`WindowStore::evict_stale`].
    pub evicted: u64,
}

/// Where a tracked metric's values live.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Storage {
    /// Index among the gauges.
    Gauge(usize),
    /// Index among the counters.
    Counter(usize),
}

/// One tracked metric.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) storage: Storage,
    /// Index of its limit among the side values, for usage metrics with a limit.
    pub(crate) limit: Option<usize>,
}

/// What a metric name in a sample feeds.
#[derive(Debug, Clone, Copy, Default)]
struct Target {
    column: Option<usize>,
    side: Option<usize>,
}

/// A value with the slot it was seen in; `slot == NEVER` when there is none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamped {
    pub(crate) value: f64,
    pub(crate) slot: i64,
}

pub(crate) const NEVER: i64 = i64::MIN;

impl Stamped {
    const NONE: Stamped = Stamped {
        value: 0.0,
        slot: NEVER,
    };
}

/// An exponentially weighted mean and variance. Until `1 / n` falls below the store's
/// `baseline_alpha` a new value weighs `1 / n`, so the first values give the plain mean.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Baseline {
    n: u32,
    pub(crate) mean: f64,
    pub(crate) var: f64,
}

impl Baseline {
    fn update(&mut self, v: f64, alpha_min: f64) {
        self.n = self.n.saturating_add(1);
        let a = (1.0 / f64::from(self.n)).max(alpha_min);
        let d = v - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
    }

    /// `(x - mean) / std`, as the `baseline_z` feature defines it.
    pub(crate) fn z(&self, x: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let s = self.var.sqrt().max(1e-3 * self.mean.abs() + 1e-9);
        ((x - self.mean) / s).clamp(-25.0, 25.0)
    }
}

/// Per-entity scalars.
#[derive(Debug, Clone)]
pub(crate) struct EntityState {
    pub(crate) id: EntityId,
    /// Newest slot seen: the window is `(head - length, head]`.
    pub(crate) head: i64,
    last_seen_ms: i64,
    /// The entity is due once `head >= next_due`.
    next_due: i64,
}

/// Sliding windows for every live entity. See the crate docs for the flow.
#[derive(Debug)]
pub struct WindowStore {
    pub(crate) config: WindowConfig,
    pub(crate) spec: FeatureSpec,
    /// `resolution_ms` and `length` as signed numbers, for slot arithmetic.
    res_ms: i64,
    pub(crate) len: usize,
    pub(crate) columns: Vec<Column>,
    pub(crate) n_gauges: usize,
    pub(crate) n_counters: usize,
    pub(crate) n_sides: usize,
    /// Metric name -> target, sorted by name to merge-walk a sample's sorted metric map.
    lookup: Vec<(Box<str>, Target)>,
    /// Entity key (`EntityId::as_str`) -> entity slot.
    index: HashMap<Box<str>, u32>,
    pub(crate) entities: Vec<Option<EntityState>>,
    free: Vec<u32>,
    /// `[entity][len][gauge]`
    pub(crate) gauges: Vec<f32>,
    /// `[entity][len][counter]`, raw cumulative values.
    pub(crate) raw: Vec<f64>,
    /// `[entity][len][column]`, 1 where the slot holds an observation.
    pub(crate) mask: Vec<u8>,
    /// `[entity][counter]`: newest raw value that left the window.
    pub(crate) anchors: Vec<Stamped>,
    /// `[entity][side]`: newest value of each limit metric.
    pub(crate) sides: Vec<Stamped>,
    /// `[entity][gauge]`: long-run baseline of each gauge.
    pub(crate) baselines: Vec<Baseline>,
    /// Smallest weight of a new sample in a baseline: one slot over `baseline_ms`.
    baseline_alpha: f64,
    key_buf: String,
    stats: WindowStats,
    pub(crate) schemas: Schemas,
    /// EWMA of a window as a dot product with these.
    pub(crate) ewma_weights: Vec<f64>,
}

impl WindowStore {
    /// Builds an empty store; fails when the config does not validate.
    pub fn new(config: WindowConfig) -> Result<Self, WindowError> {
        config.validate()?;
        let spec = FeatureSpec::new(&config);
        let mut lookup: BTreeMap<String, Target> = BTreeMap::new();
        let mut sides: Vec<&'static str> = Vec::new();
        let mut columns = Vec::with_capacity(config.metrics.len());
        let (mut n_gauges, mut n_counters) = (0, 0);
        for (i, name) in config.metrics.iter().enumerate() {
            let storage = match metric_type(name) {
                MetricType::Gauge => {
                    n_gauges += 1;
                    Storage::Gauge(n_gauges - 1)
                }
                MetricType::Counter => {
                    n_counters += 1;
                    Storage::Counter(n_counters - 1)
                }
            };
            let limit = limit_of(name).map(|l| match sides.iter().position(|s| *s == l) {
                Some(j) => j,
                None => {
                    sides.push(l);
                    lookup.entry(l.to_string()).or_default().side = Some(sides.len() - 1);
                    sides.len() - 1
                }
            });
            lookup.entry(name.clone()).or_default().column = Some(i);
            columns.push(Column { storage, limit });
        }
        Ok(WindowStore {
            res_ms: config.resolution_ms as i64,
            len: config.length,
            columns,
            n_gauges,
            n_counters,
            n_sides: sides.len(),
            lookup: lookup
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v))
                .collect(),
            index: HashMap::new(),
            entities: Vec::new(),
            free: Vec::new(),
            gauges: Vec::new(),
            raw: Vec::new(),
            mask: Vec::new(),
            anchors: Vec::new(),
            sides: Vec::new(),
            baselines: Vec::new(),
            baseline_alpha: (config.resolution_ms as f64 / config.baseline_ms as f64).min(1.0),
            key_buf: String::new(),
            stats: WindowStats::default(),
            schemas: Schemas::new(&spec),
            ewma_weights: ewma_weights(config.ewma_alpha, config.length),
            spec,
            config,
        })
    }

    /// The config the store was built from.
    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// The names and meaning of [`WindowStore::features`].
    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Live entities.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no entity is live.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Counts since the store was built.
    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    /// Whether the store holds a window for `id`.
    pub fn contains(&self, id: &EntityId) -> bool {
        self.index.contains_key(id.as_str())
    }

    /// The live entities, in no particular order.
    pub fn entities(&self) -> impl Iterator<Item = &EntityId> {
        self.entities.iter().flatten().map(|s| &s.id)
    }

    /// Start (inclusive) of the slot after the entity's newest one, in ms: the window covers
    /// `[end - length * resolution_ms, end)`.
    pub fn window_end_ms(&self, id: &EntityId) -> Option<i64> {
        let e = self.slot_of(id)?;
        let head = self.entities[e]
            .as_ref()
            .expect("indexed slots are live")
            .head;
        Some((head + 1) * self.res_ms)
    }

    /// The slot (grid cell) holding a timestamp.
    pub fn slot_of_time(&self, timestamp_ms: i64) -> i64 {
        timestamp_ms.div_euclid(self.res_ms)
    }

    pub(crate) fn slot_of(&self, id: &EntityId) -> Option<usize> {
        self.index.get(id.as_str()).map(|&e| e as usize)
    }

    pub(crate) fn state(&self, e: usize) -> &EntityState {
        self.entities[e].as_ref().expect("indexed slots are live")
    }

    pub(crate) fn res_seconds(&self) -> f64 {
        self.res_ms as f64 / 1000.0
    }

    /// Stores one sample in its entity's window (creating the entity on first sight).
    pub fn push(&mut self, sample: &MetricSample) -> PushOutcome {
        let l = self.len as i64;
        let s = self.slot_of_time(sample.timestamp_ms);
        let e = self.entity_for(sample, s);
        let head = self.state(e).head;
        if s > head {
            self.advance(e, head, s);
        } else if head - s >= l || head - s > self.config.max_lateness_slots as i64 {
            self.stats.too_late += 1;
            return PushOutcome::TooLate;
        }

        let pos = s.rem_euclid(l) as usize;
        let n_cols = self.columns.len();
        let mut duplicate = false;
        let mut j = 0;
        for (name, &v) in &sample.metrics {
            // Both sides are sorted by name: walk them together, no hashing, no allocation.
            while j < self.lookup.len() && *self.lookup[j].0 < **name {
                j += 1;
            }
            let Some((_, target)) = self.lookup.get(j).filter(|(k, _)| **k == **name) else {
                self.stats.unknown_metrics += 1;
                continue;
            };
            let target = *target;
            j += 1;
            if !v.is_finite() {
                self.stats.non_finite_values += 1;
                continue;
            }
            if let Some(c) = target.column {
                let mi = (e * self.len + pos) * n_cols + c;
                duplicate |= self.mask[mi] != 0;
                self.mask[mi] = 1;
                match self.columns[c].storage {
                    Storage::Gauge(g) => {
                        // Saturate rather than store an infinity that would poison features.
                        self.gauges[(e * self.len + pos) * self.n_gauges + g] = to_f32(v);
                        self.baselines[e * self.n_gauges + g].update(v, self.baseline_alpha);
                    }
                    Storage::Counter(k) => self.raw[(e * self.len + pos) * self.n_counters + k] = v,
                }
            }
            if let Some(k) = target.side {
                let side = &mut self.sides[e * self.n_sides + k];
                if s >= side.slot {
                    *side = Stamped { value: v, slot: s };
                }
            }
        }

        let st = self.entities[e].as_mut().expect("indexed slots are live");
        st.last_seen_ms = st.last_seen_ms.max(sample.timestamp_ms);
        if duplicate {
            self.stats.duplicates += 1;
            PushOutcome::Duplicate
        } else {
            self.stats.accepted += 1;
            PushOutcome::Accepted
        }
    }

    /// Moves an entity's head from `head` to `s > head`, clearing the rows it passes over and
    /// keeping the newest raw counter value that leaves the window as the anchor.
    fn advance(&mut self, e: usize, head: i64, s: i64) {
        let l = self.len as i64;
        let n_cols = self.columns.len();
        for t in (head + 1).max(s - l + 1)..=s {
            let pos = t.rem_euclid(l) as usize;
            // The slot this row held: the one in (head - l, head] congruent to t.
            let held = head - (head - t).rem_euclid(l);
            for (c, col) in self.columns.iter().enumerate() {
                let mi = (e * self.len + pos) * n_cols + c;
                if self.mask[mi] == 0 {
                    continue;
                }
                self.mask[mi] = 0;
                if let Storage::Counter(k) = col.storage {
                    let anchor = &mut self.anchors[e * self.n_counters + k];
                    if held > anchor.slot {
                        *anchor = Stamped {
                            value: self.raw[(e * self.len + pos) * self.n_counters + k],
                            slot: held,
                        };
                    }
                }
            }
        }
        self.entities[e]
            .as_mut()
            .expect("indexed slots are live")
            .head = s;
    }

    /// The entity slot for a sample's entity, created with its head at `s` if new.
    fn entity_for(&mut self, sample: &MetricSample, s: i64) -> usize {
        let ent = &sample.entity;
        write_key(
            &mut self.key_buf,
            ent.kind,
            ent.namespace.as_deref(),
            &ent.name,
        );
        if let Some(&e) = self.index.get(self.key_buf.as_str()) {
            return e as usize;
        }
        let state = EntityState {
            id: ent.id(),
            head: s,
            last_seen_ms: sample.timestamp_ms,
            next_due: s,
        };
        debug_assert_eq!(state.id.as_str(), self.key_buf);
        let e = match self.free.pop() {
            Some(e) => {
                let e = e as usize;
                let cells = self.columns.len() * self.len;
                self.mask[e * cells..(e + 1) * cells].fill(0);
                self.anchors[e * self.n_counters..(e + 1) * self.n_counters].fill(Stamped::NONE);
                self.sides[e * self.n_sides..(e + 1) * self.n_sides].fill(Stamped::NONE);
                self.baselines[e * self.n_gauges..(e + 1) * self.n_gauges]
                    .fill(Baseline::default());
                self.entities[e] = Some(state);
                e
            }
            None => {
                let e = self.entities.len();
                let n = e + 1;
                self.gauges.resize(n * self.n_gauges * self.len, 0.0);
                self.raw.resize(n * self.n_counters * self.len, 0.0);
                self.mask.resize(n * self.columns.len() * self.len, 0);
                self.anchors.resize(n * self.n_counters, Stamped::NONE);
                self.sides.resize(n * self.n_sides, Stamped::NONE);
                self.baselines
                    .resize(n * self.n_gauges, Baseline::default());
                self.entities.push(Some(state));
                e
            }
        };
        let e32 = u32::try_from(e).expect("fewer than 2^32 live entities");
        self.index.insert(self.key_buf.as_str().into(), e32);
        self.stats.entities_created += 1;
        e
    }

    /// Removes the entities whose newest sample is older than `now_ms - stale_after_ms`, and
    /// returns them.
    pub fn evict_stale(&mut self, now_ms: i64) -> Vec<EntityId> {
        let cutoff = now_ms.saturating_sub(self.config.stale_after_ms as i64);
        let mut evicted = Vec::new();
        for (e, slot) in self.entities.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|st| st.last_seen_ms < cutoff) {
                let st = slot.take().expect("checked above");
                self.index.remove(st.id.as_str());
                self.free.push(e as u32);
                evicted.push(st.id);
            }
        }
        self.stats.evicted += evicted.len() as u64;
        evicted
    }

    /// Removes one entity's window (its partition moved to another instance); `false` when it
    /// had none.
    pub fn remove(&mut self, id: &EntityId) -> bool {
        let Some(e) = self.index.remove(id.as_str()) else {
            return false;
        };
        self.entities[e as usize] = None;
        self.free.push(e);
        self.stats.evicted += 1;
        true
    }

    /// The entities with a new window to score at `now_ms`, marking them scored. An entity is
    /// due when it is new, or when its newest slot has reached the next multiple of `step` after
    /// the slot it was last due at; and that newest slot is not after `now_ms`'s slot (a window
    /// ending later waits for a later tick). Scans every live entity: O(entities) per call.
    pub fn due(&mut self, now_ms: i64) -> Vec<EntityId> {
        let mut out = Vec::new();
        self.due_into(now_ms, &mut out);
        out
    }

    /// [`WindowStore::due`] into a caller's vector (cleared first), to reuse its allocation.
    pub fn due_into(&mut self, now_ms: i64, out: &mut Vec<EntityId>) {
        out.clear();
        let now_slot = self.slot_of_time(now_ms);
        let step = self.config.step as i64;
        for st in self.entities.iter_mut().flatten() {
            if st.head >= st.next_due && st.head <= now_slot {
                st.next_due = (st.head.div_euclid(step) + 1) * step;
                out.push(st.id.clone());
            }
        }
    }
}

/// Writes the key [`EntityId::from_parts`] builds, without allocating once `buf` has grown.
fn write_key(buf: &mut String, kind: EntityKind, namespace: Option<&str>, name: &str) {
    buf.clear();
    buf.push_str(kind.as_str());
    buf.push('/');
    if kind.is_namespaced() {
        buf.push_str(namespace.unwrap_or(""));
        buf.push('/');
    }
    buf.push_str(name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use auspex_model::EntityRef;

    #[test]
    fn key_matches_entity_id() {
        let mut buf = String::new();
        for r in [
            EntityRef::pod("shop", "cart-1"),
            EntityRef::node("n1"),
            EntityRef::new(EntityKind::Service, None, "s"),
            EntityRef::new(EntityKind::Container, Some("ns"), "p/c"),
        ] {
            write_key(&mut buf, r.kind, r.namespace.as_deref(), &r.name);
            assert_eq!(buf, r.id().as_str());
        }
    }
}
