//! A device's side of its room: joining over `/rtc` with a prepared peer, then handing the peer to a media
//! shard and keeping the room's socket, and at the end leaving and taking back the scored legs.

use super::media::{Media, MediaError};
use super::shard::{MediaHandle, MediaOut};
use super::socket::Socket;
use super::Ctx;
use crate::record::Leg;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::timeout;

/// How long a finishing participant's shard has to hand back its legs.
const FINISH: Duration = Duration::from_secs(10);
/// How long leaving the room's socket may take.
const CLOSE: Duration = Duration::from_secs(1);

/// A participant in its room.
pub struct InRoom {
    /// Its media, on a shard.
    pub media: MediaHandle,
    /// What the shard tells.
    pub out: UnboundedReceiver<MediaOut>,
    /// The room's `/rtc` socket, until the SFU closes it.
    pub room: Option<Socket>,
}

/// Joins the room a `join` event names: opens `/rtc` and the network (TURN first, when relayed), offers one
/// send-receive audio track (and a video one, with `video`), takes the answer, and hands the peer to a shard.
pub async fn join(
    ctx: &Arc<Ctx>,
    user: &str,
    profile: &str,
    join: &Value,
    seed: u64,
    video: bool,
) -> Result<InRoom, MediaError> {
    let url = join["sfu_url"].as_str().unwrap_or_default();
    let token = join["token"].as_str().unwrap_or_default();
    let source = ctx.source_ip(seed);
    let mut room = Socket::connect(&format!("{url}?access_token={token}"), source).await?;
    let net = super::turn::open(ctx, profile, join, source, seed).await?;
    let (mut media, offer) = Media::prepare(ctx.clone(), user, net, seed, Instant::now(), video)?;
    room.send(&json!({"type": "join", "id": 1, "sdp": offer})).await?;
    let joined = loop {
        let v = room.recv().await?;
        match v["type"].as_str() {
            Some("joined") => break v,
            Some("error") => return Err(MediaError::Refused(v["message"].as_str().unwrap_or("").into())),
            _ => {}
        }
    };
    media.accept_joined(&joined, Instant::now())?;
    let (tx, out) = unbounded_channel();
    let media = ctx.shards.add(media, tx);
    Ok(InRoom {
        media,
        out,
        room: Some(room),
    })
}

impl InRoom {
    /// Leaves the room, and takes back the legs the participant scored; `seen` hears the last connection and
    /// first-audio times the shard tells on the way.
    pub async fn finish(mut self, mut seen: impl FnMut(&MediaOut)) -> Vec<Leg> {
        if let Some(mut room) = self.room.take() {
            // Bounded: the room's node may be gone (a move away from a dead node).
            let _ = timeout(CLOSE, async {
                let _ = room.send(&json!({"type": "leave"})).await;
                room.close().await;
            })
            .await;
        }
        self.media.finish();
        let wait = async {
            while let Some(m) = self.out.recv().await {
                match m {
                    MediaOut::Legs(legs) => return legs,
                    other => seen(&other),
                }
            }
            Vec::new()
        };
        timeout(FINISH, wait).await.unwrap_or_default()
    }
}
