//! ICE candidates (RFC 8445 §5.1): types, priorities, foundations, and the `candidate:`
//! attribute syntax of RFC 8839 §5.1 used to exchange them outside Jingle.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The type of a candidate (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandidateType {
    /// An address bound on a local interface.
    Host,
    /// An address learned from a remote peer's check (RFC 8445 §7.2.5.3.1, §7.3.1.3).
    PeerReflexive,
    /// A NAT mapping learned from a STUN server.
    ServerReflexive,
    /// An address allocated on a TURN relay.
    Relayed,
}

impl CandidateType {
    /// The recommended type preference of RFC 8445 §5.1.2.2.
    pub const fn type_preference(self) -> u32 {
        match self {
            CandidateType::Host => 126,
            CandidateType::PeerReflexive => 110,
            CandidateType::ServerReflexive => 100,
            CandidateType::Relayed => 0,
        }
    }

    /// The token used in SDP and in XEP-0176 (`host`, `prflx`, `srflx`, `relay`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::PeerReflexive => "prflx",
            CandidateType::ServerReflexive => "srflx",
            CandidateType::Relayed => "relay",
        }
    }
}

impl fmt::Display for CandidateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CandidateType {
    type Err = CandidateParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(CandidateType::Host),
            "prflx" => Ok(CandidateType::PeerReflexive),
            "srflx" => Ok(CandidateType::ServerReflexive),
            "relay" => Ok(CandidateType::Relayed),
            other => Err(CandidateParseError::UnknownType(other.to_owned())),
        }
    }
}

/// Computes a candidate priority (RFC 8445 §5.1.2.1):
/// `2^24 * type preference + 2^8 * local preference + (256 - component id)`.
pub(crate) const fn priority(kind: CandidateType, local_preference: u16, component: u16) -> u32 {
    (kind.type_preference() << 24)
        + ((local_preference as u32) << 8)
        + (256 - (component as u32 & 0xff))
}

/// The local preference a priority was computed with: bits 8–23 of the RFC 8445 §5.1.2.1
/// formula.
pub(crate) const fn local_preference(priority: u32) -> u16 {
    ((priority >> 8) & 0xffff) as u16
}

/// An ICE candidate, local or remote (RFC 8445 §5.1).
///
/// For a local candidate, `base` is the address the agent sends from (RFC 8445 §5.1.1.1); for a
/// remote candidate it equals `address`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Groups candidates that share type, base IP, server and protocol (RFC 8445 §5.1.1.3).
    pub foundation: String,
    /// Component id, from 1 (RFC 8445 §5.1.1).
    pub component: u16,
    /// Priority (RFC 8445 §5.1.2).
    pub priority: u32,
    /// Transport address of the candidate.
    pub address: SocketAddr,
    /// Candidate type.
    pub kind: CandidateType,
    /// The related address (`raddr`/`rport`): the base of a reflexive candidate, the mapped
    /// address of a relayed one.
    pub related_address: Option<SocketAddr>,
    /// The base of a local candidate (RFC 8445 §5.1.1.1); the address itself for a remote one.
    pub base: SocketAddr,
}

impl Candidate {
    /// A remote candidate as signalled by the peer.
    pub fn remote(
        foundation: impl Into<String>,
        component: u16,
        priority: u32,
        address: SocketAddr,
        kind: CandidateType,
        related_address: Option<SocketAddr>,
    ) -> Self {
        Candidate {
            foundation: foundation.into(),
            component,
            priority,
            address,
            kind,
            related_address,
            base: address,
        }
    }

    /// Renders the candidate in the `candidate:` attribute syntax of RFC 8839 §5.1 (without the
    /// `a=` prefix), the same form browsers use in trickle.
    pub fn to_sdp(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "candidate:{} {} udp {} {} {} typ {}",
            self.foundation,
            self.component,
            self.priority,
            self.address.ip(),
            self.address.port(),
            self.kind
        )?;
        if let Some(rel) = self.related_address {
            write!(f, " raddr {} rport {}", rel.ip(), rel.port())?;
        }
        Ok(())
    }
}

/// Why a `candidate:` line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandidateParseError {
    /// A field is missing.
    #[error("candidate line is missing its {0}")]
    Missing(&'static str),
    /// A field is not a number or address where one is expected.
    #[error("candidate field {0} is malformed: {1:?}")]
    Malformed(&'static str, String),
    /// The transport is not UDP.
    #[error("unsupported candidate transport {0:?}")]
    UnsupportedTransport(String),
    /// The type token is not one of host, srflx, prflx, relay.
    #[error("unknown candidate type {0:?}")]
    UnknownType(String),
}

impl FromStr for Candidate {
    type Err = CandidateParseError;

    /// Parses the RFC 8839 §5.1 syntax, with or without the `a=` and `candidate:` prefixes.
    /// Extension attributes after the mandatory fields are ignored.
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let line = line.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let line = line.strip_prefix("candidate:").unwrap_or(line);
        let mut it = line.split_ascii_whitespace();
        let mut next = |what: &'static str| it.next().ok_or(CandidateParseError::Missing(what));
        let foundation = next("foundation")?;
        if foundation.is_empty()
            || foundation.len() > 32
            || !foundation
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            return Err(CandidateParseError::Malformed(
                "foundation",
                foundation.into(),
            ));
        }
        let component = parse_num::<u16>("component", next("component")?)?;
        if component == 0 {
            return Err(CandidateParseError::Malformed("component", "0".into()));
        }
        let transport = next("transport")?;
        if !transport.eq_ignore_ascii_case("udp") {
            return Err(CandidateParseError::UnsupportedTransport(transport.into()));
        }
        let priority = parse_num::<u32>("priority", next("priority")?)?;
        let ip = parse_num::<IpAddr>("address", next("address")?)?;
        let port = parse_num::<u16>("port", next("port")?)?;
        if next("typ")? != "typ" {
            return Err(CandidateParseError::Missing("typ"));
        }
        let kind: CandidateType = next("type")?.parse()?;
        let mut raddr = None;
        let mut rport = None;
        while let Some(key) = it.next() {
            let Some(value) = it.next() else { break };
            match key {
                "raddr" => raddr = Some(parse_num::<IpAddr>("raddr", value)?),
                "rport" => rport = Some(parse_num::<u16>("rport", value)?),
                _ => {}
            }
        }
        let related_address = match (raddr, rport) {
            (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
            _ => None,
        };
        Ok(Candidate::remote(
            foundation,
            component,
            priority,
            SocketAddr::new(ip, port),
            kind,
            related_address,
        ))
    }
}

fn parse_num<T: FromStr>(what: &'static str, s: &str) -> Result<T, CandidateParseError> {
    s.parse()
        .map_err(|_| CandidateParseError::Malformed(what, s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_follows_rfc8445_formula() {
        // RFC 8445 §5.1.2.1 with the recommended values of §5.1.2.2.
        assert_eq!(priority(CandidateType::Host, 65535, 1), 2_130_706_431);
        assert_eq!(
            priority(CandidateType::ServerReflexive, 65535, 1),
            1_694_498_815
        );
        assert_eq!(priority(CandidateType::Relayed, 65535, 2), 16_777_214);
        assert!(
            priority(CandidateType::PeerReflexive, 0, 1)
                > priority(CandidateType::ServerReflexive, 65535, 1)
        );
    }

    #[test]
    fn local_preference_is_read_back_from_a_priority() {
        for pref in [0u16, 1, 0x7fff, 0xffff] {
            for kind in [CandidateType::Host, CandidateType::Relayed] {
                assert_eq!(local_preference(priority(kind, pref, 1)), pref);
            }
        }
    }

    #[test]
    fn sdp_round_trip() {
        let line =
            "candidate:1a2b 1 udp 1694498815 203.0.113.7 40000 typ srflx raddr 10.0.0.2 rport 5000";
        let c: Candidate = line.parse().expect("parses");
        assert_eq!(c.kind, CandidateType::ServerReflexive);
        assert_eq!(c.related_address, Some("10.0.0.2:5000".parse().unwrap()));
        assert_eq!(c.to_sdp(), line);
        let v6: Candidate = "a=candidate:x 2 UDP 5 ::1 9 typ host generation 0"
            .parse()
            .expect("parses v6");
        assert_eq!(v6.address, "[::1]:9".parse().unwrap());
        assert_eq!(v6.component, 2);
    }

    #[test]
    fn bad_candidate_lines_are_errors() {
        for bad in [
            "",
            "candidate:",
            "candidate:f 1 tcp 1 1.2.3.4 5 typ host",
            "candidate:f 0 udp 1 1.2.3.4 5 typ host",
            "candidate:f 1 udp x 1.2.3.4 5 typ host",
            "candidate:f 1 udp 1 1.2.3.4 70000 typ host",
            "candidate:f 1 udp 1 host.local 5 typ host",
            "candidate:f 1 udp 1 1.2.3.4 5 type host",
            "candidate:f 1 udp 1 1.2.3.4 5 typ cone",
            "candidate:f\u{7f} 1 udp 1 1.2.3.4 5 typ host",
        ] {
            assert!(
                bad.parse::<Candidate>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }
}
