//! XEP-0176 transport mapping: fixtures, round trips, every error case, and a property test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use jingle_ice::ice::{Candidate, CandidateType, Credentials};
use jingle_ice::jingle::transports::ice_udp::{NS_DTLS, NS_ICE_UDP};
use jingle_ice::jingle::{
    CandidateError, IceUdpCandidate, IceUdpTransport, Skipped, TransportError, TransportLimits,
};
use minidom::Element;
use proptest::prelude::*;

const DINO: &str = include_str!("../xep/fixtures/dino-libnice-style.xml");
const CONVERSATIONS: &str = include_str!("../xep/fixtures/conversations-style.xml");

fn parse(xml: &str) -> Result<IceUdpTransport, TransportError> {
    let el: Element = xml.parse().unwrap();
    IceUdpTransport::from_element(&el, TransportLimits::default())
}

fn transport_with(candidate_attrs: &str) -> String {
    format!(
        "<transport xmlns='{NS_ICE_UDP}' ufrag='abcd' pwd='abcdefghijklmnopqrstuv'>\
         <candidate {candidate_attrs}/></transport>"
    )
}

const GOOD: &[(&str, &str)] = &[
    ("component", "1"),
    ("foundation", "1"),
    ("generation", "0"),
    ("id", "c1"),
    ("ip", "192.0.2.1"),
    ("network", "0"),
    ("port", "5000"),
    ("priority", "2130706431"),
    ("protocol", "udp"),
    ("type", "host"),
];

/// A candidate with `GOOD` attributes, `name` replaced by `value` (or removed when `None`).
fn candidate_with(name: &str, value: Option<&str>) -> String {
    GOOD.iter()
        .filter_map(|&(k, v)| {
            if k == name {
                value.map(|v| format!("{k}='{v}'"))
            } else {
                Some(format!("{k}='{v}'"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn candidate_error(xml: &str) -> CandidateError {
    match parse(xml) {
        Err(TransportError::Candidate { index: 0, error }) => error,
        other => panic!("expected a candidate error, got {other:?}"),
    }
}

#[test]
fn dino_fixture_reads_host_srflx_relay() {
    let t = parse(DINO).unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("Qw3r"));
    assert_eq!(
        t.credentials(),
        Some(Credentials::new("Qw3r", "Zx8cVb2nM4lK6jH0gF2dS9aP"))
    );
    assert_eq!(t.skipped, Skipped::default());
    assert!(t.fingerprint.is_none());
    let kinds: Vec<_> = t.candidates.iter().map(|c| c.candidate.kind).collect();
    assert_eq!(
        kinds,
        [
            CandidateType::Host,
            CandidateType::Host,
            CandidateType::ServerReflexive,
            CandidateType::Relayed
        ]
    );
    let v6 = &t.candidates[1];
    assert_eq!(
        v6.candidate.address,
        "[2001:db8:5::17]:40513".parse().unwrap()
    );
    assert_eq!(v6.network, 2);
    assert_eq!(v6.id, "a9j3mnbtu2");
    let srflx = &t.candidates[2].candidate;
    assert_eq!(
        srflx.related_address,
        Some("192.168.20.17:40512".parse().unwrap())
    );
    assert_eq!(srflx.priority, 1694498815);
    assert_eq!(srflx.foundation, "3");
    assert_eq!(srflx.component, 1);
    // Round trip through our own rendering.
    let again = IceUdpTransport::from_element(&t.to_element(), TransportLimits::default()).unwrap();
    assert_eq!(again, t);
}

#[test]
fn conversations_fixture_keeps_fingerprint_and_skips_tcp_and_mdns() {
    let t = parse(CONVERSATIONS).unwrap();
    assert_eq!(
        t.skipped,
        Skipped {
            non_udp: 1,
            mdns: 1,
            over_limit: 0,
        }
    );
    assert_eq!(t.candidates.len(), 2);
    assert_eq!(t.candidates[0].candidate.foundation, "3322110044");
    assert_eq!(t.candidates[1].id, "2");
    let fp = t.fingerprint.as_ref().unwrap();
    assert_eq!(fp.hash(), "sha-256");
    assert_eq!(fp.setup, jingle_ice::jingle::Setup::Actpass);
    assert!(fp.to_element().is("fingerprint", NS_DTLS));
    assert!(fp.hex().starts_with("5E:2B"));
    // The fingerprint survives a round trip.
    let again = IceUdpTransport::from_element(&t.to_element(), TransportLimits::default()).unwrap();
    assert_eq!(again.fingerprint, t.fingerprint);
    assert_eq!(again.candidates, t.candidates);
}

#[test]
fn unknown_attributes_and_children_are_tolerated() {
    let xml = format!(
        "<transport xmlns='{NS_ICE_UDP}' ufrag='abcd' pwd='abcdefghijklmnopqrstuv' x-new='1'>\
         <remote-candidate component='1' ip='192.0.2.9' port='1'/>\
         <something xmlns='urn:example:other'><deep/></something>\
         <candidate {} tcptype='passive' x-foo='bar'/></transport>",
        candidate_with("", None)
    );
    let t = parse(&xml).unwrap();
    assert_eq!(t.candidates.len(), 1);
}

#[test]
fn transport_without_credentials_or_candidates_is_fine() {
    let t = parse(&format!("<transport xmlns='{NS_ICE_UDP}'/>")).unwrap();
    assert_eq!(t.ufrag, None);
    assert_eq!(t.pwd, None);
    assert_eq!(t.credentials(), None);
    assert!(t.candidates.is_empty());
}

#[test]
fn network_defaults_to_zero_when_absent() {
    let t = parse(&transport_with(&candidate_with("network", None))).unwrap();
    assert_eq!(t.candidates[0].network, 0);
}

#[test]
fn uppercase_udp_and_mdns_are_recognised() {
    let t = parse(&transport_with(&candidate_with("protocol", Some("UDP")))).unwrap();
    assert_eq!(t.candidates.len(), 1);
    let t = parse(&transport_with(&candidate_with("ip", Some("abc.LOCAL")))).unwrap();
    assert_eq!(t.skipped.mdns, 1);
    assert!(t.candidates.is_empty());
}

#[test]
fn wrong_namespace_or_name_is_rejected() {
    let err = parse("<transport xmlns='urn:xmpp:jingle:transports:raw-udp:1'/>").unwrap_err();
    assert!(
        matches!(err, TransportError::NotIceUdp { ref ns, .. } if ns == "urn:xmpp:jingle:transports:raw-udp:1")
    );
    let err = parse(&format!("<candidate xmlns='{NS_ICE_UDP}'/>")).unwrap_err();
    assert!(matches!(err, TransportError::NotIceUdp { ref name, .. } if name == "candidate"));
}

#[test]
fn candidates_in_another_namespace_are_ignored() {
    let xml = format!(
        "<transport xmlns='{NS_ICE_UDP}'><candidate xmlns='urn:example' {}/></transport>",
        candidate_with("", None)
    );
    assert!(parse(&xml).unwrap().candidates.is_empty());
}

#[test]
fn invalid_ufrag_and_pwd_are_rejected() {
    for ufrag in ["abc", "ab cd", "abc-", &"a".repeat(257)] {
        let xml = format!("<transport xmlns='{NS_ICE_UDP}' ufrag='{ufrag}'/>");
        assert_eq!(
            parse(&xml).unwrap_err(),
            TransportError::InvalidUfrag(ufrag.to_owned())
        );
    }
    for pwd in [
        "abcdefghijklmnopqrstu",
        "abcdefghijklmnopqrstu!",
        &"a".repeat(257),
    ] {
        let xml = format!("<transport xmlns='{NS_ICE_UDP}' pwd='{pwd}'/>");
        let err = parse(&xml).unwrap_err();
        assert_eq!(err, TransportError::InvalidPwd);
        assert!(!err.to_string().contains(pwd));
    }
    // Bounds are inclusive.
    let ok = format!(
        "<transport xmlns='{NS_ICE_UDP}' ufrag='{}' pwd='{}'/>",
        "a".repeat(256),
        "+/".repeat(128)
    );
    parse(&ok).unwrap();
}

#[test]
fn every_missing_required_attribute_is_reported() {
    for name in [
        "component",
        "foundation",
        "generation",
        "id",
        "ip",
        "port",
        "priority",
        "protocol",
        "type",
    ] {
        assert_eq!(
            candidate_error(&transport_with(&candidate_with(name, None))),
            CandidateError::MissingAttribute(match name {
                "component" => "component",
                "foundation" => "foundation",
                "generation" => "generation",
                "id" => "id",
                "ip" => "ip",
                "port" => "port",
                "priority" => "priority",
                "protocol" => "protocol",
                _ => "type",
            }),
            "{name}"
        );
    }
}

#[test]
fn every_invalid_attribute_is_reported() {
    let cases: &[(&str, &str)] = &[
        ("component", "0"),
        ("component", "257"),
        ("component", "x"),
        ("foundation", "a-b"),
        ("foundation", &"f".repeat(33)),
        ("generation", "256"),
        ("generation", "-1"),
        ("id", "has space"),
        ("id", &"i".repeat(257)),
        ("ip", "not-an-ip"),
        ("ip", "300.1.1.1"),
        ("network", "256"),
        ("port", "65536"),
        ("priority", "0"),
        ("priority", "4294967296"),
        ("type", "stun"),
    ];
    for &(name, value) in cases {
        let err = candidate_error(&transport_with(&candidate_with(name, Some(value))));
        assert!(
            matches!(&err, CandidateError::InvalidAttribute { name: n, value: v } if *n == name && v == value),
            "{name}={value}: {err:?}"
        );
    }
    // An empty id is present but invalid.
    assert!(matches!(
        candidate_error(&transport_with(&candidate_with("id", Some("")))),
        CandidateError::InvalidAttribute { name: "id", .. }
    ));
}

#[test]
fn related_address_needs_both_halves_and_valid_values() {
    let base = candidate_with("type", Some("srflx"));
    assert_eq!(
        candidate_error(&transport_with(&format!("{base} rel-addr='10.0.0.1'"))),
        CandidateError::HalfRelatedAddress
    );
    assert_eq!(
        candidate_error(&transport_with(&format!("{base} rel-port='1'"))),
        CandidateError::HalfRelatedAddress
    );
    assert!(matches!(
        candidate_error(&transport_with(&format!(
            "{base} rel-addr='x' rel-port='1'"
        ))),
        CandidateError::InvalidAttribute {
            name: "rel-addr",
            ..
        }
    ));
    assert!(matches!(
        candidate_error(&transport_with(&format!(
            "{base} rel-addr='10.0.0.1' rel-port='70000'"
        ))),
        CandidateError::InvalidAttribute {
            name: "rel-port",
            ..
        }
    ));
}

#[test]
fn error_index_points_at_the_bad_candidate() {
    let xml = format!(
        "<transport xmlns='{NS_ICE_UDP}'><candidate {}/><candidate {}/></transport>",
        candidate_with("", None),
        candidate_with("port", Some("x"))
    );
    assert!(matches!(
        parse(&xml).unwrap_err(),
        TransportError::Candidate { index: 1, .. }
    ));
}

/// Past the limit, `<candidate/>` children are counted and not read: the transport is still
/// usable with the first ones (XEP-0166 gives no error for many candidates; `xep/0176.md`).
#[test]
fn candidates_past_the_limit_are_counted_not_read() {
    let one = format!("<candidate {}/>", candidate_with("", None));
    // Past the limit even an invalid candidate is not an error: it is not read.
    let bad = format!("<candidate {}/>", candidate_with("port", Some("x")));
    let xml = format!(
        "<transport xmlns='{NS_ICE_UDP}'>{}{}{}</transport>",
        one.repeat(2),
        bad,
        one
    );
    let el: Element = xml.parse().unwrap();
    let limits = TransportLimits { max_candidates: 2 };
    let t = IceUdpTransport::from_element(&el, limits).unwrap();
    assert_eq!(t.candidates.len(), 2);
    assert_eq!(t.skipped.over_limit, 2);
    // Before the limit a bad candidate is still the whole element's error.
    let bad_first: Element = format!("<transport xmlns='{NS_ICE_UDP}'>{bad}{one}</transport>")
        .parse()
        .unwrap();
    assert!(matches!(
        IceUdpTransport::from_element(&bad_first, limits),
        Err(TransportError::Candidate { index: 0, .. })
    ));
    // Candidates we cannot use do not count towards the limit.
    let tcp = format!("<candidate {}/>", candidate_with("protocol", Some("tcp")));
    let mixed: Element = format!(
        "<transport xmlns='{NS_ICE_UDP}'>{tcp}{}</transport>",
        one.repeat(3)
    )
    .parse()
    .unwrap();
    let t = IceUdpTransport::from_element(&mixed, limits).unwrap();
    assert_eq!(
        (t.candidates.len(), t.skipped.non_udp, t.skipped.over_limit),
        (2, 1, 1)
    );
    let at_limit: Element = format!(
        "<transport xmlns='{NS_ICE_UDP}'>{}</transport>",
        one.repeat(2)
    )
    .parse()
    .unwrap();
    let t = IceUdpTransport::from_element(&at_limit, limits).unwrap();
    assert_eq!((t.candidates.len(), t.skipped.over_limit), (2, 0));
    // The default limit (64) applies through TryFrom.
    let many: Element = format!(
        "<transport xmlns='{NS_ICE_UDP}'>{}</transport>",
        one.repeat(65)
    )
    .parse()
    .unwrap();
    let t = IceUdpTransport::try_from(&many).unwrap();
    assert_eq!((t.candidates.len(), t.skipped.over_limit), (64, 1));
}

#[test]
fn built_transport_renders_the_xep_attributes() {
    let creds = Credentials::new("abcd", "abcdefghijklmnopqrstuv");
    let c = Candidate::remote(
        "7",
        1,
        1694498815,
        "203.0.113.5:4000".parse().unwrap(),
        CandidateType::ServerReflexive,
        Some("10.0.0.2:5000".parse().unwrap()),
    );
    let mut ic = IceUdpCandidate::new(c, "x1");
    ic.generation = 3;
    ic.network = 2;
    let t = IceUdpTransport::new(&creds, vec![ic]);
    let el = Element::from(&t);
    assert!(el.is("transport", NS_ICE_UDP));
    assert_eq!(el.attr("ufrag"), Some("abcd"));
    assert_eq!(el.attr("pwd"), Some("abcdefghijklmnopqrstuv"));
    let cand = el.get_child("candidate", NS_ICE_UDP).unwrap();
    for (k, v) in [
        ("component", "1"),
        ("foundation", "7"),
        ("generation", "3"),
        ("id", "x1"),
        ("ip", "203.0.113.5"),
        ("network", "2"),
        ("port", "4000"),
        ("priority", "1694498815"),
        ("protocol", "udp"),
        ("rel-addr", "10.0.0.2"),
        ("rel-port", "5000"),
        ("type", "srflx"),
    ] {
        assert_eq!(cand.attr(k), Some(v), "{k}");
    }
    // Serialised and parsed back as text, too.
    let mut bytes = Vec::new();
    el.write_to(&mut bytes).unwrap();
    let reparsed = parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
    assert_eq!(reparsed, t);
}

fn ice_string(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9+/]{{{min},{max}}}")).unwrap()
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ]
}

fn arb_kind() -> impl Strategy<Value = CandidateType> {
    prop_oneof![
        Just(CandidateType::Host),
        Just(CandidateType::PeerReflexive),
        Just(CandidateType::ServerReflexive),
        Just(CandidateType::Relayed),
    ]
}

fn arb_candidate() -> impl Strategy<Value = IceUdpCandidate> {
    (
        ice_string(1, 32),
        1u16..=256,
        1u32..,
        arb_ip(),
        any::<u16>(),
        arb_kind(),
        proptest::option::of((arb_ip(), any::<u16>())),
        "[A-Za-z0-9_.:-]{1,40}",
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(
            |(foundation, component, priority, ip, port, kind, rel, id, generation, network)| {
                IceUdpCandidate {
                    candidate: Candidate::remote(
                        foundation,
                        component,
                        priority,
                        SocketAddr::new(ip, port),
                        kind,
                        rel.map(|(a, p)| SocketAddr::new(a, p)),
                    ),
                    id,
                    generation,
                    network,
                }
            },
        )
}

proptest! {
    #[test]
    fn any_valid_transport_round_trips(
        ufrag in proptest::option::of(ice_string(4, 256)),
        pwd in proptest::option::of(ice_string(22, 256)),
        candidates in proptest::collection::vec(arb_candidate(), 0..=64),
    ) {
        let t = IceUdpTransport {
            ufrag,
            pwd,
            candidates,
            fingerprint: None,
            skipped: Skipped::default(),
        };
        let el = t.to_element();
        let back = IceUdpTransport::from_element(&el, TransportLimits::default()).unwrap();
        prop_assert_eq!(&back, &t);
        // Through serialised text as well.
        let mut bytes = Vec::new();
        el.write_to(&mut bytes).unwrap();
        let reparsed: Element = std::str::from_utf8(&bytes).unwrap().parse().unwrap();
        let back = IceUdpTransport::from_element(&reparsed, TransportLimits::default()).unwrap();
        prop_assert_eq!(back, t);
    }
}

#[test]
fn prefixed_namespace_is_the_same_element() {
    let xml = format!(
        "<ice:transport xmlns:ice='{NS_ICE_UDP}' ufrag='abcd'><ice:candidate {}/></ice:transport>",
        candidate_with("", None)
    );
    let t = parse(&xml).unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("abcd"));
    assert_eq!(t.candidates.len(), 1);
}

#[test]
fn ice_candidates_are_remote_candidates_for_the_agent() {
    let t = parse(DINO).unwrap();
    let cands: Vec<&Candidate> = t.ice_candidates().collect();
    assert_eq!(cands.len(), 4);
    // A remote candidate's base is its own address (RFC 8445 §5.1.1.1 applies to local ones).
    assert!(cands.iter().all(|c| c.base == c.address));
}

#[test]
fn local_candidate_renders_its_address_not_its_base() {
    let mut c = Candidate::remote(
        "9",
        1,
        1694498815,
        "203.0.113.5:4000".parse().unwrap(),
        CandidateType::ServerReflexive,
        Some("10.0.0.2:5000".parse().unwrap()),
    );
    c.base = "10.0.0.2:5000".parse().unwrap();
    let el = IceUdpCandidate::new(c, "l1").to_element();
    assert_eq!(el.attr("ip"), Some("203.0.113.5"));
    assert_eq!(el.attr("port"), Some("4000"));
}
