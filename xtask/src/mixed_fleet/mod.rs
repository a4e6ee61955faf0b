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

mod build;
mod report;
#[cfg(test)]
mod tests;

use crate::readme::{Redis, REDIS_PASSWORD};
use crate::run::root;
use build::{build_new, build_old, short};
use report::{finish, judge, show};
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
