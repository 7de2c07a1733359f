//! The registry: order, lookup, fallback, and the session machine reading through it.

use std::time::Instant;

use jid::FullJid;
use minidom::Element;

use super::ibb::{IbbTransport, NS_JINGLE_IBB};
use super::ice_udp::{IceUdpTransport, TransportLimits, NS_ICE_UDP};
use super::webrtc_datachannel::dtls::{DtlsFingerprint, Setup};
use super::webrtc_datachannel::{read_bundle_group, DataChannelTransport, NS_WEBRTC_DATACHANNEL};
use super::*;
use crate::channel::Fingerprint;
use crate::ice::Credentials;
use crate::jingle::element::{Content, JingleError, Transport};
use crate::jingle::session::{SessionConfig, SessionEvent, SessionKey, SessionManager};
use crate::xmpp::stanza::{iq_type, IqType};

const CUSTOM_NS: &str = "urn:example:jingle:transports:custom:0";

/// A transport method of a namespace the library does not know: reads `<transport port/>`
/// (kept as an element) and refuses offers without a port.
struct CustomMethod;

impl TransportMethod for CustomMethod {
    fn namespace(&self) -> &str {
        CUSTOM_NS
    }

    fn parse(&self, el: &Element, _limits: TransportLimits) -> Result<Transport, JingleError> {
        match el.attr("port") {
            Some(p) if p.parse::<u16>().is_err() => {
                Err(JingleError::Invalid("custom port", p.to_owned()))
            }
            _ => Ok(Transport::Other(el.clone())),
        }
    }

    fn check_offer(&self, offer: &Transport) -> Result<(), String> {
        match offer {
            Transport::Other(el) if el.attr("port").is_some() => Ok(()),
            _ => Err("custom offer without a port".into()),
        }
    }

    fn carries_ice(&self) -> bool {
        false
    }
}

fn creds() -> Credentials {
    Credentials::new("ufragAA", "pwd0123456789abcdefghijkl")
}

fn ice() -> IceUdpTransport {
    IceUdpTransport::new(&creds(), Vec::new())
}

fn data_channel() -> Transport {
    let fp = Fingerprint::new("sha-256", vec![0x5a; 32]).unwrap();
    let fp = DtlsFingerprint::new(Setup::Actpass, fp);
    Transport::DataChannel(DataChannelTransport::with_fingerprint(ice(), fp))
}

fn ibb() -> Transport {
    Transport::Ibb(IbbTransport {
        sid: "s1".into(),
        block_size: 4096,
    })
}

#[test]
fn the_default_order_is_data_channel_ice_udp_ibb() {
    let r = TransportRegistry::default();
    let order: Vec<&str> = r.namespaces().collect();
    assert_eq!(order, SUPPORTED_TRANSPORTS);
    assert_eq!(
        TransportRegistry::builtin()
            .namespaces()
            .collect::<Vec<_>>(),
        order
    );
    assert_eq!(
        format!("{r:?}"),
        format!("{:?}", SUPPORTED_TRANSPORTS.to_vec())
    );
    assert_eq!(TransportRegistry::empty().iter().count(), 0);
}

#[test]
fn methods_are_found_by_namespace() {
    let r = TransportRegistry::default();
    assert!(r.get(NS_ICE_UDP).unwrap().carries_ice());
    assert!(r.get(NS_WEBRTC_DATACHANNEL).unwrap().carries_ice());
    assert!(r.get(NS_WEBRTC_DATACHANNEL).unwrap().bundles());
    assert!(!r.get(NS_JINGLE_IBB).unwrap().carries_ice());
    assert!(!r.get(NS_JINGLE_IBB).unwrap().bundles());
    assert!(r.get(CUSTOM_NS).is_none());
    assert!(!r.contains(CUSTOM_NS));
}

#[test]
fn a_namespace_is_registered_once_and_can_be_moved() {
    let mut r = TransportRegistry::default().with(IceUdpMethod);
    assert_eq!(
        r.namespaces().collect::<Vec<_>>(),
        [NS_WEBRTC_DATACHANNEL, NS_JINGLE_IBB, NS_ICE_UDP],
        "pushing again moves it to the end"
    );
    r.insert(0, Arc::new(IbbMethod));
    assert_eq!(
        r.namespaces().collect::<Vec<_>>(),
        [NS_JINGLE_IBB, NS_WEBRTC_DATACHANNEL, NS_ICE_UDP]
    );
    assert_eq!(r.remove(NS_JINGLE_IBB).unwrap().namespace(), NS_JINGLE_IBB);
    assert!(r.remove(NS_JINGLE_IBB).is_none());
    assert_eq!(r.iter().count(), 2);
}

#[test]
fn the_fallback_is_the_next_method_without_ice() {
    let r = TransportRegistry::default();
    let next = |ns| r.fallback_after(ns).map(|m| m.namespace().to_owned());
    assert_eq!(next(NS_WEBRTC_DATACHANNEL).as_deref(), Some(NS_JINGLE_IBB));
    assert_eq!(next(NS_ICE_UDP).as_deref(), Some(NS_JINGLE_IBB));
    assert_eq!(next(NS_JINGLE_IBB), None, "nothing after the last");
    assert_eq!(next(CUSTOM_NS), None, "not registered: nothing after it");

    let mut without_ibb = TransportRegistry::default();
    without_ibb.remove(NS_JINGLE_IBB);
    assert!(without_ibb.fallback_after(NS_WEBRTC_DATACHANNEL).is_none());
    assert!(without_ibb.fallback_after(NS_ICE_UDP).is_none());

    // The order is data: a method without ICE placed after IBB is not reached, one placed
    // before it is.
    let r = TransportRegistry::default().with(CustomMethod);
    assert_eq!(
        r.fallback_after(NS_ICE_UDP).unwrap().namespace(),
        NS_JINGLE_IBB
    );
    let mut r = TransportRegistry::default();
    r.insert(1, Arc::new(CustomMethod));
    assert_eq!(
        r.fallback_after(NS_WEBRTC_DATACHANNEL).unwrap().namespace(),
        CUSTOM_NS
    );
    assert_eq!(
        r.fallback_after(NS_ICE_UDP).unwrap().namespace(),
        NS_JINGLE_IBB
    );
}

#[test]
fn parsing_dispatches_on_the_namespace() {
    let r = TransportRegistry::default();
    let limits = TransportLimits::default();
    for t in [data_channel(), Transport::IceUdp(ice()), ibb()] {
        assert_eq!(r.parse(&t.to_element(), limits).unwrap(), t);
    }
    let custom: Element = format!("<transport xmlns='{CUSTOM_NS}' port='x'/>")
        .parse()
        .unwrap();
    // Not registered: kept as received, even when the registered method would refuse it.
    assert_eq!(
        r.parse(&custom, limits).unwrap(),
        Transport::Other(custom.clone())
    );
    let with_custom = TransportRegistry::default().with(CustomMethod);
    assert!(with_custom.parse(&custom, limits).is_err());
    // A registry without ICE-UDP keeps ICE-UDP transports as elements.
    let mut no_ice = TransportRegistry::default();
    no_ice.remove(NS_ICE_UDP);
    assert!(matches!(
        no_ice.parse(&Transport::IceUdp(ice()).to_element(), limits),
        Ok(Transport::Other(_))
    ));
}

#[test]
fn ice_is_wrapped_in_the_negotiated_kind() {
    let r = TransportRegistry::default();
    let wrapper = r.wrapper_of(&data_channel());
    let Transport::DataChannel(w) = &wrapper else {
        panic!("{wrapper:?}")
    };
    assert!(w.ice.fingerprint.is_none() && w.ice.candidates.is_empty());
    let Transport::DataChannel(info) = r.wrap_ice(Some(&wrapper), ice()) else {
        panic!()
    };
    assert_eq!(info.ice.credentials(), Some(creds()));
    assert!(info.sctp_port.is_some());
    assert!(matches!(
        r.wrap_ice(Some(&Transport::IceUdp(ice())), ice()),
        Transport::IceUdp(_)
    ));
    assert!(matches!(
        r.wrap_ice(Some(&ibb()), ice()),
        Transport::IceUdp(_)
    ));
    assert!(matches!(r.wrap_ice(None, ice()), Transport::IceUdp(_)));
    assert_eq!(r.info_namespace(None), NS_ICE_UDP);
    assert_eq!(r.info_namespace(Some(&ibb())), NS_JINGLE_IBB);
}

#[test]
fn offers_answers_and_bundles_go_through_the_methods() {
    let r = TransportRegistry::default();
    let desc = Element::bare("description", "urn:example:app");
    let dc = Content::new("0", desc.clone(), data_channel());
    let plain = Content::new("1", desc.clone(), Transport::IceUdp(ice()));
    assert!(r.check_offer(&[dc.clone(), plain.clone()]).is_ok());
    let mut no_fp = dc.clone();
    if let Some(Transport::DataChannel(t)) = &mut no_fp.transport {
        t.ice.fingerprint = None;
    }
    let err = r.check_offer(&[no_fp]).unwrap_err();
    assert!(err.starts_with("content \"0\""), "{err}");
    let offered = data_channel();
    assert!(r
        .check_answer(Some(&offered), Some(&Transport::IceUdp(ice())))
        .is_err());
    assert!(
        r.check_answer(Some(&offered), Some(&offered)).is_err(),
        "actpass answer"
    );
    assert!(r
        .check_answer(Some(&Transport::IceUdp(ice())), None)
        .is_ok());
    let group = r.bundle_group(&[dc, plain.clone()]).unwrap();
    assert_eq!(read_bundle_group(&group), Some(vec!["0".to_owned()]));
    assert!(r.bundle_group(&[plain]).is_none());
}

// The session machine reading through its registry.

fn alice() -> FullJid {
    FullJid::new("alice@example.test/a").unwrap()
}

fn bob() -> FullJid {
    FullJid::new("bob@example.test/b").unwrap()
}

fn manager(transports: TransportRegistry) -> SessionManager {
    let config = SessionConfig {
        seed: Some(7),
        transports,
        ..SessionConfig::default()
    };
    SessionManager::new(bob(), config)
}

fn set(id: &str, jingle: &str) -> Element {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' from='{}' to='{}'>{jingle}</iq>",
        alice(),
        bob()
    )
    .parse()
    .unwrap()
}

fn initiate(transport: &str) -> Element {
    set(
        "i1",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s1' \
             initiator='{}'><content creator='initiator' name='0'>\
             <description xmlns='urn:example:app'/>{transport}</content></jingle>",
            alice()
        ),
    )
}

fn drain(m: &mut SessionManager) -> Vec<Element> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn events(m: &mut SessionManager) -> Vec<SessionEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn terminate_reason(stanza: &Element) -> Option<String> {
    let jingle = stanza.get_child("jingle", "urn:xmpp:jingle:1")?;
    (jingle.attr("action") == Some("session-terminate")).then(|| {
        let reason = jingle.get_child("reason", "urn:xmpp:jingle:1").unwrap();
        reason.children().next().unwrap().name().to_owned()
    })
}

fn key() -> SessionKey {
    SessionKey {
        peer: alice(),
        sid: "s1".into(),
    }
}

#[test]
fn a_custom_method_is_accepted_in_an_offer() {
    let now = Instant::now();
    let offer = initiate(&format!("<transport xmlns='{CUSTOM_NS}' port='9'/>"));

    // Unknown: acknowledged, then declined with <unsupported-transports/> (XEP-0166 §6.3.3).
    let mut plain = manager(TransportRegistry::default());
    assert!(plain.handle_stanza(&offer, now));
    let out = drain(&mut plain);
    assert_eq!(iq_type(&out[0]), Some(IqType::Result));
    assert_eq!(
        terminate_reason(&out[1]).as_deref(),
        Some("unsupported-transports")
    );

    // Registered: offered to the application, transport kept for it.
    let mut m = manager(TransportRegistry::default().with(CustomMethod));
    assert!(m.handle_stanza(&offer, now));
    let out = drain(&mut m);
    assert_eq!(out.len(), 1);
    assert_eq!(iq_type(&out[0]), Some(IqType::Result));
    let evs = events(&mut m);
    let [SessionEvent::Incoming { contents, .. }] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    let t = contents[0].transport.as_ref().unwrap();
    assert_eq!(t.ns(), CUSTOM_NS);
    assert!(matches!(t, Transport::Other(_)));

    // Its own checks apply: an offer it refuses is a <bad-request/>, no session.
    let mut m = manager(TransportRegistry::default().with(CustomMethod));
    let bad = initiate(&format!("<transport xmlns='{CUSTOM_NS}'/>"));
    assert!(m.handle_stanza(&bad, now));
    let out = drain(&mut m);
    assert_eq!(iq_type(&out[0]), Some(IqType::Error));
    assert!(m.sessions().next().is_none());
}

#[test]
fn the_opaque_method_keeps_what_extra_transports_kept() {
    let now = Instant::now();
    let registry = TransportRegistry::default().with(OpaqueMethod::new(CUSTOM_NS));
    let mut m = manager(registry);
    let offer = initiate(&format!("<transport xmlns='{CUSTOM_NS}'><x/></transport>"));
    assert!(m.handle_stanza(&offer, now));
    assert_eq!(drain(&mut m).len(), 1);
    assert!(matches!(
        events(&mut m).as_slice(),
        [SessionEvent::Incoming { .. }]
    ));
}

#[test]
fn without_ibb_in_the_registry_there_is_no_fallback() {
    let now = Instant::now();
    let ice_offer = Transport::IceUdp(ice()).to_element();
    let offer = initiate(&String::from(&ice_offer));

    let mut with_ibb = manager(TransportRegistry::default());
    assert!(with_ibb.handle_stanza(&offer, now));
    assert_eq!(
        with_ibb
            .fallback_transport(&key(), "0")
            .map(|m| m.namespace()),
        Some(NS_JINGLE_IBB)
    );
    assert!(with_ibb.fallback_transport(&key(), "nope").is_none());

    let mut registry = TransportRegistry::default();
    registry.remove(NS_JINGLE_IBB);
    let mut m = manager(registry);
    assert!(m.handle_stanza(&offer, now));
    drain(&mut m);
    events(&mut m);
    assert!(m.fallback_transport(&key(), "0").is_none());

    // The peer's IBB proposal is rejected (XEP-0166 §7.2.15 transport-reject), the content
    // keeps its transport.
    let replace = set(
        "r1",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='transport-replace' sid='s1'>\
             <content creator='initiator' name='0'>{}</content></jingle>",
            String::from(&ibb().to_element())
        ),
    );
    assert!(m.handle_stanza(&replace, now));
    let out = drain(&mut m);
    assert_eq!(iq_type(&out[0]), Some(IqType::Result));
    let jingle = out[1].get_child("jingle", "urn:xmpp:jingle:1").unwrap();
    assert_eq!(jingle.attr("action"), Some("transport-reject"));
    assert!(events(&mut m).is_empty());
    let kept = m.contents(&key()).unwrap();
    assert_eq!(kept[0].transport.as_ref().unwrap().ns(), NS_ICE_UDP);

    // An offer of IBB alone is declined.
    let mut registry = TransportRegistry::default();
    registry.remove(NS_JINGLE_IBB);
    let mut m = manager(registry);
    assert!(m.handle_stanza(&initiate(&String::from(&ibb().to_element())), now));
    let out = drain(&mut m);
    assert_eq!(
        terminate_reason(&out[1]).as_deref(),
        Some("unsupported-transports")
    );
}
