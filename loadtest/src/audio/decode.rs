//! Decoding one received stream in playout order, and counting how each 20 ms frame was obtained: decoded as sent,
//! recovered from the next packet's in-band FEC (LBRR), recovered from a RED copy, or concealed by libopus's PLC.
//! Frames the sender never sent (DTX) are counted apart: silence is not loss.
//!
//! The [`Listener`] is driven by the caller's jitter-buffer model, which knows, for each playout slot, whether the
//! packet arrived, was lost (a sequence-number gap or too late) or was never sent (the timestamp jumped with no
//! sequence gap). It decodes at 16 kHz: the harness sends wideband speech, and decoding at 48 kHz would only add
//! libopus's resampler to the cost.

use super::{AudioError, FRAME_MS};
use opus::{Channels, Decoder};
use serde::Serialize;

/// The rate the listener decodes at, in Hz.
pub const DECODE_RATE_HZ: u32 = 16_000;

/// Samples in one 20 ms frame at the decode rate: what a lost frame is concealed or recovered as.
const FRAME_SAMPLES: usize = (DECODE_RATE_HZ / 1000 * FRAME_MS) as usize;

/// Room for the longest Opus packet, 120 ms.
const MAX_SAMPLES: usize = FRAME_SAMPLES * 6;

/// How the frames of one stream were played, each counted once, in 20 ms frames (a received packet counts once
/// whatever its duration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ListenerStats {
    /// Packets decoded as they arrived.
    pub decoded: u64,
    /// Lost frames rebuilt from the LBRR data of the packet after them.
    pub fec_recovered: u64,
    /// Lost frames played from a redundant copy in a later RED packet.
    pub red_recovered: u64,
    /// Lost frames concealed by packet-loss concealment (no FEC or RED copy to hand).
    pub concealed: u64,
    /// Frames the sender did not send (DTX pauses): neither loss nor concealment.
    pub dtx: u64,
    /// Packets libopus rejected: played ones (counted nowhere else) and FEC sources (the frame is then concealed).
    pub decode_errors: u64,
}

impl ListenerStats {
    /// Adds another stream's counts to these, for a run's totals.
    pub fn merge(&mut self, other: &ListenerStats) {
        self.decoded += other.decoded;
        self.fec_recovered += other.fec_recovered;
        self.red_recovered += other.red_recovered;
        self.concealed += other.concealed;
        self.dtx += other.dtx;
        self.decode_errors += other.decode_errors;
    }

    /// Lost frames, however they were replaced: `fec_recovered + red_recovered + concealed`.
    pub fn lost(&self) -> u64 {
        self.fec_recovered + self.red_recovered + self.concealed
    }
}

/// One received stream's Opus decoder and counts (about 20 KB of libopus state).
pub struct Listener {
    decoder: Decoder,
    /// The last output: up to 120 ms at the decode rate.
    pcm: Box<[i16]>,
    stats: ListenerStats,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// A fresh decoder, mono at [`DECODE_RATE_HZ`].
    pub fn new() -> Result<Listener, AudioError> {
        let decoder = Decoder::new(DECODE_RATE_HZ, Channels::Mono).map_err(AudioError::opus("create a decoder"))?;
        Ok(Listener {
            decoder,
            pcm: vec![0; MAX_SAMPLES].into_boxed_slice(),
            stats: ListenerStats::default(),
        })
    }

    /// Plays a packet that arrived in time; returns its samples. A packet libopus rejects (or an empty one) is
    /// counted as a decode error only, and its error returned.
    pub fn play(&mut self, payload: &[u8]) -> Result<&[i16], AudioError> {
        let n = self.decode_arrived(payload)?;
        self.stats.decoded += 1;
        Ok(&self.pcm[..n])
    }

    /// Plays a lost frame's redundant copy taken from a later RED packet (RFC 2198): decoded like any packet, but
    /// counted as `red_recovered`.
    pub fn recovered_from_red(&mut self, payload: &[u8]) -> Result<&[i16], AudioError> {
        let n = self.decode_arrived(payload)?;
        self.stats.red_recovered += 1;
        Ok(&self.pcm[..n])
    }

    /// Plays a lost 20 ms frame. `next` is the packet of the frame right after it, if that one is at hand (pass
    /// `None` when it is lost too or not yet arrived): if it carries LBRR, the frame is rebuilt from it with in-band
    /// FEC, otherwise it is concealed (PLC). `next` itself is still to be played in its own slot.
    pub fn missing(&mut self, next: Option<&[u8]>) -> Result<&[i16], AudioError> {
        if let Some(next) = next.filter(|p| has_lbrr(p)) {
            match self.decoder.decode(next, &mut self.pcm[..FRAME_SAMPLES], true) {
                Ok(n) => {
                    self.stats.fec_recovered += 1;
                    return Ok(&self.pcm[..n]);
                }
                Err(_) => self.stats.decode_errors += 1,
            }
        }
        let n = self.conceal()?;
        Ok(&self.pcm[..n])
    }

    /// Skips `frames` frames that the sender did not send (a DTX pause: the timestamp moved on by more than one
    /// frame with no gap in sequence numbers). They are counted as `dtx`, not as loss, and cost no decoding; a
    /// receiving client would play comfort noise.
    pub fn dtx_gap(&mut self, frames: u32) {
        self.stats.dtx += u64::from(frames);
    }

    /// This stream's counts so far.
    pub fn stats(&self) -> &ListenerStats {
        &self.stats
    }

    /// Decodes a packet that is there, counting an error if libopus rejects it; returns the sample count.
    fn decode_arrived(&mut self, payload: &[u8]) -> Result<usize, AudioError> {
        if payload.is_empty() {
            self.stats.decode_errors += 1;
            return Err(AudioError::EmptyPayload);
        }
        self.decoder.decode(payload, &mut self.pcm, false).map_err(|source| {
            self.stats.decode_errors += 1;
            AudioError::Opus {
                op: "decode a packet",
                source,
            }
        })
    }

    /// Packet-loss concealment of one 20 ms frame; returns the sample count.
    fn conceal(&mut self) -> Result<usize, AudioError> {
        match self.decoder.decode(&[], &mut self.pcm[..FRAME_SAMPLES], false) {
            Ok(n) => {
                self.stats.concealed += 1;
                Ok(n)
            }
            Err(source) => {
                self.stats.decode_errors += 1;
                Err(AudioError::Opus {
                    op: "conceal a lost frame",
                    source,
                })
            }
        }
    }
}

/// Whether an Opus packet carries LBRR (in-band FEC) data for the frame before it.
///
/// RFC 6716 section 4.2.3: a SILK or hybrid frame opens with one VAD flag per SILK frame and then the LBRR flag, for
/// the mid channel and, in stereo, then for the side channel. The range coder codes these flags at probability 1/2
/// first in the frame, so they are the leading bits of its first byte. A CELT-only packet has no LBRR.
pub fn has_lbrr(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else { return false };
    let Some(silk_frames) = silk_frames_per_opus_frame(toc) else {
        return false;
    };
    let Ok(parsed) = opus::packet::parse(packet) else {
        return false;
    };
    let Some(&flags) = parsed.frames.first().and_then(|f| f.first()) else {
        return false;
    };
    let stereo = toc & 0x04 != 0;
    let mid = flags >> (7 - silk_frames) & 1 == 1;
    let side = stereo && flags >> (6 - 2 * silk_frames) & 1 == 1;
    mid || side
}

/// SILK frames in each Opus frame of a packet with this TOC byte, or `None` for CELT-only packets. SILK frames are
/// 10 or 20 ms: a 40 ms Opus frame holds 2 and a 60 ms one 3.
fn silk_frames_per_opus_frame(toc: u8) -> Option<u32> {
    match toc >> 3 {
        config @ 0..=11 => Some(match config % 4 {
            0 | 1 => 1, // 10 or 20 ms
            2 => 2,     // 40 ms
            _ => 3,     // 60 ms
        }),
        12..=15 => Some(1), // hybrid, 10 or 20 ms
        _ => None,
    }
}

/// The playout model drives a listener directly: frames that arrived are decoded, missing ones recovered or
/// concealed, pauses counted. Decoding errors are counted in the stats, never fatal.
impl crate::quality::PlayoutSink<std::sync::Arc<[u8]>> for Listener {
    fn play(&mut self, _seq: u64, payload: &std::sync::Arc<[u8]>) {
        let _ = Listener::play(self, payload);
    }

    fn missing(&mut self, _seq: u64, next: Option<&std::sync::Arc<[u8]>>) {
        let _ = Listener::missing(self, next.map(|p| &p[..]));
    }

    fn silence(&mut self, frames: u32) {
        self.dtx_gap(frames);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{red, EncodeConfig, EncodedSpeech, Frame, RTP_TICKS_PER_FRAME};
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    fn speech(config: &EncodeConfig) -> EncodedSpeech {
        EncodedSpeech::new(config).expect("the sample encodes")
    }

    /// Lost frames in a [`play_loop`].
    struct Drops {
        /// Every lost frame.
        all: u64,
        /// Those whose next packet was at hand and carried LBRR.
        with_lbrr_next: u64,
    }

    /// Plays one loop of `speech` as a receiver would, losing every sent packet for which `lose(n)` holds (n counts
    /// sent packets); the next packet is offered for FEC when it is the very next frame and was not lost.
    fn play_loop(speech: &EncodedSpeech, lose: impl Fn(usize) -> bool) -> (ListenerStats, Drops) {
        let mut listener = Listener::new().expect("decoder");
        let frames: Vec<&Frame> = speech.frames_from(0).take(speech.len() + 1).collect();
        let mut drops = Drops {
            all: 0,
            with_lbrr_next: 0,
        };
        let mut sent = 0;
        let mut lost_next = lose(0);
        for pair in frames.windows(2) {
            let (frame, next) = (pair[0], pair[1]);
            if frame.dtx {
                listener.dtx_gap(1);
                continue;
            }
            let lost = lost_next;
            sent += 1;
            lost_next = lose(sent);
            if !lost {
                assert_eq!(listener.play(&frame.payload).expect("decodes").len(), FRAME_SAMPLES);
                continue;
            }
            let next = (!next.dtx && !lost_next).then_some(&next.payload[..]);
            drops.all += 1;
            drops.with_lbrr_next += u64::from(next.is_some_and(has_lbrr));
            assert_eq!(listener.missing(next).expect("recovers").len(), FRAME_SAMPLES);
        }
        (*listener.stats(), drops)
    }

    #[test]
    fn every_tenth_packet_lost_is_mostly_fec_recovered() {
        let s = speech(&EncodeConfig::default());
        let (st, drops) = play_loop(&s, |n| n % 10 == 9);
        assert_eq!(st.fec_recovered + st.concealed, drops.all, "{st:?}");
        assert_eq!(st.fec_recovered, drops.with_lbrr_next, "{st:?}");
        // The rest fall at talk-spurt ends, whose quiet frames the encoder gives no LBRR: concealed, as in Chrome.
        assert!(
            st.fec_recovered * 10 >= drops.all * 6,
            "most drops FEC-recovered: {st:?}"
        );
        assert_eq!(st.decoded + drops.all, (s.len() - s.stats().dtx_frames) as u64);
        assert_eq!(st.dtx, s.stats().dtx_frames as u64);
        assert_eq!((st.red_recovered, st.decode_errors), (0, 0));
    }

    #[test]
    fn without_fec_every_loss_is_concealed() {
        let s = speech(&EncodeConfig {
            fec: false,
            ..EncodeConfig::default()
        });
        let (st, drops) = play_loop(&s, |n| n % 10 == 9);
        assert_eq!((st.fec_recovered, st.concealed), (0, drops.all), "{st:?}");
        assert_eq!(drops.with_lbrr_next, 0);
    }

    #[test]
    fn back_to_back_losses_recover_at_most_the_last_one() {
        let s = speech(&EncodeConfig::default());
        let (st, drops) = play_loop(&s, |n| n % 10 >= 8);
        assert_eq!(st.lost(), drops.all);
        assert_eq!(st.fec_recovered, drops.with_lbrr_next);
        assert!(
            st.concealed * 2 >= drops.all,
            "the first of each pair has no next packet: {st:?}"
        );
        assert!(st.fec_recovered > 0, "{st:?}");
    }

    #[test]
    fn red_copies_replace_isolated_losses() {
        let s = speech(&EncodeConfig::default());
        let pt = 111;
        let red_packet = |i: usize| {
            let prev = s.frame(i + s.len() - 1);
            let mut out = Vec::new();
            let redundant = (!prev.dtx).then_some((&prev.payload[..], RTP_TICKS_PER_FRAME as u16));
            red::pack(&s.frame(i).payload, redundant, pt, &mut out).expect("fits");
            out
        };
        let mut l = Listener::new().expect("decoder");
        let mut drops = 0;
        for i in (0..s.len()).filter(|&i| !s.frame(i).dtx) {
            let packet = red_packet(i);
            let blocks = red::unpack(&packet).expect("parses");
            if i % 10 != 9 {
                l.play(blocks.primary().payload).expect("decodes");
                continue;
            }
            drops += 1;
            let next = red_packet(i + 1);
            let copy = red::unpack(&next)
                .expect("parses")
                .redundant_at(RTP_TICKS_PER_FRAME as u16);
            match (s.frame(i + 1).dtx, copy) {
                (false, Some(copy)) => l.recovered_from_red(copy.payload).map(|_| ()),
                _ => l.missing(None).map(|_| ()),
            }
            .expect("plays");
        }
        let st = l.stats();
        assert_eq!(st.red_recovered + st.concealed, drops, "{st:?}");
        assert!(st.red_recovered * 10 >= drops * 9, "{st:?}");
    }

    #[test]
    fn red_copies_and_errors_are_counted_apart() {
        let s = speech(&EncodeConfig::default());
        let speech_frame = s
            .frames_from(0)
            .find(|f| has_lbrr(&f.payload))
            .expect("a frame with LBRR");
        let mut l = Listener::new().expect("decoder");
        l.recovered_from_red(&speech_frame.payload).expect("decodes");
        assert!(matches!(l.play(&[]), Err(AudioError::EmptyPayload)));
        let code3_without_frames = [0x0b, 0x00];
        assert!(matches!(l.play(&code3_without_frames), Err(AudioError::Opus { .. })));
        let mut total = ListenerStats::default();
        total.merge(l.stats());
        total.merge(l.stats());
        assert_eq!(total.red_recovered, 2);
        assert_eq!(total.decode_errors, 4, "{total:?}");
        let json = serde_json::to_value(total).expect("serializes");
        assert_eq!(json["red_recovered"], 2);
    }

    #[test]
    fn lbrr_flag_follows_the_rfc_bit_layout() {
        // Mono 20 ms SILK-only (config 1), code 0: VAD flag is bit 7, LBRR flag bit 6.
        assert!(has_lbrr(&[0x08, 0b0100_0000]));
        assert!(!has_lbrr(&[0x08, 0b1011_1111]));
        // Mono 60 ms SILK (config 3): three VAD flags, then LBRR at bit 4.
        assert!(has_lbrr(&[0x18, 0b0001_0000]));
        assert!(!has_lbrr(&[0x18, 0b1110_1111]));
        // Stereo 20 ms: side LBRR at bit 4 (mid VAD, mid LBRR, side VAD, side LBRR).
        assert!(has_lbrr(&[0x0c, 0b0001_0000]));
        assert!(!has_lbrr(&[0x0c, 0b1010_1111]));
        // CELT-only (config 31) never; a DTX packet (TOC alone) and an empty one neither.
        assert!(!has_lbrr(&[0xf8, 0xff]));
        assert!(!has_lbrr(&[0x08]));
        assert!(!has_lbrr(&[]));
    }

    proptest! {
        #![proptest_config(Config { cases: 1024, rng_seed: RngSeed::Fixed(6716), failure_persistence: None,
            ..Config::default() })]

        #[test]
        fn arbitrary_packets_never_panic(bytes in vec(any::<u8>(), 0..200), fec in any::<bool>()) {
            let mut l = Listener::new().expect("decoder");
            let _ = has_lbrr(&bytes);
            if fec {
                let _ = l.missing(Some(&bytes));
            } else {
                let _ = l.play(&bytes);
            }
            let st = l.stats();
            prop_assert!(st.decoded + st.fec_recovered + st.concealed + st.decode_errors >= 1);
        }
    }
}
