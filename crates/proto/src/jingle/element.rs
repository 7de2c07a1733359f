//! The `<jingle xmlns='urn:xmpp:jingle:1'/>` element of XEP-0166 §7: its action, `<content/>`
//! children and `<reason/>`, read and written with minidom.
//!
//! The envelope is read here rather than with xmpp-parsers because xmpp-parsers parses the
//! whole element at once, transports included, and rejects all of it when one ICE-UDP candidate
//! is outside what it models (an mDNS host name, a TCP candidate): the session layer must be
//! able to tell "this content's transport is bad" (answer `<bad-request/>`, keep the session)
//! from "this is not a Jingle request", and must keep the unknown parts other clients send.

use minidom::Element;

use super::transports::ice_udp::{IceUdpTransport, TransportError, TransportLimits, NS_ICE_UDP};
use super::transports::webrtc_datachannel::{
    DataChannelError, DataChannelTransport, NS_WEBRTC_DATACHANNEL,
};
use super::transports::TransportRegistry;
use crate::xmpp::stanza::{set_attr, LimitExceeded, StanzaLimits};

/// Namespace of Jingle (XEP-0166 §7.1).
pub const NS_JINGLE: &str = "urn:xmpp:jingle:1";

/// Longest `sid` we accept from a peer (XEP-0166 §7.1 sets no bound; ours keeps state small).
pub const SID_MAX_LEN: usize = 128;
/// Longest content `name` we accept from a peer.
pub const CONTENT_NAME_MAX_LEN: usize = 128;
/// Most `<content/>` children we read from one `<jingle/>` element.
pub const MAX_CONTENTS: usize = 8;
/// Namespace of Jingle Encrypted Transports (XEP-0391 §5): a content's `<security/>` that
/// says its data is end-to-end encrypted with a key carried in the element (an OMEMO envelope,
/// for example).
pub const NS_JET: &str = "urn:xmpp:jingle:jet:0";
/// Longest `<text/>` we keep from a peer's `<reason/>`.
pub const REASON_TEXT_MAX_LEN: usize = 1024;

/// The `action` attribute of XEP-0166 §7.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `content-accept` (§7.2.1).
    ContentAccept,
    /// `content-add` (§7.2.2).
    ContentAdd,
    /// `content-modify` (§7.2.3).
    ContentModify,
    /// `content-reject` (§7.2.4).
    ContentReject,
    /// `content-remove` (§7.2.5).
    ContentRemove,
    /// `description-info` (§7.2.6).
    DescriptionInfo,
    /// `security-info` (§7.2.7).
    SecurityInfo,
    /// `session-accept` (§7.2.8).
    SessionAccept,
    /// `session-info` (§7.2.9).
    SessionInfo,
    /// `session-initiate` (§7.2.10).
    SessionInitiate,
    /// `session-terminate` (§7.2.11).
    SessionTerminate,
    /// `transport-accept` (§7.2.12).
    TransportAccept,
    /// `transport-info` (§7.2.13).
    TransportInfo,
    /// `transport-reject` (§7.2.14).
    TransportReject,
    /// `transport-replace` (§7.2.15).
    TransportReplace,
}

impl Action {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ContentAccept => "content-accept",
            Action::ContentAdd => "content-add",
            Action::ContentModify => "content-modify",
            Action::ContentReject => "content-reject",
            Action::ContentRemove => "content-remove",
            Action::DescriptionInfo => "description-info",
            Action::SecurityInfo => "security-info",
            Action::SessionAccept => "session-accept",
            Action::SessionInfo => "session-info",
            Action::SessionInitiate => "session-initiate",
            Action::SessionTerminate => "session-terminate",
            Action::TransportAccept => "transport-accept",
            Action::TransportInfo => "transport-info",
            Action::TransportReject => "transport-reject",
            Action::TransportReplace => "transport-replace",
        }
    }

    /// Reads the attribute value; `None` for a value §7.2 does not define.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "content-accept" => Action::ContentAccept,
            "content-add" => Action::ContentAdd,
            "content-modify" => Action::ContentModify,
            "content-reject" => Action::ContentReject,
            "content-remove" => Action::ContentRemove,
            "description-info" => Action::DescriptionInfo,
            "security-info" => Action::SecurityInfo,
            "session-accept" => Action::SessionAccept,
            "session-info" => Action::SessionInfo,
            "session-initiate" => Action::SessionInitiate,
            "session-terminate" => Action::SessionTerminate,
            "transport-accept" => Action::TransportAccept,
            "transport-info" => Action::TransportInfo,
            "transport-reject" => Action::TransportReject,
            "transport-replace" => Action::TransportReplace,
            _ => return None,
        })
    }
}

/// Which party created a content (XEP-0166 §7.3 `creator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Creator {
    /// The session's initiator (the default).
    Initiator,
    /// The session's responder.
    Responder,
}

impl Creator {
    fn as_str(self) -> &'static str {
        match self {
            Creator::Initiator => "initiator",
            Creator::Responder => "responder",
        }
    }
}

/// Which parties send application data for a content (XEP-0166 §7.3 `senders`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Senders {
    /// Both parties (the default).
    #[default]
    Both,
    /// Only the initiator.
    Initiator,
    /// Only the responder.
    Responder,
    /// Neither (the content is on hold).
    None,
}

impl Senders {
    fn as_str(self) -> &'static str {
        match self {
            Senders::Both => "both",
            Senders::Initiator => "initiator",
            Senders::Responder => "responder",
            Senders::None => "none",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "both" => Some(Senders::Both),
            "initiator" => Some(Senders::Initiator),
            "responder" => Some(Senders::Responder),
            "none" => Some(Senders::None),
            _ => None,
        }
    }
}

/// The transport of a content.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// XEP-0176 ICE-UDP, read into our mapping.
    IceUdp(IceUdpTransport),
    /// Conversations' `webrtc-datachannel:1` transport wrapping an ICE-UDP one (see
    /// [`super::transports::webrtc_datachannel`]).
    DataChannel(DataChannelTransport),
    /// XEP-0261 In-Band Bytestreams, the fallback through the XMPP server.
    Ibb(crate::jingle::transports::ibb::IbbTransport),
    /// Any other transport method, kept as received (its namespace says which).
    Other(Element),
}

impl Transport {
    /// The transport's namespace.
    pub fn ns(&self) -> String {
        match self {
            Transport::IceUdp(_) => NS_ICE_UDP.to_owned(),
            Transport::DataChannel(_) => NS_WEBRTC_DATACHANNEL.to_owned(),
            Transport::Ibb(_) => crate::jingle::transports::ibb::NS_JINGLE_IBB.to_owned(),
            Transport::Other(el) => el.ns(),
        }
    }

    /// The ICE-UDP part: the transport itself for ICE-UDP, the inner one for a data channel.
    /// Credentials, candidates and the fingerprint are read through it for both kinds.
    pub fn ice_udp(&self) -> Option<&IceUdpTransport> {
        match self {
            Transport::IceUdp(t) => Some(t),
            Transport::DataChannel(t) => Some(&t.ice),
            Transport::Ibb(_) | Transport::Other(_) => None,
        }
    }

    /// The ICE-UDP part, mutable (see [`Transport::ice_udp`]).
    pub fn ice_udp_mut(&mut self) -> Option<&mut IceUdpTransport> {
        match self {
            Transport::IceUdp(t) => Some(t),
            Transport::DataChannel(t) => Some(&mut t.ice),
            Transport::Ibb(_) | Transport::Other(_) => None,
        }
    }

    /// The In-Band Bytestreams transport, if this is one.
    pub fn ibb(&self) -> Option<&crate::jingle::transports::ibb::IbbTransport> {
        match self {
            Transport::Ibb(t) => Some(t),
            _ => None,
        }
    }

    /// The data-channel transport, if this is one.
    pub fn data_channel(&self) -> Option<&DataChannelTransport> {
        match self {
            Transport::DataChannel(t) => Some(t),
            _ => None,
        }
    }

    /// Renders the element.
    pub fn to_element(&self) -> Element {
        match self {
            Transport::IceUdp(t) => t.to_element(),
            Transport::DataChannel(t) => t.to_element(),
            Transport::Ibb(t) => t.to_element(),
            Transport::Other(el) => el.clone(),
        }
    }

    /// Reads a `<transport/>` with the built-in methods ([`TransportRegistry::builtin`]):
    /// ICE-UDP, data-channel and IBB transports into their types (with `limits`), any other
    /// namespace kept as an element. [`TransportRegistry::parse`] reads with another registry.
    pub fn from_element(el: &Element, limits: TransportLimits) -> Result<Self, JingleError> {
        TransportRegistry::builtin().parse(el, limits)
    }
}

/// A `<content/>` element (XEP-0166 §7.3): one application description with its transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    /// Which party created it.
    pub creator: Creator,
    /// Its name, unique per creator within a session.
    pub name: String,
    /// Who sends data.
    pub senders: Senders,
    /// The `disposition` attribute, when present (the default is `session`).
    pub disposition: Option<String>,
    /// The application's `<description/>`, opaque to the session layer.
    pub description: Option<Element>,
    /// The transport, when present.
    pub transport: Option<Transport>,
    /// A `<security/>` child (XEP-0391 JET, in [`NS_JET`], or another security method), kept
    /// as received: the content's data is encrypted with what it describes, so an application
    /// that cannot apply it must not take the content.
    pub security: Option<Element>,
}

impl Content {
    /// A content created by the initiator, sent by both, with a description and a transport.
    pub fn new(name: impl Into<String>, description: Element, transport: Transport) -> Self {
        Content {
            creator: Creator::Initiator,
            name: name.into(),
            senders: Senders::Both,
            disposition: None,
            description: Some(description),
            transport: Some(transport),
            security: None,
        }
    }

    /// The ICE-UDP part of the content's transport (inner one for a data channel), if any.
    pub fn ice_udp(&self) -> Option<&IceUdpTransport> {
        self.transport.as_ref().and_then(Transport::ice_udp)
    }

    /// The ICE credentials its ICE-UDP transport carries, when it carries both.
    pub fn ice_credentials(&self) -> Option<crate::ice::Credentials> {
        self.ice_udp().and_then(IceUdpTransport::credentials)
    }

    /// How many usable candidates its ICE-UDP transport carries (0 without one).
    pub fn candidate_count(&self) -> usize {
        self.ice_udp().map_or(0, |t| t.candidates.len())
    }

    /// The namespace of the description, if any.
    pub fn description_ns(&self) -> Option<String> {
        self.description.as_ref().map(|d| d.ns())
    }

    /// Renders the element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare("content", NS_JINGLE);
        set_attr(&mut el, "creator", self.creator.as_str());
        set_attr(&mut el, "name", self.name.as_str());
        if self.senders != Senders::Both {
            set_attr(&mut el, "senders", self.senders.as_str());
        }
        if let Some(d) = &self.disposition {
            set_attr(&mut el, "disposition", d.as_str());
        }
        if let Some(d) = &self.description {
            el.append_child(d.clone());
        }
        if let Some(t) = &self.transport {
            el.append_child(t.to_element());
        }
        if let Some(s) = &self.security {
            el.append_child(s.clone());
        }
        el
    }

    /// Reads a `<content/>` element with the built-in transport methods
    /// ([`Content::from_element_with`] and [`TransportRegistry::builtin`]).
    pub fn from_element(el: &Element, limits: TransportLimits) -> Result<Self, JingleError> {
        Content::from_element_with(el, limits, TransportRegistry::builtin())
    }

    /// Reads a `<content/>` element; its transport is read by the method `transports` has for
    /// its namespace (with `limits`), or kept as an element when it has none.
    pub fn from_element_with(
        el: &Element,
        limits: TransportLimits,
        transports: &TransportRegistry,
    ) -> Result<Self, JingleError> {
        StanzaLimits::DEFAULT
            .check(el)
            .map_err(JingleError::Limits)?;
        let creator = match el.attr("creator") {
            None | Some("initiator") => Creator::Initiator,
            Some("responder") => Creator::Responder,
            Some(other) => return Err(JingleError::Invalid("creator", other.to_owned())),
        };
        let name = el
            .attr("name")
            .ok_or(JingleError::Missing("content name"))?;
        if name.is_empty() || name.len() > CONTENT_NAME_MAX_LEN {
            return Err(JingleError::Invalid("content name", truncate(name)));
        }
        let senders = match el.attr("senders") {
            None => Senders::Both,
            Some(s) => Senders::parse(s).ok_or(JingleError::Invalid("senders", truncate(s)))?,
        };
        let mut description = None;
        let mut transport = None;
        let mut security = None;
        for child in el.children() {
            match child.name() {
                "description" if description.is_none() => description = Some(child.clone()),
                "security" if security.is_none() => security = Some(child.clone()),
                "transport" if transport.is_none() => {
                    transport = Some(transports.parse(child, limits)?);
                }
                _ => {}
            }
        }
        Ok(Content {
            creator,
            name: name.to_owned(),
            senders,
            disposition: el.attr("disposition").map(str::to_owned),
            description,
            transport,
            security,
        })
    }
}

/// The conditions of a `<reason/>` (XEP-0166 §7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasonCondition {
    /// `<alternative-session/>` with the sid of the session to use instead.
    AlternativeSession(String),
    /// `<busy/>`.
    Busy,
    /// `<cancel/>`.
    Cancel,
    /// `<connectivity-error/>`.
    ConnectivityError,
    /// `<decline/>`.
    Decline,
    /// `<expired/>`.
    Expired,
    /// `<failed-application/>`.
    FailedApplication,
    /// `<failed-transport/>`.
    FailedTransport,
    /// `<general-error/>`.
    GeneralError,
    /// `<gone/>`: the party is going offline or no longer available.
    Gone,
    /// `<incompatible-parameters/>`.
    IncompatibleParameters,
    /// `<media-error/>`.
    MediaError,
    /// `<security-error/>`.
    SecurityError,
    /// `<success/>`.
    Success,
    /// `<timeout/>`.
    Timeout,
    /// `<unsupported-applications/>`.
    UnsupportedApplications,
    /// `<unsupported-transports/>`.
    UnsupportedTransports,
}

impl ReasonCondition {
    /// The element name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReasonCondition::AlternativeSession(_) => "alternative-session",
            ReasonCondition::Busy => "busy",
            ReasonCondition::Cancel => "cancel",
            ReasonCondition::ConnectivityError => "connectivity-error",
            ReasonCondition::Decline => "decline",
            ReasonCondition::Expired => "expired",
            ReasonCondition::FailedApplication => "failed-application",
            ReasonCondition::FailedTransport => "failed-transport",
            ReasonCondition::GeneralError => "general-error",
            ReasonCondition::Gone => "gone",
            ReasonCondition::IncompatibleParameters => "incompatible-parameters",
            ReasonCondition::MediaError => "media-error",
            ReasonCondition::SecurityError => "security-error",
            ReasonCondition::Success => "success",
            ReasonCondition::Timeout => "timeout",
            ReasonCondition::UnsupportedApplications => "unsupported-applications",
            ReasonCondition::UnsupportedTransports => "unsupported-transports",
        }
    }

    fn parse(el: &Element) -> Option<Self> {
        Some(match el.name() {
            "alternative-session" => ReasonCondition::AlternativeSession(
                el.get_child("sid", NS_JINGLE)
                    .map(|s| truncate(&s.text()))
                    .unwrap_or_default(),
            ),
            "busy" => ReasonCondition::Busy,
            "cancel" => ReasonCondition::Cancel,
            "connectivity-error" => ReasonCondition::ConnectivityError,
            "decline" => ReasonCondition::Decline,
            "expired" => ReasonCondition::Expired,
            "failed-application" => ReasonCondition::FailedApplication,
            "failed-transport" => ReasonCondition::FailedTransport,
            "general-error" => ReasonCondition::GeneralError,
            "gone" => ReasonCondition::Gone,
            "incompatible-parameters" => ReasonCondition::IncompatibleParameters,
            "media-error" => ReasonCondition::MediaError,
            "security-error" => ReasonCondition::SecurityError,
            "success" => ReasonCondition::Success,
            "timeout" => ReasonCondition::Timeout,
            "unsupported-applications" => ReasonCondition::UnsupportedApplications,
            "unsupported-transports" => ReasonCondition::UnsupportedTransports,
            _ => return None,
        })
    }
}

/// A `<reason/>` element (XEP-0166 §7.4): a condition and an optional human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The machine-readable condition.
    pub condition: ReasonCondition,
    /// The `<text/>`, if any.
    pub text: Option<String>,
}

impl Reason {
    /// A reason without text.
    pub fn new(condition: ReasonCondition) -> Self {
        Reason {
            condition,
            text: None,
        }
    }

    /// A reason with a text.
    pub fn with_text(condition: ReasonCondition, text: impl Into<String>) -> Self {
        Reason {
            condition,
            text: Some(text.into()),
        }
    }

    /// Renders the element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare("reason", NS_JINGLE);
        let mut cond = Element::bare(self.condition.as_str(), NS_JINGLE);
        if let ReasonCondition::AlternativeSession(sid) = &self.condition {
            let mut s = Element::bare("sid", NS_JINGLE);
            s.append_text_node(sid.as_str());
            cond.append_child(s);
        }
        el.append_child(cond);
        if let Some(t) = &self.text {
            let mut text = Element::bare("text", NS_JINGLE);
            text.append_text_node(t.as_str());
            el.append_child(text);
        }
        el
    }

    /// Reads a `<reason/>`; a reason without a known condition reads as `general-error`.
    pub fn from_element(el: &Element) -> Self {
        let mut condition = None;
        let mut text = None;
        for child in el.children().filter(|c| c.ns() == NS_JINGLE) {
            if child.name() == "text" {
                text = Some(truncate(&child.text()));
            } else if condition.is_none() {
                condition = ReasonCondition::parse(child);
            }
        }
        Reason {
            condition: condition.unwrap_or(ReasonCondition::GeneralError),
            text,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.as_str())?;
        if let Some(t) = &self.text {
            write!(f, " ({t})")?;
        }
        Ok(())
    }
}

/// Why a `<jingle/>` element or one of its parts cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JingleError {
    /// A required attribute or element is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// An attribute has a value XEP-0166 does not allow.
    #[error("invalid {0} {1:?}")]
    Invalid(&'static str, String),
    /// More `<content/>` children than [`MAX_CONTENTS`].
    #[error("more than {MAX_CONTENTS} contents")]
    TooManyContents,
    /// An ICE-UDP transport is invalid.
    #[error("invalid ICE-UDP transport: {0}")]
    Transport(TransportError),
    /// A webrtc-datachannel transport is invalid.
    #[error("invalid webrtc-datachannel transport: {0}")]
    DataChannel(DataChannelError),
    /// An In-Band Bytestreams transport is invalid.
    #[error("invalid IBB transport: {0}")]
    Ibb(crate::jingle::transports::ibb::IbbElementError),
    /// The element breaks [`StanzaLimits::DEFAULT`] (too deep or too large to read safely).
    #[error("{0}")]
    Limits(LimitExceeded),
}

/// A parsed `<jingle/>` element.
#[derive(Debug, Clone, PartialEq)]
pub struct Jingle {
    /// The action.
    pub action: Action,
    /// The session id.
    pub sid: String,
    /// The `initiator` attribute, when present.
    pub initiator: Option<String>,
    /// The `responder` attribute, when present.
    pub responder: Option<String>,
    /// The contents.
    pub contents: Vec<Content>,
    /// The reason, when present.
    pub reason: Option<Reason>,
    /// Children that are neither content nor reason (session-info payloads, for example).
    pub payloads: Vec<Element>,
}

impl Jingle {
    /// An element with only an action and a sid.
    pub fn new(action: Action, sid: impl Into<String>) -> Self {
        Jingle {
            action,
            sid: sid.into(),
            initiator: None,
            responder: None,
            contents: Vec::new(),
            reason: None,
            payloads: Vec::new(),
        }
    }

    /// Renders the element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare("jingle", NS_JINGLE);
        set_attr(&mut el, "action", self.action.as_str());
        if let Some(i) = &self.initiator {
            set_attr(&mut el, "initiator", i.as_str());
        }
        if let Some(r) = &self.responder {
            set_attr(&mut el, "responder", r.as_str());
        }
        set_attr(&mut el, "sid", self.sid.as_str());
        for c in &self.contents {
            el.append_child(c.to_element());
        }
        if let Some(r) = &self.reason {
            el.append_child(r.to_element());
        }
        for p in &self.payloads {
            el.append_child(p.clone());
        }
        el
    }

    /// Reads the action and sid only, so that errors about the session can be reported even
    /// when its contents are bad.
    pub fn read_header(el: &Element) -> Result<(Action, String), JingleError> {
        let action = el.attr("action").ok_or(JingleError::Missing("action"))?;
        let action = Action::parse(action)
            .ok_or_else(|| JingleError::Invalid("action", truncate(action)))?;
        let sid = el.attr("sid").ok_or(JingleError::Missing("sid"))?;
        if sid.is_empty() || sid.len() > SID_MAX_LEN {
            return Err(JingleError::Invalid("sid", truncate(sid)));
        }
        Ok((action, sid.to_owned()))
    }

    /// Reads a `<jingle xmlns='urn:xmpp:jingle:1'/>` element with the built-in transport
    /// methods ([`Jingle::from_element_with`] and [`TransportRegistry::builtin`]).
    pub fn from_element(el: &Element, limits: TransportLimits) -> Result<Self, JingleError> {
        Jingle::from_element_with(el, limits, TransportRegistry::builtin())
    }

    /// Reads a `<jingle xmlns='urn:xmpp:jingle:1'/>` element, its transports through the
    /// methods of `transports` ([`TransportRegistry::parse`]). An element beyond
    /// [`StanzaLimits::DEFAULT`] is refused before any part of it is walked or copied.
    pub fn from_element_with(
        el: &Element,
        limits: TransportLimits,
        transports: &TransportRegistry,
    ) -> Result<Self, JingleError> {
        if !el.is("jingle", NS_JINGLE) {
            return Err(JingleError::Missing("jingle element"));
        }
        StanzaLimits::DEFAULT
            .check(el)
            .map_err(JingleError::Limits)?;
        let (action, sid) = Jingle::read_header(el)?;
        let count = el.children().filter(|c| c.is("content", NS_JINGLE)).count();
        if count > MAX_CONTENTS {
            return Err(JingleError::TooManyContents);
        }
        let mut out = Jingle::new(action, sid);
        out.initiator = el.attr("initiator").map(str::to_owned);
        out.responder = el.attr("responder").map(str::to_owned);
        for child in el.children() {
            if child.is("content", NS_JINGLE) {
                out.contents
                    .push(Content::from_element_with(child, limits, transports)?);
            } else if child.is("reason", NS_JINGLE) {
                out.reason = Some(Reason::from_element(child));
            } else {
                out.payloads.push(child.clone());
            }
        }
        Ok(out)
    }
}

/// A value cut to a bounded length, for error messages and kept texts.
fn truncate(s: &str) -> String {
    let mut end = s.len().min(REASON_TEXT_MAX_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
