//! The tokio side of an In-Band Bytestream: [`IbbChannel`], an `AsyncRead + AsyncWrite` over
//! the sans-IO [`IbbStream`] of a Jingle session that fell back to IBB (XEP-0261). The
//! [`super::JingleRuntime`] extension routes the peer's IBB stanzas to it and sends what it emits
//! on the application's XMPP connection.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use minidom::Element;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Notify};

use crate::ibb::{IbbError, IbbStream};

/// How long stanzas wait before another try when the outgoing queue was full.
pub(crate) const RETRY: std::time::Duration = std::time::Duration::from_millis(20);

struct State {
    stream: IbbStream,
    /// Stanzas the stream emitted that did not fit the outgoing queue yet (kept in order).
    backlog: VecDeque<Element>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

/// What the extension and the channel share.
pub(crate) struct IbbShared {
    state: Mutex<State>,
    outgoing: mpsc::Sender<Element>,
    /// Wakes the extension's timer task (new deadlines, a backlog to retry).
    timers: Arc<Notify>,
    /// Wakes tasks waiting for the stream to open.
    changed: Notify,
}

impl IbbShared {
    pub(crate) fn new(
        stream: IbbStream,
        outgoing: mpsc::Sender<Element>,
        timers: Arc<Notify>,
    ) -> Arc<Self> {
        let shared = Arc::new(IbbShared {
            state: Mutex::new(State {
                stream,
                backlog: VecDeque::new(),
                read_waker: None,
                write_waker: None,
            }),
            outgoing,
            timers,
            changed: Notify::new(),
        });
        shared.pump(&mut shared.lock());
        shared
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what the stream emitted, in order, as far as the queue takes it; wakes waiters.
    fn pump(&self, st: &mut State) {
        let now = Instant::now();
        loop {
            let next = match st.backlog.pop_front() {
                Some(el) => el,
                None => match st.stream.poll_transmit(now) {
                    Some(el) => el,
                    None => break,
                },
            };
            if let Err(e) = self.outgoing.try_send(next) {
                match e {
                    mpsc::error::TrySendError::Full(el) => st.backlog.push_front(el),
                    mpsc::error::TrySendError::Closed(_) => st.stream.abort(),
                }
                break;
            }
        }
        if let Some(w) = st.read_waker.take() {
            w.wake();
        }
        if let Some(w) = st.write_waker.take() {
            w.wake();
        }
        self.changed.notify_waiters();
        self.timers.notify_one();
    }

    /// Offers a received iq to the stream; whether it was taken.
    pub(crate) fn handle_iq(&self, stanza: &Element) -> bool {
        let mut st = self.lock();
        let taken = st.stream.handle_iq(stanza, Instant::now());
        if taken {
            self.pump(&mut st);
        }
        taken
    }

    /// When the timer task must call [`IbbShared::handle_timeout`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let st = self.lock();
        let retry = (!st.backlog.is_empty()).then(|| Instant::now() + RETRY);
        match (st.stream.poll_timeout(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the stream's timers and retries the backlog.
    pub(crate) fn handle_timeout(&self, now: Instant) {
        let mut st = self.lock();
        st.stream.handle_timeout(now);
        self.pump(&mut st);
    }

    /// Ends the stream without a word (its session ended).
    pub(crate) fn abort(&self) {
        let mut st = self.lock();
        st.stream.abort();
        self.pump(&mut st);
    }

    /// Waits until the stream is open, or failed.
    pub(crate) async fn opened(&self) -> Result<(), IbbError> {
        loop {
            let notified = self.changed.notified();
            {
                let st = self.lock();
                if st.stream.is_open() {
                    return Ok(());
                }
                if let Some(e) = st.stream.error() {
                    return Err(e.clone());
                }
            }
            notified.await;
        }
    }
}

/// A session's In-Band Bytestream as a byte stream: what a file or tube is written to and read
/// from once a session fell back to IBB. Writes return once the bytes are queued; `flush`
/// waits until the peer has answered every block; `shutdown` sends `<close/>` after that.
/// Clones share the stream.
#[derive(Clone)]
pub struct IbbChannel {
    shared: Arc<IbbShared>,
}

impl std::fmt::Debug for IbbChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IbbChannel")
            .field("stream", &self.shared.lock().stream)
            .finish()
    }
}

impl IbbChannel {
    pub(crate) fn new(shared: Arc<IbbShared>) -> Self {
        IbbChannel { shared }
    }

    /// The negotiated block size (bytes per `<data/>` before base64).
    pub fn block_size(&self) -> u16 {
        self.shared.lock().stream.block_size()
    }

    /// The stream id.
    pub fn sid(&self) -> String {
        self.shared.lock().stream.sid().to_owned()
    }

    /// Bytes sent (answered or in flight) and bytes received, so far.
    pub fn counters(&self) -> (u64, u64) {
        self.shared.lock().stream.counters()
    }
}

fn io_error(e: IbbError) -> io::Error {
    let kind = match e {
        IbbError::Closed => io::ErrorKind::BrokenPipe,
        IbbError::Timeout(_) => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, e)
}

impl AsyncRead for IbbChannel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = self.shared.clone();
        let mut st = shared.lock();
        match st.stream.read(buf.initialize_unfilled()) {
            Ok(Some(n)) => {
                buf.advance(n);
                if n > 0 {
                    // Reading may release held answers.
                    shared.pump(&mut st);
                }
                Poll::Ready(Ok(()))
            }
            Ok(None) => {
                st.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

impl AsyncWrite for IbbChannel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let shared = self.shared.clone();
        let mut st = shared.lock();
        match st.stream.write(data) {
            Ok(0) if !data.is_empty() => {
                st.write_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Ok(n) => {
                shared.pump(&mut st);
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let st = &mut self.shared.lock();
        if let Some(e) = st.stream.error() {
            return Poll::Ready(Err(io_error(e.clone())));
        }
        if st.stream.flushed() {
            return Poll::Ready(Ok(()));
        }
        st.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shared = self.shared.clone();
        let mut st = shared.lock();
        st.stream.close();
        shared.pump(&mut st);
        if st.stream.flushed() || st.stream.error().is_some() {
            return Poll::Ready(Ok(()));
        }
        st.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
