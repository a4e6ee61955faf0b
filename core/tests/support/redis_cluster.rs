//! Real Redis Clusters and Sentinel setups for the tests, from Debian's `redis-server` on
//! loopback: each node its own child process on a free port (and its cluster bus port, port +
//! 10000, free too) in its own temporary folder, killed on drop (by its own PID). Included with
//! `#[path = "support/redis_cluster.rs"] mod redis_cluster;`.
//!
//! A node that cannot start fails the test with its log; no test is ever skipped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// One `redis-server` child process (a cluster node, a replica or a sentinel).
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Its `requirepass`, which `cli` sends.
    password: Option<String>,
}

impl Node {
    /// Starts `redis-server` with `args` (before them, a config file if `config` is given) on
    /// a free port, and waits until it answers `PING`; on a port another process took in
    /// the meantime (its server answers, ours exits), tries another.
    fn spawn(args: &[&str], config: Option<&str>, bus: bool, password: Option<&str>) -> Node {
        for _ in 0..5 {
            if let Some(node) = Node::try_spawn(args, config, bus, password) {
                return node;
            }
        }
        panic!("redis-server found no free port in 5 tries");
    }

    fn try_spawn(
        args: &[&str],
        config: Option<&str>,
        bus: bool,
        password: Option<&str>,
    ) -> Option<Node> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let port = free_port(bus);
        let mut command = Command::new("redis-server");
        if let Some(config) = config {
            let file = dir.path().join("node.conf");
            std::fs::write(
                &file,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n{config}",
                    path(dir.path())
                ),
            )
            .unwrap();
            command.arg(path(&file));
        }
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &path(dir.path())])
            .args(["--logfile", &path(&dir.path().join("log"))])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().unwrap_or_else(|error| {
            panic!("redis-server could not be started ({error}): `apt-get install redis-server`")
        });
        let mut node = Node {
            child: Some(child),
            port,
            dir,
            password: password.map(str::to_owned),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let pid = node.child.as_ref().map_or(0, Child::id);
            if node.cli(&["PING"]).trim() == "PONG" {
                // Ours, not another test process's server on the same port.
                let info = node.cli(&["INFO", "server"]);
                if info
                    .lines()
                    .any(|l| l.trim() == format!("process_id:{pid}"))
                {
                    return Some(node);
                }
            }
            if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                let log = node.log();
                if log.contains("Address already in use") {
                    return None;
                }
                panic!("redis-server exited ({status}): {log}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not answer: {}", node.log());
    }

    /// `redis-cli -p <port> args…`: its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        if let Some(password) = &self.password {
            command.args(["-a", password, "--no-auth-warning"]);
        }
        let output = command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The first line of `ROLE`: `master`, `slave` or `sentinel`.
    pub fn role(&self) -> String {
        self.cli(&["ROLE"]).lines().next().unwrap_or("").to_owned()
    }

    /// Kills the process (SIGKILL), at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster on loopback: `masters` masters, each with `replicas` replicas.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// How many of the nodes are replicas.
    replicas: usize,
}

impl Cluster {
    pub fn start(masters: usize, replicas: usize) -> Cluster {
        // With replicas, a dead master is failed over quickly (the tests kill one); without,
        // a node the loaded machine starves for a while must not be marked failed (its slots
        // would answer `CLUSTERDOWN`).
        let node_timeout = if replicas > 0 { "2000" } else { "15000" };
        let nodes: Vec<Node> = (0..masters * (1 + replicas))
            .map(|_| {
                Node::spawn(
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        node_timeout,
                        // A replica may take over however long ago it last heard its master
                        // (else a quiet one refuses: "disconnected for longer than allowed").
                        "--cluster-replica-validity-factor",
                        "0",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    None,
                    true,
                    None,
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            text.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed: {text}"
        );
        let cluster = Cluster {
            nodes,
            replicas: masters * replicas,
        };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every node says `cluster_state:ok`, knows every other node and every
    /// replica (as a replica).
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.nodes.iter().all(|node| {
                let info = node.cli(&["CLUSTER", "INFO"]);
                let replicas = node
                    .cli(&["CLUSTER", "NODES"])
                    .lines()
                    .filter(|line| line.contains("slave"))
                    .count();
                // A replica's first full sync done (else a failover loses everything).
                let synced = node.role() != "slave"
                    || node
                        .cli(&["INFO", "replication"])
                        .contains("master_link_status:up");
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", self.nodes.len()))
                    && replicas == self.replicas
                    && synced
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never became ok");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills (SIGKILL) the node at `port` and waits until `replica` took over and every
    /// node still up routes its slots there.
    pub fn kill_and_fail_over(&mut self, port: u16, replica: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap()
            .kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        let wanted = format!("127.0.0.1:{replica}@");
        loop {
            let settled = self.nodes.iter().filter(|n| n.child.is_some()).all(|node| {
                node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && node.cli(&["CLUSTER", "NODES"]).lines().any(|line| {
                        line.contains(&wanted) && line.contains("master") && line.contains('-')
                    })
            });
            if settled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no automatic failover within 30 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node's URL (the seeds a store may be given).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(Node::url)
            .collect()
    }

    pub fn node(&self, port: u16) -> &Node {
        self.nodes.iter().find(|n| n.port == port).unwrap()
    }

    /// The port of the master that holds `key`'s slot now, and of one replica of it.
    pub fn master_and_replica_of(&self, key: &str) -> (u16, Option<u16>) {
        let any = self.nodes.iter().find(|n| n.child.is_some()).unwrap();
        let slot: u16 = any
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap();
        let nodes = any.cli(&["CLUSTER", "NODES"]);
        let lines: Vec<Vec<&str>> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let port =
            |address: &str| -> u16 { address.split(['@', ':']).nth(1).unwrap().parse().unwrap() };
        let master = lines
            .iter()
            .find(|f| {
                f[2].contains("master")
                    && f[8..].iter().any(|range| {
                        let (low, high) = range.split_once('-').unwrap_or((range, range));
                        match (low.parse::<u16>(), high.parse::<u16>()) {
                            (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                            _ => false,
                        }
                    })
            })
            .unwrap_or_else(|| panic!("no master for slot {slot}: {nodes}"));
        let replica = lines
            .iter()
            .find(|f| f[2].contains("slave") && f[3] == master[0])
            .map(|f| port(f[1]));
        (port(master[1]), replica)
    }

    /// `CLUSTER FAILOVER` on `replica` (a coordinated failover: the master stops taking writes
    /// until the replica has them all), then waits until it is master and every node agrees.
    pub fn fail_over_to(&self, replica: u16) {
        let node = self.node(replica);
        let answer = node.cli(&["CLUSTER", "FAILOVER"]);
        assert_eq!(answer.trim(), "OK", "CLUSTER FAILOVER answered {answer}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while node.role() != "master" {
            assert!(Instant::now() < deadline, "the failover never happened");
            thread::sleep(Duration::from_millis(20));
        }
        self.wait_until_ok();
    }
}

/// A master, one replica of it, and one Sentinel watching it as `mymaster`.
pub struct SentinelSetup {
    pub master: Node,
    pub replica: Node,
    pub sentinel: Node,
}

impl SentinelSetup {
    pub const NAME: &'static str = "mymaster";

    pub fn start() -> SentinelSetup {
        SentinelSetup::with_password(None)
    }

    /// With `password`, the master and replica require it (and the replica and the sentinel
    /// use it); the sentinel itself has none.
    pub fn with_password(password: Option<&str>) -> SentinelSetup {
        let mut plain = vec!["--save", "", "--appendonly", "no"];
        if let Some(password) = password {
            plain.extend(["--requirepass", password, "--masterauth", password]);
        }
        let master = Node::spawn(&plain, None, false, password);
        let master_port = master.port.to_string();
        let replica = Node::spawn(
            &[&plain[..], &["--replicaof", "127.0.0.1", &master_port]].concat(),
            None,
            false,
            password,
        );
        let auth = password.map_or(String::new(), |password| {
            format!("sentinel auth-pass {} {password}\n", Self::NAME)
        });
        let sentinel = Node::spawn(
            &["--sentinel"],
            Some(&format!(
                "sentinel monitor {} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {0} 30000\n\
                 sentinel failover-timeout {0} 5000\n{auth}",
                Self::NAME,
                master.port
            )),
            false,
            None,
        );
        let setup = SentinelSetup {
            master,
            replica,
            sentinel,
        };
        // The replica synced, and the sentinel knows it (else a failover has nothing to
        // promote).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let synced = setup
                .master
                .cli(&["INFO", "replication"])
                .contains("state=online");
            let known = setup
                .sentinel
                .cli(&["SENTINEL", "REPLICAS", Self::NAME])
                .contains(&setup.replica.port.to_string());
            if synced && known {
                return setup;
            }
            assert!(
                Instant::now() < deadline,
                "the replica or sentinel never got ready"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port of the master the sentinel names now.
    pub fn named_master(&self) -> u16 {
        let answer = self
            .sentinel
            .cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::NAME]);
        answer
            .lines()
            .nth(1)
            .unwrap_or("0")
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// `SENTINEL FAILOVER` once the replica has every write, then waits until the replica is
    /// master and the sentinel names it (the old master may still think it is master: Sentinel
    /// demotes it within about 10 s).
    pub fn fail_over(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let offset = |node: &Node, field: &str| -> Option<u64> {
            node.cli(&["INFO", "replication"])
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().parse().ok())
        };
        while offset(&self.master, "master_repl_offset:")
            != offset(&self.replica, "slave_repl_offset:")
        {
            assert!(Instant::now() < deadline, "the replica never caught up");
            thread::sleep(Duration::from_millis(10));
        }
        loop {
            let answer = self.sentinel.cli(&["SENTINEL", "FAILOVER", Self::NAME]);
            if answer.trim() == "OK" {
                break;
            }
            // NOGOODSLAVE: the sentinel has not yet seen the replica as fit; ask again.
            assert!(
                Instant::now() < deadline,
                "SENTINEL FAILOVER answered {answer}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        loop {
            let done = self.replica.role() == "master" && self.named_master() == self.replica.port;
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Sentinel failover never finished"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A loopback port nobody listens on (never 6379); with `bus`, its cluster bus port (+10000)
/// is free too.
pub fn free_port(bus: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        if port == 6379 || (bus && port > 55_000) {
            continue;
        }
        if bus && TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
            continue;
        }
        return port;
    }
}
