//! Forwarding: a published packet out to each open subscription, and keyframe requests back to publishers.

use super::layers::{Rewrite, VideoPacket};
use super::{PeerId, Sfu, SubState, KEYFRAME_REQUEST_INTERVAL};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::Input;

/// A received packet waiting to be forwarded: from a publisher here (str0m's `RtpPacket`, which cannot be
/// built outside str0m) or from one on another node, over a link.
#[derive(Debug, Clone)]
pub(super) struct Relayed {
    /// Extended sequence number.
    pub(super) seq: SeqNo,
    /// RTP timestamp.
    pub(super) time: u32,
    pub(super) marker: bool,
    /// The publisher's payload type.
    pub(super) pt: Pt,
    pub(super) payload: Arc<[u8]>,
    pub(super) ext_vals: ExtensionValues,
    /// When it reached this node.
    pub(super) arrived: Instant,
}

impl Relayed {
    pub(super) fn from_rtp(p: RtpPacket) -> Self {
        Self {
            seq: p.seq_no,
            time: p.header.timestamp,
            marker: p.header.marker,
            pt: p.header.payload_type,
            payload: p.payload,
            ext_vals: p.header.ext_vals,
            arrived: p.timestamp,
        }
    }
}

impl Sfu {
    /// Sends `packet`, which came on `layer` of `source`'s track `mid`, to each subscriber with that track
    /// open: audio as it came, video renumbered for the subscriber's layer (see [`super::layers`]).
    pub(super) fn forward(&mut self, source: PeerId, mid: Mid, layer: u8, packet: &Relayed, now: Instant) {
        let pt_in = packet.pt;
        let Some(params) = self.codec_of(source, pt_in) else {
            return;
        };
        let spec = params.spec();
        let video = (spec.codec.is_video()).then(|| {
            let clock = spec.clock_rate.get();
            let mut v = VideoPacket::new(spec.codec, layer, packet.seq, packet.time, &packet.payload, clock, now);
            v.marker = packet.marker;
            v
        });
        // Nothing here allocates: the track's subscriber list is lent out of the index and put back.
        let Some(slot) = self.fanout.get_mut(&(source, mid)) else {
            return;
        };
        let mut targets = std::mem::take(slot);
        for target in &mut targets {
            let (sub_id, out_mid, kind) = (target.subscriber, target.mid, target.kind);
            // Video pauses through its switcher, at a frame's end.
            if target.paused && target.switch.is_none() {
                continue;
            }
            let rewrite = match (&mut target.switch, &video) {
                (Some(switch), Some(v)) => match switch.admit(v) {
                    Some(r) => Some(r),
                    None => continue,
                },
                _ => None,
            };
            let Some(peer) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            let pt = match target.pt_cache {
                Some((from, to)) if from == pt_in => to,
                _ => {
                    let Some(pt) = peer.rtc.codec_config().match_params(params).map(|p| p.pt()) else {
                        continue;
                    };
                    target.pt_cache = Some((pt_in, pt));
                    pt
                }
            };
            let write = rtp_write(pt, packet, rewrite).nackable(kind == MediaKind::Video);
            self.layer_switches += u64::from(rewrite.is_some_and(|r| r.switched));
            // The packet is queued; str0m's pacer releases it at the next timer call, made here at once.
            let written = catch_unwind(AssertUnwindSafe(|| {
                let mut api = peer.rtc.direct_api();
                let tx = api.stream_tx_by_mid(out_mid, None)?;
                tx.write_rtp(write);
                peer.rtc.handle_input(Input::Timeout(now)).ok()
            }));
            self.rtc_timeouts += 1;
            if written.is_err() {
                self.panicked(sub_id);
                continue;
            }
            self.drain(sub_id, now);
        }
        if let Some(slot) = self.fanout.get_mut(&(source, mid)) {
            *slot = targets;
        }
    }

    /// The codec of publisher `source`'s payload type `pt`, whether it is here or on another node.
    fn codec_of(&self, source: PeerId, pt: Pt) -> Option<PayloadParams> {
        match self.peers.get(&source) {
            Some(src) => src.rtc.codec_config().find(|c| c.pt() == pt).copied(),
            None => self.links.codec(source, pt),
        }
    }

    /// A subscriber asked for a keyframe on its m-line `mid`: ask the publisher, for the layer the subscriber
    /// receives (or waits for).
    pub(super) fn relay_keyframe_request(
        &mut self,
        subscriber: PeerId,
        mid: Mid,
        kind: KeyframeRequestKind,
        now: Instant,
    ) {
        let Some(source) = self.peers.get(&subscriber).and_then(|p| {
            p.subscriptions.iter().find_map(|s| match s.state {
                SubState::Open(m) if m == mid => Some((s.source, s.source_mid)),
                _ => None,
            })
        }) else {
            return;
        };
        let switch = self
            .fanout
            .get(&source)
            .and_then(|targets| targets.iter().find(|t| t.subscriber == subscriber && t.mid == mid))
            .and_then(|t| t.switch);
        let layer = match switch {
            Some(s) => match s.wanted.or(s.current()) {
                Some(layer) => layer,
                None => return,
            },
            None => 0,
        };
        self.request_keyframe(source.0, source.1, layer, kind, now);
    }

    /// Asks publisher `source` for a keyframe on `layer` of its track `mid`, unless that layer was asked
    /// less than [`KEYFRAME_REQUEST_INTERVAL`] ago: a subscriber that lost a keyframe asks again and again,
    /// and every keyframe costs the publisher's uplink.
    pub(super) fn request_keyframe(
        &mut self,
        source: PeerId,
        mid: Mid,
        layer: u8,
        kind: KeyframeRequestKind,
        now: Instant,
    ) {
        if let Some(last) = self.last_keyframe_request.get(&(source, mid, layer)) {
            if now.saturating_duration_since(*last) < KEYFRAME_REQUEST_INTERVAL {
                self.quality.feedback.keyframes_throttled += 1;
                return;
            }
        }
        if self.links.is_remote(source) {
            // Its node asks the publisher, and throttles as this one does.
            if self.request_remote_keyframe(source, mid, layer, kind) {
                self.quality.feedback.keyframes_relayed += 1;
                self.last_keyframe_request.insert((source, mid, layer), now);
            }
            return;
        }
        let Some(publisher) = self.peers.get_mut(&source) else {
            return;
        };
        let Some((rid, ssrc)) = publisher
            .published
            .iter()
            .find(|p| p.mid == mid)
            .map(|p| p.layers.stream(layer))
        else {
            return;
        };
        let asked = catch_unwind(AssertUnwindSafe(|| {
            let mut api = publisher.rtc.direct_api();
            let rx = match ssrc {
                Some(ssrc) => api.stream_rx(&ssrc),
                None => api.stream_rx_by_mid(mid, rid),
            };
            rx.map(|rx| rx.request_keyframe(kind)).is_some()
        }));
        match asked {
            Ok(true) => {
                self.quality.feedback.keyframes_relayed += 1;
                self.last_keyframe_request.insert((source, mid, layer), now);
                self.drain(source, now);
            }
            Ok(false) => {}
            Err(_) => self.panicked(source),
        }
    }
}

/// The packet as written to one subscriber: as it came, or renumbered.
fn rtp_write(pt: Pt, packet: &Relayed, rewrite: Option<Rewrite>) -> RtpWrite {
    let (seq, time) = match rewrite {
        Some(r) => (r.seq, r.time),
        None => (packet.seq, packet.time),
    };
    let write = RtpWrite::new(pt, seq, time, packet.arrived, packet.payload.clone())
        .marker(packet.marker)
        .ext_vals(packet.ext_vals.clone());
    match rewrite.and_then(|r| r.vp8) {
        Some(patch) => write.vp8_patch(patch),
        None => write,
    }
}
