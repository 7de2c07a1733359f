//! WebRTC data channels over an [`IceConnection`]: the connection's own driver task runs the
//! sans-IO [`Association`] (DTLS + SCTP + DCEP) beside the ICE agent, one task for both (see
//! [`Layer`]); its datagrams leave through the agent's transmit queue. Each [`DataChannel`] is a
//! handle that reads and writes through the association and is woken by that task.
//!
//! Backpressure goes all the way through: a [`DataChannel`] refuses to queue more than the
//! association's per-channel send buffer (the writer waits until the peer acknowledges), and
//! messages stay inside SCTP until the application reads them, so a slow reader shrinks the
//! SCTP receive window (RFC 9260 §6.2) and slows the peer's writer.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch, Notify};

use super::driver::Layer;
use crate::channel::{
    Association, AssociationConfig, AssociationStats, Certificate, ChannelError, ChannelEvent,
    ChannelId, ChannelMessage, ChannelOptions, DtlsRole, RemoteParameters, DTLS_FIRST_BYTES,
};
use crate::ice::ConnectionState;
use crate::net::IceConnection;

/// The ICE component data channels use (a single-component stream, RFC 8842 §4 bundle).
const COMPONENT: u16 = 1;
/// Bound on [`DataChannels::close`] waiting for the association's graceful end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of [`DataChannels`].
#[derive(Debug, Clone)]
pub struct DataChannelsConfig {
    /// The association's settings (MTU, message size, windows, buffers).
    pub association: AssociationConfig,
    /// How long ICE, then DTLS and SCTP, may take before [`DataChannels::connect`] gives up.
    pub connect_timeout: Duration,
    /// Channels the peer opened that wait for [`DataChannels::accept`]; more are refused.
    pub accept_queue: usize,
    /// Largest message a [`DataChannel`] byte stream writes at once (also bounded by the
    /// peer's `max-message-size`).
    pub stream_chunk: usize,
}

impl Default for DataChannelsConfig {
    fn default() -> Self {
        DataChannelsConfig {
            association: AssociationConfig::default(),
            connect_timeout: Duration::from_secs(30),
            accept_queue: 64,
            stream_chunk: 16 * 1024,
        }
    }
}

/// What we know about the connection, published by the task.
#[derive(Debug, Clone, Default)]
pub struct DataChannelsInfo {
    /// Time from ICE connected to the association established (DTLS + SCTP handshakes).
    pub handshake: Option<Duration>,
    /// Counters of the association.
    pub stats: AssociationStats,
}

#[derive(Default)]
struct Wakers {
    readers: HashMap<ChannelId, Waker>,
    /// Writers waiting for room: (waker, bytes they need queued; 0 = until all acknowledged).
    writers: HashMap<ChannelId, (Waker, usize)>,
}

impl Wakers {
    /// Wakes every waiting reader and writer (the association has ended).
    fn wake_all(&mut self) {
        for (_, w) in self.readers.drain() {
            w.wake();
        }
        for (_, (w, _)) in self.writers.drain() {
            w.wake();
        }
    }
}

struct Shared {
    assoc: Mutex<Association>,
    wakers: Mutex<Wakers>,
    /// Wakes the driver task after a handle used the association.
    kick: Arc<Notify>,
    chunk: usize,
    send_buffer: usize,
    info: Mutex<DataChannelsInfo>,
    closed: watch::Sender<Option<ChannelError>>,
}

impl Shared {
    fn assoc(&self) -> MutexGuard<'_, Association> {
        self.assoc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn wakers(&self) -> MutexGuard<'_, Wakers> {
        self.wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The data channels of one ICE connection: open channels, accept the peer's, close.
pub struct DataChannels {
    shared: Arc<Shared>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<DataChannel>>,
    /// The connection whose driver task runs the association (kept alive with it).
    ice: Arc<IceConnection>,
}

impl std::fmt::Debug for DataChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannels").finish_non_exhaustive()
    }
}

impl DataChannels {
    /// Waits for ICE to connect, then runs the DTLS handshake as `role` with our
    /// `certificate`, checks the peer's certificate against `remote.fingerprint`, and sets up
    /// SCTP. Fails with [`ChannelError::FingerprintMismatch`] if the peer is not who it
    /// signalled, and with the matching error if ICE fails or time runs out.
    pub async fn connect(
        ice: Arc<IceConnection>,
        certificate: &Certificate,
        role: DtlsRole,
        remote: RemoteParameters,
        config: DataChannelsConfig,
    ) -> Result<DataChannels, ChannelError> {
        let deadline = tokio::time::Instant::now() + config.connect_timeout;
        match tokio::time::timeout_at(deadline, ice.wait_connected()).await {
            Err(_) => return Err(ChannelError::HandshakeTimeout),
            Ok(Err(crate::net::Error::Failed)) => return Err(ChannelError::IceFailed),
            Ok(Err(_)) => return Err(ChannelError::Closed),
            Ok(Ok(())) => {}
        }
        let ice_connected = Instant::now();
        let send_buffer = config.association.send_buffer;
        let assoc = Association::new(
            config.association.clone(),
            certificate,
            role,
            remote,
            ice_connected,
        )?;
        let chunk = config
            .stream_chunk
            .min(assoc.remote_max_message_size())
            .min(send_buffer / 2)
            .max(1);
        let (closed, mut closed_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            assoc: Mutex::new(assoc),
            wakers: Mutex::new(Wakers::default()),
            kick: Arc::new(Notify::new()),
            chunk,
            send_buffer,
            info: Mutex::new(DataChannelsInfo::default()),
            closed,
        });
        let (incoming_tx, incoming_rx) = mpsc::channel(config.accept_queue.max(1));
        let (connected_tx, mut connected_rx) = watch::channel(false);
        // What arrived before the association existed (the peer's first flight may have).
        take_queued(&ice, &shared);
        let layer = AssociationLayer {
            shared: shared.clone(),
            incoming: incoming_tx,
            connected: connected_tx,
            ice_connected,
            ice_state: ConnectionState::Connected,
            out: Vec::new(),
        };
        if ice
            .attach(Box::new(layer), Arc::clone(&shared.kick))
            .await
            .is_err()
        {
            return Err(ChannelError::Closed);
        }
        // And what arrived while the driver was being handed the association.
        take_queued(&ice, &shared);
        shared.kick.notify_one();
        let channels = DataChannels {
            shared,
            incoming: tokio::sync::Mutex::new(incoming_rx),
            ice,
        };
        let outcome = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                r = connected_rx.wait_for(|c| *c) => r.map(|_| ()).map_err(|_| {
                    // The layer ended: it published why before.
                    channels.closed_reason().unwrap_or(ChannelError::Closed)
                }),
                r = closed_rx.wait_for(Option::is_some) => Err(r
                    .ok()
                    .and_then(|v| v.clone())
                    .unwrap_or(ChannelError::Closed)),
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(channels),
            Ok(Err(e)) => {
                channels.abort(e.clone());
                Err(e)
            }
            Err(_) => {
                channels.abort(ChannelError::HandshakeTimeout);
                Err(ChannelError::HandshakeTimeout)
            }
        }
    }

    /// Opens a channel (DCEP, RFC 8832): usable at once.
    pub fn open(&self, options: ChannelOptions) -> Result<DataChannel, ChannelError> {
        let id = self.shared.assoc().open_channel(options.clone())?;
        self.shared.kick.notify_one();
        Ok(DataChannel::new(self.shared.clone(), id, options))
    }

    /// The next channel the peer opened; `None` once the association is closed.
    pub async fn accept(&self) -> Option<DataChannel> {
        self.incoming.lock().await.recv().await
    }

    /// Timing and counters.
    pub fn info(&self) -> DataChannelsInfo {
        let mut info = self
            .shared
            .info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        info.stats = self.shared.assoc().stats();
        info
    }

    /// Why the association ended, once it has.
    pub fn closed_reason(&self) -> Option<ChannelError> {
        self.shared.closed.borrow().clone()
    }

    /// Waits until the association ends and says why ([`ChannelError::Closed`] after our
    /// own close).
    pub async fn closed(&self) -> ChannelError {
        let mut rx = self.shared.closed.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(ChannelError::Closed),
            Err(_) => ChannelError::Closed,
        };
        reason
    }

    /// Closes gracefully (queued data is delivered first, then SCTP SHUTDOWN and DTLS
    /// close_notify) and waits until the association has ended (at most a few seconds).
    pub async fn close(&self) {
        self.shared.assoc().close(Instant::now());
        self.shared.kick.notify_one();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.closed()).await;
    }

    /// The ICE connection the channels run on.
    pub fn ice(&self) -> &Arc<IceConnection> {
        &self.ice
    }

    fn abort(&self, reason: ChannelError) {
        self.shared.assoc().abort(reason);
        self.shared.kick.notify_one();
    }
}

impl Drop for DataChannels {
    /// Ends the association at once (its channels fail with [`ChannelError::Closed`]); the
    /// driver task then drops it.
    fn drop(&mut self) {
        if self.shared.closed.borrow().is_none() {
            self.abort(ChannelError::Closed);
        }
    }
}

/// Datagrams already queued on the connection before the association ran in its driver task.
fn take_queued(ice: &IceConnection, shared: &Shared) {
    let now = Instant::now();
    while let Some(d) = ice.try_recv() {
        if d.component == COMPONENT && d.data.first().is_some_and(|b| DTLS_FIRST_BYTES.contains(b))
        {
            shared.assoc().handle_datagram(now, &d.data);
        }
    }
}

/// The association as the ICE driver task runs it ([`Layer`]): datagrams in, timers,
/// datagrams out through the agent, events to the handles.
struct AssociationLayer {
    shared: Arc<Shared>,
    incoming: mpsc::Sender<DataChannel>,
    connected: watch::Sender<bool>,
    ice_connected: Instant,
    /// The ICE state last seen, to act on its changes only.
    ice_state: ConnectionState,
    out: Vec<Vec<u8>>,
}

impl Layer for AssociationLayer {
    fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        // Only DTLS runs on the data-channel component (RFC 7983 §7); the rest is dropped.
        if data.first().is_some_and(|b| DTLS_FIRST_BYTES.contains(b)) {
            self.shared.assoc().handle_datagram(now, data);
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.shared.assoc().poll_timeout()
    }

    fn step(
        &mut self,
        now: Instant,
        state: ConnectionState,
        send: &mut dyn FnMut(Vec<u8>),
    ) -> bool {
        let shared = Arc::clone(&self.shared);
        if state != self.ice_state {
            self.ice_state = state;
            if state == ConnectionState::Closed {
                shared.assoc().abort(ChannelError::Closed);
            } else if state == ConnectionState::Failed {
                // Failed after having connected: consent was lost (RFC 7675 §5.1).
                shared.assoc().abort(ChannelError::ConsentLost);
            }
        }
        let mut ready_readers = Vec::new();
        let mut new_channels = Vec::new();
        let mut finished = None;
        {
            let mut assoc = shared.assoc();
            assoc.handle_timeout(now);
            while let Some(d) = assoc.poll_transmit() {
                self.out.push(d);
            }
            while let Some(event) = assoc.poll_event() {
                match event {
                    ChannelEvent::Connected => {
                        let mut info = shared
                            .info
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        info.handshake = Some(now.saturating_duration_since(self.ice_connected));
                        self.connected.send_replace(true);
                    }
                    ChannelEvent::ChannelOpened { id, options } => new_channels.push((id, options)),
                    ChannelEvent::Readable { id } | ChannelEvent::ChannelClosed { id } => {
                        ready_readers.push(id)
                    }
                    ChannelEvent::ChannelAcked { .. } | ChannelEvent::BufferedAmountLow { .. } => {}
                    ChannelEvent::Closed(reason) => finished = Some(reason),
                }
            }
            // Writers whose data now fits (or, for flush, whose data was all acknowledged).
            let mut wakers = shared.wakers();
            let waiting: Vec<(ChannelId, usize)> = wakers
                .writers
                .iter()
                .map(|(id, (_, need))| (*id, *need))
                .collect();
            for (id, need) in waiting {
                let buffered = assoc.buffered_amount(id);
                let fits = if need == 0 {
                    buffered == 0
                } else {
                    buffered == 0 || buffered + need <= shared.send_buffer
                };
                if fits || finished.is_some() || !assoc.has_channel(id) {
                    if let Some((w, _)) = wakers.writers.remove(&id) {
                        w.wake();
                    }
                }
            }
            for id in ready_readers {
                if let Some(w) = wakers.readers.remove(&id) {
                    w.wake();
                }
            }
            if finished.is_some() {
                wakers.wake_all();
            }
        }
        for (id, options) in new_channels {
            let channel = DataChannel::new(shared.clone(), id, options);
            if self.incoming.try_send(channel).is_err() {
                tracing::warn!(
                    channel = id,
                    "accept queue full: refusing the peer's channel"
                );
                shared.assoc().close_channel(id);
            }
        }
        for d in self.out.drain(..) {
            send(d);
        }
        if let Some(reason) = finished {
            tracing::debug!(%reason, "data-channel association ended");
            shared.closed.send_replace(Some(reason));
            return false;
        }
        true
    }
}

impl Drop for AssociationLayer {
    /// The driver task dropped the layer without its having ended (the task itself ended):
    /// the handles learn it instead of waiting for ever.
    fn drop(&mut self) {
        if self.shared.closed.borrow().is_none() {
            self.shared.assoc().abort(ChannelError::Closed);
            self.shared.closed.send_replace(Some(ChannelError::Closed));
            self.shared.wakers().wake_all();
        }
    }
}

/// One data channel: a byte stream ([`AsyncRead`] + [`AsyncWrite`], written in messages of
/// at most the negotiated size) or a message channel ([`DataChannel::send`] /
/// [`DataChannel::recv`]). Dropping it does not close it; [`AsyncWriteExt::shutdown`]
/// (or [`DataChannel::close`]) does, after the data queued before.
///
/// [`AsyncWriteExt::shutdown`]: tokio::io::AsyncWriteExt::shutdown
pub struct DataChannel {
    shared: Arc<Shared>,
    id: ChannelId,
    options: ChannelOptions,
    /// The rest of a message partly returned by `poll_read`.
    pending: Vec<u8>,
    pending_at: usize,
    closed_locally: bool,
}

impl std::fmt::Debug for DataChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannel")
            .field("id", &self.id)
            .field("label", &self.options.label)
            .field("protocol", &self.options.protocol)
            .finish_non_exhaustive()
    }
}

impl DataChannel {
    fn new(shared: Arc<Shared>, id: ChannelId, options: ChannelOptions) -> Self {
        DataChannel {
            shared,
            id,
            options,
            pending: Vec::new(),
            pending_at: 0,
            closed_locally: false,
        }
    }

    /// The SCTP stream id (RFC 8831 §6.5).
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The label given by whoever opened the channel.
    pub fn label(&self) -> &str {
        &self.options.label
    }

    /// The sub-protocol name.
    pub fn protocol(&self) -> &str {
        &self.options.protocol
    }

    /// The largest message the peer accepts.
    pub fn max_message_size(&self) -> usize {
        self.shared.assoc().remote_max_message_size()
    }

    /// Bytes sent and not yet acknowledged by the peer.
    pub fn buffered_amount(&self) -> usize {
        self.shared.assoc().buffered_amount(self.id)
    }

    /// Sends one message, waiting while the send buffer is full.
    pub async fn send(&self, data: &[u8], binary: bool) -> Result<(), ChannelError> {
        std::future::poll_fn(|cx| self.poll_send(cx, data, binary)).await
    }

    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        data: &[u8],
        binary: bool,
    ) -> Poll<Result<(), ChannelError>> {
        let result = self.shared.assoc().send(self.id, data, binary);
        match result {
            Ok(()) => {
                self.shared.kick.notify_one();
                Poll::Ready(Ok(()))
            }
            Err(ChannelError::SendBufferFull) => {
                self.shared
                    .wakers()
                    .writers
                    .insert(self.id, (cx.waker().clone(), data.len().max(1)));
                // The driver may have made room between our try and the registration.
                if self.shared.assoc().buffered_amount(self.id) == 0 {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// The next message; `None` once the channel or the association is closed.
    pub async fn recv(&self) -> Option<ChannelMessage> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<ChannelMessage>> {
        let mut assoc = self.shared.assoc();
        match assoc.recv(self.id) {
            Ok(Some(m)) => {
                drop(assoc);
                // Reading opened the window: let the driver send the window update.
                self.shared.kick.notify_one();
                Poll::Ready(Some(m))
            }
            Ok(None) if !assoc.has_channel(self.id) || assoc.closed().is_some() => {
                Poll::Ready(None)
            }
            Ok(None) => {
                self.shared
                    .wakers()
                    .readers
                    .insert(self.id, cx.waker().clone());
                Poll::Pending
            }
            Err(_) => Poll::Ready(None),
        }
    }

    /// Why the association ended, if it has (to tell a clean end from a failure after
    /// [`DataChannel::recv`] returned `None`).
    pub fn error(&self) -> Option<ChannelError> {
        self.shared.closed.borrow().clone()
    }

    /// Closes the channel after the data queued before it (RFC 8831 §6.7).
    pub fn close(&mut self) {
        if !self.closed_locally {
            self.closed_locally = true;
            self.shared.assoc().close_channel(self.id);
            self.shared.kick.notify_one();
        }
    }

    fn io_error(&self) -> io::Error {
        let reason = self
            .shared
            .closed
            .borrow()
            .clone()
            .unwrap_or(ChannelError::ChannelClosed(self.id));
        let kind = match reason {
            ChannelError::PeerClosed | ChannelError::ChannelClosed(_) => io::ErrorKind::BrokenPipe,
            ChannelError::HandshakeTimeout => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, reason)
    }
}

impl AsyncRead for DataChannel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending_at >= this.pending.len() {
            match this.poll_recv(cx) {
                Poll::Ready(Some(m)) => {
                    this.pending = m.data;
                    this.pending_at = 0;
                }
                Poll::Ready(None) => {
                    // End of stream after a clean close; an error if the association failed.
                    return match this.shared.closed.borrow().clone() {
                        Some(ChannelError::Closed | ChannelError::PeerClosed) | None => {
                            Poll::Ready(Ok(()))
                        }
                        Some(e) => {
                            Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, e)))
                        }
                    };
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let rest = &this.pending[this.pending_at..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.pending_at += n;
        if this.pending_at >= this.pending.len() {
            this.pending = Vec::new();
            this.pending_at = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for DataChannel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.closed_locally {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                ChannelError::ChannelClosed(self.id),
            )));
        }
        let n = buf.len().min(self.shared.chunk);
        match self.poll_send(cx, &buf[..n], true) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.io_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits until the peer has acknowledged everything written.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let assoc = self.shared.assoc();
        if let Some(e) = assoc.closed() {
            return if matches!(e, ChannelError::Closed) {
                Poll::Ready(Ok(()))
            } else {
                drop(assoc);
                Poll::Ready(Err(self.io_error()))
            };
        }
        let mut assoc = assoc;
        if assoc.buffered_amount(self.id) == 0 || !assoc.has_channel(self.id) {
            return Poll::Ready(Ok(()));
        }
        self.shared
            .wakers()
            .writers
            .insert(self.id, (cx.waker().clone(), 0));
        Poll::Pending
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.close();
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}
