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

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value,
};
use tessera_core::StoreResult;

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
