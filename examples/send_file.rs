//! Sends a file to an XMPP contact peer-to-peer (XEP-0234 over a WebRTC data channel on an ICE
//! path): logs in, checks the peer supports it, offers the file, sends it with a progress bar
//! (plain lines when not on a terminal) and prints the transport, the selected pair, the time
//! to connect, the throughput and the verified hash. Exits non-zero with a message on failure
//! (`failed ...`, and `ended-by-peer CONDITION` when the receiver ended the session). SIGINT or
//! SIGTERM cancels the transfer (the receiver gets `<cancel/>`) and exits with 128 + the
//! signal's number after `cancelled SIGNAL`. The last line is the process's peak memory
//! (`peak-rss BYTES`).
//!
//! ```text
//! send_file --jid alice@example.test --password PW [--server HOST:PORT] [--ca ca.pem] \
//!           --to bob@example.test/res [--name NAME] FILE
//! ```

#[path = "bot/mod.rs"]
mod bot;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bot::Failure;

use clap::Parser;
use jid::FullJid;
use jingle_ice::apps::file_transfer::{send_file, SendOptions};

/// Send a file peer-to-peer over Jingle.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    login: bot::Login,
    /// The receiver's full JID (account/resource).
    #[arg(long)]
    to: String,
    /// The name to offer instead of the file's own.
    #[arg(long)]
    name: Option<String>,
    /// The media type to announce.
    #[arg(long)]
    media_type: Option<String>,
    /// A description to announce.
    #[arg(long)]
    desc: Option<String>,
    /// Give up if the transfer has not finished after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// The file to send.
    file: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = run(args).await;
    bot::finish("send_file", outcome)
}

async fn run(args: Args) -> Result<(), Failure> {
    let mut interrupt = bot::Interrupt::new()?;
    let to = FullJid::new(&args.to)
        .map_err(|e| format!("--to must be a full JID (account/resource): {e}"))?;
    let size = std::fs::metadata(&args.file)
        .map_err(|e| format!("{}: {e}", args.file.display()))?
        .len();
    let client = tokio::select! {
        c = bot::login(&args.login) => c?,
        s = interrupt.wait() => return Err(Failure::Cancelled(s)),
    };
    bot::say(format!("jid {}", client.jid()));
    let supported = tokio::select! {
        r = client.peer_supports(&to) => r.map_err(|e| format!("asking {to} what it supports: {e}")),
        s = interrupt.wait() => {
            client.close().await;
            return Err(Failure::Cancelled(s));
        }
    };
    match supported {
        Ok(true) => {}
        Ok(false) => {
            client.close().await;
            return Err(format!("{to} does not support Jingle ICE-UDP").into());
        }
        Err(e) => {
            client.close().await;
            return Err(e.into());
        }
    }
    let (on_progress, bar) = bot::progress("sending", size);
    // The library may grow options; the rest keep their defaults.
    #[allow(clippy::needless_update)]
    let options = SendOptions {
        name: args.name,
        media_type: args.media_type,
        desc: args.desc,
        on_progress: Some(on_progress),
        ..SendOptions::default()
    };
    // Dropping the transfer's future (on a signal or the timeout) ends the session with
    // <cancel/>; close() below then sends it before logging off.
    let result = tokio::select! {
        r = tokio::time::timeout(
            Duration::from_secs(args.timeout),
            send_file(client.extension(), to, &args.file, options),
        ) => r,
        s = interrupt.wait() => {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            client.close().await;
            return Err(Failure::Cancelled(s));
        }
    };
    if let Some(bar) = bar {
        bar.finish();
    }
    let outcome = match result {
        Ok(Ok(report)) => {
            bot::report(&report);
            Ok(())
        }
        Ok(Err(e)) => Err(format!("transfer failed: {}", bot::transfer_failed(&e)).into()),
        Err(_) => Err(format!("no result within {} s", args.timeout).into()),
    };
    client.close().await;
    outcome
}
