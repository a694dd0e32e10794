//! Rooms that span two SFU nodes, as separate processes with a real `redis-server`: forced onto both nodes by
//! regions (an `eu` and a `us` SFU node, a signaling node in each region with the `region` selector), or by a
//! full home node. Everyone hears everyone, and each published track crosses the link between the nodes once,
//! not once per subscriber.

mod common;

use common::phone::Phone;
use common::redis::Redis;
use common::room_client::{run_for, run_until, RoomClient, Transport};
use common::sfu::SfuServer;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

fn cluster_toml(redis: &Redis, node: &str, region: &str) -> String {
    format!(
        "\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{node}\"\nregion = \"{region}\"\nselector = \"region\"\n\
         heartbeat_ms = 200\ndead_after_ms = 600\n",
        redis.url()
    )
}

fn phone(s: &SfuServer, user: &str) -> Phone {
    Phone::connect(s.http_addr(), &s.user_token(user, "phone", 3600), "")
}

fn room_url(s: &SfuServer) -> String {
    format!("ws://{}/rtc", s.http_addr())
}

/// Alice calls Bob and Carol, who accept in turn; returns the three `join`s, in that order.
fn group_call(alice: &mut Phone, bob: &mut Phone, carol: &mut Phone) -> [Value; 3] {
    let r = alice.request(json!({"type": "invite", "key": "i", "to": ["bob", "carol"], "media": "audio"}));
    let call = r["call"].as_str().unwrap_or_else(|| panic!("a call: {r}")).to_string();
    let mut joins = Vec::new();
    for p in [bob, carol] {
        p.wait("incoming");
        let r = p.request(json!({"type": "accept", "key": "a", "call": call}));
        assert_eq!(r["type"], "reply", "{r}");
        joins.push(p.wait("join"));
    }
    let carol = joins.pop().expect("carol's join");
    let bob = joins.pop().expect("bob's join");
    [alice.wait("join"), bob, carol]
}

/// The three join their nodes and run until each hears the two others; then, over the same seconds, the link
/// media each of the two nodes sends. `lone` is the node with one of them, `pair` the one with the other two.
/// Relayed once per track, `lone` sends half what `pair` does (one track against two); relayed once per
/// subscriber, as much (its one track to two subscribers).
fn hear_all_and_count_the_link(joins: &[Value; 3], lone: &SfuServer, pair: &SfuServer) {
    let mut cs = [("alice", &joins[0]), ("bob", &joins[1]), ("carol", &joins[2])].map(|(who, j)| media(j, who));
    let [a, b, c] = &mut cs;
    let all_hear = run_until(&mut [a, b, c], Duration::from_secs(15), |cs| {
        cs.iter().all(|c| c.mids_with(25) >= 2)
    });
    let [a, b, c] = &mut cs;
    assert!(
        all_hear,
        "everyone hears the two others: {:?} {:?} {:?}\n{}\n{}",
        a.received,
        b.received,
        c.received,
        lone.log_tail(20),
        pair.log_tail(20)
    );
    let sent = |s: &SfuServer| metric(s, "hualu_sfu_link_media_sent_total");
    run_for(&mut [a, b, c], Duration::from_millis(1200));
    let before = (sent(lone), sent(pair));
    let from = Instant::now();
    run_for(&mut [a, b, c], Duration::from_secs(8));
    let secs = from.elapsed().as_secs_f64();
    let (lone_sent, pair_sent) = (sent(lone) - before.0, sent(pair) - before.1);
    println!("link media over {secs:.1} s: the node with one participant sent {lone_sent}, the other {pair_sent}");
    let ratio = lone_sent / pair_sent;
    assert!(
        (0.35..=0.7).contains(&ratio),
        "lone sent {lone_sent}, pair sent {pair_sent} (ratio {ratio:.2}, 0.5 when each track crosses once)"
    );
    // About 50 packets a second per track (20 ms Opus frames), well short of one copy per subscriber.
    assert!(
        lone_sent < 1.5 * 50.0 * secs,
        "lone sent {lone_sent} in {secs:.1} s for one track"
    );
    assert!(
        lone_sent > 0.5 * 50.0 * secs,
        "lone sent {lone_sent} in {secs:.1} s for one track"
    );
}

#[test]
fn a_room_forced_onto_two_nodes_by_region_everyone_hears_everyone_and_each_track_crosses_the_link_once() {
    let redis = Redis::start("span");
    let eu = SfuServer::start_with("sfu", &cluster_toml(&redis, "sfu-eu", "eu"));
    let us = SfuServer::start_with("sfu", &cluster_toml(&redis, "sfu-us", "us"));
    let sig_eu = SfuServer::start_with("signaling", &cluster_toml(&redis, "sig-eu", "eu"));
    let sig_us = SfuServer::start_with("signaling", &cluster_toml(&redis, "sig-us", "us"));
    wait_nodes(&sig_eu, 2);
    wait_nodes(&sig_us, 2);

    // Alice is on the eu signaling node, Bob and Carol on the us one.
    let mut alice = phone(&sig_eu, "alice");
    let (mut bob, mut carol) = (phone(&sig_us, "bob"), phone(&sig_us, "carol"));
    let joins = group_call(&mut alice, &mut bob, &mut carol);
    let [ja, jb, jc] = &joins;
    let why = || sig_eu.log_tail(40);
    assert_eq!(
        ja["sfu_url"],
        room_url(&eu).as_str(),
        "alice joins the eu node: {ja}\n{}",
        why()
    );
    assert_eq!(jb["sfu_url"], room_url(&us).as_str(), "bob joins the us node: {jb}");
    assert_eq!(jc["sfu_url"], room_url(&us).as_str(), "carol joins the us node: {jc}");
    hear_all_and_count_the_link(&joins, &eu, &us);
}

#[test]
fn a_room_whose_node_is_full_extends_to_another_and_everyone_hears_everyone() {
    let redis = Redis::start("span-full");
    // Each SFU node takes two participants; the signaling node has no region.
    let small = |id| format!("{}max_participants = 2\n", cluster_toml(&redis, id, ""));
    let nodes = [
        SfuServer::start_with("sfu", &small("sfu-a")),
        SfuServer::start_with("sfu", &small("sfu-b")),
    ];
    let sig = SfuServer::start_with("signaling", &cluster_toml(&redis, "sig", ""));
    wait_nodes(&sig, 2);
    let [mut alice, mut bob, mut carol] = ["alice", "bob", "carol"].map(|u| phone(&sig, u));
    let joins = group_call(&mut alice, &mut bob, &mut carol);
    let [ja, jb, jc] = &joins;
    // The room went to one node for Alice and Bob; Carol's join finds it full and goes to the other.
    assert_eq!(ja["sfu_url"], jb["sfu_url"], "alice and bob share the room's home");
    assert_ne!(jc["sfu_url"], ja["sfu_url"], "carol joins another node: {jc}");
    let home = nodes
        .iter()
        .position(|n| ja["sfu_url"] == room_url(n).as_str())
        .expect("the home is one of the nodes");
    let extensions = metric(&sig, "hualu_cluster_room_extensions_total");
    assert_eq!(extensions, 1.0, "one extension, for a full node");
    hear_all_and_count_the_link(&joins, &nodes[1 - home], &nodes[home]);
}

/// Waits until call control counts `n` live SFU nodes.
fn wait_nodes(s: &SfuServer, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while metric(s, "hualu_cluster_nodes") != n as f64 {
        assert!(Instant::now() < until, "{n} nodes\n{}", s.log_tail(30));
        sleep(Duration::from_millis(50));
    }
}

fn metric(s: &SfuServer, name: &str) -> f64 {
    let text = common::http::get(s.metrics_addr(), "/metrics")
        .map(|r| r.body)
        .unwrap_or_default();
    common::http::metric_sum(&text, name, &[]).unwrap_or(0.0)
}

fn room_addr(join: &Value) -> SocketAddr {
    let url = join["sfu_url"].as_str().expect("an sfu_url");
    let host = url.trim_start_matches("ws://").trim_end_matches("/rtc");
    host.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn media(join: &Value, who: &str) -> RoomClient {
    RoomClient::join(
        room_addr(join),
        join["token"].as_str().expect("a token"),
        who,
        Transport::Udp,
    )
}
