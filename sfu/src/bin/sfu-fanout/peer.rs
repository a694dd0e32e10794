//! One load participant: a str0m peer on its own UDP socket, with its `/rtc` WebSocket. Subscribers hand only
//! STUN, DTLS and RTCP to str0m and count RTP by its clear header (sequence numbers per SSRC), so receiving
//! costs the load generator a `recv` and a few comparisons, not a decryption. In 1:1 rooms (`--pairs`) each
//! participant publishes and is counted as a subscriber too.

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Per-SSRC sequence tracking: how many distinct packets arrived, and the span they cover.
#[derive(Default, Clone, Copy)]
struct SeqTrack {
    first: Option<u16>,
    /// Extended highest sequence number seen, relative to `first`.
    highest: i64,
    received: u64,
}

/// A publisher or a subscriber.
pub struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    ws: Ws,
    audio: Option<Mid>,
    connected: bool,
    next_timeout: Instant,
    start: Instant,
    counting: bool,
    seqs: HashMap<u32, SeqTrack>,
    /// RTP packets counted while counting was on.
    pub rtp: u64,
}

impl Peer {
    /// Joins through `/rtc` at `http` with `token`; a publisher offers one send-only audio track, a subscriber
    /// one receive-only m-line (str0m needs one to offer).
    pub fn join(http: SocketAddr, token: &str, publish: bool, registry: &Registry, token_id: Token) -> Peer {
        let now = Instant::now();
        let mut rtc = Rtc::builder().set_rtp_mode(false).build(now);
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
        std_socket.set_nonblocking(true).expect("nonblocking");
        let local = std_socket.local_addr().expect("local addr");
        let mut socket = UdpSocket::from_std(std_socket);
        registry
            .register(&mut socket, token_id, Interest::READABLE)
            .expect("register");
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        let dir = if publish {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let url = format!("ws://{http}/rtc?access_token={token}");
        let (mut ws, _) = tungstenite::connect(url).expect("connect /rtc");
        send(&mut ws, &json!({"type": "join", "id": 1, "sdp": offer.to_sdp_string()}));
        let joined = read_joined(&mut ws);
        let answer = SdpAnswer::from_sdp_string(joined["sdp"].as_str().expect("sdp")).expect("answer");
        rtc.sdp_api().accept_answer(pending, answer).expect("accept the answer");
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_nonblocking(true).expect("nonblocking");
        }
        let mut peer = Peer {
            rtc,
            socket,
            local,
            ws,
            audio: publish.then_some(mid),
            connected: false,
            next_timeout: now,
            start: now,
            counting: false,
            seqs: HashMap::new(),
            rtp: 0,
        };
        peer.drain();
        peer
    }

    /// ICE and DTLS are up.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Counts RTP from now on (`true`), or stops counting.
    pub fn count(&mut self, on: bool) {
        self.counting = on;
    }

    /// Packets the counted sequence spans say were sent to this subscriber, and how many arrived.
    pub fn expected_and_received(&self) -> (u64, u64) {
        self.seqs
            .values()
            .fold((0, 0), |(e, r), s| (e + (s.highest + 1) as u64, r + s.received))
    }

    /// Reads every pending datagram.
    pub fn read(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => self.datagram(now, from, &buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.connected && is_rtp(data) {
            if self.counting {
                self.rtp += 1;
                let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
                let seq = u16::from_be_bytes([data[2], data[3]]);
                track(self.seqs.entry(ssrc).or_default(), seq);
            }
            return;
        }
        let Ok(r) = Receive::new(Protocol::Udp, from, self.local, data) else {
            return;
        };
        if self.rtc.handle_input(Input::Receive(now, r)).is_ok() {
            self.drain();
        }
    }

    /// Reads server messages; answers offers.
    pub fn signaling(&mut self) {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    if v["type"] == "offer" {
                        let Some(offer) = v["sdp"].as_str().and_then(|s| SdpOffer::from_sdp_string(s).ok()) else {
                            continue;
                        };
                        if let Ok(answer) = self.rtc.sdp_api().accept_offer(offer) {
                            send(&mut self.ws, &json!({"type": "answer", "sdp": answer.to_sdp_string()}));
                        }
                        self.drain();
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("the /rtc socket failed: {e}"),
            }
        }
    }

    /// Runs due timers.
    pub fn timeout(&mut self, now: Instant) {
        if self.next_timeout <= now && self.rtc.handle_input(Input::Timeout(now)).is_ok() {
            self.drain();
        }
    }

    /// A publisher sends one 20 ms Opus-sized frame (not real Opus: nothing decodes it).
    pub fn speak(&mut self, now: Instant) {
        let Some(mid) = self.audio else { return };
        let Some(writer) = self.rtc.writer(mid) else { return };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return;
        };
        let time = MediaTime::from(now - self.start);
        if writer.write(pt, now, time, vec![0x7C; 80]).is_ok() {
            self.drain();
        }
    }

    /// Says goodbye.
    pub fn leave(&mut self) {
        send(&mut self.ws, &json!({"type": "leave"}));
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(_)) => {}
                Err(_) => {
                    self.next_timeout = Instant::now() + Duration::from_secs(1);
                    return;
                }
            }
        }
    }
}

/// RTP, not RTCP, STUN or DTLS: version 2, and a payload type outside RTCP's 192..=223 (RFC 5761).
fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && d[0] >> 6 == 2 && !(192..=223).contains(&d[1])
}

fn track(s: &mut SeqTrack, seq: u16) {
    let Some(first) = s.first else {
        s.first = Some(seq);
        s.received = 1;
        return;
    };
    // Distance from `first`, unwrapped near the current highest (packets arrive nearly in order here).
    let base = s.highest - (s.highest.rem_euclid(65536));
    let offset = i64::from(seq.wrapping_sub(first));
    let candidates = [base + offset - 65536, base + offset, base + offset + 65536];
    let ext = candidates
        .into_iter()
        .min_by_key(|c| (c - s.highest).abs())
        .unwrap_or(offset);
    if ext >= 0 {
        s.highest = s.highest.max(ext);
        s.received += 1;
    }
}

fn send(ws: &mut Ws, v: &Value) {
    // A full send buffer would need a retry loop; these messages are small and rare.
    let _ = ws.send(Message::Text(v.to_string().into()));
}

fn read_joined(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read /rtc") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                match v["type"].as_str() {
                    Some("joined") => return v,
                    Some("error") => panic!("join refused: {v}"),
                    _ => {}
                }
            }
            _ => continue,
        }
    }
}
