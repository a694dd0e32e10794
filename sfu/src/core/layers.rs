//! Video layers: what a publisher sends of each video track (one stream, or simulcast layers named by rid),
//! how fast each layer runs, which layer each subscriber should get, and the rewriting that makes a switch
//! between layers invisible to the subscriber.
//!
//! A subscriber always sees one stream per track. Its sequence numbers, RTP timestamps and VP8 picture ids
//! continue across a switch as if one encoder made them, and a switch happens only at a keyframe of the new
//! layer, so the decoder never references a frame it did not get.

use std::time::{Duration, Instant};
use str0m::format::Codec;
use str0m::media::Rid;
use str0m::rtp::{SeqNo, Ssrc, Vp8Descriptor, Vp8Patch, Vp8PatchError};

/// How often layer rates are measured and layers chosen.
pub const LAYER_INTERVAL: Duration = Duration::from_millis(500);

/// A layer that sent nothing this long is gone (the publisher's encoder dropped it, usually because its own
/// uplink shrank), and its subscribers move to another.
const LAYER_SILENCE: Duration = Duration::from_millis(1200);

/// A subscriber moves up to a layer only when its estimate exceeds the layer's rate by this factor, so that
/// an estimate near a layer's rate does not flip it up and down at every measurement.
const UP_HEADROOM: f64 = 1.2;

/// The video quality a subscriber wants of a track, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quality {
    /// The lowest layer.
    Low,
    /// The middle layer (of three; the lower of two).
    Medium,
    /// The highest layer.
    High,
}

/// A subscriber's wishes for one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preference {
    /// Receive the track at all. A disabled video track keeps its m-line but carries nothing.
    pub enabled: bool,
    /// The best layer wanted; the bandwidth estimate may give less.
    pub max: Quality,
}

impl Default for Preference {
    fn default() -> Self {
        Self {
            enabled: true,
            max: Quality::High,
        }
    }
}

/// One incoming layer's traffic.
#[derive(Debug, Clone, Copy, Default)]
struct Meter {
    /// Bytes since the last measurement.
    bytes: u64,
    /// Bits per second over the last measurements (smoothed); `None` until the first measurement.
    rate: Option<u64>,
    last_packet: Option<Instant>,
}

/// The layers of one published video track, in the order the publisher's SDP lists their rids.
#[derive(Debug, Clone, Default)]
pub(super) struct Layers {
    /// Empty for a track sent as one stream.
    rids: Vec<Rid>,
    /// Each layer's SSRC, once a packet named it. Publishers put the rid in the first packets of a layer
    /// only (RFC 8852), and some list their SSRCs in the SDP without saying which rid each is.
    ssrcs: Vec<Option<Ssrc>>,
    meters: Vec<Meter>,
    measured_at: Option<Instant>,
}

impl Layers {
    /// A track sent as one stream, or as the simulcast layers `rids`.
    pub(super) fn new(rids: Vec<Rid>) -> Self {
        let n = rids.len().max(1);
        Self {
            ssrcs: vec![None; rids.len()],
            rids,
            meters: vec![Meter::default(); n],
            measured_at: None,
        }
    }

    /// How many layers the track has (1 without simulcast).
    pub(super) fn count(&self) -> usize {
        self.meters.len()
    }

    /// Its rids, lowest first; empty without simulcast.
    pub(super) fn rid_names(&self) -> Vec<String> {
        self.rids.iter().map(|r| r.to_string()).collect()
    }

    /// Whether the track is simulcast.
    pub(super) fn simulcast(&self) -> bool {
        !self.rids.is_empty()
    }

    /// The index of the layer a packet of `ssrc`, naming `rid` if it does, belongs to; `None` while the
    /// SSRC is not known to be any layer's.
    pub(super) fn index(&mut self, ssrc: Ssrc, rid: Option<Rid>) -> Option<u8> {
        if self.rids.is_empty() {
            return Some(0);
        }
        match rid {
            Some(rid) => {
                let i = self.rids.iter().position(|r| *r == rid)?;
                self.ssrcs[i] = Some(ssrc);
                Some(i as u8)
            }
            None => self.ssrcs.iter().position(|s| *s == Some(ssrc)).map(|i| i as u8),
        }
    }

    /// The rid and SSRC of layer `layer`, for keyframe requests; `None`s for a single stream.
    pub(super) fn stream(&self, layer: u8) -> (Option<Rid>, Option<Ssrc>) {
        let i = usize::from(layer);
        (self.rids.get(i).copied(), self.ssrcs.get(i).copied().flatten())
    }

    /// A packet of `bytes` arrived on `layer`.
    pub(super) fn record(&mut self, layer: u8, bytes: usize, now: Instant) {
        // Counting starts with the first packet, so the first measurement is a full one.
        self.measured_at.get_or_insert(now);
        if let Some(m) = self.meters.get_mut(usize::from(layer)) {
            m.bytes += bytes as u64;
            m.last_packet = Some(now);
        }
    }

    /// Turns the bytes counted since the last call into rates.
    pub(super) fn measure(&mut self, now: Instant) {
        let Some(since) = self.measured_at.replace(now) else {
            return;
        };
        let secs = now.saturating_duration_since(since).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        for m in &mut self.meters {
            let sample = (std::mem::take(&mut m.bytes) as f64 * 8.0 / secs) as u64;
            m.rate = Some(match m.rate {
                Some(old) => (old + sample) / 2,
                None => sample,
            });
        }
    }

    /// The rate of `layer` in bits per second; 0 while unknown.
    pub(super) fn rate(&self, layer: u8) -> u64 {
        self.meters.get(usize::from(layer)).and_then(|m| m.rate).unwrap_or(0)
    }

    /// The layers that are sending, lowest rate first, at most three.
    fn live(&self, now: Instant) -> Live {
        let mut live = Live {
            order: [0; 3],
            n: 0,
            measured: true,
        };
        for (i, m) in self.meters.iter().enumerate() {
            let sending = m
                .last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_SILENCE);
            if sending && live.n < live.order.len() {
                live.order[live.n] = i as u8;
                live.n += 1;
                live.measured &= m.rate.is_some();
            }
        }
        live.order[..live.n].sort_by_key(|l| self.rate(*l));
        live
    }

    /// The layer a subscription should receive: the best one its preference allows whose rate fits `budget`
    /// (bits per second), or the lowest if none does. `current` is what it receives now: moving up needs
    /// headroom ([`UP_HEADROOM`]). `None` if the subscription is disabled.
    pub(super) fn choose(&self, pref: Preference, budget: u64, current: Option<u8>, now: Instant) -> Option<u8> {
        if !pref.enabled {
            return None;
        }
        if !self.simulcast() {
            return Some(0);
        }
        let live = self.live(now);
        let Some(cap) = live.cap(pref.max) else {
            // Nothing is sending yet: the first listed layer, whose keyframe will start the stream.
            return Some(current.unwrap_or(0));
        };
        let order = live.layers();
        if !live.measured {
            // Not measured yet: start low, and move up at the next measurement.
            return order.iter().min().copied();
        }
        let current_rank = current.and_then(|c| order.iter().position(|l| *l == c));
        let fits = |rank: usize| {
            let rate = self.rate(order[rank]) as f64;
            let needed = match current_rank {
                Some(cur) if rank > cur => rate * UP_HEADROOM,
                _ => rate,
            };
            needed <= budget as f64
        };
        let rank = (0..=cap).rev().find(|r| fits(*r)).unwrap_or(0);
        Some(order[rank])
    }

    /// The rate of the next layer up from `current` that `pref` allows, if there is one.
    pub(super) fn next_up(&self, pref: Preference, current: Option<u8>, now: Instant) -> Option<u64> {
        if !pref.enabled || !self.simulcast() {
            return None;
        }
        let live = self.live(now);
        let cap = live.cap(pref.max).filter(|_| live.measured)?;
        let rank = live.layers().iter().position(|l| Some(*l) == current)?;
        let up = *live.layers().get(rank + 1).filter(|_| rank < cap)?;
        Some(self.rate(up))
    }

    /// The rate of the best layer `pref` allows: what the subscriber's estimate should grow to. `unknown`
    /// stands for a layer not measured yet.
    pub(super) fn wanted_rate(&self, pref: Preference, unknown: u64, now: Instant) -> u64 {
        if !pref.enabled {
            return 0;
        }
        let live = self.live(now);
        match (live.cap(pref.max), live.measured) {
            (_, false) => unknown,
            (Some(cap), true) => self.rate(live.order[cap]),
            (None, true) => 0,
        }
    }
}

/// The sending layers of a track at one moment.
struct Live {
    /// Layer indexes, lowest rate first; the first `n` count.
    order: [u8; 3],
    n: usize,
    /// Every sending layer has a measured rate.
    measured: bool,
}

impl Live {
    fn layers(&self) -> &[u8] {
        &self.order[..self.n]
    }

    /// The rank (in [`Live::layers`]) of the best layer `max` allows; `None` if nothing sends.
    fn cap(&self, max: Quality) -> Option<usize> {
        let top = self.n.checked_sub(1)?;
        Some(match max {
            Quality::Low => 0,
            Quality::Medium => top.min(1),
            Quality::High => top,
        })
    }
}

/// The first wait before a subscriber tries a better layer than its estimate allows, and the longest.
const CLIMB_FIRST: Duration = Duration::from_secs(4);
const CLIMB_MAX: Duration = Duration::from_secs(64);
/// How long a trial of a better layer is given before the estimate judges it.
pub const TRIAL: Duration = Duration::from_secs(3);

/// When a subscriber next tries a better layer.
///
/// A GCC estimate follows what is actually sent: while a subscriber receives a low layer, its estimate
/// stays a little above that layer's rate, whatever the link could carry, and says nothing about the next
/// layer up. So from time to time the subscriber tries the next layer: the estimator is restarted at the rate
/// that layer needs, and the higher layer flows. A link that carries it keeps the estimate up; a link that
/// does not makes it fall, the subscriber goes back down, and waits twice as long before the next try.
#[derive(Debug, Clone, Copy)]
pub(super) struct Climb {
    pub(super) next_try: Instant,
    backoff: Duration,
    /// A trial runs until then; before, the estimate has not had time to judge it.
    trial_until: Option<Instant>,
    /// The estimate the running trial started from.
    trial_budget: u64,
}

impl Climb {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            next_try: now + CLIMB_FIRST,
            backoff: CLIMB_FIRST,
            trial_until: None,
            trial_budget: 0,
        }
    }

    /// Whether a trial is running.
    pub(super) fn trying(&self, now: Instant) -> bool {
        self.trial_until.is_some_and(|t| now < t)
    }

    /// What to allocate from: during a trial, at least what the trial started from.
    pub(super) fn budget(&self, estimate: u64, now: Instant) -> u64 {
        match self.trying(now) {
            true => estimate.max(self.trial_budget),
            false => estimate,
        }
    }

    /// A trial starts now, from an estimate of `budget`.
    pub(super) fn start(&mut self, budget: u64, now: Instant) {
        self.trial_budget = budget;
        self.trial_until = Some(now + TRIAL);
        self.next_try = now + TRIAL + self.backoff;
    }

    /// The estimate could not hold what was sent: a trial shortly before failed, so wait longer.
    pub(super) fn congested(&mut self, now: Instant) {
        if self.trial_until.is_some_and(|t| now < t + TRIAL) {
            self.backoff = (self.backoff * 2).min(CLIMB_MAX);
        }
        self.trial_until = None;
        self.next_try = self.next_try.max(now + self.backoff);
    }

    /// Nothing went wrong for a while after a trial: the next may come sooner again.
    pub(super) fn settled(&mut self, now: Instant) {
        if self.trial_until.is_some_and(|t| now >= t + TRIAL) {
            self.trial_until = None;
            self.backoff = CLIMB_FIRST;
        }
    }
}

/// What the forwarding path knows of one incoming video packet, worked out once for all its subscribers.
#[derive(Debug, Clone, Copy)]
pub(super) struct VideoPacket {
    pub(super) layer: u8,
    pub(super) seq: SeqNo,
    pub(super) time: u32,
    /// The packet starts a keyframe.
    pub(super) keyframe: bool,
    /// The packet ends a frame (the RTP marker bit).
    pub(super) marker: bool,
    pub(super) vp8: Option<Vp8Descriptor>,
    /// The codec's RTP clock, in Hz.
    pub(super) clock: u32,
    pub(super) now: Instant,
}

impl VideoPacket {
    /// Inspects `payload` of `codec` sent on `layer`.
    pub(super) fn new(
        codec: Codec,
        layer: u8,
        seq: SeqNo,
        time: u32,
        payload: &[u8],
        clock: u32,
        now: Instant,
    ) -> Self {
        let (keyframe, vp8) = match codec {
            Codec::Vp8 => match Vp8Descriptor::parse(payload) {
                Ok(d) => (d.starts_keyframe(payload), Some(d)),
                Err(_) => (false, None),
            },
            Codec::H264 => (h264_starts_keyframe(payload), None),
            _ => (false, None),
        };
        Self {
            layer,
            seq,
            time,
            keyframe,
            marker: false,
            vp8,
            clock,
            now,
        }
    }
}

/// Whether an H.264 RTP payload (RFC 6184) starts a keyframe: an IDR slice or a sequence parameter set, alone,
/// first in a STAP-A, or in the first fragment of an FU-A. Written here because str0m keeps its own detector
/// private; the check is a few bits of the NAL unit header.
pub(super) fn h264_starts_keyframe(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let starts = |nal: u8| matches!(nal & 0x1f, IDR | SPS);
    let Some(first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        STAP_A => payload.get(3).is_some_and(|n| starts(*n)),
        FU_A => payload.get(1).is_some_and(|h| h & 0x80 != 0 && starts(*h)),
        _ => starts(*first),
    }
}

/// What one subscriber receives of one video track: the layer it gets now, the one it should get, and the
/// offsets that map the current layer's numbering onto the stream the subscriber sees.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Switcher {
    /// The layer to receive; `None` pauses the track.
    pub(super) wanted: Option<u8>,
    /// The layer forwarded now; `None` before the first keyframe and while paused.
    current: Option<u8>,
    /// Packets of the current layer before its switch keyframe are dropped: they belong to frames the
    /// subscriber cannot decode.
    from_seq: u64,
    seq_delta: u64,
    time_delta: u32,
    picture_delta: u16,
    tl0_delta: u8,
    last: Option<Sent>,
    /// The last packet sent did not end its frame.
    mid_frame: bool,
}

/// The last (highest) numbering sent to the subscriber.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    time: u32,
    picture: Option<u16>,
    tl0: Option<u8>,
    at: Instant,
}

/// How to send a packet to one subscriber, if at all.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rewrite {
    pub(super) seq: SeqNo,
    pub(super) time: u32,
    pub(super) vp8: Option<Vp8Patch>,
    /// The VP8 picture id and TL0PICIDX the subscriber sees, if the packet has them (the patch carries
    /// them; these are for the tests).
    #[allow(dead_code)]
    pub(super) picture: Option<u16>,
    #[allow(dead_code)]
    pub(super) tl0: Option<u8>,
    /// This packet switched the subscriber to another layer (not counted for the first one).
    pub(super) switched: bool,
}

impl Switcher {
    /// A subscription that starts on `wanted`.
    pub(super) fn new(wanted: Option<u8>) -> Self {
        Self {
            wanted,
            ..Self::default()
        }
    }

    /// The layer forwarded now.
    pub(super) fn current(&self) -> Option<u8> {
        self.current
    }

    /// Whether the subscriber waits for a keyframe of [`Switcher::wanted`].
    pub(super) fn waiting(&self) -> bool {
        self.wanted.is_some() && self.wanted != self.current
    }

    /// Decides whether `p` goes to this subscriber, and with which numbering.
    pub(super) fn admit(&mut self, p: &VideoPacket) -> Option<Rewrite> {
        if self.wanted.is_none() && (self.current != Some(p.layer) || !self.mid_frame) {
            // Paused, once the frame in progress is whole: a cut frame would make the decoder ask for a
            // keyframe at resume, and the resume brings one anyway.
            self.current = None;
            return None;
        }
        let mut switched = false;
        if self.waiting() && self.wanted == Some(p.layer) && p.keyframe {
            switched = self.current.is_some();
            self.switch_to(p);
        }
        if self.current != Some(p.layer) || *p.seq < self.from_seq {
            return None;
        }
        let seq = (*p.seq).wrapping_add(self.seq_delta);
        let time = p.time.wrapping_add(self.time_delta);
        let picture = p
            .vp8
            .and_then(|d| d.picture_id())
            .map(|id| id.wrapping_add(self.picture_delta) & 0x7fff);
        let tl0 = p
            .vp8
            .and_then(|d| d.tl0_pic_idx())
            .map(|i| i.wrapping_add(self.tl0_delta));
        let vp8 = p.vp8.and_then(|d| patch(&d, picture, tl0));
        self.mid_frame = !p.marker;
        match &mut self.last {
            Some(last) if seq <= last.seq => {}
            last => {
                *last = Some(Sent {
                    seq,
                    time,
                    picture,
                    tl0,
                    at: p.now,
                })
            }
        }
        Some(Rewrite {
            seq: seq.into(),
            time,
            vp8,
            picture,
            tl0,
            switched,
        })
    }

    /// Starts forwarding `p`'s layer at `p`, numbered to follow what the subscriber got last.
    fn switch_to(&mut self, p: &VideoPacket) {
        self.current = Some(p.layer);
        self.from_seq = *p.seq;
        let Some(last) = self.last else {
            // The first layer: its own numbering is as good as any.
            return;
        };
        self.seq_delta = (last.seq + 1).wrapping_sub(*p.seq);
        let elapsed = p.now.saturating_duration_since(last.at);
        let ticks = (elapsed.as_secs_f64() * f64::from(p.clock)) as u32;
        self.time_delta = last.time.wrapping_add(ticks.max(1)).wrapping_sub(p.time);
        if let (Some(sent), Some(id)) = (last.picture, p.vp8.and_then(|d| d.picture_id())) {
            self.picture_delta = sent.wrapping_add(1).wrapping_sub(id);
        }
        if let (Some(sent), Some(idx)) = (last.tl0, p.vp8.and_then(|d| d.tl0_pic_idx())) {
            self.tl0_delta = sent.wrapping_add(1).wrapping_sub(idx);
        }
    }
}

/// The VP8 descriptor rewrite for a packet; `None` when nothing changes or the descriptor cannot take it.
fn patch(d: &Vp8Descriptor, picture: Option<u16>, tl0: Option<u8>) -> Option<Vp8Patch> {
    if picture == d.picture_id() && tl0 == d.tl0_pic_idx() {
        return None;
    }
    let build = |picture: Option<u16>| {
        let mut b = d.patch();
        if let Some(id) = picture {
            b = b.picture_id(id);
        }
        if let Some(idx) = tl0 {
            b = b.tl0_pic_idx(idx);
        }
        b.build()
    };
    match build(picture) {
        Ok(p) => Some(p),
        // A 7-bit picture id wraps at 128.
        Err(Vp8PatchError::PictureIdTooLarge) => build(picture.map(|id| id & 0x7f)).ok(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload with a 15-bit picture id and a TL0PICIDX (RFC 7741); `key` makes it start a keyframe.
    fn vp8(picture: u16, tl0: u8, key: bool) -> Vec<u8> {
        let frame = if key { 0x10 } else { 0x11 };
        // X and S set; I, L and T set (L needs T); then PictureID, TL0PICIDX, TID/Y/KEYIDX, VP8 frame tag.
        vec![
            0x90,
            0xe0,
            0x80 | (picture >> 8) as u8,
            picture as u8,
            tl0,
            0,
            frame,
            0,
            0,
        ]
    }

    fn packet(layer: u8, seq: u64, time: u32, payload: &[u8], at: Instant) -> VideoPacket {
        let mut p = VideoPacket::new(Codec::Vp8, layer, seq.into(), time, payload, 90_000, at);
        p.marker = true;
        p
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_and_continues_the_numbering() {
        let t0 = Instant::now();
        let mut s = Switcher::new(Some(0));
        // Layer 0 starts at its keyframe; the delta frame before it is dropped.
        assert!(s.admit(&packet(0, 99, 1000, &vp8(9, 3, false), t0)).is_none());
        let first = s.admit(&packet(0, 100, 1000, &vp8(10, 4, true), t0)).expect("keyframe");
        assert_eq!((*first.seq, first.time, first.switched), (100, 1000, false));
        assert!(first.vp8.is_none(), "the first layer keeps its own numbering");
        s.admit(&packet(0, 101, 4000, &vp8(11, 4, false), t0))
            .expect("delta frame");
        // Wanting layer 2: its delta frames are dropped, layer 0 still flows, until layer 2's keyframe.
        s.wanted = Some(2);
        assert!(s.admit(&packet(2, 5000, 777_000, &vp8(500, 80, false), t0)).is_none());
        let t1 = t0 + Duration::from_millis(40);
        s.admit(&packet(0, 102, 7000, &vp8(12, 5, false), t1))
            .expect("layer 0 until the switch");
        let t2 = t1 + Duration::from_millis(10);
        let sw = s
            .admit(&packet(2, 5001, 780_000, &vp8(501, 81, true), t2))
            .expect("switch");
        assert!(sw.switched);
        assert_eq!(*sw.seq, 103, "sequence numbers continue");
        assert_eq!(sw.time, 7000 + 900, "the timestamp advances by the 10 ms elapsed");
        assert!(sw.vp8.is_some(), "picture id rewritten");
        assert_eq!(s.current(), Some(2));
        // Layer 0 is dropped now; layer 2 continues with the same offsets.
        assert!(s.admit(&packet(0, 103, 10_000, &vp8(13, 5, false), t2)).is_none());
        let next = s
            .admit(&packet(2, 5002, 783_000, &vp8(502, 81, false), t2))
            .expect("layer 2");
        assert_eq!((*next.seq, next.time), (104, 7900 + 3000));
        // A late packet of layer 2 from before its keyframe is never sent.
        assert!(s.admit(&packet(2, 5000, 777_000, &vp8(500, 80, false), t2)).is_none());
    }

    #[test]
    fn the_vp8_descriptor_is_rewritten_to_follow_on() {
        let t0 = Instant::now();
        let mut s = Switcher::new(Some(0));
        s.admit(&packet(0, 10, 0, &vp8(0x7ffe, 255, true), t0)).expect("start");
        s.wanted = Some(1);
        let sw = s.admit(&packet(1, 900, 50, &vp8(40, 7, true), t0)).expect("switch");
        assert!(sw.vp8.is_some());
        assert_eq!(sw.picture, Some(0x7fff), "picture id follows 0x7ffe");
        assert_eq!(sw.tl0, Some(0), "TL0PICIDX follows 255, wrapping");
        let next = s.admit(&packet(1, 901, 3050, &vp8(41, 7, false), t0)).expect("next");
        assert_eq!(next.picture, Some(0), "15-bit picture ids wrap to 0");
        assert_eq!(next.tl0, Some(0));
    }

    #[test]
    fn a_paused_track_sends_nothing_and_resumes_at_a_keyframe() {
        let t0 = Instant::now();
        let mut s = Switcher::new(Some(0));
        s.admit(&packet(0, 1, 0, &vp8(1, 1, true), t0)).expect("start");
        let mut first_half = packet(0, 2, 3000, &vp8(2, 1, false), t0);
        first_half.marker = false;
        s.admit(&first_half).expect("a frame in progress");
        s.wanted = None;
        s.admit(&packet(0, 3, 3000, &vp8(2, 1, false), t0))
            .expect("the frame is finished first");
        assert!(
            s.admit(&packet(0, 4, 6000, &vp8(3, 1, false), t0)).is_none(),
            "then nothing"
        );
        s.wanted = Some(0);
        assert!(
            s.admit(&packet(0, 5, 6000, &vp8(3, 1, false), t0)).is_none(),
            "waits for a keyframe"
        );
        let back = s.admit(&packet(0, 6, 9000, &vp8(4, 2, true), t0)).expect("keyframe");
        assert_eq!(*back.seq, 4, "no gap the subscriber would ask to be resent");
    }

    #[test]
    fn h264_keyframes_are_found_in_every_packetization() {
        assert!(h264_starts_keyframe(&[0x65, 0x88]), "IDR slice");
        assert!(h264_starts_keyframe(&[0x67, 0x42]), "SPS");
        assert!(!h264_starts_keyframe(&[0x41, 0x9a]), "non-IDR slice");
        assert!(
            h264_starts_keyframe(&[0x78, 0x00, 0x10, 0x67, 0x42]),
            "STAP-A with SPS first"
        );
        assert!(h264_starts_keyframe(&[0x7c, 0x85, 0x88]), "FU-A start of an IDR");
        assert!(!h264_starts_keyframe(&[0x7c, 0x05, 0x88]), "FU-A middle of an IDR");
        assert!(!h264_starts_keyframe(&[]));
    }

    #[test]
    fn layers_are_chosen_by_rate_preference_and_headroom() {
        let t0 = Instant::now();
        let mut l = Layers::new(vec!["f".into(), "h".into(), "q".into()]);
        // Listed high to low: the rates, not the order, tell which is which.
        let sizes = [3000, 1200, 300];
        for ms in (0..1000).step_by(20) {
            for (i, size) in sizes.iter().enumerate() {
                l.record(i as u8, *size, t0 + Duration::from_millis(ms));
            }
        }
        assert_eq!(l.wanted_rate(Preference::default(), 7, t0), 7, "not measured yet");
        let t1 = t0 + Duration::from_secs(1);
        l.measure(t1);
        assert_eq!(l.rate(2), 120_000);
        let all = Preference::default();
        assert_eq!(l.choose(all, 5_000_000, None, t1), Some(0), "the best layer");
        assert_eq!(l.choose(all, 1_000_000, None, t1), Some(1), "the middle one fits");
        assert_eq!(l.choose(all, 10_000, None, t1), Some(2), "the lowest when nothing fits");
        assert_eq!(
            l.choose(all, 500_000, Some(2), t1),
            Some(2),
            "480 kbit/s needs headroom to move up"
        );
        assert_eq!(l.choose(all, 600_000, Some(2), t1), Some(1));
        let low = Preference {
            enabled: true,
            max: Quality::Low,
        };
        assert_eq!(l.choose(low, 5_000_000, None, t1), Some(2));
        let off = Preference { enabled: false, ..all };
        assert_eq!(l.choose(off, 5_000_000, Some(0), t1), None);
        // The best layer stops: its subscribers get the next.
        assert_eq!(
            l.choose(all, 5_000_000, Some(0), t1 + LAYER_SILENCE),
            Some(0),
            "nothing sends: keep waiting"
        );
        for ms in (1000..2500).step_by(20) {
            l.record(1, 1200, t0 + Duration::from_millis(ms));
            l.record(2, 300, t0 + Duration::from_millis(ms));
        }
        let t2 = t0 + Duration::from_millis(2500);
        l.measure(t2);
        assert_eq!(l.choose(all, 5_000_000, Some(0), t2), Some(1));
        assert_eq!(l.wanted_rate(all, 0, t2), l.rate(1));
    }
}
