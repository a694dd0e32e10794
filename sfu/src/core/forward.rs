//! Forwarding: a published packet out to each open subscription, and keyframe requests back to publishers.

use super::{PeerId, Sfu, SubState, KEYFRAME_REQUEST_INTERVAL};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::Input;

impl Sfu {
    /// Sends `packet` of `source`'s track `mid` to each subscriber with that track open.
    pub(super) fn forward(&mut self, source: PeerId, mid: Mid, packet: &RtpPacket, now: Instant) {
        let Some(src) = self.peers.get(&source) else { return };
        let pt_in = packet.header.payload_type;
        let Some(params) = src.rtc.codec_config().find(|c| c.pt() == pt_in).copied() else {
            return;
        };
        // Nothing here allocates: the track's subscriber list is lent out of the index and put back.
        let Some(slot) = self.fanout.get_mut(&(source, mid)) else {
            return;
        };
        let mut targets = std::mem::take(slot);
        for target in &mut targets {
            let (sub_id, out_mid, kind) = (target.subscriber, target.mid, target.kind);
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
            let write = RtpWrite::new(
                pt,
                packet.seq_no,
                packet.header.timestamp,
                packet.timestamp,
                packet.payload.clone(),
            )
            .marker(packet.header.marker)
            .ext_vals(packet.header.ext_vals.clone())
            .nackable(kind == MediaKind::Video);
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

    /// A subscriber asked for a keyframe on its m-line `mid`: ask the track's publisher, unless it was asked
    /// less than [`KEYFRAME_REQUEST_INTERVAL`] ago.
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
        if let Some(last) = self.last_keyframe_request.get(&source) {
            if now.saturating_duration_since(*last) < KEYFRAME_REQUEST_INTERVAL {
                self.quality.feedback.keyframes_throttled += 1;
                return;
            }
        }
        let Some(publisher) = self.peers.get_mut(&source.0) else {
            return;
        };
        let asked = catch_unwind(AssertUnwindSafe(|| {
            let mut api = publisher.rtc.direct_api();
            api.stream_rx_by_mid(source.1, None)
                .map(|rx| rx.request_keyframe(kind))
                .is_some()
        }));
        match asked {
            Ok(true) => {
                self.quality.feedback.keyframes_relayed += 1;
                self.last_keyframe_request.insert(source, now);
                self.drain(source.0, now);
            }
            Ok(false) => {}
            Err(_) => self.panicked(source.0),
        }
    }
}
