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
    Admission, Clock, DenyReason, InstanceId, Period, QuotaError, QuotaFile, QuotaTracker,
    ServiceConfig, Store, StoreUrl, SyncBatch, SyncPolicy, SystemClock, TrackerConfig, WindowKey,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// The `--help` text (also after an argument error), each line within 100 columns.
const USAGE: &str = "\
usage: simulate [--config FILE] [--workers N] [--calls N] [--mode locked|racy] [--seed N]
                [--max-size N] [--limit N]
       simulate [--config FILE] --processes N --store file:PATH|redis://HOST:PORT
                [--admission local|exact|leased:BLOCK] [--limit N] [--calls N] [--seed N]
defaults: --workers 8 --calls 1000000 --mode locked --seed 7 --max-size 1; the services tiingo,
finnhub and sendgrid with admission local, or those of --config FILE (.toml or .json) with its
store. A redis:// store needs a build with Redis: cargo run -p quota-core --release
--features sim,redis --example simulate -- ...";

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
            "--processes" => {
                options.processes = match number("--processes")? {
                    n @ 1..=64 => n as usize,
                    n => return Err(format!("--processes must be in 1..=64 (got {n})")),
                }
            }
            "--store" => options.store = Some(value.clone()),
            "--limit" => options.limit = Some(number("--limit")?),
            "--child" => options.child = Some(number("--child")?),
            "--config" => options.config = Some(PathBuf::from(value)),
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
const REASONS: [DenyReason; 5] = DenyReason::ALL;

/// What the processes of one run did with one service, summed.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    issued: u64,
    admitted: u64,
    /// Denials by [`REASONS`].
    denied: [u64; 5],
}

impl Done {
    fn denied(&self) -> u64 {
        self.denied.iter().sum()
    }
}

/// How far apart two clocks on this machine may read (the trackers' and this one): windows
/// this close to the run are read too.
const CLOCK_SLACK_MS: u64 = 2_000;

/// Every window of `period` that holds an instant of `from_ms..=to_ms`.
fn windows_between(service: &str, period: Period, from_ms: u64, to_ms: u64) -> Vec<WindowKey> {
    let mut keys = Vec::new();
    let mut window = period.window_at(from_ms);
    loop {
        keys.push(WindowKey {
            service: service.to_owned(),
            period,
            start_ms: window.start_ms,
            end_ms: window.reset_at_ms,
        });
        if window.reset_at_ms > to_ms || window.reset_at_ms == u64::MAX {
            return keys;
        }
        window = period.window_at(window.reset_at_ms);
    }
}

/// The stored totals of `windows`, read without adding anything.
fn read_totals(
    store: &dyn Store,
    url: &StoreUrl,
    windows: &[WindowKey],
) -> Result<Vec<u64>, String> {
    let batch = SyncBatch {
        done_below: 0,
        instance: InstanceId::random(),
        seq: 0,
        at_ms: SystemClock.now_ms(),
        deltas: Vec::new(),
        read: windows.to_vec(),
        raises: Vec::new(),
    };
    store
        .sync(&batch)
        .map_err(|error| format!("could not read the store {url}: {error}"))
}

/// `--processes N` with a store: the parent starts N children (each through `launch`) and
/// reports what they did and what the store gained in the windows the run touched (its
/// totals before and after, so earlier runs on the same store do not count).
fn shared(
    args: &[String],
    options: &Options,
    setup: &Setup,
    store: &StoreUrl,
    out: &mut impl Write,
    launch: &Launch,
) -> Result<(), String> {
    if let Some(child) = options.child {
        return shared_child(options, setup, store, child, out);
    }
    match store {
        StoreUrl::Memory => {
            return Err(
                "store memory: keeps counts inside one process: the processes need file:PATH or \
                 redis://HOST:PORT"
                    .into(),
            )
        }
        StoreUrl::Redis(_) if !cfg!(feature = "redis") => {
            return Err(format!(
                "store {store}: this simulate was built without Redis: build it with \
                 `--features sim,redis` (cargo run -p quota-core --release --features sim,redis \
                 --example simulate -- ...)"
            ))
        }
        _ => {}
    }
    if options.mode == Mode::Racy {
        return Err(
            "--mode racy runs on threads only: the processes of a shared run count \
                    through the store"
                .into(),
        );
    }
    let config = &setup.config;
    config.validate().map_err(|error| error.to_string())?;
    // Opened and read before any process starts: a store this build cannot open, or one that
    // is down, fails here.
    let reader = store.open().map_err(|error| error.to_string())?;
    let started_ms = SystemClock.now_ms();
    let near_start = |service: &ServiceConfig| {
        windows_between(
            &service.name,
            service.period,
            started_ms.saturating_sub(CLOCK_SLACK_MS),
            started_ms + CLOCK_SLACK_MS,
        )
    };
    let first: Vec<WindowKey> = config.services.iter().flat_map(near_start).collect();
    let before_totals = read_totals(&*reader, store, &first)?;
    let started = Instant::now();
    let children: Vec<_> = (0..options.processes)
        .map(|child| {
            let mut child_args = args.to_vec();
            child_args.extend(["--child".to_owned(), child.to_string()]);
            launch(&child_args)?
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("could not start a process: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut done = vec![Done::default(); config.services.len()];
    let mut failed = Vec::new();
    for (child, process) in children.into_iter().enumerate() {
        let output = process.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            failed.push(format!("process {child} failed ({})", output.status));
            continue;
        }
        let mut seen = vec![false; config.services.len()];
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some(rest) = line.strip_prefix("service ") else {
                continue;
            };
            let numbers: Vec<u64> = rest.split(' ').filter_map(|f| f.parse().ok()).collect();
            match numbers[..] {
                [k, issued, admitted, a, b, c, d, e] if (k as usize) < done.len() => {
                    let k = k as usize;
                    let total = &mut done[k];
                    total.issued += issued;
                    total.admitted += admitted;
                    for (sum, n) in total.denied.iter_mut().zip([a, b, c, d, e]) {
                        *sum += n;
                    }
                    seen[k] = true;
                }
                _ => return Err(format!("process {child} reported {line:?}")),
            }
        }
        if seen.contains(&false) {
            return Err(format!("process {child} did not report every service"));
        }
    }
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ended_ms = SystemClock.now_ms().max(started_ms);
    // Every window from the first read to now: those that began after the first read held
    // nothing before this run.
    let windows: Vec<WindowKey> = config
        .services
        .iter()
        .flat_map(|service| {
            windows_between(
                &service.name,
                service.period,
                started_ms.saturating_sub(CLOCK_SLACK_MS),
                ended_ms + CLOCK_SLACK_MS,
            )
        })
        .collect();
    let after_totals = read_totals(&*reader, store, &windows)?;
    let mut before = vec![0u64; config.services.len()];
    let mut after = vec![0u64; config.services.len()];
    for (window, total) in windows.iter().zip(after_totals) {
        let k = config
            .services
            .iter()
            .position(|s| s.name == window.service);
        let k = k.expect("a window of a configured service");
        after[k] += total;
        if let Some(i) = first.iter().position(|w| w == window) {
            before[k] += before_totals[i];
        }
    }
    report_shared(out, options, setup, store, elapsed, &done, &before, &after)
        .map_err(|e| e.to_string())
}

/// The shared run's report: a table and, per service, why admission stopped where it did.
#[allow(clippy::too_many_arguments)]
fn report_shared(
    out: &mut impl Write,
    options: &Options,
    setup: &Setup,
    store: &StoreUrl,
    elapsed: f64,
    done: &[Done],
    before: &[u64],
    after: &[u64],
) -> std::io::Result<()> {
    let config = &setup.config;
    let issued: u64 = done.iter().map(|d| d.issued).sum();
    writeln!(
        out,
        "{} processes, store {store}, admission {}: {elapsed:.3} s, {:.0} calls/s",
        options.processes,
        admissions(config),
        issued as f64 / elapsed
    )?;
    let row = |out: &mut dyn Write, name: &str, numbers: [i128; 7]| {
        write!(out, "{name:<10}")?;
        for n in numbers {
            write!(out, " {n:>10}")?;
        }
        writeln!(out)
    };
    writeln!(
        out,
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "service", "issued", "admitted", "denied", "before", "added", "after", "lost"
    )?;
    let mut sums = [0i128; 7];
    for (k, service) in config.services.iter().enumerate() {
        let d = &done[k];
        let added = i128::from(after[k]) - i128::from(before[k]);
        let numbers = [
            d.issued.into(),
            d.admitted.into(),
            d.denied().into(),
            before[k].into(),
            added,
            after[k].into(),
            i128::from(d.admitted) - added,
        ];
        for (sum, n) in sums.iter_mut().zip(numbers) {
            *sum += n;
        }
        row(out, &service.name, numbers)?;
    }
    row(out, "total", sums)?;
    writeln!(
        out,
        "before, after: the store's totals in the windows this run touched; added = after - \
         before; lost = admitted - added"
    )?;
    for (k, service) in config.services.iter().enumerate() {
        let (stop, reason) = service.normal_stop();
        let rule = match reason {
            DenyReason::Reserve => format!(
                "the reserve: {} - {} % held back = {stop}",
                service.limit,
                service.reserve_fraction * 100.0
            ),
            _ => format!(
                "the Critical level: {} % of {} = {stop}",
                service.critical_threshold * 100.0,
                service.limit
            ),
        };
        write!(
            out,
            "{}: normal calls stop at {rule} a {}",
            service.name,
            service.period.as_str()
        )?;
        if before[k] >= stop {
            write!(out, " (reached before this run)")?;
        }
        let reasons: Vec<String> = REASONS
            .iter()
            .zip(done[k].denied)
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        if reasons.is_empty() {
            writeln!(out, "; none denied")?;
        } else {
            writeln!(out, "; denied: {}", reasons.join(", "))?;
        }
    }
    if sums[6] < 0 {
        writeln!(
            out,
            "note: the store gained {} calls more than this run admitted: another process \
             counted in these windows during the run",
            -sums[6]
        )?;
    }
    Ok(())
}

/// One child: its share of the calls through `try_record`; prints per service `service K
/// issued admitted` and its denials by [`REASONS`] (K: the service's index in the config, which
/// parent and children read alike; a name may hold spaces).
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
    // The calls split as evenly as they go: the first `calls % processes` take one more.
    let processes = options.processes as u64;
    let share = options.calls / processes + u64::from(child < options.calls % processes);
    let mut done = vec![Done::default(); config.services.len()];
    for op in stream.take(share as usize) {
        let counts = &mut done[op.service];
        counts.issued += 1;
        match tracker.try_record(&config.services[op.service].name, 1) {
            Ok(_) => counts.admitted += 1,
            Err(QuotaError::Denied { reason, .. }) => {
                let slot = REASONS.iter().position(|r| *r == reason);
                counts.denied[slot.expect("every reason is in REASONS")] += 1;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    tracker.flush().map_err(|error| error.to_string())?;
    for (k, d) in done.iter().enumerate() {
        let [a, b, c, e, f] = d.denied;
        writeln!(
            out,
            "service {k} {} {} {a} {b} {c} {e} {f}",
            d.issued, d.admitted
        )
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
        cli(&args, &mut out, &relaunch)?;
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
            ["tiingo", "finnhub", "sendgrid", "total", "every"],
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
            assert_eq!(fields[..3], ["service", "0", "200"], "{out}");
            admitted += fields[3].parse::<u64>().unwrap();
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
