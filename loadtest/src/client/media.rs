//! One participant's media: a str0m peer in RTP mode on its own UDP socket, joined to the call's room through
//! `/rtc`. It sends the pre-encoded speech every 20 ms, through the impaired uplink, and scores every stream it
//! receives, after the impaired downlink, with a jitter-buffer model and (for a share of streams) libopus.
//!
//! The RTP timestamp of each frame is its capture time on the harness's clock (48 kHz ticks since the run
//! started), so a receiver in the same process reads a packet's one-way delay off its timestamp: the SFU
//! forwards audio timestamps unchanged.

use super::net::{Net, Recv};
use super::socket::{Socket, SocketError};
use super::Ctx;
use crate::quality::StreamQuality;
use crate::record::Leg;
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
    /// Set when the SFU ended the session, with its reason.
    pub ended: Option<String>,
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
}

impl Media {
    /// Joins the room named by a `join` event: opens `/rtc`, offers one send-receive audio track, and takes
    /// the answer. `seed` makes this participant's sequence numbers, impairment and speech offset its own.
    pub async fn join(
        ctx: Arc<Ctx>,
        user: &str,
        profile: &str,
        join: &Value,
        seed: u64,
    ) -> Result<(Media, Socket), MediaError> {
        let url = join["sfu_url"].as_str().unwrap_or_default();
        let token = join["token"].as_str().unwrap_or_default();
        let source = ctx.source_ip(seed);
        let mut rtc_ws = Socket::connect(&format!("{url}?access_token={token}"), source).await?;
        let now = Instant::now();
        let net = Net::bind(&ctx, profile, source, seed).await?;
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true)
            .set_rtp_mode(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        let candidate = Candidate::host(net.local(), "udp").map_err(|e| MediaError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().ok_or_else(|| MediaError::Sdp("no offer".into()))?;
        rtc_ws
            .send(&json!({"type": "join", "id": 1, "sdp": offer.to_sdp_string()}))
            .await?;
        let joined = loop {
            let v = rtc_ws.recv().await?;
            match v["type"].as_str() {
                Some("joined") => break v,
                Some("error") => return Err(MediaError::Refused(v["message"].as_str().unwrap_or("").into())),
                _ => {}
            }
        };
        let sdp = joined["sdp"].as_str().unwrap_or_default();
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| MediaError::Sdp(e.to_string()))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| MediaError::Sdp(e.to_string()))?;
        let decode = ctx.decides(seed, ctx.scenario.media.decode_share);
        let mut media = Media {
            frame: (seed % ctx.speech.len() as u64) as usize,
            seq: SeqNo::from(seed & 0x7fff),
            ctx,
            user: user.to_string(),
            rtc,
            net,
            next_id: 2,
            pending: None,
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
            ended: None,
        };
        media.roster(&joined);
        media.drain(now);
        Ok((media, rtc_ws))
    }

    /// The earliest time something is due: a frame, str0m's timer, a delayed packet or a playout.
    pub fn deadline(&self) -> Instant {
        let mut d = self.next_frame.min(self.next_rtc);
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

    /// The network, to wait on its socket (the decoder inside `Media` may not be shared across threads).
    pub fn net(&self) -> &Net {
        &self.net
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

    /// Handles one message from the room.
    pub async fn on_signal(&mut self, room: &mut Socket, v: Value, now: Instant) -> Result<(), MediaError> {
        match v["type"].as_str() {
            Some("offer") if self.pending.is_none() => {
                let sdp = v["sdp"].as_str().unwrap_or_default();
                self.learn_msids(sdp);
                let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| MediaError::Sdp(e.to_string()))?;
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| MediaError::Sdp(e.to_string()))?;
                room.send(&json!({"type": "answer", "sdp": answer.to_sdp_string()}))
                    .await?;
            }
            Some("answer") => {
                let sdp = v["sdp"].as_str().unwrap_or_default();
                self.learn_msids(sdp);
                if let Some(pending) = self.pending.take() {
                    let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| MediaError::Sdp(e.to_string()))?;
                    self.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| MediaError::Sdp(e.to_string()))?;
                }
            }
            Some("participant_joined") => self.add_participant(&v["participant"]),
            Some("left") => self.ended = Some(v["reason"].as_str().unwrap_or("left").to_string()),
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

    /// After a switch's outage: a new socket and an ICE restart offered over `/rtc`.
    pub async fn switch(&mut self, room: &mut Socket, now: Instant, seed: u64) -> Result<(), MediaError> {
        self.net.rebind(&self.ctx, seed).await?;
        let mut api = self.rtc.sdp_api();
        api.ice_restart(false);
        let (offer, pending) = match api.apply() {
            Some(x) => x,
            None => return Err(MediaError::Sdp("no ICE restart offer".into())),
        };
        let candidate = Candidate::host(self.net.local(), "udp").map_err(|e| MediaError::Sdp(e.to_string()))?;
        self.rtc.add_local_candidate(candidate);
        self.pending = Some(pending);
        let id = self.next_id;
        self.next_id += 1;
        room.send(&json!({"type": "offer", "id": id, "sdp": offer.to_sdp_string()}))
            .await?;
        self.drain(now);
        Ok(())
    }

    /// Leaves the room, and scores each stream received.
    pub async fn finish(mut self, room: Option<Socket>, now: Instant) -> Vec<Leg> {
        if let Some(mut room) = room {
            let _ = room.send(&json!({"type": "leave"})).await;
            room.close().await;
        }
        self.playout(now);
        let ctx = self.ctx.clone();
        let me = self.user.clone();
        let my_profile = self.net.profile().to_string();
        let rtt = self.rtt_ms;
        self.incoming
            .into_values()
            .map(|s| ctx.leg(&s.from, &me, &my_profile, s.quality, s.listener, rtt, s.switch_gaps_ms))
            .collect()
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
            Event::MediaEgressStats(s) => {
                if let Some(rtt) = s.rtt {
                    self.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                }
            }
            _ => {}
        }
    }

    fn rtp(&mut self, p: RtpPacket, now: Instant) {
        self.first_audio_at.get_or_insert(now);
        let ssrc = p.header.ssrc;
        if !self.incoming.contains_key(&ssrc) {
            let mid = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
            let from = mid
                .and_then(|m| self.msid.get(&m.to_string()))
                .and_then(|pid| self.identities.get(pid))
                .cloned()
                .unwrap_or_else(|| "unknown".into());
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
