//! IVF, the container libvpx and ffmpeg write VP8 into: a 32-byte file header ("DKIF", version, header size,
//! codec FourCC, width, height, frame rate, scale, frame count), then each frame as a 4-byte size, an 8-byte
//! timestamp and the frame. Read by hand: the format is a dozen lines, and the crates that handle it are writers
//! for encoders.

use std::sync::Arc;

/// The clip the harness ships.
const EMBEDDED: &[u8] = include_bytes!("../../assets/video.ivf");

/// A clip that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IvfError {
    /// Not an IVF file.
    #[error("not an IVF file (no DKIF signature)")]
    NotIvf,
    /// An IVF file of another codec.
    #[error("the IVF file holds {0:?}, not VP8")]
    NotVp8(String),
    /// The file ends inside a header or a frame.
    #[error("the IVF file is cut short at byte {0}")]
    Truncated(usize),
    /// No frames, or a first frame that is not a keyframe (a receiver could decode nothing).
    #[error("the clip must start with a VP8 keyframe")]
    NoKeyframe,
}

/// Parsed VP8 frames, in order.
#[derive(Debug, Clone)]
pub struct Clip {
    frames: Arc<[Arc<[u8]>]>,
    width: u16,
    height: u16,
}

impl Clip {
    /// The clip shipped in `assets/video.ivf`.
    pub fn embedded() -> Result<Clip, IvfError> {
        Clip::parse(EMBEDDED)
    }

    /// Reads an IVF file of VP8 frames whose first frame is a keyframe.
    pub fn parse(data: &[u8]) -> Result<Clip, IvfError> {
        let header = data.get(..32).ok_or(IvfError::Truncated(data.len()))?;
        if &header[..4] != b"DKIF" {
            return Err(IvfError::NotIvf);
        }
        if &header[8..12] != b"VP80" {
            return Err(IvfError::NotVp8(String::from_utf8_lossy(&header[8..12]).into_owned()));
        }
        let header_len = usize::from(u16_at(header, 6)).max(32);
        let mut frames = Vec::new();
        let mut at = header_len;
        while at < data.len() {
            let size = data.get(at..at + 12).ok_or(IvfError::Truncated(data.len()))?;
            let len = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
            let frame = data
                .get(at + 12..at + 12 + len)
                .ok_or(IvfError::Truncated(data.len()))?;
            frames.push(Arc::from(frame));
            at += 12 + len;
        }
        if !frames.first().is_some_and(|f: &Arc<[u8]>| is_keyframe(f)) {
            return Err(IvfError::NoKeyframe);
        }
        Ok(Clip {
            frames: frames.into(),
            width: u16_at(header, 12),
            height: u16_at(header, 14),
        })
    }

    /// The frames, shared.
    pub fn frames(&self) -> Arc<[Arc<[u8]>]> {
        self.frames.clone()
    }

    /// Frames in the clip.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the clip has no frames (never: parsing refuses one).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }
}

/// A VP8 frame is a keyframe when bit 0 of its first byte is 0 (RFC 6386 section 9.1).
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
