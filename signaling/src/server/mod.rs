//! Call control over WebSocket (`GET /ws`, docs/protocol.md): the sockets, the hub that owns the
//! switchboard, and where answered calls are placed.

mod admin;
pub mod cluster;
mod hub;
mod limit;
pub mod placement;
mod protocol;
mod shared;
mod span;
mod ws;

pub use hub::{HookSink, HubConfig};
pub use placement::{LocalSfu, PlaceError, Placement};
pub use protocol::VERSION;

use crate::core::Limits;
use crate::webhook::{WebhookConfig, Webhooks};
use axum::routing::get;
use axum::Router;
use hualu_common::config::Config;
use hualu_common::ice_servers::TurnServers;
use hualu_common::token::Verifier;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the sockets share.
pub struct State {
    hub: mpsc::Sender<hub::ToHub>,
    verifier: Verifier,
    limiter: limit::Limiter,
    max_message: usize,
    /// The API key and secret that sign refreshed tokens.
    key: (String, String),
    /// The cluster, in cluster mode: the admin API lists and drains its nodes.
    cluster: Option<Arc<cluster::ClusterPlacement>>,
}

/// `GET /dev/token?user=U&device=D` (dev mode only): a day-long token for that user and device.
async fn dev_token(
    axum::extract::State(st): axum::extract::State<Arc<State>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let user = q.get("user").map_or("", String::as_str);
    let device = q.get("device").map_or("web", String::as_str);
    let now = hualu_common::clock::unix_now();
    let mut claims = hualu_common::token::Claims::new(&st.key.0, user, now, 86_400);
    claims.device = Some(device.to_string());
    match hualu_common::token::mint(&st.key.1, &claims) {
        Ok(t) => axum::Json(serde_json::json!({
            "access_token": t, "user": user, "device": device, "expires_at": claims.exp
        }))
        .into_response(),
        Err(e) => (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"code": "bad_request", "message": e.to_string()})),
        )
            .into_response(),
    }
}

impl LocalSfu {
    /// The SFU at `signaling.sfu_url` (default: this process's `/rtc`), with room tokens signed by `key` and
    /// rooms ended through `close_room`.
    pub fn from_config(config: &Config, key: (String, String), close_room: Option<placement::CloseRoom>) -> Self {
        let s = &config.signaling;
        let sfu_url = match s.sfu_url.as_str() {
            "" => format!("ws://{}/rtc", config.http.listen),
            url => url.to_string(),
        };
        LocalSfu {
            sfu_url,
            key,
            token_ttl_secs: s.room_token_ttl_secs,
            turn: TurnServers::from_config(config),
            close_room,
        }
    }
}

/// A handle on running call control, for the SFU in the same process.
#[derive(Clone)]
pub struct CallControl {
    hub: mpsc::Sender<hub::ToHub>,
}

impl CallControl {
    /// The SFU says whether `user`'s media flows in room `room` (a call's room is named by its call id).
    /// Never blocks; a report that finds the hub's queue full is dropped (the next one corrects it).
    pub fn media(&self, room: &str, user: &str, flowing: bool) {
        let msg = hub::ToHub::Media {
            call: room.to_string(),
            user: user.to_string(),
            flowing,
        };
        if self.hub.try_send(msg).is_err() {
            tracing::warn!(room, user, flowing, "call control is busy; a media report was dropped");
        }
    }
}

/// Why call control could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No API key to sign room tokens with.
    #[error("call control needs an API key in [auth].api_keys to sign room tokens")]
    NoApiKey,
    /// Cluster mode could not start.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The webhook settings are unusable.
    #[error("webhooks: {0}")]
    Webhooks(String),
}

/// Starts call control with rooms on `placement` (`None`: the cluster's nodes when `[cluster]` is on, else
/// [`LocalSfu::from_config`], without closing rooms),
/// and call events posted to `hooks` (`None`: to `signaling.webhook_url`, if set). Must run inside a tokio
/// runtime. Returns the `/ws` routes, and a handle for the SFU's media reports.
pub fn start(
    config: &Config,
    placement: Option<Arc<dyn Placement>>,
    hooks: Option<Box<dyn HookSink>>,
) -> Result<(Router, CallControl), StartError> {
    let s = &config.signaling;
    let key = config
        .auth
        .api_keys
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or(StartError::NoApiKey)?;
    let (moves, moved) = mpsc::unbounded_channel();
    let mut cluster = None;
    let placement: Arc<dyn Placement> = match placement {
        Some(p) => p,
        None if config.cluster.enabled() => {
            let tokens = LocalSfu::from_config(config, key.clone(), None);
            let c = cluster::ClusterPlacement::start(&config.cluster, tokens, moves)
                .map_err(|e| StartError::Cluster(e.to_string()))?;
            let c = Arc::new(c);
            cluster = Some(c.clone());
            c
        }
        None => Arc::new(LocalSfu::from_config(config, key.clone(), None)),
    };
    let hooks = match (hooks, s.webhook_url.as_str()) {
        (Some(h), _) => Some(h),
        (None, "") => None,
        (None, url) => {
            let mut w = WebhookConfig::new(url, &s.webhook_secret);
            w.max_attempts = s.webhook_attempts;
            let w = Webhooks::start(w).map_err(|e| StartError::Webhooks(e.to_string()))?;
            Some(Box::new(w) as Box<dyn HookSink>)
        }
    };
    let limits = Limits {
        ring_timeout: Duration::from_secs(s.ring_timeout_secs),
        grace: Duration::from_secs(s.grace_secs),
        max_members: s.max_members,
        ..Limits::default()
    };
    let shared = cluster
        .clone()
        .map(|c| shared_board(c, &config.cluster.node_id, limits.clone()));
    let events = shared.as_ref().map(|s| (s.board.store().clone(), s.node.clone()));
    let every = Duration::from_millis(config.cluster.heartbeat_ms);
    let hub = hub::start(
        HubConfig {
            limits,
            resume_events: s.resume_events,
        },
        placement,
        hooks,
        shared,
    );
    if let (Some((store, node)), Some(c)) = (events, cluster.as_ref()) {
        let follow = shared::follow_signaling_nodes(store.clone(), c.clone(), node.clone(), hub.clone(), every);
        tokio::spawn(follow);
        let hub = hub.clone();
        tokio::spawn(async move {
            store
                .follow_events(node, |e| {
                    if hub.try_send(hub::ToHub::Routed(e)).is_err() {
                        tracing::warn!("call control is busy; an event from another node was dropped");
                    }
                })
                .await
        });
    }
    let control = CallControl { hub: hub.clone() };
    if let Some(c) = cluster.clone() {
        follow_cluster(c, control.clone(), moved);
    }
    let state = Arc::new(State {
        hub,
        verifier: Verifier::from_auth(&config.auth),
        limiter: limit::Limiter::new(s.user_rate, s.user_burst, s.ip_rate, s.ip_burst),
        max_message: s.max_message_bytes,
        key,
        cluster,
    });
    let mut routes = Router::new().route("/ws", get(ws::upgrade)).merge(admin::routes());
    if config.dev {
        // Dev mode only: the demo page signs in by name. Never on otherwise.
        routes = routes.route("/dev/token", get(dev_token));
    }
    Ok((routes.with_state(state), control))
}

/// Cluster mode's switchboard over Redis, and the task that publishes, in order, the events for devices on other
/// signaling nodes. The node's name on the events channel is unique per process.
fn shared_board(c: Arc<cluster::ClusterPlacement>, node_id: &str, limits: Limits) -> hub::Shared {
    use rand::distr::{Alphanumeric, SampleString};
    let store = hualu_cluster::CallStore::new(&c.registry());
    let node = format!("{node_id}-{}", Alphanumeric.sample_string(&mut rand::rng(), 8));
    c.follow_as(node.clone());
    let (routed, mut queue) = mpsc::unbounded_channel::<hualu_cluster::Routed>();
    let publisher = store.clone();
    tokio::spawn(async move {
        while let Some(e) = queue.recv().await {
            if let Err(err) = publisher.route(&e).await {
                tracing::warn!(error = %err, user = %e.user, "an event for another node's device was lost");
            }
        }
    });
    hub::Shared {
        board: shared::SharedBoard::new(store, limits),
        cluster: c,
        node,
        routed,
    }
}

/// In a cluster, the SFU nodes' media reports come through Redis (those from a node the room is no longer on are
/// dropped), and rooms that moved reach the hub, which tells their devices. Reports are checked one at a time, in
/// order: one from a node the room just extended to may need a look in Redis.
fn follow_cluster(
    c: Arc<cluster::ClusterPlacement>,
    control: CallControl,
    mut moved: mpsc::UnboundedReceiver<cluster::Moved>,
) {
    let registry = c.registry();
    let (reports, mut queue) = mpsc::unbounded_channel::<hualu_cluster::MediaEvent>();
    tokio::spawn(hualu_cluster::media::follow(registry, move |e| {
        let _ = reports.send(e);
    }));
    let media = control.clone();
    tokio::spawn(async move {
        while let Some(e) = queue.recv().await {
            if c.accepts(&e.room, &e.node).await {
                media.media(&e.room, &e.identity, e.flowing);
            }
        }
    });
    tokio::spawn(async move {
        while let Some(m) = moved.recv().await {
            let msg = hub::ToHub::Moved {
                call: m.call,
                reason: m.reason,
            };
            if control.hub.send(msg).await.is_err() {
                return;
            }
        }
    });
}

impl HookSink for Webhooks {
    fn post(&self, kind: &str, data: serde_json::Value) {
        self.send(kind, data);
    }
}
