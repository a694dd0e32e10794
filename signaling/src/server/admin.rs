//! The admin API on call control's HTTP port, for ops: the cluster's nodes and rooms, this node's calls, and
//! draining an SFU node. Every request carries `Authorization: Bearer <token>`, a token with the admin grant
//! (`hualu token --admin`).
//!
//! - `GET /admin/nodes`: the live SFU nodes with their load and state (cluster mode).
//! - `GET /admin/rooms`: every placed room, its node and the nodes it spans (cluster mode).
//! - `GET /admin/calls`: the calls this signaling node holds, with their members, room's node and span.
//! - `POST /admin/nodes/{id}/drain`, optional body `{"deadline_secs": N}`: node `id` takes no new room, and its
//!   rooms move after N s (default `cluster.drain_deadline_secs`).
//! - `DELETE /admin/nodes/{id}/drain`: withdraws that request; the node serves again.

use super::hub::ToHub;
use super::State;
use axum::extract::{Path, State as Ext};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The longest drain deadline an admin may ask for: a day.
const MAX_DEADLINE_SECS: u64 = 86_400;

/// The `/admin` routes.
pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/admin/nodes", get(nodes))
        .route("/admin/rooms", get(rooms))
        .route("/admin/calls", get(calls))
        .route("/admin/nodes/{id}/drain", post(drain).delete(undrain))
}

/// An error answer: `{"error": code, "message": text}`.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

fn error(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> ApiError {
    ApiError {
        status,
        code,
        message: message.to_string(),
    }
}

type Answer = Result<Response, ApiError>;

/// Checks the bearer token for the admin grant.
fn authorize(st: &State, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authorization: Bearer <token> is missing",
            )
        })?;
    let claims = st
        .verifier
        .verify(token.trim(), hualu_common::clock::unix_now())
        .map_err(|e| error(StatusCode::UNAUTHORIZED, "unauthorized", e))?;
    if !claims.grants.admin {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token has no admin grant",
        ));
    }
    Ok(())
}

fn cluster(st: &State) -> Result<&super::cluster::ClusterPlacement, ApiError> {
    st.cluster.as_deref().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "not_clustered",
            "call control runs without [cluster]: there is one SFU and no node list",
        )
    })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    error(StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable", e)
}

async fn nodes(Ext(st): Ext<Arc<State>>, headers: HeaderMap) -> Answer {
    authorize(&st, &headers)?;
    let nodes = cluster(&st)?.registry().nodes().await.map_err(unavailable)?;
    Ok(Json(json!({"nodes": nodes})).into_response())
}

async fn rooms(Ext(st): Ext<Arc<State>>, headers: HeaderMap) -> Answer {
    authorize(&st, &headers)?;
    let registry = cluster(&st)?.registry();
    let rooms = registry.rooms().await.map_err(unavailable)?;
    let ids: Vec<String> = rooms.iter().map(|(room, _)| room.clone()).collect();
    let spans = registry.room_spans(&ids).await.map_err(unavailable)?;
    let rooms: Vec<Value> = rooms
        .into_iter()
        .zip(spans)
        .map(|((room, node), span)| room_json(&room, Some(&node), &span))
        .collect();
    Ok(Json(json!({"rooms": rooms})).into_response())
}

async fn calls(Ext(st): Ext<Arc<State>>, headers: HeaderMap) -> Answer {
    authorize(&st, &headers)?;
    let stopping = || error(StatusCode::SERVICE_UNAVAILABLE, "stopping", "call control is stopping");
    let (reply, rx) = oneshot::channel();
    st.hub.send(ToHub::Calls { reply }).await.map_err(|_| stopping())?;
    let mut calls = rx.await.map_err(|_| stopping())?;
    if let Some(c) = st.cluster.as_deref() {
        for call in &mut calls {
            let id = call["call"].as_str().unwrap_or("").to_string();
            // A call another signaling node placed: its room's record says where.
            let (node, span) = c.room_nodes(&id).await;
            call["node"] = json!(node);
            call["span"] = json!(span);
        }
    }
    Ok(Json(json!({"calls": calls})).into_response())
}

/// A room in `/admin/rooms`: its id, home node and span (empty when it is on one node).
fn room_json(room: &str, node: Option<&str>, span: &[String]) -> Value {
    json!({"room": room, "node": node, "span": span})
}

async fn drain(
    Ext(st): Ext<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    authorize(&st, &headers)?;
    let c = cluster(&st)?;
    let deadline =
        deadline_secs(&body, c.drain_deadline_secs()).map_err(|m| error(StatusCode::BAD_REQUEST, "bad_request", m))?;
    let registry = c.registry();
    let nodes = registry.nodes().await.map_err(unavailable)?;
    if !nodes.iter().any(|n| n.id == id) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "no_such_node",
            format!("no live SFU node {id:?}"),
        ));
    }
    let move_at_ms = hualu_common::clock::unix_now_ms() + deadline * 1000;
    registry.request_drain(&id, move_at_ms).await.map_err(unavailable)?;
    tracing::info!(node = %id, deadline_secs = deadline, "admin drain requested");
    let body = json!({"node": id, "deadline_secs": deadline, "move_at_ms": move_at_ms});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The body's `deadline_secs` (an empty body takes `default`).
fn deadline_secs(body: &[u8], default: u64) -> Result<u64, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(default);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match &v["deadline_secs"] {
        Value::Null => Ok(default),
        d => match d.as_u64() {
            Some(n) if n <= MAX_DEADLINE_SECS => Ok(n),
            _ => Err(format!(
                "deadline_secs must be a whole number of seconds, 0 to {MAX_DEADLINE_SECS}"
            )),
        },
    }
}

async fn undrain(Ext(st): Ext<Arc<State>>, Path(id): Path<String>, headers: HeaderMap) -> Answer {
    authorize(&st, &headers)?;
    let cancelled = cluster(&st)?.registry().cancel_drain(&id).await.map_err(unavailable)?;
    tracing::info!(node = %id, cancelled, "admin drain withdrawn");
    Ok(Json(json!({"node": id, "cancelled": cancelled})).into_response())
}

#[cfg(test)]
mod tests {
    use super::{deadline_secs, room_json};
    use serde_json::json;

    #[test]
    fn a_room_lists_its_span_and_an_empty_one_when_it_is_on_one_node() {
        assert_eq!(
            room_json("c1", Some("sfu-a"), &["sfu-b".into()]),
            json!({"room": "c1", "node": "sfu-a", "span": ["sfu-b"]})
        );
        assert_eq!(
            room_json("c2", Some("sfu-a"), &[]),
            json!({"room": "c2", "node": "sfu-a", "span": []})
        );
    }

    #[test]
    fn the_deadline_comes_from_the_body_or_the_default_and_bad_values_are_named() {
        assert_eq!(deadline_secs(b"", 30), Ok(30));
        assert_eq!(deadline_secs(b" \n", 30), Ok(30));
        assert_eq!(deadline_secs(br#"{}"#, 30), Ok(30));
        assert_eq!(deadline_secs(br#"{"deadline_secs": 5}"#, 30), Ok(5));
        assert_eq!(deadline_secs(br#"{"deadline_secs": 0}"#, 30), Ok(0));
        for bad in [
            &br#"{"deadline_secs": -1}"#[..],
            br#"{"deadline_secs": 1.5}"#,
            br#"{"deadline_secs": 86401}"#,
        ] {
            assert!(deadline_secs(bad, 30).expect_err("refused").contains("deadline_secs"));
        }
        assert!(deadline_secs(b"drain", 30).expect_err("refused").contains("not JSON"));
    }
}
