//! Interop with a second, independent WebRTC implementation: aiortc publishes through WHIP and plays through
//! WHEP (tests/interop/aiortc_whip.py), against `hualu sfu` as a process. scripts/test installs aiortc.

mod common;

use common::sfu::SfuServer;
use common::tools;
use std::time::Duration;

#[test]
fn aiortc_publishes_through_whip_and_plays_through_whep() {
    let server = SfuServer::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiortc_whip.py");
    let args = vec![
        script.to_string(),
        "--url".into(),
        format!("http://{}", server.http_addr()),
        "--publish-token".into(),
        server.token("aiortc-publisher", "interop"),
        "--view-token".into(),
        server.token("aiortc-viewer", "interop"),
    ];
    let out = tools::run("python3", &args, Duration::from_secs(60));
    assert!(
        out.success(),
        "aiortc through WHIP and WHEP failed (scripts/test installs aiortc: pip install aiortc)\n{out}\n{}",
        server.log_tail(40)
    );
    assert!(out.count("PASS aiortc WHIP") == 1, "{out}");
}
