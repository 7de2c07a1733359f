//! Connect-time benchmark: from "remote credentials and candidates given" to "both connected"
//! and "both completed" (a pair nominated on both sides).
//!
//! (a) In the simulated network (`jingle_ice_sim`, virtual time) with a 20 ms round trip,
//!     reported in round trips; alongside, our agent and str0m's `is::IceAgent` 0.12 in the
//!     same small back-to-back harness with the same round trip (`common::b2b`).
//! (b) Over real loopback sockets with the tokio driver (`jingle_ice::net`), against the
//!     round-trip time of a raw UDP ping-pong between two tokio sockets measured in the same
//!     run, as the baseline.
//!
//! `cargo bench --bench connect` runs (b) several times and prints medians; `cargo test
//! --all-targets` runs everything once.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::b2b::{ours_pair, theirs_pair};
use common::{full_run, median, Table};
use jingle_ice::ice::{Agent, AgentConfig, Candidate, ConnectionState, IceEvent, Role};
use jingle_ice::net::IceConnection;
use jingle_ice_sim::{AgentEndpoint, EndpointHandle, LinkConfig, Network, Realm};

/// Round trip of the simulated paths: 5 ms on each host's access link, each way.
const RTT: Duration = Duration::from_millis(20);
/// How long a connection may take before the bench gives up.
const DEADLINE: Duration = Duration::from_secs(10);

fn remote(c: &Candidate) -> Candidate {
    Candidate::remote(
        c.foundation.clone(),
        c.component,
        c.priority,
        c.address,
        c.kind,
        c.related_address,
    )
}

fn rtts(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() / RTT.as_secs_f64())
}

fn fmt_opt(d: Option<Duration>) -> (String, String) {
    match d {
        Some(d) => (format!("{:.1}", d.as_secs_f64() * 1e3), rtts(d)),
        None => ("never".into(), "-".into()),
    }
}

/// (a) Two agents on the simulated internet, one host candidate each.
fn simulated() -> (Option<Duration>, Option<Duration>) {
    let start = Instant::now();
    let mut net = Network::new(1, start);
    let link = LinkConfig::with_delay(RTT / 4);
    let ip_a: IpAddr = Ipv4Addr::new(198, 51, 100, 1).into();
    let ip_b: IpAddr = Ipv4Addr::new(203, 0, 113, 1).into();
    let host_a = net.add_host(Realm::Internet, ip_a, link).expect("host a");
    let host_b = net.add_host(Realm::Internet, ip_b, link).expect("host b");
    let mk = |role, seed, addr: SocketAddr| {
        let mut agent = Agent::new(
            AgentConfig {
                seed: Some(seed),
                ..AgentConfig::default()
            },
            role,
            start,
        );
        agent.add_host_candidate(1, addr);
        agent.gather(start);
        agent
    };
    let (addr_a, addr_b) = (SocketAddr::new(ip_a, 5000), SocketAddr::new(ip_b, 6000));
    let mut agent_a = mk(Role::Controlling, 1, addr_a);
    let mut agent_b = mk(Role::Controlled, 2, addr_b);
    agent_a.set_remote_credentials(agent_b.local_credentials().clone());
    agent_b.set_remote_credentials(agent_a.local_credentials().clone());
    let ca: Vec<Candidate> = agent_a.local_candidates().iter().map(remote).collect();
    let cb: Vec<Candidate> = agent_b.local_candidates().iter().map(remote).collect();
    let a = net
        .add_endpoint(host_a, &[5000], AgentEndpoint::new(agent_a))
        .expect("endpoint a");
    let b = net
        .add_endpoint(host_b, &[6000], AgentEndpoint::new(agent_b))
        .expect("endpoint b");
    // The moment both sides have everything: the clock starts.
    let given = net.now();
    net.with_endpoint(a, |ep, now| {
        for c in cb {
            ep.agent_mut().add_remote_candidate(c, now);
        }
        ep.agent_mut().end_of_remote_candidates(now);
    });
    net.with_endpoint(b, |ep, now| {
        for c in ca {
            ep.agent_mut().add_remote_candidate(c, now);
        }
        ep.agent_mut().end_of_remote_candidates(now);
    });
    let state = |net: &Network, h: EndpointHandle<AgentEndpoint>| {
        net.endpoint(h)
            .map(|ep| ep.agent().state())
            .unwrap_or(ConnectionState::Closed)
    };
    let both = |net: &Network, want: &[ConnectionState]| {
        want.contains(&state(net, a)) && want.contains(&state(net, b))
    };
    let deadline = given + DEADLINE;
    net.run_until(deadline, |n| {
        both(n, &[ConnectionState::Connected, ConnectionState::Completed])
    });
    let connected = both(
        &net,
        &[ConnectionState::Connected, ConnectionState::Completed],
    )
    .then(|| net.now() - given);
    net.run_until(deadline, |n| both(n, &[ConnectionState::Completed]));
    let completed = both(&net, &[ConnectionState::Completed]).then(|| net.now() - given);
    (connected, completed)
}

/// Raw UDP round trip between two tokio sockets on 127.0.0.1: the median of `n` ping-pongs.
async fn raw_udp_rtt(n: usize) -> std::io::Result<Duration> {
    let a = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let b = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
    let a_addr = a.local_addr()?;
    let b_addr = b.local_addr()?;
    let echo = {
        let b = Arc::clone(&b);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((len, from)) = b.recv_from(&mut buf).await {
                if len == 0 || b.send_to(&buf[..len], from).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut buf = [0u8; 1500];
    let mut samples = Vec::with_capacity(n);
    // A STUN-sized datagram (the RFC 5769 request is 108 bytes).
    let ping = [0x17u8; 108];
    for _ in 0..n + 10 {
        let t = Instant::now();
        a.send_to(&ping, b_addr).await?;
        a.recv_from(&mut buf).await?;
        samples.push(t.elapsed().as_secs_f64());
    }
    a.send_to(&[], b_addr).await?;
    let _ = echo.await;
    let _ = a_addr;
    let mut samples: Vec<f64> = samples.split_off(10.min(samples.len()));
    Ok(Duration::from_secs_f64(median(&mut samples)))
}

fn loopback_builder(role: Role) -> jingle_ice::net::IceConnectionBuilder {
    IceConnection::builder(role)
        .include_loopback(true)
        .ipv6(false)
        .allow_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Waits for the first event that says `Completed`.
async fn wait_completed(c: &IceConnection) -> Option<Instant> {
    if c.state() == ConnectionState::Completed {
        return Some(Instant::now());
    }
    while let Some(e) = c.next_event().await {
        if e == IceEvent::StateChanged(ConnectionState::Completed) {
            return Some(Instant::now());
        }
    }
    None
}

/// (b) One connection over loopback: (to both connected, to both completed).
async fn loopback_once() -> Result<(Duration, Duration), String> {
    let a = loopback_builder(Role::Controlling)
        .start()
        .await
        .map_err(|e| format!("start a: {e}"))?;
    let b = loopback_builder(Role::Controlled)
        .start()
        .await
        .map_err(|e| format!("start b: {e}"))?;
    let ca = a.local_candidates();
    let cb = b.local_candidates();
    if ca.is_empty() || cb.is_empty() {
        return Err("no loopback candidate".into());
    }
    let given = Instant::now();
    let signal = async {
        a.set_remote_credentials(b.local_credentials()).await?;
        b.set_remote_credentials(a.local_credentials()).await?;
        for c in &cb {
            a.add_remote_candidate(remote(c)).await?;
        }
        for c in &ca {
            b.add_remote_candidate(remote(c)).await?;
        }
        a.end_of_remote_candidates().await?;
        b.end_of_remote_candidates().await
    };
    let run = async {
        let (ra, rb) = tokio::join!(
            async {
                a.wait_connected().await.ok()?;
                let connected = Instant::now();
                Some((connected, wait_completed(&a).await?))
            },
            async {
                b.wait_connected().await.ok()?;
                let connected = Instant::now();
                Some((connected, wait_completed(&b).await?))
            }
        );
        Some((ra?, rb?))
    };
    let (signalled, outcome) = tokio::time::timeout(DEADLINE, async { tokio::join!(signal, run) })
        .await
        .map_err(|_| "timed out".to_string())?;
    signalled.map_err(|e| format!("signalling: {e}"))?;
    let ((ca_t, pa_t), (cb_t, pb_t)) = outcome.ok_or("failed to connect")?;
    a.close().await;
    b.close().await;
    Ok((ca_t.max(cb_t) - given, pa_t.max(pb_t) - given))
}

fn main() {
    // (a) simulated, deterministic.
    let (sim_connected, sim_completed) = simulated();
    let mut ours = ours_pair(1, RTT / 2, Instant::now());
    ours.run_to_completion(DEADLINE);
    let mut theirs = theirs_pair(1, RTT / 2, Instant::now());
    theirs.run_to_completion(DEADLINE);

    let mut table = Table::new(
        "Connect time, simulated 20 ms round trip (virtual time), from candidates given",
        &[
            "setup",
            "connected ms",
            "connected RTTs",
            "completed ms",
            "completed RTTs",
        ],
    );
    let mut row = |name: &str, c: Option<Duration>, p: Option<Duration>| {
        let (cm, cr) = fmt_opt(c);
        let (pm, pr) = fmt_opt(p);
        table.row(vec![name.into(), cm, cr, pm, pr]);
    };
    row("jingle-ice, jingle_ice_sim", sim_connected, sim_completed);
    row(
        "jingle-ice, back-to-back harness",
        ours.both_connected,
        ours.both_completed,
    );
    row(
        "is 0.12, back-to-back harness",
        theirs.both_connected,
        theirs.both_completed,
    );
    table.print();
    println!("\"completed\": ConnectionState::Completed on both sides (is: IceConnectionState::Completed).");
    assert!(sim_connected.is_some(), "simulated agents did not connect");

    // (b) real loopback sockets.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rounds = if full_run() { 15 } else { 1 };
    let (rtt, mut connected, mut completed) = runtime.block_on(async {
        let rtt = raw_udp_rtt(if full_run() { 1000 } else { 20 })
            .await
            .expect("raw UDP round trip");
        let mut connected = Vec::new();
        let mut completed = Vec::new();
        for _ in 0..rounds {
            let (c, p) = loopback_once().await.expect("loopback connection");
            connected.push(c.as_secs_f64());
            completed.push(p.as_secs_f64());
        }
        (rtt, connected, completed)
    });
    let connected = median(&mut connected);
    let completed = median(&mut completed);
    let raw = rtt.as_secs_f64();
    let mut table = Table::new(
        &format!(
            "Connect time over loopback, tokio driver, median of {rounds}, against the raw UDP \
             round trip measured in the same run"
        ),
        &["measure", "µs", "raw UDP RTTs"],
    );
    table.row(vec![
        "raw UDP round trip (baseline)".into(),
        format!("{:.1}", raw * 1e6),
        "1.00".into(),
    ]);
    table.row(vec![
        "both connected".into(),
        format!("{:.1}", connected * 1e6),
        format!("{:.1}", connected / raw),
    ]);
    table.row(vec![
        "both completed".into(),
        format!("{:.1}", completed * 1e6),
        format!("{:.1}", completed / raw),
    ]);
    table.print();
}
