//! The SFU node: its shards, each on its own thread with its own ports. A room lives on one shard, chosen by a
//! hash of its name, so every participant of a room reaches that shard's sockets and nothing is shared between
//! shards on the packet path.

use crate::core::Limits;
use crate::shard::{Command, Observer, Shard, ShardConfig, ShardLoad};
use hualu_common::config::SfuConfig;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Errors starting the SFU.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A shard's socket could not be bound.
    #[error("sfu shard {shard}: cannot bind {proto} {addr}: {source}")]
    Bind {
        /// The shard.
        shard: usize,
        /// "udp" or "tcp".
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A shard thread could not start.
    #[error("sfu shard {0}: {1}")]
    Start(usize, std::io::Error),
}

struct ShardHandle {
    commands: Sender<Command>,
    waker: mio::Waker,
    thread: Option<JoinHandle<()>>,
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
    load: Arc<ShardLoad>,
}

/// A running SFU.
pub struct Node {
    shards: Vec<ShardHandle>,
}

/// Socket buffers for the media sockets: a fan-out burst to hundreds of subscribers must not overflow them.
const SOCKET_BUFFER: usize = 4 << 20;

impl Node {
    /// Binds every shard's sockets and starts its thread.
    pub fn start(cfg: &SfuConfig) -> Result<Self, NodeError> {
        Self::start_observed(cfg, None)
    }

    /// [`Node::start`], with `observer` told when participants' media starts or dies.
    pub fn start_observed(cfg: &SfuConfig, observer: Option<Observer>) -> Result<Self, NodeError> {
        let count = cfg.shard_count();
        let mut shards = Vec::with_capacity(count);
        for index in 0..count {
            shards.push(start_shard(cfg, index, count, observer.clone())?);
        }
        let udp: Vec<SocketAddr> = shards.iter().map(|s| s.udp).collect();
        tracing::info!(shards = count, ?udp, "sfu started");
        Ok(Self { shards })
    }

    /// The shard that holds `room`.
    pub fn shard_of(&self, room: &str) -> usize {
        hualu_common::room_shard(room, self.shards.len())
    }

    /// The shard a participant id belongs to (ids carry their shard in their top bits).
    pub fn shard_of_peer(&self, id: crate::PeerId) -> usize {
        ((id >> 40) as usize).min(self.shards.len() - 1)
    }

    /// Ends room `room` on its shard: everyone in it leaves. False if the shard has stopped.
    pub fn close_room(&self, room: &str) -> bool {
        self.send(self.shard_of(room), Command::CloseRoom(room.to_string()))
    }

    /// Lets every shard relay rooms that span nodes with the other SFU nodes of the cluster, which derive the
    /// same `key` ([`hualu_common::config::ClusterConfig::link_key`]).
    pub fn enable_links(&self, key: [u8; 32]) {
        for shard in 0..self.shards.len() {
            self.send(shard, Command::EnableLinks(key));
        }
    }

    /// Queues a command for a shard and wakes it. False if the shard has stopped.
    pub fn send(&self, shard: usize, cmd: Command) -> bool {
        let Some(s) = self.shards.get(shard) else { return false };
        s.commands.send(cmd).is_ok() && s.waker.wake().is_ok()
    }

    /// The shards' bound UDP addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|s| s.udp).collect()
    }

    /// The shards' bound ICE-TCP addresses.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().filter_map(|s| s.tcp).collect()
    }

    /// Rooms, participants, and media packets in and out since start, over every shard (as of each shard's last
    /// once-a-second report).
    pub fn load(&self) -> (u64, u64, u64) {
        self.shards.iter().fold((0, 0, 0), |(r, p, k), s| {
            (
                r + s.load.rooms.load(Ordering::Relaxed),
                p + s.load.participants.load(Ordering::Relaxed),
                k + s.load.packets.load(Ordering::Relaxed),
            )
        })
    }

    /// Whether a shard thread has ended without being told to.
    pub fn shard_died(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.thread.as_ref().is_some_and(JoinHandle::is_finished))
    }

    /// Stops every shard; their participants are told the server is stopping.
    pub fn stop(mut self) {
        for s in &self.shards {
            let _ = s.commands.send(Command::Stop);
            let _ = s.waker.wake();
        }
        for s in &mut self.shards {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn start_shard(
    cfg: &SfuConfig,
    index: usize,
    count: usize,
    observer: Option<Observer>,
) -> Result<ShardHandle, NodeError> {
    let port = |base: u16| if base == 0 { 0 } else { base + index as u16 };
    let udp_addr = SocketAddr::new(cfg.listen_ip, port(cfg.udp_port));
    let udp = bind_udp(udp_addr).map_err(|source| bind_err(index, "udp", udp_addr, source))?;
    let udp_local = udp.local_addr().map_err(|e| NodeError::Start(index, e))?;
    let public = cfg.advertised_ip();
    let (tcp, tcp_local) = if cfg.tcp_port != 0 {
        let tcp_addr = SocketAddr::new(cfg.listen_ip, port(cfg.tcp_port));
        let l = std::net::TcpListener::bind(tcp_addr).map_err(|source| bind_err(index, "tcp", tcp_addr, source))?;
        let local = l.local_addr().map_err(|e| NodeError::Start(index, e))?;
        (Some(l), Some(local))
    } else {
        (None, None)
    };
    let limits = Limits {
        participants_per_room: cfg.participants_per_room,
        rooms: cfg.max_rooms.div_ceil(count),
        connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
        idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
    };
    let load = Arc::new(ShardLoad::default());
    let shard_cfg = ShardConfig {
        index,
        udp,
        tcp,
        udp_public: SocketAddr::new(public, udp_local.port()),
        tcp_public: tcp_local.map(|l| SocketAddr::new(public, l.port())),
        limits,
        observer,
        load: load.clone(),
    };
    let (tx, rx) = mpsc::channel();
    let (shard, waker) = Shard::new(shard_cfg, rx).map_err(|e| NodeError::Start(index, e))?;
    let thread = std::thread::Builder::new()
        .name(format!("sfu-{index}"))
        .spawn(move || shard.run())
        .map_err(|e| NodeError::Start(index, e))?;
    Ok(ShardHandle {
        commands: tx,
        waker,
        thread: Some(thread),
        udp: udp_local,
        tcp: tcp_local,
        load,
    })
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(SockProtocol::UDP))?;
    // Larger buffers are a wish: the kernel caps them at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_err(shard: usize, proto: &'static str, addr: SocketAddr, source: std::io::Error) -> NodeError {
    NodeError::Bind {
        shard,
        proto,
        addr,
        source,
    }
}
