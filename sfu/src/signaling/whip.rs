//! WHIP (RFC 9725) and WHEP: publishing into and playing from a room with one HTTP exchange, the door for
//! GStreamer, OBS, ffmpeg and aiortc.
//!
//! - `POST /whip` and `POST /whep`, with `Authorization: Bearer <access token>` naming the room, and an SDP offer
//!   (`application/sdp`). The answer comes back with `201 Created` and the session's URL in `Location`. TURN
//!   servers, when configured, come in `Link` headers (RFC 9725 section 4.6).
//! - `PATCH <session>` with `application/trickle-ice-sdpfrag` (RFC 8840): the client's trickled candidates, or,
//!   when the fragment names new ICE credentials, an ICE restart (RFC 9725 section 4.4.2). The restart is
//!   answered `200 OK` with a fragment holding the server's new credentials and candidates, and a new `ETag`.
//!   A trickle whose `If-Match` names an older `ETag` (an earlier ICE session) gets `412`.
//! - `DELETE <session>`: leave.
//!
//! A WHIP publisher's tracks go to the room as any participant's do. A WHEP viewer receives the room's tracks on
//! the receive-only m-lines of its offer, matched by kind in order of publication; the SFU never sends it an
//! offer, since neither protocol has a way to.

use super::sdpfrag::{self, IceCredentials};
use super::{Admitted, Refused, RtcState, SessionEntry};
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
use std::time::Duration;
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::{mpsc, Mutex};

/// Largest offer or PATCH body taken.
const MAX_BODY: usize = 64 * 1024;

/// How long an ICE restart waits for the shard's answer.
const RESTART_WAIT: Duration = Duration::from_secs(5);

/// Answers to a session's restart offers, forwarded from its shard's events. The lock also keeps a session's
/// restarts one at a time.
type Answers = Arc<Mutex<mpsc::UnboundedReceiver<Result<SdpAnswer, String>>>>;

/// One WHIP or WHEP session.
pub(super) struct WhipSession {
    entry: SessionEntry,
    /// The client's ICE ufrag: a fragment naming another one restarts ICE.
    ufrag: String,
    /// The client's offer, from which a restart offer is made.
    offer: Arc<str>,
    /// The session's entity tag, which names the server's ICE ufrag.
    etag: String,
    answers: Answers,
}

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
    let offer_text: Arc<str> = std::str::from_utf8(&body).unwrap_or_default().into();
    let answer = joined.answer.to_sdp_string();
    let etag = sdpfrag::etag(&sdpfrag::ice_ufrag(&answer).unwrap_or_default());
    let (answers_tx, answers) = mpsc::unbounded_channel();
    let session = WhipSession {
        entry,
        ufrag: sdpfrag::ice_ufrag(&offer_text).unwrap_or_default(),
        offer: offer_text,
        etag: etag.clone(),
        answers: Arc::new(Mutex::new(answers)),
    };
    st.whip().insert(key.clone(), session);
    watch(st.clone(), key.clone(), rx, answers_tx);
    let location = format!("/{}/{key}", door.path());
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    for link in st.turn.as_ref().map(|t| t.links(&claims.sub)).unwrap_or_default() {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    response
}

/// Forwards answers to restart offers, and forgets the session when the shard ends it (idle, never connected,
/// stopping).
fn watch(
    st: Arc<RtcState>,
    key: String,
    mut rx: mpsc::UnboundedReceiver<Event>,
    answers: mpsc::UnboundedSender<Result<SdpAnswer, String>>,
) {
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Signal(crate::Signal::Ended(_)) => break,
                Event::Answer(a) => {
                    let _ = answers.send(a);
                }
                _ => {}
            }
        }
        st.whip().remove(&key);
    });
}

/// What a PATCH needs of its session.
struct Patched {
    shard: usize,
    peer: PeerId,
    ufrag: String,
    etag: String,
}

fn session(st: &RtcState, id: &str) -> Option<Patched> {
    st.whip().get(id).map(|s| Patched {
        shard: s.entry.shard,
        peer: s.entry.peer,
        ufrag: s.ufrag.clone(),
        etag: s.etag.clone(),
    })
}

async fn trickle(
    State(st): State<Arc<RtcState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    _door: Door,
) -> Response {
    let Some(s) = session(&st, &id) else {
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
    if sdpfrag::ice_ufrag(text).is_some_and(|u| u != s.ufrag) {
        let Some(creds) = sdpfrag::ice_credentials(text) else {
            return plain(
                StatusCode::BAD_REQUEST,
                "an ICE restart needs a=ice-ufrag and a=ice-pwd",
            );
        };
        return restart(&st, &id, s, creds, text).await;
    }
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    if if_match.is_some_and(|m| m.trim() != "*" && m.trim() != s.etag) {
        return plain(StatusCode::PRECONDITION_FAILED, "the ETag names an earlier ICE session");
    }
    for c in sdpfrag::candidates(text) {
        st.node.send(s.shard, Command::Trickle(s.peer, c.to_string()));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// An ICE restart by PATCH: the session's offer again, with the fragment's credentials, taken as the client's
/// own renegotiation. The shard restarts ICE and answers; the answer's credentials go back as a fragment.
async fn restart(st: &RtcState, id: &str, s: Patched, creds: IceCredentials, frag: &str) -> Response {
    let Some((offer, answers)) = st.whip().get(id).map(|w| (w.offer.clone(), w.answers.clone())) else {
        return plain(StatusCode::NOT_FOUND, "no such session");
    };
    let mut answers = answers.lock().await;
    // An answer to an earlier restart that gave up waiting is stale now.
    while answers.try_recv().is_ok() {}
    let Ok(offer) = SdpOffer::from_sdp_string(&sdpfrag::restart_offer(&offer, &creds)) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "the fragment's credentials do not fit in the offer",
        );
    };
    if !st.node.send(s.shard, Command::Offer(s.peer, offer)) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the SFU shard is not running");
    }
    let answer = match tokio::time::timeout(RESTART_WAIT, answers.recv()).await {
        Ok(Some(Ok(a))) => a.to_sdp_string(),
        Ok(Some(Err(e))) => return plain(StatusCode::BAD_REQUEST, &format!("ICE restart refused: {e}")),
        Ok(None) => return plain(StatusCode::NOT_FOUND, "the session ended"),
        Err(_) => return plain(StatusCode::SERVICE_UNAVAILABLE, "the SFU shard did not answer in time"),
    };
    for c in sdpfrag::candidates(frag) {
        st.node.send(s.shard, Command::Trickle(s.peer, c.to_string()));
    }
    let etag = sdpfrag::etag(&sdpfrag::ice_ufrag(&answer).unwrap_or_default());
    if let Some(w) = st.whip().get_mut(id) {
        w.ufrag = creds.ufrag;
        w.etag = etag.clone();
    }
    let mut response = (StatusCode::OK, sdpfrag::answer_fragment(&answer)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

async fn stop(State(st): State<Arc<RtcState>>, Path(id): Path<String>, _door: Door) -> Response {
    let Some(s) = st.whip().remove(&id) else {
        return plain(StatusCode::NOT_FOUND, "no such session");
    };
    st.node.send(s.entry.shard, Command::Leave(s.entry.peer));
    StatusCode::OK.into_response()
}
