//! A room participant for the end-to-end tests: a str0m peer (full ICE, frame mode) that joins through `/rtc`
//! like a browser would, over UDP or ICE-TCP, sends a 20 ms audio frame every 20 ms and counts what it receives.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread::sleep;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// How the client's media reaches the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A host UDP candidate.
    Udp,
    /// An active ICE-TCP candidate to the SFU's passive one.
    Tcp,
}

enum Net {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        server: SocketAddr,
        inbuf: Vec<u8>,
    },
}

/// One participant.
pub struct RoomClient {
    /// Its identity.
    pub identity: String,
    /// Its participant id, from `joined`.
    pub id: String,
    /// Its session, from `joined`.
    pub session: String,
    /// Every message the server sent, in order.
    pub messages: Vec<Value>,
    /// Media frames received, by mid.
    pub received: HashMap<Mid, usize>,
    ws: Option<Ws>,
    rtc: Rtc,
    net: Net,
    local: SocketAddr,
    audio: Mid,
    pending: Option<SdpPendingOffer>,
    connected: bool,
    start: Instant,
    next_frame: Instant,
    next_timeout: Instant,
    sends: bool,
}

/// Opens `/rtc` with `token`; the error is the HTTP status and body of a refusal.
pub fn open(http: SocketAddr, token: &str) -> Result<Ws, (u16, String)> {
    let url = format!("ws://{http}/rtc?access_token={token}");
    match tungstenite::connect(url) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => {
            let body = r.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            Err((r.status().as_u16(), body.unwrap_or_default()))
        }
        Err(e) => Err((0, e.to_string())),
    }
}

/// A non-blocking UDP socket on a free loopback port, and its address.
fn local_udp() -> (UdpSocket, SocketAddr) {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.set_nonblocking(true).expect("nonblocking");
    let local = udp.local_addr().expect("addr");
    (udp, local)
}

fn set_nonblocking(ws: &mut Ws) {
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_nonblocking(true).expect("nonblocking");
    }
}

impl RoomClient {
    /// Joins the room of `token` over `transport`, publishing one audio track; returns once `joined` arrived.
    pub fn join(http: SocketAddr, token: &str, identity: &str, transport: Transport) -> RoomClient {
        let mut ws = open(http, token).unwrap_or_else(|e| panic!("{identity}: /rtc refused: {e:?}"));
        let now = Instant::now();
        let mut rtc = Rtc::builder().build(now);
        let (udp, local) = local_udp();
        if transport == Transport::Udp {
            rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        }
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        send(&mut ws, &json!({"type": "join", "id": 1, "sdp": offer.to_sdp_string()}));
        let joined = read_until(&mut ws, "joined", Duration::from_secs(10));
        let answer_sdp = joined["sdp"].as_str().expect("sdp").to_string();
        let answer = SdpAnswer::from_sdp_string(&answer_sdp).expect("an answer");
        rtc.sdp_api().accept_answer(pending, answer).expect("answer accepted");
        let (net, local) = match transport {
            Transport::Udp => (Net::Udp(udp), local),
            Transport::Tcp => {
                let server = tcp_candidate(&answer_sdp).expect("the answer has a passive TCP candidate");
                let stream = TcpStream::connect(server).expect("connect to the ICE-TCP port");
                stream.set_nonblocking(true).expect("nonblocking");
                stream.set_nodelay(true).expect("nodelay");
                let local = stream.local_addr().expect("addr");
                let c = Candidate::builder().tcp().host(local).tcptype(TcpType::Active).build();
                rtc.add_local_candidate(c.expect("candidate"));
                (
                    Net::Tcp {
                        stream,
                        server,
                        inbuf: Vec::new(),
                    },
                    local,
                )
            }
        };
        set_nonblocking(&mut ws);
        let mut client = RoomClient::new(identity, rtc, net, local, audio, true, now);
        client.id = joined["participant"]["id"].as_str().expect("id").into();
        client.session = joined["session"].as_str().expect("session").into();
        client.messages.push(joined);
        client.ws = Some(ws);
        client
    }

    /// A client not yet signed in anywhere.
    fn new(identity: &str, rtc: Rtc, net: Net, local: SocketAddr, audio: Mid, sends: bool, now: Instant) -> Self {
        RoomClient {
            identity: identity.into(),
            id: String::new(),
            session: String::new(),
            messages: Vec::new(),
            received: HashMap::new(),
            ws: None,
            rtc,
            net,
            local,
            audio,
            pending: None,
            connected: false,
            start: now,
            next_frame: now,
            next_timeout: now,
            sends,
        }
    }

    /// Publishes one audio track through WHIP (`path` `/whip`) or plays the room's audio through WHEP (`/whep`),
    /// over UDP. Returns the client and the HTTP answer (the session's URL is its `Location`).
    pub fn via_http(http: SocketAddr, token: &str, path: &str) -> (RoomClient, super::http::FullResponse) {
        let now = Instant::now();
        let mut rtc = Rtc::builder().build(now);
        let (udp, local) = local_udp();
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        let sends = path == "/whip";
        let dir = if sends {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let auth = format!("Bearer {token}");
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/sdp")];
        let r = super::http::request(http, "POST", path, &headers, &offer.to_sdp_string()).expect("an HTTP answer");
        assert_eq!(r.status, 201, "POST {path}: {r:?}");
        let answer = SdpAnswer::from_sdp_string(&r.body).expect("an SDP answer");
        rtc.sdp_api().accept_answer(pending, answer).expect("answer accepted");
        (RoomClient::new(path, rtc, Net::Udp(udp), local, audio, sends, now), r)
    }

    /// Mids that delivered at least `min` frames.
    pub fn mids_with(&self, min: usize) -> usize {
        self.received.values().filter(|n| **n >= min).count()
    }

    /// The server's messages of type `t`.
    pub fn of_type(&self, t: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["type"] == t).collect()
    }

    /// Sends a message on the signaling socket.
    pub fn send(&mut self, msg: &Value) {
        if let Some(ws) = &mut self.ws {
            send(ws, msg);
        }
    }

    /// Sends `leave`.
    pub fn leave(&mut self) {
        if let Some(ws) = &mut self.ws {
            send(ws, &json!({"type": "leave"}));
        }
    }

    /// Drops the signaling socket and the media socket, as a phone does when it changes networks.
    pub fn lose_network(&mut self) {
        self.ws = None;
        let (udp, local) = local_udp();
        self.local = local;
        self.net = Net::Udp(udp);
    }

    /// Reconnects `/rtc` and resumes the session with an ICE restart from the new address.
    pub fn resume(&mut self, http: SocketAddr, token: &str) -> Value {
        let mut ws = open(http, token).expect("/rtc");
        self.rtc
            .add_local_candidate(Candidate::host(self.local, "udp").expect("candidate"));
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api.apply().expect("an offer");
        let msg = json!({"type": "resume", "id": 2, "session": self.session, "sdp": offer.to_sdp_string()});
        send(&mut ws, &msg);
        let joined = read_until(&mut ws, "joined", Duration::from_secs(10));
        if let Some(sdp) = joined["sdp"].as_str() {
            let answer = SdpAnswer::from_sdp_string(sdp).expect("an answer");
            self.rtc
                .sdp_api()
                .accept_answer(pending, answer)
                .expect("answer accepted");
        }
        set_nonblocking(&mut ws);
        self.ws = Some(ws);
        self.messages.push(joined.clone());
        joined
    }

    /// A WHIP or WHEP client's network change: a new socket, then an ICE restart by `PATCH location` (RFC 9725
    /// section 4.4.2) with the new credentials and candidate. `answer` is the SDP the POST returned; the server's
    /// new credentials from the PATCH's fragment replace its own. Returns the PATCH's answer.
    pub fn restart_by_patch(
        &mut self,
        http: SocketAddr,
        location: &str,
        token: &str,
        answer: &str,
    ) -> super::http::FullResponse {
        self.lose_network();
        let candidate = Candidate::host(self.local, "udp").expect("candidate");
        self.rtc.add_local_candidate(candidate.clone());
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api.apply().expect("an offer");
        let offer = offer.to_sdp_string();
        let frag = format!(
            "{}\r\n{}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{}\r\na={}\r\n",
            sdp_line(&offer, "a=ice-ufrag:"),
            sdp_line(&offer, "a=ice-pwd:"),
            self.audio,
            candidate.to_sdp_string()
        );
        let auth = format!("Bearer {token}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/trickle-ice-sdpfrag"),
            ("If-Match", "*"),
        ];
        let r = super::http::request(http, "PATCH", location, &headers, &frag).expect("an HTTP answer");
        if r.status == 200 {
            // The server's candidates name its ufrag too, so every mention of the old one changes.
            let value = |sdp: &str, attr: &str| sdp_line(sdp, attr).get(attr.len()..).unwrap_or_default().to_string();
            let (ufrag, pwd) = ("a=ice-ufrag:", "a=ice-pwd:");
            let text = answer
                .replace(&value(answer, ufrag), &value(&r.body, ufrag))
                .replace(&value(answer, pwd), &value(&r.body, pwd));
            let answer = SdpAnswer::from_sdp_string(&text).expect("an SDP answer");
            self.rtc
                .sdp_api()
                .accept_answer(pending, answer)
                .expect("answer accepted");
        }
        r
    }

    /// One turn of the client's loop: signaling, datagrams, timers and the next audio frame.
    pub fn turn(&mut self) {
        self.read_signaling();
        self.read_media();
        let now = Instant::now();
        if now >= self.next_timeout {
            self.rtc.handle_input(Input::Timeout(now)).expect("timeout");
        }
        if self.connected && self.sends && now >= self.next_frame {
            self.next_frame += Duration::from_millis(20);
            self.speak(now);
        }
        self.drain();
    }

    fn read_signaling(&mut self) {
        loop {
            let Some(ws) = &mut self.ws else { return };
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON from the server");
                    self.on_message(&v);
                    self.messages.push(v);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.ws = None;
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, v: &Value) {
        if v["type"] != "offer" || self.pending.is_some() {
            return;
        }
        let offer = SdpOffer::from_sdp_string(v["sdp"].as_str().expect("sdp")).expect("an offer");
        let answer = self.rtc.sdp_api().accept_offer(offer).expect("the client answers");
        if let Some(ws) = &mut self.ws {
            send(ws, &json!({"type": "answer", "sdp": answer.to_sdp_string()}));
        }
    }

    fn read_media(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 2000];
        match &mut self.net {
            Net::Udp(s) => {
                let mut datagrams = Vec::new();
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    datagrams.push((from, buf[..n].to_vec()));
                }
                for (from, d) in datagrams {
                    let r = Receive::new(Protocol::Udp, from, self.local, &d).expect("receive");
                    self.rtc.handle_input(Input::Receive(now, r)).expect("input");
                    self.drain();
                }
            }
            Net::Tcp { stream, server, inbuf } => {
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    inbuf.extend_from_slice(&buf[..n]);
                }
                let mut frames = Vec::new();
                while inbuf.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([inbuf[0], inbuf[1]]));
                    if inbuf.len() < 2 + len {
                        break;
                    }
                    frames.push(inbuf[2..2 + len].to_vec());
                    inbuf.drain(..2 + len);
                }
                let server = *server;
                for f in frames {
                    let r = Receive::new(Protocol::Tcp, server, self.local, &f).expect("receive");
                    self.rtc.handle_input(Input::Receive(now, r)).expect("input");
                    self.drain();
                }
            }
        }
    }

    fn speak(&mut self, now: Instant) {
        let Some(writer) = self.rtc.writer(self.audio) else {
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return;
        };
        let time = MediaTime::from(now - self.start);
        writer.write(pt, now, time, vec![0xF8; 60]).expect("write");
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().expect("output") {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return;
                }
                Output::Transmit(t) if t.source == self.local => match &mut self.net {
                    Net::Udp(s) => {
                        let _ = s.send_to(&t.contents, t.destination);
                    }
                    Net::Tcp { stream, .. } => {
                        let mut framed = (t.contents.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&t.contents);
                        let _ = stream.write_all(&framed);
                    }
                },
                Output::Transmit(_) => {}
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::MediaData(d)) => *self.received.entry(d.mid).or_default() += 1,
                Output::Event(_) => {}
            }
        }
    }
}

/// The first line of `sdp` that starts with `prefix`, or an empty string.
fn sdp_line<'a>(sdp: &'a str, prefix: &str) -> &'a str {
    sdp.lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_default()
}

/// Runs every client's loop for `d`.
pub fn run_for(clients: &mut [&mut RoomClient], d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for c in clients.iter_mut() {
            c.turn();
        }
        sleep(Duration::from_millis(1));
    }
}

/// Runs every client's loop until `done` holds, or `limit` passes; returns whether it held.
pub fn run_until(clients: &mut [&mut RoomClient], limit: Duration, done: impl Fn(&[&mut RoomClient]) -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        for c in clients.iter_mut() {
            c.turn();
        }
        if done(clients) {
            return true;
        }
        sleep(Duration::from_millis(1));
    }
    false
}

fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::Text(v.to_string().into())).expect("send to /rtc");
}

/// Reads (blocking) until a message of type `t` arrives; panics on an `error` or after `limit`.
pub fn read_until(ws: &mut Ws, t: &str, limit: Duration) -> Value {
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(limit)).expect("timeout");
    }
    loop {
        match ws.read().unwrap_or_else(|e| panic!("waiting for {t}: {e}")) {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if v["type"] == t {
                    return v;
                }
                assert_ne!(v["type"], "error", "waiting for {t}: {v}");
            }
            _ => continue,
        }
    }
}

/// The passive TCP candidate's address in an SDP.
fn tcp_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:") && (l.contains(" tcp ") || l.contains(" TCP ")))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()
        })
}
