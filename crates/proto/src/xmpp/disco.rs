//! Service discovery (XEP-0030 disco#info) and entity capabilities (XEP-0115), sans-IO.
//!
//! - [`Features`] is what we advertise: identities and feature namespaces, the defaults being
//!   the ones this crate implements ([`OUR_FEATURES`]); an application extends it with its own
//!   (a file-transfer application adds `urn:xmpp:jingle:apps:file-transfer:5`).
//! - [`answer_info_query`] answers a peer's disco#info query with them.
//! - [`info_query`] and [`parse_info_result`] ask a peer what it supports, before a session is
//!   offered to it ([`PeerInfo::supports_jingle_ice_udp`]).
//! - [`Features::caps_element`] is the XEP-0115 `<c/>` to put in our presence, whose `ver` is
//!   the SHA-1 of the verification string of XEP-0115 §5.1; [`PeerInfo::verification_string`]
//!   lets the caller check a peer's `ver` before caching it (§5.4).
//!
//! Elements are built and read with minidom: reading a peer's answer stays tolerant of what
//! xmpp-parsers' strict types may reject, and the verification string needs the exact
//! ordering rules of XEP-0115 §5.1 (xmpp-parsers' `caps::compute_disco` sorts identities by
//! their joined string, which is not quite the same; the tests compare both on the XEP's
//! examples).

use std::collections::BTreeSet;

use base64::Engine as _;
use minidom::Element;
use sha1::{Digest, Sha1};

use super::stanza::{iq, iq_error, iq_result, iq_type, set_attr, Condition, IqType, StanzaError};
use crate::jingle::{LimitExceeded, StanzaLimits};

/// Namespace of disco#info (XEP-0030 §3, §11.1).
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// Namespace of entity capabilities (XEP-0115 §4, §7: an entity using caps advertises it).
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
pub use crate::jingle::transports::ibb::{NS_IBB, NS_JINGLE_IBB};
pub use crate::jingle::{NS_DTLS, NS_ICE_UDP, NS_JINGLE, NS_WEBRTC_DATACHANNEL};
/// Namespace of data forms (XEP-0004), for XEP-0128 extensions in disco#info results.
pub const NS_DATA_FORMS: &str = "jabber:x:data";
/// The `xml:lang` attribute's namespace (XML 1.0 §2.12).
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// The features this crate implements and advertises by default: disco, caps, Jingle with
/// ICE-UDP (XEP-0176), Conversations' `webrtc-datachannel:1` transport, XEP-0320 DTLS
/// fingerprints, and the In-Band Bytestreams fallback (XEP-0261 §5 and XEP-0047 §4 ask for
/// both namespaces).
pub const OUR_FEATURES: [&str; 8] = [
    NS_DISCO_INFO,
    NS_CAPS,
    NS_JINGLE,
    NS_ICE_UDP,
    NS_WEBRTC_DATACHANNEL,
    NS_DTLS,
    NS_JINGLE_IBB,
    NS_IBB,
];

/// Identity category of clients and bots (XEP-0030 §3.1, Service Discovery Identities
/// registry).
pub const CATEGORY_CLIENT: &str = "client";
/// Identity type of an automated client (registry: `client/bot`).
pub const TYPE_BOT: &str = "bot";
/// Identity type of a desktop client (registry: `client/pc`).
pub const TYPE_PC: &str = "pc";

/// Hash function name of our caps (XEP-0115 §4, the IANA "Hash Function Textual Names").
pub const CAPS_HASH: &str = "sha-1";

/// An identity (XEP-0030 §3.1 `<identity category type [xml:lang] [name]/>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// `category`, e.g. `client`.
    pub category: String,
    /// `type`, e.g. `bot` or `pc`.
    pub kind: String,
    /// `xml:lang` of the name, if any.
    pub lang: Option<String>,
    /// `name`, human-readable.
    pub name: Option<String>,
}

impl Identity {
    /// An identity without language.
    pub fn new(category: &str, kind: &str, name: Option<&str>) -> Self {
        Identity {
            category: category.to_owned(),
            kind: kind.to_owned(),
            lang: None,
            name: name.map(str::to_owned),
        }
    }

    /// `client/bot` with a name.
    pub fn client_bot(name: &str) -> Self {
        Identity::new(CATEGORY_CLIENT, TYPE_BOT, Some(name))
    }

    /// `client/pc` with a name.
    pub fn client_pc(name: &str) -> Self {
        Identity::new(CATEGORY_CLIENT, TYPE_PC, Some(name))
    }

    fn to_element(&self) -> Element {
        let mut el = Element::bare("identity", NS_DISCO_INFO);
        set_attr(&mut el, "category", self.category.as_str());
        set_attr(&mut el, "type", self.kind.as_str());
        if let Some(lang) = &self.lang {
            if let Ok(name) = minidom::rxml::NcName::try_from("lang") {
                el.set_attr(minidom::rxml::Namespace::XML, name, lang.as_str());
            }
        }
        if let Some(name) = &self.name {
            set_attr(&mut el, "name", name.as_str());
        }
        el
    }

    /// The identity's part of the verification string (XEP-0115 §5.1 step 2):
    /// `category/type/lang/name`.
    fn caps_string(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.category,
            self.kind,
            self.lang.as_deref().unwrap_or_default(),
            self.name.as_deref().unwrap_or_default()
        )
    }
}

/// The verification string of XEP-0115 §5.1 for these identities, features and XEP-0128
/// extension forms.
fn verification_string<'a>(
    identities: impl IntoIterator<Item = &'a Identity>,
    features: impl IntoIterator<Item = &'a str>,
    forms: &[ExtensionForm],
) -> String {
    // Step 1: identities sorted by category, then type, then xml:lang (then name, which the
    // XEP leaves open and which only matters for duplicates); `Identity`'s field order gives
    // exactly that ordering, byte-wise (i;octet, RFC 4790 §9.3).
    let mut identities: Vec<&Identity> = identities.into_iter().collect();
    identities.sort();
    let mut s = String::new();
    for i in identities {
        s.push_str(&i.caps_string());
        s.push('<');
    }
    // Steps 3-4: features sorted (i;octet), each followed by '<'.
    let mut features: Vec<&str> = features.into_iter().collect();
    features.sort_unstable();
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    // Step 5: forms sorted by FORM_TYPE; in each, fields sorted by var, values sorted.
    let mut forms: Vec<&ExtensionForm> = forms.iter().collect();
    forms.sort_by(|a, b| a.form_type.cmp(&b.form_type));
    for form in forms {
        s.push_str(&form.form_type);
        s.push('<');
        let mut fields: Vec<&FormField> = form.fields.iter().collect();
        fields.sort_by(|a, b| a.var.cmp(&b.var));
        for field in fields {
            s.push_str(&field.var);
            s.push('<');
            let mut values: Vec<&String> = field.values.iter().collect();
            values.sort();
            for v in values {
                s.push_str(v);
                s.push('<');
            }
        }
    }
    s
}

/// `ver` for a verification string: base64 of its SHA-1 (XEP-0115 §5.1 steps 7-8).
pub fn caps_ver(verification_string: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(verification_string.as_bytes()))
}

/// What we advertise through disco#info and caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    identities: BTreeSet<Identity>,
    features: BTreeSet<String>,
    caps_node: String,
}

impl Features {
    /// One identity, the features of [`OUR_FEATURES`], and `caps_node`: the URI naming the
    /// application in caps (XEP-0115 §4 `node`, e.g. `https://example.org/mybot`).
    pub fn new(identity: Identity, caps_node: &str) -> Self {
        Features {
            identities: BTreeSet::from([identity]),
            features: OUR_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            caps_node: caps_node.to_owned(),
        }
    }

    /// Adds a feature namespace (one the application implements). Adding one twice is a no-op:
    /// XEP-0030 §3.1 does not allow duplicates.
    pub fn add_feature(&mut self, var: &str) -> &mut Self {
        self.features.insert(var.to_owned());
        self
    }

    /// Removes a feature (for an application that does not want one of the defaults).
    pub fn remove_feature(&mut self, var: &str) -> &mut Self {
        self.features.remove(var);
        self
    }

    /// Adds an identity (XEP-0030 §3.1 allows several, e.g. the same name in two languages).
    pub fn add_identity(&mut self, identity: Identity) -> &mut Self {
        self.identities.insert(identity);
        self
    }

    /// Whether `var` is advertised.
    pub fn contains(&self, var: &str) -> bool {
        self.features.contains(var)
    }

    /// The advertised features, sorted.
    pub fn features(&self) -> impl Iterator<Item = &str> + '_ {
        self.features.iter().map(String::as_str)
    }

    /// The advertised identities, sorted.
    pub fn identities(&self) -> impl Iterator<Item = &Identity> + '_ {
        self.identities.iter()
    }

    /// The caps node (XEP-0115 §4 `node`).
    pub fn caps_node(&self) -> &str {
        &self.caps_node
    }

    /// The XEP-0115 §5.1 verification string.
    pub fn verification_string(&self) -> String {
        verification_string(&self.identities, self.features(), &[])
    }

    /// Our caps `ver` (XEP-0115 §5.1, SHA-1).
    pub fn caps_ver(&self) -> String {
        caps_ver(&self.verification_string())
    }

    /// The disco#info node peers query after seeing our caps: `node#ver` (XEP-0115 §6.2).
    pub fn caps_query_node(&self) -> String {
        format!("{}#{}", self.caps_node, self.caps_ver())
    }

    /// The `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node ver/>` element for
    /// our presence (XEP-0115 §4).
    pub fn caps_element(&self) -> Element {
        let mut c = Element::bare("c", NS_CAPS);
        set_attr(&mut c, "hash", CAPS_HASH);
        set_attr(&mut c, "node", self.caps_node.as_str());
        set_attr(&mut c, "ver", self.caps_ver());
        c
    }

    /// The `<query xmlns='http://jabber.org/protocol/disco#info'/>` result payload
    /// (XEP-0030 §3.1), echoing `node` when the query named one (§3.2).
    pub fn info_payload(&self, node: Option<&str>) -> Element {
        let mut query = Element::bare("query", NS_DISCO_INFO);
        if let Some(node) = node {
            set_attr(&mut query, "node", node);
        }
        for i in &self.identities {
            query.append_child(i.to_element());
        }
        for f in &self.features {
            let mut feature = Element::bare("feature", NS_DISCO_INFO);
            set_attr(&mut feature, "var", f.as_str());
            query.append_child(feature);
        }
        query
    }

    /// Whether we answer a disco#info query on `node`: no node, or our caps node with our
    /// current `ver` (XEP-0115 §6.2).
    fn knows_node(&self, node: Option<&str>) -> bool {
        match node {
            None => true,
            Some(n) => n == self.caps_query_node(),
        }
    }
}

/// Answers a disco#info query (XEP-0030 §3.1): when `stanza` is an iq get whose payload is
/// `<query xmlns='http://jabber.org/protocol/disco#info'/>`, the iq result to send (`to` = its
/// `from`, same `id`) carrying `features`; for a `node` we do not know (neither absent nor our
/// caps `node#ver`), the `<item-not-found/>` error of XEP-0030 §3.2 (`type='cancel'`,
/// RFC 6120 §8.3.3.7). `None` for any other stanza, which is not ours to answer.
pub fn answer_info_query(stanza: &Element, features: &Features) -> Option<Element> {
    if iq_type(stanza) != Some(IqType::Get) {
        return None;
    }
    let query = stanza.get_child("query", NS_DISCO_INFO)?;
    let node = query.attr("node");
    if !features.knows_node(node) {
        return Some(iq_error(stanza, Condition::ItemNotFound, None, None));
    }
    let mut reply = iq_result(stanza);
    reply.append_child(features.info_payload(node));
    Some(reply)
}

/// The disco#info iq get to `to` (XEP-0030 §3.1), on `node` when given (e.g. a peer's caps
/// `node#ver`, XEP-0115 §6.2).
pub fn info_query(id: &str, to: &jid::Jid, node: Option<&str>) -> Element {
    let mut query = Element::bare("query", NS_DISCO_INFO);
    if let Some(node) = node {
        set_attr(&mut query, "node", node);
    }
    let mut el = iq(IqType::Get, id, to.as_str(), None);
    el.append_child(query);
    el
}

/// An XEP-0128 extension form of a disco#info answer, as XEP-0115 §5.1 step 5 hashes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionForm {
    /// The value of the hidden `FORM_TYPE` field (XEP-0068).
    pub form_type: String,
    /// The other fields.
    pub fields: Vec<FormField>,
}

/// One field of an [`ExtensionForm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    /// `var`.
    pub var: String,
    /// The `<value/>` texts.
    pub values: Vec<String>,
}

/// A peer's disco#info answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The `node` of the answer, if any.
    pub node: Option<String>,
    /// Its identities, sorted.
    pub identities: Vec<Identity>,
    /// Its features.
    pub features: BTreeSet<String>,
    /// XEP-0128 extension forms, for the caps check.
    pub forms: Vec<ExtensionForm>,
    /// Whether the answer repeated an identity or a feature (XEP-0030 §3.1 forbids it;
    /// XEP-0115 §5.4 says not to trust such an answer's caps).
    pub had_duplicates: bool,
}

impl PeerInfo {
    /// Whether the peer advertises `var`.
    pub fn supports(&self, var: &str) -> bool {
        self.features.contains(var)
    }

    /// Whether a Jingle session with an ICE-UDP transport may be offered to the peer:
    /// it advertises both `urn:xmpp:jingle:1` (XEP-0166 §11) and
    /// `urn:xmpp:jingle:transports:ice-udp:1` (XEP-0176 §7).
    pub fn supports_jingle_ice_udp(&self) -> bool {
        self.supports(NS_JINGLE) && self.supports(NS_ICE_UDP)
    }

    /// Whether the peer takes Conversations' `webrtc-datachannel:1` transport (encrypted
    /// data channels over ICE-UDP).
    pub fn supports_webrtc_datachannel(&self) -> bool {
        self.supports(NS_JINGLE) && self.supports(NS_WEBRTC_DATACHANNEL)
    }

    /// The XEP-0115 §5.1 verification string of this answer.
    pub fn verification_string(&self) -> String {
        verification_string(
            &self.identities,
            self.features.iter().map(String::as_str),
            &self.forms,
        )
    }

    /// Whether this answer matches a peer's SHA-1 caps `ver` (XEP-0115 §5.4): false when the
    /// answer had duplicates, which the XEP says must not be cached.
    pub fn matches_caps_ver(&self, ver: &str) -> bool {
        !self.had_duplicates && caps_ver(&self.verification_string()) == ver
    }
}

/// Why a disco#info answer cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoError {
    /// The peer answered with an error (e.g. `<service-unavailable/>`: it does not do disco,
    /// XEP-0030 §3.1; `<item-not-found/>` for a node, §3.2).
    #[error("the peer answered with the error {condition:?}")]
    IqError {
        /// The RFC 6120 §8.3.3 condition, or `"undefined-condition"`.
        condition: String,
    },
    /// Neither an iq result with a disco#info `<query/>` nor such a `<query/>`.
    #[error("not a disco#info result")]
    NotInfoResult,
    /// An `<identity/>` without `category` or `type` (XEP-0030 §3.1: both REQUIRED).
    #[error("identity without category or type")]
    BadIdentity,
    /// The answer breaks [`StanzaLimits::DEFAULT`] and was not read.
    #[error("{0}")]
    Limits(LimitExceeded),
}

/// Reads a disco#info result (XEP-0030 §3.1): an iq result carrying
/// `<query xmlns='http://jabber.org/protocol/disco#info'/>`, or the query element itself.
/// Unknown children are ignored, `<feature/>` without `var` is skipped, repeated identities
/// or features are merged (and flagged in [`PeerInfo::had_duplicates`]).
pub fn parse_info_result(el: &Element) -> Result<PeerInfo, DiscoError> {
    StanzaLimits::DEFAULT
        .check(el)
        .map_err(DiscoError::Limits)?;
    let query = if el.is("query", NS_DISCO_INFO) {
        el
    } else if iq_type(el) == Some(IqType::Error) {
        return Err(DiscoError::IqError {
            condition: StanzaError::from_stanza(el)
                .map(|e| e.condition_name)
                .unwrap_or_else(|| "undefined-condition".to_owned()),
        });
    } else if iq_type(el) == Some(IqType::Result) {
        el.get_child("query", NS_DISCO_INFO)
            .ok_or(DiscoError::NotInfoResult)?
    } else {
        return Err(DiscoError::NotInfoResult);
    };
    let mut info = PeerInfo {
        node: query.attr("node").map(str::to_owned),
        ..PeerInfo::default()
    };
    let mut identities = BTreeSet::new();
    for child in query.children() {
        if child.is("identity", NS_DISCO_INFO) {
            let (Some(category), Some(kind)) = (child.attr("category"), child.attr("type")) else {
                return Err(DiscoError::BadIdentity);
            };
            let identity = Identity {
                category: category.to_owned(),
                kind: kind.to_owned(),
                lang: child.attr_ns(NS_XML, "lang").map(str::to_owned),
                name: child.attr("name").map(str::to_owned),
            };
            if !identities.insert(identity) {
                info.had_duplicates = true;
            }
        } else if child.is("feature", NS_DISCO_INFO) {
            if let Some(var) = child.attr("var") {
                if !info.features.insert(var.to_owned()) {
                    info.had_duplicates = true;
                }
            }
        } else if child.is("x", NS_DATA_FORMS) {
            if let Some(form) = read_form(child) {
                info.forms.push(form);
            }
        }
    }
    info.identities = identities.into_iter().collect();
    Ok(info)
}

/// Reads an XEP-0128 form for the caps check: its FORM_TYPE (XEP-0068) and the other fields.
/// A form without FORM_TYPE is ignored, as XEP-0115 §5.1 step 5 says.
fn read_form(x: &Element) -> Option<ExtensionForm> {
    let mut form_type = None;
    let mut fields = Vec::new();
    for field in x.children().filter(|c| c.is("field", NS_DATA_FORMS)) {
        let Some(var) = field.attr("var") else {
            continue;
        };
        let values: Vec<String> = field
            .children()
            .filter(|c| c.is("value", NS_DATA_FORMS))
            .map(Element::text)
            .collect();
        if var == "FORM_TYPE" {
            form_type = values.into_iter().next();
        } else {
            fields.push(FormField {
                var: var.to_owned(),
                values,
            });
        }
    }
    Some(ExtensionForm {
        form_type: form_type?,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The input of XEP-0115 §5.2 (simple generation example).
    fn exodus() -> Features {
        let mut f = Features::new(
            Identity::client_pc("Exodus 0.9.1"),
            "http://code.google.com/p/exodus",
        );
        f.remove_feature(NS_JINGLE)
            .remove_feature(NS_ICE_UDP)
            .remove_feature(NS_WEBRTC_DATACHANNEL)
            .remove_feature(NS_DTLS)
            .remove_feature(NS_JINGLE_IBB)
            .remove_feature(NS_IBB);
        f.add_feature("http://jabber.org/protocol/disco#items")
            .add_feature("http://jabber.org/protocol/muc");
        f
    }

    #[test]
    fn xep_0115_simple_example() {
        let f = exodus();
        assert_eq!(
            f.verification_string(),
            "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
             http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
             http://jabber.org/protocol/muc<"
        );
        assert_eq!(f.caps_ver(), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    #[test]
    fn our_defaults_claim_the_data_channel_transport() {
        let f = Features::new(Identity::client_bot("b"), "https://example.org/b");
        assert!(f.contains(NS_ICE_UDP));
        // Conversations offers webrtc-datachannel:1 only to peers that advertise it.
        assert!(f.contains("urn:xmpp:jingle:transports:webrtc-datachannel:1"));
        assert!(f.contains("urn:xmpp:jingle:apps:dtls:0"));
    }
}
