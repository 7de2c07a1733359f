//! Logs in to an XMPP server with [`XmppConnection`] and asks it what the lab tests need to
//! know: the server's disco#info (XEP-0030) and its external services (XEP-0215: STUN and TURN
//! with credentials). It can also ping another entity (XEP-0199) or serve pings.
//!
//! ```text
//! xmpp_probe --jid alice@example.test --password PW [--server IP:PORT] [--ca FILE]
//!            [--no-system-roots] [--ping JID | --serve SECS | --via-tokio-xmpp] [--timeout SECS]
//! ```
//! - Default mode: prints `jid <our full JID>`, `sasl <mechanism> (channel binding flag F)`,
//!   `disco <the disco#info result iq>`, `services <the extdisco result iq>` (one line each,
//!   raw XML), logs off, prints `closed`.
//! - `--ping JID`: sends a XEP-0199 ping to JID and prints `pong <JID> <ms>` when the result
//!   comes back; an error reply or no reply is a failure.
//! - `--serve SECS`: prints `ready <our full JID>`, answers pings (and every other iq get/set
//!   with `<service-unavailable/>`, RFC 6120 §8.4) until stdin closes or SECS pass, then logs
//!   off and prints `served <n>` (the number of pings answered).
//! - `--hostile JID [--depth N]`: sends JID a Jingle `session-initiate` (a file offer) whose
//!   description holds an unknown child nested N levels deep (default 10,000: about 70 KB) and
//!   prints `reply <type> <condition>` (`reply result -` for a result). A receiver that copies
//!   or drops such an element recursively overflows its stack; ours answers
//!   `<policy-violation/>`.
//! - `--via-tokio-xmpp`: logs in through tokio-xmpp's own client and SASL instead, with the
//!   library's `XmppTlsConnector`; prints `jid <our full JID>` once online, logs off, prints
//!   `closed`. tokio-xmpp retries a failed login silently, so a failure shows as no login
//!   within `--timeout`.
//!
//! `--server` skips the SRV lookup; `--ca` trusts that PEM CA for the server certificate in
//! addition to the system roots (only it with `--no-system-roots`). `--timeout` bounds the
//! whole run outside `--serve` (default 30 s). On any failure the process prints
//! `xmpp_probe: FAILED: <why>` on stderr and exits with status 1 (2 for bad arguments).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jingle_ice::xmpp::connection::XmppTlsConnector;
use jingle_ice::xmpp::{XmppConfig, XmppConnection, XmppError};
use minidom::rxml::{Namespace, NcName};
use minidom::Element;

type BoxError = Box<dyn Error + Send + Sync>;

/// The client namespace (RFC 6120 §4.8.2).
const NS_CLIENT: &str = "jabber:client";
/// Service discovery information (XEP-0030 §3).
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// External service discovery (XEP-0215 §2, namespace version 2).
const NS_EXTDISCO: &str = "urn:xmpp:extdisco:2";
/// Jingle (XEP-0166 §7.1), its ICE-UDP transport (XEP-0176 §5) and the file-transfer
/// description (XEP-0234 §5), for the hostile offer.
const NS_JINGLE: &str = "urn:xmpp:jingle:1";
const NS_ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
const NS_FILE_TRANSFER: &str = "urn:xmpp:jingle:apps:file-transfer:5";
/// The namespace of the hostile offer's unknown child.
const NS_HOSTILE: &str = "urn:jingle-ice:test:hostile";
/// Default nesting of `--hostile`: the depth that overflowed a 2 MiB stack.
const DEFAULT_HOSTILE_DEPTH: usize = 10_000;
/// Stack of the runtime's threads: building, sending and dropping the hostile element recurse
/// once per level in minidom (about 0.5 KiB each in a debug build).
const STACK_BYTES: usize = 64 << 20;
/// XMPP ping (XEP-0199 §3).
const NS_PING: &str = "urn:xmpp:ping";
/// Stanza error conditions (RFC 6120 §8.3.3).
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

enum Mode {
    Probe,
    Ping(String),
    Serve(Duration),
    Hostile { to: String, depth: usize },
    TokioXmpp,
}

struct Options {
    config: XmppConfig,
    mode: Mode,
    timeout: Duration,
}

fn parse_args() -> Result<Options, String> {
    let mut jid = None;
    let mut password = None;
    let mut server: Option<SocketAddr> = None;
    let mut ca = None;
    let mut system_roots = true;
    let mut mode = Mode::Probe;
    let mut timeout = Duration::from_secs(30);
    let mut depth = DEFAULT_HOSTILE_DEPTH;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--jid" => jid = Some(value("--jid")?),
            "--password" => password = Some(value("--password")?),
            "--server" => {
                let v = value("--server")?;
                server = Some(v.parse().map_err(|e| format!("--server {v}: {e}"))?);
            }
            "--ca" => ca = Some(PathBuf::from(value("--ca")?)),
            "--no-system-roots" => system_roots = false,
            "--via-tokio-xmpp" => mode = Mode::TokioXmpp,
            "--ping" => mode = Mode::Ping(value("--ping")?),
            "--serve" => {
                let v = value("--serve")?;
                let secs: u64 = v.parse().map_err(|e| format!("--serve {v}: {e}"))?;
                mode = Mode::Serve(Duration::from_secs(secs));
            }
            "--hostile" => {
                mode = Mode::Hostile {
                    to: value("--hostile")?,
                    depth: 0,
                }
            }
            "--depth" => {
                let v = value("--depth")?;
                depth = v.parse().map_err(|e| format!("--depth {v}: {e}"))?;
            }
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: u64 = v.parse().map_err(|e| format!("--timeout {v}: {e}"))?;
                timeout = Duration::from_secs(secs);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Mode::Hostile { depth: d, .. } = &mut mode {
        *d = depth;
    }
    let jid = jid.ok_or("--jid is required")?;
    let jid = jid::Jid::new(&jid).map_err(|e| format!("--jid {jid}: {e}"))?;
    let password = password.ok_or("--password is required")?;
    let mut config = XmppConfig::new(jid, password);
    config.server = server;
    config.ca_file = ca;
    config.system_roots = system_roots;
    Ok(Options {
        config,
        mode,
        timeout,
    })
}

/// Sets an unqualified attribute (names here are literals, always valid NCNames).
fn with_attr(mut el: Element, name: &str, value: &str) -> Result<Element, BoxError> {
    let name = NcName::try_from(name).map_err(|e| format!("attribute {name}: {e}"))?;
    el.set_attr(Namespace::NONE, name, value.to_owned());
    Ok(el)
}

/// `<iq type=.. to=..><payload/></iq>`.
fn iq(kind: &str, to: &str, payload: Element) -> Result<Element, BoxError> {
    let mut el = Element::builder("iq", NS_CLIENT).append(payload).build();
    el = with_attr(el, "type", kind)?;
    with_attr(el, "to", to)
}

fn one_line(el: &Element) -> String {
    String::from(el).replace('\n', " ")
}

async fn probe(conn: &XmppConnection) -> Result<(), BoxError> {
    let domain = conn.jid().domain().as_str().to_owned();
    let info = conn
        .iq(iq("get", &domain, Element::bare("query", NS_DISCO_INFO))?)
        .await
        .map_err(|e| format!("disco#info of {domain}: {e}"))?;
    println!("disco {}", one_line(&info));
    let services = conn
        .iq(iq("get", &domain, Element::bare("services", NS_EXTDISCO))?)
        .await
        .map_err(|e| format!("external services of {domain}: {e}"))?;
    println!("services {}", one_line(&services));
    Ok(())
}

async fn ping(conn: &XmppConnection, to: &str) -> Result<(), BoxError> {
    let started = Instant::now();
    conn.iq(iq("get", to, Element::bare("ping", NS_PING))?)
        .await
        .map_err(|e| format!("ping {to}: {e}"))?;
    println!("pong {to} {}", started.elapsed().as_millis());
    Ok(())
}

/// Sends `to` a file offer whose description nests an unknown child `depth` levels deep, and
/// prints the type and condition of the answer.
async fn hostile(conn: &XmppConnection, to: &str, depth: usize) -> Result<(), BoxError> {
    let mut nested = Element::bare("x", NS_HOSTILE);
    for _ in 1..depth {
        nested = Element::builder("x", NS_HOSTILE).append(nested).build();
    }
    let name = Element::builder("name", NS_FILE_TRANSFER)
        .append("hostile.txt")
        .build();
    let file = Element::builder("file", NS_FILE_TRANSFER)
        .append(name)
        .build();
    let description = Element::builder("description", NS_FILE_TRANSFER)
        .append(file)
        .append(nested)
        .build();
    let transport = with_attr(
        with_attr(Element::bare("transport", NS_ICE_UDP), "ufrag", "hstl")?,
        "pwd",
        "hostilehostilehostile0",
    )?;
    let content = Element::builder("content", NS_JINGLE)
        .append(description)
        .append(transport)
        .build();
    let content = with_attr(with_attr(content, "creator", "initiator")?, "name", "0")?;
    let jingle = Element::builder("jingle", NS_JINGLE)
        .append(content)
        .build();
    let jingle = with_attr(jingle, "action", "session-initiate")?;
    let jingle = with_attr(jingle, "sid", "hostile-depth")?;
    let jingle = with_attr(jingle, "initiator", conn.jid().as_str())?;
    let reply = match conn.iq(iq("set", to, jingle)?).await {
        Ok(_) => "result -".to_owned(),
        Err(XmppError::IqError { condition, .. }) => format!("error {condition}"),
        Err(e) => return Err(format!("the hostile offer to {to}: {e}").into()),
    };
    println!("reply {reply}");
    Ok(())
}

/// The reply to an iq request we received: a result for a ping, `<service-unavailable/>`
/// for anything else (RFC 6120 §8.4).
fn answer(request: &Element) -> Result<Option<(Element, bool)>, BoxError> {
    if request.name() != "iq" || !matches!(request.attr("type"), Some("get" | "set")) {
        return Ok(None);
    }
    let (Some(id), Some(from)) = (request.attr("id"), request.attr("from")) else {
        return Ok(None);
    };
    let is_ping = request.attr("type") == Some("get") && request.has_child("ping", NS_PING);
    let mut reply = Element::builder("iq", NS_CLIENT);
    if !is_ping {
        let condition = Element::bare("service-unavailable", NS_STANZAS);
        let error = with_attr(
            Element::builder("error", NS_CLIENT)
                .append(condition)
                .build(),
            "type",
            "cancel",
        )?;
        reply = reply.append(error);
    }
    let reply = with_attr(
        reply.build(),
        "type",
        if is_ping { "result" } else { "error" },
    )?;
    let reply = with_attr(reply, "id", id)?;
    Ok(Some((with_attr(reply, "to", from)?, is_ping)))
}

async fn serve(conn: &mut XmppConnection, limit: Duration) -> Result<u64, BoxError> {
    println!("ready {}", conn.jid());
    let deadline = tokio::time::Instant::now() + limit;
    // stdin is read on a thread (blocking); its end closes the channel.
    let (stdin_tx, mut stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
        drop(stdin_tx);
    });
    let mut served = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = &mut stdin_closed => break,
            stanza = conn.next_stanza() => {
                let Some(stanza) = stanza else {
                    let why = conn
                        .disconnect_reason()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "unknown".into());
                    return Err(format!("the connection ended: {why}").into());
                };
                if let Some((reply, is_ping)) = answer(&stanza)? {
                    conn.send(reply).await?;
                    if is_ping {
                        served += 1;
                        eprintln!("xmpp_probe: answered a ping from {}", stanza.attr("from").unwrap_or("?"));
                    }
                }
            }
        }
    }
    Ok(served)
}

/// Logs in with tokio-xmpp's client (its own SASL) over [`XmppTlsConnector`], then logs off.
async fn via_tokio_xmpp(config: XmppConfig, timeout: Duration) -> Result<(), BoxError> {
    let connector = XmppTlsConnector::new(
        config.server,
        config.ca_file.as_deref(),
        config.system_roots,
    )?;
    let mut client = tokio_xmpp::Client::new_with_connector(
        config.jid,
        config.password,
        connector,
        tokio_xmpp::xmlstream::Timeouts::default(),
    );
    let online = tokio::time::timeout(timeout, async {
        while let Some(event) = client.next().await {
            if let tokio_xmpp::Event::Online { bound_jid, .. } = event {
                return Some(bound_jid);
            }
        }
        None
    })
    .await
    .map_err(|_| {
        format!(
            "tokio-xmpp did not log in within {timeout:?} (it retries a failed login silently; \
             RUST_LOG=debug shows why)"
        )
    })?;
    let jid = online.ok_or("the tokio-xmpp client ended before it was online")?;
    println!("jid {jid}");
    client.send_end().await?;
    println!("closed");
    Ok(())
}

async fn run(options: Options) -> Result<(), BoxError> {
    let Options {
        config,
        mode,
        timeout,
    } = options;
    if let Mode::TokioXmpp = mode {
        return via_tokio_xmpp(config, timeout).await;
    }
    let mut conn = XmppConnection::connect(config).await?;
    match mode {
        Mode::Probe => {
            println!("jid {}", conn.jid());
            println!("sasl {}", conn.sasl());
            tokio::time::timeout(timeout, probe(&conn))
                .await
                .map_err(|_| "the queries timed out")??;
        }
        Mode::Ping(to) => {
            println!("jid {}", conn.jid());
            tokio::time::timeout(timeout, ping(&conn, &to))
                .await
                .map_err(|_| "the ping timed out")??;
        }
        Mode::Hostile { to, depth } => {
            println!("jid {}", conn.jid());
            tokio::time::timeout(timeout, hostile(&conn, &to, depth))
                .await
                .map_err(|_| "no answer to the hostile offer")??;
        }
        Mode::Serve(limit) => {
            let served = serve(&mut conn, limit).await?;
            println!("served {served}");
        }
        Mode::TokioXmpp => {}
    }
    conn.close().await?;
    println!("closed");
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xmpp_probe: FAILED: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(main_async())
}

async fn main_async() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xmpp_probe: {e}");
            return ExitCode::from(2);
        }
    };
    // The login has its own bound (XmppConfig::connect_timeout); this one covers the rest.
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xmpp_probe: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
