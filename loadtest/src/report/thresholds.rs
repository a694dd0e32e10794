//! Judging a summary against the scenario's `[thresholds]`.

use crate::record::{Bound, Stats, Summary, ThresholdResult, Thresholds};

impl Thresholds {
    /// A verdict for every threshold set, in the order of [`Thresholds`]' fields. A threshold whose measurement
    /// is missing (no answered call, no leg, no post-dial delay …) or not a number fails.
    pub fn evaluate(&self, s: &Summary) -> Vec<ThresholdResult> {
        let p95 = |st: &Option<Stats>| st.as_ref().map(|x| x.p95);
        let checks = [
            (
                "min_setup_success_pct",
                self.min_setup_success_pct,
                Bound::AtLeast,
                s.setup_success_pct,
            ),
            ("max_dropped_pct", self.max_dropped_pct, Bound::AtMost, s.dropped_pct),
            (
                "min_mos_p50",
                self.min_mos_p50,
                Bound::AtLeast,
                s.mos.as_ref().map(|m| m.p50),
            ),
            (
                "min_mos_p5",
                self.min_mos_p5,
                Bound::AtLeast,
                s.mos.as_ref().map(|m| m.p5),
            ),
            (
                "max_post_dial_delay_p95_ms",
                self.max_post_dial_delay_p95_ms,
                Bound::AtMost,
                p95(&s.post_dial_delay_ms),
            ),
            (
                "max_answer_to_audio_p95_ms",
                self.max_answer_to_audio_p95_ms,
                Bound::AtMost,
                p95(&s.answer_to_first_audio_ms),
            ),
            (
                "max_loss_p95_pct",
                self.max_loss_p95_pct,
                Bound::AtMost,
                p95(&s.loss_pct),
            ),
            (
                "max_mouth_to_ear_p95_ms",
                self.max_mouth_to_ear_p95_ms,
                Bound::AtMost,
                p95(&s.mouth_to_ear_ms),
            ),
            (
                "min_calls_answered",
                self.min_calls_answered.map(f64::from),
                Bound::AtLeast,
                Some(f64::from(s.answered)),
            ),
        ];
        let mut out: Vec<ThresholdResult> = checks
            .into_iter()
            .filter_map(|(name, limit, bound, measured)| Some(judge(name, limit?, bound, measured)))
            .collect();
        out.extend(self.evaluate_video(s));
        out
    }

    /// The video thresholds: judged on the legs with video; with none, each one set fails, saying so.
    fn evaluate_video(&self, s: &Summary) -> Vec<ThresholdResult> {
        let v = s.video.as_ref();
        let checks = [
            (
                "min_video_fps_p5",
                self.min_video_fps_p5,
                Bound::AtLeast,
                v.and_then(|v| v.fps.as_ref()).map(|x| x.p5),
            ),
            (
                "max_video_freeze_p95_ms",
                self.max_video_freeze_p95_ms,
                Bound::AtMost,
                v.and_then(|v| v.longest_freeze_ms.as_ref()).map(|x| x.p95),
            ),
        ];
        let note = v.is_none().then(|| NO_VIDEO.to_string());
        checks
            .into_iter()
            .filter_map(|(name, limit, bound, measured)| {
                let mut r = judge(name, limit?, bound, measured);
                r.note = note.clone();
                Some(r)
            })
            .collect()
    }
}

/// The note of a video threshold in a run where no leg had video.
pub(crate) const NO_VIDEO: &str = "no video legs were measured";

fn judge(name: &str, limit: f64, bound: Bound, measured: Option<f64>) -> ThresholdResult {
    ThresholdResult {
        name: name.to_string(),
        bound,
        limit,
        measured,
        passed: measured.is_some_and(|m| bound.holds(m, limit)),
        note: None,
    }
}

impl Bound {
    /// Whether `measured` is on the passing side of `limit` (a NaN on either side never is).
    pub fn holds(self, measured: f64, limit: f64) -> bool {
        match self {
            Bound::AtLeast => measured >= limit,
            Bound::AtMost => measured <= limit,
        }
    }

    /// `≥` or `≤`.
    pub fn symbol(self) -> &'static str {
        match self {
            Bound::AtLeast => "≥",
            Bound::AtMost => "≤",
        }
    }
}
