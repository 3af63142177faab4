//! One connection type over the three ways to reach Redis: one server (a
//! `ConnectionManager`, which reconnects by itself), a Redis Cluster (the
//! redis crate's `ClusterConnection`, which follows the slot map and
//! failovers) and a master behind Sentinels (ours: the redis crate asks
//! the Sentinels once, so this asks again whenever the master stops
//! answering as one).
//!
//! Every kind connects on first use, so a process can start while Redis is
//! down. Because every key shares one hash tag, every command and script
//! goes to one slot: a Cluster routes it by its first key.

use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisFuture, RedisResult, Value,
};
use tessera_core::StoreResult;

use crate::cache::Connector;
use crate::map_err;
use crate::options::{RedisOptions, RedisTarget, SentinelTarget};

/// Retries of a Cluster command (MOVED/ASK redirections, a failover in
/// progress), all within the response timeout.
const CLUSTER_RETRIES: u32 = 3;

#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

impl Conn {
    /// A connection to `target` that connects on first use. Must be called
    /// within a Tokio runtime.
    pub(crate) fn open_lazy(target: &RedisTarget, options: &RedisOptions) -> StoreResult<Conn> {
        match target {
            RedisTarget::Single(url) => {
                let client = crate::client(url, options)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(Some(options.response_timeout))
                    .set_number_of_retries(1);
                let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(map_err)?;
                Ok(Conn::Single(conn))
            }
            RedisTarget::Cluster { nodes } => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.response_timeout)
                    .retries(CLUSTER_RETRIES)
                    .build()
                    .map_err(map_err)?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(options.connect_timeout)
                    .set_response_timeout(options.response_timeout);
                Ok(Conn::Cluster(
                    client.get_pending_async_connection_with_config(config),
                ))
            }
            RedisTarget::Sentinel(t) => Ok(Conn::Sentinel(Arc::new(SentinelConn::new(t, options)?))),
        }
    }
}

impl Conn {
    /// Pub/sub connections for the session cache's subscription, to the
    /// server that runs the scripts: so a message published by a script
    /// reaches the subscriber before anything the subscriber sends after
    /// it (the cache's barrier relies on that order). For a Cluster, the
    /// master of the prefix's slot, found anew at every (re)connection;
    /// behind Sentinel, the master it names now.
    pub(crate) fn pubsub_connector(
        &self,
        target: &RedisTarget,
        options: &RedisOptions,
    ) -> StoreResult<Connector> {
        match (self, target) {
            (Conn::Sentinel(s), _) => {
                let s = s.clone();
                Ok(Arc::new(move || {
                    let s = s.clone();
                    Box::pin(async move { s.master_client().await?.get_async_pubsub().await })
                }))
            }
            (_, RedisTarget::Cluster { nodes }) => {
                let nodes = Arc::new(nodes.clone());
                let slot_key = crate::layout::key(&options.prefix, crate::layout::META, b"");
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(Some(options.response_timeout));
                Ok(Arc::new(move || {
                    let (nodes, slot_key, config) = (nodes.clone(), slot_key.clone(), config.clone());
                    Box::pin(async move { slot_owner_pubsub(&nodes, &slot_key, &config).await })
                }))
            }
            (_, RedisTarget::Single(url)) => Ok(crate::cache::connector(&crate::client(url, options)?)),
            (_, RedisTarget::Sentinel(_)) => Err(tessera_core::StoreError::Unavailable(
                "a Sentinel URL without a Sentinel connection".into(),
            )),
        }
    }
}

/// A pub/sub connection to the master that holds `key`'s slot, asking the
/// seed `nodes` in turn where that is.
async fn slot_owner_pubsub(
    nodes: &[String],
    key: &[u8],
    config: &AsyncConnectionConfig,
) -> RedisResult<PubSub> {
    let mut last = redis::RedisError::from((ErrorKind::Io, "no seed node of the Cluster answered"));
    for node in nodes {
        match slot_owner(node, key, config).await {
            Ok(info) => return redis::Client::open(info)?.get_async_pubsub().await,
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The seed node's connection settings, pointed at the master of `key`'s
/// slot as the node's `CLUSTER SLOTS` reports it.
async fn slot_owner(node: &str, key: &[u8], config: &AsyncConnectionConfig) -> RedisResult<ConnectionInfo> {
    let info = node.into_connection_info()?;
    let mut c = redis::Client::open(info.clone())?
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut c)
        .await?;
    let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c).await?;
    for range in ranges {
        let mut it = range.into_iter();
        let (Some(start), Some(end), Some(master)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let (start, end): (i64, i64) = (redis::from_redis_value(start)?, redis::from_redis_value(end)?);
        if !(start..=end).contains(&slot) {
            continue;
        }
        let (host, port): (String, u16) = match redis::from_redis_value::<Vec<Value>>(master)?.as_slice() {
            [h, p, ..] => (
                redis::from_redis_value(h.clone())?,
                redis::from_redis_value(p.clone())?,
            ),
            _ => break,
        };
        // An empty or unknown endpoint means "the node you asked".
        let host = match host.as_str() {
            "" | "?" => match info.addr() {
                ConnectionAddr::Tcp(h, _) => h.clone(),
                _ => host,
            },
            _ => host,
        };
        return Ok(info.set_addr(ConnectionAddr::Tcp(host, port)));
    }
    Err(redis::RedisError::from((
        ErrorKind::Io,
        "no master holds the prefix's slot (is the Cluster complete?)",
    )))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    let mut c = s.connection().await?;
                    let r = c.req_packed_command(cmd).await;
                    s.check(&r);
                    r
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    let mut c = s.connection().await?;
                    let r = c.req_packed_commands(pipeline, offset, count).await;
                    s.check(&r);
                    r
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}

/// The master the Sentinels name, over one multiplexed connection that is
/// dropped when it fails (the next command asks the Sentinels again).
pub(crate) struct SentinelConn {
    client: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
    connect_timeout: std::time::Duration,
}

impl SentinelConn {
    fn new(t: &SentinelTarget, options: &RedisOptions) -> StoreResult<SentinelConn> {
        let master = t
            .master_info
            .as_str()
            .into_connection_info()
            .map_err(map_err)?
            .redis_settings()
            .clone();
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
        let client = SentinelClient::build(
            t.sentinels.iter().map(String::as_str).collect(),
            t.master.clone(),
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(map_err)?;
        Ok(SentinelConn {
            client: tokio::sync::Mutex::new(client),
            current: Mutex::new(None),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.connect_timeout))
                .set_response_timeout(Some(options.response_timeout)),
            connect_timeout: options.connect_timeout,
        })
    }

    /// A client for the master the Sentinels name now.
    async fn master_client(&self) -> RedisResult<redis::Client> {
        let ask = async { self.client.lock().await.async_get_client().await };
        match tokio::time::timeout(self.connect_timeout * 2, ask).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                ErrorKind::Io,
                "no answer from the Sentinels in time",
            ))),
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        // One task asks the Sentinels; the others wait for its answer.
        let mut client = self.client.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let ask = async {
            let master = client.async_get_client().await?;
            master
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
        };
        // Sentinels are asked one after the other; a silent one must not
        // hold every request past the timeout.
        let conn = match tokio::time::timeout(self.connect_timeout * 2, ask).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(redis::RedisError::from((
                    ErrorKind::Io,
                    "no answer from the Sentinels or the master in time",
                )));
            }
        };
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after a failure that may mean the master is
    /// gone or demoted; a refused command (a script error, …) keeps it.
    fn check<T>(&self, r: &RedisResult<T>) {
        if let Err(e) = r {
            let keep = matches!(e.kind(), ErrorKind::Server(_))
                && !matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"));
            if !keep {
                *self
                    .current
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
        }
    }
}
