//! The speech sample encoded once, at start-up, into the 20 ms Opus packets every client replays.
//!
//! The encoder is set as WebRTC sets it for a voice call (application VOIP, VBR, in-band FEC, an expected-loss
//! figure, DTX, complexity 9 as on desktop). The sample is encoded twice through the same encoder and the second
//! pass is kept, so the loop is seamless: frame 0 was encoded right after the last frame, so its prediction (and,
//! were the last frame speech, its LBRR data) follows on from it, as does the DTX state.

use super::speech::{self, SAMPLE_RATE_HZ};
use super::{AudioError, FRAME_MS};
use opus::{Application, Bitrate, Channels, Encoder};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Samples in one 20 ms frame at the sample's rate.
const FRAME_SAMPLES: usize = (SAMPLE_RATE_HZ / 1000 * FRAME_MS) as usize;

/// Room for one encoded frame: a 20 ms Opus packet is at most 1275 bytes plus its TOC byte.
const MAX_PACKET: usize = 1500;

/// A packet this short is a DTX frame: libopus emits 1 or 2 bytes (the TOC alone) in a pause, and WebRTC does not
/// transmit such packets.
const DTX_MAX_LEN: usize = 2;

/// How the sample is encoded. Every key may be left out of a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncodeConfig {
    /// Target bitrate (VBR), in bits per second: 6000 to 510000.
    pub bitrate_bps: u32,
    /// In-band FEC: each packet carries a low-bitrate copy (LBRR) of the previous frame.
    pub fec: bool,
    /// The loss the encoder expects, in percent (0 to 100); with `fec` it sizes the LBRR data, and with 0 there is
    /// none.
    pub packet_loss_perc: u8,
    /// Discontinuous transmission: in pauses, DTX frames that a client does not send.
    pub dtx: bool,
    /// Encoder complexity, 0 to 10 (WebRTC uses 9 on desktops, 5 on phones).
    pub complexity: u8,
}

impl Default for EncodeConfig {
    fn default() -> Self {
        EncodeConfig {
            bitrate_bps: 24_000,
            fec: true,
            packet_loss_perc: 10,
            dtx: true,
            complexity: 9,
        }
    }
}

impl EncodeConfig {
    /// Checks every setting's range, naming the first one out of range.
    pub fn validate(&self) -> Result<(), AudioError> {
        let out_of_range = |key, expected| Err(AudioError::Config { key, expected });
        if !(6_000..=510_000).contains(&self.bitrate_bps) {
            return out_of_range("bitrate_bps", "6000 to 510000");
        }
        if self.packet_loss_perc > 100 {
            return out_of_range("packet_loss_perc", "0 to 100");
        }
        if self.complexity > 10 {
            return out_of_range("complexity", "0 to 10");
        }
        Ok(())
    }

    /// A libopus encoder at the sample's rate, set up from this config.
    fn encoder(&self) -> Result<Encoder, AudioError> {
        self.validate()?;
        let mut enc = Encoder::new(SAMPLE_RATE_HZ, Channels::Mono, Application::Voip)
            .map_err(AudioError::opus("create an encoder"))?;
        // In range by `validate`, so the casts are exact.
        enc.set_bitrate(Bitrate::Bits(self.bitrate_bps as i32))
            .map_err(AudioError::opus("set the bitrate"))?;
        enc.set_vbr(true).map_err(AudioError::opus("set VBR"))?;
        enc.set_inband_fec(self.fec)
            .map_err(AudioError::opus("set in-band FEC"))?;
        enc.set_packet_loss_perc(i32::from(self.packet_loss_perc))
            .map_err(AudioError::opus("set the expected loss"))?;
        enc.set_dtx(self.dtx).map_err(AudioError::opus("set DTX"))?;
        enc.set_complexity(i32::from(self.complexity))
            .map_err(AudioError::opus("set the complexity"))?;
        Ok(enc)
    }
}

/// One encoded 20 ms frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The Opus packet. Cloning it is a reference-count increment, and str0m's `RtpWrite::new` takes it as it is
    /// (`impl Into<Arc<[u8]>>`), so sending copies nothing.
    pub payload: Arc<[u8]>,
    /// A DTX frame: a client that follows WebRTC does not send it, but still advances the RTP timestamp.
    pub dtx: bool,
}

/// Figures about the encoded sample, for the run's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncodeStats {
    /// Frames in one loop of the sample.
    pub frames: usize,
    /// Of those, DTX frames (not sent).
    pub dtx_frames: usize,
    /// `dtx_frames / frames`.
    pub dtx_fraction: f64,
    /// Sent frames whose packet carries LBRR (FEC) data for the frame before.
    pub lbrr_frames: usize,
    /// Opus payload bytes of the sent frames.
    pub sent_bytes: usize,
    /// Mean Opus payload bitrate while sending: bits of the sent frames over their duration, in bits per second.
    pub mean_sent_bitrate_bps: f64,
}

/// The speech sample as Opus frames, encoded once and replayed in a loop by every client from its own offset.
#[derive(Debug, Clone)]
pub struct EncodedSpeech {
    /// At least one frame, by construction.
    frames: Vec<Frame>,
    stats: EncodeStats,
}

impl EncodedSpeech {
    /// Encodes the embedded speech sample (about 0.4 s of CPU: two passes at 0.3 ms a frame).
    pub fn new(config: &EncodeConfig) -> Result<EncodedSpeech, AudioError> {
        EncodedSpeech::from_pcm(config, &speech::pcm()?)
    }

    /// Encodes 16 kHz mono speech; a last partial frame is dropped.
    pub fn from_pcm(config: &EncodeConfig, pcm: &[i16]) -> Result<EncodedSpeech, AudioError> {
        let count = pcm.len() / FRAME_SAMPLES;
        if count == 0 {
            return Err(AudioError::SampleTooShort);
        }
        let mut enc = config.encoder()?;
        let mut frames = Vec::with_capacity(count);
        let mut packet = [0u8; MAX_PACKET];
        for pass in 0..2 {
            for samples in pcm.chunks_exact(FRAME_SAMPLES) {
                let len = enc
                    .encode(samples, &mut packet)
                    .map_err(AudioError::opus("encode a frame"))?;
                if pass == 1 {
                    let payload: Arc<[u8]> = packet[..len].into();
                    frames.push(Frame {
                        dtx: len <= DTX_MAX_LEN,
                        payload,
                    });
                }
            }
        }
        let stats = EncodeStats::of(&frames);
        Ok(EncodedSpeech { frames, stats })
    }

    /// Frame `i` of the endless loop (`i` modulo [`len`](Self::len)): give each client its own starting offset.
    pub fn frame(&self, i: usize) -> &Frame {
        &self.frames[i % self.frames.len()]
    }

    /// The endless loop of frames from frame `start` on.
    pub fn frames_from(&self, start: usize) -> impl Iterator<Item = &Frame> {
        (start..).map(move |i| self.frame(i))
    }

    /// Frames in one loop of the sample (never 0).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Always false: an `EncodedSpeech` holds at least one frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Figures about the encoded sample.
    pub fn stats(&self) -> &EncodeStats {
        &self.stats
    }
}

impl EncodeStats {
    fn of(frames: &[Frame]) -> EncodeStats {
        let sent = || frames.iter().filter(|f| !f.dtx);
        let dtx_frames = frames.len() - sent().count();
        let sent_bytes: usize = sent().map(|f| f.payload.len()).sum();
        let sent_seconds = (frames.len() - dtx_frames) as f64 * f64::from(FRAME_MS) / 1000.0;
        EncodeStats {
            frames: frames.len(),
            dtx_frames,
            dtx_fraction: dtx_frames as f64 / frames.len() as f64,
            lbrr_frames: sent().filter(|f| super::has_lbrr(&f.payload)).count(),
            sent_bytes,
            mean_sent_bitrate_bps: if sent_seconds > 0.0 {
                sent_bytes as f64 * 8.0 / sent_seconds
            } else {
                0.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech() -> EncodedSpeech {
        EncodedSpeech::new(&EncodeConfig::default()).expect("the sample encodes")
    }

    #[test]
    fn pauses_become_dtx_but_speech_dominates() {
        let s = speech();
        let st = s.stats();
        assert_eq!(st.frames, 622, "12.45 s of 20 ms frames");
        assert!((0.2..0.7).contains(&st.dtx_fraction), "{st:?}");
        assert!((14_000.0..40_000.0).contains(&st.mean_sent_bitrate_bps), "{st:?}");
        assert!(
            st.lbrr_frames * 2 > st.frames - st.dtx_frames,
            "most sent frames carry FEC: {st:?}"
        );
    }

    #[test]
    fn sent_frames_decode_to_twenty_ms() {
        let s = speech();
        let mut dec = opus::Decoder::new(SAMPLE_RATE_HZ, Channels::Mono).expect("decoder");
        let mut pcm = [0i16; FRAME_SAMPLES];
        for f in s.frames_from(0).take(s.len()).filter(|f| !f.dtx) {
            assert_eq!(dec.decode(&f.payload, &mut pcm, false).expect("decodes"), FRAME_SAMPLES);
        }
    }

    #[test]
    fn frames_loop_and_clones_share_the_packet() {
        let s = speech();
        assert!(std::ptr::eq(s.frame(3), s.frame(3 + 2 * s.len())));
        assert_eq!(s.frames_from(s.len() - 1).nth(1), Some(s.frame(0)));
        assert!(!s.is_empty());
        let sent = s.frame(7).clone();
        assert!(Arc::ptr_eq(&sent.payload, &s.frame(7).payload));
    }

    #[test]
    fn without_dtx_every_frame_is_sent_and_without_loss_there_is_no_lbrr() {
        let config = EncodeConfig {
            dtx: false,
            packet_loss_perc: 0,
            ..EncodeConfig::default()
        };
        let st = EncodedSpeech::new(&config).expect("encodes").stats().clone();
        assert_eq!(st.dtx_frames, 0);
        assert_eq!(st.lbrr_frames, 0);
    }

    #[test]
    fn config_errors_name_the_key_and_defaults_fill_in() {
        let bad = EncodeConfig {
            complexity: 11,
            ..EncodeConfig::default()
        };
        assert!(matches!(
            EncodedSpeech::new(&bad),
            Err(AudioError::Config { key: "complexity", .. })
        ));
        let bad = EncodeConfig {
            bitrate_bps: 500,
            ..EncodeConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(AudioError::Config { key: "bitrate_bps", .. })
        ));
        let parsed: EncodeConfig = serde_json::from_str(r#"{"bitrate_bps": 32000}"#).expect("parses");
        assert_eq!(
            parsed,
            EncodeConfig {
                bitrate_bps: 32_000,
                ..EncodeConfig::default()
            }
        );
        assert!(matches!(
            EncodedSpeech::from_pcm(&parsed, &[0; 100]),
            Err(AudioError::SampleTooShort)
        ));
    }
}
