//! Call events posted to the app's backend, so it can wake offline devices with VoIP pushes and keep call
//! records (docs/webhooks.md).
//!
//! Each event becomes one JSON envelope `{"id", "type", "created_at", "data"}`, serialized once and signed with
//! HMAC-SHA256 of those exact bytes (`X-Hualu-Signature: sha256=<hex>`). A dispatcher task takes envelopes
//! from a bounded queue and runs a few deliveries at once; each delivery retries on connection errors,
//! timeouts and non-2xx answers with exponential backoff and jitter, with the same id and body every time,
//! until a 2xx or the last attempt. So delivery is at least once, and the app de-duplicates by id.
//!
//! Senders never wait: [`Webhooks::send`] queues and returns, and a full queue drops the event with an error
//! log and a metric rather than stall call control.

use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Hualu-Signature";
/// The delivery id header (also in the body), for de-duplication.
pub const ID_HEADER: &str = "X-Hualu-Webhook-Id";

/// Where and how webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The app's endpoint (`http://` or `https://`).
    pub url: String,
    /// The shared secret that signs each body.
    pub secret: String,
    /// Attempts per event, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles after each failure.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Events waiting at most.
    pub queue: usize,
    /// Deliveries in flight at most.
    pub concurrency: usize,
}

impl WebhookConfig {
    /// Defaults for `url` and `secret`: 8 attempts, backoff from 500 ms to 60 s, 5 s per attempt, 10,000
    /// queued, 4 in flight.
    pub fn new(url: &str, secret: &str) -> Self {
        Self {
            url: url.to_string(),
            secret: secret.to_string(),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            queue: 10_000,
            concurrency: 4,
        }
    }

    /// The wait after failed attempt `attempt` (1-based): doubling from `initial_backoff`, capped at
    /// `max_backoff`, without jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Why webhooks could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not http or https.
    #[error("webhook URL {0:?} must start with http:// or https://")]
    BadUrl(String),
    /// The settings are unusable.
    #[error("webhooks: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("webhook HTTP client: {0}")]
    Client(String),
}

/// Delivery counters.
#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Events a receiver accepted.
    pub delivered: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
    /// Events given up after the last attempt.
    pub failed: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events queued or in flight.
    pub pending: u64,
}

struct Envelope {
    id: String,
    body: Vec<u8>,
}

/// The sender: cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    tx: mpsc::Sender<Envelope>,
    counters: Arc<Counters>,
}

impl Webhooks {
    /// Checks `config` and starts the dispatcher on the current tokio runtime.
    pub fn start(config: WebhookConfig) -> Result<Self, WebhookError> {
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(WebhookError::BadUrl(config.url));
        }
        if config.max_attempts == 0 || config.queue == 0 || config.concurrency == 0 {
            return Err(WebhookError::Config(
                "attempts, queue and concurrency must be at least 1".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let (tx, rx) = mpsc::channel(config.queue);
        let counters = Arc::new(Counters::default());
        tokio::spawn(dispatch(Arc::new(config), client, rx, counters.clone()));
        Ok(Self { tx, counters })
    }

    /// Queues event `kind` with `data`; returns its delivery id at once.
    pub fn send(&self, kind: &str, data: Value) -> String {
        let id = format!("wh_{}", uuid_like());
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let body = json!({"id": id, "type": kind, "created_at": created_at, "data": data}).to_string();
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope {
            id: id.clone(),
            body: body.into_bytes(),
        };
        if self.tx.try_send(envelope).is_err() {
            self.counters.pending.fetch_sub(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("hualu_webhook_deliveries_total", "result" => "dropped").increment(1);
            tracing::error!(%id, kind, "webhook queue full; event dropped");
        }
        id
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            delivered: c.delivered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
        }
    }

    /// Waits until nothing is queued or in flight, or `deadline` passes; says whether all was delivered or
    /// given up.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let end = tokio::time::Instant::now() + deadline;
        while self.counters.pending.load(Ordering::Relaxed) > 0 {
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// 128 random bits in hex: unique enough for de-duplication.
fn uuid_like() -> String {
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}

async fn dispatch(
    config: Arc<WebhookConfig>,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Envelope>,
    counters: Arc<Counters>,
) {
    let slots = Arc::new(Semaphore::new(config.concurrency));
    while let Some(e) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (config, client, counters) = (config.clone(), client.clone(), counters.clone());
        tokio::spawn(async move {
            deliver(&config, &client, &e, &counters).await;
            counters.pending.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Attempts one event until a 2xx or the last attempt.
async fn deliver(config: &WebhookConfig, client: &reqwest::Client, e: &Envelope, counters: &Counters) {
    let signature = sign(config.secret.as_bytes(), &e.body);
    for attempt in 1..=config.max_attempts {
        let sent = client
            .post(&config.url)
            .header("Content-Type", "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .header(ID_HEADER, &e.id)
            .body(e.body.clone())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("hualu_webhook_deliveries_total", "result" => "delivered").increment(1);
                metrics::histogram!("hualu_webhook_attempts").record(f64::from(attempt));
                return;
            }
            Ok(r) => format!("status {}", r.status()),
            Err(err) => err.to_string(),
        };
        if attempt == config.max_attempts {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("hualu_webhook_deliveries_total", "result" => "failed").increment(1);
            tracing::error!(id = %e.id, attempts = attempt, error = %why, "webhook given up");
            return;
        }
        counters.retried.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("hualu_webhook_deliveries_total", "result" => "retried").increment(1);
        let base = config.backoff(attempt);
        let jitter = base.mul_f64(rand::rng().random_range(0.0..0.25));
        tracing::debug!(id = %e.id, attempt, error = %why, wait = ?(base + jitter), "webhook retry");
        tokio::time::sleep(base + jitter).await;
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`, the signature header's value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, body).finalize().into_bytes()))
}

/// Checks a signature header's value against `body`, in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(sig) = header.trim().strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    mac(secret, body).verify_slice(&sig).is_ok()
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("any key length"));
    m.update(body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_test_case_2() {
        let s = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signature_verifies_and_a_tampered_body_does_not() {
        let s = sign(b"secret", b"{\"a\":1}");
        assert!(verify(b"secret", b"{\"a\":1}", &s));
        assert!(!verify(b"secret", b"{\"a\":2}", &s));
        assert!(!verify(b"other", b"{\"a\":1}", &s));
        assert!(!verify(b"secret", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify(b"secret", b"{\"a\":1}", "md5=00"));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut c = WebhookConfig::new("http://x", "s");
        c.initial_backoff = Duration::from_millis(500);
        c.max_backoff = Duration::from_secs(3);
        let waits: Vec<u64> = (1..=5).map(|a| c.backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000]);
        assert_eq!(c.backoff(200), Duration::from_secs(3), "no overflow");
    }
}
