//! Local interface enumeration: which addresses become host candidates (RFC 8445 §5.1.1.1).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One address of a local interface that may become a host candidate (RFC 8445 §5.1.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    /// Name of the interface the address is on (`eth0`, `lo`, ...).
    pub interface: String,
    /// The address.
    pub ip: IpAddr,
    /// The interface index, needed as the scope of an IPv6 link-local address.
    pub index: Option<u32>,
}

/// Which local addresses to gather host candidates from (RFC 8445 §5.1.1.1).
///
/// By default every address of every interface that is up is used, IPv4 and IPv6, except
/// loopback and link-local addresses (169.254.0.0/16, fe80::/10). The allow-lists narrow the
/// choice further: when either is non-empty, an address is used only if its interface name is
/// in `allow_interfaces` or the address itself is in `allow_addresses`. They never override the
/// exclusions: allow-listing `127.0.0.1` also needs `include_loopback`.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    /// Use loopback addresses (127.0.0.0/8, ::1). Off by default (RFC 8445 §5.1.1.1).
    pub include_loopback: bool,
    /// Use link-local addresses (169.254.0.0/16, fe80::/10). Off by default.
    pub include_link_local: bool,
    /// Use addresses of interfaces that are not operationally up. Off by default.
    pub include_down: bool,
    /// Use IPv4 addresses. On by default.
    pub ipv4: bool,
    /// Use IPv6 addresses. On by default.
    pub ipv6: bool,
    /// If non-empty (or `allow_addresses` is), only interfaces with these names are used.
    pub allow_interfaces: Vec<String>,
    /// If non-empty (or `allow_interfaces` is), only these addresses are used.
    pub allow_addresses: Vec<IpAddr>,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        AddressPolicy {
            include_loopback: false,
            include_link_local: false,
            include_down: false,
            ipv4: true,
            ipv6: true,
            allow_interfaces: Vec::new(),
            allow_addresses: Vec::new(),
        }
    }
}

/// What we know about one address of one interface, independent of the enumeration crate.
#[derive(Debug, Clone)]
pub(crate) struct InterfaceAddress {
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
    pub(crate) index: Option<u32>,
    /// Operationally up (on POSIX: `IFF_RUNNING`, which an interface that is administratively
    /// down or has no carrier does not have).
    pub(crate) up: bool,
}

/// Lists the usable addresses of this host's interfaces under `policy`, in the order the
/// system reports them, without duplicates.
pub fn usable_addresses(policy: &AddressPolicy) -> io::Result<Vec<LocalAddress>> {
    let all = if_addrs::get_if_addrs()?
        .into_iter()
        .map(|i| InterfaceAddress {
            up: i.is_oper_up(),
            ip: i.ip(),
            index: i.index,
            name: i.name,
        })
        .collect::<Vec<_>>();
    let chosen = select(&all, policy);
    tracing::debug!(
        seen = all.len(),
        chosen = ?chosen.iter().map(|a| (&a.interface, a.ip)).collect::<Vec<_>>(),
        "enumerated local interfaces"
    );
    Ok(chosen)
}

/// Applies `policy` to a list of interface addresses.
pub(crate) fn select(all: &[InterfaceAddress], policy: &AddressPolicy) -> Vec<LocalAddress> {
    let allow_listed = !policy.allow_interfaces.is_empty() || !policy.allow_addresses.is_empty();
    let mut out: Vec<LocalAddress> = Vec::new();
    for a in all {
        if !a.up && !policy.include_down {
            continue;
        }
        let family_ok = match a.ip {
            IpAddr::V4(_) => policy.ipv4,
            IpAddr::V6(_) => policy.ipv6,
        };
        if !family_ok || never_usable(a.ip) {
            continue;
        }
        if is_loopback(a.ip) && !policy.include_loopback {
            continue;
        }
        if is_link_local(a.ip) && !policy.include_link_local {
            continue;
        }
        if allow_listed
            && !policy.allow_interfaces.contains(&a.name)
            && !policy.allow_addresses.contains(&a.ip)
        {
            continue;
        }
        if out.iter().any(|o| o.ip == a.ip) {
            continue;
        }
        out.push(LocalAddress {
            interface: a.name.clone(),
            ip: a.ip,
            index: a.index,
        });
    }
    out
}

/// Loopback: 127.0.0.0/8 and ::1.
fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Link-local: 169.254.0.0/16 (RFC 3927) and fe80::/10 (RFC 4291 §2.5.6).
fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Addresses that can never be a host candidate: unspecified and multicast, and those RFC 8445
/// §5.1.1.1 excludes: IPv4-compatible IPv6 (::/96), IPv6 site-local (fec0::/10), and
/// IPv4-mapped IPv6 (::ffff:0:0/96, "SHOULD NOT").
fn never_usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == Ipv4Addr::UNSPECIFIED || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6 == Ipv6Addr::UNSPECIFIED
                || v6.is_multicast()
                || (s[0] & 0xffc0) == 0xfec0
                || (s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback())
                || v6.to_ipv4_mapped().is_some()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ia(name: &str, ip: &str, up: bool) -> InterfaceAddress {
        InterfaceAddress {
            name: name.into(),
            ip: ip.parse().unwrap(),
            index: Some(1),
            up,
        }
    }

    fn sample() -> Vec<InterfaceAddress> {
        vec![
            ia("lo", "127.0.0.1", true),
            ia("lo", "::1", true),
            ia("eth0", "192.0.2.2", true),
            ia("eth0", "fd00::2", true),
            ia("eth0", "fe80::fc:ff:fe00:1", true),
            ia("eth0", "febf::1", true),
            ia("wlan0", "169.254.3.4", true),
            ia("wlan0", "198.51.100.7", false),
            ia("odd", "fec0::1", true),
            ia("odd", "::192.0.2.9", true),
            ia("odd", "::ffff:192.0.2.9", true),
            ia("odd", "0.0.0.0", true),
            ia("eth1", "192.0.2.2", true),
        ]
    }

    fn ips(v: &[LocalAddress]) -> Vec<String> {
        v.iter().map(|a| a.ip.to_string()).collect()
    }

    #[test]
    fn default_policy_keeps_global_addresses_of_up_interfaces() {
        let got = select(&sample(), &AddressPolicy::default());
        assert_eq!(ips(&got), ["192.0.2.2", "fd00::2"]);
        assert_eq!(got[0].interface, "eth0");
    }

    #[test]
    fn inclusions_are_opt_in() {
        let policy = AddressPolicy {
            include_loopback: true,
            include_link_local: true,
            include_down: true,
            ..AddressPolicy::default()
        };
        let got = select(&sample(), &policy);
        assert_eq!(
            ips(&got),
            [
                "127.0.0.1",
                "::1",
                "192.0.2.2",
                "fd00::2",
                "fe80::fc:ff:fe00:1",
                "febf::1",
                "169.254.3.4",
                "198.51.100.7"
            ]
        );
    }

    #[test]
    fn families_and_allow_lists_narrow() {
        let v4_only = AddressPolicy {
            ipv6: false,
            include_loopback: true,
            ..AddressPolicy::default()
        };
        assert_eq!(
            ips(&select(&sample(), &v4_only)),
            ["127.0.0.1", "192.0.2.2"]
        );

        let pinned = AddressPolicy {
            include_loopback: true,
            allow_addresses: vec!["::1".parse().unwrap()],
            ..AddressPolicy::default()
        };
        assert_eq!(ips(&select(&sample(), &pinned)), ["::1"]);

        let by_name = AddressPolicy {
            include_loopback: true,
            allow_interfaces: vec!["lo".into()],
            allow_addresses: vec!["fd00::2".parse().unwrap()],
            ..AddressPolicy::default()
        };
        assert_eq!(
            ips(&select(&sample(), &by_name)),
            ["127.0.0.1", "::1", "fd00::2"]
        );

        // Allow-listing does not override the loopback exclusion.
        let not_included = AddressPolicy {
            allow_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..AddressPolicy::default()
        };
        assert!(select(&sample(), &not_included).is_empty());
    }

    #[test]
    fn this_host_enumerates_without_error() {
        let policy = AddressPolicy {
            include_loopback: true,
            ..AddressPolicy::default()
        };
        let got = usable_addresses(&policy).expect("getifaddrs works");
        assert!(
            got.iter().any(|a| a.ip == IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "loopback should be listed when included: {got:?}"
        );
    }
}
