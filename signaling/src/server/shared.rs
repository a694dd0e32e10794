//! Cluster mode's switchboard: each operation reads the records it needs from Redis, runs on a switchboard
//! built over them, and writes back what changed with a compare-and-set ([`CallStore::commit`]); when another
//! signaling node changed a record meanwhile, it reads again and reruns. Ring and grace timers live in Redis
//! too, and any node fires a due one (the commit claims it, so it fires once).

use crate::core::{clock, needs, CallError, Command, Key, Limits, Op, Output, Parts, Reply, Switchboard, TimerRec};
use hualu_cluster::{CallStore, ClusterError, Commit, Committed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a user's, call's or watch list's record lives unwritten: longer than any call, so that state a
/// crashed node left behind goes by itself.
const KEEP_MS: u64 = 24 * 3600 * 1000;

/// Most reruns of one operation before it gives up (each means another node changed what it read).
const ATTEMPTS: usize = 32;

/// What an operation did.
pub struct Done {
    /// What it asks of the world.
    pub outputs: Vec<Output>,
    /// A command's answer.
    pub reply: Option<Result<Reply, CallError>>,
}

/// The switchboard over Redis.
pub struct SharedBoard {
    store: CallStore,
    limits: Limits,
}

impl SharedBoard {
    /// Over `store`, with `limits`.
    pub fn new(store: CallStore, limits: Limits) -> Self {
        Self { store, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The Redis handle.
    pub fn store(&self) -> &CallStore {
        &self.store
    }

    /// Runs `op` at `now` against the shared records. A Redis failure changes nothing: a command gets
    /// [`CallError::Unavailable`], anything else is dropped (and logged).
    pub async fn run(&self, op: Op, now: Instant) -> Done {
        match self.attempt(&op, now).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, ?op, "call state unavailable; the operation changed nothing");
                let reply = matches!(op, Op::Command { .. }).then(|| Err(CallError::Unavailable(e.to_string())));
                Done {
                    outputs: Vec::new(),
                    reply,
                }
            }
        }
    }

    async fn attempt(&self, op: &Op, now: Instant) -> Result<Done, ClusterError> {
        let new_call = matches!(
            op,
            Op::Command {
                command: Command::Invite { call: None, .. },
                ..
            }
        );
        // One id for every rerun: a rerun must not burn ids.
        let next_call = match new_call {
            true => self.store.next_call().await?.saturating_sub(1),
            false => 0,
        };
        let claim = match op {
            Op::Timer(t) => Some(serde_json::to_string(t).unwrap_or_default()),
            _ => None,
        };
        for _ in 0..ATTEMPTS {
            let loaded = self.read(op).await?;
            let mut sb = match Switchboard::from_parts(self.limits.clone(), next_call, &loaded) {
                Ok(sb) => sb,
                Err(e) => {
                    tracing::error!(error = %e, ?op, "call state in Redis does not parse; the operation is dropped");
                    return Ok(Done {
                        outputs: Vec::new(),
                        reply: None,
                    });
                }
            };
            let reply = sb.apply(op.clone(), now);
            let commit = self.commit_of(&mut sb, &loaded, claim.clone());
            match self.store.commit(&commit).await? {
                Committed::Done => {
                    let outputs = std::iter::from_fn(|| sb.poll_output()).collect();
                    return Ok(Done { outputs, reply });
                }
                Committed::Conflict => {
                    metrics::counter!("hualu_signaling_state_conflicts_total").increment(1);
                }
                Committed::TimerGone => {
                    return Ok(Done {
                        outputs: Vec::new(),
                        reply: None,
                    })
                }
            }
        }
        tracing::error!(?op, "call state kept changing under the operation; it changed nothing");
        let reply = matches!(op, Op::Command { .. }).then(|| Err(CallError::Unavailable("contention".into())));
        Ok(Done {
            outputs: Vec::new(),
            reply,
        })
    }

    /// Reads the records `op` needs, in rounds (each round's records name the next ones).
    async fn read(&self, op: &Op) -> Result<Parts, ClusterError> {
        let mut loaded = Parts::new();
        loop {
            let keys = needs(op, &loaded);
            if keys.is_empty() {
                return Ok(loaded);
            }
            let names: Vec<String> = keys.iter().map(name).collect();
            let values = self.store.read(&names).await?;
            loaded.extend(keys.into_iter().zip(values));
        }
    }

    fn commit_of(&self, sb: &mut Switchboard, loaded: &Parts, claim: Option<String>) -> Commit {
        let memory = self.limits.memory.as_millis() as u64;
        let write = sb
            .to_parts(loaded)
            .into_iter()
            .filter(|(k, v)| loaded.get(k).cloned().flatten() != *v)
            .map(|(k, v)| {
                let ttl = if k.remembered() { memory } else { KEEP_MS };
                (name(&k), v, ttl)
            })
            .collect();
        let timers = sb
            .take_timers()
            .into_iter()
            .map(|t| (t.due_ms, serde_json::to_string(&t).unwrap_or_default()))
            .collect();
        Commit {
            read: loaded.iter().map(|(k, v)| (name(k), v.clone())).collect(),
            write,
            timers,
            claim,
        }
    }

    /// Fires every timer due at `now` (at most a batch; the rest next time).
    pub async fn due(&self, now: Instant) -> Result<Vec<Output>, ClusterError> {
        let due = self.store.due_timers(clock::to_ms(now), 256).await?;
        let mut timers: Vec<TimerRec> = due.iter().filter_map(|t| serde_json::from_str(t).ok()).collect();
        // As in one process: ring timeouts before grace periods.
        timers.sort_by_key(|t| (t.kind != "ring", t.due_ms));
        let mut outputs = Vec::new();
        for t in timers {
            outputs.extend(self.run(Op::Timer(t), now).await.outputs);
        }
        Ok(outputs)
    }

    /// How often to look for due timers.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(100)
    }
}

/// The Redis name of a record; ids are length-prefixed where two share a name, so no two records collide.
fn name(k: &Key) -> String {
    match k {
        Key::User(u) => format!("user:{u}"),
        Key::Call(c) => format!("call:{c}"),
        Key::Ended(c) => format!("ended:{c}"),
        Key::Watchers(u) => format!("watchers:{u}"),
        Key::Watching(d) => format!("watching:{}:{}{}", d.user.len(), d.user, d.device),
        Key::Answer(d, key) => format!("answer:{}:{}{}:{}{key}", d.user.len(), d.user, d.device.len(), d.device),
    }
}

/// Keeps signaling node `node` alive in Redis, every `every`, and takes over signaling nodes that died (their
/// heartbeat expired), once Redis has held the cluster's state for a dead window: their devices are disconnected,
/// so each one's calls wait the grace period for it, as for a dropped socket (a device already connected to a
/// live node again is left alone), and the rooms they placed are followed here from then on. Runs for ever.
pub async fn follow_signaling_nodes(
    store: CallStore,
    cluster: Arc<super::cluster::ClusterPlacement>,
    node: String,
    hub: tokio::sync::mpsc::Sender<super::hub::ToHub>,
    every: Duration,
) {
    let registry = cluster.registry();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = store.beat(&node).await {
            tracing::debug!(error = %e, "signaling heartbeat failed; retrying");
            continue;
        }
        if !registry.absence_is_death().await.unwrap_or(false) {
            continue;
        }
        if let Err(e) = sweep(&store, &cluster, &node, &hub).await {
            tracing::debug!(error = %e, "cannot look for dead signaling nodes; retrying");
        }
    }
}

async fn sweep(
    store: &CallStore,
    cluster: &super::cluster::ClusterPlacement,
    me: &str,
    hub: &tokio::sync::mpsc::Sender<super::hub::ToHub>,
) -> Result<(), ClusterError> {
    for dead in store.dead_nodes(me).await? {
        let Some(taken) = store.take_devices(&dead, me).await? else {
            continue;
        };
        tracing::warn!(
            node = %dead,
            devices = taken.devices.len(),
            rooms = taken.rooms.len(),
            "a signaling node died; its devices are disconnected and its rooms followed here"
        );
        metrics::counter!("hualu_signaling_dead_nodes_total").increment(1);
        cluster.adopt(&taken.rooms).await;
        for (user, device) in taken.devices {
            if store.connected(&user, &device).await? {
                continue;
            }
            let lost = super::hub::ToHub::Lost(crate::core::Device::new(&user, &device));
            if hub.send(lost).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
