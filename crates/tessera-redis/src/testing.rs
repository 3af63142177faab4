//! Test support (feature `testing`): a private `redis-server` for tests,
//! one per test binary, on a free loopback port (never 6379), in its own temporary
//! directory, with persistence off. It is stopped when the test process
//! ends, however it ends: a small shell waits on a pipe from this process
//! and kills the server when the pipe closes.
//!
//! There is no skipping: without `redis-server` on PATH every test that
//! needs one fails, saying so (`./scripts/test` installs it).

// Test support: a server that cannot start fails the test that needs it.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{RedisOptions, RedisStore};

/// A running private `redis-server`; dropping it stops the server.
pub struct Server {
    /// The loopback port it listens on.
    pub port: u16,
    /// The TLS port, for a [`tls_server`].
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
    /// The extra `redis-server` arguments it was started with.
    extra: String,
    // Kept so the watchdog's stdin (the pipe) stays open while we live.
    watchdog: Child,
}

impl Server {
    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (SIGTERM, as an operator's restart would) and
    /// waits until it has exited; its directory, with whatever Redis
    /// persisted there, is kept for [`Stopped::start_again`].
    pub fn stop(self) -> Stopped {
        stop_watchdog(self.watchdog);
        Stopped {
            port: self.port,
            dir: self.dir,
            extra: self.extra,
        }
    }
}

impl Server {
    /// Kills the server with SIGKILL, a crash (nothing is written but what
    /// its fsync policy already wrote), and waits until it is gone; its
    /// directory is kept for [`Stopped::start_again`].
    pub fn kill(self) -> Stopped {
        let pid = redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c))
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("process_id:"))
                    .map(|p| p.trim().to_owned())
            })
            .expect("the server's process id (INFO server)");
        let killed = Command::new("kill")
            .arg("-KILL")
            .arg(&pid)
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -KILL {pid}");
        self.stop()
    }
}

/// A server stopped by [`Server::stop`]: its port and its data.
pub struct Stopped {
    pub port: u16,
    dir: tempfile::TempDir,
    extra: String,
}

impl Stopped {
    /// Starts it again on the same port, directory and arguments, so it
    /// loads what it persisted (with `--appendonly yes`, see [`aof_server`]).
    pub fn start_again(self) -> Server {
        start_in(Some(self.port), None, &self.extra, Some(self.dir))
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

/// Whether the server on `port` answers and is the one started in `dir`
/// (another test process may have taken the port in between).
fn is_ours(port: u16, dir: &std::path::Path) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    let Ok(answer) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dir")
        .query::<Vec<String>>(&mut conn)
    else {
        return false;
    };
    let ours = std::fs::canonicalize(dir).ok();
    answer.get(1).map(std::path::PathBuf::from) == ours
}

fn start() -> Server {
    start_on(None)
}

fn start_on(fixed_port: Option<u16>) -> Server {
    start_with(fixed_port, None, "")
}

fn assert_installed(binary: &str) {
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(found, Ok(s) if s.success()),
        "{binary} is not on PATH: the Redis store's tests need it \
         (Debian: apt-get install redis-server, which has redis-cli too; ./scripts/test installs it)"
    );
}

/// Runs `command` under a small shell that kills it (and waits for it)
/// when our end of its stdin closes: when the returned child is dropped
/// or this process ends, however it ends.
fn watched(command: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{command} & pid=$!; cat >/dev/null; kill $pid; wait $pid"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sh for redis-server")
}

/// Closes the watchdog's pipe and waits until it and its server are gone.
fn stop_watchdog(mut watchdog: Child) {
    drop(watchdog.stdin.take());
    let _ = watchdog.wait();
}

/// Starts a server; with `tls` = (cert, key, CA) files it also listens
/// with TLS on a second free port. `extra` is more `redis-server`
/// arguments.
fn start_with(fixed_port: Option<u16>, tls: Option<[&std::path::Path; 3]>, extra: &str) -> Server {
    start_in(fixed_port, tls, extra, None)
}

/// [`start_with`] in `dir` if given (a restart), else in a new directory.
fn start_in(
    fixed_port: Option<u16>,
    tls: Option<[&std::path::Path; 3]>,
    extra: &str,
    dir: Option<tempfile::TempDir>,
) -> Server {
    assert_installed("redis-server");
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().expect("temp dir for redis-server"));
    for _ in 0..5 {
        let port = fixed_port.unwrap_or_else(free_port);
        let tls_port = tls.map(|_| free_port());
        let tls_args = match (tls, tls_port) {
            (Some([cert, key, ca]), Some(p)) => format!(
                "--tls-port {p} --tls-cert-file '{}' --tls-key-file '{}' --tls-ca-cert-file '{}' \
                 --tls-auth-clients no",
                cert.display(),
                key.display(),
                ca.display()
            ),
            _ => String::new(),
        };
        // `--appendonly no` first: an `extra` --appendonly wins.
        let watchdog = watched(&format!(
            "redis-server --bind 127.0.0.1 --port {port} --dir '{}' --save '' --appendonly no \
             --protected-mode yes --logfile '{}/redis.log' {tls_args} {extra}",
            dir.path().display(),
            dir.path().display(),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if is_ours(port, dir.path()) {
                return Server {
                    port,
                    tls_port,
                    dir,
                    extra: extra.to_owned(),
                    watchdog,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Port taken in between, or a slow start: stop it (its watchdog's
        // pipe closes, it kills its server) and try another port.
        stop_watchdog(watchdog);
    }
    panic!("redis-server did not start on a free port after 5 tries");
}

/// The binary's server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

/// A fresh, empty store: its own prefix on the shared server, so cases
/// run concurrently without seeing each other (no FLUSHALL). Panics if
/// the server cannot be reached: this is test support.
pub async fn fresh_store(buckets: Option<u32>) -> RedisStore {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    // The pid too: under nextest each case is its own process, and two
    // processes could end up on one server.
    let options = RedisOptions {
        prefix: RedisOptions::prefix_for(&format!("t{}-{n}", std::process::id())),
        buckets,
        ..RedisOptions::default()
    };
    RedisStore::connect_with(&server().url(), options)
        .await
        .expect("connect to the private redis-server")
}

/// A server of the caller's own (stopped when dropped), for tests that
/// stop Redis under a store.
pub fn private_server() -> Server {
    start()
}

/// A private server that also speaks TLS, with the certificate and key
/// files given (the CA file is what it would check client certificates
/// against; it does not ask for any).
pub fn tls_server(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> Server {
    start_with(None, Some([cert, key, ca]), "")
}

/// A new, empty server on the port a stopped one had.
pub fn restart_on(port: u16) -> Server {
    start_on(Some(port))
}

/// A store with its own prefix on `server`.
pub async fn store_on(server: &Server, options: RedisOptions) -> RedisStore {
    RedisStore::connect_with(&server.url(), options)
        .await
        .expect("connect to a private redis-server")
}

/// A plain connection to the shared server, to look at the keys.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(server().url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}

/// A private server with the append-only file on and fsynced on every
/// write (`--appendonly yes --appendfsync always`): what it acknowledged
/// survives [`Server::stop`] and [`Stopped::start_again`].
pub fn aof_server() -> Server {
    start_with(None, None, "--appendonly yes --appendfsync always")
}

/// A private Redis Cluster of three masters without replicas.
pub struct Cluster {
    /// The masters' ports.
    pub ports: Vec<u16>,
    // The nodes of a cluster this process owns ([`start_cluster`]).
    _nodes: Vec<Server>,
}

impl Cluster {
    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }

    /// `redis://127.0.0.1:PORT/` of each master.
    pub fn node_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }
}

/// `redis-server` arguments of a cluster node (its cluster bus on another
/// free port, its `nodes.conf` in its directory).
fn cluster_node_args() -> String {
    format!(
        "--cluster-enabled yes --cluster-config-file nodes.conf --cluster-port {} \
         --cluster-node-timeout 2000",
        free_port()
    )
}

/// Joins three cluster-mode servers with `redis-cli --cluster create`
/// (all slots spread over them, no replicas) and waits until each reports
/// `cluster_state:ok`.
fn form_cluster(ports: &[u16]) {
    assert_installed("redis-cli");
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for p in ports {
        create.arg(format!("127.0.0.1:{p}"));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        out.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_cluster_ok(ports, Duration::from_secs(30));
}

fn cluster_ok(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
        .is_ok_and(|info| info.contains("cluster_state:ok"))
}

fn wait_cluster_ok(ports: &[u16], within: Duration) {
    let deadline = Instant::now() + within;
    for &p in ports {
        while !cluster_ok(p) {
            assert!(
                Instant::now() < deadline,
                "the cluster node on port {p} did not report cluster_state:ok within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A cluster of this process's own, stopped when dropped.
pub fn start_cluster() -> Cluster {
    let nodes: Vec<Server> = (0..3)
        .map(|_| start_with(None, None, &cluster_node_args()))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    form_cluster(&ports);
    Cluster { ports, _nodes: nodes }
}

/// The test run's cluster: one for every test process that the same
/// parent (nextest, or cargo for `cargo test`) started, since forming a
/// cluster takes seconds and nextest runs each test in its own process.
/// The first process to get here starts it, under watchdogs that stop it
/// (and delete its directories) once that parent has exited; the others
/// wait for its ports. Each case uses its own prefix on it.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(shared_cluster)
}

fn shared_cluster() -> Cluster {
    let parent = std::os::unix::process::parent_id();
    // The parent's start time too, so a parent with a recycled pid never
    // finds the cluster of an earlier run.
    let started = std::fs::read_to_string(format!("/proc/{parent}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(19).map(str::to_owned))
        })
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("tessera-redis-cluster-{parent}-{started}"));
    std::fs::create_dir_all(&dir).expect("the shared cluster's directory");
    let ports_file = dir.join("ports");
    let we_start = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join("lock"))
        .is_ok();
    if we_start {
        let mut ports = Vec::new();
        for i in 0..3 {
            let node_dir = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("node directory");
            let node = start_until_exit_of(parent, &dir, &node_dir, &cluster_node_args());
            ports.push(node);
        }
        form_cluster(&ports);
        let text: Vec<String> = ports.iter().map(u16::to_string).collect();
        let tmp = dir.join("ports.tmp");
        std::fs::write(&tmp, text.join(" ")).expect("write the cluster's ports");
        std::fs::rename(&tmp, &ports_file).expect("publish the cluster's ports");
        return Cluster {
            ports,
            _nodes: Vec::new(),
        };
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let ports: Vec<u16> = loop {
        if let Ok(text) = std::fs::read_to_string(&ports_file) {
            break text
                .split_whitespace()
                .map(|p| p.parse().expect("a port in the shared cluster's file"))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "another test process did not finish starting the shared cluster ({}) within 60 s",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    wait_cluster_ok(&ports, Duration::from_secs(10));
    Cluster {
        ports,
        _nodes: Vec::new(),
    }
}

/// Starts a server in `node_dir` that a watchdog stops once process
/// `parent` has exited (and then deletes `shared_dir`); returns its port.
fn start_until_exit_of(
    parent: u32,
    shared_dir: &std::path::Path,
    node_dir: &std::path::Path,
    extra: &str,
) -> u16 {
    assert_installed("redis-server");
    for _ in 0..5 {
        let port = free_port();
        let script = format!(
            "redis-server --bind 127.0.0.1 --port {port} --dir '{d}' --save '' --appendonly no \
             --protected-mode yes --logfile '{d}/redis.log' {extra} & pid=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; \
             kill $pid 2>/dev/null; wait $pid; kill -0 {parent} 2>/dev/null || rm -rf '{s}'",
            d = node_dir.display(),
            s = shared_dir.display(),
        );
        // Not waited for: it outlives this process, by design (a failed
        // start leaves a zombie until this test process ends).
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sh for redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if is_ours(port, node_dir) {
                return port;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("a cluster node did not start on a free port after 5 tries");
}

/// A fresh, empty store on the binary's cluster (its own prefix, so its
/// own slot: the cases spread over the three masters).
pub async fn fresh_cluster_store(buckets: Option<u32>) -> RedisStore {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let options = RedisOptions {
        prefix: RedisOptions::prefix_for(&format!("c{}-{n}", std::process::id())),
        buckets,
        ..RedisOptions::default()
    };
    RedisStore::connect_url_with(&cluster().url(), options)
        .await
        .expect("connect to the private Redis Cluster")
}

/// A private master with one Sentinel watching it (quorum 1, so the
/// Sentinel alone decides a failover).
pub struct Sentinel {
    /// The first master (`None` once a test took it to stop it).
    pub master: Option<Server>,
    /// Replicas started by [`Sentinel::add_replica`].
    pub replicas: Vec<Server>,
    pub port: u16,
    /// The name the Sentinel knows the master by (unique per instance).
    pub master_name: String,
    _dir: tempfile::TempDir,
    _watchdog: Child,
}

impl Sentinel {
    /// `redis+sentinel://127.0.0.1:PORT/MASTER_NAME`.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{}", self.port, self.master_name)
    }

    /// Starts a replica of the master (for a failover test) and waits
    /// until the Sentinel lists it.
    pub fn add_replica(&mut self) -> &Server {
        let master = self.master.as_ref().expect("the master runs");
        let replica = start_with(None, None, &format!("--replicaof 127.0.0.1 {}", master.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = sentinel_query::<Vec<redis::Value>>(self.port, |c| {
                c.arg("SENTINEL").arg("REPLICAS").arg(&self.master_name);
            })
            .is_some_and(|r| !r.is_empty());
            if seen {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Sentinel did not see the replica within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.replicas.push(replica);
        self.replicas.last().expect("just pushed")
    }

    /// The master's port as the Sentinel reports it now.
    pub fn master_port(&self) -> Option<u16> {
        sentinel_query::<Option<(String, u16)>>(self.port, |c| {
            c.arg("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.master_name);
        })
        .flatten()
        .map(|(_, p)| p)
    }
}

fn sentinel_query<T: redis::FromRedisValue>(port: u16, build: impl FnOnce(&mut redis::Cmd)) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let mut cmd = redis::Cmd::new();
    build(&mut cmd);
    cmd.query(&mut conn).ok()
}

/// Starts a master ([`private_server`]) and a Sentinel (`redis-server
/// sentinel.conf --sentinel`, in its own directory, on a free port) that
/// monitors it, with 1 s to declare it down.
pub fn start_sentinel() -> Sentinel {
    static N: AtomicU64 = AtomicU64::new(0);
    let master = start();
    let master_name = format!(
        "tessera-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("temp dir for redis-sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {master_name} 127.0.0.1 {mp} 1\n\
                 sentinel down-after-milliseconds {master_name} 1000\n\
                 sentinel failover-timeout {master_name} 5000\n",
                dir = dir.path().display(),
                mp = master.port,
            ),
        )
        .expect("write sentinel.conf");
        let watchdog = watched(&format!("redis-server '{}' --sentinel", conf.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ours = sentinel_query::<Option<(String, u16)>>(port, |c| {
                c.arg("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(&master_name);
            })
            .flatten()
            .is_some_and(|(_, p)| p == master.port);
            if ours {
                return Sentinel {
                    master: Some(master),
                    replicas: Vec::new(),
                    port,
                    master_name,
                    _dir: dir,
                    _watchdog: watchdog,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop_watchdog(watchdog);
    }
    panic!("the Sentinel did not start on a free port after 5 tries");
}
