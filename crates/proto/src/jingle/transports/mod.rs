//! The Jingle transport methods we speak (XEP-0166 §8), each in its own folder with its
//! `<transport/>` element, what it needs besides, and its [`TransportMethod`] plugin:
//! - [`ice_udp`]: XEP-0176 ICE-UDP, mapped to the ICE agent's credentials and candidates;
//! - [`webrtc_datachannel`]: Conversations' `webrtc-datachannel:1`, an ICE-UDP transport
//!   carrying WebRTC data channels, with the XEP-0320 DTLS fingerprint ([`webrtc_datachannel::dtls`]);
//! - [`ibb`]: XEP-0261 In-Band Bytestreams (XEP-0047), the fallback through the XMPP server,
//!   with its sans-IO bytestream.
//!
//! The session machine knows none of them by name: it asks a [`TransportRegistry`] (in
//! [`SessionConfig::transports`](crate::jingle::SessionConfig::transports)), an ordered list of
//! [`TransportMethod`]s that is both the order of preference and the fallback order. Adding a
//! transport method (SOCKS5 bytestreams, XEP-0260) is one folder with its element and plugin,
//! one [`Transport`] variant, and one registry entry.

use std::fmt;
use std::sync::{Arc, LazyLock};

use minidom::Element;

use super::element::{Content, JingleError, Transport};
use crate::xmpp::stanza::StanzaLimits;

pub mod ibb;
pub mod ice_udp;
pub mod webrtc_datachannel;

pub use ibb::method::IbbMethod;
pub use ice_udp::method::IceUdpMethod;
pub use webrtc_datachannel::method::DataChannelMethod;

use ice_udp::{IceUdpTransport, Skipped, TransportLimits};

/// The transport namespaces of [`TransportRegistry::default`], most preferred first:
/// Conversations' WebRTC data channel (encrypted and authenticated by DTLS), plain XEP-0176
/// ICE-UDP, and XEP-0261 In-Band Bytestreams (through the server, the fallback XEP-0234 §2
/// requires of file transfer). The registry is what the session machine reads; this list
/// stays for callers that only need the names.
pub const SUPPORTED_TRANSPORTS: [&str; 3] = [
    webrtc_datachannel::NS_WEBRTC_DATACHANNEL,
    ice_udp::NS_ICE_UDP,
    ibb::NS_JINGLE_IBB,
];

/// One Jingle transport method (XEP-0166 §8) as the session machine sees it: sans-IO hooks
/// that read its `<transport/>`, check what an offer and an answer of it must carry, say how
/// it carries ICE candidates in `transport-info` (XEP-0176 §5.5 trickle) and whether its
/// contents join a BUNDLE group (XEP-0338). It never moves bytes: the driver that does
/// (the ICE agent, an IBB stream) lives elsewhere.
///
/// Object-safe; registered as `Arc<dyn TransportMethod>` in a [`TransportRegistry`].
pub trait TransportMethod: Send + Sync {
    /// The namespace of its `<transport/>` element (XEP-0166 §7.3: the transport method is
    /// named by the namespace of the content's `<transport/>` child).
    fn namespace(&self) -> &str;

    /// Reads its `<transport/>` element (already checked against [`StanzaLimits::DEFAULT`],
    /// in [`Self::namespace`]) into the [`Transport`] value; `limits` bounds the ICE-UDP
    /// candidates it may carry. An error makes the session layer answer `<bad-request/>`
    /// (XEP-0166 §10) and keep the session.
    fn parse(&self, el: &Element, limits: TransportLimits) -> Result<Transport, JingleError>;

    /// Checks an offer of this method (`session-initiate`, XEP-0166 §6.2) beyond syntax; the
    /// error is the text of the `<bad-request/>` it is answered with. The default accepts.
    fn check_offer(&self, offer: &Transport) -> Result<(), String> {
        let _ = offer;
        Ok(())
    }

    /// Checks the peer's answer (`session-accept`, XEP-0166 §6.5) to a content we offered
    /// with this method (`offered`); the error is the text of the `<bad-request/>`. The
    /// default accepts any answer.
    fn check_answer(&self, offered: &Transport, answer: Option<&Transport>) -> Result<(), String> {
        let _ = (offered, answer);
        Ok(())
    }

    /// Whether it runs over ICE: its transport carries an ICE-UDP part (XEP-0176 §5.3:
    /// credentials and candidates) that the ICE agent uses and that `transport-info` trickles.
    /// A method that does not cannot help when ICE fails, so only those are fallbacks
    /// ([`TransportRegistry::fallback_after`]).
    fn carries_ice(&self) -> bool;

    /// `ice` (local credentials and candidates) in the shape this method sends in a
    /// `transport-info` (XEP-0176 §5.5), given the transport the content negotiated with it
    /// (`negotiated`, of this method). The default is the plain XEP-0176 element.
    fn wrap_ice(&self, negotiated: &Transport, ice: IceUdpTransport) -> Transport {
        let _ = negotiated;
        Transport::IceUdp(ice)
    }

    /// Whether contents of this method are named in the XEP-0338 BUNDLE `<group/>` sent with
    /// `session-initiate` and `session-accept` (RFC 8843; what Conversations sends with
    /// data channels). The default is no.
    fn bundles(&self) -> bool {
        false
    }
}

/// A transport method we accept but do not interpret: its `<transport/>` is kept as received
/// ([`Transport::Other`]) for the application, which negotiates it itself (XEP-0166 §8 leaves
/// each method's semantics to its own specification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueMethod {
    ns: String,
}

impl OpaqueMethod {
    /// A method for namespace `ns`.
    pub fn new(ns: impl Into<String>) -> Self {
        OpaqueMethod { ns: ns.into() }
    }
}

impl TransportMethod for OpaqueMethod {
    fn namespace(&self) -> &str {
        &self.ns
    }

    fn parse(&self, el: &Element, _limits: TransportLimits) -> Result<Transport, JingleError> {
        Ok(Transport::Other(el.clone()))
    }

    fn carries_ice(&self) -> bool {
        false
    }
}

/// The transport methods a session manager accepts, in order: the order of preference (the
/// first is what we offer when the peer supports it) and the fallback order (when ICE finds
/// no path, the next method after the content's that does not need ICE; XEP-0166 §7.2.15
/// `transport-replace`). [`Default`] is data channel, ICE-UDP, IBB ([`SUPPORTED_TRANSPORTS`]).
///
/// A namespace appears at most once; a `<transport/>` of a namespace not registered is kept as
/// [`Transport::Other`] and an offer with only such transports is declined with
/// `<unsupported-transports/>` (XEP-0166 §6.3.3).
#[derive(Clone)]
pub struct TransportRegistry {
    methods: Vec<Arc<dyn TransportMethod>>,
}

impl Default for TransportRegistry {
    fn default() -> Self {
        TransportRegistry::empty()
            .with(DataChannelMethod)
            .with(IceUdpMethod)
            .with(IbbMethod)
    }
}

impl fmt::Debug for TransportRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.namespaces()).finish()
    }
}

static DEFAULT_REGISTRY: LazyLock<TransportRegistry> = LazyLock::new(TransportRegistry::default);

impl TransportRegistry {
    /// A registry with no method (every offer is declined).
    pub fn empty() -> Self {
        TransportRegistry {
            methods: Vec::new(),
        }
    }

    /// A shared [`TransportRegistry::default`], for readers without a configuration.
    pub fn builtin() -> &'static TransportRegistry {
        &DEFAULT_REGISTRY
    }

    /// Appends `method` as the least preferred (see [`Self::push`]).
    pub fn with(mut self, method: impl TransportMethod + 'static) -> Self {
        self.push(Arc::new(method));
        self
    }

    /// Appends `method` as the least preferred; one already registered for its namespace is
    /// removed first.
    pub fn push(&mut self, method: Arc<dyn TransportMethod>) {
        self.remove(method.namespace());
        self.methods.push(method);
    }

    /// Inserts `method` at position `index` of the order (clamped to the end); one already
    /// registered for its namespace is removed first.
    pub fn insert(&mut self, index: usize, method: Arc<dyn TransportMethod>) {
        self.remove(method.namespace());
        let index = index.min(self.methods.len());
        self.methods.insert(index, method);
    }

    /// Removes the method of namespace `ns`, returning it.
    pub fn remove(&mut self, ns: &str) -> Option<Arc<dyn TransportMethod>> {
        let i = self.methods.iter().position(|m| m.namespace() == ns)?;
        Some(self.methods.remove(i))
    }

    /// The method registered for namespace `ns`.
    pub fn get(&self, ns: &str) -> Option<&dyn TransportMethod> {
        self.methods
            .iter()
            .find(|m| m.namespace() == ns)
            .map(|m| &**m)
    }

    /// Whether a method is registered for namespace `ns`.
    pub fn contains(&self, ns: &str) -> bool {
        self.get(ns).is_some()
    }

    /// The methods, most preferred first.
    pub fn iter(&self) -> impl Iterator<Item = &dyn TransportMethod> + '_ {
        self.methods.iter().map(|m| &**m)
    }

    /// The namespaces, most preferred first.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> + '_ {
        self.methods.iter().map(|m| m.namespace())
    }

    /// The method to replace a content's transport of namespace `current` with when ICE found
    /// no path (XEP-0166 §7.2.15, XEP-0234 §2): the first method after `current` in the order
    /// that does not need ICE ([`TransportMethod::carries_ice`]); after all of them when
    /// `current` is not registered. `None`: there is no fallback.
    pub fn fallback_after(&self, current: &str) -> Option<&dyn TransportMethod> {
        let start = self
            .methods
            .iter()
            .position(|m| m.namespace() == current)
            .map_or(self.methods.len(), |i| i + 1);
        self.methods[start..]
            .iter()
            .find(|m| !m.carries_ice())
            .map(|m| &**m)
    }

    /// Reads a `<transport/>` through the method of its namespace; one of a namespace not
    /// registered is kept as [`Transport::Other`]. Refuses an element beyond
    /// [`StanzaLimits::DEFAULT`] before reading it.
    pub fn parse(&self, el: &Element, limits: TransportLimits) -> Result<Transport, JingleError> {
        StanzaLimits::DEFAULT
            .check(el)
            .map_err(JingleError::Limits)?;
        match self.get(&el.ns()) {
            Some(m) => m.parse(el, limits),
            None => Ok(Transport::Other(el.clone())),
        }
    }

    /// `ice` in the kind of transport a content negotiated (`negotiated`, of any method), for a
    /// `transport-info` (XEP-0176 §5.5): through its method's [`TransportMethod::wrap_ice`],
    /// the plain XEP-0176 element when none is known or its method is not registered.
    pub fn wrap_ice(&self, negotiated: Option<&Transport>, ice: IceUdpTransport) -> Transport {
        match negotiated.and_then(|t| Some((t, self.get(&t.ns())?))) {
            Some((t, m)) => m.wrap_ice(t, ice),
            None => Transport::IceUdp(ice),
        }
    }

    /// The kind of `transport` with its ICE contents emptied: what later `transport-info`s of
    /// the content are wrapped in ([`Self::wrap_ice`]).
    pub fn wrapper_of(&self, transport: &Transport) -> Transport {
        let empty = IceUdpTransport {
            ufrag: None,
            pwd: None,
            candidates: Vec::new(),
            fingerprint: None,
            skipped: Skipped::default(),
        };
        self.wrap_ice(Some(transport), empty)
    }

    /// The namespace a peer's `transport-info` for a content must carry: the one of the
    /// transport the content negotiated, XEP-0176 ICE-UDP when it has none (XEP-0176 §5.5:
    /// candidates trickle in ICE-UDP transports).
    pub fn info_namespace(&self, negotiated: Option<&Transport>) -> String {
        negotiated.map_or_else(|| ice_udp::NS_ICE_UDP.to_owned(), Transport::ns)
    }

    /// Checks every content of an offer through its method's
    /// [`TransportMethod::check_offer`]; the error is the text of the `<bad-request/>`, naming
    /// the content.
    pub fn check_offer(&self, contents: &[Content]) -> Result<(), String> {
        for c in contents {
            let Some(t) = &c.transport else { continue };
            if let Some(m) = self.get(&t.ns()) {
                m.check_offer(t)
                    .map_err(|e| format!("content {:?}: {e}", c.name))?;
            }
        }
        Ok(())
    }

    /// Checks the answer to a content we offered with `offered` through that method's
    /// [`TransportMethod::check_answer`]; the error is the text of the `<bad-request/>`.
    pub fn check_answer(
        &self,
        offered: Option<&Transport>,
        answer: Option<&Transport>,
    ) -> Result<(), String> {
        let Some(ours) = offered else { return Ok(()) };
        match self.get(&ours.ns()) {
            Some(m) => m.check_answer(ours, answer),
            None => Ok(()),
        }
    }

    /// The XEP-0338 BUNDLE `<group/>` naming the contents whose method
    /// [`bundles`](TransportMethod::bundles); `None` when there is none.
    pub fn bundle_group(&self, contents: &[Content]) -> Option<Element> {
        let names: Vec<&str> = contents
            .iter()
            .filter(|c| {
                c.transport
                    .as_ref()
                    .and_then(|t| self.get(&t.ns()))
                    .is_some_and(|m| m.bundles())
            })
            .map(|c| c.name.as_str())
            .collect();
        (!names.is_empty()).then(|| webrtc_datachannel::bundle_group(names))
    }
}

#[cfg(test)]
mod tests;
