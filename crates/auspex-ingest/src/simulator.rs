//! The in-process simulator as a [`Source`]: each tick's topology events, then its samples, in
//! batches of at most `max` records across tick boundaries (what does not fit waits for the
//! next call). The simulator itself (cluster, load, faults) lives in `auspex-sim`.

use std::collections::VecDeque;

use auspex_model::IncidentLabel;
use auspex_sim::{SimConfig, Simulator};

use crate::{IngestError, Record, Source};

/// Records from an [`auspex_sim::Simulator`], with its labels as ground truth.
pub struct SimulatorSource {
    sim: Simulator,
    pending: VecDeque<Record>,
    ticks: u64,
    done: bool,
}

impl SimulatorSource {
    /// Builds the simulator; an invalid config is [`IngestError::Simulator`] with its reason.
    pub fn new(config: SimConfig) -> Result<Self, IngestError> {
        let sim = Simulator::new(config).map_err(|e| IngestError::Simulator(e.to_string()))?;
        Ok(Self::from_simulator(sim))
    }

    /// Wraps a simulator already built.
    pub fn from_simulator(sim: Simulator) -> Self {
        SimulatorSource {
            sim,
            pending: VecDeque::new(),
            ticks: 0,
            done: false,
        }
    }

    /// Ticks consumed so far.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }
}

impl Source for SimulatorSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        while self.pending.len() < max && !self.done {
            match self.sim.next_tick() {
                Some(tick) => {
                    self.ticks += 1;
                    // Topology first: a pod exists before its first sample.
                    self.pending
                        .extend(tick.topology.into_iter().map(Record::Topology));
                    self.pending
                        .extend(tick.samples.into_iter().map(Record::Sample));
                }
                None => self.done = true,
            }
        }
        if self.pending.is_empty() && self.done {
            return Ok(None);
        }
        let n = max.min(self.pending.len());
        Ok(Some(self.pending.drain(..n).collect()))
    }

    fn sample_interval_ms(&self) -> Option<u64> {
        Some(self.sim.config().interval_ms)
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.sim.labels().to_vec()
    }

    fn describe(&self) -> String {
        format!(
            "simulator seed {} ({} ticks)",
            self.sim.config().seed,
            self.sim.total_ticks()
        )
    }
}
