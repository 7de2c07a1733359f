//! The Jingle extension in a plain `tokio_xmpp::Client`: receives the files offered to it
//! (XEP-0234 over WebRTC data channels, or In-Band Bytestreams when there is no path) into a
//! directory. The whole integration is the stanza pump in `main`: every received stanza goes to
//! the extension, every stanza it emits goes to the client, and the client's stream events tell
//! it when the stream is (back) online. The extension does the rest itself: disco#info and caps
//! answers, STUN/TURN from the server (XEP-0215), retries of Jingle requests bounced while the
//! peer is briefly offline, directed presences after a reconnect.
//!
//! Prints `jid FULL-JID` and `ready` once online, `received NAME SIZE sha-256 HEX verified` and
//! `stored PATH` per file, `failed: ...` per failed transfer; exits after `--count` files.
//!
//! ```text
//! tokio_xmpp_client --jid bob@example.test[/resource] --password PW --server IP:5222 \
//!                   [--ca ca.pem] --dir DIR [--count N]
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use jid::FullJid;
use jingle_ice::apps::file_sink::SinkConfig;
use jingle_ice::apps::file_transfer::{self, IncomingFile};
use jingle_ice::xmpp::connection::XmppTlsConnector;
use jingle_ice::xmpp::{JingleRuntime, JingleRuntimeConfig};
use minidom::Element;
use tokio_xmpp::{xmlstream::Timeouts, Client, Event, Stanza};

/// Receive files with the Jingle extension in a plain tokio-xmpp client.
#[derive(Parser, Debug)]
struct Args {
    /// The account (a bare JID gets the resource `tokio-xmpp`).
    #[arg(long)]
    jid: String,
    #[arg(long, env = "JINGLE_ICE_PASSWORD")]
    password: String,
    /// The server's address (IP:port).
    #[arg(long)]
    server: std::net::SocketAddr,
    /// A PEM file of CA certificates to trust besides the system's.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Where files are stored.
    #[arg(long)]
    dir: PathBuf,
    /// Exit after this many files (received or failed); without it, serve forever.
    #[arg(long)]
    count: Option<u32>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let jid = match FullJid::new(&args.jid) {
        Ok(full) => full,
        Err(_) => FullJid::new(&format!("{}/tokio-xmpp", args.jid))?,
    };
    let connector = XmppTlsConnector::new(Some(args.server), args.ca.as_deref(), true)?;
    let mut client =
        Client::new_with_connector(jid.clone(), args.password, connector, Timeouts::default());
    // Our presence, with XEP-0115 caps, goes out once online.
    let mut config = JingleRuntimeConfig {
        presence: true,
        ..JingleRuntimeConfig::default()
    };
    file_transfer::enable(&mut config);
    let ext = Arc::new(JingleRuntime::new(jid, config));
    let mut receiver = tokio::spawn(receive_files(ext.clone(), args.dir, args.count));

    // The stanza pump: all a client author writes. tokio-xmpp reconnects by itself; a new
    // stream (not a XEP-0198 resumption) comes as `Online { resumed: false }`, which the
    // extension also takes as the end of the old one.
    loop {
        tokio::select! {
            event = client.next() => match event {
                Some(Event::Online { bound_jid, resumed: false, .. }) => {
                    if bound_jid != ext.local_jid() {
                        return Err(format!("the server bound {bound_jid}").into());
                    }
                    ext.stream_online();
                    println!("jid {bound_jid}\nready");
                }
                Some(Event::Online { resumed: true, .. }) => {}
                Some(Event::Disconnected(_)) => ext.stream_lost(),
                Some(Event::Stanza(stanza)) => {
                    let stanza = Element::from(stanza);
                    if !ext.handle_stanza(&stanza) {
                        ext.refuse_unhandled(&stanza);
                    }
                }
                None => return Err("the XMPP client stopped".into()),
            },
            Some(out) = ext.next_outgoing() => match Stanza::try_from(out) {
                Ok(stanza) => {
                    client.send_stanza(stanza).await?;
                }
                Err(e) => eprintln!("not a stanza: {e}"),
            },
            done = &mut receiver => {
                // Let the last session-terminate reach the peer, then log off.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                while let Ok(Some(out)) =
                    tokio::time::timeout(std::time::Duration::from_millis(50), ext.next_outgoing()).await
                {
                    if let Ok(stanza) = Stanza::try_from(out) {
                        client.send_stanza(stanza).await?;
                    }
                }
                client.send_end().await?;
                return done?;
            }
        }
    }
}

/// Accepts every offered file into `dir` (safe names, hash verified, nothing under the final
/// name unless complete).
async fn receive_files(
    ext: Arc<JingleRuntime>,
    dir: PathBuf,
    count: Option<u32>,
) -> Result<(), Error> {
    let sink = SinkConfig {
        dir,
        overwrite: false,
        max_size: 16 << 30,
    };
    let mut done = 0;
    while count.is_none_or(|c| done < c) {
        let Some(offer) = ext.next_incoming().await else {
            return Err("the extension closed".into());
        };
        done += 1;
        match IncomingFile::from_session(offer)?
            .accept(sink.clone(), None)
            .await
        {
            Ok(r) => {
                let hash = jingle_ice::hex::encode(&r.sha256);
                let verified = if r.verified { "verified" } else { "unverified" };
                println!("received {} {} sha-256 {hash} {verified}", r.name, r.size);
                if let Some(path) = r.path {
                    println!("stored {}", path.display());
                }
            }
            Err(e) => println!("failed: {e}"),
        }
    }
    Ok(())
}
