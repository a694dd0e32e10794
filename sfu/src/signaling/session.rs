//! One participant's socket: the first message joins or resumes, then messages flow both ways until the
//! client leaves, the shard ends the session, or the socket drops (then the session waits for a resume).

use super::messages::{self, ClientMsg};
use super::{Admitted, Refused, RtcState};
use crate::shard::{Command, Event};
use crate::{PeerId, Preference};
use axum::extract::ws::{Message, WebSocket};
use hualu_common::token::Claims;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::oneshot;

use crate::Signal;

/// How long a new socket may take to send `join` or `resume`.
const FIRST_MESSAGE: Duration = Duration::from_secs(10);

/// The participant this socket speaks for.
struct Bound {
    key: String,
    shard: usize,
    peer: PeerId,
    generation: u64,
}

/// Runs one socket to its end.
pub async fn run(mut socket: WebSocket, st: Arc<RtcState>, claims: Claims) {
    let first = match tokio::time::timeout(FIRST_MESSAGE, recv(&mut socket)).await {
        Ok(Some(Ok(m))) => m,
        Ok(Some(Err(e))) => return close_with(&mut socket, messages::error(None, "bad_request", &e)).await,
        Ok(None) => return,
        Err(_) => {
            let e = messages::error(None, "bad_request", "no join or resume within 10 s");
            return close_with(&mut socket, e).await;
        }
    };
    let (tx, rx) = unbounded_channel();
    let started = match first {
        ClientMsg::Join { id, sdp } => join(&st, &claims, tx, id, &sdp).await,
        ClientMsg::Resume { id, session, sdp } => resume(&st, &claims, tx, id, session, sdp).await,
        _ => Err(messages::error(
            None,
            "bad_request",
            "the first message must be join or resume",
        )),
    };
    match started {
        Ok((bound, joined)) => {
            if send(&mut socket, &joined).await {
                relay(socket, &st, &bound, rx).await;
            } else {
                detach(&st, &bound);
            }
        }
        Err(e) => close_with(&mut socket, e).await,
    }
}

async fn join(
    st: &Arc<RtcState>,
    claims: &Claims,
    tx: crate::shard::EventTx,
    id: Option<Value>,
    sdp: &str,
) -> Result<(Bound, Value), Value> {
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| bad_sdp(id.as_ref(), &e.to_string()))?;
    let grants = (claims.grants.publish, claims.grants.subscribe);
    let admitted = st.admit(claims, grants, true, offer, tx).await.map_err(|r| {
        let (code, message) = match r {
            Refused::Join(e @ crate::JoinError::RoomFull { .. }) => ("room_full", e.to_string()),
            Refused::Join(e @ crate::JoinError::TooManyRooms(_)) => ("node_full", e.to_string()),
            Refused::Join(e) => ("bad_sdp", e.to_string()),
            Refused::Stopped => ("internal", "the SFU shard is not running".to_string()),
        };
        messages::error(id.as_ref(), code, &message)
    })?;
    let Admitted { joined, key, entry } = admitted;
    let shard = entry.shard;
    st.sessions().insert(key.clone(), entry);
    let msg = json!({
        "type": "joined",
        "participant": {"id": joined.id.to_string(), "identity": claims.sub, "tracks": []},
        "session": key,
        "sdp": joined.answer.to_sdp_string(),
        "participants": joined.participants.iter().map(messages::participant).collect::<Vec<_>>(),
        "ice_servers": st.turn.as_ref().map_or(json!([]), |t| t.ice_servers(&claims.sub)),
        "resumed": false,
    });
    let bound = Bound {
        key,
        shard,
        peer: joined.id,
        generation: 0,
    };
    Ok((bound, messages::reply(id.as_ref(), msg)))
}

async fn resume(
    st: &Arc<RtcState>,
    claims: &Claims,
    tx: crate::shard::EventTx,
    id: Option<Value>,
    key: String,
    sdp: Option<String>,
) -> Result<(Bound, Value), Value> {
    let offer = match sdp {
        Some(s) => Some(SdpOffer::from_sdp_string(&s).map_err(|e| bad_sdp(id.as_ref(), &e.to_string()))?),
        None => None,
    };
    let entry = {
        let mut sessions = st.sessions();
        let room = claims.grants.room.as_deref().unwrap_or_default();
        let found = sessions
            .get_mut(&key)
            .filter(|e| e.identity == claims.sub && e.room == room);
        let Some(e) = found else {
            return Err(messages::error(
                id.as_ref(),
                "no_session",
                "no such session for this token; join again",
            ));
        };
        e.generation += 1;
        e.clone()
    };
    let (reply, answer) = oneshot::channel();
    let cmd = Command::Attach(entry.peer, tx, offer, reply);
    let Some((roster, answer)) = ask(st, entry.shard, cmd, answer, id.as_ref()).await? else {
        st.sessions().remove(&key);
        return Err(messages::error(
            id.as_ref(),
            "no_session",
            "the session has ended; join again",
        ));
    };
    let sdp = match answer {
        Some(Ok(a)) => Some(a.to_sdp_string()),
        Some(Err(e)) => return Err(bad_sdp(id.as_ref(), &e)),
        None => None,
    };
    let msg = json!({
        "type": "joined",
        "participant": {"id": entry.peer.to_string(), "identity": claims.sub, "tracks": []},
        "session": key,
        "sdp": sdp,
        "participants": roster.iter().map(messages::participant).collect::<Vec<_>>(),
        "ice_servers": st.turn.as_ref().map_or(json!([]), |t| t.ice_servers(&claims.sub)),
        "resumed": true,
    });
    let bound = Bound {
        key,
        shard: entry.shard,
        peer: entry.peer,
        generation: entry.generation,
    };
    Ok((bound, messages::reply(id.as_ref(), msg)))
}

/// Relays until the session ends or the socket drops.
async fn relay(mut socket: WebSocket, st: &Arc<RtcState>, b: &Bound, mut rx: UnboundedReceiver<Event>) {
    // The ids of the client's offers sent to the shard, oldest first: their answers come back in this order.
    let mut offers: VecDeque<Option<Value>> = VecDeque::new();
    loop {
        tokio::select! {
            msg = recv(&mut socket) => match msg {
                None => return detach(st, b),
                Some(Err(e)) => {
                    if !send(&mut socket, &messages::error(None, "bad_request", &e)).await {
                        return detach(st, b);
                    }
                }
                Some(Ok(ClientMsg::Leave {})) => {
                    st.sessions().remove(&b.key);
                    st.node.send(b.shard, Command::Leave(b.peer));
                    return close_with(&mut socket, json!({"type": "left", "reason": "leave"})).await;
                }
                Some(Ok(m)) => {
                    let reply = handle(st, b, m, &mut offers).await;
                    if let Some(r) = reply {
                        if !send(&mut socket, &r).await {
                            return detach(st, b);
                        }
                    }
                }
            },
            event = rx.recv() => match event {
                Some(Event::Answer(answer)) => {
                    let id = offers.pop_front().flatten();
                    let reply = match answer {
                        Ok(a) => messages::reply(id.as_ref(), json!({"type": "answer", "sdp": a.to_sdp_string()})),
                        Err(e) => bad_sdp(id.as_ref(), &e),
                    };
                    if !send(&mut socket, &reply).await {
                        return detach(st, b);
                    }
                }
                Some(Event::Signal(s)) => {
                    let ended = matches!(s, Signal::Ended(_));
                    let sent = send(&mut socket, &messages::signal(&s)).await;
                    if ended {
                        st.sessions().remove(&b.key);
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    if !sent {
                        return detach(st, b);
                    }
                }
                // The shard dropped this socket's channel: a resume elsewhere took the session over, or the
                // shard stopped.
                None => {
                    let replaced = st.sessions().get(&b.key).is_some_and(|e| e.generation != b.generation);
                    let reason = if replaced { "replaced" } else { "server stopping" };
                    return close_with(&mut socket, json!({"type": "left", "reason": reason})).await;
                }
            },
        }
    }
}

/// One message after the first; returns the reply, if any. A client offer's answer comes later, as an
/// [`Event::Answer`] in order with the shard's signals; its id waits in `offers`.
async fn handle(st: &Arc<RtcState>, b: &Bound, m: ClientMsg, offers: &mut VecDeque<Option<Value>>) -> Option<Value> {
    match m {
        ClientMsg::Offer { id, sdp } => {
            let offer = match SdpOffer::from_sdp_string(&sdp) {
                Ok(o) => o,
                Err(e) => return Some(bad_sdp(id.as_ref(), &e.to_string())),
            };
            if !st.node.send(b.shard, Command::Offer(b.peer, offer)) {
                return Some(messages::error(id.as_ref(), "internal", "the SFU shard is not running"));
            }
            offers.push_back(id);
            None
        }
        ClientMsg::Answer { sdp } => {
            let answer = match SdpAnswer::from_sdp_string(&sdp) {
                Ok(a) => a,
                Err(e) => return Some(bad_sdp(None, &e.to_string())),
            };
            let (reply, done) = oneshot::channel();
            match ask(st, b.shard, Command::Answer(b.peer, answer, reply), done, None).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(bad_sdp(None, &e)),
                Err(e) => Some(e),
            }
        }
        ClientMsg::Trickle { candidate, .. } => {
            let line = candidate.strip_prefix("a=").unwrap_or(&candidate).to_string();
            if !line.is_empty() {
                st.node.send(b.shard, Command::Trickle(b.peer, line));
            }
            None
        }
        ClientMsg::Mute { track, muted } => {
            st.node.send(b.shard, Command::Mute(b.peer, track, muted));
            None
        }
        ClientMsg::Subscribe {
            id,
            track,
            enabled,
            quality,
        } => {
            let pref = Preference {
                enabled,
                max: quality.into(),
            };
            let (reply, done) = oneshot::channel();
            let command = Command::Subscribe(b.peer, track.clone(), pref, reply);
            match ask(st, b.shard, command, done, id.as_ref()).await {
                Ok(true) => Some(messages::reply(
                    id.as_ref(),
                    json!({"type": "subscribed", "track": track}),
                )),
                Ok(false) => Some(messages::error(
                    id.as_ref(),
                    "unknown_track",
                    "no subscription to that track",
                )),
                Err(e) => Some(e),
            }
        }
        ClientMsg::Join { id, .. } | ClientMsg::Resume { id, .. } => {
            Some(messages::error(id.as_ref(), "bad_request", "already joined"))
        }
        ClientMsg::Leave {} => None,
    }
}

/// Sends a command that answers on a oneshot, and waits for the answer.
async fn ask<T>(
    st: &Arc<RtcState>,
    shard: usize,
    cmd: Command,
    answer: oneshot::Receiver<T>,
    id: Option<&Value>,
) -> Result<T, Value> {
    let stopped = || messages::error(id, "internal", "the SFU shard is not running");
    if !st.node.send(shard, cmd) {
        return Err(stopped());
    }
    answer.await.map_err(|_| stopped())
}

/// The socket dropped without `leave`: the participant keeps its session for the grace period.
fn detach(st: &Arc<RtcState>, b: &Bound) {
    let st = st.clone();
    let (key, shard, peer, generation) = (b.key.clone(), b.shard, b.peer, b.generation);
    tracing::debug!(peer, "signaling dropped; waiting for resume");
    tokio::spawn(async move {
        tokio::time::sleep(st.grace).await;
        let lapsed = {
            let mut sessions = st.sessions();
            let lapsed = sessions.get(&key).is_some_and(|e| e.generation == generation);
            if lapsed {
                sessions.remove(&key);
            }
            lapsed
        };
        if lapsed {
            tracing::debug!(peer, "no resume within the grace period; the participant leaves");
            st.node.send(shard, Command::Leave(peer));
        }
    });
}

/// The next client message: `None` when the socket is closed; Err for a message that is not valid JSON of a
/// known type.
async fn recv(socket: &mut WebSocket) -> Option<Result<ClientMsg, String>> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(t)) => {
                return Some(serde_json::from_str(t.as_str()).map_err(|e| format!("unreadable message: {e}")));
            }
            Ok(Message::Binary(_)) => return Some(Err("messages are JSON text frames".into())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Sends a message; false if the socket is gone.
async fn send(socket: &mut WebSocket, v: &Value) -> bool {
    socket.send(Message::Text(v.to_string().into())).await.is_ok()
}

async fn close_with(socket: &mut WebSocket, v: Value) {
    let _ = send(socket, &v).await;
    let _ = socket.send(Message::Close(None)).await;
}

fn bad_sdp(id: Option<&Value>, e: &str) -> Value {
    messages::error(id, "bad_sdp", e)
}
