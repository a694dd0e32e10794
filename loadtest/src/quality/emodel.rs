//! The ITU-T G.107 E-model in its full form, with the wideband (G.107.1) and fullband (G.107.2) scales.
//!
//! ```text
//! R   = Ro - Is - Id - Ie_eff + A
//! Id  = Idte + Idle + Idd                      (T = Ta = one-way mouth-to-ear delay, Tr = 2 T)
//! Ie_eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)
//! MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6, clamped to [1, 4.5]
//! ```
//!
//! `Ro` and `Is` are computed from the G.107 transmission parameters ([`Parameters`]); with the defaults
//! `Ro = 94.77`, `Is = 1.41` and `R = 93.2` at zero delay.
//!
//! # Wideband and fullband
//!
//! G.107.1 raises the ceiling to `Ro = 129` and G.107.2 to `Ro = 148`; MOS is read off the same cubic after dividing
//! R by 1.29 or 1.48. The choice made here: `R_wb = 129 - Is - Id - Ie_eff,wb + A`, with `Is` and `Id` the narrowband
//! G.107 values, unscaled. The wideband recommendations extend the terms that depend on audio bandwidth (`Ro` and
//! the equipment impairment); sidetone, echo and absolute delay impair a call whatever its bandwidth, and the
//! project's sources give no wideband forms of them. Scaling them by 1.29 instead would lower R by `0.29 Id` (about
//! 2 at 200 ms mouth-to-ear, 9 at 400 ms), so long-delay scores here are, if anything, that much optimistic. `Idle`
//! and `Iq` use the narrowband `Ro` (94.77), as G.107 defines them, not 129 or 148. The constant 95 in `Ie_eff`
//! stays 95 on every scale: the project's guide says so for G.107.1, and for G.107.2 it is kept by analogy.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Packetisation delay of one Opus frame, in ms: the 20 ms the encoder waits for before it can send.
pub const FRAME_MS: f64 = 20.0;

/// Opus's look-ahead beyond the frame, in ms: its algorithmic delay is 26.5 ms for 20 ms frames (RFC 6716).
pub const OPUS_LOOKAHEAD_MS: f64 = 6.5;

/// The BurstR above which a codec's bursty-loss Bpl is used instead of its random-loss one. A stream with random
/// loss measures BurstR near 1 (within a few hundredths over a few thousand packets); a Gilbert process with a mean
/// burst of 1.25 packets at 1 % loss already gives 1.24, so 1.1 separates measurement noise from real burstiness.
pub const BURSTY_BURST_R: f64 = 1.1;

/// The E-model scale a rating is on: it fixes `Ro` and the divisor applied to R before the MOS cubic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// ITU-T G.107 (300-3400 Hz): `Ro` from the parameters (94.77 by default), MOS from R.
    Narrowband,
    /// ITU-T G.107.1 (50-7000 Hz): `Ro = 129`, MOS from `R / 1.29`.
    Wideband,
    /// ITU-T G.107.2 (20-20000 Hz): `Ro = 148`, MOS from `R / 1.48`.
    Fullband,
}

impl Scale {
    /// The ITU-T recommendation that defines this scale, e.g. `"G.107.1"`.
    pub fn recommendation(self) -> &'static str {
        match self {
            Scale::Narrowband => "G.107",
            Scale::Wideband => "G.107.1",
            Scale::Fullband => "G.107.2",
        }
    }

    /// The scale's name in lower case, e.g. `"wideband"`.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Narrowband => "narrowband",
            Scale::Wideband => "wideband",
            Scale::Fullband => "fullband",
        }
    }

    /// What R is divided by before the MOS cubic: 1, 1.29 or 1.48.
    pub fn mos_divisor(self) -> f64 {
        match self {
            Scale::Narrowband => 1.0,
            Scale::Wideband => 1.29,
            Scale::Fullband => 1.48,
        }
    }

    /// MOS (conversational quality, 1 to 4.5) of a rating `r` on this scale.
    pub fn mos(self, r: f64) -> f64 {
        mos_from_r(r / self.mos_divisor())
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// G.107's narrowband MOS cubic: 1 below R = 0, 4.5 above R = 100, and clamped to `[1, 4.5]` in between (the raw
/// cubic dips just under 1 for R below about 6.5). NaN maps to 1.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r < 0.0 {
        return 1.0;
    }
    if r > 100.0 {
        return 4.5;
    }
    let mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6;
    mos.clamp(1.0, 4.5)
}

/// The effective equipment impairment `Ie_eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)`.
///
/// `ppl_pct` is the packet loss in percent (lost plus discarded late), clamped to `[0, 100]` (NaN counts as 0).
/// `burst_r` below 1 (losses more spread out than random, which G.107 does not define) or NaN is taken as 1.
pub fn ie_eff(ie: f64, bpl: f64, ppl_pct: f64, burst_r: f64) -> f64 {
    let ppl = if ppl_pct.is_nan() {
        0.0
    } else {
        ppl_pct.clamp(0.0, 100.0)
    };
    if ppl == 0.0 {
        return ie;
    }
    let burst_r = if burst_r.is_nan() { 1.0 } else { burst_r.max(1.0) };
    ie + (95.0 - ie) * ppl / (ppl / burst_r + bpl)
}

/// The G.107 transmission parameters. [`Parameters::default`] gives G.107's default values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parameters {
    /// Send loudness rating SLR, dB (default 8).
    pub slr: f64,
    /// Receive loudness rating RLR, dB (default 2).
    pub rlr: f64,
    /// Sidetone masking rating STMR, dB (default 15).
    pub stmr: f64,
    /// Talker echo loudness rating TELR, dB (default 65).
    pub telr: f64,
    /// Weighted echo path loss WEPL, dB (default 110).
    pub wepl: f64,
    /// Circuit noise Nc, dBm0p (default -70).
    pub nc: f64,
    /// Noise floor at the receive side Nfor, dBmp (default -64).
    pub nfor: f64,
    /// Room noise at the send side Ps, dB(A) (default 35).
    pub ps: f64,
    /// Room noise at the receive side Pr, dB(A) (default 35).
    pub pr: f64,
    /// D-value of the telephone, send side Ds (default 3).
    pub ds: f64,
    /// D-value of the telephone, receive side Dr (default 3).
    pub dr: f64,
    /// Number of quantizing distortion units qdu (default 1).
    pub qdu: f64,
    /// Advantage factor A (default 0; keep 0 in pass/fail gates).
    pub a: f64,
    /// Delay sensitivity sT of Idd (default 1).
    pub s_t: f64,
    /// Minimum perceivable delay mT of Idd, ms (default 100).
    pub m_t: f64,
}

impl Default for Parameters {
    fn default() -> Parameters {
        Parameters {
            slr: 8.0,
            rlr: 2.0,
            stmr: 15.0,
            telr: 65.0,
            wepl: 110.0,
            nc: -70.0,
            nfor: -64.0,
            ps: 35.0,
            pr: 35.0,
            ds: 3.0,
            dr: 3.0,
            qdu: 1.0,
            a: 0.0,
            s_t: 1.0,
            m_t: 100.0,
        }
    }
}

/// A codec's E-model constants. The presets are associated constants; [`Codec::default`] is the harness's default,
/// [`Codec::OPUS_WB_VBR_13`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Codec {
    /// A human-readable name that says mode and bitrate, e.g. `"Opus WB VBR 13 kb/s"`.
    pub name: Cow<'static, str>,
    /// The scale `ie` and the Bpl values were derived on.
    pub scale: Scale,
    /// Equipment impairment factor Ie (Ie,wb or Ie,fb on those scales).
    pub ie: f64,
    /// Packet-loss robustness factor Bpl for random loss.
    pub bpl_random: f64,
    /// Bpl derived under bursty loss, where the source gives one; `None` uses `bpl_random` for any loss.
    pub bpl_bursty: Option<f64>,
}

impl Codec {
    /// G.711 with packet-loss concealment: Ie 0, Bpl 25.1 (ITU-T G.113 Appendix I), narrowband.
    pub const G711_PLC: Codec = Codec::fixed("G.711 with PLC", Scale::Narrowband, 0.0, 25.1, None);
    /// G.711 without concealment: Ie 0, Bpl 4.3 (ITU-T G.113 Appendix I), narrowband.
    pub const G711_NO_PLC: Codec = Codec::fixed("G.711 without PLC", Scale::Narrowband, 0.0, 4.3, None);
    /// G.729 (8 kb/s): Ie 10 (G.113 Appendix I). G.113 gives a Bpl only for G.729A + VAD (19.0); it is used here.
    pub const G729: Codec = Codec::fixed("G.729", Scale::Narrowband, 10.0, 19.0, None);
    /// G.729A with VAD: Ie 11, Bpl 19.0 (G.113 Appendix I), narrowband.
    pub const G729A_VAD: Codec = Codec::fixed("G.729A + VAD", Scale::Narrowband, 11.0, 19.0, None);
    /// Opus wideband VBR 13 kb/s: Ie 19.96, Bpl 19.50 random / 16.92 bursty, wideband scale (Alahmadi, Pocta and
    /// Melvin, ACM TOMM 17(4), 2021). The harness's default.
    pub const OPUS_WB_VBR_13: Codec = Codec::fixed("Opus WB VBR 13 kb/s", Scale::Wideband, 19.96, 19.50, Some(16.92));
    /// Opus super-wideband VBR 25 kb/s: Ie 20.21, Bpl 11.28 random / 9.18 bursty (same source). Put on the fullband
    /// scale, on the reading that a super-wideband codec needs a scale above wideband; not checked against the paper.
    pub const OPUS_SWB_VBR_25: Codec = Codec::fixed("Opus SWB VBR 25 kb/s", Scale::Fullband, 20.21, 11.28, Some(9.18));
    /// Opus super-wideband VBR 40 kb/s: Ie 10.67, Bpl 9.79 (same source; scale as for 25 kb/s).
    pub const OPUS_SWB_VBR_40: Codec = Codec::fixed("Opus SWB VBR 40 kb/s", Scale::Fullband, 10.67, 9.79, None);
    /// Opus narrowband CBR 11 kb/s: Ie 2.03, Bpl 15.95 (same source), narrowband scale.
    pub const OPUS_NB_CBR_11: Codec = Codec::fixed("Opus NB CBR 11 kb/s", Scale::Narrowband, 2.03, 15.95, None);

    /// Every preset, in the order above.
    pub const PRESETS: [Codec; 8] = [
        Codec::G711_PLC,
        Codec::G711_NO_PLC,
        Codec::G729,
        Codec::G729A_VAD,
        Codec::OPUS_WB_VBR_13,
        Codec::OPUS_SWB_VBR_25,
        Codec::OPUS_SWB_VBR_40,
        Codec::OPUS_NB_CBR_11,
    ];

    const fn fixed(name: &'static str, scale: Scale, ie: f64, bpl_random: f64, bpl_bursty: Option<f64>) -> Codec {
        Codec {
            name: Cow::Borrowed(name),
            scale,
            ie,
            bpl_random,
            bpl_bursty,
        }
    }

    /// The preset whose name is `name` (ASCII case ignored).
    pub fn preset(name: &str) -> Option<Codec> {
        Codec::PRESETS.into_iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The Bpl to use for a stream with this `burst_r`, and whether it is the bursty one: the bursty value when the
    /// codec has one and `burst_r > BURSTY_BURST_R`, else the random one.
    pub fn bpl(&self, burst_r: f64) -> (f64, bool) {
        match self.bpl_bursty {
            Some(b) if burst_r > BURSTY_BURST_R => (b, true),
            _ => (self.bpl_random, false),
        }
    }
}

impl Default for Codec {
    fn default() -> Codec {
        Codec::OPUS_WB_VBR_13
    }
}

/// What a rating is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// Mouth-to-ear one-way delay, ms (G.107's `T = Ta`; `Tr = 2 T`).
    pub one_way_delay_ms: f64,
    /// Packet loss in percent, lost plus discarded late (G.107's Ppl).
    pub loss_pct: f64,
    /// G.107's BurstR: 1 for random loss, `1 / (p + q)` for a Gilbert process.
    pub burst_r: f64,
}

/// The three parts of G.107's delay impairment Id.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DelayImpairment {
    /// Talker echo, Idte.
    pub idte: f64,
    /// Listener echo, Idle.
    pub idle: f64,
    /// Absolute delay, Idd.
    pub idd: f64,
}

impl DelayImpairment {
    /// `Id = Idte + Idle + Idd`.
    pub fn total(&self) -> f64 {
        self.idte + self.idle + self.idd
    }
}

/// An E-model score and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    /// The rating factor R on `label.scale` (up to 129 on the wideband scale, 148 on the fullband one).
    pub r: f64,
    /// MOS (conversational quality) from R on that scale.
    pub mos: f64,
    /// Basic signal-to-noise ratio Ro of the scale.
    pub ro: f64,
    /// Simultaneous impairment Is (the narrowband value on every scale).
    pub is: f64,
    /// Delay impairment Id (the narrowband value on every scale).
    pub id: f64,
    /// Effective equipment impairment Ie_eff.
    pub ie_eff: f64,
    /// What the score is: scale, codec constants, A.
    pub label: Label,
}

/// What every reported score carries: which model, scale and codec constants made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// The scale.
    pub scale: Scale,
    /// The codec's name.
    pub codec: String,
    /// Ie used.
    pub ie: f64,
    /// Bpl used.
    pub bpl: f64,
    /// Whether `bpl` is the codec's bursty-loss value.
    pub bursty_bpl: bool,
    /// Advantage factor A used.
    pub a: f64,
}

impl Label {
    /// The label for `codec` rated on `scale` with advantage factor `a`, using the Bpl `codec.bpl(burst_r)` picks.
    pub fn new(scale: Scale, codec: &Codec, burst_r: f64, a: f64) -> Label {
        let (bpl, bursty_bpl) = codec.bpl(burst_r);
        Label {
            scale,
            codec: codec.name.to_string(),
            ie: codec.ie,
            bpl,
            bursty_bpl,
            a,
        }
    }

    /// One line for reports, e.g.
    /// `"E-model G.107.1 wideband, Opus WB VBR 13 kb/s (Ie 19.96, Bpl 19.50), A = 0"`.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bursty = if self.bursty_bpl { " bursty" } else { "" };
        write!(
            f,
            "E-model {} {}, {} (Ie {:.2}, Bpl {:.2}{bursty}), A = {}",
            self.scale.recommendation(),
            self.scale.name(),
            self.codec,
            self.ie,
            self.bpl,
            self.a
        )
    }
}

/// The E-model with a fixed set of transmission parameters; the delay-independent terms are computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct EModel {
    params: Parameters,
    /// Total noise No, dBm0p.
    no: f64,
    /// Narrowband Ro.
    ro: f64,
}

impl Default for EModel {
    fn default() -> EModel {
        EModel::new(Parameters::default())
    }
}

impl EModel {
    /// An E-model with these parameters.
    pub fn new(params: Parameters) -> EModel {
        let no = total_noise(&params);
        let ro = 15.0 - 1.5 * (params.slr + no);
        EModel { params, no, ro }
    }

    /// The parameters.
    pub fn parameters(&self) -> &Parameters {
        &self.params
    }

    /// Rates a stream on `scale` with `codec`'s constants (the codec's own scale is not checked: rating a
    /// narrowband codec on the wideband scale needs its Ie,wb, which the caller must supply).
    pub fn rate(&self, scale: Scale, codec: &Codec, c: &Conditions) -> Rating {
        let t = sane_delay(c.one_way_delay_ms);
        let label = Label::new(scale, codec, c.burst_r, self.params.a);
        let ie_eff = ie_eff(codec.ie, label.bpl, c.loss_pct, c.burst_r);
        let (ro, is, id) = (self.ro(scale), self.is(t), self.delay(t).total());
        let r = ro - is - id - ie_eff + self.params.a;
        Rating {
            r,
            mos: scale.mos(r),
            ro,
            is,
            id,
            ie_eff,
            label,
        }
    }

    /// The basic signal-to-noise ratio Ro of `scale`: computed from the parameters on the narrowband scale, 129 and
    /// 148 on the others.
    pub fn ro(&self, scale: Scale) -> f64 {
        match scale {
            Scale::Narrowband => self.ro,
            Scale::Wideband => 129.0,
            Scale::Fullband => 148.0,
        }
    }

    /// Total noise No, dBm0p.
    pub fn total_noise(&self) -> f64 {
        self.no
    }

    /// Simultaneous impairment `Is = Iolr + Ist + Iq` for a mean one-way delay `t_ms` (which enters only through
    /// STMRo's echo term, negligible beyond a few ms).
    pub fn is(&self, t_ms: f64) -> f64 {
        let p = &self.params;
        let olr = p.slr + p.rlr;
        let xolr = olr + 0.2 * (64.0 + self.no - p.rlr);
        let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
        self.ist(sane_delay(t_ms)) + iolr + self.iq()
    }

    /// The delay impairments for one-way delay `t_ms` (`T = Ta = t_ms`, `Tr = 2 t_ms`).
    pub fn delay(&self, t_ms: f64) -> DelayImpairment {
        let t = sane_delay(t_ms);
        DelayImpairment {
            idte: self.idte(t),
            idle: self.idle(2.0 * t),
            idd: self.idd(t),
        }
    }

    /// Sidetone impairment Ist.
    fn ist(&self, t: f64) -> f64 {
        let p = &self.params;
        let stmro = -10.0 * (db_to_power(-p.stmr) + (-t / 4.0).exp() * db_to_power(-p.telr)).log10();
        12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
            - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
            - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
            + 29.0
    }

    /// Quantizing-distortion impairment Iq.
    fn iq(&self) -> f64 {
        let q = 37.0 - 15.0 * self.params.qdu.log10();
        let g = 1.07 + 0.258 * q + 0.0602 * q * q;
        let y = (self.ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
        let z = 46.0 / 30.0 - g / 40.0;
        15.0 * (1.0 + 10f64.powf(y) + 10f64.powf(z)).log10()
    }

    /// Talker-echo impairment Idte for echo-path delay `t`.
    fn idte(&self, t: f64) -> f64 {
        let p = &self.params;
        let mut terv = p.telr - 40.0 * ((1.0 + t / 10.0) / (1.0 + t / 150.0)).log10() + 6.0 * (-0.3 * t * t).exp();
        if p.stmr < 9.0 {
            // G.107: with little sidetone masking, TERV in Re is replaced by TERVs = TERV + Ist / 2.
            terv += self.ist(t) / 2.0;
        }
        let roe = -1.5 * (self.no - p.rlr);
        let re = 80.0 + 2.5 * (terv - 14.0);
        let d = roe - re;
        (d / 2.0 + (d * d / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp())
    }

    /// Listener-echo impairment Idle for round-trip delay `tr`.
    fn idle(&self, tr: f64) -> f64 {
        let rle = 10.5 * (self.params.wepl + 7.0) * (tr + 1.0).powf(-0.25);
        let d = self.ro - rle;
        d / 2.0 + (d * d / 4.0 + 169.0).sqrt()
    }

    /// Absolute-delay impairment Idd for mouth-to-ear delay `ta`.
    fn idd(&self, ta: f64) -> f64 {
        let (m_t, s_t) = (self.params.m_t, self.params.s_t);
        if ta <= m_t {
            return 0.0;
        }
        let x = (ta / m_t).log10() / 2f64.log10();
        let k = 6.0 * s_t;
        25.0 * ((1.0 + x.powf(k)).powf(1.0 / k) - 3.0 * (1.0 + (x / 3.0).powf(k)).powf(1.0 / k) + 2.0)
    }
}

/// G.107's total noise No from the parameters.
fn total_noise(p: &Parameters) -> f64 {
    let olr = p.slr + p.rlr;
    let nfo = p.nfor + p.rlr;
    let lstr = p.stmr + p.dr;
    let pre = p.pr + 10.0 * (1.0 + db_to_power(10.0 - lstr)).log10();
    let nor = p.rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nos = p.ps - p.slr - p.ds - 100.0 + 0.004 * (p.ps - olr - p.ds - 14.0).powi(2);
    10.0 * (db_to_power(p.nc) + db_to_power(nos) + db_to_power(nor) + db_to_power(nfo)).log10()
}

/// `10^(db / 10)`.
fn db_to_power(db: f64) -> f64 {
    10f64.powf(db / 10.0)
}

/// A delay the formulas accept: negative or NaN becomes 0.
fn sane_delay(t_ms: f64) -> f64 {
    if t_ms.is_nan() {
        0.0
    } else {
        t_ms.max(0.0)
    }
}

/// The parts of mouth-to-ear delay (G.107's Ta) and their sum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MouthToEar {
    /// One-way network delay (RTT / 2 when only the RTT is known), ms.
    pub network_ms: f64,
    /// Mean jitter-buffer delay, ms.
    pub jitter_buffer_ms: f64,
    /// Packetisation: one frame, ms.
    pub frame_ms: f64,
    /// Codec look-ahead, ms.
    pub lookahead_ms: f64,
    /// Capture plus playback device latency, ms.
    pub device_io_ms: f64,
}

impl MouthToEar {
    /// The parts for 20 ms Opus frames ([`FRAME_MS`], [`OPUS_LOOKAHEAD_MS`]).
    pub fn opus(network_ms: f64, jitter_buffer_ms: f64, device_io_ms: f64) -> MouthToEar {
        MouthToEar {
            network_ms,
            jitter_buffer_ms,
            frame_ms: FRAME_MS,
            lookahead_ms: OPUS_LOOKAHEAD_MS,
            device_io_ms,
        }
    }

    /// The mouth-to-ear delay, ms: the sum of the parts.
    pub fn total_ms(&self) -> f64 {
        self.network_ms + self.jitter_buffer_ms + self.frame_ms + self.lookahead_ms + self.device_io_ms
    }
}

#[cfg(test)]
#[path = "emodel_tests.rs"]
mod tests;
