//! Media reports across processes: an SFU node tells call control when a participant's media starts flowing or
//! dies, as the in-process SFU does in `hualu up`. Reports go over Redis pub/sub on `<prefix>:media`. Pub/sub
//! keeps nothing: a report published while no signaling node listens is gone, and the next change of that
//! participant's media corrects the call's state.
//!
//! The other way, call control tells a node to close a room whose call ended (or that moved away) on
//! `<prefix>:rooms`; a close that is lost leaves the room to end when its participants leave or time out.

use crate::registry::Registry;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::mpsc;

/// One participant's media in one room, as the SFU saw it change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaEvent {
    /// The room (a call's room is named by its call id).
    pub room: String,
    /// The participant (the user, in a call's room).
    pub identity: String,
    /// Whether media flows now.
    pub flowing: bool,
    /// The SFU node that saw it (`cluster.node_id`): once a room has moved, its old node's reports are stale.
    pub node: String,
}

/// Call control's order to close a room on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomClose {
    /// The room.
    pub close: String,
    /// The node it is to close on (`cluster.node_id`).
    pub node: String,
}

/// Reports waiting for Redis; beyond this the newest are dropped and counted.
const QUEUE: usize = 4096;

/// Where an SFU node's observer drops its reports. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct MediaSink {
    tx: mpsc::Sender<MediaEvent>,
    node: String,
}

impl MediaSink {
    pub(crate) fn new(node: String) -> (Self, mpsc::Receiver<MediaEvent>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx, node }, rx)
    }

    /// Queues a report from this node for publishing.
    pub fn report(&self, room: &str, identity: &str, flowing: bool) {
        let e = MediaEvent {
            room: room.to_string(),
            identity: identity.to_string(),
            flowing,
            node: self.node.clone(),
        };
        if self.tx.try_send(e).is_err() {
            metrics::counter!("hualu_cluster_media_reports_total", "result" => "dropped").increment(1);
        }
    }
}

/// Publishes queued reports until every sink is gone.
pub(crate) async fn publish(registry: Registry, mut rx: mpsc::Receiver<MediaEvent>) {
    let mut healthy = true;
    while let Some(e) = rx.recv().await {
        let result = registry.publish_media(&e).await;
        let label = if result.is_ok() { "published" } else { "error" };
        metrics::counter!("hualu_cluster_media_reports_total", "result" => label).increment(1);
        match result {
            Ok(()) => healthy = true,
            Err(err) if healthy => {
                tracing::warn!(room = %e.room, error = %err, "a media report was lost; Redis is unreachable");
                healthy = false;
            }
            Err(_) => {}
        }
    }
}

/// Calls `on` with every report any node publishes, for ever: the subscription is opened again, after a short
/// pause, whenever it fails or Redis goes away. Must run inside a tokio runtime.
pub async fn follow(registry: Registry, on: impl Fn(MediaEvent)) {
    let channel = registry.media_channel();
    follow_channel(&registry, channel, "the SFU nodes' media reports", on).await
}

/// Calls `on` with each room call control orders node `node` to close, for ever (reopening as [`follow`]).
pub async fn follow_closes(registry: Registry, node: String, on: impl Fn(&str)) {
    follow_all_closes(registry, |c: RoomClose| {
        if c.node == node {
            on(&c.close);
        }
    })
    .await
}

/// Calls `on` with every room close call control orders, to any node, for ever (reopening as [`follow`]).
pub async fn follow_all_closes(registry: Registry, on: impl Fn(RoomClose)) {
    let channel = registry.rooms_channel();
    follow_channel(&registry, channel, "call control's room orders", on).await
}

/// Calls `on` with each JSON message on pub/sub `channel` (`what` names it in logs), for ever (reopening as
/// [`follow`]).
pub(crate) async fn follow_channel<T: serde::de::DeserializeOwned>(
    registry: &Registry,
    channel: String,
    what: &str,
    on: impl Fn(T),
) {
    use futures_util::StreamExt as _;
    let mut healthy = true;
    loop {
        let subscription = registry.subscribe(channel.clone()).await;
        match subscription {
            Ok(mut pubsub) => {
                tracing::info!("following {what}");
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    match serde_json::from_slice::<T>(msg.get_payload_bytes()) {
                        Ok(e) => on(e),
                        Err(err) => tracing::warn!(error = %err, "a message in {what} does not parse; skipped"),
                    }
                }
                tracing::warn!("the subscription to {what} closed; reopening");
                healthy = true;
            }
            Err(e) if healthy => {
                tracing::warn!(error = %e, "cannot follow {what}; retrying");
                healthy = false;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
