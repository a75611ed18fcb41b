//! `auspex evaluate-forecast`: trains the per-workload demand forecaster and scores it against
//! the naive references (last value, seasonal naive, `predict_linear`) on simulator seeds it
//! never saw and on chronological test splits of real load series (NAB, Nezha). Prints a
//! Markdown table and writes the full report as JSON.
//!
//! Every setting is fixed before the test data is read, or chosen on training data only (the
//! seasonal inputs are switched off for a data set whose training split has less than a
//! season of history before most windows); early stopping uses the validation split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use auspex_forecast::{
    BaselineQuantiles, EvalReport, ForecastConfig, ForecastModel, Resource, Series, SeriesBuilder,
    Split, StepDemand, TrainReport, TrainSettings, WindowSet, WorkloadKey, aggregate, evaluate,
    markdown_table,
};
use auspex_nn::NnDevice;
use auspex_sim::{SimConfig, Simulator};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Arguments of `auspex evaluate-forecast`.
#[derive(Debug, Args)]
pub struct EvaluateForecastArgs {
    /// Directory holding `nab/` and `nezha-onlineboutique/` (the project's shared data).
    #[arg(long, value_name = "DIR", default_value = "../shared/data")]
    pub data: PathBuf,
    /// Simulator seeds to train on.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub train_seeds: Vec<u64>,
    /// Simulator seeds for early stopping.
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub val_seeds: Vec<u64>,
    /// Held-out simulator seeds to score.
    #[arg(long, value_delimiter = ',', default_value = "5,6")]
    pub test_seeds: Vec<u64>,
    /// Simulated hours per seed.
    #[arg(long, default_value_t = 96)]
    pub sim_hours: u64,
    /// The simulator's diurnal period in minutes (the simulator's season).
    #[arg(long, default_value_t = 1440)]
    pub sim_period_minutes: u64,
    /// Forecast horizons in minutes (a horizon that is not a whole number of a series' steps
    /// is skipped for that series).
    #[arg(long, value_delimiter = ',', default_value = "5,15,30")]
    pub horizons: Vec<i64>,
    /// Quantile levels.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,0.9")]
    pub quantiles: Vec<f64>,
    /// Season of the real series, minutes (one day).
    #[arg(long, default_value_t = 1440)]
    pub season_minutes: i64,
    /// Recent steps the network sees.
    #[arg(long, default_value_t = 30)]
    pub history_steps: usize,
    /// Resolution step of the simulator's workload demand, seconds.
    #[arg(long, default_value_t = 60)]
    pub sim_step_seconds: i64,
    /// Upper bound on training epochs (early stopping on the validation split).
    #[arg(long, default_value_t = 40)]
    pub max_epochs: usize,
    /// Training windows are subsampled to at most this many per data set.
    #[arg(long, default_value_t = 100_000)]
    pub max_windows: usize,
    /// Seed of the training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Skip the simulator part.
    #[arg(long)]
    pub skip_sim: bool,
    /// Skip the real data sets.
    #[arg(long)]
    pub skip_real: bool,
    /// Where to write the JSON report.
    #[arg(long, value_name = "FILE", default_value = "forecast-evaluation.json")]
    pub json: PathBuf,
    /// Also save the simulator-trained model here.
    #[arg(long, value_name = "FILE")]
    pub save_model: Option<PathBuf>,
}

#[derive(Serialize)]
struct GroupOut {
    report: EvalReport,
    /// The same model scored per resource (simulator only).
    by_resource: Vec<EvalReport>,
    step_seconds: i64,
    seasonal_inputs: bool,
    skipped_horizons_minutes: Vec<i64>,
    training: TrainReport,
    baseline_residual_quantiles: BaselineQuantiles,
}

#[derive(Serialize)]
struct Output {
    command: String,
    scaling: &'static str,
    baseline_quantiles: &'static str,
    groups: Vec<GroupOut>,
}

const SCALING: &str = "MASE and pinball are divided by the mean absolute one-step change of \
    the series before its test range (training and validation splits; for a held-out simulator seed, its first \
    season), averaged over series with equal weight";
const BASELINE_Q: &str = "reference quantiles = point forecast + per-window scale x empirical \
    quantile of the reference's own scaled residuals on the training split";

/// Runs the evaluation.
pub fn evaluate_forecast(args: EvaluateForecastArgs) -> Result<()> {
    let mut groups = Vec::new();
    if !args.skip_sim {
        let (splits, step_ms, season_ms) = sim_splits(&args)?;
        let g = run_group(
            "simulator (held-out seeds)",
            splits,
            step_ms,
            season_ms,
            &args,
            args.save_model.as_deref(),
        )?;
        groups.extend(g);
    }
    if !args.skip_real {
        for (name, series, step_ms) in real_series(&args.data)? {
            let splits = chronological(&series, &args, step_ms);
            let g = run_group(
                &name,
                splits,
                step_ms,
                args.season_minutes * 60_000,
                &args,
                None,
            )?;
            groups.extend(g);
        }
    }
    let reports: Vec<EvalReport> = groups
        .iter()
        .flat_map(|g| std::iter::once(g.report.clone()).chain(g.by_resource.iter().cloned()))
        .collect();
    println!("{}", markdown_table(&reports));
    println!("Scaling: {SCALING}.\nReferences' quantiles: {BASELINE_Q}.");
    for r in &reports {
        let lost: Vec<String> = r
            .series_lost()
            .iter()
            .map(|(m, lost, n)| format!("{m} min: {lost} of {n}"))
            .collect();
        println!(
            "- {}: series where a reference has a lower MASE than the model: {}",
            r.name,
            lost.join(", ")
        );
    }
    let out = Output {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        scaling: SCALING,
        baseline_quantiles: BASELINE_Q,
        groups,
    };
    std::fs::write(&args.json, serde_json::to_vec_pretty(&out)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!("wrote {}", args.json.display());
    Ok(())
}

fn run_group(
    name: &str,
    splits: Vec<Split>,
    step_ms: i64,
    season_ms: i64,
    args: &EvaluateForecastArgs,
    save: Option<&Path>,
) -> Result<Option<GroupOut>> {
    let horizons_ms: Vec<i64> = args.horizons.iter().map(|m| m * 60_000).collect();
    let (mut config, dropped) = match ForecastConfig::from_durations(
        step_ms,
        args.history_steps,
        &horizons_ms,
        season_ms,
        &args.quantiles,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: skipped ({e})");
            return Ok(None);
        }
    };
    let windows = |config: &ForecastConfig| {
        let (mut train, mut val) = (WindowSet::default(), WindowSet::default());
        for s in &splits {
            let v = &s.series.values;
            train.extend(&config.features, v, s.series.start_ms, s.train.clone());
            val.extend(&config.features, v, s.series.start_ms, s.val.clone());
        }
        (train, val)
    };
    let (mut train, mut val) = windows(&config);
    // Chosen on the training split only: without a season of history behind most training
    // windows the seasonal inputs would stay untrained.
    if train.seasonal_rows * 4 < train.rows {
        config.features.seasonal = false;
        (train, val) = windows(&config);
    }
    let settings = TrainSettings {
        max_epochs: args.max_epochs,
        max_windows: args.max_windows,
        seed: args.seed,
        ..TrainSettings::default()
    };
    let pb = ProgressBar::new(settings.max_epochs as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} epochs {msg}",
        )
        .expect("a valid template"),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb.set_message(format!(
        "{name}: training on {} windows",
        train.rows.min(settings.max_windows)
    ));
    let mut progress = |epoch: usize, tl: f32, vl: f32| {
        pb.set_position(epoch as u64);
        pb.set_message(format!("{name}: pinball train {tl:.4} val {vl:.4}"));
    };
    let (model, training) = ForecastModel::fit(
        config.clone(),
        &settings,
        &train,
        &val,
        NnDevice::Cpu,
        Some(&mut progress),
    )
    .with_context(|| format!("training on {name}"))?;
    pb.finish_and_clear();
    if let Some(path) = save {
        model.save(path)?;
        eprintln!("saved the {name} model to {}", path.display());
    }
    let baselines = BaselineQuantiles::fit(&config.features, &config.quantiles, &splits);
    let report = evaluate(name, &model, &baselines, &splits);
    let mut by_resource = Vec::new();
    if splits.iter().any(|s| s.name.starts_with("seed ")) {
        for r in Resource::ALL {
            let subset: Vec<Split> = splits
                .iter()
                .filter(|s| s.name.ends_with(r.as_str()))
                .cloned()
                .collect();
            by_resource.push(evaluate(
                &format!("{name}, {r} only"),
                &model,
                &baselines,
                &subset,
            ));
        }
    }
    eprintln!(
        "{name}: {} series, {} test origins, best epoch {} of {}",
        report.series,
        report.origins,
        training.best_epoch,
        training.epochs.len()
    );
    Ok(Some(GroupOut {
        report,
        by_resource,
        step_seconds: step_ms / 1000,
        seasonal_inputs: config.features.seasonal,
        skipped_horizons_minutes: dropped.iter().map(|h| h / 60_000).collect(),
        training,
        baseline_residual_quantiles: baselines,
    }))
}

/// Per-workload demand series of one simulated seed.
pub fn simulate_series(
    config: SimConfig,
    step_ms: i64,
) -> Result<BTreeMap<(WorkloadKey, Resource), Series>> {
    let mut sim = Simulator::new(config).map_err(|e| anyhow::anyhow!("simulator: {e}"))?;
    Ok(aggregate(
        std::iter::from_fn(|| sim.next_tick()).flat_map(|t| t.samples),
        step_ms,
        5,
    ))
}

fn sim_splits(args: &EvaluateForecastArgs) -> Result<(Vec<Split>, i64, i64)> {
    let step_ms = args.sim_step_seconds * 1000;
    let season_ms = args.sim_period_minutes as i64 * 60_000;
    let hmax = args.horizons.iter().max().copied().unwrap_or(0) * 60_000 / step_ms;
    let season = (season_ms / step_ms) as usize + 2;
    let seeds: Vec<(u64, u8)> = args
        .train_seeds
        .iter()
        .map(|&s| (s, 0))
        .chain(args.val_seeds.iter().map(|&s| (s, 1)))
        .chain(args.test_seeds.iter().map(|&s| (s, 2)))
        .collect();
    let pb = ProgressBar::new(seeds.len() as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} simulator seeds",
        )
        .expect("a valid template"),
    );
    let mut splits = Vec::new();
    for (seed, role) in seeds {
        let config = SimConfig {
            seed,
            duration_ms: args.sim_hours * 3_600_000,
            diurnal_period_ms: args.sim_period_minutes * 60_000,
            ..SimConfig::default()
        };
        for ((k, r), s) in simulate_series(config, step_ms)? {
            let n = s.values.len();
            let fit = 0..n.saturating_sub(hmax.max(0) as usize);
            let (train, val, test) = match role {
                0 => (fit, 0..0, 0..0),
                1 => (0..0, fit, 0..0),
                _ => (0..0, 0..0, season.min(n)..n),
            };
            splits.push(Split {
                name: format!("seed {seed} {k} {r}"),
                series: s,
                train,
                val,
                test,
            });
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((splits, step_ms, season_ms))
}

/// Train on the first 60 % of steps, validate on the next 20 %, test on the last 20 %;
/// training and validation origins stop a largest horizon before their split ends, so no
/// target lies in a later split.
fn chronological(
    series: &[(String, Series)],
    args: &EvaluateForecastArgs,
    step_ms: i64,
) -> Vec<Split> {
    let hmax =
        (args.horizons.iter().max().copied().unwrap_or(0) * 60_000 / step_ms).max(0) as usize;
    series
        .iter()
        .map(|(name, s)| {
            let n = s.values.len();
            let (a, b) = (n * 6 / 10, n * 8 / 10);
            Split {
                name: name.clone(),
                series: s.clone(),
                train: 0..a.saturating_sub(hmax),
                val: a..b.saturating_sub(hmax),
                test: b..n,
            }
        })
        .collect()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` (anything after ignored), read as UTC.
fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.get(..19)?;
    let num = |r: std::ops::Range<usize>| b.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let secs = num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    Some((days * 86_400 + secs) * 1000)
}

/// A regular series from irregular points: the mean per step, short gaps filled.
fn series_from_points(mut points: Vec<(i64, f64)>, step_ms: i64) -> Series {
    points.sort_by_key(|p| p.0);
    let key = WorkloadKey::new("", "series");
    let mut builder = SeriesBuilder::new(step_ms, 5);
    let mut steps = Vec::new();
    let mut i = 0;
    while i < points.len() {
        let idx = points[i].0.div_euclid(step_ms);
        let (mut sum, mut n) = (0.0, 0.0);
        while i < points.len() && points[i].0.div_euclid(step_ms) == idx {
            sum += points[i].1;
            n += 1.0;
            i += 1;
        }
        steps.push(StepDemand {
            key: key.clone(),
            index: idx,
            values: [Some(sum / n), None, None],
        });
    }
    builder.push(&steps);
    builder.finish().into_values().next().unwrap_or(Series {
        start_ms: 0,
        step_ms,
        values: Vec::new(),
    })
}

fn read_nab(path: &Path) -> Result<Vec<(i64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let (ts, v) = line
            .split_once(',')
            .with_context(|| format!("{}:{}: expected timestamp,value", path.display(), i + 1))?;
        let ts = parse_datetime(ts)
            .with_context(|| format!("{}:{}: bad timestamp {ts:?}", path.display(), i + 1))?;
        let v: f64 = v
            .trim()
            .parse()
            .with_context(|| format!("{}:{}: bad value {v:?}", path.display(), i + 1))?;
        out.push((ts, v));
    }
    Ok(out)
}

/// The median spacing of the points, rounded to a minute.
fn step_of(points: &[(i64, f64)]) -> i64 {
    let mut d: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|d| *d > 0)
        .collect();
    d.sort_unstable();
    let med = d.get(d.len() / 2).copied().unwrap_or(60_000);
    ((med + 30_000) / 60_000).max(1) * 60_000
}

type Group = (String, Vec<(String, Series)>, i64);

fn real_series(root: &Path) -> Result<Vec<Group>> {
    let nab = root.join("nab");
    if !nab.is_dir() {
        bail!(
            "{} not found: pass --data DIR (the directory holding nab/ and nezha-onlineboutique/) or --skip-real",
            nab.display()
        );
    }
    let mut groups = Vec::new();
    let mut nab_group = |name: &str, dir: &str, prefix: &str| -> Result<()> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(nab.join(dir))
            .with_context(|| format!("{}", nab.join(dir).display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(prefix) && f.ends_with(".csv"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("no {prefix}*.csv under {}", nab.join(dir).display());
        }
        let mut series = Vec::new();
        let mut step = 0;
        for f in files {
            let points = read_nab(&f)?;
            step = step_of(&points);
            let name = f
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("?")
                .to_string();
            series.push((name, series_from_points(points, step)));
        }
        groups.push((
            format!("{name} ({} series, {} min)", series.len(), step / 60_000),
            series,
            step,
        ));
        Ok(())
    };
    nab_group(
        "NAB ec2_cpu_utilization",
        "realAWSCloudwatch",
        "ec2_cpu_utilization_",
    )?;
    nab_group(
        "NAB elb_request_count",
        "realAWSCloudwatch",
        "elb_request_count_",
    )?;
    nab_group("NAB nyc_taxi", "realKnownCause", "nyc_taxi")?;
    for (label, column) in [
        ("Nezha PodWorkload(Ops)", "PodWorkload(Ops)"),
        ("Nezha CpuUsage(m)", "CpuUsage(m)"),
    ] {
        let series = nezha_series(&root.join("nezha-onlineboutique"), column)?;
        groups.push((
            format!("{label} ({} workloads, 1 min)", series.len()),
            series,
            60_000,
        ));
    }
    Ok(groups)
}

/// One series per deployment (its pod's rows across the days) of `column`.
fn nezha_series(root: &Path, column: &str) -> Result<Vec<(String, Series)>> {
    let mut days: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("{}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("metric").is_dir())
        .collect();
    days.sort();
    let mut points: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for day in days {
        let dir = day.join("metric");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.ends_with("_metric.csv"))
            })
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).with_context(|| format!("{}", f.display()))?;
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
            let col = |n: &str| header.iter().position(|h| *h == n);
            let (Some(tc), Some(pc), Some(vc)) = (col("Time"), col("PodName"), col(column)) else {
                bail!("{}: missing Time, PodName or {column} column", f.display());
            };
            for line in lines {
                let cells: Vec<&str> = line.split(',').collect();
                let (Some(t), Some(pod), Some(v)) = (cells.get(tc), cells.get(pc), cells.get(vc))
                else {
                    continue;
                };
                let (Some(ts), Ok(v)) = (parse_datetime(t), v.trim().parse::<f64>()) else {
                    continue;
                };
                let deployment = auspex_ingest::dataset::nezha::deployment_of(pod).to_string();
                points.entry(deployment).or_default().push((ts, v));
            }
        }
    }
    Ok(points
        .into_iter()
        .map(|(name, p)| (name, series_from_points(p, 60_000)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nab_and_nezha_times_as_utc() {
        assert_eq!(parse_datetime("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_datetime("2014-02-14 14:30:00"),
            Some(1_392_388_200_000)
        );
        assert_eq!(
            parse_datetime("2022-08-22 03:51:19.799087274 +0000 UTC m=+0.305041286"),
            Some(1_661_140_279_000)
        );
        assert_eq!(parse_datetime("2014-02-14"), None);
    }
}
