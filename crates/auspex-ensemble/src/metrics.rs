//! Small ranking and probability metrics used by this crate's fitting and tests. The full
//! evaluation (VUS-PR, event-wise F1, lead time) lives in the training crate.
//!
//! Each function ignores nothing: lengths must match (it panics otherwise, as these are
//! internal helpers over data the caller already validated) and scores must not be NaN.

/// Area under the ROC curve, with ties counted as one half (the Mann–Whitney statistic).
/// Returns 0.5 when one class is absent.
pub fn roc_auc(scores: &[f64], labels: &[u8]) -> f64 {
    assert_eq!(
        scores.len(),
        labels.len(),
        "scores and labels differ in length"
    );
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let n_pos = labels.iter().filter(|y| **y == 1).count() as f64;
    let n_neg = labels.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return 0.5;
    }
    // Sum of midranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let midrank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] == 1 {
                rank_sum += midrank;
            }
        }
        i = j + 1;
    }
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// Average precision (area under the precision–recall step curve), ties grouped.
/// Returns 0 when there is no positive.
pub fn average_precision(scores: &[f64], labels: &[u8]) -> f64 {
    assert_eq!(
        scores.len(),
        labels.len(),
        "scores and labels differ in length"
    );
    let n_pos = labels.iter().filter(|y| **y == 1).count() as f64;
    if n_pos == 0.0 {
        return 0.0;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            if labels[k] == 1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
        }
        let recall = tp / n_pos;
        ap += (recall - prev_recall) * tp / (tp + fp);
        prev_recall = recall;
        i = j + 1;
    }
    ap
}

/// Mean log-loss of probabilities (clipped to `[1e-12, 1 - 1e-12]`), optionally weighted.
pub fn log_loss(probs: &[f64], labels: &[u8], weights: Option<&[f64]>) -> f64 {
    assert_eq!(
        probs.len(),
        labels.len(),
        "probs and labels differ in length"
    );
    let mut total = 0.0;
    let mut wsum = 0.0;
    for (i, (&p, &y)) in probs.iter().zip(labels).enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        let p = p.clamp(1e-12, 1.0 - 1e-12);
        total -= w * if y == 1 { p.ln() } else { (1.0 - p).ln() };
        wsum += w;
    }
    if wsum > 0.0 { total / wsum } else { 0.0 }
}

/// Expected calibration error over `bins` equal-width probability bins: the row-weighted mean
/// of |mean predicted − observed rate| per bin.
pub fn expected_calibration_error(probs: &[f64], labels: &[u8], bins: usize) -> f64 {
    assert_eq!(
        probs.len(),
        labels.len(),
        "probs and labels differ in length"
    );
    let bins = bins.max(1);
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    let mut count = vec![0usize; bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sum_p[b] += p;
        sum_y[b] += f64::from(y);
        count[b] += 1;
    }
    let n = probs.len().max(1) as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (sum_p[b] - sum_y[b]).abs() / n)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_ap_on_known_cases() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1]), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[0, 0, 1, 1]), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5], &[0, 1]), 0.5);
        // Ranking 1, 0, 1: precision 1 at recall 0.5, 2/3 at recall 1.
        let ap = average_precision(&[0.9, 0.8, 0.7], &[1, 0, 1]);
        assert!((ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
        assert!(expected_calibration_error(&[0.0, 1.0], &[0, 1], 10) < 1e-12);
    }
}
