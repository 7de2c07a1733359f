//! Shares a local TCP service with an XMPP contact, or reaches a contact's shared service, over
//! a peer-to-peer Jingle session (stream tubes, `xep/tube.md`): every TCP connection travels in
//! its own WebRTC data channel on the ICE path, with its own flow control.
//!
//! Who starts: the side that has the service offers it (`share`), like a file sender offers a
//! file; the other side runs `connect` first, waits for the offer, accepts it and listens on a
//! local address. Point any TCP client (a browser, curl, ssh) at that address.
//!
//! ```text
//! tube connect --jid bob@example.test --password PW [--server HOST:PORT] [--ca ca.pem] \
//!              [--listen 127.0.0.1:0] [--allow alice@example.test]... [--connections N]
//! tube share   --jid alice@example.test --password PW [--server HOST:PORT] [--ca ca.pem] \
//!              --service 127.0.0.1:8080 --peer bob@example.test/res [--name http] [--desc TEXT]
//! ```
//!
//! `connect` prints `listening ADDR` once the tube is up (with `--listen ...:0`, the port the
//! system chose). Both print the candidates, the transport and its selected pair, and, when
//! the tube ends, its counters. The tube ends when either side stops; `connect --connections N`
//! ends it after N connections have come and gone. Exits non-zero with a message on failure.

#[allow(dead_code)]
#[path = "bot/mod.rs"]
mod bot;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jid::{BareJid, FullJid};
use jingle_ice::apps::tube::{enable, share, IncomingTube, Tube, TubeConfig, TubeDescription};
use jingle_ice::jingle::{Reason, ReasonCondition};
use jingle_ice::xmpp::JingleClient;

/// Stream tubes over Jingle: share a TCP service, or connect to a peer's.
#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Offer a local TCP service to a peer (who runs `tube connect`).
    Share {
        #[command(flatten)]
        login: bot::Login,
        /// The service: host:port, connected to for each of the peer's connections.
        #[arg(long)]
        service: String,
        /// The peer's full JID (account/resource, as its `tube connect` printed).
        #[arg(long)]
        peer: String,
        /// The service's name shown to the peer.
        #[arg(long, default_value = "tcp")]
        name: String,
        /// A description shown to the peer.
        #[arg(long)]
        desc: Option<String>,
        /// Most connections at once.
        #[arg(long, default_value_t = 64)]
        max_connections: usize,
        /// End the tube after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Wait for a peer's tube offer, accept it and listen locally.
    Connect {
        #[command(flatten)]
        login: bot::Login,
        /// Where to listen (port 0: the system chooses; the address is printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Accept offers only from these accounts (bare JIDs); without it, from anyone.
        #[arg(long)]
        allow: Vec<String>,
        /// Most connections at once.
        #[arg(long, default_value_t = 64)]
        max_connections: usize,
        /// End the tube once this many connections have come and gone.
        #[arg(long)]
        connections: Option<u64>,
        /// End the tube after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Share {
            login,
            service,
            peer,
            name,
            desc,
            max_connections,
            timeout,
        } => run_share(&login, service, peer, name, desc, max_connections, timeout).await,
        Command::Connect {
            login,
            listen,
            allow,
            max_connections,
            connections,
            timeout,
        } => run_connect(&login, listen, allow, max_connections, connections, timeout).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tube: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn login(login: &bot::Login) -> Result<JingleClient, String> {
    let client = bot::login_with(login, |c| enable(&mut c.runtime)).await?;
    bot::say(format!("jid {}", client.jid()));
    Ok(client)
}

async fn run_share(
    login_args: &bot::Login,
    service: String,
    peer: String,
    name: String,
    desc: Option<String>,
    max_connections: usize,
    timeout: Option<u64>,
) -> Result<(), String> {
    let peer = FullJid::new(&peer)
        .map_err(|e| format!("--peer must be a full JID (account/resource): {e}"))?;
    // Check the service answers before bothering the peer.
    tokio::net::TcpStream::connect(service.as_str())
        .await
        .map_err(|e| format!("--service {service}: {e}"))?;
    let client = login(login_args).await?;
    if !client
        .peer_supports(&peer)
        .await
        .map_err(|e| format!("asking {peer} what it supports: {e}"))?
    {
        return Err(format!("{peer} does not support Jingle ICE-UDP"));
    }
    let mut description = TubeDescription::new(name);
    description.desc = desc;
    let config = TubeConfig {
        max_connections,
        ..TubeConfig::default()
    };
    let tube = share(
        client.extension(),
        peer.clone(),
        description,
        service.clone(),
        config,
    )
    .await
    .map_err(|e| format!("offering the tube to {peer}: {e}"))?;
    report_up(&tube);
    bot::say(format!(
        "sharing {} ({service}) with {peer}",
        tube.description().service
    ));
    let outcome = serve(&tube, None, timeout).await;
    drop(tube);
    client.close().await;
    outcome
}

async fn run_connect(
    login_args: &bot::Login,
    listen: SocketAddr,
    allow: Vec<String>,
    max_connections: usize,
    connections: Option<u64>,
    timeout: Option<u64>,
) -> Result<(), String> {
    let allowed: Vec<BareJid> = allow
        .iter()
        .map(|j| BareJid::new(j).map_err(|e| format!("--allow {j}: {e}")))
        .collect::<Result<_, _>>()?;
    // Bind first: a taken address is an error before anything else happens.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let client = login(login_args).await?;
    bot::say("ready");
    let incoming = loop {
        let Some(incoming) = client.next_incoming().await else {
            return Err(format!(
                "disconnected: {}",
                client.disconnect_reason().unwrap_or_default()
            ));
        };
        let peer = incoming.key().peer.clone();
        let tube = match IncomingTube::from_session(incoming) {
            Ok(t) => t,
            Err(e) => {
                bot::say(format!("refused an offer from {peer}: {e}"));
                continue;
            }
        };
        if !allowed.is_empty() && !allowed.contains(&peer.to_bare()) {
            bot::say(format!("declined a tube from {peer}: not allowed"));
            tube.decline();
            continue;
        }
        break tube;
    };
    let peer = incoming.peer().clone();
    let d = incoming.description().clone();
    bot::say(format!(
        "offer from {peer}: service {}{}",
        d.service,
        d.desc.map(|t| format!(" ({t})")).unwrap_or_default()
    ));
    let config = TubeConfig {
        max_connections,
        ..TubeConfig::default()
    };
    let tube = incoming
        .accept(listener, config)
        .await
        .map_err(|e| format!("accepting the tube from {peer}: {e}"))?;
    report_up(&tube);
    if let Some(addr) = tube.local_addr() {
        bot::say(format!("listening {addr}"));
    }
    let outcome = serve(&tube, connections, timeout).await;
    drop(tube);
    client.close().await;
    outcome
}

fn report_up(tube: &Tube) {
    let session = tube.session();
    let candidates: Vec<String> = session
        .connection()
        .map(|conn| conn.local_candidates())
        .unwrap_or_default()
        .iter()
        .map(|c| format!("{} {}", c.kind, c.address))
        .collect();
    bot::say(format!("candidates {}", candidates.join(", ")));
    match tube.selected_pair() {
        Some(p) => bot::say(format!(
            "transport WebRTC data channel over ICE ({} {} -> {} {})",
            p.local.kind, p.local.address, p.remote.kind, p.remote.address
        )),
        None => bot::say("transport WebRTC data channel over ICE"),
    }
    bot::say(format!(
        "connect time {:.0} ms",
        session.established_in().as_secs_f64() * 1e3
    ));
}

/// Runs the tube until it ends, `connections` have come and gone, or `timeout` passes.
async fn serve(tube: &Tube, connections: Option<u64>, timeout: Option<u64>) -> Result<(), String> {
    let enough = async {
        match connections {
            Some(n) => loop {
                let s = tube.stats();
                if s.connections + s.refused >= n && s.active == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
            None => std::future::pending().await,
        }
    };
    let deadline = async {
        match timeout {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    let reason: Reason = tokio::select! {
        r = tube.run() => r,
        _ = enough => {
            tube.close();
            Reason::new(ReasonCondition::Success)
        }
        _ = deadline => {
            tube.close();
            Reason::new(ReasonCondition::Success)
        }
    };
    let s = tube.stats();
    bot::say(format!(
        "connections {}, refused {}, failed {}, sent {} bytes, received {} bytes",
        s.connections, s.refused, s.failed, s.bytes_sent, s.bytes_received
    ));
    bot::say(format!("ended {}", reason.condition.as_str()));
    match reason.condition {
        ReasonCondition::Success | ReasonCondition::Gone => Ok(()),
        _ => Err(format!(
            "the tube ended: {}{}",
            reason.condition.as_str(),
            reason.text.map(|t| format!(" ({t})")).unwrap_or_default()
        )),
    }
}
