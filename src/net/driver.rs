//! The driver task: moves datagrams, commands and time between the sockets, the application
//! handle and the sans-IO agent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::connection::{Datagram, SelectedPair, Shared};
use crate::ice::{Agent, Candidate, ConnectionState, Credentials, Event, Received};

/// Largest UDP payload we can receive (65,535 minus the 8-byte UDP header; RFC 768). Larger
/// IPv6 jumbograms (RFC 2675) are not used on the Internet.
const MAX_DATAGRAM: usize = 65_527;
/// Capacity of the queue from the socket reader tasks to the driver. When the driver is
/// behind, readers wait and the kernel's socket buffer absorbs (or drops) the excess, as UDP
/// does.
const INBOUND_QUEUE: usize = 512;
/// Received datagrams handled in one turn before transmits and events are flushed.
const RECEIVE_BATCH: usize = 64;
/// Pause of a socket reader after a receive error, so a persistent error cannot spin a core.
const READ_ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// What the handle asks the driver to do.
#[derive(Debug)]
pub(crate) enum Command {
    SetRemoteCredentials(Credentials),
    AddRemoteCandidate(Candidate),
    EndOfRemoteCandidates,
    Restart(oneshot::Sender<Credentials>),
    Close,
}

/// A datagram a reader task received.
struct Inbound {
    local: SocketAddr,
    remote: SocketAddr,
    data: Vec<u8>,
}

/// Everything the driver is built from.
pub(crate) struct Parts {
    pub(crate) agent: Agent,
    pub(crate) components: u16,
    pub(crate) sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) datagrams: mpsc::Sender<Datagram>,
    pub(crate) state: watch::Sender<ConnectionState>,
}

/// The driver task's state.
pub(crate) struct Driver {
    parts: Parts,
    /// Socket readers; aborted when the driver ends (the set is dropped).
    readers: JoinSet<()>,
    inbound: mpsc::Receiver<Inbound>,
    /// What was last published in the shared view, to lock it only on change.
    published_paths: Vec<Option<(SocketAddr, SocketAddr)>>,
    published_selected: Vec<Option<(SocketAddr, SocketAddr)>>,
}

impl Driver {
    pub(crate) fn new(parts: Parts) -> Self {
        let (tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let mut readers = JoinSet::new();
        for (local, socket) in parts.sockets.iter() {
            readers.spawn(read_loop(Arc::clone(socket), *local, tx.clone()));
        }
        let n = usize::from(parts.components);
        Driver {
            parts,
            readers,
            inbound,
            published_paths: vec![None; n],
            published_selected: vec![None; n],
        }
    }

    /// Runs until the handle is dropped or closed.
    pub(crate) async fn run(mut self) {
        loop {
            self.flush().await;
            let deadline = self.parts.agent.poll_timeout();
            let timer = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
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
                inbound = self.inbound.recv() => match inbound {
                    Some(packet) => {
                        self.receive(packet);
                        for _ in 1..RECEIVE_BATCH {
                            match self.inbound.try_recv() {
                                Ok(packet) => self.receive(packet),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        tracing::error!("every socket reader ended: closing");
                        break;
                    }
                },
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
        self.flush().await;
        self.parts.shared.closed.store(true, Ordering::Release);
        self.parts.shared.view().sockets.clear();
        self.parts.state.send_replace(ConnectionState::Closed);
        // Wait for the readers to be gone, so their sockets are closed when `close` returns.
        self.readers.abort_all();
        while self.readers.join_next().await.is_some() {}
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

    fn receive(&mut self, packet: Inbound) {
        let received = self.parts.agent.handle_receive(
            Instant::now(),
            packet.local,
            packet.remote,
            &packet.data,
        );
        match received {
            Received::Stun => {}
            Received::Dropped => {
                tracing::trace!(from = %packet.remote, to = %packet.local, len = packet.data.len(),
                    "agent dropped a datagram");
            }
            Received::Data { component } => {
                let shared = &self.parts.shared;
                let datagram = Datagram {
                    component,
                    source: packet.remote,
                    data: packet.data,
                };
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
        }
    }

    /// Sends what the agent wants sent, forwards its events and publishes what changed.
    async fn flush(&mut self) {
        while let Some(transmit) = self.parts.agent.poll_transmit() {
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
        while let Some(event) = self.parts.agent.poll_event() {
            self.event(event);
        }
        self.publish();
    }

    fn event(&mut self, event: Event) {
        match &event {
            Event::LocalCandidate(candidate) => {
                tracing::debug!(candidate = %candidate, "local candidate");
            }
            Event::GatheringComplete => tracing::debug!("gathering complete"),
            Event::StateChanged(state) => tracing::info!(?state, "state changed"),
            Event::SelectedPair {
                component,
                local,
                remote,
            } => tracing::info!(component, local = %local, remote = %remote, "selected pair"),
            Event::RoleChanged(role) => {
                tracing::info!(?role, "role changed after a conflict");
                self.parts.shared.view().role = *role;
            }
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
        let state = agent.state();
        self.parts.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }
}

/// Receives on one socket and hands every datagram to the driver.
async fn read_loop(socket: Arc<UdpSocket>, local: SocketAddr, tx: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                let data = buf.get(..n).unwrap_or_default().to_vec();
                if tx
                    .send(Inbound {
                        local,
                        remote,
                        data,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                // Unconnected UDP sockets can report ICMP errors of earlier sends (Windows
                // does by default); none of them stops the socket.
                tracing::debug!(%local, error = %e, "receive error");
                tokio::time::sleep(READ_ERROR_BACKOFF).await;
            }
        }
    }
}
