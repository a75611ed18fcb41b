//! Which scorer serves: a trained bundle (`auspex train`), or the statistical scorer when none
//! is given.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use auspex_hybrid::{HybridModel, HybridScorer};
use auspex_model::AnomalyKind;
use auspex_nn::NnDevice;
use auspex_score::Scorer;
use auspex_score::stat::{StatConfig, StatScorer};
use auspex_window::{FeatureSpec, WindowConfig};

use crate::engine::EngineConfig;
use crate::shared::Loader;

/// The scorer for `model` (or the statistical one), with `config` set to what it needs: the
/// bundle's window settings and, unless `keep_thresholds`, its per-kind thresholds.
pub fn open(
    model: Option<&Path>,
    device: NnDevice,
    config: &mut EngineConfig,
    keep_thresholds: bool,
) -> Result<Box<dyn Scorer>> {
    let Some(dir) = model else {
        return Ok(Box::new(StatScorer::new(
            StatConfig::default(),
            &FeatureSpec::new(&config.windows),
        )));
    };
    let model = HybridModel::load(dir, device)
        .with_context(|| format!("loading the model bundle {}", dir.display()))?;
    let w = &mut config.windows;
    w.resolution_ms = model.spec.resolution_ms;
    w.length = model.spec.length;
    w.metrics = model.spec.metrics.clone();
    w.ewma_alpha = model.spec.ewma_alpha;
    w.tte_cap_seconds = model.spec.tte_cap_seconds;
    let scorer = HybridScorer::new(model);
    if !keep_thresholds {
        config.alerts.thresholds = scorer.thresholds();
    }
    Ok(Box::new(scorer))
}

/// Loads bundles for a reload: the live windows must give exactly the features the bundle
/// was trained on, or the bundle is refused with the first difference.
pub fn loader(device: NnDevice) -> Loader {
    Box::new(move |dir: &Path, windows: &WindowConfig| {
        let model = HybridModel::load(dir, device)
            .with_context(|| format!("loading the model bundle {}", dir.display()))?;
        if let Err(e) = FeatureSpec::new(windows).check(&model.spec) {
            bail!(
                "{} was trained on other windows than this instance keeps ({e}); restart serve with it instead of reloading",
                dir.display()
            );
        }
        Ok(Box::new(HybridScorer::new(model)) as Box<dyn Scorer>)
    })
}

/// Whose per-kind fire thresholds are in force (`model.bundle_thresholds`), so that a reload
/// applies the same rule as start-up.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdSource {
    /// The served bundle's, put in force again by every reload; these configured entries
    /// (`alerts.thresholds`) win for their kinds.
    Bundle {
        overrides: HashMap<AnomalyKind, f64>,
    },
    /// The configuration's alone: a reload leaves the thresholds in force.
    Config,
}

impl ThresholdSource {
    /// The per-kind thresholds to put in force with `scorer`; `None`: keep those in force.
    pub fn for_scorer(&self, scorer: &dyn Scorer) -> Option<HashMap<AnomalyKind, f64>> {
        match self {
            ThresholdSource::Config => None,
            ThresholdSource::Bundle { overrides } => {
                let mut t = scorer.thresholds();
                t.extend(overrides.iter().map(|(k, v)| (*k, *v)));
                Some(t)
            }
        }
    }
}
