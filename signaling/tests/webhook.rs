//! Webhook delivery against a real HTTP receiver on loopback: retries with the same id and body, signatures,
//! and giving up.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hualu_signaling::webhook::{verify, WebhookConfig, Webhooks, ID_HEADER, SIGNATURE_HEADER};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "a-webhook-test-secret";

/// What the receiver saw: (id header, signature header, body) per attempt.
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A receiver that fails the first `fail` attempts with 500.
async fn receiver(fail: usize) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hooks",
            post(
                |State((seen, fail)): State<(Seen, usize)>, headers: HeaderMap, body: Bytes| async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let mut s = seen.lock().expect("lock");
                    s.push((h(ID_HEADER), h(SIGNATURE_HEADER), body.to_vec()));
                    if s.len() <= fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state((seen.clone(), fail));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn config(url: String, attempts: u32) -> WebhookConfig {
    let mut c = WebhookConfig::new(&url, SECRET);
    c.max_attempts = attempts;
    c.initial_backoff = Duration::from_millis(5);
    c.max_backoff = Duration::from_millis(20);
    c.timeout = Duration::from_secs(2);
    c
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_same_signed_event_three_times() {
    let (addr, seen) = receiver(2).await;
    let w = Webhooks::start(config(format!("http://{addr}/hooks"), 5)).expect("start");
    let id = w.send("call.invite", json!({"call": "c1", "to": ["bob"]}));
    assert!(w.flush(Duration::from_secs(10)).await, "delivered in time");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3, "two failures, then success");
    for (hid, sig, body) in &seen {
        assert_eq!(hid, &id);
        assert_eq!(body, &seen[0].2, "the same bytes every time");
        assert!(verify(SECRET.as_bytes(), body, sig), "signature {sig}");
    }
    let v: serde_json::Value = serde_json::from_slice(&seen[0].2).expect("JSON");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["type"], "call.invite");
    assert_eq!(v["data"]["call"], "c1");
    assert!(v["created_at"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
    let st = w.stats();
    assert_eq!((st.delivered, st.retried, st.failed, st.pending), (1, 2, 0, 0));
}

#[tokio::test]
async fn a_receiver_that_always_fails_is_given_up_after_the_last_attempt() {
    let (addr, seen) = receiver(usize::MAX).await;
    let w = Webhooks::start(config(format!("http://{addr}/hooks"), 3)).expect("start");
    w.send("call.ended", json!({}));
    assert!(w.flush(Duration::from_secs(10)).await);
    assert_eq!(seen.lock().expect("lock").len(), 3);
    let st = w.stats();
    assert_eq!((st.delivered, st.failed), (0, 1));
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_then_given_up() {
    // A port nothing listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let w = Webhooks::start(config(format!("http://127.0.0.1:{port}/hooks"), 3)).expect("start");
    w.send("call.missed", json!({}));
    assert!(w.flush(Duration::from_secs(10)).await);
    let st = w.stats();
    assert_eq!((st.delivered, st.retried, st.failed), (0, 2, 1));
}

#[tokio::test]
async fn a_bad_url_is_refused() {
    assert!(Webhooks::start(WebhookConfig::new("ftp://x", SECRET)).is_err());
}
