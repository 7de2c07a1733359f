//! The one module of XMPP stanza helpers, read and written with minidom: `<iq/>` requests,
//! results and errors (RFC 6120 §8.2.3, §8.3), the stanza error conditions we answer with, the
//! Jingle-specific error conditions of XEP-0166 §10 (`urn:xmpp:jingle:errors:1`), and the
//! bounds every element from the network is checked against before it is walked.

use minidom::rxml::{Namespace, NcName};
use minidom::{Element, IntoAttributeValue};

/// The client stream namespace stanzas are qualified by (RFC 6120 §4.8.3).
pub const NS_CLIENT: &str = "jabber:client";
/// Namespace of stanza error conditions (RFC 6120 §8.3.3).
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Namespace of the Jingle-specific error conditions (XEP-0166 §10).
pub const NS_JINGLE_ERRORS: &str = "urn:xmpp:jingle:errors:1";

/// Sets an attribute whose name is a compile-time constant (minidom's `xml_ncname!` macro
/// expands to `unsafe`, which this crate forbids).
pub fn set_attr(el: &mut Element, name: &'static str, value: impl IntoAttributeValue) {
    if let Ok(n) = NcName::try_from(name) {
        el.set_attr(Namespace::NONE, n, value);
    } else {
        debug_assert!(false, "attribute name {name:?} is not an NCName");
    }
}

/// The `type` of an `<iq/>` (RFC 6120 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    /// A request for information.
    Get,
    /// A request that changes state.
    Set,
    /// A successful answer.
    Result,
    /// A failed answer.
    Error,
}

impl IqType {
    /// Reads the attribute value; anything else is not a valid iq.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "get" => Some(IqType::Get),
            "set" => Some(IqType::Set),
            "result" => Some(IqType::Result),
            "error" => Some(IqType::Error),
            _ => None,
        }
    }

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            IqType::Get => "get",
            IqType::Set => "set",
            IqType::Result => "result",
            IqType::Error => "error",
        }
    }
}

/// Whether `el` is an `<iq/>` stanza of the client namespace.
pub fn is_iq(el: &Element) -> bool {
    el.is("iq", NS_CLIENT)
}

/// The `type` of an iq stanza, if it is one with a valid type.
pub fn iq_type(el: &Element) -> Option<IqType> {
    if is_iq(el) {
        el.attr("type").and_then(IqType::parse)
    } else {
        None
    }
}

/// A new `<iq/>` with `type`, `id` and `to` set, and `payload` as its only child. An empty
/// `to` is left out: the stanza then goes to our own account (RFC 6120 §10.3), as an answer to
/// a request that came without `from` must.
pub fn iq(kind: IqType, id: &str, to: &str, payload: Option<Element>) -> Element {
    let mut el = Element::bare("iq", NS_CLIENT);
    set_attr(&mut el, "type", kind.as_str());
    set_attr(&mut el, "id", id);
    if !to.is_empty() {
        set_attr(&mut el, "to", to);
    }
    if let Some(p) = payload {
        el.append_child(p);
    }
    el
}

/// The empty result answering `request` (RFC 6120 §8.2.3): same `id`, addressed to its sender.
pub fn iq_result(request: &Element) -> Element {
    iq(
        IqType::Result,
        request.attr("id").unwrap_or_default(),
        request.attr("from").unwrap_or_default(),
        None,
    )
}

/// The error type of RFC 6120 §8.3.2: what the requester may do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Retry after correcting the request.
    Modify,
    /// Do not retry.
    Cancel,
    /// Retry after waiting.
    Wait,
    /// Retry after providing credentials.
    Auth,
    /// Warning only.
    Continue,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::Modify => "modify",
            ErrorType::Cancel => "cancel",
            ErrorType::Wait => "wait",
            ErrorType::Auth => "auth",
            ErrorType::Continue => "continue",
        }
    }
}

/// The stanza error conditions Jingle answers with (RFC 6120 §8.3.3), each with the error type
/// that section gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `<bad-request/>` (§8.3.3.1), type modify.
    BadRequest,
    /// `<conflict/>` (§8.3.3.2), type cancel.
    Conflict,
    /// `<feature-not-implemented/>` (§8.3.3.3), type cancel.
    FeatureNotImplemented,
    /// `<item-not-found/>` (§8.3.3.7), type cancel.
    ItemNotFound,
    /// `<not-acceptable/>` (§8.3.3.9), type modify.
    NotAcceptable,
    /// `<policy-violation/>` (§8.3.3.12), type modify: the stanza breaks a local policy, such
    /// as the bounds of [`StanzaLimits`].
    PolicyViolation,
    /// `<resource-constraint/>` (§8.3.3.18), type wait.
    ResourceConstraint,
    /// `<service-unavailable/>` (§8.3.3.19), type cancel.
    ServiceUnavailable,
    /// `<unexpected-request/>` (§8.3.3.22), type wait.
    UnexpectedRequest,
    /// `<not-authorized/>` (§8.3.3.11), type auth.
    NotAuthorized,
    /// `<remote-server-not-found/>` (§8.3.3.16): the server could not reach the recipient's.
    RemoteServerNotFound,
    /// `<recipient-unavailable/>` (§8.3.3.13): the recipient is offline.
    RecipientUnavailable,
    /// Any other condition, by element name.
    Other,
}

impl Condition {
    /// The element name.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::Conflict => "conflict",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::ItemNotFound => "item-not-found",
            Condition::NotAcceptable => "not-acceptable",
            Condition::PolicyViolation => "policy-violation",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::UnexpectedRequest => "unexpected-request",
            Condition::NotAuthorized => "not-authorized",
            Condition::RemoteServerNotFound => "remote-server-not-found",
            Condition::RecipientUnavailable => "recipient-unavailable",
            Condition::Other => "undefined-condition",
        }
    }

    fn parse(s: &str) -> Condition {
        match s {
            "bad-request" => Condition::BadRequest,
            "conflict" => Condition::Conflict,
            "feature-not-implemented" => Condition::FeatureNotImplemented,
            "item-not-found" => Condition::ItemNotFound,
            "not-acceptable" => Condition::NotAcceptable,
            "policy-violation" => Condition::PolicyViolation,
            "resource-constraint" => Condition::ResourceConstraint,
            "service-unavailable" => Condition::ServiceUnavailable,
            "unexpected-request" => Condition::UnexpectedRequest,
            "not-authorized" => Condition::NotAuthorized,
            "remote-server-not-found" => Condition::RemoteServerNotFound,
            "recipient-unavailable" => Condition::RecipientUnavailable,
            _ => Condition::Other,
        }
    }

    /// The error type RFC 6120 §8.3.3 associates with the condition.
    pub fn error_type(self) -> ErrorType {
        match self {
            Condition::BadRequest | Condition::NotAcceptable | Condition::PolicyViolation => {
                ErrorType::Modify
            }
            Condition::ResourceConstraint
            | Condition::UnexpectedRequest
            | Condition::RecipientUnavailable
            | Condition::RemoteServerNotFound => ErrorType::Wait,
            Condition::NotAuthorized => ErrorType::Auth,
            _ => ErrorType::Cancel,
        }
    }
}

/// The Jingle-specific error conditions of XEP-0166 §10, sent next to a stanza condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JingleCondition {
    /// `<out-of-order/>` with `<unexpected-request/>`: not possible in the current state.
    OutOfOrder,
    /// `<tie-break/>` with `<conflict/>`: lost a simultaneous request (XEP-0166 §7.2.16).
    TieBreak,
    /// `<unknown-session/>` with `<item-not-found/>`: the sid is not a live session.
    UnknownSession,
    /// `<unsupported-info/>` with `<feature-not-implemented/>`: session-info payload unknown.
    UnsupportedInfo,
}

impl JingleCondition {
    /// The element name.
    pub fn as_str(self) -> &'static str {
        match self {
            JingleCondition::OutOfOrder => "out-of-order",
            JingleCondition::TieBreak => "tie-break",
            JingleCondition::UnknownSession => "unknown-session",
            JingleCondition::UnsupportedInfo => "unsupported-info",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "out-of-order" => Some(JingleCondition::OutOfOrder),
            "tie-break" => Some(JingleCondition::TieBreak),
            "unknown-session" => Some(JingleCondition::UnknownSession),
            "unsupported-info" => Some(JingleCondition::UnsupportedInfo),
            _ => None,
        }
    }

    /// The stanza condition XEP-0166 §10 pairs it with.
    pub fn stanza_condition(self) -> Condition {
        match self {
            JingleCondition::OutOfOrder => Condition::UnexpectedRequest,
            JingleCondition::TieBreak => Condition::Conflict,
            JingleCondition::UnknownSession => Condition::ItemNotFound,
            JingleCondition::UnsupportedInfo => Condition::FeatureNotImplemented,
        }
    }
}

/// An error answer as read from an `<iq type='error'/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// The stanza condition.
    pub condition: Condition,
    /// Its element name as received (useful when `condition` is [`Condition::Other`]).
    pub condition_name: String,
    /// The Jingle-specific condition, if any.
    pub jingle: Option<JingleCondition>,
    /// The human-readable `<text/>`, if any.
    pub text: Option<String>,
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.condition_name)?;
        if let Some(j) = self.jingle {
            write!(f, " ({})", j.as_str())?;
        }
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

impl StanzaError {
    /// Reads the `<error/>` child of an error stanza (RFC 6120 §8.3.2); `None` if it has none.
    pub fn from_stanza(stanza: &Element) -> Option<StanzaError> {
        let error = stanza.get_child("error", NS_CLIENT)?;
        let mut out = StanzaError {
            condition: Condition::Other,
            condition_name: "undefined-condition".to_owned(),
            jingle: None,
            text: None,
        };
        for child in error.children() {
            if child.ns() == NS_STANZAS {
                if child.name() == "text" {
                    out.text = Some(child.text());
                } else {
                    out.condition = Condition::parse(child.name());
                    out.condition_name = child.name().to_owned();
                }
            } else if child.ns() == NS_JINGLE_ERRORS {
                out.jingle = JingleCondition::parse(child.name());
            }
        }
        Some(out)
    }
}

/// The error answering `request` (RFC 6120 §8.3): same `id`, addressed to its sender, with the
/// stanza condition, an optional Jingle condition (XEP-0166 §10) and an optional text.
pub fn iq_error(
    request: &Element,
    condition: Condition,
    jingle: Option<JingleCondition>,
    text: Option<&str>,
) -> Element {
    let mut el = iq(
        IqType::Error,
        request.attr("id").unwrap_or_default(),
        request.attr("from").unwrap_or_default(),
        None,
    );
    let mut error = Element::bare("error", NS_CLIENT);
    set_attr(&mut error, "type", condition.error_type().as_str());
    error.append_child(Element::bare(condition.as_str(), NS_STANZAS));
    if let Some(t) = text {
        let mut text_el = Element::bare("text", NS_STANZAS);
        text_el.append_text_node(t);
        error.append_child(text_el);
    }
    if let Some(j) = jingle {
        error.append_child(Element::bare(j.as_str(), NS_JINGLE_ERRORS));
    }
    el.append_child(error);
    el
}

/// [`iq_error`] with the stanza condition XEP-0166 §10 pairs with `jingle`.
pub fn jingle_error(request: &Element, jingle: JingleCondition) -> Element {
    iq_error(request, jingle.stanza_condition(), Some(jingle), None)
}

/// Bounds on an element received from the network, checked before anything copies or walks
/// it recursively: minidom's `Clone`, `Drop`, `PartialEq`, `Debug` and serialisation all recurse
/// once per level, so a stanza nested some thousands of levels deep (a few tens of KB) would
/// overflow a task's stack. RFC 6120 §13.12 asks a receiver to bound what a peer can make it
/// hold; these are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StanzaLimits {
    /// Most levels of nesting, the stanza itself being level 1.
    pub max_depth: usize,
    /// Most elements in all.
    pub max_elements: usize,
    /// Most bytes of names, attribute names and values and text in all (close to the size of
    /// the serialised stanza, without markup).
    pub max_bytes: usize,
}

/// Deepest nesting we read: an XEP-0234 offer is 6 levels deep (`iq`, `jingle`, `content`,
/// `description`, `file`, `hash`), an OMEMO-protected XEP-0391 offer about 9.
pub const MAX_STANZA_DEPTH: usize = 32;
/// Most elements in one stanza: room for a `transport-info` with thousands of candidates
/// (the session layer keeps only its own bound of them).
pub const MAX_STANZA_ELEMENTS: usize = 16_384;
/// Most bytes in one stanza: above the stanza size limits servers enforce (Prosody's
/// `c2s_stanza_size_limit` is 256 KiB) and above an IBB block of 65535 bytes in base64.
pub const MAX_STANZA_BYTES: usize = 1 << 20;

impl Default for StanzaLimits {
    fn default() -> Self {
        StanzaLimits::DEFAULT
    }
}

/// Which bound of [`StanzaLimits`] an element broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// Nested deeper than the bound.
    #[error("the stanza is nested deeper than {0} levels")]
    Depth(usize),
    /// More elements than the bound.
    #[error("the stanza has more than {0} elements")]
    Elements(usize),
    /// More bytes than the bound.
    #[error("the stanza is larger than {0} bytes")]
    Bytes(usize),
}

impl StanzaLimits {
    /// The bounds every reader of this crate applies: the extension and the bot connection to
    /// whole stanzas, the element parsers (Jingle, IBB, disco, XEP-0215) to what they are
    /// given, so that each is safe to call on any element.
    pub const DEFAULT: StanzaLimits = StanzaLimits {
        max_depth: MAX_STANZA_DEPTH,
        max_elements: MAX_STANZA_ELEMENTS,
        max_bytes: MAX_STANZA_BYTES,
    };

    /// Checks `el` against the bounds without recursion: at most `max_elements` elements are
    /// visited and the walk stops at the first bound broken, so its cost is bounded too.
    pub fn check(&self, el: &Element) -> Result<(), LimitExceeded> {
        let mut elements = 0usize;
        let mut bytes = 0usize;
        // One iterator over the child nodes of each open level.
        let mut open: Vec<std::slice::Iter<'_, minidom::Node>> = Vec::new();
        let mut next = Some(el);
        loop {
            if let Some(e) = next.take() {
                elements += 1;
                if elements > self.max_elements {
                    return Err(LimitExceeded::Elements(self.max_elements));
                }
                if open.len() >= self.max_depth {
                    return Err(LimitExceeded::Depth(self.max_depth));
                }
                bytes += e.name().len();
                for ((_, name), value) in e.attrs().iter() {
                    bytes += name.len() + value.len();
                }
                if bytes > self.max_bytes {
                    return Err(LimitExceeded::Bytes(self.max_bytes));
                }
                open.push(e.nodes());
            }
            let Some(level) = open.last_mut() else {
                return Ok(());
            };
            match level.next() {
                Some(minidom::Node::Element(child)) => next = Some(child),
                Some(minidom::Node::Text(text)) => {
                    bytes += text.len();
                    if bytes > self.max_bytes {
                        return Err(LimitExceeded::Bytes(self.max_bytes));
                    }
                }
                None => {
                    open.pop();
                }
            }
        }
    }
}

/// Drops an element of any depth without recursion (minidom's own `Drop` recurses once per
/// level): for a stanza that broke [`StanzaLimits`], which nothing else may touch.
pub fn dismantle(el: Element) {
    let mut stack = vec![el];
    while let Some(mut e) = stack.pop() {
        for node in e.take_nodes() {
            if let minidom::Node::Element(child) = node {
                stack.push(child);
            }
        }
    }
}

/// The `<policy-violation/>` error answering a request that broke [`StanzaLimits`]; `None`
/// for a stanza that is not an iq request (results, errors, messages and presence get no
/// answer, RFC 6120 §8.3.1).
pub fn limit_error(request: &Element, exceeded: LimitExceeded) -> Option<Element> {
    matches!(iq_type(request), Some(IqType::Get | IqType::Set)).then(|| {
        iq_error(
            request,
            Condition::PolicyViolation,
            None,
            Some(&exceeded.to_string()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Element {
        let mut r = iq(IqType::Set, "x1", "a@example.test/r", None);
        set_attr(&mut r, "from", "b@example.test/s");
        r
    }

    #[test]
    fn error_round_trips() {
        let e = jingle_error(&request(), JingleCondition::UnknownSession);
        assert_eq!(e.attr("to"), Some("b@example.test/s"));
        assert_eq!(e.attr("id"), Some("x1"));
        assert_eq!(iq_type(&e), Some(IqType::Error));
        let read = StanzaError::from_stanza(&e).unwrap();
        assert_eq!(read.condition, Condition::ItemNotFound);
        assert_eq!(read.jingle, Some(JingleCondition::UnknownSession));
        let err = e.get_child("error", NS_CLIENT).unwrap();
        assert_eq!(err.attr("type"), Some("cancel"));
    }

    #[test]
    fn error_text_is_kept() {
        let e = iq_error(
            &request(),
            Condition::BadRequest,
            None,
            Some("bad candidate"),
        );
        let read = StanzaError::from_stanza(&e).unwrap();
        assert_eq!(read.condition, Condition::BadRequest);
        assert_eq!(read.text.as_deref(), Some("bad candidate"));
        assert_eq!(read.to_string(), "bad-request: bad candidate");
    }

    #[test]
    fn result_answers_the_sender() {
        let r = iq_result(&request());
        assert_eq!(iq_type(&r), Some(IqType::Result));
        assert_eq!(r.attr("to"), Some("b@example.test/s"));
        assert_eq!(r.children().count(), 0);
    }
}
