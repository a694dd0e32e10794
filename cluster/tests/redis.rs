//! The registry against a real `redis-server` (Debian's), started on a Unix socket in a temporary
//! directory, so tests never share a Redis or a port.

use hualu_cluster::{Heartbeat, Identity, Load, MediaEvent, NodeInfo, NodeState, Registry};
use hualu_common::config::ClusterConfig;
use std::time::{Duration, Instant};

#[path = "../../tests/common/redis.rs"]
mod redis_server;
use redis_server::Redis;

fn config(redis: &Redis, dead_after_ms: u64) -> ClusterConfig {
    ClusterConfig {
        redis_url: redis.url(),
        heartbeat_ms: 100,
        dead_after_ms,
        max_participants: 100,
        ..ClusterConfig::default()
    }
}

fn info(id: &str, participants: u64) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        url: format!("ws://{id}/rtc"),
        region: String::new(),
        state: NodeState::Serving,
        load: Load {
            participants,
            ..Load::default()
        },
        max_participants: 100,
        started_ms: 1,
        sent_ms: 1,
        move_at_ms: 0,
        media: Vec::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn a_node_lives_while_it_beats_and_is_gone_after_dead_after() {
    let redis = Redis::start("beat");
    runtime().block_on(async {
        let reg = Registry::connect(&config(&redis, 400)).expect("connect");
        reg.heartbeat(&info("a", 3)).await.expect("beat a");
        reg.heartbeat(&info("b", 5)).await.expect("beat b");
        let nodes = reg.nodes().await.expect("nodes");
        assert_eq!(nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(nodes[1].load.participants, 5);
        // b keeps beating, a stops.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            reg.heartbeat(&info("b", 6)).await.expect("beat b");
        }
        let nodes = reg.nodes().await.expect("nodes");
        assert_eq!(nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["b"]);
        reg.deregister("b").await.expect("deregister");
        assert!(reg.nodes().await.expect("nodes").is_empty());
    });
}

#[test]
fn a_room_is_placed_once_and_only_on_a_live_node() {
    let redis = Redis::start("place");
    runtime().block_on(async {
        let reg = Registry::connect(&config(&redis, 3000)).expect("connect");
        reg.heartbeat(&info("a", 0)).await.expect("beat a");
        reg.heartbeat(&info("b", 0)).await.expect("beat b");
        assert_eq!(reg.place_room("r1", "a").await.expect("place"), Some("a".into()));
        assert_eq!(
            reg.place_room("r1", "b").await.expect("place again"),
            Some("a".into()),
            "a room already placed stays where it is"
        );
        assert_eq!(reg.place_room("r2", "ghost").await.expect("place on a dead node"), None);
        assert_eq!(reg.room_node("r2").await.expect("find"), None);
        assert_eq!(reg.room_node("r1").await.expect("find"), Some("a".into()));
        assert_eq!(reg.move_room("r1", "a", "b").await.expect("move"), Some("b".into()));
        assert_eq!(
            reg.move_room("r1", "a", "b").await.expect("move again"),
            Some("b".into()),
            "a room no longer on a is not moved from it"
        );
        assert_eq!(
            reg.move_room("r1", "b", "ghost").await.expect("move to a dead node"),
            None
        );
        assert_eq!(reg.room_node("r1").await.expect("find"), Some("b".into()), "and stays");
        reg.close_room("r1").await.expect("close");
        assert_eq!(
            reg.place_room("r1", "b").await.expect("place after close"),
            Some("b".into())
        );
    });
}

#[test]
fn concurrent_placements_of_one_room_agree() {
    let redis = Redis::start("race");
    runtime().block_on(async {
        let reg = Registry::connect(&config(&redis, 3000)).expect("connect");
        for id in ["a", "b", "c", "d"] {
            reg.heartbeat(&info(id, 0)).await.expect("beat");
        }
        for round in 0..20 {
            let room = format!("race-{round}");
            let tries = ["a", "b", "c", "d"].map(|id| {
                let (reg, room) = (reg.clone(), room.clone());
                tokio::spawn(async move { reg.place_room(&room, id).await })
            });
            let mut answers = Vec::new();
            for t in tries {
                answers.push(t.await.expect("task").expect("place"));
            }
            assert!(answers.iter().all(|a| a == &answers[0] && a.is_some()), "{answers:?}");
        }
    });
}

#[test]
fn commands_work_again_once_redis_is_back() {
    let mut redis = Redis::start("restart");
    let rt = runtime();
    let reg = rt.block_on(async { Registry::connect(&config(&redis, 3000)).expect("connect") });
    rt.block_on(async { reg.heartbeat(&info("a", 0)).await.expect("beat") });
    redis.restart();
    let until = Instant::now() + Duration::from_secs(10);
    let back = rt.block_on(async {
        loop {
            if reg.heartbeat(&info("a", 1)).await.is_ok() {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(back, "the registry reconnects after a Redis restart");
    let nodes = rt.block_on(async { reg.nodes().await.expect("nodes") });
    assert_eq!(nodes.len(), 1);
}

#[test]
fn the_heartbeat_reports_load_and_state_and_leaves_on_stop() {
    let redis = Redis::start("heartbeat");
    let cfg = config(&redis, 1000);
    let who = Identity {
        id: "sfu-x".into(),
        url: "ws://127.0.0.1:1/rtc".into(),
        media: vec![
            "10.0.0.7:50000".parse().expect("addr"),
            "10.0.0.7:50001".parse().expect("addr"),
        ],
    };
    let started = Instant::now();
    let beat = Heartbeat::start(
        &cfg,
        who,
        Box::new(move || (2, 4, started.elapsed().as_millis() as u64)),
    )
    .expect("start");
    let rt = runtime();
    let reg = rt.block_on(async { Registry::connect(&cfg).expect("connect") });
    let read = |want: NodeState| {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let nodes = rt.block_on(async { reg.nodes().await.expect("nodes") });
            if let Some(n) = nodes.into_iter().find(|n| n.state == want) {
                return n;
            }
            assert!(Instant::now() < until, "no {want:?} heartbeat within 5 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let serving = read(NodeState::Serving);
    assert_eq!(
        (serving.id.as_str(), serving.load.rooms, serving.load.participants),
        ("sfu-x", 2, 4)
    );
    assert_eq!(serving.max_participants, 100);
    assert_eq!(
        serving.media.len(),
        2,
        "the media addresses ride along: {:?}",
        serving.media
    );
    let asked = hualu_common::clock::unix_now_ms();
    beat.drain(Duration::from_secs(7));
    let draining = read(NodeState::Draining);
    assert!(
        (asked + 7000..asked + 7500).contains(&draining.move_at_ms),
        "its rooms move 7 s after the drain began: {} vs {asked}",
        draining.move_at_ms
    );
    assert!(!draining.moving(asked) && draining.moving(asked + 7500));
    // The load source counts 1,000 packets a second.
    assert!(
        (500..2000).contains(&draining.load.packets_per_s),
        "{:?}",
        draining.load
    );
    beat.stop();
    assert!(
        rt.block_on(async { reg.nodes().await.expect("nodes") }).is_empty(),
        "a clean stop leaves at once"
    );
}

#[test]
fn media_reports_reach_every_follower_and_following_survives_a_redis_restart() {
    let mut redis = Redis::start("media");
    let cfg = config(&redis, 1000);
    let who = Identity {
        id: "sfu-m".into(),
        url: "ws://127.0.0.1:1/rtc".into(),
        media: Vec::new(),
    };
    let beat = Heartbeat::start(&cfg, who, Box::new(|| (0, 0, 0))).expect("start");
    let sink = beat.media();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, MediaEvent)>();
    // Two followers on a thread of their own, which ends with the test's process.
    let follow_cfg = cfg.clone();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            for follower in 0..2 {
                let reg = Registry::connect(&follow_cfg).expect("connect");
                let tx = tx.clone();
                tokio::spawn(hualu_cluster::media::follow(reg, move |e| {
                    let _ = tx.send((follower, e));
                }));
            }
            std::future::pending::<()>().await
        })
    });
    let event = |n: usize| MediaEvent {
        room: format!("call-{n}"),
        identity: "alice".into(),
        flowing: n % 2 == 0,
        node: "sfu-m".into(),
    };
    // Reports published before a follower has subscribed are gone, so each round publishes until both followers
    // have seen one, then checks what they saw is what was sent.
    let round = |first: usize| {
        let until = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        let mut n = first;
        while !(0..2).all(|f| seen.iter().any(|(g, _)| *g == f)) {
            assert!(
                Instant::now() < until,
                "two followers did not both hear a report within 10 s"
            );
            let e = event(n);
            sink.report(&e.room, &e.identity, e.flowing);
            n += 1;
            while let Ok(e) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push(e);
            }
        }
        for (_, e) in &seen {
            let k: usize = e.room["call-".len()..].parse().expect("a number");
            assert!((first..n).contains(&k) && *e == event(k), "{e:?}");
        }
    };
    round(0);
    redis.restart();
    round(1000);
    beat.stop();
}

#[test]
fn a_redis_that_restarted_empty_does_not_count_a_missing_node_dead_for_a_dead_window() {
    let mut redis = Redis::start("since");
    let rt = runtime();
    let reg = rt.block_on(async { Registry::connect(&config(&redis, 300)).expect("connect") });
    let check = |reg: &Registry| rt.block_on(async { reg.absence_is_death().await });
    assert!(
        !check(&reg).expect("fresh"),
        "a fresh Redis has not heard every node yet"
    );
    std::thread::sleep(Duration::from_millis(350));
    assert!(
        check(&reg).expect("a dead window later"),
        "after a dead window, absence is death"
    );
    redis.restart();
    let until = Instant::now() + Duration::from_secs(10);
    let after = loop {
        match check(&reg) {
            Ok(v) => break v,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("Redis did not come back: {e}"),
        }
    };
    assert!(!after, "a restarted Redis forgot the nodes: absence is not yet death");
    std::thread::sleep(Duration::from_millis(350));
    assert!(
        check(&reg).expect("later"),
        "a dead window after the restart, absence is death again"
    );
}

#[test]
fn a_room_spans_live_nodes_while_it_is_placed_and_closing_forgets_the_span() {
    let redis = Redis::start("span");
    runtime().block_on(async {
        let reg = Registry::connect(&config(&redis, 3000)).expect("connect");
        for id in ["a", "b", "c"] {
            reg.heartbeat(&info(id, 0)).await.expect("beat");
        }
        assert!(
            !reg.extend_room("r1", "b").await.expect("extend"),
            "a room not placed does not span"
        );
        assert_eq!(reg.room_span("r1").await.expect("span"), Vec::<String>::new());
        reg.place_room("r1", "a").await.expect("place");
        assert!(reg.extend_room("r1", "c").await.expect("extend"));
        assert!(reg.extend_room("r1", "b").await.expect("extend"));
        assert!(reg.extend_room("r1", "b").await.expect("extend again"), "twice is once");
        assert!(
            !reg.extend_room("r1", "ghost").await.expect("extend to a dead node"),
            "only to a live node"
        );
        assert_eq!(reg.room_span("r1").await.expect("span"), ["b", "c"]);
        assert_eq!(
            reg.room_and_span("r1").await.expect("room and span"),
            (Some("a".into()), vec!["b".to_string(), "c".to_string()])
        );
        reg.place_room("r2", "b").await.expect("place");
        let rooms = ["r1".to_string(), "r2".to_string(), "r3".to_string()];
        assert_eq!(
            reg.room_spans(&rooms).await.expect("spans"),
            [vec!["b".to_string(), "c".to_string()], vec![], vec![]]
        );
        reg.shrink_room("r1", "c").await.expect("shrink");
        assert_eq!(reg.room_span("r1").await.expect("span"), ["b"]);
        // The span lives as long as the room's record.
        let ttl: i64 = redis::cmd("PTTL")
            .arg("hualu:span:r1")
            .query_async(&mut redis_connection(&redis).await)
            .await
            .expect("pttl");
        assert!(ttl > 23 * 3600 * 1000, "{ttl}");
        reg.close_room("r1").await.expect("close");
        assert_eq!(reg.room_and_span("r1").await.expect("gone"), (None, Vec::new()));
        assert!(
            !reg.extend_room("r1", "b").await.expect("extend a closed room"),
            "a closed call's room does not come back as a span"
        );
    });
}

async fn redis_connection(redis: &Redis) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).expect("client");
    client.get_multiplexed_async_connection().await.expect("connection")
}
