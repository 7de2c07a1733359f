//! TURN over TLS (RFC 8656 §3.1) through a real coturn on 127.0.0.1 with a certificate from a
//! throwaway CA, driven by the tokio driver ([`IceConnection`]).
//!
//! - Two connections that know only each other's relayed candidates connect through the relay,
//!   select a relayed pair on both sides and move data both ways intact. coturn relays from
//!   127.0.0.2 while the agents live on 127.0.0.1: permissions are per IP (RFC 8656 §9), so a
//!   check from a host address to a relayed one is dropped by the server and no direct or
//!   peer-reflexive path can form; only relay-to-relay works.
//! - A certificate that does not verify (another CA, the system roots, a wrong name) fails the
//!   TLS allocation with a clear error, within bounded time, while the agent goes on with its
//!   other candidates (a relay over UDP on the same server).

mod coturn;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use coturn::{make_pki, openssl_available, start_coturn_tls, turnserver_available, SECRET};
use jingle_ice::ice::{Candidate, CandidateType, IceEvent, Role};
use jingle_ice::net::{IceConnection, TurnStreamError};
use jingle_ice::turn::{TurnConfig, TurnCredentials, TurnTransport};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STEP: Duration = Duration::from_secs(20);

fn credentials() -> TurnCredentials {
    TurnCredentials::time_limited_for(
        SECRET.as_bytes(),
        SystemTime::now(),
        Duration::from_secs(600),
        Some("tls"),
    )
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

fn tools_available() -> bool {
    init_tracing();
    // Both checks run (each says what is missing).
    let turn = turnserver_available();
    let openssl = openssl_available();
    turn && openssl
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

/// Reads events until gathering completes.
async fn gathered(conn: &IceConnection) {
    bounded("gathering", async {
        while let Some(event) = conn.next_event().await {
            if event == IceEvent::GatheringComplete {
                return;
            }
        }
        panic!("connection closed while gathering");
    })
    .await;
}

fn relayed(conn: &IceConnection) -> Vec<Candidate> {
    conn.local_candidates()
        .into_iter()
        .filter(|c| c.kind == CandidateType::Relayed)
        .collect()
}

fn as_remote(c: &Candidate) -> Candidate {
    Candidate::remote(
        c.foundation.clone(),
        c.component,
        c.priority,
        c.address,
        c.kind,
        c.related_address,
    )
}

async fn start(role: Role, turn: TurnConfig, ca: Option<&Path>) -> IceConnection {
    let mut builder = IceConnection::builder(role)
        .bind(LOOPBACK)
        .turn_server(turn);
    if let Some(ca) = ca {
        builder = builder.turn_ca_file(ca);
    }
    builder.start().await.expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_meet_through_turn_over_tls() {
    if !tools_available() {
        return;
    }
    let pki = make_pki();
    let coturn = start_coturn_tls(&pki, "127.0.0.2");
    let server = SocketAddr::new(LOOPBACK, coturn.tls_port.expect("TLS port"));
    // A verifies the certificate for the DNS name, B (with no name) for the server's IP.
    let turn_a = TurnConfig::tls(server, "localhost", credentials());
    let turn_b = TurnConfig::new(server, TurnTransport::Tls, credentials());

    let a = start(Role::Controlling, turn_a, Some(&pki.ca)).await;
    let b = start(Role::Controlled, turn_b, Some(&pki.ca)).await;
    gathered(&a).await;
    gathered(&b).await;
    for conn in [&a, &b] {
        assert_eq!(conn.turn_stream_failures(), vec![]);
        let relayed = relayed(conn);
        assert_eq!(
            relayed.len(),
            1,
            "one relayed candidate: {relayed:?}\n{}",
            coturn.log()
        );
        assert_eq!(
            relayed[0].address.ip(),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
    }

    // Signal credentials and only the relayed candidates.
    a.set_remote_credentials(b.local_credentials())
        .await
        .unwrap();
    b.set_remote_credentials(a.local_credentials())
        .await
        .unwrap();
    for c in relayed(&a) {
        b.add_remote_candidate(as_remote(&c)).await.unwrap();
    }
    for c in relayed(&b) {
        a.add_remote_candidate(as_remote(&c)).await.unwrap();
    }
    a.end_of_remote_candidates().await.unwrap();
    b.end_of_remote_candidates().await.unwrap();
    bounded("connect", async {
        a.wait_connected().await.expect("a connects");
        b.wait_connected().await.expect("b connects");
    })
    .await;
    let pairs = bounded("nomination", async {
        loop {
            if let (Some(pa), Some(pb)) = (a.selected_pair(1), b.selected_pair(1)) {
                return (pa, pb);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for pair in [&pairs.0, &pairs.1] {
        assert_eq!(pair.local.kind, CandidateType::Relayed, "{pair:?}");
        assert_eq!(pair.remote.kind, CandidateType::Relayed, "{pair:?}");
    }
    assert_eq!(pairs.0.local.address, pairs.1.remote.address);
    assert_eq!(pairs.1.local.address, pairs.0.remote.address);

    // Data both ways through the relay, checked end to end.
    let n = 300usize;
    let payload = |from: u8, i: usize| -> Vec<u8> {
        let mut v = vec![0x80, from];
        v.extend_from_slice(&(i as u32).to_be_bytes());
        v.extend((0..(i % 1000)).map(|k| (k as u8) ^ from));
        v
    };
    for i in 0..n {
        a.send(1, &payload(b'a', i)).await.unwrap();
        b.send(1, &payload(b'b', i)).await.unwrap();
        if i % 25 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for (conn, from, peer) in [
        (&a, b'b', pairs.0.remote.address),
        (&b, b'a', pairs.1.remote.address),
    ] {
        let mut got = bounded("relayed data", async {
            let mut got = Vec::new();
            while got.len() < n {
                let d = conn.recv().await.expect("datagram");
                assert_eq!(d.component, 1);
                assert_eq!(d.source, peer, "data from the peer's relayed address");
                got.push(d.data);
            }
            got
        })
        .await;
        got.sort();
        let mut want: Vec<Vec<u8>> = (0..n).map(|i| payload(from, i)).collect();
        want.sort();
        assert_eq!(got, want);
    }
    assert_eq!(a.stats().datagrams_dropped, 0);
    assert_eq!(b.stats().datagrams_dropped, 0);
    bounded("close", async {
        a.close().await;
        b.close().await;
    })
    .await;
}

/// Starts a connection with a TLS relay that must fail verification and a UDP relay on the
/// same coturn that must work; returns the failure.
async fn tls_relay_fails(
    coturn: &coturn::Coturn,
    server_name: &str,
    ca: Option<&Path>,
) -> TurnStreamError {
    let tls_server = SocketAddr::new(LOOPBACK, coturn.tls_port.expect("TLS port"));
    let udp_server = SocketAddr::new(LOOPBACK, coturn.port);
    let mut builder = IceConnection::builder(Role::Controlling)
        .bind(LOOPBACK)
        .turn_server(TurnConfig::tls(tls_server, server_name, credentials()))
        .turn_server(TurnConfig::new(
            udp_server,
            TurnTransport::Udp,
            credentials(),
        ));
    if let Some(ca) = ca {
        builder = builder.turn_ca_file(ca);
    }
    let conn = builder.start().await.expect("start");
    gathered(&conn).await;
    // The UDP relay is there; the TLS one is not.
    let relayed = relayed(&conn);
    assert_eq!(relayed.len(), 1, "only the UDP relay: {relayed:?}");
    let failures = conn.turn_stream_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].server, tls_server);
    assert_eq!(failures[0].transport, TurnTransport::Tls);
    bounded("close", conn.close()).await;
    failures[0].error.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_verify_fails_the_tls_allocation_cleanly() {
    if !tools_available() {
        return;
    }
    let pki = make_pki();
    let coturn = start_coturn_tls(&pki, "127.0.0.2");

    // A CA that did not sign the server's certificate.
    let error = tls_relay_fails(&coturn, "localhost", Some(&pki.other_ca)).await;
    assert!(
        matches!(&error, TurnStreamError::Certificate(e) if e.contains("UnknownIssuer")),
        "{error}"
    );
    println!("another CA: {error}");

    // The system roots (the default) do not know the throwaway CA either.
    let error = tls_relay_fails(&coturn, "localhost", None).await;
    assert!(
        matches!(&error, TurnStreamError::Certificate(e) if e.contains("UnknownIssuer")),
        "{error}"
    );

    // The right CA but a name the certificate does not carry.
    let error = tls_relay_fails(&coturn, "turn.example.org", Some(&pki.ca)).await;
    assert!(
        matches!(&error, TurnStreamError::Certificate(e) if e.contains("not valid for name")),
        "{error}"
    );
    println!("wrong name: {error}");
}

#[tokio::test]
async fn a_missing_ca_file_is_refused_at_start() {
    let server = SocketAddr::new(LOOPBACK, 5349);
    let err = IceConnection::builder(Role::Controlling)
        .bind(LOOPBACK)
        .turn_server(TurnConfig::tls(server, "localhost", credentials()))
        .turn_ca_file("/nonexistent/jingle-ice-ca.pem")
        .start()
        .await
        .expect_err("no CA file");
    assert!(
        err.to_string().contains("/nonexistent/jingle-ice-ca.pem"),
        "{err}"
    );
}

/// Set in the child process of [`the_system_roots_honour_ssl_cert_file`]: the TLS server.
const CHILD_SERVER_ENV: &str = "JINGLE_ICE_TEST_TURNS_SERVER";

#[test]
fn the_system_roots_honour_ssl_cert_file() {
    if !tools_available() {
        return;
    }
    let pki = make_pki();
    let coturn = start_coturn_tls(&pki, "127.0.0.2");
    let server = SocketAddr::new(LOOPBACK, coturn.tls_port.expect("TLS port"));
    // Environment variables are process-wide: run the check in a child process of this test
    // binary, with SSL_CERT_FILE naming the throwaway CA and no CA file in the builder.
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "system_roots_child", "--nocapture"])
        .env("SSL_CERT_FILE", &pki.ca)
        .env(CHILD_SERVER_ENV, server.to_string())
        .spawn()
        .expect("spawn the child test");
    let deadline = std::time::Instant::now() + STEP * 2;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child test hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the child test failed\n{}", coturn.log());
}

/// Runs only as the child of [`the_system_roots_honour_ssl_cert_file`].
#[tokio::test]
async fn system_roots_child() {
    let Ok(server) = std::env::var(CHILD_SERVER_ENV) else {
        return;
    };
    init_tracing();
    let server: SocketAddr = server.parse().expect("server address");
    let conn = start(
        Role::Controlling,
        TurnConfig::tls(server, "localhost", credentials()),
        None,
    )
    .await;
    gathered(&conn).await;
    assert_eq!(conn.turn_stream_failures(), vec![]);
    assert_eq!(relayed(&conn).len(), 1, "a relayed candidate over TLS");
    bounded("close", conn.close()).await;
    println!("system roots from SSL_CERT_FILE: allocated over TLS");
}
