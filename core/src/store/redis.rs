//! Redis: counts shared by any number of processes and hosts (feature `redis`, native only).
//!
//! Every change is one Lua script, atomic on the server. Numbers travel and are compared as
//! decimal text inside the scripts (Lua's numbers are doubles, exact only to 2^53), so every
//! `u64` is handled exactly as [`StoredState`] handles it. Each script reads and checks all it
//! needs before its first write (a Lua error does not roll back earlier writes): stored data
//! of the wrong type or format fails the call with [`StoreError::Corrupt`] and changes nothing.
//! No argument can make a script fail after that: every `u64` is a valid count or `seq` (a
//! batch's deltas are added up and capped in Rust first), and the only numbers a script
//! handles as doubles, expiry times, are clamped in Rust to at most 2^53.

use super::redis_text::{escape, parse_total};
use super::{
    AdmitReply, AdmitRequest, GiveBack, InstanceId, LeaseReply, LeaseRequest, Store, StoreError,
    StoredState, SyncBatch, WindowKey,
};
use crate::clock::Clock;
use crate::window::Period;
use ::redis::{Client, Connection, ConnectionAddr, RedisError, RedisResult, Script};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Shared counts in Redis 5 or later (or Valkey, or a hosted Redis), for trackers in any
/// number of processes and hosts. All three admission modes.
///
/// ```no_run
/// use quota_core::RedisStore;
/// use std::time::Duration;
/// let store = RedisStore::new("rediss://default:secret@redis.example.com:6380/0")?
///     .prefix("myapp:quota")
///     .timeout(Duration::from_millis(500));
/// # Ok::<(), quota_core::StoreError>(())
/// ```
///
/// # Keys
/// All of a service's keys carry the service in braces, a Redis Cluster hash tag, so they share
/// a slot and one script may touch them together. In the service name (and the prefix) `%`,
/// `{` and `}` are written `%25`, `%7B` and `%7D`, so no name can break the tag; the empty name
/// is written `%`.
/// - `<prefix>:{<service>}:<period>:<window start ms>`: the window's total, a plain integer
///   (`GET` it to read it), expiring [`grace`](Self::grace) after the window ends.
/// - `<prefix>:{<service>}:ops:<instance>` (the instance as 32 hex digits): its operations
///   record on that service, the exactly-once rule of [`Store`] as [`StoredState`] keeps it. A
///   hash: `low`, the low-water mark (the largest `done_below` seen), and one field per `seq`
///   applied at or above it, holding its answer as text (`1` a sync applied,
///   `a<total>/<raise count>` admitted, `d<total>` denied, `g<granted>/<raise count>` a lease's
///   grant, `b<taken>` a give-back: the calls it took off). Fields below `low`
///   are deleted as it rises, so the hash holds only the instance's operations in flight. Every
///   sync that changes something, admission, lease and give-back reads and updates it in the
///   same script. Redis 7.0 has no expiry per field: the key's expiry is the record's, at
///   least the end of the last window it counted in plus [`grace`](Self::grace) (as long as
///   any window key it counted in). There is no bound on their number, as
///   [`StoredState::RECORDS_KEPT`] is: each record is its own key and goes when it expires.
/// - `<prefix>:{<service>}:<period>:<window start ms>:raises`: the window's raise count (see
///   [`GiveBack::raise_count`](crate::GiveBack::raise_count)), an integer created by the first
///   raise applied to the window, expiring with the window key.
///
/// Builds before this one kept `:applied`, `:seen`, `:admit:<instance>` and
/// `:lease:<instance>` keys instead; this build neither reads nor writes them (they expire).
///
/// Old windows go when their keys expire (never earlier than `grace` after the window's end),
/// not by [`StoredState::WINDOWS_KEPT`]. Expiry times come from the server's clock, never one
/// already past.
///
/// # Connections
/// Each call checks a connection out of a small pool (a new one when the pool is empty), so
/// threads never queue behind one connection; a connection that failed is dropped. A pooled
/// connection idle for a second or more is checked with `PING` first; one that turns out
/// closed (Redis restarted) is replaced, and a call that lost its connection that way is sent
/// again at once on a new one (every call counts once however often it is sent); if that
/// reconnect fails, the call fails with [`StoreError::Io`], since the first send may have been
/// applied. [`StoreError::Unavailable`] means nothing was sent. Connecting and each reply wait
/// at most [`timeout`](Self::timeout).
///
/// # Credentials
/// `redis://user:password@host:port/db`, or `rediss://` for TLS (rustls, with the system's
/// root certificates or [`tls_root_certificate`](Self::tls_root_certificate)). The password
/// never appears in an error, a log line or this type's `Debug` output.
///
/// TLS uses the process's default rustls `CryptoProvider`, as rustls intends for libraries: the
/// one the program installed (`CryptoProvider::install_default`), else the one rustls' crate
/// features name (*ring*, which the feature `redis` enables). A program whose rustls has two
/// providers compiled in (*ring* and *aws-lc-rs*, from other crates' features) must install
/// one before `new` with a `rediss://` URL, which otherwise fails (rustls' message on standard
/// error says the same).
pub struct RedisStore {
    client: Client,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    grace_ms: u64,
    idle: Mutex<Vec<Idle>>,
    /// Texts never shown: the password, as written in the URL and decoded.
    secrets: Vec<String>,
    /// `host:port` (or the socket path): what messages name.
    target: String,
    tls: bool,
    custom_root: bool,
}

/// Whether rustls has a crypto provider for the connections: the process's default, or one
/// it installs now from its crate features (what `ClientConfig::builder`, which the Redis
/// client calls for each TLS connection, does). Asked here rather than at the first
/// connection, where rustls panics when its features name two providers (or none).
fn crypto_provider_chosen() -> Result<(), StoreError> {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return Ok(());
    }
    std::panic::catch_unwind(|| drop(rustls::ClientConfig::builder())).map_err(|_| {
        StoreError::Unavailable(
            "rustls cannot choose a crypto provider for rediss:// (both ring and aws-lc-rs are \
             compiled in, and the program installed none): call \
             rustls::crypto::CryptoProvider::install_default first"
                .into(),
        )
    })
}

/// A pooled connection and when it was last used.
struct Idle {
    connection: Connection,
    since: Instant,
}

impl RedisStore {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "quota";
    /// The default connection and response timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default time a window's keys are kept after the window ends.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
    /// Idle connections kept for reuse (more may be open while calls run at once).
    pub const MAX_IDLE: usize = 16;
    /// A pooled connection idle this long is checked with `PING` before use.
    const IDLE_CHECK: Duration = Duration::from_secs(1);

    /// A store at `url`: `redis://[user:password@]host[:port][/db]`, `rediss://…` for TLS, or
    /// `redis+unix:///path/to/socket`. Connects lazily, at the first call.
    ///
    /// Errors: [`StoreError::Unavailable`] if the URL is not a valid Redis URL (the message
    /// never contains the password).
    pub fn new(url: &str) -> Result<RedisStore, StoreError> {
        let mut secrets = password_in_url(url);
        let client = Client::open(url).map_err(|error| {
            StoreError::Unavailable(format!(
                "invalid Redis URL: {}",
                redact(&secrets, &error.to_string())
            ))
        })?;
        let info = client.get_connection_info();
        if let Some(password) = info.redis_settings().password() {
            secrets.push(password.to_owned());
        }
        secrets.retain(|secret| !secret.is_empty());
        // Longest first, so that no secret is left half replaced by a shorter one.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let (target, tls) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (format!("{host}:{port}"), false),
            ConnectionAddr::TcpTls { host, port, .. } => (format!("{host}:{port}"), true),
            other => (other.to_string(), false),
        };
        if tls {
            crypto_provider_chosen()?;
        }
        Ok(RedisStore {
            client,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            connect_timeout: Self::DEFAULT_TIMEOUT,
            response_timeout: Self::DEFAULT_TIMEOUT,
            grace_ms: duration_ms(Self::DEFAULT_GRACE),
            idle: Mutex::new(Vec::new()),
            secrets,
            target,
            tls,
            custom_root: false,
        })
    }

    /// Puts every key under `prefix` (default `quota`): trackers that share counts must use
    /// the same prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets both the connection timeout and the response timeout (default 1 s each; at least
    /// 1 ms). A call that waits longer fails with [`StoreError::Io`] or
    /// [`StoreError::Unavailable`]; it never hangs.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.connect_timeout(timeout).response_timeout(timeout)
    }

    /// How long connecting (TCP, TLS and the handshake) may take (default 1 s; at least 1 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long sending a request and waiting for each reply may take (default 1 s; at least
    /// 1 ms). Empties the pool: every later call uses it.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout.max(Duration::from_millis(1));
        self.idle_lock().clear();
        self
    }

    /// How long a window's keys are kept after the window ends (default 1 h; at least 1 s, at
    /// most a year).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = duration_ms(grace).clamp(1000, 366 * 86_400_000);
        self
    }

    /// Trusts the certificate(s) in `pem` (PEM text) as the roots for a `rediss://` server,
    /// instead of the system's root certificates: for a server with a private or self-signed
    /// certificate. The server's name in the URL must match the certificate (an IP address
    /// needs an IP subject alternative name).
    ///
    /// Errors: [`StoreError::Unavailable`] if the URL is not `rediss://` or `pem` holds no
    /// valid certificate.
    pub fn tls_root_certificate(mut self, pem: &[u8]) -> Result<Self, StoreError> {
        let certificates = ::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        };
        self.client =
            Client::build_with_tls(self.client.get_connection_info().clone(), certificates)
                .map_err(|error| {
                    StoreError::Unavailable(format!(
                        "cannot use the TLS root certificate for Redis at {}: {}",
                        self.target,
                        self.redact(&error.to_string())
                    ))
                })?;
        self.custom_root = true;
        self.idle_lock().clear();
        Ok(self)
    }

    /// The key holding the total of `window`: `<prefix>:{<service>}:<period>:<start ms>`
    /// (escaped as described under [Keys](Self#keys)).
    pub fn window_key(&self, window: &WindowKey) -> String {
        format!(
            "{}:{}:{}",
            self.service_base(&window.service),
            window.period.as_str(),
            window.start_ms
        )
    }

    /// `<prefix>:{<service>}`, escaped.
    fn service_base(&self, service: &str) -> String {
        format!("{}:{{{}}}", escape(&self.prefix), escape(service))
    }

    /// Connections idle in the pool now.
    pub fn idle_connections(&self) -> usize {
        self.idle_lock().len()
    }

    fn idle_lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        crate::locks::lock_std(&self.idle)
    }

    fn redact(&self, text: &str) -> String {
        redact(&self.secrets, text)
    }

    /// A new connection with the timeouts set.
    fn connect(&self) -> Result<Connection, StoreError> {
        let unavailable = |error: RedisError| {
            let reason = if error.is_timeout() {
                format!("no answer within {:?}", self.connect_timeout)
            } else {
                self.redact(&error.to_string())
            };
            StoreError::Unavailable(format!(
                "cannot connect to Redis at {}: {reason}",
                self.target
            ))
        };
        let mut connection = self
            .client
            .get_connection_with_timeout(self.connect_timeout)
            .map_err(unavailable)?;
        connection
            .set_read_timeout(Some(self.response_timeout))
            .and_then(|()| connection.set_write_timeout(Some(self.response_timeout)))
            .map_err(unavailable)?;
        // Without credentials the connection opens but nothing works: say so here.
        match ::redis::cmd("PING").query::<String>(&mut connection) {
            Ok(_) => Ok(connection),
            Err(error) if error.code() == Some("NOAUTH") => Err(StoreError::Unavailable(format!(
                "Redis at {} requires authentication: put the user and password in the URL \
                 (redis://user:password@host:port)",
                self.target
            ))),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// A connection from the pool (checked with `PING` if idle a while) or a new one, and
    /// whether it came from the pool.
    fn checkout(&self) -> Result<(Connection, bool), StoreError> {
        loop {
            let idle = self.idle_lock().pop();
            let Some(Idle {
                mut connection,
                since,
            }) = idle
            else {
                return Ok((self.connect()?, false));
            };
            if since.elapsed() < Self::IDLE_CHECK {
                return Ok((connection, true));
            }
            match ::redis::cmd("PING").query::<String>(&mut connection) {
                Ok(_) => return Ok((connection, true)),
                Err(error) if error.is_timeout() => {
                    return Err(self.call_error("PING", &error, false));
                }
                Err(error) => {
                    // Closed (a restart?): the other idle ones are likely closed too.
                    log::debug!(
                        "quota: a pooled Redis connection to {} failed PING ({}); reconnecting",
                        self.target,
                        self.redact(&error.to_string())
                    );
                    self.idle_lock().clear();
                }
            }
        }
    }

    fn checkin(&self, connection: Connection) {
        let mut idle = self.idle_lock();
        if idle.len() < Self::MAX_IDLE {
            idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    /// Runs `op` on a connection. If a pooled connection turns out closed and `resendable`
    /// (the call counts once however often it is sent), sends it again on a new connection.
    fn call<T>(
        &self,
        what: &str,
        resendable: bool,
        op: impl Fn(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        // Nothing was sent until the checkout succeeds: its errors say "not applied".
        let (mut connection, pooled) = self.checkout()?;
        let mut result = op(&mut connection);
        let mut resent = false;
        if let Err(error) = &result {
            if pooled && resendable && error.is_connection_dropped() && !error.is_timeout() {
                log::debug!(
                    "quota: Redis connection to {} lost during {what} ({}); sending it again",
                    self.target,
                    self.redact(&error.to_string())
                );
                self.idle_lock().clear();
                // The first send may have been applied: a failed reconnect must not read as
                // `Unavailable` (not applied).
                connection = self.connect().map_err(|error| {
                    StoreError::Io(format!(
                        "the connection to Redis at {} was lost during {what}, which may have \
                         been applied (a retry of the same call counts once), and reconnecting \
                         failed: {error}",
                        self.target
                    ))
                })?;
                result = op(&mut connection);
                resent = true;
            }
        }
        match result {
            Ok(value) => {
                self.checkin(connection);
                Ok(value)
            }
            Err(error) => {
                // The connection is dropped here; a closed one means the idle ones may be too.
                if error.is_connection_dropped() {
                    self.idle_lock().clear();
                }
                let error = self.call_error(what, &error, resendable);
                Err(if resent {
                    self.after_sending(what, error)
                } else {
                    error
                })
            }
        }
    }

    /// `error`, from a call part of which may have been applied already (a script that ran,
    /// a first send whose reply was lost): never an error that says nothing was applied.
    fn after_sending(&self, what: &str, error: StoreError) -> StoreError {
        if error.maybe_applied() {
            return error;
        }
        StoreError::Io(format!(
            "{what} on Redis at {} failed after part of it was applied, so it may have been \
             (a retry of the same call counts once): {error}",
            self.target
        ))
    }

    fn call_error(&self, what: &str, error: &RedisError, resendable: bool) -> StoreError {
        let at = &self.target;
        match error.code() {
            Some("QUOTACORRUPT") => {
                let detail = error.detail().unwrap_or("bad stored data");
                return StoreError::Corrupt(format!(
                    "Redis at {at}: {}; nothing was changed",
                    self.redact(detail)
                ));
            }
            Some("WRONGTYPE") => {
                return StoreError::Corrupt(format!(
                    "Redis at {at}: {what}: a key holds the wrong kind of value ({})",
                    self.redact(&error.to_string())
                ));
            }
            _ => {}
        }
        let applied = if resendable {
            "it may have been applied: a retry of the same call counts once"
        } else {
            "it may have been applied"
        };
        if error.is_timeout() {
            StoreError::Io(format!(
                "Redis at {at} did not answer {what} within {:?} ({applied})",
                self.response_timeout
            ))
        } else if error.is_io_error() || error.is_connection_dropped() {
            StoreError::Io(format!(
                "the connection to Redis at {at} failed during {what}: {} ({applied})",
                self.redact(&error.to_string())
            ))
        } else {
            StoreError::Io(format!(
                "Redis at {at} refused {what}: {}",
                self.redact(&error.to_string())
            ))
        }
    }

    /// The arguments of a window's expiry: its end plus grace (at most 2^53, exact in Lua)
    /// and the longest it may live from now (two periods plus grace: a window whose end is
    /// further off comes from a bogus clock).
    fn expiry_args(&self, period: Period, end_ms: u64) -> (u64, u64) {
        (
            end_ms.saturating_add(self.grace_ms).min(1 << 53),
            period
                .max_ms()
                .saturating_mul(2)
                .saturating_add(self.grace_ms),
        )
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redis = self.client.get_connection_info().redis_settings();
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("tls", &self.tls)
            .field("custom_root_certificate", &self.custom_root)
            .field("db", &redis.db())
            .field("username", &redis.username())
            .field(
                "password",
                &redis.password().map(|_| "<redacted>").unwrap_or("<none>"),
            )
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("grace_ms", &self.grace_ms)
            .field("idle_connections", &self.idle_connections())
            .finish()
    }
}

/// The server's clock: see [`RedisStore::server_clock`].
impl RedisStore {
    /// A [`Clock`] that reads the Redis server's time (`TIME`, the clock the scripts use for
    /// expiries) instead of this host's: give it to every tracker on every host and they all
    /// pick windows from one clock, so a host whose own clock is off no longer admits into a
    /// window the others have left (beyond the measurement error below).
    ///
    /// ```no_run
    /// use quota_core::{Period, QuotaTracker, RedisStore, ServiceConfig, TrackerConfig};
    /// let config = TrackerConfig::new([ServiceConfig::new("llm", 10_000, Period::Day)]);
    /// let store = RedisStore::new("redis://redis.internal:6379")?;
    /// let tracker = QuotaTracker::builder(config)
    ///     .clock(store.server_clock())
    ///     .store(store)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// It does not ask Redis at every reading: it measures the offset between this host's
    /// monotonic clock and the server's `TIME` (the server's time against the midpoint of the
    /// round trip, the tightest of three round trips), and reads the local monotonic clock plus
    /// that offset. What remains is the measurement error, at most half the round trip
    /// ([`error`](RedisClock::error); well under a millisecond on a local network), plus the
    /// local clock's drift since the last measurement.
    ///
    /// The first measurement happens here (waiting at most this store's timeouts); if it
    /// fails, the clock reads this host's wall clock until a measurement succeeds. After that
    /// the offset is measured again at most every [`RedisClock::DEFAULT_REFRESH`] (see
    /// [`refresh_every`](RedisClock::refresh_every)), by whichever thread reads the clock and
    /// finds it stale; other threads never wait for a measurement in flight (they use the
    /// last offset), and a failed measurement keeps the last offset. So while Redis is
    /// unreachable the clock goes on (one reading per refresh interval waits up to the
    /// timeouts), and it never panics.
    ///
    /// The clock has its own connection, with the store's URL, credentials, TLS settings and
    /// timeouts as they are now; it stays usable after the store is moved into a tracker.
    pub fn server_clock(&self) -> RedisClock {
        let shared = ClockShared {
            client: self.client.clone(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            target: self.target.clone(),
            secrets: self.secrets.clone(),
            base: Instant::now(),
            connection: Mutex::new(None),
            // Until the first measurement: this host's wall clock (the monotonic clock is at 0).
            offset_us: AtomicI64::new(wall_us()),
            error_us: AtomicU64::new(UNMEASURED),
            wall_offset_us: AtomicI64::new(0),
            last_attempt_us: AtomicU64::new(0),
            refresh_us: AtomicU64::new(duration_us(RedisClock::DEFAULT_REFRESH)),
            last_ms: AtomicU64::new(0),
        };
        let clock = RedisClock {
            shared: Arc::new(shared),
        };
        if let Err(error) = clock.refresh() {
            log::warn!(
                "quota: could not read the clock of Redis at {}: {error}; using this host's \
                 clock until it answers",
                clock.shared.target
            );
        }
        clock
    }
}

/// The Redis server's clock, read locally: this host's monotonic clock plus an offset measured
/// against the server's `TIME`. Made by [`RedisStore::server_clock`], which describes it.
/// Clones share one offset and one connection.
///
/// Its readings never go backwards: a new measurement that puts the server a little behind
/// the last one holds the clock still until it catches up (except the first measurement,
/// which replaces this host's wall clock).
#[derive(Clone)]
pub struct RedisClock {
    shared: Arc<ClockShared>,
}

/// [`error_us`](ClockShared::error_us) before the first measurement.
const UNMEASURED: u64 = u64::MAX;

struct ClockShared {
    client: Client,
    connect_timeout: Duration,
    response_timeout: Duration,
    target: String,
    secrets: Vec<String>,
    /// The origin of the local monotonic clock: the offsets are added to µs since then.
    base: Instant,
    /// The measuring connection; whoever holds the lock is measuring (others never wait).
    connection: Mutex<Option<Connection>>,
    /// Server time (µs since the Unix epoch) minus local monotonic µs since `base`; this
    /// host's wall clock until the first measurement.
    offset_us: AtomicI64,
    /// Half the round trip of the measurement in use, µs; [`UNMEASURED`] before one.
    error_us: AtomicU64,
    /// Server time minus this host's wall clock at the last measurement, µs.
    wall_offset_us: AtomicI64,
    /// Local monotonic µs of the last measurement attempt.
    last_attempt_us: AtomicU64,
    /// Measure again once this many µs have passed since the last attempt.
    refresh_us: AtomicU64,
    /// The latest reading given out (readings never go backwards).
    last_ms: AtomicU64,
}

/// One `TIME` round trip.
#[derive(Clone, Copy)]
struct Sample {
    round_trip_us: u64,
    offset_us: i64,
    wall_offset_us: i64,
}

impl RedisClock {
    /// How often the offset is measured again by default.
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
    /// `TIME` round trips per measurement; the tightest one is kept.
    const SAMPLES: usize = 3;

    /// Measures the offset again once `every` has passed since the last attempt (default
    /// [`DEFAULT_REFRESH`](Self::DEFAULT_REFRESH); at least 1 ms). Applies to every clone.
    pub fn refresh_every(self, every: Duration) -> Self {
        self.shared
            .refresh_us
            .store(duration_us(every).max(1000), Ordering::Relaxed);
        self
    }

    /// Measures the offset now, waiting for a measurement in flight on another thread first
    /// (and at most the store's timeouts for its own). A failure keeps the last offset.
    ///
    /// Errors: [`StoreError::Unavailable`] if Redis cannot be reached, [`StoreError::Io`] if
    /// it does not answer `TIME` in time or answers something else.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let mut connection = crate::locks::lock_std(&self.shared.connection);
        self.measure(&mut connection)
    }

    /// The error bound of the offset in use: half the round trip of its measurement. `None`
    /// until a measurement succeeded (the clock is this host's wall clock until then).
    pub fn error(&self) -> Option<Duration> {
        match self.shared.error_us.load(Ordering::Relaxed) {
            UNMEASURED => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The server's clock minus this host's wall clock, in ms, at the last successful
    /// measurement (positive: the server is ahead). `None` until a measurement succeeded.
    pub fn offset_ms(&self) -> Option<i64> {
        self.error()?;
        Some(self.shared.wall_offset_us.load(Ordering::Relaxed) / 1000)
    }

    /// Local monotonic µs since `base`.
    fn mono_us(&self) -> u64 {
        duration_us(self.shared.base.elapsed())
    }

    /// Measures with the lock held: connects if needed, keeps the tightest of a few `TIME`
    /// round trips, and stores it; on failure drops the connection and keeps the last offset.
    fn measure(&self, connection: &mut Option<Connection>) -> Result<(), StoreError> {
        let shared = &*self.shared;
        shared
            .last_attempt_us
            .store(self.mono_us(), Ordering::Relaxed);
        let result = self.sample(connection);
        let sample = match result {
            Ok(sample) => sample,
            Err(error) => {
                *connection = None;
                return Err(error);
            }
        };
        let first = shared.error_us.load(Ordering::Relaxed) == UNMEASURED;
        shared.offset_us.store(sample.offset_us, Ordering::Relaxed);
        shared
            .wall_offset_us
            .store(sample.wall_offset_us, Ordering::Relaxed);
        shared
            .error_us
            .store(sample.round_trip_us.div_ceil(2), Ordering::Relaxed);
        if first {
            // The first measurement replaces this host's clock: it may step back.
            shared.last_ms.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The tightest of [`SAMPLES`](Self::SAMPLES) round trips (fewer if one fails after the
    /// first).
    fn sample(&self, connection: &mut Option<Connection>) -> Result<Sample, StoreError> {
        let shared = &*self.shared;
        if connection.is_none() {
            *connection = Some(self.connect()?);
        }
        let Some(open) = connection.as_mut() else {
            return Err(StoreError::Unavailable("no connection".to_owned()));
        };
        let mut best: Option<Sample> = None;
        for _ in 0..Self::SAMPLES {
            let sent = self.mono_us();
            let reply = ::redis::cmd("TIME").query::<(u64, u64)>(open);
            let received = self.mono_us();
            let wall_received = wall_us();
            let (seconds, micros) = match reply {
                Ok(time) => time,
                Err(error) if best.is_none() => return Err(self.time_error(&error)),
                Err(_) => break,
            };
            let server_us = seconds
                .checked_mul(1_000_000)
                .and_then(|us| us.checked_add(micros))
                .and_then(|us| i64::try_from(us).ok())
                .ok_or_else(|| {
                    StoreError::Io(format!(
                        "Redis at {} answered TIME with {seconds} s {micros} µs",
                        shared.target
                    ))
                })?;
            let round_trip_us = received.saturating_sub(sent);
            // The server read its clock somewhere in the round trip: say in the middle.
            let middle = sent.saturating_add(round_trip_us / 2);
            let half = i64::try_from(round_trip_us / 2).unwrap_or(i64::MAX);
            let sample = Sample {
                round_trip_us,
                offset_us: server_us.saturating_sub(i64::try_from(middle).unwrap_or(i64::MAX)),
                wall_offset_us: server_us.saturating_sub(wall_received.saturating_sub(half)),
            };
            if best.is_none_or(|b| sample.round_trip_us < b.round_trip_us) {
                best = Some(sample);
            }
        }
        best.ok_or_else(|| StoreError::Io("no TIME sample".to_owned()))
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let shared = &*self.shared;
        let connection = shared
            .client
            .get_connection_with_timeout(shared.connect_timeout)
            .map_err(|error| {
                let reason = if error.is_timeout() {
                    format!("no answer within {:?}", shared.connect_timeout)
                } else {
                    redact(&shared.secrets, &error.to_string())
                };
                StoreError::Unavailable(format!(
                    "cannot connect to Redis at {} for its clock: {reason}",
                    shared.target
                ))
            })?;
        connection
            .set_read_timeout(Some(shared.response_timeout))
            .and_then(|()| connection.set_write_timeout(Some(shared.response_timeout)))
            .map_err(|error| self.time_error(&error))?;
        Ok(connection)
    }

    fn time_error(&self, error: &RedisError) -> StoreError {
        let shared = &*self.shared;
        if error.is_timeout() {
            StoreError::Io(format!(
                "Redis at {} did not answer TIME within {:?}",
                shared.target, shared.response_timeout
            ))
        } else {
            StoreError::Io(format!(
                "Redis at {} failed TIME: {}",
                shared.target,
                redact(&shared.secrets, &error.to_string())
            ))
        }
    }

    /// Measures again if the last attempt is older than the refresh interval and no other
    /// thread is measuring (never waits for one that is).
    fn refresh_if_stale(&self, now_us: u64) {
        let shared = &*self.shared;
        let stale = |now_us: u64| {
            now_us.saturating_sub(shared.last_attempt_us.load(Ordering::Relaxed))
                >= shared.refresh_us.load(Ordering::Relaxed)
        };
        if !stale(now_us) {
            return;
        }
        let Some(mut connection) = crate::locks::try_lock_std(&shared.connection) else {
            return;
        };
        // Another thread may have measured between the look and the lock.
        if !stale(self.mono_us()) {
            return;
        }
        if let Err(error) = self.measure(&mut connection) {
            log::debug!(
                "quota: measuring the clock of Redis at {} failed ({error}); keeping the last \
                 offset",
                shared.target
            );
        }
    }
}

impl Clock for RedisClock {
    /// The server's time now, ms since the Unix epoch: the local monotonic clock plus the
    /// measured offset (measured again first if stale and no other thread is measuring).
    fn now_ms(&self) -> u64 {
        self.refresh_if_stale(self.mono_us());
        let shared = &*self.shared;
        let mono = i64::try_from(self.mono_us()).unwrap_or(i64::MAX);
        let us = mono.saturating_add(shared.offset_us.load(Ordering::Relaxed));
        let ms = u64::try_from(us.max(0) / 1000).unwrap_or(0);
        shared.last_ms.fetch_max(ms, Ordering::Relaxed).max(ms)
    }
}

impl fmt::Debug for RedisClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClock")
            .field("target", &self.shared.target)
            .field("offset_ms", &self.offset_ms())
            .field("error", &self.error())
            .field(
                "refresh_every",
                &Duration::from_micros(self.shared.refresh_us.load(Ordering::Relaxed)),
            )
            .finish()
    }
}

/// This host's wall clock, µs since the Unix epoch (0 before it).
fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// One service's changes in a batch: per (period, window start), the calls, the floor (0:
/// none) and the window's end.
type ServiceDeltas = BTreeMap<(Period, u64), (u64, u64, u64)>;

/// All three admission modes, across processes and hosts: each change is one Lua script.
impl Store for RedisStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        // Per service, per window: the calls (added up, capped: capping at the end equals
        // capping after each) and the latest end.
        let mut services: BTreeMap<&str, ServiceDeltas> = BTreeMap::new();
        for delta in &batch.deltas {
            let window = &delta.window;
            let entry = services
                .entry(window.service.as_str())
                .or_default()
                .entry((window.period, window.start_ms))
                .or_insert((0, 0, 0));
            entry.0 = entry
                .0
                .saturating_add(delta.calls)
                .min(StoredState::MAX_TOTAL);
            entry.2 = entry.2.max(window.end_ms);
        }
        // Floors: the largest per window, capped (a floor is a maximum, never a sum).
        for raise in &batch.raises {
            let window = &raise.window;
            let entry = services
                .entry(window.service.as_str())
                .or_default()
                .entry((window.period, window.start_ms))
                .or_insert((0, 0, 0));
            entry.1 = entry.1.max(raise.at_least.min(StoredState::MAX_TOTAL));
            entry.2 = entry.2.max(window.end_ms);
        }
        let invocations: Vec<_> = services
            .iter()
            .map(|(service, windows)| {
                let base = self.service_base(service);
                let mut invocation = SCRIPTS.sync.prepare_invoke();
                invocation
                    .key(self.ops_key(service, batch.instance))
                    .arg(self.grace_ms)
                    .arg(batch.seq)
                    .arg(batch.done_below);
                for (&(period, start_ms), &(calls, floor, end_ms)) in windows {
                    let (end, longest) = self.expiry_args(period, end_ms);
                    let window = format!("{base}:{}:{start_ms}", period.as_str());
                    invocation
                        .key(raise_count_key(&window))
                        .key(window)
                        .arg(calls)
                        .arg(floor)
                        .arg(end)
                        .arg(longest);
                }
                invocation
            })
            .collect();
        let reads: Vec<String> = batch.read.iter().map(|w| self.window_key(w)).collect();
        // Whether a service's script ran: one script per service (each its own slot), so an
        // error after one is no longer "nothing applied".
        let ran = Cell::new(false);
        let stored = self
            .call("sync", true, |connection| {
                for invocation in &invocations {
                    invocation.invoke::<i64>(connection)?;
                    ran.set(true);
                }
                if reads.is_empty() {
                    if invocations.is_empty() {
                        // Nothing to add or read: still check that Redis answers.
                        ::redis::cmd("PING").query::<String>(connection)?;
                    }
                    return Ok(Vec::new());
                }
                let mut pipe = ::redis::pipe();
                pipe.ignore_errors();
                for key in &reads {
                    pipe.cmd("GET").arg(key);
                }
                pipe.query::<Vec<RedisResult<Option<String>>>>(connection)
            })
            .map_err(|error| match ran.get() {
                true => self.after_sending("sync", error),
                false => error,
            })?;
        stored
            .into_iter()
            .zip(&reads)
            .map(|(text, key)| {
                let error = match text {
                    Ok(None) => return Ok(0),
                    Ok(Some(text)) => match parse_total(&text) {
                        Some(total) => return Ok(total),
                        None => StoreError::Corrupt(format!(
                            "Redis at {}: {key:?} is not a whole number",
                            self.target
                        )),
                    },
                    Err(error) if error.code() == Some("WRONGTYPE") => StoreError::Corrupt(
                        format!("Redis at {}: {key:?} is not a whole number", self.target),
                    ),
                    Err(error) => self.call_error("sync", &error, true),
                };
                // The batch's changes went before the reads.
                Err(match invocations.is_empty() {
                    true => error,
                    false => self.after_sending("sync", error),
                })
            })
            .collect()
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        let window = &request.window;
        let mut invocation = SCRIPTS.admit.prepare_invoke();
        self.op_invocation(
            &mut invocation,
            request.instance,
            request.seq,
            request.done_below,
            window,
        );
        invocation
            .arg(request.count)
            .arg(request.below)
            .arg(request.cap)
            .arg(u8::from(request.force));
        let (admitted, total, raise_count): (i64, String, String) =
            self.call("admit", true, |connection| invocation.invoke(connection))?;
        let total = self.reply_number("admit", &total)?;
        Ok(if admitted == 1 {
            AdmitReply::Admitted {
                total,
                raise_count: self.reply_number("admit", &raise_count)?,
            }
        } else {
            AdmitReply::Denied { total }
        })
    }

    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        let window = &request.window;
        let mut invocation = SCRIPTS.lease.prepare_invoke();
        self.op_invocation(
            &mut invocation,
            request.instance,
            request.seq,
            request.done_below,
            window,
        );
        invocation.arg(request.block).arg(request.ceiling);
        let (granted, total, raise_count): (String, String, String) =
            self.call("lease", true, |connection| invocation.invoke(connection))?;
        Ok(LeaseReply {
            granted: self.reply_number("lease", &granted)?,
            total: self.reply_number("lease", &total)?,
            raise_count: self.reply_number("lease", &raise_count)?,
        })
    }

    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        let window = &request.window;
        let mut invocation = SCRIPTS.give_back.prepare_invoke();
        self.op_invocation(
            &mut invocation,
            request.instance,
            request.seq,
            request.done_below,
            window,
        );
        invocation.arg(request.unused).arg(request.raise_count);
        let taken: String = self.call("give_back", true, |connection| {
            invocation.invoke(connection)
        })?;
        self.reply_number("give_back", &taken)
    }
}

impl RedisStore {
    /// `<prefix>:{<service>}:ops:<instance>`: the instance's operations record on the service.
    fn ops_key(&self, service: &str, instance: InstanceId) -> String {
        format!("{}:ops:{instance}", self.service_base(service))
    }

    /// The keys and arguments every admit, lease and give-back script starts with: KEYS the
    /// operations record, the window and its raise count; ARGV grace, seq, done_below, end +
    /// grace, longest.
    fn op_invocation(
        &self,
        invocation: &mut ::redis::ScriptInvocation<'_>,
        instance: InstanceId,
        seq: u64,
        done_below: u64,
        window: &WindowKey,
    ) {
        let (end, longest) = self.expiry_args(window.period, window.end_ms);
        invocation
            .key(self.ops_key(&window.service, instance))
            .key(self.window_key(window))
            .key(raise_count_key(&self.window_key(window)))
            .arg(self.grace_ms)
            .arg(seq)
            .arg(done_below)
            .arg(end)
            .arg(longest);
    }

    /// A number a script answered. The script ran: an answer that does not parse (a broken
    /// server or proxy) may follow an applied change, so it is [`StoreError::Io`].
    fn reply_number(&self, what: &str, text: &str) -> Result<u64, StoreError> {
        text.parse().map_err(|_| {
            StoreError::Io(format!(
                "Redis at {} answered {what} with {text:?}, not a whole number (it may have \
                 been applied)",
                self.target
            ))
        })
    }
}

/// `<window key>:raises`: how many raises were applied to the window (see
/// [`GiveBack::raise_count`]), an integer created by the first; it expires with the window.
fn raise_count_key(window_key: &str) -> String {
    format!("{window_key}:raises")
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The password in a URL's user information, as written (percent-encoded) and decoded; read
/// by hand so that even a URL the parser rejects has it redacted.
fn password_in_url(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return Vec::new();
    };
    vec![password.to_owned(), percent_decode(password)]
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every secret replaced by `<redacted>`.
fn redact(secrets: &[String], text: &str) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "<redacted>");
    }
    text
}

struct Scripts {
    sync: Script,
    admit: Script,
    lease: Script,
    give_back: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    sync: Script::new(&format!("{PRELUDE}{OPS}{SYNC}")),
    admit: Script::new(&format!("{PRELUDE}{OPS}{OP_READ}{ADMIT}")),
    lease: Script::new(&format!("{PRELUDE}{OPS}{OP_READ}{LEASE}")),
    give_back: Script::new(&format!("{PRELUDE}{OPS}{OP_READ}{GIVE_BACK}")),
});

/// Shared by every script: exact arithmetic on decimal text, the server's time, reading and
/// writing a window's total, expiries. `ARGV[1]` is always the grace in ms.
const PRELUDE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local MAX = '4611686018427387904'
local U64 = '18446744073709551615'
local GRACE = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Whole numbers are canonical decimal text (Lua numbers are doubles, exact only to 2^53).
local function canon(v)
  if type(v) ~= 'string' or v == '' or #v > 20 or string.find(v, '%D') then return nil end
  local s = string.gsub(v, '^0+', '')
  if s == '' then return '0' end
  return s
end
local function cmp(a, b)
  if #a ~= #b then if #a < #b then return -1 else return 1 end end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then if x < y then return -1 else return 1 end end
  end
  return 0
end
local function minimum(a, b) if cmp(a, b) <= 0 then return a end return b end
local function text_of(out)
  local n = #out
  while n > 1 and out[n] == 0 do out[n] = nil; n = n - 1 end
  local s = {}
  for k = n, 1, -1 do s[#s + 1] = out[k] end
  return table.concat(s)
end
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48; i = i - 1 end
    if j > 0 then d = d + string.byte(b, j) - 48; j = j - 1 end
    if d >= 10 then d = d - 10; carry = 1 else carry = 0 end
    out[#out + 1] = d
  end
  if carry > 0 then out[#out + 1] = carry end
  return text_of(out)
end
-- a - b, or 0 if b >= a.
local function sub(a, b)
  if cmp(a, b) <= 0 then return '0' end
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = string.byte(a, i) - 48 - borrow
    if j > 0 then d = d - (string.byte(b, j) - 48); j = j - 1 end
    if d < 0 then d = d + 10; borrow = 1 else borrow = 0 end
    out[#out + 1] = d
    i = i - 1
  end
  return text_of(out)
end

local function corrupt(key, what)
  return redis.error_reply('QUOTACORRUPT ' .. string.gsub(key, '%c', '?') .. ' ' .. what)
end
local function has_type(key, want)
  local t = redis.call('TYPE', key)
  t = t.ok or t
  return t == 'none' or t == want
end
-- A window's total (capped at MAX), whether its stored text takes INCRBY, whether it exists;
-- nil if the key holds something else.
local function read_total(key)
  if not has_type(key, 'string') then return nil end
  local raw = redis.call('GET', key)
  if not raw then return '0', true, false end
  local c = canon(raw)
  if not c then return nil end
  if cmp(c, MAX) > 0 then return MAX, false, true end
  return c, c == raw, true
end
-- `raises`, the window's raise count key if it has one, is given the window's expiry (an
-- ended window's moves on with each write: the count must not go before the window).
local function write_total(key, cur, plain, exists, new, at, raises)
  local c = cmp(new, cur)
  if not plain then redis.call('SET', key, new)
  elseif c > 0 then redis.call('INCRBY', key, sub(new, cur))
  elseif c < 0 then redis.call('DECRBY', key, sub(cur, new))
  elseif not exists then return end
  redis.call('PEXPIREAT', key, string.format('%.0f', at))
  if raises then redis.call('PEXPIREAT', raises, string.format('%.0f', at)) end
end
-- When a window's keys go: its end plus grace, never before now plus grace, never after
-- now plus `longest`.
local function window_expiry(end_plus_grace, longest)
  local at = tonumber(end_plus_grace)
  if at < now + GRACE then at = now + GRACE end
  if at > now + tonumber(longest) then at = now + tonumber(longest) end
  return at
end
-- Makes `key` live at least until `at`.
local function extend(key, at)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 and now + ttl >= at then return end
  redis.call('PEXPIREAT', key, string.format('%.0f', at))
end
"#;

/// An instance's operations record on a service, the rule of [`Store`] (as [`StoredState`]
/// keeps it): a hash with `low`, the low-water mark, and one field per `seq` applied at or
/// above it, holding its answer as `StoredState` writes it (`1` a sync applied,
/// `a<total>/<raise count>` admitted, `d<total>` denied, `g<granted>/<raise count>` granted,
/// `b<taken>` given back). `ARGV[2]` is always the operation's `seq`,
/// `ARGV[3]` its `done_below` (canonical decimal text, from a `u64`).
const OPS: &str = r#"
local SEQ, DONE_BELOW = ARGV[2], ARGV[3]
-- An answer's kind ('1', 'a', 'd', 'g' or 'b'), number and raise count (canonical text; nil
-- where the kind has none), or nil if it is not one: '1', 'a<total>/<raise_count>', 'd<total>',
-- 'g<granted>/<raise_count>', 'b<taken>', as StoredState writes them.
local function answer_of(v)
  if v == '1' then return '1', nil, nil end
  local kind, rest = string.sub(v, 1, 1), string.sub(v, 2)
  local function number(t)
    local n = canon(t)
    if not n or cmp(n, U64) > 0 then return nil end
    return n
  end
  if kind == 'a' or kind == 'g' then
    local slash = string.find(rest, '/', 1, true)
    if not slash then return nil end
    local n, l = number(string.sub(rest, 1, slash - 1)), number(string.sub(rest, slash + 1))
    if not (n and l) then return nil end
    return kind, n, l
  end
  if kind == 'd' or kind == 'b' then
    local n = number(rest)
    if not n then return nil end
    return kind, n, nil
  end
  return nil
end
-- A window's raise count (canonical text, '0' when none), or nil if the key holds something
-- else.
local function read_raise_count(key)
  if not has_type(key, 'string') then return nil end
  local raw = redis.call('GET', key)
  if not raw then return '0' end
  local c = canon(raw)
  if not c or c ~= raw or #c > 15 then return nil end
  return c
end
-- Reads and checks what the operation needs of the record: its low-water mark, SEQ's answer
-- ('stale' below the mark, the answer's kind and number if applied, nil if new), and, when
-- DONE_BELOW raises the mark, the seqs it passes (every field name is read then, and checked:
-- nothing may fail after the first write). Returns nil if any of it is not valid. Only a rising
-- mark reads the whole hash: an instance that never raises it costs O(1) per operation.
local function read_ops(key)
  if not has_type(key, 'hash') then return nil end
  local got = redis.call('HMGET', key, 'low', SEQ)
  local low, kind, number = '0', nil, nil
  if got[1] then
    low = canon(got[1])
    if not low or cmp(low, U64) > 0 then return nil end
  end
  local raise_count = nil
  if got[2] then
    kind, number, raise_count = answer_of(got[2])
    if not kind then return nil end
  end
  if cmp(SEQ, low) < 0 then kind, number, raise_count = 'stale', nil, nil end
  local gone = {}
  if cmp(DONE_BELOW, low) > 0 then
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if f ~= 'low' then
        if canon(f) ~= f or cmp(f, U64) > 0 then return nil end
        if cmp(f, DONE_BELOW) < 0 then gone[#gone + 1] = f end
      end
    end
  end
  return {low = low, gone = gone, kind = kind, number = number, raise_count = raise_count}
end
-- After the operation: records `answer` (when applied now), raises the mark to DONE_BELOW,
-- forgets the seqs below it and keeps the record at least until `at` (the end of the last
-- window it counted in, plus grace). Never fails: the record was checked.
local function write_ops(key, rec, answer, at)
  local low = rec.low
  if cmp(DONE_BELOW, low) > 0 then low = DONE_BELOW end
  if answer and cmp(SEQ, low) >= 0 then
    redis.call('HSET', key, 'low', low, SEQ, answer)
  else
    redis.call('HSET', key, 'low', low)
  end
  -- In chunks: unpack has a limit, and nothing may fail after the first write.
  for i = 1, #rec.gone, 500 do
    redis.call('HDEL', key, unpack(rec.gone, i, math.min(i + 499, #rec.gone)))
  end
  extend(key, at)
end
"#;

/// KEYS: the instance's operations record, then per window its raise count and the window.
/// ARGV: grace, seq, done_below, then per window: calls, floor (0: none), end + grace, longest
/// life. A `seq` applied already or below the mark skips the calls but still applies the
/// floors (a maximum: a resend changes no total); each window given a floor counts a raise.
const SYNC: &str = r#"
local rec = read_ops(KEYS[1])
if not rec then return corrupt(KEYS[1], 'is not a valid operations record') end
local fresh = rec.kind == nil
local windows = (#KEYS - 1) / 2
local cur, plain, exists, raise_count = {}, {}, {}, {}
for i = 1, windows do
  local l, w = KEYS[2 * i], KEYS[2 * i + 1]
  cur[i], plain[i], exists[i] = read_total(w)
  if not cur[i] then return corrupt(w, 'is not a whole number') end
  raise_count[i] = read_raise_count(l)
  if not raise_count[i] then return corrupt(l, 'is not a raise count') end
end
-- Checked: from here on nothing fails.
local record_at = now + GRACE
for i = 1, windows do
  local a = 4 + 4 * (i - 1)
  local at = window_expiry(ARGV[a + 2], ARGV[a + 3])
  local new = cur[i]
  if fresh then new = minimum(add(cur[i], ARGV[a]), MAX) end
  if ARGV[a + 1] ~= '0' then
    if cmp(ARGV[a + 1], new) > 0 then new = ARGV[a + 1] end
    redis.call('SET', KEYS[2 * i], add(raise_count[i], '1'))
    redis.call('PEXPIREAT', KEYS[2 * i], string.format('%.0f', at))
  end
  local raises = nil
  if raise_count[i] ~= '0' then raises = KEYS[2 * i] end
  write_total(KEYS[2 * i + 1], cur[i], plain[i], exists[i], new, at, raises)
  if at > record_at then record_at = at end
end
local answer = nil
if fresh then answer = '1' end
write_ops(KEYS[1], rec, answer, record_at)
if fresh then return 1 end
return 0
"#;

/// Reads what admit, lease and give-back need: the record, the window's total and raise count
/// (KEYS 1 to 3); returns nil and an error reply if any is not valid.
const OP_READ: &str = r#"
local function read_op()
  local rec = read_ops(KEYS[1])
  if not rec then return nil, corrupt(KEYS[1], 'is not a valid operations record') end
  local cur, plain, exists = read_total(KEYS[2])
  if not cur then return nil, corrupt(KEYS[2], 'is not a whole number') end
  local raise_count = read_raise_count(KEYS[3])
  if not raise_count then return nil, corrupt(KEYS[3], 'is not a raise count') end
  local raises = nil
  if raise_count ~= '0' then raises = KEYS[3] end
  return {rec = rec, cur = cur, plain = plain, exists = exists, raise_count = raise_count,
    raises = raises}
end
"#;

/// KEYS: the operations record, the window, its raise count. ARGV: grace, seq, done_below,
/// end + grace, longest, count, below, cap, force (1 or 0). Answers {1 admitted or 0 denied,
/// total, raise count}.
const ADMIT: &str = r#"
local op, err = read_op()
if not op then return err end
local rec, cur = op.rec, op.cur
local at = window_expiry(ARGV[4], ARGV[5])
local reply, answer
if rec.kind == 'a' then
  -- A resend whose first answer was lost: the same answer, counted once.
  reply = {1, rec.number, rec.raise_count}
elseif rec.kind == 'd' then
  reply = {0, rec.number, '0'}
elseif rec.kind then
  -- Answered long ago (or a number another kind of operation used): nothing added.
  reply = {0, cur, '0'}
else
  local after = add(cur, ARGV[6])
  if cmp(after, U64) <= 0 and (ARGV[9] == '1' or (cmp(cur, ARGV[7]) < 0 and cmp(after, ARGV[8]) <= 0)) then
    local total = minimum(after, MAX)
    write_total(KEYS[2], cur, op.plain, op.exists, total, at, op.raises)
    reply, answer = {1, total, op.raise_count}, 'a' .. total .. '/' .. op.raise_count
  else
    reply, answer = {0, cur, '0'}, 'd' .. cur
  end
end
write_ops(KEYS[1], rec, answer, at)
return reply
"#;

/// KEYS: the operations record, the window, its raise count. ARGV: grace, seq, done_below,
/// end + grace, longest, block, ceiling. Answers {granted, the total now, the raise count when
/// granted}.
const LEASE: &str = r#"
local op, err = read_op()
if not op then return err end
local rec, cur = op.rec, op.cur
local at = window_expiry(ARGV[4], ARGV[5])
local granted, total, raise_count, answer = '0', cur, op.raise_count, nil
if rec.kind == 'g' then
  -- A resend: the first grant again, with the total as it is now.
  granted, raise_count = rec.number, rec.raise_count
elseif not rec.kind then
  -- Never more than the total can count (it stops at MAX).
  granted = minimum(minimum(ARGV[6], sub(ARGV[7], cur)), sub(MAX, cur))
  if granted ~= '0' then
    total = minimum(add(cur, granted), MAX)
    write_total(KEYS[2], cur, op.plain, op.exists, total, at, op.raises)
  end
  answer = 'g' .. granted .. '/' .. raise_count
end
write_ops(KEYS[1], rec, answer, at)
return {granted, total, raise_count}
"#;

/// KEYS: the operations record, the window, its raise count. ARGV: grace, seq, done_below,
/// end + grace, longest, unused, the raise count when the calls were counted. Answers the
/// calls taken off (0: the window was raised since, forfeited; a resend gets the first answer).
const GIVE_BACK: &str = r#"
local op, err = read_op()
if not op then return err end
local rec, cur = op.rec, op.cur
local at = window_expiry(ARGV[4], ARGV[5])
local taken, answer = '0', nil
if rec.kind == 'b' then
  taken = rec.number
elseif not rec.kind then
  if op.raise_count == canon(ARGV[7]) then
    taken = minimum(ARGV[6], cur)
    write_total(KEYS[2], cur, op.plain, op.exists, sub(cur, taken), at, op.raises)
  end
  answer = 'b' .. taken
end
write_ops(KEYS[1], rec, answer, at)
return taken
"#;
