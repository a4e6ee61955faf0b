//! Shared quotas through a real `redis-server`, at the tracker level: OS processes (this test
//! binary re-executed as its children, as in `shared.rs`) sharing one `RedisStore`; faults
//! (a paused server, a killed and restarted one, lost replies) under one tracker; window
//! roll-over; the server's clock (`RedisStore::server_clock`). Each test starts its own
//! server (`support/redis_server.rs`) and fails if it cannot: none is skipped.

#[path = "support/holds_child.rs"]
mod holds_child;
#[path = "support/redis_server.rs"]
mod redis_server;

use holds_child::{hold_and_settle, LosesReplies};
use quota_core::{
    Admission, Clock, DenyReason, Limit, ManualClock, Period, QuotaError, QuotaTracker, RedisStore,
    ServiceConfig, StoreEvent, SyncPolicy, SystemClock, TrackerConfig,
};
use redis_server::{ClockProxy, Options, Proxy, Server};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "QUOTA_SHARED_REDIS_CHILD";
const DAY: u64 = 86_400_000;
/// 2024-06-15 12:00 UTC: the fault tests' tracker clock (mid-month, far from a boundary).
const MID_JUNE: u64 = 1_718_452_800_000;
/// 2024-06-01 00:00 UTC.
const JUNE_START: u64 = 1_717_200_000_000;
/// 2024-01-01, 2024-02-01 and 2024-03-01 00:00 UTC.
const JANUARY: u64 = 1_704_067_200_000;
const FEBRUARY: u64 = 1_706_745_600_000;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs `body` on its own thread and fails the test if it takes longer than `limit` (a hang),
/// passing its panic on otherwise.
fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, wait) = mpsc::channel();
    let worker = thread::spawn(move || {
        let result = body();
        let _ = done.send(());
        result
    });
    match wait.recv_timeout(limit) {
        // Finished, or panicked (the sender dropped): join says which.
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test hung: not done in {limit:?}"),
    }
}

/// One service `api` (critical at 0.8) with this admission, per `period`; `record2`: a day's
/// limit and an hour's of `limit` each.
fn config(limit: u64, period: Period, admission: Admission) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", limit, period)
        .critical_threshold(0.8)
        .admission(admission)
        .build()
        .unwrap()])
}

fn two_limits(limit: u64) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", limit, Period::Day)
        .and_limit(Limit::new(limit, Period::Hour))
        .build()
        .unwrap()])
}

/// `api` with shared `admission` in a day's limit and an hour's (Critical at 0.8 of each).
fn in_two_limits(day: u64, hour: u64, admission: Admission) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", day, Period::Day)
        .and_limit(Limit::new(hour, Period::Hour))
        .critical_threshold(0.8)
        .admission(admission)
        .build()
        .unwrap()])
}

fn admission(word: &str) -> Admission {
    match word {
        "local" | "record" | "record2" => Admission::Local,
        "exact" => Admission::Exact,
        block => Admission::Leased {
            block: block.trim_start_matches("leased").parse().unwrap(),
        },
    }
}

/// The key of `service`'s window of `period` starting at `start_ms`, spelt out as the README
/// documents it (default prefix).
fn key(service: &str, period: &str, start_ms: u64) -> String {
    format!("quota:{{{service}}}:{period}:{start_ms}")
}

/// `GET key` as a number (0 when absent).
fn get(con: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("GET")
        .arg(key)
        .query::<Option<u64>>(con)
        .unwrap()
        .unwrap_or(0)
}

/// The multi-process tests run one at a time (eight children each, on few cores).
fn one_group_at_a_time() -> MutexGuard<'static, ()> {
    static GROUPS: Mutex<()> = Mutex::new(());
    GROUPS.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Many processes

/// The child: `mode|url|calls|limit|clock ms[|hold]`, on a `ManualClock` standing at `clock ms`
/// (one day window for every child, whenever they run). `record` makes `calls` `record_call`
/// (the clock moving 1 ms each, syncing every 100 ms of it) and flushes; the others
/// `try_record` `calls` times. Each prints `admitted N`, `unavailable N` (denials for an
/// unreachable store) and `failures N` (failed syncs). With `hold`, the child takes a block,
/// prints `holding` and waits to be killed.
#[test]
#[ignore = "run by the multi-process tests as their child process"]
fn shared_redis_child() {
    let Some(spec) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let spec = spec.into_string().unwrap();
    let parts: Vec<&str> = spec.split('|').collect();
    let (mode, url) = (parts[0], parts[1]);
    let [calls, limit, clock_ms] = [2, 3, 4].map(|i| parts[i].parse::<u64>().unwrap());
    let clock = ManualClock::new(clock_ms);
    let store = RedisStore::new(url)
        .unwrap()
        .timeout(Duration::from_secs(5));
    if let Some(admission) = mode.strip_prefix("hold") {
        // Holds through a store whose every 5th reply is lost, syncing at every step.
        let tracker = QuotaTracker::builder(config(limit, Period::Day, self::admission(admission)))
            .clock(clock.clone())
            .store(LosesReplies::new(store, 5))
            .sync_policy(SyncPolicy {
                interval_ms: 1,
                flush_timeout_ms: 20_000,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap();
        let owed = hold_and_settle(&tracker, calls, || clock.advance(1));
        tracker.flush().expect("the flush succeeds");
        assert_eq!(tracker.stats().forfeited_calls, 0);
        println!("admitted {owed}");
        println!("unavailable 0");
        println!("failures 0");
        return;
    }
    let config = match mode {
        "record2" => two_limits(limit),
        // The one named binding, at half of `limit`.
        "exact2hour" => in_two_limits(limit, limit / 2, Admission::Exact),
        "exact2day" => in_two_limits(limit / 2, limit, Admission::Exact),
        "leased2hour" => in_two_limits(limit, limit / 2, Admission::Leased { block: 40 }),
        "leased2day" => in_two_limits(limit / 2, limit, Admission::Leased { block: 40 }),
        _ => config(limit, Period::Day, admission(mode)),
    };
    let tracker = QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store)
        .sync_policy(SyncPolicy {
            interval_ms: 100,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    if parts.get(5) == Some(&"hold") {
        tracker.try_record("api", 1).unwrap();
        println!("holding");
        thread::sleep(Duration::from_secs(60));
        return;
    }
    let (mut admitted, mut unavailable) = (0u64, 0u64);
    for _ in 0..calls {
        if mode.starts_with("record") {
            tracker.record_call("api", 1).unwrap();
        } else {
            match tracker.try_record("api", 1) {
                Ok(_) => admitted += 1,
                Err(QuotaError::Denied {
                    reason: DenyReason::StoreUnavailable,
                    ..
                }) => unavailable += 1,
                Err(QuotaError::Denied { .. }) => {}
                Err(other) => panic!("{other}"),
            }
        }
        clock.advance(1);
    }
    tracker.flush().expect("the flush succeeds");
    let stats = tracker.stats();
    println!("admitted {admitted}");
    println!("unavailable {unavailable}");
    println!("failures {}", stats.save_failures + stats.load_failures);
}

fn child(spec: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--ignored",
            "--exact",
            "shared_redis_child",
            "--nocapture",
            "--quiet",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// What one child reported.
#[derive(Debug, Default, Clone, Copy)]
struct Report {
    admitted: u64,
    unavailable: u64,
    failures: u64,
}

/// Runs `processes` children of `spec` at once and waits for them all.
fn run_children(processes: usize, spec: &str) -> Vec<Report> {
    let children: Vec<Child> = (0..processes)
        .map(|_| child(spec).spawn().unwrap())
        .collect();
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let text = String::from_utf8(output.stdout).unwrap();
            assert!(output.status.success(), "a child failed: {text}");
            let field = |name: &str| -> u64 {
                text.lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name:?} in {text:?}"))
                    .trim()
                    .parse()
                    .unwrap()
            };
            Report {
                admitted: field("admitted "),
                unavailable: field("unavailable "),
                failures: field("failures "),
            }
        })
        .collect()
}

/// Noon of today (UTC): the children's clock, and the start of its day window.
fn noon_today() -> (u64, u64) {
    let start = SystemClock.now_ms() / DAY * DAY;
    (start + DAY / 2, start)
}

/// A thread that `GET`s `key` until stopped; the largest total it saw, and how often it looked.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(u64, u64)>,
}

impl Watcher {
    fn start(server: &Server, key: String) -> Watcher {
        let mut con = server.raw();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let (mut max, mut looks) = (0, 0);
            while !stopped.load(Ordering::SeqCst) {
                max = max.max(get(&mut con, &key));
                looks += 1;
                thread::sleep(Duration::from_micros(200));
            }
            (max, looks)
        });
        Watcher { stop, thread }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

#[test]
fn eight_processes_recording_through_redis_lose_nothing() {
    let _group = one_group_at_a_time();
    let server = Server::start();
    let (clock_ms, day) = noon_today();
    let spec = format!("record|{}|10000|1000000000|{clock_ms}", server.url());
    let reports = run_children(8, &spec);
    let failures: u64 = reports.iter().map(|r| r.failures).sum();
    assert_eq!(failures, 0, "no sync failed: {reports:?}");
    assert_eq!(get(&mut server.raw(), &key("api", "day", day)), 80_000);
}

/// 8 processes hold and settle through one Redis whose replies are lost now and then, in each
/// admission: the day's key ends at the sum of what they settled (and of the estimates of
/// holds dropped unsettled).
#[test]
fn eight_processes_settling_holds_through_redis_store_exactly_what_they_settled() {
    let _group = one_group_at_a_time();
    let server = Server::start();
    let (clock_ms, day) = noon_today();
    for admission in ["local", "exact", "leased25"] {
        let mut con = server.raw();
        redis::cmd("FLUSHALL").exec(&mut con).unwrap();
        let spec = format!("hold{admission}|{}|150|1000000000|{clock_ms}", server.url());
        let owed: u64 = run_children(8, &spec).iter().map(|r| r.admitted).sum();
        assert!(owed > 0);
        assert_eq!(get(&mut con, &key("api", "day", day)), owed, "{admission}");
    }
}

#[test]
fn eight_processes_recording_in_two_limits_through_redis_lose_nothing_in_either() {
    let _group = one_group_at_a_time();
    let server = Server::start();
    let (clock_ms, day) = noon_today();
    let spec = format!("record2|{}|5000|1000000000|{clock_ms}", server.url());
    let reports = run_children(8, &spec);
    let failures: u64 = reports.iter().map(|r| r.failures).sum();
    assert_eq!(failures, 0, "no sync failed: {reports:?}");
    // 5,000 calls 1 ms apart from noon: every child's stay in the noon hour.
    let mut con = server.raw();
    assert_eq!(get(&mut con, &key("api", "day", day)), 40_000);
    assert_eq!(get(&mut con, &key("api", "hour", clock_ms)), 40_000);
}

#[test]
fn exact_admission_in_two_limits_across_processes_admits_up_to_the_binding_one_in_both() {
    let _group = one_group_at_a_time();
    let server = Server::start();
    let (clock_ms, day) = noon_today();
    let mut con = server.raw();
    for (run, (mode, binding)) in [("exact2hour", "hour"), ("exact2day", "day")]
        .into_iter()
        .enumerate()
    {
        // Each run in windows of its own: the next day's noon for the second.
        let (clock_ms, day) = (
            clock_ms + run as u64 * 86_400_000,
            day + run as u64 * 86_400_000,
        );
        let watcher = Watcher::start(
            &server,
            key(
                "api",
                binding,
                if binding == "day" { day } else { clock_ms },
            ),
        );
        // 8 x 500 calls asked; the binding limit is 2,000, Critical at 1,600.
        let spec = format!("{mode}|{}|500|4000|{clock_ms}", server.url());
        let reports = run_children(8, &spec);
        let (max_seen, _) = watcher.finish();
        let unavailable: u64 = reports.iter().map(|r| r.unavailable).sum();
        assert_eq!(unavailable, 0, "Redis answered every call: {reports:?}");
        let admitted: u64 = reports.iter().map(|r| r.admitted).sum();
        assert_eq!(
            admitted, 1_600,
            "{binding}: critical at 0.8 x 2,000: {reports:?}"
        );
        assert!(max_seen <= 1_600, "Redis held {max_seen} at some point");
        // Every admitted call is in both limits' windows (500 calls 1 ms apart from noon stay
        // in the noon hour).
        assert_eq!(get(&mut con, &key("api", "day", day)), 1_600, "{mode}");
        assert_eq!(
            get(&mut con, &key("api", "hour", clock_ms)),
            1_600,
            "{mode}"
        );
    }
}

#[test]
fn leased_admission_in_two_limits_across_processes_never_passes_either() {
    let _group = one_group_at_a_time();
    let server = Server::start();
    let (clock_ms, day) = noon_today();
    let mut con = server.raw();
    for (run, (mode, binding)) in [("leased2hour", "hour"), ("leased2day", "day")]
        .into_iter()
        .enumerate()
    {
        // Each run in windows of its own: the next day's noon for the second.
        let (clock_ms, day) = (
            clock_ms + run as u64 * 86_400_000,
            day + run as u64 * 86_400_000,
        );
        let watched = key(
            "api",
            binding,
            if binding == "day" { day } else { clock_ms },
        );
        let watcher = Watcher::start(&server, watched);
        // 8 x 500 calls asked in blocks of 40; the binding limit is 2,000, Critical at 1,600.
        let spec = format!("{mode}|{}|500|4000|{clock_ms}", server.url());
        let reports = run_children(8, &spec);
        let (max_seen, _) = watcher.finish();
        let admitted: u64 = reports.iter().map(|r| r.admitted).sum();
        assert!(
            (1_600 - 8 * 40..=1_600).contains(&admitted),
            "{binding}: admitted {admitted}: {reports:?}"
        );
        assert!(max_seen <= 1_600, "Redis held {max_seen} at some point");
        // Every process gave back what it did not use, in both limits' windows.
        assert_eq!(get(&mut con, &key("api", "day", day)), admitted, "{mode}");
        assert_eq!(
            get(&mut con, &key("api", "hour", clock_ms)),
            admitted,
            "{mode}"
        );
    }
}

#[test]
fn exact_admission_across_processes_admits_exactly_up_to_critical_and_never_more() {
    let _group = one_group_at_a_time();
    let server = Server::start();
    let (clock_ms, day) = noon_today();
    let window = key("api", "day", day);
    let watcher = Watcher::start(&server, window.clone());
    let reports = run_children(8, &format!("exact|{}|5000|10000|{clock_ms}", server.url()));
    let (max_seen, looks) = watcher.finish();
    let unavailable: u64 = reports.iter().map(|r| r.unavailable).sum();
    assert_eq!(unavailable, 0, "Redis answered every call: {reports:?}");
    let admitted: u64 = reports.iter().map(|r| r.admitted).sum();
    assert_eq!(admitted, 8_000, "critical at 0.8 x 10,000: {reports:?}");
    assert!(looks > 10, "the watcher looked only {looks} times");
    assert!(max_seen <= 8_000, "Redis held {max_seen} at some point");
    assert_eq!(get(&mut server.raw(), &window), 8_000);
}

#[test]
fn leased_admission_across_processes_never_over_admits() {
    let _group = one_group_at_a_time();
    let server = Server::start();
    let (clock_ms, day) = noon_today();
    let window = key("api", "day", day);
    let watcher = Watcher::start(&server, window.clone());
    let reports = run_children(
        8,
        &format!("leased100|{}|5000|10000|{clock_ms}", server.url()),
    );
    let (max_seen, looks) = watcher.finish();
    let admitted: u64 = reports.iter().map(|r| r.admitted).sum();
    assert!(
        (8_000 - 8 * 100..=8_000).contains(&admitted),
        "admitted {admitted}: {reports:?}"
    );
    assert!(looks > 10, "the watcher looked only {looks} times");
    assert!(max_seen <= 8_000, "Redis held {max_seen} at some point");
    // Every process gave back what it did not use: Redis holds exactly what was admitted.
    assert_eq!(get(&mut server.raw(), &window), admitted);
}

#[test]
fn a_lease_holder_killed_with_sigkill_strands_only_its_block() {
    let _group = one_group_at_a_time();
    let server = Server::start();
    let (clock_ms, day) = noon_today();
    let window = key("api", "day", day);
    let mut holder = child(&format!(
        "leased100|{}|0|10000|{clock_ms}|hold",
        server.url()
    ))
    .spawn()
    .unwrap();
    let lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let holding = lines
        .map_while(Result::ok)
        .any(|line| line.trim() == "holding");
    assert!(holding, "the child never took its block");
    holder.kill().unwrap(); // SIGKILL while holding a block
    holder.wait().unwrap();
    let held = get(&mut server.raw(), &window);
    assert_eq!(held, 100, "the holder's block is counted in Redis");

    let watcher = Watcher::start(&server, window.clone());
    let reports = run_children(
        8,
        &format!("leased100|{}|5000|10000|{clock_ms}", server.url()),
    );
    let (max_seen, _) = watcher.finish();
    let admitted: u64 = reports.iter().map(|r| r.admitted).sum();
    assert!(
        admitted <= 8_000 - held,
        "admitted {admitted} with {held} stranded"
    );
    assert!(
        admitted >= 8_000 - held - 8 * 100,
        "admitted {admitted}: {reports:?}"
    );
    assert!(max_seen <= 8_000, "Redis held {max_seen} at some point");
    assert_eq!(get(&mut server.raw(), &window), admitted + held);
}

// ---------------------------------------------------------------------------------------------
// Faults under one tracker

/// A tracker on Redis (one `Local` month service `api`, no limit in sight) that syncs at every
/// call: `interval_ms` 0, and a `ManualClock` moved past the longest back-off before each.
struct Rig {
    tracker: QuotaTracker,
    clock: ManualClock,
    events: Arc<Mutex<Vec<StoreEvent>>>,
    recorded: u64,
    timeout: Duration,
}

/// Moves the clock past the longest back-off (30 s).
const PAST_BACKOFF: u64 = 31_000;
const FAULT_TIMEOUT: Duration = Duration::from_millis(750);

impl Rig {
    fn new(url: &str) -> Rig {
        let clock = ManualClock::new(MID_JUNE);
        let store = RedisStore::new(url).unwrap().timeout(FAULT_TIMEOUT);
        let tracker = QuotaTracker::builder(config(u64::MAX / 4, Period::Month, Admission::Local))
            .clock(clock.clone())
            .store(store)
            .sync_policy(SyncPolicy {
                interval_ms: 0,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap();
        assert_eq!(tracker.stats().load_failures, 0, "Redis is up at first");
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        tracker.on_store_event(move |event| seen.lock().unwrap().push(event.clone()));
        Rig {
            tracker,
            clock,
            events,
            recorded: 0,
            timeout: FAULT_TIMEOUT,
        }
    }

    /// One `record_call` (its sync is due); whether that sync succeeded. Exactly one sync runs,
    /// and it never takes much longer than the store's timeouts.
    fn step(&mut self) -> bool {
        self.clock.advance(PAST_BACKOFF);
        let before = self.tracker.stats();
        let started = Instant::now();
        self.tracker.record_call("api", 1).unwrap();
        self.recorded += 1;
        let took = started.elapsed();
        assert!(took < self.timeout * 4, "a call took {took:?}");
        let after = self.tracker.stats();
        let (saves, failures) = (
            after.saves - before.saves,
            after.save_failures - before.save_failures,
        );
        assert_eq!(saves + failures, 1, "one sync per call: {after:?}");
        saves == 1
    }

    fn events(&self) -> Vec<StoreEvent> {
        self.events.lock().unwrap().clone()
    }

    /// `good` steps that must all succeed.
    fn good(&mut self, good: usize) {
        for n in 1..=good {
            assert!(self.step(), "sync {n} failed: {:?}", self.tracker.stats());
        }
    }

    /// Three failed syncs turn reduced-rate mode on (not two); a fourth keeps it on.
    fn fail_into_reduced_rate(&mut self) {
        assert!(!self.tracker.is_reduced_rate());
        let before = self.events().len();
        for n in 1..=4 {
            assert!(!self.step(), "sync {n} should have failed");
            assert_eq!(self.tracker.is_reduced_rate(), n >= 3, "after {n} failures");
        }
        let events = self.events();
        assert_eq!(events.len(), before + 1, "{events:?}");
        assert!(
            matches!(
                events[before],
                StoreEvent::ReducedRateEntered {
                    consecutive_failures: 3,
                    ..
                }
            ),
            "{events:?}"
        );
    }

    /// Five good syncs turn it off (not four).
    fn recover(&mut self) {
        let before = self.events().len();
        for n in 1..=5 {
            assert!(self.step(), "sync {n} after recovery failed");
            assert_eq!(self.tracker.is_reduced_rate(), n < 5, "after {n} successes");
        }
        let events = self.events();
        assert_eq!(events.len(), before + 1, "{events:?}");
        assert!(
            matches!(
                events[before],
                StoreEvent::ReducedRateLeft {
                    consecutive_successes: 5,
                    ..
                }
            ),
            "{events:?}"
        );
    }

    /// Nothing lost, nothing counted twice: Redis holds exactly the calls recorded.
    fn check_totals(&self, server: &Server) {
        self.tracker.flush().unwrap();
        let total = get(&mut server.raw(), &key("api", "month", JUNE_START));
        assert_eq!(total, self.recorded, "Redis total against calls recorded");
        assert_eq!(self.tracker.usage("api").unwrap().used, self.recorded);
    }
}

#[test]
fn a_paused_redis_turns_reduced_rate_on_and_off_and_loses_nothing() {
    within(Duration::from_secs(120), || {
        let server = Server::start();
        let mut rig = Rig::new(&server.url());
        rig.good(3);
        server.signal("-STOP");
        rig.fail_into_reduced_rate();
        // The requests sent while paused are still in its sockets: resuming may apply them.
        server.signal("-CONT");
        rig.recover();
        rig.check_totals(&server);
    });
}

#[test]
fn a_redis_killed_and_restarted_with_appendonly_loses_nothing() {
    within(Duration::from_secs(120), || {
        let mut server = Server::with(Options {
            persistent: true,
            ..Options::default()
        });
        let mut rig = Rig::new(&server.url());
        rig.good(3);
        server.kill(); // SIGKILL
        rig.fail_into_reduced_rate();
        server.restart(); // same port, same folder: the append-only file comes back
        rig.recover();
        rig.check_totals(&server);
    });
}

#[test]
fn replies_dropped_after_the_request_went_through_count_once() {
    within(Duration::from_secs(120), || {
        let server = Server::start();
        let proxy = Proxy::start(server.port);
        let mut rig = Rig::new(&proxy.url());
        rig.good(3); // the scripts are loaded: one EVALSHA per sync from here on
                     // A connection cut once the reply is in: the store sends the sync again at once.
        proxy.lose_next_reply(true);
        rig.good(1);
        // Replies withheld: each sync is applied (the first) or deduplicated (its resends),
        // and times out.
        let lose = |rig: &mut Rig| {
            proxy.lose_next_reply(false);
            rig.step()
        };
        assert!(!rig.tracker.is_reduced_rate());
        for n in 1..=3 {
            assert!(!lose(&mut rig), "sync {n} should have failed");
            assert_eq!(rig.tracker.is_reduced_rate(), n == 3, "after {n} failures");
        }
        assert!(matches!(
            rig.events()[..],
            [StoreEvent::ReducedRateEntered {
                consecutive_failures: 3,
                ..
            }]
        ));
        let direct = get(&mut server.raw(), &key("api", "month", JUNE_START));
        assert!(
            direct > 4 && direct <= rig.recorded,
            "the first lost sync was applied: {direct}"
        );
        rig.recover();
        rig.check_totals(&server);
    });
}

// ---------------------------------------------------------------------------------------------
// Windows

#[test]
fn deltas_across_a_month_end_land_in_their_own_window_keys() {
    within(Duration::from_secs(60), || {
        let server = Server::start();
        // 2024-01-31 23:59:59 UTC, one second before February.
        let clock = ManualClock::new(FEBRUARY - 1_000);
        let services = [
            ("local", Admission::Local),
            ("exact", Admission::Exact),
            ("leased", Admission::Leased { block: 10 }),
        ];
        let config = TrackerConfig::new(services.iter().map(|(name, admission)| {
            ServiceConfig::builder(*name, 1_000, Period::Month)
                .admission(*admission)
                .build()
                .unwrap()
        }));
        let tracker = QuotaTracker::builder(config)
            .clock(clock.clone())
            .store(server.store())
            .sync_policy(SyncPolicy {
                interval_ms: 3_600_000,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap();
        for (name, _) in services {
            tracker.try_record(name, 4).unwrap();
        }
        clock.advance(2_000); // February
        for (name, _) in services {
            tracker.try_record(name, 6).unwrap();
        }
        tracker.flush().unwrap();
        let mut raw = server.raw();
        for (name, _) in services {
            let totals = (
                get(&mut raw, &key(name, "month", JANUARY)),
                get(&mut raw, &key(name, "month", FEBRUARY)),
            );
            assert_eq!(totals, (4, 6), "{name}: January, February");
        }
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("quota:*:month:*")
            .query(&mut raw)
            .unwrap();
        keys.sort();
        let mut expected: Vec<String> = ["exact", "leased", "local"]
            .iter()
            .flat_map(|name| [JANUARY, FEBRUARY].map(|start| key(name, "month", start)))
            .collect();
        expected.sort();
        assert_eq!(keys, expected);
    });
}

// ---------------------------------------------------------------------------------------------
// The server's clock

#[test]
fn the_server_clock_on_loopback_is_this_hosts_clock_within_its_error() {
    within(Duration::from_secs(60), || {
        let server = Server::start();
        let store = server.store();
        let clock = store.server_clock();
        let error = clock.error().expect("measured at construction");
        assert!(error < Duration::from_millis(50), "{error:?}");
        let offset = clock.offset_ms().unwrap();
        assert!(
            offset.abs() <= 20,
            "one host, one clock: offset {offset} ms"
        );
        let (local, server_time) = (SystemClock.now_ms(), clock.now_ms());
        assert!(
            local.abs_diff(server_time) <= 50,
            "{local} vs {server_time}"
        );
        // As the README has it: every host picks windows from the server's clock.
        let config = config(1_000, Period::Day, Admission::Exact);
        let tracker = QuotaTracker::builder(config)
            .clock(store.server_clock())
            .store(store)
            .build()
            .unwrap();
        tracker.try_record("api", 3).unwrap();
        let day = tracker.now_ms() / DAY * DAY;
        assert_eq!(get(&mut server.raw(), &key("api", "day", day)), 3);
        // Clones share the offset; readings never go backwards, on any thread.
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone().refresh_every(Duration::from_millis(1));
                thread::spawn(move || {
                    let mut last = 0;
                    for _ in 0..20_000 {
                        let now = clock.now_ms();
                        assert!(now >= last, "{now} after {last}");
                        last = now;
                    }
                })
            })
            .collect();
        for reader in readers {
            reader.join().unwrap();
        }
    });
}

#[test]
fn the_server_clock_picks_the_window_boundary() {
    within(Duration::from_secs(60), || {
        let server = Server::start();
        // The server (through a proxy that answers TIME) says it is 1.5 s before February
        // 2024; this host says it is today.
        let proxy = ClockProxy::start(server.port, (FEBRUARY as i64 - 1_500) * 1000);
        let store = RedisStore::new(&proxy.url())
            .unwrap()
            .timeout(Duration::from_secs(2));
        let clock = store.server_clock();
        assert!(clock.error().is_some());
        let config = config(1_000, Period::Month, Admission::Local);
        let tracker = QuotaTracker::builder(config)
            .clock(clock.clone())
            .store(store)
            .build()
            .unwrap();
        let before = tracker.now_ms();
        assert!(
            (FEBRUARY - 2_000..FEBRUARY).contains(&before),
            "the server's time: {before}"
        );
        tracker.record_call("api", 3).unwrap();
        assert_eq!(tracker.usage("api").unwrap().window_start_ms, JANUARY);
        let deadline = Instant::now() + Duration::from_secs(5);
        while clock.now_ms() < FEBRUARY {
            assert!(
                Instant::now() < deadline,
                "the server's clock does not move"
            );
            thread::sleep(Duration::from_millis(20));
        }
        tracker.record_call("api", 5).unwrap();
        assert_eq!(tracker.usage("api").unwrap().window_start_ms, FEBRUARY);
        tracker.flush().unwrap();
        let mut raw = server.raw();
        assert_eq!(get(&mut raw, &key("api", "month", JANUARY)), 3);
        assert_eq!(get(&mut raw, &key("api", "month", FEBRUARY)), 5);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("quota:*:month:*")
            .query(&mut raw)
            .unwrap();
        assert_eq!(keys.len(), 2, "no window from this host's clock: {keys:?}");
    });
}

#[test]
fn a_refresh_in_flight_never_blocks_readers_and_a_failed_one_keeps_the_offset() {
    within(Duration::from_secs(60), || {
        let mut server = Server::start();
        let store = server.store().timeout(Duration::from_secs(1));
        let clock = store
            .server_clock()
            .refresh_every(Duration::from_millis(50));
        let error = clock.error().unwrap();
        let offset = clock.offset_ms().unwrap();
        server.signal("-STOP");
        thread::sleep(Duration::from_millis(60)); // stale
        let refresher = {
            let clock = clock.clone();
            thread::spawn(move || {
                let started = Instant::now();
                let now = clock.now_ms(); // measures: waits for the paused server
                (now, started.elapsed())
            })
        };
        thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            let started = Instant::now();
            let now = clock.now_ms();
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(100),
                "a reader waited {took:?}"
            );
            assert!(now.abs_diff(SystemClock.now_ms()) <= 50, "{now}");
        }
        let (now, took) = refresher.join().unwrap();
        assert!(took >= Duration::from_millis(500), "it measured: {took:?}");
        assert!(now.abs_diff(SystemClock.now_ms()) <= 50 + took.as_millis() as u64);
        // Failed: the last offset and its error bound stay.
        assert_eq!(
            (clock.error(), clock.offset_ms()),
            (Some(error), Some(offset))
        );
        assert!(clock.refresh().is_err());
        server.signal("-CONT");
        clock.refresh().unwrap();
        // Down at construction: this host's clock until Redis answers.
        server.kill();
        let early = server.store().server_clock();
        assert_eq!((early.error(), early.offset_ms()), (None, None));
        assert!(early.now_ms().abs_diff(SystemClock.now_ms()) <= 50);
        server.restart();
        early.refresh().unwrap();
        assert!(early.error().is_some());
        assert!(early.now_ms().abs_diff(SystemClock.now_ms()) <= 50);
    });
}
