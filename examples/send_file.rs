//! Sends a file to an XMPP contact peer-to-peer (XEP-0234 over a WebRTC data channel on an ICE
//! path): logs in, checks the peer supports it, offers the file, sends it with a progress bar
//! (plain lines when not on a terminal) and prints the transport, the selected pair, the time
//! to connect, the throughput and the verified hash. Exits non-zero with a message on failure.
//!
//! ```text
//! send_file --jid alice@example.test --password PW [--server HOST:PORT] [--ca ca.pem] \
//!           --to bob@example.test/res FILE
//! ```

#[path = "bot/mod.rs"]
mod bot;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("send_file: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let to = FullJid::new(&args.to)
        .map_err(|e| format!("--to must be a full JID (account/resource): {e}"))?;
    let size = std::fs::metadata(&args.file)
        .map_err(|e| format!("{}: {e}", args.file.display()))?
        .len();
    let client = bot::login(&args.login).await?;
    bot::say(format!("jid {}", client.jid()));
    if !client
        .peer_supports(&to)
        .await
        .map_err(|e| format!("asking {to} what it supports: {e}"))?
    {
        return Err(format!("{to} does not support Jingle ICE-UDP"));
    }
    let (on_progress, bar) = bot::progress("sending", size);
    let options = SendOptions {
        media_type: args.media_type,
        desc: args.desc,
        on_progress: Some(on_progress),
        ..SendOptions::default()
    };
    let result = tokio::time::timeout(
        Duration::from_secs(args.timeout),
        send_file(client.extension(), to, &args.file, options),
    )
    .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let outcome = match result {
        Ok(Ok(report)) => {
            bot::report(&report);
            Ok(())
        }
        Ok(Err(e)) => Err(format!("transfer failed: {e}")),
        Err(_) => Err(format!("no result within {} s", args.timeout)),
    };
    client.close().await;
    outcome
}
