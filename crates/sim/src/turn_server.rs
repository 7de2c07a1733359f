//! A TURN server endpoint for the simulated network (RFC 8656 over UDP), built on
//! [`jingle_ice_proto::stun`]: long-term authentication, allocations, refreshes, permissions, channels,
//! Send and Data indications, ChannelData. It can also behave as coturn 4.6 does when a relayed
//! send fails with ENETUNREACH: the whole allocation is torn down, and the client's next
//! requests meet a new session.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use jingle_ice_proto::stun::{error_code, long_term_key, Class, Message, MessageEncoder, Method};
use jingle_ice_proto::turn::{
    encode_channel_data, is_valid_channel, ChannelData, PERMISSION_LIFETIME, PROTOCOL_UDP,
};

use super::endpoint::{Endpoint, SimDatagram};

/// Longest allocation lifetime the server grants (RFC 8656 §7.2: 3600 s is the suggested
/// maximum).
const MAX_LIFETIME: u32 = 3600;
/// Lifetime granted when the client asks for none (RFC 8656 §2.2, §7.2: 10 minutes).
const DEFAULT_LIFETIME: u32 = 600;

/// Counters of a [`TurnServer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnServerStats {
    /// Allocations made (RFC 8656 §7.2).
    pub allocations: u64,
    /// Allocations torn down because a relayed send could not be routed (the coturn
    /// behaviour of [`TurnServer::kill_on_unreachable`]).
    pub killed: u64,
    /// Allocations dropped by [`TurnServer::restart`].
    pub dropped_by_restart: u64,
    /// Datagrams relayed from clients to peers.
    pub to_peers: u64,
    /// Datagrams relayed from peers to clients.
    pub to_clients: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Datagrams ignored (malformed, without permission, for no allocation).
    pub ignored: u64,
}

/// One allocation (RFC 8656 §2.2), keyed by the client's address (the 5-tuple over UDP).
struct Allocation {
    relayed: SocketAddr,
    expires: Instant,
    /// A relayed send failed: the allocation is torn down at this time.
    doomed_at: Option<Instant>,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, (SocketAddr, Instant)>,
}

/// A TURN server over UDP (RFC 8656) for the simulated network, with one long-term user
/// (RFC 8489 §9.2); it answers STUN Binding requests too, as coturn does. Bind it to its listening port and every port of its relay range with
/// [`crate::Network::add_endpoint`]; relayed addresses are its own IP with a port of the
/// range.
///
/// Every answer after authentication carries MESSAGE-INTEGRITY and FINGERPRINT. A request
/// without integrity gets 401 with REALM and NONCE; a wrong nonce 438 (RFC 8489 §9.2.4);
/// Allocate on a 5-tuple that has an allocation 437 (RFC 8656 §7.2); Refresh, CreatePermission
/// and ChannelBind without an allocation 437 (RFC 8656 §8, §9, §12), or 400 for the last two
/// with [`TurnServer::coturn_errors`].
pub struct TurnServer {
    ip: IpAddr,
    listen_port: u16,
    free_ports: VecDeque<u16>,
    realm: String,
    username: String,
    key: [u8; 16],
    /// The current nonce of each client (a "session" in coturn's words).
    nonces: HashMap<SocketAddr, String>,
    next_nonce: u64,
    allocations: HashMap<SocketAddr, Allocation>,
    unreachable: Option<Box<dyn Fn(IpAddr) -> bool>>,
    kill_delay: Duration,
    no_allocation_code: u16,
    refuse_allocations: bool,
    outgoing: VecDeque<SimDatagram>,
    stats: TurnServerStats,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("listen", &SocketAddr::new(self.ip, self.listen_port))
            .field("allocations", &self.allocations.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl TurnServer {
    /// A server at `ip:listen_port` (3478 is TURN's default port, RFC 8656 §18) relaying from
    /// the ports `relay_ports`, for the long-term user `username`/`password` of `realm`.
    pub fn new(
        ip: IpAddr,
        listen_port: u16,
        relay_ports: std::ops::Range<u16>,
        realm: &str,
        username: &str,
        password: &str,
    ) -> Self {
        TurnServer {
            ip,
            listen_port,
            free_ports: relay_ports.collect(),
            realm: realm.to_owned(),
            username: username.to_owned(),
            key: long_term_key(username, realm, password),
            nonces: HashMap::new(),
            next_nonce: 0,
            allocations: HashMap::new(),
            unreachable: None,
            kill_delay: Duration::ZERO,
            no_allocation_code: error_code::ALLOCATION_MISMATCH,
            refuse_allocations: false,
            outgoing: VecDeque::new(),
            stats: TurnServerStats::default(),
        }
    }

    /// Relayed sends to addresses for which `unreachable` holds fail, and the server then
    /// tears the whole allocation down and forgets the client's session, as coturn 4.6 does on
    /// ENETUNREACH (a relay host without a route to a private address).
    pub fn kill_on_unreachable(mut self, unreachable: impl Fn(IpAddr) -> bool + 'static) -> Self {
        self.unreachable = Some(Box::new(unreachable));
        self
    }

    /// Tears an allocation down `delay` after the relayed send that failed, not at once (with
    /// [`TurnServer::kill_on_unreachable`]). coturn 4.6 only marks the relay socket to be
    /// closed and closes the session a little later: requests it answers meanwhile succeed.
    pub fn kill_after(mut self, delay: Duration) -> Self {
        self.kill_delay = delay;
        self
    }

    /// Answers CreatePermission and ChannelBind without an allocation with 400 Bad Request,
    /// as coturn 4.6 does, instead of 437.
    pub fn coturn_errors(mut self) -> Self {
        self.no_allocation_code = error_code::BAD_REQUEST;
        self
    }

    /// Refuses (with 486 Allocation Quota Reached, RFC 8656 §19) or accepts new allocations.
    pub fn set_refuse_allocations(&mut self, refuse: bool) {
        self.refuse_allocations = refuse;
    }

    /// Changes the user's password: requests with the old credentials get 401, as expired
    /// time-limited credentials (XEP-0215) would.
    pub fn set_password(&mut self, password: &str) {
        self.key = long_term_key(&self.username, &self.realm, password);
    }

    /// Forgets every allocation and session, as a restarted server would.
    pub fn restart(&mut self) {
        self.stats.dropped_by_restart += self.allocations.len() as u64;
        let ports: Vec<u16> = self
            .allocations
            .values()
            .map(|a| a.relayed.port())
            .collect();
        self.free_ports.extend(ports);
        self.allocations.clear();
        self.nonces.clear();
    }

    /// Counters.
    pub fn stats(&self) -> &TurnServerStats {
        &self.stats
    }

    /// The relayed addresses of the allocations alive now.
    pub fn relayed_addresses(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.allocations.values().map(|a| a.relayed).collect();
        v.sort();
        v
    }

    fn nonce(&mut self, client: SocketAddr) -> String {
        if let Some(n) = self.nonces.get(&client) {
            return n.clone();
        }
        self.next_nonce += 1;
        let n = format!("sim-nonce-{}", self.next_nonce);
        self.nonces.insert(client, n.clone());
        n
    }

    fn send(&mut self, from_port: u16, to: SocketAddr, contents: Vec<u8>) {
        self.outgoing.push_back(SimDatagram {
            source: SocketAddr::new(self.ip, from_port),
            destination: to,
            contents,
        });
    }

    fn handle_client(&mut self, now: Instant, client: SocketAddr, data: &[u8]) {
        if data.first().is_some_and(|b| b & 0xC0 == 0x40) {
            let Ok(cd) = ChannelData::decode(data) else {
                self.stats.ignored += 1;
                return;
            };
            let peer = self
                .allocations
                .get(&client)
                .and_then(|a| a.channels.get(&cd.channel))
                .map(|(peer, _)| *peer);
            match peer {
                Some(peer) => self.relay_to_peer(now, client, peer, cd.data),
                None => self.stats.ignored += 1,
            }
            return;
        }
        let Ok(msg) = Message::decode(data) else {
            self.stats.ignored += 1;
            return;
        };
        match msg.class() {
            Class::Indication if msg.method() == Method::SEND => {
                let (Some(peer), Some(payload)) = (msg.xor_peer_address(), msg.data()) else {
                    self.stats.ignored += 1;
                    return;
                };
                let permitted = self
                    .allocations
                    .get(&client)
                    .is_some_and(|a| a.permissions.contains_key(&peer.ip()));
                if permitted {
                    self.relay_to_peer(now, client, peer, payload);
                } else {
                    // RFC 8656 §10.2: no permission, silently dropped.
                    self.stats.ignored += 1;
                }
            }
            Class::Request => self.request(now, client, &msg),
            _ => self.stats.ignored += 1,
        }
    }

    /// Relays to a peer; a send the host cannot route ends the allocation (coturn).
    fn relay_to_peer(
        &mut self,
        now: Instant,
        client: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
    ) {
        let Some(relayed) = self.allocations.get(&client).map(|a| a.relayed) else {
            return;
        };
        if self.unreachable.as_ref().is_some_and(|u| u(peer.ip())) {
            tracing::debug!(%client, %peer, "sim TURN: relayed send unreachable, allocation torn down");
            let at = now + self.kill_delay;
            if let Some(a) = self.allocations.get_mut(&client) {
                a.doomed_at = Some(a.doomed_at.map_or(at, |t| t.min(at)));
            }
            self.handle_timeout(now);
            return;
        }
        self.stats.to_peers += 1;
        self.send(relayed.port(), peer, payload.to_vec());
    }

    fn handle_peer(&mut self, now: Instant, relayed: SocketAddr, peer: SocketAddr, data: &[u8]) {
        let Some((client, allocation)) = self
            .allocations
            .iter()
            .find(|(_, a)| a.relayed == relayed)
            .map(|(c, a)| (*c, a))
        else {
            self.stats.ignored += 1;
            return;
        };
        if allocation
            .permissions
            .get(&peer.ip())
            .is_none_or(|t| *t <= now)
        {
            // RFC 8656 §11.4: no permission for the peer, dropped.
            self.stats.ignored += 1;
            return;
        }
        let channel = allocation
            .channels
            .iter()
            .find(|(_, (p, t))| *p == peer && *t > now)
            .map(|(n, _)| *n);
        let mut out = Vec::with_capacity(data.len() + 36);
        match channel {
            Some(n) => {
                if encode_channel_data(n, data, false, &mut out).is_err() {
                    self.stats.ignored += 1;
                    return;
                }
            }
            None => {
                let id = jingle_ice_proto::stun::TransactionId([0x5a; 12]);
                let mut enc = MessageEncoder::new(&mut out, Class::Indication, Method::DATA, id);
                enc.xor_peer_address(peer).data(data);
                enc.fingerprint();
                enc.finish();
            }
        }
        self.stats.to_clients += 1;
        let port = self.listen_port;
        self.send(port, client, out);
    }

    fn request(&mut self, now: Instant, client: SocketAddr, msg: &Message<'_>) {
        let method = msg.method();
        let id = msg.transaction_id();
        let mut out = Vec::new();
        if method == Method::BINDING {
            // A STUN server too (RFC 8489 §3): Binding needs no credentials.
            let mut enc = MessageEncoder::new(&mut out, Class::SuccessResponse, method, id);
            enc.xor_mapped_address(client);
            enc.fingerprint();
            enc.finish();
            let port = self.listen_port;
            self.send(port, client, out);
            return;
        }
        // RFC 8489 §9.2.4: authentication first.
        let nonce = self.nonce(client);
        let unauthorised = !msg.has_message_integrity()
            || msg.username() != Some(self.username.as_str())
            || msg.realm() != Some(self.realm.as_str())
            || msg.verify_integrity(&self.key).is_err();
        let refused = if unauthorised {
            Some((error_code::UNAUTHORIZED, "Unauthorized"))
        } else if msg.nonce() != Some(nonce.as_str()) {
            Some((error_code::STALE_NONCE, "Stale Nonce"))
        } else {
            None
        };
        if let Some((code, reason)) = refused {
            // The challenge (RFC 8489 §9.2.4): the realm and a fresh nonce, no integrity.
            let mut enc = MessageEncoder::new(&mut out, Class::ErrorResponse, method, id);
            enc.error_code(code, reason)
                .realm(&self.realm)
                .nonce(&nonce);
            enc.fingerprint();
            enc.finish();
            self.stats.errors += 1;
            let port = self.listen_port;
            self.send(port, client, out);
            return;
        }
        let answer = match method {
            Method::ALLOCATE => self.allocate(now, client, msg),
            Method::REFRESH => self.refresh(now, client, msg),
            Method::CREATE_PERMISSION => self.create_permission(now, client, msg),
            Method::CHANNEL_BIND => self.channel_bind(now, client, msg),
            _ => Err(error_code::BAD_REQUEST),
        };
        match answer {
            Ok(attributes) => {
                let mut enc = MessageEncoder::new(&mut out, Class::SuccessResponse, method, id);
                for a in attributes {
                    match a {
                        Attr::Relayed(r) => {
                            enc.xor_relayed_address(r);
                        }
                        Attr::Mapped(m) => {
                            enc.xor_mapped_address(m);
                        }
                        Attr::Lifetime(l) => {
                            enc.lifetime(l);
                        }
                    }
                }
                enc.message_integrity(&self.key);
                enc.fingerprint();
                enc.finish();
            }
            Err(code) => {
                let mut enc = MessageEncoder::new(&mut out, Class::ErrorResponse, method, id);
                enc.error_code(code, error_code::default_reason(code));
                enc.message_integrity(&self.key);
                enc.fingerprint();
                enc.finish();
                self.stats.errors += 1;
            }
        }
        let port = self.listen_port;
        self.send(port, client, out);
    }

    fn granted(msg: &Message<'_>) -> u32 {
        msg.lifetime().unwrap_or(DEFAULT_LIFETIME).min(MAX_LIFETIME)
    }

    fn allocate(
        &mut self,
        now: Instant,
        client: SocketAddr,
        msg: &Message<'_>,
    ) -> Result<Vec<Attr>, u16> {
        if self.allocations.contains_key(&client) {
            return Err(error_code::ALLOCATION_MISMATCH);
        }
        if msg.requested_transport() != Some(PROTOCOL_UDP) {
            return Err(error_code::BAD_REQUEST);
        }
        if self.refuse_allocations {
            return Err(error_code::ALLOCATION_QUOTA_REACHED);
        }
        let Some(port) = self.free_ports.pop_front() else {
            return Err(error_code::INSUFFICIENT_CAPACITY);
        };
        let lifetime = Self::granted(msg).max(1);
        let relayed = SocketAddr::new(self.ip, port);
        self.allocations.insert(
            client,
            Allocation {
                relayed,
                expires: now + Duration::from_secs(u64::from(lifetime)),
                doomed_at: None,
                permissions: HashMap::new(),
                channels: HashMap::new(),
            },
        );
        self.stats.allocations += 1;
        Ok(vec![
            Attr::Relayed(relayed),
            Attr::Mapped(client),
            Attr::Lifetime(lifetime),
        ])
    }

    fn refresh(
        &mut self,
        now: Instant,
        client: SocketAddr,
        msg: &Message<'_>,
    ) -> Result<Vec<Attr>, u16> {
        let lifetime = Self::granted(msg);
        let Some(a) = self.allocations.get_mut(&client) else {
            return Err(error_code::ALLOCATION_MISMATCH);
        };
        if lifetime == 0 {
            let port = a.relayed.port();
            self.allocations.remove(&client);
            self.free_ports.push_back(port);
        } else {
            a.expires = now + Duration::from_secs(u64::from(lifetime));
        }
        Ok(vec![Attr::Lifetime(lifetime)])
    }

    fn create_permission(
        &mut self,
        now: Instant,
        client: SocketAddr,
        msg: &Message<'_>,
    ) -> Result<Vec<Attr>, u16> {
        let code = self.no_allocation_code;
        let a = self.allocations.get_mut(&client).ok_or(code)?;
        let peers: Vec<SocketAddr> = msg.xor_peer_addresses().collect();
        if peers.is_empty() {
            return Err(error_code::BAD_REQUEST);
        }
        for p in peers {
            a.permissions.insert(p.ip(), now + PERMISSION_LIFETIME);
        }
        Ok(Vec::new())
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        client: SocketAddr,
        msg: &Message<'_>,
    ) -> Result<Vec<Attr>, u16> {
        let code = self.no_allocation_code;
        let a = self.allocations.get_mut(&client).ok_or(code)?;
        let (Some(number), Some(peer)) = (msg.channel_number(), msg.xor_peer_address()) else {
            return Err(error_code::BAD_REQUEST);
        };
        if !is_valid_channel(number) {
            return Err(error_code::BAD_REQUEST);
        }
        // RFC 8656 §12.2: the channel lasts 10 minutes and installs a permission.
        a.channels.insert(
            number,
            (peer, now + jingle_ice_proto::turn::CHANNEL_LIFETIME),
        );
        a.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        Ok(Vec::new())
    }
}

/// An attribute of a success response.
enum Attr {
    Relayed(SocketAddr),
    Mapped(SocketAddr),
    Lifetime(u32),
}

impl Endpoint for TurnServer {
    fn handle_receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.handle_timeout(now);
        if local.port() == self.listen_port {
            self.handle_client(now, remote, data);
        } else {
            self.handle_peer(now, local, remote, data);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let mut freed = Vec::new();
        let mut killed = Vec::new();
        self.allocations.retain(|client, a| {
            a.permissions.retain(|_, t| *t > now);
            a.channels.retain(|_, (_, t)| *t > now);
            if a.doomed_at.is_some_and(|t| t <= now) {
                killed.push(*client);
                freed.push(a.relayed.port());
                false
            } else if a.expires <= now {
                freed.push(a.relayed.port());
                false
            } else {
                true
            }
        });
        self.free_ports.extend(freed);
        // The session goes with the allocation: the client's next request meets a new one.
        for client in killed {
            self.stats.killed += 1;
            self.nonces.remove(&client);
        }
    }

    fn poll_transmit(&mut self) -> Option<SimDatagram> {
        self.outgoing.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.allocations
            .values()
            .flat_map(|a| std::iter::once(a.expires).chain(a.doomed_at))
            .min()
    }
}
