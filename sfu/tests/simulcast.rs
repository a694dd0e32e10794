//! Simulcast in virtual time: a publisher sends three VP8 layers, and each subscriber gets the one its
//! downlink estimate and its preference allow, switched at keyframes, renumbered into one clean stream.

mod common;

use common::{Bottleneck, World};
use hualu_sfu::{Preference, Quality, Track};
use std::time::Duration;
use str0m::media::Rid;

/// Three layers, lowest first: about 40, 400 and 720 kbit/s of payload (the lowest at 25 frames a second).
const LAYERS: &[(&str, usize)] = &[("q", 200), ("h", 1000), ("f", 1800)];

/// The layer index of the last `n` video frames client `i` received, if they all came on one layer.
fn settled_on(world: &World, i: usize, n: usize) -> Option<u8> {
    let frames = &world.clients[i].video_frames;
    let last = frames.get(frames.len().checked_sub(n)?..)?;
    let layer = last.first()?.0;
    last.iter().all(|(l, _)| *l == layer).then_some(layer)
}

fn video_track(world: &World, publisher: usize) -> String {
    let c = &world.clients[publisher];
    let mid = c.video_mid.expect("a video track");
    // The track id the room announced for the publisher's video.
    let id = format!("{}-{}", c.id, mid);
    let announced = world
        .signals
        .iter()
        .any(|(_, s)| matches!(s, hualu_sfu::Signal::TrackPublished { track: Track { id: t, .. }, .. } if *t == id));
    assert!(announced, "track {id} announced");
    id
}

#[test]
fn the_best_layer_that_fits_flows_and_a_shrinking_downlink_moves_down_at_a_keyframe() {
    let mut world = World::new();
    let publisher = world.join_simulcast(1, "r", LAYERS);
    let subscriber = world.join_as(2, common::req("r"), false);
    // The 1 Mbit/s starting estimate holds the best layer with room to spare.
    let best = world.run_until(Duration::from_secs(10), |w| settled_on(w, subscriber, 50) == Some(2));
    assert!(
        best,
        "the subscriber gets the best layer; frames: {:?}",
        &world.clients[subscriber].video_frames
    );
    let frames = &world.clients[subscriber].video_frames;
    let clean_from = frames.iter().position(|(l, _)| *l == 2).expect("best layer frames");
    assert!(
        frames[clean_from + 1..].iter().all(|(_, contiguous)| *contiguous),
        "frames on the best layer follow each other without a break"
    );

    // The downlink shrinks to 300 kbit/s: the estimate follows the growing delay, and the subscriber moves
    // to the lowest layer, which fits beside the audio.
    let switches = world.sfu.layer_switches();
    let asked = world.clients[publisher].keyframe_rids.len();
    world.clients[subscriber].downlink = Some(Bottleneck::new(300_000, Duration::from_millis(400), world.now));
    let lowest = world.run_until(Duration::from_secs(20), |w| settled_on(w, subscriber, 50) == Some(0));
    assert!(lowest, "the subscriber moved to the lowest layer");
    assert!(world.sfu.layer_switches() > switches, "the move is counted");
    let rids = &world.clients[publisher].keyframe_rids[asked..];
    assert!(
        rids.contains(&Some(Rid::from("q"))),
        "the lowest layer was asked for a keyframe: {rids:?}"
    );

    // Once there, nothing queues or drops any more, and the stream is one clean sequence.
    let dropped = world.clients[subscriber]
        .downlink
        .as_ref()
        .map(|d| d.dropped)
        .unwrap_or(0);
    let before = world.clients[subscriber].video_frames.len();
    world.run(Duration::from_secs(3));
    let c = &world.clients[subscriber];
    let after = &c.video_frames[before..];
    assert!(after.len() >= 60, "about 25 frames a second arrive: {}", after.len());
    assert!(after.iter().all(|(l, contiguous)| *l == 0 && *contiguous), "{after:?}");
    assert_eq!(
        c.downlink.as_ref().map(|d| d.dropped),
        Some(dropped),
        "nothing dropped at the bottleneck"
    );
}

#[test]
fn a_preference_moves_a_subscriber_between_layers_without_a_break_in_the_stream() {
    let mut world = World::new();
    let publisher = world.join_simulcast(1, "r", LAYERS);
    let subscriber = world.join_as(2, common::req("r"), false);
    assert!(world.run_until(Duration::from_secs(10), |w| settled_on(w, subscriber, 50) == Some(2)));
    let track = video_track(&world, publisher);
    let sub_id = world.clients[subscriber].id;
    let start = world.clients[subscriber].video_frames.len();

    let low = Preference {
        enabled: true,
        max: Quality::Low,
    };
    assert!(world.sfu.set_preference(sub_id, &track, low, world.now));
    assert!(world.run_until(Duration::from_secs(3), |w| settled_on(w, subscriber, 25) == Some(0)));
    let medium = Preference {
        enabled: true,
        max: Quality::Medium,
    };
    // Wanting more again, the subscriber tries the better layer at once, as its estimate knows only the
    // low layer's rate by now.
    assert!(world.sfu.set_preference(sub_id, &track, medium, world.now));
    assert!(world.run_until(Duration::from_secs(3), |w| settled_on(w, subscriber, 25) == Some(1)));
    assert!(world
        .sfu
        .set_preference(sub_id, &track, Preference::default(), world.now));
    assert!(world.run_until(Duration::from_secs(3), |w| settled_on(w, subscriber, 25) == Some(2)));

    // Three switches, each at a keyframe, and the subscriber never saw a gap in sequence or picture ids.
    let frames = &world.clients[subscriber].video_frames[start..];
    assert!(frames.iter().all(|(_, contiguous)| *contiguous), "{frames:?}");
    let layers: Vec<u8> = frames.iter().map(|(l, _)| *l).collect();
    let mut path = layers.clone();
    path.dedup();
    assert_eq!(path, vec![2, 0, 1, 2], "high, then low, medium and high again");
    assert!(world.sfu.layer_switches() >= 3);

    // Turned off, the track carries nothing; turned on, it starts again at a keyframe.
    let off = Preference {
        enabled: false,
        max: Quality::High,
    };
    assert!(world.sfu.set_preference(sub_id, &track, off, world.now));
    world.run(Duration::from_millis(200));
    let paused_at = world.clients[subscriber].video_frames.len();
    world.run(Duration::from_secs(1));
    assert_eq!(
        world.clients[subscriber].video_frames.len(),
        paused_at,
        "nothing while off"
    );
    assert!(world
        .sfu
        .set_preference(sub_id, &track, Preference::default(), world.now));
    world.run(Duration::from_secs(2));
    let resumed = &world.clients[subscriber].video_frames[paused_at..];
    assert!(resumed.len() >= 50, "frames again: {}", resumed.len());
    assert!(resumed.iter().all(|(_, contiguous)| *contiguous), "{resumed:?}");

    assert!(
        !world.sfu.set_preference(sub_id, "nope-1", low, world.now),
        "an unknown track is refused"
    );
}

#[test]
fn a_layer_the_publisher_stops_sending_is_replaced_by_the_next_best() {
    let mut world = World::new();
    let publisher = world.join_simulcast(1, "r", LAYERS);
    let subscriber = world.join_as(2, common::req("r"), false);
    assert!(world.run_until(Duration::from_secs(10), |w| settled_on(w, subscriber, 50) == Some(2)));
    // The publisher's encoder drops its best layer (as browsers do when their uplink shrinks).
    world.clients[publisher].layers.truncate(2);
    let moved = world.run_until(Duration::from_secs(5), |w| settled_on(w, subscriber, 25) == Some(1));
    assert!(moved, "the subscriber gets the middle layer");
}
