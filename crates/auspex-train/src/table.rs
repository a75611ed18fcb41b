//! The Markdown table of ablation results: one row per branch or ensemble, one column per
//! metric, the best value of each column in bold, `–` where a value is missing.

use crate::{Summary, TrainError};

/// One metric column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// Which way is better: `Some(true)` higher, `Some(false)` lower, `None` neither (no bold).
    pub higher_is_better: Option<bool>,
}

/// Rows of named results under metric columns.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationTable {
    pub columns: Vec<Column>,
    pub rows: Vec<(String, Vec<Option<f64>>)>,
    /// Digits after the decimal point.
    pub decimals: usize,
}

/// The columns [`AblationTable::push_summary`] fills, in order.
pub const SUMMARY_COLUMNS: [(&str, Option<bool>); 9] = [
    ("F1", Some(true)),
    ("precision", Some(true)),
    ("recall", Some(true)),
    ("PR-AUC", Some(true)),
    ("VUS-PR", Some(true)),
    ("event P", Some(true)),
    ("event R", Some(true)),
    ("delay (steps)", Some(false)),
    ("false alerts/day", Some(false)),
];

impl AblationTable {
    /// An empty table with these columns.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = (S, Option<bool>)>) -> Self {
        AblationTable {
            columns: columns
                .into_iter()
                .map(|(name, higher_is_better)| Column {
                    name: name.into(),
                    higher_is_better,
                })
                .collect(),
            rows: Vec::new(),
            decimals: 3,
        }
    }

    /// An empty table with [`SUMMARY_COLUMNS`].
    pub fn for_summaries() -> Self {
        AblationTable::new(SUMMARY_COLUMNS)
    }

    /// Adds a row; `values` must have one entry per column.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        values: Vec<Option<f64>>,
    ) -> Result<(), TrainError> {
        let name = name.into();
        if values.len() != self.columns.len() {
            return Err(TrainError::Input(format!(
                "row {name}: {} values for {} columns",
                values.len(),
                self.columns.len()
            )));
        }
        self.rows.push((name, values));
        Ok(())
    }

    /// Adds a row of [`SUMMARY_COLUMNS`] from a summary (the table must have those columns).
    pub fn push_summary(&mut self, name: impl Into<String>, s: &Summary) -> Result<(), TrainError> {
        if self.columns.len() != SUMMARY_COLUMNS.len()
            || self
                .columns
                .iter()
                .zip(SUMMARY_COLUMNS)
                .any(|(c, (n, _))| c.name != n)
        {
            return Err(TrainError::Input(
                "push_summary needs a table built by for_summaries".into(),
            ));
        }
        self.push(
            name,
            vec![
                Some(s.pointwise.f1),
                Some(s.pointwise.precision),
                Some(s.pointwise.recall),
                Some(s.pr_auc),
                s.vus_pr,
                Some(s.event.precision),
                Some(s.event.recall),
                s.mean_delay_steps,
                s.false_alerts_per_day,
            ],
        )
    }

    /// The table as GitHub-flavoured Markdown.
    pub fn render(&self) -> String {
        let best: Vec<Option<f64>> = self
            .columns
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let values = self
                    .rows
                    .iter()
                    .filter_map(|(_, v)| v[j])
                    .filter(|v| v.is_finite());
                match c.higher_is_better {
                    Some(true) => values.reduce(f64::max),
                    Some(false) => values.reduce(f64::min),
                    None => None,
                }
            })
            .collect();
        let mut out = String::from("| name |");
        for c in &self.columns {
            out.push_str(&format!(" {} |", escape(&c.name)));
        }
        out.push_str("\n|---|");
        for _ in &self.columns {
            out.push_str("---:|");
        }
        out.push('\n');
        for (name, values) in &self.rows {
            out.push_str(&format!("| {} |", escape(name)));
            for (j, v) in values.iter().enumerate() {
                let cell = match v {
                    None => "–".to_string(),
                    Some(x) => {
                        let text = format!("{x:.*}", self.decimals);
                        // Bold every value that ties the best at the shown precision.
                        let is_best =
                            best[j].is_some_and(|b| text == format!("{b:.*}", self.decimals));
                        if is_best && self.rows.len() > 1 {
                            format!("**{text}**")
                        } else {
                            text
                        }
                    }
                };
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
        out
    }
}

/// Escapes the characters that would break a Markdown table cell.
fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bold_best_and_dashes() {
        let mut t = AblationTable::new([("F1", Some(true)), ("delay", Some(false)), ("n", None)]);
        t.push("lstm", vec![Some(0.25), Some(3.0), Some(10.0)])
            .unwrap();
        t.push("ensemble|v2", vec![Some(0.4), None, Some(12.0)])
            .unwrap();
        assert!(t.push("bad", vec![Some(1.0)]).is_err());
        let md = t.render();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| name | F1 | delay | n |");
        assert_eq!(lines[1], "|---|---:|---:|---:|");
        assert_eq!(lines[2], "| lstm | 0.250 | **3.000** | 10.000 |");
        assert_eq!(lines[3], "| ensemble\\|v2 | **0.400** | – | 12.000 |");
    }
}
