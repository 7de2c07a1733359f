//! The driver task, one per ICE connection (and so per session): moves datagrams, commands and
//! time between the sockets, the application handle, the sans-IO agent and the layer attached
//! above it (the data-channel association). Every datagram leaves through the agent's transmit
//! queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::shared::{Datagram, SelectedPair, Shared, MAX_STREAM_FAILURES};
use super::tls::{TurnStreamError, TurnStreamFailure, TurnTls};
use crate::ice::{
    Agent, Candidate, Carrier, ConnectionState, Credentials, IceEvent, ReceiveOutcome,
};
use crate::turn::TurnTransport;

/// Largest UDP payload we can receive (65,535 minus the 8-byte UDP header; RFC 768). Larger
/// IPv6 jumbograms (RFC 2675) are not used on the Internet.
const MAX_DATAGRAM: usize = 65_527;
/// Capacity of the queue from the tasks that read streams to TURN servers to the driver.
const STREAM_INBOUND_QUEUE: usize = 512;
/// The component an attached [`Layer`] runs on (a single-component stream, RFC 8842 §4).
const LAYER_COMPONENT: u16 = 1;
/// Received datagrams handled in one turn before transmits and events are flushed. When the
/// driver is behind, the kernel's socket buffer absorbs (or drops) the excess, as UDP does.
const RECEIVE_BATCH: usize = 64;
/// Chunks waiting to be written to the stream to a TURN server (RFC 8656 §3.1); beyond it the
/// agent's retransmissions make up for what is dropped.
const STREAM_QUEUE: usize = 256;
/// Bound on shutting a stream to a TURN server down when it is no longer needed.
const STREAM_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on connecting a stream to a TURN server, TLS handshake included.
const STREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handle asks the driver to do.
pub(crate) enum Command {
    SetRemoteCredentials(Credentials),
    AddRemoteCandidate(Candidate),
    EndOfRemoteCandidates,
    /// Application data for a component, sent through the agent (direct or relayed path).
    Send(u16, Vec<u8>),
    /// A layer the driver runs from now on (see [`Layer`]); answered once it is in place.
    Attach(Attach),
    /// The session's signalling, handed every event from now on (see [`Signalling`]).
    AttachSignalling(Box<dyn Signalling>),
    /// A TURN server to add, or new credentials for one already added.
    AddTurnServer(crate::turn::TurnConfig),
    Restart(oneshot::Sender<Credentials>),
    Close,
}

/// A protocol above ICE that the driver task runs itself, synchronously, on component 1: the
/// data-channel association (DTLS + SCTP). The session's agent and this layer then live in one
/// task: the layer's datagrams leave through the agent's transmit queue
/// ([`Agent::send_owned`](crate::ice::Agent::send_owned)), and what the agent receives for component 1 goes
/// to the layer without a queue in between.
pub(crate) trait Layer: Send {
    /// A datagram the peer sent on component 1.
    fn handle_datagram(&mut self, now: Instant, data: &[u8]);
    /// When the layer next needs [`Layer::step`] without any input.
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// Runs the timers that are due, reacts to the ICE `state`, hands every datagram it wants
    /// sent to `send` and wakes its handles. Returns `false` once the layer has ended (the
    /// driver then drops it).
    fn step(&mut self, now: Instant, state: ConnectionState, send: &mut dyn FnMut(Vec<u8>))
        -> bool;
}

/// The signalling side of a session (the Jingle glue), run by the driver task once attached
/// ([`IceConnection::attach_signalling`](super::IceConnection::attach_signalling)): the
/// session's agent and its signalling then live in one task, and what the agent announces is
/// handed over as it happens, without an event queue.
pub(crate) trait Signalling: Send {
    /// A local candidate to signal (trickle, RFC 8838 §4); candidates already signalled may
    /// come again (every current one on attach, and after a restart).
    fn local_candidate(&mut self, candidate: &Candidate);
    /// The agent restarted (RFC 8445 §9), because the peer did or because the selected pair
    /// was lost: signal these credentials with every one of these candidates.
    fn restarted(&mut self, credentials: &Credentials, candidates: &[Candidate]);
    /// ICE failed (RFC 8445 §8.1.2, or consent lost: RFC 7675 §5.1).
    fn failed(&mut self);
}

/// What the session's signalling hands the driver (see [`Signalling`]).
#[derive(Debug)]
pub(crate) enum Signal {
    /// The peer's credentials and candidates (offer, answer, transport-info); `restart` when
    /// they come with an ICE restart (new credentials, XEP-0176 §5.6).
    Remote {
        credentials: Option<Credentials>,
        candidates: Vec<Candidate>,
        restart: bool,
    },
    /// TURN servers, or new credentials for them (XEP-0215).
    TurnServers(Vec<crate::turn::TurnConfig>),
    /// The session ended.
    Close,
}

/// A layer to attach: the layer, what its handles notify when they used it, and the reply once
/// the driver runs it.
pub(crate) struct Attach {
    pub(crate) layer: Box<dyn Layer>,
    pub(crate) kick: Arc<Notify>,
    pub(crate) attached: oneshot::Sender<()>,
}

impl std::fmt::Debug for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attach").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Command::SetRemoteCredentials(_) => "SetRemoteCredentials",
            Command::AddRemoteCandidate(_) => "AddRemoteCandidate",
            Command::EndOfRemoteCandidates => "EndOfRemoteCandidates",
            Command::Send(..) => "Send",
            Command::Attach(_) => "Attach",
            Command::AttachSignalling(_) => "AttachSignalling",
            Command::AddTurnServer(_) => "AddTurnServer",
            Command::Restart(_) => "Restart",
            Command::Close => "Close",
        };
        f.write_str(name)
    }
}

/// What a TURN stream task reports.
enum StreamInbound {
    Data(SocketAddr, Vec<u8>),
    Closed(SocketAddr),
    /// The stream could not be set up (and so is closed).
    Failed(TurnStreamFailure),
}

/// Everything the driver is built from.
pub(crate) struct Parts {
    pub(crate) agent: Agent,
    pub(crate) components: u16,
    pub(crate) sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// TLS settings when TURN servers over TLS are configured.
    pub(crate) tls: Option<TurnTls>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) signals: mpsc::Receiver<Signal>,
    pub(crate) events: mpsc::Sender<IceEvent>,
    pub(crate) datagrams: mpsc::Sender<Datagram>,
    pub(crate) state: watch::Sender<ConnectionState>,
}

/// The driver task's state.
pub(crate) struct Driver {
    parts: Parts,
    /// The sockets by local address, in a fixed order to poll them.
    sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// Where the next receive batch starts among `sockets` (round robin, so that a busy socket
    /// cannot starve the others).
    next_socket: usize,
    /// The receive buffer, reused for every datagram.
    buf: Box<[u8]>,
    /// What was last published in the shared view, to lock it only on change.
    published_paths: Vec<Option<(SocketAddr, SocketAddr)>>,
    published_selected: Vec<Option<(SocketAddr, SocketAddr)>>,
    /// Writers of the streams to TURN servers over TCP or TLS, by server.
    streams: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    stream_tx: mpsc::Sender<StreamInbound>,
    stream_rx: mpsc::Receiver<StreamInbound>,
    /// The layer run on component 1, once attached.
    layer: Option<(Box<dyn Layer>, Arc<Notify>)>,
    /// The session's signalling, once attached.
    signalling: Option<Box<dyn Signalling>>,
    /// The peer's credentials are known (a later restart from it is a restart).
    remote_known: bool,
    /// We restarted and wait for the peer's new credentials: they answer ours, they do not
    /// start another restart (both sides restarting at once settle on each other's).
    awaiting_answer: bool,
}

impl Driver {
    pub(crate) fn new(parts: Parts) -> Self {
        let (stream_tx, stream_rx) = mpsc::channel(STREAM_INBOUND_QUEUE);
        let sockets = parts
            .sockets
            .iter()
            .map(|(local, socket)| (*local, Arc::clone(socket)))
            .collect();
        let n = usize::from(parts.components);
        Driver {
            parts,
            sockets,
            next_socket: 0,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            published_paths: vec![None; n],
            published_selected: vec![None; n],
            streams: HashMap::new(),
            stream_tx,
            stream_rx,
            layer: None,
            signalling: None,
            remote_known: false,
            awaiting_answer: false,
        }
    }

    /// Runs until the handle is dropped or closed.
    pub(crate) async fn run(mut self) {
        loop {
            self.step_layer();
            self.flush().await;
            let layer_deadline = self.layer.as_mut().and_then(|(l, _)| l.poll_timeout());
            let deadline = match (self.parts.agent.poll_timeout(), layer_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timer = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            let kick = self.layer.as_ref().map(|(_, kick)| Arc::clone(kick));
            let kicked = async move {
                match kick {
                    Some(kick) => kick.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.parts.commands.recv() => match command {
                    None => {
                        tracing::debug!("handle dropped: closing");
                        break;
                    }
                    Some(Command::Close) => {
                        tracing::debug!("closed by the application");
                        break;
                    }
                    Some(command) => self.command(command),
                },
                () = readable(&self.sockets) => self.receive_batch(),
                Some(stream) = self.stream_rx.recv() => self.stream_inbound(stream),
                Some(signal) = self.parts.signals.recv() => {
                    if !self.signal(signal) {
                        tracing::debug!("session ended: closing");
                        break;
                    }
                }
                () = kicked => {}
                () = timer => {}
            }
            // Whatever woke us, timers that are due run now, so a busy socket cannot starve
            // checks and consent.
            let now = Instant::now();
            if self
                .parts
                .agent
                .poll_timeout()
                .is_some_and(|deadline| deadline <= now)
            {
                self.parts.agent.handle_timeout(now);
            }
        }
        self.parts.agent.close();
        self.step_layer();
        self.flush().await;
        // The agent is closed: a layer still attached learns it above and ends here.
        self.layer = None;
        self.deallocate().await;
        self.parts.shared.closed.store(true, Ordering::Release);
        self.parts.state.send_replace(ConnectionState::Closed);
        // The sockets close when the driver is dropped, as this returns.
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        let agent = &mut self.parts.agent;
        match command {
            Command::SetRemoteCredentials(credentials) => {
                tracing::debug!(ufrag = %credentials.ufrag, "remote credentials");
                agent.set_remote_credentials(credentials);
            }
            Command::AddRemoteCandidate(candidate) => {
                tracing::debug!(candidate = %candidate, "remote candidate");
                agent.add_remote_candidate(candidate, now);
            }
            Command::EndOfRemoteCandidates => {
                tracing::debug!("remote end-of-candidates");
                agent.end_of_remote_candidates(now);
            }
            Command::Send(component, data) => {
                if let Err(error) = agent.send_owned(component, data) {
                    tracing::debug!(component, %error, "data not sent");
                }
            }
            Command::AttachSignalling(mut signalling) => {
                // What was announced before it was attached.
                for candidate in agent.local_candidates() {
                    signalling.local_candidate(candidate);
                }
                self.signalling = Some(signalling);
            }
            Command::Attach(attach) => {
                tracing::debug!("layer attached on component 1");
                self.layer = Some((attach.layer, attach.kick));
                let _ = attach.attached.send(());
            }
            Command::AddTurnServer(config) => {
                let tls_known = self
                    .parts
                    .tls
                    .as_ref()
                    .is_some_and(|tls| tls.knows(config.server));
                if config.transport == TurnTransport::Tls && !tls_known {
                    // Its TLS settings are made when the connection is built.
                    tracing::debug!(server = %config.server, "TURN server over TLS unknown to this connection: ignored");
                    return;
                }
                tracing::debug!(server = %config.server, transport = ?config.transport, "TURN server (or its new credentials)");
                agent.add_turn_server(config);
                agent.handle_timeout(now);
            }
            Command::Restart(reply) => {
                agent.restart(now);
                let credentials = agent.local_credentials().clone();
                tracing::info!(ufrag = %credentials.ufrag, "ICE restart");
                self.parts.shared.view().credentials = credentials.clone();
                let _ = reply.send(credentials);
            }
            Command::Close => {}
        }
    }

    /// Hands the session's signalling to the agent; `false` once the session has ended.
    fn signal(&mut self, signal: Signal) -> bool {
        let now = Instant::now();
        match signal {
            Signal::Remote {
                credentials,
                candidates,
                restart,
            } => {
                if restart && self.awaiting_answer {
                    self.awaiting_answer = false;
                } else if restart && self.remote_known {
                    // The peer restarted ICE (RFC 8445 §9): restart ours and signal our new
                    // credentials.
                    tracing::info!("the peer restarted ICE");
                    self.restart_signalled(now);
                }
                if let Some(credentials) = credentials {
                    self.command(Command::SetRemoteCredentials(credentials));
                    self.remote_known = true;
                }
                for candidate in candidates {
                    if candidate.component == 0 || candidate.component > self.parts.components {
                        continue;
                    }
                    self.parts.agent.add_remote_candidate(candidate, now);
                }
                true
            }
            Signal::TurnServers(servers) => {
                for server in servers {
                    self.command(Command::AddTurnServer(server));
                }
                true
            }
            Signal::Close => false,
        }
    }

    /// Restarts the agent (RFC 8445 §9) and has the signalling announce the new credentials
    /// with every local candidate.
    fn restart_signalled(&mut self, now: Instant) {
        let agent = &mut self.parts.agent;
        agent.restart(now);
        let credentials = agent.local_credentials().clone();
        tracing::info!(ufrag = %credentials.ufrag, "ICE restart");
        self.parts.shared.view().credentials = credentials.clone();
        if let Some(signalling) = self.signalling.as_mut() {
            signalling.restarted(&credentials, agent.local_candidates());
        }
    }

    /// Hands what a TURN stream task reports to the agent.
    fn stream_inbound(&mut self, inbound: StreamInbound) {
        let now = Instant::now();
        match inbound {
            StreamInbound::Data(server, data) => {
                self.parts.agent.handle_turn_stream(now, server, &data);
            }
            StreamInbound::Closed(server) => {
                self.streams.remove(&server);
                self.parts.agent.handle_turn_stream_closed(now, server);
            }
            StreamInbound::Failed(failure) => {
                let server = failure.server;
                {
                    let mut view = self.parts.shared.view();
                    let failures = &mut view.turn_stream_failures;
                    if failures.len() >= MAX_STREAM_FAILURES {
                        failures.remove(0);
                    }
                    failures.push(failure);
                }
                self.streams.remove(&server);
                self.parts.agent.handle_turn_stream_closed(now, server);
            }
        }
    }

    /// Receives what the sockets hold, up to [`RECEIVE_BATCH`] datagrams, into the reused
    /// buffer, and hands each to the agent.
    fn receive_batch(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        let sockets = std::mem::take(&mut self.sockets);
        let n = sockets.len();
        let mut taken = 0;
        // Sockets found empty in a row: the batch ends when every one is.
        let mut idle = 0;
        while taken < RECEIVE_BATCH && idle < n {
            let Some((local, socket)) = sockets.get(self.next_socket % n) else {
                break;
            };
            self.next_socket = self.next_socket.wrapping_add(1);
            match socket.try_recv_from(&mut buf) {
                Ok((len, remote)) => {
                    taken += 1;
                    idle = 0;
                    self.receive(*local, remote, buf.get(..len).unwrap_or_default());
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        // Unconnected UDP sockets can report ICMP errors of earlier sends
                        // (Windows does by default); none of them stops the socket.
                        tracing::debug!(%local, error = %e, "receive error");
                    }
                    idle += 1;
                }
            }
        }
        self.sockets = sockets;
        self.buf = buf;
    }

    fn receive(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let received = self
            .parts
            .agent
            .handle_receive(Instant::now(), local, remote, data);
        match received {
            ReceiveOutcome::Stun | ReceiveOutcome::Relayed => {}
            ReceiveOutcome::Dropped => {
                tracing::trace!(from = %remote, to = %local, len = data.len(),
                    "agent dropped a datagram");
            }
            ReceiveOutcome::Data { component } => self.deliver(component, remote, data),
        }
    }

    /// Runs the attached layer's turn: its timers, its datagrams into the agent's transmit
    /// queue; drops it once it has ended.
    fn step_layer(&mut self) {
        let Some((layer, _)) = self.layer.as_mut() else {
            return;
        };
        let agent = &mut self.parts.agent;
        let state = agent.state();
        let mut send = |data: Vec<u8>| {
            if let Err(error) = agent.send_owned(LAYER_COMPONENT, data) {
                tracing::trace!(%error, "layer datagram not sent");
            }
        };
        if !layer.step(Instant::now(), state, &mut send) {
            tracing::debug!("layer ended: detached");
            self.layer = None;
        }
    }

    /// Hands a datagram to the attached layer (component 1), else to the application's queue,
    /// dropping and counting it when that is full.
    fn deliver<D>(&mut self, component: u16, source: SocketAddr, data: D)
    where
        D: AsRef<[u8]> + Into<Vec<u8>>,
    {
        if component == LAYER_COMPONENT {
            if let Some((layer, _)) = self.layer.as_mut() {
                layer.handle_datagram(Instant::now(), data.as_ref());
                return;
            }
        }
        let datagram = Datagram {
            component,
            source,
            data: data.into(),
        };
        let shared = &self.parts.shared;
        let component = datagram.component;
        match self.parts.datagrams.try_send(datagram) {
            Ok(()) => {
                shared.datagrams_received.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                shared.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(component, "receive queue full: datagram dropped");
            }
            // The handle is gone; the command channel tells the loop to end.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Lets the deallocations of TURN allocations go out (RFC 8656 §8), bounded in time.
    async fn deallocate(&mut self) {
        let end = Instant::now() + Duration::from_secs(2);
        while let Some(at) = self.parts.agent.poll_timeout() {
            if at > end {
                break;
            }
            tokio::select! {
                () = readable(&self.sockets) => self.receive_batch(),
                Some(stream) = self.stream_rx.recv() => self.stream_inbound(stream),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {
                    self.parts.agent.handle_timeout(Instant::now());
                }
            }
            self.flush().await;
        }
    }

    /// Queues bytes for the stream (TCP, or TLS when `tls`) to a TURN server, connecting it
    /// first if needed.
    fn send_stream(&mut self, source: SocketAddr, server: SocketAddr, tls: bool, data: Vec<u8>) {
        let writer = self.streams.entry(server).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            let security = if tls {
                Security::Tls(self.parts.tls.clone())
            } else {
                Security::Plain
            };
            tokio::spawn(stream_task(
                source,
                server,
                security,
                rx,
                self.stream_tx.clone(),
            ));
            tx
        });
        if writer.try_send(data).is_err() {
            tracing::debug!(%server, "TURN stream queue full: chunk dropped");
        }
    }

    /// Sends what the agent wants sent, publishes what changed and forwards its events.
    async fn flush(&mut self) {
        while let Some(transmit) = self.parts.agent.poll_transmit() {
            if matches!(transmit.transport, Carrier::Tcp | Carrier::Tls) {
                let tls = transmit.transport == Carrier::Tls;
                self.send_stream(
                    transmit.source,
                    transmit.destination,
                    tls,
                    transmit.contents,
                );
                continue;
            }
            let Some(socket) = self.parts.sockets.get(&transmit.source) else {
                self.parts
                    .shared
                    .transmit_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = %transmit.source, "agent asked to send from an unknown address");
                continue;
            };
            if let Err(e) = socket
                .send_to(&transmit.contents, transmit.destination)
                .await
            {
                self.parts
                    .shared
                    .transmit_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(from = %transmit.source, to = %transmit.destination, error = %e,
                    "send failed");
            }
        }
        while let Some(relayed) = self.parts.agent.poll_relayed_data() {
            self.deliver(relayed.component, relayed.source, relayed.data);
        }
        // Publish first, so that what an event announces (a local candidate, a selected pair)
        // is readable from the handle once the application sees the event.
        self.publish();
        while let Some(event) = self.parts.agent.poll_event() {
            self.event(event);
        }
    }

    fn event(&mut self, event: IceEvent) {
        match &event {
            IceEvent::LocalCandidate(candidate) => {
                tracing::debug!(candidate = %candidate, "local candidate");
            }
            IceEvent::GatheringComplete => tracing::debug!("gathering complete"),
            IceEvent::StateChanged(state) => tracing::info!(?state, "state changed"),
            IceEvent::SelectedPair {
                component,
                local,
                remote,
            } => tracing::info!(component, local = %local, remote = %remote, "selected pair"),
            IceEvent::RoleChanged(role) => {
                tracing::info!(?role, "role changed after a conflict");
                self.parts.shared.view().role = *role;
            }
            IceEvent::RelayFailed {
                server,
                error,
                retry_in,
            } => {
                tracing::warn!(%server, %error, ?retry_in, "TURN allocation failed or lost");
            }
            IceEvent::LocalCandidateRemoved(candidate) => {
                tracing::info!(candidate = %candidate, "local candidate removed");
            }
            IceEvent::SelectedPairLost {
                component,
                local,
                remote,
            } => {
                tracing::warn!(component, local = %local, remote = %remote, "selected pair lost");
            }
        }
        if self.signalling.is_some() {
            match event {
                IceEvent::LocalCandidate(candidate) => {
                    if let Some(signalling) = self.signalling.as_mut() {
                        signalling.local_candidate(&candidate);
                    }
                }
                IceEvent::SelectedPairLost { .. } if !self.awaiting_answer => {
                    // Our relayed candidate of the selected pair is gone (its TURN allocation
                    // was lost): another pair needs an ICE restart (RFC 8445 §8.1.1, §9). The
                    // new allocation's candidate follows by trickle.
                    tracing::info!("selected pair lost: restarting ICE");
                    self.restart_signalled(Instant::now());
                    self.awaiting_answer = true;
                }
                IceEvent::StateChanged(ConnectionState::Failed) => {
                    if let Some(signalling) = self.signalling.as_mut() {
                        signalling.failed();
                    }
                }
                _ => {}
            }
            return;
        }
        if let Err(TrySendError::Full(_)) = self.parts.events.try_send(event) {
            let before = self
                .parts
                .shared
                .events_dropped
                .fetch_add(1, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!("event queue full: events are dropped (and counted) from now on");
            } else {
                tracing::debug!("event queue full: event dropped");
            }
        }
    }

    /// Publishes the send paths, selected pairs, state and counters for the handle.
    fn publish(&mut self) {
        let agent = &self.parts.agent;
        let components = self.parts.components;
        let paths: Vec<_> = (1..=components).map(|c| agent.send_path(c)).collect();
        let selected: Vec<_> = (1..=components)
            .map(|c| agent.selected_pair(c).map(|(l, r)| (l.address, r.address)))
            .collect();
        let paths_changed = paths != self.published_paths;
        let selected_changed = selected != self.published_selected;
        {
            let mut view = self.parts.shared.view();
            if paths_changed {
                view.paths.clone_from(&paths);
            }
            if selected_changed {
                view.selected = (1..=components)
                    .map(|c| {
                        agent.selected_pair(c).map(|(local, remote)| SelectedPair {
                            component: c,
                            local: local.clone(),
                            remote: remote.clone(),
                        })
                    })
                    .collect();
            }
            if view.local_candidates != agent.local_candidates() {
                view.local_candidates = agent.local_candidates().to_vec();
            }
            view.agent_stats.clone_from(agent.stats());
        }
        if paths_changed {
            tracing::debug!(?paths, "send paths changed");
            self.published_paths = paths;
        }
        self.published_selected = selected;
        if selected_changed {
            self.parts.shared.selected_changed.notify_waiters();
        }
        let state = agent.state();
        self.parts.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }
}

/// Whether a stream to a TURN server is plain TCP or TLS (RFC 8656 §3.1).
enum Security {
    Plain,
    /// TLS with these settings (`None`: none were configured, which fails the stream).
    Tls(Option<TurnTls>),
}

/// Connects the stream to a TURN server (bound to the host address of `source`), runs the TLS
/// handshake if asked, writes what the agent queues, and reports what the server sends and
/// when the stream ends or cannot be set up.
async fn stream_task(
    source: SocketAddr,
    server: SocketAddr,
    security: Security,
    rx: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::Sender<StreamInbound>,
) {
    let transport = match security {
        Security::Plain => TurnTransport::Tcp,
        Security::Tls(_) => TurnTransport::Tls,
    };
    let setup = async {
        let tcp = connect_tcp(source, server)
            .await
            .map_err(|e| TurnStreamError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match security {
            Security::Plain => Ok(Connected::Plain(tcp)),
            Security::Tls(None) => Err(TurnStreamError::NotConfigured),
            Security::Tls(Some(tls)) => tls
                .connect(server, tcp)
                .await
                .map(|s| Connected::Tls(Box::new(s))),
        }
    };
    let result = tokio::time::timeout(STREAM_CONNECT_TIMEOUT, setup)
        .await
        .unwrap_or(Err(TurnStreamError::Timeout));
    match result {
        Ok(Connected::Plain(stream)) => pump(stream, server, rx, tx).await,
        Ok(Connected::Tls(stream)) => {
            tracing::debug!(%server, "TLS to the TURN server established");
            pump(*stream, server, rx, tx).await;
        }
        Err(error) => {
            tracing::warn!(%server, ?transport, %error, "no stream to the TURN server");
            let _ = tx
                .send(StreamInbound::Failed(TurnStreamFailure {
                    server,
                    transport,
                    error,
                }))
                .await;
        }
    }
}

/// A stream to a TURN server, set up.
enum Connected {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connects TCP to `server`, from the host address of `source` when it has the same family.
async fn connect_tcp(source: SocketAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if server.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    if source.is_ipv6() == server.is_ipv6() && !source.ip().is_unspecified() {
        socket.bind(SocketAddr::new(source.ip(), 0))?;
    }
    socket.connect(server).await
}

/// Moves bytes between a set-up stream and the driver until either side ends; then shuts the
/// stream down (a TLS close_notify, then FIN).
async fn pump<S>(
    stream: S,
    server: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::Sender<StreamInbound>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, mut write) = tokio::io::split(stream);
    let reader_tx = tx.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) => break,
                Err(e) => {
                    tracing::debug!(%server, error = %e, "TURN stream read failed");
                    break;
                }
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default().to_vec();
                    if reader_tx
                        .send(StreamInbound::Data(server, chunk))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = reader_tx.send(StreamInbound::Closed(server)).await;
    });
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = write.write_all(&chunk).await {
            tracing::debug!(%server, error = %e, "TURN stream write failed");
            break;
        }
    }
    let _ = tokio::time::timeout(STREAM_SHUTDOWN_TIMEOUT, write.shutdown()).await;
    reader.abort();
}

/// Waits until one of `sockets` has a datagram (or an error) to read.
async fn readable(sockets: &[(SocketAddr, Arc<UdpSocket>)]) {
    std::future::poll_fn(|cx| {
        let mut ready = false;
        // Every socket is polled, so that each one's readiness wakes this task.
        for (_, socket) in sockets {
            ready |= socket.poll_recv_ready(cx).is_ready();
        }
        if ready {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
