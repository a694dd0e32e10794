//! An SFU node's heartbeat: its load into Redis every `heartbeat_ms`, on a thread of its own so that neither
//! the media loops nor the HTTP runtime wait on Redis.

use crate::media::MediaSink;
use crate::node::{Load, NodeInfo, NodeState};
use crate::registry::{ClusterError, Registry};
use hualu_common::config::ClusterConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the node counts, read once per heartbeat: rooms, participants, and media packets in and out since start.
pub type LoadSource = Box<dyn Fn() -> (u64, u64, u64) + Send>;

/// Who the node is, for its heartbeat.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `cluster.node_id`, resolved.
    pub id: String,
    /// The room URL clients are sent to.
    pub url: String,
    /// The shards' UDP media addresses as clients and other nodes reach them, in shard order
    /// ([`NodeInfo::media`]).
    pub media: Vec<std::net::SocketAddr>,
}

/// A running heartbeat. [`Heartbeat::stop`] removes the node from the cluster at once.
pub struct Heartbeat {
    media: MediaSink,
    /// The heartbeat thread's runtime, for the node's other Redis work.
    runtime: tokio::runtime::Handle,
    registry: Registry,
    id: String,
    beat_now: mpsc::Sender<()>,
    /// 0 while serving; once draining, when the rooms move (Unix ms).
    move_at_ms: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts reporting. Redis may be down: the node then retries each period and logs the outage once.
    pub fn start(cfg: &ClusterConfig, who: Identity, load: LoadSource) -> Result<Self, ClusterError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Runtime(e.to_string()))?;
        let registry = {
            let _inside = runtime.enter();
            Registry::connect(cfg)?
        };
        let move_at_ms = Arc::new(AtomicU64::new(0));
        let (tx, rx) = oneshot::channel();
        let (media, reports) = MediaSink::new(who.id.clone());
        let (beat_now, now_rx) = mpsc::channel(1);
        let publisher = registry.clone();
        let handle = runtime.handle().clone();
        let (own_registry, id) = (registry.clone(), who.id.clone());
        let beat = Beat {
            registry,
            info: NodeInfo {
                id: who.id,
                url: who.url,
                region: cfg.region.clone(),
                state: NodeState::Serving,
                load: Load::default(),
                max_participants: cfg.max_participants as u64,
                started_ms: hualu_common::clock::unix_now_ms(),
                sent_ms: 0,
                move_at_ms: 0,
                media: who.media,
            },
            load,
            move_at_ms: move_at_ms.clone(),
            requested: None,
            now: now_rx,
            every: Duration::from_millis(cfg.heartbeat_ms),
        };
        let thread = std::thread::Builder::new()
            .name("cluster-heartbeat".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(crate::media::publish(publisher, reports));
                    beat.run(rx).await;
                })
            })
            .map_err(|e| ClusterError::Runtime(e.to_string()))?;
        Ok(Self {
            media,
            runtime: handle,
            registry: own_registry,
            id,
            beat_now,
            move_at_ms,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Where the node's media reports go: published to Redis from the heartbeat's thread.
    pub fn media(&self) -> MediaSink {
        self.media.clone()
    }

    /// Calls `close` with each room call control orders this node to close (its call ended, or it moved away),
    /// from the heartbeat's thread.
    pub fn follow_closes(&self, close: impl Fn(&str) + Send + Sync + 'static) {
        let (registry, id) = (self.registry.clone(), self.id.clone());
        self.runtime.spawn(crate::media::follow_closes(registry, id, close));
    }

    /// From the next heartbeat on, the node says it is draining: it gets no new rooms, and after `deadline` call
    /// control moves its remaining rooms to other nodes. Beats at once, so the cluster knows within a round trip.
    pub fn drain(&self, deadline: Duration) {
        let at = hualu_common::clock::unix_now_ms() + (deadline.as_millis() as u64).max(1);
        self.move_at_ms.store(at, Ordering::Relaxed);
        let _ = self.beat_now.try_send(());
    }

    /// Stops the heartbeat and removes the node from Redis (bounded by the client's timeouts).
    pub fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Beat {
    registry: Registry,
    info: NodeInfo,
    load: LoadSource,
    /// 0 while serving; once draining, when the rooms move (Unix ms).
    move_at_ms: Arc<AtomicU64>,
    /// An admin's drain request, read from Redis with the last heartbeat: when the rooms move.
    requested: Option<u64>,
    /// A heartbeat wanted before the next tick (the node started draining).
    now: mpsc::Receiver<()>,
    every: Duration,
}

impl Beat {
    /// Sends one heartbeat with the node's drain state: the earlier of its own drain (a signal) and an admin's.
    async fn beat(&mut self) -> Result<Option<u64>, ClusterError> {
        let own = Some(self.move_at_ms.load(Ordering::Relaxed)).filter(|&t| t > 0);
        self.info.move_at_ms = own.into_iter().chain(self.requested).min().unwrap_or(0);
        self.info.state = match self.info.move_at_ms {
            0 => NodeState::Serving,
            _ => NodeState::Draining,
        };
        self.info.sent_ms = hualu_common::clock::unix_now_ms();
        self.registry.heartbeat(&self.info).await
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Sample::now(&self.load);
        let mut healthy = true;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {}
                Some(()) = self.now.recv() => {}
            }
            let now = Sample::now(&self.load);
            self.info.load = now.since(&last);
            last = now;
            let mut result = self.beat().await;
            if let Ok(requested) = result {
                if requested != self.requested {
                    // An admin asked for a drain, or withdrew it: say so now, not a period later.
                    tracing::info!(node = %self.info.id, ?requested, "admin drain request changed");
                    self.requested = requested;
                    result = self.beat().await;
                }
            }
            let label = if result.is_ok() { "ok" } else { "error" };
            metrics::counter!("hualu_cluster_heartbeats_total", "result" => label).increment(1);
            match result {
                Ok(_) if !healthy => {
                    tracing::info!(node = %self.info.id, "heartbeats reach Redis again");
                    healthy = true;
                }
                Err(e) if healthy => {
                    tracing::warn!(node = %self.info.id, error = %e, "heartbeat failed; retrying each period");
                    healthy = false;
                }
                _ => {}
            }
        }
        match self.registry.deregister(&self.info.id).await {
            Ok(()) => tracing::info!(node = %self.info.id, "left the cluster"),
            Err(e) => tracing::warn!(node = %self.info.id, error = %e, "could not leave the cluster; it expires"),
        }
    }
}

/// Counters at one instant, for rates between two heartbeats.
struct Sample {
    at: Instant,
    rooms: u64,
    participants: u64,
    packets: u64,
    cpu_s: f64,
}

impl Sample {
    fn now(load: &LoadSource) -> Self {
        let (rooms, participants, packets) = load();
        Self {
            at: Instant::now(),
            rooms,
            participants,
            packets,
            cpu_s: hualu_common::procstat::proc_cpu_s(std::process::id()).unwrap_or(0.0),
        }
    }

    fn since(&self, before: &Sample) -> Load {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        Load {
            rooms: self.rooms,
            participants: self.participants,
            packets_per_s: (self.packets.saturating_sub(before.packets) as f64 / secs).round() as u64,
            cpu_cores: ((self.cpu_s - before.cpu_s).max(0.0) / secs * 100.0).round() / 100.0,
        }
    }
}
