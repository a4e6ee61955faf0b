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
//!
//! With `--processes N --store file:PATH` (or `--store redis://127.0.0.1:PORT`, built with
//! `--features sim,redis`), N OS processes (this program, re-run) share one quota through the
//! store, each with its own tracker calling `try_record`, and it prints per service the calls
//! issued and admitted by all processes, the store's total (recorded) and lost (admitted -
//! recorded):
//!
//! ```text
//! cargo run -p quota-core --release --features sim --example simulate -- \
//!     --processes 4 --store file:/tmp/quota.json --admission leased:1000 --limit 100000 --calls 400000
//! ```

use quota_core::sim::{threads, CallSize, Mode, Workload};
use quota_core::{Admission, QuotaError, QuotaTracker, Store, TrackerConfig};
use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const USAGE: &str = "usage: simulate [--workers N] [--calls N] [--mode locked|racy] [--seed N] \
                     [--max-size N]\n\
                     \x20      simulate --processes N --store file:PATH|redis://HOST:PORT \
                     [--admission local|exact|leased:BLOCK] [--limit N] [--calls N] [--seed N]\n\
                     defaults: --workers 8 --calls 1000000 --mode locked --seed 7 --max-size 1 \
                     --admission local";

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
    processes: usize,
    store: Option<String>,
    admission: Admission,
    limit: Option<u64>,
    /// Set in the processes the parent starts: which one this is.
    child: Option<u64>,
}

/// Parses `args`, runs the simulation and writes the report to `out`.
pub fn cli(args: &[String], out: &mut impl Write) -> Result<(), String> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        writeln!(out, "{USAGE}").map_err(|e| e.to_string())?;
        return Ok(());
    }
    let options = parse(args)?;
    if options.store.is_some() {
        return shared(args, &options, out);
    }
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
        processes: 1,
        store: None,
        admission: Admission::Local,
        limit: None,
        child: None,
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
            "--processes" => options.processes = number("--processes")?.max(1) as usize,
            "--store" => options.store = Some(value.clone()),
            "--limit" => options.limit = Some(number("--limit")?),
            "--child" => options.child = Some(number("--child")?),
            "--admission" => {
                options.admission = match value.as_str() {
                    "local" => Admission::Local,
                    "exact" => Admission::Exact,
                    other => match other.strip_prefix("leased:").map(str::parse) {
                        Some(Ok(block)) => Admission::Leased { block },
                        _ => {
                            return Err(format!(
                                "--admission must be local, exact or leased:BLOCK (got {value:?})"
                            ))
                        }
                    },
                }
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
    )
}

/// The store named by `--store`.
fn open_store(spec: &str) -> Result<Box<dyn Store>, String> {
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Box::new(quota_core::FileStore::new(path)));
    }
    if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        #[cfg(feature = "redis")]
        return quota_core::RedisStore::new(spec)
            .map(|store| Box::new(store) as Box<dyn Store>)
            .map_err(|error| error.to_string());
        #[cfg(not(feature = "redis"))]
        return Err("built without Redis: add --features sim,redis".into());
    }
    Err(format!(
        "--store must be file:PATH or redis://HOST:PORT (got {spec:?})"
    ))
}

/// The default services, with `--limit` for every limit and `--admission` for every service.
fn shared_config(options: &Options) -> TrackerConfig {
    let mut config = TrackerConfig::defaults();
    for service in &mut config.services {
        if let Some(limit) = options.limit {
            service.limit = limit;
        }
        service.admission = options.admission;
    }
    config
}

/// `--processes N --store ...`: the parent starts N children and sums what they report.
fn shared(args: &[String], options: &Options, out: &mut impl Write) -> Result<(), String> {
    let config = shared_config(options);
    let spec = options.store.as_deref().unwrap_or_default();
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    if let Some(child) = options.child {
        return shared_child(options, &config, spec, child, out);
    }
    let started = Instant::now();
    let children: Vec<_> = (0..options.processes)
        .map(|child| {
            Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
                .args(args)
                .args(["--child", &child.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("could not start a process: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut issued = vec![0u64; names.len()];
    let mut admitted = vec![0u64; names.len()];
    for child in children {
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!("a process failed ({})", output.status));
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [name, i, a] = fields[..] {
                if let Some(k) = names.iter().position(|n| *n == name) {
                    issued[k] += i.parse::<u64>().unwrap_or(0);
                    admitted[k] += a.parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // What the store holds now, read by a tracker of its own.
    let reader = QuotaTracker::builder(shared_config(&Options {
        admission: Admission::Local,
        store: None,
        child: None,
        ..*options
    }))
    .boxed_store(open_store(spec)?)
    .build()
    .map_err(|e| e.to_string())?;
    writeln!(
        out,
        "{} processes, store {spec}, admission {:?}: {elapsed:.3} s, {:.0} calls/s",
        options.processes,
        options.admission,
        issued.iter().sum::<u64>() as f64 / elapsed
    )
    .map_err(|e| e.to_string())?;
    writeln!(
        out,
        "{:<10} {:>12} {:>12} {:>12} {:>12}",
        "service", "issued", "admitted", "recorded", "lost"
    )
    .map_err(|e| e.to_string())?;
    // A file's every window (a minute service rolls over during a long run); a Redis store's
    // current window.
    let file_totals = spec
        .strip_prefix("file:")
        .and_then(|path| quota_core::FileStore::new(path).state().ok());
    for (k, name) in names.iter().enumerate() {
        let recorded = match &file_totals {
            Some(state) => state
                .windows()
                .filter(|w| w.service == *name)
                .map(|w| w.total)
                .sum(),
            None => reader.usage(name).map_err(|e| e.to_string())?.used,
        };
        writeln!(
            out,
            "{:<10} {:>12} {:>12} {:>12} {:>12}",
            name,
            issued[k],
            admitted[k],
            recorded,
            admitted[k] as i128 - recorded as i128
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One child: its share of the calls through `try_record`; prints `name issued admitted`.
fn shared_child(
    options: &Options,
    config: &TrackerConfig,
    spec: &str,
    child: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let tracker = QuotaTracker::builder(config.clone())
        .boxed_store(open_store(spec)?)
        .build()
        .map_err(|e| e.to_string())?;
    let mut workload = Workload::even(config);
    workload.seed = options.seed.wrapping_add(child);
    let stream = workload
        .stream(config, 0)
        .map_err(|error| error.to_string())?;
    let share = options.calls / options.processes as u64;
    let mut issued = vec![0u64; config.services.len()];
    let mut admitted = vec![0u64; config.services.len()];
    for op in stream.take(share as usize) {
        issued[op.service] += 1;
        match tracker.try_record(&config.services[op.service].name, 1) {
            Ok(_) => admitted[op.service] += 1,
            Err(QuotaError::Denied { .. }) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    tracker.flush().map_err(|error| error.to_string())?;
    for (k, service) in config.services.iter().enumerate() {
        writeln!(out, "{} {} {}", service.name, issued[k], admitted[k])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
