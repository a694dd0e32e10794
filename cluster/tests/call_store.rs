//! Call control's shared state against a real `redis-server`: the compare-and-set commit, timers fired once,
//! call ids unique, and events routed to the other nodes.

use hualu_cluster::{CallStore, Commit, Committed, Registry, Routed};
use hualu_common::config::ClusterConfig;
use std::time::Duration;

// The shared helper's restart methods serve the registry's tests, not these.
#[allow(dead_code)]
#[path = "../../tests/common/redis.rs"]
mod redis_server;
use redis_server::Redis;

fn store(redis: &Redis) -> CallStore {
    let cfg = ClusterConfig {
        redis_url: redis.url(),
        ..ClusterConfig::default()
    };
    CallStore::new(&Registry::connect(&cfg).expect("connect"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn write(name: &str, read: Option<&str>, value: Option<&str>) -> Commit {
    Commit {
        read: vec![(name.into(), read.map(String::from))],
        write: vec![(name.into(), value.map(String::from), 60_000)],
        ..Commit::default()
    }
}

#[test]
fn a_commit_writes_only_if_what_it_read_is_unchanged() {
    let redis = Redis::start("cas");
    runtime().block_on(async {
        let s = store(&redis);
        assert_eq!(s.read(&["user:a".into()]).await.expect("read"), [None]);
        // Two nodes read "absent" and both write: the first wins, the second must read again.
        assert_eq!(
            s.commit(&write("user:a", None, Some("one"))).await.expect("commit"),
            Committed::Done
        );
        assert_eq!(
            s.commit(&write("user:a", None, Some("two"))).await.expect("commit"),
            Committed::Conflict
        );
        assert_eq!(
            s.read(&["user:a".into()]).await.expect("read"),
            [Some("one".to_string())]
        );
        // Reading again, it wins; a delete is a write too.
        let c = write("user:a", Some("one"), Some("two"));
        assert_eq!(s.commit(&c).await.expect("commit"), Committed::Done);
        let c = write("user:a", Some("two"), None);
        assert_eq!(s.commit(&c).await.expect("commit"), Committed::Done);
        assert_eq!(s.read(&["user:a".into()]).await.expect("read"), [None]);
    });
}

#[test]
fn a_due_timer_fires_once_and_a_later_one_waits() {
    let redis = Redis::start("timers");
    runtime().block_on(async {
        let s = store(&redis);
        let mut c = write("call:c1", None, Some("ringing"));
        c.timers = vec![(1_000, "ring-1".into()), (5_000, "ring-2".into())];
        assert_eq!(s.commit(&c).await.expect("commit"), Committed::Done);
        assert_eq!(s.due_timers(2_000, 10).await.expect("due"), ["ring-1"]);
        // Two nodes fire it: one claims it, the other finds it gone, and nothing it wrote lands.
        let mut fire = write("call:c1", Some("ringing"), Some("missed"));
        fire.claim = Some("ring-1".into());
        assert_eq!(s.commit(&fire).await.expect("commit"), Committed::Done);
        let mut again = write("call:c1", Some("missed"), Some("twice"));
        again.claim = Some("ring-1".into());
        assert_eq!(s.commit(&again).await.expect("commit"), Committed::TimerGone);
        assert_eq!(
            s.read(&["call:c1".into()]).await.expect("read"),
            [Some("missed".to_string())]
        );
        assert!(s.due_timers(2_000, 10).await.expect("due").is_empty());
        assert_eq!(s.due_timers(6_000, 10).await.expect("due"), ["ring-2"]);
    });
}

#[test]
fn call_ids_are_unique_and_events_reach_the_other_nodes_only() {
    let redis = Redis::start("ids");
    runtime().block_on(async {
        let s = store(&redis);
        let (a, b) = (s.next_call().await.expect("id"), s.next_call().await.expect("id"));
        assert_eq!(b, a + 1);

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let follower = s.clone();
        tokio::spawn(async move { follower.follow_events("node-2".into(), move |e| drop(tx.send(e))).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let event = |from: &str| Routed {
            from: from.into(),
            user: "bob".into(),
            device: "phone".into(),
            event: serde_json::json!({"type": "incoming", "from": from}),
        };
        s.route(&event("node-2")).await.expect("route");
        s.route(&event("node-1")).await.expect("route");
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event");
        let got = got.expect("open");
        assert_eq!(
            (got.from.as_str(), got.user.as_str()),
            ("node-1", "bob"),
            "its own event is skipped"
        );
        assert!(tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err());
    });
}

#[test]
fn a_dead_signaling_nodes_devices_go_to_one_taker_once() {
    let redis = Redis::start("signodes");
    runtime().block_on(async {
        let cfg = ClusterConfig {
            redis_url: redis.url(),
            dead_after_ms: 300,
            ..ClusterConfig::default()
        };
        let reg = Registry::connect(&cfg).expect("connect");
        let s = CallStore::new(&reg);
        for n in ["sig-1", "sig-2"] {
            s.beat(n).await.expect("beat");
        }
        s.device_on("sig-1", "alice", "phone", true).await.expect("on");
        s.device_on("sig-1", "bob", "tablet", true).await.expect("on");
        s.device_on("sig-1", "bob", "tablet", false).await.expect("off");
        assert!(s.dead_nodes("sig-2").await.expect("dead").is_empty(), "both alive");
        assert_eq!(
            s.take_devices("sig-1", "sig-2").await.expect("take"),
            None,
            "a live node's devices stay"
        );
        reg.follow_room("sig-1", "room-1", true).await.expect("follow");
        reg.follow_room("sig-1", "room-2", true).await.expect("follow");
        reg.follow_room("sig-1", "room-2", false).await.expect("unfollow");
        reg.follow_room("sig-2", "room-9", true).await.expect("follow");
        assert!(s.connected("alice", "phone").await.expect("connected"));

        // sig-1 stops beating; sig-2 goes on.
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.beat("sig-2").await.expect("beat");
        assert_eq!(s.dead_nodes("sig-2").await.expect("dead"), ["sig-1"]);
        let taken = s.take_devices("sig-1", "sig-2").await.expect("take");
        let want = hualu_cluster::TakenOver {
            devices: vec![("alice".to_string(), "phone".to_string())],
            rooms: vec!["room-1".to_string()],
        };
        assert_eq!(taken, Some(want));
        assert_eq!(
            s.take_devices("sig-1", "sig-2").await.expect("take"),
            None,
            "taken once"
        );
        assert_eq!(
            reg.followed_rooms("sig-2").await.expect("rooms"),
            ["room-1", "room-9"],
            "its rooms are sig-2's"
        );
        assert!(reg.followed_rooms("sig-1").await.expect("rooms").is_empty());
        assert!(!s.connected("alice", "phone").await.expect("connected"));
        assert!(s.dead_nodes("sig-2").await.expect("dead").is_empty());
    });
}
