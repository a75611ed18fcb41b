//! Merging several time-ordered lanes (one per file, entity or stream) into one time-ordered
//! stream. Owns only the ordering rule; what a lane holds is up to the source that builds it.
//!
//! The rule: the lane whose next record has the smallest key goes first; on a tie the lane
//! added first wins (so a source puts its topology lane first to get topology before samples
//! at the same instant). A dead letter has no event time; it takes its predecessor's key so it
//! comes out where it was read instead of holding the stream back.

use std::collections::VecDeque;

use crate::{IngestError, Record, Source};

/// One time-ordered input to a [`Merge`].
pub(crate) trait Lane: Send {
    /// The ordering key of the next record, `None` when the lane is done.
    fn peek_key(&mut self) -> Result<Option<i64>, IngestError>;
    /// The next record (the one `peek_key` described).
    fn pop(&mut self) -> Option<Record>;
}

/// A lane over an iterator of `(key, record)` built lazily (data-set rows). The iterator may
/// fail (a file that breaks mid-read); the error stops the merge.
pub(crate) struct IterLane<I> {
    iter: I,
    next: Option<(i64, Record)>,
}

impl<I: Iterator<Item = Result<(i64, Record), IngestError>>> IterLane<I> {
    pub(crate) fn new(iter: I) -> Self {
        IterLane { iter, next: None }
    }
}

impl<I: Iterator<Item = Result<(i64, Record), IngestError>> + Send> Lane for IterLane<I> {
    fn peek_key(&mut self) -> Result<Option<i64>, IngestError> {
        if self.next.is_none() {
            self.next = self.iter.next().transpose()?;
        }
        Ok(self.next.as_ref().map(|(k, _)| *k))
    }

    fn pop(&mut self) -> Option<Record> {
        self.next.take().map(|(_, r)| r)
    }
}

/// A lane over another source, read ahead one batch at a time.
pub(crate) struct SourceLane<S: Source> {
    source: S,
    buffer: VecDeque<Record>,
    last_key: i64,
    done: bool,
}

impl<S: Source> SourceLane<S> {
    pub(crate) fn new(source: S) -> Self {
        SourceLane {
            source,
            buffer: VecDeque::new(),
            last_key: i64::MIN,
            done: false,
        }
    }
}

impl<S: Source> Lane for SourceLane<S> {
    fn peek_key(&mut self) -> Result<Option<i64>, IngestError> {
        while self.buffer.is_empty() && !self.done {
            match self.source.next_batch(1024)? {
                Some(batch) => self.buffer.extend(batch),
                None => self.done = true,
            }
        }
        Ok(self
            .buffer
            .front()
            .map(|r| r.timestamp_ms().unwrap_or(self.last_key)))
    }

    fn pop(&mut self) -> Option<Record> {
        let r = self.buffer.pop_front()?;
        if let Some(ts) = r.timestamp_ms() {
            self.last_key = ts;
        }
        Some(r)
    }
}

/// Lanes merged by key. A linear scan per record: sources here have tens of lanes, not
/// thousands, and the scan beats a heap's bookkeeping at that size.
pub(crate) struct Merge {
    lanes: Vec<Box<dyn Lane>>,
}

impl Merge {
    pub(crate) fn new(lanes: Vec<Box<dyn Lane>>) -> Self {
        Merge { lanes }
    }

    pub(crate) fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        if max == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max {
            let mut best: Option<(usize, i64)> = None;
            for (i, lane) in self.lanes.iter_mut().enumerate() {
                if let Some(k) = lane.peek_key()?
                    && best.is_none_or(|(_, b)| k < b)
                {
                    best = Some((i, k));
                }
            }
            let Some((i, _)) = best else { break };
            if let Some(r) = self.lanes[i].pop() {
                out.push(r);
            }
        }
        if out.is_empty() {
            Ok(None)
        } else {
            Ok(Some(out))
        }
    }
}
