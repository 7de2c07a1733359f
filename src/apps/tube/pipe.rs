//! One tube connection: a TCP stream piped both ways through its own data channel, with the
//! per-connection credit scheme of `xep/tube.md` §4.
//!
//! Why credit: `DataChannels` keeps a message inside SCTP until the channel's reader takes
//! it, and SCTP's receive window is shared by every channel of the association (RFC 9260
//! §6.2). A connection whose TCP consumer is slow would therefore, without more, fill the
//! window and stall all the others. Here each side reads every channel at once into a
//! per-connection queue, and the peer may only have sent as many bytes as we granted (the
//! queue's bound), so the association is always drained and a slow consumer only stops its
//! own connection's sender.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::channel::ChannelMessage;
use crate::net::DataChannel;

/// Credit each side holds on a new channel before any `credit` message (`xep/tube.md` §4.2):
/// lets the first bytes go without waiting for a round trip.
pub const INITIAL_CREDIT: u64 = 64 * 1024;

/// How long a failing side tries to queue its `error` message before closing the channel.
const ERROR_SEND_WAIT: Duration = Duration::from_secs(1);
/// Longest reason text put in an `error` message (`xep/tube.md` §4.1).
const ERROR_TEXT_MAX: usize = 200;

/// A control message of `xep/tube.md` §4.1 (a string message on the connection's channel;
/// binary messages are the connection's bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `credit N`: the sender of this message takes N more bytes (N ≥ 1).
    Credit(u64),
    /// `fin`: no more bytes follow in this direction (TCP half-close).
    Fin,
    /// `error TEXT`: the connection failed on the sender's side; close it abortively.
    Error(String),
}

impl Control {
    /// The message's text.
    pub fn encode(&self) -> String {
        match self {
            Control::Credit(n) => format!("credit {n}"),
            Control::Fin => "fin".into(),
            Control::Error(t) => {
                let t: String = t
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(ERROR_TEXT_MAX)
                    .collect();
                format!("error {t}")
            }
        }
    }

    /// Reads a control message; `None` for one this version does not know (ignored, §4.1).
    pub fn parse(text: &str) -> Option<Control> {
        let (word, rest) = match text.split_once(' ') {
            Some((w, r)) => (w, r),
            None => (text, ""),
        };
        match word {
            "credit" => rest
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Control::Credit),
            "fin" if rest.is_empty() => Some(Control::Fin),
            "error" => Some(Control::Error(rest.chars().take(ERROR_TEXT_MAX).collect())),
            _ => None,
        }
    }
}

/// Counters of a tube, shared by its connections.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections carried so far.
    pub opened: AtomicU64,
    /// Connections open now.
    pub active: AtomicU64,
    /// Connections refused (over the limit, or the service refused).
    pub refused: AtomicU64,
    /// Connections that ended abortively (reset, error, peer error, protocol violation).
    pub failed: AtomicU64,
    /// Bytes read from local TCP connections and sent to the peer.
    pub bytes_sent: AtomicU64,
    /// Bytes received from the peer and written to local TCP connections.
    pub bytes_received: AtomicU64,
}

/// Counts a connection as active while it lives.
pub struct ActiveGuard(pub Arc<Counters>);

impl ActiveGuard {
    /// Counts one more connection.
    pub fn new(counters: Arc<Counters>) -> Self {
        counters.opened.fetch_add(1, Ordering::Relaxed);
        counters.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(counters)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Settings of one connection.
#[derive(Debug, Clone, Copy)]
pub struct PipeConfig {
    /// Bytes we let the peer have in flight towards us on this connection (our receive queue's
    /// bound); at least [`INITIAL_CREDIT`].
    pub window: u64,
    /// Largest data message we send.
    pub chunk: usize,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeEnd {
    /// Both directions finished cleanly.
    Clean,
    /// Something failed; the TCP connection was reset and the peer told.
    Failed(String),
}

/// Pipes the TCP stream `connect` yields and `channel` both ways until both directions end or
/// one fails, or `stop` turns true (the tube ended: a failure for a connection still open).
/// The channel is read from the start, while `connect` is still under way. On failure the TCP
/// connection is reset (so its user sees the failure) and the peer gets an `error` message;
/// the channel is closed in every case.
pub async fn pipe<F>(
    mut channel: DataChannel,
    connect: F,
    config: PipeConfig,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> PipeEnd
where
    F: Future<Output = io::Result<TcpStream>>,
{
    let window = config.window.max(INITIAL_CREDIT);
    let chunk = config.chunk.min(channel.max_message_size()).max(1);
    // What the peer allowed us to send, in total.
    let (peer_credit, peer_credit_rx) = watch::channel(INITIAL_CREDIT);
    // What we allowed the peer to send, in total.
    let granted = AtomicU64::new(INITIAL_CREDIT);
    // The first failure.
    let (failure, failure_rx) = watch::channel(None::<String>);
    let fail = |why: String| {
        failure.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(why);
                true
            } else {
                false
            }
        });
    };
    let (fin_sent, fin_sent_rx) = watch::channel(false);
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let ch = &channel;

    let failed = |rx: &watch::Receiver<Option<String>>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
        }
    };

    // Sends a control message unless the connection fails meanwhile; whether it was queued.
    let control = |c: Control| {
        let failure_rx = failure_rx.clone();
        async move {
            let text = c.encode();
            tokio::select! {
                r = ch.send(text.as_bytes(), false) => r.is_ok(),
                _ = failed(&failure_rx) => false,
            }
        }
    };

    // Channel → queue, control messages.
    let reader = async {
        let mut queue_tx = Some(queue_tx);
        let mut received: u64 = 0;
        let mut fin_sent_rx = fin_sent_rx.clone();
        loop {
            let both_done = queue_tx.is_none() && *fin_sent_rx.borrow();
            if both_done {
                return;
            }
            let m: Option<ChannelMessage> = tokio::select! {
                m = ch.recv() => m,
                _ = failed(&failure_rx) => return,
                _ = fin_sent_rx.changed() => continue,
                _ = stop.wait_for(|s| *s) => {
                    fail("the tube ended".into());
                    return;
                }
            };
            let Some(m) = m else {
                if queue_tx.is_some() {
                    fail(
                        ch.error()
                            .map(|e| format!("the channel ended: {e}"))
                            .unwrap_or_else(|| "the peer closed the connection".into()),
                    );
                }
                return;
            };
            if m.binary {
                let Some(tx) = &queue_tx else {
                    fail("data after fin".into());
                    return;
                };
                received += m.data.len() as u64;
                if received > granted.load(Ordering::Acquire) {
                    fail("the peer sent more than its credit".into());
                    return;
                }
                if m.data.is_empty() {
                    continue;
                }
                let _ = tx.send(m.data);
            } else {
                let text = String::from_utf8_lossy(&m.data);
                match Control::parse(&text) {
                    Some(Control::Credit(n)) => {
                        peer_credit.send_modify(|c| *c = c.saturating_add(n));
                    }
                    Some(Control::Fin) => queue_tx = None,
                    Some(Control::Error(t)) => {
                        fail(format!("the peer's side failed: {t}"));
                        return;
                    }
                    None => tracing::debug!(%text, "unknown tube control message ignored"),
                }
            }
        }
    };

    let mut stream_slot: Option<TcpStream> = None;
    let slot = &mut stream_slot;
    let main = async {
        let stream = tokio::select! {
            s = connect => s,
            _ = failed(&failure_rx) => return,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                fail(format!("connecting to the service: {e}"));
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = slot.insert(stream);
        let (mut rd, mut wr) = stream.split();

        // Queue → TCP, granting credit as bytes leave.
        let writer = async {
            if window > INITIAL_CREDIT {
                granted.fetch_add(window - INITIAL_CREDIT, Ordering::AcqRel);
                if !control(Control::Credit(window - INITIAL_CREDIT)).await {
                    fail("the channel closed".into());
                    return;
                }
            }
            let threshold = (window / 4).max(1);
            let mut pending: u64 = 0;
            loop {
                let data = tokio::select! {
                    d = queue_rx.recv() => d,
                    _ = failed(&failure_rx) => return,
                };
                let Some(data) = data else {
                    // The peer's fin (or the reader ended): half-close towards the client.
                    if failure_rx.borrow().is_none() {
                        let _ = wr.shutdown().await;
                    }
                    return;
                };
                let written = tokio::select! {
                    r = wr.write_all(&data) => r,
                    _ = failed(&failure_rx) => return,
                };
                if let Err(e) = written {
                    fail(format!("writing to the local connection: {e}"));
                    return;
                }
                counters
                    .bytes_received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                pending += data.len() as u64;
                if pending >= threshold {
                    granted.fetch_add(pending, Ordering::AcqRel);
                    let grant = Control::Credit(pending);
                    pending = 0;
                    // After our own fin and the channel's close the grant may not go: harmless.
                    let _ = control(grant).await;
                }
            }
        };

        // TCP → channel, within the peer's credit.
        let sender = async {
            let mut sent: u64 = 0;
            let mut buf = vec![0u8; chunk];
            let mut credit_rx = peer_credit_rx.clone();
            loop {
                let limit = tokio::select! {
                    c = credit_rx.wait_for(|c| *c > sent) => match c {
                        Ok(c) => *c - sent,
                        Err(_) => return,
                    },
                    _ = failed(&failure_rx) => return,
                };
                let n = usize::try_from(limit).unwrap_or(usize::MAX).min(chunk);
                let read = tokio::select! {
                    r = rd.read(&mut buf[..n]) => r,
                    _ = failed(&failure_rx) => return,
                };
                match read {
                    Ok(0) => {
                        if !control(Control::Fin).await {
                            fail("the channel closed".into());
                        }
                        fin_sent.send_replace(true);
                        return;
                    }
                    Ok(n) => {
                        let Some(data) = buf.get(..n) else { return };
                        let r = tokio::select! {
                            r = ch.send(data, true) => r,
                            _ = failed(&failure_rx) => return,
                        };
                        if let Err(e) = r {
                            fail(format!("sending to the peer: {e}"));
                            return;
                        }
                        sent += n as u64;
                        counters.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        fail(format!("reading the local connection: {e}"));
                        return;
                    }
                }
            }
        };
        tokio::join!(writer, sender);
    };
    tokio::join!(reader, main);

    let why = failure_rx.borrow().clone();
    let end = match why {
        None => PipeEnd::Clean,
        Some(why) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            // Tell the peer (best effort: the close below ends the channel anyway).
            if !why.starts_with("the peer")
                && !why.starts_with("the channel")
                && !why.starts_with("the tube")
            {
                let msg = Control::Error(why.clone()).encode();
                let _ = tokio::time::timeout(ERROR_SEND_WAIT, channel.send(msg.as_bytes(), false))
                    .await;
            }
            if let Some(s) = &stream_slot {
                // A reset, not a FIN: the local user must not take a cut stream for a whole one.
                let _ = s.set_zero_linger();
            }
            PipeEnd::Failed(why)
        }
    };
    channel.close();
    drop(stream_slot);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        for c in [
            Control::Credit(1),
            Control::Credit(u64::MAX),
            Control::Fin,
            Control::Error("connection refused".into()),
        ] {
            assert_eq!(Control::parse(&c.encode()), Some(c));
        }
    }

    #[test]
    fn control_messages_refused_or_ignored() {
        for bad in [
            "credit 0",
            "credit -1",
            "credit",
            "credit 1x",
            "fin now",
            "hello",
            "",
        ] {
            assert_eq!(Control::parse(bad), None, "{bad:?}");
        }
        let e = Control::Error("a\nb".repeat(300)).encode();
        assert!(e.len() <= "error ".len() + ERROR_TEXT_MAX);
        assert!(!e.contains('\n'));
    }
}
