//! One participant's media: a str0m peer in RTP mode on its own UDP socket, joined to the call's room through
//! `/rtc`. It sends the pre-encoded speech every 20 ms, through the impaired uplink, and scores every stream it
//! receives, after the impaired downlink, with a jitter-buffer model and (for a share of streams) libopus.
//!
//! The RTP timestamp of each frame is its capture time on the harness's clock (48 kHz ticks since the run
//! started), so a receiver in the same process reads a packet's one-way delay off its timestamp: the SFU
//! forwards audio timestamps unchanged.

use super::net::{Net, Recv};
use super::socket::SocketError;
use super::video_track::{VideoIn, VideoOut};
use super::Ctx;
use crate::quality::StreamQuality;
use crate::record::Leg;
use mio::{Registry, Token};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// 20 ms of 48 kHz audio.
const FRAME_TICKS: u32 = 960;
const FRAME: Duration = Duration::from_millis(20);

/// A stream this participant receives.
struct Incoming {
    /// The sender's identity (user id), once known from the SDP and the roster.
    from: String,
    quality: StreamQuality<Arc<[u8]>>,
    listener: Option<crate::audio::Listener>,
    first_at: Instant,
    last_at: Instant,
    /// Media gaps measured at network switches: (switch time, last arrival before it).
    switch_from: Option<Instant>,
    switch_gaps_ms: Vec<f64>,
}

/// One participant's peer connection to the SFU.
pub struct Media {
    ctx: Arc<Ctx>,
    /// Its user id.
    user: String,
    rtc: Rtc,
    net: Net,
    next_id: u64,
    pending: Option<SdpPendingOffer>,
    audio: Mid,
    pt: Option<Pt>,
    seq: SeqNo,
    frame: usize,
    /// The RTP time of the first frame, and frames since (sent or not).
    first_tick: Option<u32>,
    frames: u32,
    next_frame: Instant,
    next_rtc: Instant,
    incoming: HashMap<Ssrc, Incoming>,
    /// Remote mid → participant id, from the server's SDP (`a=msid`).
    msid: HashMap<String, String>,
    /// Participant id → identity, from the roster.
    identities: HashMap<String, String>,
    /// When ICE and DTLS came up.
    pub connected_at: Option<Instant>,
    /// When the first audio arrived.
    pub first_audio_at: Option<Instant>,
    rtt_ms: Option<f64>,
    decode: bool,
    /// Room messages to send (an ICE restart's offer), for the shard to pass on.
    outbox: Vec<Value>,
    failure_told: bool,
    /// The video it sends, in a video call.
    video: Option<VideoOut>,
    /// The video streams it receives, by SSRC.
    videos: HashMap<Ssrc, VideoIn>,
}

/// Why media could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// `/rtc` failed.
    #[error("/rtc: {0}")]
    Socket(#[from] SocketError),
    /// The room refused the join.
    #[error("join refused: {0}")]
    Refused(String),
    /// SDP could not be made or taken.
    #[error("sdp: {0}")]
    Sdp(String),
    /// The UDP socket.
    #[error("udp: {0}")]
    Io(#[from] std::io::Error),
    /// TURN could not carry the media.
    #[error("turn: {0}")]
    Relay(String),
}

fn sdp_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Sdp(e.to_string())
}

impl Media {
    /// A participant on `net`, with one send-receive audio track; gives the offer for `/rtc`'s `join`. `seed`
    /// makes this participant's sequence numbers, impairment and speech offset its own.
    pub fn prepare(
        ctx: Arc<Ctx>,
        user: &str,
        net: Net,
        seed: u64,
        now: Instant,
        video: bool,
    ) -> Result<(Media, String), MediaError> {
        let clip = ctx.video.as_ref().filter(|_| video);
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true)
            .enable_vp8(clip.is_some())
            .set_rtp_mode(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        rtc.add_local_candidate(candidate(&net)?);
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let video = clip.map(|c| {
            let mid = api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
            VideoOut::new(c, mid, seed, now)
        });
        let (offer, pending) = api.apply().ok_or_else(|| MediaError::Sdp("no offer".into()))?;
        let decode = ctx.decides(seed, ctx.scenario.media.decode_share);
        let media = Media {
            frame: (seed % ctx.speech.len() as u64) as usize,
            seq: SeqNo::from(seed & 0x7fff),
            ctx,
            user: user.to_string(),
            rtc,
            net,
            next_id: 2,
            pending: Some(pending),
            first_tick: None,
            frames: 0,
            audio,
            pt: None,
            next_frame: now,
            next_rtc: now,
            incoming: HashMap::new(),
            msid: HashMap::new(),
            identities: HashMap::new(),
            connected_at: None,
            first_audio_at: None,
            rtt_ms: None,
            decode,
            outbox: Vec::new(),
            failure_told: false,
            video,
            videos: HashMap::new(),
        };
        Ok((media, offer.to_sdp_string()))
    }

    /// Takes the room's `joined` (its answer and roster). Through TURN, the SFU's media address (the answer's
    /// candidate) is given its permission and channel.
    pub fn accept_joined(&mut self, joined: &Value, now: Instant) -> Result<(), MediaError> {
        let sdp = joined["sdp"].as_str().unwrap_or_default();
        let pending = self
            .pending
            .take()
            .ok_or_else(|| MediaError::Sdp("no offer pending".into()))?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(sdp_err)?;
        self.rtc.sdp_api().accept_answer(pending, answer).map_err(sdp_err)?;
        if self.net.relayed() {
            let peer = udp_candidate(sdp).ok_or_else(|| MediaError::Sdp("no UDP candidate in the answer".into()))?;
            self.net.permit(peer, now);
        }
        self.learn_msids(sdp);
        self.roster(joined);
        self.drain(now);
        Ok(())
    }

    /// The earliest time something is due: a frame, str0m's timer, a delayed packet or a playout.
    pub fn deadline(&self) -> Instant {
        let mut d = self.next_frame.min(self.next_rtc);
        if let Some(v) = &self.video {
            d = d.min(v.next_frame);
        }
        if let Some(t) = self.net.next_due(&self.ctx) {
            d = d.min(t);
        }
        for s in self.incoming.values() {
            if let Some(t) = s.quality.next_deadline() {
                d = d.min(self.ctx.instant(t));
            }
        }
        d
    }

    /// Reads whatever datagrams wait, through the downlink.
    pub fn read(&mut self, now: Instant) {
        loop {
            match self.net.recv(&self.ctx, now) {
                Recv::Empty => break,
                Recv::Ready(from) => self.receive(now, from),
                Recv::Held => {}
            }
        }
        self.deliver(now);
    }

    /// Handles one message from the room; a reply for it goes to the outbox ([`Media::take_signal`]).
    pub fn on_signal(&mut self, v: &Value, now: Instant) -> Result<(), MediaError> {
        match v["type"].as_str() {
            Some("offer") if self.pending.is_none() => {
                let sdp = v["sdp"].as_str().unwrap_or_default();
                self.learn_msids(sdp);
                let offer = SdpOffer::from_sdp_string(sdp).map_err(sdp_err)?;
                let answer = self.rtc.sdp_api().accept_offer(offer).map_err(sdp_err)?;
                self.outbox
                    .push(json!({"type": "answer", "sdp": answer.to_sdp_string()}));
            }
            Some("answer") => {
                let sdp = v["sdp"].as_str().unwrap_or_default();
                self.learn_msids(sdp);
                if let Some(pending) = self.pending.take() {
                    let answer = SdpAnswer::from_sdp_string(sdp).map_err(sdp_err)?;
                    self.rtc.sdp_api().accept_answer(pending, answer).map_err(sdp_err)?;
                }
            }
            Some("participant_joined") => self.add_participant(&v["participant"]),
            _ => {}
        }
        self.drain(now);
        Ok(())
    }

    /// Runs what is due: str0m's timer, delayed packets both ways, the next frame of speech, playout.
    pub fn tick(&mut self, now: Instant) {
        if self.next_rtc <= now {
            let _ = self.rtc.handle_input(Input::Timeout(now));
            self.drain(now);
        }
        self.deliver(now);
        while self.next_frame <= now {
            self.speak(now);
        }
        self.film(now);
        self.net.flush(&self.ctx, now);
        self.playout(now);
    }

    /// The network drops for `outage`; with `switch`, the participant then comes back on a new local address
    /// and restarts ICE, as a phone does moving from Wi-Fi to mobile data.
    pub fn outage(&mut self, now: Instant, outage: Duration) {
        self.net.outage(&self.ctx, now, outage);
        for s in self.incoming.values_mut() {
            s.switch_from = Some(s.last_at);
        }
    }

    /// After a switch's outage: a new socket, and the ICE restart offer to send over `/rtc`.
    pub fn switch(&mut self, now: Instant, seed: u64, registry: &Registry, token: Token) -> Result<Value, MediaError> {
        self.net.rebind(&self.ctx, seed, registry, token)?;
        let mut api = self.rtc.sdp_api();
        api.ice_restart(false);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| MediaError::Sdp("no ICE restart offer".into()))?;
        self.rtc.add_local_candidate(candidate(&self.net)?);
        self.pending = Some(pending);
        let id = self.next_id;
        self.next_id += 1;
        self.drain(now);
        Ok(json!({"type": "offer", "id": id, "sdp": offer.to_sdp_string()}))
    }

    /// The network, to register its socket with a poll.
    pub fn net_mut(&mut self) -> &mut Net {
        &mut self.net
    }

    /// Why the media path failed for good (TURN gone), told once.
    pub fn take_failure(&mut self) -> Option<String> {
        if self.failure_told {
            return None;
        }
        let why = self.net.relay_failed.clone()?;
        self.failure_told = true;
        Some(why)
    }

    /// Queues a message for the room.
    pub fn queue_signal(&mut self, v: Value) {
        self.outbox.push(v);
    }

    /// The next queued message for the room.
    pub fn take_signal(&mut self) -> Option<Value> {
        (!self.outbox.is_empty()).then(|| self.outbox.remove(0))
    }

    /// When the last audio packet of any stream arrived.
    pub fn last_audio_at(&self) -> Option<Instant> {
        self.incoming.values().map(|s| s.last_at).max()
    }

    /// Stops, and scores each stream received.
    pub fn finish(mut self, now: Instant) -> Vec<Leg> {
        self.playout(now);
        self.net.close(&self.ctx, now);
        let ctx = self.ctx.clone();
        let me = self.user.clone();
        let my_profile = self.net.profile().to_string();
        let rtt = self.rtt_ms;
        let mut legs: Vec<Leg> = self
            .incoming
            .into_values()
            .map(|s| ctx.leg(&s.from, &me, &my_profile, s.quality, s.listener, rtt, s.switch_gaps_ms))
            .collect();
        // Each video stream's figures go on the audio leg of the same direction.
        for v in self.videos.values() {
            if let Some(leg) = legs.iter_mut().find(|l| l.from == v.from && l.video.is_none()) {
                leg.video = Some(v.summary());
            }
        }
        legs
    }

    /// Sends the video frames that are due.
    fn film(&mut self, now: Instant) {
        let Some(v) = self.video.as_mut() else { return };
        if v.next_frame > now {
            return;
        }
        let connected = self.connected_at.is_some();
        let ctx = &self.ctx;
        while v.next_frame <= now {
            v.send(&mut self.rtc, now, connected, |t| ctx.video_ticks(t));
        }
        self.drain(now);
    }

    fn receive(&mut self, now: Instant, from: SocketAddr) {
        let local = self.net.local();
        let Ok(r) = Receive::new(Protocol::Udp, from, local, self.net.buffer()) else {
            return;
        };
        if self.rtc.handle_input(Input::Receive(now, r)).is_ok() {
            self.drain(now);
        }
    }

    fn deliver(&mut self, now: Instant) {
        while let Some(from) = self.net.pop_delivered(&self.ctx, now) {
            self.receive(now, from);
        }
    }

    fn speak(&mut self, now: Instant) {
        let capture = self.next_frame;
        self.next_frame += FRAME;
        // Frames are exactly 20 ms apart, so their timestamps are exactly 960 apart from the first one's,
        // whether or not DTX sends them.
        let first = *self.first_tick.get_or_insert_with(|| self.ctx.ticks(capture));
        let time = first.wrapping_add(self.frames.wrapping_mul(FRAME_TICKS));
        self.frames += 1;
        let frame = self.ctx.speech.frame(self.frame);
        self.frame += 1;
        // Like a phone, send nothing until the media path is up (str0m would queue it, and release it late).
        if (frame.dtx && self.ctx.scenario.media.dtx) || self.connected_at.is_none() {
            return;
        }
        let payload = frame.payload.clone();
        let Some(pt) = self.pt.or_else(|| self.find_pt()) else {
            return;
        };
        let ext = ExtensionValues {
            audio_level: Some(-30),
            voice_activity: Some(true),
            ..Default::default()
        };
        let write = RtpWrite::new(pt, self.seq, time, now, payload).ext_vals(ext);
        self.seq = (*self.seq + 1).into();
        if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(self.audio, None) {
            tx.write_rtp(write);
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drain(now);
    }

    fn find_pt(&mut self) -> Option<Pt> {
        let pt = self
            .rtc
            .codec_config()
            .find(|c| c.spec().codec == Codec::Opus)
            .map(|c| c.pt());
        self.pt = pt;
        pt
    }

    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_rtc = t.max(now);
                    return;
                }
                Ok(Output::Transmit(t)) => self.net.send(&self.ctx, now, t.destination, &t.contents),
                Ok(Output::Event(e)) => self.event(e, now),
                Err(_) => {
                    self.next_rtc = now + Duration::from_millis(100);
                    return;
                }
            }
        }
    }

    fn event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                self.connected_at.get_or_insert(now);
            }
            Event::RtpPacket(p) => self.rtp(p, now),
            Event::KeyframeRequest(r) => {
                if let Some(v) = self.video.as_mut().filter(|v| v.mid() == r.mid) {
                    v.keyframe_requested();
                }
            }
            Event::MediaEgressStats(s) => {
                if let Some(rtt) = s.rtt {
                    self.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                }
            }
            _ => {}
        }
    }

    fn rtp(&mut self, p: RtpPacket, now: Instant) {
        let ssrc = p.header.ssrc;
        if let Some(v) = self.videos.get_mut(&ssrc) {
            let h = &p.header;
            return v.push(*p.seq_no, h.timestamp, h.marker, &p.payload, self.ctx.ms(now));
        }
        if !self.incoming.contains_key(&ssrc) {
            let from = self.sender_of(ssrc);
            if self.is_video(p.header.payload_type) {
                self.videos.insert(ssrc, VideoIn::new(from));
                return self.rtp(p, now);
            }
            let listener = self.decode.then(crate::audio::Listener::new).and_then(Result::ok);
            self.incoming.insert(
                ssrc,
                Incoming {
                    from,
                    quality: StreamQuality::new(&self.ctx.jitter_buffer),
                    listener,
                    first_at: now,
                    last_at: now,
                    switch_from: None,
                    switch_gaps_ms: Vec::new(),
                },
            );
        }
        self.first_audio_at.get_or_insert(now);
        let Some(s) = self.incoming.get_mut(&ssrc) else { return };
        if let Some(before) = s.switch_from.take() {
            s.switch_gaps_ms.push((now - before).as_secs_f64() * 1000.0);
        }
        s.last_at = now;
        let _ = s.first_at;
        let arrival = self.ctx.ms(now);
        let sent = self.ctx.capture_ms(p.header.timestamp);
        s.quality
            .push(*p.seq_no, p.header.timestamp, arrival, Some(sent), p.payload);
    }

    /// Who sends stream `ssrc`: its m-line's participant (`a=msid`), by the roster's identities.
    fn sender_of(&mut self, ssrc: Ssrc) -> String {
        let mid = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
        mid.and_then(|m| self.msid.get(&m.to_string()))
            .and_then(|pid| self.identities.get(pid))
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }

    fn is_video(&self, pt: Pt) -> bool {
        self.video.is_some()
            && self
                .rtc
                .codec_config()
                .find(|c| c.pt() == pt)
                .is_some_and(|c| c.spec().codec == Codec::Vp8)
    }

    fn playout(&mut self, now: Instant) {
        let now_ms = self.ctx.ms(now);
        for s in self.incoming.values_mut() {
            s.quality.play(now_ms, s.listener.as_mut());
        }
    }

    fn roster(&mut self, joined: &Value) {
        for p in joined["participants"].as_array().into_iter().flatten() {
            self.add_participant(p);
        }
    }

    fn add_participant(&mut self, p: &Value) {
        if let (Some(id), Some(identity)) = (p["id"].as_str(), p["identity"].as_str()) {
            self.identities.insert(id.to_string(), identity.to_string());
        }
    }

    /// Notes each m-line's `a=msid:<participant> <track>` in a server SDP.
    fn learn_msids(&mut self, sdp: &str) {
        for section in sdp.split("\r\nm=").skip(1) {
            let attr = |name: &str| section.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            let participant = attr("a=msid:").and_then(|m| m.split_whitespace().next());
            if let (Some(mid), Some(participant)) = (attr("a=mid:"), participant) {
                self.msid.insert(mid.to_string(), participant.to_string());
            }
        }
    }
}

/// The participant's one ICE candidate: its socket's address, or its relayed address through TURN.
fn candidate(net: &Net) -> Result<Candidate, MediaError> {
    let c = match net.relayed() {
        true => Candidate::relayed(net.local(), net.socket_addr(), "udp"),
        false => Candidate::host(net.local(), "udp"),
    };
    c.map_err(sdp_err)
}

/// The first UDP candidate's address in an SDP (the SFU's media port).
fn udp_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines().find_map(|l| {
        let f: Vec<&str> = l.strip_prefix("a=candidate:")?.split_whitespace().collect();
        if f.len() < 6 || !f[2].eq_ignore_ascii_case("udp") {
            return None;
        }
        format!("{}:{}", f[4], f[5])
            .parse()
            .ok()
            .or_else(|| format!("[{}]:{}", f[4], f[5]).parse().ok())
    })
}
