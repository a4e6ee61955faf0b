//! `RedisStore` against real `redis-server` processes: each test starts its own on a free
//! loopback port (never 6379) and kills it at the end. A test whose server cannot start fails
//! (install it with `cargo xtask test`, or `apt-get install redis-server`).

use quota_core::{
    AdmitReply, AdmitRequest, Delta, GiveBack, InstanceId, LeaseReply, LeaseRequest, Period,
    RedisStore, Store, StoreError, StoredState, SyncBatch, WindowKey,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY: u64 = 86_400_000;
const GRACE: u64 = 3_600_000;

// ---------------------------------------------------------------------------------------------
// The server

/// How to run a test's `redis-server`.
#[derive(Clone, Default)]
struct Options {
    /// `--appendonly yes --appendfsync always` instead of no persistence at all.
    persistent: bool,
    /// `--requirepass`.
    password: Option<String>,
    /// TLS only (a self-signed certificate made for the test), no plain port.
    tls: bool,
}

/// A `redis-server` child process, killed on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: Options,
}

impl Server {
    fn start() -> Server {
        Server::with(Options::default())
    }

    fn with(options: Options) -> Server {
        let dir = tempfile::tempdir().expect("a temporary folder for redis-server");
        if options.tls {
            make_certificate(dir.path());
        }
        let mut server = Server {
            child: None,
            port: 0,
            dir,
            options,
        };
        let mut last = String::new();
        // A port taken between choosing it and binding it: try another.
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(reason) => last = reason,
            }
        }
        panic!("redis-server could not start: {last}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts the process on `self.port` and waits until it answers.
    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let port = self.port.to_string();
        let mut args: Vec<String> = vec!["--bind".into(), "127.0.0.1".into()];
        if self.options.tls {
            for (flag, value) in [
                ("--port", "0".to_owned()),
                ("--tls-port", port.clone()),
                ("--tls-cert-file", path(&dir.join("server.pem"))),
                ("--tls-key-file", path(&dir.join("server.key"))),
                ("--tls-ca-cert-file", path(&dir.join("server.pem"))),
                ("--tls-auth-clients", "no".to_owned()),
            ] {
                args.extend([flag.to_owned(), value]);
            }
        } else {
            args.extend(["--port".to_owned(), port.clone()]);
        }
        args.extend(["--dir".to_owned(), path(dir)]);
        args.extend(["--save".to_owned(), String::new()]);
        if self.options.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        } else {
            args.extend(["--appendonly", "no"].map(String::from));
        }
        if let Some(password) = &self.options.password {
            args.extend(["--requirepass".to_owned(), password.clone()]);
        }
        args.extend(["--logfile".to_owned(), path(&self.log_path())]);
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "redis-server could not be started ({error}): these tests need it; \
                     `cargo xtask test` installs it (or `apt-get install redis-server`)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "redis-server exited ({status}) on port {port}; its log:\n{}",
                    self.log()
                ));
            }
            if self.ready() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!(
            "redis-server on port {port} did not answer within 15 s; its log:\n{}",
            self.log()
        ))
    }

    /// Answers `PING` (plain: `+PONG`, or `-NOAUTH` with a password), or (TLS) accepts
    /// connections and says it is ready.
    fn ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.options.tls {
            return self.log().contains("Ready to accept connections");
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok()
            && (line.starts_with("+PONG") || line.starts_with("-NOAUTH"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .expect("the server runs")
            .id()
            .to_string()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {signal} failed");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too; SIGCONT anyway, in case.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Killed (SIGKILL) and started again on the same port and folder.
    fn restart(&mut self) {
        self.kill();
        if let Err(reason) = self.spawn() {
            panic!("redis-server could not restart: {reason}");
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A store on this server, with short timeouts.
    fn store(&self) -> RedisStore {
        RedisStore::new(&self.url())
            .unwrap()
            .timeout(Duration::from_secs(2))
    }

    /// A plain connection, to look at keys.
    fn raw(&self) -> redis::Connection {
        let url = match &self.options.password {
            Some(password) => format!(
                "redis://:{}@127.0.0.1:{}",
                password.replace('%', "%25").replace('@', "%40"),
                self.port
            ),
            None => self.url(),
        };
        redis::Client::open(url)
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A loopback port nobody listens on now (never 6379).
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        if port != 6379 {
            return port;
        }
    }
}

/// A self-signed certificate for 127.0.0.1 (`server.pem`, `server.key`) in `dir`.
fn make_certificate(dir: &Path) {
    let output = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.pem"))
        .output()
        .unwrap_or_else(|error| panic!("openssl could not run ({error}): the TLS test needs it"));
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Batches

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `service`'s day window `days_ago` days before today's.
fn day(service: &str, days_ago: u64) -> WindowKey {
    let start_ms = now_ms() / DAY * DAY - days_ago * DAY;
    WindowKey {
        service: service.into(),
        period: Period::Day,
        start_ms,
        end_ms: start_ms + DAY,
    }
}

fn id(n: u128) -> InstanceId {
    InstanceId::from_u128(n)
}

fn batch(instance: u128, seq: u64, deltas: &[(&WindowKey, u64)], read: &[&WindowKey]) -> SyncBatch {
    SyncBatch {
        instance: id(instance),
        seq,
        at_ms: now_ms(),
        deltas: deltas
            .iter()
            .map(|&(window, calls)| Delta {
                window: window.clone(),
                calls,
            })
            .collect(),
        read: read.iter().map(|&w| w.clone()).collect(),
    }
}

fn total(store: &RedisStore, window: &WindowKey) -> u64 {
    store.sync(&batch(0, 0, &[], &[window])).unwrap()[0]
}

fn int(con: &mut redis::Connection, command: &str, key: &str) -> i64 {
    redis::cmd(command).arg(key).query(con).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Semantics

#[test]
fn deltas_add_up_across_instances_a_retry_counts_once_and_totals_read_back() {
    let server = Server::start();
    let store = server.store();
    let (a, b) = (day("a", 0), day("b", 0));
    let (a_old, never) = (day("a", 1), day("never", 0));
    let read = [&a, &b, &a_old, &never];
    assert_eq!(
        store.sync(&batch(1, 1, &[(&a, 5)], &read)),
        Ok(vec![5, 0, 0, 0])
    );
    assert_eq!(
        store.sync(&batch(2, 1, &[(&a, 3), (&b, 1), (&a_old, 2)], &read)),
        Ok(vec![8, 1, 2, 0])
    );
    // Instance 1 retries seq 1 (its reply was lost): applied once.
    assert_eq!(
        store.sync(&batch(1, 1, &[(&a, 5)], &read)),
        Ok(vec![8, 1, 2, 0])
    );
    // An older seq is not applied either; a newer one is.
    assert_eq!(
        store.sync(&batch(2, 0, &[(&a, 100)], &read)),
        Ok(vec![8, 1, 2, 0])
    );
    assert_eq!(
        store.sync(&batch(1, 2, &[(&a, 1)], &read)),
        Ok(vec![9, 1, 2, 0])
    );
    // One window twice in a batch: both count.
    assert_eq!(
        store.sync(&batch(3, 7, &[(&b, 1), (&b, 2)], &read)),
        Ok(vec![9, 4, 2, 0])
    );
    // Another store on the same server (another process) sees the same totals.
    let other = server.store();
    assert_eq!(other.sync(&batch(9, 0, &[], &read)), Ok(vec![9, 4, 2, 0]));
    // A batch with nothing in it only checks that Redis answers.
    assert_eq!(other.sync(&batch(9, 0, &[], &[])), Ok(vec![]));
}

#[test]
fn keys_are_named_per_service_and_window_and_always_expire() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let service = "we{ir}d%";
    let (today, yesterday) = (day(service, 0), day(service, 1));
    let mut future = day(service, 0);
    future.start_ms += 3650 * DAY; // a bogus clock, ten years ahead
    future.end_ms += 3650 * DAY;
    store
        .sync(&batch(
            0xabc,
            4,
            &[(&today, 2), (&yesterday, 3), (&future, 1)],
            &[],
        ))
        .unwrap();
    let base = "quota:{we%7Bir%7Dd%25}";
    let key = format!("{base}:day:{}", today.start_ms);
    assert_eq!(store.window_key(&today), key);
    let value: String = redis::cmd("GET").arg(&key).query(&mut raw).unwrap();
    assert_eq!(value, "2");
    // Today's window goes an hour after it ends, exactly.
    let expires = int(&mut raw, "PEXPIRETIME", &key);
    assert_eq!(expires as u64, today.end_ms + GRACE);
    // Yesterday's has ended: it goes an hour from now, not in the past.
    let ttl = int(
        &mut raw,
        "PTTL",
        &format!("{base}:day:{}", yesterday.start_ms),
    );
    assert!(
        ttl > (GRACE - 60_000) as i64 && ttl <= GRACE as i64,
        "{ttl}"
    );
    // The bogus future one lives at most two days and an hour.
    let ttl = int(&mut raw, "PTTL", &format!("{base}:day:{}", future.start_ms));
    assert!(ttl > 0 && ttl <= (2 * DAY + GRACE) as i64, "{ttl}");
    // The dedup record: the instance's last seq, expiring with the latest window counted.
    let instance = id(0xabc).to_string();
    let seq: String = redis::cmd("HGET")
        .arg(format!("{base}:applied"))
        .arg(&instance)
        .query(&mut raw)
        .unwrap();
    assert_eq!(seq, "4");
    for record in ["applied", "seen"] {
        let ttl = int(&mut raw, "PTTL", &format!("{base}:{record}"));
        assert!(ttl > DAY as i64, "{record}: {ttl}");
    }
    // Every key of the service shares one cluster slot (one hash tag) and expires.
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert_eq!(keys.len(), 5, "{keys:?}");
    for key in &keys {
        assert!(key.starts_with("quota:{we%7Bir%7Dd%25}:"), "{key}");
        assert!(int(&mut raw, "PTTL", key) > 0, "{key} does not expire");
    }
    // A lease record too.
    store
        .lease(&LeaseRequest {
            instance: id(0xabc),
            seq: 1,
            window: today.clone(),
            block: 5,
            ceiling: 100,
        })
        .unwrap();
    let lease = format!("{base}:lease:{instance}");
    assert!(int(&mut raw, "PTTL", &lease) > 0);
    // Names that differ only by escaping stay apart; a prefix of one's own.
    let prefixed = server.store().prefix("app{1}");
    let plain = day("we%7Bir%7Dd%25", 0);
    prefixed.sync(&batch(1, 1, &[(&plain, 7)], &[])).unwrap();
    assert_eq!(
        prefixed.window_key(&plain),
        format!("app%7B1%7D:{{we%257Bir%257Dd%2525}}:day:{}", plain.start_ms)
    );
    assert_eq!(total(&prefixed, &plain), 7);
    assert_eq!(total(&prefixed, &today), 0, "another prefix, other keys");
    assert_eq!(total(&store, &today), 7, "2 synced + 5 leased");
    // The empty name still makes a non-empty hash tag.
    assert_eq!(
        store.window_key(&day("", 0)),
        format!("quota:{{%}}:day:{}", today.start_ms)
    );
}

#[test]
fn admit_lease_and_give_back_match_stored_state() {
    let server = Server::start();
    let store = server.store();
    let w = day("s", 0);
    let admit = |count, below, cap, force| AdmitRequest {
        window: w.clone(),
        count,
        below,
        cap,
        force,
    };
    assert_eq!(
        store.admit(&admit(3, 8, 10, false)),
        Ok(AdmitReply::Admitted { total: 3 })
    );
    assert_eq!(
        store.admit(&admit(8, 8, 10, false)),
        Ok(AdmitReply::Denied { total: 3 }),
        "3 + 8 is over the cap"
    );
    assert_eq!(
        store.admit(&admit(5, 8, 10, false)),
        Ok(AdmitReply::Admitted { total: 8 })
    );
    assert_eq!(
        store.admit(&admit(1, 8, 10, false)),
        Ok(AdmitReply::Denied { total: 8 }),
        "not below 8"
    );
    assert_eq!(
        store.admit(&admit(5, 8, 10, true)),
        Ok(AdmitReply::Admitted { total: 13 })
    );
    let lease = |instance, seq, block, ceiling| LeaseRequest {
        instance: id(instance),
        seq,
        window: w.clone(),
        block,
        ceiling,
    };
    assert_eq!(
        store.lease(&lease(1, 1, 10, 20)),
        Ok(LeaseReply {
            granted: 7,
            total: 20
        })
    );
    // A retry gets the same grant (and adds nothing); an older seq gets nothing.
    assert_eq!(
        store.lease(&lease(1, 1, 10, 20)),
        Ok(LeaseReply {
            granted: 7,
            total: 20
        })
    );
    assert_eq!(
        store.lease(&lease(1, 0, 10, 40)),
        Ok(LeaseReply {
            granted: 0,
            total: 20
        })
    );
    assert_eq!(
        store.lease(&lease(2, 1, 10, 20)),
        Ok(LeaseReply {
            granted: 0,
            total: 20
        }),
        "no headroom"
    );
    let give_back = |instance, seq, unused| GiveBack {
        instance: id(instance),
        seq,
        window: w.clone(),
        unused,
    };
    store.give_back(&give_back(1, 1, 4)).unwrap();
    store.give_back(&give_back(1, 1, 4)).unwrap(); // a retry
    assert_eq!(total(&store, &w), 16);
    store.give_back(&give_back(1, 2, 100)).unwrap();
    assert_eq!(total(&store, &w), 0, "never below zero");
    assert_eq!(
        store.lease(&lease(1, 2, 5, 20)),
        Ok(LeaseReply {
            granted: 5,
            total: 5
        })
    );
}

/// A small deterministic generator (no dependency on a random crate).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next() as usize % items.len()]
    }
}

/// Random syncs, admissions, leases and give-backs (numbers up to `u64::MAX` and around
/// `MAX_TOTAL` included), each answered exactly as `StoredState` answers it.
#[test]
fn every_operation_answers_exactly_as_stored_state() {
    let server = Server::start();
    let store = server.store();
    let mut reference = StoredState::new();
    let windows = [day("a", 0), day("a", 1), day("b", 0), day("b", 1)];
    let max = StoredState::MAX_TOTAL;
    let numbers = [
        0,
        1,
        2,
        5,
        17,
        100,
        (1 << 53) + 1,
        max - 3,
        max - 1,
        max,
        max + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    let mut rng = Lcg(7);
    let mut seqs = [0u64; 4];
    let mut lease_seqs = [0u64; 4];
    for step in 0..1_500u32 {
        let instance = rng.next() as usize % 4;
        let next_seq = |seqs: &mut [u64; 4], rng: &mut Lcg| match rng.next() % 5 {
            0 => seqs[instance],                   // a retry
            1 => seqs[instance].saturating_sub(1), // an old one
            _ => {
                seqs[instance] += 1;
                seqs[instance]
            }
        };
        let small = |rng: &mut Lcg| rng.pick(&numbers[..6]);
        let any = |rng: &mut Lcg| {
            if rng.next().is_multiple_of(4) {
                rng.pick(&numbers)
            } else {
                small(rng)
            }
        };
        let window = rng.pick(&[0, 1, 2, 3]);
        let window = &windows[window];
        match rng.next() % 4 {
            0 => {
                let seq = next_seq(&mut seqs, &mut rng);
                let n = 1 + rng.next() % 3;
                let deltas: Vec<Delta> = (0..n)
                    .map(|_| Delta {
                        window: windows[rng.next() as usize % 4].clone(),
                        calls: any(&mut rng),
                    })
                    .collect();
                let batch = SyncBatch {
                    instance: id(instance as u128 + 1),
                    seq,
                    at_ms: 0,
                    deltas,
                    read: windows.to_vec(),
                };
                assert_eq!(
                    store.sync(&batch),
                    Ok(reference.apply(&batch)),
                    "{step}: {batch:?}"
                );
            }
            1 => {
                let request = AdmitRequest {
                    window: window.clone(),
                    count: any(&mut rng),
                    below: any(&mut rng).max(small(&mut rng)),
                    cap: any(&mut rng),
                    force: rng.next().is_multiple_of(5),
                };
                assert_eq!(
                    store.admit(&request),
                    Ok(reference.admit(&request)),
                    "{step}: {request:?}"
                );
            }
            2 => {
                let request = LeaseRequest {
                    instance: id(instance as u128 + 1),
                    seq: next_seq(&mut lease_seqs, &mut rng),
                    window: window.clone(),
                    block: any(&mut rng),
                    ceiling: any(&mut rng),
                };
                assert_eq!(
                    store.lease(&request),
                    Ok(reference.lease(&request)),
                    "{step}: {request:?}"
                );
            }
            _ => {
                let request = GiveBack {
                    instance: id(instance as u128 + 1),
                    seq: next_seq(&mut lease_seqs, &mut rng),
                    window: window.clone(),
                    unused: any(&mut rng),
                };
                store.give_back(&request).unwrap();
                reference.give_back(&request);
            }
        }
        if step.is_multiple_of(100) {
            // Totals too (not only what operations answered).
            for window in &windows {
                assert_eq!(total(&store, window), reference.total(window), "{step}");
            }
        }
    }
}

#[test]
fn data_of_the_wrong_kind_fails_the_call_and_changes_nothing() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let (good, bad) = (day("s", 0), day("s", 1));
    let _: () = redis::cmd("SET")
        .arg(store.window_key(&bad))
        .arg("twelve")
        .query(&mut raw)
        .unwrap();
    // `good` sorts first: its delta would be written first, were anything checked late.
    let attempt = batch(1, 1, &[(&good, 5), (&bad, 1)], &[]);
    assert!(matches!(store.sync(&attempt), Err(StoreError::Corrupt(_))));
    let _: () = redis::cmd("SET")
        .arg(store.window_key(&bad))
        .arg("12")
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        store.sync(&attempt),
        Ok(vec![]),
        "nothing recorded: not a retry"
    );
    assert_eq!(total(&store, &good), 5);
    assert_eq!(total(&store, &bad), 13);
    let _: () = redis::cmd("DEL")
        .arg(store.window_key(&good))
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(store.window_key(&good))
        .arg("x")
        .arg("1")
        .query(&mut raw)
        .unwrap();
    let error = store.sync(&batch(0, 0, &[], &[&good])).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
}

// ---------------------------------------------------------------------------------------------
// Concurrency and connections

#[test]
fn eight_threads_of_a_thousand_syncs_from_distinct_instances_count_exactly() {
    let server = Server::start();
    let store = Arc::new(server.store());
    let w = day("busy", 0);
    let threads: Vec<_> = (0..8u128)
        .map(|t| {
            let (store, w) = (store.clone(), w.clone());
            thread::spawn(move || {
                for i in 0..1_000u128 {
                    let totals = store
                        .sync(&batch(t * 10_000 + i + 1, 1, &[(&w, 1)], &[&w]))
                        .unwrap();
                    assert!((1..=8_000).contains(&totals[0]));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(total(&store, &w), 8_000);
    assert!(
        store.idle_connections() > 1,
        "threads used their own connections"
    );
}

#[test]
fn a_paused_server_times_out_then_works_again() {
    let server = Server::start();
    let store = server.store().timeout(Duration::from_millis(300));
    let w = day("p", 0);
    store.sync(&batch(1, 1, &[(&w, 1)], &[&w])).unwrap();
    server.signal("-STOP");
    let lost = batch(1, 2, &[(&w, 10)], &[&w]);
    let started = Instant::now();
    let error = store.sync(&lost).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&error, StoreError::Io(m) if m.contains("did not answer")),
        "{error:?}"
    );
    // A new store cannot even connect (the handshake times out).
    let started = Instant::now();
    let fresh = server.store().timeout(Duration::from_millis(300));
    let error = fresh.sync(&lost).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    server.signal("-CONT");
    // The request sent while paused may have been applied on resuming: the retry counts once.
    assert_eq!(store.sync(&lost), Ok(vec![11]));
    assert_eq!(fresh.sync(&lost), Ok(vec![11]));
}

#[test]
fn totals_survive_a_restart_with_appendonly_and_the_store_reconnects() {
    let mut server = Server::with(Options {
        persistent: true,
        ..Options::default()
    });
    let store = server.store();
    let w = day("r", 0);
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 42)], &[&w])), Ok(vec![42]));
    store
        .lease(&LeaseRequest {
            instance: id(1),
            seq: 1,
            window: w.clone(),
            block: 8,
            ceiling: 100,
        })
        .unwrap();
    server.restart();
    // Same store, pooled connection closed by the restart: reconnected, no error.
    assert_eq!(store.sync(&batch(1, 2, &[(&w, 1)], &[&w])), Ok(vec![51]));
    // The dedup and lease records survived too.
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 42)], &[&w])), Ok(vec![51]));
    assert_eq!(
        store.lease(&LeaseRequest {
            instance: id(1),
            seq: 1,
            window: w.clone(),
            block: 8,
            ceiling: 100,
        }),
        Ok(LeaseReply {
            granted: 8,
            total: 51
        })
    );
    assert_eq!(
        store.admit(&AdmitRequest {
            window: w.clone(),
            count: 1,
            below: 100,
            cap: 100,
            force: false
        }),
        Ok(AdmitReply::Admitted { total: 52 })
    );
    // Down: an error, not a hang; up again: works.
    server.kill();
    assert!(store.sync(&batch(1, 3, &[(&w, 1)], &[&w])).is_err());
    server.restart();
    assert_eq!(store.sync(&batch(1, 3, &[(&w, 1)], &[&w])), Ok(vec![53]));
}

/// A loopback TCP proxy in front of Redis that counts script calls (`EVALSHA`) and loses the
/// reply of the one numbered `drop_at`: withheld (the client times out) or cut off (the
/// connection closes once the reply is in).
struct Proxy {
    port: u16,
    evalsha: Arc<AtomicUsize>,
    drop_at: Arc<AtomicUsize>,
    close: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            evalsha: Arc::default(),
            drop_at: Arc::default(),
            close: Arc::default(),
        };
        let (evalsha, drop_at, close) = (
            proxy.evalsha.clone(),
            proxy.drop_at.clone(),
            proxy.close.clone(),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (evalsha, drop_at, close) = (evalsha.clone(), drop_at.clone(), close.clone());
                thread::spawn(move || forward(client, upstream, &evalsha, &drop_at, &close));
            }
        });
        proxy
    }

    /// Loses the reply of the next script call.
    fn lose_next_reply(&self, close: bool) {
        self.close.store(close, Ordering::SeqCst);
        self.drop_at
            .store(self.evalsha.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

fn forward(
    mut client: TcpStream,
    upstream: u16,
    evalsha: &AtomicUsize,
    drop_at: &AtomicUsize,
    close: &AtomicBool,
) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let losing = Arc::new(AtomicBool::new(false));
    // Whether to cut the connection rather than withhold the reply, decided when losing starts.
    let cut = Arc::new(AtomicBool::new(false));
    {
        let cut = cut.clone();
        let (mut from, mut to, losing) = (
            server.try_clone().unwrap(),
            client.try_clone().unwrap(),
            losing.clone(),
        );
        thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if losing.load(Ordering::SeqCst) {
                    if cut.load(Ordering::SeqCst) {
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                        break;
                    }
                    continue; // withheld
                }
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let calls = buffer[..n].windows(7).filter(|w| w == b"EVALSHA").count();
        for _ in 0..calls {
            if evalsha.fetch_add(1, Ordering::SeqCst) + 1 == drop_at.load(Ordering::SeqCst) {
                cut.store(close.load(Ordering::SeqCst), Ordering::SeqCst);
                losing.store(true, Ordering::SeqCst);
            }
        }
        if server.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
}

#[test]
fn a_lost_reply_fails_the_call_and_its_retry_counts_once() {
    let server = Server::start();
    let proxy = Proxy::start(server.port);
    let store = RedisStore::new(&proxy.url())
        .unwrap()
        .timeout(Duration::from_millis(400));
    let direct = server.store();
    let w = day("lossy", 0);
    // The first call of each script loads it (NOSCRIPT, SCRIPT LOAD): later ones are one
    // EVALSHA each.
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 1)], &[&w])), Ok(vec![1]));
    let other = day("other", 0);
    let warm = |seq| LeaseRequest {
        instance: id(9),
        seq,
        window: other.clone(),
        block: 1,
        ceiling: 1,
    };
    store.lease(&warm(1)).unwrap();
    store
        .admit(&AdmitRequest {
            window: other.clone(),
            count: 1,
            below: 0,
            cap: 0,
            force: false,
        })
        .unwrap();

    // The reply is withheld: the sync fails (timeout); it was applied; the retry counts once.
    proxy.lose_next_reply(false);
    let lost = batch(1, 2, &[(&w, 10)], &[&w]);
    let error = store.sync(&lost).unwrap_err();
    assert!(matches!(error, StoreError::Io(_)), "{error:?}");
    assert_eq!(
        total(&direct, &w),
        11,
        "applied although the reply was lost"
    );
    assert_eq!(store.sync(&lost), Ok(vec![11]));

    // The same for a lease: the retry gets the same grant.
    proxy.lose_next_reply(false);
    let lease = LeaseRequest {
        instance: id(1),
        seq: 1,
        window: w.clone(),
        block: 5,
        ceiling: 100,
    };
    assert!(store.lease(&lease).is_err());
    assert_eq!(
        total(&direct, &w),
        16,
        "granted although the reply was lost"
    );
    assert_eq!(
        store.lease(&lease),
        Ok(LeaseReply {
            granted: 5,
            total: 16
        })
    );

    // The connection is cut after the reply arrived: the store sends the sync again on a new
    // connection at once (it counts once), so the caller sees no error.
    proxy.lose_next_reply(true);
    assert_eq!(store.sync(&batch(1, 3, &[(&w, 100)], &[&w])), Ok(vec![116]));
    assert_eq!(total(&direct, &w), 116);

    // An admission has no dedup record: a cut connection is an error, never a resend.
    proxy.lose_next_reply(true);
    let admit = AdmitRequest {
        window: w.clone(),
        count: 1,
        below: 1_000,
        cap: 1_000,
        force: false,
    };
    assert!(matches!(store.admit(&admit), Err(StoreError::Io(_))));
    assert_eq!(total(&direct, &w), 117, "applied once, not resent");
}

// ---------------------------------------------------------------------------------------------
// Hosted Redis: credentials and TLS

const PASSWORD: &str = "s3cr3t:P@ss%word";
const PASSWORD_IN_URL: &str = "s3cr3t%3AP%40ss%25word";

fn assert_hidden(text: &str) {
    for secret in [PASSWORD, PASSWORD_IN_URL, "wr0ng-Secret", "hunter2-x"] {
        assert!(!text.contains(secret), "{secret:?} shown in {text:?}");
    }
}

#[test]
fn credentials_in_the_url_work_and_the_password_never_shows() {
    let server = Server::with(Options {
        password: Some(PASSWORD.into()),
        ..Options::default()
    });
    let w = day("auth", 0);
    // No password, a wrong one: errors that do not show it.
    for url in [
        server.url(),
        format!("redis://:wr0ng-Secret@127.0.0.1:{}", server.port),
        format!("redis://default:wr0ng-Secret@127.0.0.1:{}/0", server.port),
    ] {
        let store = RedisStore::new(&url).unwrap();
        assert_hidden(&format!("{store:?}"));
        let error = store.sync(&batch(1, 1, &[(&w, 1)], &[&w])).unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert_hidden(&error.to_string());
        assert_hidden(&format!("{error:?}"));
    }
    // The right one works.
    let url = format!(
        "redis://default:{PASSWORD_IN_URL}@127.0.0.1:{}/0",
        server.port
    );
    let store = RedisStore::new(&url)
        .unwrap()
        .timeout(Duration::from_millis(300));
    let shown = format!("{store:?}");
    assert_hidden(&shown);
    assert!(
        shown.contains("<redacted>") && shown.contains("default"),
        "{shown}"
    );
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 3)], &[&w])), Ok(vec![3]));
    // Errors after connecting do not show it either.
    server.signal("-STOP");
    let error = store.sync(&batch(1, 2, &[(&w, 3)], &[&w])).unwrap_err();
    server.signal("-CONT");
    assert_hidden(&format!("{error} {error:?}"));
    // Nor does a URL that does not parse.
    for url in [
        "redis://:hunter2-x@127.0.0.1:notaport",
        "redis://u:hunter2-x@[::1/",
        "nope://:hunter2-x@host",
    ] {
        let error = RedisStore::new(url).unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert_hidden(&format!("{error} {error:?}"));
    }
}

#[test]
fn tls_with_a_self_signed_certificate() {
    let server = Server::with(Options {
        tls: true,
        password: Some(PASSWORD.into()),
        ..Options::default()
    });
    let certificate = std::fs::read(server.dir.path().join("server.pem")).unwrap();
    let url = format!("rediss://:{PASSWORD_IN_URL}@127.0.0.1:{}", server.port);
    let w = day("tls", 0);
    // Without trusting the certificate: refused.
    let untrusted = RedisStore::new(&url).unwrap();
    let error = untrusted.sync(&batch(1, 1, &[(&w, 1)], &[&w])).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_hidden(&format!("{error} {error:?}"));
    // Trusting it: works, scripts and all.
    let store = RedisStore::new(&url)
        .unwrap()
        .tls_root_certificate(&certificate)
        .unwrap();
    assert_hidden(&format!("{store:?}"));
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 4)], &[&w])), Ok(vec![4]));
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 4)], &[&w])), Ok(vec![4]));
    assert_eq!(
        store.admit(&AdmitRequest {
            window: w.clone(),
            count: 2,
            below: 10,
            cap: 10,
            force: false
        }),
        Ok(AdmitReply::Admitted { total: 6 })
    );
    // A root certificate needs a rediss:// URL.
    assert!(RedisStore::new("redis://127.0.0.1:1")
        .unwrap()
        .tls_root_certificate(&certificate)
        .is_err());
}
