//! Call control's shared state in Redis, so that any signaling node serves any device.
//!
//! Keys, under `cluster.key_prefix` (`hualu` below), with names given by call control:
//! - `hualu:sb:<name>`: one switchboard record (a user, a call, watchers...), JSON.
//! - `hualu:sb:timers`: a sorted set of ring and grace timers, scored by when they are due (Unix ms).
//! - `hualu:sb:next_call`: the last call id's sequence number.
//! - `hualu:events` (a pub/sub channel): events for devices whose socket is on another signaling node.
//! - `hualu:sig:<node>`: a signaling node's heartbeat, expiring after `dead_after_ms`; `hualu:signodes` lists
//!   the nodes; `hualu:sig:<node>:devices`, the devices connected to it. When a node's heartbeat expires, one
//!   other node takes its device list ([`CallStore::take_devices`]) and disconnects them, so their calls wait
//!   for them (the grace period) instead of counting them connected for ever.
//!
//! Writes are compare-and-set ([`CallStore::commit`]): a Lua script applies a node's changes only if every record
//! it read is still as it read it, so two nodes deciding about one call at once cannot both win (the first
//! `accept` does; the other reads again and finds the call answered).

use crate::registry::{ClusterError, Registry};
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Applies a commit if the records it read are unchanged: 1 done, 0 a record changed (read again), -1 the timer
/// it fires was fired by another node. KEYS: the timers set, the records read, the records written. ARGV[1]:
/// `{"old": [v|null...], "new": [[v|null, ttl_ms]...], "add": [[score, member]...], "claim": member|null}`.
const COMMIT: &str = r"
local a = cjson.decode(ARGV[1])
local nr = #a.old
for i = 1, nr do
  local cur = redis.call('GET', KEYS[i + 1])
  local old = a.old[i]
  if old == cjson.null then
    if cur then return 0 end
  elseif cur ~= old then
    return 0
  end
end
if a.claim ~= cjson.null and redis.call('ZREM', KEYS[1], a.claim) == 0 then return -1 end
for i, w in ipairs(a.new) do
  local key = KEYS[1 + nr + i]
  if w[1] == cjson.null then
    redis.call('DEL', key)
  else
    redis.call('SET', key, w[1], 'PX', w[2])
  end
end
for _, t in ipairs(a.add) do
  redis.call('ZADD', KEYS[1], t[1], t[2])
end
return 1
";

/// Takes a dead signaling node's devices and the rooms it followed, once: only the caller that removes it from
/// the node set gets them, and its rooms join the caller's.
const TAKE_DEVICES: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return false end
local devices = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
local rooms = redis.call('SMEMBERS', KEYS[4])
if #rooms > 0 then redis.call('SUNIONSTORE', KEYS[5], KEYS[5], KEYS[4]) end
redis.call('DEL', KEYS[4])
return {devices, rooms}
";

/// What a dead signaling node leaves to the one that takes it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenOver {
    /// Its devices, as `(user, device)`.
    pub devices: Vec<(String, String)>,
    /// The rooms it followed (placed): the taker follows them from now on.
    pub rooms: Vec<String>,
}

/// The outcome of [`CallStore::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Written.
    Done,
    /// A record read changed meanwhile: nothing was written.
    Conflict,
    /// The timer it fires is gone (another node fired it): nothing was written.
    TimerGone,
}

/// One node's changes: the records it read, as it read them, and what to write.
#[derive(Debug, Default)]
pub struct Commit {
    /// Record names and the values read (`None`: absent).
    pub read: Vec<(String, Option<String>)>,
    /// Record names, new values (`None`: delete) and how long they live (ms).
    pub write: Vec<(String, Option<String>, u64)>,
    /// Timers to add: when due (Unix ms), and the timer.
    pub timers: Vec<(u64, String)>,
    /// A timer this commit fires: it must still be there, and goes.
    pub claim: Option<String>,
}

#[derive(Serialize)]
struct Args<'a> {
    old: Vec<Option<&'a str>>,
    new: Vec<(Option<&'a str>, String)>,
    add: Vec<(String, &'a str)>,
    claim: Option<&'a str>,
}

/// An event for a device connected to some signaling node, published to all of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Routed {
    /// The signaling node that published it (it delivers its own devices' events directly).
    pub from: String,
    /// The user.
    pub user: String,
    /// The device.
    pub device: String,
    /// The event's JSON.
    pub event: serde_json::Value,
}

/// Call control's records, timers and event routing in Redis. Cheap to clone.
#[derive(Clone)]
pub struct CallStore {
    registry: Registry,
    commit: Arc<redis::Script>,
    take: Arc<redis::Script>,
}

impl CallStore {
    /// Over the cluster's Redis.
    pub fn new(registry: &Registry) -> Self {
        Self {
            registry: registry.clone(),
            commit: Arc::new(redis::Script::new(COMMIT)),
            take: Arc::new(redis::Script::new(TAKE_DEVICES)),
        }
    }

    fn key(&self, name: &str) -> String {
        self.registry.key(&format!("sb:{name}"))
    }

    /// The records `names`, `None` where absent.
    pub async fn read(&self, names: &[String]) -> Result<Vec<Option<String>>, ClusterError> {
        let keys: Vec<String> = names.iter().map(|n| self.key(n)).collect();
        self.registry.mget(&keys, "read call state").await
    }

    /// A fresh call sequence number, unique across the cluster.
    pub async fn next_call(&self) -> Result<u64, ClusterError> {
        self.registry
            .con()
            .incr(self.key("next_call"), 1)
            .await
            .map_err(failed("allocate a call id"))
    }

    /// Writes `c` if nothing it read changed.
    pub async fn commit(&self, c: &Commit) -> Result<Committed, ClusterError> {
        let args = Args {
            old: c.read.iter().map(|(_, v)| v.as_deref()).collect(),
            new: c
                .write
                .iter()
                .map(|(_, v, ttl)| (v.as_deref(), ttl.to_string()))
                .collect(),
            add: c.timers.iter().map(|(due, t)| (due.to_string(), t.as_str())).collect(),
            claim: c.claim.as_deref(),
        };
        let mut invocation = self.commit.prepare_invoke();
        invocation.key(self.key("timers"));
        for (name, _) in &c.read {
            invocation.key(self.key(name));
        }
        for (name, _, _) in &c.write {
            invocation.key(self.key(name));
        }
        invocation.arg(serde_json::to_string(&args).unwrap_or_default());
        let r: i64 = invocation
            .invoke_async(&mut self.registry.con())
            .await
            .map_err(failed("commit call state"))?;
        Ok(match r {
            1 => Committed::Done,
            -1 => Committed::TimerGone,
            _ => Committed::Conflict,
        })
    }

    /// Up to `limit` timers due by `now_ms`, earliest first.
    pub async fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, ClusterError> {
        redis::cmd("ZRANGE")
            .arg(self.key("timers"))
            .arg("-inf")
            .arg(now_ms)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.registry.con())
            .await
            .map_err(failed("read due timers"))
    }

    /// Every record whose name starts with `prefix` (e.g. every call, for the admin API).
    pub async fn scan(&self, prefix: &str) -> Result<Vec<String>, ClusterError> {
        let mut keys = self.registry.keys_under(&self.key(prefix)).await?;
        keys.sort();
        keys.dedup();
        let values = self.registry.mget(&keys, "read call state").await?;
        Ok(values.into_iter().flatten().collect())
    }

    /// Sends an event to whichever signaling node holds the device's socket.
    pub async fn route(&self, event: &Routed) -> Result<(), ClusterError> {
        let json = serde_json::to_string(event).unwrap_or_default();
        let _: u64 = self
            .registry
            .con()
            .publish(self.registry.key("events"), json)
            .await
            .map_err(failed("route an event"))?;
        Ok(())
    }

    /// Calls `on` with every event routed by another node than `me`, for ever (reopening the subscription when
    /// it fails). Must run inside a tokio runtime.
    pub async fn follow_events(&self, me: String, on: impl Fn(Routed)) {
        let channel = self.registry.key("events");
        crate::media::follow_channel(
            &self.registry,
            channel,
            "events routed between signaling nodes",
            |e: Routed| {
                if e.from != me {
                    on(e);
                }
            },
        )
        .await
    }
}

impl CallStore {
    fn sig_key(&self, node: &str) -> String {
        self.registry.key(&format!("sig:{node}"))
    }

    fn devices_key(&self, node: &str) -> String {
        self.registry.key(&format!("sig:{node}:devices"))
    }

    /// Signaling node `node` is alive for `dead_after_ms` from now.
    pub async fn beat(&self, node: &str) -> Result<(), ClusterError> {
        let ms = self.registry.dead_after().as_millis() as u64;
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.sig_key(node))
            .arg(hualu_common::clock::unix_now_ms())
            .arg("PX")
            .arg(ms)
            .ignore()
            .sadd(self.registry.key("signodes"), node)
            .ignore()
            .exec_async(&mut self.registry.con())
            .await
            .map_err(failed("signaling heartbeat"))
    }

    /// Device `(user, device)` is connected to node `node` (`on`), or no longer.
    pub async fn device_on(&self, node: &str, user: &str, device: &str, on: bool) -> Result<(), ClusterError> {
        let member = serde_json::to_string(&(user, device)).unwrap_or_default();
        let mut con = self.registry.con();
        let r: Result<u64, _> = match on {
            true => con.sadd(self.devices_key(node), member).await,
            false => con.srem(self.devices_key(node), member).await,
        };
        r.map(drop).map_err(failed("record a device's node"))
    }

    /// The signaling nodes whose heartbeat expired, other than `me`.
    pub async fn dead_nodes(&self, me: &str) -> Result<Vec<String>, ClusterError> {
        let mut con = self.registry.con();
        let nodes: Vec<String> = con
            .smembers(self.registry.key("signodes"))
            .await
            .map_err(failed("list signaling nodes"))?;
        let others: Vec<String> = nodes.into_iter().filter(|n| n != me).collect();
        let keys: Vec<String> = others.iter().map(|n| self.sig_key(n)).collect();
        let beats = self.registry.mget(&keys, "read signaling heartbeats").await?;
        Ok(others
            .into_iter()
            .zip(beats)
            .filter(|(_, b)| b.is_none())
            .map(|(n, _)| n)
            .collect())
    }

    /// Whether device `(user, device)` is connected to a signaling node in the node set (it may have moved
    /// from a dead node to a live one).
    pub async fn connected(&self, user: &str, device: &str) -> Result<bool, ClusterError> {
        let member = serde_json::to_string(&(user, device)).unwrap_or_default();
        let mut con = self.registry.con();
        let nodes: Vec<String> = con
            .smembers(self.registry.key("signodes"))
            .await
            .map_err(failed("list signaling nodes"))?;
        for n in nodes {
            let on: bool = con
                .sismember(self.devices_key(&n), &member)
                .await
                .map_err(failed("find a device's node"))?;
            if on {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Dead node `node`'s devices and rooms, to this caller (`me`) alone (`None`: another node took them, or it
    /// is alive again). Its rooms are recorded as `me`'s.
    pub async fn take_devices(&self, node: &str, me: &str) -> Result<Option<TakenOver>, ClusterError> {
        let taken: Option<(Vec<String>, Vec<String>)> = self
            .take
            .key(self.registry.key("signodes"))
            .key(self.devices_key(node))
            .key(self.sig_key(node))
            .key(self.registry.followed_key(node))
            .key(self.registry.followed_key(me))
            .arg(node)
            .invoke_async(&mut self.registry.con())
            .await
            .map_err(failed("take a dead node's devices"))?;
        Ok(taken.map(|(devices, mut rooms)| {
            rooms.sort();
            TakenOver {
                devices: devices.iter().filter_map(|m| serde_json::from_str(m).ok()).collect(),
                rooms,
            }
        }))
    }
}

fn failed(what: &'static str) -> impl FnOnce(redis::RedisError) -> ClusterError {
    move |source| ClusterError::Redis { what, source }
}
