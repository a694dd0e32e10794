//! The report's behaviour on a small synthetic run whose figures are worked out by hand below.

use super::html::{cdf, mos_bins};
use super::*;
use crate::record::*;

/// A scratch folder of this test process, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hualu-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn leg(loss_pct: f64, mos: f64) -> Leg {
    Leg {
        from: "lt1-u0".into(),
        to: "lt1-u1".into(),
        profile_from: "wifi".into(),
        profile_to: "4g".into(),
        expected: 1000,
        received: 990,
        lost: 10,
        loss_pct,
        jitter_ms: 2.0 + loss_pct,
        mouth_to_ear_ms: 80.0 + 10.0 * loss_pct,
        burst_r: 1.0,
        r: Some(90.0),
        mos: Some(mos),
        ..Leg::default()
    }
}

fn call(index: u32, planned: Outcome, outcome: Outcome, result: CallResult, mos: Option<f64>) -> CallRecord {
    let answered = outcome.is_answered() && result != CallResult::Failed;
    CallRecord {
        index,
        call_id: Some(format!("c{index}")),
        kind: "one_to_one".into(),
        members: 2,
        media: "audio".into(),
        planned,
        outcome,
        result,
        failure: None,
        started_s: f64::from(index),
        ended_s: Some(f64::from(index) + 10.0),
        duration_s: answered.then_some(9.0),
        setup: Setup::default(),
        legs: mos.map(|m| leg(f64::from(index), m)).into_iter().collect(),
        r: mos.map(|_| 90.0),
        mos,
        moves: Vec::new(),
    }
}

/// 11 calls: eight answered with MOS 3.5 … 4.4 and post-dial delays 100 … 170 ms, one declined (200 ms), one that
/// failed ICE, one dropped with MOS 2.0 (300 ms). Each scored call has one leg whose loss is its index in percent.
fn run() -> Vec<CallRecord> {
    let mos = [3.5, 3.8, 4.0, 4.1, 4.2, 4.3, 4.4, 4.4];
    let mut calls: Vec<CallRecord> = (0..8u32)
        .map(|i| {
            let mut c = call(
                i,
                Outcome::Answered,
                Outcome::Answered,
                CallResult::Ok,
                Some(mos[i as usize]),
            );
            c.setup.post_dial_delay_ms = Some(100.0 + 10.0 * f64::from(i));
            c
        })
        .collect();
    let mut declined = call(8, Outcome::Declined, Outcome::Declined, CallResult::Ok, None);
    declined.setup.post_dial_delay_ms = Some(200.0);
    let mut failed = call(9, Outcome::Answered, Outcome::Failed, CallResult::Failed, None);
    failed.failure = Some("ice: no connection within 10 s".into());
    let mut dropped = call(10, Outcome::Answered, Outcome::Answered, CallResult::Dropped, Some(2.0));
    dropped.failure = Some("connection_lost".into());
    dropped.setup.post_dial_delay_ms = Some(300.0);
    calls.extend([declined, failed, dropped]);
    calls
}

fn samples(n: u32) -> Vec<Sample> {
    (1..=n)
        .map(|t| Sample {
            t_s: f64::from(t),
            calls_active: t.min(5),
            calls_placed: t,
            calls_completed: t.saturating_sub(5),
            setup_rate_per_s: 1.0,
            mos_p50: (t > 5).then_some(4.2),
            server_cpu_pct: Some(12.5),
            server_rss_mib: (t % 2 == 0).then_some(100.0 + f64::from(t)),
            ..Sample::default()
        })
        .collect()
}

fn summary(name: &str, records: &[CallRecord], samples: &[Sample], thresholds: &Thresholds) -> Summary {
    let label = "E-model G.107.1 wideband (R ≤ 129), Opus constants, A = 0";
    Summary::compute(
        name,
        42,
        "2026-05-01T12:00:00Z",
        records,
        samples,
        label,
        None,
        thresholds,
    )
}

#[test]
fn the_summary_matches_the_hand_computed_figures() {
    let s = summary("t", &run(), &samples(20), &Thresholds::default());
    assert_eq!(s.calls, 11);
    assert_eq!(s.answered, 9);
    assert_eq!((s.outcomes.answered, s.outcomes.declined, s.outcomes.failed), (9, 1, 1));
    assert_eq!(s.planned.answered, 10);
    assert_eq!((s.results.ok, s.results.failed, s.results.dropped), (9, 1, 1));
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
    assert!(close(s.setup_success_pct, 1000.0 / 11.0), "{:?}", s.setup_success_pct);
    assert!(close(s.dropped_pct, 100.0 / 9.0), "{:?}", s.dropped_pct);
    // MOS sorted: 2.0 3.5 3.8 4.0 4.1 4.2 4.3 4.4 4.4; ranks ceil(0.45) = 1, ceil(4.5) = 5, ceil(8.55) = 9.
    let mos = s.mos.clone().expect("MOS");
    assert_eq!((mos.n, mos.p5, mos.p50, mos.p95), (9, 2.0, 4.1, 4.4));
    assert!(close(s.mos_ge_4_pct, 600.0 / 9.0));
    // Post-dial delays sorted: 100 … 170, 200, 300; ranks 5 and 10.
    let pdd = s.post_dial_delay_ms.clone().expect("post-dial delay");
    assert_eq!((pdd.n, pdd.p50, pdd.p95, pdd.p99), (10, 140.0, 300.0, 300.0));
    assert_eq!(s.ice_connect_ms, None);
    // Leg losses: 0 … 7 and 10; ranks 5 and 9.
    let loss = s.loss_pct.clone().expect("loss");
    assert_eq!((loss.n, loss.p50, loss.p95), (9, 4.0, 10.0));
    assert_eq!(s.duration_s, 20.0);
    let causes: Vec<(&str, u32)> = s.failure_causes.iter().map(|c| (c.cause.as_str(), c.calls)).collect();
    assert_eq!(causes, [("connection_lost", 1), ("ice: no connection within 10 s", 1)]);
    assert!(s.passed && s.thresholds.is_empty());
}

#[test]
fn thresholds_pass_and_fail_and_name_what_failed() {
    let t = Thresholds {
        min_setup_success_pct: Some(90.0),
        min_mos_p50: Some(4.0),
        max_post_dial_delay_p95_ms: Some(250.0),
        min_calls_answered: Some(10),
        ..Thresholds::default()
    };
    let s = summary("t", &run(), &[], &t);
    let verdicts: Vec<(&str, bool)> = s.thresholds.iter().map(|r| (r.name.as_str(), r.passed)).collect();
    assert_eq!(
        verdicts,
        [
            ("min_setup_success_pct", true),
            ("min_mos_p50", true),
            ("max_post_dial_delay_p95_ms", false),
            ("min_calls_answered", false),
        ]
    );
    assert!(!s.passed);
    let failed: Vec<String> = s.failed_thresholds().iter().map(|t| t.to_string()).collect();
    assert_eq!(
        failed,
        [
            "max_post_dial_delay_p95_ms (limit 250.0, measured 300.0)",
            "min_calls_answered (limit 10.0, measured 9.0)"
        ]
    );
}

#[test]
fn a_threshold_with_nothing_to_measure_fails() {
    let only_declined = vec![call(0, Outcome::Declined, Outcome::Declined, CallResult::Ok, None)];
    let t = Thresholds {
        min_mos_p50: Some(1.0),
        max_dropped_pct: Some(100.0),
        max_loss_p95_pct: Some(100.0),
        min_setup_success_pct: Some(0.0),
        ..Thresholds::default()
    };
    let s = summary("t", &only_declined, &[], &t);
    let get = |name: &str| s.thresholds.iter().find(|r| r.name == name).expect(name);
    for name in ["min_mos_p50", "max_dropped_pct", "max_loss_p95_pct"] {
        assert_eq!((get(name).measured, get(name).passed), (None, false), "{name}");
    }
    assert!(get("min_setup_success_pct").passed);
    assert!(!s.passed);
    assert!(s.failed_thresholds()[0].to_string().contains("measured nothing"));
    let empty = summary("t", &[], &[], &t);
    assert!(
        empty.thresholds.iter().all(|r| !r.passed),
        "no call at all passes nothing"
    );
}

#[test]
fn thresholds_come_from_toml_and_reject_unknown_keys() {
    let t: Thresholds =
        toml::from_str("min_calls_answered = 10\nmin_mos_p50 = 4\nmax_dropped_pct = 5.0\n").expect("valid");
    assert_eq!(
        (t.min_calls_answered, t.min_mos_p50, t.max_dropped_pct),
        (Some(10), Some(4.0), Some(5.0))
    );
    let err = toml::from_str::<Thresholds>("min_mos = 4.0\n").expect_err("unknown key");
    assert!(err.to_string().contains("min_mos"), "{err}");
}

#[test]
fn jsonl_round_trips_line_by_line() {
    let dir = scratch("jsonl");
    let path = dir.join("calls.jsonl");
    let records = run();
    let mut w = JsonlWriter::create(&path).expect("create");
    for r in &records[..3] {
        w.write(r).expect("write");
    }
    // Flushed per line: the records are on disk while the writer is still open.
    assert_eq!(read_jsonl(&path).expect("read"), records[..3]);
    for r in &records[3..] {
        w.write(r).expect("write");
    }
    assert_eq!(w.lines(), records.len());
    drop(w);
    let text = std::fs::read_to_string(&path).expect("file");
    assert_eq!(text.lines().count(), records.len());
    assert_eq!(read_jsonl(&path).expect("read"), records);
}

#[test]
fn a_nan_in_a_record_reads_back_as_nan() {
    let dir = scratch("nan");
    let path = dir.join("calls.jsonl");
    let mut c = run().remove(0);
    c.legs[0].jitter_ms = f64::NAN;
    let mut w = JsonlWriter::create(&path).expect("create");
    w.write(&c).expect("write");
    let back = read_jsonl(&path).expect("read");
    assert!(back[0].legs[0].jitter_ms.is_nan());
    std::fs::write(&path, "{\"index\": 1}\n").expect("write");
    let err = read_jsonl(&path).expect_err("not a record");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn the_csv_has_a_header_and_a_row_per_sample() {
    let dir = scratch("csv");
    let path = dir.join("timeseries.csv");
    write_csv(&path, &samples(7)).expect("csv");
    let text = std::fs::read_to_string(&path).expect("file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], CSV_COLUMNS.join(","));
    assert_eq!(lines.len(), 1 + 7);
    assert_eq!(lines[1], "1.0,1,1,0,0,1.0,,12.5,,,");
    assert_eq!(lines[2], "2.0,2,2,0,0,1.0,,12.5,102.0,,");
    write_csv(&path, &[]).expect("csv");
    assert_eq!(std::fs::read_to_string(&path).expect("file").lines().count(), 1);
}

#[test]
fn the_csv_columns_are_the_sample_fields() {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(Sample::default()).expect("serialize");
    let bytes = w.into_inner().expect("bytes");
    let text = String::from_utf8(bytes).expect("utf-8");
    assert_eq!(text.lines().next(), Some(CSV_COLUMNS.join(",").as_str()));
}

#[test]
fn write_all_writes_four_files_and_the_summary_echoes_the_seed() {
    let dir = scratch("all").join("nested");
    let (records, samples) = (run(), samples(12));
    let s = summary("smoke", &records, &samples, &Thresholds::default());
    let paths = write_all(&dir, &records, &samples, &s).expect("write_all");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["calls.jsonl", "report.html", "summary.json", "timeseries.csv"]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&paths.summary).expect("read")).expect("JSON");
    assert_eq!(json["seed"], 42);
    assert_eq!(json["scenario"], "smoke");
    assert_eq!(json["passed"], true);
    let back: Summary = serde_json::from_value(json).expect("a Summary");
    assert_eq!(back, s);
    assert_eq!(read_jsonl(&paths.calls).expect("read"), records);
}

#[test]
fn the_html_is_one_file_with_plots_and_escaped_text() {
    let (records, samples) = (run(), samples(30));
    let t = Thresholds {
        min_mos_p50: Some(4.5),
        ..Thresholds::default()
    };
    let s = summary("<b>&", &records, &samples, &t);
    let html = render_html(&records, &samples, &s);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.matches("<svg").count() >= 8,
        "{} plots",
        html.matches("<svg").count()
    );
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    for banned in ["http://", "https://", "<script", "<link", "<img", "url("] {
        assert!(!html.contains(banned), "the report refers to {banned}");
    }
    assert!(html.contains("&lt;b&gt;&amp;"));
    assert!(!html.contains("<b>&"));
    assert!(html.contains("FAILED: min_mos_p50"));
    assert!(html.contains("class=\"fail\""));
    assert!(html.contains("Opus constants, A = 0"), "the MOS plot names its scale");
    assert!(html.contains("<polyline"), "time series are drawn");
}

#[test]
fn the_html_of_an_empty_run_still_renders() {
    let s = summary("empty", &[], &[], &Thresholds::default());
    let html = render_html(&[], &[], &s);
    assert!(html.contains("no data"));
    assert!(html.contains("PASSED"));
    assert!(html.ends_with("</html>\n"));
}

#[test]
fn the_terminal_summary_names_failed_thresholds() {
    let t = Thresholds {
        min_mos_p50: Some(4.5),
        max_dropped_pct: Some(50.0),
        ..Thresholds::default()
    };
    let s = summary("smoke", &run(), &[], &t);
    let mut out = Vec::new();
    print_summary(&s, &mut out).expect("print");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.starts_with("smoke · seed 42 · 2026-05-01T12:00:00Z"), "{text}");
    assert!(text.contains("FAIL  min_mos_p50 ≥ 4.5: measured 4.1"), "{text}");
    assert!(text.contains("pass  max_dropped_pct ≤ 50.0"), "{text}");
    assert!(text.contains("ice: no connection within 10 s"), "{text}");
    assert!(text.trim_end().ends_with("FAILED: 1 threshold"), "{text}");
}

#[test]
fn live_counters_read_like_the_issue_asks() {
    let s = Sample {
        t_s: 3.0,
        calls_active: 12,
        calls_placed: 40,
        calls_failed: 1,
        setup_rate_per_s: 2.0,
        mos_p50: Some(4.314),
        ..Sample::default()
    };
    assert_eq!(counters(&s), "active 12 · placed 40 · 2.0/s · failed 1 · MOS p50 4.31");
    let quiet = Live::new(10.0, true);
    assert!(quiet.is_hidden());
    quiet.update(&s);
    quiet.finish();
}

#[test]
fn mos_bins_are_a_tenth_wide_and_keep_edges_in_their_bin() {
    let bins = mos_bins(&[0.5, 1.0, 4.0, 4.3, 4.5, 4.6, f64::NAN]);
    assert_eq!(bins.len(), 35);
    assert_eq!((bins[0].lo, bins[0].hi, bins[0].count), (1.0, 1.1, 2));
    assert_eq!((bins[30].lo, bins[30].count), (4.0, 1));
    assert_eq!((bins[33].lo, bins[33].count), (4.3, 1));
    assert_eq!((bins[34].lo, bins[34].count), (4.4, 2));
    assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), 6);
}

#[test]
fn cdfs_end_at_every_value() {
    let c = cdf("x", 0, [3.0, 1.0, 2.0, 4.0].into_iter());
    assert_eq!(c.points, [(1.0, 25.0), (2.0, 50.0), (3.0, 75.0), (4.0, 100.0)]);
    assert_eq!(cdf("x", 0, [7.0].into_iter()).points, [(7.0, 100.0)]);
    assert!(cdf("x", 0, std::iter::empty()).points.is_empty());
    let many = cdf("x", 0, (0..10_000).map(f64::from));
    assert!(many.points.len() <= 201);
    assert_eq!(many.points.last(), Some(&(9999.0, 100.0)));
}

#[test]
fn rfc3339_dates_are_gregorian_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    assert_eq!(now_rfc3339().len(), 20);
}

/// A leg that carried video too, with the given viewer figures.
fn video_leg(fps: f64, frame_loss_pct: f64, longest_freeze_ms: f64, keyframes: u64) -> Leg {
    Leg {
        video: Some(crate::video::VideoSummary {
            frames_expected: 300,
            frames_whole: 295,
            frames_shown: 290,
            keyframes,
            frame_loss_pct,
            fps,
            longest_freeze_ms,
            packets_received: 1500,
            packets_lost: 5,
        }),
        ..leg(0.5, 4.3)
    }
}

/// 11 calls: ten video calls of two video legs each (20 legs; leg i has a frame rate of 15 − i / 2, a frame loss
/// of i %, a longest freeze of 100 + 50 i ms and i mod 3 keyframes), and one audio call whose leg has no video.
fn video_run() -> Vec<CallRecord> {
    let mut calls: Vec<CallRecord> = (0..10u32)
        .map(|c| {
            let mut call = call(c, Outcome::Answered, Outcome::Answered, CallResult::Ok, Some(4.3));
            call.media = "video".into();
            call.legs = (2 * c..2 * c + 2)
                .map(|i| {
                    let x = f64::from(i);
                    video_leg(15.0 - x / 2.0, x, 100.0 + 50.0 * x, u64::from(i % 3))
                })
                .collect();
            call
        })
        .collect();
    calls.push(call(
        10,
        Outcome::Answered,
        Outcome::Answered,
        CallResult::Ok,
        Some(4.2),
    ));
    calls
}

#[test]
fn the_video_figures_match_the_hand_computed_ones() {
    let s = summary("v", &video_run(), &[], &Thresholds::default());
    let v = s.video.clone().expect("a video section");
    assert_eq!(v.legs, 20, "the audio-only leg is not a video leg");
    // Frame rates sorted: 5.5, 6.0 … 15.0; nearest ranks ceil(1) = 1 and ceil(10) = 10.
    let fps = v.fps.expect("fps");
    assert_eq!((fps.n, fps.p5, fps.p50, fps.max), (20, 5.5, 10.0, 15.0));
    // Frame losses 0 … 19 %: ranks 10 and 19.
    let loss = v.frame_loss_pct.expect("frame loss");
    assert_eq!((loss.p50, loss.p95, loss.max), (9.0, 18.0, 19.0));
    // Freezes 100, 150 … 1050 ms: ranks 10 and 19.
    let freeze = v.longest_freeze_ms.expect("freezes");
    assert_eq!((freeze.p50, freeze.p95, freeze.max), (550.0, 1000.0, 1050.0));
    // Keyframes 0, 1, 2, 0, 1, 2 … over 20 legs: 19 in all.
    assert!((v.keyframes_per_leg - 0.95).abs() < 1e-12, "{}", v.keyframes_per_leg);
    // The audio figures still count every leg, the audio-only one included.
    assert_eq!(s.loss_pct.expect("loss").n, 21);
}

#[test]
fn an_audio_only_run_has_no_video_section_anywhere() {
    let (audio, video) = (run(), video_run());
    let s = summary("a", &audio, &samples(10), &Thresholds::default());
    assert_eq!(s.video, None);
    let json = serde_json::to_value(&s).expect("JSON");
    assert!(json.get("video").is_none(), "summary.json has no video key: {json}");
    let mut out = Vec::new();
    print_summary(&s, &mut out).expect("print");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(!text.contains("Video") && !text.contains("frame rate"), "{text}");
    let html = render_html(&audio, &samples(10), &s);
    assert!(!html.contains("Video"), "the audio-only report mentions video");
    // The same report with video legs gains the section and its two plots.
    let sv = summary("v", &video, &samples(10), &Thresholds::default());
    let html_v = render_html(&video, &samples(10), &sv);
    assert_eq!(html_v.matches("<svg").count(), html.matches("<svg").count() + 2);
    assert!(html_v.contains("Video frame rate over legs") && html_v.contains("Longest video freeze over legs"));
    assert!(html_v.contains("<th class=\"sec\" colspan=\"2\">Video</th>"));
}

#[test]
fn the_video_section_is_printed_and_written_to_the_summary_json() {
    let s = summary("v", &video_run(), &[], &Thresholds::default());
    let mut out = Vec::new();
    print_summary(&s, &mut out).expect("print");
    let text = String::from_utf8(out).expect("utf-8");
    for line in [
        "\nVideo\n",
        "20 with video",
        "p5 5.5 · p50 10.0 fps",
        "p50 9.0 · p95 18.0 % (n 20 legs)",
        "p50 550.0 · p95 1000.0 ms (n 20 legs)",
        "0.95 per leg (mean)",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    let json = serde_json::to_value(&s).expect("JSON");
    let v = &json["video"];
    assert_eq!(v["legs"], 20);
    assert_eq!(
        (v["fps"]["p5"].as_f64(), v["fps"]["p50"].as_f64()),
        (Some(5.5), Some(10.0))
    );
    assert_eq!(v["frame_loss_pct"]["p95"].as_f64(), Some(18.0));
    assert_eq!(v["longest_freeze_ms"]["p95"].as_f64(), Some(1000.0));
    assert_eq!(v["keyframes_per_leg"].as_f64(), Some(0.95));
    let back: Summary = serde_json::from_value(json).expect("a Summary");
    assert_eq!(back, s);
}

#[test]
fn video_thresholds_are_judged_on_the_video_legs() {
    let judge = |fps: f64, freeze: f64| {
        let t = Thresholds {
            min_mos_p50: Some(4.0),
            min_video_fps_p5: Some(fps),
            max_video_freeze_p95_ms: Some(freeze),
            ..Thresholds::default()
        };
        summary("v", &video_run(), &[], &t)
    };
    // Measured: fps p5 5.5, freeze p95 1000 ms; a limit equal to the measurement passes.
    let s = judge(5.5, 1000.0);
    let verdicts: Vec<(&str, bool)> = s.thresholds.iter().map(|r| (r.name.as_str(), r.passed)).collect();
    assert_eq!(
        verdicts,
        [
            ("min_mos_p50", true),
            ("min_video_fps_p5", true),
            ("max_video_freeze_p95_ms", true)
        ]
    );
    assert!(s.passed);
    let s = judge(6.0, 999.0);
    let failed: Vec<String> = s.failed_thresholds().iter().map(|t| t.to_string()).collect();
    assert_eq!(
        failed,
        [
            "min_video_fps_p5 (limit 6.0, measured 5.5)",
            "max_video_freeze_p95_ms (limit 999.0, measured 1000.0)"
        ]
    );
    assert!(s.thresholds.iter().all(|t| t.note.is_none()));
}

#[test]
fn a_video_threshold_without_video_legs_fails_saying_so() {
    let t = Thresholds {
        min_video_fps_p5: Some(0.0),
        max_video_freeze_p95_ms: Some(1e9),
        ..Thresholds::default()
    };
    let s = summary("a", &run(), &[], &t);
    assert!(!s.passed);
    for r in &s.thresholds {
        assert_eq!((r.measured, r.passed), (None, false), "{}", r.name);
        assert_eq!(r.note.as_deref(), Some(super::thresholds::NO_VIDEO));
    }
    assert_eq!(
        s.failed_thresholds()[0].to_string(),
        "min_video_fps_p5 (limit 0.0, measured nothing: no video legs were measured)"
    );
    let mut out = Vec::new();
    print_summary(&s, &mut out).expect("print");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.contains("FAIL  max_video_freeze_p95_ms ≤ 1000000000.0: measured no video legs were measured"),
        "{text}"
    );
    assert!(render_html(&run(), &[], &s).contains("no video legs were measured"));
    // The note survives summary.json; audio thresholds never get one.
    let back: Summary = serde_json::from_value(serde_json::to_value(&s).expect("JSON")).expect("a Summary");
    assert_eq!(back, s);
    let audio = summary(
        "a",
        &run(),
        &[],
        &Thresholds {
            min_mos_p50: Some(1.0),
            ..Thresholds::default()
        },
    );
    let json = serde_json::to_value(&audio.thresholds).expect("JSON");
    assert!(json[0].get("note").is_none(), "{json}");
}

#[test]
fn legs_round_trip_through_json_with_and_without_video() {
    let audio = leg(1.0, 4.1);
    let text = serde_json::to_string(&audio).expect("JSON");
    assert!(!text.contains("\"video\""), "an audio leg writes no video key: {text}");
    assert_eq!(serde_json::from_str::<Leg>(&text).expect("a Leg"), audio);
    let video = video_leg(14.5, 2.0, 133.0, 3);
    let json = serde_json::to_value(&video).expect("JSON");
    assert_eq!(json["video"]["fps"].as_f64(), Some(14.5));
    assert_eq!(json["video"]["keyframes"], 3);
    assert_eq!(json["video"]["longest_freeze_ms"].as_f64(), Some(133.0));
    assert_eq!(serde_json::from_value::<Leg>(json).expect("a Leg"), video);
    // Whole records, through calls.jsonl.
    let dir = scratch("video-jsonl");
    let path = dir.join("calls.jsonl");
    let records = video_run();
    let mut w = JsonlWriter::create(&path).expect("create");
    for r in &records {
        w.write(r).expect("write");
    }
    drop(w);
    assert_eq!(read_jsonl(&path).expect("read"), records);
}

#[test]
fn video_thresholds_come_from_toml_and_must_be_numbers_of_zero_or_more() {
    const SCENARIO: &str = "name = \"v\"\nduration_s = 10\n\
        [servers]\nsignaling = \"ws://127.0.0.1:7880/ws\"\napi_key = \"lt\"\n\
        [population]\nusers = 10\n\
        [arrival]\nrate_per_s = 1\nhold = { dist = \"fixed\", s = 5.0 }\n";
    let parse = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        crate::scenario::Scenario::parse(SCENARIO, &sets)
    };
    let s = parse(&[
        "thresholds.min_video_fps_p5=12",
        "thresholds.max_video_freeze_p95_ms=500.5",
    ])
    .expect("valid");
    assert_eq!(
        (s.thresholds.min_video_fps_p5, s.thresholds.max_video_freeze_p95_ms),
        (Some(12.0), Some(500.5))
    );
    assert!(parse(&["thresholds.min_video_fps_p5=0"]).is_ok(), "0 is allowed");
    let err = |set: &str| parse(&[set]).expect_err(set).to_string();
    let e = err("thresholds.min_video_fps_p5=-1");
    assert_eq!(e, "thresholds.min_video_fps_p5: must be a number of 0 or more, not -1");
    assert!(err("thresholds.min_video_fps_p5=nan").starts_with("thresholds.min_video_fps_p5:"));
    let e = err("thresholds.max_video_freeze_p95_ms=inf");
    assert!(
        e.starts_with("thresholds.max_video_freeze_p95_ms: must be a number of 0 or more"),
        "{e}"
    );
    assert!(err("thresholds.max_video_freeze_p95_ms=-0.5").starts_with("thresholds.max_video_freeze_p95_ms:"));
}

#[test]
fn moves_are_counted_their_gaps_summarised_and_printed_and_they_round_trip() {
    let mut records = run();
    let moved = |user: &str, gap_ms| Move {
        user: user.into(),
        reason: "node_lost".into(),
        gap_ms,
    };
    records[0].moves = vec![moved("u0", Some(900.0)), moved("u1", Some(1500.0))];
    records[1].moves = vec![moved("u2", Some(400.0)), moved("u3", None)];
    let s = summary("moves", &records, &[], &Thresholds::default());
    assert_eq!(s.moves, 4);
    // The gap that never closed is counted as a move but not as a gap: 400, 900, 1500.
    let gap = s.move_gap_ms.clone().expect("gaps");
    assert_eq!((gap.n, gap.p50, gap.max), (3, 900.0, 1500.0));
    let mut out = Vec::new();
    print_summary(&s, &mut out).expect("print");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("moved to another node"), "{text}");
    assert!(text.contains("4 times; media gap p50 900"), "{text}");
    // A run without moves says nothing of them, in the terminal or the JSON.
    let quiet = summary("quiet", &run(), &[], &Thresholds::default());
    assert_eq!((quiet.moves, quiet.move_gap_ms.is_none()), (0, true));
    let json = serde_json::to_string(&quiet).expect("json");
    assert!(!json.contains("move"), "{json}");
    let path = scratch("moves").join("calls.jsonl");
    let mut w = JsonlWriter::create(&path).expect("create");
    for r in &records {
        w.write(r).expect("write");
    }
    drop(w);
    assert_eq!(read_jsonl(&path).expect("read"), records);
}
