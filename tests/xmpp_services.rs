//! XEP-0215 external services and XEP-0030/XEP-0115 disco: fixtures from Prosody and the XEPs,
//! tolerance of damaged input, the mapping to ICE servers, and the stanzas we answer with.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jid::{BareJid, Jid};
use jingle_ice::turn::{TurnCredentials, TurnTransport};
use jingle_ice::xmpp::disco::{
    answer_info_query, caps_ver, info_query, parse_info_result, DiscoError, Features, Identity,
    NS_CAPS, NS_DISCO_INFO, NS_ICE_UDP, NS_JINGLE,
};
use jingle_ice::xmpp::extdisco::{
    credentials_query, parse_services, plan, push_ack, refresh_at, resolve, services_from_response,
    services_of_type_query, services_query, ExtdiscoError, ExternalService, IceServerRole,
    ServiceAction, ServiceError, ServiceTransport, ServiceType, Unusable, NS_EXTDISCO,
};
use jingle_ice::xmpp::{NS_CLIENT, NS_STANZAS};
use minidom::Element;

const PROSODY: &str = include_str!("../xep/fixtures/0215-prosody-services.xml");
const EJABBERD: &str = include_str!("../xep/fixtures/0215-ejabberd-services.xml");
const TURNS: &str = include_str!("../xep/fixtures/0215-turns.xml");
const GARBAGE: &str = include_str!("../xep/fixtures/0215-garbage.xml");
const UNAVAILABLE: &str = include_str!("../xep/fixtures/0215-unavailable.xml");
const PEER_INFO: &str = include_str!("../xep/fixtures/0030-peer-info.xml");
const XEP0115_COMPLEX: &str = include_str!("../xep/fixtures/0030-xep0115-complex.xml");

/// Parses a fixture, dropping the leading XML comment that documents it.
fn fixture(xml: &str) -> Element {
    let start = xml.find("-->").map_or(0, |i| i + 3);
    xml[start..].trim().parse().unwrap()
}

fn secs(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// 2025-01-02T00:00:00Z, the expiry in the Prosody fixtures.
const EXPIRY: u64 = 1_735_776_000;

// --- XEP-0215 -------------------------------------------------------------------------------

#[test]
fn services_query_is_an_iq_get_to_the_server() {
    let to: BareJid = "example.test".parse().unwrap();
    let q = services_query("q1", &to);
    assert!(q.is("iq", NS_CLIENT));
    assert_eq!(q.attr("type"), Some("get"));
    assert_eq!(q.attr("id"), Some("q1"));
    assert_eq!(q.attr("to"), Some("example.test"));
    let services = q.get_child("services", NS_EXTDISCO).unwrap();
    assert_eq!(services.children().count(), 0);
    assert_eq!(services.attr("type"), None);

    let q = services_of_type_query("q2", &to, &ServiceType::Turn);
    assert_eq!(
        q.get_child("services", NS_EXTDISCO).unwrap().attr("type"),
        Some("turn")
    );
    // The rendered text parses back to the same element.
    let text = String::from(&q);
    assert_eq!(text.parse::<Element>().unwrap(), q);
}

#[test]
fn prosody_0_12_services_are_read() {
    let parsed = parse_services(&fixture(PROSODY)).unwrap();
    assert!(parsed.skipped.is_empty());
    let s = &parsed.services;
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].kind, ServiceType::Stun);
    assert_eq!(s[0].transport, Some(ServiceTransport::Udp));
    assert_eq!(s[0].host, "turn.example.test");
    assert_eq!(s[0].port, Some(3478));
    assert_eq!(s[0].username, None);
    assert!(!s[0].restricted);
    assert_eq!(s[0].expires, None);
    assert_eq!(s[1].transport, Some(ServiceTransport::Tcp));
    for turn in &s[2..] {
        assert_eq!(turn.kind, ServiceType::Turn);
        assert_eq!(turn.username.as_deref(), Some("1735776000"));
        assert!(turn.restricted);
        assert!(!turn.needs_credentials());
        assert_eq!(turn.expires, Some(secs(EXPIRY)));
        // The password is what coturn's use-auth-secret expects for that username.
        let expected = TurnCredentials::time_limited(b"lab-secret", EXPIRY, None);
        assert_eq!(
            TurnCredentials::long_term(
                turn.username.clone().unwrap(),
                turn.password.clone().unwrap()
            ),
            expected
        );
    }
    assert_eq!(s[2].transport, Some(ServiceTransport::Udp));
    assert_eq!(s[3].transport, Some(ServiceTransport::Tcp));
}

#[test]
fn prosody_services_map_to_stun_and_udp_and_tcp_turn() {
    let services = parse_services(&fixture(PROSODY)).unwrap().services;
    let p = plan(&services);
    // STUN over TCP is of no use to an ICE-UDP agent.
    assert_eq!(
        p.unusable,
        vec![(1, Unusable::Transport(ServiceTransport::Tcp))]
    );
    assert_eq!(p.servers.len(), 3);
    assert_eq!(p.servers[0].role, IceServerRole::Stun);
    let creds = TurnCredentials::time_limited(b"lab-secret", EXPIRY, None);
    assert_eq!(
        p.servers[1].role,
        IceServerRole::Turn {
            transport: TurnTransport::Udp,
            credentials: creds.clone()
        }
    );
    assert_eq!(
        p.servers[2].role,
        IceServerRole::Turn {
            transport: TurnTransport::Tcp,
            credentials: creds.clone()
        }
    );
    assert!(p.servers.iter().all(|s| s.port == 3478));
    // A host name: nothing is resolved without I/O.
    let (done, todo) = p.split_literal();
    assert!(done.stun.is_empty() && done.turn.is_empty());
    assert_eq!(todo.len(), 3);

    // What the driver does once the name resolves.
    let addr: SocketAddr = "192.0.2.10:3478".parse().unwrap();
    let mut servers = jingle_ice::xmpp::extdisco::IceServers::default();
    for s in &p.servers {
        servers.add(s, addr);
    }
    assert_eq!(servers.stun, vec![addr]);
    assert_eq!(servers.turn.len(), 2);
    assert_eq!(servers.turn[0].transport, TurnTransport::Udp);
    assert_eq!(servers.turn[1].transport, TurnTransport::Tcp);
    assert!(servers
        .turn
        .iter()
        .all(|t| t.server == addr && t.credentials == creds && t.server_name.is_none()));
}

#[test]
fn ejabberd_23_01_services_map_to_stun_and_udp_and_tcp_turn_on_the_literal_address() {
    let parsed = parse_services(&fixture(EJABBERD)).unwrap();
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    let s = &parsed.services;
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].kind, ServiceType::Stun);
    assert!(!s[0].restricted, "restricted='false'");
    for turn in &s[1..] {
        assert_eq!(turn.kind, ServiceType::Turn);
        assert!(turn.restricted, "restricted='true'");
        assert!(!turn.needs_credentials(), "ejabberd sends them inline");
        assert_eq!(turn.expires, Some(secs(1_796_392_189)));
    }
    // The credentials are coturn's use-auth-secret ones for the lab's secret.
    let creds = TurnCredentials::time_limited(
        b"e855798519a6b601b45b056d1a58a397",
        1_796_392_189,
        Some("24a6c6a4714096eb"),
    );
    let p = plan(s);
    assert!(p.unusable.is_empty(), "{:?}", p.unusable);
    let (done, todo) = p.split_literal();
    assert!(todo.is_empty(), "IP-literal hosts need no lookup");
    let addr: SocketAddr = "203.0.113.10:3478".parse().unwrap();
    assert_eq!(done.stun, vec![addr]);
    assert_eq!(done.turn.len(), 2);
    assert_eq!(done.turn[0].transport, TurnTransport::Udp);
    assert_eq!(done.turn[1].transport, TurnTransport::Tcp);
    assert!(done
        .turn
        .iter()
        .all(|t| t.server == addr && t.credentials == creds));
}

#[test]
fn refresh_is_five_minutes_before_prosody_expiry() {
    let services = parse_services(&fixture(PROSODY)).unwrap().services;
    // Fetched at 2025-01-01T00:00:00Z with Prosody's default ttl of a day.
    let fetched = secs(EXPIRY - 86_400);
    assert_eq!(refresh_at(&services, fetched), Some(secs(EXPIRY - 300)));
    // Already expired: refresh now.
    assert_eq!(
        refresh_at(&services, secs(EXPIRY + 1)),
        Some(secs(EXPIRY + 1))
    );
    // The earliest expiry wins.
    let mut early = services[2].clone();
    early.expires = Some(secs(EXPIRY - 3600));
    let mut all = services.clone();
    all.push(early);
    assert_eq!(refresh_at(&all, fetched), Some(secs(EXPIRY - 3600 - 300)));
}

#[test]
fn turns_services_map_to_tls_or_need_credentials() {
    let parsed = parse_services(&fixture(TURNS)).unwrap();
    assert!(parsed.skipped.is_empty());
    let s = &parsed.services;
    assert_eq!(s[1].kind, ServiceType::Turns);
    assert_eq!(s[2].kind, ServiceType::Turns);
    assert!(s[2].restricted, "restricted='true' is an xs:boolean");
    assert_eq!(s[2].name.as_deref(), Some("Lab relay (TLS)"));
    assert_eq!(s[2].port, None);
    assert_eq!(s[2].port_or_default(), Some(5349));

    let p = plan(s);
    // Prosody 0.12.3's turns service has no credentials and is not restricted.
    assert_eq!(p.unusable, vec![(1, Unusable::NoCredentials)]);
    assert_eq!(p.servers.len(), 2);
    let (servers, todo) = p.split_literal();
    assert!(todo.is_empty(), "both hosts are IP literals");
    assert_eq!(servers.stun, vec!["192.0.2.10:3478".parse().unwrap()]);
    assert_eq!(servers.turn.len(), 1);
    let tls = &servers.turn[0];
    assert_eq!(tls.transport, TurnTransport::Tls);
    assert_eq!(tls.server, "192.0.2.10:5349".parse().unwrap());
    assert_eq!(tls.server_name.as_deref(), Some("192.0.2.10"));
    assert_eq!(tls.credentials.username(), "1735776000:alice");
}

#[test]
fn tls_server_name_is_the_service_host_name() {
    let mut s = ExternalService::new(ServiceType::Turns, "turn.example.test");
    s.username = Some("u".into());
    s.password = Some("p".into());
    let p = plan(&[s]);
    let mut servers = jingle_ice::xmpp::extdisco::IceServers::default();
    servers.add(&p.servers[0], "192.0.2.1:5349".parse().unwrap());
    assert_eq!(
        servers.turn[0].server_name.as_deref(),
        Some("turn.example.test")
    );
}

#[test]
fn damaged_services_are_skipped_one_by_one() {
    let parsed = parse_services(&fixture(GARBAGE)).unwrap();
    let skipped: Vec<(usize, ServiceError)> = parsed
        .skipped
        .iter()
        .map(|s| (s.index, s.error.clone()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (
                1,
                ServiceError::InvalidAttribute {
                    name: "port",
                    value: "99999".into()
                }
            ),
            (
                2,
                ServiceError::InvalidAttribute {
                    name: "expires",
                    value: "tomorrow".into()
                }
            ),
            (3, ServiceError::MissingAttribute("host")),
            (
                4,
                ServiceError::InvalidAttribute {
                    name: "restricted",
                    value: "yes".into()
                }
            ),
            (9, ServiceError::MissingAttribute("type")),
        ]
    );
    let s = &parsed.services;
    assert_eq!(s.len(), 5);
    assert_eq!(s[0].host, "stun.example.test");
    assert_eq!(s[1].kind, ServiceType::Other("ftp".into()));
    assert_eq!(s[2].transport, Some(ServiceTransport::Other("sctp".into())));
    assert_eq!(s[3].port, None);
    assert_eq!(s[3].transport, None);
    assert!(s[4].needs_credentials());

    let p = plan(s);
    assert_eq!(
        p.unusable,
        vec![
            (1, Unusable::OtherType),
            (
                2,
                Unusable::Transport(ServiceTransport::Other("sctp".into()))
            ),
            (4, Unusable::NeedsCredentials),
        ]
    );
    assert_eq!(p.servers.len(), 2);
    assert_eq!(p.servers[0].role, IceServerRole::Stun);
    assert_eq!(p.servers[1].port, 3478);
    assert!(matches!(
        p.servers[1].role,
        IceServerRole::Turn {
            transport: TurnTransport::Udp,
            ..
        }
    ));
}

#[test]
fn too_many_services_are_bounded() {
    let mut xml = format!("<services xmlns='{NS_EXTDISCO}'>");
    for i in 0..100 {
        xml.push_str(&format!(
            "<service type='stun' host='192.0.2.{}' port='3478'/>",
            i % 250
        ));
    }
    xml.push_str("</services>");
    let parsed = parse_services(&xml.parse().unwrap()).unwrap();
    assert_eq!(parsed.services.len(), 64);
    assert_eq!(parsed.skipped.len(), 36);
    assert!(parsed
        .skipped
        .iter()
        .all(|s| s.error == ServiceError::TooMany));
}

#[test]
fn credentials_query_names_the_restricted_service() {
    let parsed = parse_services(&fixture(GARBAGE)).unwrap();
    let restricted = &parsed.services[4];
    assert!(restricted.needs_credentials());
    let to: BareJid = "example.test".parse().unwrap();
    let q = credentials_query("c1", &to, restricted);
    assert_eq!(q.attr("type"), Some("get"));
    let creds = q.get_child("credentials", NS_EXTDISCO).unwrap();
    let wanted: Vec<&Element> = creds.children().collect();
    assert_eq!(wanted.len(), 1);
    assert!(wanted[0].is("service", NS_EXTDISCO));
    assert_eq!(wanted[0].attr("host"), Some("turn.example.test"));
    assert_eq!(wanted[0].attr("type"), Some("turn"));
    assert_eq!(wanted[0].attr("port"), Some("3478"));
    assert_eq!(wanted[0].attr("username"), None);

    // The server's answer (XEP-0215 §3.3 example shape) is read like a services result.
    let answer: Element = format!(
        "<iq xmlns='jabber:client' type='result' id='c1' from='example.test'>\
         <credentials xmlns='{NS_EXTDISCO}'>\
         <service host='turn.example.test' type='turn' port='3478' transport='udp' \
          username='1735776000' password='cGFzcw==' expires='2025-01-02T00:00:00Z' restricted='1'/>\
         </credentials></iq>"
    )
    .parse()
    .unwrap();
    let got = services_from_response(&answer).unwrap().services;
    assert_eq!(got.len(), 1);
    assert!(!got[0].needs_credentials());
    assert_eq!(plan(&got).servers.len(), 1);
}

#[test]
fn absent_service_means_no_services() {
    let el = fixture(UNAVAILABLE);
    assert_eq!(
        parse_services(&el),
        Err(ExtdiscoError::IqError {
            condition: "service-unavailable".into()
        })
    );
    let none = services_from_response(&el).unwrap();
    assert!(none.services.is_empty() && none.skipped.is_empty());

    let fni: Element = format!(
        "<iq xmlns='jabber:client' type='error' id='x'><error type='cancel'>\
         <feature-not-implemented xmlns='{NS_STANZAS}'/></error></iq>"
    )
    .parse()
    .unwrap();
    assert!(services_from_response(&fni).unwrap().services.is_empty());

    // A refusal is still an error the caller sees.
    let forbidden: Element = format!(
        "<iq xmlns='jabber:client' type='error' id='x'><error type='auth'>\
         <forbidden xmlns='{NS_STANZAS}'/></error></iq>"
    )
    .parse()
    .unwrap();
    assert_eq!(
        services_from_response(&forbidden),
        Err(ExtdiscoError::IqError {
            condition: "forbidden".into()
        })
    );
    // A result without payload, or something else entirely.
    let empty: Element = "<iq xmlns='jabber:client' type='result' id='x'/>"
        .parse()
        .unwrap();
    assert_eq!(
        services_from_response(&empty),
        Err(ExtdiscoError::MissingPayload)
    );
    let other: Element = "<message xmlns='jabber:client'/>".parse().unwrap();
    assert!(matches!(
        services_from_response(&other),
        Err(ExtdiscoError::Unexpected { .. })
    ));
}

#[test]
fn pushes_are_acked_and_removals_dropped_from_the_plan() {
    // XEP-0215 §3.2 push (its example uses action='delete'; the attribute table says 'remove').
    let push: Element = format!(
        "<iq xmlns='jabber:client' type='set' id='push1' from='example.test'>\
         <services xmlns='{NS_EXTDISCO}' type='turn'>\
         <service action='add' host='192.0.2.2' port='7778' transport='udp' type='turn' \
          username='u' password='p'/>\
         <service action='delete' host='192.0.2.1' port='8889' type='turn'/>\
         <service action='modify' host='192.0.2.3' port='3478' type='turn' username='u' password='q'/>\
         </services></iq>"
    )
    .parse()
    .unwrap();
    let ack = push_ack(&push).unwrap();
    assert_eq!(ack.attr("type"), Some("result"));
    assert_eq!(ack.attr("id"), Some("push1"));
    assert_eq!(ack.attr("to"), Some("example.test"));
    assert_eq!(ack.children().count(), 0);

    let s = parse_services(&push).unwrap().services;
    assert_eq!(
        s.iter().map(|s| s.action).collect::<Vec<_>>(),
        vec![
            Some(ServiceAction::Add),
            Some(ServiceAction::Remove),
            Some(ServiceAction::Modify)
        ]
    );
    let p = plan(&s);
    assert_eq!(p.servers.len(), 2);
    assert!(p.servers.iter().all(|s| s.host != "192.0.2.1"));

    // Not a push.
    assert!(push_ack(&fixture(PROSODY)).is_none());
}

#[test]
fn service_elements_round_trip() {
    let services = parse_services(&fixture(PROSODY)).unwrap().services;
    let mut wrapper = Element::bare("services", NS_EXTDISCO);
    for s in &services {
        wrapper.append_child(s.to_element());
    }
    let text = String::from(&wrapper);
    let again = parse_services(&text.parse().unwrap()).unwrap().services;
    assert_eq!(again, services);
}

#[tokio::test]
async fn resolve_keeps_literals_and_reports_failures() {
    let mut bad = ExternalService::new(ServiceType::Stun, "does-not-exist.invalid");
    bad.port = Some(3478);
    let good = ExternalService::new(ServiceType::Stun, "127.0.0.1");
    let local = ExternalService::new(ServiceType::Stun, "localhost");
    let p = plan(&[bad, good, local]);
    let (servers, errors) = resolve(&p).await;
    assert!(servers.stun.contains(&"127.0.0.1:3478".parse().unwrap()));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].host, "does-not-exist.invalid");
}

// --- XEP-0030 / XEP-0115 --------------------------------------------------------------------

fn our_features() -> Features {
    Features::new(
        Identity::client_bot("jingle-ice test"),
        "https://example.org/jingle-ice",
    )
}

fn disco_get(node: Option<&str>) -> Element {
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    format!(
        "<iq xmlns='jabber:client' type='get' id='d1' from='bob@example.test/phone' \
         to='alice@example.test/lab'><query xmlns='{NS_DISCO_INFO}'{node}/></iq>"
    )
    .parse()
    .unwrap()
}

#[test]
fn disco_info_query_is_answered_with_our_features() {
    let f = our_features();
    let reply = answer_info_query(&disco_get(None), &f).unwrap();
    assert!(reply.is("iq", NS_CLIENT));
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(reply.attr("id"), Some("d1"));
    assert_eq!(reply.attr("to"), Some("bob@example.test/phone"));
    let query = reply.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(query.attr("node"), None);
    let identities: Vec<&Element> = query
        .children()
        .filter(|c| c.is("identity", NS_DISCO_INFO))
        .collect();
    assert_eq!(identities.len(), 1);
    assert_eq!(identities[0].attr("category"), Some("client"));
    assert_eq!(identities[0].attr("type"), Some("bot"));
    assert_eq!(identities[0].attr("name"), Some("jingle-ice test"));
    let vars: Vec<&str> = query
        .children()
        .filter(|c| c.is("feature", NS_DISCO_INFO))
        .filter_map(|c| c.attr("var"))
        .collect();
    assert_eq!(
        vars,
        vec![
            NS_DISCO_INFO,
            NS_CAPS,
            NS_JINGLE,
            NS_ICE_UDP,
            "urn:xmpp:jingle:transports:webrtc-datachannel:1",
            "urn:xmpp:jingle:apps:dtls:0",
            "urn:xmpp:jingle:transports:ibb:1",
            "http://jabber.org/protocol/ibb",
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );

    // Our own answer reads back as a peer that supports Jingle ICE-UDP, and its caps match.
    let peer = parse_info_result(&reply).unwrap();
    assert!(peer.supports_jingle_ice_udp());
    assert!(peer.supports_webrtc_datachannel());
    assert!(peer.matches_caps_ver(&f.caps_ver()));
}

#[test]
fn features_are_extensible_and_change_the_caps() {
    let mut f = our_features();
    let before = f.caps_ver();
    f.add_feature("urn:xmpp:jingle:apps:file-transfer:5");
    f.add_feature("urn:xmpp:jingle:apps:file-transfer:5");
    assert!(f.contains("urn:xmpp:jingle:apps:file-transfer:5"));
    assert_eq!(f.features().count(), 9);
    assert_ne!(f.caps_ver(), before);
    let reply = answer_info_query(&disco_get(None), &f).unwrap();
    let peer = parse_info_result(&reply).unwrap();
    assert!(peer.supports("urn:xmpp:jingle:apps:file-transfer:5"));
    assert!(peer.matches_caps_ver(&f.caps_ver()));
}

#[test]
fn caps_node_query_is_answered_and_unknown_node_is_item_not_found() {
    let f = our_features();
    let node = f.caps_query_node();
    assert!(node.starts_with("https://example.org/jingle-ice#"));
    let reply = answer_info_query(&disco_get(Some(&node)), &f).unwrap();
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(
        reply
            .get_child("query", NS_DISCO_INFO)
            .unwrap()
            .attr("node"),
        Some(node.as_str())
    );

    let reply = answer_info_query(&disco_get(Some("urn:example:other")), &f).unwrap();
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(reply.attr("id"), Some("d1"));
    assert_eq!(reply.attr("to"), Some("bob@example.test/phone"));
    let error = reply.get_child("error", NS_CLIENT).unwrap();
    assert_eq!(error.attr("type"), Some("cancel"));
    assert!(error.has_child("item-not-found", NS_STANZAS));
    assert_eq!(
        parse_info_result(&reply),
        Err(DiscoError::IqError {
            condition: "item-not-found".into()
        })
    );
}

#[test]
fn other_stanzas_are_not_answered() {
    let f = our_features();
    for xml in [
        format!("<iq xmlns='jabber:client' type='set' id='1'><query xmlns='{NS_DISCO_INFO}'/></iq>"),
        format!("<iq xmlns='jabber:client' type='result' id='1'><query xmlns='{NS_DISCO_INFO}'/></iq>"),
        "<iq xmlns='jabber:client' type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>".to_owned(),
        "<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>".to_owned(),
        format!("<message xmlns='jabber:client'><query xmlns='{NS_DISCO_INFO}'/></message>"),
    ] {
        let el: Element = xml.parse().unwrap();
        assert!(answer_info_query(&el, &f).is_none(), "{xml}");
    }
}

#[test]
fn info_query_targets_the_peer() {
    let to: Jid = "bob@example.test/phone".parse().unwrap();
    let q = info_query("i1", &to, None);
    assert_eq!(q.attr("type"), Some("get"));
    assert_eq!(q.attr("to"), Some("bob@example.test/phone"));
    let query = q.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(query.attr("node"), None);
    let q = info_query("i2", &to, Some("https://example.org/phone#abc"));
    assert_eq!(
        q.get_child("query", NS_DISCO_INFO).unwrap().attr("node"),
        Some("https://example.org/phone#abc")
    );
}

#[test]
fn peer_info_is_read_tolerantly() {
    let info = parse_info_result(&fixture(PEER_INFO)).unwrap();
    assert_eq!(info.node.as_deref(), Some("https://example.org/phone#abc"));
    assert_eq!(info.identities.len(), 1);
    assert_eq!(info.identities[0].kind, "phone");
    assert!(info.supports_jingle_ice_udp());
    assert!(info.supports("urn:xmpp:jingle:apps:file-transfer:5"));
    assert!(!info.supports("urn:xmpp:jingle:transports:s5b:1"));
    assert_eq!(info.features.len(), 7);
    // urn:xmpp:jingle:1 came twice: the caps of such an answer are not trusted.
    assert!(info.had_duplicates);
    assert!(!info.matches_caps_ver(&caps_ver(&info.verification_string())));

    // Without ICE-UDP.
    let partial: Element =
        format!("<query xmlns='{NS_DISCO_INFO}'><feature var='{NS_JINGLE}'/></query>")
            .parse()
            .unwrap();
    let info = parse_info_result(&partial).unwrap();
    assert!(info.supports(NS_JINGLE));
    assert!(!info.supports_jingle_ice_udp());

    // An identity without its required attributes.
    let bad: Element =
        format!("<query xmlns='{NS_DISCO_INFO}'><identity category='client'/></query>")
            .parse()
            .unwrap();
    assert_eq!(parse_info_result(&bad), Err(DiscoError::BadIdentity));
    let not: Element = "<iq xmlns='jabber:client' type='result' id='1'/>"
        .parse()
        .unwrap();
    assert_eq!(parse_info_result(&not), Err(DiscoError::NotInfoResult));
}

#[test]
fn xep_0115_simple_example_vector() {
    // XEP-0115 §5.2: client/pc "Exodus 0.9.1" with four features.
    let mut f = Features::new(
        Identity::client_pc("Exodus 0.9.1"),
        "http://code.google.com/p/exodus",
    );
    f.remove_feature(NS_JINGLE)
        .remove_feature(NS_ICE_UDP)
        .remove_feature("urn:xmpp:jingle:transports:webrtc-datachannel:1")
        .remove_feature("urn:xmpp:jingle:apps:dtls:0")
        .remove_feature("urn:xmpp:jingle:transports:ibb:1")
        .remove_feature("http://jabber.org/protocol/ibb");
    f.add_feature("http://jabber.org/protocol/disco#items")
        .add_feature("http://jabber.org/protocol/muc");
    assert_eq!(f.caps_ver(), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    let c = f.caps_element();
    assert!(c.is("c", NS_CAPS));
    assert_eq!(c.attr("hash"), Some("sha-1"));
    assert_eq!(c.attr("node"), Some("http://code.google.com/p/exodus"));
    assert_eq!(c.attr("ver"), Some("QgayPKawpkPSDYmwT/WM94uAlu0="));
}

#[test]
fn xep_0115_complex_example_vector() {
    // XEP-0115 §5.3: two identities with xml:lang, and a software-information form.
    let info = parse_info_result(&fixture(XEP0115_COMPLEX)).unwrap();
    assert_eq!(info.identities.len(), 2);
    assert_eq!(info.identities[0].lang.as_deref(), Some("el"));
    assert_eq!(info.forms.len(), 1);
    assert_eq!(
        info.verification_string(),
        "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<\
         http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
         http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<\
         ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
    );
    assert!(info.matches_caps_ver("q07IKJEyjvHSyhy//CH0CxmKi8w="));
}

#[test]
fn caps_agree_with_xmpp_parsers() {
    // Cross-check against xmpp-parsers' own implementation of XEP-0115 §5.1.
    use xmpp_parsers::caps::{compute_disco, hash_caps};
    use xmpp_parsers::disco::DiscoInfoResult;
    use xmpp_parsers::hashes::Algo;
    let f = our_features();
    let payload = f.info_payload(None);
    let theirs = DiscoInfoResult::try_from(payload).unwrap();
    let hash = hash_caps(&compute_disco(&theirs), Algo::Sha_1).unwrap();
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(hash.hash),
        f.caps_ver()
    );
}
