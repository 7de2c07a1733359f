//! Receives files sent peer-to-peer (XEP-0234 over a WebRTC data channel on an ICE path): logs
//! in, accepts offers from the allowed senders into a directory (safe names, size limit, hash
//! verified, nothing under the final name unless complete), declines the others, shows progress
//! and prints the transport, the selected pair, the time to connect, the throughput and the
//! verified hash of each file. Receives one file and exits, or with `--serve` forever. A failed
//! transfer prints `transfer from JID failed: ...` (and `ended-by-peer CONDITION` when the
//! sender ended the session). SIGINT or SIGTERM cancels a transfer under way (the sender gets
//! `<cancel/>`, the temporary file is removed) and exits with 128 + the signal's number after
//! `cancelled SIGNAL`. The last line is the process's peak memory (`peak-rss BYTES`).
//!
//! ```text
//! recv_file --jid bob@example.test --password PW [--server HOST:PORT] [--ca ca.pem] \
//!           --dir DIR [--from alice@example.test]... [--max-size BYTES] [--overwrite] [--serve]
//! ```

#[path = "bot/mod.rs"]
mod bot;

use std::path::PathBuf;
use std::process::ExitCode;

use bot::Failure;

use clap::Parser;
use jid::BareJid;
use jingle_ice::apps::file_sink::SinkConfig;
use jingle_ice::apps::file_transfer::IncomingFile;

/// Receive files peer-to-peer over Jingle.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    login: bot::Login,
    /// Where files are stored (must exist).
    #[arg(long)]
    dir: PathBuf,
    /// Accept only from these accounts (bare JIDs); without it, from anyone.
    #[arg(long)]
    from: Vec<String>,
    /// Largest file accepted, in bytes.
    #[arg(long, default_value_t = 16 << 30)]
    max_size: u64,
    /// Replace an existing file of the same name.
    #[arg(long)]
    overwrite: bool,
    /// Keep receiving; without it, exit after the first file.
    #[arg(long)]
    serve: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = run(args).await;
    bot::finish("recv_file", outcome)
}

async fn run(args: Args) -> Result<(), Failure> {
    let mut interrupt = bot::Interrupt::new()?;
    if !args.dir.is_dir() {
        return Err(format!("--dir {}: not a directory", args.dir.display()).into());
    }
    let allowed: Vec<BareJid> = args
        .from
        .iter()
        .map(|j| BareJid::new(j).map_err(|e| format!("--from {j}: {e}")))
        .collect::<Result<_, _>>()?;
    let client = tokio::select! {
        c = bot::login(&args.login) => c?,
        s = interrupt.wait() => return Err(Failure::Cancelled(s)),
    };
    bot::say(format!("jid {}", client.jid()));
    bot::say("ready");
    let sink = SinkConfig {
        dir: args.dir.clone(),
        overwrite: args.overwrite,
        max_size: args.max_size,
    };
    let mut failures = 0u32;
    loop {
        let incoming = tokio::select! {
            i = client.next_incoming() => i,
            s = interrupt.wait() => {
                client.close().await;
                return Err(Failure::Cancelled(s));
            }
        };
        let Some(incoming) = incoming else {
            return Err(format!(
                "disconnected: {}",
                client.disconnect_reason().unwrap_or_default()
            )
            .into());
        };
        let peer = incoming.key().peer.clone();
        let file = match IncomingFile::from_session(incoming) {
            Ok(f) => f,
            Err(e) => {
                bot::say(format!("refused an offer from {peer}: {e}"));
                continue;
            }
        };
        if !allowed.is_empty() && !allowed.contains(&peer.to_bare()) {
            bot::say(format!("declined an offer from {peer}: not allowed"));
            file.decline();
            continue;
        }
        bot::say(format!(
            "offer from {peer}: {:?}, {} bytes",
            file.offer().name.as_deref().unwrap_or(""),
            file.size()
        ));
        let (on_progress, bar) = bot::progress("receiving", file.size());
        // Dropping the transfer's future on a signal ends the session with <cancel/> and
        // removes the temporary file; close() then sends the terminate before logging off.
        let result = tokio::select! {
            r = file.accept(sink.clone(), Some(on_progress)) => r,
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
        match result {
            Ok(report) => bot::report(&report),
            Err(e) => {
                failures += 1;
                let e = bot::transfer_failed(&e);
                bot::say(format!("transfer from {peer} failed: {e}"));
            }
        }
        if !args.serve {
            client.close().await;
            return if failures == 0 {
                Ok(())
            } else {
                Err("the transfer failed".to_owned().into())
            };
        }
    }
}
