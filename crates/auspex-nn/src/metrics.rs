//! Small evaluation helpers for one head: ROC AUC and recall at a threshold.

/// Area under the ROC curve of `scores` against 0/1 `labels` (ties count half); `None` when
/// only one class is present.
pub fn roc_auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    let mut pairs: Vec<(f32, bool)> = scores
        .iter()
        .zip(labels)
        .map(|(&s, &y)| (s, y > 0.5))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = pairs.iter().filter(|p| p.1).count() as f64;
    let neg = pairs.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Mann–Whitney U with average ranks over ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Share of positives scored `≥ threshold`; `None` without positives.
pub fn recall_at(scores: &[f32], labels: &[f32], threshold: f32) -> Option<f64> {
    let (mut tp, mut pos) = (0usize, 0usize);
    for (&s, &y) in scores.iter().zip(labels) {
        if y > 0.5 {
            pos += 1;
            if s >= threshold {
                tp += 1;
            }
        }
    }
    (pos > 0).then(|| tp as f64 / pos as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_orderings() {
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]),
            Some(1.0)
        );
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[0.0, 0.0, 1.0, 1.0]),
            Some(0.0)
        );
        assert_eq!(roc_auc(&[0.5; 4], &[0.0, 1.0, 0.0, 1.0]), Some(0.5));
        assert_eq!(roc_auc(&[0.5; 2], &[1.0, 1.0]), None);
        assert_eq!(recall_at(&[0.6, 0.4], &[1.0, 1.0], 0.5), Some(0.5));
    }
}
