//! Time-ordered, optionally entity-grouped folds for out-of-fold (OOF) stacking predictions.
//!
//! Time is cut into `k` contiguous blocks with about equal row counts (a timestamp is never
//! split between blocks). The OOF score of a row in block `i` comes from a model that never
//! trained on block `i`, nor on any row within `purge_secs` of it.
//!
//! **Choice: blocked with purge (default) rather than forward chaining.** Forward chaining
//! (train on blocks `< i`, predict block `i`) mimics deployment most literally, but block 0
//! gets no OOF score and early folds train on little data, so the meta-learner would see
//! scores from models of very different strength. Blocked k-fold with a purge gap (de Prado's
//! purged k-fold) gives every row an OOF score from a model trained on `(k−1)/k` of the time.
//! Why this does not leak:
//! - *Overlapping windows and label horizons*: a row's features look back over a window and
//!   its label looks ahead over a horizon, so rows just outside block `i` share raw samples
//!   or incident spans with rows inside it. Set `purge_secs` ≥ max(window length, label
//!   horizon); every training row is then more than `purge_secs` from every held-out row, so
//!   no raw sample or incident is seen on both sides.
//! - *Training on later blocks*: features are causal (computed from each entity's past) and
//!   normalised per entity online, so a model trained on later data learns a mapping, not
//!   the held-out rows' futures; the purge removes the boundary rows where a later window
//!   would still contain the held-out period.
//! - *Entities*: with `entity_groups > 1`, entities are dealt round-robin (in sorted order)
//!   into groups and a fold holds out (block `i`, group `g`): its model trains on neither that
//!   time block nor any entity of group `g`, so OOF scores also measure transfer to unseen
//!   entities.
//!
//! [`FoldScheme::ForwardChaining`] is offered for a deployment-faithful check; its block 0
//! rows have no OOF score.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How training rows are chosen for a held-out block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoldScheme {
    /// Train on every other block, minus the purge gap on both sides.
    #[default]
    Blocked,
    /// Train only on earlier blocks, minus the purge gap before the held-out block.
    ForwardChaining,
}

/// Fold parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FoldConfig {
    /// Number of contiguous time blocks (`k`).
    pub blocks: usize,
    /// Rows closer than this (seconds) to a held-out block are left out of its training set;
    /// use at least max(feature window, label horizon).
    pub purge_secs: i64,
    /// Blocked or forward chaining.
    pub scheme: FoldScheme,
    /// Entity groups (1 = no entity grouping).
    pub entity_groups: usize,
}

impl Default for FoldConfig {
    fn default() -> Self {
        Self {
            blocks: 5,
            purge_secs: 3600,
            scheme: FoldScheme::Blocked,
            entity_groups: 1,
        }
    }
}

/// One fold: train on `train`, predict `holdout`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// Held-out time block.
    pub block: usize,
    /// Held-out entity group (0 when entity grouping is off).
    pub group: usize,
    /// Training row indices, ascending.
    pub train: Vec<usize>,
    /// Held-out row indices, ascending.
    pub holdout: Vec<usize>,
}

/// The folds of a data set, with each row's block and group.
#[derive(Debug, Clone, PartialEq)]
pub struct Folds {
    /// Inclusive time range `(first, last)` of each block.
    pub blocks: Vec<(i64, i64)>,
    /// Block of each row.
    pub block_of_row: Vec<usize>,
    /// Entity group of each row.
    pub group_of_row: Vec<usize>,
    /// The folds, by block then group; folds with no held-out rows are omitted.
    pub folds: Vec<Fold>,
}

impl Folds {
    /// Builds the folds from each row's timestamp (seconds) and entity id.
    ///
    /// Fails when there are fewer distinct timestamps than blocks, a block would be empty, or
    /// a fold would have no training rows (purge too wide for the data).
    pub fn new<E: Ord>(config: &FoldConfig, timestamps: &[i64], entities: &[E]) -> Result<Self> {
        let n = timestamps.len();
        if entities.len() != n {
            return Err(Error::Shape {
                what: "entities",
                expected: n,
                found: entities.len(),
            });
        }
        let k = config.blocks;
        if k < 2 {
            return Err(Error::InvalidParameter {
                name: "blocks",
                reason: format!("need at least 2 blocks, got {k}"),
            });
        }
        if config.purge_secs < 0 || config.entity_groups == 0 {
            return Err(Error::InvalidParameter {
                name: "purge_secs / entity_groups",
                reason: "purge_secs must be >= 0 and entity_groups >= 1".into(),
            });
        }
        // Rows per distinct timestamp, in time order.
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for &t in timestamps {
            *counts.entry(t).or_default() += 1;
        }
        if counts.len() < k {
            return Err(Error::InvalidParameter {
                name: "blocks",
                reason: format!(
                    "{} distinct timestamps cannot form {k} blocks",
                    counts.len()
                ),
            });
        }
        let mut block_of_time: BTreeMap<i64, usize> = BTreeMap::new();
        let mut blocks: Vec<Option<(i64, i64)>> = vec![None; k];
        let mut before = 0usize;
        for (&t, &c) in &counts {
            let b = (before * k / n).min(k - 1);
            block_of_time.insert(t, b);
            blocks[b] = Some(match blocks[b] {
                Some((first, _)) => (first, t),
                None => (t, t),
            });
            before += c;
        }
        let blocks: Vec<(i64, i64)> = blocks
            .into_iter()
            .enumerate()
            .map(|(b, r)| {
                r.ok_or_else(|| Error::InvalidParameter {
                    name: "blocks",
                    reason: format!("block {b} is empty: rows are too concentrated in time"),
                })
            })
            .collect::<Result<_>>()?;
        let block_of_row: Vec<usize> = timestamps.iter().map(|t| block_of_time[t]).collect();

        let groups = config.entity_groups;
        let mut distinct: Vec<&E> = entities.iter().collect();
        distinct.sort();
        distinct.dedup();
        let group_of_row: Vec<usize> = entities
            .iter()
            .map(|e| {
                let rank = distinct
                    .binary_search(&e)
                    .expect("every entity is in the list");
                rank % groups
            })
            .collect();

        let mut folds = Vec::new();
        for (b, &(first, last)) in blocks.iter().enumerate() {
            if config.scheme == FoldScheme::ForwardChaining && b == 0 {
                continue;
            }
            for g in 0..groups {
                let holdout: Vec<usize> = (0..n)
                    .filter(|&i| block_of_row[i] == b && (groups == 1 || group_of_row[i] == g))
                    .collect();
                if holdout.is_empty() {
                    continue;
                }
                let train: Vec<usize> = (0..n)
                    .filter(|&i| {
                        let t = timestamps[i];
                        let before = t < first - config.purge_secs;
                        let after = t > last + config.purge_secs;
                        let time_ok = match config.scheme {
                            FoldScheme::Blocked => before || after,
                            FoldScheme::ForwardChaining => before,
                        };
                        time_ok && (groups == 1 || group_of_row[i] != g)
                    })
                    .collect();
                if train.is_empty() {
                    return Err(Error::InvalidParameter {
                        name: "purge_secs",
                        reason: format!("fold (block {b}, group {g}) has no training rows"),
                    });
                }
                folds.push(Fold {
                    block: b,
                    group: g,
                    train,
                    holdout,
                });
            }
        }
        Ok(Self {
            blocks,
            block_of_row,
            group_of_row,
            folds,
        })
    }

    /// Runs `fit_predict` on every fold (it trains on `fold.train` and returns one score per
    /// `fold.holdout` row, in order) and assembles the out-of-fold scores; rows no fold holds
    /// out (block 0 under forward chaining) get `None`.
    pub fn out_of_fold<F, E>(&self, mut fit_predict: F) -> Result<Vec<Option<f64>>, E>
    where
        F: FnMut(&Fold) -> Result<Vec<f64>, E>,
        E: From<Error>,
    {
        let mut out = vec![None; self.block_of_row.len()];
        for fold in &self.folds {
            let scores = fit_predict(fold)?;
            if scores.len() != fold.holdout.len() {
                return Err(Error::Shape {
                    what: "out-of-fold scores",
                    expected: fold.holdout.len(),
                    found: scores.len(),
                }
                .into());
            }
            for (&i, s) in fold.holdout.iter().zip(scores) {
                out[i] = Some(s);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_no_leak(cfg: &FoldConfig, ts: &[i64], ents: &[u32], folds: &Folds) {
        for f in &folds.folds {
            let (first, last) = folds.blocks[f.block];
            for &h in &f.holdout {
                assert_eq!(folds.block_of_row[h], f.block);
                assert!(ts[h] >= first && ts[h] <= last);
            }
            for &t in &f.train {
                // Never the held-out block, and outside the purge gap around it.
                assert_ne!(folds.block_of_row[t], f.block);
                assert!(ts[t] < first - cfg.purge_secs || ts[t] > last + cfg.purge_secs);
                if cfg.scheme == FoldScheme::ForwardChaining {
                    assert!(ts[t] < first);
                }
                if cfg.entity_groups > 1 {
                    assert!(f.holdout.iter().all(|&h| ents[h] != ents[t]));
                }
            }
        }
        // Blocks are contiguous and ordered.
        for w in folds.blocks.windows(2) {
            assert!(w[0].1 < w[1].0);
        }
    }

    #[test]
    fn blocked_folds_cover_every_row_once_and_respect_the_purge() {
        // 10 entities × 1000 minutes.
        let ts: Vec<i64> = (0..10_000).map(|i| (i / 10) * 60).collect();
        let ents: Vec<u32> = (0..10_000).map(|i| i % 10).collect();
        let cfg = FoldConfig {
            blocks: 5,
            purge_secs: 1800,
            ..FoldConfig::default()
        };
        let folds = Folds::new(&cfg, &ts, &ents).unwrap();
        assert_eq!(folds.folds.len(), 5);
        check_no_leak(&cfg, &ts, &ents, &folds);
        let oof = folds
            .out_of_fold::<_, Error>(|f| Ok(vec![f.block as f64; f.holdout.len()]))
            .unwrap();
        assert!(
            oof.iter()
                .enumerate()
                .all(|(i, s)| *s == Some(folds.block_of_row[i] as f64))
        );
        // A middle fold loses 30 minutes on each side: 200 − 30 − 30 minutes of other blocks…
        let f2 = &folds.folds[2];
        assert_eq!(f2.train.len(), 10_000 - 2000 - 2 * 300);

        let fc = FoldConfig {
            scheme: FoldScheme::ForwardChaining,
            entity_groups: 3,
            ..cfg
        };
        let folds = Folds::new(&fc, &ts, &ents).unwrap();
        check_no_leak(&fc, &ts, &ents, &folds);
        let oof = folds
            .out_of_fold::<_, Error>(|f| Ok(vec![1.0; f.holdout.len()]))
            .unwrap();
        assert!((0..10_000).all(|i| oof[i].is_some() == (folds.block_of_row[i] > 0)));
        assert!(
            Folds::new(
                &FoldConfig {
                    purge_secs: 1_000_000,
                    ..cfg
                },
                &ts,
                &ents
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn folds_never_leak(
            rows in prop::collection::vec((0i64..5000, 0u32..6), 50..300),
            k in 2usize..6,
            purge in 0i64..200,
            groups in 1usize..4,
            forward in any::<bool>(),
        ) {
            let (ts, ents): (Vec<i64>, Vec<u32>) = rows.into_iter().unzip();
            let cfg = FoldConfig {
                blocks: k,
                purge_secs: purge,
                scheme: if forward { FoldScheme::ForwardChaining } else { FoldScheme::Blocked },
                entity_groups: groups,
            };
            // Refusals (purge too wide, blocks too few) are fine; a fold that exists must not leak.
            if let Ok(folds) = Folds::new(&cfg, &ts, &ents) {
                check_no_leak(&cfg, &ts, &ents, &folds);
            }
        }
    }
}
