//! Runs the workload simulator on real OS threads against one shared store and prints, per
//! service, the units issued, recorded and lost, the transitions and the calls per second.
//!
//! ```text
//! cargo run -p quota-core --release --example simulate -- --workers 8 --calls 1000000 --mode locked --seed 7
//! cargo run -p quota-core --release --example simulate -- --workers 8 --calls 1000000 --mode racy --seed 7
//! ```
//!
//! Locked mode always prints lost 0; racy mode (the lost-update bug, kept as a demonstration)
//! usually loses units as soon as two threads interleave.

use quota_core::sim::{threads, CallSize, Mode, Workload};
use quota_core::TrackerConfig;
use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "usage: simulate [--workers N] [--calls N] [--mode locked|racy] [--seed N] \
                     [--max-size N]\n\
                     defaults: --workers 8 --calls 1000000 --mode locked --seed 7 --max-size 1";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli(&args, &mut std::io::stdout().lock()) {
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
}

/// Parses `args`, runs the simulation and writes the report to `out`.
pub fn cli(args: &[String], out: &mut impl Write) -> Result<(), String> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        writeln!(out, "{USAGE}").map_err(|e| e.to_string())?;
        return Ok(());
    }
    let options = parse(args)?;
    let config = TrackerConfig::defaults();
    let mut workload = Workload::even(&config);
    workload.workers = options.workers;
    workload.seed = options.seed;
    workload.size = CallSize {
        min: 1,
        max: options.max_size,
    };
    let report = threads::run(&config, &workload, options.mode, options.calls)
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
    )
}
