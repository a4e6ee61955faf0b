//! Shared quotas: many trackers (threads in one process, and OS processes on one file) count
//! against one quota through one store, exactly. Multi-process tests re-execute this test
//! binary as their children.

use quota_core::{
    Admission, DenyReason, FileStore, Limit, ManualClock, MemoryStore, Period, QuotaError,
    QuotaTracker, ServiceConfig, Store, StoreError, SyncPolicy, TrackerConfig, WindowKey,
};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;

#[path = "support/holds_child.rs"]
mod holds_child;

use holds_child::{hold_and_settle, LosesReplies};

const CHILD_ENV: &str = "QUOTA_SHARED_CHILD";
const JUNE_10: u64 = 1_718_000_000_000;
const DAY: u64 = 86_400_000;

fn service(limit: u64, admission: Admission) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", limit, Period::Day)
        .critical_threshold(0.8)
        .admission(admission)
        .build()
        .unwrap()])
}

/// `api` with shared `admission` in a day's limit and a week's (Critical at 0.8 of each).
fn in_two_limits(day: u64, week: u64, admission: Admission) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", day, Period::Day)
        .and_limit(Limit::new(week, Period::Week))
        .critical_threshold(0.8)
        .admission(admission)
        .build()
        .unwrap()])
}

fn tracker(config: TrackerConfig, store: impl Store + 'static) -> QuotaTracker {
    QuotaTracker::builder(config).store(store).build().unwrap()
}

fn admission(word: &str) -> Admission {
    match word {
        "local" => Admission::Local,
        "exact" => Admission::Exact,
        block => Admission::Leased {
            block: block.trim_start_matches("leased").parse().unwrap(),
        },
    }
}

/// The child: `mode:path:calls:limit[:hold]`. `record` makes `calls` record_call and flushes;
/// the others `try_record` and print how many were admitted. With `hold`, the child takes a
/// block and waits to be killed.
#[test]
#[ignore = "run by the multi-process tests as their child process"]
fn shared_child() {
    let Some(spec) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let spec = spec.into_string().unwrap();
    let parts: Vec<&str> = spec.split('|').collect();
    let (mode, path, calls, limit) = (
        parts[0],
        parts[1],
        parts[2].parse::<u64>().unwrap(),
        parts[3].parse::<u64>().unwrap(),
    );
    let store = FileStore::new(path);
    if let Some(admission) = mode.strip_prefix("hold") {
        holds_child(store, admission, calls, limit);
        return;
    }
    if mode.starts_with("record") {
        let config = match mode {
            // A day's limit and an hour's.
            "record2" => TrackerConfig::new([ServiceConfig::builder("api", limit, Period::Day)
                .and_limit(Limit::new(limit, Period::Hour))
                .build()
                .unwrap()]),
            _ => service(limit, Admission::Local),
        };
        let tracker = tracker(config, store);
        for _ in 0..calls {
            tracker.record_call("api", 1).unwrap();
        }
        tracker.flush().expect("the flush succeeds");
        println!("admitted 0");
        return;
    }
    let config = match mode {
        // Exact admission in two limits: a day's and a week's (windows the system clock
        // rarely crosses), the one named binding at half of `limit`.
        "exact2day" => in_two_limits(limit / 2, limit, Admission::Exact),
        "exact2week" => in_two_limits(limit, limit / 2, Admission::Exact),
        "leased2day" => in_two_limits(limit / 2, limit, Admission::Leased { block: 25 }),
        "leased2week" => in_two_limits(limit, limit / 2, Admission::Leased { block: 25 }),
        _ => service(limit, admission(mode)),
    };
    let tracker = tracker(config, store);
    if parts.get(4) == Some(&"hold") {
        tracker.try_record("api", 1).unwrap();
        println!("holding");
        thread::sleep(std::time::Duration::from_secs(60));
        return;
    }
    let mut admitted = 0;
    for _ in 0..calls {
        match tracker.try_record("api", 1) {
            Ok(_) => admitted += 1,
            Err(QuotaError::Denied { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    tracker.flush().expect("the flush succeeds");
    println!("admitted {admitted}");
}

/// The holds child: `calls` holds on `api` (`admission`: `local`, `exact`, `leased25`) through
/// a file whose every 5th reply is lost, syncing as often as it can, so that give-backs go
/// through the store. Prints the calls it owes the store.
fn holds_child(store: FileStore, admission_word: &str, calls: u64, limit: u64) {
    let tracker = QuotaTracker::builder(service(limit, admission(admission_word)))
        .store(LosesReplies::new(store, 5))
        .sync_policy(SyncPolicy {
            interval_ms: 1,
            flush_timeout_ms: 20_000,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    let owed = hold_and_settle(&tracker, calls, || {});
    tracker.flush().expect("the flush succeeds");
    assert_eq!(tracker.stats().forfeited_calls, 0);
    println!("admitted {owed}");
}

fn child(spec: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--ignored",
            "--exact",
            "shared_child",
            "--nocapture",
            "--quiet",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Runs `processes` children of `spec` at once; what each admitted.
fn run_children(processes: usize, spec: &str) -> Vec<u64> {
    let children: Vec<_> = (0..processes)
        .map(|_| child(spec).spawn().unwrap())
        .collect();
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "a child failed: {output:?}");
            let text = String::from_utf8(output.stdout).unwrap();
            text.lines()
                .find_map(|line| line.strip_prefix("admitted "))
                .unwrap_or_else(|| panic!("no result in {text:?}"))
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

fn file_total(path: &std::path::Path) -> u64 {
    FileStore::new(path)
        .state()
        .unwrap()
        .windows()
        .map(|w| w.total)
        .sum()
}

fn nothing_moved_aside(dir: &std::path::Path) {
    let aside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("corrupt") || name.contains(".tmp-"))
        .collect();
    assert!(aside.is_empty(), "left behind: {aside:?}");
}

/// 8 processes hold and settle through one file that loses replies, in each admission: the
/// file ends at the sum of what they settled (and the estimates of holds dropped unsettled).
#[test]
fn eight_processes_settling_holds_on_one_file_store_exactly_what_they_settled() {
    for admission in ["local", "exact", "leased25"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quota.json");
        let spec = format!("hold{admission}|{}|150|1000000", path.display());
        let owed: u64 = run_children(8, &spec).iter().sum();
        assert!(owed > 0);
        assert_eq!(file_total(&path), owed, "{admission}");
        nothing_moved_aside(dir.path());
    }
}

#[test]
fn eight_processes_recording_on_one_file_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let spec = format!("record|{}|10000|1000000000", path.display());
    run_children(8, &spec);
    assert_eq!(file_total(&path), 80_000);
    nothing_moved_aside(dir.path());
}

#[test]
fn eight_processes_recording_in_two_limits_on_one_file_lose_nothing_in_either() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let spec = format!("record2|{}|5000|1000000000", path.display());
    run_children(8, &spec);
    // Summed over each limit's windows: the children run on the system clock, which may
    // cross an hour (or a day) while they do.
    let state = FileStore::new(&path).state().unwrap();
    for spec in ["day", "hour"] {
        let total: u64 = state
            .windows()
            .filter(|w| w.spec.key() == spec)
            .map(|w| w.total)
            .sum();
        assert_eq!(total, 40_000, "the {spec}'s windows hold every call");
    }
    nothing_moved_aside(dir.path());
}

#[test]
fn exact_admission_across_processes_admits_exactly_up_to_critical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let spec = format!("exact|{}|5000|10000", path.display());
    let admitted: u64 = run_children(8, &spec).iter().sum();
    assert_eq!(admitted, 8_000, "critical at 0.8 x 10,000");
    assert_eq!(file_total(&path), 8_000);
    nothing_moved_aside(dir.path());
}

#[test]
fn exact_admission_in_two_limits_across_processes_admits_up_to_the_binding_one_in_both() {
    for (mode, binding) in [("exact2day", "day"), ("exact2week", "week")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quota.json");
        // 8 x 400 calls asked; the binding limit is 1,000, Critical at 800.
        let spec = format!("{mode}|{}|400|2000", path.display());
        let admitted: u64 = run_children(8, &spec).iter().sum();
        assert_eq!(admitted, 800, "{binding}: critical at 0.8 x 1,000");
        // Every admitted call is in both limits' windows, and nothing else is.
        let state = FileStore::new(&path).state().unwrap();
        for spec in ["day", "week"] {
            let total: u64 = state
                .windows()
                .filter(|w| w.spec.key() == spec)
                .map(|w| w.total)
                .sum();
            assert_eq!(total, 800, "{mode}: the {spec}'s windows");
        }
        nothing_moved_aside(dir.path());
    }
}

#[test]
fn leased_admission_in_two_limits_across_processes_never_passes_either() {
    for (mode, binding) in [("leased2day", "day"), ("leased2week", "week")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quota.json");
        // 8 x 400 calls asked in blocks of 25; the binding limit is 1,000, Critical at 800.
        let spec = format!("{mode}|{}|400|2000", path.display());
        let admitted: u64 = run_children(8, &spec).iter().sum();
        assert!(
            (800 - 8 * 25..=800).contains(&admitted),
            "{binding}: admitted {admitted}"
        );
        // Every process gave back what it did not use, in both limits' windows.
        let state = FileStore::new(&path).state().unwrap();
        for spec in ["day", "week"] {
            let total: u64 = state
                .windows()
                .filter(|w| w.spec.key() == spec)
                .map(|w| w.total)
                .sum();
            assert_eq!(total, admitted, "{mode}: the {spec}'s windows");
        }
        nothing_moved_aside(dir.path());
    }
}

#[test]
fn leased_admission_across_processes_never_over_admits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let spec = format!("leased100|{}|5000|10000", path.display());
    let admitted: u64 = run_children(8, &spec).iter().sum();
    assert!(
        (8_000 - 8 * 100..=8_000).contains(&admitted),
        "admitted {admitted}"
    );
    // Every process gave back what it did not use: the file holds exactly what was admitted.
    assert_eq!(file_total(&path), admitted);
}

#[test]
#[cfg(unix)]
fn a_killed_lease_holder_strands_at_most_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let mut holder = child(&format!("leased100|{}|0|10000|hold", path.display()))
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(holder.stdout.take().unwrap()));
    let held = lines
        .map_while(Result::ok)
        .any(|line| line.trim() == "holding");
    assert!(held, "the child never took its block");
    holder.kill().unwrap(); // SIGKILL while holding a block of 100
    holder.wait().unwrap();
    let spec = format!("leased100|{}|5000|10000", path.display());
    let admitted: u64 = run_children(4, &spec).iter().sum();
    assert!(admitted + 100 <= 8_000, "admitted {admitted}");
    assert!(admitted >= 8_000 - 100 - 4 * 100, "admitted {admitted}");
}

#[test]
fn trackers_sharing_a_memory_store_see_each_others_calls() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let build = || {
        QuotaTracker::builder(service(1_000, Admission::Local))
            .clock(clock.clone())
            .store(store.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    a.record_call("api", 30).unwrap();
    b.record_call("api", 5).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(b.usage("api").unwrap().used, 35);
    a.flush().unwrap();
    assert_eq!(a.usage("api").unwrap().used, 35);
    assert_eq!(
        build().usage("api").unwrap().used,
        35,
        "a restart sees both"
    );
}

#[test]
fn lost_replies_are_retried_and_counted_once() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let tracker = QuotaTracker::builder(service(1_000, Admission::Local))
        .clock(clock.clone())
        .store(store.clone())
        // One try per flush: the test fails one on purpose.
        .sync_policy(SyncPolicy {
            flush_timeout_ms: 0,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    tracker.record_call("api", 7).unwrap();
    store.lose_next_replies(2);
    assert!(matches!(tracker.flush(), Err(StoreError::Io(_))));
    tracker.record_call("api", 3).unwrap();
    assert!(matches!(tracker.flush(), Err(StoreError::Io(_))));
    tracker.flush().unwrap();
    let total: u64 = store.state().unwrap().windows().map(|w| w.total).sum();
    assert_eq!(total, 10, "applied once each, although sent more than once");
    assert_eq!(tracker.usage("api").unwrap().used, 10);
}

#[test]
fn exact_admission_across_threads_admits_exactly() {
    let store = MemoryStore::new();
    let trackers: Vec<Arc<QuotaTracker>> = (0..8)
        .map(|_| Arc::new(tracker(service(10_000, Admission::Exact), store.clone())))
        .collect();
    let barrier = Arc::new(Barrier::new(8));
    let admitted: u64 = trackers
        .iter()
        .map(|tracker| {
            let (tracker, barrier) = (Arc::clone(tracker), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                (0..2_000)
                    .filter(|_| tracker.try_record("api", 1).is_ok())
                    .count() as u64
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(admitted, 8_000);
    let denied = trackers[0].try_record("api", 1).unwrap_err();
    assert!(
        matches!(
            denied,
            QuotaError::Denied {
                reason: DenyReason::Critical,
                used: 8_000,
                ..
            }
        ),
        "{denied}"
    );
    assert!(!trackers[3].can_call("api").unwrap());
}

#[test]
fn exact_admission_denies_while_the_store_is_down_and_record_call_counts_locally() {
    let store = MemoryStore::new();
    let tracker = tracker(service(100, Admission::Exact), store.clone());
    tracker.try_record("api", 10).unwrap();
    store.set_failing(true);
    assert!(matches!(
        tracker.try_record("api", 1),
        Err(QuotaError::Denied {
            reason: DenyReason::StoreUnavailable,
            ..
        })
    ));
    assert!(!tracker.can_call("api").unwrap());
    tracker.record_call("api", 5).unwrap(); // counted here, synced later
    store.set_failing(false);
    tracker.flush().unwrap();
    let total: u64 = store.state().unwrap().windows().map(|w| w.total).sum();
    assert_eq!(total, 15);
}

#[test]
fn leased_admission_spends_in_process_and_gives_back_on_flush() {
    let store = MemoryStore::new();
    let tracker = tracker(
        service(1_000, Admission::Leased { block: 50 }),
        store.clone(),
    );
    let syncs_before = store.syncs();
    for _ in 0..120 {
        tracker.try_record("api", 1).unwrap();
    }
    // 120 calls took 3 blocks of 50: 3 store calls, not 120.
    assert_eq!(store.syncs() - syncs_before, 3);
    assert!(
        tracker.try_record("api", 200).is_ok(),
        "a call larger than a block"
    );
    tracker.flush().unwrap();
    let total: u64 = store.state().unwrap().windows().map(|w| w.total).sum();
    assert_eq!(total, 320, "the unused 30 went back");
    assert!(QuotaTracker::builder(service(1_000, Admission::Exact))
        .build()
        .is_err());
}

#[test]
fn deltas_of_a_month_that_ended_land_in_that_month() {
    let store = MemoryStore::new();
    // 2024-01-31 23:59:59 UTC, one second before February.
    let clock = ManualClock::new(1_706_745_599_000);
    let config = TrackerConfig::new([ServiceConfig::new("api", 1_000, Period::Month)]);
    let tracker = QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    tracker.record_call("api", 4).unwrap();
    clock.advance(2_000); // February
    tracker.record_call("api", 6).unwrap();
    tracker.flush().unwrap();
    let state = store.state().unwrap();
    let key = |start_ms, end_ms| WindowKey {
        service: "api".into(),
        spec: Period::Month.into(),
        start_ms,
        end_ms,
    };
    let january = key(1_704_067_200_000, 1_706_745_600_000);
    let february = key(1_706_745_600_000, 1_709_251_200_000);
    assert_eq!((state.total(&january), state.total(&february)), (4, 6));
    let _ = DAY;
}

#[test]
#[cfg(unix)]
fn a_symlinked_file_store_keeps_pointing_at_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.json");
    let link = dir.path().join("quota.json");
    std::os::unix::fs::symlink("real.json", &link).unwrap();
    let tracker = tracker(service(1_000, Admission::Local), FileStore::new(&link));
    tracker.record_call("api", 3).unwrap();
    tracker.flush().unwrap();
    tracker.record_call("api", 2).unwrap();
    tracker.flush().unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(file_total(&target), 5);
    nothing_moved_aside(dir.path());
}
