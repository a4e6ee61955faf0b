//! Runs the workload simulator on real OS threads against one shared store and prints, per
//! service, the units issued, recorded and lost, the transitions and the calls per second.
//!
//! ```text
//! cargo run -p quota-core --release --features sim --example simulate -- --workers 8 --calls 1000000 --mode locked --seed 7
//! cargo run -p quota-core --release --features sim --example simulate -- --workers 8 --calls 1000000 --mode racy --seed 7
//! ```
//!
//! Locked mode always prints lost 0; racy mode (the lost-update bug, kept as a demonstration)
//! usually loses units as soon as two threads interleave.
//!
//! With `--processes N --store file:PATH` (or `--store redis://127.0.0.1:PORT`, built with
//! `--features sim,redis`), N OS processes (this program, re-run) share one quota through the
//! store, each with its own tracker calling `try_record`. It prints per service what this run
//! did: the calls issued, admitted and denied by all processes, the store's totals before and
//! after the run in every window the run touched, what the run added (after - before) and
//! lost (admitted - added, 0 unless calls were lost), then where normal admission stops and
//! why. A second run on the same store starts from what the first left: it adds only what it
//! admits itself.
//!
//! ```text
//! cargo run -p quota-core --release --features sim --example simulate -- \
//!     --processes 4 --store file:/tmp/quota.json --admission leased:100 --limit 10000 --calls 60000
//! cargo run -p quota-core --release --features sim,redis --example simulate -- \
//!     --processes 4 --store redis://127.0.0.1:6379 --admission leased:100 --limit 10000 --calls 60000
//! ```
//!
//! With `--config quota.toml` (or a `.json` file, see `quota_core::QuotaFile`), the file's
//! services (with their admission), store and sync policy replace the defaults: with a `store`
//! the run is shared through it, without one it runs on threads. `--store`, `--admission` and
//! `--limit` still override the file (`--admission` and `--limit` for every service).

use quota_core::sim::{threads, CallSize, Mode, Workload};
use quota_core::{
    Admission, Clock, DenyReason, InstanceId, QuotaError, QuotaFile, QuotaTracker, ServiceConfig,
    Store, StoreUrl, SyncBatch, SyncPolicy, SystemClock, TrackerConfig, WindowKey, WindowSpec,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

#[cfg(test)]
#[path = "config_tests.rs"]
mod config_tests;
/// The `--help` text (also after an argument error), each line within 100 columns.
#[path = "holds.rs"]
mod holds;
#[path = "shared.rs"]
mod shared;

use shared::shared;

const USAGE: &str = "\
usage: simulate [--config FILE] [--workers N] [--calls N] [--mode locked|racy] [--seed N]
                [--max-size N] [--limit N] [--hold MAX]
       simulate [--config FILE] --processes N --store file:PATH|redis://HOST:PORT
                [--admission local|exact|leased:BLOCK] [--limit N] [--calls N] [--seed N]
                [--hold MAX] [--sync inline|background]
defaults: --workers 8 --calls 1000000 --mode locked --seed 7 --max-size 1; the services tiingo,
finnhub and sendgrid with admission local, or those of --config FILE (.toml or .json) with its
store. --hold MAX: every call is a hold of 1 to MAX units, settled at 0 to twice its estimate
(an LLM call's tokens). --sync background: each process syncs on a thread of its tracker's
(sync_in_background), which also leases Leased blocks ahead. A redis:// store needs a build
with Redis: cargo run -p quota-core --release --features sim,redis --example simulate -- ...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli(&args, &mut std::io::stdout().lock(), &relaunch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("simulate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The options of one run.
#[derive(Debug)]
struct Options {
    workers: usize,
    calls: u64,
    mode: Mode,
    seed: u64,
    max_size: u64,
    processes: usize,
    store: Option<String>,
    /// For every service, replacing the config's.
    admission: Option<Admission>,
    limit: Option<u64>,
    /// A config file whose services, store and sync policy replace the defaults.
    config: Option<PathBuf>,
    /// Set in the processes the parent starts: which one this is.
    child: Option<u64>,
    /// `--hold MAX`: every call a hold of 1 to MAX units, settled at what it cost.
    hold: Option<u64>,
    /// `--sync background`: each process's tracker syncs on its own thread.
    background: bool,
}

/// What a run counts against: the services (the defaults or the config file's, with `--limit`
/// and `--admission` applied), the store (`--store` or the file's) and the sync policy.
#[derive(Debug)]
struct Setup {
    config: TrackerConfig,
    store: Option<StoreUrl>,
    sync: SyncPolicy,
}

fn setup(options: &Options) -> Result<Setup, String> {
    let file = match &options.config {
        Some(path) => QuotaFile::load(path).map_err(|error| error.to_string())?,
        None => QuotaFile::new(TrackerConfig::defaults()),
    };
    let store = match &options.store {
        Some(spec) => Some(
            spec.parse::<StoreUrl>()
                .map_err(|error| format!("--store: {error}"))?,
        ),
        None => file.store,
    };
    let mut config = file.tracker;
    for service in &mut config.services {
        if let Some(limit) = options.limit {
            service.limit = limit;
        }
        if let Some(admission) = options.admission {
            service.admission = admission;
        }
    }
    Ok(Setup {
        config,
        store,
        sync: file.sync,
    })
}

/// How a shared run starts one of its processes with `args`: [`relaunch`] in the example;
/// the test that includes this file starts itself instead.
pub type Launch = dyn Fn(&[String]) -> Result<Command, String>;

/// This program again, with `args`.
pub fn relaunch(args: &[String]) -> Result<Command, String> {
    let program =
        std::env::current_exe().map_err(|e| format!("could not find this program: {e}"))?;
    let mut command = Command::new(program);
    command.args(args);
    Ok(command)
}

/// Parses `args`, runs the simulation and writes the report to `out`; a shared run starts its
/// processes through `launch`.
pub fn cli(args: &[String], out: &mut impl Write, launch: &Launch) -> Result<(), String> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        writeln!(out, "{USAGE}").map_err(|e| e.to_string())?;
        return Ok(());
    }
    let options = parse(args)?;
    let setup = setup(&options)?;
    if let Some(store) = &setup.store {
        return shared(args, &options, &setup, store, out, launch);
    }
    if options.processes > 1 {
        return Err(format!(
            "--processes {} needs a store for the processes to share: --store file:PATH or \
             --store redis://HOST:PORT (or a config file with a store)",
            options.processes
        ));
    }
    let config = &setup.config;
    if let Some(max) = options.hold {
        if options.mode == Mode::Racy {
            return Err("--hold counts through the tracker: it has no racy mode".into());
        }
        return holds::on_threads(&options, config, max, out);
    }
    let mut workload = Workload::even(config);
    workload.workers = options.workers;
    workload.seed = options.seed;
    workload.size = CallSize {
        min: 1,
        max: options.max_size,
    };
    let report = threads::run(config, &workload, options.mode, options.calls)
        .map_err(|error| error.to_string())?;
    write_report(out, &options, &report).map_err(|error| error.to_string())
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        workers: 8,
        calls: 1_000_000,
        mode: Mode::Locked,
        seed: 7,
        max_size: 1,
        processes: 1,
        store: None,
        admission: None,
        limit: None,
        config: None,
        child: None,
        hold: None,
        background: false,
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{what} must be a whole number (got {value:?})"))
        };
        match flag.as_str() {
            "--workers" => options.workers = number("--workers")? as usize,
            "--calls" => options.calls = number("--calls")?,
            "--seed" => options.seed = number("--seed")?,
            "--max-size" => options.max_size = number("--max-size")?,
            "--mode" => options.mode = value.parse().map_err(|e| format!("{e}"))?,
            "--processes" => {
                options.processes = match number("--processes")? {
                    n @ 1..=64 => n as usize,
                    n => return Err(format!("--processes must be in 1..=64 (got {n})")),
                }
            }
            "--store" => options.store = Some(value.clone()),
            "--limit" => options.limit = Some(number("--limit")?),
            "--child" => options.child = Some(number("--child")?),
            "--hold" => {
                options.hold = match number("--hold")? {
                    0 => return Err("--hold must be at least 1 (units per estimate)".into()),
                    max => Some(max),
                }
            }
            "--config" => options.config = Some(PathBuf::from(value)),
            "--sync" => {
                options.background = match value.as_str() {
                    "inline" => false,
                    "background" => true,
                    other => return Err(format!("--sync must be inline or background (got {other:?})")),
                }
            }
            "--admission" => {
                options.admission = Some(match value.as_str() {
                    "local" => Admission::Local,
                    "exact" => Admission::Exact,
                    other => match other.strip_prefix("leased:").map(str::parse) {
                        Some(Ok(block @ 1..)) => Admission::Leased { block },
                        _ => {
                            return Err(format!(
                                "--admission must be local, exact or leased:BLOCK with a BLOCK of at least \
                                 1 (got {value:?})"
                            ))
                        }
                    },
                })
            }
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn write_report(
    out: &mut impl Write,
    options: &Options,
    report: &threads::Report,
) -> std::io::Result<()> {
    writeln!(
        out,
        "mode {}, {} workers, {} calls, seed {}: {:.3} s, {:.0} calls/s",
        report.mode,
        report.workers,
        options.calls,
        options.seed,
        report.elapsed.as_secs_f64(),
        report.total_calls_per_second()
    )?;
    writeln!(
        out,
        "{:<10} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "service", "issued", "recorded", "lost", "transitions", "calls/s"
    )?;
    for service in &report.services {
        writeln!(
            out,
            "{:<10} {:>12} {:>12} {:>12} {:>12} {:>12.0}",
            service.counts.service,
            service.counts.issued,
            service.counts.recorded,
            service.counts.lost(),
            service.transitions,
            report.calls_per_second(service)
        )?;
    }
    let sum = |f: fn(&threads::ServiceReport) -> u64| report.services.iter().map(f).sum::<u64>();
    writeln!(
        out,
        "{:<10} {:>12} {:>12} {:>12} {:>12} {:>12.0}",
        "total",
        sum(|s| s.counts.issued),
        sum(|s| s.counts.recorded),
        sum(|s| s.counts.lost()),
        sum(|s| s.transitions),
        report.total_calls_per_second()
    )?;
    writeln!(
        out,
        "every call is counted (record_call, past the limit too): this mode shows lost updates, \
         not admission; --processes N with a store runs admission"
    )
}

/// The admission of every service, or `per service` when they differ.
fn admissions(config: &TrackerConfig) -> String {
    match config.services.split_first() {
        Some((first, rest)) if rest.iter().all(|s| s.admission == first.admission) => {
            format!("{:?}", first.admission)
        }
        _ => "per service".into(),
    }
}

/// The reasons a child counts its denials by, in the order of its report line.
const REASONS: [DenyReason; 6] = DenyReason::ALL;

/// What the processes of one run did with one service, summed.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    issued: u64,
    admitted: u64,
    /// Denials by [`REASONS`].
    denied: [u64; REASONS.len()],
}

impl Done {
    fn denied(&self) -> u64 {
        self.denied.iter().sum()
    }
}
