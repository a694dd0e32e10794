//! `hualu-loadtest`: runs a load scenario against hualu and reports every call's quality.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hualu_loadtest::scenario::Scenario;
use hualu_loadtest::{plan, report, setup};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hualu-loadtest",
    version,
    about = "Places simulated calls through hualu and scores each one"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario; exits 1 when a threshold fails, 2 when the run cannot start.
    Run {
        /// The scenario (configs/loadtest/*.toml).
        scenario: PathBuf,
        /// Overrides a scenario key: `--set arrival.rate_per_s=5 --set servers.signaling=ws://10.0.0.2:7880/ws`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Where the reports go (default: target/loadtest/<scenario name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Media shard threads, and runtime threads for call control (default: one per core this process may use).
        #[arg(long)]
        threads: Option<usize>,
        /// A server process whose CPU and memory are sampled (besides `servers.pids`).
        #[arg(long = "server-pid")]
        server_pids: Vec<u32>,
        /// No progress display.
        #[arg(long)]
        quiet: bool,
    },
    /// Prints the run plan of a scenario as JSON (the same seed gives the same plan).
    Plan {
        /// The scenario.
        scenario: PathBuf,
        /// Overrides, as for `run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hualu-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan { scenario, sets } => {
            let s = Scenario::load(&scenario, &sets)?;
            println!("{}", serde_json::to_string_pretty(&plan::plan(&s))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            scenario,
            sets,
            out,
            threads,
            server_pids,
            quiet,
        } => {
            let s = Scenario::load(&scenario, &sets)?;
            let out = out.unwrap_or_else(|| PathBuf::from("target/loadtest").join(&s.name));
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let mut pids = s.servers.pids.clone();
            pids.extend(server_pids);
            let ctx = setup::context(s, threads)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let outcome = runtime.block_on(hualu_loadtest::run::run(ctx, out, pids, quiet))?;
            report::print_summary(&outcome.summary, &mut std::io::stdout())?;
            println!("reports: {}", outcome.out.display());
            let failed = outcome.summary.failed_thresholds();
            for f in &failed {
                eprintln!("threshold failed: {f}");
            }
            Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
