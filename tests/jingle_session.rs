//! The sans-IO XEP-0166 session machine, both sides driven in memory without a server: every
//! stanza one side emits is delivered to the other (the way a server would, `from` stamped),
//! and every request gets its answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jid::FullJid;
use jingle_ice::channel::Fingerprint;
use jingle_ice::ice::{Candidate, CandidateType, Credentials};
use jingle_ice::jingle::transports::webrtc_datachannel::{read_bundle_group, NS_GROUPING};
use jingle_ice::jingle::{
    dtls_role, Content, DataChannelTransport, DtlsFingerprint, DtlsRole, IceUdpCandidate,
    IceUdpTransport, Jingle, ReasonCondition, Senders, SessionConfig, SessionEvent, SessionKey,
    SessionManager, SessionRole, SessionState, Setup, Transport, TransportLimits, NS_DTLS,
    NS_ICE_UDP, NS_JINGLE, NS_WEBRTC_DATACHANNEL,
};
use jingle_ice::xmpp::stanza::{iq_type, IqType, NS_CLIENT, NS_JINGLE_ERRORS, NS_STANZAS};
use minidom::Element;

const APP_NS: &str = "urn:example:test-app:0";

fn alice_jid() -> FullJid {
    FullJid::new("alice@example.test/a").unwrap()
}
fn bob_jid() -> FullJid {
    FullJid::new("bob@example.test/b").unwrap()
}
fn mallory_jid() -> FullJid {
    FullJid::new("mallory@example.test/m").unwrap()
}

fn manager(jid: FullJid, seed: u64) -> SessionManager {
    let config = SessionConfig {
        seed: Some(seed),
        ..SessionConfig::default()
    };
    SessionManager::new(jid, config)
}

fn creds(tag: &str) -> Credentials {
    Credentials::new(format!("u{tag}aa"), format!("p{tag}0123456789abcdefghijkl"))
}

fn cand(port: u16, id: &str) -> IceUdpCandidate {
    let addr: SocketAddr = format!("192.0.2.1:{port}").parse().unwrap();
    IceUdpCandidate::new(
        Candidate::remote("1", 1, 2_130_706_431, addr, CandidateType::Host, None),
        id,
    )
}

fn description() -> Element {
    Element::bare("description", APP_NS)
}

fn content(creds: &Credentials, cands: Vec<IceUdpCandidate>) -> Content {
    Content::new(
        "data",
        description(),
        Transport::IceUdp(IceUdpTransport::new(creds, cands)),
    )
}

/// Everything one side has to send.
fn drain(m: &mut SessionManager) -> Vec<Element> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn events(m: &mut SessionManager) -> Vec<SessionEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// Stamps `from` as the server would (overwriting whatever the sender wrote).
fn stamp(mut stanza: Element, from: &FullJid) -> Element {
    stanza.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::NcName::try_from("from").unwrap(),
        from.as_str(),
    );
    stanza
}

/// Delivers stanzas back and forth until both sides are quiet; returns every stanza carried,
/// in order, as (sender, stanza).
fn pump(a: &mut SessionManager, b: &mut SessionManager, now: Instant) -> Vec<(FullJid, Element)> {
    let mut log = Vec::new();
    loop {
        let from_a = drain(a);
        let from_b = drain(b);
        if from_a.is_empty() && from_b.is_empty() {
            return log;
        }
        for s in from_a {
            let s = stamp(s, a.local_jid());
            log.push((a.local_jid().clone(), s.clone()));
            assert!(b.handle_stanza(&s, now), "b ignored {s:?}");
        }
        for s in from_b {
            let s = stamp(s, b.local_jid());
            log.push((b.local_jid().clone(), s.clone()));
            assert!(a.handle_stanza(&s, now), "a ignored {s:?}");
        }
    }
}

fn jingle_set(from: &FullJid, to: &FullJid, id: &str, jingle: &str) -> Element {
    let xml = format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' from='{from}' to='{to}'>{jingle}</iq>"
    );
    xml.parse().unwrap()
}

/// The stanza condition and Jingle condition of an error reply.
fn error_conditions(stanza: &Element) -> (String, Option<String>) {
    assert_eq!(
        iq_type(stanza),
        Some(IqType::Error),
        "not an error: {stanza:?}"
    );
    let error = stanza.get_child("error", NS_CLIENT).unwrap();
    let cond = error
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .unwrap()
        .name()
        .to_owned();
    let jingle = error
        .children()
        .find(|c| c.ns() == NS_JINGLE_ERRORS)
        .map(|c| c.name().to_owned());
    (cond, jingle)
}

/// Opens an accepted session between alice (initiator) and bob.
fn established(now: Instant) -> (SessionManager, SessionManager, SessionKey, SessionKey) {
    let mut a = manager(alice_jid(), 1);
    let mut b = manager(bob_jid(), 2);
    let ka = a
        .initiate(
            bob_jid(),
            vec![content(&creds("a"), vec![cand(1000, "a1")])],
            now,
        )
        .unwrap();
    pump(&mut a, &mut b, now);
    let kb = match events(&mut b).as_slice() {
        [SessionEvent::Incoming { key, .. }] => key.clone(),
        other => panic!("unexpected {other:?}"),
    };
    b.accept(&kb, vec![content(&creds("b"), vec![cand(2000, "b1")])], now)
        .unwrap();
    pump(&mut a, &mut b, now);
    assert!(matches!(
        events(&mut a).as_slice(),
        [SessionEvent::Accepted { .. }]
    ));
    (a, b, ka, kb)
}

#[test]
fn initiate_accept_and_every_request_is_answered() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let mut b = manager(bob_jid(), 2);
    let ka = a
        .initiate(
            bob_jid(),
            vec![content(&creds("a"), vec![cand(1000, "a1")])],
            now,
        )
        .unwrap();
    assert_eq!(ka.peer, bob_jid());
    let log = pump(&mut a, &mut b, now);
    // session-initiate out, result back.
    assert_eq!(log.len(), 2);
    let init = log[0].1.get_child("jingle", NS_JINGLE).unwrap();
    assert_eq!(init.attr("action"), Some("session-initiate"));
    assert_eq!(init.attr("initiator"), Some("alice@example.test/a"));
    assert_eq!(iq_type(&log[1].1), Some(IqType::Result));

    let ev = events(&mut b);
    let (kb, contents) = match ev.as_slice() {
        [SessionEvent::Incoming { key, contents }] => (key.clone(), contents.clone()),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(kb.peer, alice_jid());
    assert_eq!(kb.sid, ka.sid);
    let t = contents[0].transport.as_ref().unwrap().ice_udp().unwrap();
    assert_eq!(t.credentials(), Some(creds("a")));
    assert_eq!(t.candidates[0].candidate.address.port(), 1000);
    assert_eq!(contents[0].description_ns().as_deref(), Some(APP_NS));
    assert_eq!(
        b.session_state(&kb),
        Some((SessionState::Pending, SessionRole::Responder))
    );

    b.accept(&kb, vec![content(&creds("b"), vec![cand(2000, "b1")])], now)
        .unwrap();
    let log = pump(&mut a, &mut b, now);
    assert_eq!(log.len(), 2);
    let acc = log[0].1.get_child("jingle", NS_JINGLE).unwrap();
    assert_eq!(acc.attr("action"), Some("session-accept"));
    assert_eq!(acc.attr("responder"), Some("bob@example.test/b"));
    match events(&mut a).as_slice() {
        [SessionEvent::Accepted { key, contents }] => {
            assert_eq!(key, &ka);
            let t = contents[0].transport.as_ref().unwrap().ice_udp().unwrap();
            assert_eq!(t.credentials(), Some(creds("b")));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        a.session_state(&ka),
        Some((SessionState::Active, SessionRole::Initiator))
    );
    assert_eq!(a.pending_requests(), 0);
    assert_eq!(b.pending_requests(), 0);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn trickled_candidates_are_batched_into_one_transport_info() {
    let now = Instant::now();
    let (mut a, mut b, ka, kb) = established(now);
    for (i, port) in [1001u16, 1002, 1003].into_iter().enumerate() {
        a.add_local_candidates(&ka, "data", vec![cand(port, &format!("t{i}"))], now)
            .unwrap();
    }
    // Held for the trickle delay.
    assert!(drain(&mut a).is_empty());
    let wake = a.poll_timeout().unwrap();
    assert_eq!(wake, now + SessionConfig::default().trickle_delay);
    a.handle_timeout(wake);
    let log = pump(&mut a, &mut b, wake);
    assert_eq!(log.len(), 2, "one transport-info and its result");
    match events(&mut b).as_slice() {
        [SessionEvent::TransportInfo {
            key,
            content,
            transport,
            restart,
        }] => {
            assert_eq!(key, &kb);
            assert_eq!(content, "data");
            assert!(!restart);
            let t = transport.ice_udp().unwrap();
            // XEP-0176 §5.3: ufrag and pwd accompany candidates.
            assert_eq!(t.credentials(), Some(creds("a")));
            let ports: Vec<u16> = t
                .candidates
                .iter()
                .map(|c| c.candidate.address.port())
                .collect();
            assert_eq!(ports, vec![1001, 1002, 1003]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn responder_holds_its_candidates_until_it_accepts() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let mut b = manager(bob_jid(), 2);
    a.initiate(bob_jid(), vec![content(&creds("a"), vec![])], now)
        .unwrap();
    pump(&mut a, &mut b, now);
    let kb = match events(&mut b).as_slice() {
        [SessionEvent::Incoming { key, .. }] => key.clone(),
        other => panic!("unexpected {other:?}"),
    };
    // Trickle from the initiator reaches the responder before session-accept.
    let ka = a.sessions().next().unwrap().clone();
    a.add_local_candidates(&ka, "data", vec![cand(1001, "x")], now)
        .unwrap();
    a.handle_timeout(now + Duration::from_secs(1));
    pump(&mut a, &mut b, now);
    assert!(matches!(
        events(&mut b).as_slice(),
        [SessionEvent::TransportInfo { .. }]
    ));
    // The responder's own candidates wait for its decision.
    b.add_local_candidates(&kb, "data", vec![cand(2001, "y")], now)
        .unwrap();
    b.handle_timeout(now + Duration::from_secs(1));
    assert!(drain(&mut b).is_empty(), "nothing may leak before accept");
    b.accept(&kb, vec![content(&creds("b"), vec![cand(2000, "b1")])], now)
        .unwrap();
    pump(&mut a, &mut b, now);
    match events(&mut a).as_slice() {
        [SessionEvent::Accepted { contents, .. }] => {
            let t = contents[0].transport.as_ref().unwrap().ice_udp().unwrap();
            let ports: Vec<u16> = t
                .candidates
                .iter()
                .map(|c| c.candidate.address.port())
                .collect();
            assert_eq!(ports, vec![2000, 2001]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn simultaneous_initiation_resolves_by_tie_break() {
    for (seed_a, seed_b) in [(1, 2), (3, 4), (5, 6), (7, 8)] {
        let now = Instant::now();
        let mut a = manager(alice_jid(), seed_a);
        let mut b = manager(bob_jid(), seed_b);
        let ka = a
            .initiate(bob_jid(), vec![content(&creds("a"), vec![])], now)
            .unwrap();
        let kb = b
            .initiate(alice_jid(), vec![content(&creds("b"), vec![])], now)
            .unwrap();
        let log = pump(&mut a, &mut b, now);
        let winner = std::cmp::min(ka.sid.clone(), kb.sid.clone());
        // The loser's offer got <conflict/> + <tie-break/>.
        let conflicts: Vec<_> = log
            .iter()
            .filter(|(_, s)| iq_type(s) == Some(IqType::Error))
            .map(|(_, s)| error_conditions(s))
            .filter(|(c, _)| c == "conflict")
            .collect();
        assert_eq!(
            conflicts,
            vec![("conflict".to_owned(), Some("tie-break".to_owned()))]
        );
        // Exactly one session, the lower sid, on both sides.
        let sa: Vec<_> = a.sessions().map(|k| k.sid.clone()).collect();
        let sb: Vec<_> = b.sessions().map(|k| k.sid.clone()).collect();
        assert_eq!(sa, vec![winner.clone()]);
        assert_eq!(sb, vec![winner.clone()]);
        // The side whose offer lost is now the responder and was told which session replaced it.
        let loser = if ka.sid == winner { &mut b } else { &mut a };
        let loser_events = events(loser);
        assert!(loser_events.iter().any(|e| matches!(e,
            SessionEvent::Terminated { reason, .. }
                if reason.condition == ReasonCondition::AlternativeSession(winner.clone()))));
        assert!(loser_events
            .iter()
            .any(|e| matches!(e, SessionEvent::Incoming { key, .. } if key.sid == winner)));
        let key = loser.sessions().next().unwrap().clone();
        assert_eq!(
            loser.session_state(&key),
            Some((SessionState::Pending, SessionRole::Responder))
        );
    }
}

#[test]
fn transport_info_from_a_third_jid_is_rejected_and_changes_nothing() {
    let now = Instant::now();
    let (mut a, _b, ka, _kb) = established(now);
    let t = IceUdpTransport::new(&creds("m"), vec![cand(6666, "evil")]).to_element();
    let mut j = Element::bare("jingle", NS_JINGLE);
    j.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::NcName::try_from("action").unwrap(),
        "transport-info",
    );
    j.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::NcName::try_from("sid").unwrap(),
        ka.sid.as_str(),
    );
    let mut c = Element::bare("content", NS_JINGLE);
    c.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::NcName::try_from("name").unwrap(),
        "data",
    );
    c.append_child(t);
    j.append_child(c);
    let j_xml = String::from(&j);
    for from in [
        mallory_jid(),
        FullJid::new("bob@example.test/other").unwrap(),
    ] {
        let req = jingle_set(&from, &alice_jid(), "m1", &j_xml);
        assert!(a.handle_stanza(&req, now));
        let reply = drain(&mut a);
        assert_eq!(reply.len(), 1);
        assert_eq!(reply[0].attr("to"), Some(from.as_str()));
        assert_eq!(
            error_conditions(&reply[0]),
            (
                "item-not-found".to_owned(),
                Some("unknown-session".to_owned())
            )
        );
    }
    assert!(events(&mut a).is_empty());
    assert_eq!(
        a.session_state(&ka),
        Some((SessionState::Active, SessionRole::Initiator))
    );
}

#[test]
fn unknown_sid_gets_unknown_session() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let req = jingle_set(
        &bob_jid(),
        &alice_jid(),
        "x",
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='nope'/>",
    );
    assert!(a.handle_stanza(&req, now));
    let reply = drain(&mut a);
    assert_eq!(
        error_conditions(&reply[0]),
        (
            "item-not-found".to_owned(),
            Some("unknown-session".to_owned())
        )
    );
    assert_eq!(reply[0].attr("id"), Some("x"));
}

fn transport_info_xml(sid: &str, transport: &str) -> String {
    format!(
        "<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='{sid}'>\
         <content creator='initiator' name='data'>{transport}</content></jingle>"
    )
}

#[test]
fn garbage_inside_transport_gets_bad_request_and_the_session_goes_on() {
    let now = Instant::now();
    let (_a, mut b, _ka, kb) = established(now);
    let garbage = [
        // port out of range
        "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='uaaa' pwd='paaa0123456789abcdefghijkl'>\
         <candidate component='1' foundation='1' generation='0' id='x' ip='192.0.2.9' network='0' port='99999' priority='1' protocol='udp' type='host'/></transport>",
        // no ip
        "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'>\
         <candidate component='1' foundation='1' generation='0' id='x' network='0' port='9' priority='1' protocol='udp' type='host'/></transport>",
        // bad pwd
        "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='uaaa' pwd='short'/>",
        // a different transport namespace than the content's
        "<transport xmlns='urn:xmpp:jingle:transports:s5b:1'/>",
    ];
    for (i, g) in garbage.iter().enumerate() {
        let req = jingle_set(
            &alice_jid(),
            &bob_jid(),
            &format!("g{i}"),
            &transport_info_xml(&kb.sid, g),
        );
        assert!(b.handle_stanza(&req, now));
        let reply = drain(&mut b);
        assert_eq!(reply.len(), 1);
        assert_eq!(error_conditions(&reply[0]).0, "bad-request", "case {i}");
        assert!(events(&mut b).is_empty());
    }
    // A good one afterwards still works.
    let good = IceUdpTransport::new(&creds("a"), vec![cand(1005, "ok")]).to_element();
    let req = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "ok",
        &transport_info_xml(&kb.sid, &String::from(&good)),
    );
    assert!(b.handle_stanza(&req, now));
    assert_eq!(iq_type(&drain(&mut b)[0]), Some(IqType::Result));
    assert!(matches!(
        events(&mut b).as_slice(),
        [SessionEvent::TransportInfo { restart: false, .. }]
    ));
}

#[test]
fn out_of_order_actions_are_refused() {
    let now = Instant::now();
    let (mut a, mut b, ka, kb) = established(now);
    // A second session-accept.
    let req = jingle_set(
        &bob_jid(),
        &alice_jid(),
        "o1",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='{}'>\
             <content creator='initiator' name='data'/></jingle>",
            ka.sid
        ),
    );
    a.handle_stanza(&req, now);
    assert_eq!(
        error_conditions(&drain(&mut a)[0]),
        (
            "unexpected-request".to_owned(),
            Some("out-of-order".to_owned())
        )
    );
    // A session-initiate reusing a live sid.
    let req = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "o2",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='{}'>\
             <content creator='initiator' name='data'><description xmlns='{APP_NS}'/>\
             <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/></content></jingle>",
            kb.sid
        ),
    );
    b.handle_stanza(&req, now);
    assert_eq!(
        error_conditions(&drain(&mut b)[0]).1.as_deref(),
        Some("out-of-order")
    );
    // The responder cannot be sent a session-accept either.
    let req = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "o3",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='{}'>\
             <content creator='initiator' name='data'/></jingle>",
            kb.sid
        ),
    );
    b.handle_stanza(&req, now);
    assert_eq!(
        error_conditions(&drain(&mut b)[0]).1.as_deref(),
        Some("out-of-order")
    );
    // The application cannot accept its own offer.
    assert!(a
        .accept(&ka, vec![content(&creds("a"), vec![])], now)
        .is_err());
}

#[test]
fn session_info_ping_unknown_payload_and_unknown_actions() {
    let now = Instant::now();
    let (_a, mut b, _ka, kb) = established(now);
    let ping = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "p",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='{}'/>",
            kb.sid
        ),
    );
    b.handle_stanza(&ping, now);
    assert_eq!(iq_type(&drain(&mut b)[0]), Some(IqType::Result));
    let unknown = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "u",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='{}'>\
             <ringing xmlns='urn:xmpp:jingle:apps:rtp:info:1'/></jingle>",
            kb.sid
        ),
    );
    b.handle_stanza(&unknown, now);
    assert_eq!(
        error_conditions(&drain(&mut b)[0]),
        (
            "feature-not-implemented".to_owned(),
            Some("unsupported-info".to_owned())
        )
    );
    let bogus = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "b",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='dance' sid='{}'/>",
            kb.sid
        ),
    );
    b.handle_stanza(&bogus, now);
    assert_eq!(error_conditions(&drain(&mut b)[0]).0, "bad-request");
    let add = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "c",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='content-add' sid='{}'/>",
            kb.sid
        ),
    );
    b.handle_stanza(&add, now);
    assert_eq!(
        error_conditions(&drain(&mut b)[0]).0,
        "feature-not-implemented"
    );
    assert!(events(&mut b).is_empty());
}

#[test]
fn info_payloads_of_known_namespaces_reach_the_application() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let config = SessionConfig {
        seed: Some(2),
        info_namespaces: vec!["urn:xmpp:jingle:apps:file-transfer:5".to_owned()],
        ..SessionConfig::default()
    };
    let mut b = SessionManager::new(bob_jid(), config);
    let ka = a
        .initiate(bob_jid(), vec![content(&creds("a"), vec![])], now)
        .unwrap();
    pump(&mut a, &mut b, now);
    events(&mut b);
    let payload = Element::bare("received", "urn:xmpp:jingle:apps:file-transfer:5");
    a.send_info(&ka, Some(payload.clone()), now).unwrap();
    pump(&mut a, &mut b, now);
    match events(&mut b).as_slice() {
        [SessionEvent::Info { payload: p, .. }] => assert_eq!(p, &payload),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(a.pending_requests(), 0);
}

#[test]
fn info_payloads_of_the_sessions_own_application_need_no_configuration() {
    // Conversations' <checksum/> after the data (XEP-0234 §8.2): refusing it makes
    // Conversations fail the transfer. The description's namespace says it is the session's.
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let mut b = manager(bob_jid(), 2);
    let ka = a
        .initiate(
            bob_jid(),
            vec![Content::new(
                "0",
                file_description(),
                Transport::IceUdp(IceUdpTransport::new(&creds("a"), vec![])),
            )],
            now,
        )
        .unwrap();
    pump(&mut a, &mut b, now);
    events(&mut b);
    let checksum = Element::bare("checksum", "urn:xmpp:jingle:apps:file-transfer:5");
    a.send_info(&ka, Some(checksum.clone()), now).unwrap();
    let log = pump(&mut a, &mut b, now);
    assert_eq!(iq_type(&log[1].1), Some(IqType::Result));
    match events(&mut b).as_slice() {
        [SessionEvent::Info { payload, .. }] => assert_eq!(payload, &checksum),
        other => panic!("unexpected {other:?}"),
    }
    // A payload of some other application is still refused.
    let other = Element::bare("ringing", "urn:xmpp:jingle:apps:rtp:info:1");
    a.send_info(&ka, Some(other), now).unwrap();
    let log = pump(&mut a, &mut b, now);
    assert_eq!(
        error_conditions(&log[1].1).1.as_deref(),
        Some("unsupported-info")
    );
    assert!(events(&mut b).is_empty());
}

#[test]
fn a_session_info_or_terminate_crossing_our_terminate_gets_an_empty_result() {
    let now = Instant::now();
    let (_a, mut b, _ka, kb) = established(now);
    b.terminate(
        &kb,
        jingle_ice::jingle::Reason::new(ReasonCondition::Success),
        now,
    )
    .unwrap();
    drain(&mut b);
    events(&mut b);
    let checksum = |id: &str| {
        jingle_set(
            &alice_jid(),
            &bob_jid(),
            id,
            &format!(
                "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='{}'>\
                 <checksum xmlns='urn:xmpp:jingle:apps:file-transfer:5' name='0'/></jingle>",
                kb.sid
            ),
        )
    };
    let soon = now + Duration::from_secs(5);
    b.handle_stanza(&checksum("late-checksum"), soon);
    let reply = drain(&mut b);
    assert_eq!(iq_type(&reply[0]), Some(IqType::Result), "{:?}", reply[0]);
    let terminate = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "crossing",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{}'>\
             <reason><success/></reason></jingle>",
            kb.sid
        ),
    );
    b.handle_stanza(&terminate, soon);
    assert_eq!(iq_type(&drain(&mut b)[0]), Some(IqType::Result));
    assert!(events(&mut b).is_empty(), "nothing new for the application");
    // Other actions about it, and anything once the linger is over, get <unknown-session/>.
    let info = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "ti",
        &transport_info_xml(
            &kb.sid,
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/>",
        ),
    );
    b.handle_stanza(&info, soon);
    assert_eq!(
        error_conditions(&drain(&mut b)[0]).1.as_deref(),
        Some("unknown-session")
    );
    let later = now + jingle_ice::jingle::session::ENDED_LINGER + Duration::from_secs(1);
    b.handle_stanza(&checksum("much-later"), later);
    assert_eq!(
        error_conditions(&drain(&mut b)[0]).1.as_deref(),
        Some("unknown-session")
    );
}

#[test]
fn terminate_reaches_the_peer_and_the_session_is_forgotten() {
    let now = Instant::now();
    let (mut a, mut b, ka, kb) = established(now);
    a.terminate(
        &ka,
        jingle_ice::jingle::Reason::new(ReasonCondition::Success),
        now,
    )
    .unwrap();
    pump(&mut a, &mut b, now);
    match events(&mut a).as_slice() {
        [SessionEvent::Terminated {
            by_peer: false,
            reason,
            ..
        }] => assert_eq!(reason.condition, ReasonCondition::Success),
        other => panic!("unexpected {other:?}"),
    }
    match events(&mut b).as_slice() {
        [SessionEvent::Terminated {
            key,
            by_peer: true,
            reason,
        }] => {
            assert_eq!(key, &kb);
            assert_eq!(reason.condition, ReasonCondition::Success);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(a.sessions().count(), 0);
    assert_eq!(b.sessions().count(), 0);
    // Later requests about it get <unknown-session/> (XEP-0166 §6.7).
    assert!(b.add_local_candidates(&kb, "data", vec![], now).is_err());
    let late = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "late",
        &transport_info_xml(
            &kb.sid,
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/>",
        ),
    );
    b.handle_stanza(&late, now);
    assert_eq!(
        error_conditions(&drain(&mut b)[0]).1.as_deref(),
        Some("unknown-session")
    );
}

#[test]
fn decline_ends_the_offer_with_the_reason() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let mut b = manager(bob_jid(), 2);
    let ka = a
        .initiate(bob_jid(), vec![content(&creds("a"), vec![])], now)
        .unwrap();
    pump(&mut a, &mut b, now);
    let kb = b.sessions().next().unwrap().clone();
    events(&mut b);
    b.terminate(
        &kb,
        jingle_ice::jingle::Reason::new(ReasonCondition::Decline),
        now,
    )
    .unwrap();
    pump(&mut a, &mut b, now);
    match events(&mut a).as_slice() {
        [SessionEvent::Terminated {
            key,
            by_peer: true,
            reason,
        }] => {
            assert_eq!(key, &ka);
            assert_eq!(reason.condition, ReasonCondition::Decline);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unanswered_initiate_times_out() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let ka = a
        .initiate(bob_jid(), vec![content(&creds("a"), vec![])], now)
        .unwrap();
    assert_eq!(drain(&mut a).len(), 1);
    let wake = a.poll_timeout().unwrap();
    assert_eq!(wake, now + SessionConfig::default().request_timeout);
    a.handle_timeout(wake);
    match events(&mut a).as_slice() {
        [SessionEvent::Terminated {
            key,
            reason,
            by_peer: false,
        }] => {
            assert_eq!(key, &ka);
            assert_eq!(reason.condition, ReasonCondition::Timeout);
        }
        other => panic!("unexpected {other:?}"),
    }
    let out = drain(&mut a);
    let j = out[0].get_child("jingle", NS_JINGLE).unwrap();
    assert_eq!(j.attr("action"), Some("session-terminate"));
    assert_eq!(a.sessions().count(), 0);
}

#[test]
fn an_offer_never_accepted_times_out_on_both_sides() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let mut b = manager(bob_jid(), 2);
    a.initiate(bob_jid(), vec![content(&creds("a"), vec![])], now)
        .unwrap();
    pump(&mut a, &mut b, now);
    events(&mut b);
    let later = now + SessionConfig::default().accept_timeout;
    b.handle_timeout(later);
    pump(&mut a, &mut b, later);
    assert!(matches!(events(&mut b).as_slice(),
        [SessionEvent::Terminated { reason, by_peer: false, .. }] if reason.condition == ReasonCondition::Timeout));
    assert!(matches!(events(&mut a).as_slice(),
        [SessionEvent::Terminated { reason, by_peer: true, .. }] if reason.condition == ReasonCondition::Timeout));
}

#[test]
fn a_peer_going_offline_ends_its_sessions_after_the_grace() {
    let now = Instant::now();
    let (_a, mut b, _ka, kb) = established(now);
    let unavailable: Element =
        "<presence xmlns='jabber:client' type='unavailable' from='alice@example.test/a'/>"
            .parse()
            .unwrap();
    // Presence is not consumed: the application sees it too.
    assert!(!b.handle_stanza(&unavailable, now));
    let grace = SessionConfig::default().gone_grace;
    assert_eq!(b.poll_timeout(), Some(now + grace));
    // Another resource of the same account going offline changes nothing.
    let other: Element =
        "<presence xmlns='jabber:client' type='unavailable' from='alice@example.test/other'/>"
            .parse()
            .unwrap();
    b.handle_stanza(&other, now);
    b.handle_timeout(now + grace);
    match events(&mut b).as_slice() {
        [SessionEvent::Terminated {
            key,
            reason,
            by_peer: false,
        }] => {
            assert_eq!(key, &kb);
            assert_eq!(reason.condition, ReasonCondition::Gone);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn word_from_the_peer_within_the_grace_keeps_the_session() {
    let now = Instant::now();
    let (_a, mut b, _ka, kb) = established(now);
    let unavailable: Element =
        "<presence xmlns='jabber:client' type='unavailable' from='alice@example.test/a'/>"
            .parse()
            .unwrap();
    b.handle_stanza(&unavailable, now);
    let ping = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "p",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='{}'/>",
            kb.sid
        ),
    );
    b.handle_stanza(&ping, now + Duration::from_secs(1));
    b.handle_timeout(now + Duration::from_secs(60));
    assert!(events(&mut b).is_empty());
    assert!(b.session_state(&kb).is_some());
}

#[test]
fn limits_bound_sessions_and_candidates() {
    let now = Instant::now();
    let config = SessionConfig {
        seed: Some(9),
        max_sessions_per_peer: 2,
        max_remote_candidates: 3,
        ..SessionConfig::default()
    };
    let mut b = SessionManager::new(bob_jid(), config);
    let offer = |sid: &str, n: usize| {
        let cands: String = (0..n)
            .map(|i| String::from(&cand(3000 + i as u16, &format!("c{i}")).to_element()))
            .collect();
        jingle_set(
            &alice_jid(),
            &bob_jid(),
            sid,
            &format!(
                "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='{sid}' \
                 initiator='alice@example.test/a'><content creator='initiator' name='data'>\
                 <description xmlns='{APP_NS}'/><transport \
                 xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='uaaa' \
                 pwd='paaa0123456789abcdefghijkl'>{cands}</transport></content></jingle>"
            ),
        )
    };
    b.handle_stanza(&offer("s1", 1), now);
    b.handle_stanza(&offer("s2", 1), now);
    let replies = drain(&mut b);
    assert!(replies.iter().all(|r| iq_type(r) == Some(IqType::Result)));
    b.handle_stanza(&offer("s3", 1), now);
    assert_eq!(error_conditions(&drain(&mut b)[0]).0, "resource-constraint");
    events(&mut b);
    // 1 candidate known; 2 more fit, a third is ignored (the request is still answered).
    let more = |id: &str, ports: &[u16]| {
        let cands: String = ports
            .iter()
            .map(|p| String::from(&cand(*p, &format!("m{p}")).to_element()))
            .collect();
        jingle_set(
            &alice_jid(),
            &bob_jid(),
            id,
            &transport_info_xml(
                "s1",
                &format!(
                    "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'>{cands}</transport>"
                ),
            ),
        )
    };
    b.handle_stanza(&more("t1", &[4001, 4002]), now);
    assert_eq!(iq_type(&drain(&mut b)[0]), Some(IqType::Result));
    assert_eq!(transport_infos(&mut b), vec![(vec![4001, 4002], 0)]);
    b.handle_stanza(&more("t2", &[4003]), now);
    assert_eq!(iq_type(&drain(&mut b)[0]), Some(IqType::Result));
    assert_eq!(transport_infos(&mut b), vec![(vec![], 1)]);
    // One element with more candidates than the transport limit: the first ones are kept.
    let limit = SessionConfig::default().transport_limits.max_candidates;
    let huge = offer("s9", limit + 1);
    let mut c = SessionManager::new(
        bob_jid(),
        SessionConfig {
            seed: Some(1),
            ..SessionConfig::default()
        },
    );
    c.handle_stanza(&huge, now);
    assert_eq!(iq_type(&drain(&mut c)[0]), Some(IqType::Result));
    assert_eq!(c.sessions().count(), 1);
    match events(&mut c).as_slice() {
        [SessionEvent::Incoming { contents, .. }] => {
            let t = contents[0].ice_udp().unwrap();
            assert_eq!((t.candidates.len(), t.skipped.over_limit), (limit, 1));
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The ports of the candidates and the count of candidates ignored over a limit, of each
/// `TransportInfo` event waiting.
fn transport_infos(m: &mut SessionManager) -> Vec<(Vec<u16>, usize)> {
    events(m)
        .into_iter()
        .map(|e| match e {
            SessionEvent::TransportInfo { transport, .. } => {
                let t = transport.ice_udp().unwrap();
                let ports = t.candidates.iter().map(|c| c.candidate.address.port());
                (ports.collect(), t.skipped.over_limit)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// `n` host candidates on ports `first`, `first + 1`, ... (about 115 bytes each as
/// `StanzaLimits` counts them).
fn many_candidates(n: u16, first: u16) -> String {
    (0..n)
        .map(|i| {
            format!(
                "<candidate component='1' foundation='1' generation='0' id='m{i}' \
                 ip='192.0.2.7' network='0' port='{}' priority='2130706431' protocol='udp' \
                 type='host'/>",
                first + i
            )
        })
        .collect()
}

/// A stanza of thousands of candidates within the stanza bounds every reader checks first.
fn within_stanza_limits(stanza: &Element) {
    jingle_ice::xmpp::stanza::StanzaLimits::DEFAULT
        .check(stanza)
        .expect("the test stanza is within StanzaLimits::DEFAULT");
}

/// XEP-0166 has no error for many candidates (`xep/0166.md`): a `transport-info` with 5,000
/// is answered with a result, the first ones up to the transport limit (64) reach the
/// application, and the rest are counted as ignored; the session's bound over all
/// transport-infos (128 per content) is kept the same way.
#[test]
fn a_transport_info_with_thousands_of_candidates_keeps_the_first_ones_and_ignores_the_rest() {
    let now = Instant::now();
    let (_a, mut b, _ka, kb) = established(now);
    let limits = SessionConfig::default();
    let (per_element, per_content) = (
        limits.transport_limits.max_candidates,
        limits.max_remote_candidates,
    );
    assert_eq!((per_element, per_content), (64, 128));
    let info = |id: &str, first: u16| {
        let transport = format!(
            "<transport xmlns='{NS_ICE_UDP}'>{}</transport>",
            many_candidates(5000, first)
        );
        let stanza = jingle_set(
            &alice_jid(),
            &bob_jid(),
            id,
            &transport_info_xml(&kb.sid, &transport),
        );
        within_stanza_limits(&stanza);
        stanza
    };
    // The offer carried 1 candidate: 64 of the 5,000 are kept, 65 known.
    assert!(b.handle_stanza(&info("ti1", 10_000), now));
    let replies = drain(&mut b);
    assert_eq!(replies.len(), 1);
    assert_eq!(iq_type(&replies[0]), Some(IqType::Result));
    let first: Vec<u16> = (10_000..10_064).collect();
    assert_eq!(transport_infos(&mut b), vec![(first, 5000 - 64)]);
    // 63 more fit under the session's 128.
    assert!(b.handle_stanza(&info("ti2", 20_000), now));
    assert_eq!(iq_type(&drain(&mut b)[0]), Some(IqType::Result));
    let next: Vec<u16> = (20_000..20_063).collect();
    assert_eq!(transport_infos(&mut b), vec![(next, 5000 - 63)]);
    // Then none: still a result, every candidate counted as ignored.
    assert!(b.handle_stanza(&info("ti3", 30_000), now));
    assert_eq!(iq_type(&drain(&mut b)[0]), Some(IqType::Result));
    assert_eq!(transport_infos(&mut b), vec![(vec![], 5000)]);
    assert_eq!(
        b.session_state(&kb),
        Some((SessionState::Active, SessionRole::Responder))
    );
}

/// The same for an offer: the session starts with the first 64 candidates.
#[test]
fn a_session_initiate_with_thousands_of_candidates_keeps_the_first_ones_and_ignores_the_rest() {
    let now = Instant::now();
    let mut b = manager(bob_jid(), 2);
    let stanza = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "si1",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='big1' \
             initiator='alice@example.test/a'><content creator='initiator' name='data'>\
             <description xmlns='{APP_NS}'/><transport xmlns='{NS_ICE_UDP}' ufrag='uaaa' \
             pwd='paaa0123456789abcdefghijkl'>{}</transport></content></jingle>",
            many_candidates(5000, 10_000)
        ),
    );
    within_stanza_limits(&stanza);
    assert!(b.handle_stanza(&stanza, now));
    assert_eq!(iq_type(&drain(&mut b)[0]), Some(IqType::Result));
    match events(&mut b).as_slice() {
        [SessionEvent::Incoming { contents, .. }] => {
            let t = contents[0].ice_udp().unwrap();
            let ports: Vec<u16> = t
                .candidates
                .iter()
                .map(|c| c.candidate.address.port())
                .collect();
            assert_eq!(ports, (10_000..10_064).collect::<Vec<u16>>());
            assert_eq!(t.skipped.over_limit, 5000 - 64);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(b.sessions().count(), 1);
}

/// And for an answer, against the session's bound too.
#[test]
fn a_session_accept_with_too_many_candidates_keeps_the_first_ones_and_ignores_the_rest() {
    let now = Instant::now();
    let config = SessionConfig {
        seed: Some(1),
        max_remote_candidates: 10,
        ..SessionConfig::default()
    };
    let mut a = SessionManager::new(alice_jid(), config);
    let ka = a
        .initiate(
            bob_jid(),
            vec![content(&creds("a"), vec![cand(1000, "a1")])],
            now,
        )
        .unwrap();
    drain(&mut a);
    let stanza = jingle_set(
        &bob_jid(),
        &alice_jid(),
        "sa1",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='{}' \
             responder='bob@example.test/b'><content creator='initiator' name='data'>\
             <description xmlns='{APP_NS}'/><transport xmlns='{NS_ICE_UDP}' ufrag='ubbb' \
             pwd='pbbb0123456789abcdefghijkl'>{}</transport></content></jingle>",
            ka.sid,
            many_candidates(3000, 10_000)
        ),
    );
    within_stanza_limits(&stanza);
    assert!(a.handle_stanza(&stanza, now));
    assert_eq!(iq_type(&drain(&mut a)[0]), Some(IqType::Result));
    match events(&mut a).as_slice() {
        [SessionEvent::Accepted { contents, .. }] => {
            let t = contents[0].ice_udp().unwrap();
            let ports: Vec<u16> = t
                .candidates
                .iter()
                .map(|c| c.candidate.address.port())
                .collect();
            assert_eq!(ports, (10_000..10_010).collect::<Vec<u16>>());
            assert_eq!(t.skipped.over_limit, 3000 - 10);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        a.session_state(&ka),
        Some((SessionState::Active, SessionRole::Initiator))
    );
}

#[test]
fn ice_restart_is_signalled_with_new_credentials() {
    let now = Instant::now();
    let (mut a, mut b, ka, kb) = established(now);
    a.restart(&ka, "data", creds("r"), vec![cand(1100, "r1")], now)
        .unwrap();
    let log = pump(&mut a, &mut b, now);
    let j = log[0].1.get_child("jingle", NS_JINGLE).unwrap();
    assert_eq!(j.attr("action"), Some("transport-info"));
    match events(&mut b).as_slice() {
        [SessionEvent::TransportInfo {
            key,
            transport,
            restart: true,
            ..
        }] => {
            assert_eq!(key, &kb);
            let t = transport.ice_udp().unwrap();
            assert_eq!(t.credentials(), Some(creds("r")));
            assert_eq!(t.candidates[0].generation, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Trickle after the restart carries the new credentials and generation.
    a.add_local_candidates(&ka, "data", vec![cand(1101, "r2")], now)
        .unwrap();
    a.handle_timeout(now + Duration::from_secs(1));
    pump(&mut a, &mut b, now);
    match events(&mut b).as_slice() {
        [SessionEvent::TransportInfo {
            transport,
            restart: false,
            ..
        }] => {
            let t = transport.ice_udp().unwrap();
            assert_eq!(t.credentials(), Some(creds("r")));
            assert_eq!(t.candidates[0].generation, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unsupported_transports_and_applications_are_declined_after_the_ack() {
    let now = Instant::now();
    let config = SessionConfig {
        seed: Some(3),
        applications: vec![APP_NS.to_owned()],
        ..SessionConfig::default()
    };
    let mut b = SessionManager::new(bob_jid(), config);
    let offer = |sid: &str, app: &str, transport: &str| {
        jingle_set(
            &alice_jid(),
            &bob_jid(),
            sid,
            &format!(
                "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='{sid}'>\
                 <content creator='initiator' name='data'><description xmlns='{app}'/>\
                 <transport xmlns='{transport}'/></content></jingle>"
            ),
        )
    };
    for (sid, app, transport, expected) in [
        (
            "x1",
            APP_NS,
            "urn:xmpp:jingle:transports:s5b:1",
            "unsupported-transports",
        ),
        (
            "x2",
            "urn:xmpp:jingle:apps:rtp:1",
            "urn:xmpp:jingle:transports:ice-udp:1",
            "unsupported-applications",
        ),
    ] {
        b.handle_stanza(&offer(sid, app, transport), now);
        let out = drain(&mut b);
        assert_eq!(iq_type(&out[0]), Some(IqType::Result));
        let j = out[1].get_child("jingle", NS_JINGLE).unwrap();
        assert_eq!(j.attr("action"), Some("session-terminate"));
        let reason = j.get_child("reason", NS_JINGLE).unwrap();
        assert!(reason.get_child(expected, NS_JINGLE).is_some());
        assert!(events(&mut b).is_empty());
        assert_eq!(b.sessions().count(), 0);
    }
}

#[test]
fn answers_from_anyone_but_the_peer_are_not_taken() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    a.initiate(bob_jid(), vec![content(&creds("a"), vec![])], now)
        .unwrap();
    let sent = drain(&mut a);
    let id = sent[0].attr("id").unwrap();
    let forged: Element = format!(
        "<iq xmlns='jabber:client' type='error' id='{id}' from='mallory@example.test/m'>\
         <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    .parse()
    .unwrap();
    assert!(!a.handle_stanza(&forged, now));
    assert_eq!(a.sessions().count(), 1);
    // The peer's server saying the peer is gone is taken.
    let bounce: Element = format!(
        "<iq xmlns='jabber:client' type='error' id='{id}' from='bob@example.test'>\
         <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    .parse()
    .unwrap();
    assert!(a.handle_stanza(&bounce, now));
    match events(&mut a).as_slice() {
        [SessionEvent::Terminated {
            by_peer: true,
            reason,
            ..
        }] => assert!(reason
            .text
            .as_deref()
            .unwrap()
            .contains("service-unavailable")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn requests_without_a_full_jid_sender_are_refused() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let req: Element = "<iq xmlns='jabber:client' type='set' id='n' from='bob@example.test'>\
        <jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='s'/></iq>"
        .parse()
        .unwrap();
    assert!(a.handle_stanza(&req, now));
    assert_eq!(error_conditions(&drain(&mut a)[0]).0, "bad-request");
    // Stanzas that are not Jingle are left to the caller.
    let other: Element = "<iq xmlns='jabber:client' type='get' id='d' from='bob@example.test/b'>\
        <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        .parse()
        .unwrap();
    assert!(!a.handle_stanza(&other, now));
    assert!(drain(&mut a).is_empty());
}

#[test]
fn crossing_offers_where_one_arrived_first_end_in_one_session() {
    for (seed_a, seed_b) in [(1, 2), (3, 4), (5, 6), (7, 8)] {
        let now = Instant::now();
        let mut a = manager(alice_jid(), seed_a);
        let mut b = manager(bob_jid(), seed_b);
        let ka = a
            .initiate(bob_jid(), vec![content(&creds("a"), vec![])], now)
            .unwrap();
        // Alice's offer reaches Bob and is acknowledged before Bob offers his own.
        for s in drain(&mut a) {
            assert!(b.handle_stanza(&stamp(s, &alice_jid()), now));
        }
        let kb = b
            .initiate(alice_jid(), vec![content(&creds("b"), vec![])], now)
            .unwrap();
        pump(&mut a, &mut b, now);
        let winner = std::cmp::min(ka.sid.clone(), kb.sid.clone());
        let sa: Vec<_> = a.sessions().map(|k| k.sid.clone()).collect();
        let sb: Vec<_> = b.sessions().map(|k| k.sid.clone()).collect();
        assert_eq!(sa, vec![winner.clone()], "seeds {seed_a} {seed_b}");
        assert_eq!(sb, vec![winner.clone()], "seeds {seed_a} {seed_b}");
        // The loser's initiator learns which session replaced its offer.
        let loser = if ka.sid == winner { &mut b } else { &mut a };
        assert!(events(loser).iter().any(|e| matches!(e,
            SessionEvent::Terminated { reason, .. }
                if reason.condition == ReasonCondition::AlternativeSession(winner.clone()))));
    }
}

// ---- Conversations' webrtc-datachannel:1 transport ---------------------------------------

const DC_INITIATE: &str = include_str!("../xep/fixtures/webrtc-datachannel-initiate.xml");
const DC_ACCEPT: &str = include_str!("../xep/fixtures/webrtc-datachannel-accept.xml");
const DC_TRANSPORT_INFO: &str =
    include_str!("../xep/fixtures/webrtc-datachannel-transport-info.xml");
const NS_FT: &str = "urn:xmpp:jingle:apps:file-transfer:5";

fn file_description() -> Element {
    "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>\
     <name>a.bin</name><size>3</size><mediaType>application/octet-stream</mediaType>\
     </file></description>"
        .parse()
        .unwrap()
}

/// A file-transfer content named `0` (as Conversations names it) over a data channel with a
/// SHA-256 fingerprint of 32 `byte`s.
fn dc_content(creds: &Credentials, cands: Vec<IceUdpCandidate>, setup: Setup, byte: u8) -> Content {
    let fp = DtlsFingerprint::new(setup, Fingerprint::new("sha-256", vec![byte; 32]).unwrap());
    let t = DataChannelTransport::with_fingerprint(IceUdpTransport::new(creds, cands), fp);
    let mut c = Content::new("0", file_description(), Transport::DataChannel(t));
    c.senders = Senders::Initiator;
    c
}

/// The `<jingle/>` of a stanza.
fn jingle_of(stanza: &Element) -> Jingle {
    Jingle::from_element(
        stanza.get_child("jingle", NS_JINGLE).unwrap(),
        TransportLimits::default(),
    )
    .unwrap()
}

/// The outer and inner transport elements of the only content of a stanza, as sent.
fn wire_transports(stanza: &Element) -> (Element, Element) {
    let outer = stanza
        .get_child("jingle", NS_JINGLE)
        .unwrap()
        .get_child("content", NS_JINGLE)
        .unwrap()
        .get_child("transport", NS_WEBRTC_DATACHANNEL)
        .expect("transport wrapped in webrtc-datachannel")
        .clone();
    let inner = outer.get_child("transport", NS_ICE_UDP).unwrap().clone();
    (outer, inner)
}

fn data_channel_of(t: &Transport) -> &DataChannelTransport {
    t.data_channel()
        .unwrap_or_else(|| panic!("not a data channel: {t:?}"))
}

#[test]
fn data_channel_session_end_to_end() {
    let now = Instant::now();
    let mut a = manager(alice_jid(), 1);
    let mut b = manager(bob_jid(), 2);
    let ka = a
        .initiate(
            bob_jid(),
            vec![dc_content(&creds("a"), vec![], Setup::Actpass, 0xAA)],
            now,
        )
        .unwrap();
    let log = pump(&mut a, &mut b, now);
    assert_eq!(log.len(), 2);
    // The offer as Conversations writes it: SCTP attributes outside, fingerprint inside the
    // ICE-UDP transport, uppercase hex, a BUNDLE group naming content 0.
    let (outer, inner) = wire_transports(&log[0].1);
    assert_eq!(outer.attr("sctp-port"), Some("5000"));
    assert_eq!(outer.attr("max-message-size"), Some("262144"));
    let fp = inner.get_child("fingerprint", NS_DTLS).unwrap();
    assert_eq!(fp.attr("setup"), Some("actpass"));
    assert_eq!(fp.attr("hash"), Some("sha-256"));
    assert!(fp.text().starts_with("AA:AA:"));
    let group = log[0]
        .1
        .get_child("jingle", NS_JINGLE)
        .unwrap()
        .get_child("group", NS_GROUPING)
        .unwrap();
    assert_eq!(read_bundle_group(group), Some(vec!["0".to_owned()]));

    let (kb, offer) = match events(&mut b).as_slice() {
        [SessionEvent::Incoming { key, contents }] => (key.clone(), contents.clone()),
        other => panic!("unexpected {other:?}"),
    };
    let offered = data_channel_of(offer[0].transport.as_ref().unwrap());
    assert_eq!(offered.sctp_port, Some(5000));
    let their_fp = offered.fingerprint().unwrap().clone();
    assert_eq!(their_fp.setup, Setup::Actpass);
    assert_eq!(their_fp.value(), &[0xAA; 32]);
    // The ICE part reads the same as for plain ICE-UDP.
    assert_eq!(offer[0].ice_credentials(), Some(creds("a")));

    let our_setup = their_fp.setup.answer().unwrap();
    assert_eq!(our_setup, Setup::Active);
    b.accept(
        &kb,
        vec![dc_content(&creds("b"), vec![], our_setup, 0xBB)],
        now,
    )
    .unwrap();
    let log = pump(&mut a, &mut b, now);
    assert_eq!(log.len(), 2);
    let (_, inner) = wire_transports(&log[0].1);
    assert_eq!(
        inner
            .get_child("fingerprint", NS_DTLS)
            .unwrap()
            .attr("setup"),
        Some("active")
    );
    let answer = match events(&mut a).as_slice() {
        [SessionEvent::Accepted { contents, .. }] => contents.clone(),
        other => panic!("unexpected {other:?}"),
    };
    let answered = data_channel_of(answer[0].transport.as_ref().unwrap());
    let answer_setup = answered.fingerprint().unwrap().setup;
    assert_eq!(
        dtls_role(Setup::Actpass, answer_setup, true),
        Ok(DtlsRole::Server)
    );
    assert_eq!(
        dtls_role(Setup::Actpass, answer_setup, false),
        Ok(DtlsRole::Client)
    );

    // Trickle both ways: every transport-info is wrapped like the content, without the
    // fingerprint, with the credentials.
    a.add_local_candidates(&ka, "0", vec![cand(1000, "a1")], now)
        .unwrap();
    b.add_local_candidates(&kb, "0", vec![cand(2000, "b1")], now)
        .unwrap();
    let later = now + Duration::from_millis(50);
    a.handle_timeout(later);
    b.handle_timeout(later);
    let log = pump(&mut a, &mut b, later);
    let infos: Vec<&Element> = log
        .iter()
        .map(|(_, s)| s)
        .filter(|s| iq_type(s) == Some(IqType::Set))
        .collect();
    assert_eq!(infos.len(), 2);
    for s in &infos {
        let (outer, inner) = wire_transports(s);
        assert_eq!(outer.attr("sctp-port"), Some("5000"));
        assert_eq!(outer.attr("max-message-size"), Some("262144"));
        assert!(inner.attr("ufrag").is_some() && inner.attr("pwd").is_some());
        assert!(inner.get_child("fingerprint", NS_DTLS).is_none());
        assert_eq!(
            inner.children().filter(|c| c.name() == "candidate").count(),
            1
        );
        let j = s.get_child("jingle", NS_JINGLE).unwrap();
        assert_eq!(j.attr("action"), Some("transport-info"));
        let c = j.get_child("content", NS_JINGLE).unwrap();
        assert_eq!(c.attr("name"), Some("0"));
        assert_eq!(c.attr("senders"), Some("initiator"));
        assert!(c.get_child("description", NS_FT).is_none());
    }
    for (m, port) in [(&mut b, 1000u16), (&mut a, 2000)] {
        match events(m).as_slice() {
            [SessionEvent::TransportInfo {
                content,
                transport,
                restart: false,
                ..
            }] => {
                assert_eq!(content, "0");
                let dc = data_channel_of(transport);
                assert_eq!(dc.ice.candidates[0].candidate.address.port(), port);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // An ICE restart is wrapped the same way.
    a.restart(&ka, "0", creds("r"), vec![cand(1100, "r1")], later)
        .unwrap();
    let log = pump(&mut a, &mut b, later);
    let (outer, inner) = wire_transports(&log[0].1);
    assert_eq!(outer.attr("sctp-port"), Some("5000"));
    assert_eq!(inner.attr("ufrag"), Some(creds("r").ufrag.as_str()));
    match events(&mut b).as_slice() {
        [SessionEvent::TransportInfo {
            transport,
            restart: true,
            ..
        }] => {
            assert_eq!(data_channel_of(transport).ice.candidates[0].generation, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn conversations_fixtures_parse() {
    let init: Element = DC_INITIATE.parse().unwrap();
    let j = jingle_of(&init);
    assert_eq!(
        j.initiator, None,
        "Conversations sets no initiator attribute"
    );
    let c = &j.contents[0];
    assert_eq!(c.name, "0");
    assert_eq!(c.senders, Senders::Initiator);
    assert_eq!(c.description_ns().as_deref(), Some(NS_FT));
    let t = data_channel_of(c.transport.as_ref().unwrap());
    assert_eq!(t.sctp_port, Some(5000));
    assert_eq!(t.max_message_size, Some(262_144));
    assert!(t.ice.candidates.is_empty());
    assert_eq!(t.ice.ufrag.as_deref(), Some("Rk7q"));
    let fp = t.fingerprint().unwrap();
    assert_eq!((fp.hash(), fp.setup), ("sha-256", Setup::Actpass));
    assert_eq!(fp.value().len(), 32);
    assert_eq!(fp.value()[0], 0x3C);
    t.check_offer_or_answer().unwrap();
    let group = j.payloads.iter().find_map(read_bundle_group).unwrap();
    assert_eq!(group, vec!["0".to_owned()]);
    // Our rendering of it has the same shape (fingerprint first, both SCTP attributes).
    let ours = t.to_element();
    assert_eq!(ours.attr("sctp-port"), Some("5000"));
    assert_eq!(
        ours.get_child("transport", NS_ICE_UDP)
            .unwrap()
            .children()
            .next()
            .map(|c| c.name().to_owned()),
        Some("fingerprint".to_owned())
    );

    let acc: Element = DC_ACCEPT.parse().unwrap();
    let j = jingle_of(&acc);
    let t = data_channel_of(j.contents[0].transport.as_ref().unwrap());
    assert_eq!(t.fingerprint().unwrap().setup, Setup::Active);
    assert_eq!(
        dtls_role(Setup::Actpass, Setup::Active, true),
        Ok(DtlsRole::Server)
    );

    let info: Element = DC_TRANSPORT_INFO.parse().unwrap();
    let j = jingle_of(&info);
    let t = data_channel_of(j.contents[0].transport.as_ref().unwrap());
    assert!(t.fingerprint().is_none());
    assert_eq!(t.ice.candidates.len(), 1);
    let cand = &t.ice.candidates[0];
    assert_eq!(cand.id, "6f1c2a9e-3b7d-4e58-a0c4-92d17be5f308");
    assert_eq!(cand.network, 0, "Conversations sends no network attribute");
    assert_eq!(
        cand.candidate.address,
        "203.0.113.45:48211".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        cand.candidate.related_address,
        Some("10.0.2.16:48211".parse().unwrap())
    );
}

fn conversations_jid() -> FullJid {
    FullJid::new("alice@example.test/Conversations.Xk3q").unwrap()
}
fn our_jid() -> FullJid {
    FullJid::new("bob@example.test/jingle-ice").unwrap()
}

#[test]
fn an_offer_written_like_conversations_is_answered_and_its_trickle_understood() {
    let now = Instant::now();
    let mut us = manager(our_jid(), 7);
    let init: Element = DC_INITIATE.parse().unwrap();
    assert!(us.handle_stanza(&init, now));
    let out = drain(&mut us);
    assert_eq!(out.len(), 1);
    assert_eq!(iq_type(&out[0]), Some(IqType::Result));
    let (key, offer) = match events(&mut us).as_slice() {
        [SessionEvent::Incoming { key, contents }] => (key.clone(), contents.clone()),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(key.peer, conversations_jid());
    let setup = data_channel_of(offer[0].transport.as_ref().unwrap())
        .fingerprint()
        .unwrap()
        .setup
        .answer()
        .unwrap();
    us.accept(
        &key,
        vec![dc_content(&creds("u"), vec![], setup, 0x11)],
        now,
    )
    .unwrap();
    let out = drain(&mut us);
    assert_eq!(out.len(), 1);
    let accept = &out[0];
    let j = accept.get_child("jingle", NS_JINGLE).unwrap();
    assert_eq!(j.attr("action"), Some("session-accept"));
    let c = j.get_child("content", NS_JINGLE).unwrap();
    assert_eq!(c.attr("name"), Some("0"));
    assert_eq!(c.attr("creator"), Some("initiator"));
    assert_eq!(
        read_bundle_group(j.get_child("group", NS_GROUPING).unwrap()),
        Some(vec!["0".to_owned()])
    );
    let (_, inner) = wire_transports(accept);
    assert_eq!(
        inner
            .get_child("fingerprint", NS_DTLS)
            .unwrap()
            .attr("setup"),
        Some("active")
    );
    let ack = iq_result_for(accept, &conversations_jid());
    assert!(us.handle_stanza(&ack, now));

    // Conversations trickles one candidate per transport-info, wrapped.
    let info: Element = DC_TRANSPORT_INFO.parse().unwrap();
    assert!(us.handle_stanza(&info, now));
    let out = drain(&mut us);
    assert_eq!(iq_type(&out[0]), Some(IqType::Result));
    match events(&mut us).as_slice() {
        [SessionEvent::TransportInfo {
            content,
            transport,
            restart: false,
            ..
        }] => {
            assert_eq!(content, "0");
            let dc = data_channel_of(transport);
            assert_eq!(dc.ice.credentials(), offer[0].ice_credentials());
            assert_eq!(dc.ice.candidates.len(), 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The result a peer sends for one of our requests.
fn iq_result_for(request: &Element, from: &FullJid) -> Element {
    format!(
        "<iq xmlns='jabber:client' type='result' id='{}' from='{from}'/>",
        request.attr("id").unwrap()
    )
    .parse()
    .unwrap()
}

#[test]
fn an_answer_written_like_conversations_is_taken() {
    let now = Instant::now();
    let peer = FullJid::new("bob@example.test/Conversations.Yp7m").unwrap();
    let mut us = manager(FullJid::new("alice@example.test/jingle-ice").unwrap(), 8);
    let key = us
        .initiate(
            peer.clone(),
            vec![dc_content(&creds("o"), vec![], Setup::Actpass, 0x22)],
            now,
        )
        .unwrap();
    let out = drain(&mut us);
    assert!(us.handle_stanza(&iq_result_for(&out[0], &peer), now));
    let xml = DC_ACCEPT.replace("Lr4kV9yTn2Qa8Hsx", &key.sid);
    let accept: Element = xml.parse().unwrap();
    assert!(us.handle_stanza(&accept, now));
    assert_eq!(iq_type(&drain(&mut us)[0]), Some(IqType::Result));
    match events(&mut us).as_slice() {
        [SessionEvent::Accepted { contents, .. }] => {
            let dc = data_channel_of(contents[0].transport.as_ref().unwrap());
            let setup = dc.fingerprint().unwrap().setup;
            assert_eq!(dtls_role(Setup::Actpass, setup, true), Ok(DtlsRole::Server));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        us.session_state(&key),
        Some((SessionState::Active, SessionRole::Initiator))
    );
}

#[test]
fn bad_data_channel_offers_and_answers_get_bad_request() {
    let now = Instant::now();
    // An offer without a fingerprint.
    let start = DC_INITIATE.find("<fingerprint").unwrap();
    let end = DC_INITIATE.find("</fingerprint>").unwrap() + "</fingerprint>".len();
    let no_fp = format!("{}{}", &DC_INITIATE[..start], &DC_INITIATE[end..]);
    // A fingerprint with a bad hex pair, one with a wrong length, one with an unknown setup.
    let bad_hex = DC_INITIATE.replace("3C:91:0A", "3C:9Z:0A");
    let short = DC_INITIATE.replace("3C:91:0A:", "");
    let bad_setup = DC_INITIATE.replace("setup=\"actpass\"", "setup=\"sometimes\"");
    let holdconn = DC_INITIATE.replace("setup=\"actpass\"", "setup=\"holdconn\"");
    for xml in [no_fp, bad_hex, short, bad_setup, holdconn] {
        let mut us = manager(our_jid(), 9);
        let stanza: Element = xml.parse().unwrap();
        assert!(us.handle_stanza(&stanza, now));
        let out = drain(&mut us);
        assert_eq!(error_conditions(&out[0]).0, "bad-request");
        assert!(events(&mut us).is_empty());
        assert_eq!(us.sessions().count(), 0);
    }

    // Answers that do not fit our data-channel offer: setup actpass, no fingerprint, plain
    // ICE-UDP.
    let peer = FullJid::new("bob@example.test/Conversations.Yp7m").unwrap();
    let plain_ice = {
        let s = DC_ACCEPT
            .find("<transport xmlns=\"urn:xmpp:jingle:transports:webrtc")
            .unwrap();
        let inner = DC_ACCEPT
            .find("<transport xmlns=\"urn:xmpp:jingle:transports:ice-udp")
            .unwrap();
        let inner_end = DC_ACCEPT.find("</transport>").unwrap() + "</transport>".len();
        let outer_end =
            inner_end + DC_ACCEPT[inner_end..].find("</transport>").unwrap() + "</transport>".len();
        format!(
            "{}{}{}",
            &DC_ACCEPT[..s],
            &DC_ACCEPT[inner..inner_end],
            &DC_ACCEPT[outer_end..]
        )
    };
    let answers = [
        DC_ACCEPT.replace("setup=\"active\"", "setup=\"actpass\""),
        {
            let start = DC_ACCEPT.find("<fingerprint").unwrap();
            let end = DC_ACCEPT.find("</fingerprint>").unwrap() + "</fingerprint>".len();
            format!("{}{}", &DC_ACCEPT[..start], &DC_ACCEPT[end..])
        },
        plain_ice,
    ];
    for xml in answers {
        let mut us = manager(FullJid::new("alice@example.test/jingle-ice").unwrap(), 10);
        let key = us
            .initiate(
                peer.clone(),
                vec![dc_content(&creds("o"), vec![], Setup::Actpass, 0x22)],
                now,
            )
            .unwrap();
        let out = drain(&mut us);
        assert!(us.handle_stanza(&iq_result_for(&out[0], &peer), now));
        let stanza: Element = xml.replace("Lr4kV9yTn2Qa8Hsx", &key.sid).parse().unwrap();
        assert!(us.handle_stanza(&stanza, now));
        let out = drain(&mut us);
        assert_eq!(error_conditions(&out[0]).0, "bad-request", "{xml}");
        assert!(events(&mut us).is_empty());
        assert_eq!(
            us.session_state(&key),
            Some((SessionState::Pending, SessionRole::Initiator))
        );
    }
}

#[test]
fn plain_ice_udp_transport_info_stays_plain() {
    let now = Instant::now();
    let (mut a, mut b, ka, _) = established(now);
    a.add_local_candidates(&ka, "data", vec![cand(1001, "t")], now)
        .unwrap();
    a.handle_timeout(now + Duration::from_secs(1));
    let log = pump(&mut a, &mut b, now);
    let content = log[0]
        .1
        .get_child("jingle", NS_JINGLE)
        .unwrap()
        .get_child("content", NS_JINGLE)
        .unwrap()
        .clone();
    assert!(content.get_child("transport", NS_ICE_UDP).is_some());
    assert!(content
        .get_child("transport", NS_WEBRTC_DATACHANNEL)
        .is_none());
    assert!(log[0]
        .1
        .get_child("jingle", NS_JINGLE)
        .unwrap()
        .get_child("group", NS_GROUPING)
        .is_none());
}

fn ibb(sid: &str, block_size: u16) -> Transport {
    Transport::Ibb(jingle_ice::ibb::IbbTransport {
        sid: sid.into(),
        block_size,
    })
}

#[test]
fn transport_replace_to_ibb_is_accepted_with_the_smaller_block_size() {
    let now = Instant::now();
    let (mut a, mut b, ka, kb) = established(now);
    a.replace_transport(&ka, "data", ibb("s1", 8192), now)
        .unwrap();
    pump(&mut a, &mut b, now);
    match events(&mut b).as_slice() {
        [SessionEvent::TransportReplace {
            content, transport, ..
        }] => {
            assert_eq!(content, "data");
            assert_eq!(*transport, ibb("s1", 8192));
        }
        other => panic!("unexpected {other:?}"),
    }
    b.accept_transport(&kb, "data", ibb("s1", 4096), now)
        .unwrap();
    let log = pump(&mut a, &mut b, now);
    assert!(log.iter().all(|(_, s)| iq_type(s) != Some(IqType::Error)));
    match events(&mut a).as_slice() {
        [SessionEvent::TransportAccepted { transport, .. }] => {
            assert_eq!(*transport, ibb("s1", 4096));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Answered once only.
    assert!(b
        .accept_transport(&kb, "data", ibb("s1", 4096), now)
        .is_err());
}

#[test]
fn transport_replace_can_be_rejected_and_unsupported_ones_are_rejected_at_once() {
    let now = Instant::now();
    let (mut a, mut b, ka, kb) = established(now);
    a.replace_transport(&ka, "data", ibb("s1", 8192), now)
        .unwrap();
    pump(&mut a, &mut b, now);
    assert_eq!(events(&mut b).len(), 1);
    b.reject_transport(&kb, "data", now).unwrap();
    pump(&mut a, &mut b, now);
    assert!(matches!(
        events(&mut a).as_slice(),
        [SessionEvent::TransportRejected { .. }]
    ));
    // A transport nobody here speaks (SOCKS5): acknowledged, then rejected without asking.
    let socks = Element::bare("transport", "urn:xmpp:jingle:transports:s5b:1");
    a.replace_transport(&ka, "data", Transport::Other(socks), now)
        .unwrap();
    let log = pump(&mut a, &mut b, now);
    assert!(events(&mut b).is_empty());
    assert!(log.iter().any(|(from, s)| *from == bob_jid()
        && s.get_child("jingle", NS_JINGLE)
            .is_some_and(|j| j.attr("action") == Some("transport-reject"))));
    assert!(matches!(
        events(&mut a).as_slice(),
        [SessionEvent::TransportRejected { .. }]
    ));
}

#[test]
fn crossing_transport_replaces_are_won_by_the_initiator() {
    let now = Instant::now();
    let (mut a, mut b, ka, kb) = established(now);
    a.replace_transport(&ka, "data", ibb("from-a", 8192), now)
        .unwrap();
    b.replace_transport(&kb, "data", ibb("from-b", 8192), now)
        .unwrap();
    let from_a = drain(&mut a);
    let from_b = drain(&mut b);
    for s in from_b {
        a.handle_stanza(&stamp(s, &bob_jid()), now);
    }
    let answer = drain(&mut a);
    assert_eq!(
        error_conditions(&answer[0]),
        ("conflict".to_owned(), Some("tie-break".to_owned()))
    );
    for s in from_a {
        b.handle_stanza(&stamp(s, &alice_jid()), now);
    }
    for s in answer {
        b.handle_stanza(&stamp(s, &alice_jid()), now);
    }
    let evs = events(&mut b);
    assert!(evs.iter().any(|e| matches!(e,
        SessionEvent::TransportReplace { transport, .. } if *transport == ibb("from-a", 8192))));
    b.accept_transport(&kb, "data", ibb("from-a", 8192), now)
        .unwrap();
    pump(&mut a, &mut b, now);
    assert!(matches!(
        events(&mut a).as_slice(),
        [SessionEvent::TransportAccepted { .. }]
    ));
}

#[test]
fn transport_accept_without_a_replace_is_out_of_order() {
    let now = Instant::now();
    let (_a, mut b, _ka, kb) = established(now);
    let accept = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "ta",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='transport-accept' sid='{}'>\
             <content creator='initiator' name='data'>\
             <transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='x' block-size='4096'/>\
             </content></jingle>",
            kb.sid
        ),
    );
    b.handle_stanza(&accept, now);
    assert_eq!(
        error_conditions(&drain(&mut b)[0]),
        (
            "unexpected-request".to_owned(),
            Some("out-of-order".to_owned())
        )
    );
    let bad_ibb = jingle_set(
        &alice_jid(),
        &bob_jid(),
        "tr",
        &format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='transport-replace' sid='{}'>\
             <content creator='initiator' name='data'>\
             <transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='x' block-size='0'/>\
             </content></jingle>",
            kb.sid
        ),
    );
    b.handle_stanza(&bad_ibb, now);
    assert_eq!(error_conditions(&drain(&mut b)[0]).0, "bad-request");
    assert!(events(&mut b).is_empty());
}

#[test]
fn a_jet_security_element_is_kept_with_its_content() {
    // XEP-0391 (the shape Dino sends for an OMEMO-encrypted file): the session layer keeps
    // <security/> so that the application sees it, and renders it unchanged.
    let stanza: Element = include_str!("../xep/fixtures/ft-offer-jet.xml")
        .parse()
        .unwrap();
    let jingle = jingle_of(&stanza);
    let security = jingle.contents[0].security.as_ref().expect("kept");
    assert!(security.is("security", jingle_ice::jingle::element::NS_JET));
    assert_eq!(
        security.attr("type"),
        Some("eu.siacs.conversations.axolotl")
    );
    let again = Jingle::from_element(&jingle.to_element(), TransportLimits::default()).unwrap();
    assert_eq!(again.contents[0].security.as_ref(), Some(security));
}
