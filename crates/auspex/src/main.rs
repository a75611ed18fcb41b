//! `auspex`: predicts Kubernetes incidents before they happen.
//!
//! The binary is the only place where stages are wired together (see `auspex-serve`); every
//! subcommand is a thin layer over the library crates.

mod byo;
mod cli;
mod collect;
mod datasets;
mod forecast_eval;
mod learn;
mod serve;
mod summary;

use anyhow::Result;
use clap::Parser;

fn main() -> std::process::ExitCode {
    auspex_serve::keep_scratch_memory();
    let cli = cli::Cli::parse();
    init_tracing(cli.log.as_deref());
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Simulate(args) => cli::simulate(args),
        cli::Command::Run(args) => cli::run(args),
        cli::Command::Train(args) => learn::train(args),
        cli::Command::Evaluate(args) => learn::evaluate(args),
        cli::Command::Serve(args) => serve::serve(args),
        cli::Command::Collect(args) => collect::collect(args),
        cli::Command::EvaluateForecast(args) => forecast_eval::evaluate_forecast(args),
    }
}

fn init_tracing(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter.map(EnvFilter::new).unwrap_or_else(|| {
        EnvFilter::try_from_env("AUSPEX_LOG").unwrap_or_else(|_| EnvFilter::new("warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
