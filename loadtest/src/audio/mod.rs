//! The audio every simulated caller sends and hears: one speech sample, encoded once with libopus, replayed by each
//! client from its own offset; RED (RFC 2198) packing; and a per-stream [`Listener`] that decodes what arrives,
//! recovering lost frames with in-band FEC or RED and concealing the rest.
//!
//! ```ignore
//! let speech = EncodedSpeech::new(&EncodeConfig::default())?; // once, at start-up: about 0.4 s of CPU
//! let frame = speech.frame(client_offset + n); // this client's n-th frame; an Arc<[u8]> clone is cheap
//! if !frame.dtx { send(frame.payload.clone()) } // RTP timestamp += RTP_TICKS_PER_FRAME for every frame, sent or not
//!
//! // Receiving side, driven in playout order by the jitter-buffer model:
//! let mut listener = Listener::new()?;
//! listener.play(&payload)?; // a frame that arrived in time
//! listener.missing(next.as_deref())?; // a lost frame: FEC from the next packet if it has LBRR, else PLC
//! listener.dtx_gap(frames); // timestamps jumped with no sequence gap: the sender was silent
//! ```
//!
//! Sample rates: the sample is 16 kHz mono, the encoder runs at 16 kHz (Opus wideband, all the sample holds), and the
//! listener decodes at 16 kHz too (cheaper than 48 kHz and comparable sample for sample with the source). The RTP
//! clock of Opus is 48 kHz whatever the rates inside the codec: 960 ticks per 20 ms frame.

mod decode;
mod encode;
pub mod red;
pub mod speech;

pub use decode::{has_lbrr, Listener, ListenerStats, DECODE_RATE_HZ};
pub use encode::{EncodeConfig, EncodeStats, EncodedSpeech, Frame};

/// Duration of one Opus frame as the harness sends it, in milliseconds.
pub const FRAME_MS: u32 = 20;

/// Opus's RTP clock rate (RFC 7587), whatever the codec's internal rate.
pub const RTP_CLOCK_HZ: u32 = 48_000;

/// RTP timestamp increment from one 20 ms frame to the next.
pub const RTP_TICKS_PER_FRAME: u32 = RTP_CLOCK_HZ / 1000 * FRAME_MS;

/// What can go wrong in encoding the sample or decoding a stream.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// libopus refused a call; `op` names what the harness was doing. For a decode, the packet was corrupt (peer
    /// input); anything else is a bug or a misconfiguration.
    #[error("libopus failed to {op}: {source}")]
    Opus {
        /// What the harness asked of libopus.
        op: &'static str,
        /// libopus's error.
        source: opus::Error,
    },
    /// A setting of [`EncodeConfig`] is out of range (the key is named as in the config file).
    #[error("audio setting `{key}` is out of range: {expected}")]
    Config {
        /// The setting's name.
        key: &'static str,
        /// The range it must be in.
        expected: &'static str,
    },
    /// The speech sample is not a WAV file the harness reads.
    #[error("speech sample: {0}")]
    Sample(#[from] speech::WavError),
    /// The speech is shorter than one 20 ms frame.
    #[error("the speech sample is shorter than one 20 ms frame")]
    SampleTooShort,
    /// A packet with an empty payload was played; a lost packet is reported with [`Listener::missing`].
    #[error("an empty payload was played as a frame")]
    EmptyPayload,
}

impl AudioError {
    fn opus(op: &'static str) -> impl FnOnce(opus::Error) -> AudioError {
        move |source| AudioError::Opus { op, source }
    }
}
