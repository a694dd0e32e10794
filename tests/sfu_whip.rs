//! WHIP and WHEP end to end: `hualu sfu` as a process, a str0m publisher POSTing to `/whip` and a str0m viewer
//! POSTing to `/whep`, over real UDP on loopback.

mod common;

use common::http;
use common::room_client::{run_until, RoomClient};
use common::sfu::SfuServer;
use std::time::Duration;

#[test]
fn a_whip_publisher_is_heard_by_a_whep_viewer_and_leaves_with_delete() {
    let server = SfuServer::start();
    let addr = server.http_addr();
    let (mut publisher, posted) = RoomClient::via_http(addr, &server.token("obs", "live"), "/whip");
    let location = posted.header("location").expect("a Location").to_string();
    assert!(location.starts_with("/whip/"), "{location}");
    assert_eq!(posted.header("content-type"), Some("application/sdp"));
    let link = posted.header("link").expect("TURN servers in Link headers");
    assert!(
        link.contains("rel=\"ice-server\"") && link.contains("username=\""),
        "{link}"
    );
    let (mut viewer, _) = RoomClient::via_http(addr, &server.token("viewer", "live"), "/whep");
    let heard = run_until(&mut [&mut publisher, &mut viewer], Duration::from_secs(15), |cs| {
        cs[1].mids_with(50) >= 1
    });
    assert!(
        heard,
        "the viewer received {:?}\n{}",
        viewer.received,
        server.log_tail(40)
    );

    let auth = format!("Bearer {}", server.token("obs", "live"));
    let frag = "a=ice-ufrag:zzzz\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n";
    let patch = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/trickle-ice-sdpfrag"),
    ];
    let r = http::request(addr, "PATCH", &location, &patch, frag).expect("answer");
    assert_eq!(r.status, 501, "an ICE restart by PATCH is refused: {r:?}");
    let r = http::request(addr, "DELETE", &location, &[("Authorization", &auth)], "").expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    let r = http::request(addr, "DELETE", &location, &[("Authorization", &auth)], "").expect("answer");
    assert_eq!(r.status, 404, "the session is gone: {r:?}");
    let before = viewer.received.clone();
    common::room_client::run_for(&mut [&mut viewer], Duration::from_secs(1));
    assert_eq!(
        viewer.received, before,
        "nothing reaches the viewer once the publisher left"
    );
}

#[test]
fn whip_refuses_bad_requests_with_a_reason() {
    let server = SfuServer::start();
    let addr = server.http_addr();
    let r = http::request(addr, "POST", "/whip", &[("Content-Type", "application/sdp")], "v=0").expect("answer");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("Bearer"), "{r:?}");
    let auth = format!("Bearer {}", server.token("obs", "live"));
    let r = http::request(
        addr,
        "POST",
        "/whip",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        "x",
    )
    .expect("answer");
    assert_eq!(r.status, 415, "{r:?}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/sdp")];
    let r = http::request(addr, "POST", "/whip", &headers, "not sdp").expect("answer");
    assert_eq!(r.status, 400, "{r:?}");
    let r = http::request(addr, "PATCH", "/whip/nope", &headers, "").expect("answer");
    assert_eq!(r.status, 404, "{r:?}");
}
