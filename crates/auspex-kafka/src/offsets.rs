//! Which offsets are safe to store: the at-least-once bookkeeping of `serve`.
//!
//! A consumed message is *done* once the pipeline has applied it and every output derived from
//! it (alerts, dead letters) has been acknowledged by the broker. The offset to store for a
//! partition is one past the end of its longest prefix of done messages, so a committed offset
//! never passes a message whose outputs could still be lost, and never moves backwards.

use std::collections::{BTreeMap, HashMap};

/// A message's place: topic and partition, then offset.
pub type Partition = (String, i32);

#[derive(Debug, Default)]
struct Lane {
    /// In-flight messages by offset: outputs still awaiting acknowledgement, and whether the
    /// pipeline has finished with the message.
    pending: BTreeMap<i64, (usize, bool)>,
    /// The offset to store (one past the last message of the done prefix), if any.
    next: Option<i64>,
}

/// Per-partition tracking of in-flight messages.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    lanes: HashMap<Partition, Lane>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A message was consumed (offsets arrive in increasing order per partition).
    pub fn consumed(&mut self, p: &Partition, offset: i64) {
        self.lanes
            .entry(p.clone())
            .or_default()
            .pending
            .insert(offset, (0, false));
    }

    /// An output derived from the message at `offset` was handed to the producer.
    pub fn output_sent(&mut self, p: &Partition, offset: i64) {
        if let Some((n, _)) = self.lane(p).and_then(|l| l.pending.get_mut(&offset)) {
            *n += 1;
        }
    }

    /// The broker acknowledged one output of the message at `offset`.
    pub fn output_acked(&mut self, p: &Partition, offset: i64) {
        if let Some((n, _)) = self.lane(p).and_then(|l| l.pending.get_mut(&offset)) {
            *n = n.saturating_sub(1);
        }
        self.advance(p);
    }

    /// The pipeline has finished with the message at `offset` (all its outputs are sent).
    pub fn applied(&mut self, p: &Partition, offset: i64) {
        if let Some((_, done)) = self.lane(p).and_then(|l| l.pending.get_mut(&offset)) {
            *done = true;
        }
        self.advance(p);
    }

    /// The offset to store for `p` now (one past the done prefix), if it moved past anything.
    pub fn storable(&self, p: &Partition) -> Option<i64> {
        self.lanes.get(p).and_then(|l| l.next)
    }

    /// Messages of `p` still in flight.
    pub fn in_flight(&self, p: &Partition) -> usize {
        self.lanes.get(p).map_or(0, |l| l.pending.len())
    }

    /// The oldest message of `p` not done yet: an output sent on its behalf holds back
    /// everything from it on.
    pub fn oldest(&self, p: &Partition) -> Option<i64> {
        self.lanes
            .get(p)
            .and_then(|l| l.pending.first_key_value().map(|(o, _)| *o))
    }

    /// Forgets a revoked partition.
    pub fn revoke(&mut self, p: &Partition) {
        self.lanes.remove(p);
    }

    fn lane(&mut self, p: &Partition) -> Option<&mut Lane> {
        self.lanes.get_mut(p)
    }

    fn advance(&mut self, p: &Partition) {
        let Some(lane) = self.lanes.get_mut(p) else {
            return;
        };
        while let Some((&offset, &(waiting, done))) = lane.pending.first_key_value() {
            if waiting > 0 || !done {
                break;
            }
            lane.pending.pop_first();
            lane.next = Some(offset + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever order applications and acknowledgements come in, the storable offset never
        /// moves backwards and never passes a message that is not done; once all are done it
        /// is one past the last.
        #[test]
        fn storable_is_monotone_and_never_passes_an_unfinished_message(
            outputs in proptest::collection::vec(0usize..3, 1..30),
            order in proptest::collection::vec(any::<u16>(), 0..200),
        ) {
            let n = outputs.len() as i64;
            let mut t = OffsetTracker::new();
            // Events: per message, its application and each output's acknowledgement.
            let mut events: Vec<(i64, bool)> = Vec::new();
            for (o, &k) in outputs.iter().enumerate() {
                t.consumed(&p(), o as i64);
                for _ in 0..k {
                    t.output_sent(&p(), o as i64);
                    events.push((o as i64, false));
                }
                events.push((o as i64, true));
            }
            // A seeded shuffle of the events.
            for (i, r) in order.iter().enumerate() {
                let (a, b) = (i % events.len(), *r as usize % events.len());
                events.swap(a, b);
            }
            let mut left: Vec<usize> = outputs.iter().map(|k| k + 1).collect();
            let mut last = None;
            for (o, applied) in events {
                if applied { t.applied(&p(), o) } else { t.output_acked(&p(), o) }
                left[o as usize] -= 1;
                let s = t.storable(&p());
                prop_assert!(s >= last, "moved back: {last:?} -> {s:?}");
                let first_unfinished = left.iter().position(|l| *l > 0).map_or(n, |i| i as i64);
                prop_assert_eq!(s.unwrap_or(0), first_unfinished);
                last = s;
            }
            prop_assert_eq!(t.storable(&p()), Some(n));
        }
    }

    fn p() -> Partition {
        ("samples".into(), 2)
    }

    #[test]
    fn the_stored_offset_waits_for_every_output_of_every_earlier_message() {
        let mut t = OffsetTracker::new();
        for o in 10..14 {
            t.consumed(&p(), o);
        }
        // 10: no outputs; 11: an alert; 12: a dead letter; 13: no outputs.
        t.applied(&p(), 10);
        assert_eq!(t.storable(&p()), Some(11));
        t.output_sent(&p(), 11);
        t.applied(&p(), 11);
        t.output_sent(&p(), 12);
        t.applied(&p(), 12);
        t.applied(&p(), 13);
        // 12's dead letter is acknowledged first: 11's alert still holds everything back.
        t.output_acked(&p(), 12);
        assert_eq!(t.storable(&p()), Some(11));
        t.output_acked(&p(), 11);
        assert_eq!(t.storable(&p()), Some(14));
        assert_eq!(t.in_flight(&p()), 0);
    }

    #[test]
    fn a_message_still_in_the_pipeline_holds_the_offset_and_revoke_forgets() {
        let mut t = OffsetTracker::new();
        t.consumed(&p(), 0);
        t.consumed(&p(), 1);
        t.applied(&p(), 1);
        assert_eq!(t.storable(&p()), None, "0 is not applied yet");
        t.applied(&p(), 0);
        assert_eq!(t.storable(&p()), Some(2));
        let other: Partition = ("samples".into(), 0);
        assert_eq!(t.storable(&other), None);
        t.consumed(&p(), 2);
        t.revoke(&p());
        assert_eq!((t.storable(&p()), t.in_flight(&p())), (None, 0));
    }
}
