//! Starting the services, and stopping them on SIGTERM or SIGINT: the first signal drains (no new work,
//! existing allocations run until `turn.drain_deadline_secs`), a second one stops at once.

use crate::cli::{Cli, Command};
use anyhow::Context as _;
use hualu_cluster::{Heartbeat, Identity, MediaSink};
use hualu_common::config::Config;
use hualu_common::http::{self, Health};
use hualu_sfu::signaling::{self, RtcState};
use hualu_sfu::Node;
use hualu_signaling::server::placement::CloseRoom;
use hualu_signaling::server::{CallControl, LocalSfu, Placement};
use hualu_turn::Relay;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Which services a command runs.
#[derive(Debug, Clone, Copy)]
struct Services {
    turn: bool,
    sfu: bool,
    signaling: bool,
}

/// Loads the config and runs the chosen command until it is signalled to stop.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref(), &cli.sets)?;
    let services = match &cli.command {
        Command::Token(args) => {
            println!("{}", crate::token::mint(&config, args)?);
            return Ok(());
        }
        Command::Up { dev } => {
            if *dev || cli.config.is_none() {
                config.dev = true;
            }
            Services {
                turn: true,
                sfu: true,
                signaling: true,
            }
        }
        Command::Turn => Services {
            turn: true,
            sfu: false,
            signaling: false,
        },
        Command::Sfu => Services {
            turn: false,
            sfu: true,
            signaling: false,
        },
        Command::Signaling => Services {
            turn: false,
            sfu: false,
            signaling: true,
        },
    };
    if config.dev {
        crate::dev::credentials(&mut config, services.sfu || services.signaling);
    }
    hualu_common::telemetry::init(&config.log);
    serve(config, services)
}

/// The running services.
struct Running {
    relay: Option<Relay>,
    sfu: Option<Arc<Node>>,
    heartbeat: Option<Heartbeat>,
}

impl Running {
    fn died(&self) -> Option<&'static str> {
        if self.relay.as_ref().is_some_and(Relay::shard_died) {
            return Some("a TURN shard");
        }
        self.sfu.as_ref().filter(|n| n.shard_died()).map(|_| "an SFU shard")
    }

    fn publish_metrics(&self) {
        if let Some(r) = &self.relay {
            r.publish_metrics();
        }
    }

    fn stop(self) {
        if let Some(h) = self.heartbeat {
            h.stop();
        }
        if let Some(r) = self.relay {
            r.stop();
        }
        if let Some(n) = self.sfu.and_then(|n| Arc::try_unwrap(n).ok()) {
            n.stop();
        }
    }
}

fn serve(config: Config, services: Services) -> anyhow::Result<()> {
    let signals = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_usize(sig, signals.clone(), 1).context("installing signal handlers")?;
    }
    let health = Arc::new(Health::default());
    let metrics = http::serve(config.metrics.listen, health.clone())?;
    let relay = match services.turn {
        true => Some(Relay::start(&config).context("starting the TURN relay")?),
        false => None,
    };
    let mut ready = Vec::new();
    if let Some(r) = &relay {
        ready.push(format!("turn udp {:?} tcp {:?} tls {:?}", r.udp, r.tcp, r.tls));
    }
    // Call control hears from the SFU when calls' media starts or dies; it starts after the SFU. In a cluster the
    // reports go through Redis, to whichever signaling node follows them (this one too, if it runs signaling).
    let calls: Arc<OnceLock<CallControl>> = Arc::new(OnceLock::new());
    let published: Arc<OnceLock<MediaSink>> = Arc::new(OnceLock::new());
    let sfu = match services.sfu {
        true => {
            let (calls, published) = (calls.clone(), published.clone());
            let observer: hualu_sfu::shard::Observer = Arc::new(move |r: hualu_sfu::MediaReport| {
                if let Some(sink) = published.get() {
                    sink.report(&r.room, &r.identity, r.flowing);
                } else if let Some(c) = calls.get() {
                    c.media(&r.room, &r.identity, r.flowing);
                }
            });
            let node = Node::start_observed(&config.sfu, Some(observer)).context("starting the SFU")?;
            Some(Arc::new(node))
        }
        false => None,
    };
    let mut heartbeat = None;
    if sfu.is_some() || services.signaling {
        let api = serve_api(&config, sfu.clone(), services.signaling, &calls)?;
        if let Some(node) = sfu.as_ref().filter(|_| config.cluster.enabled()) {
            let (beat, who) = join_cluster(&config, node.clone(), api)?;
            let _ = published.set(beat.media());
            ready.push(format!("cluster node {} at {}", who.id, who.url));
            heartbeat = Some(beat);
        }
        if let Some(node) = &sfu {
            ready.push(format!(
                "sfu udp {:?} ice-tcp {:?}; rooms ws://{api}/rtc",
                node.udp_addrs(),
                node.tcp_addrs()
            ));
        }
        if services.signaling {
            ready.push(format!("calls ws://{api}/ws"));
        }
    }
    let running = Running { relay, sfu, heartbeat };
    health.set_ready();
    println!("hualu ready: {}; metrics http://{metrics}/metrics", ready.join("; "));
    wait_for_signal(&running, &signals);
    if let Some(what) = running.died() {
        running.stop();
        anyhow::bail!("{what} stopped unexpectedly; exiting so a supervisor restarts hualu");
    }
    health.set_draining();
    drain(running, &signals, &config);
    Ok(())
}

/// The public HTTP port: the SFU's `/rtc`, WHIP and WHEP, and call control's `/ws`.
fn serve_api(
    config: &Config,
    sfu: Option<Arc<Node>>,
    signaling: bool,
    calls: &OnceLock<CallControl>,
) -> anyhow::Result<SocketAddr> {
    let build = || -> anyhow::Result<axum::Router> {
        let mut app = axum::Router::new();
        let sfu_here = sfu.clone();
        if let Some(node) = sfu {
            app = app.merge(signaling::router(RtcState::new(node, config)));
        }
        if signaling {
            // With the SFU here, an ended call's room is closed on it. A cluster places rooms on any node.
            let placement = sfu_here.filter(|_| !config.cluster.enabled()).map(|node| {
                let key = config.auth.api_keys.iter().next().map(|(k, v)| (k.clone(), v.clone()));
                let close: CloseRoom = Box::new(move |room: &str| {
                    node.close_room(room);
                });
                let local = LocalSfu::from_config(config, key.unwrap_or_default(), Some(close));
                Arc::new(local) as Arc<dyn Placement>
            });
            let (routes, control) =
                hualu_signaling::server::start(config, placement, None).context("starting call control")?;
            let _ = calls.set(control);
            app = app.merge(routes).merge(crate::web::router(config.dev));
        }
        Ok(app)
    };
    http::serve_app(config.http.listen, build).map_err(|e| match e {
        http::ServeError::Http(e) => anyhow::Error::new(e),
        http::ServeError::App(e) => e,
    })
}

fn wait_for_signal(running: &Running, signals: &AtomicUsize) {
    while signals.load(Ordering::Relaxed) == 0 && running.died().is_none() {
        running.publish_metrics();
        std::thread::sleep(Duration::from_millis(250));
    }
    signals.store(0, Ordering::Relaxed);
}

/// Registers this SFU node in the cluster with its link addresses, starts its heartbeat, and opens its links to
/// the other nodes (rooms that span nodes).
fn join_cluster(config: &Config, node: Arc<Node>, api: SocketAddr) -> anyhow::Result<(Heartbeat, Identity)> {
    let c = &config.cluster;
    let id = match c.node_id.as_str() {
        "" => format!("{}-{}", hostname(), api.port()),
        id => id.to_string(),
    };
    let url = match c.advertise_url.as_str() {
        "" if api.ip().is_unspecified() => anyhow::bail!(
            "config: cluster.advertise_url: must be set when http.listen is {api} (clients cannot reach it)"
        ),
        "" => format!("ws://{api}/rtc"),
        url => url.to_string(),
    };
    // Where clients and the other nodes reach each shard: the address ICE advertises, on the shard's bound port.
    let ip = config.sfu.advertised_ip();
    let media = node
        .udp_addrs()
        .into_iter()
        .map(|a| SocketAddr::new(ip, a.port()))
        .collect();
    let who = Identity { id, url, media };
    // Every SFU node of the cluster derives the same key, so that they accept each other's links.
    let key = c.link_key(&config.auth.api_keys).context(
        "config: cluster.link_secret: must be set when auth.api_keys is empty (SFU nodes authenticate their links with it)",
    )?;
    let load = node.clone();
    let beat = Heartbeat::start(c, who.clone(), Box::new(move || load.load())).context("joining the cluster")?;
    // Only a cluster node relays rooms with other nodes; the key authenticates both ends of each link.
    node.enable_links(key);
    // A call that ended, or whose room moved away, has its room closed here: its participants get `left`.
    beat.follow_closes(move |room| {
        tracing::debug!(%room, "call control closed the room");
        node.close_room(room);
    });
    Ok((beat, who))
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "sfu".into()
    } else {
        name
    }
}

/// How long a draining cluster node waits, after its deadline, for its rooms' clients to move to other nodes.
const MOVE_GRACE: Duration = Duration::from_secs(10);

/// Refuses new TURN allocations and, in a cluster, new rooms; lets existing allocations and calls run until their
/// deadlines (or a second signal). A cluster node's rooms then move to other nodes, and it stops once they are
/// empty (or `MOVE_GRACE` later). The SFU's remaining participants are told the server is stopping.
fn drain(running: Running, signals: &AtomicUsize, config: &Config) {
    let start = Instant::now();
    let turn_until = start + Duration::from_secs(config.turn.drain_deadline_secs);
    let rooms_deadline = Duration::from_secs(config.cluster.drain_deadline_secs);
    let rooms_until = start + rooms_deadline + MOVE_GRACE;
    if let Some(h) = &running.heartbeat {
        h.drain(rooms_deadline);
    }
    if let Some(relay) = &running.relay {
        relay.drain();
    }
    while signals.load(Ordering::Relaxed) == 0 {
        let now = Instant::now();
        let relaying = running.relay.as_ref().is_some_and(|r| {
            r.publish_metrics();
            r.allocations() > 0 && now < turn_until
        });
        let hosting =
            running.heartbeat.is_some() && running.sfu.as_ref().is_some_and(|n| n.load().1 > 0) && now < rooms_until;
        if !relaying && !hosting {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    running.stop();
}
