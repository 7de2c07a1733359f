//! Two ICE agents in one process, connected over loopback through real UDP sockets.
//!
//! Each side's credentials and trickled candidates reach the other through in-process
//! "signalling" (candidates go through their RFC 8839 text form, as they would in a Jingle
//! `transport-info`). The example prints the candidates, both sides' selected pairs, the time
//! to connect, and echoes a few datagrams; then it runs an encrypted WebRTC data channel over the
//! same pair (DTLS 1.2 with fingerprint-checked certificates, SCTP, DCEP) and moves 64 MiB
//! through it, verified; it exits non-zero if anything fails.
//!
//! Run with `cargo run --example loopback` (`RUST_LOG=jingle_ice=debug` for the agents' logs).

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jingle_ice::channel::{
    Certificate, ChannelOptions, DtlsRole, RemoteParameters, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_SCTP_PORT,
};
use jingle_ice::ice::{Candidate, IceEvent, Role};
use jingle_ice::net::{DataChannels, DataChannelsConfig, IceConnection, SelectedPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// How long connecting may take before the example gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one echoed datagram may take.
const ECHO_TIMEOUT: Duration = Duration::from_secs(2);
/// Datagrams echoed.
const PINGS: u32 = 5;
/// Bytes sent through the data channel.
const CHANNEL_BYTES: usize = 64 * 1024 * 1024;
/// The first byte of our datagrams: 23 is DTLS application data, in the range RFC 7983 §7
/// keeps apart from STUN (0-3), so the agents hand it to the application.
const DATA_MARKER: u8 = 23;

type BoxError = Box<dyn Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopback: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn builder(role: Role) -> jingle_ice::net::IceConnectionBuilder {
    IceConnection::builder(role)
        .include_loopback(true)
        .allow_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .allow_address(IpAddr::V6(Ipv6Addr::LOCALHOST))
}

async fn run() -> Result<(), BoxError> {
    let a = Arc::new(builder(Role::Controlling).start().await?);
    let b = Arc::new(builder(Role::Controlled).start().await?);
    println!("A (controlling) bound {:?}", a.local_addresses());
    println!("B (controlled)  bound {:?}", b.local_addresses());

    // Signalling: credentials first, then candidates as they trickle in.
    let started = Instant::now();
    a.set_remote_credentials(b.local_credentials()).await?;
    b.set_remote_credentials(a.local_credentials()).await?;
    let signal_a = tokio::spawn(signal("A", Arc::clone(&a), Arc::clone(&b)));
    let signal_b = tokio::spawn(signal("B", Arc::clone(&b), Arc::clone(&a)));

    let connected = timeout(CONNECT_TIMEOUT, async {
        a.wait_connected().await?;
        b.wait_connected().await?;
        Ok::<_, jingle_ice::net::Error>(())
    })
    .await;
    match connected {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("connecting: {e}").into()),
        Err(_) => return Err(format!("not connected after {CONNECT_TIMEOUT:?}").into()),
    }
    let connect_time = started.elapsed();
    println!("connected in {:.1} ms", connect_time.as_secs_f64() * 1e3);

    // The controlled side learns the selected pair when the nomination reaches it.
    let pairs = timeout(CONNECT_TIMEOUT, async {
        loop {
            if let (Some(pa), Some(pb)) = (a.selected_pair(1), b.selected_pair(1)) {
                return (pa, pb);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .map_err(|_| "no selected pair on both sides")?;
    println!(
        "selected pairs after {:.1} ms:",
        started.elapsed().as_secs_f64() * 1e3
    );
    print_pair("A", &pairs.0);
    print_pair("B", &pairs.1);

    // B echoes whatever arrives.
    let echo = {
        let b = Arc::clone(&b);
        tokio::spawn(async move {
            while let Some(datagram) = b.recv().await {
                if let Err(e) = b.send(datagram.component, &datagram.data).await {
                    eprintln!("B: echo failed: {e}");
                }
            }
        })
    };
    for i in 0..PINGS {
        let mut ping = vec![DATA_MARKER];
        ping.extend_from_slice(format!("ping {i}").as_bytes());
        let sent = Instant::now();
        a.send(1, &ping).await?;
        let reply = timeout(ECHO_TIMEOUT, a.recv())
            .await
            .map_err(|_| format!("no echo of ping {i}"))?
            .ok_or("connection closed")?;
        if reply.data != ping {
            return Err(format!("ping {i}: echo differs").into());
        }
        println!(
            "echo {i}: {} bytes back from {} in {} µs",
            reply.data.len(),
            reply.source,
            sent.elapsed().as_micros()
        );
    }

    // The echo is done; the same pair now carries an encrypted WebRTC data channel: DTLS with
    // each side's certificate checked against the fingerprint the other "signalled", SCTP, DCEP.
    echo.abort();
    let (cert_a, cert_b) = (Certificate::generate()?, Certificate::generate()?);
    let remote = |c: &Certificate| RemoteParameters {
        fingerprint: c.fingerprint(),
        max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
        sctp_port: Some(DEFAULT_SCTP_PORT),
    };
    let (ca, cb) = tokio::join!(
        DataChannels::connect(
            Arc::clone(&a),
            &cert_a,
            DtlsRole::Client,
            remote(&cert_b),
            DataChannelsConfig::default()
        ),
        DataChannels::connect(
            Arc::clone(&b),
            &cert_b,
            DtlsRole::Server,
            remote(&cert_a),
            DataChannelsConfig::default()
        ),
    );
    let (ca, cb) = (ca?, cb?);
    println!(
        "data channels: DTLS 1.2 + SCTP up {:.1} ms after ICE (peer fingerprint {} verified)",
        ca.info().handshake.unwrap_or_default().as_secs_f64() * 1e3,
        cert_b.fingerprint()
    );
    let mut tx = ca.open(ChannelOptions::reliable("test", "xmpp-jingle"))?;
    let mut rx = timeout(ECHO_TIMEOUT, cb.accept())
        .await
        .map_err(|_| "the channel did not arrive")?
        .ok_or("association closed")?;
    let block: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let sent_at = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..CHANNEL_BYTES / block.len() {
            tx.write_all(&block).await?;
        }
        tx.shutdown().await
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = rx.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if buf[..n]
            .iter()
            .enumerate()
            .any(|(i, b)| *b != ((got + i) % 65_536 % 251) as u8)
        {
            return Err("data-channel bytes differ".into());
        }
        got += n;
    }
    writer.await??;
    let secs = sent_at.elapsed().as_secs_f64();
    println!(
        "data channel '{}': {} MiB verified in {:.2} s ({:.0} MB/s)",
        rx.label(),
        got >> 20,
        secs,
        got as f64 / 1e6 / secs
    );
    if got != CHANNEL_BYTES {
        return Err(format!("received {got} of {CHANNEL_BYTES} bytes").into());
    }
    ca.close().await;

    let (sa, sb) = (a.stats(), b.stats());
    println!(
        "A: {} checks sent, {} requests answered; B: {} checks sent, {} requests answered",
        sa.agent.checks_sent,
        sa.agent.requests_answered,
        sb.agent.checks_sent,
        sb.agent.requests_answered
    );
    a.close().await;
    b.close().await;
    for task in [signal_a, signal_b, echo] {
        let _ = timeout(ECHO_TIMEOUT, task).await;
    }
    println!("ok");
    Ok(())
}

fn print_pair(side: &str, pair: &SelectedPair) {
    println!(
        "  {side}: local {} {} <-> remote {} {}",
        pair.local.kind, pair.local.address, pair.remote.kind, pair.remote.address
    );
}

/// Forwards `from`'s trickled candidates and end-of-candidates to `to`, through their text
/// form as a signalling channel would, and prints state changes. Ends when `from` closes.
async fn signal(name: &'static str, from: Arc<IceConnection>, to: Arc<IceConnection>) {
    while let Some(event) = from.next_event().await {
        let forwarded = match event {
            IceEvent::LocalCandidate(candidate) => {
                let line = candidate.to_sdp();
                println!("{name}: local {line}");
                match line.parse::<Candidate>() {
                    Ok(remote) => to.add_remote_candidate(remote).await,
                    Err(e) => {
                        eprintln!("{name}: cannot re-read our own candidate: {e}");
                        continue;
                    }
                }
            }
            IceEvent::GatheringComplete => {
                println!("{name}: gathering complete");
                to.end_of_remote_candidates().await
            }
            IceEvent::StateChanged(state) => {
                println!("{name}: state {state:?}");
                Ok(())
            }
            IceEvent::RoleChanged(role) => {
                println!("{name}: role is now {role:?}");
                Ok(())
            }
            IceEvent::SelectedPair { .. } => Ok(()),
            IceEvent::RelayFailed {
                server,
                error,
                retry_in,
            } => {
                println!("{name}: TURN server {server} failed: {error} (again in {retry_in:?})");
                Ok(())
            }
            IceEvent::LocalCandidateRemoved(candidate) => {
                println!("{name}: candidate removed: {candidate}");
                Ok(())
            }
            IceEvent::SelectedPairLost { .. } => {
                println!("{name}: selected pair lost");
                Ok(())
            }
        };
        if forwarded.is_err() {
            // The peer closed: signalling is over.
            return;
        }
    }
}
