//! Session descriptions: the server's offers when tracks come and go, the participant's answers, and the
//! participant's own offers (a new track, or an ICE restart after a network change).

use super::{PeerId, Sfu, SubState, Subscription, Target};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::RtcError;

use super::roster::{Signal, Track};

impl Sfu {
    /// The participant's answer to the last [`Signal::Offer`].
    pub fn handle_answer(&mut self, id: PeerId, answer: SdpAnswer, now: Instant) -> Result<(), RtcError> {
        let Some(peer) = self.peers.get_mut(&id) else {
            return Ok(());
        };
        let Some(pending) = peer.pending.take() else {
            return Ok(());
        };
        let accepted = catch_unwind(AssertUnwindSafe(|| peer.rtc.sdp_api().accept_answer(pending, answer)));
        match accepted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // The offer is void; what it carried is offered again.
                revert_offered(&mut peer.subscriptions);
                self.to_negotiate.push(id);
                self.after_call(now);
                return Err(e);
            }
            Err(_) => {
                self.panicked(id);
                self.after_call(now);
                return Ok(());
            }
        }
        peer.subscriptions.retain(|s| !matches!(s.state, SubState::Stopping(_)));
        for s in &mut peer.subscriptions {
            if let SubState::Negotiating(mid) = s.state {
                s.state = SubState::Open(mid);
                let targets = self.fanout.entry((s.source, s.source_mid)).or_default();
                targets.push(Target::new(id, mid, s));
                peer.paced |= s.kind == MediaKind::Video;
            }
        }
        self.allocate(id, now);
        // More may have waited while this offer was out.
        self.to_negotiate.push(id);
        self.drain(id, now);
        self.after_call(now);
        Ok(())
    }

    /// The participant renegotiates: it added or removed a track, or restarts ICE after a network change.
    /// A server offer still out is dropped (the participant ignores it) and made again after this.
    pub fn handle_offer(&mut self, id: PeerId, offer: SdpOffer, now: Instant) -> Result<SdpAnswer, RtcError> {
        let Some(peer) = self.peers.get_mut(&id) else {
            return Err(RtcError::RemoteSdp("no such participant".into()));
        };
        if peer.pending.take().is_some() {
            revert_offered(&mut peer.subscriptions);
        }
        let answer = match catch_unwind(AssertUnwindSafe(|| peer.rtc.sdp_api().accept_offer(offer))) {
            Ok(r) => r,
            Err(_) => {
                self.panicked(id);
                self.after_call(now);
                return Err(RtcError::RemoteSdp("internal error".into()));
            }
        };
        if answer.is_ok() {
            let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
            if ufrag != peer.ufrag {
                // An ICE restart: the participant's next checks name the new ufrag.
                let old = std::mem::replace(&mut peer.ufrag, ufrag.clone());
                self.by_ufrag.remove(&old);
                self.by_ufrag.insert(ufrag, id);
            }
        }
        self.to_negotiate.push(id);
        self.drain(id, now);
        self.after_call(now);
        answer
    }

    /// The participant's signaling reconnected (resume): an offer it may never have received is dropped and
    /// made again.
    pub fn reoffer(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        if peer.pending.take().is_some() {
            revert_offered(&mut peer.subscriptions);
            self.to_negotiate.push(id);
            self.after_call(now);
        }
    }

    /// Offers a participant the tracks waiting for it.
    pub(super) fn renegotiate(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        if !peer.server_offers {
            self.fill_slots(id);
            self.allocate(id, now);
            return;
        }
        let waiting = |s: &Subscription| matches!(s.state, SubState::ToOpen | SubState::ToStop(_));
        if peer.pending.is_some() || !peer.subscriptions.iter().any(waiting) {
            return;
        }
        let mut api = peer.rtc.sdp_api();
        for s in &mut peer.subscriptions {
            match s.state {
                SubState::ToOpen => {
                    let stream = Some(s.source.to_string());
                    let track = Some(Track::id_of(s.source, s.source_mid));
                    let mid = api.add_media(s.kind, Direction::SendOnly, stream, track, None);
                    s.state = SubState::Negotiating(mid);
                }
                SubState::ToStop(mid) => {
                    api.stop_media(mid);
                    s.state = SubState::Stopping(mid);
                }
                _ => {}
            }
        }
        if let Some((offer, pending)) = api.apply() {
            peer.pending = Some(pending);
            self.signals.push_back((id, Signal::Offer(offer)));
        }
        self.drain(id, now);
    }
}

impl Sfu {
    /// Without server offers: stopped subscriptions give their m-line back, and waiting ones take free m-lines
    /// of their kind. Nothing is negotiated; the m-lines were agreed in the participant's own offer.
    fn fill_slots(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        for s in &peer.subscriptions {
            if let SubState::ToStop(mid) | SubState::Stopping(mid) = s.state {
                peer.free_slots.push((mid, s.kind));
            }
        }
        peer.subscriptions
            .retain(|s| !matches!(s.state, SubState::ToStop(_) | SubState::Stopping(_)));
        for s in peer.subscriptions.iter_mut().filter(|s| s.state == SubState::ToOpen) {
            let Some(at) = peer.free_slots.iter().position(|(_, k)| *k == s.kind) else {
                continue;
            };
            let (mid, _) = peer.free_slots.remove(at);
            s.state = SubState::Open(mid);
            self.fanout
                .entry((s.source, s.source_mid))
                .or_default()
                .push(Target::new(id, mid, s));
            peer.paced |= s.kind == MediaKind::Video;
        }
    }
}

/// An offer was voided (refused, or overtaken by the participant's own): what it carried is to be offered
/// again.
fn revert_offered(subscriptions: &mut [Subscription]) {
    for s in subscriptions {
        s.state = match s.state {
            SubState::Negotiating(_) => SubState::ToOpen,
            SubState::Stopping(mid) => SubState::ToStop(mid),
            other => other,
        };
    }
}
