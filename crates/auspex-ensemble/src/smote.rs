//! SMOTE and borderline-SMOTE oversampling of the minority class.
//!
//! Each synthetic row lies on the segment between a minority row and one of its `k` nearest
//! minority neighbours (Euclidean, on the features as given: standardise first when scales
//! differ). Borderline-SMOTE (variant 1, Han et al. 2005) only interpolates from minority rows
//! "in danger": at least half, but not all, of their `m` nearest neighbours in the whole set
//! are majority rows. Neighbour search is brute force, `O(n_min · n · d)`: fine for training
//! tables of tens of thousands of rows, not for millions. Sample weights are not carried:
//! synthetic rows count as ordinary rows. The minority class is whichever label is rarer.

use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{Features, check_labels};
use crate::error::{Error, Result};

/// Which SMOTE flavour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmoteVariant {
    /// Interpolate from every minority row.
    Plain,
    /// Interpolate only from minority rows near the class border.
    Borderline {
        /// Neighbours (in the whole set) used to judge whether a row is in danger.
        m: usize,
    },
}

/// SMOTE parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmoteConfig {
    /// Minority neighbours to interpolate towards (reduced when there are fewer minority rows).
    pub k: usize,
    /// Target minority:majority ratio after oversampling (1.0 balances the classes). No rows
    /// are added when the ratio is already reached.
    pub ratio: f64,
    /// Plain or borderline.
    pub variant: SmoteVariant,
    /// Seed for the choice of rows, neighbours and gaps.
    pub seed: u64,
    /// At most this many minority rows (a seeded sample) seed synthetic rows and serve as
    /// their neighbours: the neighbour search is quadratic in them. `None`: all. The number of
    /// synthetic rows still follows `ratio` over the whole set.
    pub max_seeds: Option<usize>,
}

impl Default for SmoteConfig {
    fn default() -> Self {
        Self {
            k: 5,
            ratio: 1.0,
            variant: SmoteVariant::Plain,
            seed: 0,
            max_seeds: None,
        }
    }
}

/// The original rows followed by the synthetic ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmented {
    /// Row-major features, original rows first.
    pub x: Vec<f64>,
    /// Labels, original rows first.
    pub y: Vec<u8>,
    /// Features per row.
    pub cols: usize,
    /// Number of original rows (synthetic rows start here).
    pub n_original: usize,
    /// For each synthetic row: (base row, neighbour row, gap) in original row indices, with
    /// `x = x[base] + gap · (x[neighbour] − x[base])`.
    pub origins: Vec<(usize, usize, f64)>,
}

/// Namespace for the oversampler.
#[derive(Debug, Clone, Copy)]
pub struct Smote;

impl Smote {
    /// Number of synthetic rows `config.ratio` asks for, given the class counts.
    pub fn synthetic_count(n_minority: usize, n_majority: usize, ratio: f64) -> usize {
        let target = (ratio * n_majority as f64).round() as usize;
        target.saturating_sub(n_minority)
    }

    /// Oversamples the minority class of `x` / `labels`. Needs at least two minority rows.
    /// NaN features are refused.
    pub fn resample(config: &SmoteConfig, x: Features<'_>, labels: &[u8]) -> Result<Augmented> {
        check_labels(labels, x.rows())?;
        x.require_finite("SMOTE features")?;
        if config.k == 0 {
            return Err(Error::InvalidParameter {
                name: "k",
                reason: "must be > 0".into(),
            });
        }
        if !(config.ratio.is_finite() && config.ratio > 0.0) {
            return Err(Error::InvalidParameter {
                name: "ratio",
                reason: format!("must be finite and > 0, got {}", config.ratio),
            });
        }
        let n_pos = labels.iter().filter(|y| **y == 1).count();
        let n_neg = labels.len() - n_pos;
        let minority_label = u8::from(n_pos <= n_neg);
        let mut minority: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] == minority_label)
            .collect();
        let n_majority = labels.len() - minority.len();
        if minority.len() < 2 {
            return Err(Error::TooFewMinority {
                found: minority.len(),
            });
        }
        let n_new = Self::synthetic_count(minority.len(), n_majority, config.ratio);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        if let Some(cap) = config.max_seeds.filter(|c| *c >= 2 && *c < minority.len()) {
            minority = minority.sample(&mut rng, cap).copied().collect();
            minority.sort_unstable();
        }
        let d = x.cols();
        let rows: Vec<Vec<f64>> = (0..x.rows()).map(|r| x.row(r)).collect();
        let k = config.k.min(minority.len() - 1);

        // Minority rows to interpolate from.
        let seeds: Vec<usize> = match config.variant {
            SmoteVariant::Plain => minority.clone(),
            SmoteVariant::Borderline { m } => {
                let m = m.max(1).min(x.rows() - 1);
                let all: Vec<usize> = (0..x.rows()).collect();
                let danger: Vec<usize> = minority
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let nn = nearest(&rows, i, &all, m);
                        let majority = nn.iter().filter(|&&j| labels[j] != minority_label).count();
                        // Half or more majority neighbours, but not all (all = noise).
                        2 * majority >= m && majority < m
                    })
                    .collect();
                // No row in danger: the classes are well separated or all minority rows look
                // like noise; fall back to plain SMOTE rather than add nothing.
                if danger.is_empty() {
                    minority.clone()
                } else {
                    danger
                }
            }
        };
        let neighbours: Vec<Vec<usize>> = seeds
            .iter()
            .map(|&i| nearest(&rows, i, &minority, k))
            .collect();

        let mut out_x = x.to_row_major();
        out_x.reserve(n_new * d);
        let mut out_y = labels.to_vec();
        let mut origins = Vec::with_capacity(n_new);
        for s in 0..n_new {
            // Cycle through the seeds so every one is used about equally, then pick a
            // random neighbour and gap.
            let which = s % seeds.len();
            let base = seeds[which];
            let nb = *neighbours[which]
                .choose(&mut rng)
                .expect("k >= 1 neighbours since there are >= 2 minority rows");
            let gap: f64 = rng.random();
            out_x.extend(
                rows[base]
                    .iter()
                    .zip(&rows[nb])
                    .map(|(a, b)| a + gap * (b - a)),
            );
            out_y.push(minority_label);
            origins.push((base, nb, gap));
        }
        Ok(Augmented {
            x: out_x,
            y: out_y,
            cols: d,
            n_original: x.rows(),
            origins,
        })
    }
}

/// The `k` rows of `candidates` nearest to row `i` (excluding `i`), nearest first.
fn nearest(rows: &[Vec<f64>], i: usize, candidates: &[usize], k: usize) -> Vec<usize> {
    let mut d: Vec<(f64, usize)> = candidates
        .iter()
        .filter(|&&j| j != i)
        .map(|&j| {
            let dist: f64 = rows[i]
                .iter()
                .zip(&rows[j])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            (dist, j)
        })
        .collect();
    let k = k.min(d.len());
    if k < d.len() {
        d.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.truncate(k);
    }
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().map(|(_, j)| j).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seed: u64) -> (Vec<f64>, Vec<u8>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..230 {
            let pos = i < 30;
            // Classes overlap on x0 in [0.5, 1], where borderline rows live.
            let c = if pos { 0.5 } else { -0.5 };
            x.push(c + rng.random::<f64>() * 1.5);
            x.push(rng.random::<f64>());
            y.push(u8::from(pos));
        }
        (x, y)
    }

    /// Checks every synthetic row against its recorded origin, and that the neighbour is one
    /// of the base's k nearest minority rows (recomputed independently here; `k = 0` skips
    /// that check).
    fn check_on_segments(aug: &Augmented, k: usize) {
        let rows: Vec<&[f64]> = aug.x.chunks(aug.cols).collect();
        let minority: Vec<usize> = (0..aug.n_original).filter(|&i| aug.y[i] == 1).collect();
        for (s, &(base, nb, gap)) in aug.origins.iter().enumerate() {
            assert_eq!(aug.y[base], 1);
            assert_eq!(aug.y[nb], 1);
            assert!((0.0..=1.0).contains(&gap));
            let syn = rows[aug.n_original + s];
            for c in 0..aug.cols {
                let expected = rows[base][c] + gap * (rows[nb][c] - rows[base][c]);
                assert!((syn[c] - expected).abs() < 1e-12);
            }
            if k == 0 {
                continue;
            }
            let mut dists: Vec<(f64, usize)> = minority
                .iter()
                .filter(|&&j| j != base)
                .map(|&j| {
                    let d: f64 = (0..aug.cols)
                        .map(|c| (rows[base][c] - rows[j][c]).powi(2))
                        .sum();
                    (d, j)
                })
                .collect();
            dists.sort_by(|a, b| a.0.total_cmp(&b.0));
            let kth = dists[k.min(dists.len()) - 1].0;
            let d_nb: f64 = (0..aug.cols)
                .map(|c| (rows[base][c] - rows[nb][c]).powi(2))
                .sum();
            assert!(
                d_nb <= kth + 1e-12,
                "neighbour {nb} is not among the {k} nearest of {base}"
            );
        }
    }

    #[test]
    fn smote_points_lie_on_minority_segments_with_requested_count() {
        let (x, y) = data(1);
        let fx = Features::f64(&x, 2).unwrap();
        let cfg = SmoteConfig {
            ratio: 0.5,
            ..SmoteConfig::default()
        };
        let aug = Smote::resample(&cfg, fx, &y).unwrap();
        // 200 majority × 0.5 = 100 minority wanted, 30 present → 70 synthetic.
        assert_eq!(aug.origins.len(), 70);
        assert_eq!(aug.y.len(), 300);
        assert_eq!(aug.y.iter().filter(|v| **v == 1).count(), 100);
        check_on_segments(&aug, 5);
        // Seeded: same output twice.
        assert_eq!(Smote::resample(&cfg, fx, &y).unwrap(), aug);
    }

    #[test]
    fn a_seed_cap_bounds_the_rows_interpolated_but_not_the_count() {
        let (x, y) = data(1);
        let fx = Features::f64(&x, 2).unwrap();
        let cfg = SmoteConfig {
            ratio: 0.5,
            max_seeds: Some(8),
            ..SmoteConfig::default()
        };
        let aug = Smote::resample(&cfg, fx, &y).unwrap();
        assert_eq!(aug.origins.len(), 70, "the count follows the whole set");
        let used: std::collections::BTreeSet<usize> =
            aug.origins.iter().flat_map(|o| [o.0, o.1]).collect();
        assert!(used.len() <= 8, "{used:?}");
        assert!(used.iter().all(|&i| y[i] == 1));
        check_on_segments(&aug, 0);
        assert_eq!(Smote::resample(&cfg, fx, &y).unwrap(), aug);
    }

    #[test]
    fn borderline_uses_danger_rows_and_handles_few_minority_rows() {
        let (x, y) = data(2);
        let fx = Features::f64(&x, 2).unwrap();
        let cfg = SmoteConfig {
            variant: SmoteVariant::Borderline { m: 10 },
            ..SmoteConfig::default()
        };
        let aug = Smote::resample(&cfg, fx, &y).unwrap();
        assert_eq!(aug.origins.len(), 170);
        check_on_segments(&aug, 5);
        // Danger rows sit near the border: their mean x0 is below the minority mean.
        let minority_mean: f64 = (0..30).map(|i| x[i * 2]).sum::<f64>() / 30.0;
        let base_mean: f64 =
            aug.origins.iter().map(|o| x[o.0 * 2]).sum::<f64>() / aug.origins.len() as f64;
        assert!(base_mean < minority_mean, "{base_mean} vs {minority_mean}");
        let mut bases: Vec<usize> = aug.origins.iter().map(|o| o.0).collect();
        bases.sort_unstable();
        bases.dedup();
        println!(
            "borderline SMOTE: {} of 30 minority rows in danger",
            bases.len()
        );
        assert!(bases.len() < 30 && !bases.is_empty());

        // Three minority rows with k = 5: k shrinks to 2.
        let y3: Vec<u8> = (0..230).map(|i| u8::from(i < 3)).collect();
        let aug = Smote::resample(&SmoteConfig { ratio: 0.1, ..cfg }, fx, &y3).unwrap();
        assert_eq!(aug.origins.len(), 20); // round(0.1 × 227) − 3
        check_on_segments(&aug, 2);
        let y1: Vec<u8> = (0..230).map(|i| u8::from(i < 1)).collect();
        assert!(matches!(
            Smote::resample(&cfg, fx, &y1),
            Err(Error::TooFewMinority { found: 1 })
        ));
    }
}
