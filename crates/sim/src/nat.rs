//! NAT boxes with the UDP behaviours of RFC 4787: mapping (§4.1) and filtering (§5) as two
//! independent choices, hairpinning (§6), mapping timeout and refresh (§4.3), and port
//! allocation without port preservation (§4.2.1).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

/// How a NAT reuses a mapping for packets from one internal address (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MappingBehavior {
    /// One mapping per internal address, whatever the destination ("full cone" and
    /// "restricted cone" NATs; RFC 4787 §4.1, REQ-1 recommends it).
    EndpointIndependent,
    /// One mapping per internal address and destination IP address.
    AddressDependent,
    /// One mapping per internal address and destination IP address and port ("symmetric").
    AddressAndPortDependent,
}

/// Which inbound packets a NAT lets through a mapping (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FilteringBehavior {
    /// Any external endpoint may send to the mapped address.
    EndpointIndependent,
    /// Only IP addresses the internal endpoint has sent to through this mapping.
    AddressDependent,
    /// Only IP address and port pairs the internal endpoint has sent to through this mapping.
    AddressAndPortDependent,
}

impl MappingBehavior {
    /// The three behaviours, in the order of RFC 4787 §4.1.
    pub const ALL: [MappingBehavior; 3] = [
        MappingBehavior::EndpointIndependent,
        MappingBehavior::AddressDependent,
        MappingBehavior::AddressAndPortDependent,
    ];

    /// Short name: `EIM`, `ADM` or `APDM`.
    pub const fn short_name(self) -> &'static str {
        match self {
            MappingBehavior::EndpointIndependent => "EIM",
            MappingBehavior::AddressDependent => "ADM",
            MappingBehavior::AddressAndPortDependent => "APDM",
        }
    }
}

impl FilteringBehavior {
    /// The three behaviours, in the order of RFC 4787 §5.
    pub const ALL: [FilteringBehavior; 3] = [
        FilteringBehavior::EndpointIndependent,
        FilteringBehavior::AddressDependent,
        FilteringBehavior::AddressAndPortDependent,
    ];

    /// Short name: `EIF`, `ADF` or `APDF`.
    pub const fn short_name(self) -> &'static str {
        match self {
            FilteringBehavior::EndpointIndependent => "EIF",
            FilteringBehavior::AddressDependent => "ADF",
            FilteringBehavior::AddressAndPortDependent => "APDF",
        }
    }
}

/// How a NAT picks the external port of a new mapping. In both cases a port is never given to
/// two mappings, even after the first expired, and the internal port is not preserved
/// (RFC 4787 §4.2.1 allows both), so every new mapping is visible as a fresh port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortAllocation {
    /// Uniformly drawn from 1024..=65535 with the network's seeded generator.
    Random,
    /// Counting up from the given port (wrapping to 1024 after 65535).
    Sequential {
        /// The first external port handed out.
        first: u16,
    },
}

/// The lowest external port a NAT hands out (below are the well-known ports, RFC 6335 §6).
pub const MIN_EXTERNAL_PORT: u16 = 1024;

/// Default mapping timeout: RFC 4787 §4.3 REQ-5 asks for at least 2 minutes.
pub const DEFAULT_MAPPING_TIMEOUT: Duration = Duration::from_secs(120);

/// The behaviour of a simulated NAT box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Mapping behaviour (RFC 4787 §4.1).
    pub mapping: MappingBehavior,
    /// Filtering behaviour (RFC 4787 §5).
    pub filtering: FilteringBehavior,
    /// Whether a packet from the LAN to the NAT's own external address is looped back to the
    /// LAN through the mapping (RFC 4787 §6). Off by default, as on many home routers.
    pub hairpinning: bool,
    /// Idle time after which a mapping (and the filter permissions it holds) expires.
    /// Only outbound packets refresh it (RFC 4787 §4.3, REQ-6).
    pub mapping_timeout: Duration,
    /// How external ports are picked.
    pub port_allocation: PortAllocation,
    /// A firewall that drops every UDP packet, both ways (every packet here is UDP).
    pub udp_blocked: bool,
}

impl NatConfig {
    /// A NAT with the given mapping and filtering, no hairpinning, the default 120 s timeout and
    /// random port allocation.
    pub const fn new(mapping: MappingBehavior, filtering: FilteringBehavior) -> Self {
        NatConfig {
            mapping,
            filtering,
            hairpinning: false,
            mapping_timeout: DEFAULT_MAPPING_TIMEOUT,
            port_allocation: PortAllocation::Random,
            udp_blocked: false,
        }
    }

    /// A box that drops all UDP traffic (a firewall that only lets TCP out).
    pub const fn udp_blocked() -> Self {
        let mut c = NatConfig::new(
            MappingBehavior::AddressAndPortDependent,
            FilteringBehavior::AddressAndPortDependent,
        );
        c.udp_blocked = true;
        c
    }

    /// The nine combinations of mapping and filtering behaviour, mapping-major.
    pub fn all_types() -> impl Iterator<Item = NatConfig> {
        MappingBehavior::ALL.into_iter().flat_map(|m| {
            FilteringBehavior::ALL
                .into_iter()
                .map(move |f| NatConfig::new(m, f))
        })
    }

    /// The same configuration with hairpinning switched on or off.
    pub const fn hairpinning(mut self, on: bool) -> Self {
        self.hairpinning = on;
        self
    }

    /// The same configuration with another mapping timeout.
    pub const fn mapping_timeout(mut self, timeout: Duration) -> Self {
        self.mapping_timeout = timeout;
        self
    }

    /// The same configuration with another port allocation.
    pub const fn port_allocation(mut self, allocation: PortAllocation) -> Self {
        self.port_allocation = allocation;
        self
    }
}

impl fmt::Display for NatConfig {
    /// `EIM/APDF` style, or `UDP-blocked`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.udp_blocked {
            return f.write_str("UDP-blocked");
        }
        write!(
            f,
            "{}/{}",
            self.mapping.short_name(),
            self.filtering.short_name()
        )
    }
}

/// Counters of one NAT box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Mappings created (each one took a fresh external port).
    pub mappings_created: u64,
    /// Mappings that were found expired and removed.
    pub mappings_expired: u64,
    /// Outbound packets translated.
    pub outbound: u64,
    /// Inbound packets let through.
    pub inbound: u64,
    /// Inbound packets dropped because no live mapping has that external port.
    pub dropped_no_mapping: u64,
    /// Inbound packets dropped by the filtering behaviour.
    pub dropped_filtered: u64,
    /// Packets dropped because UDP is blocked.
    pub dropped_blocked: u64,
    /// Outbound packets dropped because no external port was left.
    pub dropped_ports_exhausted: u64,
}

/// What a mapping is keyed on besides the internal address (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum MappingKey {
    Any,
    Ip(IpAddr),
    Addr(SocketAddr),
}

#[derive(Debug)]
struct Mapping {
    internal: SocketAddr,
    key: MappingKey,
    expires: Instant,
    /// Remote endpoints the internal side has sent to through this mapping, with the time their
    /// permission lapses.
    permissions: BTreeMap<SocketAddr, Instant>,
}

/// Result of translating an outbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// Send it on with this source address.
    Translated(SocketAddr),
    /// UDP is blocked.
    Blocked,
    /// No external port left.
    PortsExhausted,
}

/// Result of an inbound packet reaching the external side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Deliver it to this internal address.
    Deliver(SocketAddr),
    /// UDP is blocked.
    Blocked,
    /// No live mapping on that port.
    NoMapping,
    /// A mapping exists but its filter refused the source.
    Filtered,
}

/// The state of one NAT box: its mapping table and port allocator.
#[derive(Debug)]
pub(crate) struct NatBox {
    pub(crate) config: NatConfig,
    pub(crate) external_ip: IpAddr,
    mappings: BTreeMap<u16, Mapping>,
    index: BTreeMap<(SocketAddr, MappingKey), u16>,
    used_ports: BTreeSet<u16>,
    next_port: u16,
    pub(crate) stats: NatStats,
}

/// Number of ports in `MIN_EXTERNAL_PORT..=65535`.
const PORT_COUNT: usize = (u16::MAX - MIN_EXTERNAL_PORT) as usize + 1;

impl NatBox {
    pub(crate) fn new(config: NatConfig, external_ip: IpAddr) -> Self {
        let next_port = match config.port_allocation {
            PortAllocation::Sequential { first } => first.max(MIN_EXTERNAL_PORT),
            PortAllocation::Random => MIN_EXTERNAL_PORT,
        };
        NatBox {
            config,
            external_ip,
            mappings: BTreeMap::new(),
            index: BTreeMap::new(),
            used_ports: BTreeSet::new(),
            next_port,
            stats: NatStats::default(),
        }
    }

    fn key_for(&self, destination: SocketAddr) -> MappingKey {
        match self.config.mapping {
            MappingBehavior::EndpointIndependent => MappingKey::Any,
            MappingBehavior::AddressDependent => MappingKey::Ip(destination.ip()),
            MappingBehavior::AddressAndPortDependent => MappingKey::Addr(destination),
        }
    }

    /// Mappings alive at `now`.
    pub(crate) fn active_mappings(&self, now: Instant) -> usize {
        self.mappings.values().filter(|m| m.expires > now).count()
    }

    /// The external address of the live mapping for `internal` towards `destination`, if any.
    pub(crate) fn mapping_for(
        &self,
        now: Instant,
        internal: SocketAddr,
        destination: SocketAddr,
    ) -> Option<SocketAddr> {
        let port = *self.index.get(&(internal, self.key_for(destination)))?;
        let m = self.mappings.get(&port)?;
        (m.expires > now).then_some(SocketAddr::new(self.external_ip, port))
    }

    fn remove(&mut self, port: u16) {
        if let Some(m) = self.mappings.remove(&port) {
            self.index.remove(&(m.internal, m.key));
            self.stats.mappings_expired += 1;
        }
    }

    fn allocate_port(&mut self, rng: &mut StdRng) -> Option<u16> {
        if self.used_ports.len() >= PORT_COUNT {
            return None;
        }
        let start = match self.config.port_allocation {
            PortAllocation::Random => rng.random_range(MIN_EXTERNAL_PORT..=u16::MAX),
            PortAllocation::Sequential { .. } => self.next_port,
        };
        // Walk up from the start until a never-used port is found; one exists (checked above).
        let mut port = start;
        for _ in 0..PORT_COUNT {
            if !self.used_ports.contains(&port) {
                self.used_ports.insert(port);
                self.next_port = if port == u16::MAX {
                    MIN_EXTERNAL_PORT
                } else {
                    port + 1
                };
                return Some(port);
            }
            port = if port == u16::MAX {
                MIN_EXTERNAL_PORT
            } else {
                port + 1
            };
        }
        None
    }

    /// Translates a packet from `internal` to `destination` leaving at `now`: finds or creates
    /// the mapping, refreshes it and records the permission for `destination`.
    pub(crate) fn outbound(
        &mut self,
        now: Instant,
        internal: SocketAddr,
        destination: SocketAddr,
        rng: &mut StdRng,
    ) -> Outbound {
        if self.config.udp_blocked {
            self.stats.dropped_blocked += 1;
            return Outbound::Blocked;
        }
        let key = self.key_for(destination);
        let timeout = self.config.mapping_timeout;
        let existing = self.index.get(&(internal, key)).copied();
        let port = match existing {
            Some(port) if self.mappings.get(&port).is_some_and(|m| m.expires > now) => port,
            _ => {
                if let Some(stale) = existing {
                    self.remove(stale);
                }
                let Some(port) = self.allocate_port(rng) else {
                    self.stats.dropped_ports_exhausted += 1;
                    return Outbound::PortsExhausted;
                };
                self.mappings.insert(
                    port,
                    Mapping {
                        internal,
                        key,
                        expires: now,
                        permissions: BTreeMap::new(),
                    },
                );
                self.index.insert((internal, key), port);
                self.stats.mappings_created += 1;
                port
            }
        };
        if let Some(m) = self.mappings.get_mut(&port) {
            let until = now + timeout;
            m.expires = until;
            m.permissions.insert(destination, until);
        }
        self.stats.outbound += 1;
        Outbound::Translated(SocketAddr::new(self.external_ip, port))
    }

    /// Lets a packet from `source` to the external address `external` in at `now`, or not.
    pub(crate) fn inbound(
        &mut self,
        now: Instant,
        source: SocketAddr,
        external: SocketAddr,
    ) -> Inbound {
        if self.config.udp_blocked {
            self.stats.dropped_blocked += 1;
            return Inbound::Blocked;
        }
        let port = external.port();
        let Some(m) = self.mappings.get(&port) else {
            self.stats.dropped_no_mapping += 1;
            return Inbound::NoMapping;
        };
        if m.expires <= now || external.ip() != self.external_ip {
            if m.expires <= now {
                self.remove(port);
            }
            self.stats.dropped_no_mapping += 1;
            return Inbound::NoMapping;
        }
        let allowed = match self.config.filtering {
            FilteringBehavior::EndpointIndependent => true,
            FilteringBehavior::AddressDependent => m
                .permissions
                .iter()
                .any(|(addr, until)| addr.ip() == source.ip() && *until > now),
            FilteringBehavior::AddressAndPortDependent => {
                m.permissions.get(&source).is_some_and(|until| *until > now)
            }
        };
        if !allowed {
            self.stats.dropped_filtered += 1;
            return Inbound::Filtered;
        }
        self.stats.inbound += 1;
        Inbound::Deliver(m.internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const INTERNAL: &str = "10.0.0.2:5000";
    const S1: &str = "198.51.100.1:3478";
    const S1_OTHER_PORT: &str = "198.51.100.1:4000";
    const S2: &str = "198.51.100.2:3478";

    fn nat(m: MappingBehavior, f: FilteringBehavior) -> NatBox {
        NatBox::new(NatConfig::new(m, f), "203.0.113.1".parse().unwrap())
    }

    fn out(n: &mut NatBox, now: Instant, dst: &str, rng: &mut StdRng) -> SocketAddr {
        match n.outbound(now, sa(INTERNAL), sa(dst), rng) {
            Outbound::Translated(a) => a,
            other => panic!("not translated: {other:?}"),
        }
    }

    #[test]
    fn mapping_reuse_follows_each_behaviour() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        for m in MappingBehavior::ALL {
            let mut n = nat(m, FilteringBehavior::EndpointIndependent);
            let a = out(&mut n, now, S1, &mut rng);
            let same = out(&mut n, now, S1, &mut rng);
            let other_port = out(&mut n, now, S1_OTHER_PORT, &mut rng);
            let other_ip = out(&mut n, now, S2, &mut rng);
            assert_eq!(a, same, "{m:?}: same destination reuses the mapping");
            assert_eq!(a.ip(), n.external_ip);
            match m {
                MappingBehavior::EndpointIndependent => {
                    assert_eq!(a, other_port);
                    assert_eq!(a, other_ip);
                    assert_eq!(n.stats.mappings_created, 1);
                }
                MappingBehavior::AddressDependent => {
                    assert_eq!(a, other_port);
                    assert_ne!(a, other_ip);
                    assert_eq!(n.stats.mappings_created, 2);
                }
                MappingBehavior::AddressAndPortDependent => {
                    assert_ne!(a, other_port);
                    assert_ne!(a, other_ip);
                    assert_ne!(other_port, other_ip);
                    assert_eq!(n.stats.mappings_created, 3);
                }
            }
            assert_eq!(n.mapping_for(now, sa(INTERNAL), sa(S1)), Some(a));
        }
    }

    #[test]
    fn filtering_follows_each_behaviour() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        for f in FilteringBehavior::ALL {
            let mut n = nat(MappingBehavior::EndpointIndependent, f);
            let ext = out(&mut n, now, S1, &mut rng);
            let from = |n: &mut NatBox, src: &str| n.inbound(now, sa(src), ext);
            assert_eq!(from(&mut n, S1), Inbound::Deliver(sa(INTERNAL)), "{f:?}");
            let other_port = from(&mut n, S1_OTHER_PORT);
            let other_ip = from(&mut n, S2);
            match f {
                FilteringBehavior::EndpointIndependent => {
                    assert_eq!(other_port, Inbound::Deliver(sa(INTERNAL)));
                    assert_eq!(other_ip, Inbound::Deliver(sa(INTERNAL)));
                }
                FilteringBehavior::AddressDependent => {
                    assert_eq!(other_port, Inbound::Deliver(sa(INTERNAL)));
                    assert_eq!(other_ip, Inbound::Filtered);
                }
                FilteringBehavior::AddressAndPortDependent => {
                    assert_eq!(other_port, Inbound::Filtered);
                    assert_eq!(other_ip, Inbound::Filtered);
                }
            }
            // Sending to S2 opens the filter for it.
            out(&mut n, now, S2, &mut rng);
            assert_eq!(from(&mut n, S2), Inbound::Deliver(sa(INTERNAL)));
            // A port without a mapping lets nothing in.
            let unused = SocketAddr::new(ext.ip(), ext.port().wrapping_add(1).max(1024));
            assert_eq!(n.inbound(now, sa(S1), unused), Inbound::NoMapping);
        }
    }

    #[test]
    fn filter_is_per_mapping() {
        // An address-dependent mapping with address-dependent filtering: S2 was contacted
        // through another mapping, so it cannot reach the mapping made for S1.
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let mut n = nat(
            MappingBehavior::AddressDependent,
            FilteringBehavior::AddressDependent,
        );
        let to_s1 = out(&mut n, now, S1, &mut rng);
        let to_s2 = out(&mut n, now, S2, &mut rng);
        assert_eq!(n.inbound(now, sa(S2), to_s1), Inbound::Filtered);
        assert_eq!(
            n.inbound(now, sa(S2), to_s2),
            Inbound::Deliver(sa(INTERNAL))
        );
    }

    #[test]
    fn new_mappings_always_get_fresh_ports() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(4);
        let mut n = NatBox::new(
            NatConfig::new(
                MappingBehavior::AddressAndPortDependent,
                FilteringBehavior::EndpointIndependent,
            )
            .mapping_timeout(Duration::from_secs(1)),
            "203.0.113.1".parse().unwrap(),
        );
        let mut seen = BTreeSet::new();
        for i in 0..2000u32 {
            // Expire everything now and then: ports of expired mappings are not reused either.
            let t = now + Duration::from_secs(u64::from(i / 100) * 2);
            let dst = SocketAddr::new("198.51.100.9".parse().unwrap(), 10_000 + (i % 100) as u16);
            let ext = out(&mut n, t, &dst.to_string(), &mut rng);
            assert!(ext.port() >= MIN_EXTERNAL_PORT);
            assert!(seen.insert(ext.port()), "port {} reused", ext.port());
        }
        assert_eq!(n.stats.mappings_created, 2000);
        // Internal port is not preserved (with overwhelming probability for random allocation).
        assert!(!seen.contains(&5000) || seen.len() > 1);
    }

    #[test]
    fn sequential_allocation_counts_up() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(5);
        let mut n = NatBox::new(
            NatConfig::new(
                MappingBehavior::AddressAndPortDependent,
                FilteringBehavior::EndpointIndependent,
            )
            .port_allocation(PortAllocation::Sequential { first: 65534 }),
            "203.0.113.1".parse().unwrap(),
        );
        let ports: Vec<u16> = [S1, S2, S1_OTHER_PORT]
            .iter()
            .map(|d| out(&mut n, now, d, &mut rng).port())
            .collect();
        assert_eq!(ports, vec![65534, 65535, 1024]);
    }

    #[test]
    fn mappings_expire_unless_refreshed_by_outbound_traffic() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(6);
        let mut n = NatBox::new(
            NatConfig::new(
                MappingBehavior::EndpointIndependent,
                FilteringBehavior::EndpointIndependent,
            )
            .mapping_timeout(Duration::from_secs(30)),
            "203.0.113.1".parse().unwrap(),
        );
        let ext = out(&mut n, t0, S1, &mut rng);
        // Inbound traffic does not refresh (RFC 4787 REQ-6 only requires outbound refresh).
        let t20 = t0 + Duration::from_secs(20);
        assert_eq!(n.inbound(t20, sa(S1), ext), Inbound::Deliver(sa(INTERNAL)));
        let t31 = t0 + Duration::from_secs(31);
        assert_eq!(n.inbound(t31, sa(S1), ext), Inbound::NoMapping);
        assert_eq!(n.active_mappings(t31), 0);
        // A new packet makes a new mapping on a fresh port.
        let ext2 = out(&mut n, t31, S1, &mut rng);
        assert_ne!(ext, ext2);
        // Outbound traffic every 20 s keeps it alive for a long time.
        let mut t = t31;
        for _ in 0..10 {
            t += Duration::from_secs(20);
            assert_eq!(out(&mut n, t, S1, &mut rng), ext2);
        }
        assert_eq!(
            n.inbound(t + Duration::from_secs(29), sa(S1), ext2),
            Inbound::Deliver(sa(INTERNAL))
        );
        assert_eq!(n.stats.mappings_created, 2);
        assert_eq!(n.stats.mappings_expired, 1);
    }

    #[test]
    fn permissions_expire_with_their_own_refresh() {
        // Sending only to S1 keeps the mapping alive but lets the permission for S2 lapse.
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let mut n = NatBox::new(
            NatConfig::new(
                MappingBehavior::EndpointIndependent,
                FilteringBehavior::AddressAndPortDependent,
            )
            .mapping_timeout(Duration::from_secs(30)),
            "203.0.113.1".parse().unwrap(),
        );
        let ext = out(&mut n, t0, S2, &mut rng);
        for s in 1..=4 {
            out(&mut n, t0 + Duration::from_secs(s * 10), S1, &mut rng);
        }
        let t = t0 + Duration::from_secs(41);
        assert_eq!(n.inbound(t, sa(S1), ext), Inbound::Deliver(sa(INTERNAL)));
        assert_eq!(n.inbound(t, sa(S2), ext), Inbound::Filtered);
    }

    #[test]
    fn udp_blocked_drops_everything() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(8);
        let mut n = NatBox::new(NatConfig::udp_blocked(), "203.0.113.1".parse().unwrap());
        assert_eq!(
            n.outbound(now, sa(INTERNAL), sa(S1), &mut rng),
            Outbound::Blocked
        );
        assert_eq!(
            n.inbound(now, sa(S1), sa("203.0.113.1:1024")),
            Inbound::Blocked
        );
        assert_eq!(n.stats.dropped_blocked, 2);
        assert_eq!(NatConfig::udp_blocked().to_string(), "UDP-blocked");
    }

    #[test]
    fn nine_types() {
        let names: Vec<String> = NatConfig::all_types().map(|c| c.to_string()).collect();
        assert_eq!(names.len(), 9);
        assert_eq!(names[0], "EIM/EIF");
        assert_eq!(names[8], "APDM/APDF");
    }
}
