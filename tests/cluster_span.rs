//! A room that spans two SFU nodes, as separate processes: a real `redis-server`, an `eu` and a `us` SFU node,
//! and a signaling node in each region with the `region` selector. Alice (on the eu signaling node) calls Bob
//! and Carol (on the us one): the room is forced onto both nodes, everyone hears everyone, and each published
//! track crosses the link between the nodes once, not once per subscriber.

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

#[test]
fn a_room_forced_onto_two_nodes_everyone_hears_everyone_and_each_track_crosses_the_link_once() {
    let redis = Redis::start("span");
    let eu = SfuServer::start_with("sfu", &cluster_toml(&redis, "sfu-eu", "eu"));
    let us = SfuServer::start_with("sfu", &cluster_toml(&redis, "sfu-us", "us"));
    let sig_eu = SfuServer::start_with("signaling", &cluster_toml(&redis, "sig-eu", "eu"));
    let sig_us = SfuServer::start_with("signaling", &cluster_toml(&redis, "sig-us", "us"));
    wait_nodes(&sig_eu, 2);
    wait_nodes(&sig_us, 2);

    let phone = |s: &SfuServer, user: &str| Phone::connect(s.http_addr(), &s.user_token(user, "phone", 3600), "");
    let mut alice = phone(&sig_eu, "alice");
    let (mut bob, mut carol) = (phone(&sig_us, "bob"), phone(&sig_us, "carol"));
    let r = alice.request(json!({"type": "invite", "key": "i", "to": ["bob", "carol"], "media": "audio"}));
    let call = r["call"].as_str().unwrap_or_else(|| panic!("a call: {r}")).to_string();
    let mut joins = Vec::new();
    for p in [&mut bob, &mut carol] {
        p.wait("incoming");
        let r = p.request(json!({"type": "accept", "key": "a", "call": call}));
        assert_eq!(r["type"], "reply", "{r}");
        joins.push(p.wait("join"));
    }
    let ja = alice.wait("join");
    let (jb, jc) = (&joins[0], &joins[1]);
    let (on_eu, on_us) = (
        format!("ws://{}/rtc", eu.http_addr()),
        format!("ws://{}/rtc", us.http_addr()),
    );
    assert_eq!(
        ja["sfu_url"],
        on_eu.as_str(),
        "alice joins the eu node: {ja}\n{}",
        sig_eu.log_tail(40)
    );
    assert_eq!(jb["sfu_url"], on_us.as_str(), "bob joins the us node: {jb}");
    assert_eq!(jc["sfu_url"], on_us.as_str(), "carol joins the us node: {jc}");

    let (mut a, mut b, mut c) = (media(&ja, "alice"), media(jb, "bob"), media(jc, "carol"));
    let all_hear = run_until(&mut [&mut a, &mut b, &mut c], Duration::from_secs(15), |cs| {
        cs.iter().all(|c| c.mids_with(25) >= 2)
    });
    assert!(
        all_hear,
        "everyone hears the two others: {:?} {:?} {:?}\n{}\n{}",
        a.received,
        b.received,
        c.received,
        eu.log_tail(20),
        us.log_tail(20)
    );

    // Side by side over the same seconds: the eu node relays one track (Alice's) to the us node, where two
    // subscribers take it; the us node relays two (Bob's and Carol's). Relayed once per track, the eu node
    // sends half what the us node does; once per subscriber, as much.
    let sent = |s: &SfuServer| metric(s, "hualu_sfu_link_media_sent_total");
    run_for(&mut [&mut a, &mut b, &mut c], Duration::from_millis(1200));
    let before = (sent(&eu), sent(&us));
    let from = Instant::now();
    run_for(&mut [&mut a, &mut b, &mut c], Duration::from_secs(8));
    let secs = from.elapsed().as_secs_f64();
    let (eu_sent, us_sent) = (sent(&eu) - before.0, sent(&us) - before.1);
    println!("link media over {secs:.1} s: eu sent {eu_sent}, us sent {us_sent}");
    let ratio = eu_sent / us_sent;
    assert!(
        (0.35..=0.7).contains(&ratio),
        "eu sent {eu_sent}, us sent {us_sent} (ratio {ratio:.2}, 0.5 when each track crosses once)"
    );
    // About 50 packets a second per track (20 ms Opus frames), well short of one copy per subscriber.
    assert!(
        eu_sent < 1.5 * 50.0 * secs,
        "eu sent {eu_sent} in {secs:.1} s for one track"
    );
    assert!(
        eu_sent > 0.5 * 50.0 * secs,
        "eu sent {eu_sent} in {secs:.1} s for one track"
    );
}
