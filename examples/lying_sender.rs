//! A dishonest XEP-0234 sender for the lab's fault tests: it offers a file of `--announce`
//! bytes (with the SHA-256 of what it really sends) and then writes `--send` bytes on its data
//! channel, more or fewer than announced, as a buggy or hostile client would. A receiver must
//! end the session with `<media-error/>` (XEP-0234 §8.1) and store nothing. The real
//! `send_file` cannot do this: it offers exactly the file it reads.
//!
//! ```text
//! lying_sender --jid alice@example.test --password PW [--server HOST:PORT] [--ca ca.pem] \
//!              --to bob@example.test/res --announce BYTES --send BYTES [--name NAME]
//! ```
//!
//! Output, one fact per line: `jid`, `sent N` (bytes written and acknowledged, or as far as it
//! got), then `ended-by-peer CONDITION` when the receiver ended the session, or `ended
//! CONDITION` when it did not within the wait (then ours ends it with that condition). Exits 0
//! when the session ended, whatever the reason; non-zero on a failure to run at all.

#[path = "bot/mod.rs"]
#[allow(dead_code)] // the parts of the file bots' module this tool does not use
mod bot;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jid::FullJid;
use jingle_ice::apps::file_transfer::{CHANNEL_LABEL, CHANNEL_PROTOCOL};
use jingle_ice::apps::{File, FileDescription, Hash};
use jingle_ice::channel::ChannelOptions;
use jingle_ice::jingle::{Reason, ReasonCondition};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Offer one size, send another.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    login: bot::Login,
    /// The receiver's full JID.
    #[arg(long)]
    to: String,
    /// The size to announce in the offer.
    #[arg(long)]
    announce: u64,
    /// The bytes to send on the channel.
    #[arg(long)]
    send: u64,
    /// The name to offer.
    #[arg(long, default_value = "lie.bin")]
    name: String,
    /// How long to wait for the receiver to end the session after the last byte.
    #[arg(long, default_value_t = 30)]
    wait: u64,
}

/// Bytes generated and written at a time.
const BLOCK: usize = 64 * 1024;

/// Block `i` of the content: pseudo-random, the same for the hash and the channel.
fn block(i: u64, buf: &mut [u8]) {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// The SHA-256 of the `len` bytes this tool sends.
fn content_hash(len: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    let mut done = 0u64;
    let mut i = 0;
    while done < len {
        let n = usize::try_from(len - done).unwrap_or(BLOCK).min(BLOCK);
        block(i, &mut buf);
        h.update(&buf[..n]);
        done += n as u64;
        i += 1;
    }
    h.finalize().into()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lying_sender: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let to = FullJid::new(&args.to).map_err(|e| format!("--to: {e}"))?;
    let client = bot::login(&args.login).await?;
    bot::say(format!("jid {}", client.jid()));
    let offer = File {
        name: Some(args.name.clone()),
        size: Some(args.announce),
        hashes: vec![Hash::sha256(content_hash(args.send))],
        ..File::default()
    };
    let session = client
        .extension()
        .connect(to, FileDescription::new(offer).to_element())
        .await
        .map_err(|e| format!("session: {e}"))?;
    let channels = session
        .data_channels()
        .ok_or("the session has no data channel")?;
    let mut channel = channels
        .open(ChannelOptions::reliable(CHANNEL_LABEL, CHANNEL_PROTOCOL))
        .map_err(|e| format!("open channel: {e}"))?;
    let write = async {
        let mut buf = vec![0u8; BLOCK];
        let mut sent = 0u64;
        let mut i = 0;
        while sent < args.send {
            let n = usize::try_from(args.send - sent)
                .unwrap_or(BLOCK)
                .min(BLOCK);
            block(i, &mut buf);
            if channel.write_all(&buf[..n]).await.is_err() {
                return sent;
            }
            sent += n as u64;
            i += 1;
        }
        let _ = channel.flush().await;
        // Fewer bytes than announced: closing the channel is how the receiver learns no more
        // will come.
        let _ = channel.shutdown().await;
        sent
    };
    let ended = tokio::select! {
        sent = write => {
            bot::say(format!("sent {sent}"));
            tokio::time::timeout(Duration::from_secs(args.wait), session.closed()).await.ok()
        }
        reason = session.closed() => {
            bot::say("sent (interrupted by the end of the session)");
            Some(reason)
        }
    };
    match ended {
        Some(r) => bot::say(format!("ended-by-peer {}", r.condition.as_str())),
        None => {
            session.end(Reason::new(ReasonCondition::Success));
            bot::say("ended success (the receiver did not end the session)");
        }
    }
    client.close().await;
    Ok(())
}
