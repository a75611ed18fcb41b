//! The run summary: counts, and with labels, the event-wise evaluation.

use std::fmt::Write;

use auspex_model::{Alert, IncidentLabel};
use auspex_score::eval::{EventReport, KindReport, MatchPolicy, evaluate};
use serde::Serialize;

use auspex_serve::RunCounts;

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub source: String,
    pub counts: RunCounts,
    /// Present when the source has ground-truth labels.
    pub evaluation: Option<Evaluation>,
}

#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub match_policy: MatchPolicy,
    /// Same kind required.
    pub strict: EventReport,
    /// Any kind on the labelled entity counts.
    pub any_kind: EventReport,
}

impl RunSummary {
    pub fn new(
        source: String,
        counts: RunCounts,
        alerts: &[Alert],
        labels: &[IncidentLabel],
    ) -> Self {
        let evaluation = (!labels.is_empty()).then(|| {
            let policy = MatchPolicy::default();
            let any = MatchPolicy {
                any_kind: true,
                ..policy.clone()
            };
            Evaluation {
                strict: evaluate(alerts, labels, &policy, counts.entity_days),
                any_kind: evaluate(alerts, labels, &any, counts.entity_days),
                match_policy: policy,
            }
        });
        RunSummary {
            source,
            counts,
            evaluation,
        }
    }

    /// A short human-readable summary.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        let _ = writeln!(s, "\n== auspex run: {}", self.source);
        let entities: Vec<String> = c
            .entities_seen
            .iter()
            .map(|(k, n)| format!("{n} {k}s"))
            .collect();
        let _ = writeln!(
            s,
            "samples {}  topology events {}  dead letters {}  late {}  duplicates {}",
            c.samples, c.topology_events, c.dead_letters, c.late_samples, c.duplicate_samples
        );
        let _ = writeln!(
            s,
            "entities {}  graph {} vertices / {} edges  windows scored {}",
            entities.join(", "),
            c.graph_vertices,
            c.graph_edges,
            c.windows_scored
        );
        let _ = writeln!(
            s,
            "wall {:.2} s  ({:.0} samples/s end to end)",
            c.wall_seconds, c.samples_per_second
        );
        let fired: Vec<String> = c
            .alerts_firing
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "alerts fired: {}  (resolved {})",
            if fired.is_empty() {
                "none".to_string()
            } else {
                fired.join(", ")
            },
            c.alerts_resolved
        );
        if let Some(e) = &self.evaluation {
            let _ = writeln!(
                s,
                "\nagainst {} labelled incidents (alert may start {} min before onset .. {} min after end):",
                e.strict.overall.incidents,
                e.match_policy.early_ms / 60_000,
                e.match_policy.late_ms / 60_000
            );
            let _ = writeln!(
                s,
                "{:<18} {:>9} {:>8} {:>8} {:>9} {:>13} {:>9}",
                "kind", "incidents", "recall", "alerts", "precision", "median lead", "ahead"
            );
            for (k, r) in &e.strict.by_kind {
                row(&mut s, k.as_str(), r);
            }
            row(&mut s, "all (same kind)", &e.strict.overall);
            row(&mut s, "all (any kind)", &e.any_kind.overall);
            let _ = writeln!(
                s,
                "root-cause recall {}  false alerts per entity-day {}",
                pct(e.strict.root_cause_recall),
                e.strict
                    .false_alerts_per_entity_day
                    .map_or("-".into(), |v| format!("{v:.3}"))
            );
        }
        s
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn row(s: &mut String, name: &str, r: &KindReport) {
    let _ = writeln!(
        s,
        "{:<18} {:>9} {:>8} {:>8} {:>9} {:>13} {:>9}",
        name,
        r.incidents,
        pct(r.recall),
        r.alerts,
        pct(r.precision),
        r.median_lead_time_s
            .map_or("-".into(), |v| format!("{v:.0} s")),
        pct(r.predicted_before_incident)
    );
}
