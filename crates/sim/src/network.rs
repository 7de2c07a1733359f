//! The simulated network: topology, routing through NATs and links, the event queue in
//! virtual time, counters and the packet trace.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::endpoint::{Endpoint, ErasedEndpoint, SimDatagram};
use super::link::LinkConfig;
use super::nat::{Inbound, NatBox, NatConfig, NatStats, Outbound};

/// Identifies a host of a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(usize);

/// Identifies a NAT box of a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NatId(usize);

/// An address space: the public internet, or the LAN behind a NAT box. Addresses are unique
/// within a realm; the same private address may exist on two LANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Realm {
    /// The public internet.
    Internet,
    /// The LAN behind this NAT (NATs may be nested: a NAT's uplink may sit on another LAN).
    Lan(NatId),
}

/// A typed handle to an endpoint attached to a [`Network`].
pub struct EndpointHandle<E> {
    index: usize,
    _type: PhantomData<fn() -> E>,
}

impl<E> Clone for EndpointHandle<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for EndpointHandle<E> {}
impl<E> fmt::Debug for EndpointHandle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointHandle({})", self.index)
    }
}

/// Why the network refused a topology change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The address is already used by a host or NAT in the same realm.
    #[error("address {0} is already used in realm {1:?}")]
    AddressInUse(IpAddr, Realm),
    /// The NAT does not exist in this network.
    #[error("no such NAT {0:?}")]
    UnknownNat(NatId),
    /// The host does not exist in this network.
    #[error("no such host {0:?}")]
    UnknownHost(HostId),
    /// The port is already bound on that host.
    #[error("port {1} is already bound on host {0:?}")]
    PortInUse(HostId, u16),
}

/// Why a packet was dropped (see [`TraceKind::Dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Random loss on a link.
    Loss,
    /// A NAT's filter refused it (RFC 4787 §5), or no live mapping had its port.
    Filtered,
    /// Nobody owns the destination address in the realm it reached, or nothing is bound to
    /// the destination port, or the endpoint sent from an address it is not bound to.
    Unroutable,
    /// A UDP-blocking box dropped it.
    Blocked,
    /// Sent to the NAT's own external address from its LAN, without hairpinning.
    NoHairpin,
    /// The NAT had no external port left for a new mapping.
    PortsExhausted,
}

/// What happened to a packet at one point of its way (see [`Network::trace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// An endpoint sent it.
    Sent,
    /// A NAT translated it, outbound (source rewritten) or inbound (destination rewritten).
    /// The record's addresses are those after translation.
    Translated {
        /// The NAT.
        nat: NatId,
        /// True for LAN to outside.
        outbound: bool,
    },
    /// It reached the endpoint bound to its destination.
    Delivered,
    /// It was dropped.
    Dropped(DropReason),
}

/// One line of the packet trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time since the network started.
    pub time: Duration,
    /// What happened.
    pub kind: TraceKind,
    /// Source address at that point.
    pub source: SocketAddr,
    /// Destination address at that point.
    pub destination: SocketAddr,
    /// Payload length.
    pub len: usize,
    /// The first four payload bytes (zero-padded): enough to tell a STUN message type
    /// (RFC 8489 §5) or the RFC 7983 class of a datagram without keeping payloads.
    pub head: [u8; 4],
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TraceKind::Sent => "sent".to_owned(),
            TraceKind::Translated { nat, outbound } => {
                format!("nat{} {}", nat.0, if outbound { "out" } else { "in" })
            }
            TraceKind::Delivered => "delivered".to_owned(),
            TraceKind::Dropped(r) => format!("dropped ({r:?})"),
        };
        write!(
            f,
            "{:>10.3} ms  {:<16} {} -> {} ({} bytes)",
            self.time.as_secs_f64() * 1000.0,
            what,
            self.source,
            self.destination,
            self.len
        )
    }
}

/// Counters of the whole network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Datagrams sent by endpoints.
    pub sent: u64,
    /// Datagrams delivered to an endpoint.
    pub delivered: u64,
    /// Datagrams lost on a link.
    pub dropped_loss: u64,
    /// Datagrams dropped by a NAT's filtering (or for lack of a live mapping).
    pub dropped_filtered: u64,
    /// Datagrams to an address nobody owns (or a port nothing is bound to).
    pub dropped_unroutable: u64,
    /// Datagrams dropped by a UDP-blocking box.
    pub dropped_blocked: u64,
    /// Datagrams dropped for lack of hairpinning or of free ports.
    pub dropped_other: u64,
    /// NAT mappings created, over all NATs.
    pub nat_mappings: u64,
}

/// What [`Network::run_until`] stopped on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The condition became true (at [`Network::now`]).
    Condition,
    /// The deadline was reached first; the clock is at the deadline.
    Deadline,
    /// An endpoint kept asking for a timeout at the current instant without making progress
    /// ([`Network::MAX_STEPS_PER_INSTANT`] events at one instant).
    Stalled,
}

/// An action scheduled by the application at a virtual time (e.g. signalling).
type Action = Box<dyn FnOnce(&mut Network)>;

#[derive(Debug)]
struct Packet {
    source: SocketAddr,
    destination: SocketAddr,
    contents: Vec<u8>,
}

enum Pending {
    /// The packet enters the routing of a realm.
    InRealm(Realm, Packet),
    /// The packet reaches a NAT's external side.
    AtNat(NatId, Packet),
    /// The packet reaches a host.
    AtHost(HostId, Packet),
    /// An application action.
    Action(Action),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Host(HostId),
    Nat(NatId),
}

struct Host {
    realm: Realm,
    ip: IpAddr,
    link: LinkConfig,
    /// Bound ports and the endpoint index that owns each.
    ports: BTreeMap<u16, usize>,
}

struct Nat {
    parent: Realm,
    uplink: LinkConfig,
    state: NatBox,
}

struct Slot {
    host: HostId,
    endpoint: Box<dyn ErasedEndpoint>,
}

/// A deterministic simulated network in virtual time.
///
/// Hosts sit on the internet or on the LAN of a NAT box; each host has an access link and each
/// NAT an uplink (delay, jitter, loss). Endpoints ([`Endpoint`]) are bound to ports of hosts.
/// [`Network::step`] processes the next event in virtual time order: a packet reaching a
/// realm, a NAT or a host, an endpoint timer, or a scheduled action. Ties are broken by
/// scheduling order for packets and actions, which come before endpoint timers, which go in the
/// order the endpoints were added. Every random draw comes from one generator seeded at
/// creation, so a seed and the same sequence of calls give exactly the same run.
pub struct Network {
    start: Instant,
    now: Instant,
    rng: StdRng,
    seq: u64,
    hosts: Vec<Host>,
    nats: Vec<Nat>,
    owners: BTreeMap<(Realm, IpAddr), Owner>,
    endpoints: Vec<Slot>,
    queue: BTreeMap<(Instant, u64), Pending>,
    stats: NetworkStats,
    trace: Option<Vec<TraceEvent>>,
    steps_at_now: u64,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("elapsed", &self.elapsed())
            .field("hosts", &self.hosts.len())
            .field("nats", &self.nats.len())
            .field("endpoints", &self.endpoints.len())
            .field("queued", &self.queue.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Network {
    /// Events processed at a single instant after which [`Network::run_until`] reports
    /// [`RunOutcome::Stalled`] (a guard against an endpoint whose timer never advances).
    pub const MAX_STEPS_PER_INSTANT: u64 = 1_000_000;

    /// An empty network whose clock starts at `start`, with all randomness drawn from `seed`.
    pub fn new(seed: u64, start: Instant) -> Self {
        Network {
            start,
            now: start,
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            hosts: Vec::new(),
            nats: Vec::new(),
            owners: BTreeMap::new(),
            endpoints: Vec::new(),
            queue: BTreeMap::new(),
            stats: NetworkStats::default(),
            trace: None,
            steps_at_now: 0,
        }
    }

    /// Starts (or stops) recording a [`TraceEvent`] for every packet event. Off by default.
    pub fn set_trace(&mut self, on: bool) {
        if on {
            self.trace.get_or_insert_with(Vec::new);
        } else {
            self.trace = None;
        }
    }

    /// The packet trace recorded so far (empty unless tracing is on).
    pub fn trace(&self) -> &[TraceEvent] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The time the network started at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    /// Network-wide counters.
    pub fn stats(&self) -> &NetworkStats {
        &self.stats
    }

    fn check_realm(&self, realm: Realm) -> Result<(), SimError> {
        match realm {
            Realm::Internet => Ok(()),
            Realm::Lan(n) if n.0 < self.nats.len() => Ok(()),
            Realm::Lan(n) => Err(SimError::UnknownNat(n)),
        }
    }

    fn claim(&mut self, realm: Realm, ip: IpAddr, owner: Owner) -> Result<(), SimError> {
        self.check_realm(realm)?;
        if self.owners.contains_key(&(realm, ip)) {
            return Err(SimError::AddressInUse(ip, realm));
        }
        self.owners.insert((realm, ip), owner);
        Ok(())
    }

    /// Adds a host with address `ip` in `realm`, behind an access link.
    pub fn add_host(
        &mut self,
        realm: Realm,
        ip: IpAddr,
        link: LinkConfig,
    ) -> Result<HostId, SimError> {
        let id = HostId(self.hosts.len());
        self.claim(realm, ip, Owner::Host(id))?;
        self.hosts.push(Host {
            realm,
            ip,
            link,
            ports: BTreeMap::new(),
        });
        Ok(id)
    }

    /// Adds a NAT box whose external address `external_ip` sits in `parent` behind `uplink`;
    /// its LAN is [`Realm::Lan`] of the returned id.
    pub fn add_nat(
        &mut self,
        parent: Realm,
        external_ip: IpAddr,
        config: NatConfig,
        uplink: LinkConfig,
    ) -> Result<NatId, SimError> {
        let id = NatId(self.nats.len());
        self.claim(parent, external_ip, Owner::Nat(id))?;
        self.nats.push(Nat {
            parent,
            uplink,
            state: NatBox::new(config, external_ip),
        });
        Ok(id)
    }

    /// The address of a host.
    pub fn host_ip(&self, host: HostId) -> Option<IpAddr> {
        self.hosts.get(host.0).map(|h| h.ip)
    }

    /// The realm of a host.
    pub fn host_realm(&self, host: HostId) -> Option<Realm> {
        self.hosts.get(host.0).map(|h| h.realm)
    }

    /// The external address of a NAT.
    pub fn nat_external_ip(&self, nat: NatId) -> Option<IpAddr> {
        self.nats.get(nat.0).map(|n| n.state.external_ip)
    }

    /// The configuration of a NAT.
    pub fn nat_config(&self, nat: NatId) -> Option<&NatConfig> {
        self.nats.get(nat.0).map(|n| &n.state.config)
    }

    /// The counters of a NAT.
    pub fn nat_stats(&self, nat: NatId) -> Option<&NatStats> {
        self.nats.get(nat.0).map(|n| &n.state.stats)
    }

    /// Mappings of a NAT alive now.
    pub fn nat_active_mappings(&self, nat: NatId) -> Option<usize> {
        self.nats
            .get(nat.0)
            .map(|n| n.state.active_mappings(self.now))
    }

    /// The external address of `nat`'s live mapping from `internal` towards `destination`,
    /// if there is one.
    pub fn nat_mapping(
        &self,
        nat: NatId,
        internal: SocketAddr,
        destination: SocketAddr,
    ) -> Option<SocketAddr> {
        self.nats
            .get(nat.0)?
            .state
            .mapping_for(self.now, internal, destination)
    }

    /// Attaches `endpoint` to `host`, bound to `ports` of the host's address. The network asks
    /// for its first transmits and timeout right away.
    pub fn add_endpoint<E: Endpoint + 'static>(
        &mut self,
        host: HostId,
        ports: &[u16],
        endpoint: E,
    ) -> Result<EndpointHandle<E>, SimError> {
        let h = self.hosts.get(host.0).ok_or(SimError::UnknownHost(host))?;
        for (i, p) in ports.iter().enumerate() {
            if h.ports.contains_key(p) || ports.get(..i).is_some_and(|before| before.contains(p)) {
                return Err(SimError::PortInUse(host, *p));
            }
        }
        let index = self.endpoints.len();
        if let Some(h) = self.hosts.get_mut(host.0) {
            for p in ports {
                h.ports.insert(*p, index);
            }
        }
        self.endpoints.push(Slot {
            host,
            endpoint: Box::new(endpoint),
        });
        let now = self.now;
        if let Some(slot) = self.endpoints.get_mut(index) {
            slot.endpoint.endpoint().touched(now);
        }
        self.flush(index);
        Ok(EndpointHandle {
            index,
            _type: PhantomData,
        })
    }

    /// The endpoint behind a handle (`None` if the handle is from another network).
    pub fn endpoint<E: Endpoint + 'static>(&self, handle: EndpointHandle<E>) -> Option<&E> {
        self.endpoints
            .get(handle.index)?
            .endpoint
            .as_any()
            .downcast_ref()
    }

    /// Runs `f` on the endpoint with the current time, then lets the endpoint send what it
    /// now wants to send ([`Endpoint::touched`], then its transmits). `None` if the handle is
    /// from another network.
    pub fn with_endpoint<E: Endpoint + 'static, R>(
        &mut self,
        handle: EndpointHandle<E>,
        f: impl FnOnce(&mut E, Instant) -> R,
    ) -> Option<R> {
        let now = self.now;
        let slot = self.endpoints.get_mut(handle.index)?;
        let e = slot.endpoint.as_any_mut().downcast_mut::<E>()?;
        let r = f(e, now);
        slot.endpoint.endpoint().touched(now);
        self.flush(handle.index);
        Some(r)
    }

    /// Schedules `action` to run on the network at virtual time `at` (or now, if `at` has
    /// passed), in order with packet events. Used for signalling between endpoints.
    pub fn schedule(&mut self, at: Instant, action: impl FnOnce(&mut Network) + 'static) {
        let at = at.max(self.now);
        self.push(at, Pending::Action(Box::new(action)));
    }

    fn push(&mut self, at: Instant, p: Pending) {
        self.seq += 1;
        self.queue.insert((at, self.seq), p);
    }

    fn record(&mut self, kind: TraceKind, p: &Packet) {
        if let Some(t) = self.trace.as_mut() {
            let mut head = [0u8; 4];
            for (h, b) in head.iter_mut().zip(&p.contents) {
                *h = *b;
            }
            t.push(TraceEvent {
                time: self.now.saturating_duration_since(self.start),
                kind,
                source: p.source,
                destination: p.destination,
                len: p.contents.len(),
                head,
            });
        }
    }

    fn drop_packet(&mut self, reason: DropReason, p: &Packet) {
        match reason {
            DropReason::Loss => self.stats.dropped_loss += 1,
            DropReason::Filtered => self.stats.dropped_filtered += 1,
            DropReason::Unroutable => self.stats.dropped_unroutable += 1,
            DropReason::Blocked => self.stats.dropped_blocked += 1,
            DropReason::NoHairpin | DropReason::PortsExhausted => self.stats.dropped_other += 1,
        }
        self.record(TraceKind::Dropped(reason), p);
    }

    /// Sends `p` across `link`, to become `next` on arrival.
    fn cross(&mut self, link: LinkConfig, p: Packet, next: impl FnOnce(Packet) -> Pending) {
        match link.transit(&mut self.rng) {
            None => self.drop_packet(DropReason::Loss, &p),
            Some(d) => {
                let at = self.now + d;
                self.push(at, next(p));
            }
        }
    }

    /// Drains an endpoint's transmits into the network.
    fn flush(&mut self, index: usize) {
        let mut out: Vec<SimDatagram> = Vec::new();
        let host = match self.endpoints.get_mut(index) {
            Some(slot) => {
                let ep = slot.endpoint.endpoint();
                while let Some(d) = ep.poll_transmit() {
                    out.push(d);
                }
                slot.host
            }
            None => return,
        };
        for d in out {
            self.emit(index, host, d);
        }
    }

    fn emit(&mut self, index: usize, host: HostId, d: SimDatagram) {
        let p = Packet {
            source: d.source,
            destination: d.destination,
            contents: d.contents,
        };
        self.stats.sent += 1;
        self.record(TraceKind::Sent, &p);
        let Some(h) = self.hosts.get(host.0) else {
            self.drop_packet(DropReason::Unroutable, &p);
            return;
        };
        let bound = p.source.ip() == h.ip && h.ports.get(&p.source.port()) == Some(&index);
        if !bound {
            self.drop_packet(DropReason::Unroutable, &p);
            return;
        }
        let (realm, link) = (h.realm, h.link);
        self.cross(link, p, |p| Pending::InRealm(realm, p));
    }

    /// Routes a packet that has just entered `realm`.
    fn route(&mut self, realm: Realm, mut p: Packet) {
        match self.owners.get(&(realm, p.destination.ip())).copied() {
            Some(Owner::Host(h)) => {
                let Some(link) = self.hosts.get(h.0).map(|h| h.link) else {
                    self.drop_packet(DropReason::Unroutable, &p);
                    return;
                };
                self.cross(link, p, |p| Pending::AtHost(h, p));
            }
            Some(Owner::Nat(n)) => {
                let Some(link) = self.nats.get(n.0).map(|n| n.uplink) else {
                    self.drop_packet(DropReason::Unroutable, &p);
                    return;
                };
                self.cross(link, p, |p| Pending::AtNat(n, p));
            }
            None => {
                let Realm::Lan(n) = realm else {
                    self.drop_packet(DropReason::Unroutable, &p);
                    return;
                };
                // Not on this LAN: up through the NAT, which is the LAN's router.
                let now = self.now;
                let Some(nat) = self.nats.get_mut(n.0) else {
                    self.drop_packet(DropReason::Unroutable, &p);
                    return;
                };
                let hairpin = p.destination.ip() == nat.state.external_ip;
                if hairpin && !nat.state.config.hairpinning && !nat.state.config.udp_blocked {
                    self.drop_packet(DropReason::NoHairpin, &p);
                    return;
                }
                let (parent, uplink) = (nat.parent, nat.uplink);
                match nat
                    .state
                    .outbound(now, p.source, p.destination, &mut self.rng)
                {
                    Outbound::Translated(external) => {
                        self.count_mappings();
                        p.source = external;
                        self.record(
                            TraceKind::Translated {
                                nat: n,
                                outbound: true,
                            },
                            &p,
                        );
                        if hairpin {
                            // RFC 4787 §6: looped back inside the NAT with the mapped source.
                            self.arrive_at_nat(n, p);
                        } else {
                            self.cross(uplink, p, |p| Pending::InRealm(parent, p));
                        }
                    }
                    Outbound::Blocked => self.drop_packet(DropReason::Blocked, &p),
                    Outbound::PortsExhausted => self.drop_packet(DropReason::PortsExhausted, &p),
                }
            }
        }
    }

    fn count_mappings(&mut self) {
        self.stats.nat_mappings = self
            .nats
            .iter()
            .map(|n| n.state.stats.mappings_created)
            .sum();
    }

    fn arrive_at_nat(&mut self, n: NatId, mut p: Packet) {
        let now = self.now;
        let Some(nat) = self.nats.get_mut(n.0) else {
            self.drop_packet(DropReason::Unroutable, &p);
            return;
        };
        match nat.state.inbound(now, p.source, p.destination) {
            Inbound::Deliver(internal) => {
                p.destination = internal;
                self.record(
                    TraceKind::Translated {
                        nat: n,
                        outbound: false,
                    },
                    &p,
                );
                self.route(Realm::Lan(n), p);
            }
            Inbound::Blocked => self.drop_packet(DropReason::Blocked, &p),
            Inbound::NoMapping | Inbound::Filtered => self.drop_packet(DropReason::Filtered, &p),
        }
    }

    fn arrive_at_host(&mut self, h: HostId, p: Packet) {
        let Some(index) = self
            .hosts
            .get(h.0)
            .and_then(|host| host.ports.get(&p.destination.port()).copied())
        else {
            self.drop_packet(DropReason::Unroutable, &p);
            return;
        };
        self.stats.delivered += 1;
        self.record(TraceKind::Delivered, &p);
        let now = self.now;
        if let Some(slot) = self.endpoints.get_mut(index) {
            slot.endpoint
                .endpoint()
                .handle_receive(now, p.destination, p.source, &p.contents);
        }
        self.flush(index);
    }

    /// The earliest endpoint timer: (time, endpoint index), not earlier than now.
    fn next_timer(&self) -> Option<(Instant, usize)> {
        let mut best: Option<(Instant, usize)> = None;
        for (i, slot) in self.endpoints.iter().enumerate() {
            if let Some(t) = slot.endpoint.endpoint_ref().poll_timeout() {
                let t = t.max(self.now);
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, i));
                }
            }
        }
        best
    }

    /// The virtual time of the next event, if any.
    pub fn next_event_time(&self) -> Option<Instant> {
        let q = self.queue.keys().next().map(|(t, _)| *t);
        let t = self.next_timer().map(|(t, _)| t);
        match (q, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the next event (advancing the clock to it) and returns its time, or `None`
    /// if nothing is left to do.
    pub fn step(&mut self) -> Option<Instant> {
        let q = self.queue.keys().next().map(|(t, _)| *t);
        let timer = self.next_timer();
        let take_queue = match (q, timer) {
            (Some(a), Some((b, _))) => a <= b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let at = if take_queue {
            let ((at, _), pending) = self.queue.pop_first()?;
            self.advance(at);
            match pending {
                Pending::InRealm(realm, p) => self.route(realm, p),
                Pending::AtNat(n, p) => self.arrive_at_nat(n, p),
                Pending::AtHost(h, p) => self.arrive_at_host(h, p),
                Pending::Action(a) => a(self),
            }
            at
        } else {
            let (at, index) = timer?;
            self.advance(at);
            if let Some(slot) = self.endpoints.get_mut(index) {
                slot.endpoint.endpoint().handle_timeout(at);
            }
            self.flush(index);
            at
        };
        Some(at)
    }

    fn advance(&mut self, at: Instant) {
        if at > self.now {
            self.now = at;
            self.steps_at_now = 0;
        }
        self.steps_at_now += 1;
    }

    /// Processes events in time order until `condition` holds (checked before every event),
    /// or the next event would come after `deadline` (the clock then moves to `deadline`).
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut condition: impl FnMut(&Network) -> bool,
    ) -> RunOutcome {
        loop {
            if condition(self) {
                return RunOutcome::Condition;
            }
            if self.steps_at_now >= Self::MAX_STEPS_PER_INSTANT {
                return RunOutcome::Stalled;
            }
            match self.next_event_time() {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => {
                    if deadline > self.now {
                        self.now = deadline;
                        self.steps_at_now = 0;
                    }
                    return RunOutcome::Deadline;
                }
            }
        }
    }

    /// Runs every event up to `now + duration`.
    pub fn run_for(&mut self, duration: Duration) -> RunOutcome {
        let deadline = self.now + duration;
        self.run_until(deadline, |_| false)
    }
}
