//! A loopback cluster as separate processes: a real `redis-server`, `hualu sfu` nodes that heartbeat into it, and
//! `hualu signaling` placing each answered call's room on one of them.

mod common;

use common::phone::Phone;
use common::redis::Redis;
use common::room_client::{run_until, RoomClient, Transport};
use common::sfu::SfuServer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Heartbeats every 200 ms, dead after 600 ms (the test waits less for a dead node than production's 3 s), and a
/// drain deadline of 2 s.
fn cluster_toml(redis: &Redis, node: &str) -> String {
    format!(
        "\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{node}\"\nheartbeat_ms = 200\ndead_after_ms = 600\n\
         drain_deadline_secs = 2\n",
        redis.url()
    )
}

fn sfu_node(redis: &Redis, id: &str) -> SfuServer {
    SfuServer::start_with("sfu", &cluster_toml(redis, id))
}

fn signaling(redis: &Redis) -> SfuServer {
    SfuServer::start_with("signaling", &cluster_toml(redis, "signaling"))
}

/// A second (or third) signaling node on the same Redis: no state of its own.
fn signaling_named(redis: &Redis, id: &str) -> SfuServer {
    SfuServer::start_with("signaling", &cluster_toml(redis, id))
}

fn phone_on(s: &SfuServer, user: &str, device: &str) -> Phone {
    Phone::connect(s.http_addr(), &s.user_token(user, device, 3600), "")
}

/// Waits until call control counts `n` live SFU nodes.
fn wait_nodes(s: &SfuServer, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = common::http::get(s.metrics_addr(), "/metrics")
            .map(|r| r.body)
            .unwrap_or_default();
        if common::http::metric_sum(&text, "hualu_cluster_nodes", &[]) == Some(n as f64) {
            return;
        }
        assert!(
            Instant::now() < until,
            "call control did not see {n} nodes within 10 s\n{}",
            s.log_tail(30)
        );
        sleep(Duration::from_millis(50));
    }
}

fn phone(s: &SfuServer, user: &str) -> Phone {
    Phone::connect(s.http_addr(), &s.user_token(user, "phone", 3600), "")
}

/// `caller` calls `callee` and the callee answers; returns both sides' `join`.
fn answered_call(caller: &mut Phone, callee: &mut Phone) -> (Value, Value) {
    let to = callee.welcome["user"].as_str().expect("a user").to_string();
    let r = caller.request(json!({"type": "invite", "key": format!("inv-{to}"), "to": [to], "media": "audio"}));
    let call = r["call"]
        .as_str()
        .unwrap_or_else(|| panic!("a call id: {r}"))
        .to_string();
    callee.wait("incoming");
    let r = callee.request(json!({"type": "accept", "key": format!("acc-{call}"), "call": call}));
    assert_eq!(r["type"], "reply", "{r}");
    (caller.wait("join"), callee.wait("join"))
}

/// The room server's HTTP address in a `join`'s `sfu_url` (`ws://host:port/rtc`).
fn room_addr(join: &Value) -> SocketAddr {
    let url = join["sfu_url"].as_str().expect("an sfu_url");
    let host = url.trim_start_matches("ws://").trim_end_matches("/rtc");
    host.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Both sides of a call join its room at the node and with the tokens `join` (or `move`) gave them.
fn join_media(ja: &Value, jb: &Value) -> (RoomClient, RoomClient) {
    let on = room_addr(ja);
    let a = RoomClient::join(on, ja["token"].as_str().expect("token"), "alice", Transport::Udp);
    let b = RoomClient::join(on, jb["token"].as_str().expect("token"), "bob", Transport::Udp);
    (a, b)
}

/// Runs both until each has heard 25 frames from the other; whether they did within 15 s.
fn hear_each_other(a: &mut RoomClient, b: &mut RoomClient) -> bool {
    run_until(&mut [a, b], Duration::from_secs(15), |cs| {
        cs[0].mids_with(25) >= 1 && cs[1].mids_with(25) >= 1
    })
}

fn frames(c: &RoomClient) -> usize {
    c.received.values().sum()
}

#[test]
fn rooms_spread_over_the_nodes_and_a_call_connects_on_its_node() {
    let redis = Redis::start("spread");
    let nodes: Vec<SfuServer> = ["sfu-a", "sfu-b", "sfu-c"]
        .iter()
        .map(|id| sfu_node(&redis, id))
        .collect();
    let s = signaling(&redis);
    wait_nodes(&s, 3);

    let mut joins = Vec::new();
    let mut phones = Vec::new();
    for i in 0..6 {
        let (mut caller, mut callee) = (phone(&s, &format!("caller{i}")), phone(&s, &format!("callee{i}")));
        let (a, b) = answered_call(&mut caller, &mut callee);
        assert_eq!(a["sfu_url"], b["sfu_url"], "both sides of a call are in one room");
        joins.push((a, b));
        phones.push((caller, callee));
    }
    let mut per_node: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for (a, _) in &joins {
        *per_node.entry(room_addr(a)).or_default() += 1;
    }
    let expected: BTreeMap<SocketAddr, usize> = nodes.iter().map(|n| (n.http_addr(), 2)).collect();
    assert_eq!(per_node, expected, "six rooms, two per node");

    // The first call's media, on its node; the node's media reports reach call control through Redis.
    let (ja, jb) = &joins[0];
    let on = room_addr(ja);
    let mut a = RoomClient::join(on, ja["token"].as_str().expect("token"), "caller0", Transport::Udp);
    let mut b = RoomClient::join(on, jb["token"].as_str().expect("token"), "callee0", Transport::Udp);
    let heard = run_until(&mut [&mut a, &mut b], Duration::from_secs(15), |cs| {
        cs[0].mids_with(25) >= 1 && cs[1].mids_with(25) >= 1
    });
    let node = nodes.iter().find(|n| n.http_addr() == on).expect("the room's node");
    assert!(
        heard,
        "caller got {:?}, callee got {:?}\n{}",
        a.received,
        b.received,
        node.log_tail(30)
    );
    let (caller, callee) = &mut phones[0];
    for p in [caller, callee] {
        let active = p.try_wait("active", Duration::from_secs(5));
        assert!(
            active.is_some(),
            "the call goes active once media flows\n{}",
            s.log_tail(30)
        );
    }
}

#[test]
fn a_dead_node_gets_no_new_rooms_and_with_no_node_left_a_call_ends_with_no_capacity() {
    let redis = Redis::start("dead");
    let a = sfu_node(&redis, "sfu-a");
    let b = sfu_node(&redis, "sfu-b");
    let s = signaling(&redis);
    wait_nodes(&s, 2);
    drop(b); // SIGKILL: the node never says goodbye; its heartbeat expires.
    wait_nodes(&s, 1);
    for i in 0..3 {
        let (mut caller, mut callee) = (phone(&s, &format!("caller{i}")), phone(&s, &format!("callee{i}")));
        let (join, _) = answered_call(&mut caller, &mut callee);
        assert_eq!(room_addr(&join), a.http_addr(), "every room goes to the live node");
    }

    drop(a);
    wait_nodes(&s, 0);
    let (mut caller, mut callee) = (phone(&s, "late-caller"), phone(&s, "late-callee"));
    let r = caller.request(json!({"type": "invite", "key": "late", "to": ["late-callee"], "media": "audio"}));
    let call = r["call"].as_str().expect("a call id").to_string();
    callee.wait("incoming");
    callee.request(json!({"type": "accept", "key": "late-acc", "call": call}));
    for p in [&mut caller, &mut callee] {
        let ended = p.wait("ended");
        assert_eq!(ended["reason"], "no_capacity", "{ended}");
    }
    let text = common::http::get(s.metrics_addr(), "/metrics")
        .map(|r| r.body)
        .unwrap_or_default();
    let refused = common::http::metric_sum(&text, "hualu_cluster_placements_total", &[("result", "no_node")]);
    assert_eq!(refused, Some(1.0), "{text}");
}

#[test]
fn a_call_on_a_killed_node_moves_to_a_live_one_and_its_media_comes_back() {
    let redis = Redis::start("kill");
    let mut nodes = [Some(sfu_node(&redis, "sfu-a")), Some(sfu_node(&redis, "sfu-b"))];
    let s = signaling(&redis);
    wait_nodes(&s, 2);
    let (mut alice, mut bob) = (phone(&s, "alice"), phone(&s, "bob"));
    let (ja, jb) = answered_call(&mut alice, &mut bob);
    let (mut a, mut b) = join_media(&ja, &jb);
    assert!(hear_each_other(&mut a, &mut b), "media before the kill");
    let victim = nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(|n| n.http_addr() == room_addr(&ja)));
    let victim = victim.expect("the call's node");
    let survivor = nodes[1 - victim].as_ref().expect("alive").http_addr();

    let killed = Instant::now();
    drop(nodes[victim].take()); // SIGKILL, mid-call.
    let (ma, mb) = (alice.wait("move"), bob.wait("move"));
    for m in [&ma, &mb] {
        assert_eq!(m["reason"], "node_lost", "{m}");
        assert_eq!(m["call"], ja["room"], "{m}");
        assert_eq!(room_addr(m), survivor, "the room moves to the live node: {m}");
    }
    drop((a, b));
    let (mut a, mut b) = join_media(&ma, &mb);
    assert!(
        hear_each_other(&mut a, &mut b),
        "media on the new node\n{}",
        s.log_tail(30)
    );
    eprintln!("media back on the new node {:?} after the kill", killed.elapsed());
    let r = alice.request(json!({"type": "hangup", "key": "h", "call": ja["room"]}));
    assert_eq!(r["type"], "reply", "the moved call is still the same call: {r}");
    assert_eq!(bob.wait("ended")["reason"], "hangup");
}

#[test]
fn a_draining_node_keeps_its_calls_until_the_deadline_then_they_move_and_it_exits() {
    let redis = Redis::start("drain");
    let mut nodes = [sfu_node(&redis, "sfu-a"), sfu_node(&redis, "sfu-b")];
    let s = signaling(&redis);
    wait_nodes(&s, 2);
    let (mut alice, mut bob) = (phone(&s, "alice"), phone(&s, "bob"));
    let (ja, jb) = answered_call(&mut alice, &mut bob);
    let (mut a, mut b) = join_media(&ja, &jb);
    assert!(hear_each_other(&mut a, &mut b), "media before the drain");
    let x = nodes
        .iter()
        .position(|n| n.http_addr() == room_addr(&ja))
        .expect("the call's node");
    let other = nodes[1 - x].http_addr();

    nodes[x].terminate();
    let drained = Instant::now();
    // Once call control sees the node draining, a new call goes to the other node.
    wait_state(&s, &s.admin_token(), ["sfu-a", "sfu-b"][x], "draining");
    let (mut carol, mut dave) = (phone(&s, "carol"), phone(&s, "dave"));
    let (jc, _) = answered_call(&mut carol, &mut dave);
    assert_eq!(room_addr(&jc), other, "a draining node takes no new room");
    // Until the 2 s deadline, the call goes on where it is.
    let before = (frames(&a), frames(&b));
    run_until(&mut [&mut a, &mut b], Duration::from_millis(500), |_| false);
    assert!(
        frames(&a) > before.0 + 10 && frames(&b) > before.1 + 10,
        "media flows on the draining node before its deadline"
    );

    let (ma, mb) = (alice.wait("move"), bob.wait("move"));
    let moved_after = drained.elapsed();
    assert!(
        moved_after >= Duration::from_millis(1800),
        "moved {moved_after:?} after SIGTERM, before the deadline"
    );
    for m in [&ma, &mb] {
        assert_eq!(m["reason"], "node_drained", "{m}");
        assert_eq!(room_addr(m), other, "{m}");
    }
    a.leave();
    b.leave();
    let (mut a2, mut b2) = join_media(&ma, &mb);
    assert!(hear_each_other(&mut a2, &mut b2), "media on the new node");
    eprintln!(
        "moved {moved_after:?} after SIGTERM; media back {:?} after it",
        drained.elapsed()
    );
    drop((a, b));
    assert!(
        nodes[x].wait_exit(Duration::from_secs(15)),
        "the drained node exits once its rooms are empty\n{}",
        nodes[x].log_tail(30)
    );
}

#[test]
fn calls_keep_their_media_through_a_redis_outage_and_new_calls_work_once_it_is_back() {
    let mut redis = Redis::start("outage");
    let _nodes = [sfu_node(&redis, "sfu-a"), sfu_node(&redis, "sfu-b")];
    let s = signaling(&redis);
    wait_nodes(&s, 2);
    let (mut alice, mut bob) = (phone(&s, "alice"), phone(&s, "bob"));
    let (ja, jb) = answered_call(&mut alice, &mut bob);
    let (mut a, mut b) = join_media(&ja, &jb);
    assert!(hear_each_other(&mut a, &mut b), "media before the outage");

    // Down for 1.5 s, longer than a dead window (600 ms), then back empty: it has forgotten every node.
    redis.stop();
    let before = (frames(&a), frames(&b));
    run_until(&mut [&mut a, &mut b], Duration::from_millis(1500), |_| false);
    assert!(
        frames(&a) > before.0 + 25 && frames(&b) > before.1 + 25,
        "media flows while Redis is down"
    );
    redis.start_again();
    let before = (frames(&a), frames(&b));
    run_until(&mut [&mut a, &mut b], Duration::from_millis(1500), |_| false);
    assert!(
        frames(&a) > before.0 + 25 && frames(&b) > before.1 + 25,
        "media flows as Redis comes back"
    );
    for p in [&mut alice, &mut bob] {
        let moved = p.try_wait("move", Duration::from_millis(200));
        assert!(
            moved.is_none(),
            "no room moves for a Redis restart: {moved:?}\n{}",
            s.log_tail(30)
        );
    }

    wait_nodes(&s, 2);
    let (mut carol, mut dave) = (phone(&s, "carol"), phone(&s, "dave"));
    let (jc, jd) = answered_call(&mut carol, &mut dave);
    let (mut c, mut d) = join_media(&jc, &jd);
    assert!(
        hear_each_other(&mut c, &mut d),
        "a new call once Redis is back\n{}",
        s.log_tail(30)
    );
}

/// `method path` on call control's admin API with `token`; the status and the JSON body.
fn admin(s: &SfuServer, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r = common::http::request(s.http_addr(), method, path, &headers, body).expect("an answer");
    let v = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", r.body));
    (r.status, v)
}

/// Each node's state in `GET /admin/nodes`, by id.
fn node_states(s: &SfuServer, token: &str) -> BTreeMap<String, String> {
    let (status, v) = admin(s, "GET", "/admin/nodes", token, "");
    assert_eq!(status, 200, "{v}");
    let nodes = v["nodes"].as_array().expect("nodes");
    nodes
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or("").into(),
                n["state"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

fn wait_state(s: &SfuServer, token: &str, id: &str, state: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while node_states(s, token).get(id).map(String::as_str) != Some(state) {
        assert!(
            Instant::now() < until,
            "{id} never {state}: {:?}",
            node_states(s, token)
        );
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_admin_api_lists_nodes_rooms_and_calls_and_drains_a_node_on_request() {
    let redis = Redis::start("admin");
    let nodes = [sfu_node(&redis, "sfu-a"), sfu_node(&redis, "sfu-b")];
    let s = signaling(&redis);
    wait_nodes(&s, 2);
    let token = s.admin_token();
    // No token, a bad one, and a user's token without the admin grant are refused.
    let r = common::http::request(s.http_addr(), "GET", "/admin/nodes", &[], "").expect("an answer");
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(admin(&s, "GET", "/admin/nodes", "not-a-jwt", "").0, 401);
    let (status, v) = admin(&s, "GET", "/admin/calls", &s.user_token("mallory", "phone", 60), "");
    assert_eq!((status, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    let states = node_states(&s, &token);
    assert_eq!(states.keys().collect::<Vec<_>>(), ["sfu-a", "sfu-b"]);

    let (mut alice, mut bob) = (phone(&s, "alice"), phone(&s, "bob"));
    let (ja, _) = answered_call(&mut alice, &mut bob);
    let call = ja["room"].as_str().expect("the call's room").to_string();
    let on = nodes
        .iter()
        .position(|n| n.http_addr() == room_addr(&ja))
        .expect("the call's node");
    let (id, other) = (["sfu-a", "sfu-b"][on], ["sfu-a", "sfu-b"][1 - on]);
    let (_, v) = admin(&s, "GET", "/admin/calls", &token, "");
    let listed = v["calls"].as_array().expect("calls");
    assert_eq!(listed.len(), 1, "{v}");
    assert_eq!(
        (listed[0]["call"].as_str(), listed[0]["node"].as_str()),
        (Some(call.as_str()), Some(id)),
        "{v}"
    );
    let members: Vec<&str> = listed[0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["status"].as_str())
        .collect();
    assert_eq!(members, ["joined", "joined"], "{v}");
    let (_, v) = admin(&s, "GET", "/admin/rooms", &token, "");
    assert_eq!(v["rooms"], json!([{"room": call, "node": id, "span": []}]), "{v}");

    // Bad requests are named; an unknown node is not found.
    let (status, v) = admin(
        &s,
        "POST",
        &format!("/admin/nodes/{id}/drain"),
        &token,
        r#"{"deadline_secs": -3}"#,
    );
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    let (status, v) = admin(&s, "POST", "/admin/nodes/sfu-z/drain", &token, "");
    assert_eq!((status, v["error"].as_str()), (404, Some("no_such_node")), "{v}");

    // Drain the call's node with a 1 s deadline: it goes draining, new rooms go elsewhere, and the call moves.
    let (status, v) = admin(
        &s,
        "POST",
        &format!("/admin/nodes/{id}/drain"),
        &token,
        r#"{"deadline_secs": 1}"#,
    );
    assert_eq!(status, 202, "{v}");
    wait_state(&s, &token, id, "draining");
    let (mut carol, mut dave) = (phone(&s, "carol"), phone(&s, "dave"));
    let (jc, _) = answered_call(&mut carol, &mut dave);
    assert_eq!(
        room_addr(&jc),
        nodes[1 - on].http_addr(),
        "a draining node takes no new room"
    );
    for p in [&mut alice, &mut bob] {
        let m = p.wait("move");
        assert_eq!(
            (m["reason"].as_str(), room_addr(&m)),
            (Some("node_drained"), nodes[1 - on].http_addr()),
            "{m}"
        );
    }
    let (_, v) = admin(&s, "GET", "/admin/rooms", &token, "");
    let rooms = v["rooms"].as_array().expect("rooms");
    assert!(
        rooms.iter().all(|r| r["node"] == other),
        "every room on {other} now: {v}"
    );

    // Withdrawn, the node serves again; the process never stopped.
    let (status, v) = admin(&s, "DELETE", &format!("/admin/nodes/{id}/drain"), &token, "");
    assert_eq!((status, v["cancelled"].as_bool()), (200, Some(true)), "{v}");
    wait_state(&s, &token, id, "serving");
}

#[test]
fn an_ended_calls_room_closes_on_its_node() {
    let redis = Redis::start("close");
    let _nodes = [sfu_node(&redis, "sfu-a"), sfu_node(&redis, "sfu-b")];
    let s = signaling(&redis);
    wait_nodes(&s, 2);
    let (mut alice, mut bob) = (phone(&s, "alice"), phone(&s, "bob"));
    let (ja, jb) = answered_call(&mut alice, &mut bob);
    let (mut a, mut b) = join_media(&ja, &jb);
    assert!(hear_each_other(&mut a, &mut b), "media before the hangup");
    let call = ja["call"].as_str().expect("a call id");
    let r = alice.request(json!({"type": "hangup", "key": "bye", "call": call}));
    assert_eq!(r["type"], "reply", "{r}");
    // Both stay in the room; its node closes it on call control's order through Redis.
    let closed = run_until(&mut [&mut a, &mut b], Duration::from_secs(5), |cs| {
        cs.iter()
            .all(|c| c.of_type("left").iter().any(|m| m["reason"] == "the call ended"))
    });
    assert!(
        closed,
        "alice saw {:?}, bob {:?}\n{}",
        a.of_type("left"),
        b.of_type("left"),
        s.log_tail(20)
    );
}

#[test]
fn calls_between_devices_on_two_signaling_nodes_ring_answer_connect_and_end() {
    let redis = Redis::start("two-signaling");
    let _nodes = [
        sfu_node(&redis, "sfu-a"),
        sfu_node(&redis, "sfu-b"),
        sfu_node(&redis, "sfu-c"),
    ];
    let (s1, s2) = (signaling_named(&redis, "sig-1"), signaling_named(&redis, "sig-2"));
    wait_nodes(&s1, 3);
    wait_nodes(&s2, 3);

    // Presence crosses nodes: alice on node 1 watches bob, who connects on node 2.
    let mut alice = phone_on(&s1, "alice", "phone");
    let r = alice.request(json!({"type": "watch", "users": ["bob"]}));
    assert_eq!(r["type"], "reply", "{r}");
    let mut bob = phone_on(&s2, "bob", "phone");
    let p = alice.wait("presence");
    assert_eq!(
        (p["user"].as_str(), p["devices"].clone()),
        (Some("bob"), json!(["phone"])),
        "{p}"
    );

    // Alice (node 1) calls Bob (node 2): it rings there, the ringback comes back here, and the answer connects.
    let (ja, jb) = answered_call(&mut alice, &mut bob);
    assert_eq!(alice.wait("answered")["user"], "bob");
    assert_eq!(ja["sfu_url"], jb["sfu_url"], "one room for both sides");
    // Either node's admin API lists the call, and where its room is.
    let listed: Vec<Value> = [&s1, &s2]
        .iter()
        .map(|s| admin(s, "GET", "/admin/calls", &s.admin_token(), "").1)
        .collect();
    for v in &listed {
        let calls = v["calls"].as_array().expect("calls");
        assert_eq!(calls.len(), 1, "{v}");
        assert_eq!(calls[0]["call"], ja["room"], "{v}");
        assert!(calls[0]["node"].as_str().is_some_and(|n| n.starts_with("sfu-")), "{v}");
    }
    assert_eq!(listed[0]["calls"][0]["node"], listed[1]["calls"][0]["node"]);
    let (mut a, mut b) = join_media(&ja, &jb);
    assert!(
        hear_each_other(&mut a, &mut b),
        "media across signaling nodes\n{}",
        s1.log_tail(30)
    );
    for p in [&mut alice, &mut bob] {
        assert!(
            p.try_wait("active", Duration::from_secs(5)).is_some(),
            "active\n{}",
            s2.log_tail(30)
        );
    }
    // Bob hangs up on node 2; Alice hears it on node 1.
    let r = bob.request(json!({"type": "hangup", "key": "h1", "call": ja["room"]}));
    assert_eq!(r["type"], "reply", "{r}");
    assert_eq!(alice.wait("ended")["reason"], "hangup");
    // A retried hangup (same key) on node 2 gets the same answer: the answer is remembered in Redis.
    let again = bob.request(json!({"type": "hangup", "key": "h1", "call": ja["room"]}));
    assert_eq!(again["type"], r["type"], "{again}");
}

/// The answer (a `reply` or an `error`) to the one request sent with `send_text`.
fn answer(p: &mut Phone) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for t in ["reply", "error"] {
            if let Some(v) = p.try_wait(t, Duration::from_millis(20)) {
                return v;
            }
        }
    }
    panic!("no answer within 10 s");
}

#[test]
fn the_first_accept_wins_and_glare_merges_across_signaling_nodes() {
    let redis = Redis::start("races");
    let _nodes = [sfu_node(&redis, "sfu-a"), sfu_node(&redis, "sfu-b")];
    let (s1, s2) = (signaling_named(&redis, "sig-1"), signaling_named(&redis, "sig-2"));
    wait_nodes(&s1, 2);

    // Dave's phone is on node 1, his tablet on node 2; both answer Erin's call at once. One wins.
    let mut erin = phone_on(&s1, "erin", "phone");
    let mut phone = phone_on(&s1, "dave", "phone");
    let mut tablet = phone_on(&s2, "dave", "tablet");
    let r = erin.request(json!({"type": "invite", "key": "i", "to": ["dave"], "media": "audio"}));
    let call = r["call"].as_str().expect("a call").to_string();
    phone.wait("incoming");
    tablet.wait("incoming");
    let accept = json!({"type": "accept", "id": 1, "key": "a", "call": call});
    phone.send_text(&accept.to_string());
    tablet.send_text(&accept.to_string());
    let (rp, rt) = (answer(&mut phone), answer(&mut tablet));
    let errors: Vec<&Value> = [&rp, &rt].into_iter().filter(|r| r["type"] == "error").collect();
    assert_eq!(errors.len(), 1, "exactly one accept loses: {rp} / {rt}");
    assert_eq!(errors[0]["code"], "answered_elsewhere", "{}", errors[0]);
    let winner = if rp["type"] == "reply" { &mut phone } else { &mut tablet };
    winner.wait("join");
    erin.wait("join");

    // Frank (node 1) and Grace (node 2) call each other at once: one call, answered by the second invite.
    let mut frank = phone_on(&s1, "frank", "phone");
    let mut grace = phone_on(&s2, "grace", "phone");
    frank.send_text(&json!({"type": "invite", "id": 1, "key": "g1", "to": ["grace"], "media": "audio"}).to_string());
    grace.send_text(&json!({"type": "invite", "id": 1, "key": "g2", "to": ["frank"], "media": "audio"}).to_string());
    let (rf, rg) = (answer(&mut frank), answer(&mut grace));
    assert_eq!(rf["call"], rg["call"], "glare yields one call: {rf} / {rg}");
    let merged = [&rf, &rg].iter().filter(|r| r["merged"] == true).count();
    assert_eq!(merged, 1, "one invite answered the other's call: {rf} / {rg}");
    let (jf, jg) = (frank.wait("join"), grace.wait("join"));
    assert_eq!(jf["sfu_url"], jg["sfu_url"]);
}

#[test]
fn a_call_outlives_the_signaling_node_one_side_was_on() {
    let redis = Redis::start("signaling-kill");
    let _nodes = [sfu_node(&redis, "sfu-a"), sfu_node(&redis, "sfu-b")];
    let (s1, s2) = (signaling_named(&redis, "sig-1"), signaling_named(&redis, "sig-2"));
    wait_nodes(&s2, 2);
    let (mut alice, mut bob) = (phone_on(&s1, "alice", "phone"), phone_on(&s2, "bob", "phone"));
    let (ja, jb) = answered_call(&mut alice, &mut bob);
    let (mut a, mut b) = join_media(&ja, &jb);
    assert!(hear_each_other(&mut a, &mut b), "media before the kill");

    // Node 1 dies (SIGKILL). Its heartbeat expires, node 2 disconnects its devices, and Bob hears Alice is
    // reconnecting; her app reconnects to node 2, Bob hears she is back, and the call is still there.
    drop(s1);
    let r = bob.wait("reconnecting");
    assert_eq!(r["user"], "alice", "{r}");
    let mut alice = phone_on(&s2, "alice", "phone");
    assert_eq!(bob.wait("reconnected")["user"], "alice");
    let r = alice.request(json!({"type": "hangup", "key": "bye", "call": ja["room"]}));
    assert_eq!(r["type"], "reply", "the call lives in Redis, not in the dead node: {r}");
    assert_eq!(bob.wait("ended")["reason"], "hangup");
}

#[test]
fn a_call_whose_placing_signaling_node_died_still_moves_off_a_killed_sfu_node() {
    let redis = Redis::start("placer-kill");
    let mut nodes = [Some(sfu_node(&redis, "sfu-a")), Some(sfu_node(&redis, "sfu-b"))];
    let (s1, s2) = (signaling_named(&redis, "sig-1"), signaling_named(&redis, "sig-2"));
    wait_nodes(&s2, 2);
    // Bob answers on node 1, which places the call's room and follows it.
    let (mut alice, mut bob) = (phone_on(&s2, "alice", "phone"), phone_on(&s1, "bob", "phone"));
    let (ja, jb) = answered_call(&mut alice, &mut bob);
    let (mut a, mut b) = join_media(&ja, &jb);
    assert!(hear_each_other(&mut a, &mut b), "media before the kills");

    // Node 1 dies: node 2 takes its devices over (Alice hears Bob is reconnecting) and the rooms it followed.
    drop(s1);
    assert_eq!(alice.wait("reconnecting")["user"], "bob");
    let mut bob = phone_on(&s2, "bob", "phone");
    assert_eq!(alice.wait("reconnected")["user"], "bob");

    // Then the room's SFU node dies: node 2 moves the call, though it did not place it.
    let victim = nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(|n| n.http_addr() == room_addr(&ja)))
        .expect("the call's node");
    let survivor = nodes[1 - victim].as_ref().expect("alive").http_addr();
    drop(nodes[victim].take());
    let (ma, mb) = (alice.wait("move"), bob.wait("move"));
    for m in [&ma, &mb] {
        assert_eq!(m["reason"], "node_lost", "{m}");
        assert_eq!(room_addr(m), survivor, "the room moves to the live node: {m}");
    }
    drop((a, b));
    let (mut a, mut b) = join_media(&ma, &mb);
    assert!(
        hear_each_other(&mut a, &mut b),
        "media on the new node\n{}",
        s2.log_tail(30)
    );
}
