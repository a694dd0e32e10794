//! The load harness through a cluster's drain and failover: a real `redis-server`, two `hualu sfu` nodes with
//! production's heartbeat (1 s) and death (3 s) timings, and `hualu signaling`. With calls running, one SFU node
//! is drained (SIGTERM, 5 s deadline) or killed (SIGKILL); each of its calls moves to the other node, the
//! harness's callers follow the `move`, no call drops, and the harness reports each participant's media gap.

mod common;

use common::redis::Redis;
use common::sfu::{SfuServer, API_KEY, API_SECRET};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

fn cluster_toml(redis: &Redis, node: &str) -> String {
    format!(
        "\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{node}\"\nheartbeat_ms = 1000\ndead_after_ms = 3000\n\
         drain_deadline_secs = 5\n\n[signaling]\nuser_rate = 50.0\nip_rate = 1000.0\nip_burst = 2000.0\n",
        redis.url()
    )
}

/// Starts the smoke scenario against signaling `s`: calls placed over 4 s, each held 16–18 s, so every call is
/// up when a node goes at 7 s and still up after a 5 s drain deadline.
fn start_harness(s: &SfuServer, out: &Path) -> Child {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/loadtest/smoke.toml");
    let sets = [
        format!("servers.signaling=ws://{}/ws", s.http_addr()),
        format!("servers.api_key={API_KEY}"),
        format!("servers.metrics=[\"http://{}/metrics\"]", s.metrics_addr()),
        "duration_s=4".into(),
        "arrival.rate_per_s=2.0".into(),
        "arrival.hold={ dist = \"uniform\", min_s = 16.0, max_s = 18.0 }".into(),
        "thresholds.min_calls_answered=4".into(),
    ];
    let mut cmd = Command::new(common::harness::binary());
    cmd.arg("run").arg(scenario).arg("--quiet").arg("--out").arg(out);
    for set in &sets {
        cmd.args(["--set", set]);
    }
    cmd.env("HUALU_LOADTEST_API_SECRET", API_SECRET);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("start hualu-loadtest")
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Waits until call control counts `n` live SFU nodes.
fn wait_nodes(s: &SfuServer, n: usize) {
    let until = Instant::now() + Duration::from_secs(15);
    while common::http::get(s.metrics_addr(), "/metrics")
        .map(|r| common::http::metric_sum(&r.body, "hualu_cluster_nodes", &[]))
        != Some(Some(n as f64))
    {
        assert!(
            Instant::now() < until,
            "call control did not see {n} nodes\n{}",
            s.log_tail(30)
        );
        sleep(Duration::from_millis(100));
    }
}

/// Runs the harness with calls on both nodes, does `strike` to the first node 7 s in, and returns the call
/// records once the run ends; asserts that the run passed its thresholds and that no call dropped.
fn run_through(name: &str, strike: impl FnOnce(&mut Option<SfuServer>)) -> Vec<Value> {
    let redis = Redis::start(name);
    let mut a = Some(SfuServer::start_with("sfu", &cluster_toml(&redis, "sfu-a")));
    let _b = SfuServer::start_with("sfu", &cluster_toml(&redis, "sfu-b"));
    let s = SfuServer::start_with("signaling", &cluster_toml(&redis, "signaling"));
    wait_nodes(&s, 2);
    let out = out_dir(&format!("cluster-moves-{name}"));
    let run = start_harness(&s, &out);
    sleep(Duration::from_secs(7));
    strike(&mut a);
    let run = run.wait_with_output().expect("the harness ends");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stdout}\n{stderr}\n{}", s.log_tail(40));
    let calls = std::fs::read_to_string(out.join("calls.jsonl")).expect("calls.jsonl");
    let records: Vec<Value> = calls
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    assert!(records.len() >= 6, "{} calls", records.len());
    for r in &records {
        assert_eq!(r["result"], "ok", "no call drops: {r}");
    }
    records
}

/// Every move has `reason` and a measured gap; gives the gaps, and how many calls moved.
fn gaps(records: &[Value], reason: &str) -> (Vec<f64>, usize) {
    let moved: Vec<&Value> = records
        .iter()
        .filter(|r| r["moves"].as_array().is_some_and(|m| !m.is_empty()))
        .collect();
    let mut gaps = Vec::new();
    for r in &moved {
        let moves = r["moves"].as_array().expect("moves");
        assert_eq!(moves.len(), 2, "both participants of a moved 1:1 call moved: {r}");
        for m in moves {
            assert_eq!(m["reason"], reason, "{m}");
            gaps.push(
                m["gap_ms"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("audio came back after the move: {r}")),
            );
        }
        // Both rooms scored: two legs from the first node, two from the second.
        assert_eq!(r["legs"].as_array().map(Vec::len), Some(4), "{r}");
    }
    gaps.sort_by(f64::total_cmp);
    (gaps, moved.len())
}

#[test]
fn a_drained_nodes_calls_move_at_the_deadline_and_the_harness_reports_each_gap() {
    let records = run_through("drain", |a| a.as_ref().expect("sfu-a").terminate());
    let (gaps, moved) = gaps(&records, "node_drained");
    assert!(moved >= 1, "some calls were on the drained node: {records:?}");
    eprintln!(
        "drain: {moved} of {} calls moved; media gaps {gaps:?} ms",
        records.len()
    );
}

#[test]
fn a_killed_nodes_calls_recover_on_the_other_and_the_harness_measures_it() {
    let records = run_through("kill", |a| drop(a.take()));
    let (gaps, moved) = gaps(&records, "node_lost");
    assert!(moved >= 1, "some calls were on the killed node: {records:?}");
    eprintln!("kill: {moved} of {} calls moved; media gaps {gaps:?} ms", records.len());
}
