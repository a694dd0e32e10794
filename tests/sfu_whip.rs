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
    let (mut viewer, viewed) = RoomClient::via_http(addr, &server.token("viewer", "live"), "/whep");
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
    let etag = posted.header("etag").expect("an ETag").to_string();
    let stale = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/trickle-ice-sdpfrag"),
        ("If-Match", "\"not-this-session\""),
    ];
    let r = http::request(addr, "PATCH", &location, &stale, "a=end-of-candidates\r\n").expect("answer");
    assert_eq!(r.status, 412, "a trickle for another ICE session is refused: {r:?}");

    // The publisher changes networks and restarts ICE by PATCH; the viewer hears it again.
    let restarted = publisher.restart_by_patch(addr, &location, &server.token("obs", "live"), &posted.body);
    assert_eq!(restarted.status, 200, "{restarted:?}\n{}", server.log_tail(40));
    assert_eq!(
        restarted.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert!(restarted.body.contains("a=candidate:"), "{}", restarted.body);
    let new_etag = restarted.header("etag").expect("a new ETag");
    assert_ne!(new_etag, etag, "the ICE session changed");
    let before = viewer.received.values().sum::<usize>();
    let heard_again = run_until(&mut [&mut publisher, &mut viewer], Duration::from_secs(15), |cs| {
        cs[1].received.values().sum::<usize>() >= before + 50
    });
    assert!(
        heard_again,
        "after the restart the viewer received {:?} (before: {before})\n{}",
        viewer.received,
        server.log_tail(40)
    );

    // Then the viewer does the same through WHEP.
    let viewer_at = viewed.header("location").expect("a Location").to_string();
    let restarted = viewer.restart_by_patch(addr, &viewer_at, &server.token("viewer", "live"), &viewed.body);
    assert_eq!(restarted.status, 200, "{restarted:?}\n{}", server.log_tail(40));
    let before = viewer.received.values().sum::<usize>();
    let heard_again = run_until(&mut [&mut publisher, &mut viewer], Duration::from_secs(15), |cs| {
        cs[1].received.values().sum::<usize>() >= before + 50
    });
    assert!(
        heard_again,
        "the viewer's restart: {:?} (before: {before})",
        viewer.received
    );

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
