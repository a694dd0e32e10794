//! The relay's I/O: one event-loop thread per shard (by default one per core).
//!
//! Every shard binds its own copy of each listener with SO_REUSEPORT, so the kernel spreads clients across
//! shards by a hash of their 5-tuple and a client's datagrams always reach the same shard. A shard owns the
//! allocations made through it and their relay sockets; peers' datagrams arrive on those sockets, so they too
//! reach the owning shard. No lock is taken and nothing is allocated per packet.

pub(crate) use hualu_common::udp_batch as batch;
mod metrics;
mod relays;
mod shard;
mod sockets;
mod stream;
mod tls;

use crate::core::{Server, Shared};
use crate::{authenticator, core_config, SetupError};
use hualu_common::config::Config;
use shard::{Shard, ShardInit, StreamListener};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// A running relay.
pub struct Relay {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    parked: relays::Parked,
    threads: Vec<JoinHandle<()>>,
    /// The UDP listener addresses.
    pub udp: Vec<SocketAddr>,
    /// The TCP listener addresses.
    pub tcp: Vec<SocketAddr>,
    /// The TLS listener addresses.
    pub tls: Vec<SocketAddr>,
}

impl Relay {
    /// Binds every listener on every shard and starts the shards.
    pub fn start(config: &Config) -> Result<Self, SetupError> {
        let t = &config.turn;
        // Registers TURN method and attribute names, so logs say "CreatePermission" rather than "8".
        turn_types::debug_init();
        if !t.has_credentials() {
            return Err(SetupError::NoCredentials);
        }
        let tls = if t.tls_port == 0 {
            None
        } else {
            tls::server_config(t.tls_cert.as_deref(), t.tls_key.as_deref(), config.dev)?
        };
        if t.tls_port != 0 && tls.is_none() {
            tracing::warn!(
                "turn.tls_port is set but no certificate is configured (turn.tls_cert, turn.tls_key): TLS is off"
            );
        }
        let shards = if t.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            t.shards
        };
        let shared = Arc::new(Shared::new(core_config(t), authenticator(t)));
        let stop = Arc::new(AtomicBool::new(false));
        let mut relay = Relay {
            shared,
            stop,
            parked: Default::default(),
            threads: Vec::new(),
            udp: vec![],
            tcp: vec![],
            tls: vec![],
        };
        let seed: u64 = rand::random();
        let (now, unix) = (Instant::now(), hualu_common::clock::unix_now());
        for index in 0..shards {
            let init = relay.bind_shard(config, index, seed, now, unix, tls.clone())?;
            let shard = Shard::new(init).map_err(|source| SetupError::Io {
                what: "poller".into(),
                source,
            })?;
            let handle = std::thread::Builder::new()
                .name(format!("turn-{index}"))
                .spawn(move || shard.run())
                .map_err(|source| SetupError::Io {
                    what: "shard thread".into(),
                    source,
                })?;
            relay.threads.push(handle);
        }
        tracing::info!(shards, udp = ?relay.udp, tcp = ?relay.tcp, tls = ?relay.tls, "turn relay ready");
        Ok(relay)
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_shard(
        &mut self,
        config: &Config,
        index: usize,
        seed: u64,
        now: Instant,
        unix: u64,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<ShardInit, SetupError> {
        let t = &config.turn;
        let first = index == 0;
        let mut udp = Vec::new();
        let mut streams = Vec::new();
        for &ip in &t.listen_ips {
            if first {
                probe(ip, t.udp_port, true, "turn.udp_port")?;
                probe(ip, t.tcp_port, false, "turn.tcp_port")?;
                probe(ip, if tls.is_some() { t.tls_port } else { 0 }, false, "turn.tls_port")?;
            }
            if t.udp_port != 0 {
                let addr = SocketAddr::new(ip, t.udp_port);
                let s = sockets::udp_listener(addr, t.socket_buffer_bytes).map_err(io_err("turn.udp_port", addr))?;
                if first {
                    self.udp.push(s.local_addr().unwrap_or(addr));
                }
                udp.push(s);
            }
            if t.tcp_port != 0 {
                let addr = SocketAddr::new(ip, t.tcp_port);
                let s = sockets::tcp_listener(addr).map_err(io_err("turn.tcp_port", addr))?;
                if first {
                    self.tcp.push(s.local_addr().unwrap_or(addr));
                }
                streams.push(StreamListener { socket: s, tls: false });
            }
            if t.tls_port != 0 && tls.is_some() {
                let addr = SocketAddr::new(ip, t.tls_port);
                let s = sockets::tcp_listener(addr).map_err(io_err("turn.tls_port", addr))?;
                if first {
                    self.tls.push(s.local_addr().unwrap_or(addr));
                }
                streams.push(StreamListener { socket: s, tls: true });
            }
        }
        let server = Server::new(self.shared.clone(), index, seed, now, unix);
        let relay_buffer = t.socket_buffer_bytes.min(1 << 20);
        Ok(ShardInit {
            server,
            udp,
            streams,
            tls,
            relay_buffer,
            stop: self.stop.clone(),
            parked: self.parked.clone(),
        })
    }

    /// Refuses new allocations (300 with ALTERNATE-SERVER when configured, else 486); existing ones go on.
    pub fn drain(&self) {
        self.shared.start_drain();
        tracing::info!(allocations = self.shared.total_allocations(), "turn relay draining");
    }

    /// Allocations held across all shards.
    pub fn allocations(&self) -> u32 {
        self.shared.total_allocations()
    }

    /// Publishes the process-wide gauge of active allocations.
    pub fn publish_metrics(&self) {
        metrics::publish_global(self.allocations());
    }

    /// Whether a shard thread has ended on its own (it should only end when stopped).
    pub fn shard_died(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && self.threads.iter().any(JoinHandle::is_finished)
    }

    /// Stops every shard now, releasing all allocations.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        tracing::info!("turn relay stopped");
    }
}

fn probe(ip: std::net::IpAddr, port: u16, udp: bool, key: &'static str) -> Result<(), SetupError> {
    if port == 0 {
        return Ok(());
    }
    let addr = SocketAddr::new(ip, port);
    sockets::ensure_free(addr, udp).map_err(io_err(key, addr))
}

fn io_err(key: &'static str, addr: SocketAddr) -> impl Fn(std::io::Error) -> SetupError {
    move |source| SetupError::Io {
        what: format!("{key}: cannot bind {addr}"),
        source,
    }
}
