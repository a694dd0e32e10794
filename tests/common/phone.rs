//! A call-control client for the end-to-end tests: one device's `/ws` socket, with requests matched to their
//! replies and events kept until a test asks for them.

use serde_json::{json, Value};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// How long a test waits for any one message.
pub const WAIT: Duration = Duration::from_secs(10);

/// One device.
pub struct Phone {
    ws: Ws,
    /// Events received and not yet taken.
    pub inbox: Vec<Value>,
    /// The `welcome` message.
    pub welcome: Value,
    /// The highest event sequence number seen.
    pub last_seq: u64,
    next_id: u64,
}

impl Phone {
    /// Opens `/ws` with `token` (and `query`, e.g. `&session=..&last_seq=..`); panics if refused.
    pub fn connect(http: SocketAddr, token: &str, query: &str) -> Phone {
        Self::try_connect(http, token, query).unwrap_or_else(|e| panic!("/ws refused: {e:?}"))
    }

    /// Opens `/ws`, or the refusal's status and body.
    pub fn try_connect(http: SocketAddr, token: &str, query: &str) -> Result<Phone, (u16, String)> {
        let url = format!("ws://{http}/ws?access_token={token}{query}");
        let ws = match tungstenite::connect(url) {
            Ok((ws, _)) => ws,
            Err(tungstenite::Error::Http(r)) => {
                let body = r.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                return Err((r.status().as_u16(), body.unwrap_or_default()));
            }
            Err(e) => return Err((0, e.to_string())),
        };
        let mut p = Phone {
            ws,
            inbox: Vec::new(),
            welcome: Value::Null,
            last_seq: 0,
            next_id: 0,
        };
        p.welcome = p.wait("welcome");
        Ok(p)
    }

    /// The session id, for `resume`.
    pub fn session(&self) -> String {
        self.welcome["session"].as_str().expect("a session").to_string()
    }

    /// Reads one message within `limit`; `None` on timeout or a closed socket.
    fn read(&mut self, limit: Duration) -> Option<Value> {
        if let MaybeTlsStream::Plain(s) = self.ws.get_mut() {
            s.set_read_timeout(Some(limit.max(Duration::from_millis(1)))).ok()?;
        }
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                    if let Some(n) = v["seq"].as_u64() {
                        self.last_seq = self.last_seq.max(n);
                    }
                    return Some(v);
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Sends `msg` with a fresh id, and returns its reply (or error).
    pub fn request(&mut self, mut msg: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        msg["id"] = json!(id);
        self.send(&msg);
        let end = Instant::now() + WAIT;
        while let Some(v) = self.read(end.saturating_duration_since(Instant::now())) {
            if v["id"] == id && (v["type"] == "reply" || v["type"] == "error") {
                return v;
            }
            self.inbox.push(v);
        }
        panic!("no reply to {msg}; got {:?}", self.inbox);
    }

    /// Sends a raw text frame.
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).expect("send");
    }

    fn send(&mut self, msg: &Value) {
        self.send_text(&msg.to_string());
    }

    /// The first event of type `t`, waiting up to [`WAIT`]; the events before it stay in the inbox.
    pub fn wait(&mut self, t: &str) -> Value {
        self.try_wait(t, WAIT)
            .unwrap_or_else(|| panic!("no {t} within {WAIT:?}; got {:?}", self.inbox))
    }

    /// The first event of type `t` within `limit`.
    pub fn try_wait(&mut self, t: &str, limit: Duration) -> Option<Value> {
        if let Some(i) = self.inbox.iter().position(|v| v["type"] == t) {
            return Some(self.inbox.remove(i));
        }
        let end = Instant::now() + limit;
        while let Some(v) = self.read(end.saturating_duration_since(Instant::now())) {
            if v["type"] == t {
                return Some(v);
            }
            self.inbox.push(v);
        }
        None
    }

    /// Closes the socket abruptly, as a lost network does.
    pub fn drop_network(self) {
        drop(self);
    }
}
