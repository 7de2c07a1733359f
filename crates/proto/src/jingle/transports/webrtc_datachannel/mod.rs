//! The `webrtc-datachannel:1` Jingle transport as Conversations (and its forks) send it for
//! file transfer: an outer `<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1'
//! sctp-port max-message-size>` wrapping one XEP-0176 ICE-UDP `<transport/>`, which carries
//! `ufrag`, `pwd`, the candidates and the XEP-0320 DTLS `<fingerprint/>`.
//!
//! There is no XEP for this transport; the shape is Conversations' (read from its source:
//! `src/main/java/eu/siacs/conversations/xmpp/jingle/stanzas/WebRTCDataChannelTransportInfo.java`
//! and `SessionDescription.java`; `xep/webrtc-datachannel.md` lists the facts and paths):
//! - `session-initiate` and `session-accept`: both outer attributes, inner `ufrag`/`pwd`, the
//!   fingerprint with `hash` and `setup` inside the inner transport, no candidates (they are
//!   trickled);
//! - `transport-info`: the same outer attributes, inner `ufrag`/`pwd`, no fingerprint, one
//!   candidate.
//!
//! Reading is lenient where the RFCs give defaults (a missing `sctp-port` means 5000,
//! RFC 8841 §5.1; a missing `max-message-size` means 64 KiB, RFC 8841 §6.1), strict about
//! syntax (a present attribute must be a number in range), and a present but invalid
//! fingerprint makes the transport invalid. Writing always puts both attributes, because
//! Conversations refuses a transport without them (`SessionDescription.java` throws
//! "missing required sctp-port attribute" / "missing required max-message-size").

pub mod dtls;
pub mod method;

use minidom::Element;

use self::dtls::DtlsFingerprint;
use super::ice_udp::{IceUdpTransport, TransportError, TransportLimits, NS_ICE_UDP};
use crate::xmpp::stanza::set_attr;

/// Namespace of Conversations' WebRTC data channel transport (Conversations'
/// `Namespace.JINGLE_TRANSPORT_WEBRTC_DATA_CHANNEL`; no XEP defines it).
pub const NS_WEBRTC_DATACHANNEL: &str = "urn:xmpp:jingle:transports:webrtc-datachannel:1";

/// The `sctp-port` Conversations sends: libwebrtc's `a=sctp-port:5000`, copied from the SDP
/// into Jingle by `WebRTCDataChannelTransportInfo.of` (Conversations does not choose it).
pub const CONVERSATIONS_SCTP_PORT: u16 = 5000;
/// The `max-message-size` Conversations sends: libwebrtc's `a=max-message-size:262144`
/// (256 KiB), copied from the SDP like the port.
pub const CONVERSATIONS_MAX_MESSAGE_SIZE: u32 = 262_144;
/// The SCTP port when `sctp-port` is absent (RFC 8841 §5.1).
pub const DEFAULT_SCTP_PORT: u16 = 5000;
/// The largest message the peer accepts when `max-message-size` is absent (RFC 8841 §6.1:
/// 64 KiB). A value of 0 means "no limit" (RFC 8841 §6.1).
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 65_536;

/// Namespace of XEP-0338 content grouping, which carries the BUNDLE group Conversations sends
/// next to the contents (`<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>`).
pub const NS_GROUPING: &str = "urn:xmpp:jingle:apps:grouping:0";
/// The grouping semantics Conversations uses (RFC 8843 BUNDLE, from libwebrtc's
/// `a=group:BUNDLE 0`).
pub const BUNDLE: &str = "BUNDLE";
/// The content name Conversations uses: libwebrtc's media id for the first m-line. Conversations
/// builds an SDP without `a=mid` from our Jingle, so libwebrtc names the section by its index,
/// `0`; a BUNDLE group or a candidate naming any other content would not match it.
pub const CONVERSATIONS_CONTENT_NAME: &str = "0";

/// Attribute and element names.
mod names {
    pub const TRANSPORT: &str = "transport";
    pub const SCTP_PORT: &str = "sctp-port";
    pub const MAX_MESSAGE_SIZE: &str = "max-message-size";
    pub const GROUP: &str = "group";
    pub const SEMANTICS: &str = "semantics";
    pub const CONTENT: &str = "content";
    pub const NAME: &str = "name";
}

/// Why a data-channel transport cannot be read or cannot be used to negotiate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataChannelError {
    /// The element is not `<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1'/>`.
    #[error("expected a webrtc-datachannel transport, got <{name}/> in namespace {ns:?}")]
    NotDataChannel {
        /// Name of the element received.
        name: String,
        /// Namespace of the element received.
        ns: String,
    },
    /// There is no inner ICE-UDP `<transport/>`.
    #[error("webrtc-datachannel transport without an inner ice-udp transport")]
    MissingIceUdp,
    /// The inner ICE-UDP transport is invalid (its fingerprint included).
    #[error("inner ice-udp transport: {0}")]
    IceUdp(TransportError),
    /// `sctp-port` is not a port number from 1 to 65535.
    #[error("invalid sctp-port {0:?}")]
    InvalidSctpPort(String),
    /// `max-message-size` is not a number from 0 to 2^32-1.
    #[error("invalid max-message-size {0:?}")]
    InvalidMaxMessageSize(String),
    /// An offer or answer lacks the DTLS fingerprint, without which the channel cannot be
    /// authenticated (XEP-0320 §3, RFC 8842 §5).
    #[error("webrtc-datachannel offer or answer without a DTLS fingerprint")]
    MissingFingerprint,
    /// An offer or answer lacks `ufrag` or `pwd` (XEP-0176 §5.3; Conversations requires both).
    #[error("webrtc-datachannel offer or answer without ICE ufrag and pwd")]
    MissingCredentials,
}

/// The `webrtc-datachannel:1` transport: the SCTP parameters and the ICE-UDP transport inside.
#[derive(Debug, Clone, PartialEq)]
pub struct DataChannelTransport {
    /// The inner ICE-UDP transport: credentials, candidates and (in offers and answers) the DTLS
    /// fingerprint.
    pub ice: IceUdpTransport,
    /// The SCTP port of the sender's association (RFC 8841 §5.1 `sctp-port`); `None` when the
    /// attribute was absent.
    pub sctp_port: Option<u16>,
    /// The largest message the sender can receive (RFC 8841 §6.1 `max-message-size`); `None`
    /// when absent, `Some(0)` for "no limit".
    pub max_message_size: Option<u32>,
}

impl DataChannelTransport {
    /// A transport with Conversations' SCTP values ([`CONVERSATIONS_SCTP_PORT`],
    /// [`CONVERSATIONS_MAX_MESSAGE_SIZE`]) around `ice`.
    pub fn new(ice: IceUdpTransport) -> Self {
        DataChannelTransport {
            ice,
            sctp_port: Some(CONVERSATIONS_SCTP_PORT),
            max_message_size: Some(CONVERSATIONS_MAX_MESSAGE_SIZE),
        }
    }

    /// A transport for `session-initiate` or `session-accept`: `ice` with `fingerprint` put
    /// inside it, and Conversations' SCTP values.
    pub fn with_fingerprint(mut ice: IceUdpTransport, fingerprint: DtlsFingerprint) -> Self {
        ice.fingerprint = Some(fingerprint);
        DataChannelTransport::new(ice)
    }

    /// The DTLS fingerprint of the inner transport, if any.
    pub fn fingerprint(&self) -> Option<&DtlsFingerprint> {
        self.ice.fingerprint.as_ref()
    }

    /// The SCTP port to use, with RFC 8841 §5.1's default.
    pub fn sctp_port_or_default(&self) -> u16 {
        self.sctp_port.unwrap_or(DEFAULT_SCTP_PORT)
    }

    /// The sender's receive limit with RFC 8841 §6.1's default; `None` means no limit (`0`).
    pub fn max_message_size_or_default(&self) -> Option<u32> {
        match self.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE) {
            0 => None,
            n => Some(n),
        }
    }

    /// Checks what an offer (`session-initiate`) or answer (`session-accept`) needs beyond
    /// syntax: a DTLS fingerprint and both ICE credentials. A `transport-info` needs neither
    /// check (Conversations repeats the credentials there but never the fingerprint).
    pub fn check_offer_or_answer(&self) -> Result<(), DataChannelError> {
        if self.ice.fingerprint.is_none() {
            return Err(DataChannelError::MissingFingerprint);
        }
        if self.ice.credentials().is_none() {
            return Err(DataChannelError::MissingCredentials);
        }
        Ok(())
    }

    /// The same kind of transport around other ICE-UDP contents, for a `transport-info`: the
    /// SCTP attributes are repeated, the fingerprint is left out (what Conversations'
    /// `WebRTCDataChannelTransportInfo.cloneWrapper` does before it adds a candidate).
    pub fn rewrap(&self, mut ice: IceUdpTransport) -> Self {
        ice.fingerprint = None;
        DataChannelTransport {
            ice,
            sctp_port: self.sctp_port,
            max_message_size: self.max_message_size,
        }
    }

    /// Reads the element (Conversations' shape, see the module documentation); the inner
    /// ICE-UDP transport is read with `limits`. Unknown attributes and children are ignored;
    /// only the first inner ICE-UDP transport is read.
    pub fn from_element(el: &Element, limits: TransportLimits) -> Result<Self, DataChannelError> {
        if !el.is(names::TRANSPORT, NS_WEBRTC_DATACHANNEL) {
            return Err(DataChannelError::NotDataChannel {
                name: el.name().to_owned(),
                ns: el.ns(),
            });
        }
        let sctp_port = match el.attr(names::SCTP_PORT) {
            None => None,
            Some(v) => match v.trim().parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => return Err(DataChannelError::InvalidSctpPort(bounded(v))),
            },
        };
        let max_message_size = match el.attr(names::MAX_MESSAGE_SIZE) {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| DataChannelError::InvalidMaxMessageSize(bounded(v)))?,
            ),
        };
        let inner = el
            .get_child(names::TRANSPORT, NS_ICE_UDP)
            .ok_or(DataChannelError::MissingIceUdp)?;
        let ice = IceUdpTransport::from_element(inner, limits).map_err(DataChannelError::IceUdp)?;
        Ok(DataChannelTransport {
            ice,
            sctp_port,
            max_message_size,
        })
    }

    /// Renders the element as Conversations writes it: `sctp-port` and `max-message-size` on
    /// the outer element when set, the ICE-UDP transport (with its fingerprint) inside.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::TRANSPORT, NS_WEBRTC_DATACHANNEL);
        if let Some(p) = self.sctp_port {
            set_attr(&mut el, names::SCTP_PORT, u32::from(p));
        }
        if let Some(m) = self.max_message_size {
            set_attr(&mut el, names::MAX_MESSAGE_SIZE, m);
        }
        el.append_child(self.ice.to_element());
        el
    }
}

impl TryFrom<&Element> for DataChannelTransport {
    type Error = DataChannelError;

    /// [`DataChannelTransport::from_element`] with the default [`TransportLimits`].
    fn try_from(el: &Element) -> Result<Self, Self::Error> {
        DataChannelTransport::from_element(el, TransportLimits::default())
    }
}

/// A value cut short for an error message.
fn bounded(v: &str) -> String {
    v.chars().take(32).collect()
}

/// The XEP-0338 `<group semantics='BUNDLE'>` element naming `contents`, which Conversations
/// puts in `session-initiate` and `session-accept` next to the `<content/>` (a `<jingle/>`
/// payload).
pub fn bundle_group<'a>(contents: impl IntoIterator<Item = &'a str>) -> Element {
    let mut group = Element::bare(names::GROUP, NS_GROUPING);
    set_attr(&mut group, names::SEMANTICS, BUNDLE);
    for name in contents {
        let mut c = Element::bare(names::CONTENT, NS_GROUPING);
        set_attr(&mut c, names::NAME, name);
        group.append_child(c);
    }
    group
}

/// The content names of a XEP-0338 BUNDLE `<group/>` element, or `None` for any other element.
pub fn read_bundle_group(el: &Element) -> Option<Vec<String>> {
    if !el.is(names::GROUP, NS_GROUPING) || el.attr(names::SEMANTICS) != Some(BUNDLE) {
        return None;
    }
    Some(
        el.children()
            .filter(|c| c.is(names::CONTENT, NS_GROUPING))
            .filter_map(|c| c.attr(names::NAME).map(str::to_owned))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jingle::transports::webrtc_datachannel::dtls::{DtlsError, Setup};

    const FP: &str = "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>\
        5E:2B:9A:11:00:FF:3C:7D:8E:41:6A:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6\
        </fingerprint>";

    fn parse(outer_attrs: &str, inner: &str) -> Result<DataChannelTransport, DataChannelError> {
        let xml =
            format!("<transport xmlns='{NS_WEBRTC_DATACHANNEL}' {outer_attrs}>{inner}</transport>");
        let el: Element = xml.parse().unwrap();
        DataChannelTransport::from_element(&el, TransportLimits::default())
    }

    fn inner(children: &str) -> String {
        format!(
            "<transport xmlns='{NS_ICE_UDP}' ufrag='aB3d' pwd='0123456789abcdefghijkl'>{children}</transport>"
        )
    }

    #[test]
    fn offer_round_trip() {
        let t = parse("sctp-port='5000' max-message-size='262144'", &inner(FP)).unwrap();
        assert_eq!(t.sctp_port, Some(5000));
        assert_eq!(t.max_message_size, Some(262_144));
        let fp = t.fingerprint().unwrap();
        assert_eq!(fp.setup, Setup::Actpass);
        assert_eq!(fp.value().len(), 32);
        t.check_offer_or_answer().unwrap();
        let back = DataChannelTransport::from_element(&t.to_element(), TransportLimits::default())
            .unwrap();
        assert_eq!(back, t);
        let el = t.to_element();
        assert_eq!(el.attr("sctp-port"), Some("5000"));
        assert_eq!(el.attr("max-message-size"), Some("262144"));
        let ice = el.get_child("transport", NS_ICE_UDP).unwrap();
        assert!(ice
            .get_child(
                "fingerprint",
                crate::jingle::transports::webrtc_datachannel::dtls::NS_DTLS
            )
            .is_some());
    }

    #[test]
    fn missing_sctp_attributes_take_the_rfc_defaults() {
        let t = parse("", &inner(FP)).unwrap();
        assert_eq!(t.sctp_port, None);
        assert_eq!(t.max_message_size, None);
        assert_eq!(t.sctp_port_or_default(), 5000);
        assert_eq!(t.max_message_size_or_default(), Some(65_536));
        // Written back without them (we never invent what the peer did not say) ...
        let el = t.to_element();
        assert_eq!(el.attr("sctp-port"), None);
        // ... but ours always carry them, as Conversations requires.
        let ours = DataChannelTransport::new(t.ice.clone());
        assert_eq!(ours.to_element().attr("sctp-port"), Some("5000"));
        assert_eq!(ours.to_element().attr("max-message-size"), Some("262144"));
        let unlimited = parse("max-message-size='0'", &inner("")).unwrap();
        assert_eq!(unlimited.max_message_size_or_default(), None);
    }

    #[test]
    fn bad_sctp_attributes_are_errors() {
        for v in ["0", "65536", "-1", "port", ""] {
            assert!(
                matches!(
                    parse(&format!("sctp-port='{v}'"), &inner("")),
                    Err(DataChannelError::InvalidSctpPort(_))
                ),
                "{v}"
            );
        }
        for v in ["4294967296", "-5", "big"] {
            assert!(
                matches!(
                    parse(&format!("max-message-size='{v}'"), &inner("")),
                    Err(DataChannelError::InvalidMaxMessageSize(_))
                ),
                "{v}"
            );
        }
    }

    #[test]
    fn inner_transport_is_required_and_checked() {
        assert_eq!(
            parse("sctp-port='5000'", ""),
            Err(DataChannelError::MissingIceUdp)
        );
        let bad_fp = FP.replace("5E:2B", "5E:ZZ");
        assert!(matches!(
            parse("sctp-port='5000'", &inner(&bad_fp)),
            Err(DataChannelError::IceUdp(TransportError::Fingerprint(
                DtlsError::Fingerprint(crate::channel::FingerprintError::BadHex { index: 1, .. })
            )))
        ));
        let wrong: Element = format!("<transport xmlns='{NS_ICE_UDP}'/>")
            .parse()
            .unwrap();
        assert!(matches!(
            DataChannelTransport::try_from(&wrong),
            Err(DataChannelError::NotDataChannel { .. })
        ));
    }

    #[test]
    fn offer_checks() {
        let no_fp = parse("sctp-port='5000'", &inner("")).unwrap();
        assert_eq!(
            no_fp.check_offer_or_answer(),
            Err(DataChannelError::MissingFingerprint)
        );
        let no_creds = parse(
            "sctp-port='5000'",
            &format!("<transport xmlns='{NS_ICE_UDP}'>{FP}</transport>"),
        )
        .unwrap();
        assert_eq!(
            no_creds.check_offer_or_answer(),
            Err(DataChannelError::MissingCredentials)
        );
    }

    #[test]
    fn rewrap_drops_the_fingerprint_and_keeps_sctp() {
        let t = parse("sctp-port='5000' max-message-size='262144'", &inner(FP)).unwrap();
        let info = t.rewrap(t.ice.clone());
        assert!(info.fingerprint().is_none());
        assert_eq!(info.sctp_port, Some(5000));
        assert_eq!(info.max_message_size, Some(262_144));
    }

    #[test]
    fn bundle_group_round_trip() {
        let g = bundle_group(["0"]);
        assert_eq!(read_bundle_group(&g), Some(vec!["0".to_owned()]));
        assert_eq!(read_bundle_group(&Element::bare("group", "urn:x")), None);
    }
}
