//! Room signaling: `GET /rtc?access_token=JWT`, a WebSocket of JSON messages per participant
//! (docs/protocol.md). Each socket's task relays between the client and its room's shard.

mod messages;
mod sdpfrag;
mod session;
mod whip;

use crate::node::Node;
use crate::PeerId;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hualu_common::config::Config;
use hualu_common::ice_servers::TurnServers;
use hualu_common::token::{Claims, Verifier};
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest message a client may send.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A session a client may resume.
#[derive(Debug, Clone)]
struct SessionEntry {
    shard: usize,
    peer: PeerId,
    identity: String,
    room: String,
    /// Bumped at each resume, so a stale socket's grace timer knows it lost the session.
    generation: u64,
}

/// A participant let into its room, whatever the door (`/rtc`, WHIP, WHEP).
struct Admitted {
    /// What the shard said: the id, the answer, the roster.
    joined: crate::Joined,
    /// The new session's key.
    key: String,
    /// The session, for the door's own table.
    entry: SessionEntry,
}

/// Why a participant was not let in.
enum Refused {
    /// The room or the node is full, or the offer was refused.
    Join(crate::JoinError),
    /// The room's shard is not running.
    Stopped,
}

/// What the `/rtc` handlers share.
pub struct RtcState {
    node: Arc<Node>,
    verifier: Verifier,
    turn: Option<TurnServers>,
    grace: Duration,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    /// WHIP and WHEP sessions.
    whip: Mutex<HashMap<String, whip::WhipSession>>,
}

impl RtcState {
    /// Signaling for `node`, with tokens checked against `config.auth` and TURN from `config`.
    pub fn new(node: Arc<Node>, config: &Config) -> Arc<Self> {
        Arc::new(Self {
            node,
            verifier: Verifier::from_auth(&config.auth),
            turn: TurnServers::from_config(config),
            grace: Duration::from_secs(config.sfu.resume_grace_secs),
            sessions: Mutex::new(HashMap::new()),
            whip: Mutex::new(HashMap::new()),
        })
    }

    /// Joins the room `claims` grant on its shard, with `offer`; the participant's messages go to `events`.
    async fn admit(
        &self,
        claims: &Claims,
        grants: (bool, bool),
        server_offers: bool,
        offer: str0m::change::SdpOffer,
        events: crate::shard::EventTx,
    ) -> Result<Admitted, Refused> {
        let room = claims.grants.room.clone().unwrap_or_default();
        let shard = self.node.shard_of(&room);
        let join = crate::shard::Join {
            room: room.clone(),
            identity: claims.sub.clone(),
            publish: grants.0,
            subscribe: grants.1,
            server_offers,
            offer,
            links: links_of(claims),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self
            .node
            .send(shard, crate::shard::Command::Join(Box::new(join), events, reply))
        {
            return Err(Refused::Stopped);
        }
        let joined = answer.await.map_err(|_| Refused::Stopped)?.map_err(Refused::Join)?;
        let entry = SessionEntry {
            shard,
            peer: joined.id,
            identity: claims.sub.clone(),
            room,
            generation: 0,
        };
        let key = Alphanumeric.sample_string(&mut rand::rng(), 22);
        Ok(Admitted { joined, key, entry })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        // A panic while holding this lock leaves the map usable: entries are replaced whole.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn whip(&self) -> std::sync::MutexGuard<'_, HashMap<String, whip::WhipSession>> {
        self.whip.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `/rtc`, WHIP and WHEP routes.
pub fn router(state: Arc<RtcState>) -> Router {
    Router::new()
        .route("/rtc", get(upgrade))
        .merge(whip::routes())
        .with_state(state)
}

#[derive(Deserialize)]
struct RtcQuery {
    access_token: Option<String>,
}

async fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    Query(q): Query<RtcQuery>,
    State(state): State<Arc<RtcState>>,
) -> Response {
    let Some(token) = q.access_token else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "access_token is missing");
    };
    let claims = match state.verifier.verify(&token, hualu_common::clock::unix_now()) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()),
    };
    if claims.grants.room.is_none() {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "the token grants no room");
    }
    let Ok(ws) = ws else {
        return refuse(StatusCode::BAD_REQUEST, "bad_request", "expected a WebSocket upgrade");
    };
    // Signaling is a few small messages a minute: tungstenite's default 128 KiB read and write buffers would be
    // most of a participant's memory. Writes go out at once; a client that stops reading fills at most 1 MiB.
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .on_upgrade(move |socket| session::run(socket, state, claims))
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// The link addresses a token names (`grants.links`); one that does not parse is left out, with a warning.
fn links_of(claims: &Claims) -> Vec<std::net::SocketAddr> {
    claims
        .grants
        .links
        .iter()
        .filter_map(|l| match l.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                tracing::warn!(link = %l, "a token's link address does not parse; it is left out");
                None
            }
        })
        .collect()
}
