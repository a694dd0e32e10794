//! What a run records: one [`CallRecord`] per call (a line of `calls.jsonl`), one [`Sample`] per second (a row of
//! `timeseries.csv`), and the run's [`Summary`] (`summary.json`), with the [`Thresholds`] that pass or fail it.
//!
//! Percentiles here are nearest-rank: of `n` sorted values, the p-th percentile is the value at rank
//! `ceil(p / 100 × n)` (1-based), and p0 is the smallest. Every reported percentile is thus a value that was
//! measured, never an interpolation. Values that are not finite (NaN, ±∞) are left out.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// How a call ended up, as planned or as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A callee answered and the call reached media.
    Answered,
    /// The callee declined.
    Declined,
    /// The callee was in another call.
    Busy,
    /// Nobody answered before the ring timeout.
    NoAnswer,
    /// The caller hung up while it rang.
    Cancelled,
    /// Both sides called each other at once; one call survived and was answered.
    Glare,
    /// The call did not get anywhere (signaling or media failure).
    Failed,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Answered,
        Outcome::Declined,
        Outcome::Busy,
        Outcome::NoAnswer,
        Outcome::Cancelled,
        Outcome::Glare,
        Outcome::Failed,
    ];

    /// The name used in the records (`no_answer`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Declined => "declined",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Cancelled => "cancelled",
            Outcome::Glare => "glare",
            Outcome::Failed => "failed",
        }
    }

    /// The outcomes in which the call was answered and should carry media (a glare resolves into one such call).
    pub fn is_answered(&self) -> bool {
        matches!(self, Outcome::Answered | Outcome::Glare)
    }
}

/// Whether a call went as planned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    /// It ended up as planned.
    Ok,
    /// It never got where it was planned to go.
    Failed,
    /// It reached media, then broke off.
    Dropped,
}

/// One call: a line of `calls.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Its place in the run plan.
    pub index: u32,
    /// The call id the server gave it, when it got that far.
    pub call_id: Option<String>,
    /// `one_to_one` or `group`.
    pub kind: String,
    /// Participants including the caller.
    pub members: u32,
    /// `audio` or `video`.
    pub media: String,
    /// How the plan wanted it to end.
    pub planned: Outcome,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether that was as planned.
    pub result: CallResult,
    /// The cause when it was not, e.g. `ice: no connection within 10 s` or `signaling: error rate_limited`.
    pub failure: Option<String>,
    /// When the caller invited, in seconds since the run started.
    #[serde(deserialize_with = "f64_or_nan")]
    pub started_s: f64,
    /// When the last participant left, in seconds since the run started.
    pub ended_s: Option<f64>,
    /// Seconds from answer to end.
    pub duration_s: Option<f64>,
    /// How long setting it up took.
    pub setup: Setup,
    /// Every direction of audio that was scored.
    pub legs: Vec<Leg>,
    /// The worst leg's E-model rating factor R.
    pub r: Option<f64>,
    /// The worst leg's MOS (from the same leg as `r`).
    pub mos: Option<f64>,
    /// Each time call control moved a participant to another SFU node (a drain or a node failure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<Move>,
}

/// A participant's media moved to another SFU node, as call control directed (a `move` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// The participant's user id.
    pub user: String,
    /// Why: `node_drained` or `node_lost`.
    pub reason: String,
    /// The media gap: the last audio heard on the old node to the first on the new one, in milliseconds;
    /// `None` when audio never came back.
    pub gap_ms: Option<f64>,
}

impl CallRecord {
    /// Answered (`answered` or `glare`) and not failed: a call that carried, or should have carried, media.
    pub fn is_established(&self) -> bool {
        self.outcome.is_answered() && self.result != CallResult::Failed
    }
}

/// The setup delays of one call, in milliseconds; `None` where the step never happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Post-dial delay: the caller's invite to its `ringing`.
    pub post_dial_delay_ms: Option<f64>,
    /// The answer to the first decoded audio, the slowest participant's.
    pub answer_to_first_audio_ms: Option<f64>,
    /// Joining the room to ICE connected, the slowest participant's.
    pub ice_connect_ms: Option<f64>,
}

/// One direction of audio, from one participant to another, and its E-model score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    /// The sending user's id.
    pub from: String,
    /// The receiving user's id.
    pub to: String,
    /// The sender's network profile.
    pub profile_from: String,
    /// The receiver's network profile.
    pub profile_to: String,
    /// Packets the sender sent while the receiver listened.
    pub expected: u64,
    /// Packets that arrived.
    pub received: u64,
    /// Packets that never arrived.
    pub lost: u64,
    /// Packets that arrived too late for the jitter buffer and were dropped.
    pub late_discarded: u64,
    /// G.107's Ppl: lost plus late, in percent of expected.
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss_pct: f64,
    /// Interarrival jitter (RFC 3550), in milliseconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub jitter_ms: f64,
    /// Round-trip time, when the receiver could measure it.
    pub rtt_ms: Option<f64>,
    /// One-way network delay.
    pub delay_ms: DelayStats,
    /// Mean jitter-buffer delay, in milliseconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub jitter_buffer_ms: f64,
    /// Mouth-to-ear delay (G.107's Ta): packetisation, network, jitter buffer and decoding, in milliseconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub mouth_to_ear_ms: f64,
    /// Loss density inside bursts (G.107.1 / G.1020 burst state), 0–1.
    #[serde(deserialize_with = "f64_or_nan")]
    pub burst_density: f64,
    /// Mean burst duration, in milliseconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub burst_duration_ms: f64,
    /// Loss density in the gaps between bursts, 0–1.
    #[serde(deserialize_with = "f64_or_nan")]
    pub gap_density: f64,
    /// Mean gap duration, in milliseconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub gap_duration_ms: f64,
    /// G.107's BurstR (1 for random loss).
    #[serde(deserialize_with = "f64_or_nan")]
    pub burst_r: f64,
    /// Frames decoded from packets.
    pub decoded: u64,
    /// Frames concealed (PLC).
    pub concealed: u64,
    /// Frames recovered from Opus in-band FEC.
    pub fec_recovered: u64,
    /// Frames recovered from RED redundancy.
    pub red_recovered: u64,
    /// The E-model rating factor R.
    pub r: Option<f64>,
    /// MOS from R.
    pub mos: Option<f64>,
    /// The media gap at each network switch, in milliseconds.
    pub switch_gaps_ms: Vec<f64>,
    /// What the receiver saw of the sender's video in the same direction, when the call had video: frames
    /// expected, whole and shown, keyframes, frame loss, frame rate, longest freeze, packets. Absent on audio-only
    /// legs (and left out of their JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<crate::video::VideoSummary>,
}

/// One-way delay statistics of a leg, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DelayStats {
    /// Mean.
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean: f64,
    /// Median.
    #[serde(deserialize_with = "f64_or_nan")]
    pub p50: f64,
    /// 95th percentile.
    #[serde(deserialize_with = "f64_or_nan")]
    pub p95: f64,
    /// 99th percentile.
    #[serde(deserialize_with = "f64_or_nan")]
    pub p99: f64,
    /// Largest.
    #[serde(deserialize_with = "f64_or_nan")]
    pub max: f64,
}

/// One second of the run: a row of `timeseries.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started.
    #[serde(deserialize_with = "f64_or_nan")]
    pub t_s: f64,
    /// Calls placed and not yet recorded.
    pub calls_active: u32,
    /// Calls placed so far.
    pub calls_placed: u32,
    /// Calls recorded so far that went as planned.
    pub calls_completed: u32,
    /// Calls recorded so far that failed or dropped.
    pub calls_failed: u32,
    /// Calls placed in the last second.
    #[serde(deserialize_with = "f64_or_nan")]
    pub setup_rate_per_s: f64,
    /// Median MOS over the calls recorded so far.
    pub mos_p50: Option<f64>,
    /// Server CPU, summed over its processes, in percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server resident memory, summed, in MiB.
    pub server_rss_mib: Option<f64>,
    /// SFU participants.
    pub server_participants: Option<f64>,
    /// SFU packets per second, in plus out.
    pub server_packets_per_s: Option<f64>,
}

/// What the servers used over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    /// CPU seconds used during the run.
    pub cpu_seconds: f64,
    /// CPU microseconds per second of one concurrent call (CPU time over the sum of active calls per second).
    pub cpu_us_per_call_second: Option<f64>,
    /// Largest resident memory, in MiB.
    pub peak_rss_mib: f64,
    /// Memory growth from the smallest to the peak, per participant at the peak, in KiB.
    pub rss_kib_per_participant: Option<f64>,
    /// Most calls active at once.
    pub peak_calls: u32,
    /// Most SFU participants at once.
    pub peak_participants: f64,
}

/// Pass-or-fail limits: the scenario's `[thresholds]` table. Every limit is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Least share of calls, in percent, that must go as planned (not `failed`).
    pub min_setup_success_pct: Option<f64>,
    /// Most share of established calls, in percent, that may drop.
    pub max_dropped_pct: Option<f64>,
    /// Least median MOS of answered calls.
    pub min_mos_p50: Option<f64>,
    /// Least 5th-percentile MOS of answered calls.
    pub min_mos_p5: Option<f64>,
    /// Most 95th-percentile post-dial delay, in ms.
    pub max_post_dial_delay_p95_ms: Option<f64>,
    /// Most 95th-percentile answer-to-first-audio, in ms.
    pub max_answer_to_audio_p95_ms: Option<f64>,
    /// Most 95th-percentile loss (Ppl) over legs, in percent.
    pub max_loss_p95_pct: Option<f64>,
    /// Most 95th-percentile mouth-to-ear delay over legs, in ms.
    pub max_mouth_to_ear_p95_ms: Option<f64>,
    /// Least number of answered calls.
    pub min_calls_answered: Option<u32>,
    /// Least 5th-percentile frame rate shown over video legs, in frames a second. Fails when no leg had video.
    pub min_video_fps_p5: Option<f64>,
    /// Most 95th-percentile longest freeze over video legs, in ms. Fails when no leg had video.
    pub max_video_freeze_p95_ms: Option<f64>,
}

/// Which side of its limit a threshold wants the measurement on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Passes when measured ≥ limit.
    AtLeast,
    /// Passes when measured ≤ limit.
    AtMost,
}

/// One threshold's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The key in `[thresholds]`, e.g. `min_mos_p50`.
    pub name: String,
    /// Which side of the limit passes.
    pub bound: Bound,
    /// The limit set.
    pub limit: f64,
    /// What the run measured; `None` when there was nothing to measure, which fails.
    pub measured: Option<f64>,
    /// Whether it passed.
    pub passed: bool,
    /// Why nothing was measured, when the cause is known (`no video legs were measured`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ThresholdResult {
    /// The measurement for people: `3.71`, or why there is none (the note, else `no data`).
    pub fn measured_text(&self) -> String {
        match self.measured {
            Some(m) => number(m),
            None => self.note.clone().unwrap_or_else(|| "no data".to_string()),
        }
    }
}

impl fmt::Display for ThresholdResult {
    /// `min_mos_p50 (limit 4.0, measured 3.71)`, or `… measured nothing: no data` (or the note) when there was
    /// nothing to measure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = number(self.limit);
        match self.measured {
            Some(m) => write!(f, "{} (limit {limit}, measured {})", self.name, number(m)),
            None => write!(
                f,
                "{} (limit {limit}, measured nothing: {})",
                self.name,
                self.measured_text()
            ),
        }
    }
}

/// A number for people: at most two decimals, at least one (`4.0`, `3.71`, `1234.57`).
pub fn number(x: f64) -> String {
    let s = format!("{x:.2}");
    let Some(trimmed) = s.strip_suffix('0') else { return s };
    trimmed
        .strip_suffix('0')
        .map_or(trimmed.to_string(), |t| format!("{t}0"))
}

/// Nearest-rank percentiles of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// How many values.
    pub n: u64,
    /// 5th percentile.
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values` (non-finite ones left out); `None` when none is left.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Stats> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Some(Stats {
            n: v.len() as u64,
            p5: percentile(&v, 5.0)?,
            p50: percentile(&v, 50.0)?,
            p95: percentile(&v, 95.0)?,
            p99: percentile(&v, 99.0)?,
            max: *v.last()?,
        })
    }
}

/// The nearest-rank `p`-th percentile (0–100) of ascending `sorted`: the value at 1-based rank
/// `ceil(p / 100 × n)`, the smallest for p = 0; `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    let rank = (p.clamp(0.0, 100.0) / 100.0 * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n.max(1)) - 1).copied()
}

/// The video figures of a run, over the legs that carried video (those with [`Leg::video`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoStats {
    /// Legs with video.
    pub legs: u64,
    /// Frames shown a second, per leg.
    pub fps: Option<Stats>,
    /// Frames not shown in percent of expected, per leg.
    pub frame_loss_pct: Option<Stats>,
    /// Each leg's longest freeze (time between two frames shown), in ms.
    pub longest_freeze_ms: Option<Stats>,
    /// Whole keyframes received, the mean over legs.
    #[serde(deserialize_with = "f64_or_nan")]
    pub keyframes_per_leg: f64,
}

impl VideoStats {
    /// The figures of the legs among `legs` that carried video; `None` when none did.
    pub fn of<'a>(legs: impl IntoIterator<Item = &'a Leg>) -> Option<VideoStats> {
        let video: Vec<&crate::video::VideoSummary> = legs.into_iter().filter_map(|l| l.video.as_ref()).collect();
        if video.is_empty() {
            return None;
        }
        let keyframes: u64 = video.iter().map(|v| v.keyframes).sum();
        Some(VideoStats {
            legs: video.len() as u64,
            fps: Stats::of(video.iter().map(|v| v.fps)),
            frame_loss_pct: Stats::of(video.iter().map(|v| v.frame_loss_pct)),
            longest_freeze_ms: Stats::of(video.iter().map(|v| v.longest_freeze_ms)),
            keyframes_per_leg: keyframes as f64 / video.len() as f64,
        })
    }
}

/// Calls by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// `answered`.
    pub answered: u32,
    /// `declined`.
    pub declined: u32,
    /// `busy`.
    pub busy: u32,
    /// `no_answer`.
    pub no_answer: u32,
    /// `cancelled`.
    pub cancelled: u32,
    /// `glare`.
    pub glare: u32,
    /// `failed`.
    pub failed: u32,
}

impl OutcomeCounts {
    /// Counts the outcomes.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> OutcomeCounts {
        let mut c = OutcomeCounts::default();
        for o in outcomes {
            *c.get_mut(o) += 1;
        }
        c
    }

    /// The count of one outcome.
    pub fn get(&self, o: &Outcome) -> u32 {
        match o {
            Outcome::Answered => self.answered,
            Outcome::Declined => self.declined,
            Outcome::Busy => self.busy,
            Outcome::NoAnswer => self.no_answer,
            Outcome::Cancelled => self.cancelled,
            Outcome::Glare => self.glare,
            Outcome::Failed => self.failed,
        }
    }

    fn get_mut(&mut self, o: &Outcome) -> &mut u32 {
        match o {
            Outcome::Answered => &mut self.answered,
            Outcome::Declined => &mut self.declined,
            Outcome::Busy => &mut self.busy,
            Outcome::NoAnswer => &mut self.no_answer,
            Outcome::Cancelled => &mut self.cancelled,
            Outcome::Glare => &mut self.glare,
            Outcome::Failed => &mut self.failed,
        }
    }
}

/// Calls by result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultCounts {
    /// Went as planned.
    pub ok: u32,
    /// Never got where planned.
    pub failed: u32,
    /// Reached media, then broke off.
    pub dropped: u32,
}

/// How many calls failed for one cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCause {
    /// The cause, as recorded.
    pub cause: String,
    /// Calls that failed or dropped for it.
    pub calls: u32,
}

/// The whole run: `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// The seed the plan came from; the same seed replays the same plan.
    pub seed: u64,
    /// When the run started, RFC 3339.
    pub started_at: String,
    /// Seconds from the start to the last sample or call end.
    pub duration_s: f64,
    /// Which E-model the R and MOS figures come from: scale and constants.
    pub label: String,
    /// Calls recorded.
    pub calls: u32,
    /// Calls by planned outcome.
    pub planned: OutcomeCounts,
    /// Calls by actual outcome.
    pub outcomes: OutcomeCounts,
    /// Calls by result.
    pub results: ResultCounts,
    /// Calls answered (`answered` or `glare`) and not failed.
    pub answered: u32,
    /// Calls that went as planned or at least reached media (`ok` or `dropped`), in percent of all calls.
    pub setup_success_pct: Option<f64>,
    /// Dropped calls in percent of established ones (answered and not failed).
    pub dropped_pct: Option<f64>,
    /// Post-dial delay (invite to ringing), ms, over calls that rang.
    pub post_dial_delay_ms: Option<Stats>,
    /// Answer to first audio, ms, over answered calls.
    pub answer_to_first_audio_ms: Option<Stats>,
    /// ICE connect, ms, over calls that joined media.
    pub ice_connect_ms: Option<Stats>,
    /// MOS of answered calls (each call's worst leg).
    pub mos: Option<Stats>,
    /// Share of answered calls with a MOS of 4.0 or more, in percent (a call with no MOS counts as below).
    pub mos_ge_4_pct: Option<f64>,
    /// Loss (Ppl), percent, over legs.
    pub loss_pct: Option<Stats>,
    /// Jitter, ms, over legs.
    pub jitter_ms: Option<Stats>,
    /// Mouth-to-ear delay, ms, over legs.
    pub mouth_to_ear_ms: Option<Stats>,
    /// Frame rate, frame loss, freezes and keyframes over the legs with video; absent (and left out of the
    /// JSON) when no leg had video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoStats>,
    /// Moves to another SFU node, over all participants; 0 (and left out of the JSON) when none moved.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moves: u32,
    /// The media gap of those moves that got audio back, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_gap_ms: Option<Stats>,
    /// Failure and drop causes, most frequent first.
    pub failure_causes: Vec<FailureCause>,
    /// What the servers used, when they were sampled.
    pub server: Option<ServerUsage>,
    /// Each threshold set, with its verdict.
    pub thresholds: Vec<ThresholdResult>,
    /// Every threshold passed.
    pub passed: bool,
    /// Capacity mode's levels and the highest that held; its verdict is then the only threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::capacity::CapacityResult>,
}

impl Summary {
    /// Summarises a run and judges it against `thresholds` (see the module docs for the percentile rule).
    #[allow(clippy::too_many_arguments)] // One call site (the run), and each input is a distinct part of the run.
    pub fn compute(
        scenario: &str,
        seed: u64,
        started_at: &str,
        records: &[CallRecord],
        samples: &[Sample],
        label: &str,
        server: Option<ServerUsage>,
        thresholds: &Thresholds,
    ) -> Summary {
        let legs = || records.iter().flat_map(|c| c.legs.iter());
        let answered: Vec<&CallRecord> = records.iter().filter(|c| c.is_established()).collect();
        let mut summary = Summary {
            scenario: scenario.to_string(),
            seed,
            started_at: started_at.to_string(),
            duration_s: run_duration(records, samples),
            label: label.to_string(),
            calls: records.len() as u32,
            planned: OutcomeCounts::of(records.iter().map(|c| &c.planned)),
            outcomes: OutcomeCounts::of(records.iter().map(|c| &c.outcome)),
            results: result_counts(records),
            answered: answered.len() as u32,
            setup_success_pct: pct(
                records.iter().filter(|c| c.result != CallResult::Failed).count(),
                records.len(),
            ),
            dropped_pct: pct(count_dropped(&answered), answered.len()),
            post_dial_delay_ms: Stats::of(records.iter().filter_map(|c| c.setup.post_dial_delay_ms)),
            answer_to_first_audio_ms: Stats::of(records.iter().filter_map(|c| c.setup.answer_to_first_audio_ms)),
            ice_connect_ms: Stats::of(records.iter().filter_map(|c| c.setup.ice_connect_ms)),
            mos: Stats::of(answered.iter().filter_map(|c| c.mos)),
            mos_ge_4_pct: pct(
                answered.iter().filter(|c| c.mos.is_some_and(|m| m >= 4.0)).count(),
                answered.len(),
            ),
            loss_pct: Stats::of(legs().map(|l| l.loss_pct)),
            jitter_ms: Stats::of(legs().map(|l| l.jitter_ms)),
            mouth_to_ear_ms: Stats::of(legs().map(|l| l.mouth_to_ear_ms)),
            video: VideoStats::of(legs()),
            moves: records.iter().map(|c| c.moves.len() as u32).sum(),
            move_gap_ms: Stats::of(records.iter().flat_map(|c| c.moves.iter().filter_map(|m| m.gap_ms))),
            failure_causes: failure_causes(records),
            server,
            thresholds: Vec::new(),
            passed: true,
            capacity: None,
        };
        summary.thresholds = thresholds.evaluate(&summary);
        summary.passed = summary.thresholds.iter().all(|t| t.passed);
        summary
    }

    /// Capacity mode: the levels replace the run-wide thresholds, and the verdict is whether a level of at
    /// least `require` calls held.
    pub fn set_capacity(&mut self, result: crate::capacity::CapacityResult, require: u32) {
        self.thresholds = vec![result.verdict(require)];
        self.passed = self.thresholds.iter().all(|t| t.passed);
        self.capacity = Some(result);
    }

    /// The thresholds that failed; each displays as `min_mos_p50 (limit 4.0, measured 3.71)`.
    pub fn failed_thresholds(&self) -> Vec<&ThresholdResult> {
        self.thresholds.iter().filter(|t| !t.passed).collect()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn count_dropped(calls: &[&CallRecord]) -> usize {
    calls.iter().filter(|c| c.result == CallResult::Dropped).count()
}

fn pct(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

fn result_counts(records: &[CallRecord]) -> ResultCounts {
    let mut c = ResultCounts::default();
    for r in records {
        match r.result {
            CallResult::Ok => c.ok += 1,
            CallResult::Failed => c.failed += 1,
            CallResult::Dropped => c.dropped += 1,
        }
    }
    c
}

fn run_duration(records: &[CallRecord], samples: &[Sample]) -> f64 {
    let last_sample = samples.iter().map(|s| s.t_s);
    let last_end = records.iter().filter_map(|c| c.ended_s);
    last_sample
        .chain(last_end)
        .filter(|t| t.is_finite())
        .fold(0.0, f64::max)
}

/// Causes of the calls that did not go as planned, most frequent first, then by name.
fn failure_causes(records: &[CallRecord]) -> Vec<FailureCause> {
    let mut counts = std::collections::BTreeMap::<&str, u32>::new();
    for c in records.iter().filter(|c| c.result != CallResult::Ok) {
        *counts.entry(c.failure.as_deref().unwrap_or("unknown")).or_default() += 1;
    }
    let mut out: Vec<FailureCause> = counts
        .into_iter()
        .map(|(cause, calls)| FailureCause {
            cause: cause.to_string(),
            calls,
        })
        .collect();
    out.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.cause.cmp(&b.cause)));
    out
}

/// Reads a number that serde_json may have written as `null` (it writes NaN and ±∞ so) back as NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_match_hand_computed_values() {
        let v = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_eq!(percentile(&v, 0.0), Some(15.0));
        assert_eq!(percentile(&v, 5.0), Some(15.0));
        assert_eq!(percentile(&v, 30.0), Some(20.0));
        assert_eq!(percentile(&v, 40.0), Some(20.0));
        assert_eq!(percentile(&v, 50.0), Some(35.0));
        assert_eq!(percentile(&v, 100.0), Some(50.0));
        assert_eq!(percentile(&[], 50.0), None);
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&twenty, 50.0), Some(10.0));
        assert_eq!(percentile(&twenty, 95.0), Some(19.0));
        assert_eq!(percentile(&twenty, 99.0), Some(20.0));
    }

    #[test]
    fn stats_sort_their_input_and_leave_out_non_finite_values() {
        let s = Stats::of([5.0, f64::NAN, 1.0, 4.0, f64::INFINITY, 2.0, 3.0]).expect("values");
        assert_eq!(s.n, 5);
        assert_eq!((s.p5, s.p50, s.p95, s.p99, s.max), (1.0, 3.0, 5.0, 5.0, 5.0));
        assert_eq!(Stats::of([f64::NAN]), None);
    }

    #[test]
    fn numbers_for_people_keep_one_to_two_decimals() {
        assert_eq!(number(4.0), "4.0");
        assert_eq!(number(3.71), "3.71");
        assert_eq!(number(3.7), "3.7");
        assert_eq!(number(300.0), "300.0");
        assert_eq!(number(90.909_09), "90.91");
    }

    #[test]
    fn outcomes_serialize_as_snake_case() {
        let json = serde_json::to_string(&[Outcome::NoAnswer, Outcome::Glare]).expect("JSON");
        assert_eq!(json, r#"["no_answer","glare"]"#);
        assert_eq!(
            serde_json::to_string(&CallResult::Dropped).expect("JSON"),
            r#""dropped""#
        );
        for o in Outcome::ALL {
            assert_eq!(serde_json::to_string(&o).expect("JSON"), format!("\"{}\"", o.as_str()));
        }
    }
}
