//! Starting the services, and stopping them on SIGTERM or SIGINT: the first signal drains (no new work,
//! existing allocations run until `turn.drain_deadline_secs`), a second one stops at once.

use crate::cli::{Cli, Command};
use anyhow::Context as _;
use hualu_common::config::Config;
use hualu_common::http::{self, Health};
use hualu_turn::Relay;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Loads the config and runs the chosen command until it is signalled to stop.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref(), &cli.sets)?;
    if let Command::Token(args) = &cli.command {
        println!("{}", crate::token::mint(&config, args)?);
        return Ok(());
    }
    if let Command::Up { dev } = cli.command {
        if dev || cli.config.is_none() {
            config.dev = true;
        }
    }
    if config.dev {
        crate::dev::credentials(&mut config);
    }
    hualu_common::telemetry::init(&config.log);
    serve(config)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let signals = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_usize(sig, signals.clone(), 1).context("installing signal handlers")?;
    }
    let health = Arc::new(Health::default());
    let metrics = http::serve(config.metrics.listen, health.clone())?;
    let relay = Relay::start(&config).context("starting the TURN relay")?;
    health.set_ready();
    println!(
        "hualu ready: turn udp {:?} tcp {:?} tls {:?}; metrics http://{metrics}/metrics",
        relay.udp, relay.tcp, relay.tls
    );
    wait_for_signal(&relay, &signals);
    if relay.shard_died() {
        relay.stop();
        anyhow::bail!("a TURN shard stopped unexpectedly; exiting so a supervisor restarts the relay");
    }
    health.set_draining();
    drain(relay, &signals, Duration::from_secs(config.turn.drain_deadline_secs));
    Ok(())
}

fn wait_for_signal(relay: &Relay, signals: &AtomicUsize) {
    while signals.load(Ordering::Relaxed) == 0 && !relay.shard_died() {
        relay.publish_metrics();
        std::thread::sleep(Duration::from_millis(250));
    }
    signals.store(0, Ordering::Relaxed);
}

/// Refuses new allocations, lets existing ones run until the deadline (or a second signal), then stops.
fn drain(relay: Relay, signals: &AtomicUsize, deadline: Duration) {
    relay.drain();
    let until = Instant::now() + deadline;
    while relay.allocations() > 0 && Instant::now() < until && signals.load(Ordering::Relaxed) == 0 {
        relay.publish_metrics();
        std::thread::sleep(Duration::from_millis(100));
    }
    relay.stop();
}
