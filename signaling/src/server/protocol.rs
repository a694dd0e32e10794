//! The messages of `GET /ws` (docs/protocol.md): what clients send, and how answers and events are written.

use crate::core::{CallError, CallId, Command, Media, Reply};
use serde::Deserialize;
use serde_json::{json, Value};

/// The protocol version this server speaks.
pub const VERSION: u32 = 1;

/// A client's message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// Place a call, or invite more people into one.
    Invite {
        id: Value,
        key: String,
        to: Vec<String>,
        #[serde(default = "audio")]
        media: Media,
        #[serde(default)]
        call: Option<String>,
    },
    /// Answer on this device.
    Accept { id: Value, key: String, call: String },
    /// Decline everywhere.
    Decline { id: Value, key: String, call: String },
    /// Stop ringing here.
    Ignore { id: Value, key: String, call: String },
    /// Give up before an answer.
    Cancel { id: Value, key: String, call: String },
    /// Leave the call.
    Hangup { id: Value, key: String, call: String },
    /// Call waiting on or off.
    Settings { id: Value, call_waiting: bool },
    /// Watch these users' presence.
    Watch { id: Value, users: Vec<String> },
    /// Keep-alive.
    Ping { id: Value },
}

fn audio() -> Media {
    Media::Audio
}

/// Longest idempotency key.
const MAX_KEY: usize = 128;

impl ClientMsg {
    /// The request id.
    pub fn id(&self) -> &Value {
        match self {
            ClientMsg::Invite { id, .. }
            | ClientMsg::Accept { id, .. }
            | ClientMsg::Decline { id, .. }
            | ClientMsg::Ignore { id, .. }
            | ClientMsg::Cancel { id, .. }
            | ClientMsg::Hangup { id, .. }
            | ClientMsg::Settings { id, .. }
            | ClientMsg::Watch { id, .. }
            | ClientMsg::Ping { id } => id,
        }
    }

    /// The switchboard command and its idempotency key, or `None` for a ping.
    pub fn into_command(self) -> Result<Option<(Option<String>, Command)>, CallError> {
        let keyed = |key: String, c: Command| {
            if key.is_empty() || key.len() > MAX_KEY {
                return Err(CallError::BadRequest(format!("key must be 1 to {MAX_KEY} characters")));
            }
            Ok(Some((Some(key), c)))
        };
        match self {
            ClientMsg::Invite {
                key, to, media, call, ..
            } => keyed(
                key,
                Command::Invite {
                    to,
                    media,
                    call: call.map(CallId),
                },
            ),
            ClientMsg::Accept { key, call, .. } => keyed(key, Command::Accept(CallId(call))),
            ClientMsg::Decline { key, call, .. } => keyed(key, Command::Decline(CallId(call))),
            ClientMsg::Ignore { key, call, .. } => keyed(key, Command::Ignore(CallId(call))),
            ClientMsg::Cancel { key, call, .. } => keyed(key, Command::Cancel(CallId(call))),
            ClientMsg::Hangup { key, call, .. } => keyed(key, Command::Hangup(CallId(call))),
            ClientMsg::Settings { call_waiting, .. } => Ok(Some((None, Command::Settings { call_waiting }))),
            ClientMsg::Watch { users, .. } => Ok(Some((None, Command::Watch(users)))),
            ClientMsg::Ping { .. } => Ok(None),
        }
    }
}

/// The answer to request `id`.
pub fn reply(id: &Value, r: &Result<Reply, CallError>) -> Value {
    match r {
        Ok(Reply::Call { call, merged }) => json!({"type": "reply", "id": id, "call": call, "merged": merged}),
        Ok(Reply::Done) => json!({"type": "reply", "id": id}),
        Ok(Reply::Presence(list)) => {
            let presence: serde_json::Map<String, Value> = list.iter().map(|(u, d)| (u.clone(), json!(d))).collect();
            json!({"type": "reply", "id": id, "presence": presence})
        }
        Err(e) => error(id, e.code(), &e.to_string()),
    }
}

/// A coded error, for request `id` (null when the message had none).
pub fn error(id: &Value, code: &str, message: &str) -> Value {
    json!({"type": "error", "id": id, "code": code, "message": message})
}

/// The id of a message that did not parse, if it had one.
pub fn id_of(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null)
}
