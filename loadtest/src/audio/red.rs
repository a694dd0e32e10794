//! RED, redundant audio data (RFC 2198, `audio/red`), as Chrome sends it for Opus: each packet carries the previous
//! frame again (distance 1) ahead of the current one, so one lost packet costs nothing when the next one arrives.
//!
//! Payload layout: one 4-byte header per redundant block (`F=1 | block PT (7) | timestamp offset (14) | block
//! length (10)`), a 1-byte header for the primary block (`F=0 | block PT (7)`), then the blocks' data in the same
//! order, the primary last, taking the rest of the payload.

/// Largest timestamp offset a redundant block header holds (14 bits).
pub const MAX_TS_OFFSET: u16 = (1 << 14) - 1;

/// Largest redundant block a header describes (10 bits), in bytes.
pub const MAX_BLOCK_LEN: usize = (1 << 10) - 1;

/// Size of a redundant block's header.
const REDUNDANT_HEADER_LEN: usize = 4;

/// A RED payload that does not parse: peer input, counted and dropped by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedError {
    /// The payload ends inside the block headers (this includes an empty payload).
    #[error("RED payload ends inside its block headers")]
    TruncatedHeader,
    /// The redundant blocks' lengths add up to more than the data after the headers.
    #[error("RED block lengths add up to {needed} bytes, but only {available} follow the headers")]
    BlockOverflow {
        /// Bytes the redundant blocks claim.
        needed: usize,
        /// Bytes after the headers.
        available: usize,
    },
}

/// A redundant block that [`pack`] cannot describe: misuse by the caller, which should send without redundancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedPackError {
    /// RTP payload types have 7 bits.
    #[error("payload type {0} does not fit in 7 bits")]
    PayloadType(u8),
    /// The redundant block is longer than [`MAX_BLOCK_LEN`].
    #[error("redundant block of {0} bytes is longer than RED's 1023")]
    BlockTooLong(usize),
    /// The timestamp offset is larger than [`MAX_TS_OFFSET`].
    #[error("timestamp offset {0} does not fit in RED's 14 bits")]
    TsOffset(u16),
}

/// Appends to `out` a RED payload of `primary` with, if given, one redundant block of an earlier frame (its payload
/// and how many RTP ticks before the primary it was captured: 960 for the previous 20 ms frame). Both blocks carry
/// payload type `opus_pt`. Nothing is appended on error.
pub fn pack(
    primary: &[u8],
    redundant: Option<(&[u8], u16)>,
    opus_pt: u8,
    out: &mut Vec<u8>,
) -> Result<(), RedPackError> {
    if opus_pt > 0x7f {
        return Err(RedPackError::PayloadType(opus_pt));
    }
    let Some((block, ts_offset)) = redundant else {
        out.reserve(1 + primary.len());
        out.push(opus_pt);
        out.extend_from_slice(primary);
        return Ok(());
    };
    if block.len() > MAX_BLOCK_LEN {
        return Err(RedPackError::BlockTooLong(block.len()));
    }
    if ts_offset > MAX_TS_OFFSET {
        return Err(RedPackError::TsOffset(ts_offset));
    }
    let header = (1 << 31) | u32::from(opus_pt) << 24 | u32::from(ts_offset) << 10 | block.len() as u32;
    out.reserve(REDUNDANT_HEADER_LEN + 1 + block.len() + primary.len());
    out.extend_from_slice(&header.to_be_bytes());
    out.push(opus_pt);
    out.extend_from_slice(block);
    out.extend_from_slice(primary);
    Ok(())
}

/// Parses a RED payload, checking that every header and block lies within it. Allocates nothing: the blocks borrow
/// from `payload`.
pub fn unpack(payload: &[u8]) -> Result<RedBlocks<'_>, RedError> {
    let mut at = 0;
    let mut needed = 0;
    loop {
        let Some(&first) = payload.get(at) else {
            return Err(RedError::TruncatedHeader);
        };
        if first & 0x80 == 0 {
            break;
        }
        let Some(header) = payload.get(at..at + REDUNDANT_HEADER_LEN) else {
            return Err(RedError::TruncatedHeader);
        };
        needed += usize::from(u16::from_be_bytes([header[2], header[3]]) & 0x03ff);
        at += REDUNDANT_HEADER_LEN;
    }
    let (headers, rest) = payload.split_at(at + 1);
    if needed > rest.len() {
        return Err(RedError::BlockOverflow {
            needed,
            available: rest.len(),
        });
    }
    let (redundant, primary) = rest.split_at(needed);
    Ok(RedBlocks {
        headers,
        redundant,
        primary,
    })
}

/// One block of a RED payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedBlock<'a> {
    /// The block's RTP payload type.
    pub pt: u8,
    /// RTP ticks from this block's capture to the primary's (0 for the primary).
    pub ts_offset: u16,
    /// The block's payload, an Opus packet.
    pub payload: &'a [u8],
}

/// A parsed RED payload: redundant blocks (oldest first, as sent) and the primary block.
#[derive(Debug, Clone, Copy)]
pub struct RedBlocks<'a> {
    /// The headers: 4 bytes per redundant block, then the primary's 1 byte.
    headers: &'a [u8],
    /// The redundant blocks' data, back to back; their lengths add up to its length.
    redundant: &'a [u8],
    /// The primary block's data.
    primary: &'a [u8],
}

impl<'a> RedBlocks<'a> {
    /// The primary block: the frame whose timestamp the RTP packet carries.
    pub fn primary(&self) -> RedBlock<'a> {
        let pt = self.headers.last().map_or(0, |h| h & 0x7f);
        RedBlock {
            pt,
            ts_offset: 0,
            payload: self.primary,
        }
    }

    /// The redundant blocks, in the order sent (for Chrome: the oldest first).
    pub fn redundant(&self) -> impl Iterator<Item = RedBlock<'a>> {
        let headers = self.headers.chunks_exact(REDUNDANT_HEADER_LEN);
        let mut data = self.redundant;
        headers.map_while(move |h| {
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]) & 0x03ff);
            let (payload, rest) = data.split_at_checked(len)?;
            data = rest;
            let ts_offset = u16::from_be_bytes([h[1], h[2]]) >> 2;
            Some(RedBlock {
                pt: h[0] & 0x7f,
                ts_offset,
                payload,
            })
        })
    }

    /// How many redundant blocks there are.
    pub fn redundant_count(&self) -> usize {
        self.headers.len() / REDUNDANT_HEADER_LEN
    }

    /// The redundant block `ts_offset` ticks before the primary, if the payload has one: the copy of a lost frame.
    pub fn redundant_at(&self, ts_offset: u16) -> Option<RedBlock<'a>> {
        self.redundant().find(|b| b.ts_offset == ts_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    const PT: u8 = 111;

    #[test]
    fn round_trip_with_one_redundant_block() {
        let mut out = vec![0xaa]; // something already there: pack appends
        pack(b"primary", Some((b"previous", 960)), PT, &mut out).expect("packs");
        assert_eq!(out.len(), 1 + 4 + 1 + 8 + 7);
        let red = unpack(&out[1..]).expect("parses");
        assert_eq!(red.redundant_count(), 1);
        let blocks: Vec<_> = red.redundant().collect();
        assert_eq!(
            blocks,
            vec![RedBlock {
                pt: PT,
                ts_offset: 960,
                payload: b"previous"
            }]
        );
        assert_eq!(
            red.primary(),
            RedBlock {
                pt: PT,
                ts_offset: 0,
                payload: b"primary"
            }
        );
        assert_eq!(red.redundant_at(960).map(|b| b.payload), Some(&b"previous"[..]));
        assert_eq!(red.redundant_at(1920), None);
    }

    #[test]
    fn header_bits_follow_the_rfc_2198_layout() {
        let mut out = Vec::new();
        pack(&[9], Some((&[7; 0x155], 0x2aaa)), 0x55, &mut out).expect("packs");
        // F=1, PT 0x55 | offset 0x2aaa (14 bits) | length 0x155 (10 bits)
        assert_eq!(out[..5], [0xd5, 0xaa, 0xa9, 0x55, 0x55]);
    }

    #[test]
    fn no_redundancy_is_a_one_byte_header() {
        let mut out = Vec::new();
        pack(b"only", None, PT, &mut out).expect("packs");
        assert_eq!(out, [&[PT][..], b"only"].concat());
        let red = unpack(&out).expect("parses");
        assert_eq!(red.redundant_count(), 0);
        assert_eq!(red.redundant().count(), 0);
        assert_eq!(red.primary().payload, b"only");
    }

    #[test]
    fn maximal_block_and_offset_round_trip() {
        let block = vec![3; MAX_BLOCK_LEN];
        let mut out = Vec::new();
        pack(b"", Some((&block, MAX_TS_OFFSET)), 0x7f, &mut out).expect("packs");
        let red = unpack(&out).expect("parses");
        assert_eq!(
            red.redundant_at(MAX_TS_OFFSET).map(|b| (b.pt, b.payload.len())),
            Some((0x7f, MAX_BLOCK_LEN))
        );
        assert!(red.primary().payload.is_empty());
    }

    #[test]
    fn block_length_overflow_is_an_error() {
        let mut out = Vec::new();
        pack(b"", Some((b"0123456789", 960)), PT, &mut out).expect("packs");
        out.truncate(out.len() - 1);
        assert_eq!(
            unpack(&out).err(),
            Some(RedError::BlockOverflow {
                needed: 10,
                available: 9
            })
        );
    }

    #[test]
    fn truncated_headers_are_errors() {
        assert_eq!(unpack(&[]).err(), Some(RedError::TruncatedHeader));
        assert_eq!(unpack(&[0x80 | PT, 0, 0]).err(), Some(RedError::TruncatedHeader));
        assert_eq!(unpack(&[0x80 | PT, 0, 0, 0]).err(), Some(RedError::TruncatedHeader));
    }

    #[test]
    fn pack_rejects_what_red_cannot_describe() {
        let mut out = Vec::new();
        assert_eq!(pack(b"p", None, 128, &mut out), Err(RedPackError::PayloadType(128)));
        let long = vec![0; MAX_BLOCK_LEN + 1];
        assert_eq!(
            pack(b"p", Some((&long, 960)), PT, &mut out),
            Err(RedPackError::BlockTooLong(1024))
        );
        assert_eq!(
            pack(b"p", Some((b"r", 16384)), PT, &mut out),
            Err(RedPackError::TsOffset(16384))
        );
        assert!(out.is_empty());
    }

    proptest! {
        #![proptest_config(Config { cases: 2048, rng_seed: RngSeed::Fixed(2198), failure_persistence: None,
            ..Config::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64)) {
            if let Ok(red) = unpack(&bytes) {
                let sizes: usize = red.redundant().map(|b| b.payload.len()).sum();
                prop_assert_eq!(red.redundant().count(), red.redundant_count());
                prop_assert_eq!(red.redundant_count() * 4 + 1 + sizes + red.primary().payload.len(), bytes.len());
            }
        }

        #[test]
        fn pack_then_unpack_is_identity(
            primary in vec(any::<u8>(), 0..300),
            block in proptest::option::of((vec(any::<u8>(), 0..=MAX_BLOCK_LEN), 0..=MAX_TS_OFFSET)),
            pt in 0u8..=0x7f,
        ) {
            let mut out = Vec::new();
            pack(&primary, block.as_ref().map(|(b, ts)| (&b[..], *ts)), pt, &mut out).expect("in range");
            let red = unpack(&out).expect("parses");
            prop_assert_eq!(red.primary(), RedBlock { pt, ts_offset: 0, payload: &primary });
            let got: Vec<_> = red.redundant().map(|b| (b.pt, b.ts_offset, b.payload.to_vec())).collect();
            let want: Vec<_> = block.into_iter().map(|(b, ts)| (pt, ts, b)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
