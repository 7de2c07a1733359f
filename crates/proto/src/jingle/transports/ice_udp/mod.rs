//! The Jingle ICE-UDP transport element of XEP-0176 (§5.3, §13 schema):
//! `<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag pwd>` with its `<candidate/>`
//! children, read with minidom and mapped to the agent's [`Candidate`] and [`Credentials`].
//!
//! Reading choices (each one documented on the item it concerns):
//! - unknown attributes and unknown child elements are ignored; a DTLS `<fingerprint/>`
//!   (`urn:xmpp:jingle:apps:dtls:0`, XEP-0320) is read into a [`DtlsFingerprint`]: a missing
//!   one is fine (plain ICE-UDP has none), a present but invalid one makes the transport
//!   invalid ([`TransportError::Fingerprint`]), since a data channel must not be set up with
//!   a fingerprint we misread;
//! - a candidate whose `protocol` is not UDP, or whose `ip` is an mDNS `.local` name, is skipped
//!   and counted in [`Skipped`], not an error: the other candidates of the same transport are
//!   still usable, and both kinds are legitimate output of real clients (RFC 6544 TCP
//!   candidates, WebRTC mDNS host candidates) that we simply cannot use;
//! - a candidate with a missing or malformed required attribute makes the whole element an
//!   error, since the peer is sending something XEP-0176 does not allow (the session layer answers
//!   `<bad-request/>`);
//! - once [`TransportLimits::max_candidates`] usable candidates are read, the remaining
//!   `<candidate/>` children are not read at all, only counted in [`Skipped::over_limit`]: a peer
//!   cannot make us hold more than the bound, and the element is still usable (the session
//!   answers it with a result). XEP-0166 defines no error for a transport with many candidates
//!   (its §6.3.2 `<resource-constraint/>` is for a responder that cannot take a session at all;
//!   §7.2.13 and the §10 error table give none for `transport-info`), and RFC 8445 §6.1.2.5
//!   bounds the candidate pairs the same way, by discarding the surplus (`xep/0166.md`).

use std::net::{IpAddr, SocketAddr};

use minidom::Element;

use super::webrtc_datachannel::dtls::{DtlsError, DtlsFingerprint};
use crate::xmpp::stanza::set_attr as set;

use crate::ice::{Candidate, CandidateType, Credentials};

pub mod method;

/// Namespace of the ICE-UDP transport (XEP-0176 §12.1).
pub const NS_ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
/// Namespace of the DTLS fingerprint element carried inside the transport (XEP-0320 §3);
/// defined in [`super::webrtc_datachannel::dtls`].
pub use super::webrtc_datachannel::dtls::NS_DTLS;

/// Minimum length of `ice-ufrag` (RFC 8839 §5.4).
pub const UFRAG_MIN_LEN: usize = 4;
/// Maximum length of `ice-ufrag` (RFC 8839 §5.4).
pub const UFRAG_MAX_LEN: usize = 256;
/// Minimum length of `ice-pwd` (RFC 8839 §5.4).
pub const PWD_MIN_LEN: usize = 22;
/// Maximum length of `ice-pwd` (RFC 8839 §5.4).
pub const PWD_MAX_LEN: usize = 256;
/// Maximum length of a foundation (RFC 8839 §5.1: `1*32ice-char`).
pub const FOUNDATION_MAX_LEN: usize = 32;
/// Largest component id (RFC 8445 §5.1.1: between 1 and 256).
pub const COMPONENT_MAX: u16 = 256;
/// Suffix of an mDNS host name (RFC 6762 §3), as used by WebRTC mDNS candidates.
const MDNS_SUFFIX: &str = ".local";
/// Maximum length we accept for a candidate `id` (an NMTOKEN in the XEP-0176 §13 schema, which
/// sets no bound; ours keeps one stanza from holding arbitrarily large ids).
pub const ID_MAX_LEN: usize = 256;

/// Default limit on the usable candidates read from one transport element.
pub const DEFAULT_MAX_CANDIDATES: usize = 64;

/// Element and attribute names of XEP-0176 §5.3 / §13.
mod names {
    pub const TRANSPORT: &str = "transport";
    pub const CANDIDATE: &str = "candidate";
    pub const FINGERPRINT: &str = "fingerprint";
    pub const UFRAG: &str = "ufrag";
    pub const PWD: &str = "pwd";
    pub const COMPONENT: &str = "component";
    pub const FOUNDATION: &str = "foundation";
    pub const GENERATION: &str = "generation";
    pub const ID: &str = "id";
    pub const IP: &str = "ip";
    pub const NETWORK: &str = "network";
    pub const PORT: &str = "port";
    pub const PRIORITY: &str = "priority";
    pub const PROTOCOL: &str = "protocol";
    pub const REL_ADDR: &str = "rel-addr";
    pub const REL_PORT: &str = "rel-port";
    pub const TYPE: &str = "type";
    /// The only `protocol` value XEP-0176 §5.3 defines.
    pub const UDP: &str = "udp";
}

/// Bounds applied while reading a transport element from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// Most usable candidates read from one element (XEP-0176 §5.3); the `<candidate/>`
    /// children after them are ignored unread and counted in [`Skipped::over_limit`].
    pub max_candidates: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_candidates: DEFAULT_MAX_CANDIDATES,
        }
    }
}

/// A candidate as XEP-0176 §5.3 carries it: our [`Candidate`] plus the XEP's own attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUdpCandidate {
    /// The ICE candidate (RFC 8445 §5.1).
    pub candidate: Candidate,
    /// Unique identifier of the candidate within the session (XEP-0176 §5.3 `id`).
    pub id: String,
    /// ICE generation, incremented on restart (XEP-0176 §5.3 `generation`).
    pub generation: u8,
    /// Index of the network interface the candidate is on (XEP-0176 §5.3 `network`); 0 when the
    /// peer left it out.
    pub network: u8,
}

impl IceUdpCandidate {
    /// Wraps a candidate with its XEP-0176 identifier, generation 0 and network 0.
    pub fn new(candidate: Candidate, id: impl Into<String>) -> Self {
        IceUdpCandidate {
            candidate,
            id: id.into(),
            generation: 0,
            network: 0,
        }
    }
}

/// Candidates that were well formed but that we do not use, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Candidates whose `protocol` is not `udp` (for example RFC 6544 TCP candidates).
    pub non_udp: usize,
    /// Candidates whose `ip` is an mDNS `.local` name, which we do not resolve.
    pub mdns: usize,
    /// Candidates beyond a bound, ignored: the `<candidate/>` children after
    /// [`TransportLimits::max_candidates`] usable ones (not read), and candidates beyond the
    /// session's bound on remote candidates per content
    /// ([`crate::jingle::SessionConfig::max_remote_candidates`]). XEP-0166 gives no error for them.
    pub over_limit: usize,
}

/// The ICE-UDP transport element of XEP-0176 §5.
#[derive(Debug, Clone, PartialEq)]
pub struct IceUdpTransport {
    /// The ICE username fragment (XEP-0176 §5.3 `ufrag`, RFC 8445 §5.3).
    pub ufrag: Option<String>,
    /// The ICE password (XEP-0176 §5.3 `pwd`, RFC 8445 §5.3).
    pub pwd: Option<String>,
    /// The usable candidates, in document order.
    pub candidates: Vec<IceUdpCandidate>,
    /// The DTLS `<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0'/>` child (XEP-0320 §3), which
    /// the data-channel transport carries here in offers and answers.
    pub fingerprint: Option<DtlsFingerprint>,
    /// Candidates present in the element but not usable by us; always zero on an element we
    /// built ourselves and not written by [`IceUdpTransport::to_element`].
    pub skipped: Skipped,
}

/// Why one `<candidate/>` element is invalid (XEP-0176 §5.3, §13).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandidateError {
    /// A required attribute is absent.
    #[error("candidate is missing its required attribute {0:?}")]
    MissingAttribute(&'static str),
    /// An attribute has a value outside its syntax or range.
    #[error("candidate attribute {name:?} has an invalid value {value:?}")]
    InvalidAttribute {
        /// The attribute name.
        name: &'static str,
        /// The value received.
        value: String,
    },
    /// Only one of `rel-addr` and `rel-port` is present.
    #[error("candidate has only one of rel-addr and rel-port")]
    HalfRelatedAddress,
}

/// Why a transport element cannot be read (XEP-0176 §5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The element is not `<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/>`.
    #[error("expected an ICE-UDP transport, got <{name}/> in namespace {ns:?}")]
    NotIceUdp {
        /// Name of the element received.
        name: String,
        /// Namespace of the element received.
        ns: String,
    },
    /// `ufrag` is not 4 to 256 ice-chars (RFC 8839 §5.4).
    #[error("invalid ufrag {0:?}")]
    InvalidUfrag(String),
    /// `pwd` is not 22 to 256 ice-chars (RFC 8839 §5.4). The value is not kept.
    #[error("invalid pwd")]
    InvalidPwd,
    /// The `<fingerprint/>` child is invalid (XEP-0320 §3).
    #[error("invalid DTLS fingerprint: {0}")]
    Fingerprint(DtlsError),
    /// A `<candidate/>` child is invalid.
    #[error("candidate {index}: {error}")]
    Candidate {
        /// Position of the candidate among the `<candidate/>` children, from 0.
        index: usize,
        /// What is wrong with it.
        error: CandidateError,
    },
}

/// Whether every byte is an `ice-char` (RFC 8839 §5.4: ALPHA / DIGIT / "+" / "/").
fn is_ice_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Whether `s` is a valid `ice-ufrag` (RFC 8839 §5.4).
pub fn is_valid_ufrag(s: &str) -> bool {
    (UFRAG_MIN_LEN..=UFRAG_MAX_LEN).contains(&s.len()) && is_ice_chars(s)
}

/// Whether `s` is a valid `ice-pwd` (RFC 8839 §5.4).
pub fn is_valid_pwd(s: &str) -> bool {
    (PWD_MIN_LEN..=PWD_MAX_LEN).contains(&s.len()) && is_ice_chars(s)
}

/// Whether `s` is a valid foundation (RFC 8839 §5.1: `1*32ice-char`).
fn is_valid_foundation(s: &str) -> bool {
    !s.is_empty() && s.len() <= FOUNDATION_MAX_LEN && is_ice_chars(s)
}

/// Whether `s` is an XML NMTOKEN made of the ASCII name characters we accept for `id`
/// (XEP-0176 §13 schema), bounded by [`ID_MAX_LEN`].
fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= ID_MAX_LEN
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Sets an attribute whose name is one of the constants of [`names`]. Those names are valid
/// NCNames, so the conversion cannot fail; the round-trip tests would notice if one were not.
fn required<'a>(el: &'a Element, name: &'static str) -> Result<&'a str, CandidateError> {
    el.attr(name).ok_or(CandidateError::MissingAttribute(name))
}

fn parse_attr<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, CandidateError> {
    value.parse().map_err(|_| CandidateError::InvalidAttribute {
        name,
        value: value.to_owned(),
    })
}

fn invalid(name: &'static str, value: &str) -> CandidateError {
    CandidateError::InvalidAttribute {
        name,
        value: value.to_owned(),
    }
}

/// What reading one `<candidate/>` gives.
enum Parsed {
    Usable(IceUdpCandidate),
    NonUdp,
    Mdns,
}

/// Reads one `<candidate/>` (XEP-0176 §5.3).
fn parse_candidate(el: &Element) -> Result<Parsed, CandidateError> {
    use names::*;
    // Protocol first: a TCP candidate (RFC 6544) may use values we do not check (port 9,
    // tcptype), and is skipped whatever they are.
    let protocol = required(el, PROTOCOL)?;
    if !protocol.eq_ignore_ascii_case(UDP) {
        return Ok(Parsed::NonUdp);
    }
    let ip_text = required(el, IP)?;
    let is_mdns = ip_text
        .len()
        .checked_sub(MDNS_SUFFIX.len())
        .and_then(|at| ip_text.get(at..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case(MDNS_SUFFIX));
    if is_mdns {
        return Ok(Parsed::Mdns);
    }
    let ip: IpAddr = parse_attr(IP, ip_text)?;

    let component_text = required(el, COMPONENT)?;
    let component: u16 = parse_attr(COMPONENT, component_text)?;
    if component == 0 || component > COMPONENT_MAX {
        return Err(invalid(COMPONENT, component_text));
    }
    let foundation = required(el, FOUNDATION)?;
    if !is_valid_foundation(foundation) {
        return Err(invalid(FOUNDATION, foundation));
    }
    let generation: u8 = parse_attr(GENERATION, required(el, GENERATION)?)?;
    let id = required(el, ID)?;
    if !is_valid_id(id) {
        return Err(invalid(ID, id));
    }
    let network: u8 = match el.attr(NETWORK) {
        Some(v) => parse_attr(NETWORK, v)?,
        None => 0,
    };
    let port: u16 = parse_attr(PORT, required(el, PORT)?)?;
    let priority_text = required(el, PRIORITY)?;
    let priority: u32 = parse_attr(PRIORITY, priority_text)?;
    if priority == 0 {
        // positiveInteger in the XEP-0176 §13 schema; 1..2^31-1 in RFC 8445 §5.1.2.1.
        return Err(invalid(PRIORITY, priority_text));
    }
    let type_text = required(el, TYPE)?;
    let kind: CandidateType = type_text.parse().map_err(|_| invalid(TYPE, type_text))?;
    let related = match (el.attr(REL_ADDR), el.attr(REL_PORT)) {
        (None, None) => None,
        (Some(a), Some(p)) => {
            let a: IpAddr = parse_attr(REL_ADDR, a)?;
            let p: u16 = parse_attr(REL_PORT, p)?;
            Some(SocketAddr::new(a, p))
        }
        _ => return Err(CandidateError::HalfRelatedAddress),
    };
    let candidate = Candidate::remote(
        foundation,
        component,
        priority,
        SocketAddr::new(ip, port),
        kind,
        related,
    );
    Ok(Parsed::Usable(IceUdpCandidate {
        candidate,
        id: id.to_owned(),
        generation,
        network,
    }))
}

impl IceUdpCandidate {
    /// Renders the `<candidate/>` element of XEP-0176 §5.3 (protocol `udp`).
    pub fn to_element(&self) -> Element {
        use names::*;
        let c = &self.candidate;
        let mut el = Element::bare(CANDIDATE, NS_ICE_UDP);
        set(&mut el, COMPONENT, u32::from(c.component));
        set(&mut el, FOUNDATION, c.foundation.as_str());
        set(&mut el, GENERATION, u32::from(self.generation));
        set(&mut el, ID, self.id.as_str());
        set(&mut el, IP, c.address.ip().to_string());
        set(&mut el, NETWORK, u32::from(self.network));
        set(&mut el, PORT, u32::from(c.address.port()));
        set(&mut el, PRIORITY, c.priority);
        set(&mut el, PROTOCOL, UDP);
        if let Some(rel) = c.related_address {
            set(&mut el, REL_ADDR, rel.ip().to_string());
            set(&mut el, REL_PORT, u32::from(rel.port()));
        }
        set(&mut el, TYPE, c.kind.as_str());
        el
    }
}

impl IceUdpTransport {
    /// A transport carrying our credentials and candidates, for `session-initiate`,
    /// `session-accept` or `transport-info` (XEP-0176 §5.2, §5.5).
    pub fn new(credentials: &Credentials, candidates: Vec<IceUdpCandidate>) -> Self {
        IceUdpTransport {
            ufrag: Some(credentials.ufrag.clone()),
            pwd: Some(credentials.pwd.clone()),
            candidates,
            fingerprint: None,
            skipped: Skipped::default(),
        }
    }

    /// The peer's credentials, when the element carried both `ufrag` and `pwd`.
    pub fn credentials(&self) -> Option<Credentials> {
        match (&self.ufrag, &self.pwd) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
            _ => None,
        }
    }

    /// The ICE candidates alone, in document order, to hand to the agent
    /// (`Agent::add_remote_candidate`, RFC 8445 §5.3).
    pub fn ice_candidates(&self) -> impl Iterator<Item = &Candidate> + '_ {
        self.candidates.iter().map(|c| &c.candidate)
    }

    /// Reads a `<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/>` element
    /// (XEP-0176 §5), with the choices described in the module documentation.
    pub fn from_element(el: &Element, limits: TransportLimits) -> Result<Self, TransportError> {
        if !el.is(names::TRANSPORT, NS_ICE_UDP) {
            return Err(TransportError::NotIceUdp {
                name: el.name().to_owned(),
                ns: el.ns(),
            });
        }
        let ufrag = match el.attr(names::UFRAG) {
            Some(u) if is_valid_ufrag(u) => Some(u.to_owned()),
            Some(u) => return Err(TransportError::InvalidUfrag(u.to_owned())),
            None => None,
        };
        let pwd = match el.attr(names::PWD) {
            Some(p) if is_valid_pwd(p) => Some(p.to_owned()),
            Some(_) => return Err(TransportError::InvalidPwd),
            None => None,
        };
        let mut candidates = Vec::new();
        let mut skipped = Skipped::default();
        for (index, child) in el
            .children()
            .filter(|c| c.is(names::CANDIDATE, NS_ICE_UDP))
            .enumerate()
        {
            if candidates.len() >= limits.max_candidates {
                // Past the bound: counted, not read (see the module documentation).
                skipped.over_limit += 1;
                continue;
            }
            match parse_candidate(child) {
                Ok(Parsed::Usable(c)) => candidates.push(c),
                Ok(Parsed::NonUdp) => skipped.non_udp += 1,
                Ok(Parsed::Mdns) => skipped.mdns += 1,
                Err(error) => return Err(TransportError::Candidate { index, error }),
            }
        }
        let fingerprint = el
            .get_child(names::FINGERPRINT, NS_DTLS)
            .map(DtlsFingerprint::from_element)
            .transpose()
            .map_err(TransportError::Fingerprint)?;
        Ok(IceUdpTransport {
            ufrag,
            pwd,
            candidates,
            fingerprint,
            skipped,
        })
    }

    /// Keeps the first `max` candidates and counts the others in [`Skipped::over_limit`]: the
    /// session's bound on remote candidates per content (XEP-0166 has no error for more; see
    /// the module documentation).
    pub(crate) fn keep_first_candidates(&mut self, max: usize) {
        if self.candidates.len() > max {
            self.skipped.over_limit += self.candidates.len() - max;
            self.candidates.truncate(max);
        }
    }

    /// Renders the element of XEP-0176 §5: `ufrag`/`pwd` when set, the fingerprint if any
    /// (first, where Conversations puts it), then one `<candidate/>` per candidate.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::TRANSPORT, NS_ICE_UDP);
        if let Some(u) = &self.ufrag {
            set(&mut el, names::UFRAG, u.as_str());
        }
        if let Some(p) = &self.pwd {
            set(&mut el, names::PWD, p.as_str());
        }
        if let Some(fp) = &self.fingerprint {
            el.append_child(fp.to_element());
        }
        for c in &self.candidates {
            el.append_child(c.to_element());
        }
        el
    }
}

impl TryFrom<&Element> for IceUdpTransport {
    type Error = TransportError;

    /// [`IceUdpTransport::from_element`] with the default [`TransportLimits`].
    fn try_from(el: &Element) -> Result<Self, Self::Error> {
        IceUdpTransport::from_element(el, TransportLimits::default())
    }
}

impl From<&IceUdpTransport> for Element {
    /// [`IceUdpTransport::to_element`].
    fn from(t: &IceUdpTransport) -> Element {
        t.to_element()
    }
}
