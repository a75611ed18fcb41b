//! `auspex train` and `auspex evaluate`: the hybrid ensemble on any source.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use auspex_hybrid::{Branch, HybridConfig, HybridModel};
use auspex_model::AnomalyKind;
use auspex_nn::NnDevice;
use auspex_train::{AblationTable, Dataset, EvalConfig, Series};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::byo::{self, Format};
use crate::cli::{SourceArgs, open_source};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training data (same forms as `run --source`); `sim` uses the seeds in --seeds. With
    /// `--format smd`: the directory.
    #[arg(long = "data", default_value = "sim")]
    pub source: String,
    /// Layout of --data: `source` (as for `run --source`), or a directory laid out as `smd`
    /// (NAME_train.csv[.gz] / NAME_test.csv[.gz]; training uses only the train files), `nezha`
    /// or `nab` (see the README).
    #[arg(long, value_enum, default_value_t = Format::Source)]
    pub format: Format,
    /// With `--data sim`: simulator seeds to train on (comma-separated; each is one run).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where to write the model bundle (a directory; must not exist or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Branches to train (comma-separated: gbdt, logistic, mlp, lstm, tcn, gnn, detector,
    /// pca). Default: gbdt,logistic,mlp,lstm,gnn (`auspex_hybrid::Branch::DEFAULT`); with
    /// `--format smd|nab` gbdt,logistic,mlp,detector,pca (no graph there, and sequences of
    /// every minute of every machine would take gigabytes); with `--format nezha`
    /// gbdt,logistic,mlp (adding the GNN, or the detector and PCA, lost validation PR-AUC
    /// there, see the README).
    #[arg(long, value_delimiter = ',')]
    pub branches: Option<Vec<String>>,
    /// Predict incidents this many minutes ahead.
    #[arg(long, default_value_t = 15)]
    pub horizon_min: i64,
    /// Seed of training (sampling, initialisation).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// SMOTE on the GBDT's training rows: synthetic positives up to this share of the
    /// negatives (default 0.5; 0 turns it off; every branch weights its classes either way).
    #[arg(long, value_name = "RATIO")]
    pub smote_ratio: Option<f64>,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Where the neural branches run: `cpu` (default) or `wgpu` (needs the `gpu` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Simulator overrides, as for `run` (`--set KEY=VALUE`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The model bundle to evaluate.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Test data (same forms as `run --source`); `sim` uses the seeds in --seeds. With
    /// `--format smd`: the directory.
    #[arg(long = "data", default_value = "sim")]
    pub source: String,
    /// Layout of --data (see `train --format`); `smd` scores every row of the test files.
    #[arg(long, value_enum, default_value_t = Format::Source)]
    pub format: Format,
    /// Also write the report (overall and per-entity metrics) to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// With `--data sim`: held-out simulator seeds.
    #[arg(long, value_delimiter = ',', default_value = "101")]
    pub seeds: Vec<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Directory for report.json, report.md and the plots.
    #[arg(long, value_name = "DIR", default_value = "evaluation")]
    pub out: PathBuf,
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("a valid template"),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message(msg.to_string());
    pb
}

/// Builds the dataset of every selected source (one per simulator seed).
fn dataset(
    source: &str,
    seeds: &[u64],
    overrides: &[String],
    config: &auspex_train::DatasetConfig,
) -> Result<Dataset> {
    let specs: Vec<(String, u64)> = if source == "sim" {
        seeds.iter().map(|s| (source.to_string(), *s)).collect()
    } else {
        vec![(source.to_string(), 0)]
    };
    let mut parts = Vec::new();
    for (spec, seed) in specs {
        let pb = spinner(&format!("replaying {spec} (seed {seed})"));
        let args = SourceArgs {
            source: spec.clone(),
            sim: crate::cli::SimArgs {
                seed,
                sim_config: None,
                overrides: overrides.to_vec(),
            },
            speed: None,
        };
        let mut src = open_source(&args)?;
        let ds = auspex_train::build(src.as_mut(), config)
            .with_context(|| format!("building the dataset from {spec}"))?;
        pb.finish_with_message(format!(
            "{}: {} rows, {} incidents",
            ds.source,
            ds.len(),
            ds.incidents.len()
        ));
        parts.push(ds);
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Dataset::concat(&parts)?
    })
}

fn device(s: &str) -> Result<NnDevice> {
    s.parse::<NnDevice>()
        .map_err(|e| anyhow::anyhow!("--device {s:?}: {e}"))
}

pub fn train(args: TrainArgs) -> Result<()> {
    let device = device(&args.common.device)?;
    let mut config = HybridConfig {
        seed: args.seed,
        ..HybridConfig::default()
    };
    config.dataset.horizon_ms = args.horizon_min * 60_000;
    match args.smote_ratio {
        None => {}
        Some(0.0) => config.smote = None,
        Some(r) if r.is_finite() && r > 0.0 => {
            let sc = config.smote.get_or_insert_with(Default::default);
            sc.ratio = r;
        }
        Some(r) => bail!("--smote-ratio: {r} is not a ratio >= 0"),
    }
    // Also makes the dataset record sequences / graph snapshots when a branch reads them.
    config = config.with_branches(match &args.branches {
        Some(list) => list
            .iter()
            .map(|b| b.parse::<Branch>().context("--branches"))
            .collect::<Result<_>>()?,
        None => match args.format {
            Format::Source => Branch::DEFAULT.to_vec(),
            // The unsupervised detectors as branches too, as MODELING.md recommends for server
            // data (PCA reconstruction is the best published no-point-adjust detector on SMD).
            // On Nezha they lowered validation PR-AUC on all three kinds with positives (pod
            // failure 0.267 → 0.121, CPU 1.0 → 0.944, network 0.279 → 0.255; few positives).
            Format::Nezha => vec![Branch::Gbdt, Branch::Logistic, Branch::Mlp],
            Format::Smd | Format::Nab => {
                vec![
                    Branch::Gbdt,
                    Branch::Logistic,
                    Branch::Mlp,
                    Branch::Detector,
                    Branch::Pca,
                ]
            }
        },
    });
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!(
            "{}: exists and is not empty; choose a new directory for the bundle",
            args.out.display()
        );
    }
    let started = Instant::now();
    let ds = match args.format {
        Format::Source => dataset(
            &args.source,
            &args.seeds,
            &args.common.overrides,
            &config.dataset,
        )?,
        Format::Smd | Format::Nezha | Format::Nab => {
            let pb = spinner(&format!(
                "replaying {} with injected anomalies",
                args.source
            ));
            let dir = Path::new(&args.source);
            let ds = match args.format {
                Format::Smd => byo::smd_training(dir, &mut config)?,
                Format::Nezha => byo::nezha_training(dir, &mut config)?,
                _ => byo::nab_training(dir, &mut config)?,
            };
            pb.finish_with_message(format!(
                "{}: {} rows, {} injected anomalies",
                ds.source,
                ds.len(),
                ds.incidents.len()
            ));
            ds
        }
    };
    let pb = spinner("training");
    let model = auspex_hybrid::train(&ds, &config, device, &mut |m| pb.set_message(m.to_string()))?;
    pb.finish_with_message(format!(
        "trained in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let meta = json!({
        "data": {
            "source": ds.source,
            "format": format!("{:?}", args.format).to_lowercase(),
            "seeds": if args.source == "sim" { json!(args.seeds) } else { json!(null) },
            "rows": ds.len(),
            "incidents": ds.incidents.len(),
            "sha256": HybridModel::data_hash(&ds),
        },
        "seed": args.seed,
        "auspex_version": env!("CARGO_PKG_VERSION"),
        "training_seconds": started.elapsed().as_secs_f64(),
        "validation": model.report.kinds,
    });
    let version = model.save(&args.out, meta)?;
    eprintln!("\nbundle {} (version {version})", args.out.display());
    eprintln!(
        "{:<18} {:>9} {:>9} {:>10} {:>9} {:>9}  PR-AUC on validation",
        "kind", "train pos", "valid pos", "threshold", "precision", "recall"
    );
    for r in &model.report.kinds {
        let abl: Vec<String> = r
            .ablation
            .iter()
            .map(|a| format!("{} {:.3}", a.branch, a.pr_auc))
            .collect();
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        eprintln!(
            "{:<18} {:>9} {:>9} {:>10.3} {:>9} {:>9}  {}",
            r.kind.as_str(),
            r.train_positives,
            r.valid_positives,
            r.threshold,
            f(r.valid_precision),
            f(r.valid_recall),
            abl.join(", ")
        );
    }
    Ok(())
}

pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let device = device(&args.common.device)?;
    let model = HybridModel::load(&args.model, device)
        .with_context(|| format!("loading the model bundle {}", args.model.display()))?;
    match args.format {
        Format::Smd => return evaluate_smd(&args, &model),
        Format::Nezha => return evaluate_nezha(&args, &model),
        Format::Nab => return evaluate_nab(&args, &model),
        Format::Source => {}
    }
    let ds = dataset(
        &args.source,
        &args.seeds,
        &args.common.overrides,
        &model.config.dataset,
    )?;
    ds.spec
        .check(&model.spec)
        .context("the data's features differ from the model's")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    let n = ds.len();
    let scores = model.score_dataset(&ds)?;
    let b = model.branches.len();

    let mut report = serde_json::Map::new();
    let mut md = format!(
        "# auspex evaluation\n\nmodel `{}` ({}), data `{}` ({} rows). Thresholds come from the \
         model's validation data.\n\n",
        args.model.display(),
        model.version,
        ds.source,
        n
    );
    let mut table = AblationTable::new([
        ("PR-AUC", Some(true)),
        ("point F1", Some(true)),
        ("point precision", Some(true)),
        ("point recall", Some(true)),
        ("event recall", Some(true)),
        ("event precision", Some(true)),
    ]);
    let mut curves = Vec::new();
    for (k, kind) in AnomalyKind::ALL.into_iter().enumerate() {
        let km = &model.kinds[k];
        if km.meta.is_none() || ds.positives(kind) == 0 {
            continue;
        }
        let cfg = EvalConfig {
            threshold: km.threshold,
            early_ms: model.config.dataset.horizon_ms,
            ..EvalConfig::default()
        };
        let mut kind_json = serde_json::Map::new();
        let mut rows: Vec<(String, Vec<f64>)> = model
            .branches
            .iter()
            .enumerate()
            .map(|(j, br)| {
                let s = (0..n).map(|i| scores[k].branch[i * b + j]).collect();
                (br.name().to_string(), s)
            })
            .collect();
        rows.push(("ensemble".into(), scores[k].proba.clone()));
        // Leave-one-out ensembles fitted in training (`HybridConfig::ablate`).
        for (br, _) in &km.ablations {
            if let Some(p) = model.ensemble_without(k, *br, &scores[k], &ds.context)? {
                rows.push((format!("ensemble without {br}"), p));
            }
        }
        for (name, s) in &rows {
            let s: Vec<f64> = s
                .iter()
                .map(|v| if v.is_nan() { 0.0 } else { *v })
                .collect();
            let series = Series::from_dataset(&ds, &s, Some(kind))?;
            let rep = auspex_train::evaluate(&series, &cfg)?;
            let o = &rep.overall;
            table.push(
                format!("{kind} / {name}"),
                vec![
                    Some(o.pr_auc),
                    Some(o.pointwise.f1),
                    Some(o.pointwise.precision),
                    Some(o.pointwise.recall),
                    Some(o.event.recall),
                    Some(o.event.precision),
                ],
            )?;
            if name == "ensemble" {
                let labels: Vec<bool> = (0..n).map(|i| ds.label(i, kind)).collect();
                curves.push((
                    kind.as_str().to_string(),
                    auspex_train::pr_curve(&s, &labels),
                ));
                let incidents: Vec<_> = ds
                    .incidents
                    .iter()
                    .filter(|l| l.kind == kind)
                    .cloned()
                    .collect();
                let leads = auspex_train::lead_times(
                    &series,
                    &incidents,
                    km.threshold,
                    model.config.dataset.horizon_ms,
                );
                let secs: Vec<f64> = leads
                    .iter()
                    .filter_map(|l| l.lead_ms)
                    .map(|ms| ms as f64 / 1000.0)
                    .collect();
                kind_json.insert(
                    "lead_times".into(),
                    json!({
                        "incidents": leads.len(),
                        "detected": secs.len(),
                        "median_lead_seconds": median(&secs),
                    }),
                );
                let op = recall_at_event_precision(&series, &cfg, &s, 0.9)?;
                eprintln!(
                    "{kind}: event recall at event precision >= 0.9: {}",
                    op.as_ref()
                        .map_or("none".into(), |(r, _, _)| format!("{r:.3}"))
                );
                kind_json.insert(
                    "event_recall_at_precision_0_9".into(),
                    json!(op.map(|(recall, precision, threshold)| json!({
                        "recall": recall,
                        "precision": precision,
                        "threshold": threshold,
                    }))),
                );
                auspex_train::plot::lead_time_histogram(
                    &args.out.join(format!("lead_time_{kind}.svg")),
                    &format!("{kind}: lead time before the incident"),
                    &secs,
                    20,
                )?;
                // The score around the first incident of this kind that has a series.
                if let Some((l, s)) = incidents.iter().find_map(|l| {
                    let id = l.entity.id();
                    series
                        .iter()
                        .find(|s| s.name == id.as_str())
                        .map(|s| (l, s))
                }) {
                    let (from, to) = (l.onset_ms - 3_600_000, l.end_ms + 1_800_000);
                    let keep: Vec<usize> = (0..s.timestamps_ms.len())
                        .filter(|&i| (from..=to).contains(&s.timestamps_ms[i]))
                        .collect();
                    auspex_train::plot::score_timeline(
                        &args.out.join(format!("timeline_{kind}.svg")),
                        &format!("{kind} on {}", s.name),
                        &keep.iter().map(|&i| s.timestamps_ms[i]).collect::<Vec<_>>(),
                        &keep.iter().map(|&i| s.scores[i]).collect::<Vec<_>>(),
                        km.threshold,
                        &[(l.onset_ms, l.end_ms)],
                    )?;
                }
            }
            kind_json.insert(name.clone(), serde_json::to_value(&rep.overall)?);
        }
        report.insert(kind.as_str().into(), serde_json::Value::Object(kind_json));
    }
    md += &table.render();
    let curve_refs: Vec<(&str, &[auspex_train::PrPoint])> = curves
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    let pr = args.out.join("pr_curves.svg");
    auspex_train::plot::pr_curves(&pr, "ensemble PR curves per kind", &curve_refs)?;
    md += "\n![PR curves](pr_curves.svg)\n\nPer kind: `lead_time_KIND.svg` (lead time of each \
           detected incident) and `timeline_KIND.svg` (the ensemble's score around one incident).\n\n\
           Branch rows are scored at the ensemble's threshold: compare branches by PR-AUC.\n";
    write(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    write(&args.out.join("report.md"), &md)?;
    eprintln!("{}", table.render());
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn evaluate_smd(args: &EvaluateArgs, model: &HybridModel) -> Result<()> {
    let pb = spinner(&format!("scoring the test files of {}", args.source));
    let ev = byo::smd_evaluate(model, Path::new(&args.source))?;
    pb.finish_and_clear();
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    write(
        &args.out.join("baseline_zscore.json"),
        &ev.baseline.to_json(),
    )?;
    let mut table = AblationTable::new([
        ("point F1", Some(true)),
        ("point precision", Some(true)),
        ("point recall", Some(true)),
        ("event recall", Some(true)),
        ("event precision", Some(true)),
        ("PR-AUC", Some(true)),
        ("best F1 (upper bound)", None),
    ]);
    let mean_f1 = |r: &auspex_train::Report| {
        r.per_entity.values().map(|s| s.pointwise.f1).sum::<f64>()
            / r.per_entity.len().max(1) as f64
    };
    for (name, r) in [("auspex", &ev.report), ("z-score baseline", &ev.baseline)] {
        let o = &r.overall;
        table.push(
            name,
            vec![
                Some(o.pointwise.f1),
                Some(o.pointwise.precision),
                Some(o.pointwise.recall),
                Some(o.event.recall),
                Some(o.event.precision),
                Some(o.pr_auc),
                Some(o.best_f1_upper_bound.f1),
            ],
        )?;
        eprintln!("{name}: mean point-wise F1 over entities {:.3}", mean_f1(r));
    }
    // A branch alone has no threshold of its own: only its ranking is comparable.
    for (name, r) in &ev.branches {
        let o = &r.overall;
        table.push(
            format!("{name} alone"),
            vec![
                None,
                None,
                None,
                None,
                None,
                Some(o.pr_auc),
                Some(o.best_f1_upper_bound.f1),
            ],
        )?;
    }
    let md = format!(
        "# auspex evaluation (SMD layout)\n\nmodel `{}` ({}), data `{}`; every test row scored, \
         thresholds from the training files only.\n\n{}",
        args.model.display(),
        model.version,
        args.source,
        table.render()
    );
    write_byo_reports(args, &ev.report.to_json(), &md, &table.render())
}

fn evaluate_nezha(args: &EvaluateArgs, model: &HybridModel) -> Result<()> {
    let pb = spinner(&format!("scoring {}", args.source));
    let ev = byo::nezha_evaluate(model, Path::new(&args.source))?;
    pb.finish_and_clear();
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    let mut value = serde_json::to_value(&ev.report)?;
    let obj = value.as_object_mut().expect("a report is an object");
    obj.insert("held_out".into(), serde_json::to_value(&ev.held_out)?);
    obj.insert("fault_types".into(), serde_json::to_value(&ev.fault_types)?);
    obj.insert(
        "fault_types_held_out".into(),
        serde_json::to_value(&ev.fault_types_held_out)?,
    );
    let json = serde_json::to_string_pretty(&value)?;
    let mut table = AblationTable::new([
        ("point F1", Some(true)),
        ("point precision", Some(true)),
        ("point recall", Some(true)),
        ("event recall", Some(true)),
        ("event precision", Some(true)),
        ("false alerts / entity-day", Some(false)),
        ("PR-AUC", Some(true)),
    ]);
    for (name, r) in [("all days", &ev.report), ("held-out part", &ev.held_out)] {
        let o = &r.overall;
        // Overall days are the entities' observed days summed: this is per entity-day.
        let per_entity_day = o.false_alerts_per_day;
        table.push(
            name,
            vec![
                Some(o.pointwise.f1),
                Some(o.pointwise.precision),
                Some(o.pointwise.recall),
                Some(o.event.recall),
                Some(o.event.precision),
                per_entity_day,
                Some(o.pr_auc),
            ],
        )?;
    }
    let mut md = format!(
        "# auspex evaluation (Nezha layout)\n\nmodel `{}` ({}), data `{}`; the held-out part is \
         each day from its later {:.0} % of faults on (training never saw it).\n\n{}\n\n| fault type | faults \
         | detected | recall | held-out faults | held-out recall |\n|---|---:|---:|---:|---:|---:|\n",
        args.model.display(),
        model.version,
        args.source,
        (1.0 - byo::NEZHA_TRAIN_SHARE) * 100.0,
        table.render()
    );
    for (t, r) in &ev.fault_types {
        let h = ev.fault_types_held_out.get(t).cloned().unwrap_or_default();
        md += &format!(
            "| {t} | {} | {} | {:.2} | {} | {:.2} |\n",
            r.faults, r.detected, r.recall, h.faults, h.recall
        );
    }
    write_byo_reports(args, &json, &md, &md)
}

fn evaluate_nab(args: &EvaluateArgs, model: &HybridModel) -> Result<()> {
    let pb = spinner(&format!("scoring {}", args.source));
    let report = byo::nab_evaluate(model, Path::new(&args.source))?;
    pb.finish_and_clear();
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    let json = report.to_json();
    let mut table = AblationTable::new([
        ("windows", None),
        ("event recall", Some(true)),
        ("event precision", Some(true)),
        ("mean delay (steps)", Some(false)),
        ("false alerts / day", Some(false)),
        ("point F1", Some(true)),
        ("PR-AUC", Some(true)),
    ]);
    for (name, s) in std::iter::once(("all series", &report.overall))
        .chain(report.per_entity.iter().map(|(n, s)| (n.as_str(), s)))
    {
        table.push(
            name,
            vec![
                Some(s.event.anomalies as f64),
                Some(s.event.recall),
                Some(s.event.precision),
                s.mean_delay_steps,
                s.false_alerts_per_day,
                Some(s.pointwise.f1),
                Some(s.pr_auc),
            ],
        )?;
    }
    let md = format!(
        "# auspex evaluation (NAB layout)\n\nmodel `{}` ({}), data `{}`; each series after its \
         probationary {:.0} %.\n\n{}",
        args.model.display(),
        model.version,
        args.source,
        byo::NAB_PROBATION * 100.0,
        table.render()
    );
    write_byo_reports(args, &json, &md, &md)
}

/// The highest event recall over thresholds whose event precision reaches `min_precision`,
/// as (recall, precision, threshold); thresholds are up to 200 quantiles of the scores. It
/// reads the test labels to choose its threshold, so it summarises the ranking (like PR-AUC)
/// and is never the bundle's result, which uses the threshold from training.
fn recall_at_event_precision(
    series: &[Series],
    cfg: &EvalConfig,
    scores: &[f64],
    min_precision: f64,
) -> Result<Option<(f64, f64, f64)>> {
    let mut qs: Vec<f64> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    qs.sort_by(f64::total_cmp);
    qs.dedup();
    let step = (qs.len() / 200).max(1);
    let mut best: Option<(f64, f64, f64)> = None;
    for &t in qs.iter().step_by(step) {
        let rep = auspex_train::evaluate(
            series,
            &EvalConfig {
                threshold: t,
                ..cfg.clone()
            },
        )?;
        let e = &rep.overall.event;
        if e.alerts > 0 && e.precision >= min_precision && best.is_none_or(|b| e.recall > b.0) {
            best = Some((e.recall, e.precision, t));
        }
    }
    Ok(best)
}

/// Writes a bring-your-own evaluation: `report.json` (and the `--json` copy) and `report.md`
/// under `--out`, then prints `summary`.
fn write_byo_reports(args: &EvaluateArgs, json: &str, md: &str, summary: &str) -> Result<()> {
    write(&args.out.join("report.json"), json)?;
    if let Some(path) = &args.json {
        write(path, json)?;
    }
    write(&args.out.join("report.md"), md)?;
    eprintln!("{summary}");
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    auspex_score::eval::median(&mut v)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("{}", path.display()))
}
