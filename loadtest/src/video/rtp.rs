//! VP8 in RTP (RFC 7741): the payload descriptor, written by the sender and read by the receiver. Written here
//! because the harness drives str0m in RTP mode, where str0m's own packetizer is not reachable, and the
//! descriptor the harness needs is four bytes: X and S bits, partition 0, and a 15-bit picture id.

/// The descriptor the harness writes: `X=1 S PID=0`, `I=1`, `M=1 PictureID(15)`.
const DESCRIPTOR_LEN: usize = 4;

/// What the receiver reads off a payload's descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// The packet starts a frame (S set, partition 0).
    pub start: bool,
    /// The picture id, 7 or 15 bits, when present.
    pub picture_id: Option<u16>,
    /// Bytes of descriptor before the VP8 data.
    pub len: usize,
}

/// Splits `frame` into RTP payloads of at most `mtu` bytes, each with a descriptor carrying `picture_id`; the
/// last one is flagged for the marker bit.
pub fn packetize(frame: &[u8], picture_id: u16, mtu: usize) -> Vec<(Vec<u8>, bool)> {
    let chunk = mtu.saturating_sub(DESCRIPTOR_LEN).max(1);
    let parts = frame.len().div_ceil(chunk).max(1);
    frame
        .chunks(chunk)
        .enumerate()
        .map(|(i, data)| {
            let mut p = Vec::with_capacity(DESCRIPTOR_LEN + data.len());
            p.push(0x80 | if i == 0 { 0x10 } else { 0 });
            p.push(0x80);
            p.push(0x80 | ((picture_id >> 8) & 0x7f) as u8);
            p.push((picture_id & 0xff) as u8);
            p.extend_from_slice(data);
            (p, i + 1 == parts)
        })
        .collect()
}

/// Reads the payload descriptor of a VP8 RTP payload; `None` when it is cut short.
pub fn vp8_descriptor(payload: &[u8]) -> Option<Vp8Descriptor> {
    let first = *payload.first()?;
    let start = first & 0x10 != 0 && first & 0x0f == 0;
    let mut len = 1;
    let mut picture_id = None;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        len = 2;
        if ext & 0x80 != 0 {
            let b = *payload.get(len)?;
            if b & 0x80 != 0 {
                picture_id = Some(u16::from(b & 0x7f) << 8 | u16::from(*payload.get(len + 1)?));
                len += 2;
            } else {
                picture_id = Some(u16::from(b));
                len += 1;
            }
        }
        // TL0PICIDX (L), then TID/KEYIDX (T or K): one byte each.
        len += usize::from(ext & 0x40 != 0) + usize::from(ext & 0x30 != 0);
    }
    (len <= payload.len()).then_some(Vp8Descriptor { start, picture_id, len })
}
