//! A raw XEP-0234 peer for the lab: it moves a file's bytes over the same kind of session as
//! the `send_file` and `recv_file` bots (a file offer, a WebRTC data channel on an ICE path),
//! but without a file on either end. Two uses:
//!
//! - A dishonest sender for the fault tests: it offers `--announce` bytes (with the SHA-256 of
//!   what it really sends) and writes `--send` bytes, more or fewer, as a buggy or hostile
//!   client would. A receiver must end the session with `<media-error/>` (XEP-0234 §8.1) and
//!   store nothing. The real `send_file` cannot do this: it offers exactly the file it reads.
//! - The bare channel's throughput, to compare the bots with in the same lab: an honest sender
//!   (`--send` equal to `--announce`) against `--receive`, which reads the bytes and drops them.
//!
//! ```text
//! raw_file_peer --jid alice@example.test --password PW [--server HOST:PORT] [--ca ca.pem] \
//!               --to bob@example.test/res --announce BYTES --send BYTES [--name NAME]
//! raw_file_peer --jid bob@example.test ... --receive
//! ```
//!
//! Output, one fact per line: `jid`; the sender `sent N bytes in S s` (written and acknowledged
//! by the peer's SCTP, or handed to the channel when the session ended first), then `ended-by-peer CONDITION` when the receiver
//! ended the session, or `ended success ...` when it did not within the wait (then this side
//! ends it); the receiver `received N bytes in S s`. Exits 0 when the session ended, whatever
//! the reason; non-zero on a failure to run at all.

#[path = "bot/mod.rs"]
#[allow(dead_code)] // the parts of the file bots' module this tool does not use
mod bot;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use jid::FullJid;
use jingle_ice::apps::file_transfer::{CHANNEL_LABEL, CHANNEL_PROTOCOL};
use jingle_ice::apps::{File, FileDescription, Hash};
use jingle_ice::channel::ChannelOptions;
use jingle_ice::jingle::{Reason, ReasonCondition};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send or receive a file's bytes without a file.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    login: bot::Login,
    /// Receive one offer and drop its bytes, instead of sending.
    #[arg(long, conflicts_with_all = ["to", "announce", "send"])]
    receive: bool,
    /// The receiver's full JID.
    #[arg(long, required_unless_present = "receive")]
    to: Option<String>,
    /// The size to announce in the offer.
    #[arg(long, required_unless_present = "receive")]
    announce: Option<u64>,
    /// The bytes to send on the channel.
    #[arg(long, required_unless_present = "receive")]
    send: Option<u64>,
    /// The name to offer.
    #[arg(long, default_value = "lie.bin")]
    name: String,
    /// How long to wait for the receiver to end the session after the last byte.
    #[arg(long, default_value_t = 30)]
    wait: u64,
}

/// Bytes generated and written at a time.
const BLOCK: usize = 256 * 1024;

/// The block the content repeats: pseudo-random, made once so that producing the bytes costs
/// next to nothing next to the channel (this tool also measures the bare channel).
fn pattern() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..BLOCK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The SHA-256 of the `len` bytes this tool sends.
fn content_hash(block: &[u8], len: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from(len - done)
            .unwrap_or(block.len())
            .min(block.len());
        h.update(&block[..n]);
        done += n as u64;
    }
    h.finalize().into()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raw_file_peer: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let client = bot::login(&args.login).await?;
    bot::say(format!("jid {}", client.jid()));
    let result = match (&args.to, args.announce, args.send) {
        (Some(to), Some(announce), Some(send)) => {
            let to = FullJid::new(to).map_err(|e| format!("--to: {e}"))?;
            send_raw(&client, to, &args.name, announce, send, args.wait).await
        }
        _ => receive_raw(&client).await,
    };
    client.close().await;
    result
}

/// Offers `announce` bytes and writes `send` on the channel.
async fn send_raw(
    client: &jingle_ice::xmpp::JingleClient,
    to: FullJid,
    name: &str,
    announce: u64,
    send: u64,
    wait: u64,
) -> Result<(), String> {
    let block = pattern();
    let offer = File {
        name: Some(name.to_owned()),
        size: Some(announce),
        hashes: vec![Hash::sha256(content_hash(&block, send))],
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
    // Bytes handed to the channel so far, readable when the session ends under the writer.
    let sent = std::cell::Cell::new(0u64);
    let write = async {
        while sent.get() < send {
            let n = usize::try_from(send - sent.get())
                .unwrap_or(BLOCK)
                .min(BLOCK);
            if channel.write_all(&block[..n]).await.is_err() {
                return;
            }
            sent.set(sent.get() + n as u64);
        }
        let _ = channel.flush().await;
        // Fewer bytes than announced: closing the channel is how the receiver learns no more
        // will come.
        let _ = channel.shutdown().await;
    };
    let started = Instant::now();
    let say_sent = || {
        bot::say(format!(
            "sent {} bytes in {:.3} s",
            sent.get(),
            started.elapsed().as_secs_f64()
        ))
    };
    let ended = tokio::select! {
        () = write => {
            say_sent();
            tokio::time::timeout(Duration::from_secs(wait), session.closed()).await.ok()
        }
        // The receiver may end the session (having read all it wanted) before the last
        // acknowledgement reaches us.
        reason = session.closed() => {
            say_sent();
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
    Ok(())
}

/// Accepts the first offer and reads the announced bytes from the peer's channel, dropping
/// them; then ends the session with `<success/>`.
async fn receive_raw(client: &jingle_ice::xmpp::JingleClient) -> Result<(), String> {
    bot::say("ready");
    let incoming = client
        .next_incoming()
        .await
        .ok_or("disconnected before an offer came")?;
    let description = incoming
        .description()
        .cloned()
        .ok_or("the offer has no description")?;
    let size = FileDescription::from_element(&description)
        .map_err(|e| format!("offer: {e}"))?
        .file
        .size
        .ok_or("the offer has no size")?;
    let session = incoming
        .accept(description)
        .await
        .map_err(|e| format!("accept: {e}"))?;
    let channels = session
        .data_channels()
        .ok_or("the session has no data channel")?;
    // Each side opens its own channel (as the bots do); ours stays idle.
    let _ours = channels.open(ChannelOptions::reliable(CHANNEL_LABEL, CHANNEL_PROTOCOL));
    let mut theirs = tokio::time::timeout(Duration::from_secs(30), channels.accept())
        .await
        .ok()
        .flatten()
        .ok_or("the peer opened no channel")?;
    let started = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < size {
        let want = usize::try_from(size - got)
            .unwrap_or(buf.len())
            .min(buf.len());
        let n = theirs
            .read(&mut buf[..want])
            .await
            .map_err(|e| format!("channel: {e}"))?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    bot::say(format!(
        "received {got} bytes in {:.3} s",
        started.elapsed().as_secs_f64()
    ));
    session.end(Reason::new(if got == size {
        ReasonCondition::Success
    } else {
        ReasonCondition::MediaError
    }));
    Ok(())
}
