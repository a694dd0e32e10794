//! The cluster's state in Redis.
//!
//! Keys, under `cluster.key_prefix` (`hualu` below):
//! - `hualu:node:<id>`: the node's last heartbeat ([`NodeInfo`] as JSON), expiring after `dead_after_ms`. Redis's
//!   own clock decides death: a key that expired is a dead node, whatever the nodes' clocks say.
//! - `hualu:nodes`: the set of node ids that have registered; ids whose key expired are pruned as they are read.
//! - `hualu:room:<room>`: the id of the node a room lives on. Set once, atomically, by [`Registry::place_room`].
//! - `hualu:span:<room>`: a set, the other nodes a room extends to (its home node's full, or its participants
//!   are in other regions), each relaying the room's tracks with the others ([`Registry::extend_room`]). Lives
//!   as long as the room's record; [`Registry::close_room`] deletes both.
//! - `hualu:drain:<id>`: an admin's request that node `<id>` drain, with when its rooms move (unix ms). The
//!   node reads it with each heartbeat; deleting it ends the drain.
//! - `hualu:since`: when this Redis's data began (unix ms, set once): a Redis restarted empty has forgotten
//!   every node, and a node missing from it is not dead until the nodes had a dead window to heartbeat again.
//! - `hualu:rooms` (a pub/sub channel): call control's orders to SFU nodes, `{"close": room, "node": id}` when
//!   a call ends or its room moved away ([`crate::media::RoomClose`]).
//! - `hualu:media` (a pub/sub channel): SFU nodes' media reports ([`crate::media`]).

use crate::media::MediaEvent;
use crate::node::NodeInfo;
use hualu_common::config::ClusterConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands as _;
use std::time::Duration;

/// A Redis failure, with what hualu was doing.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `cluster.redis_url` does not parse.
    #[error("cluster.redis_url: {0}")]
    Url(redis::RedisError),
    /// The client's thread or runtime could not start.
    #[error("cluster: {0}")]
    Runtime(String),
    /// A command failed (Redis down, timeout, refused).
    #[error("redis: {what}: {source}")]
    Redis {
        /// The operation.
        what: &'static str,
        /// Why.
        source: redis::RedisError,
    },
}

fn failed(what: &'static str) -> impl FnOnce(redis::RedisError) -> ClusterError {
    move |source| ClusterError::Redis { what, source }
}

/// How long a room's record lives without being closed: longer than any call, so that a signaling node that
/// died before closing its rooms leaves nothing behind for ever.
const ROOM_TTL: Duration = Duration::from_secs(24 * 3600);

/// Places a room on a node, atomically: a room already placed stays where it is (its node is returned), and a
/// room is only placed on a node whose heartbeat is alive (else nil).
const PLACE_ROOM: &str = r"
local placed = redis.call('GET', KEYS[1])
if placed then return placed end
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";

/// Moves a room from one node to another, atomically: only if it is still on the node it moves from (else the
/// node it is on now is returned, or nil when it is not placed), and only to a live node (else nil).
const MOVE_ROOM: &str = r"
local placed = redis.call('GET', KEYS[1])
if placed ~= ARGV[1] then return placed end
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ARGV[2]
";

/// Adds a node to a room's span, atomically: only while the room is placed (a closed call's room does not come
/// back as a span) and only a live node. 1 when added or there already, 0 when refused.
const EXTEND_ROOM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// A handle on the cluster's Redis. Cheap to clone; commands from clones share one multiplexed connection, which
/// reconnects by itself when Redis comes back.
#[derive(Clone)]
pub struct Registry {
    client: redis::Client,
    con: ConnectionManager,
    prefix: String,
    dead_after: Duration,
    place: std::sync::Arc<redis::Script>,
    moves: std::sync::Arc<redis::Script>,
    extend: std::sync::Arc<redis::Script>,
}

impl Registry {
    /// Connects lazily: nothing is sent until the first command, so a node starts while Redis is down. Must run
    /// inside a tokio runtime.
    pub fn connect(cfg: &ClusterConfig) -> Result<Self, ClusterError> {
        let client = redis::Client::open(cfg.redis_url.as_str()).map_err(ClusterError::Url)?;
        // Every command is bounded: a stalled Redis must not stall a heartbeat or a call's placement.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let con = client.get_connection_manager_lazy(config).map_err(ClusterError::Url)?;
        Ok(Self {
            client,
            con,
            prefix: cfg.key_prefix.clone(),
            dead_after: Duration::from_millis(cfg.dead_after_ms),
            place: std::sync::Arc::new(redis::Script::new(PLACE_ROOM)),
            moves: std::sync::Arc::new(redis::Script::new(MOVE_ROOM)),
            extend: std::sync::Arc::new(redis::Script::new(EXTEND_ROOM)),
        })
    }

    /// The key `name` under the cluster's prefix.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// `cluster.dead_after_ms`.
    pub(crate) fn dead_after(&self) -> Duration {
        self.dead_after
    }

    /// The shared multiplexed connection.
    pub(crate) fn con(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// The values of `keys` in one `MGET`, `None` where a key is absent; `what` names the read in errors.
    pub(crate) async fn mget(&self, keys: &[String], what: &'static str) -> Result<Vec<Option<String>>, ClusterError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed(what))
    }

    fn node_key(&self, id: &str) -> String {
        format!("{}:node:{id}", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    fn room_key(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    fn span_key(&self, room: &str) -> String {
        format!("{}:span:{room}", self.prefix)
    }

    /// The set of rooms signaling node `node` follows (placed, or took over from a dead node).
    pub(crate) fn followed_key(&self, node: &str) -> String {
        format!("{}:sig:{node}:rooms", self.prefix)
    }

    /// Records that signaling node `node` follows `room` (`on`), or no longer does: when it dies, the node that
    /// takes its devices takes these rooms too ([`crate::CallStore::take_devices`]).
    pub async fn follow_room(&self, node: &str, room: &str, on: bool) -> Result<(), ClusterError> {
        let mut con = self.con.clone();
        let key = self.followed_key(node);
        let r: Result<u64, _> = match on {
            true => con.sadd(key, room).await,
            false => con.srem(key, room).await,
        };
        r.map(drop).map_err(failed("record a followed room"))
    }

    /// The rooms signaling node `node` follows, as Redis has them.
    pub async fn followed_rooms(&self, node: &str) -> Result<Vec<String>, ClusterError> {
        let mut rooms: Vec<String> = self
            .con
            .clone()
            .smembers(self.followed_key(node))
            .await
            .map_err(failed("read followed rooms"))?;
        rooms.sort();
        Ok(rooms)
    }

    fn drain_key(&self, id: &str) -> String {
        format!("{}:drain:{id}", self.prefix)
    }

    fn since_key(&self) -> String {
        format!("{}:since", self.prefix)
    }

    /// How long this Redis has held the cluster's state: since the first call to this after it started empty.
    /// Until that reaches `dead_after_ms`, a node missing from [`Registry::nodes`] may only not have
    /// heartbeated into the new Redis yet.
    pub async fn remembered_for(&self) -> Result<Duration, ClusterError> {
        let now = hualu_common::clock::unix_now_ms();
        let (since,): (Option<u64>,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.since_key())
            .arg(now)
            .arg("NX")
            .ignore()
            .get(self.since_key())
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("read since"))?;
        Ok(Duration::from_millis(now.saturating_sub(since.unwrap_or(now))))
    }

    /// Whether a node absent from [`Registry::nodes`] is dead, rather than not yet re-registered in a Redis
    /// that restarted empty.
    pub async fn absence_is_death(&self) -> Result<bool, ClusterError> {
        Ok(self.remembered_for().await? >= self.dead_after)
    }

    pub(crate) fn rooms_channel(&self) -> String {
        format!("{}:rooms", self.prefix)
    }

    pub(crate) fn media_channel(&self) -> String {
        format!("{}:media", self.prefix)
    }

    /// Writes a node's heartbeat, alive for `dead_after_ms` from now. Gives an admin's drain request for the
    /// node, if there is one: when its rooms are to move (unix ms).
    pub async fn heartbeat(&self, info: &NodeInfo) -> Result<Option<u64>, ClusterError> {
        let json = serde_json::to_string(info).unwrap_or_default();
        let ms = self.dead_after.as_millis() as u64;
        let (drain,): (Option<u64>,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.node_key(&info.id))
            .arg(json)
            .arg("PX")
            .arg(ms)
            .ignore()
            .sadd(self.nodes_key(), &info.id)
            .ignore()
            .get(self.drain_key(&info.id))
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("heartbeat"))?;
        Ok(drain)
    }

    /// Asks node `id` to drain, its rooms to move at `move_at_ms` (unix ms). The request lasts a day, or
    /// until [`Registry::cancel_drain`]; a node that restarts within it drains again.
    pub async fn request_drain(&self, id: &str, move_at_ms: u64) -> Result<(), ClusterError> {
        let day = 86_400_000u64;
        redis::cmd("SET")
            .arg(self.drain_key(id))
            .arg(move_at_ms)
            .arg("PX")
            .arg(day)
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("request a drain"))
    }

    /// Withdraws an admin's drain request for node `id`; whether there was one.
    pub async fn cancel_drain(&self, id: &str) -> Result<bool, ClusterError> {
        let n: u64 = self
            .con
            .clone()
            .del(self.drain_key(id))
            .await
            .map_err(failed("cancel a drain"))?;
        Ok(n > 0)
    }

    /// Every key starting with `prefix` (SCAN, so Redis is never blocked).
    pub(crate) async fn keys_under(&self, prefix: &str) -> Result<Vec<String>, ClusterError> {
        let mut con = self.con.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut con)
                .await
                .map_err(failed("list keys"))?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Every placed room and its node, by room id, read with `SCAN` (not `KEYS`, which blocks Redis).
    pub async fn rooms(&self) -> Result<Vec<(String, String)>, ClusterError> {
        let prefix = self.room_key("");
        let mut keys = self.keys_under(&prefix).await?;
        keys.sort();
        keys.dedup();
        let nodes = self.mget(&keys, "read rooms").await?;
        Ok(keys
            .into_iter()
            .zip(nodes)
            .filter_map(|(k, n)| Some((k.strip_prefix(&prefix)?.to_string(), n?)))
            .collect())
    }

    /// Removes a node at once (a clean stop), rather than waiting for its heartbeat to expire.
    pub async fn deregister(&self, id: &str) -> Result<(), ClusterError> {
        redis::pipe()
            .atomic()
            .del(self.node_key(id))
            .ignore()
            .srem(self.nodes_key(), id)
            .ignore()
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("deregister"))
    }

    /// The live nodes, by id. Ids whose heartbeat expired are dropped from the set as they are found.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let mut con = self.con.clone();
        let mut ids: Vec<String> = con.smembers(self.nodes_key()).await.map_err(failed("list nodes"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort();
        let keys: Vec<String> = ids.iter().map(|id| self.node_key(id)).collect();
        let beats = self.mget(&keys, "read nodes").await?;
        let mut live = Vec::with_capacity(ids.len());
        let mut dead = Vec::new();
        for (id, beat) in ids.into_iter().zip(beats) {
            match beat.map(|b| serde_json::from_str::<NodeInfo>(&b)) {
                Some(Ok(info)) => live.push(info),
                Some(Err(e)) => tracing::warn!(node = %id, error = %e, "a node's heartbeat does not parse; skipped"),
                None => dead.push(id),
            }
        }
        if !dead.is_empty() {
            let _: Result<u64, _> = con.srem(self.nodes_key(), &dead).await;
        }
        Ok(live)
    }

    /// Puts `room` on node `node` unless it is placed already. Returns the room's node: `node`, or the one it was
    /// on before; `None` when `node` is not alive.
    pub async fn place_room(&self, room: &str, node: &str) -> Result<Option<String>, ClusterError> {
        self.place
            .key(self.room_key(room))
            .key(self.node_key(node))
            .arg(node)
            .arg(ROOM_TTL.as_millis() as u64)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("place room"))
    }

    /// Moves `room` from node `from` to node `to`. Returns the room's node: `to`; or, when the room was no longer
    /// on `from`, the node it is on (`None`: not placed); `None` too when `to` is not alive.
    pub async fn move_room(&self, room: &str, from: &str, to: &str) -> Result<Option<String>, ClusterError> {
        self.moves
            .key(self.room_key(room))
            .key(self.node_key(to))
            .arg(from)
            .arg(to)
            .arg(ROOM_TTL.as_millis() as u64)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("move room"))
    }

    /// The node `room` lives on, if it is placed.
    pub async fn room_node(&self, room: &str) -> Result<Option<String>, ClusterError> {
        self.con
            .clone()
            .get(self.room_key(room))
            .await
            .map_err(failed("find room"))
    }

    /// Forgets `room` and its span (its call ended).
    pub async fn close_room(&self, room: &str) -> Result<(), ClusterError> {
        let _: u64 = self
            .con
            .clone()
            .del(&[self.room_key(room), self.span_key(room)])
            .await
            .map_err(failed("close room"))?;
        Ok(())
    }

    /// Extends `room` to node `node` (the room spans it too). False when refused: the room is not placed (its
    /// call ended), or `node` is not alive.
    pub async fn extend_room(&self, room: &str, node: &str) -> Result<bool, ClusterError> {
        let added: u64 = self
            .extend
            .key(self.room_key(room))
            .key(self.span_key(room))
            .key(self.node_key(node))
            .arg(node)
            .arg(ROOM_TTL.as_millis() as u64)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("extend room"))?;
        Ok(added == 1)
    }

    /// Drops node `node` from `room`'s span (it died, or drained past its deadline).
    pub async fn shrink_room(&self, room: &str, node: &str) -> Result<(), ClusterError> {
        let _: u64 = self
            .con
            .clone()
            .srem(self.span_key(room), node)
            .await
            .map_err(failed("shrink room"))?;
        Ok(())
    }

    /// The nodes `room` extends to besides its own, sorted; empty when it spans none.
    pub async fn room_span(&self, room: &str) -> Result<Vec<String>, ClusterError> {
        let mut span: Vec<String> = self
            .con
            .clone()
            .smembers(self.span_key(room))
            .await
            .map_err(failed("read a room's span"))?;
        span.sort();
        Ok(span)
    }

    /// The span of each of `rooms`, in their order, in one round trip.
    pub async fn room_spans(&self, rooms: &[String]) -> Result<Vec<Vec<String>>, ClusterError> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for room in rooms {
            pipe.smembers(self.span_key(room));
        }
        let mut spans: Vec<Vec<String>> = pipe
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("read rooms' spans"))?;
        spans.iter_mut().for_each(|s| s.sort());
        Ok(spans)
    }

    /// The node each of `rooms` lives on, if it is placed, and its span, in their order.
    pub async fn rooms_and_spans(&self, rooms: &[String]) -> Result<Vec<(Option<String>, Vec<String>)>, ClusterError> {
        let keys: Vec<String> = rooms.iter().map(|r| self.room_key(r)).collect();
        let nodes = self.mget(&keys, "find rooms").await?;
        let spans = self.room_spans(rooms).await?;
        Ok(nodes.into_iter().zip(spans).collect())
    }

    /// The node `room` lives on, if it is placed, and its span, in one round trip.
    pub async fn room_and_span(&self, room: &str) -> Result<(Option<String>, Vec<String>), ClusterError> {
        let (node, mut span): (Option<String>, Vec<String>) = redis::pipe()
            .get(self.room_key(room))
            .smembers(self.span_key(room))
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("find room"))?;
        span.sort();
        Ok((node, span))
    }

    /// Publishes one media report to every signaling node that follows them.
    pub async fn publish_media(&self, e: &MediaEvent) -> Result<(), ClusterError> {
        let json = serde_json::to_string(e).unwrap_or_default();
        let _: u64 = self
            .con
            .clone()
            .publish(self.media_channel(), json)
            .await
            .map_err(failed("publish media report"))?;
        Ok(())
    }

    /// A connection of its own (pub/sub takes it over), subscribed to the media reports.
    pub async fn media_subscription(&self) -> Result<redis::aio::PubSub, ClusterError> {
        self.subscribe(self.media_channel()).await
    }

    /// Orders node `node` to close `room` (its call ended, or it moved away).
    pub async fn publish_close(&self, close: &crate::media::RoomClose) -> Result<(), ClusterError> {
        let json = serde_json::to_string(close).unwrap_or_default();
        let _: u64 = self
            .con
            .clone()
            .publish(self.rooms_channel(), json)
            .await
            .map_err(failed("publish a room's close"))?;
        Ok(())
    }

    /// A connection of its own, subscribed to call control's orders to SFU nodes.
    pub async fn rooms_subscription(&self) -> Result<redis::aio::PubSub, ClusterError> {
        self.subscribe(self.rooms_channel()).await
    }

    pub(crate) async fn subscribe(&self, channel: String) -> Result<redis::aio::PubSub, ClusterError> {
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(r) => r.map_err(failed("subscribe")),
            Err(_) => Err(failed("subscribe")(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))),
        }
    }
}
