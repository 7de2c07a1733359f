//! The sans-IO TURN client: one allocation on one server (RFC 8656 §7), its refreshes (§8),
//! permissions (§9), Send/Data indications (§10, §11) and channels (§12).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::credentials::TurnCredentials;
use super::framing::{
    encode_channel_data, ChannelData, Frame, FrameError, StreamFramer, CHANNEL_MAX, CHANNEL_MIN,
    MAX_STREAM_FRAME_LEN,
};
use crate::stun::{
    error_code, long_term_key, Class, ClientTransaction, Message, MessageEncoder, Method,
    RetransmitConfig, TransactionId, TransactionState,
};

/// Protocol number of UDP in REQUESTED-TRANSPORT (RFC 8656 §18.8, IANA protocol numbers).
pub const PROTOCOL_UDP: u8 = 17;

/// Default allocation lifetime a client asks for and a server grants without LIFETIME: 10
/// minutes (RFC 8656 §3.2, §7.2).
pub const DEFAULT_ALLOCATION_LIFETIME: Duration = Duration::from_secs(600);

/// Lifetime of a permission: 300 seconds (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);

/// When a permission still in use is refreshed: one minute before it ends (RFC 8656 §9:
/// "the client SHOULD refresh permissions well before they expire").
pub const PERMISSION_REFRESH: Duration = Duration::from_secs(240);

/// Lifetime of a channel binding: 10 minutes (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

/// When a channel still in use is rebound: one minute before it ends (RFC 8656 §12.3).
pub const CHANNEL_REFRESH: Duration = Duration::from_secs(540);

/// How long a channel number stays unused after its binding ended before it is bound to
/// another peer: 5 minutes (RFC 8656 §12).
pub const CHANNEL_REUSE_DELAY: Duration = Duration::from_secs(300);

/// Transaction timeout over a reliable transport, Ti = 39.5 s (RFC 8489 §6.2.2).
pub const DEFAULT_RELIABLE_TIMEOUT: Duration = Duration::from_millis(39_500);

/// How many 438 Stale Nonce answers in a row one request may get before the client gives up
/// (RFC 8489 §9.2.5 retries once per new nonce; a loop means a broken server).
pub const MAX_STALE_NONCE_RETRIES: u8 = 3;

/// The allocation is refreshed after this share of its lifetime (in percent) has passed
/// (RFC 8656 §8: refresh before the lifetime ends).
const REFRESH_PERCENT: u32 = 80;

/// Transport to the TURN server (RFC 8656 §3.1). TLS looks like TCP here: the I/O layer
/// wraps and unwraps it, verifying the server's certificate against
/// [`TurnConfig::server_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    /// UDP: one STUN or ChannelData message per datagram, requests retransmitted
    /// (RFC 8489 §6.2.1).
    Udp,
    /// TCP: a stream of framed messages, ChannelData padded to 4 bytes (RFC 8656 §12.5),
    /// no retransmissions (RFC 8489 §6.2.2).
    Tcp,
    /// TLS over TCP (RFC 8656 §3.1; the `turns:` URI of RFC 7065): framed exactly like [`Self::Tcp`]
    /// inside the TLS stream, which the I/O layer sets up.
    Tls,
}

impl TurnTransport {
    /// Whether messages travel on a byte stream (TCP or TLS) and so are framed, with
    /// ChannelData padded and requests not retransmitted (RFC 8656 §3.1, §12.5).
    pub fn is_stream(self) -> bool {
        matches!(self, TurnTransport::Tcp | TurnTransport::Tls)
    }
}

/// Settings of one [`TurnClient`] (RFC 8656 §7.1).
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// The server's address (for TCP and TLS: the address the stream is connected to).
    pub server: SocketAddr,
    /// The transport to the server.
    pub transport: TurnTransport,
    /// Over TLS, the name the server's certificate must carry (RFC 8656 §3.1, verified as
    /// RFC 6125 / RFC 9525 say): a DNS name, or an IP address written out. `None` verifies the
    /// certificate against the IP address of [`Self::server`]. Ignored over UDP and TCP.
    pub server_name: Option<String>,
    /// The credentials (RFC 8656 §9.2 long-term, or the time-limited form).
    pub credentials: TurnCredentials,
    /// The allocation lifetime to ask for in LIFETIME (RFC 8656 §7.1); the server's answer
    /// wins. Whole seconds are sent.
    pub lifetime: Duration,
    /// Retransmission timings over UDP (RFC 8489 §6.2.1).
    pub retransmit: RetransmitConfig,
    /// Transaction timeout over TCP (RFC 8489 §6.2.2, Ti).
    pub reliable_timeout: Duration,
    /// SOFTWARE to put in requests (RFC 8489 §14.14), if any.
    pub software: Option<String>,
    /// Most permissions held at once.
    pub max_permissions: usize,
    /// Most channels bound at once (at most 4096 numbers exist, RFC 8656 §12).
    pub max_channels: usize,
    /// Most datagrams or stream chunks waiting in [`TurnClient::poll_transmit`]; beyond it
    /// [`TurnClient::send_to`] refuses data.
    pub max_queued_transmits: usize,
    /// Most [`TurnEvent::PeerData`] events waiting in [`TurnClient::poll_event`]; beyond it
    /// peer data is dropped (and counted).
    pub max_queued_data_events: usize,
    /// Longest frame accepted on a stream transport.
    pub max_frame_len: usize,
    /// Seed of the random generator of transaction ids (tests); `None` uses the OS CSPRNG.
    pub seed: Option<u64>,
}

impl TurnConfig {
    /// A configuration with the defaults: lifetime 600 s, RFC 8489 timings, 64 permissions,
    /// 64 channels, 1024 queued transmits and data events.
    pub fn new(server: SocketAddr, transport: TurnTransport, credentials: TurnCredentials) -> Self {
        TurnConfig {
            server,
            transport,
            server_name: None,
            credentials,
            lifetime: DEFAULT_ALLOCATION_LIFETIME,
            retransmit: RetransmitConfig::default(),
            reliable_timeout: DEFAULT_RELIABLE_TIMEOUT,
            software: None,
            max_permissions: 64,
            max_channels: 64,
            max_queued_transmits: 1024,
            max_queued_data_events: 1024,
            max_frame_len: MAX_STREAM_FRAME_LEN,
            seed: None,
        }
    }

    /// A configuration for TURN over TLS ("turns", RFC 8656 §3.1) to `server`, whose
    /// certificate must be valid for `server_name` (a DNS name or an IP address), with the
    /// defaults of [`Self::new`].
    pub fn tls(
        server: SocketAddr,
        server_name: impl Into<String>,
        credentials: TurnCredentials,
    ) -> Self {
        TurnConfig {
            server_name: Some(server_name.into()),
            ..TurnConfig::new(server, TurnTransport::Tls, credentials)
        }
    }
}

/// Why an allocation, a permission, a channel or a call failed (RFC 8656 §19 error codes
/// among others).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// The server refused the credentials: 401 after an authenticated request, or 441
    /// (RFC 8489 §9.2.5, RFC 8656 §19).
    #[error("the TURN server refused the credentials")]
    WrongCredentials,
    /// 486 Allocation Quota Reached (RFC 8656 §19).
    #[error("the TURN server's allocation quota is reached")]
    Quota,
    /// 300 Try Alternate with the ALTERNATE-SERVER given, if any (RFC 8489 §10). Following it
    /// is the caller's choice: it means a new client for another server.
    #[error("the TURN server redirects to {0:?}")]
    TryAlternate(Option<SocketAddr>),
    /// 437 Allocation Mismatch (RFC 8656 §19): the server has no (or another) allocation.
    #[error("allocation mismatch")]
    AllocationMismatch,
    /// Any other error response.
    #[error("the TURN server answered {code} {reason}")]
    Rejected {
        /// The error code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// No answer within the transaction timeout (RFC 8489 §6.2.1, §6.2.2).
    #[error("the TURN server did not answer")]
    Timeout,
    /// A success response lacks something it must carry (RFC 8656 §7.3).
    #[error("invalid response from the TURN server: {0}")]
    InvalidResponse(&'static str),
    /// The server kept answering 438 Stale Nonce (RFC 8489 §9.2.5).
    #[error("the TURN server keeps answering 438 Stale Nonce")]
    StaleNonceLoop,
    /// The stream from the server is not TURN framing, or ended inside a frame
    /// (RFC 8656 §12.5).
    #[error("TURN stream error: {0}")]
    Stream(FrameError),
    /// The stream to the server closed, which ends the allocation (RFC 8656 §3.1).
    #[error("the connection to the TURN server closed")]
    ConnectionClosed,
    /// The allocation ran out without a successful refresh (RFC 8656 §8).
    #[error("the allocation expired")]
    Expired,
    /// The call needs an allocation, and there is none (yet, or any more).
    #[error("no allocation")]
    NotAllocated,
    /// A configured limit (permissions, channels, channel numbers) is reached.
    #[error("a TURN client limit is reached")]
    LimitReached,
    /// Too many transmits are waiting: the caller is not draining `poll_transmit`.
    #[error("the transmit queue is full")]
    QueueFull,
    /// The data does not fit one Send indication or ChannelData message.
    #[error("{0} bytes do not fit one TURN message")]
    DataTooLong(usize),
    /// The peer's address family differs from the relayed address's (RFC 8656 §19, 443).
    #[error("the peer's address family differs from the relayed address's")]
    AddressFamilyMismatch,
}

/// Something the caller should know about, drained with [`TurnClient::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// The allocation exists (RFC 8656 §7.3): the relayed address is a relay candidate
    /// (RFC 8445 §5.1.1.2) whose base is the mapped address's local socket.
    Allocated {
        /// XOR-RELAYED-ADDRESS: where peers send to reach us.
        relayed: SocketAddr,
        /// XOR-MAPPED-ADDRESS: our address as the server sees it (a server-reflexive
        /// candidate).
        mapped: SocketAddr,
        /// The lifetime the server granted.
        lifetime: Duration,
    },
    /// The allocation could not be made; the client is finished.
    AllocationFailed(TurnError),
    /// A refresh succeeded (RFC 8656 §8).
    Refreshed {
        /// The new lifetime.
        lifetime: Duration,
    },
    /// The allocation ended without [`TurnClient::close`]: refresh refused or unanswered,
    /// lifetime over, stream broken, 437 to any request (RFC 8656 §19). The client is
    /// finished; [`TurnClient::loss_suspects`] names the peers that may have ended it.
    Expired(TurnError),
    /// A permission for a peer address is installed (RFC 8656 §9).
    PermissionCreated(IpAddr),
    /// A CreatePermission failed (RFC 8656 §9.2): data from and to that peer is not relayed.
    PermissionFailed {
        /// The peer address.
        peer: IpAddr,
        /// Why.
        error: TurnError,
    },
    /// A channel is bound (RFC 8656 §12.2): data to this peer now goes as ChannelData.
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// The channel number.
        channel: u16,
    },
    /// A ChannelBind failed (RFC 8656 §12.2); Send indications go on being used.
    ChannelBindFailed {
        /// The peer.
        peer: SocketAddr,
        /// The channel number that was asked for.
        channel: u16,
        /// Why.
        error: TurnError,
    },
    /// Data relayed from a peer, from a Data indication (RFC 8656 §11.4) or ChannelData
    /// (RFC 8656 §12.6).
    PeerData {
        /// The peer's address (on the far side of the relay).
        peer: SocketAddr,
        /// The data.
        data: Vec<u8>,
    },
    /// The allocation was deleted after [`TurnClient::close`] (RFC 8656 §8), or the close
    /// finished without an answer. The client is finished.
    Closed,
}

/// Where the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnState {
    /// The Allocate transaction is running (RFC 8656 §7.1).
    Allocating,
    /// The allocation exists.
    Allocated,
    /// The deallocating Refresh (LIFETIME 0) is running (RFC 8656 §8).
    Closing,
    /// Closed by the caller.
    Closed,
    /// Failed or expired.
    Failed,
}

/// Bytes to send to the TURN server (a datagram over UDP, a chunk of the stream over TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnTransmit {
    /// The TURN server's address.
    pub destination: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Counters of what the client dropped or refused (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// Datagrams that were neither STUN nor ChannelData, or did not decode.
    pub malformed: u64,
    /// Datagrams from an address other than the server's.
    pub not_from_server: u64,
    /// Responses that matched no outstanding request.
    pub unmatched_responses: u64,
    /// Responses whose MESSAGE-INTEGRITY failed or was missing (RFC 8489 §9.2.5).
    pub unauthenticated_responses: u64,
    /// ChannelData on a channel number we did not bind.
    pub unknown_channel: u64,
    /// Peer data dropped because the event queue was full.
    pub dropped_data: u64,
    /// Data indications received.
    pub data_indications: u64,
    /// ChannelData messages received.
    pub channel_data: u64,
}

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Allocate,
    /// Refresh with this LIFETIME in seconds; 0 deletes the allocation.
    Refresh(u32),
    CreatePermission(IpAddr),
    ChannelBind(u16, SocketAddr),
}

impl RequestKind {
    fn method(self) -> Method {
        match self {
            RequestKind::Allocate => Method::ALLOCATE,
            RequestKind::Refresh(_) => Method::REFRESH,
            RequestKind::CreatePermission(_) => Method::CREATE_PERMISSION,
            RequestKind::ChannelBind(..) => Method::CHANNEL_BIND,
        }
    }
}

/// An outstanding request.
struct Request {
    kind: RequestKind,
    transaction: ClientTransaction,
    bytes: Vec<u8>,
    authenticated: bool,
    stale_retries: u8,
}

/// The realm, nonce and key learnt from the server's 401 (RFC 8489 §9.2.3).
struct Auth {
    realm: String,
    nonce: String,
    key: [u8; 16],
}

/// The allocation once it exists.
struct Allocation {
    relayed: SocketAddr,
    mapped: SocketAddr,
    expires_at: Instant,
    refresh_at: Instant,
    refreshing: bool,
}

/// A permission (RFC 8656 §9).
struct Permission {
    /// `None` until the first CreatePermission succeeded.
    installed_until: Option<Instant>,
    refresh_at: Option<Instant>,
    in_flight: bool,
    /// Traffic to or from the peer since the last (re)install.
    used: bool,
    /// Data was sent to this peer while its permission was asked for or installed.
    sent: bool,
    /// Data from this peer came through the allocation: the relay has a route to it.
    heard: bool,
}

/// A channel binding (RFC 8656 §12).
struct Channel {
    number: u16,
    /// `None` until the first ChannelBind succeeded.
    bound_until: Option<Instant>,
    refresh_at: Option<Instant>,
    in_flight: bool,
    used: bool,
}

/// A sans-IO TURN client for one allocation on one server (RFC 8656).
///
/// The Allocate request is queued by [`TurnClient::new`]: drain [`TurnClient::poll_transmit`]
/// right away. Permissions and channels asked for before the allocation exists are requested
/// once it does.
pub struct TurnClient {
    config: TurnConfig,
    rng: StdRng,
    state: TurnState,
    auth: Option<Auth>,
    allocation: Option<Allocation>,
    requests: Vec<Request>,
    permissions: HashMap<IpAddr, Permission>,
    channels: HashMap<SocketAddr, Channel>,
    next_channel: u16,
    /// Channel numbers whose binding ended, with when they may be bound again.
    retired_channels: Vec<(u16, Instant)>,
    framer: StreamFramer,
    transmits: VecDeque<TurnTransmit>,
    events: VecDeque<TurnEvent>,
    data_events: usize,
    stats: TurnStats,
    /// Allocate was answered 437 and the stale allocation on this 5-tuple was deleted once.
    stale_allocation_deleted: bool,
    /// The peers that may have ended the allocation (see [`TurnClient::loss_suspects`]).
    loss_suspects: Vec<IpAddr>,
}

impl TurnClient {
    /// A client that starts allocating at `now`: the first Allocate, without credentials
    /// (RFC 8656 §7.1, RFC 8489 §9.2.3), is waiting in [`TurnClient::poll_transmit`].
    pub fn new(config: TurnConfig, now: Instant) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let framer = StreamFramer::new(config.max_frame_len);
        let mut client = TurnClient {
            config,
            rng,
            state: TurnState::Allocating,
            auth: None,
            allocation: None,
            requests: Vec::new(),
            permissions: HashMap::new(),
            channels: HashMap::new(),
            next_channel: CHANNEL_MIN,
            retired_channels: Vec::new(),
            framer,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            data_events: 0,
            stats: TurnStats::default(),
            stale_allocation_deleted: false,
            loss_suspects: Vec::new(),
        };
        client.start_request(RequestKind::Allocate, 0, now);
        client
    }

    /// The server this client talks to.
    pub fn server(&self) -> SocketAddr {
        self.config.server
    }

    /// The transport to the server.
    pub fn transport(&self) -> TurnTransport {
        self.config.transport
    }

    /// Where the client is.
    pub fn state(&self) -> TurnState {
        self.state
    }

    /// The relayed transport address, once allocated (RFC 8656 §7.3).
    pub fn relayed_address(&self) -> Option<SocketAddr> {
        self.allocation.as_ref().map(|a| a.relayed)
    }

    /// The mapped (server-reflexive) address, once allocated (RFC 8656 §7.3).
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.allocation.as_ref().map(|a| a.mapped)
    }

    /// When the allocation ends unless refreshed.
    pub fn expires_at(&self) -> Option<Instant> {
        self.allocation.as_ref().map(|a| a.expires_at)
    }

    /// Whether a permission for `peer` is installed on the server (RFC 8656 §9).
    pub fn has_permission(&self, peer: IpAddr) -> bool {
        self.permissions
            .get(&peer)
            .is_some_and(|p| p.installed_until.is_some())
    }

    /// The channel bound to `peer`, once the server confirmed it (RFC 8656 §12).
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .get(&peer)
            .filter(|c| c.bound_until.is_some())
            .map(|c| c.number)
    }

    /// Counters of dropped and refused input.
    pub fn stats(&self) -> &TurnStats {
        &self.stats
    }

    /// Asks for a permission for `peer` (RFC 8656 §9.1): data from that address is relayed
    /// to us and Send indications to it are relayed out. Asking again for an existing one
    /// marks it in use, so it is refreshed before it ends (at 240 s of its 300 s).
    pub fn create_permission(&mut self, peer: IpAddr, now: Instant) -> Result<(), TurnError> {
        self.check_open()?;
        self.check_family(peer)?;
        if let Some(permission) = self.permissions.get_mut(&peer) {
            permission.used = true;
            return Ok(());
        }
        if self.permissions.len() >= self.config.max_permissions {
            return Err(TurnError::LimitReached);
        }
        let allocated = self.state == TurnState::Allocated;
        self.permissions.insert(
            peer,
            Permission {
                installed_until: None,
                refresh_at: None,
                in_flight: allocated,
                used: true,
                sent: false,
                heard: false,
            },
        );
        if allocated {
            self.start_request(RequestKind::CreatePermission(peer), 0, now);
        }
        Ok(())
    }

    /// Binds a channel to `peer` (RFC 8656 §12.1) and returns its number (0x4000-0x4FFF).
    /// Data to the peer goes as ChannelData once [`TurnEvent::ChannelBound`] came; the
    /// binding is refreshed while in use. Binding an already bound peer returns its number.
    pub fn bind_channel(&mut self, peer: SocketAddr, now: Instant) -> Result<u16, TurnError> {
        self.check_open()?;
        self.check_family(peer.ip())?;
        if let Some(channel) = self.channels.get_mut(&peer) {
            channel.used = true;
            return Ok(channel.number);
        }
        if self.channels.len() >= self.config.max_channels {
            return Err(TurnError::LimitReached);
        }
        let number = self
            .free_channel_number(now)
            .ok_or(TurnError::LimitReached)?;
        let allocated = self.state == TurnState::Allocated;
        self.channels.insert(
            peer,
            Channel {
                number,
                bound_until: None,
                refresh_at: None,
                in_flight: allocated,
                used: true,
            },
        );
        if allocated {
            self.start_request(RequestKind::ChannelBind(number, peer), 0, now);
        }
        Ok(number)
    }

    /// Sends `data` to `peer` through the relay: as ChannelData if a channel is bound
    /// (RFC 8656 §12.5), else as a Send indication (RFC 8656 §10.1), asking for a permission
    /// first if there is none.
    pub fn send_to(
        &mut self,
        peer: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Result<(), TurnError> {
        if self.state != TurnState::Allocated {
            return Err(TurnError::NotAllocated);
        }
        self.check_family(peer.ip())?;
        if self.transmits.len() >= self.config.max_queued_transmits {
            return Err(TurnError::QueueFull);
        }
        let bound = self
            .channels
            .get_mut(&peer)
            .filter(|c| c.bound_until.is_some())
            .map(|c| {
                c.used = true;
                c.number
            });
        let mut bytes = Vec::with_capacity(data.len() + 36);
        match bound {
            Some(number) => {
                let pad = self.config.transport.is_stream();
                encode_channel_data(number, data, pad, &mut bytes)
                    .map_err(|_| TurnError::DataTooLong(data.len()))?;
                if let Some(p) = self.permissions.get_mut(&peer.ip()) {
                    p.used = true;
                }
            }
            None => {
                self.create_permission(peer.ip(), now)?;
                let id = TransactionId::random(&mut self.rng);
                let mut enc = MessageEncoder::new(&mut bytes, Class::Indication, Method::SEND, id);
                enc.xor_peer_address(peer).data(data);
                if enc.skipped() {
                    return Err(TurnError::DataTooLong(data.len()));
                }
                enc.finish();
            }
        }
        if let Some(p) = self.permissions.get_mut(&peer.ip()) {
            p.sent = true;
        }
        self.transmits.push_back(TurnTransmit {
            destination: self.config.server,
            data: bytes,
        });
        Ok(())
    }

    /// Verifies now that the allocation still exists, with a Refresh (RFC 8656 §8) unless one
    /// is already on its way: a success renews the allocation, an error or no answer ends it
    /// with [`TurnEvent::Expired`]. An ICE agent calls it when a pair through the relay stops
    /// answering: a server that lost the allocation (a restart, or coturn after a relayed
    /// send failed) says so only when asked.
    pub fn check_allocation(&mut self, now: Instant) {
        if self.state != TurnState::Allocated {
            return;
        }
        let start = match &mut self.allocation {
            Some(a) if !a.refreshing => {
                a.refreshing = true;
                true
            }
            _ => false,
        };
        if start {
            let lifetime = self.requested_lifetime();
            self.start_request(RequestKind::Refresh(lifetime), 0, now);
        }
    }

    /// The peer addresses that may have ended the last allocation: peers this client sent
    /// data to after asking for their permission (so the server may have relayed it) whose
    /// permission was not refused, that never sent anything back through the relay, and that
    /// are not the server's own addresses; only the private, loopback, link-local and shared
    /// (RFC 6598) ones among them when there are any. Empty until [`TurnEvent::Expired`].
    ///
    /// A server that cannot route to a peer may tear the whole allocation down on the failed
    /// send (coturn 4.6 does on ENETUNREACH, a little later: requests it answers meanwhile
    /// succeed, so a later success clears no one), so an agent should not send to these
    /// through a new allocation on the same server.
    pub fn loss_suspects(&self) -> &[IpAddr] {
        &self.loss_suspects
    }

    /// Deletes the allocation (RFC 8656 §8: Refresh with LIFETIME 0); [`TurnEvent::Closed`]
    /// follows the answer or the timeout. While still allocating, closes at once.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            TurnState::Allocating => {
                self.clear();
                self.state = TurnState::Closed;
                self.events.push_back(TurnEvent::Closed);
            }
            TurnState::Allocated => {
                self.requests.clear();
                self.permissions.clear();
                self.channels.clear();
                self.state = TurnState::Closing;
                self.start_request(RequestKind::Refresh(0), 0, now);
            }
            TurnState::Closing | TurnState::Closed | TurnState::Failed => {}
        }
    }

    /// Bytes from the server: a datagram over UDP (from `from`, which must be the server),
    /// a chunk of the stream over TCP. Garbage on a stream ends the allocation with a
    /// [`TurnError::Stream`] event; bad datagrams are dropped and counted.
    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if matches!(self.state, TurnState::Closed | TurnState::Failed) {
            return;
        }
        match self.config.transport {
            TurnTransport::Udp => {
                if from != self.config.server {
                    self.stats.not_from_server += 1;
                    return;
                }
                self.handle_datagram(now, data);
            }
            TurnTransport::Tcp | TurnTransport::Tls => {
                let mut framer = std::mem::replace(&mut self.framer, StreamFramer::new(0));
                let result = framer.push(data, |frame| match frame {
                    Frame::Stun(bytes) => self.handle_stun(now, bytes),
                    Frame::ChannelData(cd) => self.handle_channel_data(cd),
                });
                self.framer = framer;
                if let Err(error) = result {
                    self.lose_transport(TurnError::Stream(error));
                }
            }
        }
    }

    /// The stream to the server ended or broke (TCP/TLS): the allocation is gone
    /// (RFC 8656 §3.1). The event says whether the stream stopped inside a frame.
    pub fn handle_transport_closed(&mut self, _now: Instant) {
        let error = match self.framer.finish() {
            Err(error) => TurnError::Stream(error),
            Ok(()) => TurnError::ConnectionClosed,
        };
        self.lose_transport(error);
    }

    /// When [`TurnClient::handle_timeout`] should next run: a retransmission, a transaction
    /// timeout, a refresh or an expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.state, TurnState::Closed | TurnState::Failed) {
            return None;
        }
        let requests = self
            .requests
            .iter()
            .filter_map(|r| r.transaction.poll_timeout());
        let allocation = self.allocation.iter().flat_map(|a| {
            let refresh =
                (!a.refreshing && self.state == TurnState::Allocated).then_some(a.refresh_at);
            refresh.into_iter().chain(std::iter::once(a.expires_at))
        });
        let permissions = self.permissions.values().flat_map(|p| {
            // While a refresh is in flight its answer or timeout decides, not the expiry.
            let refresh = p.refresh_at.filter(|_| p.used);
            let expiry = p.installed_until;
            refresh.into_iter().chain(expiry).filter(|_| !p.in_flight)
        });
        let channels = self.channels.values().flat_map(|c| {
            let refresh = c.refresh_at.filter(|_| c.used);
            let expiry = c.bound_until;
            refresh.into_iter().chain(expiry).filter(|_| !c.in_flight)
        });
        requests
            .chain(allocation)
            .chain(permissions)
            .chain(channels)
            .min()
    }

    /// Runs the timers due at `now`: retransmissions, transaction timeouts, refreshes of the
    /// allocation, permissions in use and channels in use, and expiries.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, TurnState::Closed | TurnState::Failed) {
            return;
        }
        let mut timed_out = Vec::new();
        let mut i = 0;
        while let Some(request) = self.requests.get_mut(i) {
            if request.transaction.poll_transmit(now) {
                self.transmits.push_back(TurnTransmit {
                    destination: self.config.server,
                    data: request.bytes.clone(),
                });
            }
            request.transaction.handle_timeout(now);
            if request.transaction.state() == TransactionState::TimedOut {
                timed_out.push(self.requests.swap_remove(i).kind);
            } else {
                i += 1;
            }
        }
        for kind in timed_out {
            self.fail_request(kind, TurnError::Timeout, now);
        }
        if self.state != TurnState::Allocated {
            return;
        }
        let refresh_due = match &mut self.allocation {
            Some(a) if now >= a.expires_at => {
                self.lose(TurnEvent::Expired(TurnError::Expired));
                return;
            }
            Some(a) if !a.refreshing && now >= a.refresh_at => {
                a.refreshing = true;
                true
            }
            _ => false,
        };
        if refresh_due {
            let lifetime = self.requested_lifetime();
            self.start_request(RequestKind::Refresh(lifetime), 0, now);
        }

        let mut refresh = Vec::new();
        self.permissions.retain(|peer, p| {
            if p.installed_until.is_some_and(|t| now >= t) && !p.in_flight {
                tracing::debug!(%peer, "TURN permission expired");
                return false;
            }
            if p.used && !p.in_flight && p.refresh_at.is_some_and(|t| now >= t) {
                p.in_flight = true;
                refresh.push(RequestKind::CreatePermission(*peer));
            }
            true
        });
        let mut retired = Vec::new();
        self.channels.retain(|peer, c| {
            if c.bound_until.is_some_and(|t| now >= t) && !c.in_flight {
                tracing::debug!(%peer, channel = c.number, "TURN channel expired");
                retired.push(c.number);
                return false;
            }
            if c.used && !c.in_flight && c.refresh_at.is_some_and(|t| now >= t) {
                c.in_flight = true;
                refresh.push(RequestKind::ChannelBind(c.number, *peer));
            }
            true
        });
        for number in retired {
            self.retire_channel(number, now);
        }
        for kind in refresh {
            self.start_request(kind, 0, now);
        }
    }

    /// The next bytes to send to the server.
    pub fn poll_transmit(&mut self) -> Option<TurnTransmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        let event = self.events.pop_front()?;
        if matches!(event, TurnEvent::PeerData { .. }) {
            self.data_events = self.data_events.saturating_sub(1);
        }
        Some(event)
    }

    // ----- input -----

    fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        match data.first().map(|b| b & 0xC0) {
            Some(0x00) => self.handle_stun(now, data),
            Some(0x40) => match ChannelData::decode(data) {
                Ok(cd) => self.handle_channel_data(cd),
                Err(_) => self.stats.malformed += 1,
            },
            _ => self.stats.malformed += 1,
        }
    }

    fn handle_channel_data(&mut self, cd: ChannelData<'_>) {
        self.stats.channel_data += 1;
        let Some((peer, channel)) = self
            .channels
            .iter_mut()
            .find(|(_, c)| c.number == cd.channel)
        else {
            self.stats.unknown_channel += 1;
            return;
        };
        channel.used = true;
        let peer = *peer;
        self.peer_data(peer, cd.data);
    }

    fn handle_stun(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(msg) = Message::decode(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        match msg.class() {
            Class::Indication if msg.method() == Method::DATA => {
                let (Some(peer), Some(data)) = (msg.xor_peer_address(), msg.data()) else {
                    self.stats.malformed += 1;
                    return;
                };
                self.stats.data_indications += 1;
                self.peer_data(peer, data);
            }
            Class::SuccessResponse | Class::ErrorResponse => self.handle_response(now, &msg),
            Class::Request | Class::Indication => self.stats.malformed += 1,
        }
    }

    fn peer_data(&mut self, peer: SocketAddr, data: &[u8]) {
        if let Some(p) = self.permissions.get_mut(&peer.ip()) {
            p.used = true;
            p.heard = true;
        }
        if self.data_events >= self.config.max_queued_data_events {
            self.stats.dropped_data += 1;
            return;
        }
        self.data_events += 1;
        self.events.push_back(TurnEvent::PeerData {
            peer,
            data: data.to_vec(),
        });
    }

    fn handle_response(&mut self, now: Instant, msg: &Message<'_>) {
        let Some(index) = self.requests.iter().position(|r| {
            r.transaction.id() == msg.transaction_id() && r.kind.method() == msg.method()
        }) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        let authenticated = self.requests.get(index).is_some_and(|r| r.authenticated);
        // RFC 8489 §9.2.5: responses to authenticated requests are checked with the key;
        // a success without integrity, or any wrong integrity, is discarded (the request
        // goes on waiting for the real answer).
        if let Some(auth) = &self.auth {
            let has_integrity = msg.has_message_integrity() || msg.has_message_integrity_sha256();
            let success = msg.class() == Class::SuccessResponse;
            if (has_integrity && msg.verify_integrity(&auth.key).is_err())
                || (success && authenticated && !has_integrity)
            {
                self.stats.unauthenticated_responses += 1;
                return;
            }
        }
        let mut request = self.requests.swap_remove(index);
        request.transaction.complete();
        if msg.class() == Class::SuccessResponse {
            if !msg.unknown_comprehension_required().is_empty() {
                self.fail_request(
                    request.kind,
                    TurnError::InvalidResponse("unknown comprehension-required attribute"),
                    now,
                );
                return;
            }
            self.on_success(now, request.kind, msg);
            return;
        }
        let (code, reason) = msg
            .error_code()
            .map(|e| (e.code, e.reason))
            .unwrap_or((error_code::BAD_REQUEST, "error response without ERROR-CODE"));
        match code {
            error_code::UNAUTHORIZED if !request.authenticated => {
                // RFC 8489 §9.2.3: the first answer gives REALM and NONCE; retry with them.
                let (Some(realm), Some(nonce)) = (msg.realm(), msg.nonce()) else {
                    self.fail_request(
                        request.kind,
                        TurnError::InvalidResponse("401 without REALM and NONCE"),
                        now,
                    );
                    return;
                };
                self.set_auth(realm, nonce);
                self.start_request(request.kind, request.stale_retries, now);
            }
            error_code::STALE_NONCE => {
                // RFC 8489 §9.2.5: retry with the new nonce (and realm if it changed).
                let Some(nonce) = msg.nonce() else {
                    self.fail_request(
                        request.kind,
                        TurnError::InvalidResponse("438 without NONCE"),
                        now,
                    );
                    return;
                };
                if request.stale_retries >= MAX_STALE_NONCE_RETRIES {
                    self.fail_request(request.kind, TurnError::StaleNonceLoop, now);
                    return;
                }
                let realm = msg
                    .realm()
                    .map(str::to_owned)
                    .or_else(|| self.auth.as_ref().map(|a| a.realm.clone()));
                let Some(realm) = realm else {
                    self.fail_request(
                        request.kind,
                        TurnError::InvalidResponse("438 without REALM"),
                        now,
                    );
                    return;
                };
                self.set_auth(&realm, nonce);
                self.start_request(request.kind, request.stale_retries + 1, now);
            }
            error_code::ALLOCATION_MISMATCH
                if request.kind == RequestKind::Allocate
                    && request.authenticated
                    && !self.stale_allocation_deleted =>
            {
                // RFC 8656 §7.2: the server still holds an allocation on this 5-tuple, one we
                // gave up for lost (a refresh that went unanswered). Delete it with our
                // credentials (§8, LIFETIME 0) and allocate again, once.
                self.stale_allocation_deleted = true;
                self.start_request(RequestKind::Refresh(0), 0, now);
            }
            _ => {
                let error = match code {
                    error_code::UNAUTHORIZED | error_code::WRONG_CREDENTIALS => {
                        TurnError::WrongCredentials
                    }
                    error_code::ALLOCATION_QUOTA_REACHED => TurnError::Quota,
                    error_code::TRY_ALTERNATE => TurnError::TryAlternate(msg.alternate_server()),
                    error_code::ALLOCATION_MISMATCH => TurnError::AllocationMismatch,
                    _ => TurnError::Rejected {
                        code,
                        reason: reason.to_owned(),
                    },
                };
                self.fail_request(request.kind, error, now);
            }
        }
    }

    fn on_success(&mut self, now: Instant, kind: RequestKind, msg: &Message<'_>) {
        match kind {
            RequestKind::Allocate => {
                if self.state != TurnState::Allocating {
                    return;
                }
                let (Some(relayed), Some(mapped)) =
                    (msg.xor_relayed_address(), msg.xor_mapped_address())
                else {
                    self.lose(TurnEvent::AllocationFailed(TurnError::InvalidResponse(
                        "Allocate success without XOR-RELAYED-ADDRESS or XOR-MAPPED-ADDRESS",
                    )));
                    return;
                };
                let seconds = msg.lifetime().unwrap_or_else(|| self.requested_lifetime());
                if seconds == 0 {
                    self.lose(TurnEvent::AllocationFailed(TurnError::InvalidResponse(
                        "Allocate success with LIFETIME 0",
                    )));
                    return;
                }
                let lifetime = Duration::from_secs(u64::from(seconds));
                self.allocation = Some(Allocation {
                    relayed,
                    mapped,
                    expires_at: later(now, lifetime),
                    refresh_at: later(now, refresh_delay(lifetime)),
                    refreshing: false,
                });
                self.state = TurnState::Allocated;
                tracing::debug!(%relayed, %mapped, ?lifetime, "TURN allocation made");
                self.events.push_back(TurnEvent::Allocated {
                    relayed,
                    mapped,
                    lifetime,
                });
                // Permissions and channels asked for while allocating; a peer of the other
                // family than the relayed address fails now.
                let mut queued: Vec<RequestKind> = Vec::new();
                let mut failed = Vec::new();
                let is_v4 = relayed.is_ipv4();
                self.permissions.retain(|peer, p| {
                    if peer.is_ipv4() != is_v4 {
                        failed.push(TurnEvent::PermissionFailed {
                            peer: *peer,
                            error: TurnError::AddressFamilyMismatch,
                        });
                        return false;
                    }
                    p.in_flight = true;
                    queued.push(RequestKind::CreatePermission(*peer));
                    true
                });
                let mut retired = Vec::new();
                self.channels.retain(|peer, c| {
                    if peer.is_ipv4() != is_v4 {
                        failed.push(TurnEvent::ChannelBindFailed {
                            peer: *peer,
                            channel: c.number,
                            error: TurnError::AddressFamilyMismatch,
                        });
                        retired.push(c.number);
                        return false;
                    }
                    c.in_flight = true;
                    queued.push(RequestKind::ChannelBind(c.number, *peer));
                    true
                });
                self.events.extend(failed);
                for number in retired {
                    self.retire_channel(number, now);
                }
                for kind in queued {
                    self.start_request(kind, 0, now);
                }
            }
            RequestKind::Refresh(0) if self.state == TurnState::Allocating => {
                self.start_request(RequestKind::Allocate, 0, now);
            }
            RequestKind::Refresh(0) => self.finish_close(),
            RequestKind::Refresh(_) => {
                let seconds = msg.lifetime().unwrap_or_else(|| self.requested_lifetime());
                let lifetime = Duration::from_secs(u64::from(seconds));
                if seconds == 0 {
                    self.lose(TurnEvent::Expired(TurnError::Expired));
                    return;
                }
                if let Some(a) = &mut self.allocation {
                    a.expires_at = later(now, lifetime);
                    a.refresh_at = later(now, refresh_delay(lifetime));
                    a.refreshing = false;
                }
                self.events.push_back(TurnEvent::Refreshed { lifetime });
            }
            RequestKind::CreatePermission(peer) => {
                if let Some(p) = self.permissions.get_mut(&peer) {
                    let first = p.installed_until.is_none();
                    p.installed_until = Some(later(now, PERMISSION_LIFETIME));
                    p.refresh_at = Some(later(now, PERMISSION_REFRESH));
                    p.in_flight = false;
                    p.used = false;
                    if first {
                        self.events.push_back(TurnEvent::PermissionCreated(peer));
                    }
                }
            }
            RequestKind::ChannelBind(number, peer) => {
                let Some(c) = self.channels.get_mut(&peer).filter(|c| c.number == number) else {
                    return;
                };
                let first = c.bound_until.is_none();
                c.bound_until = Some(later(now, CHANNEL_LIFETIME));
                c.refresh_at = Some(later(now, CHANNEL_REFRESH));
                c.in_flight = false;
                c.used = false;
                // RFC 8656 §12.2: a ChannelBind also installs or refreshes the permission.
                let ip = peer.ip();
                if let Some(p) = self.permissions.get_mut(&ip) {
                    let first_permission = p.installed_until.is_none();
                    p.installed_until = Some(later(now, PERMISSION_LIFETIME));
                    p.refresh_at = Some(later(now, PERMISSION_REFRESH));
                    if first_permission {
                        self.events.push_back(TurnEvent::PermissionCreated(ip));
                    }
                } else if self.permissions.len() < self.config.max_permissions {
                    self.permissions.insert(
                        ip,
                        Permission {
                            installed_until: Some(later(now, PERMISSION_LIFETIME)),
                            refresh_at: Some(later(now, PERMISSION_REFRESH)),
                            in_flight: false,
                            used: false,
                            sent: false,
                            heard: false,
                        },
                    );
                    self.events.push_back(TurnEvent::PermissionCreated(ip));
                }
                if first {
                    self.events.push_back(TurnEvent::ChannelBound {
                        peer,
                        channel: number,
                    });
                }
            }
        }
    }

    /// A request ended without success.
    fn fail_request(&mut self, kind: RequestKind, error: TurnError, now: Instant) {
        tracing::debug!(?kind, %error, "TURN request failed");
        match kind {
            RequestKind::Allocate => {
                if self.state == TurnState::Allocating {
                    self.lose(TurnEvent::AllocationFailed(error));
                }
            }
            // Deleting the stale allocation failed (437: it is gone already): allocate again,
            // and give up if that is answered 437 once more.
            RequestKind::Refresh(0) if self.state == TurnState::Allocating => {
                self.start_request(RequestKind::Allocate, 0, now);
            }
            RequestKind::Refresh(0) => self.finish_close(),
            RequestKind::Refresh(_) => {
                if self.state == TurnState::Allocated {
                    self.lose(TurnEvent::Expired(error));
                }
            }
            RequestKind::CreatePermission(peer) => {
                if self.permissions.remove(&peer).is_some() {
                    self.events.push_back(TurnEvent::PermissionFailed {
                        peer,
                        error: error.clone(),
                    });
                }
                self.after_peer_request_failed(&error, now);
            }
            RequestKind::ChannelBind(number, peer) => {
                if self.channels.get(&peer).is_some_and(|c| c.number == number) {
                    self.channels.remove(&peer);
                    // The server may still hold the binding: keep the number unused a while.
                    self.retire_channel(number, now);
                    self.events.push_back(TurnEvent::ChannelBindFailed {
                        peer,
                        channel: number,
                        error: error.clone(),
                    });
                }
                self.after_peer_request_failed(&error, now);
            }
        }
    }

    /// A CreatePermission or ChannelBind failed: 437 says the allocation is gone (RFC 8656
    /// §19); 400, a server error or no answer may mean the same from a server that answers a
    /// request for a missing allocation so (coturn 4.6 answers 400), and refused credentials
    /// mean the allocation cannot be refreshed, so it is verified with a Refresh. Refusals
    /// about the peer itself (403, 443...) say nothing of it.
    fn after_peer_request_failed(&mut self, error: &TurnError, now: Instant) {
        if self.state != TurnState::Allocated {
            return;
        }
        match error {
            TurnError::AllocationMismatch => {
                self.lose(TurnEvent::Expired(TurnError::AllocationMismatch));
            }
            // Refused credentials (expired time-limited ones) will not refresh it either.
            TurnError::Timeout | TurnError::WrongCredentials => self.check_allocation(now),
            TurnError::Rejected { code, .. }
                if *code == error_code::BAD_REQUEST || *code == error_code::SERVER_ERROR =>
            {
                self.check_allocation(now);
            }
            _ => {}
        }
    }

    // ----- helpers -----

    /// Encodes and sends a new request (new transaction id), with credentials once known.
    fn start_request(&mut self, kind: RequestKind, stale_retries: u8, now: Instant) {
        let id = TransactionId::random(&mut self.rng);
        let mut bytes = Vec::with_capacity(160);
        let mut enc = MessageEncoder::new(&mut bytes, Class::Request, kind.method(), id);
        match kind {
            RequestKind::Allocate => {
                enc.requested_transport(PROTOCOL_UDP)
                    .lifetime(self.requested_lifetime());
            }
            RequestKind::Refresh(seconds) => {
                enc.lifetime(seconds);
            }
            RequestKind::CreatePermission(peer) => {
                enc.xor_peer_address(SocketAddr::new(peer, 0));
            }
            RequestKind::ChannelBind(number, peer) => {
                enc.channel_number(number).xor_peer_address(peer);
            }
        }
        if let Some(software) = &self.config.software {
            enc.software(software);
        }
        let authenticated = match &self.auth {
            Some(auth) => {
                enc.username(self.config.credentials.username())
                    .realm(&auth.realm)
                    .nonce(&auth.nonce)
                    .message_integrity(&auth.key);
                true
            }
            None => false,
        };
        enc.fingerprint();
        enc.finish();
        let retransmit = match self.config.transport {
            TurnTransport::Udp => self.config.retransmit,
            TurnTransport::Tcp | TurnTransport::Tls => RetransmitConfig {
                rto: self.config.reliable_timeout,
                max_transmits: 1,
                last_wait_factor: 1,
                max_rto: None,
            },
        };
        let mut transaction = ClientTransaction::new(id, retransmit, now);
        if transaction.poll_transmit(now) {
            self.transmits.push_back(TurnTransmit {
                destination: self.config.server,
                data: bytes.clone(),
            });
        }
        self.requests.push(Request {
            kind,
            transaction,
            bytes,
            authenticated,
            stale_retries,
        });
    }

    fn set_auth(&mut self, realm: &str, nonce: &str) {
        let key = long_term_key(
            self.config.credentials.username(),
            realm,
            self.config.credentials.password(),
        );
        self.auth = Some(Auth {
            realm: realm.to_owned(),
            nonce: nonce.to_owned(),
            key,
        });
    }

    fn requested_lifetime(&self) -> u32 {
        u32::try_from(self.config.lifetime.as_secs()).unwrap_or(u32::MAX)
    }

    fn check_open(&self) -> Result<(), TurnError> {
        match self.state {
            TurnState::Allocating | TurnState::Allocated => Ok(()),
            TurnState::Closing | TurnState::Closed | TurnState::Failed => {
                Err(TurnError::NotAllocated)
            }
        }
    }

    fn check_family(&self, peer: IpAddr) -> Result<(), TurnError> {
        match &self.allocation {
            Some(a) if a.relayed.is_ipv4() != peer.is_ipv4() => {
                Err(TurnError::AddressFamilyMismatch)
            }
            _ => Ok(()),
        }
    }

    /// A channel number not bound and not retired (RFC 8656 §12).
    fn free_channel_number(&mut self, now: Instant) -> Option<u16> {
        self.retired_channels.retain(|(_, until)| *until > now);
        for _ in CHANNEL_MIN..=CHANNEL_MAX {
            let n = self.next_channel;
            self.next_channel = if n >= CHANNEL_MAX { CHANNEL_MIN } else { n + 1 };
            let in_use = self.channels.values().any(|c| c.number == n)
                || self.retired_channels.iter().any(|(r, _)| *r == n);
            if !in_use {
                return Some(n);
            }
        }
        None
    }

    fn retire_channel(&mut self, number: u16, now: Instant) {
        // At most one entry per number: 4096 entries at worst.
        self.retired_channels.retain(|(r, _)| *r != number);
        self.retired_channels
            .push((number, later(now, CHANNEL_REUSE_DELAY)));
    }

    fn finish_close(&mut self) {
        if self.state == TurnState::Closing {
            self.clear();
            self.state = TurnState::Closed;
            self.events.push_back(TurnEvent::Closed);
        }
    }

    /// The stream broke or closed.
    fn lose_transport(&mut self, error: TurnError) {
        match self.state {
            TurnState::Allocating => self.lose(TurnEvent::AllocationFailed(error)),
            TurnState::Allocated => self.lose(TurnEvent::Expired(error)),
            TurnState::Closing => self.finish_close(),
            TurnState::Closed | TurnState::Failed => {}
        }
    }

    /// Ends the client with a failure event.
    fn lose(&mut self, event: TurnEvent) {
        if self.state == TurnState::Allocated {
            // The server's own addresses (another client's relayed address on it) are always
            // routable from it: a relay-to-relay path must survive a server restart.
            let own = [
                Some(self.config.server.ip()),
                self.allocation.as_ref().map(|a| a.relayed.ip()),
            ];
            let mut suspects: Vec<IpAddr> = self
                .permissions
                .iter()
                .filter(|(peer, p)| p.sent && !p.heard && !own.contains(&Some(**peer)))
                .map(|(peer, _)| *peer)
                .collect();
            // A relay host without a route to a private network is the usual case (coturn
            // tears the allocation down on ENETUNREACH): when such peers are among the
            // suspects, they are the ones.
            if suspects.iter().any(|p| !is_global(*p)) {
                suspects.retain(|p| !is_global(*p));
            }
            suspects.sort();
            self.loss_suspects = suspects;
        }
        self.clear();
        self.state = TurnState::Failed;
        self.events.push_back(event);
    }

    fn clear(&mut self) {
        self.requests.clear();
        self.permissions.clear();
        self.channels.clear();
        self.allocation = None;
    }
}

/// Whether `ip` is an address a relay on the internet can route to: not private (RFC 1918,
/// RFC 4193), loopback, link-local, shared (RFC 6598) or unspecified.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// `now + d`, saturating instead of panicking when a (server-given) duration is absurd.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

/// When to refresh an allocation of `lifetime`: after [`REFRESH_PERCENT`] of it.
fn refresh_delay(lifetime: Duration) -> Duration {
    lifetime * REFRESH_PERCENT / 100
}
