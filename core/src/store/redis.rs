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

use super::{
    AdmitReply, AdmitRequest, GiveBack, InstanceId, LeaseReply, LeaseRequest, Store, StoreError,
    StoredState, SyncBatch, WindowKey,
};
use crate::window::Period;
use ::redis::{Client, Connection, ConnectionAddr, RedisError, RedisResult, Script};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
/// - `<prefix>:{<service>}:applied`: a hash, instance (32 hex digits) → the last `seq` applied
///   for that service; `<prefix>:{<service>}:seen`, a sorted set, keeps the
///   [`StoredState::INSTANCES_KEPT`] most recently seen instances, as [`StoredState`] does.
///   Both expire with the latest window they counted into.
/// - `<prefix>:{<service>}:lease:<instance>`: a hash (`seq`, `granted`, `returned`), the last
///   lease of that instance, expiring with its window.
///
/// Old windows go when their keys expire (never earlier than `grace` after the window's end),
/// not by [`StoredState::WINDOWS_KEPT`]. Expiry times come from the server's clock, never one
/// already past.
///
/// # Connections
/// Each call checks a connection out of a small pool (a new one when the pool is empty), so
/// threads never queue behind one connection; a connection that failed is dropped. A pooled
/// connection idle for a second or more is checked with `PING` first; one that turns out
/// closed (Redis restarted) is replaced, and a `sync`, `lease` or `give_back` that lost its
/// connection that way is sent again at once on a new one (they count once however often they
/// are sent). Connecting and each reply wait at most [`timeout`](Self::timeout).
///
/// # Credentials
/// `redis://user:password@host:port/db`, or `rediss://` for TLS (rustls, with the system's
/// root certificates or [`tls_root_certificate`](Self::tls_root_certificate)). The password
/// never appears in an error, a log line or this type's `Debug` output.
///
/// A `rediss://` URL installs rustls' *ring* crypto provider as the process default, unless
/// the process installed one already.
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
            // Fails only when the process has a provider already, which is then used.
            let _ = rustls::crypto::ring::default_provider().install_default();
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
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
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
        let (mut connection, pooled) = self.checkout()?;
        let mut result = op(&mut connection);
        if let Err(error) = &result {
            if pooled && resendable && error.is_connection_dropped() && !error.is_timeout() {
                log::debug!(
                    "quota: Redis connection to {} lost during {what} ({}); sending it again",
                    self.target,
                    self.redact(&error.to_string())
                );
                self.idle_lock().clear();
                connection = self.connect()?;
                result = op(&mut connection);
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
                Err(self.call_error(what, &error, resendable))
            }
        }
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

/// One service's deltas in a batch: per (period, window start), the calls and the window's end.
type ServiceDeltas = BTreeMap<(Period, u64), (u64, u64)>;

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
                .or_insert((0, 0));
            entry.0 = entry
                .0
                .saturating_add(delta.calls)
                .min(StoredState::MAX_TOTAL);
            entry.1 = entry.1.max(window.end_ms);
        }
        let instance = batch.instance.to_string();
        let invocations: Vec<_> = services
            .iter()
            .map(|(service, windows)| {
                let base = self.service_base(service);
                let mut invocation = SCRIPTS.sync.prepare_invoke();
                invocation
                    .key(format!("{base}:applied"))
                    .key(format!("{base}:seen"))
                    .arg(self.grace_ms)
                    .arg(&instance)
                    .arg(batch.seq)
                    .arg(StoredState::INSTANCES_KEPT);
                for (&(period, start_ms), &(calls, end_ms)) in windows {
                    let (end, longest) = self.expiry_args(period, end_ms);
                    invocation
                        .key(format!("{base}:{}:{start_ms}", period.as_str()))
                        .arg(calls)
                        .arg(end)
                        .arg(longest);
                }
                invocation
            })
            .collect();
        let reads: Vec<String> = batch.read.iter().map(|w| self.window_key(w)).collect();
        let stored = self.call("sync", true, |connection| {
            for invocation in &invocations {
                invocation.invoke::<i64>(connection)?;
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
        })?;
        stored
            .into_iter()
            .zip(&reads)
            .map(|(text, key)| match text {
                Ok(None) => Ok(0),
                Ok(Some(text)) => parse_total(&text).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "Redis at {}: {key:?} is not a whole number",
                        self.target
                    ))
                }),
                Err(error) if error.code() == Some("WRONGTYPE") => Err(StoreError::Corrupt(
                    format!("Redis at {}: {key:?} is not a whole number", self.target),
                )),
                Err(error) => Err(self.call_error("sync", &error, true)),
            })
            .collect()
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        let window = &request.window;
        let (end, longest) = self.expiry_args(window.period, window.end_ms);
        let mut invocation = SCRIPTS.admit.prepare_invoke();
        invocation
            .key(self.window_key(window))
            .arg(self.grace_ms)
            .arg(request.count)
            .arg(request.below)
            .arg(request.cap)
            .arg(u8::from(request.force))
            .arg(end)
            .arg(longest);
        // Not resendable: admission has no dedup record, so a resent admit could count twice.
        let (admitted, total): (i64, String) =
            self.call("admit", false, |connection| invocation.invoke(connection))?;
        let total = self.reply_number(&total)?;
        Ok(if admitted == 1 {
            AdmitReply::Admitted { total }
        } else {
            AdmitReply::Denied { total }
        })
    }

    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        let window = &request.window;
        let (end, longest) = self.expiry_args(window.period, window.end_ms);
        let mut invocation = SCRIPTS.lease.prepare_invoke();
        invocation
            .key(self.lease_key(&window.service, request.instance))
            .key(self.window_key(window))
            .arg(self.grace_ms)
            .arg(request.seq)
            .arg(request.block)
            .arg(request.ceiling)
            .arg(end)
            .arg(longest);
        let (granted, total): (String, String) =
            self.call("lease", true, |connection| invocation.invoke(connection))?;
        Ok(LeaseReply {
            granted: self.reply_number(&granted)?,
            total: self.reply_number(&total)?,
        })
    }

    fn give_back(&self, request: &GiveBack) -> Result<(), StoreError> {
        let window = &request.window;
        let (end, longest) = self.expiry_args(window.period, window.end_ms);
        let mut invocation = SCRIPTS.give_back.prepare_invoke();
        invocation
            .key(self.lease_key(&window.service, request.instance))
            .key(self.window_key(window))
            .arg(self.grace_ms)
            .arg(request.seq)
            .arg(request.unused)
            .arg(end)
            .arg(longest);
        self.call("give_back", true, |connection| {
            invocation.invoke::<i64>(connection)
        })?;
        Ok(())
    }
}

impl RedisStore {
    fn lease_key(&self, service: &str, instance: InstanceId) -> String {
        format!("{}:lease:{instance}", self.service_base(service))
    }

    fn reply_number(&self, text: &str) -> Result<u64, StoreError> {
        text.parse().map_err(|_| {
            StoreError::Corrupt(format!(
                "Redis at {}: a script answered {text:?}, not a whole number",
                self.target
            ))
        })
    }
}

/// A stored total: decimal digits, capped at [`StoredState::MAX_TOTAL`].
fn parse_total(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = text.trim_start_matches('0');
    if digits.len() > 19 {
        return Some(StoredState::MAX_TOTAL);
    }
    Some(
        digits
            .parse::<u64>()
            .unwrap_or(0)
            .min(StoredState::MAX_TOTAL),
    )
}

/// `%`, `{` and `}` escaped (so a name cannot break the hash tag); the empty name is `%`.
fn escape(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
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
    sync: Script::new(&format!("{PRELUDE}{SYNC}")),
    admit: Script::new(&format!("{PRELUDE}{ADMIT}")),
    lease: Script::new(&format!("{PRELUDE}{LEASE_RECORD}{LEASE_BODY}")),
    give_back: Script::new(&format!("{PRELUDE}{LEASE_RECORD}{GIVE_BACK_BODY}")),
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
local function write_total(key, cur, plain, exists, new, at)
  local c = cmp(new, cur)
  if not plain then redis.call('SET', key, new)
  elseif c > 0 then redis.call('INCRBY', key, sub(new, cur))
  elseif c < 0 then redis.call('DECRBY', key, sub(cur, new))
  elseif not exists then return end
  redis.call('PEXPIREAT', key, string.format('%.0f', at))
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

/// KEYS: applied hash, seen sorted set, then the service's windows. ARGV: grace, instance,
/// seq, instances kept, then per window: calls, end + grace, longest life.
const SYNC: &str = r#"
local instance, seq = ARGV[2], ARGV[3]
if not has_type(KEYS[1], 'hash') then return corrupt(KEYS[1], 'is not a hash') end
if not has_type(KEYS[2], 'zset') then return corrupt(KEYS[2], 'is not a sorted set') end
local last = redis.call('HGET', KEYS[1], instance)
if last then
  local l = canon(last)
  if not l then return corrupt(KEYS[1], 'has a seq that is not a whole number') end
  if cmp(l, seq) >= 0 then return 0 end
end
local applies = redis.call('HGET', KEYS[1], '#applies')
if applies and (not canon(applies) or #applies > 15) then
  return corrupt(KEYS[1], 'has a bad #applies')
end
local cur, plain, exists = {}, {}, {}
for k = 3, #KEYS do
  cur[k], plain[k], exists[k] = read_total(KEYS[k])
  if not cur[k] then return corrupt(KEYS[k], 'is not a whole number') end
end
-- Checked: from here on nothing fails.
local record_at = now + GRACE
for k = 3, #KEYS do
  local a = 5 + 3 * (k - 3)
  local at = window_expiry(ARGV[a + 1], ARGV[a + 2])
  write_total(KEYS[k], cur[k], plain[k], exists[k], minimum(add(cur[k], ARGV[a]), MAX), at)
  if at > record_at then record_at = at end
end
redis.call('HSET', KEYS[1], instance, seq)
local seen = redis.call('HINCRBY', KEYS[1], '#applies', 1)
redis.call('ZADD', KEYS[2], seen, instance)
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #old, 2 do redis.call('HDEL', KEYS[1], old[i]) end
end
extend(KEYS[1], record_at)
extend(KEYS[2], record_at)
return 1
"#;

/// KEYS: the window. ARGV: grace, count, below, cap, force (1 or 0), end + grace, longest.
const ADMIT: &str = r#"
local cur, plain, exists = read_total(KEYS[1])
if not cur then return corrupt(KEYS[1], 'is not a whole number') end
local after = add(cur, ARGV[2])
if cmp(after, U64) > 0 then return {0, cur} end
if ARGV[5] == '1' or (cmp(cur, ARGV[3]) < 0 and cmp(after, ARGV[4]) <= 0) then
  local new = minimum(after, MAX)
  write_total(KEYS[1], cur, plain, exists, new, window_expiry(ARGV[6], ARGV[7]))
  return {1, new}
end
return {0, cur}
"#;

/// Reads a lease record: its seq, granted and returned (text), or nil when absent, or false
/// when it is not valid.
const LEASE_RECORD: &str = r#"
local function read_lease(key)
  if not has_type(key, 'hash') then return false end
  local rec = redis.call('HMGET', key, 'seq', 'granted', 'returned')
  if not rec[1] and not rec[2] and not rec[3] then return nil end
  local s, g, r = canon(rec[1] or '0'), canon(rec[2] or '0'), canon(rec[3] or '0')
  if not (s and g and r) then return false end
  return {s, g, r}
end
"#;

/// KEYS: the lease record, the window. ARGV: grace, seq, block, ceiling, end + grace, longest.
const LEASE_BODY: &str = r#"
local rec = read_lease(KEYS[1])
if rec == false then return corrupt(KEYS[1], 'is not a valid lease record') end
local cur, plain, exists = read_total(KEYS[2])
if not cur then return corrupt(KEYS[2], 'is not a whole number') end
local seq = ARGV[2]
if rec and cmp(rec[1], seq) >= 0 then
  if rec[1] == seq then return {rec[2], cur} end
  return {'0', cur}
end
local granted = minimum(ARGV[3], sub(ARGV[4], cur))
local total = cur
local at = window_expiry(ARGV[5], ARGV[6])
if granted ~= '0' then
  total = minimum(add(cur, granted), MAX)
  write_total(KEYS[2], cur, plain, exists, total, at)
end
local returned = '0'
if rec then returned = rec[3] end
redis.call('HSET', KEYS[1], 'seq', seq, 'granted', granted, 'returned', returned)
extend(KEYS[1], at)
return {granted, total}
"#;

/// KEYS: the lease record, the window. ARGV: grace, seq, unused, end + grace, longest.
const GIVE_BACK_BODY: &str = r#"
local rec = read_lease(KEYS[1])
if rec == false then return corrupt(KEYS[1], 'is not a valid lease record') end
local cur, plain, exists = read_total(KEYS[2])
if not cur then return corrupt(KEYS[2], 'is not a whole number') end
local seq = ARGV[2]
local at = window_expiry(ARGV[4], ARGV[5])
if not rec then
  -- As StoredState: a give-back creates the instance's lease record, even when a retry.
  rec = {'0', '0', '0'}
  redis.call('HSET', KEYS[1], 'seq', '0', 'granted', '0', 'returned', '0')
  extend(KEYS[1], at)
end
if cmp(rec[3], seq) >= 0 then return 0 end
redis.call('HSET', KEYS[1], 'returned', seq)
extend(KEYS[1], at)
write_total(KEYS[2], cur, plain, exists, sub(cur, ARGV[3]), at)
return 1
"#;
