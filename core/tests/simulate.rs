//! The native simulator, through the `simulate` example's own code: locked mode counts every
//! unit across threads.

#[allow(dead_code)] // its `main` is the example's entry point, unused here
#[path = "../examples/simulate/main.rs"]
mod simulate;

use quota_core::sim::{threads, Mode, Workload};
use quota_core::TrackerConfig;

fn run_cli(args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let mut out = Vec::new();
    simulate::cli(&args, &mut out, &simulate::relaunch)?;
    Ok(String::from_utf8(out).expect("the report is UTF-8"))
}

/// The report's rows as (service, issued, recorded, lost, transitions), after checking its
/// last line says what the threads mode counts.
fn rows(report: &str) -> Vec<(String, u64, u64, u64, u64)> {
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some(
            "every call is counted (record_call, past the limit too): this mode shows lost \
             updates, not admission; --processes N with a store runs admission"
        )
    );
    lines[..lines.len() - 1]
        .iter()
        .skip(2)
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| fields[i].parse::<u64>().expect("a whole number");
            (
                fields[0].to_owned(),
                number(1),
                number(2),
                number(3),
                number(4),
            )
        })
        .collect()
}

#[test]
fn locked_mode_gives_exact_totals() {
    let report = run_cli(&[
        "--workers",
        "8",
        "--calls",
        "30000",
        "--mode",
        "locked",
        "--seed",
        "7",
        "--max-size",
        "3",
    ])
    .unwrap();
    assert!(report.starts_with("mode locked, 8 workers, 30000 calls, seed 7"));
    let rows = rows(&report);
    let names: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
    assert_eq!(names, ["tiingo", "finnhub", "sendgrid", "total"]);
    for (service, issued, recorded, lost, transitions) in &rows {
        assert!(
            *issued >= 10_000,
            "{service}: {issued} units from 30000 calls"
        );
        assert_eq!(recorded, issued, "{service}");
        assert_eq!(*lost, 0, "{service}");
        assert!(
            *transitions >= 3,
            "{service}: only {transitions} transitions"
        );
    }
    let total = rows.last().unwrap();
    let services = &rows[..3];
    assert_eq!(total.1, services.iter().map(|row| row.1).sum::<u64>());
}

#[test]
fn same_seed_issues_the_same_units() {
    let config = TrackerConfig::defaults();
    let workload = Workload {
        workers: 4,
        ..Workload::even(&config)
    };
    let issued = |seed| {
        let mut workload = workload.clone();
        workload.seed = seed;
        let report = threads::run(&config, &workload, Mode::Locked, 4_000).unwrap();
        report
            .services
            .iter()
            .map(|service| service.counts.issued)
            .collect::<Vec<_>>()
    };
    assert_eq!(issued(7), issued(7));
    assert_ne!(issued(7), issued(8));
}

#[test]
fn racy_mode_never_records_more_than_was_issued() {
    let report = run_cli(&["--workers", "4", "--calls", "8000", "--mode", "racy"]).unwrap();
    for (service, issued, recorded, lost, _) in rows(&report) {
        assert!(recorded <= issued, "{service}");
        assert_eq!(lost, issued - recorded, "{service}");
    }
}

#[test]
fn bad_arguments_are_reported() {
    let error = run_cli(&["--mode", "fast"]).unwrap_err();
    assert!(error.contains("unknown mode \"fast\""), "{error}");
    let error = run_cli(&["--workers", "65"]).unwrap_err();
    assert!(
        error.contains("workers must be in 1..=64 (got 65)"),
        "{error}"
    );
    let error = run_cli(&["--calls"]).unwrap_err();
    assert!(error.contains("--calls needs a value"), "{error}");
    assert!(run_cli(&["--help"]).unwrap().starts_with("usage:"));
}

// The example as OS processes: this test binary runs `simulate::cli` as the program (the
// ignored test below), and a shared run's processes are this binary again.

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use std::io::Write;
use std::process::Command;

const ARGS_ENV: &str = "QUOTA_SIMULATE_ARGS";
/// Separates the arguments in [`ARGS_ENV`] (never in an argument).
const SEPARATOR: &str = "\u{1f}";

/// The example's `main`, started by [`simulate_process`]: its arguments come from
/// [`ARGS_ENV`]; it exits as `main` would (nothing of the test harness after the report).
#[test]
#[ignore = "run by the process tests as the simulate program"]
fn simulate_process() {
    let Some(args) = std::env::var_os(ARGS_ENV) else {
        return;
    };
    let args: Vec<String> = args
        .into_string()
        .unwrap()
        .split(SEPARATOR)
        .map(String::from)
        .collect();
    let code = match simulate::cli(&args, &mut std::io::stdout().lock(), &as_process) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("simulate: {message}");
            1
        }
    };
    std::io::stdout().flush().unwrap();
    std::process::exit(code);
}

/// `simulate ARGS` as a process of this binary (the parent of a shared run starts its
/// children this way too).
fn as_process(args: &[String]) -> Result<Command, String> {
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    command
        .args([
            "--ignored",
            "--exact",
            "simulate_process",
            "--nocapture",
            "--quiet",
        ])
        .env(ARGS_ENV, args.join(SEPARATOR));
    Ok(command)
}

/// What a `simulate` process printed.
struct Run {
    success: bool,
    /// Its standard output, less the test harness's first line.
    stdout: String,
    stderr: String,
}

fn simulate_as_process(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let output = as_process(&args).unwrap().output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stdout = match stdout.split_once("running 1 test\n") {
        Some((_, report)) => report.to_owned(),
        None => stdout,
    };
    Run {
        success: output.status.success(),
        stdout,
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A shared run's table: per service (and `total`), issued, admitted, denied, before, added,
/// after, lost.
fn shared_rows(report: &str) -> Vec<(String, [i64; 7])> {
    report
        .lines()
        .skip(2)
        .take_while(|line| !line.starts_with("before, after:"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 8, "{line:?} in\n{report}");
            let numbers = std::array::from_fn(|i| fields[i + 1].parse().unwrap());
            (fields[0].to_owned(), numbers)
        })
        .collect()
}

/// Two services whose windows do not roll over during a test (a day and a month), limit
/// 100 each: normal calls stop at 80.
fn two_services(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("services.toml");
    std::fs::write(
        &path,
        "[[services]]\nname = \"search\"\nlimit = 100\nperiod = \"day\"\n\n\
         [[services]]\nname = \"email\"\nlimit = 100\nperiod = \"month\"\n",
    )
    .unwrap();
    path.display().to_string()
}

/// Issued per service (by the seed, the same on every run), checked against the table.
fn issued(rows: &[(String, [i64; 7])]) -> Vec<i64> {
    rows.iter().map(|(_, n)| n[0]).collect()
}

/// Two runs of the same command on one store: the first admits exactly 80 of each service
/// (Exact admission stops exactly at the Critical level), the second nothing; both add
/// exactly what they admitted, so lost is 0 on each.
fn two_runs_add_up(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = two_services(&dir);
    let args = [
        "--config",
        &config,
        "--processes",
        "3",
        "--store",
        store,
        "--admission",
        "exact",
        "--calls",
        "601",
    ];
    let first = simulate_as_process(&args);
    assert!(first.success, "{}{}", first.stdout, first.stderr);
    let rows = shared_rows(&first.stdout);
    let issued = issued(&rows);
    assert_eq!(issued[2], 601, "{}", first.stdout);
    assert_eq!(issued[0] + issued[1], 601);
    let (s, e) = (issued[0], issued[1]);
    assert_eq!(
        rows,
        [
            ("search".to_owned(), [s, 80, s - 80, 0, 80, 80, 0]),
            ("email".to_owned(), [e, 80, e - 80, 0, 80, 80, 0]),
            ("total".to_owned(), [601, 160, 441, 0, 160, 160, 0]),
        ],
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains(&format!(
            "\nsearch: normal calls stop at the Critical level: 80 % of 100 = 80 a day; \
             denied: critical level {}\n",
            s - 80
        )),
        "{}",
        first.stdout
    );

    let second = simulate_as_process(&args);
    assert!(second.success, "{}{}", second.stdout, second.stderr);
    assert_eq!(
        shared_rows(&second.stdout),
        [
            ("search".to_owned(), [s, 0, s, 80, 0, 80, 0]),
            ("email".to_owned(), [e, 0, e, 80, 0, 80, 0]),
            ("total".to_owned(), [601, 0, 601, 160, 0, 160, 0]),
        ],
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains(&format!(
            "\nemail: normal calls stop at the Critical level: 80 % of 100 = 80 a month \
             (reached before this run); denied: critical level {e}\n"
        )),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains("note:"), "{}", second.stdout);
}

#[test]
fn two_runs_on_one_file_each_report_what_they_did() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    two_runs_add_up(&format!("file:{}", path.display()));
}

#[cfg(feature = "redis")]
#[test]
fn two_runs_on_one_redis_each_report_what_they_did() {
    let server = redis_server::Server::start();
    two_runs_add_up(&server.url());
}

/// Leased admission as the README runs it (smaller): what each run admits it adds, lost 0;
/// the second run starts from what the first left (a block given back at the end may leave
/// a few calls below the stop for it).
#[test]
fn leased_runs_add_exactly_what_they_admit() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_services(&dir);
    let store = format!("file:{}", dir.path().join("quota.json").display());
    let args = [
        "--config",
        &config,
        "--processes",
        "4",
        "--store",
        &store,
        "--admission",
        "leased:5",
        "--calls",
        "800",
    ];
    let mut stored = [0, 0];
    for run in 0..2 {
        let out = simulate_as_process(&args);
        assert!(out.success, "{}{}", out.stdout, out.stderr);
        let rows = shared_rows(&out.stdout);
        for (k, (_, [issued, admitted, denied, before, added, after, lost])) in
            rows.iter().take(2).enumerate()
        {
            assert_eq!(*issued, admitted + denied, "{}", out.stdout);
            assert_eq!(*before, stored[k], "run {run}: {}", out.stdout);
            assert_eq!(*added, *admitted, "{}", out.stdout);
            assert_eq!(*lost, 0, "{}", out.stdout);
            assert!(*after <= 80, "never past the stop: {}", out.stdout);
            if run == 0 {
                assert!(*admitted >= 80 - 4 * 5, "{}", out.stdout);
            }
            stored[k] = *after;
        }
    }
}

/// The same with every process syncing (and leasing ahead) on its tracker's own thread
/// (`--sync background`): what the run admits it adds, lost 0, never past the stop.
#[test]
fn leased_runs_syncing_in_the_background_add_exactly_what_they_admit() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_services(&dir);
    let store = format!("file:{}", dir.path().join("quota.json").display());
    let args = [
        "--config",
        &config,
        "--processes",
        "4",
        "--store",
        &store,
        "--admission",
        "leased:5",
        "--calls",
        "800",
        "--sync",
        "background",
    ];
    let out = simulate_as_process(&args);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let rows = shared_rows(&out.stdout);
    for (_, [issued, admitted, denied, before, added, after, lost]) in rows.iter().take(2) {
        assert_eq!(*issued, admitted + denied, "{}", out.stdout);
        assert_eq!(*before, 0, "{}", out.stdout);
        assert_eq!(*added, *admitted, "{}", out.stdout);
        assert_eq!(*lost, 0, "{}", out.stdout);
        assert!(*after <= 80, "never past the stop: {}", out.stdout);
        // Blocks held at the end go back: the run reaches the stop, less a block per process.
        assert!(*admitted >= 80 - 4 * 5, "{}", out.stdout);
    }
    let error = run_cli(&["--sync", "sometimes"]).unwrap_err();
    assert!(
        error.contains("--sync must be inline or background (got \"sometimes\")"),
        "{error}"
    );
}

/// Two shared runs at once on one file: Exact admission still stops exactly at 80 in all,
/// and the file holds exactly what both admitted. Each run sees the other's calls in its
/// windows: then its lost is negative and it says why.
#[test]
fn two_runs_at_once_on_one_file_never_over_admit() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_services(&dir);
    let path = dir.path().join("quota.json");
    let store = format!("file:{}", path.display());
    let args: Vec<String> = [
        "--config",
        &config,
        "--processes",
        "2",
        "--store",
        &store,
        "--admission",
        "exact",
        "--calls",
        "400",
    ]
    .map(String::from)
    .to_vec();
    let parallel: Vec<_> = (0..2)
        .map(|_| {
            as_process(&args)
                .unwrap()
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut admitted = 0;
    for child in parallel {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).unwrap();
        let report = text.split_once("running 1 test\n").unwrap().1;
        let rows = shared_rows(report);
        let total = rows.last().unwrap().1;
        admitted += total[1];
        let lost = total[6];
        assert!(lost <= 0, "{report}");
        assert_eq!(
            lost < 0,
            report.contains("note: the store gained"),
            "{report}"
        );
    }
    let state = quota_core::FileStore::new(&path).state().unwrap();
    let stored: u64 = state.windows().map(|w| w.total).sum();
    assert_eq!(stored, 160, "80 of each service");
    assert_eq!(admitted, 160, "what the two runs admitted together");
}

#[test]
fn help_ends_with_one_newline_and_fits_100_columns() {
    let help = simulate_as_process(&["--help"]);
    assert!(help.success && help.stderr.is_empty(), "{}", help.stderr);
    assert!(
        help.stdout.starts_with("usage: simulate "),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout.ends_with("--example simulate -- ...\n"),
        "{:?}",
        help.stdout
    );
    assert!(!help.stdout.ends_with("\n\n"), "{:?}", help.stdout);
    assert!(help.stdout.lines().all(|line| line.len() <= 100));
    assert_eq!(simulate_as_process(&["-h"]).stdout, help.stdout);
    // After an argument error, on standard error, as `main` prints it.
    let error = simulate_as_process(&["--calls"]);
    assert!(
        !error.success && error.stdout.is_empty(),
        "{}",
        error.stdout
    );
    assert_eq!(
        error.stderr,
        format!("simulate: --calls needs a value\n{}", help.stdout)
    );
}

#[test]
fn a_shared_run_refuses_what_it_cannot_do() {
    let error = |args: &[&str]| run_cli(args).unwrap_err();
    assert_eq!(
        error(&["--processes", "4"]),
        "--processes 4 needs a store for the processes to share: --store file:PATH or \
         --store redis://HOST:PORT (or a config file with a store)"
    );
    assert_eq!(
        error(&["--processes", "0"]),
        "--processes must be in 1..=64 (got 0)"
    );
    assert_eq!(
        error(&["--processes", "65", "--store", "file:/tmp/x"]),
        "--processes must be in 1..=64 (got 65)"
    );
    assert_eq!(
        error(&["--admission", "leased:0"]),
        "--admission must be local, exact or leased:BLOCK with a BLOCK of at least 1 (got \
         \"leased:0\")"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = format!("file:{}", dir.path().join("q.json").display());
    assert_eq!(
        error(&["--processes", "2", "--store", &file, "--mode", "racy"]),
        "--mode racy runs on threads only: the processes of a shared run count through the \
         store"
    );
    assert_eq!(
        error(&["--processes", "2", "--store", &file, "--limit", "0"]),
        "invalid config: service \"tiingo\": limit must be at least 1 (got 0)"
    );
    // A folder that does not exist: the first read fails before any process starts.
    let error = error(&["--processes", "2", "--store", "file:/no/such/dir/q.json"]);
    assert!(
        error.starts_with("could not read the store file:/no/such/dir/q.json: store I/O failed"),
        "{error}"
    );
    assert!(!dir.path().join("q.json").exists());
}

/// Which features a Redis store needs, said in the error of a build without them.
#[cfg(not(feature = "redis"))]
#[test]
fn a_redis_store_without_the_feature_names_the_features_to_build_with() {
    let error = run_cli(&["--processes", "2", "--store", "redis://:pw@127.0.0.1:1"]).unwrap_err();
    assert_eq!(
        error,
        "store redis://:<redacted>@127.0.0.1:1: this simulate was built without Redis: build it \
         with `--features sim,redis` (cargo run -p quota-core --release --features sim,redis \
         --example simulate -- ...)"
    );
}

/// A Redis that is not there: the run stops at its first read, before any process starts,
/// within the connect timeout.
#[cfg(feature = "redis")]
#[test]
fn a_redis_store_that_is_down_fails_at_once() {
    let port = redis_server::free_port();
    let store = format!("redis://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let run = simulate_as_process(&["--processes", "4", "--store", &store]);
    assert!(!run.success);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.starts_with(&format!(
            "simulate: could not read the store {store}: store unavailable: cannot connect to \
             Redis at 127.0.0.1:{port}"
        )),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A holds table: per service (and `total`), estimated, admitted, denied, given back, added,
/// settled, recorded or stored, lost; each row checked against its identities
/// (estimated = admitted + denied; settled = admitted - back + added).
fn hold_rows(report: &str) -> Vec<(String, [i64; 8])> {
    let rows: Vec<(String, [i64; 8])> = report
        .lines()
        .skip(2)
        .take_while(|line| !line.starts_with("estimated =") && !line.starts_with("stored:"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 9, "{line:?} in\n{report}");
            let numbers = std::array::from_fn(|i| fields[i + 1].parse().unwrap());
            (fields[0].to_owned(), numbers)
        })
        .collect();
    for (name, [estimated, admitted, denied, back, added, settled, _, _]) in &rows {
        assert_eq!(*estimated, admitted + denied, "{name} in\n{report}");
        assert_eq!(*settled, admitted - back + added, "{name} in\n{report}");
    }
    rows
}

/// `--hold` on threads: the tracker counts exactly what the holds settled at.
#[test]
fn holds_on_threads_count_exactly_what_they_settled() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_services(&dir);
    let report = run_cli(&[
        "--config",
        &config,
        "--limit",
        "10000000",
        "--workers",
        "8",
        "--calls",
        "20000",
        "--hold",
        "100",
    ])
    .unwrap();
    let rows = hold_rows(&report);
    assert_eq!(rows.len(), 3, "{report}");
    for (name, numbers) in &rows {
        assert_eq!(numbers[7], 0, "{name} lost units in\n{report}");
        assert!(
            numbers[3] > 0 && numbers[4] > 0,
            "{name}: no give-back or excess\n{report}"
        );
    }
}

/// `--hold` across 3 processes on one file, in each admission: the store gains exactly what
/// the holds settled at.
#[test]
fn holds_across_processes_store_exactly_what_they_settled() {
    for admission in ["local", "exact", "leased:50"] {
        let dir = tempfile::tempdir().unwrap();
        let config = two_services(&dir);
        let store = format!("file:{}", dir.path().join("quota.json").display());
        let run = simulate_as_process(&[
            "--config",
            &config,
            "--limit",
            "10000000",
            "--processes",
            "3",
            "--store",
            &store,
            "--admission",
            admission,
            "--calls",
            "1500",
            "--hold",
            "40",
        ]);
        assert!(run.success, "{admission}: {}", run.stderr);
        let rows = hold_rows(&run.stdout);
        assert_eq!(rows.len(), 3, "{}", run.stdout);
        for (name, numbers) in &rows {
            assert_eq!(
                numbers[7], 0,
                "{admission}: {name} lost units in\n{}",
                run.stdout
            );
            assert!(numbers[5] > 0, "{}", run.stdout);
        }
    }
}
