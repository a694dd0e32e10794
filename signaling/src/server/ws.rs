//! `GET /ws?access_token=JWT[&session=S&last_seq=N]`: one socket per device. The token names the user and the
//! device; `session` and `last_seq` resume a session after a dropped connection. Each socket's task checks
//! size and rate limits, parses messages, and relays between the client and the hub.

use super::hub::{Attached, Out, ToHub};
use super::protocol::{self, ClientMsg};
use super::State as St;
use crate::core::Device;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A socket silent this long (no message, no pong) is taken for dead.
const SILENCE: Duration = Duration::from_secs(45);
/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A refreshed token is sent this long before the current one expires.
const REFRESH_BEFORE: u64 = 300;

/// The query string.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    access_token: Option<String>,
    session: Option<String>,
    last_seq: Option<u64>,
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

/// Checks the token, then upgrades.
pub async fn upgrade(
    State(st): State<Arc<St>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(token) = q.access_token.as_deref() else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "access_token is missing");
    };
    let claims = match st.verifier.verify(token, hualu_common::clock::unix_now()) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()),
    };
    let Ok(ws) = ws else {
        return refuse(StatusCode::BAD_REQUEST, "bad_request", "expected a WebSocket upgrade");
    };
    let device = Device::new(&claims.sub, claims.device.as_deref().unwrap_or("default"));
    let resume = q.session.zip(q.last_seq.or(Some(0)));
    let max = st.max_message;
    // Small buffers: most devices sit idle for hours, and tungstenite's defaults (128 KiB each way) would
    // dominate the memory of an idle connection.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .on_upgrade(move |socket| serve(st, socket, device, claims, resume, peer))
}

async fn serve(
    st: Arc<St>,
    mut socket: WebSocket,
    device: Device,
    claims: hualu_common::token::Claims,
    resume: Option<(String, u64)>,
    peer: SocketAddr,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let (reply, attached) = oneshot::channel();
    let attach = ToHub::Attach {
        device: device.clone(),
        resume,
        tx,
        reply,
    };
    if st.hub.send(attach).await.is_err() {
        return;
    }
    let Ok(Attached { session, generation }) = attached.await else {
        return;
    };
    let mut refresh = Box::pin(tokio::time::sleep(refresh_at(&claims)));
    let mut claims = claims;
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut silent = Box::pin(tokio::time::sleep(SILENCE));
    loop {
        tokio::select! {
            out = rx.recv() => {
                let text = match out {
                    Some(Out::Text(t)) => t,
                    Some(Out::Close(reason)) => {
                        let frame = CloseFrame { code: 4000, reason: reason.into() };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                        break;
                    }
                    None => break,
                };
                if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => {
                silent.as_mut().reset(tokio::time::Instant::now() + SILENCE);
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        let answer = request(&st, &session, generation, &device.user, peer, t.as_str()).await;
                        if let Some(a) = answer {
                            if socket.send(Message::Text(a.to_string().into())).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            _ = &mut silent => {
                let frame = CloseFrame { code: 1001, reason: "silent for too long".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
            _ = &mut refresh => {
                let (text, next) = refreshed(&st, &mut claims);
                refresh.as_mut().reset(tokio::time::Instant::now() + next);
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = st.hub.send(ToHub::Detach { session, generation }).await;
}

/// One message from the client: its immediate answer (errors and pongs), or `None` when the hub answers.
async fn request(st: &St, session: &str, generation: u64, user: &str, peer: SocketAddr, text: &str) -> Option<Value> {
    if let Err(wait) = st.limiter.take(user, peer.ip()) {
        let ms = wait.as_millis() as u64;
        let mut e = protocol::error(&protocol::id_of(text), "rate_limited", "too many messages; retry later");
        e["retry_after_ms"] = json!(ms);
        return Some(e);
    }
    let msg: ClientMsg = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return Some(protocol::error(&protocol::id_of(text), "bad_request", &e.to_string())),
    };
    let id = msg.id().clone();
    match msg.into_command() {
        Err(e) => Some(protocol::reply(&id, &Err(e))),
        Ok(None) => Some(json!({"type": "pong", "id": id})),
        Ok(Some((key, command))) => {
            let req = ToHub::Request {
                session: session.to_string(),
                generation,
                id,
                key,
                command,
            };
            let _ = st.hub.send(req).await;
            None
        }
    }
}

/// When to send a refreshed token: a few minutes before expiry (at once if that is past).
fn refresh_at(claims: &hualu_common::token::Claims) -> Duration {
    let now = hualu_common::clock::unix_now();
    Duration::from_secs(claims.exp.saturating_sub(REFRESH_BEFORE).saturating_sub(now).max(1))
}

/// A fresh token with the same user, device and grants, signed with the node's key.
fn refreshed(st: &St, claims: &mut hualu_common::token::Claims) -> (String, Duration) {
    let now = hualu_common::clock::unix_now();
    let ttl = claims.exp.saturating_sub(claims.iat).max(REFRESH_BEFORE * 2);
    let mut c = claims.clone();
    c.iss = st.key.0.clone();
    c.iat = now;
    c.nbf = now;
    c.exp = now + ttl;
    match hualu_common::token::mint(&st.key.1, &c) {
        Ok(token) => {
            *claims = c;
            let next = refresh_at(claims);
            (
                json!({"type": "token", "access_token": token, "expires_at": claims.exp}).to_string(),
                next,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "refreshing a token failed");
            (
                json!({"type": "error", "id": null, "code": "internal", "message": "token refresh failed"}).to_string(),
                Duration::from_secs(3600),
            )
        }
    }
}
