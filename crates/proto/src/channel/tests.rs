//! Two associations talking in memory, in virtual time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Two peers joined by a link with a fixed one-way delay and random loss.
struct Pair {
    a: Association,
    b: Association,
    now: Instant,
    delay: Duration,
    loss: f64,
    rng: StdRng,
    /// Datagrams in flight: (arrival, to_b, bytes).
    wire: VecDeque<(Instant, bool, Vec<u8>)>,
    events_a: Vec<ChannelEvent>,
    events_b: Vec<ChannelEvent>,
}

fn remote_of(cert: &Certificate) -> RemoteParameters {
    RemoteParameters {
        fingerprint: cert.fingerprint(),
        max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
        sctp_port: Some(DEFAULT_SCTP_PORT),
    }
}

impl Pair {
    fn new(delay: Duration, loss: f64) -> Pair {
        let ca = Certificate::generate().unwrap();
        let cb = Certificate::generate().unwrap();
        Pair::with(
            ca.clone(),
            cb.clone(),
            remote_of(&cb),
            remote_of(&ca),
            delay,
            loss,
        )
    }

    fn with_config(config: AssociationConfig, delay: Duration) -> Pair {
        let ca = Certificate::generate().unwrap();
        let cb = Certificate::generate().unwrap();
        let mut p = Pair::new(delay, 0.0);
        let now = p.now;
        p.a = Association::new(config.clone(), &ca, DtlsRole::Client, remote_of(&cb), now).unwrap();
        p.b = Association::new(config, &cb, DtlsRole::Server, remote_of(&ca), now).unwrap();
        p
    }

    fn with(
        ca: Certificate,
        cb: Certificate,
        a_sees: RemoteParameters,
        b_sees: RemoteParameters,
        delay: Duration,
        loss: f64,
    ) -> Pair {
        let now = Instant::now();
        let b = Association::new(
            AssociationConfig::default(),
            &cb,
            DtlsRole::Server,
            b_sees,
            now,
        )
        .unwrap();
        let a = Association::new(
            AssociationConfig::default(),
            &ca,
            DtlsRole::Client,
            a_sees,
            now,
        )
        .unwrap();
        Pair {
            a,
            b,
            now,
            delay,
            loss,
            rng: StdRng::seed_from_u64(7),
            wire: VecDeque::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
        }
    }

    /// Moves everything one step: transmits onto the wire, due datagrams and timers in.
    fn step(&mut self) -> bool {
        let mut progressed = false;
        while let Some(d) = self.a.poll_transmit() {
            if self.rng.random::<f64>() >= self.loss {
                self.wire.push_back((self.now + self.delay, true, d));
            }
            progressed = true;
        }
        while let Some(d) = self.b.poll_transmit() {
            if self.rng.random::<f64>() >= self.loss {
                self.wire.push_back((self.now + self.delay, false, d));
            }
            progressed = true;
        }
        while let Some(e) = self.a.poll_event() {
            self.events_a.push(e);
            progressed = true;
        }
        while let Some(e) = self.b.poll_event() {
            self.events_b.push(e);
            progressed = true;
        }
        if progressed {
            return true;
        }
        // Advance time to the next arrival or timer.
        let next_wire = self.wire.front().map(|w| w.0);
        let next = [next_wire, self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        while self.wire.front().is_some_and(|w| w.0 <= self.now) {
            let (_, to_b, d) = self.wire.pop_front().unwrap();
            if to_b {
                self.b.handle_datagram(self.now, &d);
            } else {
                self.a.handle_datagram(self.now, &d);
            }
        }
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        true
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Pair) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(
                self.now < end,
                "timed out; a: {:?} b: {:?}",
                self.events_a,
                self.events_b
            );
            assert!(
                self.step(),
                "stalled; a: {:?} b: {:?}",
                self.events_a,
                self.events_b
            );
        }
        // Collect the events that the last step left queued.
        self.events_a
            .extend(std::iter::from_fn(|| self.a.poll_event()));
        self.events_b
            .extend(std::iter::from_fn(|| self.b.poll_event()));
    }

    fn connect(&mut self) {
        self.run_until(Duration::from_secs(10), |p| {
            p.events_a.contains(&ChannelEvent::Connected)
                && p.events_b.contains(&ChannelEvent::Connected)
        });
    }

    fn drain_messages(assoc: &mut Association, id: ChannelId, into: &mut Vec<ChannelMessage>) {
        while let Ok(Some(m)) = assoc.recv(id) {
            into.push(m);
        }
    }
}

fn opened(events: &[ChannelEvent]) -> Vec<(ChannelId, ChannelOptions)> {
    events
        .iter()
        .filter_map(|e| match e {
            ChannelEvent::ChannelOpened { id, options } => Some((*id, options.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_channels_and_messages_both_ways() {
    let mut p = Pair::new(Duration::from_millis(10), 0.0);
    p.connect();
    assert!(p.a.is_connected() && p.b.is_connected());

    let opts = ChannelOptions::reliable("test", "xmpp-jingle");
    let ida = p.a.open_channel(opts.clone()).unwrap();
    let idb = p.b.open_channel(opts.clone()).unwrap();
    assert_eq!(ida % 2, 0, "the DTLS client uses even stream ids");
    assert_eq!(idb % 2, 1, "the DTLS server uses odd stream ids");
    // Data may follow the OPEN before the ACK (RFC 8832 §6).
    p.a.send(ida, b"hello from a", true).unwrap();
    p.a.send(ida, b"", true).unwrap();
    p.b.send(idb, "text from b".as_bytes(), false).unwrap();
    let mut at_b = Vec::new();
    let mut at_a = Vec::new();
    p.run_until(Duration::from_secs(5), |p| {
        Pair::drain_messages(&mut p.b, ida, &mut at_b);
        Pair::drain_messages(&mut p.a, idb, &mut at_a);
        at_b.len() == 2
            && at_a.len() == 1
            && p.events_a.contains(&ChannelEvent::ChannelAcked { id: ida })
    });
    assert_eq!(opened(&p.events_b), vec![(ida, opts.clone())]);
    assert_eq!(opened(&p.events_a), vec![(idb, opts)]);
    assert!(p.events_a.contains(&ChannelEvent::ChannelAcked { id: ida }));
    assert_eq!(
        at_b[0],
        ChannelMessage {
            data: b"hello from a".to_vec(),
            binary: true
        }
    );
    assert_eq!(
        at_b[1],
        ChannelMessage {
            data: Vec::new(),
            binary: true
        }
    );
    assert_eq!(
        at_a[0],
        ChannelMessage {
            data: b"text from b".to_vec(),
            binary: false
        }
    );
}

#[test]
fn wrong_fingerprint_fails_the_association() {
    let ca = Certificate::generate().unwrap();
    let cb = Certificate::generate().unwrap();
    let impostor = Certificate::generate().unwrap();
    // A expects the impostor's fingerprint: B's certificate must be refused.
    let mut p = Pair::with(
        ca.clone(),
        cb.clone(),
        remote_of(&impostor),
        remote_of(&ca),
        Duration::from_millis(5),
        0.0,
    );
    p.run_until(Duration::from_secs(60), |p| {
        p.events_a
            .iter()
            .any(|e| matches!(e, ChannelEvent::Closed(_)))
    });
    let closed = p.events_a.iter().find_map(|e| match e {
        ChannelEvent::Closed(reason) => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        closed,
        Some(ChannelError::FingerprintMismatch {
            expected: impostor.fingerprint(),
            got: cb.fingerprint(),
        })
    );
    assert!(!p.events_a.contains(&ChannelEvent::Connected));
    assert!(p.a.open_channel(ChannelOptions::reliable("x", "")).is_err());
}

#[test]
fn oversized_messages_are_refused_and_max_message_size_is_honoured() {
    let ca = Certificate::generate().unwrap();
    let cb = Certificate::generate().unwrap();
    let mut small = remote_of(&cb);
    small.max_message_size = Some(1000);
    let mut p = Pair::with(
        ca.clone(),
        cb,
        small,
        remote_of(&ca),
        Duration::from_millis(1),
        0.0,
    );
    p.connect();
    let id = p.a.open_channel(ChannelOptions::reliable("x", "")).unwrap();
    assert_eq!(
        p.a.send(id, &[1; 1001], true),
        Err(ChannelError::MessageTooLarge {
            size: 1001,
            max: 1000
        })
    );
    p.a.send(id, &[1; 1000], true).unwrap();
    // B accepts up to 256 KiB.
    let idb = p.b.open_channel(ChannelOptions::reliable("y", "")).unwrap();
    p.b.send(idb, &vec![9; DEFAULT_MAX_MESSAGE_SIZE as usize], true)
        .unwrap();
    let mut got = Vec::new();
    p.run_until(Duration::from_secs(10), |p| {
        Pair::drain_messages(&mut p.a, idb, &mut got);
        !got.is_empty()
    });
    assert_eq!(got[0].data.len(), DEFAULT_MAX_MESSAGE_SIZE as usize);
}

#[test]
fn many_channels_open_carry_data_and_close_cleanly() {
    let mut p = Pair::new(Duration::from_millis(2), 0.0);
    p.connect();
    let mut ids = Vec::new();
    for i in 0..64 {
        let id =
            p.a.open_channel(ChannelOptions::reliable(format!("c{i}"), "p"))
                .unwrap();
        p.a.send(id, format!("message {i}").as_bytes(), true)
            .unwrap();
        ids.push(id);
    }
    let mut got = vec![Vec::new(); ids.len()];
    p.run_until(Duration::from_secs(10), |p| {
        for (i, id) in ids.iter().enumerate() {
            Pair::drain_messages(&mut p.b, *id, &mut got[i]);
        }
        got.iter().all(|g| g.len() == 1)
    });
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g[0].data, format!("message {i}").into_bytes());
    }
    let labels: Vec<String> = opened(&p.events_b)
        .into_iter()
        .map(|(_, o)| o.label)
        .collect();
    assert_eq!(labels.len(), 64);
    // Close half of them from A, data sent just before the close still arrives.
    for id in ids.iter().take(32) {
        p.a.send(*id, b"last words", true).unwrap();
        p.a.close_channel(*id);
    }
    let mut last = vec![Vec::new(); 32];
    p.run_until(Duration::from_secs(10), |p| {
        for (i, id) in ids.iter().take(32).enumerate() {
            Pair::drain_messages(&mut p.b, *id, &mut last[i]);
        }
        let closed_b = p
            .events_b
            .iter()
            .filter(|e| matches!(e, ChannelEvent::ChannelClosed { .. }))
            .count();
        let closed_a = p
            .events_a
            .iter()
            .filter(|e| matches!(e, ChannelEvent::ChannelClosed { .. }))
            .count();
        closed_a == 32 && closed_b == 32
    });
    assert!(last
        .iter()
        .all(|l| l.len() == 1 && l[0].data == b"last words"));
    // The rest still works.
    p.a.send(ids[40], b"still open", true).unwrap();
    assert!(matches!(
        p.a.send(ids[0], b"x", true),
        Err(ChannelError::ChannelClosed(_))
    ));
}

#[test]
fn graceful_close_reaches_the_peer() {
    let mut p = Pair::new(Duration::from_millis(3), 0.0);
    p.connect();
    let id = p.a.open_channel(ChannelOptions::reliable("x", "")).unwrap();
    p.a.send(id, &[5; 50_000], true).unwrap();
    let now = p.now;
    p.a.close(now);
    let closing_at = now;
    let mut got = Vec::new();
    p.run_until(Duration::from_secs(10), |p| {
        Pair::drain_messages(&mut p.b, id, &mut got);
        p.events_a
            .iter()
            .any(|e| matches!(e, ChannelEvent::Closed(_)))
            && p.events_b
                .iter()
                .any(|e| matches!(e, ChannelEvent::Closed(_)))
    });
    assert_eq!(got.len(), 1, "data queued before close is delivered");
    // The data's last SACK may be delayed (200 ms), then SHUTDOWN, SHUTDOWN ACK and
    // SHUTDOWN COMPLETE take a round trip and a half (RTT 6 ms here): far below the 5 s
    // grace period that ends a close the peer does not answer.
    let took = p.now - closing_at;
    assert!(
        took <= Duration::from_millis(300),
        "graceful close took {took:?}"
    );
    assert!(p
        .events_a
        .contains(&ChannelEvent::Closed(ChannelError::Closed)));
    assert!(p
        .events_b
        .contains(&ChannelEvent::Closed(ChannelError::PeerClosed)));
}

#[test]
fn junk_is_dropped_and_counted() {
    let mut p = Pair::new(Duration::from_millis(1), 0.0);
    p.connect();
    let now = p.now;
    p.b.handle_datagram(now, &[0, 1, 2, 3]);
    p.b.handle_datagram(now, &[]);
    p.b.handle_datagram(now, &[23, 254, 253, 0, 1, 0, 0, 0, 0, 0, 9, 0, 3, 1, 2, 3]);
    assert_eq!(p.b.stats().non_dtls_dropped, 2);
    assert!(
        p.b.is_connected(),
        "a bogus DTLS record does not kill the association"
    );
    let id = p.a.open_channel(ChannelOptions::reliable("x", "")).unwrap();
    p.a.send(id, b"ok", true).unwrap();
    let mut got = Vec::new();
    p.run_until(Duration::from_secs(5), |p| {
        Pair::drain_messages(&mut p.b, id, &mut got);
        !got.is_empty()
    });
}

#[test]
fn bulk_transfer_survives_loss() {
    let mut p = Pair::new(Duration::from_millis(20), 0.01);
    p.connect();
    let id =
        p.a.open_channel(ChannelOptions::reliable("bulk", ""))
            .unwrap();
    let total = 2 * 1024 * 1024;
    let mut sent = 0usize;
    let mut received = Vec::with_capacity(total);
    p.run_until(Duration::from_secs(120), |p| {
        while sent < total {
            let chunk: Vec<u8> = (sent..sent + 16384).map(|i| (i % 251) as u8).collect();
            match p.a.send(id, &chunk, true) {
                Ok(()) => sent += chunk.len(),
                Err(ChannelError::SendBufferFull) => break,
                Err(e) => panic!("{e}"),
            }
        }
        while let Ok(Some(m)) = p.b.recv(id) {
            received.extend_from_slice(&m.data);
        }
        received.len() >= total
    });
    assert!(received
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 251) as u8));
}

#[test]
fn a_window_freed_by_the_reader_reopens_without_waiting_for_a_timeout() {
    // A reader that stops lets the receive window fill; when it reads again, the window update
    // must reach the sender within a round trip, not at the sender's next zero-window probe
    // (T3, at least RTO.Min = 200 ms and backing off).
    let config = AssociationConfig {
        receive_window: 64 * 1024,
        send_buffer: 256 * 1024,
        ..AssociationConfig::default()
    };
    let rtt = Duration::from_millis(20);
    let mut p = Pair::with_config(config, rtt / 2);
    p.connect();
    let id = p.a.open_channel(ChannelOptions::reliable("w", "")).unwrap();
    let mut sent = 0usize;
    // Fill the send buffer, then let the window close with nobody reading at B.
    while p.a.send(id, &[7; 8192], true).is_ok() {
        sent += 8192;
    }
    let stall_until = p.now + Duration::from_secs(2);
    p.run_until(Duration::from_secs(3), |p| p.now >= stall_until);
    let mut got = 0usize;
    let drain = |b: &mut Association| {
        let mut n = 0;
        while let Ok(Some(m)) = b.recv(id) {
            n += m.data.len();
        }
        n
    };
    got += drain(&mut p.b);
    assert!(
        got > 0 && got < sent,
        "the window closed part-way ({got} of {sent})"
    );
    let read_at = p.now;
    let mut more = 0;
    p.run_until(Duration::from_secs(5), |p| {
        more = drain(&mut p.b);
        more > 0
    });
    let waited = p.now - read_at;
    assert!(
        waited <= rtt * 3,
        "data resumed {waited:?} after the reader freed the window (RTT {rtt:?})"
    );
}

#[test]
fn an_idle_association_closes_in_two_round_trips() {
    let one_way = Duration::from_millis(10);
    let mut p = Pair::new(one_way, 0.0);
    p.connect();
    let id = p.a.open_channel(ChannelOptions::reliable("x", "")).unwrap();
    p.a.send(id, b"hello", true).unwrap();
    let mut got = Vec::new();
    p.run_until(Duration::from_secs(5), |p| {
        Pair::drain_messages(&mut p.b, id, &mut got);
        !got.is_empty() && p.a.buffered_amount(id) == 0
    });
    let now = p.now;
    p.a.close(now);
    p.run_until(Duration::from_secs(10), |p| {
        p.events_a
            .iter()
            .any(|e| matches!(e, ChannelEvent::Closed(_)))
            && p.events_b
                .iter()
                .any(|e| matches!(e, ChannelEvent::Closed(_)))
    });
    let took = p.now - now;
    assert!(took <= one_way * 4, "close took {took:?}");
    assert!(p
        .events_a
        .contains(&ChannelEvent::Closed(ChannelError::Closed)));
    assert!(p
        .events_b
        .contains(&ChannelEvent::Closed(ChannelError::PeerClosed)));
}
