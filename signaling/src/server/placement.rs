//! Where an answered call's room lives. [`LocalSfu`] is the SFU in this process, as `hualu up` runs it;
//! [`super::cluster::ClusterPlacement`] places rooms on the cluster's SFU nodes through Redis.

use crate::core::{CallId, Device};
use hualu_common::ice_servers::TurnServers;
use hualu_common::token::{self, Claims, Grants};
use serde_json::{json, Value};

/// Why a room could not be placed or joined.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// No node can take the room.
    #[error("no SFU node can take the call: {0}")]
    NoNode(String),
    /// The room token could not be minted.
    #[error("room token: {0}")]
    Token(String),
}

/// Places answered calls on SFU nodes and tells devices how to join them.
pub trait Placement: Send + Sync + 'static {
    /// Creates the call's room (once, when the call is answered).
    fn place(&self, call: &CallId) -> Result<(), PlaceError>;
    /// What `device` needs to join the call's room: the `join` message's fields (room, sfu_url, token,
    /// ice_servers).
    fn join(&self, call: &CallId, device: &Device) -> Result<Value, PlaceError>;
    /// The call ended: its room may go.
    fn close(&self, call: &CallId);
}

/// Ends a room on the SFU: everyone in it leaves.
pub type CloseRoom = Box<dyn Fn(&str) + Send + Sync>;

/// The SFU in this process. Its rooms come into being when the first participant joins, so placing is
/// bookkeeping only; joining mints a room token with the node's API key; closing ends the room, so nobody
/// stays in a call that ended.
pub struct LocalSfu {
    /// The room URL (`/rtc`).
    pub sfu_url: String,
    /// API key and secret the room tokens are signed with.
    pub key: (String, String),
    /// Room token lifetime.
    pub token_ttl_secs: u64,
    /// TURN servers, when the relay has a REST secret.
    pub turn: Option<TurnServers>,
    /// Ends a room on the SFU; `None` when the SFU runs elsewhere (`hualu signaling`), whose participants
    /// then leave by themselves.
    pub close_room: Option<CloseRoom>,
}

impl LocalSfu {
    /// The `join` fields for `device` in `call`'s room at `sfu_url`, with a room token signed by this node's key.
    /// `links`: in a room that spans SFU nodes, the link addresses (`ip:port`) of the room's other nodes, which
    /// the node at `sfu_url` relays the room's tracks with (the token's `grants.links`); empty otherwise.
    pub fn join_at(
        &self,
        sfu_url: &str,
        call: &CallId,
        device: &Device,
        links: Vec<String>,
    ) -> Result<Value, PlaceError> {
        let now = hualu_common::clock::unix_now();
        let mut claims = Claims::new(&self.key.0, &device.user, now, self.token_ttl_secs);
        claims.device = Some(device.device.clone());
        claims.grants = Grants {
            room: Some(call.0.clone()),
            publish: true,
            subscribe: true,
            admin: false,
            links,
        };
        let token = token::mint(&self.key.1, &claims).map_err(|e| PlaceError::Token(e.to_string()))?;
        let ice_servers = self.turn.as_ref().map_or(json!([]), |t| t.ice_servers(&device.user));
        Ok(json!({"room": call, "sfu_url": sfu_url, "token": token, "ice_servers": ice_servers}))
    }
}

impl Placement for LocalSfu {
    fn place(&self, call: &CallId) -> Result<(), PlaceError> {
        tracing::debug!(%call, "room placed on the local SFU");
        Ok(())
    }

    fn join(&self, call: &CallId, device: &Device) -> Result<Value, PlaceError> {
        self.join_at(&self.sfu_url, call, device, Vec::new())
    }

    fn close(&self, call: &CallId) {
        if let Some(close) = &self.close_room {
            close(&call.0);
        }
        tracing::debug!(%call, "room closed");
    }
}
