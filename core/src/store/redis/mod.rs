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

mod clock;
mod operations;
mod pool;
mod scripts;
mod topology;

pub use self::clock::RedisClock;

use self::pool::Idle;
use self::topology::{address, Backend};
use super::redis_text::escape;
#[cfg(doc)]
use super::{Store, StoredState};
use super::{StoreError, WindowKey};
use crate::secrets::Secrets;
use ::redis::Client;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

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
/// # Cluster and Sentinel
/// [`RedisStore::cluster`] takes seed nodes of a Redis Cluster; [`RedisStore::sentinel`] the
/// Sentinels that watch a master. On a cluster every script touches one slot (one service's
/// keys share its hash tag, the operations record included, so a call sent again after a
/// redirection or a failover still counts once); a sync that reads several services reads
/// each key from its own node. redis-rs' cluster client follows `MOVED` and `ASK`, learns
/// the new slots after a failover and sends a call again at most 3 times (each send counting
/// once), each connect and reply within [`timeout`](Self::timeout) and at most 200 ms apart:
/// a call to a cluster that is down (`CLUSTERDOWN` while a failover is under way) fails
/// within about 4 timeouts, rather than block for redis-rs' default of 16 tries minutes apart.
/// Learning the slots connects to each node in turn, each within the timeout. With Sentinel,
/// every new connection asks the Sentinels for the master, and they are asked again at most
/// every second: once any of these answers names another master, the connections to the old
/// one are dropped (never used or pooled again), and a call the old master refused as a
/// replica (`READONLY`) or lost with its connection is sent again to the new one.
///
/// Replication in Redis is asynchronous and this store does not `WAIT` for replicas, so what
/// a failover may lose is bounded as follows (it never counts a call twice):
/// - A coordinated failover (`CLUSTER FAILOVER`, or Sentinel with the replica caught up)
///   loses nothing: the replica has every write the master acknowledged.
/// - A master that crashes takes with it the writes it acknowledged but had not yet sent to
///   its replica: the replication lag (well under a millisecond on a local network). Those
///   calls were admitted but are no longer counted. (A replica that had not finished its
///   first sync has nothing: give new replicas time before relying on them.)
/// - With Sentinel, writes that reach the old master after the new one was promoted, until
///   the store asks again (at most a second) or Sentinel demotes the old master, are lost
///   when it resyncs.
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
    backend: Backend,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    grace_ms: u64,
    idle: Mutex<Vec<Idle>>,
    /// Texts never shown: the password, as written in the URL and decoded.
    secrets: Secrets,
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

impl RedisStore {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "quota";
    /// The default connection and response timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default time a window's keys are kept after the window ends.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
    /// Idle connections kept for reuse (more may be open while calls run at once).
    pub const MAX_IDLE: usize = 16;

    /// A store at `url`: `redis://[user:password@]host[:port][/db]`, `rediss://…` for TLS, or
    /// `redis+unix:///path/to/socket`. Connects lazily, at the first call.
    ///
    /// Also a Redis Cluster or a Sentinel-managed master (the same as
    /// [`cluster`](Self::cluster) and [`sentinel`](Self::sentinel), for config files):
    /// - `redis+cluster://[user:password@]host:port[,host:port…]`: seed nodes of a cluster;
    /// - `redis+sentinel://[user:password@]host:port[,host:port…]/master[/db]`: the Sentinels,
    ///   and the name of the master they watch (the credentials serve both);
    ///
    /// and `rediss+cluster://…`, `rediss+sentinel://…` for TLS.
    ///
    /// Errors: [`StoreError::Unavailable`] if the URL is not a valid Redis URL (the message
    /// never contains the password).
    pub fn new(url: &str) -> Result<RedisStore, StoreError> {
        if let Some(store) = topology::from_topology_url(url) {
            return store;
        }
        let secrets = Secrets::of_url(url);
        let client = Client::open(url).map_err(|error| {
            StoreError::Unavailable(format!(
                "invalid Redis URL: {}",
                secrets.redact(&error.to_string())
            ))
        })?;
        let info = client.get_connection_info();
        let secrets = secrets.and(info.redis_settings().password().map(str::to_owned));
        let (target, tls) = address(info.addr());
        RedisStore::with_backend(Backend::Single(client), secrets, target, tls)
    }

    /// A store on `backend` with the default settings.
    fn with_backend(
        backend: Backend,
        secrets: Secrets,
        target: String,
        tls: bool,
    ) -> Result<RedisStore, StoreError> {
        if tls {
            crypto_provider_chosen()?;
        }
        Ok(RedisStore {
            backend,
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
        let Backend::Single(client) = &self.backend else {
            return Err(StoreError::Unavailable(format!(
                "a TLS root certificate is only taken for one server's URL, not for the {}",
                self.target
            )));
        };
        let certificates = ::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        };
        let client = Client::build_with_tls(client.get_connection_info().clone(), certificates)
            .map_err(|error| {
                StoreError::Unavailable(format!(
                    "cannot use the TLS root certificate for Redis at {}: {}",
                    self.target,
                    self.redact(&error.to_string())
                ))
            })?;
        self.backend = Backend::Single(client);
        self.custom_root = true;
        self.idle_lock().clear();
        Ok(self)
    }

    /// The key holding the total of `window`: `<prefix>:{<service>}:<spec>:<start ms>`
    /// (escaped as described under [Keys](Self#keys); `<spec>` is the window spec's key,
    /// [`WindowSpec::key`](crate::WindowSpec::key): a plain period's word, as before, or e.g.
    /// `day@America/Los_Angeles`, which needs no escaping).
    pub fn window_key(&self, window: &WindowKey) -> String {
        format!(
            "{}:{}:{}",
            self.service_base(&window.service),
            window.spec.key(),
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

    /// Whether the store is on a Redis Cluster.
    fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    fn redact(&self, text: &str) -> String {
        self.secrets.redact(text)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, info) = match &self.backend {
            Backend::Single(client) => ("server", Some(client.get_connection_info().clone())),
            Backend::Cluster(nodes) => ("cluster", nodes.first().cloned()),
            Backend::Sentinel(_) => ("sentinel", None),
        };
        let redis = info.as_ref().map(|info| info.redis_settings());
        f.debug_struct("RedisStore")
            .field("kind", &kind)
            .field("target", &self.target)
            .field("tls", &self.tls)
            .field("custom_root_certificate", &self.custom_root)
            .field("db", &redis.map(|r| r.db()))
            .field("username", &redis.and_then(|r| r.username()))
            .field(
                "password",
                &match kind {
                    "sentinel" if !self.secrets.is_empty() => "<redacted>",
                    _ => redis
                        .and_then(|r| r.password())
                        .map(|_| "<redacted>")
                        .unwrap_or("<none>"),
                },
            )
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("grace_ms", &self.grace_ms)
            .field("idle_connections", &self.idle_connections())
            .finish()
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
