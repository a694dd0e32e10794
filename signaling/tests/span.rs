//! Rooms that span SFU nodes, as call control places them: a real `redis-server`, fake SFU nodes that heartbeat
//! into it, and [`ClusterPlacement`] deciding each device's node, recording extensions and minting tokens whose
//! `grants.links` name the room's other nodes; and a room placed by one signaling node and ended on another.

use hualu_cluster::{Load, NodeInfo, NodeState, Registry};
use hualu_common::config::{ClusterConfig, SelectorKind};
use hualu_common::token::{Claims, Verifier};
use hualu_signaling::core::{CallId, Device};
use hualu_signaling::server::cluster::{ClusterPlacement, Moved};
use hualu_signaling::server::{LocalSfu, Placement};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

// Only part of the shared helper is used here.
#[allow(dead_code)]
#[path = "../../tests/common/redis.rs"]
mod redis_server;
use redis_server::Redis;

const KEY: (&str, &str) = ("app1", "0123456789abcdef0123456789abcdef");

fn config(redis: &Redis, region: &str, selector: SelectorKind) -> ClusterConfig {
    ClusterConfig {
        redis_url: redis.url(),
        region: region.into(),
        selector,
        heartbeat_ms: 100,
        dead_after_ms: 600,
        ..ClusterConfig::default()
    }
}

fn node(id: &str, region: &str, max: u64, port: u16) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        url: format!("ws://{id}/rtc"),
        region: region.into(),
        state: NodeState::Serving,
        load: Load::default(),
        max_participants: max,
        started_ms: 1,
        sent_ms: 0,
        move_at_ms: 0,
        media: vec![std::net::SocketAddr::from(([10, 0, 0, 1], port))],
    }
}

/// Fake SFU nodes beating every 100 ms while they are in the returned set.
fn beat(reg: Registry, nodes: Vec<NodeInfo>) -> Arc<Mutex<HashSet<String>>> {
    let alive: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(nodes.iter().map(|n| n.id.clone()).collect()));
    let live = alive.clone();
    tokio::spawn(async move {
        loop {
            for n in &nodes {
                if live.lock().expect("lock").contains(&n.id) {
                    let mut n = n.clone();
                    n.sent_ms = hualu_common::clock::unix_now_ms();
                    let _ = reg.heartbeat(&n).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    alive
}

fn placement(cfg: &ClusterConfig) -> (ClusterPlacement, mpsc::UnboundedReceiver<Moved>) {
    let tokens = LocalSfu {
        sfu_url: String::new(),
        key: (KEY.0.into(), KEY.1.into()),
        token_ttl_secs: 600,
        turn: None,
        close_room: None,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    (ClusterPlacement::start(cfg, tokens, tx).expect("start"), rx)
}

/// The `join`'s node and its token's claims.
fn joined(p: &ClusterPlacement, call: &CallId, user: &str) -> (String, Claims) {
    let v = p.join(call, &Device::new(user, "phone")).expect("a join");
    let keys: BTreeMap<String, String> = [(KEY.0.to_string(), KEY.1.to_string())].into();
    let claims = Verifier::new(&keys)
        .verify(v["token"].as_str().expect("a token"), hualu_common::clock::unix_now())
        .expect("a valid token");
    (v["sfu_url"].as_str().expect("a url").to_string(), claims)
}

async fn eventually<T: PartialEq + std::fmt::Debug>(want: T, mut read: impl AsyncFnMut() -> T) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let got = read().await;
        if got == want {
            return;
        }
        assert!(Instant::now() < until, "still {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn a_device_in_another_region_joins_a_node_there_and_the_room_spans_both() {
    let redis = Redis::start("span-region");
    runtime().block_on(async {
        let cfg = config(&redis, "eu", SelectorKind::Region);
        let reg = Registry::connect(&cfg).expect("connect");
        beat(
            reg.clone(),
            vec![node("us-1", "us", 100, 5000), node("eu-1", "eu", 100, 6000)],
        );
        let (eu, _moves) = placement(&cfg);
        tokio::time::sleep(Duration::from_millis(400)).await;
        // A signaling node in the us placed the call's room there.
        let call = CallId("c1".into());
        eventually(Some("us-1".to_string()), async || {
            reg.place_room("c1", "us-1").await.expect("place")
        })
        .await;
        eu.locate(&call).await;
        let (url, claims) = joined(&eu, &call, "alice");
        assert_eq!(
            url, "ws://eu-1/rtc",
            "alice is in the eu: the room extends to its node there"
        );
        assert_eq!(
            claims.grants.links,
            ["10.0.0.1:5000"],
            "her node links to the room's home"
        );
        eventually(vec!["eu-1".to_string()], async || {
            reg.room_span("c1").await.expect("span")
        })
        .await;
        // A second eu device reuses the extension, also when another signaling node of the eu looks it up.
        let (eu2, _m) = placement(&cfg);
        tokio::time::sleep(Duration::from_millis(300)).await;
        eu2.locate(&call).await;
        let (url, claims) = joined(&eu2, &call, "carol");
        assert_eq!(
            (url.as_str(), claims.grants.links),
            ("ws://eu-1/rtc", vec!["10.0.0.1:5000".to_string()])
        );
        assert_eq!(reg.room_span("c1").await.expect("span"), ["eu-1"]);
        // A us signaling node sends its devices home, with a link to the eu node.
        let (us, _m) = placement(&config(&redis, "us", SelectorKind::Region));
        tokio::time::sleep(Duration::from_millis(300)).await;
        us.locate(&call).await;
        let (url, claims) = joined(&us, &call, "bob");
        assert_eq!(
            (url.as_str(), claims.grants.links),
            ("ws://us-1/rtc", vec!["10.0.0.1:6000".to_string()])
        );
        assert_eq!(us.room_nodes("c1").await, (Some("us-1".into()), vec!["eu-1".into()]));
    });
}

#[test]
fn a_full_home_extends_and_the_placing_node_follows_and_closes_the_span() {
    let redis = Redis::start("span-full");
    runtime().block_on(async {
        let cfg = config(&redis, "", SelectorKind::LowestLoad);
        let reg = Registry::connect(&cfg).expect("connect");
        let alive = beat(reg.clone(), vec![node("a", "", 2, 5000), node("b", "", 2, 6000)]);
        let (p, mut moves) = placement(&cfg);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let call = CallId("g1".into());
        p.place(&call).expect("placed");
        let home = p.node_of("g1").expect("a home");
        let other = if home == "a" { "b" } else { "a" };
        eventually(Some(home.clone()), async || reg.room_node("g1").await.expect("room")).await;
        // The room was placed for two: both join its home, though it now counts full.
        for user in ["alice", "bob"] {
            let (url, claims) = joined(&p, &call, user);
            assert_eq!(url, format!("ws://{home}/rtc"), "{user}");
            assert!(claims.grants.links.is_empty(), "{user}: {:?}", claims.grants.links);
        }
        let (url, claims) = joined(&p, &call, "carol");
        assert_eq!(
            url,
            format!("ws://{other}/rtc"),
            "a third does not fit on a node of two"
        );
        assert_eq!(claims.grants.links.len(), 1);
        eventually(vec![other.to_string()], async || {
            reg.room_span("g1").await.expect("span")
        })
        .await;
        assert!(p.hosts("g1", &home) && p.hosts("g1", other) && !p.accepts("g1", "elsewhere").await);
        // The span node dies: it is dropped, and the call's devices are told to join again.
        alive.lock().expect("lock").remove(other);
        let moved = tokio::time::timeout(Duration::from_secs(5), moves.recv()).await;
        assert_eq!(
            moved.expect("a move within 5 s"),
            Some(Moved {
                call: call.clone(),
                reason: "node_lost"
            })
        );
        assert!(!p.hosts("g1", other));
        assert_eq!(reg.room_span("g1").await.expect("span"), Vec::<String>::new());
        // The call ends: the room closes on all of its nodes, and Redis forgets it.
        let closes = Arc::new(Mutex::new(Vec::new()));
        for id in ["a", "b"] {
            let seen = closes.clone();
            tokio::spawn(hualu_cluster::media::follow_closes(
                reg.clone(),
                id.into(),
                move |room| seen.lock().expect("lock").push(room.to_string()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.close(&call);
        eventually((None, Vec::new()), async || {
            reg.room_and_span("g1").await.expect("gone")
        })
        .await;
        eventually(vec!["g1".to_string()], async || closes.lock().expect("lock").clone()).await;
    });
}

#[test]
fn media_reports_from_an_extension_another_node_made_are_taken() {
    let redis = Redis::start("span-media");
    runtime().block_on(async {
        let cfg = config(&redis, "", SelectorKind::LowestLoad);
        let reg = Registry::connect(&cfg).expect("connect");
        beat(reg.clone(), vec![node("a", "", 100, 5000), node("b", "", 100, 6000)]);
        let (p, _moves) = placement(&cfg);
        tokio::time::sleep(Duration::from_millis(400)).await;
        p.place(&CallId("m1".into())).expect("placed");
        let home = p.node_of("m1").expect("a home");
        let other = if home == "a" { "b" } else { "a" };
        eventually(Some(home.clone()), async || reg.room_node("m1").await.expect("room")).await;
        assert!(!p.accepts("m1", other).await, "not a node of the room");
        // Another signaling node extended the room: its media reports count before the next read of the spans.
        assert!(reg.extend_room("m1", other).await.expect("extend"));
        assert!(p.accepts("m1", other).await);
    });
}

#[test]
fn a_room_whose_call_ended_on_another_signaling_node_is_no_longer_followed() {
    let redis = Redis::start("span-ended");
    runtime().block_on(async {
        let cfg = config(&redis, "", SelectorKind::LowestLoad);
        let reg = Registry::connect(&cfg).expect("connect");
        let alive = beat(reg.clone(), vec![node("a", "", 100, 5000), node("b", "", 100, 6000)]);
        let (placer, mut moves) = placement(&cfg);
        let (other, _) = placement(&cfg);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let call = CallId("e1".into());
        placer.place(&call).expect("placed");
        let home = placer.node_of("e1").expect("followed");
        eventually(Some(home.clone()), async || reg.room_node("e1").await.expect("room")).await;
        // The last hangup is taken on the other signaling node, which closes the room.
        other.locate(&call).await;
        other.close(&call);
        eventually(None, async || placer.node_of("e1")).await;
        // Its home dies afterwards: nothing moves for the ended call.
        alive.lock().expect("lock").remove(&home);
        let moved = tokio::time::timeout(Duration::from_secs(2), moves.recv()).await;
        assert!(moved.is_err(), "no move for an ended call: {moved:?}");
        assert_eq!(reg.room_node("e1").await.expect("read"), None);
    });
}
