//! STUN requests and indications: Binding (RFC 8489) and Allocate, Refresh, CreatePermission, ChannelBind and
//! Send (RFC 8656), each checked for credentials before it touches state.

use super::allocation::{Allocation, Channel, MAX_PERMISSIONS};
use super::auth::NonceCheck;
use super::limit::ByteBucket;
use super::reply::Reply;
use super::*;
use stun_types::attribute::*;
use stun_types::message::{IntegrityAlgorithm, IntegrityKey, Message, MessageClass, BINDING};
use stun_types::AddressFamily;
use turn_types::attribute::{
    ChannelNumber, ConnectionId, Data, DontFragment, EvenPort, Lifetime, RequestedAddressFamily, RequestedTransport,
    ReservationToken, XorPeerAddress, XorRelayedAddress,
};
use turn_types::message::{ALLOCATE, CHANNEL_BIND, CONNECT, CONNECTION_BIND, CREATE_PERMISSION, REFRESH, SEND};

/// Comprehension-required attributes this server understands; any other one gets 420 (RFC 8489 §6.3.1).
const KNOWN: [AttributeType; 16] = [
    ConnectionId::TYPE,
    ReservationToken::TYPE,
    Username::TYPE,
    MessageIntegrity::TYPE,
    MessageIntegritySha256::TYPE,
    Realm::TYPE,
    Nonce::TYPE,
    PasswordAlgorithm::TYPE,
    ChannelNumber::TYPE,
    Lifetime::TYPE,
    XorPeerAddress::TYPE,
    Data::TYPE,
    RequestedAddressFamily::TYPE,
    EvenPort::TYPE,
    RequestedTransport::TYPE,
    // Linux sets DF on UDP sockets by default (path MTU discovery), so DONT-FRAGMENT is honoured as is.
    DontFragment::TYPE,
];

/// A request whose credentials checked out.
struct Authed {
    key: IntegrityKey,
    algorithm: IntegrityAlgorithm,
    username: String,
}

impl Server {
    pub(super) fn stun<'a>(
        &mut self,
        from: ClientAddr,
        data: &'a [u8],
        now: Instant,
        relays: &mut impl RelaySockets,
    ) -> Option<ToPeer<'a>> {
        let Ok(msg) = Message::from_bytes(data) else {
            self.stats.malformed += 1;
            return None;
        };
        match msg.class() {
            MessageClass::Indication if msg.method() == SEND => self.send_indication(from, &msg, data, now),
            MessageClass::Request => {
                if let Some(bytes) = self.request(from, &msg, now, relays) {
                    self.transmits.push_back(Transmit { to: from, data: bytes });
                }
                None
            }
            _ => None,
        }
    }

    fn request(
        &mut self,
        from: ClientAddr,
        msg: &Message<'_>,
        now: Instant,
        relays: &mut impl RelaySockets,
    ) -> Option<Vec<u8>> {
        let method = msg.method();
        if method == BINDING {
            return self.unauthenticated(from, now, || {
                let mut r = Reply::success(msg);
                r.mapped(from.addr);
                r.finish(None)
            });
        }
        if ![
            ALLOCATE,
            REFRESH,
            CREATE_PERMISSION,
            CHANNEL_BIND,
            CONNECT,
            CONNECTION_BIND,
        ]
        .contains(&method)
        {
            return self.unauthenticated(from, now, || Reply::error(msg, 400).finish(None));
        }
        let unknown = unknown_required(msg);
        if !unknown.is_empty() {
            return self.unauthenticated(from, now, || {
                let mut r = Reply::error(msg, 420);
                r.unknown(&unknown);
                r.finish(None)
            });
        }
        if method == ALLOCATE && self.shared.is_draining() {
            return self.refuse_draining(from, msg, now);
        }
        let authed = match self.authenticate(from, msg, now) {
            Ok(a) => a,
            Err(reply) => {
                if method == ALLOCATE && msg.has_attribute(MessageIntegrity::TYPE) {
                    self.stats.allocate(AllocateResult::Unauthorized);
                }
                return reply;
            }
        };
        let reply = match method {
            ALLOCATE => self.allocate(from, msg, &authed, now, relays),
            REFRESH => self.refresh(from, msg, now, relays),
            CREATE_PERMISSION => self.create_permission(from, msg, now),
            CONNECT => self.connect(from, msg, relays)?,
            CONNECTION_BIND => self.connection_bind(from, msg, &authed.username),
            _ => self.channel_bind(from, msg, now),
        };
        Some(reply.finish(Some((&authed.key, authed.algorithm))))
    }

    /// Answers only within the per-source rate limit for unauthenticated traffic.
    fn unauthenticated(&mut self, from: ClientAddr, now: Instant, reply: impl FnOnce() -> Vec<u8>) -> Option<Vec<u8>> {
        if self.limiter.allow(from.addr.ip(), now) {
            Some(reply())
        } else {
            self.stats.unauth_dropped += 1;
            None
        }
    }

    fn challenge(&mut self, from: ClientAddr, msg: &Message<'_>, now: Instant, code: u16) -> Option<Vec<u8>> {
        let nonce = self.shared.auth.nonce(from.addr.ip(), self.unix(now));
        let realm = self.shared.auth.realm().to_owned();
        self.unauthenticated(from, now, || {
            let mut r = Reply::error(msg, code);
            r.challenge(&realm, &nonce);
            r.finish(None)
        })
    }

    fn authenticate(&mut self, from: ClientAddr, msg: &Message<'_>, now: Instant) -> Result<Authed, Option<Vec<u8>>> {
        let sha256 = msg.has_attribute(MessageIntegritySha256::TYPE);
        if !sha256 && !msg.has_attribute(MessageIntegrity::TYPE) {
            return Err(self.challenge(from, msg, now, 401));
        }
        let (Ok(user), Ok(realm), Ok(nonce)) = (
            msg.attribute::<Username>(),
            msg.attribute::<Realm>(),
            msg.attribute::<Nonce>(),
        ) else {
            return Err(self.unauthenticated(from, now, || Reply::error(msg, 400).finish(None)));
        };
        let unix = self.unix(now);
        if self.shared.auth.check_nonce(nonce.nonce(), from.addr.ip(), unix) != NonceCheck::Fresh {
            return Err(self.challenge(from, msg, now, 438));
        }
        if realm.realm() != self.shared.auth.realm() {
            return Err(self.challenge(from, msg, now, 401));
        }
        let algorithm = if sha256 {
            IntegrityAlgorithm::Sha256
        } else {
            IntegrityAlgorithm::Sha1
        };
        let username = user.username();
        if let Some(a) = self.by_client.get(&from).and_then(|h| self.allocations.get(h)) {
            if a.username != username {
                self.stats.auth_failures += 1;
                return Err(self.unauthenticated(from, now, || Reply::error(msg, 441).finish(None)));
            }
            if a.algorithm == algorithm && msg.validate_integrity_with_key(&a.key).is_ok() {
                return Ok(Authed {
                    key: a.key.clone(),
                    algorithm,
                    username: username.to_owned(),
                });
            }
        }
        let found = match self.shared.auth.keys(username, algorithm, unix) {
            Ok(keys) => keys.into_iter().find(|k| msg.validate_integrity_with_key(k).is_ok()),
            Err(e) => {
                tracing::debug!(client = %from, error = %e, "credential refused");
                None
            }
        };
        match found {
            Some(key) => Ok(Authed {
                key,
                algorithm,
                username: username.to_owned(),
            }),
            None => {
                tracing::debug!(client = %from, "integrity check failed (wrong password?)");
                self.stats.auth_failures += 1;
                Err(self.challenge(from, msg, now, 401))
            }
        }
    }

    fn refuse_draining(&mut self, from: ClientAddr, msg: &Message<'_>, now: Instant) -> Option<Vec<u8>> {
        self.stats.allocate(AllocateResult::Draining);
        let alternate = self.shared.config.alternate_server;
        self.unauthenticated(from, now, || match alternate {
            Some(addr) => {
                let mut r = Reply::error(msg, 300);
                r.alternate(addr);
                r.finish(None)
            }
            None => Reply::error(msg, 486).finish(None),
        })
    }

    fn allocate(
        &mut self,
        from: ClientAddr,
        msg: &Message<'_>,
        authed: &Authed,
        now: Instant,
        relays: &mut impl RelaySockets,
    ) -> Reply {
        if let Some(a) = self.by_client.get(&from).and_then(|h| self.allocations.get(h)) {
            if a.allocate_txid == msg.transaction_id() {
                return allocate_success(msg, a, None, now);
            }
            return self.reject(msg, 437);
        }
        let request =
            match AllocateRequest::parse(msg, self.shared.config.relay_ip6.is_some(), from.transport.is_stream()) {
                Ok(r) => r,
                Err(code) => return self.reject(msg, code),
            };
        let quota_user = self.shared.auth.quota_user(&authed.username).to_owned();
        if let Err(q) = self.shared.take_quota(&quota_user) {
            self.stats.quota_rejections += 1;
            self.stats.allocate(AllocateResult::Quota);
            tracing::debug!(client = %from, user = %quota_user, quota = ?q, "allocation quota reached");
            return Reply::error(msg, 486);
        }
        let Some((relay, local, reserved)) = self.bind_relay(&request, now, relays) else {
            self.shared.release_quota(&quota_user);
            self.stats.allocate(AllocateResult::Capacity);
            return Reply::error(msg, 508);
        };
        let lifetime = self.lifetime(msg);
        let mut alloc = self.new_allocation(from, relay, local, quota_user, authed, msg, now, lifetime);
        alloc.tcp = request.tcp;
        let reply = allocate_success(msg, &alloc, reserved, now);
        tracing::debug!(allocation = %alloc.id, client = %from, relay = %alloc.relay_addr, user = %alloc.quota_user, "allocated");
        self.by_client.insert(from, relay);
        if !alloc.tcp {
            self.by_relay_addr.insert(alloc.relay_addr, relay);
        }
        self.allocations.insert(relay, alloc);
        self.stats.allocate(AllocateResult::Ok);
        reply
    }

    #[allow(clippy::too_many_arguments)]
    fn new_allocation(
        &mut self,
        client: ClientAddr,
        relay: RelayHandle,
        local: SocketAddr,
        quota_user: String,
        authed: &Authed,
        msg: &Message<'_>,
        now: Instant,
        lifetime: Duration,
    ) -> Allocation {
        self.next_id += 1;
        let advertised = match (local.ip(), self.shared.config.external_ip) {
            (std::net::IpAddr::V4(_), Some(ext)) => SocketAddr::new(ext, local.port()),
            _ => local,
        };
        Allocation {
            id: AllocationId(self.next_id),
            client,
            relay,
            relay_addr: advertised,
            local,
            expires: now + lifetime,
            username: authed.username.clone(),
            quota_user,
            key: authed.key.clone(),
            algorithm: authed.algorithm,
            allocate_txid: msg.transaction_id(),
            permissions: Default::default(),
            channels: Default::default(),
            channel_of_peer: Default::default(),
            budget: ByteBucket::new(self.shared.config.bandwidth_bytes_per_sec, now),
            tcp: false,
            connections: Default::default(),
            peers: Default::default(),
            connecting: Default::default(),
        }
    }

    /// A relay socket for `request`: on a reserved port, or a new port (an even one, holding the next, if asked).
    fn bind_relay(
        &mut self,
        request: &AllocateRequest,
        now: Instant,
        relays: &mut impl RelaySockets,
    ) -> Option<(RelayHandle, SocketAddr, Option<u64>)> {
        if let Some(token) = request.reservation {
            let addr = self.shared.redeem(token)?;
            return match relays.open(addr) {
                Ok(relay) => Some((relay, addr, None)),
                Err(_) => {
                    self.shared.give_back_port(addr);
                    None
                }
            };
        }
        let ip = if request.ipv6 {
            self.shared.config.relay_ip6?
        } else {
            self.shared.config.relay_ip
        };
        let (even, pair) = request.even_port.map_or((false, false), |reserve| (true, reserve));
        for _ in 0..8 {
            let port = self.shared.take_port(request.ipv6, even, pair, &mut self.rng)?;
            let addr = SocketAddr::new(ip, port);
            let opened = if request.tcp {
                relays.open_tcp(addr)
            } else {
                relays.open(addr)
            };
            match opened {
                Ok(relay) if pair => {
                    let token = rand::Rng::random::<u64>(&mut self.rng);
                    self.shared
                        .reserve(token, SocketAddr::new(ip, port + 1), now + RESERVATION);
                    return Some((relay, addr, Some(token)));
                }
                Ok(relay) => return Some((relay, addr, None)),
                // Held by another process: leave it marked used and try another.
                Err(e) => tracing::debug!(%addr, error = %e, "relay port unavailable"),
            }
        }
        None
    }

    /// RFC 8656 §7.2: the lesser of the request and the maximum, but not below the default.
    fn lifetime(&self, msg: &Message<'_>) -> Duration {
        let c = &self.shared.config;
        match msg.attribute::<Lifetime>() {
            Ok(l) => Duration::from_secs(u64::from(l.seconds()))
                .min(c.max_lifetime)
                .max(c.default_lifetime),
            Err(_) => c.default_lifetime,
        }
    }

    fn refresh(&mut self, from: ClientAddr, msg: &Message<'_>, now: Instant, relays: &mut impl RelaySockets) -> Reply {
        let Some(&relay) = self.by_client.get(&from) else {
            return self.reject(msg, 437);
        };
        let requested = msg.attribute::<Lifetime>().ok().map(|l| l.seconds());
        let lifetime = self.lifetime(msg);
        let Some(a) = self.allocations.get_mut(&relay) else {
            return self.reject(msg, 437);
        };
        if let Ok(f) = msg.attribute::<RequestedAddressFamily>() {
            if (f.family() == AddressFamily::IPV6) != a.local.is_ipv6() {
                return self.reject(msg, 443);
            }
        }
        let mut r = Reply::success(msg);
        if requested == Some(0) {
            self.remove_allocation(relay, "refreshed to zero", relays);
            r.add(&Lifetime::new(0));
            return r;
        }
        a.expires = now + lifetime;
        r.add(&Lifetime::new(lifetime.as_secs() as u32));
        r
    }

    fn create_permission(&mut self, from: ClientAddr, msg: &Message<'_>, now: Instant) -> Reply {
        let Some(&relay) = self.by_client.get(&from) else {
            return self.reject(msg, 437);
        };
        let peers: Vec<SocketAddr> = (0..)
            .map_while(|n| msg.nth_attribute::<XorPeerAddress>(n).ok())
            .map(|p| normalised(p.addr(msg.transaction_id())))
            .collect();
        if peers.is_empty() {
            return self.reject(msg, 400);
        }
        for peer in &peers {
            if let Err(code) = self.check_peer(relay, *peer) {
                return self.reject(msg, code);
            }
        }
        let expires = now + self.shared.config.permission_lifetime;
        let Some(a) = self.allocations.get_mut(&relay) else {
            return self.reject(msg, 437);
        };
        let new = peers.iter().filter(|p| !a.permissions.contains_key(&p.ip())).count();
        if a.permissions.len() + new > MAX_PERMISSIONS {
            return self.reject(msg, 508);
        }
        for peer in peers {
            a.permissions.insert(peer.ip(), expires);
        }
        Reply::success(msg)
    }

    fn channel_bind(&mut self, from: ClientAddr, msg: &Message<'_>, now: Instant) -> Reply {
        let Some(&relay) = self.by_client.get(&from) else {
            return self.reject(msg, 437);
        };
        let (Ok(number), Ok(peer)) = (msg.attribute::<ChannelNumber>(), msg.attribute::<XorPeerAddress>()) else {
            return self.reject(msg, 400);
        };
        let number = number.channel();
        let peer = normalised(peer.addr(msg.transaction_id()));
        // RFC 8656 narrowed channels to 0x4000-0x4FFF, but RFC 5766 clients (libwebrtc, coturn's own) pick from
        // 0x4000-0x7FFF; both ranges frame the same way, so accept the older, wider one.
        if !(0x4000..=0x7FFF).contains(&number) {
            return self.reject(msg, 400);
        }
        if let Err(code) = self.check_peer(relay, peer) {
            return self.reject(msg, code);
        }
        let c = &self.shared.config;
        let (channel_expires, permission_expires) = (now + c.channel_lifetime, now + c.permission_lifetime);
        let Some(a) = self.allocations.get_mut(&relay) else {
            return self.reject(msg, 437);
        };
        let taken_by_other_peer = a
            .channels
            .get(&number)
            .is_some_and(|ch| ch.peer != peer && ch.expires > now);
        let peer_on_other_channel = a.channel_of_peer.get(&peer).is_some_and(|&n| n != number);
        if taken_by_other_peer || peer_on_other_channel {
            return self.reject(msg, 400);
        }
        if let Some(old) = a.channels.insert(
            number,
            Channel {
                peer,
                expires: channel_expires,
            },
        ) {
            a.channel_of_peer.remove(&old.peer);
        }
        a.channel_of_peer.insert(peer, number);
        a.permissions.insert(peer.ip(), permission_expires);
        Reply::success(msg)
    }

    fn send_indication<'a>(
        &mut self,
        from: ClientAddr,
        msg: &Message<'_>,
        data: &'a [u8],
        now: Instant,
    ) -> Option<ToPeer<'a>> {
        let relay = *self.by_client.get(&from)?;
        let peer = normalised(msg.attribute::<XorPeerAddress>().ok()?.addr(msg.transaction_id()));
        let (offset, raw) = msg.raw_attribute_and_offset(Data::TYPE)?;
        let payload = data.get(offset + 4..offset + 4 + usize::from(raw.length()))?;
        if !self.shared.config.policy.permits(peer.ip()) {
            self.stats.denied_peers += 1;
            return None;
        }
        let a = self.allocations.get_mut(&relay)?;
        if !a.permits(peer.ip(), now) {
            self.stats.dropped_no_permission += 1;
            return None;
        }
        if !a.budget.spend(payload.len(), now) {
            self.stats.dropped_bandwidth += 1;
            return None;
        }
        self.stats.relayed(from.transport, true, payload.len());
        Some(ToPeer { relay, peer, payload })
    }

    /// The peer's family must match the relay's (443), and the policy must allow it (403).
    pub(super) fn check_peer(&mut self, relay: RelayHandle, peer: SocketAddr) -> Result<(), u16> {
        let Some(a) = self.allocations.get(&relay) else {
            return Err(437);
        };
        if peer.is_ipv6() != a.local.is_ipv6() {
            return Err(443);
        }
        if !self.shared.config.policy.permits(peer.ip()) {
            self.stats.denied_peers += 1;
            tracing::debug!(allocation = %a.id, "peer denied by policy");
            return Err(403);
        }
        Ok(())
    }

    pub(super) fn reject(&mut self, msg: &Message<'_>, code: u16) -> Reply {
        tracing::debug!(method = %msg.method(), code, "request rejected");
        tracing::trace!(%msg, "rejected request");
        if msg.method() == ALLOCATE {
            self.stats.allocate(AllocateResult::Rejected);
        }
        Reply::error(msg, code)
    }
}

/// What an Allocate asks for, checked (RFC 8656 §7.2).
struct AllocateRequest {
    ipv6: bool,
    /// A TCP allocation (RFC 6062).
    tcp: bool,
    /// `Some(reserve_next)` for EVEN-PORT.
    even_port: Option<bool>,
    reservation: Option<u64>,
}

impl AllocateRequest {
    fn parse(msg: &Message<'_>, ipv6_offered: bool, stream: bool) -> Result<Self, u16> {
        let transport = msg.attribute::<RequestedTransport>().map_err(|_| 400u16)?;
        let tcp = match transport.protocol() {
            RequestedTransport::UDP => false,
            // RFC 6062 §5.1: TCP relays only for clients on TCP or TLS.
            RequestedTransport::TCP if stream => true,
            RequestedTransport::TCP => return Err(400),
            _ => return Err(442),
        };
        let family = msg.attribute::<RequestedAddressFamily>().ok().map(|f| f.family());
        let even_port = msg.attribute::<EvenPort>().ok().map(|e| e.requested());
        let reservation = msg.attribute::<ReservationToken>().ok().map(|t| t.token());
        if reservation.is_some() && (even_port.is_some() || family.is_some()) {
            return Err(400);
        }
        if tcp && (reservation.is_some() || even_port.is_some() || msg.has_attribute(DontFragment::TYPE)) {
            return Err(400);
        }
        let ipv6 = family == Some(AddressFamily::IPV6);
        if ipv6 && !ipv6_offered {
            return Err(440);
        }
        Ok(Self {
            ipv6,
            tcp,
            even_port,
            reservation,
        })
    }
}

fn allocate_success(msg: &Message<'_>, a: &Allocation, reservation: Option<u64>, now: Instant) -> Reply {
    let mut r = Reply::success(msg);
    let txid = r.txid();
    r.add(&XorRelayedAddress::new(a.relay_addr, txid));
    r.add(&Lifetime::new(a.expires.saturating_duration_since(now).as_secs() as u32));
    r.mapped(a.client.addr);
    if let Some(token) = reservation {
        r.add(&ReservationToken::new(token));
    }
    r
}

pub(super) fn normalised(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(policy::normalise(addr.ip()), addr.port())
}

fn unknown_required(msg: &Message<'_>) -> Vec<AttributeType> {
    msg.iter_attributes()
        .map(|(_, a)| a.get_type())
        .filter(|t| t.comprehension_required() && !KNOWN.contains(t) && *t != Fingerprint::TYPE)
        .collect()
}
