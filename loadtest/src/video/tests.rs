//! The shipped clip, the packetizer against str0m's own descriptor parser, and the viewer's accounting on
//! streams whose figures are worked out by hand.

use super::ivf::is_keyframe;
use super::*;

const MTU: usize = 1100;

#[test]
fn the_shipped_clip_is_45_frames_of_320x240_vp8_starting_with_its_only_keyframe() {
    let clip = Clip::embedded().expect("the clip parses");
    assert_eq!(clip.len(), 45);
    assert_eq!(clip.size(), (320, 240));
    let frames = clip.frames();
    assert!(is_keyframe(&frames[0]));
    assert_eq!(frames.iter().filter(|f| is_keyframe(f)).count(), 1);
    let bytes: usize = frames.iter().map(|f| f.len()).sum();
    // About 200 kb/s over 3 s.
    assert!((50_000..90_000).contains(&bytes), "{bytes} bytes");
}

#[test]
fn files_that_are_not_a_vp8_clip_are_refused() {
    let clip = include_bytes!("../../assets/video.ivf");
    assert_eq!(Clip::parse(b"RIFF").expect_err("refused"), IvfError::Truncated(4));
    let mut not_ivf = clip.to_vec();
    not_ivf[..4].copy_from_slice(b"RIFF");
    assert_eq!(Clip::parse(&not_ivf).expect_err("refused"), IvfError::NotIvf);
    let mut vp9 = clip.to_vec();
    vp9[8..12].copy_from_slice(b"VP90");
    assert_eq!(Clip::parse(&vp9).expect_err("refused"), IvfError::NotVp8("VP90".into()));
    assert_eq!(
        Clip::parse(&clip[..clip.len() - 5]).expect_err("refused"),
        IvfError::Truncated(clip.len() - 5)
    );
    assert_eq!(
        Clip::parse(&clip[..32]).expect_err("refused"),
        IvfError::NoKeyframe,
        "no frames"
    );
}

#[test]
fn packets_carry_the_frame_in_order_with_s_on_the_first_and_the_marker_on_the_last() {
    let frame: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    let packets = packetize(&frame, 0x1234, MTU);
    assert_eq!(packets.len(), 3);
    assert!(packets.iter().all(|(p, _)| p.len() <= MTU));
    let markers: Vec<bool> = packets.iter().map(|(_, m)| *m).collect();
    assert_eq!(markers, [false, false, true]);
    let mut joined = Vec::new();
    for (i, (p, _)) in packets.iter().enumerate() {
        let d = vp8_descriptor(p).expect("a descriptor");
        assert_eq!(d.start, i == 0);
        assert_eq!(d.picture_id, Some(0x1234));
        joined.extend_from_slice(&p[d.len..]);
    }
    assert_eq!(joined, frame);
}

#[test]
fn str0m_reads_the_descriptors_the_same_way() {
    let clip = Clip::embedded().expect("clip");
    let frames = clip.frames();
    for (i, frame) in frames.iter().take(3).enumerate() {
        for (n, (p, _)) in packetize(frame, 7, MTU).iter().enumerate() {
            let theirs = str0m::rtp::Vp8Descriptor::parse(p).expect("str0m parses it");
            let ours = vp8_descriptor(p).expect("we parse it");
            assert_eq!(theirs.starts_keyframe(p), i == 0 && n == 0, "frame {i} packet {n}");
            assert_eq!(ours.start && is_keyframe(&p[ours.len..]), i == 0 && n == 0);
        }
    }
}

/// Sends `frames` frames from `sender`, 15 a second, each packet through `keep` (by packet number).
fn stream(sender: &mut VideoSender, frames: u32, viewer: &mut VideoQuality, keep: impl Fn(u64) -> bool, seq: &mut u64) {
    for _ in 0..frames {
        let f = u64::from(sender.frames_sent());
        let ts = (f * u64::from(RTP_TICKS_PER_FRAME)) as u32;
        let at = f as f64 * 1000.0 / f64::from(FRAME_RATE) + 5.0;
        for (payload, marker) in sender.next_frame(MTU) {
            if keep(*seq) {
                viewer.push(*seq, ts, marker, &payload, at);
            }
            *seq += 1;
        }
    }
}

#[test]
fn a_clean_stream_shows_every_frame_at_15_a_second() {
    let clip = Clip::embedded().expect("clip");
    let (mut sender, mut viewer, mut seq) = (VideoSender::new(&clip, 1), VideoQuality::new(), 100);
    stream(&mut sender, 90, &mut viewer, |_| true, &mut seq);
    let s = viewer.summary();
    assert_eq!((s.frames_expected, s.frames_whole, s.frames_shown), (90, 90, 90));
    assert_eq!(s.keyframes, 2, "the loop's start, twice");
    assert_eq!(s.frame_loss_pct, 0.0);
    assert!((s.fps - 15.0).abs() < 1e-6, "{}", s.fps);
    assert!((s.longest_freeze_ms - 1000.0 / 15.0).abs() < 1e-6);
    assert_eq!((s.packets_received, s.packets_lost), (seq - 100, 0));
}

#[test]
fn a_lost_packet_freezes_the_picture_until_the_next_keyframe() {
    let clip = Clip::embedded().expect("clip");
    let (mut sender, mut viewer, mut seq) = (VideoSender::new(&clip, 1), VideoQuality::new(), 0);
    stream(&mut sender, 10, &mut viewer, |_| true, &mut seq);
    let lost = seq; // the first packet of frame 10
    stream(&mut sender, 10, &mut viewer, |s| s != lost, &mut seq);
    // The viewer asks for a keyframe; from frame 20 on the clip starts again.
    sender.keyframe_requested();
    stream(&mut sender, 10, &mut viewer, |_| true, &mut seq);
    let s = viewer.summary();
    assert_eq!(s.frames_expected, 30);
    assert_eq!(s.frames_whole, 29, "only frame 10 lost a packet");
    assert_eq!(s.frames_shown, 20, "frames 11 to 19 predict from a frame never shown");
    assert!((s.frame_loss_pct - 100.0 / 3.0).abs() < 1e-9);
    // Shown: frame 9 at 9/15 s, then frame 20 at 20/15 s.
    assert!(
        (s.longest_freeze_ms - 11.0 * 1000.0 / 15.0).abs() < 1e-6,
        "{}",
        s.longest_freeze_ms
    );
    assert_eq!(s.packets_lost, 1);
    assert_eq!(sender.keyframes_sent(), 2);
}

#[test]
fn packets_reordered_inside_a_second_still_make_whole_frames() {
    let clip = Clip::embedded().expect("clip");
    let mut sender = VideoSender::new(&clip, 9);
    let mut packets = Vec::new();
    for f in 0..6u32 {
        for (payload, marker) in sender.next_frame(300) {
            packets.push((packets.len() as u64, f, payload, marker));
        }
    }
    // Every pair swapped.
    for pair in packets.chunks_mut(2) {
        pair.reverse();
    }
    let mut viewer = VideoQuality::new();
    for (seq, f, payload, marker) in &packets {
        viewer.push(*seq, f * RTP_TICKS_PER_FRAME, *marker, payload, f64::from(*f) * 66.0);
    }
    let s = viewer.summary();
    assert_eq!((s.frames_expected, s.frames_whole, s.frames_shown), (6, 6, 6), "{s:?}");
}
