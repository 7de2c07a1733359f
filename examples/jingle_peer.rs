//! A Jingle ICE-UDP peer over a real XMPP account, for the lab tests and for trying the
//! library by hand: logs in, fetches STUN/TURN from the server (XEP-0215), then either offers a
//! session to a peer (`--connect JID`, or `--connect -` to read the JID from stdin) or accepts
//! the first offer (`--accept`), and checks data end to end over the ICE path.
//!
//! ```text
//! jingle_peer --jid alice@example.test --password PW --server 203.0.113.20:5222 --ca ca.pem \
//!             --connect bob@example.test/res [--bytes N] [--adversarial] [--wait-end SECS]
//! jingle_peer --jid bob@example.test ... --accept [--log-off-after SECS]
//! ```
//!
//! Output, one fact per line: `jid`, `services`, `supports`, `established` (sid, time from the
//! offer, stanzas sent, selected pair), `data ok`, `check ...` (adversarial mode), `ended REASON`.
//! Exits non-zero with a message on stderr on any failure.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use jid::{FullJid, Jid};
use jingle_ice::channel::ChannelOptions;
use jingle_ice::jingle::{IceUdpTransport, Reason, ReasonCondition, NS_JINGLE};
use jingle_ice::net::DataChannels;
use jingle_ice::xmpp::stanza::{iq, set_attr, IqType, StanzaError};
use jingle_ice::xmpp::{
    JingleClient, JingleClientConfig, JingleSession, XmppConfig, XmppConnection, XmppError,
};
use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The test application's description namespace (a placeholder until file transfer lands).
const APP_NS: &str = "urn:jingle-ice:test-data:0";
/// Size of one data datagram.
const CHUNK: usize = 1000;

struct Options {
    jid: String,
    password: String,
    server: Option<std::net::SocketAddr>,
    ca: Option<PathBuf>,
    connect: Option<String>,
    bytes: usize,
    adversarial: bool,
    wait_end: Option<u64>,
    log_off_after: Option<u64>,
    echo: bool,
    timeout: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        jid: String::new(),
        password: String::new(),
        server: None,
        ca: None,
        connect: None,
        bytes: 256 * 1024,
        adversarial: false,
        wait_end: None,
        log_off_after: None,
        echo: false,
        timeout: 60,
    };
    let mut accept = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--jid" => o.jid = value()?,
            "--password" => o.password = value()?,
            "--server" => o.server = Some(value()?.parse().map_err(|e| format!("--server: {e}"))?),
            "--ca" => o.ca = Some(value()?.into()),
            "--connect" => o.connect = Some(value()?),
            "--accept" => accept = true,
            "--bytes" => o.bytes = value()?.parse().map_err(|e| format!("--bytes: {e}"))?,
            "--adversarial" => o.adversarial = true,
            "--echo" => o.echo = true,
            "--wait-end" => o.wait_end = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--log-off-after" => {
                o.log_off_after = Some(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--timeout" => o.timeout = value()?.parse().map_err(|e| format!("--timeout: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.jid.is_empty() || o.password.is_empty() {
        return Err("--jid and --password are required".into());
    }
    if accept == o.connect.is_some() {
        return Err("give exactly one of --connect JID and --accept".into());
    }
    Ok(o)
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn xmpp_config(o: &Options, jid: &str) -> Result<XmppConfig, String> {
    let jid = Jid::new(jid).map_err(|e| format!("--jid: {e}"))?;
    let mut c = XmppConfig::new(jid, o.password.clone());
    c.server = o.server;
    c.ca_file = o.ca.clone();
    Ok(c)
}

/// First byte of our datagrams: outside the STUN, DTLS, TURN-channel and RTP ranges of
/// RFC 7983 §7, so the ICE layer never mistakes them for its own packets.
const TAG: u8 = 0xC8;

/// The datagram with sequence number `seq`: the tag, the number, then bytes derived from it.
fn datagram(seq: u64) -> Vec<u8> {
    let mut d = vec![TAG];
    d.extend_from_slice(&seq.to_be_bytes());
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while d.len() < CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d.push(x as u8);
    }
    d
}

/// Sends `bytes` in datagrams, each echoed by the peer and compared (stop and wait, resent
/// after 200 ms).
async fn exchange(session: &JingleSession, bytes: usize) -> Result<(), String> {
    if let Some(channels) = session.data_channels() {
        return exchange_channel(channels, bytes).await;
    }
    let conn = session
        .connection()
        .ok_or("the session has no ICE connection")?;
    let count = bytes.div_ceil(CHUNK) as u64;
    let started = Instant::now();
    for seq in 0..count {
        let d = datagram(seq);
        let mut tries = 0;
        loop {
            conn.send(1, &d).await.map_err(|e| format!("send: {e}"))?;
            match tokio::time::timeout(Duration::from_millis(200), async {
                loop {
                    match conn.recv().await {
                        Some(got) if got.data.get(..9) == d.get(..9) => return Some(got),
                        Some(_) => continue, // a late echo of an earlier datagram
                        None => return None,
                    }
                }
            })
            .await
            {
                Ok(Some(got)) if got.data == d => break,
                Ok(Some(_)) => return Err(format!("echo of datagram {seq} differs")),
                Ok(None) => return Err("the ICE connection closed".into()),
                Err(_) => {
                    tries += 1;
                    if tries > 25 {
                        return Err(format!("no echo for datagram {seq}"));
                    }
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    say(format!(
        "data ok bytes={} datagrams={count} secs={secs:.3}",
        count as usize * CHUNK
    ));
    Ok(())
}

/// Over a data channel (the `webrtc-datachannel:1` transport): writes `bytes` of a pattern on
/// a new channel and reads them back from the peer's echo, compared.
async fn exchange_channel(channels: &DataChannels, bytes: usize) -> Result<(), String> {
    let started = Instant::now();
    let channel = channels
        .open(ChannelOptions::reliable("test", "xmpp-jingle"))
        .map_err(|e| format!("open channel: {e}"))?;
    let data: Vec<u8> = (0..bytes as u64)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    let (mut reader, mut writer) = tokio::io::split(channel);
    let write = async {
        writer.write_all(&data).await?;
        writer.flush().await
    };
    let read = async {
        let mut got = vec![0u8; bytes];
        reader.read_exact(&mut got).await.map(|_| got)
    };
    let (w, r) = tokio::join!(write, read);
    w.map_err(|e| format!("channel write: {e}"))?;
    let got = r.map_err(|e| format!("channel read: {e}"))?;
    if got != data {
        return Err("echo over the data channel differs".into());
    }
    let mut writer = writer;
    let _ = writer.shutdown().await;
    let handshake = channels.info().handshake.unwrap_or_default();
    say(format!(
        "data ok bytes={bytes} channel=dtls-sctp handshake_ms={} secs={:.3}",
        handshake.as_millis(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Echoes every channel the peer opens, byte for byte, until the session ends.
async fn echo_channels(channels: &DataChannels) -> Result<u64, String> {
    let mut n = 0;
    while let Some(channel) = channels.accept().await {
        n += 1;
        tokio::spawn(async move {
            let (mut reader, mut writer) = tokio::io::split(channel);
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
            let _ = writer.shutdown().await;
        });
    }
    Ok(n)
}

/// Echoes every datagram that is well formed until the session ends (or, over data
/// channels, every channel).
async fn echo(session: &JingleSession) -> Result<u64, String> {
    if let Some(channels) = session.data_channels() {
        return echo_channels(channels).await;
    }
    let conn = session
        .connection()
        .ok_or("the session has no ICE connection")?;
    let mut n = 0;
    while let Some(d) = conn.recv().await {
        let seq = d
            .data
            .get(1..9)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes);
        match seq {
            Some(seq) if d.data == datagram(seq) => {
                conn.send(1, &d.data).await.map_err(|e| format!("{e}"))?;
                n += 1;
            }
            _ => return Err("received a corrupted datagram".into()),
        }
    }
    Ok(n)
}

fn pair_line(session: &JingleSession) -> String {
    match session.selected_pair() {
        Some(p) => format!(
            "local={} {} remote={} {}",
            p.local.kind.as_str(),
            p.local.address,
            p.remote.kind.as_str(),
            p.remote.address
        ),
        None => "local=none remote=none".into(),
    }
}

fn jingle_iq(to: &FullJid, action: &str, sid: &str, transport: Option<Element>) -> Element {
    let mut j = Element::bare("jingle", NS_JINGLE);
    set_attr(&mut j, "action", action.to_owned());
    set_attr(&mut j, "sid", sid.to_owned());
    let mut c = Element::bare("content", NS_JINGLE);
    set_attr(&mut c, "creator", "initiator");
    set_attr(&mut c, "name", "data");
    if let Some(t) = transport {
        c.append_child(t);
    }
    j.append_child(c);
    iq(IqType::Set, "", to.as_str(), Some(j))
}

/// What an iq request got: `result`, or the error's conditions.
fn outcome(r: Result<Element, XmppError>) -> String {
    match r {
        Ok(_) => "result".into(),
        Err(XmppError::IqError { stanza, .. }) => match StanzaError::from_stanza(&stanza) {
            Some(e) => format!(
                "{} {}",
                e.condition_name,
                e.jingle.map_or("-", |j| j.as_str())
            ),
            None => "error".into(),
        },
        Err(e) => format!("failed {e}"),
    }
}

/// Sends what a broken or hostile peer would, and reports the answers.
async fn adversarial(
    o: &Options,
    client: &JingleClient,
    session: &JingleSession,
) -> Result<(), String> {
    let peer = &session.key().peer;
    let sid = &session.key().sid;
    // A transport whose candidate has an impossible port.
    let garbage: Element = "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'><candidate \
        component='1' foundation='1' generation='0' id='g' ip='192.0.2.1' network='0' \
        port='70000' priority='1' protocol='udp' type='host'/></transport>"
        .parse()
        .map_err(|e| format!("{e}"))?;
    let r = client
        .sender()
        .iq(jingle_iq(peer, "transport-info", sid, Some(garbage)))
        .await;
    say(format!("check garbage {}", outcome(r)));
    let r = client
        .sender()
        .iq(jingle_iq(peer, "transport-info", "no-such-session", None))
        .await;
    say(format!("check unknown-sid {}", outcome(r)));
    // The same sid from another full JID (another resource of our account).
    let bare = client.jid().to_bare();
    let third = format!("{bare}/intruder");
    let conn = XmppConnection::connect(xmpp_config(o, &third)?)
        .await
        .map_err(|e| format!("intruder login: {e}"))?;
    let fake = IceUdpTransport::new(
        &jingle_ice::ice::Credentials::new("evil", "evilevilevilevilevilevil"),
        vec![],
    );
    let r = conn
        .iq(jingle_iq(
            peer,
            "transport-info",
            sid,
            Some(fake.to_element()),
        ))
        .await;
    say(format!("check third-jid {}", outcome(r)));
    let _ = conn.close().await;
    Ok(())
}

async fn run(o: Options) -> Result<(), String> {
    let mut config = JingleClientConfig::new(xmpp_config(&o, &o.jid)?);
    config.runtime.extra_features.push(APP_NS.to_owned());
    config.runtime.session.applications = vec![APP_NS.to_owned()];
    let client = JingleClient::connect(config)
        .await
        .map_err(|e| format!("login: {e}"))?;
    say(format!("jid {}", client.jid()));
    let s = client.discovered_services();
    say(format!(
        "services stun={} turn={} none_offered={} problems={}",
        s.servers.stun.len(),
        s.servers.turn.len(),
        s.none_offered,
        s.problems.len()
    ));
    let timeout = Duration::from_secs(o.timeout);
    let description = Element::bare("description", APP_NS);
    match &o.connect {
        Some(peer) => {
            let peer = if peer == "-" {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| format!("stdin: {e}"))?;
                line.trim().to_owned()
            } else {
                peer.clone()
            };
            let peer = FullJid::new(&peer).map_err(|e| format!("peer JID: {e}"))?;
            let supports = client
                .peer_supports(&peer)
                .await
                .map_err(|e| format!("disco: {e}"))?;
            say(format!("supports {supports}"));
            let session = tokio::time::timeout(timeout, client.open(peer, description))
                .await
                .map_err(|_| "timed out opening the session".to_owned())?
                .map_err(|e| format!("session: {e}"))?;
            say(format!(
                "established sid={} ms={} stanzas={} {}",
                session.key().sid,
                session.established_in().as_millis(),
                session.stanzas_sent(),
                pair_line(&session)
            ));
            if o.echo {
                return serve(&o, client, session, timeout).await;
            }
            exchange(&session, o.bytes).await?;
            if o.adversarial {
                adversarial(&o, &client, &session).await?;
                // The session must be undisturbed.
                exchange(&session, 16 * CHUNK).await?;
            }
            if let Some(secs) = o.wait_end {
                let started = Instant::now();
                let reason = tokio::time::timeout(Duration::from_secs(secs), session.closed())
                    .await
                    .map_err(|_| "the session did not end".to_owned())?;
                say(format!(
                    "ended {} after_ms={}",
                    reason.condition.as_str(),
                    started.elapsed().as_millis()
                ));
            } else {
                session.end(Reason::new(ReasonCondition::Success));
                say("ended success");
            }
        }
        None => {
            let offer = tokio::time::timeout(timeout, client.next_incoming())
                .await
                .map_err(|_| "no offer came".to_owned())?
                .ok_or("the extension closed")?;
            let session = tokio::time::timeout(timeout, offer.accept(description))
                .await
                .map_err(|_| "timed out accepting".to_owned())?
                .map_err(|e| format!("accept: {e}"))?;
            say(format!(
                "established sid={} ms={} stanzas={} {}",
                session.key().sid,
                session.established_in().as_millis(),
                session.stanzas_sent(),
                pair_line(&session)
            ));
            return serve(&o, client, session, timeout).await;
        }
    }
    client.close().await;
    Ok(())
}

/// The echoing side: echoes datagrams until the peer ends the session, or logs off abruptly
/// after `--log-off-after` seconds.
async fn serve(
    o: &Options,
    client: JingleClient,
    session: JingleSession,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(secs) = o.log_off_after {
        // Echo until it is time to leave.
        tokio::select! {
            r = echo(&session) => { r?; }
            _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
        }
        // Leave without a session-terminate: the peer must notice the presence.
        client.abort();
        say("logged-off");
        tokio::time::sleep(Duration::from_secs(1)).await;
        return Ok(());
    }
    let echoed = tokio::select! {
        r = echo(&session) => r?,
        _ = tokio::time::sleep(timeout) => return Err("the session did not end".into()),
        reason = session.closed() => {
            say(format!("ended {}", reason.condition.as_str()));
            client.close().await;
            return Ok(());
        }
    };
    let reason = session.closed().await;
    say(format!(
        "ended {} echoed={echoed}",
        reason.condition.as_str()
    ));
    client.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("jingle_peer: {e}");
            return ExitCode::from(2);
        }
    };
    match run(o).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jingle_peer: {e}");
            ExitCode::FAILURE
        }
    }
}
