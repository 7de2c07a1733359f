//! The sans-IO TURN client (RFC 8656) against a small fake TURN server built on our STUN
//! codec, in virtual time: authentication (401, 438, wrong credentials), quota, a silent
//! server, refresh timing, permissions, channels, Send/Data indications, ChannelData both
//! ways, TCP framing split at every byte boundary, garbage and truncated streams, and
//! deallocation.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use jingle_ice::stun::{
    error_code, long_term_key, Class, Message, MessageEncoder, Method, RetransmitConfig,
    TransactionId,
};
use jingle_ice::turn::{
    encode_channel_data, ChannelData, FrameError, TurnClient, TurnConfig, TurnCredentials,
    TurnError, TurnEvent, TurnState, TurnTransport, CHANNEL_MIN, PROTOCOL_UDP,
};

const SERVER: ([u8; 4], u16) = ([192, 0, 2, 1], 3478);
const RELAYED: ([u8; 4], u16) = ([192, 0, 2, 1], 50_000);
const MAPPED: ([u8; 4], u16) = ([198, 51, 100, 7], 40_000);
const REALM: &str = "example.test";
const USER: &str = "alice";
const PASS: &str = "secret";

fn server_addr() -> SocketAddr {
    SERVER.into()
}

fn peer(n: u8) -> SocketAddr {
    ([203, 0, 113, n], 6000 + u16::from(n)).into()
}

/// What the fake server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    authenticated: bool,
    nonce: Option<String>,
    lifetime: Option<u32>,
    transport: Option<u8>,
    channel: Option<u16>,
}

/// A fake TURN server: long-term auth with a rotating nonce, one allocation, permissions and
/// channels, and knobs for the failure cases.
struct FakeServer {
    transport: TurnTransport,
    nonce: String,
    nonce_counter: u32,
    username: String,
    key: [u8; 16],
    lifetime: u32,
    allocated: bool,
    permissions: HashSet<IpAddr>,
    channels: HashMap<u16, SocketAddr>,
    /// The next authenticated request gets 438 with a new nonce.
    stale_next: bool,
    /// Every authenticated request gets 438.
    always_stale: bool,
    /// Answer Allocate with this error code (after authentication).
    allocate_error: Option<u16>,
    /// Answer 441 instead of 401 to a bad MESSAGE-INTEGRITY.
    wrong_credentials_441: bool,
    /// Answer nothing at all.
    silent: bool,
    /// Answer nothing to Refresh.
    silent_refresh: bool,
    /// Relaying to this address fails, and the server tears the whole allocation down, as
    /// coturn 4.6 does when a relayed send fails with ENETUNREACH; its next answer comes from
    /// a new session (a new nonce).
    unreachable: Option<IpAddr>,
    /// The code a CreatePermission or ChannelBind without an allocation gets: 437 (RFC 8656
    /// §19), or 400 as coturn 4.6 answers.
    no_allocation_code: u16,
    seen: Vec<Seen>,
    /// Data the client sent to peers: (peer, data, via channel).
    to_peers: Vec<(SocketAddr, Vec<u8>, bool)>,
}

impl FakeServer {
    fn new(transport: TurnTransport) -> Self {
        FakeServer {
            transport,
            nonce: "nonce-0".into(),
            nonce_counter: 0,
            username: USER.into(),
            key: long_term_key(USER, REALM, PASS),
            lifetime: 600,
            allocated: false,
            permissions: HashSet::new(),
            channels: HashMap::new(),
            stale_next: false,
            always_stale: false,
            allocate_error: None,
            wrong_credentials_441: false,
            silent: false,
            silent_refresh: false,
            unreachable: None,
            no_allocation_code: error_code::ALLOCATION_MISMATCH,
            seen: Vec::new(),
            to_peers: Vec::new(),
        }
    }

    fn rotate_nonce(&mut self) {
        self.nonce_counter += 1;
        self.nonce = format!("nonce-{}", self.nonce_counter);
    }

    /// Handles one message from the client; returns the answers to send back.
    fn handle(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        if self.silent {
            return Vec::new();
        }
        if bytes.first().is_some_and(|b| b & 0xC0 == 0x40) {
            let cd = ChannelData::decode(bytes).expect("valid ChannelData from the client");
            if self.transport == TurnTransport::Tcp {
                assert_eq!(bytes.len() % 4, 0, "ChannelData over TCP is padded");
            }
            let Some(&peer) = self.channels.get(&cd.channel) else {
                return Vec::new(); // no such channel (any more): dropped, as RFC 8656 §12.4
            };
            self.relay(peer, cd.data, true);
            return Vec::new();
        }
        let msg = Message::decode(bytes).expect("valid STUN from the client");
        if msg.class() == Class::Indication {
            assert_eq!(msg.method(), Method::SEND);
            let peer = msg.xor_peer_address().expect("XOR-PEER-ADDRESS");
            if self.allocated && self.permissions.contains(&peer.ip()) {
                self.relay(peer, msg.data().expect("DATA"), false);
            }
            return Vec::new();
        }
        assert_eq!(msg.class(), Class::Request);
        assert!(msg.has_fingerprint());
        self.seen.push(Seen {
            method: msg.method(),
            authenticated: msg.has_message_integrity(),
            nonce: msg.nonce().map(str::to_owned),
            lifetime: msg.lifetime(),
            transport: msg.requested_transport(),
            channel: msg.channel_number(),
        });
        if self.silent_refresh && msg.method() == Method::REFRESH {
            return Vec::new();
        }
        let id = msg.transaction_id();
        let method = msg.method();
        if !msg.has_message_integrity() {
            return vec![self.error(method, id, error_code::UNAUTHORIZED, true, false)];
        }
        if msg.username() != Some(self.username.as_str())
            || msg.realm() != Some(REALM)
            || msg.verify_integrity(&self.key).is_err()
        {
            let code = if self.wrong_credentials_441 {
                error_code::WRONG_CREDENTIALS
            } else {
                error_code::UNAUTHORIZED
            };
            return vec![self.error(method, id, code, true, false)];
        }
        if self.stale_next || self.always_stale || msg.nonce() != Some(self.nonce.as_str()) {
            self.stale_next = false;
            self.rotate_nonce();
            return vec![self.error(method, id, error_code::STALE_NONCE, true, false)];
        }
        let mut out = Vec::new();
        match method {
            Method::ALLOCATE => {
                if let Some(code) = self.allocate_error {
                    return vec![self.error(method, id, code, false, true)];
                }
                if self.allocated {
                    // RFC 8656 §7.2: the 5-tuple already has an allocation.
                    return vec![self.error(
                        method,
                        id,
                        error_code::ALLOCATION_MISMATCH,
                        false,
                        true,
                    )];
                }
                assert_eq!(msg.requested_transport(), Some(PROTOCOL_UDP));
                self.allocated = true;
                let mut enc = MessageEncoder::new(&mut out, Class::SuccessResponse, method, id);
                enc.xor_relayed_address(RELAYED.into())
                    .xor_mapped_address(MAPPED.into())
                    .lifetime(self.lifetime)
                    .message_integrity(&self.key)
                    .fingerprint();
            }
            Method::REFRESH => {
                let lifetime = msg.lifetime().unwrap_or(self.lifetime).min(self.lifetime);
                if !self.allocated {
                    return vec![self.error(
                        method,
                        id,
                        error_code::ALLOCATION_MISMATCH,
                        false,
                        true,
                    )];
                }
                if lifetime == 0 {
                    self.allocated = false;
                }
                let mut enc = MessageEncoder::new(&mut out, Class::SuccessResponse, method, id);
                enc.lifetime(lifetime)
                    .message_integrity(&self.key)
                    .fingerprint();
            }
            Method::CREATE_PERMISSION | Method::CHANNEL_BIND if !self.allocated => {
                let code = self.no_allocation_code;
                return vec![self.error(method, id, code, false, true)];
            }
            Method::CREATE_PERMISSION => {
                for p in msg.xor_peer_addresses() {
                    self.permissions.insert(p.ip());
                }
                let mut enc = MessageEncoder::new(&mut out, Class::SuccessResponse, method, id);
                enc.message_integrity(&self.key).fingerprint();
            }
            Method::CHANNEL_BIND => {
                let channel = msg.channel_number().expect("CHANNEL-NUMBER");
                let peer = msg.xor_peer_address().expect("XOR-PEER-ADDRESS");
                self.channels.insert(channel, peer);
                self.permissions.insert(peer.ip());
                let mut enc = MessageEncoder::new(&mut out, Class::SuccessResponse, method, id);
                enc.message_integrity(&self.key).fingerprint();
            }
            other => panic!("unexpected method {other:?}"),
        }
        vec![out]
    }

    /// Relays data from the client to `peer`; a send to the unreachable address ends the
    /// allocation.
    fn relay(&mut self, peer: SocketAddr, data: &[u8], channel: bool) {
        if self.unreachable == Some(peer.ip()) {
            self.allocated = false;
            self.permissions.clear();
            self.channels.clear();
            self.rotate_nonce();
            return;
        }
        self.to_peers.push((peer, data.to_vec(), channel));
    }

    fn error(
        &self,
        method: Method,
        id: TransactionId,
        code: u16,
        realm_nonce: bool,
        integrity: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(&mut out, Class::ErrorResponse, method, id);
        enc.error_code(code, error_code::default_reason(code));
        if realm_nonce {
            enc.realm(REALM).nonce(&self.nonce);
        }
        if code == error_code::TRY_ALTERNATE {
            enc.alternate_server(([192, 0, 2, 99], 3478).into());
        }
        if integrity {
            enc.message_integrity(&self.key);
        }
        enc.fingerprint();
        out
    }

    /// What the server sends when `peer` sends `data` to the relayed address: ChannelData
    /// if a channel is bound to it, else a Data indication if a permission exists.
    fn relay_from_peer(&self, peer: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        if let Some((&channel, _)) = self.channels.iter().find(|(_, p)| **p == peer) {
            let mut out = Vec::new();
            encode_channel_data(
                channel,
                data,
                self.transport == TurnTransport::Tcp,
                &mut out,
            )
            .unwrap();
            return Some(out);
        }
        if !self.permissions.contains(&peer.ip()) {
            return None;
        }
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            Class::Indication,
            Method::DATA,
            TransactionId([7; 12]),
        );
        enc.xor_peer_address(peer).data(data);
        Some(out)
    }
}

/// A client and a fake server in virtual time.
struct Harness {
    client: TurnClient,
    server: FakeServer,
    now: Instant,
    events: Vec<TurnEvent>,
    /// Bytes the client sent, in order (one entry per transmit).
    sent: Vec<Vec<u8>>,
}

impl Harness {
    fn new(transport: TurnTransport) -> Self {
        Harness::with(transport, TurnCredentials::long_term(USER, PASS), |_| {})
    }

    fn with(
        transport: TurnTransport,
        credentials: TurnCredentials,
        tweak: impl FnOnce(&mut TurnConfig),
    ) -> Self {
        let now = Instant::now();
        let mut config = TurnConfig::new(server_addr(), transport, credentials);
        config.seed = Some(7);
        tweak(&mut config);
        Harness {
            client: TurnClient::new(config, now),
            server: FakeServer::new(transport),
            now,
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Delivers everything the client queued to the server and the answers back, until
    /// both are quiet; collects the events.
    fn exchange(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            assert_eq!(t.destination, server_addr());
            self.sent.push(t.data.clone());
            for answer in self.server.handle(&t.data) {
                self.client.handle_input(self.now, server_addr(), &answer);
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
    }

    /// Runs the client's timers up to `now + d`, exchanging at each.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        self.exchange();
        while let Some(t) = self.client.poll_timeout().filter(|t| *t <= target) {
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
            self.exchange();
        }
        self.now = target;
    }

    /// The peer sends `data` to the relayed address.
    fn peer_sends(&mut self, from: SocketAddr, data: &[u8]) {
        let bytes = self
            .server
            .relay_from_peer(from, data)
            .expect("the server relays it");
        self.client.handle_input(self.now, server_addr(), &bytes);
        self.exchange();
    }

    fn take_events(&mut self) -> Vec<TurnEvent> {
        std::mem::take(&mut self.events)
    }

    fn allocated(transport: TurnTransport) -> Self {
        let mut h = Harness::new(transport);
        h.exchange();
        assert!(
            matches!(h.take_events().as_slice(), [TurnEvent::Allocated { .. }]),
            "allocation"
        );
        h
    }

    fn seen(&self, method: Method) -> Vec<Seen> {
        self.server
            .seen
            .iter()
            .filter(|s| s.method == method)
            .cloned()
            .collect()
    }
}

#[test]
fn allocate_after_401_with_long_term_credentials() {
    let mut h = Harness::new(TurnTransport::Udp);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Allocated {
            relayed: RELAYED.into(),
            mapped: MAPPED.into(),
            lifetime: Duration::from_secs(600),
        }]
    );
    let allocs = h.seen(Method::ALLOCATE);
    assert_eq!(allocs.len(), 2);
    assert!(!allocs[0].authenticated);
    assert!(allocs[1].authenticated);
    assert_eq!(allocs[1].nonce.as_deref(), Some("nonce-0"));
    assert!(allocs
        .iter()
        .all(|s| s.transport == Some(PROTOCOL_UDP) && s.lifetime == Some(600)));
    assert_eq!(h.client.state(), TurnState::Allocated);
    assert_eq!(h.client.relayed_address(), Some(RELAYED.into()));
    assert_eq!(h.client.mapped_address(), Some(MAPPED.into()));
}

#[test]
fn time_limited_credentials_authenticate() {
    let credentials = TurnCredentials::time_limited(b"shared", 1_900_000_000, Some("bob"));
    let TurnCredentials::LongTerm { username, password } = credentials.clone();
    let mut h = Harness::with(TurnTransport::Udp, credentials, |_| {});
    h.server.username = username.clone();
    h.server.key = long_term_key(&username, REALM, &password);
    h.exchange();
    assert!(matches!(
        h.take_events().as_slice(),
        [TurnEvent::Allocated { .. }]
    ));
    assert_eq!(username, "1900000000:bob");
}

#[test]
fn stale_nonce_on_allocate_and_later_requests_is_retried() {
    let mut h = Harness::new(TurnTransport::Udp);
    h.server.stale_next = true;
    h.exchange();
    assert!(matches!(
        h.take_events().as_slice(),
        [TurnEvent::Allocated { .. }]
    ));
    // 401, then 438, then success with the new nonce.
    let allocs = h.seen(Method::ALLOCATE);
    assert_eq!(allocs.len(), 3);
    assert_eq!(allocs[2].nonce.as_deref(), Some("nonce-1"));

    h.server.stale_next = true;
    h.client.create_permission(peer(1).ip(), h.now).unwrap();
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::PermissionCreated(peer(1).ip())]
    );
    let perms = h.seen(Method::CREATE_PERMISSION);
    assert_eq!(perms.len(), 2);
    assert_eq!(perms[1].nonce.as_deref(), Some("nonce-2"));
}

#[test]
fn endless_stale_nonce_fails_cleanly() {
    let mut h = Harness::new(TurnTransport::Udp);
    h.server.always_stale = true;
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::AllocationFailed(TurnError::StaleNonceLoop)]
    );
    assert_eq!(h.client.state(), TurnState::Failed);
    assert!(h.seen(Method::ALLOCATE).len() <= 5);
}

#[test]
fn wrong_credentials_fail_with_401_and_441() {
    for use_441 in [false, true] {
        let mut h = Harness::with(
            TurnTransport::Udp,
            TurnCredentials::long_term(USER, "not the password"),
            |_| {},
        );
        h.server.wrong_credentials_441 = use_441;
        h.exchange();
        assert_eq!(
            h.take_events(),
            vec![TurnEvent::AllocationFailed(TurnError::WrongCredentials)]
        );
        assert_eq!(h.client.state(), TurnState::Failed);
        assert_eq!(h.seen(Method::ALLOCATE).len(), 2, "no retry loop");
        assert_eq!(h.client.poll_timeout(), None);
    }
}

#[test]
fn quota_and_try_alternate_fail_the_allocation() {
    let mut h = Harness::new(TurnTransport::Udp);
    h.server.allocate_error = Some(error_code::ALLOCATION_QUOTA_REACHED);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::AllocationFailed(TurnError::Quota)]
    );

    let mut h = Harness::new(TurnTransport::Udp);
    h.server.allocate_error = Some(error_code::TRY_ALTERNATE);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::AllocationFailed(TurnError::TryAlternate(Some(
            ([192, 0, 2, 99], 3478).into()
        )))]
    );

    let mut h = Harness::new(TurnTransport::Udp);
    h.server.allocate_error = Some(error_code::INSUFFICIENT_CAPACITY);
    h.exchange();
    assert!(matches!(
        h.take_events().as_slice(),
        [TurnEvent::AllocationFailed(TurnError::Rejected {
            code: 508,
            ..
        })]
    ));
}

#[test]
fn silent_server_times_out_with_rfc_8489_timings() {
    let mut h = Harness::new(TurnTransport::Udp);
    h.server.silent = true;
    let start = h.now;
    let mut sends = Vec::new();
    loop {
        while h.client.poll_transmit().is_some() {
            sends.push(h.now - start);
        }
        while let Some(e) = h.client.poll_event() {
            h.events.push(e);
        }
        let Some(t) = h.client.poll_timeout() else {
            break;
        };
        h.now = t;
        h.client.handle_timeout(t);
    }
    let ms: Vec<u128> = sends.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(h.now - start, Duration::from_millis(39_500));
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::AllocationFailed(TurnError::Timeout)]
    );

    // Configurable timings, and the TCP timeout (no retransmission).
    let mut h = Harness::with(
        TurnTransport::Udp,
        TurnCredentials::long_term(USER, PASS),
        |c| {
            c.retransmit = RetransmitConfig {
                rto: Duration::from_millis(100),
                max_transmits: 2,
                last_wait_factor: 2,
                max_rto: None,
            }
        },
    );
    h.server.silent = true;
    h.advance(Duration::from_millis(299));
    assert!(h.take_events().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::AllocationFailed(TurnError::Timeout)]
    );
    assert_eq!(h.sent.len(), 2);

    let mut h = Harness::new(TurnTransport::Tcp);
    h.server.silent = true;
    h.advance(Duration::from_millis(39_499));
    assert!(h.take_events().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::AllocationFailed(TurnError::Timeout)]
    );
    assert_eq!(h.sent.len(), 1);
}

#[test]
fn allocation_is_refreshed_at_80_percent_and_expires_without_answers() {
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.advance(Duration::from_secs(479));
    assert!(h.seen(Method::REFRESH).is_empty());
    h.advance(Duration::from_secs(1));
    let refreshes = h.seen(Method::REFRESH);
    assert_eq!(refreshes.len(), 1);
    assert_eq!(refreshes[0].lifetime, Some(600));
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Refreshed {
            lifetime: Duration::from_secs(600)
        }]
    );
    // The next one 480 s after the refresh.
    h.advance(Duration::from_secs(479));
    assert_eq!(h.seen(Method::REFRESH).len(), 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.seen(Method::REFRESH).len(), 2);

    // A server that grants less is followed.
    let mut h = Harness::new(TurnTransport::Udp);
    h.server.lifetime = 100;
    h.exchange();
    h.take_events();
    h.advance(Duration::from_secs(80));
    assert_eq!(h.seen(Method::REFRESH).len(), 1);

    // A server that stops answering refreshes: the allocation is reported lost.
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.server.silent_refresh = true;
    h.advance(Duration::from_secs(600));
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Expired(TurnError::Timeout)]
    );
    assert_eq!(h.client.state(), TurnState::Failed);
    assert_eq!(h.client.poll_timeout(), None);
}

#[test]
fn refresh_with_stale_nonce_is_retried() {
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.server.stale_next = true;
    h.advance(Duration::from_secs(480));
    assert_eq!(h.seen(Method::REFRESH).len(), 2);
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Refreshed {
            lifetime: Duration::from_secs(600)
        }]
    );
}

#[test]
fn send_and_data_indications_before_the_channel_then_channel_data_both_ways() {
    for transport in [TurnTransport::Udp, TurnTransport::Tcp] {
        let mut h = Harness::allocated(transport);
        let p = peer(1);

        // send_to without a permission asks for one first, then sends a Send indication.
        h.client.send_to(p, b"one", h.now).unwrap();
        h.exchange();
        assert_eq!(h.take_events(), vec![TurnEvent::PermissionCreated(p.ip())]);
        assert_eq!(h.server.to_peers, vec![(p, b"one".to_vec(), false)]);
        assert!(h.client.has_permission(p.ip()));

        h.peer_sends(p, b"two");
        assert_eq!(
            h.take_events(),
            vec![TurnEvent::PeerData {
                peer: p,
                data: b"two".to_vec()
            }]
        );

        // Bind a channel: Send indications until it is confirmed, ChannelData after.
        let channel = h.client.bind_channel(p, h.now).unwrap();
        assert_eq!(channel, CHANNEL_MIN);
        assert_eq!(h.client.channel(p), None);
        h.exchange();
        assert_eq!(
            h.take_events(),
            vec![TurnEvent::ChannelBound { peer: p, channel }]
        );
        assert_eq!(h.client.channel(p), Some(channel));
        assert_eq!(h.client.bind_channel(p, h.now), Ok(channel));

        h.client.send_to(p, b"three!", h.now).unwrap();
        h.exchange();
        assert_eq!(
            h.server.to_peers.last(),
            Some(&(p, b"three!".to_vec(), true))
        );
        h.peer_sends(p, b"four");
        assert_eq!(
            h.take_events(),
            vec![TurnEvent::PeerData {
                peer: p,
                data: b"four".to_vec()
            }]
        );
        assert_eq!(h.client.stats().channel_data, 1);
        assert_eq!(h.client.stats().data_indications, 1);

        // A second peer gets the next channel number.
        assert_eq!(h.client.bind_channel(peer(2), h.now), Ok(CHANNEL_MIN + 1));
        h.exchange();
        assert_eq!(
            h.take_events(),
            vec![
                TurnEvent::PermissionCreated(peer(2).ip()),
                TurnEvent::ChannelBound {
                    peer: peer(2),
                    channel: CHANNEL_MIN + 1
                }
            ]
        );
        let binds = h.seen(Method::CHANNEL_BIND);
        assert_eq!(binds[0].channel, Some(CHANNEL_MIN));
    }
}

#[test]
fn permissions_and_channels_asked_while_allocating_wait_for_the_allocation() {
    let mut h = Harness::new(TurnTransport::Udp);
    assert_eq!(
        h.client.send_to(peer(1), b"x", h.now),
        Err(TurnError::NotAllocated)
    );
    h.client.create_permission(peer(1).ip(), h.now).unwrap();
    let channel = h.client.bind_channel(peer(2), h.now).unwrap();
    h.exchange();
    let events = h.take_events();
    assert!(matches!(events[0], TurnEvent::Allocated { .. }));
    assert!(events.contains(&TurnEvent::PermissionCreated(peer(1).ip())));
    assert!(events.contains(&TurnEvent::ChannelBound {
        peer: peer(2),
        channel
    }));
    // An IPv6 peer cannot use an IPv4 allocation.
    let v6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
    assert_eq!(
        h.client.create_permission(v6.ip(), h.now),
        Err(TurnError::AddressFamilyMismatch)
    );
}

#[test]
fn permissions_in_use_are_refreshed_and_idle_ones_expire() {
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.client.create_permission(peer(1).ip(), h.now).unwrap();
    h.client.create_permission(peer(2).ip(), h.now).unwrap();
    h.exchange();
    h.take_events();
    assert_eq!(h.seen(Method::CREATE_PERMISSION).len(), 2);
    // Only peer 1 is in use.
    h.advance(Duration::from_secs(100));
    h.client.send_to(peer(1), b"keep", h.now).unwrap();
    h.advance(Duration::from_secs(139));
    assert_eq!(h.seen(Method::CREATE_PERMISSION).len(), 2);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.seen(Method::CREATE_PERMISSION).len(), 3);
    h.advance(Duration::from_secs(60));
    assert!(h.client.has_permission(peer(1).ip()));
    assert!(!h.client.has_permission(peer(2).ip()));
}

#[test]
fn channels_in_use_are_rebound_before_ten_minutes() {
    let mut h = Harness::allocated(TurnTransport::Udp);
    let p = peer(3);
    let channel = h.client.bind_channel(p, h.now).unwrap();
    h.exchange();
    h.take_events();
    for _ in 0..10 {
        h.advance(Duration::from_secs(60));
        h.client.send_to(p, b"ping", h.now).unwrap();
        h.exchange();
    }
    let binds = h.seen(Method::CHANNEL_BIND);
    assert_eq!(binds.len(), 2, "rebound once at 540 s");
    assert!(binds.iter().all(|b| b.channel == Some(channel)));
    assert_eq!(h.client.channel(p), Some(channel));
    // The send at 600 s keeps it in use for one more rebind at 1080 s; idle from there, it
    // lapses at 1680 s.
    h.advance(Duration::from_secs(1079));
    assert_eq!(h.seen(Method::CHANNEL_BIND).len(), 3);
    assert_eq!(h.client.channel(p), Some(channel));
    h.advance(Duration::from_secs(2));
    assert_eq!(h.client.channel(p), None);
    // Its number is not reused at once.
    assert_ne!(h.client.bind_channel(peer(4), h.now), Ok(channel));
}

#[test]
fn tcp_framing_split_at_every_byte_boundary() {
    // Build the server's stream: a Data indication, then a ChannelData, then another
    // Data indication, and check every split into two and three chunks gives the same events.
    let mut h = Harness::allocated(TurnTransport::Tcp);
    h.client.create_permission(peer(1).ip(), h.now).unwrap();
    h.client.bind_channel(peer(2), h.now).unwrap();
    h.exchange();
    h.take_events();
    let mut stream = Vec::new();
    stream.extend(h.server.relay_from_peer(peer(1), b"first").unwrap());
    stream.extend(h.server.relay_from_peer(peer(2), b"odd").unwrap());
    stream.extend(h.server.relay_from_peer(peer(1), &[9; 37]).unwrap());
    let expected = vec![
        TurnEvent::PeerData {
            peer: peer(1),
            data: b"first".to_vec(),
        },
        TurnEvent::PeerData {
            peer: peer(2),
            data: b"odd".to_vec(),
        },
        TurnEvent::PeerData {
            peer: peer(1),
            data: vec![9; 37],
        },
    ];
    let server = server_addr();
    let feed = |chunks: &[&[u8]]| {
        let mut h = Harness::allocated(TurnTransport::Tcp);
        h.client.create_permission(peer(1).ip(), h.now).unwrap();
        h.client.bind_channel(peer(2), h.now).unwrap();
        h.exchange();
        h.take_events();
        for chunk in chunks {
            h.client.handle_input(h.now, server, chunk);
        }
        h.exchange();
        h.take_events()
    };
    for a in 0..=stream.len() {
        assert_eq!(
            feed(&[&stream[..a], &stream[a..]]),
            expected,
            "split at {a}"
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(feed(&bytes), expected, "byte by byte");
    for a in (0..stream.len()).step_by(3) {
        for b in (a..=stream.len()).step_by(5) {
            assert_eq!(
                feed(&[&stream[..a], &stream[a..b], &stream[b..]]),
                expected,
                "split at {a}, {b}"
            );
        }
    }
}

#[test]
fn tcp_garbage_truncated_and_oversized_streams_end_the_allocation() {
    // Garbage.
    let mut h = Harness::allocated(TurnTransport::Tcp);
    h.client
        .handle_input(h.now, server_addr(), &[0xC3, 1, 2, 3, 4]);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Expired(TurnError::Stream(FrameError::Garbage(
            0xC3
        )))]
    );
    assert_eq!(h.client.state(), TurnState::Failed);
    assert_eq!(
        h.client.send_to(peer(1), b"x", h.now),
        Err(TurnError::NotAllocated)
    );

    // A STUN header with a wrong magic cookie.
    let mut h = Harness::allocated(TurnTransport::Tcp);
    h.client
        .handle_input(h.now, server_addr(), &[0, 0x17, 0, 8, 1, 2, 3, 4]);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Expired(TurnError::Stream(
            FrameError::BadStunHeader
        ))]
    );

    // Truncated: the stream ends inside a frame.
    let mut h = Harness::allocated(TurnTransport::Tcp);
    h.client.create_permission(peer(1).ip(), h.now).unwrap();
    h.exchange();
    h.take_events();
    let frame = h.server.relay_from_peer(peer(1), b"cut short").unwrap();
    h.client
        .handle_input(h.now, server_addr(), &frame[..frame.len() - 3]);
    h.client.handle_transport_closed(h.now);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Expired(TurnError::Stream(
            FrameError::Truncated(frame.len() - 3)
        ))]
    );

    // A clean close is still the end of the allocation (RFC 8656 §3.1).
    let mut h = Harness::allocated(TurnTransport::Tcp);
    h.client.handle_transport_closed(h.now);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Expired(TurnError::ConnectionClosed)]
    );

    // A ChannelData frame on a reserved channel number (RFC 8656 §12).
    let mut h = Harness::allocated(TurnTransport::Tcp);
    h.client
        .handle_input(h.now, server_addr(), &[0x5F, 0, 0, 4, 1, 2, 3, 4]);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Expired(TurnError::Stream(FrameError::Garbage(
            0x5F
        )))]
    );

    // Oversized, with a small bound.
    let mut h = Harness::with(
        TurnTransport::Tcp,
        TurnCredentials::long_term(USER, PASS),
        |c| c.max_frame_len = 256,
    );
    h.exchange();
    h.take_events();
    h.client
        .handle_input(h.now, server_addr(), &[0x40, 0x00, 0x10, 0x00]);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Expired(TurnError::Stream(
            FrameError::Oversized {
                len: 4100,
                max: 256
            }
        ))]
    );

    // Garbage during the allocation.
    let mut h = Harness::new(TurnTransport::Tcp);
    h.client
        .handle_input(h.now, server_addr(), b"<html><body>hello</body></html>");
    h.exchange();
    assert!(matches!(
        h.take_events().as_slice(),
        [TurnEvent::AllocationFailed(TurnError::Stream(_))]
    ));
}

#[test]
fn udp_garbage_forgeries_and_strangers_are_dropped() {
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.client.create_permission(peer(1).ip(), h.now).unwrap();
    h.exchange();
    h.take_events();
    let s = server_addr();
    h.client.handle_input(h.now, s, &[0xFF; 40]);
    h.client.handle_input(h.now, s, &[]);
    h.client
        .handle_input(h.now, s, &[0x40, 0x00, 0x00, 0x10, 1]);
    h.client.handle_input(h.now, s, &[0, 1, 0, 0]);
    assert_eq!(h.client.stats().malformed, 4);
    // From someone who is not the server.
    let data = h.server.relay_from_peer(peer(1), b"spoof").unwrap();
    h.client.handle_input(h.now, peer(9), &data);
    assert_eq!(h.client.stats().not_from_server, 1);
    // ChannelData on a channel never bound.
    h.client.handle_input(h.now, s, &[0x40, 0x07, 0, 1, 0xAA]);
    assert_eq!(h.client.stats().unknown_channel, 1);
    assert!(h.take_events().is_empty());
    assert!(h.client.poll_event().is_none());

    // A forged success to an outstanding request (right id, wrong key) is ignored and the
    // real answer still counts.
    h.client.create_permission(peer(2).ip(), h.now).unwrap();
    let request = h.client.poll_transmit().unwrap();
    let id = Message::decode(&request.data).unwrap().transaction_id();
    let mut forged = Vec::new();
    MessageEncoder::new(
        &mut forged,
        Class::SuccessResponse,
        Method::CREATE_PERMISSION,
        id,
    )
    .message_integrity(b"wrong key")
    .fingerprint();
    h.client.handle_input(h.now, s, &forged);
    let mut bare = Vec::new();
    MessageEncoder::new(
        &mut bare,
        Class::SuccessResponse,
        Method::CREATE_PERMISSION,
        id,
    )
    .fingerprint();
    h.client.handle_input(h.now, s, &bare);
    assert_eq!(h.client.stats().unauthenticated_responses, 2);
    assert!(!h.client.has_permission(peer(2).ip()));
    for answer in h.server.handle(&request.data) {
        h.client.handle_input(h.now, s, &answer);
    }
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::PermissionCreated(peer(2).ip())]
    );
}

#[test]
fn limits_are_enforced() {
    let mut h = Harness::with(
        TurnTransport::Udp,
        TurnCredentials::long_term(USER, PASS),
        |c| {
            c.max_permissions = 2;
            c.max_channels = 1;
            c.max_queued_transmits = 3;
            c.max_queued_data_events = 2;
        },
    );
    h.exchange();
    h.take_events();
    h.client.create_permission(peer(1).ip(), h.now).unwrap();
    h.client.create_permission(peer(2).ip(), h.now).unwrap();
    assert_eq!(
        h.client.create_permission(peer(3).ip(), h.now),
        Err(TurnError::LimitReached)
    );
    h.client.bind_channel(peer(1), h.now).unwrap();
    assert_eq!(
        h.client.bind_channel(peer(2), h.now),
        Err(TurnError::LimitReached)
    );
    h.exchange();
    h.take_events();
    for _ in 0..3 {
        h.client.send_to(peer(2), b"q", h.now).unwrap();
    }
    assert_eq!(
        h.client.send_to(peer(2), b"q", h.now),
        Err(TurnError::QueueFull)
    );
    assert_eq!(
        h.client.send_to(peer(2), &vec![0; 70_000], h.now),
        Err(TurnError::QueueFull)
    );
    h.exchange();
    assert_eq!(
        h.client.send_to(peer(2), &vec![0; 70_000], h.now),
        Err(TurnError::DataTooLong(70_000))
    );
    for _ in 0..5 {
        let bytes = h.server.relay_from_peer(peer(1), b"flood").unwrap();
        h.client.handle_input(h.now, server_addr(), &bytes);
    }
    assert_eq!(h.client.stats().dropped_data, 3);
}

#[test]
fn close_deallocates_with_lifetime_zero() {
    for transport in [TurnTransport::Udp, TurnTransport::Tcp] {
        let mut h = Harness::allocated(transport);
        h.client.bind_channel(peer(1), h.now).unwrap();
        h.exchange();
        h.take_events();
        assert!(h.server.allocated);
        h.client.close(h.now);
        assert_eq!(h.client.state(), TurnState::Closing);
        h.exchange();
        assert_eq!(h.take_events(), vec![TurnEvent::Closed]);
        assert_eq!(h.client.state(), TurnState::Closed);
        assert!(!h.server.allocated);
        let refresh = h.seen(Method::REFRESH);
        assert_eq!(refresh.last().and_then(|r| r.lifetime), Some(0));
        assert_eq!(h.client.poll_timeout(), None);
        assert_eq!(
            h.client.send_to(peer(1), b"late", h.now),
            Err(TurnError::NotAllocated)
        );
    }

    // A silent server: Closed after the transaction times out.
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.server.silent = true;
    h.client.close(h.now);
    h.advance(Duration::from_secs(40));
    assert_eq!(h.take_events(), vec![TurnEvent::Closed]);

    // Closing while still allocating ends at once.
    let mut h = Harness::new(TurnTransport::Udp);
    h.client.close(h.now);
    assert_eq!(h.client.poll_event(), Some(TurnEvent::Closed));
}

#[test]
fn coturn_tears_the_allocation_down_and_answers_400_the_loss_is_found_and_its_suspect_named() {
    // coturn 4.6 answers a CreatePermission on a 5-tuple without allocation with 400 (and
    // a Refresh with 437): the 400 makes the client verify the allocation at once.
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.server.no_allocation_code = error_code::BAD_REQUEST;
    let private = SocketAddr::from(([10, 0, 2, 10], 40_000));
    h.server.unreachable = Some(private.ip());
    // A peer heard from before the loss, and one whose permission the server refused.
    h.client.send_to(peer(1), b"hello", h.now).unwrap();
    h.exchange();
    h.peer_sends(peer(1), b"hi back");
    // Another client's relayed address on the same server: never a suspect.
    let other_relay = SocketAddr::from((SERVER.0, 50_002));
    h.client.send_to(other_relay, b"to a relay", h.now).unwrap();
    h.exchange();
    // A public peer that never answers: a suspect only when no private one is.
    h.client.send_to(peer(7), b"unanswered", h.now).unwrap();
    h.exchange();
    // The send to the private address ends the allocation on the server.
    h.client.send_to(private, b"check", h.now).unwrap();
    h.exchange();
    assert!(!h.server.allocated);
    assert_eq!(
        h.take_events(),
        vec![
            TurnEvent::PermissionCreated(peer(1).ip()),
            TurnEvent::PeerData {
                peer: peer(1),
                data: b"hi back".to_vec()
            },
            TurnEvent::PermissionCreated(other_relay.ip()),
            TurnEvent::PermissionCreated(peer(7).ip()),
            TurnEvent::PermissionCreated(private.ip()),
        ]
    );
    assert_eq!(
        h.client.state(),
        TurnState::Allocated,
        "nothing said it yet"
    );
    // More data to the other relay (its permission is installed): unanswered from now on.
    h.client.send_to(other_relay, b"again", h.now).unwrap();
    // The next permission: 438 from the new session, 400, then the Refresh says 437.
    h.client.send_to(peer(2), b"check", h.now).unwrap();
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![
            TurnEvent::PermissionFailed {
                peer: peer(2).ip(),
                error: TurnError::Rejected {
                    code: 400,
                    reason: "Bad Request".into()
                }
            },
            TurnEvent::Expired(TurnError::AllocationMismatch),
        ]
    );
    assert_eq!(h.client.state(), TurnState::Failed);
    assert_eq!(h.seen(Method::REFRESH).len(), 1, "the check, answered 437");
    // Only the private address is suspected: peer 1 answered through the relay, peer 2's
    // permission was refused (so nothing was relayed to it), the other relay is the server's,
    // and the private address outranks the public peer 7 that never answered.
    assert_eq!(h.client.loss_suspects(), &[private.ip()]);
}

#[test]
fn allocation_mismatch_on_a_permission_or_a_channel_ends_the_allocation_at_once() {
    for channel in [false, true] {
        let mut h = Harness::allocated(TurnTransport::Udp);
        h.server.allocated = false; // the server lost it (a restart...)
        if channel {
            h.client.bind_channel(peer(3), h.now).unwrap();
        } else {
            h.client.create_permission(peer(3).ip(), h.now).unwrap();
        }
        h.exchange();
        let events = h.take_events();
        assert_eq!(
            events.last(),
            Some(&TurnEvent::Expired(TurnError::AllocationMismatch)),
            "channel {channel}: {events:?}"
        );
        assert!(h.seen(Method::REFRESH).is_empty(), "437 needs no check");
        assert!(h.client.loss_suspects().is_empty(), "nothing was sent");
    }
}

#[test]
fn check_allocation_refreshes_now_and_reports_a_lost_allocation() {
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.client.check_allocation(h.now);
    h.client.check_allocation(h.now); // one Refresh at a time
    h.exchange();
    assert_eq!(h.seen(Method::REFRESH).len(), 1);
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::Refreshed {
            lifetime: Duration::from_secs(600)
        }]
    );
    // A success after a send clears no one (coturn tears an allocation down a little after
    // the send that failed, answering requests meanwhile): peer 4, sent to and never heard
    // from, stays a suspect.
    h.client.send_to(peer(4), b"x", h.now).unwrap();
    h.exchange();
    h.client.check_allocation(h.now);
    h.exchange();
    h.take_events();
    h.server.allocated = false;
    h.client.send_to(peer(5), b"y", h.now).unwrap();
    h.client.check_allocation(h.now);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![
            TurnEvent::PermissionFailed {
                peer: peer(5).ip(),
                error: TurnError::AllocationMismatch
            },
            TurnEvent::Expired(TurnError::AllocationMismatch),
        ]
    );
    // peer 5's permission was refused: nothing was relayed to it.
    assert_eq!(h.client.loss_suspects(), &[peer(4).ip()]);
}

#[test]
fn refused_credentials_on_a_permission_end_the_allocation_after_a_check() {
    // Expired time-limited credentials: every request now gets 401, the Refresh too.
    let mut h = Harness::allocated(TurnTransport::Udp);
    h.server.key = long_term_key(USER, REALM, "renewed");
    h.client.create_permission(peer(6).ip(), h.now).unwrap();
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![
            TurnEvent::PermissionFailed {
                peer: peer(6).ip(),
                error: TurnError::WrongCredentials
            },
            TurnEvent::Expired(TurnError::WrongCredentials),
        ]
    );
    assert_eq!(h.seen(Method::REFRESH).len(), 1);
}

#[test]
fn allocate_answered_437_deletes_the_stale_allocation_once_and_allocates_again() {
    // The server still holds an allocation on this 5-tuple (we gave it up for lost).
    let mut h = Harness::new(TurnTransport::Udp);
    h.server.allocated = true;
    h.exchange();
    assert!(
        matches!(h.take_events().as_slice(), [TurnEvent::Allocated { .. }]),
        "allocated after deleting the stale one"
    );
    let allocs = h.seen(Method::ALLOCATE);
    assert_eq!(allocs.len(), 3, "401, 437, success");
    let refreshes = h.seen(Method::REFRESH);
    assert_eq!(refreshes.len(), 1);
    assert_eq!(refreshes[0].lifetime, Some(0));

    // A server that answers 437 whatever happens: the client gives up, no loop.
    let mut h = Harness::new(TurnTransport::Udp);
    h.server.allocate_error = Some(error_code::ALLOCATION_MISMATCH);
    h.exchange();
    assert_eq!(
        h.take_events(),
        vec![TurnEvent::AllocationFailed(TurnError::AllocationMismatch)]
    );
    assert_eq!(h.seen(Method::ALLOCATE).len(), 3);
    assert_eq!(h.seen(Method::REFRESH).len(), 1);
}

#[test]
fn timers_never_spin_while_a_refresh_is_in_flight() {
    // Long retransmission timings: a permission refresh still waiting at its expiry must not
    // make poll_timeout return a time in the past.
    let mut h = Harness::with(
        TurnTransport::Udp,
        TurnCredentials::long_term(USER, PASS),
        |c| {
            c.retransmit.rto = Duration::from_secs(50);
            c.retransmit.max_transmits = 2;
            c.retransmit.last_wait_factor = 2;
        },
    );
    h.exchange();
    h.client.create_permission(peer(1).ip(), h.now).unwrap();
    h.exchange();
    h.take_events();
    h.client.send_to(peer(1), b"in use", h.now).unwrap();
    h.server.silent = true;
    let mut wakeups = 0;
    let end = h.now + Duration::from_secs(400);
    while let Some(t) = h.client.poll_timeout().filter(|t| *t <= end) {
        assert!(t >= h.now, "poll_timeout went back in time");
        h.now = t;
        h.client.handle_timeout(t);
        while h.client.poll_transmit().is_some() {}
        wakeups += 1;
        assert!(wakeups < 100, "timer spin");
    }
    let events: Vec<_> = std::iter::from_fn(|| h.client.poll_event()).collect();
    assert!(events.contains(&TurnEvent::PermissionFailed {
        peer: peer(1).ip(),
        error: TurnError::Timeout
    }));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes from the server, over UDP or TCP, in any chunking: no panic, and the
        /// client stays in a reportable state.
        #[test]
        fn random_input_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..12),
            tcp in any::<bool>(),
            prefix_valid in any::<bool>(),
        ) {
            let transport = if tcp { TurnTransport::Tcp } else { TurnTransport::Udp };
            let mut h = Harness::new(transport);
            if prefix_valid {
                h.exchange();
                h.client.create_permission(peer(1).ip(), h.now).unwrap();
                h.client.bind_channel(peer(1), h.now).unwrap();
                h.exchange();
            }
            for chunk in &chunks {
                h.client.handle_input(h.now, server_addr(), chunk);
                let mut stun = chunk.clone();
                // Also as a STUN-looking message with a valid header.
                if stun.len() >= 20 {
                    stun[0] &= 0x3F;
                    let len = ((stun.len() - 20) & !3) as u16;
                    stun.truncate(20 + usize::from(len));
                    stun[2..4].copy_from_slice(&len.to_be_bytes());
                    stun[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
                    h.client.handle_input(h.now, server_addr(), &stun);
                }
            }
            h.advance(Duration::from_secs(60));
            let _ = h.client.state();
        }
    }
}
