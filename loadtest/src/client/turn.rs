//! Opening a participant's network: a plain UDP socket, or, with `network.transport = "relay"`, a socket
//! holding a TURN allocation on the server its `join` names, made before the peer offers (its relayed address
//! is the peer's only candidate). The allocation runs here, in the device's task, with a tokio socket; the
//! socket then moves to a media shard, allocation and all.

use super::media::MediaError;
use super::net::{bind, Net};
use super::Ctx;
use crate::relay::{Relay, RelayEvent};
use crate::scenario::Transport;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::time::timeout_at;

/// The network for a participant of `profile`, as the scenario's transport says.
pub async fn open(
    ctx: &Ctx,
    profile: &str,
    join: &Value,
    source: Option<IpAddr>,
    seed: u64,
) -> Result<Net, MediaError> {
    if ctx.scenario.network.transport != Transport::Relay {
        return Ok(Net::bind(ctx, profile, source, seed)?);
    }
    let (server, user, pass) = turn_server(join)?;
    let std = bind(source)?;
    std.set_nonblocking(true)?;
    let udp = UdpSocket::from_std(std)?;
    let deadline = Instant::now() + Duration::from_secs_f64(ctx.scenario.media.connect_timeout_s);
    let mut relay = Relay::allocate(udp.local_addr()?, server, &user, &pass, ctx.start, deadline);
    allocate(&udp, &mut relay, deadline).await?;
    let std = udp.into_std()?;
    Ok(Net::with_socket(ctx, std, profile, source, seed, Some(relay)))
}

/// Drives the allocation until the relayed address comes, the server refuses, or `deadline` passes.
async fn allocate(udp: &UdpSocket, relay: &mut Relay, deadline: Instant) -> Result<(), MediaError> {
    let mut buf = vec![0u8; 2048];
    let local = udp.local_addr()?;
    loop {
        let now = Instant::now();
        let wake = relay.handle_timeout(now);
        while let Some(t) = relay.poll_transmit(now) {
            udp.send_to(&t, relay.server()).await?;
        }
        while let Some(e) = relay.poll_event() {
            match e {
                RelayEvent::Allocated(_) => return Ok(()),
                RelayEvent::Failed(e) => return Err(MediaError::Relay(e.to_string())),
                RelayEvent::Permitted(_) => {}
            }
        }
        if now >= deadline {
            return Err(MediaError::Relay(format!("no allocation from {}", relay.server())));
        }
        let until = wake.min(deadline).max(now + Duration::from_millis(1));
        if let Ok(r) = timeout_at(until.into(), udp.recv_from(&mut buf)).await {
            let (n, from) = r?;
            let _ = relay.receive(Instant::now(), from, local, &buf[..n]);
        }
    }
}

/// The first UDP TURN server of a `join`'s `ice_servers`, with its REST credentials.
fn turn_server(join: &Value) -> Result<(SocketAddr, String, String), MediaError> {
    for s in join["ice_servers"].as_array().into_iter().flatten() {
        let urls = s["urls"].as_array().into_iter().flatten().filter_map(Value::as_str);
        for url in urls.chain(s["urls"].as_str()) {
            let Some(addr) = udp_turn_url(url) else { continue };
            let user = s["username"].as_str().unwrap_or_default().to_string();
            let pass = s["credential"].as_str().unwrap_or_default().to_string();
            return Ok((addr, user, pass));
        }
    }
    Err(MediaError::Relay("the join names no TURN server over UDP".into()))
}

/// `turn:host:port[?transport=udp]` → an address (UDP is TURN's default transport).
fn udp_turn_url(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("turn:")?;
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !query.is_empty() && query != "transport=udp" {
        return None;
    }
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:3478")
    };
    hostport.to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_udp_turn_url_is_taken_with_its_credentials() {
        let join = json!({"ice_servers": [
            {"urls": ["turns:127.0.0.1:5349?transport=tcp"], "username": "a", "credential": "x"},
            {"urls": ["turn:127.0.0.1:3479?transport=tcp", "turn:127.0.0.1:3480?transport=udp"], "username": "u", "credential": "p"}
        ]});
        let (addr, user, pass) = turn_server(&join).expect("a udp server");
        assert_eq!(addr, "127.0.0.1:3480".parse().expect("an address"));
        assert_eq!((user.as_str(), pass.as_str()), ("u", "p"));
        assert_eq!(
            udp_turn_url("turn:127.0.0.1"),
            Some("127.0.0.1:3478".parse().expect("an address"))
        );
    }

    #[test]
    fn a_join_without_a_udp_turn_server_is_a_clear_error() {
        let join = json!({"ice_servers": [{"urls": ["turns:127.0.0.1:5349?transport=tcp"]}]});
        let e = turn_server(&join).expect_err("no udp server");
        assert!(e.to_string().contains("no TURN server over UDP"), "{e}");
    }
}
