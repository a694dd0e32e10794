//! WHIP (RFC 9725) and WHEP: publishing into and playing from a room with one HTTP exchange, the door for
//! GStreamer, OBS, ffmpeg and aiortc.
//!
//! - `POST /whip` and `POST /whep`, with `Authorization: Bearer <access token>` naming the room, and an SDP offer
//!   (`application/sdp`). The answer comes back with `201 Created` and the session's URL in `Location`. TURN
//!   servers, when configured, come in `Link` headers (RFC 9725 section 4.6).
//! - `PATCH <session>` with `application/trickle-ice-sdpfrag`: the client's trickled candidates. An ICE restart
//!   through PATCH is refused with `501`: str0m restarts ICE only from a whole offer, so a client POSTs again.
//! - `DELETE <session>`: leave.
//!
//! A WHIP publisher's tracks go to the room as any participant's do. A WHEP viewer receives the room's tracks on
//! the receive-only m-lines of its offer, matched by kind in order of publication; the SFU never sends it an
//! offer, since neither protocol has a way to.

use super::{Admitted, Refused, RtcState};
use crate::shard::{Command, Event};
use crate::JoinError;
use crate::PeerId;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::Router;
use hualu_common::token::Claims;
use std::sync::Arc;
use str0m::change::SdpOffer;
use tokio::sync::mpsc;

/// Largest offer or PATCH body taken.
const MAX_BODY: usize = 64 * 1024;

/// Which door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Whip,
    Whep,
}

impl Door {
    fn path(self) -> &'static str {
        match self {
            Door::Whip => "whip",
            Door::Whep => "whep",
        }
    }
}

/// The WHIP and WHEP routes.
pub fn routes() -> Router<Arc<RtcState>> {
    Router::new()
        .route("/whip", post(|s, h, b| start(s, h, b, Door::Whip)))
        .route("/whep", post(|s, h, b| start(s, h, b, Door::Whep)))
        .route(
            "/whip/{id}",
            patch(|s, p, h, b| trickle(s, p, h, b, Door::Whip)).delete(|s, p| stop(s, p, Door::Whip)),
        )
        .route(
            "/whep/{id}",
            patch(|s, p, h, b| trickle(s, p, h, b, Door::Whep)).delete(|s, p| stop(s, p, Door::Whep)),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], format!("{message}\n")).into_response()
}

/// The token's claims, or why it is refused (always 401).
fn bearer(st: &RtcState, headers: &HeaderMap) -> Result<Claims, String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("Authorization: Bearer <access token> is missing")?;
    let claims = st
        .verifier
        .verify(token.trim(), hualu_common::clock::unix_now())
        .map_err(|e| e.to_string())?;
    if claims.grants.room.is_none() {
        return Err("the token grants no room".into());
    }
    Ok(claims)
}

async fn start(State(st): State<Arc<RtcState>>, headers: HeaderMap, body: Bytes, door: Door) -> Response {
    let claims = match bearer(&st, &headers) {
        Ok(c) => c,
        Err(why) => return plain(StatusCode::UNAUTHORIZED, &why),
    };
    let granted = match door {
        Door::Whip => claims.grants.publish,
        Door::Whep => claims.grants.subscribe,
    };
    if !granted {
        let what = if door == Door::Whip { "publish" } else { "subscribe" };
        return plain(StatusCode::FORBIDDEN, &format!("the token does not grant {what}"));
    }
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/sdp"));
    if !is_sdp {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the offer must be application/sdp");
    }
    let offer = match std::str::from_utf8(&body)
        .ok()
        .and_then(|s| SdpOffer::from_sdp_string(s).ok())
    {
        Some(o) => o,
        None => return plain(StatusCode::BAD_REQUEST, "the body is not an SDP offer"),
    };
    let (events, rx) = mpsc::unbounded_channel();
    let grants = (door == Door::Whip, door == Door::Whep);
    let Admitted { joined, key, entry } = match st.admit(&claims, grants, false, offer, events).await {
        Ok(a) => a,
        Err(Refused::Join(e @ (JoinError::RoomFull { .. } | JoinError::TooManyRooms(_)))) => {
            return plain(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(Refused::Join(e)) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(Refused::Stopped) => return plain(StatusCode::SERVICE_UNAVAILABLE, "the SFU shard is not running"),
    };
    let ufrag = ice_ufrag(std::str::from_utf8(&body).unwrap_or_default()).unwrap_or_default();
    st.whip().insert(key.clone(), (entry, ufrag));
    watch(st.clone(), key.clone(), rx);
    let location = format!("/{}/{key}", door.path());
    let mut response = (StatusCode::CREATED, joined.answer.to_sdp_string()).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    for link in st.turn.as_ref().map(|t| t.links(&claims.sub)).unwrap_or_default() {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    response
}

/// Forgets the session when the shard ends it (idle, never connected, stopping).
fn watch(st: Arc<RtcState>, key: String, mut rx: mpsc::UnboundedReceiver<Event>) {
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if matches!(ev, Event::Signal(crate::Signal::Ended(_))) {
                break;
            }
        }
        st.whip().remove(&key);
    });
}

fn session(st: &RtcState, id: &str) -> Option<(usize, PeerId, String)> {
    st.whip().get(id).map(|(e, ufrag)| (e.shard, e.peer, ufrag.clone()))
}

/// The first `a=ice-ufrag` of an SDP or SDP fragment.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::to_string)
}

async fn trickle(
    State(st): State<Arc<RtcState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    _door: Door,
) -> Response {
    let Some((shard, peer, ufrag)) = session(&st, &id) else {
        return plain(StatusCode::NOT_FOUND, "no such session");
    };
    let is_frag = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/trickle-ice-sdpfrag"));
    if !is_frag {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH takes application/trickle-ice-sdpfrag",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    // RFC 8840: a fragment with other credentials than the session's is an ICE restart.
    if ice_ufrag(text).is_some_and(|u| u != ufrag) {
        return plain(
            StatusCode::NOT_IMPLEMENTED,
            "ICE restart through PATCH is not supported; POST a new offer",
        );
    }
    for line in text.lines().filter_map(|l| l.trim().strip_prefix("a=")) {
        if line.starts_with("candidate:") {
            st.node.send(shard, Command::Trickle(peer, line.to_string()));
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn stop(State(st): State<Arc<RtcState>>, Path(id): Path<String>, _door: Door) -> Response {
    let Some((entry, _)) = st.whip().remove(&id) else {
        return plain(StatusCode::NOT_FOUND, "no such session");
    };
    st.node.send(entry.shard, Command::Leave(entry.peer));
    StatusCode::OK.into_response()
}
