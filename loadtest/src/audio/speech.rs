//! The speech sample, embedded in the binary: 12.45 s of English sentences with pauses, 16 kHz mono, made by
//! `scripts/make-speech` (espeak-ng, voice en-us, 170 words a minute; the script has the text) and stored as a
//! G.711 mu-law WAV file (199 KB), half the size of 16-bit PCM. A 16-bit PCM WAV file would be read as well.

/// Sample rate of the speech sample, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// The WAV file as `scripts/make-speech` wrote it.
const WAV: &[u8] = include_bytes!("../../assets/speech.wav");

/// WAV format tag of linear PCM.
const FORMAT_PCM: u16 = 1;
/// WAV format tag of G.711 mu-law.
const FORMAT_MULAW: u16 = 7;

/// Why a WAV file cannot be read as 16 kHz mono speech.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// It does not start with a RIFF header of form WAVE.
    #[error("not a RIFF WAVE file")]
    NotWav,
    /// A chunk's header or body runs past the end of the file.
    #[error("truncated chunk")]
    Truncated,
    /// A required chunk is absent.
    #[error("no `{0}` chunk")]
    MissingChunk(&'static str),
    /// The format is not 16 kHz mono, 16-bit PCM or 8-bit mu-law.
    #[error("unsupported format: tag {format_tag}, {channels} channels, {rate_hz} Hz, {bits} bits")]
    Unsupported {
        /// WAV format tag (1 PCM, 7 mu-law).
        format_tag: u16,
        /// Channel count.
        channels: u16,
        /// Sample rate.
        rate_hz: u32,
        /// Bits per sample.
        bits: u16,
    },
}

/// The embedded speech sample as 16-bit samples at [`SAMPLE_RATE_HZ`].
pub fn pcm() -> Result<Vec<i16>, WavError> {
    parse_wav(WAV)
}

/// Reads a 16 kHz mono WAV file, 16-bit PCM or 8-bit mu-law, into 16-bit samples.
pub fn parse_wav(file: &[u8]) -> Result<Vec<i16>, WavError> {
    let chunks = riff_chunks(file)?;
    let fmt = find_chunk(chunks, b"fmt ")?.ok_or(WavError::MissingChunk("fmt "))?;
    let data = find_chunk(chunks, b"data")?.ok_or(WavError::MissingChunk("data"))?;
    match Format::parse(fmt)? {
        Format::Pcm16 => Ok(data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()),
        Format::MuLaw => Ok(data.iter().map(|&b| mulaw_to_linear(b)).collect()),
    }
}

/// The sample encodings read.
enum Format {
    Pcm16,
    MuLaw,
}

impl Format {
    /// Reads a `fmt ` chunk body.
    fn parse(fmt: &[u8]) -> Result<Format, WavError> {
        let u16_at = |at: usize| fmt.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |at: usize| {
            fmt.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (Some(format_tag), Some(channels), Some(rate_hz), Some(bits)) =
            (u16_at(0), u16_at(2), u32_at(4), u16_at(14))
        else {
            return Err(WavError::Truncated);
        };
        match (format_tag, channels, rate_hz, bits) {
            (FORMAT_PCM, 1, SAMPLE_RATE_HZ, 16) => Ok(Format::Pcm16),
            (FORMAT_MULAW, 1, SAMPLE_RATE_HZ, 8) => Ok(Format::MuLaw),
            _ => Err(WavError::Unsupported {
                format_tag,
                channels,
                rate_hz,
                bits,
            }),
        }
    }
}

/// The chunks after a RIFF WAVE header.
fn riff_chunks(file: &[u8]) -> Result<&[u8], WavError> {
    match (file.get(0..4), file.get(8..12)) {
        (Some(b"RIFF"), Some(b"WAVE")) => Ok(&file[12..]),
        _ => Err(WavError::NotWav),
    }
}

/// The body of the first chunk with this id, if any. Chunk bodies are padded to an even length.
fn find_chunk<'a>(mut chunks: &'a [u8], id: &[u8; 4]) -> Result<Option<&'a [u8]>, WavError> {
    while !chunks.is_empty() {
        let Some((header, rest)) = chunks.split_at_checked(8) else {
            return Err(WavError::Truncated);
        };
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let Some(body) = rest.get(..len) else {
            return Err(WavError::Truncated);
        };
        if &header[..4] == id {
            return Ok(Some(body));
        }
        chunks = rest.get(len + len % 2..).unwrap_or_default();
    }
    Ok(None)
}

/// ITU-T G.711 mu-law expansion to 16-bit linear (the 14-bit G.711 range, shifted left by 2).
fn mulaw_to_linear(code: u8) -> i16 {
    const BIAS: i16 = 0x84;
    let code = !code;
    let exponent = (code >> 4) & 0x07;
    let mantissa = i16::from(code & 0x0f);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if code & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(format_tag: u16, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&format_tag.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&SAMPLE_RATE_HZ.to_le_bytes());
        fmt.extend_from_slice(&(SAMPLE_RATE_HZ * u32::from(bits / 8)).to_le_bytes());
        fmt.extend_from_slice(&(bits / 8).to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        let mut body = b"WAVE".to_vec();
        for (id, chunk) in [(b"LIST", &b"odd"[..]), (b"fmt ", &fmt), (b"data", data)] {
            body.extend_from_slice(id);
            body.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            body.extend_from_slice(chunk);
            if chunk.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&body);
        file
    }

    #[test]
    fn embedded_sample_is_about_twelve_seconds_of_speech() {
        let pcm = pcm().expect("the embedded sample parses");
        let seconds = pcm.len() as f64 / f64::from(SAMPLE_RATE_HZ);
        assert!((10.0..13.0).contains(&seconds), "{seconds} s");
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 16_000, "peak {peak}: the sample should be at speaking level");
    }

    #[test]
    fn reads_pcm16_and_skips_unknown_odd_chunks() {
        let file = wav(FORMAT_PCM, 16, &[0x01, 0x00, 0xff, 0x7f, 0x00, 0x80]);
        assert_eq!(parse_wav(&file), Ok(vec![1, i16::MAX, i16::MIN]));
    }

    #[test]
    fn mulaw_matches_g711() {
        let file = wav(FORMAT_MULAW, 8, &[0xff, 0x7f, 0x80, 0x00, 0xef, 0x7e]);
        assert_eq!(parse_wav(&file), Ok(vec![0, 0, 32124, -32124, 132, -8]));
    }

    #[test]
    fn rejects_other_formats_and_truncation() {
        let stereo_rate = {
            let mut f = wav(FORMAT_PCM, 16, &[0, 0]);
            f[12 + 12 + 8 + 2] = 2; // channels, in the fmt chunk after the 12-byte LIST chunk
            f
        };
        assert!(matches!(
            parse_wav(&stereo_rate),
            Err(WavError::Unsupported { channels: 2, .. })
        ));
        assert_eq!(
            parse_wav(&wav(3, 32, &[0; 4]))
                .err()
                .map(|e| matches!(e, WavError::Unsupported { .. })),
            Some(true)
        );
        let file = wav(FORMAT_PCM, 16, &[0; 8]);
        assert_eq!(parse_wav(&file[..file.len() - 3]), Err(WavError::Truncated));
        assert_eq!(parse_wav(b"RIFX\0\0\0\0WAVE"), Err(WavError::NotWav));
        assert_eq!(parse_wav(b"RIFF\0\0\0\0WAVE"), Err(WavError::MissingChunk("fmt ")));
    }
}
