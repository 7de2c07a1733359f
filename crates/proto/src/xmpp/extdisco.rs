//! External service discovery (XEP-0215, `urn:xmpp:extdisco:2`), sans-IO: the queries to send
//! to the user's server, the reading of its answer, and the mapping of the services to what the
//! ICE agent needs (STUN server addresses and [`TurnConfig`]s).
//!
//! The flow, with the caller doing the I/O:
//! 1. send [`services_query`] to the server's domain and wait for the answer;
//! 2. [`services_from_response`] reads it: a result gives the services, an error meaning "not
//!    offered here" (`<service-unavailable/>`, `<feature-not-implemented/>`) gives none;
//! 3. for a `restricted` service without credentials, send [`credentials_query`] and read its
//!    answer the same way;
//! 4. [`plan`] turns the services into [`IceServer`]s, each with a host to resolve; the tokio
//!    crate's `extdisco::resolve` (doing DNS) or the caller's own resolver gives addresses,
//!    and [`IceServers::add`] collects STUN addresses and TURN configurations;
//! 5. [`refresh_at`] says when to fetch the services again, before the credentials expire
//!    (Prosody's `mod_turn_external` issues them for `turn_external_ttl`, 86400 s by default).
//!
//! Why not xmpp-parsers' `extdisco`: its `Service` fields are private and a `type='turns'`
//! service makes the whole result fail to parse. Reading here is tolerant instead: unknown
//! types and transports are kept as [`ServiceType::Other`] / [`ServiceTransport::Other`],
//! unknown attributes and children (such as XEP-0215 §4 extended information forms) are
//! ignored, and a `<service/>` with a missing or malformed attribute we need is skipped and
//! reported in [`Services::skipped`], never failing the other services.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jid::BareJid;
use minidom::Element;

use super::stanza::{iq, iq_result, iq_type, set_attr, IqType, StanzaError};
use crate::jingle::{LimitExceeded, StanzaLimits};
use crate::turn::{TurnConfig, TurnCredentials, TurnTransport};

/// Namespace of XEP-0215 version 2 (XEP-0215 §2, §8.1).
pub const NS_EXTDISCO: &str = "urn:xmpp:extdisco:2";

/// Default port of `stun:` and `turn:` URIs (RFC 7064 §3.2, RFC 7065 §3.2), used when a
/// service leaves out `port` (XEP-0215 §2 only RECOMMENDS it).
pub const DEFAULT_PORT: u16 = 3478;
/// Default port of `stuns:` and `turns:` URIs (RFC 7064 §3.2, RFC 7065 §3.2).
pub const DEFAULT_TLS_PORT: u16 = 5349;

/// Most `<service/>` children read from one answer; more are skipped (and reported), so a
/// broken server cannot make us build an unbounded list.
pub const MAX_SERVICES: usize = 64;

/// Longest time before expiry at which [`refresh_at`] asks for new credentials.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Element and attribute names of XEP-0215 §2, §3 and §9.
mod names {
    pub const SERVICES: &str = "services";
    pub const CREDENTIALS: &str = "credentials";
    pub const SERVICE: &str = "service";
    pub const ACTION: &str = "action";
    pub const EXPIRES: &str = "expires";
    pub const HOST: &str = "host";
    pub const NAME: &str = "name";
    pub const PASSWORD: &str = "password";
    pub const PORT: &str = "port";
    pub const RESTRICTED: &str = "restricted";
    pub const TRANSPORT: &str = "transport";
    pub const TYPE: &str = "type";
    pub const USERNAME: &str = "username";
}

/// Stanza error conditions that mean "this server offers no external services"
/// (XEP-0215 §2: `<service-unavailable/>` when it does not support the protocol; RFC 6120
/// §8.3.3.3 `<feature-not-implemented/>` from servers that answer that way).
const NOT_OFFERED: [&str; 2] = ["service-unavailable", "feature-not-implemented"];

/// A service type (XEP-0215 §2 `type`, from the registry of §8.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceType {
    /// A STUN server (RFC 8489).
    Stun,
    /// A STUN server over TLS (RFC 7064 `stuns:`).
    Stuns,
    /// A TURN server (RFC 8656).
    Turn,
    /// A TURN server over TLS (RFC 7065 `turns:`), which Prosody 0.12 announces.
    Turns,
    /// Any other registered or private type, kept as received.
    Other(String),
}

impl ServiceType {
    /// Reads a `type` value; the four known types are matched case-insensitively.
    pub fn parse(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "stun" => ServiceType::Stun,
            "stuns" => ServiceType::Stuns,
            "turn" => ServiceType::Turn,
            "turns" => ServiceType::Turns,
            _ => ServiceType::Other(value.to_owned()),
        }
    }

    /// The `type` attribute value.
    pub fn as_str(&self) -> &str {
        match self {
            ServiceType::Stun => "stun",
            ServiceType::Stuns => "stuns",
            ServiceType::Turn => "turn",
            ServiceType::Turns => "turns",
            ServiceType::Other(s) => s,
        }
    }

    /// The port a service of this type uses when `port` is absent (RFC 7064 §3.2,
    /// RFC 7065 §3.2); `None` for an unknown type.
    pub fn default_port(&self) -> Option<u16> {
        match self {
            ServiceType::Stun | ServiceType::Turn => Some(DEFAULT_PORT),
            ServiceType::Stuns | ServiceType::Turns => Some(DEFAULT_TLS_PORT),
            ServiceType::Other(_) => None,
        }
    }
}

/// The transport to the service (XEP-0215 §2 `transport`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceTransport {
    /// UDP.
    Udp,
    /// TCP (for `turns`/`stuns`, TLS over TCP).
    Tcp,
    /// Anything else, kept as received.
    Other(String),
}

impl ServiceTransport {
    /// Reads a `transport` value, case-insensitively for `udp` and `tcp`.
    pub fn parse(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "udp" => ServiceTransport::Udp,
            "tcp" => ServiceTransport::Tcp,
            _ => ServiceTransport::Other(value.to_owned()),
        }
    }

    /// The `transport` attribute value.
    pub fn as_str(&self) -> &str {
        match self {
            ServiceTransport::Udp => "udp",
            ServiceTransport::Tcp => "tcp",
            ServiceTransport::Other(s) => s,
        }
    }
}

/// What a pushed service does to the known set (XEP-0215 §2 `action`, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceAction {
    /// A new service (the default).
    Add,
    /// The service is gone: `remove` in the §2 table, `delete` in the §9 schema and the §3.2
    /// example; both are read.
    Remove,
    /// The service changed (for example new credentials).
    Modify,
}

/// One external service (XEP-0215 §2 `<service/>`).
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalService {
    /// `type` (required).
    pub kind: ServiceType,
    /// `host` (required): a domain name or an IP address; an IPv6 address may come bracketed.
    pub host: String,
    /// `port` as sent; see [`ExternalService::port_or_default`].
    pub port: Option<u16>,
    /// `transport` as sent; see [`ExternalService::transport_or_default`].
    pub transport: Option<ServiceTransport>,
    /// `username`: for TURN from Prosody's `mod_turn_external`, `"<expiry unix time>"` or
    /// `"<expiry>:<user>"` (TURN REST API draft §2.2).
    pub username: Option<String>,
    /// `password`; never printed by `Debug`.
    pub password: Option<String>,
    /// `expires`: when `username` and `password` stop working (XEP-0082 DateTime, UTC).
    pub expires: Option<SystemTime>,
    /// `restricted`: credentials are needed, and must be asked for with [`credentials_query`]
    /// when not given (XEP-0215 §3.3).
    pub restricted: bool,
    /// `name`: a human-readable label.
    pub name: Option<String>,
    /// `action`, in a push (XEP-0215 §3.2); `None` when absent (which means add).
    pub action: Option<ServiceAction>,
}

impl std::fmt::Debug for ExternalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("ExternalService")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("expires", &self.expires)
            .field("restricted", &self.restricted)
            .field("name", &self.name)
            .field("action", &self.action)
            .finish()
    }
}

impl ExternalService {
    /// A service of `kind` at `host` with nothing else set (for manual configuration and tests).
    pub fn new(kind: ServiceType, host: impl Into<String>) -> Self {
        ExternalService {
            kind,
            host: host.into(),
            port: None,
            transport: None,
            username: None,
            password: None,
            expires: None,
            restricted: false,
            name: None,
            action: None,
        }
    }

    /// The port to use: `port`, else the default of the type (RFC 7064/7065 §3.2).
    pub fn port_or_default(&self) -> Option<u16> {
        self.port.or_else(|| self.kind.default_port())
    }

    /// The transport to use: `transport`, else TCP for `stuns`/`turns` (TLS runs over TCP)
    /// and UDP for the others (RFC 7065 §3.1 default for `turn:`).
    pub fn transport_or_default(&self) -> ServiceTransport {
        match (&self.transport, &self.kind) {
            (Some(t), _) => t.clone(),
            (None, ServiceType::Stuns | ServiceType::Turns) => ServiceTransport::Tcp,
            (None, _) => ServiceTransport::Udp,
        }
    }

    /// Whether credentials must be fetched with [`credentials_query`] before use
    /// (XEP-0215 §3.3): `restricted` and no username or password yet.
    pub fn needs_credentials(&self) -> bool {
        self.restricted && (self.username.is_none() || self.password.is_none())
    }

    /// `host` as an IP address, when it is one (brackets around IPv6 accepted).
    pub fn host_ip(&self) -> Option<IpAddr> {
        host_ip(&self.host)
    }

    /// Renders the `<service/>` element (XEP-0215 §2), e.g. for a [`credentials_query`] or a
    /// test fixture.
    pub fn to_element(&self) -> Element {
        use names::*;
        let mut el = Element::bare(SERVICE, NS_EXTDISCO);
        set_attr(&mut el, TYPE, self.kind.as_str());
        set_attr(&mut el, HOST, self.host.as_str());
        if let Some(port) = self.port {
            set_attr(&mut el, PORT, u32::from(port));
        }
        if let Some(t) = &self.transport {
            set_attr(&mut el, TRANSPORT, t.as_str());
        }
        if let Some(u) = &self.username {
            set_attr(&mut el, USERNAME, u.as_str());
        }
        if let Some(p) = &self.password {
            set_attr(&mut el, PASSWORD, p.as_str());
        }
        if let Some(e) = self.expires {
            set_attr(&mut el, EXPIRES, format_datetime(e));
        }
        if self.restricted {
            set_attr(&mut el, RESTRICTED, "1");
        }
        if let Some(n) = &self.name {
            set_attr(&mut el, NAME, n.as_str());
        }
        if let Some(a) = self.action {
            let v = match a {
                ServiceAction::Add => "add",
                ServiceAction::Remove => "remove",
                ServiceAction::Modify => "modify",
            };
            set_attr(&mut el, ACTION, v);
        }
        el
    }
}

fn host_ip(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

/// Why one `<service/>` was skipped (XEP-0215 §2, §9).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// A required attribute (`type`, `host`) is absent or empty.
    #[error("service is missing its required attribute {0:?}")]
    MissingAttribute(&'static str),
    /// An attribute we read has a value outside its syntax.
    #[error("service attribute {name:?} has an invalid value {value:?}")]
    InvalidAttribute {
        /// The attribute name.
        name: &'static str,
        /// The value received.
        value: String,
    },
    /// The answer held more than [`MAX_SERVICES`] services; this one was not read.
    #[error("more than {MAX_SERVICES} services")]
    TooMany,
}

/// A `<service/>` that was not read, with its position and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedService {
    /// Position among the `<service/>` children, from 0.
    pub index: usize,
    /// Why it was skipped.
    pub error: ServiceError,
}

/// The services of one answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    /// The well-formed services, in document order.
    pub services: Vec<ExternalService>,
    /// The services that were skipped, in document order.
    pub skipped: Vec<SkippedService>,
}

/// Why an answer cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtdiscoError {
    /// The element is neither an iq result nor `<services/>`/`<credentials/>` in
    /// `urn:xmpp:extdisco:2`.
    #[error("expected an extdisco answer, got <{name}/> in namespace {ns:?}")]
    Unexpected {
        /// Name of the element received.
        name: String,
        /// Its namespace.
        ns: String,
    },
    /// An iq result without a `<services/>` or `<credentials/>` payload.
    #[error("iq result without a services or credentials payload")]
    MissingPayload,
    /// An iq error other than "not offered" (for example `<forbidden/>`, XEP-0215 §2, or
    /// `<not-authorized/>` on a credentials request, §3.3).
    #[error("the server answered with the error {condition:?}")]
    IqError {
        /// The RFC 6120 §8.3.3 condition, or `"undefined-condition"` when none was given.
        condition: String,
    },
    /// The answer breaks [`StanzaLimits::DEFAULT`] and was not read.
    #[error("{0}")]
    Limits(LimitExceeded),
}

/// The iq get asking `to` (the user's server domain) for all its external services
/// (XEP-0215 §3.1).
pub fn services_query(id: &str, to: &BareJid) -> Element {
    let mut el = iq(IqType::Get, id, &to.to_string(), None);
    el.append_child(Element::bare(names::SERVICES, NS_EXTDISCO));
    el
}

/// The iq get asking `to` for its services of one type only (XEP-0215 §3.2).
pub fn services_of_type_query(id: &str, to: &BareJid, kind: &ServiceType) -> Element {
    let mut services = Element::bare(names::SERVICES, NS_EXTDISCO);
    set_attr(&mut services, names::TYPE, kind.as_str());
    let mut el = iq(IqType::Get, id, &to.to_string(), None);
    el.append_child(services);
    el
}

/// The iq get asking `to` for credentials for `service` (XEP-0215 §3.3): `<credentials>` with
/// one `<service/>` carrying `host` and `type` (required) and `port` when known (which tells
/// services on one host apart; Prosody matches on all three).
pub fn credentials_query(id: &str, to: &BareJid, service: &ExternalService) -> Element {
    let mut wanted = Element::bare(names::SERVICE, NS_EXTDISCO);
    set_attr(&mut wanted, names::HOST, service.host.as_str());
    set_attr(&mut wanted, names::TYPE, service.kind.as_str());
    if let Some(port) = service.port {
        set_attr(&mut wanted, names::PORT, u32::from(port));
    }
    let mut credentials = Element::bare(names::CREDENTIALS, NS_EXTDISCO);
    credentials.append_child(wanted);
    let mut el = iq(IqType::Get, id, &to.to_string(), None);
    el.append_child(credentials);
    el
}

fn is_payload(el: &Element) -> bool {
    el.is(names::SERVICES, NS_EXTDISCO) || el.is(names::CREDENTIALS, NS_EXTDISCO)
}

/// Reads the services of an iq result, of a pushed iq set (XEP-0215 §3.2), or of a bare
/// `<services/>` or `<credentials/>` element, tolerantly (see the module documentation).
/// An iq error is [`ExtdiscoError::IqError`]; use [`services_from_response`] to treat "not
/// offered" errors as no services.
pub fn parse_services(el: &Element) -> Result<Services, ExtdiscoError> {
    StanzaLimits::DEFAULT
        .check(el)
        .map_err(ExtdiscoError::Limits)?;
    let payload = if is_payload(el) {
        el
    } else if el.name() == "iq" {
        match el.attr("type") {
            Some("result") | Some("set") => el
                .children()
                .find(|c| is_payload(c))
                .ok_or(ExtdiscoError::MissingPayload)?,
            Some("error") => {
                return Err(ExtdiscoError::IqError {
                    condition: StanzaError::from_stanza(el)
                        .map(|e| e.condition_name)
                        .unwrap_or_else(|| "undefined-condition".to_owned()),
                })
            }
            _ => {
                return Err(ExtdiscoError::Unexpected {
                    name: el.name().to_owned(),
                    ns: el.ns(),
                })
            }
        }
    } else {
        return Err(ExtdiscoError::Unexpected {
            name: el.name().to_owned(),
            ns: el.ns(),
        });
    };
    let mut out = Services::default();
    for (index, child) in payload
        .children()
        .filter(|c| c.is(names::SERVICE, NS_EXTDISCO))
        .enumerate()
    {
        if index >= MAX_SERVICES {
            out.skipped.push(SkippedService {
                index,
                error: ServiceError::TooMany,
            });
            continue;
        }
        match parse_service(child) {
            Ok(s) => out.services.push(s),
            Err(error) => out.skipped.push(SkippedService { index, error }),
        }
    }
    Ok(out)
}

/// Interprets the server's answer to [`services_query`] or [`credentials_query`]: a result is
/// read with [`parse_services`]; an error `<service-unavailable/>` or
/// `<feature-not-implemented/>` means the server offers no external services (XEP-0215 §2),
/// which is **no services, not an error**: the agent then uses host candidates and any
/// manually configured servers. Other errors stay errors.
pub fn services_from_response(response: &Element) -> Result<Services, ExtdiscoError> {
    match parse_services(response) {
        Err(ExtdiscoError::IqError { condition }) if NOT_OFFERED.contains(&condition.as_str()) => {
            Ok(Services::default())
        }
        other => other,
    }
}

/// The iq result acknowledging a pushed `<services/>` iq set (XEP-0215 §3.2, RFC 6120 §8.2.3:
/// every set gets an answer), or `None` when `stanza` is not such a push.
pub fn push_ack(stanza: &Element) -> Option<Element> {
    if iq_type(stanza) != Some(IqType::Set)
        || !stanza
            .children()
            .any(|c| c.is(names::SERVICES, NS_EXTDISCO))
    {
        return None;
    }
    Some(iq_result(stanza))
}

fn invalid(name: &'static str, value: &str) -> ServiceError {
    ServiceError::InvalidAttribute {
        name,
        value: value.to_owned(),
    }
}

/// Reads one `<service/>` (XEP-0215 §2, §9).
fn parse_service(el: &Element) -> Result<ExternalService, ServiceError> {
    use names::*;
    let kind = match el.attr(TYPE) {
        Some(t) if !t.trim().is_empty() => ServiceType::parse(t.trim()),
        _ => return Err(ServiceError::MissingAttribute(TYPE)),
    };
    let host = match el.attr(HOST) {
        Some(h) if !h.trim().is_empty() => h.trim().to_owned(),
        _ => return Err(ServiceError::MissingAttribute(HOST)),
    };
    let port = match el.attr(PORT) {
        None => None,
        Some(p) => match p.trim().parse::<u16>() {
            Ok(n) if n != 0 => Some(n),
            _ => return Err(invalid(PORT, p)),
        },
    };
    let transport = el
        .attr(TRANSPORT)
        .map(|t| ServiceTransport::parse(t.trim()));
    let expires = match el.attr(EXPIRES) {
        None => None,
        Some(e) => Some(parse_datetime(e.trim()).ok_or_else(|| invalid(EXPIRES, e))?),
    };
    let restricted = match el.attr(RESTRICTED).map(str::trim) {
        None => false,
        // xs:boolean (XML Schema Part 2 §3.2.2).
        Some("1") | Some("true") => true,
        Some("0") | Some("false") => false,
        Some(other) => return Err(invalid(RESTRICTED, other)),
    };
    let action = match el.attr(ACTION).map(str::trim) {
        None => None,
        Some("add") => Some(ServiceAction::Add),
        Some("remove") | Some("delete") => Some(ServiceAction::Remove),
        Some("modify") => Some(ServiceAction::Modify),
        Some(other) => return Err(invalid(ACTION, other)),
    };
    Ok(ExternalService {
        kind,
        host,
        port,
        transport,
        username: el.attr(USERNAME).map(str::to_owned),
        password: el.attr(PASSWORD).map(str::to_owned),
        expires,
        restricted,
        name: el.attr(NAME).map(str::to_owned),
        action,
    })
}

/// When to fetch the services again: [`REFRESH_MARGIN`] before the earliest `expires`, or
/// halfway to it when less than twice the margin remains; `now` when one has already
/// expired; `None` when no service expires. Prosody's credentials (TURN REST API draft) live
/// `turn_external_ttl` seconds, 86400 by default. Note that a TURN allocation keeps the
/// username it was made with (RFC 8656 §7.2), so coturn refuses its refreshes once that
/// username has expired: the allocation must be replaced with the new credentials.
pub fn refresh_at(services: &[ExternalService], now: SystemTime) -> Option<SystemTime> {
    let earliest = services.iter().filter_map(|s| s.expires).min()?;
    let remaining = match earliest.duration_since(now) {
        Ok(d) => d,
        Err(_) => return Some(now),
    };
    let margin = REFRESH_MARGIN.min(remaining / 2);
    Some(earliest.checked_sub(margin).unwrap_or(now))
}

/// What the agent does with one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceServerRole {
    /// A STUN server for server-reflexive candidates (RFC 8445 §5.1.1.2), over UDP.
    Stun,
    /// A TURN server for relayed candidates (RFC 8445 §5.1.1.2, RFC 8656).
    Turn {
        /// UDP, TCP, or TLS (for `turns`).
        transport: TurnTransport,
        /// The service's username and password (long-term mechanism, RFC 8489 §9.2).
        credentials: TurnCredentials,
    },
}

/// A usable STUN or TURN server, still named by host: resolving it is I/O, left to
/// the tokio crate's `extdisco::resolve` or to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// The host as the service gave it (a name, or an IP address).
    pub host: String,
    /// The port (the service's, else the default of its type).
    pub port: u16,
    /// STUN or TURN.
    pub role: IceServerRole,
    /// When the credentials expire, if the service said.
    pub expires: Option<SystemTime>,
}

impl IceServer {
    /// The address, when `host` is an IP address and no resolution is needed.
    pub fn literal_address(&self) -> Option<SocketAddr> {
        host_ip(&self.host).map(|ip| SocketAddr::new(ip, self.port))
    }
}

/// Why a service is not used by the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not STUN or TURN (XEP-0215 lists any external service, e.g. `ftp`).
    OtherType,
    /// A `restricted` service whose credentials must first be fetched with
    /// [`credentials_query`] (XEP-0215 §3.3).
    NeedsCredentials,
    /// A TURN service without username and password, and not marked restricted.
    NoCredentials,
    /// A transport the agent does not use for that type: STUN is gathered over UDP only (an
    /// ICE-UDP agent has no use for a TCP server-reflexive address), `stuns` is not
    /// implemented, DTLS (`turns` over UDP) is not implemented, and unknown transports.
    Transport(ServiceTransport),
    /// No port given and no default for the type.
    NoPort,
}

/// The servers the agent can use, and the services it cannot, with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerPlan {
    /// Usable servers, in the order of the services.
    pub servers: Vec<IceServer>,
    /// Services not used, with their position in the input and the reason.
    pub unusable: Vec<(usize, Unusable)>,
}

impl ServerPlan {
    /// The servers whose host is an IP address, already resolved (no I/O), and the servers
    /// that still need a name lookup.
    pub fn split_literal(&self) -> (IceServers, Vec<&IceServer>) {
        let mut done = IceServers::default();
        let mut todo = Vec::new();
        for s in &self.servers {
            match s.literal_address() {
                Some(addr) => done.add(s, addr),
                None => todo.push(s),
            }
        }
        (done, todo)
    }
}

/// Maps services to what the agent uses (pure; no I/O):
/// - `stun` over UDP → [`IceServerRole::Stun`];
/// - `turn` over UDP → TURN over UDP, over TCP → TURN over TCP (RFC 8656 §3.1);
/// - `turns` over TCP → TURN over TLS, checked against `host` ([`TurnConfig::tls`]);
/// - anything else is listed in [`ServerPlan::unusable`].
///
/// Services carrying `action='remove'` (a push) are left out.
pub fn plan(services: &[ExternalService]) -> ServerPlan {
    let mut out = ServerPlan::default();
    for (index, s) in services.iter().enumerate() {
        if s.action == Some(ServiceAction::Remove) {
            continue;
        }
        match plan_one(s) {
            Ok(server) => out.servers.push(server),
            Err(why) => out.unusable.push((index, why)),
        }
    }
    out
}

fn plan_one(s: &ExternalService) -> Result<IceServer, Unusable> {
    let transport = s.transport_or_default();
    let role = match (&s.kind, &transport) {
        (ServiceType::Stun, ServiceTransport::Udp) => IceServerRole::Stun,
        (ServiceType::Turn, ServiceTransport::Udp)
        | (ServiceType::Turn, ServiceTransport::Tcp)
        | (ServiceType::Turns, ServiceTransport::Tcp) => {
            let credentials = match (&s.username, &s.password) {
                (Some(u), Some(p)) => TurnCredentials::long_term(u.clone(), p.clone()),
                _ if s.restricted => return Err(Unusable::NeedsCredentials),
                _ => return Err(Unusable::NoCredentials),
            };
            let transport = match (&s.kind, &transport) {
                (ServiceType::Turns, _) => TurnTransport::Tls,
                (_, ServiceTransport::Tcp) => TurnTransport::Tcp,
                _ => TurnTransport::Udp,
            };
            IceServerRole::Turn {
                transport,
                credentials,
            }
        }
        (ServiceType::Other(_), _) => return Err(Unusable::OtherType),
        _ => return Err(Unusable::Transport(transport)),
    };
    let port = s.port_or_default().ok_or(Unusable::NoPort)?;
    Ok(IceServer {
        host: s.host.clone(),
        port,
        role,
        expires: s.expires,
    })
}

/// STUN server addresses and TURN configurations, ready for the agent.
#[derive(Debug, Clone, Default)]
pub struct IceServers {
    /// STUN servers (RFC 8489 Binding over UDP), without duplicates.
    pub stun: Vec<SocketAddr>,
    /// One TURN client configuration per (server address, transport).
    pub turn: Vec<TurnConfig>,
}

impl IceServers {
    /// Adds `server` at the resolved `addr`. A STUN address already present is not added
    /// twice; nor is a TURN server with the same address and transport.
    pub fn add(&mut self, server: &IceServer, addr: SocketAddr) {
        match &server.role {
            IceServerRole::Stun => {
                if !self.stun.contains(&addr) {
                    self.stun.push(addr);
                }
            }
            IceServerRole::Turn {
                transport,
                credentials,
            } => {
                if self
                    .turn
                    .iter()
                    .any(|t| t.server == addr && t.transport == *transport)
                {
                    return;
                }
                let config = match transport {
                    TurnTransport::Tls => {
                        let name = host_ip(&server.host)
                            .map(|ip| ip.to_string())
                            .unwrap_or_else(|| server.host.clone());
                        TurnConfig::tls(addr, name, credentials.clone())
                    }
                    t => TurnConfig::new(addr, *t, credentials.clone()),
                };
                self.turn.push(config);
            }
        }
    }
}

// --- XEP-0082 DateTime (RFC 3339 profile) -------------------------------------------------

const SECS_PER_DAY: i64 = 86_400;

/// Days from 1970-01-01 to the given proleptic Gregorian date (civil-from-days inverse,
/// counting in 400-year eras of 146097 days).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number counted from 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=12, 1..=31).
    (year, month as u32, day as u32)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Reads exactly `n` ASCII digits at the start of `s`.
fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, s.get(n..)?))
}

fn expect(s: &str, c: char) -> Option<&str> {
    s.strip_prefix(c)
}

/// Parses an XEP-0082 §3.2 DateTime, `CCYY-MM-DDThh:mm:ss[.sss]TZD` with `TZD` = `Z` or
/// `±hh:mm` (RFC 3339 §5.6; `t`/`z` in lower case accepted as RFC 3339 allows), into a
/// `SystemTime`. A leap second (`:60`) counts as the first second of the next minute.
/// `None` for anything else.
pub fn parse_datetime(s: &str) -> Option<SystemTime> {
    let (year, s) = digits(s, 4)?;
    let s = expect(s, '-')?;
    let (month, s) = digits(s, 2)?;
    let s = expect(s, '-')?;
    let (day, s) = digits(s, 2)?;
    let s = s.strip_prefix('T').or_else(|| s.strip_prefix('t'))?;
    let (hour, s) = digits(s, 2)?;
    let s = expect(s, ':')?;
    let (minute, s) = digits(s, 2)?;
    let s = expect(s, ':')?;
    let (second, mut s) = digits(s, 2)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut nanos: u32 = 0;
    if let Some(frac) = s.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let (frac_digits, rest) = frac.split_at(len);
        // Keep nanosecond precision; further digits are read and dropped.
        for (i, b) in frac_digits.bytes().take(9).enumerate() {
            nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
        s = rest;
    }
    let offset_secs: i64 = match s {
        "Z" | "z" => 0,
        _ => {
            let (sign, rest) = match s.get(..1)? {
                "+" => (1, s.get(1..)?),
                "-" => (-1, s.get(1..)?),
                _ => return None,
            };
            let (oh, rest) = digits(rest, 2)?;
            let rest = expect(rest, ':')?;
            let (om, rest) = digits(rest, 2)?;
            if !rest.is_empty() || oh > 23 || om > 59 {
                return None;
            }
            sign * (i64::from(oh) * 3600 + i64::from(om) * 60)
        }
    };
    let secs = days_from_civil(year, month, day) * SECS_PER_DAY
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset_secs;
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    time.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Writes `t` as an XEP-0082 DateTime in UTC, `CCYY-MM-DDThh:mm:ssZ` (whole seconds, as
/// Prosody writes it).
pub fn format_datetime(t: SystemTime) -> String {
    let secs: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            // Before 1970: round down to the whole second.
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(SECS_PER_DAY);
    let rem = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn datetime_known_values() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        // XEP-0082 §3.2 example.
        assert_eq!(
            parse_datetime("1969-07-21T02:56:15Z"),
            Some(UNIX_EPOCH - Duration::from_secs(14_159_025))
        );
        assert_eq!(
            parse_datetime("1969-07-20T21:56:15-05:00"),
            parse_datetime("1969-07-21T02:56:15Z")
        );
        assert_eq!(
            parse_datetime("2024-02-29T12:00:00Z"),
            Some(at(1_709_208_000))
        );
        assert_eq!(
            parse_datetime("2024-02-29T12:00:00.25+01:30"),
            Some(at(1_709_208_000 - 5400) + Duration::from_millis(250))
        );
        assert_eq!(
            parse_datetime("2016-12-31T23:59:60Z"),
            Some(at(1_483_228_800))
        );
    }

    #[test]
    fn datetime_rejects_garbage() {
        for bad in [
            "",
            "tomorrow",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00Zjunk",
            "１２３４-01-01T00:00:00Z",
            "+2024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn datetime_round_trips_whole_seconds() {
        for secs in [
            0u64,
            951_782_400,
            1_709_208_000,
            4_102_444_800,
            253_402_300_799,
        ] {
            let t = at(secs);
            assert_eq!(parse_datetime(&format_datetime(t)), Some(t), "{secs}");
        }
        assert_eq!(format_datetime(at(1_709_208_000)), "2024-02-29T12:00:00Z");
        assert_eq!(
            format_datetime(UNIX_EPOCH - Duration::from_secs(14_159_025)),
            "1969-07-21T02:56:15Z"
        );
    }

    #[test]
    fn refresh_margin_is_bounded_by_half_the_remaining_time() {
        let now = at(1_000_000);
        let mut s = ExternalService::new(ServiceType::Turn, "turn.example");
        assert_eq!(refresh_at(std::slice::from_ref(&s), now), None);
        s.expires = Some(now + Duration::from_secs(86_400));
        assert_eq!(
            refresh_at(std::slice::from_ref(&s), now),
            Some(now + Duration::from_secs(86_400 - 300))
        );
        s.expires = Some(now + Duration::from_secs(100));
        assert_eq!(
            refresh_at(std::slice::from_ref(&s), now),
            Some(now + Duration::from_secs(50))
        );
        s.expires = Some(now - Duration::from_secs(1));
        assert_eq!(refresh_at(std::slice::from_ref(&s), now), Some(now));
    }

    #[test]
    fn password_is_not_in_debug() {
        let mut s = ExternalService::new(ServiceType::Turn, "turn.example");
        s.password = Some("s3cr3t".into());
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }

    #[test]
    fn bracketed_ipv6_host_is_literal() {
        let s = ExternalService::new(ServiceType::Stun, "[2001:db8::1]");
        assert_eq!(s.host_ip(), Some("2001:db8::1".parse().unwrap()));
        let p = plan(&[s]);
        assert_eq!(
            p.servers[0].literal_address(),
            Some("[2001:db8::1]:3478".parse().unwrap())
        );
    }
}
