//! Active speakers from RFC 6464 audio levels, in virtual time.

mod common;

use common::World;
use hualu_sfu::{PeerId, Signal};
use std::time::Duration;

/// The speaker lists participant `id` was sent, in order, as ids.
fn speaker_lists(w: &World, id: PeerId) -> Vec<Vec<PeerId>> {
    w.signals_to(id)
        .filter_map(|s| match s {
            Signal::Speakers(list) => Some(list.iter().map(|(p, _)| *p).collect()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_room_hears_who_speaks_loudest_first_and_when_they_stop() {
    let mut w = World::new();
    for n in 2..=4 {
        w.join(n, "standup");
    }
    let ids: Vec<PeerId> = w.clients.iter().map(|c| c.id).collect();
    w.clients[0].level = Some(-25);
    w.clients[1].level = Some(-40);
    w.clients[2].level = Some(-110);
    w.run(Duration::from_secs(2));
    for id in &ids {
        let lists = speaker_lists(&w, *id);
        assert_eq!(
            lists.last(),
            Some(&vec![ids[0], ids[1]]),
            "{id} hears the loud one first: {lists:?}"
        );
    }
    let levels = w
        .signals_to(ids[2])
        .filter_map(|s| match s {
            Signal::Speakers(l) => Some(l.clone()),
            _ => None,
        })
        .last();
    let levels = levels.expect("a speaker list");
    assert!(levels[0].1 > levels[1].1 && levels[1].1 > 0.5, "{levels:?}");

    let announced = speaker_lists(&w, ids[2]).len();
    w.run(Duration::from_secs(2));
    assert_eq!(
        speaker_lists(&w, ids[2]).len(),
        announced,
        "nothing changed, nothing is sent"
    );

    w.clients[0].level = Some(-127);
    w.run(Duration::from_secs(1));
    assert_eq!(
        speaker_lists(&w, ids[2]).last(),
        Some(&vec![ids[1]]),
        "the first one went quiet"
    );
    w.clients[1].level = Some(-90);
    w.run(Duration::from_secs(1));
    assert_eq!(speaker_lists(&w, ids[2]).last(), Some(&vec![]), "nobody speaks");
}

#[test]
fn a_speaker_who_leaves_drops_out_of_the_list() {
    let mut w = World::new();
    w.join(2, "a");
    w.join(3, "a");
    w.clients[0].level = Some(-30);
    w.clients[1].level = Some(-30);
    w.run(Duration::from_secs(1));
    let b = w.clients[1].id;
    assert_eq!(speaker_lists(&w, b).last().map(Vec::len), Some(2));
    w.leave(0);
    w.run(Duration::from_secs(1));
    assert_eq!(speaker_lists(&w, b).last(), Some(&vec![b]));
}
