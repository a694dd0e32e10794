//! Everything a run needs before its first call: the plan, the API secret, the network profiles, and the
//! speech encoded once.

use crate::audio::{EncodeConfig, EncodedSpeech};
use crate::client::Ctx;
use crate::scenario::Scenario;
use anyhow::Context;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Checks what this harness cannot do yet, then builds the shared context, with `media_threads` media shards.
pub fn context(scenario: Scenario, media_threads: usize) -> anyhow::Result<Arc<Ctx>> {
    let video = match scenario.mix.video > 0.0 {
        true => Some(crate::video::Clip::embedded().context("loading the shipped VP8 clip")?),
        false => None,
    };
    let secret = scenario.api_secret()?;
    let profiles = scenario.profiles()?;
    let plan = crate::plan::plan(&scenario);
    let media = &scenario.media;
    let config = EncodeConfig {
        bitrate_bps: media.bitrate_kbps * 1000,
        fec: media.fec,
        dtx: media.dtx,
        ..EncodeConfig::default()
    };
    let speech = EncodedSpeech::new(&config).context("encoding the speech sample")?;
    let source_ips = scenario
        .servers
        .source_ips
        .iter()
        .map(|s| s.parse::<IpAddr>())
        .collect::<Result<Vec<_>, _>>()
        .context("servers.source_ips")?;
    Ok(Arc::new(Ctx {
        jitter_buffer: crate::quality::JitterConfig::default(),
        scenario,
        plan,
        secret,
        start: Instant::now(),
        speech,
        profiles,
        source_ips,
        placing: Mutex::new(HashMap::new()),
        video,
        shards: crate::client::shard::Shards::start(media_threads).context("starting the media shards")?,
    }))
}
