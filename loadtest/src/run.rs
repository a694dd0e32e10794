//! A whole run: connect the population, place the plan's calls on time, fire the timed events, sample the
//! servers every second, collect each call's record, and write the reports.

use crate::capacity::{Progress, Tracker};
use crate::client::device::{Cmd, Device, Report};
use crate::client::{splitmix, Ctx};
use crate::collector::Collector;
use crate::record::{CallRecord, CallResult, Sample, ServerUsage, Summary};
use crate::report::{JsonlWriter, Live};
use crate::scenario::EventKind;
use crate::server::{Rates, Sampler};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::{interval, sleep_until, MissedTickBehavior};

/// How long after the last planned call's end the run waits for stragglers.
const DRAIN: Duration = Duration::from_secs(30);

/// What a finished run gives back.
pub struct Outcome {
    /// The summary, with its threshold verdicts.
    pub summary: Summary,
    /// Where the files went.
    pub out: PathBuf,
}

/// Every device's command channel, by user then device.
type Devices = Vec<Vec<mpsc::Sender<Cmd>>>;

/// Runs the scenario in `ctx` and writes its reports under `out`.
pub async fn run(ctx: Arc<Ctx>, out: PathBuf, pids: Vec<u32>, quiet: bool) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let started_at = crate::report::now_rfc3339();
    let (report_tx, mut report_rx) = mpsc::unbounded_channel::<Report>();
    let devices = connect_all(&ctx, report_tx).await?;
    let t0 = Instant::now();
    let placed = Arc::new(AtomicU32::new(0));
    let halt = Arc::new(AtomicBool::new(false));
    tokio::spawn(schedule(ctx.clone(), devices.clone(), t0, placed.clone(), halt.clone()));
    tokio::spawn(events(ctx.clone(), devices.clone(), t0));
    let mut sampler = Sampler::new(pids.clone(), ctx.scenario.servers.metrics.clone());
    let mut collector = Collector::new(t0);
    let mut jsonl = JsonlWriter::create(&out.join("calls.jsonl"))?;
    let live = Live::new(ctx.scenario.placing_s(), quiet);
    let mut records: Vec<CallRecord> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick = interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let total = ctx.plan.calls.len();
    let last_end = ctx
        .plan
        .calls
        .iter()
        .map(|c| c.at_s + c.ring_s + c.hold_s)
        .fold(0.0, f64::max);
    let deadline = t0 + Duration::from_secs_f64(last_end.max(ctx.scenario.placing_s()) + 60.0) + DRAIN;
    let mut first = None;
    let mut placed_before = 0;
    let mut capacity = Tracker::new(&ctx.scenario);
    // Once capacity mode halts, no more calls are placed and the run ends when the ones placed are in.
    let expected = |halted: bool| {
        if halted {
            placed.load(Ordering::Relaxed) as usize
        } else {
            total
        }
    };
    while records.len() < expected(halt.load(Ordering::Relaxed)) && Instant::now() < deadline {
        tokio::select! {
            Some(report) = report_rx.recv() => {
                let Some(plan) = ctx.plan.calls.get(report.index as usize) else { continue };
                if let Some(record) = collector.add(plan, report) {
                    jsonl.write(&record)?;
                    records.push(record);
                }
            }
            _ = tick.tick() => {
                let rates = sampler.sample().await;
                first.get_or_insert(rates);
                let placed_now = placed.load(Ordering::Relaxed);
                let sample = sample(t0, placed_now, placed_before, &records, rates);
                placed_before = placed_now;
                live.update(&sample);
                samples.push(sample);
                let now_s = t0.elapsed().as_secs_f64();
                if capacity.as_mut().is_some_and(|c| c.poll(now_s, &ctx.plan, &records, &samples) == Progress::Done) {
                    // A level broke, or the last one was judged: no more calls; the ones up run their course.
                    halt.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    stop_all(&devices).await;
    // The devices' last reports (calls cut short by the deadline).
    let grace = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(report)) = tokio::time::timeout_at(grace.into(), report_rx.recv()).await {
        let Some(plan) = ctx.plan.calls.get(report.index as usize) else {
            continue;
        };
        if let Some(record) = collector.add(plan, report) {
            jsonl.write(&record)?;
            records.push(record);
        }
    }
    for record in collector.flush(&ctx.plan.calls) {
        jsonl.write(&record)?;
        records.push(record);
    }
    let last = sampler.sample().await;
    live.finish();
    records.sort_by_key(|r| r.index);
    let usage = usage(first, last, &samples, &records);
    let mut summary = Summary::compute(
        &ctx.scenario.name,
        ctx.plan.seed,
        &started_at,
        &records,
        &samples,
        &crate::score::label(&ctx.scenario),
        usage,
        &ctx.scenario.thresholds,
    );
    if let (Some(tracker), Some(c)) = (capacity, &ctx.scenario.capacity) {
        summary.set_capacity(tracker.finish(), c.require_calls.unwrap_or(c.start_calls));
    }
    crate::report::write_all(&out, &records, &samples, &summary)?;
    Ok(Outcome { summary, out })
}

/// Opens every device's socket at the scenario's connect rate, and starts its task.
async fn connect_all(ctx: &Arc<Ctx>, reports: mpsc::UnboundedSender<Report>) -> anyhow::Result<Devices> {
    let pop = &ctx.scenario.population;
    let gap = Duration::from_secs_f64(1.0 / pop.connect_rate);
    let start = Instant::now();
    let mut pending = Vec::new();
    for (i, (u, d)) in (0..pop.users)
        .flat_map(|u| (0..pop.devices_per_user).map(move |d| (u, d)))
        .enumerate()
    {
        let (ctx, reports) = (ctx.clone(), reports.clone());
        let at = start + gap * i as u32;
        pending.push(tokio::spawn(async move {
            sleep_until(at.into()).await;
            let device = Device::connect(ctx, u, d, reports).await?;
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(device.run(rx));
            Ok::<_, crate::client::device::DeviceError>((u, tx))
        }));
    }
    let mut devices: Devices = vec![Vec::new(); pop.users as usize];
    let mut errors = Vec::new();
    for p in pending {
        match p.await {
            Ok(Ok((u, tx))) => devices[u as usize].push(tx),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!(
            "{} of {} devices could not connect; the first: {}",
            errors.len(),
            pending_len(pop),
            errors[0]
        );
    }
    Ok(devices)
}

fn pending_len(pop: &crate::scenario::Population) -> u32 {
    pop.users * pop.devices_per_user
}

/// Places each planned call at its time: the caller's device 0 invites (and, for glare, the callee's too). Stops
/// placing once `halt` is set (capacity mode found its limit).
async fn schedule(ctx: Arc<Ctx>, devices: Devices, t0: Instant, placed: Arc<AtomicU32>, halt: Arc<AtomicBool>) {
    for call in &ctx.plan.calls {
        sleep_until((t0 + Duration::from_secs_f64(call.at_s)).into()).await;
        if halt.load(Ordering::Relaxed) {
            return;
        }
        let mut callers = vec![call.caller];
        if call.outcome == crate::record::Outcome::Glare {
            callers.extend(call.callees.first());
        }
        for u in callers {
            if let Some(tx) = devices.get(u as usize).and_then(|d| d.first()) {
                let _ = tx.send(Cmd::Place(call.index)).await;
            }
        }
        placed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Fires the timed events: each hits a share of the users, picked by the seed, and every device of theirs
/// that is in a call then.
async fn events(ctx: Arc<Ctx>, devices: Devices, t0: Instant) {
    let mut events: Vec<_> = ctx.scenario.events.iter().enumerate().collect();
    events.sort_by(|a, b| a.1.at_s.total_cmp(&b.1.at_s));
    for (i, e) in events {
        sleep_until((t0 + Duration::from_secs_f64(e.at_s)).into()).await;
        for (u, ds) in devices.iter().enumerate() {
            if !ctx.decides(splitmix((i as u64) << 32 | u as u64), e.share) {
                continue;
            }
            for tx in ds {
                let cmd = Cmd::Network {
                    switch: e.kind == EventKind::Switch,
                    outage: Duration::from_secs_f64(e.duration_s),
                };
                let _ = tx.try_send(cmd);
            }
        }
    }
}

async fn stop_all(devices: &Devices) {
    for tx in devices.iter().flatten() {
        let _ = tx.send(Cmd::Stop).await;
    }
}

fn sample(t0: Instant, placed: u32, placed_before: u32, records: &[CallRecord], r: Rates) -> Sample {
    let failed = records.iter().filter(|c| c.result != CallResult::Ok).count() as u32;
    let mut mos: Vec<f64> = records.iter().filter_map(|c| c.mos).collect();
    mos.sort_by(f64::total_cmp);
    Sample {
        t_s: t0.elapsed().as_secs_f64(),
        calls_active: placed.saturating_sub(records.len() as u32),
        calls_placed: placed,
        calls_completed: records.len() as u32 - failed,
        calls_failed: failed,
        setup_rate_per_s: f64::from(placed - placed_before),
        mos_p50: (!mos.is_empty()).then(|| mos[mos.len() / 2]),
        server_cpu_pct: r.cpu_pct,
        server_rss_mib: r.rss_mib,
        server_participants: r.participants,
        server_packets_per_s: r.packets_per_s,
    }
}

/// The servers' CPU per call and memory per participant over the run.
fn usage(first: Option<Rates>, last: Rates, samples: &[Sample], records: &[CallRecord]) -> Option<ServerUsage> {
    let cpu_seconds = last.cpu_s? - first?.cpu_s?;
    let call_seconds: f64 = samples.iter().map(|s| f64::from(s.calls_active)).sum();
    let peak_rss = samples.iter().filter_map(|s| s.server_rss_mib).fold(0.0, f64::max);
    let base_rss = samples
        .iter()
        .filter_map(|s| s.server_rss_mib)
        .fold(f64::INFINITY, f64::min);
    let peak_participants = samples.iter().filter_map(|s| s.server_participants).fold(0.0, f64::max);
    let _ = records;
    Some(ServerUsage {
        cpu_seconds,
        cpu_us_per_call_second: (call_seconds > 0.0).then(|| cpu_seconds * 1e6 / call_seconds),
        peak_rss_mib: peak_rss,
        rss_kib_per_participant: (peak_participants > 0.0).then(|| (peak_rss - base_rss) * 1024.0 / peak_participants),
        peak_calls: samples.iter().map(|s| s.calls_active).max().unwrap_or(0),
        peak_participants,
    })
}
