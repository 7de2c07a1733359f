//! The application's side of the driver: [`IceConnectionBuilder`] and the [`IceConnection`]
//! handle.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::driver::{self, Command, Driver, Signal, Signalling};
use super::error::Error;
use super::interfaces::{usable_addresses, AddressPolicy, LocalAddress};
use super::shared::{ConnectionStats, Datagram, SelectedPair, Shared, View};
use super::tls::{TrustedRoots, TurnStreamFailure, TurnTls};
use crate::ice::{Agent, AgentConfig, Candidate, ConnectionState, Credentials, IceEvent, Role};

/// Default capacity of the queue of received application datagrams waiting for
/// [`IceConnection::recv`].
pub const DEFAULT_RECEIVE_QUEUE: usize = 1024;
/// Default capacity of the queue of events waiting for [`IceConnection::next_event`].
pub const DEFAULT_EVENT_QUEUE: usize = 256;
/// Capacity of the command queue from the handle to the driver task.
const COMMAND_QUEUE: usize = 64;
/// Capacity of the signal queue from the session's signalling to the driver task: signals
/// come from stanzas, one per `transport-info`, each within the stanza limits.
const SIGNAL_QUEUE: usize = 256;

/// Builds and starts an [`IceConnection`]: which interfaces and ports to use, which STUN
/// servers, the agent's settings and the queue sizes.
#[derive(Debug, Clone)]
pub struct IceConnectionBuilder {
    role: Role,
    config: AgentConfig,
    stun_servers: Vec<SocketAddr>,
    turn_servers: Vec<crate::turn::TurnConfig>,
    trusted_roots: TrustedRoots,
    policy: AddressPolicy,
    explicit: Vec<IpAddr>,
    port_range: Option<(u16, u16)>,
    receive_queue: usize,
    event_queue: usize,
}

impl IceConnectionBuilder {
    fn new(role: Role) -> Self {
        IceConnectionBuilder {
            role,
            config: AgentConfig::default(),
            stun_servers: Vec::new(),
            turn_servers: Vec::new(),
            trusted_roots: TrustedRoots::default(),
            policy: AddressPolicy::default(),
            explicit: Vec::new(),
            port_range: None,
            receive_queue: DEFAULT_RECEIVE_QUEUE,
            event_queue: DEFAULT_EVENT_QUEUE,
        }
    }

    /// The agent's settings (timers, limits, components). Replaces earlier calls to
    /// [`Self::components`].
    pub fn agent_config(mut self, config: AgentConfig) -> Self {
        self.config = config;
        self
    }

    /// Number of components (RFC 8445 §5.1.1); 1 by default.
    pub fn components(mut self, components: u16) -> Self {
        self.config.components = components;
        self
    }

    /// Adds a STUN server to learn server-reflexive candidates from (RFC 8445 §5.1.1.2).
    pub fn stun_server(mut self, server: SocketAddr) -> Self {
        self.stun_servers.push(server);
        self
    }

    /// Adds a TURN server to allocate relayed candidates on (RFC 8445 §5.1.1.2, RFC 8656), over
    /// UDP, TCP or TLS as its configuration says. One address serves one of TCP and TLS.
    ///
    /// Over TLS (RFC 8656 §3.1) the server's certificate must chain to a trusted root (the
    /// system's, or those of [`Self::turn_ca_file`]) and be valid for
    /// [`TurnConfig::server_name`](crate::turn::TurnConfig::server_name) (by default the
    /// server's IP address). A certificate that does not verify fails that server's allocation
    /// (see [`IceConnection::turn_stream_failures`]); the agent goes on with its other
    /// candidates.
    pub fn turn_server(mut self, server: crate::turn::TurnConfig) -> Self {
        self.turn_servers.push(server);
        self
    }

    /// Trusts only the CA certificates of this PEM file for TURN servers over TLS
    /// (RFC 8656 §3.1), instead of the system's roots. The file is read by [`Self::start`],
    /// which fails if it cannot be read or holds no certificate.
    pub fn turn_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trusted_roots = TrustedRoots::CaFile(path.into());
        self
    }

    /// Also gather loopback addresses (127.0.0.0/8, ::1), which RFC 8445 §5.1.1.1 excludes by
    /// default. For tests and the loopback example.
    pub fn include_loopback(mut self, yes: bool) -> Self {
        self.policy.include_loopback = yes;
        self
    }

    /// Also gather link-local addresses (169.254.0.0/16, fe80::/10).
    pub fn include_link_local(mut self, yes: bool) -> Self {
        self.policy.include_link_local = yes;
        self
    }

    /// Also gather addresses of interfaces that are not operationally up.
    pub fn include_down_interfaces(mut self, yes: bool) -> Self {
        self.policy.include_down = yes;
        self
    }

    /// Gather IPv4 addresses (on by default).
    pub fn ipv4(mut self, yes: bool) -> Self {
        self.policy.ipv4 = yes;
        self
    }

    /// Gather IPv6 addresses (on by default).
    pub fn ipv6(mut self, yes: bool) -> Self {
        self.policy.ipv6 = yes;
        self
    }

    /// Restricts gathering to the named interfaces (and any address given to
    /// [`Self::allow_address`]); see [`AddressPolicy`].
    pub fn allow_interface(mut self, name: impl Into<String>) -> Self {
        self.policy.allow_interfaces.push(name.into());
        self
    }

    /// Restricts gathering to these addresses (and any interface given to
    /// [`Self::allow_interface`]); see [`AddressPolicy`].
    pub fn allow_address(mut self, ip: IpAddr) -> Self {
        self.policy.allow_addresses.push(ip);
        self
    }

    /// Replaces the whole interface policy.
    pub fn address_policy(mut self, policy: AddressPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Binds host candidates on exactly this address, skipping interface enumeration and its
    /// policy (may be called several times). A failure to bind it is an error.
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.explicit.push(ip);
        self
    }

    /// Binds ports from this inclusive range only (for firewalls that open a range); by default
    /// the system picks ephemeral ports.
    pub fn port_range(mut self, first: u16, last: u16) -> Self {
        self.port_range = Some((first, last));
        self
    }

    /// Capacity of the queue of received datagrams. When the application does not read fast
    /// enough and it is full, new datagrams are dropped and counted
    /// ([`ConnectionStats::datagrams_dropped`]), as UDP would. At least 1.
    pub fn receive_queue(mut self, capacity: usize) -> Self {
        self.receive_queue = capacity;
        self
    }

    /// Capacity of the event queue. When it is full, new events are dropped and counted
    /// ([`ConnectionStats::events_dropped`]); the state, the selected pairs and the local
    /// candidates stay readable from the handle. At least 1.
    pub fn event_queue(mut self, capacity: usize) -> Self {
        self.event_queue = capacity;
        self
    }

    /// Binds the sockets, creates the agent, starts gathering and spawns the driver task on
    /// the current tokio runtime.
    pub async fn start(self) -> Result<IceConnection, Error> {
        let components = self.config.components;
        if components == 0 {
            return Err(Error::InvalidConfig("at least one component is needed"));
        }
        if let Some((first, last)) = self.port_range {
            if first > last || first == 0 {
                return Err(Error::InvalidConfig(
                    "the port range must be non-empty and not start at 0",
                ));
            }
        }

        // The driver keeps one stream per server address: TCP or TLS, not both.
        for tls in self
            .turn_servers
            .iter()
            .filter(|c| c.transport == crate::turn::TurnTransport::Tls)
        {
            if self
                .turn_servers
                .iter()
                .any(|c| c.server == tls.server && c.transport == crate::turn::TurnTransport::Tcp)
            {
                return Err(Error::InvalidConfig(
                    "one TURN server address cannot be used over both TCP and TLS",
                ));
            }
        }
        let tls = TurnTls::new(&self.turn_servers, &self.trusted_roots).await?;

        let addresses: Vec<LocalAddress> = if self.explicit.is_empty() {
            usable_addresses(&self.policy)?
        } else {
            self.explicit
                .iter()
                .map(|ip| LocalAddress {
                    interface: String::new(),
                    ip: *ip,
                    index: None,
                })
                .collect()
        };

        let mut bound: Vec<(u16, UdpSocket)> = Vec::new();
        for address in &addresses {
            for component in 1..=components {
                match bind_one(address, self.port_range).await {
                    Ok(socket) => bound.push((component, socket)),
                    Err(e) if self.explicit.is_empty() => {
                        tracing::warn!(ip = %address.ip, interface = %address.interface, error = %e,
                            "skipping an address that cannot be bound");
                    }
                    Err(e) => return Err(e),
                }
            }
        }

        let now = Instant::now();
        let mut agent = Agent::new(self.config, self.role, now);
        let mut sockets: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        for (component, socket) in bound {
            let local = socket.local_addr()?;
            if agent.add_host_candidate(component, local).is_some() {
                sockets.insert(local, Arc::new(socket));
            } else {
                tracing::debug!(%local, component, "agent refused a duplicate host candidate");
            }
        }
        if sockets.is_empty() {
            return Err(Error::NoUsableAddress);
        }
        for server in &self.turn_servers {
            agent.add_turn_server(server.clone());
        }
        for server in &self.stun_servers {
            agent.add_stun_server(*server);
        }
        agent.gather(now);

        let credentials = agent.local_credentials().clone();
        let span = tracing::info_span!("ice", role = ?self.role, ufrag = %credentials.ufrag);
        let shared = Arc::new(Shared {
            view: Mutex::new(View {
                credentials,
                role: agent.role(),
                paths: vec![None; usize::from(components)],
                selected: vec![None; usize::from(components)],
                local_candidates: agent.local_candidates().to_vec(),
                agent_stats: agent.stats().clone(),
                turn_stream_failures: Vec::new(),
            }),
            selected_changed: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            datagrams_received: AtomicU64::new(0),
            datagrams_dropped: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            signals_dropped: AtomicU64::new(0),
            transmit_errors: AtomicU64::new(0),
        });
        let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (signal_tx, signal_rx) = mpsc::channel(SIGNAL_QUEUE);
        let (event_tx, event_rx) = mpsc::channel(self.event_queue.max(1));
        let (datagram_tx, datagram_rx) = mpsc::channel(self.receive_queue.max(1));
        let (state_tx, state_rx) = watch::channel(agent.state());
        let addresses: Vec<SocketAddr> = sockets.keys().copied().collect();
        tracing::info!(parent: &span, sockets = ?addresses,
            stun_servers = ?self.stun_servers, "ICE connection starting");

        let driver = Driver::new(driver::Parts {
            agent,
            components,
            sockets,
            tls,
            shared: Arc::clone(&shared),
            commands: command_rx,
            signals: signal_rx,
            events: event_tx,
            datagrams: datagram_tx,
            state: state_tx,
        });
        let task = tokio::spawn(driver.run().instrument(span));

        Ok(IceConnection {
            shared,
            addresses,
            components,
            commands: command_tx,
            signals: signal_tx,
            events: tokio::sync::Mutex::new(event_rx),
            datagrams: tokio::sync::Mutex::new(datagram_rx),
            state: state_rx,
            task: Mutex::new(Some(task)),
        })
    }
}

/// Binds one UDP socket on `address`, on an ephemeral port or within `range`, starting the
/// search at a random port of the range so that concurrent agents rarely collide.
async fn bind_one(address: &LocalAddress, range: Option<(u16, u16)>) -> Result<UdpSocket, Error> {
    let at = |port: u16| match address.ip {
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, address.index.unwrap_or(0)))
        }
        ip => SocketAddr::new(ip, port),
    };
    let Some((first, last)) = range else {
        let addr = at(0);
        return UdpSocket::bind(addr)
            .await
            .map(with_large_buffers)
            .map_err(|source| Error::Bind { addr, source });
    };
    let span = u32::from(last) - u32::from(first) + 1;
    let start = rand::rng().random_range(0..span);
    let mut last_error = None;
    for i in 0..span {
        let offset = (start + i) % span;
        let Ok(port) = u16::try_from(u32::from(first) + offset) else {
            continue;
        };
        match UdpSocket::bind(at(port)).await {
            Ok(socket) => return Ok(with_large_buffers(socket)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(Error::Bind {
        addr: at(first),
        source: last_error
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "port range exhausted")),
    })
}

/// Socket buffer size asked for each ICE socket, both ways. The kernel's default (about
/// 200 KiB on Linux) overflows during a burst at loopback or LAN speed, and every overflow is a
/// loss the protocol above must retransmit; the kernel caps the request at
/// `net.core.rmem_max` / `wmem_max`.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for [`SOCKET_BUFFER`]-sized buffers; a refusal keeps the kernel's default.
fn with_large_buffers(socket: UdpSocket) -> UdpSocket {
    let s = socket2::SockRef::from(&socket);
    if let Err(e) = s.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(error = %e, "SO_RCVBUF not raised");
    }
    if let Err(e) = s.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(error = %e, "SO_SNDBUF not raised");
    }
    socket
}

/// A running ICE connection: the handle to an [`Agent`] driven over real UDP sockets by a
/// background task.
///
/// Every method takes `&self`, so the handle can be shared (`Arc<IceConnection>`) between a
/// task that reads events, one that reads datagrams and one that sends. The driver task ends
/// when the handle is dropped or [`IceConnection::close`] is called.
#[derive(Debug)]
pub struct IceConnection {
    shared: Arc<Shared>,
    addresses: Vec<SocketAddr>,
    components: u16,
    commands: mpsc::Sender<Command>,
    signals: mpsc::Sender<Signal>,
    events: tokio::sync::Mutex<mpsc::Receiver<IceEvent>>,
    datagrams: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
    state: watch::Receiver<ConnectionState>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl IceConnection {
    /// Starts configuring a connection in `role` (RFC 8445 §6.1.1: the initiator of a Jingle
    /// session is normally controlling).
    pub fn builder(role: Role) -> IceConnectionBuilder {
        IceConnectionBuilder::new(role)
    }

    /// Our current credentials (RFC 8445 §5.3), to signal to the peer. They change on
    /// [`IceConnection::restart`].
    pub fn local_credentials(&self) -> Credentials {
        self.shared.view().credentials.clone()
    }

    /// Local candidates gathered so far (also announced one by one as
    /// [`IceEvent::LocalCandidate`]).
    pub fn local_candidates(&self) -> Vec<Candidate> {
        self.shared.view().local_candidates.clone()
    }

    /// The addresses of the sockets the driver bound.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.addresses.clone()
    }

    /// The current role (it can change after a role conflict, RFC 8445 §7.3.1.1).
    pub fn role(&self) -> Role {
        self.shared.view().role
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    /// A receiver of the connection state, to watch its changes.
    pub fn state_watch(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Waits until the connection is usable (`Connected` or `Completed`); `Err(Failed)` if it
    /// fails first, `Err(Closed)` if it is closed. Wrap it in a timeout.
    pub async fn wait_connected(&self) -> Result<(), Error> {
        let mut rx = self.state.clone();
        let state = *rx
            .wait_for(|s| {
                matches!(
                    s,
                    ConnectionState::Connected
                        | ConnectionState::Completed
                        | ConnectionState::Failed
                        | ConnectionState::Closed
                )
            })
            .await
            .map_err(|_| Error::Closed)?;
        match state {
            ConnectionState::Failed => Err(Error::Failed),
            ConnectionState::Closed => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    /// Waits until `component` has a selected (nominated) pair, RFC 8445 §8.1.1, and returns
    /// it; `Err(Failed)` or `Err(Closed)` if the connection fails or closes first.
    pub async fn wait_selected(&self, component: u16) -> Result<SelectedPair, Error> {
        let mut state = self.state.clone();
        loop {
            let notified = self.shared.selected_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(pair) = self.selected_pair(component) {
                return Ok(pair);
            }
            match *state.borrow_and_update() {
                ConnectionState::Failed => return Err(Error::Failed),
                ConnectionState::Closed => return Err(Error::Closed),
                _ => {}
            }
            tokio::select! {
                () = &mut notified => {}
                changed = state.changed() => {
                    if changed.is_err() {
                        return Err(Error::Closed);
                    }
                }
            }
        }
    }

    /// The selected pair of `component`, once nominated.
    pub fn selected_pair(&self, component: u16) -> Option<SelectedPair> {
        let index = usize::from(component).checked_sub(1)?;
        self.shared.view().selected.get(index).cloned().flatten()
    }

    /// The streams to TURN servers (TCP or TLS, RFC 8656 §3.1) that could not be set up, oldest
    /// first (at most the last 32): a refused connection, a timeout, a certificate that did not
    /// verify. Each failed the allocations on that server.
    pub fn turn_stream_failures(&self) -> Vec<TurnStreamFailure> {
        self.shared.view().turn_stream_failures.clone()
    }

    /// Counters.
    pub fn stats(&self) -> ConnectionStats {
        let agent = self.shared.view().agent_stats.clone();
        let s = &self.shared;
        ConnectionStats {
            datagrams_received: s.datagrams_received.load(Ordering::Relaxed),
            datagrams_dropped: s.datagrams_dropped.load(Ordering::Relaxed),
            events_dropped: s.events_dropped.load(Ordering::Relaxed),
            signals_dropped: s.signals_dropped.load(Ordering::Relaxed),
            transmit_errors: s.transmit_errors.load(Ordering::Relaxed),
            agent,
        }
    }

    /// The next event: local candidates to trickle (RFC 8838 §4), gathering complete, state
    /// changes, selected pairs. `None` once the connection is closed.
    pub async fn next_event(&self) -> Option<IceEvent> {
        self.events.lock().await.recv().await
    }

    /// The next application datagram, from any component. `None` once the connection is
    /// closed.
    pub async fn recv(&self) -> Option<Datagram> {
        self.datagrams.lock().await.recv().await
    }

    /// A datagram that has already arrived, without waiting: `None` when there is none (or
    /// another task is receiving). Lets a reader take a whole burst at once.
    pub fn try_recv(&self) -> Option<Datagram> {
        self.datagrams.try_lock().ok()?.try_recv().ok()
    }

    /// Sends a datagram to the peer on `component`'s pair: the selected pair, or a working
    /// pair while nomination is going on. `Err(NoPath)` before a pair works, after failure,
    /// or once consent is lost (RFC 7675 §5.1).
    ///
    /// The peer's agent demultiplexes by the first byte (RFC 7983 §7): a datagram that starts
    /// with 0-3 is taken for STUN, so application protocols must not start with those bytes
    /// (DTLS, RTP and TURN channel data do not).
    pub async fn send(&self, component: u16, data: &[u8]) -> Result<(), Error> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if component == 0 || component > self.components {
            return Err(Error::InvalidComponent(component));
        }
        let has_path = self
            .shared
            .view()
            .paths
            .get(usize::from(component) - 1)
            .is_some_and(Option::is_some);
        if !has_path {
            return Err(Error::NoPath { component });
        }
        // Every byte leaves through the agent's transmit queue, direct or relayed alike.
        self.command(Command::Send(component, data.to_vec())).await
    }

    /// The peer's credentials from signalling; checks start once they are known.
    pub async fn set_remote_credentials(&self, credentials: Credentials) -> Result<(), Error> {
        self.command(Command::SetRemoteCredentials(credentials))
            .await
    }

    /// A remote candidate from signalling, at any time (trickle, RFC 8838 §11).
    pub async fn add_remote_candidate(&self, candidate: Candidate) -> Result<(), Error> {
        if candidate.component == 0 || candidate.component > self.components {
            return Err(Error::InvalidComponent(candidate.component));
        }
        self.command(Command::AddRemoteCandidate(candidate)).await
    }

    /// The peer signalled end-of-candidates (RFC 8838 §4.2).
    pub async fn end_of_remote_candidates(&self) -> Result<(), Error> {
        self.command(Command::EndOfRemoteCandidates).await
    }

    /// Adds a TURN server (RFC 8445 §5.1.1.2, RFC 8656), or gives new credentials to one the
    /// connection already has (refreshed XEP-0215 ones): allocations that gave up after the
    /// server refused the old credentials start again. A server over TLS the builder was not
    /// given is ignored (its TLS settings are made there).
    pub async fn add_turn_server(&self, server: crate::turn::TurnConfig) -> Result<(), Error> {
        self.command(Command::AddTurnServer(server)).await
    }

    /// ICE restart (RFC 8445 §9): returns our new credentials, to signal with our candidates
    /// (announced again as events); then give the peer's new credentials and candidates.
    pub async fn restart(&self) -> Result<Credentials, Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Restart(tx)).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Closes the agent, waits for the driver task to end and releases the sockets. Later
    /// calls do nothing. Dropping the handle closes too, without waiting.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "ICE driver task ended abnormally");
            }
        }
        self.shared.closed.store(true, Ordering::Release);
    }

    /// Hands `layer` to the driver task, which runs it on component 1 from now on (see
    /// [`driver::Layer`]); returns once it does. `kick` is what the layer's handles notify
    /// after they used it.
    pub(crate) async fn attach(
        &self,
        layer: Box<dyn driver::Layer>,
        kick: Arc<tokio::sync::Notify>,
    ) -> Result<(), Error> {
        let (attached, done) = oneshot::channel();
        self.command(Command::Attach(driver::Attach {
            layer,
            kick,
            attached,
        }))
        .await?;
        done.await.map_err(|_| Error::Closed)
    }

    /// Hands the session's signalling to the driver task, which calls it with every local
    /// candidate (those gathered so far first), restart and failure from now on instead of
    /// queueing events for [`IceConnection::next_event`].
    pub(crate) async fn attach_signalling(
        &self,
        signalling: Box<dyn Signalling>,
    ) -> Result<(), Error> {
        self.command(Command::AttachSignalling(signalling)).await
    }

    /// Hands the driver task what the session's peer signalled, without waiting: from a
    /// stanza handler that holds a lock. A full queue drops it (counted in
    /// [`ConnectionStats::signals_dropped`]).
    pub(crate) fn signal(&self, signal: Signal) {
        match self.signals.try_send(signal) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.signals_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("signal queue full: the peer's signalling dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.commands.send(command).await.map_err(|_| Error::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn localhost() -> LocalAddress {
        LocalAddress {
            interface: "lo".into(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            index: None,
        }
    }

    #[tokio::test]
    async fn bind_one_uses_the_range_and_reports_exhaustion() {
        let taken = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        // The only port of the range is taken.
        let err = bind_one(&localhost(), Some((port, port)))
            .await
            .expect_err("range exhausted");
        assert!(matches!(err, Error::Bind { addr, .. } if addr.port() == port));
        drop(taken);
        // Now it is free.
        let socket = bind_one(&localhost(), Some((port, port)))
            .await
            .expect("binds the freed port");
        assert_eq!(socket.local_addr().expect("addr").port(), port);
        // Without a range the system picks a port.
        let any = bind_one(&localhost(), None).await.expect("ephemeral");
        assert_ne!(any.local_addr().expect("addr").port(), 0);
    }
}
