//! A fleet mid-upgrade: the previous build ([`OLD_COMMIT`], the last before the store protocol's
//! operations records: `ops` in the JSON document, `<prefix>:{<service>}:ops:<instance>` in
//! Redis) and this build, run at the same time against one store, as the README's "Upgrades"
//! paragraph says they may be.
//!
//! Both builds' `simulate` example (`--features sim,redis`, debug: on 2 cores it builds in half
//! the time of release, and these runs wait on the store, not the CPU) run [`PROCESSES`]
//! processes each, at once, on one fresh file and then on one redis-server started here, with
//! `Local`, `Exact` and `Leased` admission. Then each build reads the store's totals
//! (`--calls 0`). The check, per service, from the printed reports: both builds read the same
//! total, it equals what the two runs admitted together (a file and a local Redis lose no reply,
//! so nothing may count twice either), neither run printed `lost` above 0, and with shared
//! admission the two together stayed within the service's normal stop.
//!
//! The previous build's source comes from `git archive` into `target/mixed-fleet/` (no worktree
//! is registered); its binary is kept as `target/mixed-fleet/bin/simulate-<commit>` and reused,
//! its target directory removed.
//! Each build has its own target directory: the two workspaces have the same layout, so in one
//! directory cargo would take one build's example for the other's.

use crate::readme::{Redis, REDIS_PASSWORD};
use crate::run::root;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The stage's name in `cargo xtask test`.
pub const STAGE: &str = "Mixed fleet: the previous build and this one on one file and one Redis";

/// The previous build: the last commit of `main` before the operations records.
const OLD_COMMIT: &str = "fa687b92d9d9997da26abfef100242f19d0f16ae";

/// Processes per build in each run.
const PROCESSES: u32 = 3;

/// How long one `simulate` run may take.
const RUN_SECONDS: u64 = 180;

/// The services of every run: a day's and a month's window, so that a run of a few seconds
/// counts in one window per service (a run across midnight UTC is done again); syncs every
/// 10 ms, so that the two builds' writes interleave.
const CONFIG: &str = "\
# Written by `cargo xtask mixed-fleet` (xtask/src/mixed_fleet.rs).
[sync]
interval_ms = 10

[[services]]
name = \"search\"
limit = 1000000
period = \"day\"

[[services]]
name = \"llm\"
limit = 1000000
period = \"month\"
";

/// One run of both builds on one store.
struct Case {
    /// `--admission`.
    admission: &'static str,
    /// `--calls`, per build.
    calls: u64,
    /// `--limit`, for every service.
    limit: u64,
}

/// The cases on the file store: `Exact` takes one locked rewrite of the file per call (about
/// 100 calls/s here), hence the small numbers; each case runs a few seconds.
const FILE_CASES: [Case; 3] = [
    Case {
        admission: "local",
        calls: 600_000,
        limit: 1_000_000,
    },
    Case {
        admission: "exact",
        calls: 600,
        limit: 500,
    },
    Case {
        admission: "leased:10",
        calls: 6_000,
        limit: 5_000,
    },
];

/// The cases on Redis, each in a database of its own (`/1`, `/2`, ...).
const REDIS_CASES: [Case; 3] = [
    Case {
        admission: "local",
        calls: 600_000,
        limit: 1_000_000,
    },
    Case {
        admission: "exact",
        calls: 6_000,
        limit: 5_000,
    },
    Case {
        admission: "leased:10",
        calls: 60_000,
        limit: 50_000,
    },
];

/// `cargo xtask mixed-fleet`, and the stage of `cargo xtask test`.
pub fn run() -> Result<(), String> {
    let dir = root().join("target/mixed-fleet");
    let old = build_old(&dir)?;
    let new = build_new(&dir)?;
    let config = dir.join("fleet.toml");
    std::fs::write(&config, CONFIG)
        .map_err(|error| format!("could not write {}: {error}", config.display()))?;
    let fleet = Fleet { old, new, config };

    let stores = dir.join("stores");
    if stores.exists() {
        std::fs::remove_dir_all(&stores)
            .map_err(|error| format!("could not remove {}: {error}", stores.display()))?;
    }
    std::fs::create_dir_all(&stores)
        .map_err(|error| format!("could not create {}: {error}", stores.display()))?;
    let mut figures = Vec::new();
    for case in &FILE_CASES {
        let name = case.admission.replace(':', "-");
        figures.extend(fleet.check("file", case, |attempt| {
            let path = stores.join(format!("{name}-{attempt}.json"));
            format!("file:{}", path.display())
        })?);
    }
    let redis = Redis::start(&dir)?;
    for (index, case) in REDIS_CASES.iter().enumerate() {
        figures.extend(fleet.check("Redis", case, |attempt| {
            let db = 1 + index * 2 + attempt;
            format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/{db}", redis.port)
        })?);
    }
    drop(redis);
    println!(
        "\nthe previous build ({}) and this one, together:",
        short(OLD_COMMIT)
    );
    for line in figures {
        println!("  {line}");
    }
    Ok(())
}

/// The first 7 digits of a commit.
fn short(commit: &str) -> &str {
    &commit[..7]
}

/// The previous build's `simulate`: the cached binary, or the commit's source exported and
/// built.
fn build_old(dir: &Path) -> Result<PathBuf, String> {
    let binary = dir.join(format!("bin/simulate-{}", short(OLD_COMMIT)));
    if binary.exists() {
        println!(
            "the previous build's simulate ({}): {} (cached)",
            short(OLD_COMMIT),
            binary.display()
        );
        return Ok(binary);
    }
    let source = dir.join(format!("src-{}", short(OLD_COMMIT)));
    if !source.join("Cargo.toml").exists() {
        export(&source)?;
    }
    let target = dir.join("target-old");
    let manifest = source.join("Cargo.toml");
    cargo_build(&source, &manifest, &target)?;
    let built = target.join("debug/examples/simulate");
    // Copied under another name, then renamed: an interrupted copy is never taken as built.
    let bin = binary.parent().expect("bin/ holds the binary");
    std::fs::create_dir_all(bin).map_err(|error| format!("could not create {bin:?}: {error}"))?;
    let partial = binary.with_extension("partial");
    std::fs::copy(&built, &partial)
        .and_then(|_| std::fs::rename(&partial, &binary))
        .map_err(|error| format!("could not copy {}: {error}", built.display()))?;
    // The binary is all that is used from now on: its build (about 650 MB) goes.
    if let Err(error) = std::fs::remove_dir_all(&target) {
        println!("warning: could not remove {}: {error}", target.display());
    }
    Ok(binary)
}

/// `git archive OLD_COMMIT | tar -x -C source`, through a folder renamed at the end.
fn export(source: &Path) -> Result<(), String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .map_err(|error| format!("could not run git: {error}"))
    };
    let found = git(&["cat-file", "-e", &format!("{OLD_COMMIT}^{{commit}}")])?;
    if !found.status.success() {
        let shallow = git(&["rev-parse", "--is-shallow-repository"])?;
        let why = if String::from_utf8_lossy(&shallow.stdout).trim() == "true" {
            "this clone is shallow"
        } else {
            "this clone does not have it"
        };
        return Err(format!(
            "the previous build, commit {OLD_COMMIT}, is missing ({why}): fetch it with \
             `git fetch --unshallow` or `git fetch origin {OLD_COMMIT}`, then rerun"
        ));
    }
    let partial = source.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(|error| format!("could not remove {}: {error}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .map_err(|error| format!("could not create {}: {error}", partial.display()))?;
    println!(
        "$ git archive {} | tar -x -C {}",
        short(OLD_COMMIT),
        source.display()
    );
    let mut archive = Command::new("git")
        .args(["archive", "--format=tar", OLD_COMMIT])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not run git archive: {error}"))?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&partial)
        .stdin(archive.stdout.take().expect("piped"))
        .status()
        .map_err(|error| format!("could not run tar: {error}"))?;
    let archived = archive.wait().map_err(|error| error.to_string())?;
    if !archived.success() || !tar.success() {
        return Err(format!(
            "git archive {OLD_COMMIT} | tar -x failed ({archived}, {tar})"
        ));
    }
    std::fs::rename(&partial, source)
        .map_err(|error| format!("could not rename {}: {error}", partial.display()))
}

/// This build's `simulate`, built (or found up to date) in a target directory of its own.
fn build_new(dir: &Path) -> Result<PathBuf, String> {
    let target = dir.join("target-new");
    cargo_build(&root(), &root().join("Cargo.toml"), &target)?;
    Ok(target.join("debug/examples/simulate"))
}

/// `cargo build --example simulate --features sim,redis` of the workspace at `manifest`, run
/// in `cwd` (so that the workspace's own `.cargo/config.toml` applies), with its lock file.
fn cargo_build(cwd: &Path, manifest: &Path, target: &Path) -> Result<(), String> {
    let manifest = manifest.to_string_lossy();
    let target = target.to_string_lossy();
    let args = [
        "build",
        "--locked",
        "--manifest-path",
        &manifest,
        "-p",
        "quota-core",
        "--features",
        "sim,redis",
        "--example",
        "simulate",
        "--target-dir",
        &target,
    ];
    println!("$ cargo {}", args.join(" "));
    let mut cargo = Command::new("cargo");
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // As `run::command`: a CI run builds once.
        cargo.env("CARGO_INCREMENTAL", "0");
    }
    let status = cargo
        .args(args)
        .current_dir(cwd)
        .status()
        .map_err(|error| format!("could not run cargo: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// The two builds' `simulate` and the services they run.
struct Fleet {
    old: PathBuf,
    new: PathBuf,
    config: PathBuf,
}

/// Milliseconds since 1970.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The UTC day of an instant: the services' windows (a day, a month) change only with it.
fn day(ms: u64) -> u64 {
    ms / 86_400_000
}

impl Fleet {
    /// Runs both builds at once on the store `store(attempt)` (fresh for each attempt), then
    /// has each read the totals, and checks them. A run across midnight UTC is done again on a
    /// fresh store (the reads would see the new windows only). One line of figures per service.
    fn check(
        &self,
        kind: &str,
        case: &Case,
        store: impl Fn(usize) -> String,
    ) -> Result<Vec<String>, String> {
        let what = format!("{kind} store, admission {}", case.admission);
        for attempt in 0..2 {
            let store = store(attempt);
            println!(
                "\n{what}: {PROCESSES} processes of each build at once, {} calls each, limit {}",
                case.calls, case.limit
            );
            let started_ms = now_ms();
            let calls = case.calls.to_string();
            let limit = case.limit.to_string();
            let processes = PROCESSES.to_string();
            let mut run = vec![
                "--processes",
                &processes,
                "--store",
                &store,
                "--admission",
                case.admission,
                "--limit",
                &limit,
            ];
            let deadline = Instant::now() + Duration::from_secs(RUN_SECONDS);
            let old = self.start(&self.old, &run, &calls)?;
            let new = self.start(&self.new, &run, &calls)?;
            let old = finish(old, "the previous build", deadline)?;
            let new = finish(new, "this build", deadline)?;
            show("previous", &old);
            show("this", &new);
            // The totals, as each build reads them (one process that calls nothing).
            run[1] = "1";
            let read = |binary: &Path, who: &str| {
                let deadline = Instant::now() + Duration::from_secs(RUN_SECONDS);
                finish(self.start(binary, &run, "0")?, who, deadline)
            };
            let old_read = read(&self.old, "the previous build (reading)")?;
            let new_read = read(&self.new, "this build (reading)")?;
            if day(started_ms.saturating_sub(2_000)) != day(now_ms() + 2_000) {
                println!("{what}: the run crossed midnight UTC (new windows): once more");
                continue;
            }
            return judge(&what, case, [&old, &new], [&old_read, &new_read])
                .map_err(|error| format!("{what}: {error}"));
        }
        Err(format!("{what}: crossed midnight UTC twice"))
    }

    /// Starts `binary --config ... args --calls calls`, its output piped.
    fn start(&self, binary: &Path, args: &[&str], calls: &str) -> Result<Child, String> {
        Command::new(binary)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .args(["--calls", calls])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("could not run {}: {error}", binary.display()))
    }
}

/// Waits for `child` until `deadline` (killed then) and returns what it printed; an error if it
/// failed.
fn finish(mut child: Child, who: &str, deadline: Instant) -> Result<String, String> {
    let pipe = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = from.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().expect("piped")));
    let stderr = pipe(Box::new(child.stderr.take().expect("piped")));
    let status = loop {
        match child.try_wait().map_err(|error| error.to_string())? {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{who}'s simulate still ran after {RUN_SECONDS} s"));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{who}'s simulate failed ({status}):\n{stdout}{stderr}"
        ))
    }
}

/// Prints a report's first line and table.
fn show(who: &str, report: &str) {
    for line in report.lines() {
        println!("  {who:<8} | {line}");
        if line.starts_with("total ") {
            break;
        }
    }
}

/// One row of a shared run's table.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    service: String,
    admitted: i128,
    before: i128,
    added: i128,
    lost: i128,
}

/// A shared run's report, as read by [`table`].
struct Report {
    rows: Vec<Row>,
    /// Per service, where normal calls stop.
    stops: Vec<(String, i128)>,
}

/// The rows of a shared run's report (`service issued admitted denied before added after
/// lost`), by the columns its header names, and per service where normal calls stop (`NAME:
/// normal calls stop at ... = N a PERIOD`).
fn table(report: &str) -> Result<Report, String> {
    let mut lines = report.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .find(|line| line.starts_with("service ") && line.contains(" admitted "))
        .ok_or_else(|| format!("no table in the report:\n{report}"))?
        .split_whitespace()
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|&c| c == name)
            .ok_or_else(|| format!("no column {name:?} in the report:\n{report}"))
    };
    let [admitted, before, added, lost] = [
        column("admitted")?,
        column("before")?,
        column("added")?,
        column("lost")?,
    ];
    let mut rows = Vec::new();
    for line in lines.by_ref() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != header.len() {
            return Err(format!("a row unlike the header {line:?} in:\n{report}"));
        }
        if fields[0] == "total" {
            break;
        }
        let number = |i: usize| {
            fields[i]
                .parse::<i128>()
                .map_err(|_| format!("not a number in {line:?}"))
        };
        rows.push(Row {
            service: fields[0].to_owned(),
            admitted: number(admitted)?,
            before: number(before)?,
            added: number(added)?,
            lost: number(lost)?,
        });
    }
    let mut stops = Vec::new();
    for line in lines {
        let Some((service, rule)) = line.split_once(": normal calls stop at ") else {
            continue;
        };
        let stop = rule
            .split_once(" = ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no stop in {line:?}"))?;
        stops.push((service.to_owned(), stop));
    }
    if rows.is_empty() {
        return Err(format!("no services in the report:\n{report}"));
    }
    Ok(Report { rows, stops })
}

/// The checks of one case, from the two runs' reports and the two reads of the totals; one
/// line of figures per service.
fn judge(
    what: &str,
    case: &Case,
    runs: [&str; 2],
    reads: [&str; 2],
) -> Result<Vec<String>, String> {
    let builds = ["the previous build", "this build"];
    let Report { rows: old, stops } = table(runs[0])?;
    let new = table(runs[1])?.rows;
    let old_read = table(reads[0])?.rows;
    let new_read = table(reads[1])?.rows;
    let services: Vec<&str> = old.iter().map(|row| row.service.as_str()).collect();
    for (build, rows) in builds.iter().zip([&new, &old_read, &new_read]) {
        let names: Vec<&str> = rows.iter().map(|row| row.service.as_str()).collect();
        if names != services {
            return Err(format!(
                "{build} reported the services {names:?}, the previous build {services:?}"
            ));
        }
    }
    let mut figures = Vec::new();
    for (k, service) in services.iter().enumerate() {
        for (build, row) in builds.iter().zip([&old[k], &new[k]]) {
            if row.lost > 0 {
                return Err(format!(
                    "{service}: {build}'s run printed lost {} (it admitted {}, the store \
                     gained {} during the run)",
                    row.lost, row.admitted, row.added
                ));
            }
        }
        // What the store holds, read after both runs (`before` of a run that calls nothing).
        let (stored, stored_by_new) = (old_read[k].before, new_read[k].before);
        if stored != stored_by_new {
            return Err(format!(
                "{service}: the previous build reads a total of {stored}, this build \
                 {stored_by_new}"
            ));
        }
        let admitted = old[k].admitted + new[k].admitted;
        if stored != admitted {
            let (gap, verb) = if stored < admitted {
                (admitted - stored, "lost")
            } else {
                (stored - admitted, "counted twice")
            };
            return Err(format!(
                "{service}: the store holds {stored}, but the previous build admitted {} and \
                 this build {} ({admitted} in all): {gap} {verb}",
                old[k].admitted, new[k].admitted
            ));
        }
        if admitted == 0 {
            return Err(format!("{service}: neither build admitted a call"));
        }
        let mut line = format!(
            "{what}, {service}: stored {stored} (read alike by both) = admitted {} (previous) + \
             {} (this)",
            old[k].admitted, new[k].admitted
        );
        if case.admission != "local" {
            let stop = stops
                .iter()
                .find(|(name, _)| name == service)
                .map(|&(_, stop)| stop)
                .ok_or_else(|| format!("{service}: the report gives no normal stop"))?;
            if admitted > stop {
                return Err(format!(
                    "{service}: the two builds admitted {admitted} together, over the normal \
                     stop {stop} (limit {})",
                    case.limit
                ));
            }
            line += &format!(", within the stop {stop}");
        }
        // What each run saw the other add while it ran (its `added` beyond its own calls).
        line += &format!(
            "; each saw the other add {} / {} during its run",
            old[k].added - old[k].admitted,
            new[k].added - new[k].admitted
        );
        figures.push(line);
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "\
3 processes, store file:/tmp/q.json, admission Exact: 7.128 s, 84 calls/s
service        issued   admitted     denied     before      added      after       lost
search            306        204        102          2        398        400       -194
llm               294        198         96          1        399        400       -201
total             600        402        198          3        797        800       -395
before, after: the store's totals in the windows this run touched; added = after - before; lost = admitted - added
search: normal calls stop at the Critical level: 80 % of 500 = 400 a day; denied: Critical 102
llm: normal calls stop at the Critical level: 80 % of 500 = 400 a month; denied: Critical 96
";

    fn read(search: u64, llm: u64) -> String {
        format!(
            "1 processes, store file:/tmp/q.json, admission Exact: 0.009 s, 0 calls/s\n\
             service issued admitted denied before added after lost\n\
             search 0 0 0 {search} 0 {search} 0\n\
             llm 0 0 0 {llm} 0 {llm} 0\n\
             total 0 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn reads_a_report() {
        let Report { rows, stops } = table(RUN).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            Row {
                service: "search".into(),
                admitted: 204,
                before: 2,
                added: 398,
                lost: -194
            }
        );
        assert_eq!(stops, [("search".into(), 400), ("llm".into(), 400)]);
        assert!(table("nothing").is_err());
    }

    #[test]
    fn judges_the_totals() {
        let case = &FILE_CASES[1];
        let other = RUN.replace("204", "196").replace("198 ", "202 ");
        let ok = judge("x", case, [RUN, &other], [&read(400, 400), &read(400, 400)]);
        assert_eq!(ok.unwrap().len(), 2);
        // A count lost, or counted twice: the numbers are named.
        let lost = judge("x", case, [RUN, &other], [&read(390, 400), &read(390, 400)]);
        let lost = lost.unwrap_err();
        assert!(
            lost.contains("holds 390") && lost.contains("204") && lost.contains("10 lost"),
            "{lost}"
        );
        let twice = judge("x", case, [RUN, &other], [&read(400, 401), &read(400, 401)]);
        assert!(twice.unwrap_err().contains("1 counted twice"));
        // The builds disagree on the total.
        let differ = judge("x", case, [RUN, &other], [&read(400, 400), &read(399, 400)]);
        assert!(differ.unwrap_err().contains("reads a total of 400"));
        // A run printed lost > 0.
        let bad = RUN.replace("-194", "3");
        let error = judge(
            "x",
            case,
            [&bad, &other],
            [&read(400, 400), &read(400, 400)],
        );
        assert!(error.unwrap_err().contains("printed lost 3"));
    }
}
