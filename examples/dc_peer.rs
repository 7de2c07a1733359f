//! One WebRTC data-channel peer that signals its Jingle transport over stdin/stdout: the lab's
//! interop peer against `tests/aiortc/dc_peer.py` (aiortc), speaking the same line protocol.
//!
//! Signalling: one line each way, `TRANSPORT <xml>`, the `webrtc-datachannel:1` transport as
//! Conversations sends it (an ICE-UDP transport inside, with the DTLS `<fingerprint/>`, every
//! candidate gathered). `--role offer` prints first (ICE controlling, `setup='actpass'`), then
//! reads the answer; `--role answer` reads the offer and answers `setup='active'` (or
//! `--setup passive`). The DTLS roles follow (RFC 8842 §5.3).
//!
//! Data: once connected, each side opens its own channel (`--label`, default `test`;
//! `--protocol`, default `xmpp-jingle`), writes `--bytes N` of the pattern for `--seed S` as a
//! byte stream, and reads the peer's channel, checking `--expect N` bytes (default: `--bytes`)
//! of the pattern for `--peer-seed P`. Pattern: `table` = SHA-256("jingle-ice pattern" ‖
//! seed as u32 LE ‖ j as u32 LE) for j = 0, 1, … concatenated and cut to 65521 bytes;
//! byte i of the stream is `table[i % 65521]`.
//!
//! Output lines: `STATE ice <state>`, `SELECTED <local type> <remote type> <local> <remote>`,
//! `HANDSHAKE <ms>` (ICE connected → association up), `CHANNEL <label> <protocol>`,
//! `SENT <n> <ms>` (all acknowledged), `RECEIVED <n> <ms> ok`, `DONE`, or `ERROR <reason>` with
//! exit code 1 (a fingerprint mismatch says `ERROR security-error: ...`).
//!
//! Flags: `--stun IP:PORT`, `--turn IP:PORT --turn-user U --turn-pass P [--turn-tcp]`,
//! `--bind-ip IP` (only this address; loopback allowed), `--wrong-fingerprint` (signal a
//! fingerprint with one byte flipped), `--timeout SECS` (whole run, default 300).

use std::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jingle_ice::channel::{Certificate, ChannelOptions, DtlsRole, Fingerprint, RemoteParameters};
use jingle_ice::ice::{IceEvent, Role};
use jingle_ice::jingle::{
    dtls_role, DataChannelTransport, DtlsFingerprint, IceUdpCandidate, IceUdpTransport, Setup,
    TransportLimits,
};
use jingle_ice::net::{DataChannels, DataChannelsConfig, IceConnection};
use jingle_ice::turn::{TurnConfig, TurnCredentials, TurnTransport};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

type BoxError = Box<dyn Error + Send + Sync>;

/// Period of the test pattern (a prime, so it never lines up with message sizes).
const PATTERN_LEN: usize = 65_521;

#[derive(Debug)]
struct Options {
    offer: bool,
    setup_passive: bool,
    bytes: u64,
    expect: Option<u64>,
    seed: u32,
    peer_seed: u32,
    label: String,
    protocol: String,
    stun: Vec<SocketAddr>,
    turn: Option<(SocketAddr, TurnTransport)>,
    turn_user: String,
    turn_pass: String,
    bind: Option<IpAddr>,
    wrong_fingerprint: bool,
    timeout: Duration,
}

fn parse_args() -> Result<Options, BoxError> {
    let mut o = Options {
        offer: true,
        setup_passive: false,
        bytes: 0,
        expect: None,
        seed: 1,
        peer_seed: 2,
        label: "test".into(),
        protocol: "xmpp-jingle".into(),
        stun: Vec::new(),
        turn: None,
        turn_user: String::new(),
        turn_pass: String::new(),
        bind: None,
        wrong_fingerprint: false,
        timeout: Duration::from_secs(300),
    };
    let mut turn_addr = None;
    let mut turn_tcp = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--role" => {
                o.offer = match value()?.as_str() {
                    "offer" => true,
                    "answer" => false,
                    other => return Err(format!("--role offer|answer, not {other}").into()),
                }
            }
            "--setup" => o.setup_passive = value()? == "passive",
            "--bytes" => o.bytes = value()?.parse()?,
            "--expect" => o.expect = Some(value()?.parse()?),
            "--seed" => o.seed = value()?.parse()?,
            "--peer-seed" => o.peer_seed = value()?.parse()?,
            "--label" => o.label = value()?,
            "--protocol" => o.protocol = value()?,
            "--stun" => o.stun.push(value()?.parse()?),
            "--turn" => turn_addr = Some(value()?.parse()?),
            "--turn-tcp" => turn_tcp = true,
            "--turn-user" => o.turn_user = value()?,
            "--turn-pass" => o.turn_pass = value()?,
            "--bind-ip" => o.bind = Some(value()?.parse()?),
            "--wrong-fingerprint" => o.wrong_fingerprint = true,
            "--timeout" => o.timeout = Duration::from_secs(value()?.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    o.turn = turn_addr.map(|a| {
        let t = if turn_tcp {
            TurnTransport::Tcp
        } else {
            TurnTransport::Udp
        };
        (a, t)
    });
    Ok(o)
}

fn pattern_table(seed: u32) -> Vec<u8> {
    let mut table = Vec::with_capacity(PATTERN_LEN + 32);
    let mut j: u32 = 0;
    while table.len() < PATTERN_LEN {
        let mut h = Sha256::new();
        h.update(b"jingle-ice pattern");
        h.update(seed.to_le_bytes());
        h.update(j.to_le_bytes());
        table.extend_from_slice(&h.finalize());
        j += 1;
    }
    table.truncate(PATTERN_LEN);
    table
}

/// Bytes `[offset, offset + len)` of the pattern stream.
fn pattern_at(table: &[u8], offset: u64, out: &mut Vec<u8>, len: usize) {
    out.clear();
    let mut at = (offset % PATTERN_LEN as u64) as usize;
    while out.len() < len {
        let take = (len - out.len()).min(PATTERN_LEN - at);
        out.extend_from_slice(&table[at..at + take]);
        at = 0;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            println!("ERROR usage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let limit = options.timeout;
    match tokio::time::timeout(limit, run(options)).await {
        Ok(Ok(())) => {
            println!("DONE");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("ERROR {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            println!("ERROR timeout after {}s", limit.as_secs());
            ExitCode::FAILURE
        }
    }
}

async fn run(o: Options) -> Result<(), BoxError> {
    let role = if o.offer {
        Role::Controlling
    } else {
        Role::Controlled
    };
    let mut builder = IceConnection::builder(role).receive_queue(8192);
    if let Some(ip) = o.bind {
        builder = builder.include_loopback(ip.is_loopback()).allow_address(ip);
    }
    for s in &o.stun {
        builder = builder.stun_server(*s);
    }
    if let Some((addr, transport)) = o.turn {
        let creds = TurnCredentials::long_term(o.turn_user.clone(), o.turn_pass.clone());
        builder = builder.turn_server(TurnConfig::new(addr, transport, creds));
    }
    let ice = Arc::new(builder.start().await?);
    // Gather everything first: aiortc does not trickle, and one line each way is simplest.
    while let Some(event) = ice.next_event().await {
        if event == IceEvent::GatheringComplete {
            break;
        }
    }
    let certificate = Certificate::generate()?;
    let mut our_fp = certificate.fingerprint().as_bytes().to_vec();
    if o.wrong_fingerprint {
        our_fp[0] ^= 0xff;
    }
    let candidates: Vec<IceUdpCandidate> = ice
        .local_candidates()
        .into_iter()
        .enumerate()
        .map(|(i, c)| IceUdpCandidate::new(c, format!("c{i}")))
        .collect();
    let ours = |setup: Setup| {
        let ice_t = IceUdpTransport::new(&ice.local_credentials(), candidates.clone());
        let fp = DtlsFingerprint::new(
            setup,
            Fingerprint::new(jingle_ice::channel::FINGERPRINT_HASH, our_fp.clone())
                .expect("a SHA-256 digest"),
        );
        let mut t = DataChannelTransport::with_fingerprint(ice_t, fp);
        t.max_message_size = Some(jingle_ice::channel::DEFAULT_MAX_MESSAGE_SIZE);
        t
    };
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let (offer_setup, answer_setup, peer) = if o.offer {
        println!("TRANSPORT {}", xml(&ours(Setup::Actpass).to_element()));
        let peer = read_peer(&mut stdin).await?;
        let answer = peer.fingerprint().ok_or("no fingerprint")?.setup;
        (Setup::Actpass, answer, peer)
    } else {
        let peer = read_peer(&mut stdin).await?;
        let offer = peer.fingerprint().ok_or("no fingerprint")?.setup;
        let answer = if o.setup_passive {
            Setup::Passive
        } else {
            offer.answer()?
        };
        println!("TRANSPORT {}", xml(&ours(answer).to_element()));
        (offer, answer, peer)
    };
    let dtls: DtlsRole = dtls_role(offer_setup, answer_setup, o.offer)?;
    let peer_fp = peer.fingerprint().ok_or("no fingerprint")?;
    let remote = RemoteParameters {
        fingerprint: {
            peer_fp.fingerprint.check_supported()?;
            peer_fp.fingerprint.clone()
        },
        max_message_size: peer.max_message_size_or_default(),
        sctp_port: Some(peer.sctp_port_or_default()),
    };
    let creds = peer
        .ice
        .credentials()
        .ok_or("peer sent no ICE credentials")?;
    ice.set_remote_credentials(creds).await?;
    for c in peer.ice.ice_candidates() {
        ice.add_remote_candidate(c.clone()).await?;
    }
    ice.end_of_remote_candidates().await?;

    let started = Instant::now();
    let channels = match DataChannels::connect(
        ice.clone(),
        &certificate,
        dtls,
        remote,
        DataChannelsConfig::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e @ jingle_ice::channel::ChannelError::FingerprintMismatch { .. }) => {
            return Err(format!("security-error: {e}").into())
        }
        Err(e) => return Err(e.into()),
    };
    println!("STATE ice {:?}", ice.state());
    if let Some(p) = ice.selected_pair(1) {
        println!(
            "SELECTED {} {} {} {}",
            p.local.kind, p.remote.kind, p.local.address, p.remote.address
        );
    }
    let handshake = channels.info().handshake.unwrap_or_default();
    println!("HANDSHAKE {} dtls={:?}", handshake.as_millis(), dtls);
    tracing::info!(elapsed = ?started.elapsed(), "association up");

    let mut mine = channels.open(ChannelOptions::reliable(
        o.label.clone(),
        o.protocol.clone(),
    ))?;
    let bytes = o.bytes;
    let seed = o.seed;
    let writer = tokio::spawn(async move {
        let t0 = Instant::now();
        let table = pattern_table(seed);
        let mut buf = Vec::with_capacity(65_536);
        let mut sent = 0u64;
        while sent < bytes {
            let len = (bytes - sent).min(65_536) as usize;
            pattern_at(&table, sent, &mut buf, len);
            mine.write_all(&buf).await?;
            sent += len as u64;
        }
        mine.flush().await?;
        println!("SENT {sent} {}", t0.elapsed().as_millis());
        Ok::<_, std::io::Error>(mine)
    });
    let mut theirs = channels
        .accept()
        .await
        .ok_or("association closed before the peer's channel")?;
    println!("CHANNEL {} {}", theirs.label(), theirs.protocol());
    let expect = o.expect.unwrap_or(o.bytes);
    let table = pattern_table(o.peer_seed);
    let t0 = Instant::now();
    let mut got = 0u64;
    let mut buf = vec![0u8; 65_536];
    let mut want = Vec::with_capacity(65_536);
    while got < expect {
        let n = theirs.read(&mut buf).await.map_err(|e| {
            format!(
                "reading the peer's channel after {got} bytes: {e} (ICE {:?}, {:?})",
                ice.state(),
                channels.info().stats
            )
        })?;
        if n == 0 {
            return Err(format!(
                "peer's channel ended after {got} of {expect} bytes (association: {:?}, ICE {:?}, {:?})",
                channels.closed_reason(),
                ice.state(),
                channels.info().stats
            )
            .into());
        }
        pattern_at(&table, got, &mut want, n);
        if buf[..n] != want[..] {
            return Err(format!("received bytes differ from the pattern near offset {got}").into());
        }
        got += n as u64;
    }
    println!("RECEIVED {got} {} ok", t0.elapsed().as_millis());
    let _mine = writer.await??;
    // Both directions done: give the peer a moment to finish reading, then close cleanly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    channels.close().await;
    ice.close().await;
    Ok(())
}

/// Reads lines until the peer's `TRANSPORT <xml>` and checks it is a usable offer or answer.
async fn read_peer(
    stdin: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>,
) -> Result<DataChannelTransport, BoxError> {
    loop {
        let line = stdin
            .next_line()
            .await?
            .ok_or("stdin closed before TRANSPORT")?;
        if let Some(xml) = line.strip_prefix("TRANSPORT ") {
            let el: minidom::Element = xml.parse()?;
            let t = DataChannelTransport::from_element(&el, TransportLimits::default())?;
            t.check_offer_or_answer()?;
            return Ok(t);
        }
    }
}

fn xml(el: &minidom::Element) -> String {
    String::from(el)
}
