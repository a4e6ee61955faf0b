//! The `redis-server` harness shared by the Redis tests: a server per test on a free loopback
//! port (never 6379), killed on drop; a self-signed certificate for TLS; loopback proxies that
//! lose replies (`Proxy`), lose commands and replies at random and refuse reconnects for a
//! while (`LossyProxy`), or make the server's clock read another time (`ClockProxy`).
//! Included by each test file that needs it:
//! `#[path = "support/redis_server.rs"] mod redis_server;`.
//!
//! A server that cannot start fails the test with its log (install `redis-server` with
//! `cargo xtask test`, or `apt-get install redis-server`); no test is ever skipped.

// Each test file uses only some of the harness.
#![allow(dead_code)]

use quota_core::RedisStore;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How to run a test's `redis-server`.
#[derive(Clone, Default)]
pub struct Options {
    /// `--appendonly yes --appendfsync always` instead of no persistence at all.
    pub persistent: bool,
    /// `--requirepass`.
    pub password: Option<String>,
    /// TLS only (a self-signed certificate made for the test), no plain port.
    pub tls: bool,
}

/// A `redis-server` child process, killed on drop.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub options: Options,
}

impl Server {
    pub fn start() -> Server {
        Server::with(Options::default())
    }

    pub fn with(options: Options) -> Server {
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

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts the process on `self.port` and waits until it answers.
    pub fn spawn(&mut self) -> Result<(), String> {
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
        // Its log says when it is ready: our process's, never another test process's server
        // that took the port between choosing and binding it (a restart appends to the same
        // log, so a new line is what counts).
        let readies_before = self.readies();
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
            if self.readies() > readies_before && self.answers() {
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

    /// How many times its log says it was ready to accept connections.
    fn readies(&self) -> usize {
        self.log().matches("Ready to accept connections").count()
    }

    /// Answers `PING` (plain: `+PONG`, or `-NOAUTH` with a password), or (TLS) accepts
    /// connections.
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.options.tls {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok()
            && (line.starts_with("+PONG") || line.starts_with("-NOAUTH"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> String {
        self.child
            .as_ref()
            .expect("the server runs")
            .id()
            .to_string()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {signal} failed");
    }

    pub fn kill(&mut self) {
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
    pub fn restart(&mut self) {
        self.kill();
        if let Err(reason) = self.spawn() {
            panic!("redis-server could not restart: {reason}");
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A store on this server, with short timeouts.
    pub fn store(&self) -> RedisStore {
        RedisStore::new(&self.url())
            .unwrap()
            .timeout(Duration::from_secs(2))
    }

    /// A plain connection, to look at keys.
    pub fn raw(&self) -> redis::Connection {
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

pub fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A loopback port nobody listens on now (never 6379).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        if port != 6379 {
            return port;
        }
    }
}

/// A self-signed certificate for 127.0.0.1 (`server.pem`, `server.key`) in `dir`.
pub fn make_certificate(dir: &Path) {
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

/// A loopback TCP proxy in front of Redis that counts script calls (`EVALSHA`) and loses the
/// reply of the one numbered `drop_at`: withheld (the client times out) or cut off (the
/// connection closes once the reply is in). While `refuse` is set it closes every new
/// connection at once (Redis seems down); `refuse_on_cut` sets it as a reply is cut off, so
/// the client's reconnect fails. Every reply waits `delay_ms` before it is passed on.
pub struct Proxy {
    pub port: u16,
    pub evalsha: Arc<AtomicUsize>,
    pub drop_at: Arc<AtomicUsize>,
    pub close: Arc<AtomicBool>,
    pub refuse: Arc<AtomicBool>,
    pub refuse_on_cut: Arc<AtomicBool>,
    pub delay_ms: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            evalsha: Arc::default(),
            drop_at: Arc::default(),
            close: Arc::default(),
            refuse: Arc::default(),
            refuse_on_cut: Arc::default(),
            delay_ms: Arc::default(),
        };
        let switches = Switches {
            evalsha: proxy.evalsha.clone(),
            drop_at: proxy.drop_at.clone(),
            close: proxy.close.clone(),
            refuse: proxy.refuse.clone(),
            refuse_on_cut: proxy.refuse_on_cut.clone(),
            delay_ms: proxy.delay_ms.clone(),
        };
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if switches.refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let switches = switches.clone();
                thread::spawn(move || forward(client, upstream, &switches));
            }
        });
        proxy
    }

    /// Cuts the connection once the next script call's reply is in (it was applied), and
    /// closes every new connection from then on, until `refuse` is cleared.
    pub fn lose_next_reply_and_refuse(&self) {
        self.refuse_on_cut.store(true, Ordering::SeqCst);
        self.lose_next_reply(true);
    }

    /// Loses the reply of the next script call.
    pub fn lose_next_reply(&self, close: bool) {
        self.close.store(close, Ordering::SeqCst);
        self.drop_at
            .store(self.evalsha.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// The proxy's shared switches (see [`Proxy`]).
#[derive(Clone)]
struct Switches {
    evalsha: Arc<AtomicUsize>,
    drop_at: Arc<AtomicUsize>,
    close: Arc<AtomicBool>,
    refuse: Arc<AtomicBool>,
    refuse_on_cut: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

fn forward(mut client: TcpStream, upstream: u16, switches: &Switches) {
    let Switches {
        evalsha,
        drop_at,
        close,
        ..
    } = switches;
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
        let (refuse, refuse_on_cut) = (switches.refuse.clone(), switches.refuse_on_cut.clone());
        let delay_ms = switches.delay_ms.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if losing.load(Ordering::SeqCst) {
                    if cut.load(Ordering::SeqCst) {
                        // Before the cut: the client's reconnect must find the door shut.
                        if refuse_on_cut.swap(false, Ordering::SeqCst) {
                            refuse.store(true, Ordering::SeqCst);
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                        break;
                    }
                    continue; // withheld
                }
                let delay = delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    thread::sleep(std::time::Duration::from_millis(delay));
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

/// How a [`LossyProxy`] loses traffic.
#[derive(Clone, Debug)]
pub struct Loss {
    /// The chance that a command (one not [exempt](LossyProxy::EXEMPT)) is lost, 0 to 1.
    pub probability: f64,
    /// Of the losses, the share that lose the reply of a command Redis applied (the rest lose
    /// the command before it reaches Redis), 0 to 1.
    pub after_reply: f64,
    /// After each loss, new connections are refused for a time drawn from this range (ms;
    /// `0..0`: never), so that the client's reconnect fails too.
    pub refuse_ms: std::ops::Range<u64>,
    /// Seeds the draws: connection `n` draws from its own generator seeded with `seed` and `n`.
    pub seed: u64,
}

/// What a [`LossyProxy`] did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossCounts {
    /// Client connections accepted and forwarded.
    pub connections: u64,
    /// Client connections closed at once, while refusing.
    pub refused: u64,
    /// Commands that could be lost, forwarded whole with their reply.
    pub forwarded: u64,
    /// Exempt commands, forwarded whole with their reply.
    pub exempt: u64,
    /// Commands Redis received and answered whose reply the client never got.
    pub replies_dropped: u64,
    /// Commands that never reached Redis.
    pub commands_dropped: u64,
}

impl std::ops::Add for LossCounts {
    type Output = LossCounts;

    /// The counts of two proxies together.
    fn add(self, other: LossCounts) -> LossCounts {
        LossCounts {
            connections: self.connections + other.connections,
            refused: self.refused + other.refused,
            forwarded: self.forwarded + other.forwarded,
            exempt: self.exempt + other.exempt,
            replies_dropped: self.replies_dropped + other.replies_dropped,
            commands_dropped: self.commands_dropped + other.commands_dropped,
        }
    }
}

#[derive(Default)]
struct LossCounters {
    connections: AtomicU64,
    refused: AtomicU64,
    forwarded: AtomicU64,
    exempt: AtomicU64,
    replies_dropped: AtomicU64,
    commands_dropped: AtomicU64,
}

/// A loopback TCP proxy in front of Redis that forwards one whole RESP command, then its
/// whole reply, and per command, at random ([`Loss`]), either
/// - forwards the command, waits for Redis's reply, drops it and closes the client's
///   connection (applied, reply lost: the failure exactly-once is about), or
/// - closes the client's connection without forwarding it (not applied);
///
/// then refuses new connections (accepts and closes them at once) for a while, so the client's
/// reconnect fails too. Commands in [`EXEMPT`](Self::EXEMPT) are never lost.
pub struct LossyProxy {
    pub port: u16,
    counters: Arc<LossCounters>,
    /// Losses happen only while set (on from the start).
    lossy: Arc<AtomicBool>,
}

impl LossyProxy {
    /// Commands never lost: the connection handshake and liveness checks (the Redis client's
    /// `HELLO`, `AUTH`, `SELECT`, `CLIENT SETINFO`, and `RedisStore`'s `PING` when it connects,
    /// before reusing an idle connection and for a sync with nothing to send). They count
    /// nothing, and losing them only makes a connect fail, which the refusal after each loss
    /// does already; losing them too would mostly slow the tests down. Everything else
    /// (`EVALSHA`, `EVAL`, `SCRIPT LOAD`, `GET`, `TIME`...) may be lost.
    pub const EXEMPT: [&'static str; 6] = ["HELLO", "AUTH", "SELECT", "CLIENT", "PING", "QUIT"];

    pub fn start(upstream: u16, loss: Loss) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = LossyProxy {
            port: listener.local_addr().unwrap().port(),
            counters: Arc::default(),
            lossy: Arc::new(AtomicBool::new(true)),
        };
        let (counters, lossy) = (proxy.counters.clone(), proxy.lossy.clone());
        // Refusing new connections until then.
        let refuse_until = Arc::new(Mutex::new(Instant::now()));
        thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { return };
                let refusing = {
                    let until = refuse_until.lock().unwrap_or_else(PoisonError::into_inner);
                    Instant::now() < *until
                };
                if refusing {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let rng = XorShift::new(loss.seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let link = Link {
                    loss: loss.clone(),
                    rng,
                    counters: counters.clone(),
                    lossy: lossy.clone(),
                    refuse_until: refuse_until.clone(),
                };
                thread::spawn(move || {
                    let _ = link.forward(client, upstream);
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn counts(&self) -> LossCounts {
        let c = &self.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LossCounts {
            connections: read(&c.connections),
            refused: read(&c.refused),
            forwarded: read(&c.forwarded),
            exempt: read(&c.exempt),
            replies_dropped: read(&c.replies_dropped),
            commands_dropped: read(&c.commands_dropped),
        }
    }

    /// Turns losses (and refusals) on or off from now on.
    pub fn set_lossy(&self, lossy: bool) {
        self.lossy.store(lossy, Ordering::SeqCst);
    }
}

/// One client connection of a [`LossyProxy`].
struct Link {
    loss: Loss,
    rng: XorShift,
    counters: Arc<LossCounters>,
    lossy: Arc<AtomicBool>,
    refuse_until: Arc<Mutex<Instant>>,
}

impl Link {
    fn forward(mut self, client: TcpStream, upstream: u16) -> std::io::Result<()> {
        let server = TcpStream::connect(("127.0.0.1", upstream))?;
        let (mut to_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
        let (mut from_client, mut from_server) = (BufReader::new(client), BufReader::new(server));
        loop {
            let mut command = Vec::new();
            read_resp(&mut from_client, &mut command)?;
            let exempt = LossyProxy::EXEMPT
                .iter()
                .any(|name| command_name(&command).eq_ignore_ascii_case(name.as_bytes()));
            // One draw per losable command, whether or not losses are on, so a run's draws
            // depend only on the seed and the commands.
            let lost = !exempt && self.rng.chance(self.loss.probability);
            let after_reply = self.rng.chance(self.loss.after_reply);
            let lost = lost && self.lossy.load(Ordering::SeqCst);
            if lost && !after_reply {
                self.counters
                    .commands_dropped
                    .fetch_add(1, Ordering::Relaxed);
                return self.cut(&to_client, &to_server);
            }
            to_server.write_all(&command)?;
            let mut reply = Vec::new();
            read_resp(&mut from_server, &mut reply)?;
            if lost {
                self.counters
                    .replies_dropped
                    .fetch_add(1, Ordering::Relaxed);
                return self.cut(&to_client, &to_server);
            }
            let counter = if exempt {
                &self.counters.exempt
            } else {
                &self.counters.forwarded
            };
            counter.fetch_add(1, Ordering::Relaxed);
            to_client.write_all(&reply)?;
        }
    }

    /// Refuses new connections for a while (set first, so that the client's reconnect,
    /// which may follow at once, is refused), then closes both sides.
    fn cut(&mut self, client: &TcpStream, server: &TcpStream) -> std::io::Result<()> {
        let range = &self.loss.refuse_ms;
        if range.start < range.end {
            let ms = range.start + self.rng.next() % (range.end - range.start);
            let until = Instant::now() + Duration::from_millis(ms);
            let mut refuse = self
                .refuse_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *refuse = (*refuse).max(until);
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        Ok(())
    }
}

/// The name of a command sent as a RESP array (its first bulk string), or empty.
fn command_name(command: &[u8]) -> &[u8] {
    let mut lines = command.split(|&b| b == b'\n');
    match (lines.next(), lines.next(), lines.next()) {
        (Some(array), Some(length), Some(name))
            if array.starts_with(b"*") && length.starts_with(b"$") =>
        {
            name.strip_suffix(b"\r").unwrap_or(name)
        }
        _ => b"",
    }
}

/// xorshift64*: a small seeded generator (the draws need no more, and no new dependency).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // splitmix64 of the seed: nearby seeds give unrelated streams, and never the zero state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A loopback TCP proxy in front of Redis that answers `TIME` itself, with this host's clock
/// shifted by `shift_us` (the server, on this host, seems to run that far ahead), and forwards
/// every other command, one request and one reply at a time.
pub struct ClockProxy {
    pub port: u16,
    pub shift_us: Arc<AtomicI64>,
}

impl ClockProxy {
    /// A proxy to the server on `upstream` whose `TIME` says `now_us` (µs since the Unix
    /// epoch) now, and runs on from there.
    pub fn start(upstream: u16, now_us: i64) -> ClockProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = ClockProxy {
            port: listener.local_addr().unwrap().port(),
            shift_us: Arc::new(AtomicI64::new(now_us - wall_us())),
        };
        let shift = proxy.shift_us.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let shift = shift.clone();
                thread::spawn(move || {
                    let _ = answer_time(client, upstream, &shift);
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// This host's wall clock, µs since the Unix epoch.
pub fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn answer_time(client: TcpStream, upstream: u16, shift: &AtomicI64) -> std::io::Result<()> {
    let server = TcpStream::connect(("127.0.0.1", upstream))?;
    let (mut to_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
    let (mut from_client, mut from_server) = (BufReader::new(client), BufReader::new(server));
    loop {
        let mut command = Vec::new();
        read_resp(&mut from_client, &mut command)?;
        if command.eq_ignore_ascii_case(b"*1\r\n$4\r\nTIME\r\n") {
            let now = wall_us() + shift.load(Ordering::SeqCst);
            let (seconds, micros) = (now.div_euclid(1_000_000), now.rem_euclid(1_000_000));
            let (seconds, micros) = (seconds.to_string(), micros.to_string());
            let reply = format!(
                "*2\r\n${}\r\n{seconds}\r\n${}\r\n{micros}\r\n",
                seconds.len(),
                micros.len()
            );
            to_client.write_all(reply.as_bytes())?;
            continue;
        }
        to_server.write_all(&command)?;
        let mut reply = Vec::new();
        read_resp(&mut from_server, &mut reply)?;
        to_client.write_all(&reply)?;
    }
}

/// Reads one whole RESP value (RESP2, and RESP3's simple types, maps and sets), as it came,
/// into `out`.
fn read_resp(input: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<()> {
    let start = out.len();
    if input.read_until(b'\n', out)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = String::from_utf8_lossy(&out[start..]).trim_end().to_owned();
    let (kind, rest) = line.split_at(1.min(line.len()));
    let number = || rest.parse::<i64>().unwrap_or(-1);
    match kind {
        "$" | "!" | "=" if number() >= 0 => {
            let mut body = vec![0; number() as usize + 2];
            input.read_exact(&mut body)?;
            out.extend_from_slice(&body);
        }
        "*" | "~" | ">" => {
            for _ in 0..number().max(0) {
                read_resp(input, out)?;
            }
        }
        "%" | "|" => {
            for _ in 0..2 * number().max(0) {
                read_resp(input, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}
