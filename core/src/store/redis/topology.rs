//! Where the keys live: one server, a Redis Cluster (reached through seed nodes, slots followed
//! by redis-rs' cluster client), or the master a set of Sentinels names. The store's
//! connections are one of two kinds, used through `ConnectionLike` by every operation.

use super::RedisStore;
use crate::secrets::Secrets;
use crate::store::StoreError;
use ::redis::cluster::{ClusterClientBuilder, ClusterConnection};
use ::redis::{
    Client, Connection, ConnectionAddr, ConnectionInfo, ConnectionLike, ErrorKind,
    IntoConnectionInfo, RedisConnectionInfo, RedisError, RedisResult, Role,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The servers a store uses.
pub(super) enum Backend {
    /// One server (or a proxy in front of several).
    Single(Client),
    /// A Redis Cluster: the seed nodes (the cluster client learns the others from them).
    Cluster(Vec<ConnectionInfo>),
    /// The master that the Sentinels name, asked again at every new connection.
    Sentinel(Sentinels),
}

/// The Sentinels, and the master they named when last asked.
pub(super) struct Sentinels {
    /// Each sentinel's address and credentials (the first's also serve the master).
    nodes: Vec<ConnectionInfo>,
    /// The name of the master they watch.
    name: String,
    /// The master's `host:port` when last asked, and when that was.
    master: Mutex<(Option<String>, Option<Instant>)>,
    /// Raised when the master changes: connections opened before go back to no pool.
    generation: AtomicU64,
}

impl Sentinels {
    /// The Sentinels are asked which node is master at most this often (and at every new
    /// connection), so pooled connections to a demoted master go within this long.
    pub(super) const MASTER_CHECK: Duration = Duration::from_secs(1);

    /// A client for the master the Sentinels name now: each is asked in turn
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`) until one names a node that says it is master
    /// (`ROLE`); every connection and reply waits at most the timeouts.
    fn master_client(&self, timeouts: (Duration, Duration)) -> RedisResult<Client> {
        let mut last = RedisError::from((ErrorKind::InvalidClientConfig, "no sentinels"));
        for sentinel in &self.nodes {
            match self.ask(sentinel, timeouts) {
                Ok(client) => {
                    let (address, _) = address(client.get_connection_info().addr());
                    let mut master = crate::locks::lock_std(&self.master);
                    if master.0.as_ref().is_some_and(|before| *before != address) {
                        // Whoever asked (a new connection, the clock, `follow_master`): the
                        // connections to the old master are of an older generation now, and
                        // are dropped at checkout and never pooled again.
                        self.generation.fetch_add(1, Ordering::SeqCst);
                    }
                    *master = (Some(address), Some(Instant::now()));
                    return Ok(client);
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// The master `sentinel` names, checked.
    fn ask(
        &self,
        sentinel: &ConnectionInfo,
        timeouts: (Duration, Duration),
    ) -> RedisResult<Client> {
        // Sentinels have no databases; and one without a password refuses any: then none.
        let plain = sentinel
            .clone()
            .set_redis_settings(RedisConnectionInfo::default());
        let with_db0 = sentinel
            .clone()
            .set_redis_settings(sentinel.redis_settings().clone().set_db(0));
        let mut connection = match timed(&Client::open(with_db0)?, timeouts) {
            // No password set: `AUTH password` says so, `AUTH user password` says the pair
            // is wrong. Then without credentials.
            Err(error)
                if error
                    .to_string()
                    .contains("without any password configured")
                    || error.kind() == ErrorKind::AuthenticationFailed =>
            {
                timed(&Client::open(plain)?, timeouts)?
            }
            other => other?,
        };
        let named: Option<(String, u16)> = ::redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.name)
            .query(&mut connection)?;
        let Some((host, port)) = named else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "the sentinel watches no master of that name",
            )));
        };
        let first = self.nodes.first().unwrap_or(sentinel);
        let addr = match first.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let client = Client::open(first.clone().set_addr(addr))?;
        let mut connection = timed(&client, timeouts)?;
        let primary = match ::redis::cmd("ROLE").query(&mut connection) {
            Ok(Role::Primary { .. }) => true,
            Ok(_) => false,
            // A user without `@dangerous` may run neither ROLE nor INFO; HELLO (`@connection`)
            // names the role too.
            Err(error) if error.code() == Some("NOPERM") => ::redis::cmd("HELLO")
                .query::<std::collections::HashMap<String, ::redis::Value>>(&mut connection)?
                .get("role")
                .is_some_and(|role| {
                    matches!(role, ::redis::Value::BulkString(text) if text == b"master")
                        || matches!(role, ::redis::Value::SimpleString(text) if text == "master")
                }),
            Err(error) => return Err(error),
        };
        match primary {
            true => Ok(client),
            false => Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "the node the sentinel named is not a master (yet)",
            ))),
        }
    }
}

/// A connection of `client`, connecting and answering within `(connect, response)`.
fn timed(client: &Client, (connect, response): (Duration, Duration)) -> RedisResult<Connection> {
    let connection = client.get_connection_with_timeout(connect)?;
    connection.set_read_timeout(Some(response))?;
    connection.set_write_timeout(Some(response))?;
    Ok(connection)
}

/// A connection: to one server, or to a whole cluster.
pub(super) enum Conn {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    /// The connection, for commands and scripts.
    pub(super) fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(connection) => connection,
            Conn::Cluster(connection) => connection.as_mut(),
        }
    }

    /// Whether this connection follows a cluster's slots (and reconnects by itself).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

/// `host:port` (or the socket path) of `addr`, and whether it uses TLS.
pub(super) fn address(addr: &ConnectionAddr) -> (String, bool) {
    match addr {
        ConnectionAddr::Tcp(host, port) => (format!("{host}:{port}"), false),
        ConnectionAddr::TcpTls { host, port, .. } => (format!("{host}:{port}"), true),
        other => (other.to_string(), false),
    }
}

/// Every URL in `urls` read (`what` names them in errors), with the secrets of all of them.
fn read_urls<S: AsRef<str>>(
    what: &str,
    urls: impl IntoIterator<Item = S>,
) -> Result<(Vec<ConnectionInfo>, Secrets), StoreError> {
    let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
    let mut secrets = Secrets::new(Vec::new());
    for url in &urls {
        secrets = secrets.and(Secrets::of_url(url).into_vec());
    }
    let mut infos = Vec::with_capacity(urls.len());
    for url in &urls {
        let info = url.as_str().into_connection_info().map_err(|error| {
            StoreError::Unavailable(format!(
                "invalid Redis URL among the {what}: {}",
                secrets.redact(&error.to_string())
            ))
        })?;
        secrets = secrets.and(info.redis_settings().password().map(str::to_owned));
        infos.push(info);
    }
    if infos.is_empty() {
        return Err(StoreError::Unavailable(format!("no {what} given")));
    }
    Ok((infos, secrets))
}

/// The addresses of `infos`, comma-separated, and whether any uses TLS.
fn addresses(infos: &[ConnectionInfo]) -> (String, bool) {
    let mut tls = false;
    let list: Vec<String> = infos
        .iter()
        .map(|info| {
            let (target, is_tls) = address(info.addr());
            tls |= is_tls;
            target
        })
        .collect();
    (list.join(","), tls)
}

/// The store a `redis+cluster://` or `redis+sentinel://` URL (or `rediss+…` for TLS) names,
/// `None` for another URL. See [`RedisStore::new`].
pub(super) fn from_topology_url(url: &str) -> Option<Result<RedisStore, StoreError>> {
    let (scheme, rest) = url.split_once("://")?;
    let (base, kind) = scheme.split_once('+')?;
    if !matches!(base, "redis" | "rediss") || !matches!(kind, "cluster" | "sentinel") {
        return None;
    }
    let invalid = |why: &str| {
        Some(Err(StoreError::Unavailable(format!(
            "invalid Redis URL: {base}+{kind}:// {why}"
        ))))
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    if hosts.split(',').any(str::is_empty) {
        return invalid("needs HOST:PORT[,HOST:PORT…], none empty");
    }
    if userinfo.contains(',') && userinfo[..userinfo.len() - 1].contains('@') {
        // `u:p@h1:1,u:p@h2:2`: the last `@` would read `p@h1:1,u:p` as the password.
        return invalid("takes the user and password once, before the first host");
    }
    let node = |host: &str, db: &str| {
        // A Sentinel listens on 26379 unless told otherwise (not Redis's 6379).
        let bracketed = host.starts_with('[');
        let ported = if bracketed {
            host.contains("]:")
        } else {
            host.contains(':')
        };
        let port = if kind == "sentinel" && !ported {
            ":26379"
        } else {
            ""
        };
        format!("{base}://{userinfo}{host}{port}{db}")
    };
    if kind == "cluster" {
        if !matches!(path, "" | "/" | "/0") {
            return invalid("takes no path but `/` (a cluster has database 0 only)");
        }
        return Some(RedisStore::cluster(hosts.split(',').map(|h| node(h, ""))));
    }
    let mut parts = path.strip_prefix('/').unwrap_or("").split('/');
    let master = parts.next().unwrap_or("");
    let db = parts.next().map(|db| format!("/{db}")).unwrap_or_default();
    if master.is_empty() || master.contains(['?', '#']) || parts.next().is_some() {
        return invalid("needs the master's name as its path: /MASTER[/DB]");
    }
    Some(RedisStore::sentinel(
        hosts.split(',').map(|h| node(h, &db)),
        master,
    ))
}

impl RedisStore {
    /// A store on a Redis Cluster (Redis 7 or later, or Valkey), found through `nodes`: one or
    /// more of its nodes, each a URL as for [`new`](Self::new) (`redis://[user:password@]host:
    /// port`, or `rediss://` for TLS; all with the same credentials; the database is always
    /// 0). The others are learned from them; `MOVED` and `ASK` redirections, slot moves and
    /// failovers are followed by redis-rs' cluster client. Connects lazily, at the first call.
    ///
    /// ```no_run
    /// use quota_core::RedisStore;
    /// let store = RedisStore::cluster([
    ///     "redis://default:secret@10.0.0.1:7000",
    ///     "redis://default:secret@10.0.0.2:7000",
    /// ])?
    /// .prefix("myapp:quota");
    /// # Ok::<(), quota_core::StoreError>(())
    /// ```
    ///
    /// Each script touches the keys of one service, which share a slot (see
    /// [Keys](Self#keys)); a sync that reads several services reads each one's keys on its own
    /// node. See [Cluster and Sentinel](Self#cluster-and-sentinel) for what a failover may
    /// lose.
    ///
    /// Errors: [`StoreError::Unavailable`] if `nodes` is empty or a URL is not valid (the
    /// message never contains a password).
    pub fn cluster<S: AsRef<str>>(
        nodes: impl IntoIterator<Item = S>,
    ) -> Result<RedisStore, StoreError> {
        let (infos, secrets) = read_urls("cluster nodes", nodes)?;
        if infos.iter().any(|info| info.redis_settings().db() != 0) {
            // Else every connection would fail: SELECT is not allowed in cluster mode.
            return Err(StoreError::Unavailable(
                "invalid Redis Cluster nodes: a cluster has database 0 only".into(),
            ));
        }
        let (list, tls) = addresses(&infos);
        // Checked now, so that a bad set of nodes fails here, not at the first call.
        ClusterClientBuilder::new(infos.clone())
            .build()
            .map_err(|error| {
                StoreError::Unavailable(format!(
                    "invalid Redis Cluster nodes: {}",
                    secrets.redact(&error.to_string())
                ))
            })?;
        RedisStore::with_backend(
            Backend::Cluster(infos),
            secrets,
            format!("cluster {list}"),
            tls,
        )
    }

    /// A store on the master that the Sentinels at `sentinels` name `master`: each sentinel a
    /// URL `redis://[user:password@]host:port` (`rediss://` for TLS). Every new connection
    /// asks the Sentinels for the master first, so after a failover the store follows the
    /// new master; a call whose connection the old master closed, or that it refused as a
    /// replica (`READONLY`), is sent again to the new one (every call counts once however
    /// often it is sent). The user, password and database number of the first sentinel URL
    /// are the master's; the Sentinels are sent the same user and password, or none if they
    /// have no password set. Connecting to each and every reply wait at most
    /// [`timeout`](Self::timeout).
    ///
    /// ```no_run
    /// use quota_core::RedisStore;
    /// let store = RedisStore::sentinel(
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"],
    ///     "mymaster",
    /// )?;
    /// # Ok::<(), quota_core::StoreError>(())
    /// ```
    ///
    /// Errors: [`StoreError::Unavailable`] if `sentinels` is empty or a URL is not valid (the
    /// message never contains a password).
    pub fn sentinel<S: AsRef<str>>(
        sentinels: impl IntoIterator<Item = S>,
        master: &str,
    ) -> Result<RedisStore, StoreError> {
        let (infos, secrets) = read_urls("sentinels", sentinels)?;
        let (list, tls) = addresses(&infos);
        RedisStore::with_backend(
            Backend::Sentinel(Sentinels {
                nodes: infos,
                name: master.to_owned(),
                master: Mutex::new((None, None)),
                generation: AtomicU64::new(0),
            }),
            secrets,
            format!("master {master:?} of the sentinels {list}"),
            tls,
        )
    }

    /// A new connection to the backend (not yet checked), with the store's timeouts.
    pub(super) fn open(&self) -> RedisResult<Conn> {
        match &self.backend {
            Backend::Single(client) => Ok(Conn::Single(timed(client, self.timeouts())?)),
            Backend::Cluster(nodes) => {
                // redis-rs' defaults retry 16 times, sleeping up to minutes between tries (on
                // `CLUSTERDOWN`, `TRYAGAIN`, `LOADING`): a call would block far past the
                // timeout. At most `CLUSTER_RETRIES` more sends, each waiting at most the
                // timeouts, with at most `CLUSTER_RETRY_WAIT_MS` between them.
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(self.connect_timeout)
                    .response_timeout(self.response_timeout)
                    .retries(Self::CLUSTER_RETRIES)
                    .min_retry_wait(Self::CLUSTER_RETRY_WAIT_MS / 4)
                    .max_retry_wait(Self::CLUSTER_RETRY_WAIT_MS)
                    .build()?;
                let connection = client.get_connection()?;
                // The builder sets no write timeout: a node that stops reading would block.
                connection.set_write_timeout(Some(self.response_timeout))?;
                Ok(Conn::Cluster(Box::new(connection)))
            }
            Backend::Sentinel(sentinels) => {
                let client = sentinels.master_client(self.timeouts())?;
                Ok(Conn::Single(timed(&client, self.timeouts())?))
            }
        }
    }

    /// With Sentinel, at most every [`Sentinels::MASTER_CHECK`]: asks the Sentinels which
    /// node is master. If another than before ([`Sentinels::master_client`] raises the
    /// generation, whoever asks), the pool is emptied: its connections go to the old master,
    /// which may take writes until Sentinel demotes it (they would be lost).
    pub(super) fn follow_master(&self) {
        let Backend::Sentinel(sentinels) = &self.backend else {
            return;
        };
        let checked = crate::locks::lock_std(&sentinels.master).1;
        if checked.is_some_and(|at| at.elapsed() < Sentinels::MASTER_CHECK) {
            return;
        }
        // Not asked again by others while this asks.
        crate::locks::lock_std(&sentinels.master).1 = Some(Instant::now());
        let generation = self.master_generation();
        match sentinels.master_client(self.timeouts()) {
            Ok(client) => {
                if self.master_generation() != generation {
                    let (now, _) = address(client.get_connection_info().addr());
                    log::info!(
                        "quota: the {} is now at {now}; dropping the connections to the old one",
                        self.target
                    );
                    self.idle_lock().clear();
                }
            }
            Err(error) => log::debug!(
                "quota: the sentinels of {} did not answer ({}); keeping the connections",
                self.target,
                self.redact(&error.to_string())
            ),
        }
    }

    /// How many times the master changed (0 unless Sentinel): a connection checked out
    /// before a change is not pooled again.
    pub(super) fn master_generation(&self) -> u64 {
        match &self.backend {
            Backend::Sentinel(sentinels) => sentinels.generation.load(Ordering::SeqCst),
            Backend::Single(_) | Backend::Cluster(_) => 0,
        }
    }

    /// The connect and response timeouts.
    fn timeouts(&self) -> (Duration, Duration) {
        (self.connect_timeout, self.response_timeout)
    }

    /// A client for the one node [`server_clock`](Self::server_clock) reads and its address:
    /// the server; the first cluster node given; the master the Sentinels name now (`None`
    /// if they name none: the clock then reads this host's, and says so).
    pub(super) fn clock_node(&self) -> (Option<Client>, String) {
        let client = match &self.backend {
            Backend::Single(client) => Ok(client.clone()),
            Backend::Cluster(nodes) => match nodes.first() {
                Some(node) => Client::open(node.clone()),
                None => Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "no cluster nodes",
                ))),
            },
            Backend::Sentinel(sentinels) => sentinels.master_client(self.timeouts()),
        };
        match client {
            Ok(client) => {
                let (node, _) = address(client.get_connection_info().addr());
                (Some(client), node)
            }
            Err(error) => (
                None,
                format!(
                    "no node ({} named none: {})",
                    self.target,
                    self.redact(&error.to_string())
                ),
            ),
        }
    }
}
