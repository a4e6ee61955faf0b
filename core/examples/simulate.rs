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
//!
//! With `--config quota.toml` (or a `.json` file, see `quota_core::QuotaFile`), the file's
//! services (with their admission), store and sync policy replace the defaults: with a `store`
//! the run is shared through it, without one it runs on threads. `--store`, `--admission` and
//! `--limit` still override the file (`--admission` and `--limit` for every service).

use quota_core::sim::{threads, CallSize, Mode, Workload};
use quota_core::{
    Admission, QuotaError, QuotaFile, QuotaTracker, StoreUrl, SyncPolicy, TrackerConfig,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const USAGE: &str = "usage: simulate [--config FILE] [--workers N] [--calls N] \
                     [--mode locked|racy] [--seed N] [--max-size N] [--limit N]\n\
                     \x20      simulate [--config FILE] --processes N \
                     --store file:PATH|redis://HOST:PORT [--admission local|exact|leased:BLOCK] \
                     [--limit N] [--calls N] [--seed N]\n\
                     defaults: --workers 8 --calls 1000000 --mode locked --seed 7 --max-size 1; \
                     the services tiingo, finnhub and sendgrid with admission local, or those of \
                     --config FILE (.toml or .json) with its store";

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
    /// For every service, replacing the config's.
    admission: Option<Admission>,
    limit: Option<u64>,
    /// A config file whose services, store and sync policy replace the defaults.
    config: Option<PathBuf>,
    /// Set in the processes the parent starts: which one this is.
    child: Option<u64>,
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

/// Parses `args`, runs the simulation and writes the report to `out`.
pub fn cli(args: &[String], out: &mut impl Write) -> Result<(), String> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        writeln!(out, "{USAGE}").map_err(|e| e.to_string())?;
        return Ok(());
    }
    let options = parse(args)?;
    let setup = setup(&options)?;
    if let Some(store) = &setup.store {
        return shared(args, &options, &setup, store, out);
    }
    let config = &setup.config;
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
            "--config" => options.config = Some(PathBuf::from(value)),
            "--admission" => {
                options.admission = Some(match value.as_str() {
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

/// `--processes N` with a store: the parent starts N children and sums what they report.
fn shared(
    args: &[String],
    options: &Options,
    setup: &Setup,
    store: &StoreUrl,
    out: &mut impl Write,
) -> Result<(), String> {
    if *store == StoreUrl::Memory {
        return Err(
            "store memory: keeps counts inside one process: the processes need file:PATH or \
             redis://HOST:PORT"
                .into(),
        );
    }
    let config = &setup.config;
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    if let Some(child) = options.child {
        return shared_child(options, setup, store, child, out);
    }
    // Opened before any process starts: a store this build cannot open fails here.
    let reader_store = store.open().map_err(|error| error.to_string())?;
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
    let mut local = config.clone();
    for service in &mut local.services {
        service.admission = Admission::Local;
    }
    let reader = QuotaTracker::builder(local)
        .boxed_store(reader_store)
        .build()
        .map_err(|e| e.to_string())?;
    writeln!(
        out,
        "{} processes, store {store}, admission {}: {elapsed:.3} s, {:.0} calls/s",
        options.processes,
        admissions(config),
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
    let file_totals = match store {
        StoreUrl::File(path) => quota_core::FileStore::new(path).state().ok(),
        _ => None,
    };
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
    setup: &Setup,
    store: &StoreUrl,
    child: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let config = &setup.config;
    let tracker = QuotaTracker::builder(config.clone())
        .boxed_store(store.open().map_err(|error| error.to_string())?)
        .sync_policy(setup.sync.clone())
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

/// `--config`: run inside `core/tests/simulate.rs`, which includes this file.
#[cfg(test)]
mod config_tests {
    use super::*;

    fn run(args: &[&str]) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let mut out = Vec::new();
        cli(&args, &mut out)?;
        Ok(String::from_utf8(out).expect("the report is UTF-8"))
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    #[test]
    fn the_example_config_runs_its_services_on_threads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../quota.toml");
        let report = run(&["--config", path, "--workers", "2", "--calls", "3000"]).unwrap();
        let names: Vec<&str> = report
            .lines()
            .skip(2)
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert_eq!(
            names,
            ["tiingo", "finnhub", "sendgrid", "total"],
            "{report}"
        );
    }

    #[test]
    fn a_config_replaces_the_services_and_the_flags_still_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "q.json",
            r#"{"services": [{"name": "search", "limit": 100, "period": "minute"},
                             {"name": "email", "limit": 1000, "period": "day"}]}"#,
        );
        let report = run(&["--config", &path, "--workers", "2", "--calls", "2000"]).unwrap();
        assert!(
            report.contains("\nsearch ") && report.contains("\nemail "),
            "{report}"
        );
        assert!(!report.contains("tiingo"), "{report}");

        let options = parse(&["--config".into(), path, "--limit".into(), "7".into()]).unwrap();
        let setup = setup(&options).unwrap();
        assert!(setup.config.services.iter().all(|s| s.limit == 7));
        assert_eq!(setup.store, None);
    }

    #[test]
    fn the_files_store_and_admission_share_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let counts = dir.path().join("counts.json");
        let path = write(
            &dir,
            "q.toml",
            &format!(
                "store = {:?}\n[sync]\ninterval_ms = 10\n\n\
                 [[services]]\nname = \"llm\"\nlimit = 100\nperiod = \"day\"\n\
                 admission = {{ leased = 8 }}\n",
                format!("file:{}", counts.display())
            ),
        );
        let args: Vec<String> = ["--config", &path, "--calls", "400", "--processes", "2"]
            .map(String::from)
            .to_vec();
        let options = parse(&args).unwrap();
        let setup = setup(&options).unwrap();
        assert_eq!(setup.store, Some(StoreUrl::File(counts.clone())));
        assert_eq!(setup.sync.interval_ms, 10);
        assert_eq!(
            setup.config.services[0].admission,
            Admission::Leased { block: 8 }
        );
        // Two children, one after the other, in this process (a child is what each process
        // of the shared run does).
        let store = setup.store.clone().unwrap();
        let mut admitted = 0;
        for child in 0..2 {
            let mut out = Vec::new();
            shared_child(&options, &setup, &store, child, &mut out).unwrap();
            let out = String::from_utf8(out).unwrap();
            let fields: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(fields[..2], ["llm", "200"], "{out}");
            admitted += fields[2].parse::<u64>().unwrap();
        }
        // Leases stop at the Critical threshold (80 of 100): never over it, nothing lost.
        assert!(admitted > 0 && admitted <= 80, "{admitted}");
        let state = quota_core::FileStore::new(&counts).state().unwrap();
        let recorded: u64 = state.windows().map(|w| w.total).sum();
        assert_eq!(recorded, admitted);
    }

    #[test]
    fn bad_configs_and_stores_are_reported_without_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let error = run(&["--config", "/no/such/quota.toml"]).unwrap_err();
        assert!(
            error.starts_with("could not read /no/such/quota.toml"),
            "{error}"
        );
        let bad = write(
            &dir,
            "bad.toml",
            "[[services]]\nname = \"x\"\nlimit = 0\nperiod = \"day\"\n",
        );
        let error = run(&["--config", &bad]).unwrap_err();
        assert!(
            error.contains("at line 3") && error.contains("limit"),
            "{error}"
        );
        let error = run(&["--store", "memory:"]).unwrap_err();
        assert!(error.contains("one process"), "{error}");
        // Redis: a URL its client refuses (with the feature), or no Redis (without).
        let error = run(&["--store", "redis://app:hunter2@h:port"]).unwrap_err();
        assert!(error.contains("redis://app:<redacted>@h:port"), "{error}");
        let error = run(&["--store", "redis://app:hunter2@"]).unwrap_err();
        assert!(error.starts_with("--store: invalid store URL"), "{error}");
        let secret = write(
            &dir,
            "secret.toml",
            "store = \"redis://app:hunter2@h:port\"\n[[services]]\nname = \"x\"\nlimit = 1\nperiod = \"hunter2\"\n",
        );
        let error = run(&["--config", &secret]).unwrap_err();
        assert!(error.contains("line 5"), "{error}");
        for error in [
            error,
            run(&["--store", "redis://app:hunter2@h:port"]).unwrap_err(),
        ] {
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
