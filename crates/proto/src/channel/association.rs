//! One WebRTC data-channel association, sans-IO: DTLS 1.2 (RFC 6347, via `dimpl`), SCTP over
//! DTLS (RFC 8261, via `sctp-proto`) and DCEP (RFC 8832) on top, with the peer authenticated by
//! the certificate fingerprint it signalled (RFC 8842 §5.1).
//!
//! The caller feeds datagrams that arrived on the ICE pair ([`Association::handle_datagram`])
//! and the time ([`Association::handle_timeout`]), and takes out datagrams to send
//! ([`Association::poll_transmit`]), the next wake-up ([`Association::poll_timeout`]) and what
//! happened ([`Association::poll_event`]). Nothing here touches a socket or a clock. Input is
//! worked through when the caller polls, so a burst of datagrams fed in a row costs one pass of
//! the SCTP machinery: feed all that has arrived, then poll.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sctp_proto::{
    AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Event as SctpEvent,
    Payload, PayloadProtocolIdentifier, ReliabilityType, ServerConfig, StreamEvent,
    TransportConfig,
};

use subtle::ConstantTimeEq;

use super::certificate::{Certificate, Fingerprint, FINGERPRINT_LEN};
use super::dcep::{
    ChannelOptions, DcepMessage, Reliability, PPID_BINARY, PPID_BINARY_EMPTY, PPID_DCEP,
    PPID_STRING, PPID_STRING_EMPTY,
};

/// The SCTP port both WebRTC peers use unless signalled otherwise (RFC 8841 §5, and what
/// Conversations signals in `sctp-port`).
pub const DEFAULT_SCTP_PORT: u16 = 5000;
/// The largest message we accept by default, signalled as `max-message-size` (RFC 8841 §6;
/// 262144 is what Conversations signals).
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 262_144;
/// The `max-message-size` to assume when the peer signals none (RFC 8841 §6.1).
pub const IMPLICIT_MAX_MESSAGE_SIZE: u32 = 65_536;
/// First bytes of a DTLS record (RFC 7983 §7: 20-63 is DTLS on a multiplexed path).
pub const DTLS_FIRST_BYTES: std::ops::RangeInclusive<u8> = 20..=63;
/// Per-datagram cost of DTLS 1.2 with AES-GCM: 13-byte record header, 8-byte explicit nonce,
/// 16-byte tag (RFC 6347 §4.1, RFC 5288 §3); rounded up for the other AEAD suites.
const DTLS_OVERHEAD: usize = 40;
/// Per-packet cost of SCTP framing: 12-byte common header and a 16-byte DATA chunk header
/// (RFC 9260 §3), with slack for bundled SACKs.
const SCTP_OVERHEAD: usize = 40;
/// Placeholder address for the SCTP endpoint: SCTP over DTLS has no addresses of its own
/// (RFC 8261 §5), but `sctp-proto` keys associations by one.
const SCTP_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5000);
/// Length of the SCTP common header; the first chunk's type follows (RFC 9260 §3.1).
const SCTP_COMMON_HEADER_LEN: usize = 12;
/// Chunk type of SHUTDOWN COMPLETE (RFC 9260 §3.2).
const CHUNK_SHUTDOWN_COMPLETE: u8 = 14;
/// How long a graceful close may take before the association is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Which end of the DTLS handshake we are (RFC 8842 §5.3: `setup:active` is the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// We send the ClientHello (`setup='active'`), and open the SCTP association.
    Client,
    /// We wait for the ClientHello (`setup='passive'`).
    Server,
}

/// Settings of an association.
#[derive(Debug, Clone)]
pub struct AssociationConfig {
    /// Largest datagram we produce on the ICE path (DTLS record included).
    pub mtu: usize,
    /// Largest message we accept; signal it as `max-message-size`.
    pub max_message_size: u32,
    /// SCTP receive window across all channels (RFC 9260 §6.2): bounds what the peer may have
    /// in flight towards us, and so the memory a slow reader can pin.
    pub receive_window: u32,
    /// Outgoing bytes one channel may have queued before `send` refuses more.
    pub send_buffer: usize,
    /// Most channels open at once.
    pub max_channels: usize,
    /// The DTLS handshake must finish within this time.
    pub handshake_timeout: Duration,
    /// Initial DTLS retransmission timeout (RFC 6347 §4.2.4.1).
    pub dtls_initial_rto: Duration,
    /// Our SCTP port (`sctp-port`).
    pub sctp_port: u16,
    /// SCTP's lowest retransmission timeout (RTO.Min, RFC 9260 §6.3.1). RFC 9260 suggests 1 s;
    /// WebRTC stacks use about 200 ms, since one loss on a short path would otherwise stall
    /// the association for a second.
    pub sctp_rto_min: Duration,
    /// SCTP's retransmission timeout before the first measurement (RTO.Initial, RFC 9260
    /// §16: 1 s).
    pub sctp_rto_initial: Duration,
}

impl Default for AssociationConfig {
    fn default() -> Self {
        AssociationConfig {
            mtu: 1200,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            receive_window: 4 * 1024 * 1024,
            send_buffer: 1024 * 1024,
            max_channels: 1024,
            handshake_timeout: Duration::from_secs(30),
            dtls_initial_rto: Duration::from_millis(500),
            sctp_port: DEFAULT_SCTP_PORT,
            sctp_rto_min: Duration::from_millis(200),
            sctp_rto_initial: Duration::from_secs(1),
        }
    }
}

/// What the peer signalled about its end of the association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteParameters {
    /// The fingerprint of its certificate (XEP-0320 `<fingerprint/>`); only a SHA-256 one
    /// can match.
    pub fingerprint: Fingerprint,
    /// Its `max-message-size`, if signalled.
    pub max_message_size: Option<u32>,
    /// Its `sctp-port`, if signalled.
    pub sctp_port: Option<u16>,
}

/// Identifier of a data channel: its SCTP stream id (RFC 8831 §6.5).
pub type ChannelId = u16;

/// Why an association ended or an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The peer's certificate does not match the fingerprint it signalled (RFC 8842 §5.1);
    /// the Jingle session ends with `<security-error/>`.
    #[error("the peer's DTLS certificate (fingerprint {got}) does not match the signalled fingerprint {expected}")]
    FingerprintMismatch {
        /// What the peer signalled.
        expected: Fingerprint,
        /// What its certificate hashes to.
        got: Fingerprint,
    },
    /// The DTLS layer failed: an alert, a bad record, a protocol error.
    #[error("DTLS failed: {0}")]
    Dtls(String),
    /// The DTLS handshake did not finish in time.
    #[error("DTLS handshake timed out")]
    HandshakeTimeout,
    /// The SCTP layer failed or timed out.
    #[error("SCTP association failed: {0}")]
    Sctp(String),
    /// The peer closed the association (SCTP SHUTDOWN/ABORT or DTLS close_notify).
    #[error("the peer closed the association")]
    PeerClosed,
    /// ICE failed under the association (RFC 8445 §8.1.2).
    #[error("ICE failed")]
    IceFailed,
    /// The peer stopped answering consent checks (RFC 7675 §5.1).
    #[error("consent to send lost")]
    ConsentLost,
    /// We closed the association.
    #[error("the association is closed")]
    Closed,
    /// The association is not established yet.
    #[error("the association is not connected yet")]
    NotConnected,
    /// The channel does not exist or was closed.
    #[error("data channel {0} is closed")]
    ChannelClosed(ChannelId),
    /// A message larger than the peer's `max-message-size`.
    #[error("message of {size} bytes exceeds the peer's max-message-size {max}")]
    MessageTooLarge {
        /// The message size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The channel's send buffer is full; wait for [`ChannelEvent::BufferedAmountLow`].
    #[error("send buffer full")]
    SendBufferFull,
    /// No stream id left, or `max_channels` reached.
    #[error("too many data channels")]
    TooManyChannels,
}

/// What happened, for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// DTLS is up with the peer authenticated, and the SCTP association is established:
    /// channels can be opened.
    Connected,
    /// The peer opened a channel (its `DATA_CHANNEL_OPEN` arrived and we acknowledged it).
    ChannelOpened {
        /// The channel.
        id: ChannelId,
        /// Its label, protocol and reliability.
        options: ChannelOptions,
    },
    /// The peer acknowledged a channel we opened (RFC 8832 §6).
    ChannelAcked {
        /// The channel.
        id: ChannelId,
    },
    /// Messages wait on a channel: call [`Association::recv`].
    Readable {
        /// The channel.
        id: ChannelId,
    },
    /// A channel's send buffer went below the low-water mark.
    BufferedAmountLow {
        /// The channel.
        id: ChannelId,
    },
    /// A channel is closed (by either side, RFC 8831 §6.7) after all its data was read.
    ChannelClosed {
        /// The channel.
        id: ChannelId,
    },
    /// The association ended; nothing more will happen.
    Closed(ChannelError),
}

/// A message of a data channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMessage {
    /// The payload.
    pub data: Vec<u8>,
    /// Binary (PPID 53/57) or text (51/56) (RFC 8831 §6.6).
    pub binary: bool,
}

/// Counters of an association.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssociationStats {
    /// Datagrams handed to [`Association::handle_datagram`] that were not DTLS (first byte
    /// outside 20-63), dropped.
    pub non_dtls_dropped: u64,
    /// DTLS datagrams received.
    pub datagrams_received: u64,
    /// DTLS datagrams produced.
    pub datagrams_sent: u64,
    /// Messages that broke DCEP (malformed OPEN, data before OPEN), whose channel was reset.
    pub dcep_errors: u64,
    /// Application messages delivered.
    pub messages_received: u64,
    /// Application messages sent.
    pub messages_sent: u64,
    /// DTLS datagrams we sent before the handshake completed.
    pub handshake_datagrams_sent: u64,
    /// SCTP retransmission timeouts (RFC 9260 §6.3.3): each one a stall of at least RTO.
    pub sctp_t3_timeouts: u64,
    /// SCTP fast retransmissions (RFC 9260 §7.2.4): losses repaired without a stall.
    pub sctp_fast_retransmits: u64,
    /// SCTP DATA chunks received.
    pub sctp_data_chunks_received: u64,
    /// SCTP SACK chunks received.
    pub sctp_sacks_received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelState {
    /// The peer's stream exists; its `DATA_CHANNEL_OPEN` has not been read yet.
    AwaitOpen,
    /// We sent `DATA_CHANNEL_OPEN`; data may already flow (RFC 8832 §6).
    AwaitAck,
    Open,
    /// We reset the stream; waiting for the peer's reset.
    Closing,
}

#[derive(Debug)]
struct Channel {
    options: Option<ChannelOptions>,
    state: ChannelState,
    /// A data message read while looking for the DCEP OPEN/ACK before it.
    early: Option<ChannelMessage>,
}

/// A data-channel association over one ICE pair (see the module documentation).
pub struct Association {
    config: AssociationConfig,
    role: DtlsRole,
    /// The SHA-256 digest the peer's certificate must hash to (the only part of its signalled
    /// fingerprint kept: 32 bytes inline).
    remote_digest: [u8; FINGERPRINT_LEN],
    /// The peer's `max-message-size`, if signalled.
    remote_max_message_size: Option<u32>,
    /// The peer's `sctp-port`, if signalled.
    remote_sctp_port: Option<u16>,
    dtls: dimpl::Dtls,
    dtls_timeout: Option<Instant>,
    dtls_connected: bool,
    peer_verified: bool,
    endpoint: Endpoint,
    sctp: Option<(AssociationHandle, sctp_proto::Association)>,
    sctp_connected: bool,
    channels: BTreeMap<ChannelId, Channel>,
    next_stream: ChannelId,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ChannelEvent>,
    closed: Option<ChannelError>,
    closing_since: Option<Instant>,
    /// Input arrived that SCTP has not been pumped for yet (see [`Association::settle`]).
    dirty: bool,
    shutdown_started: bool,
    shutdown_complete_sent: bool,
    buf: Vec<u8>,
    stats: AssociationStats,
    now: Instant,
}

impl std::fmt::Debug for Association {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Association")
            .field("role", &self.role)
            .field("dtls_connected", &self.dtls_connected)
            .field("sctp_connected", &self.sctp_connected)
            .field("channels", &self.channels.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Association {
    /// Starts an association as `role`, with our certificate and what the peer signalled. A
    /// client sends its ClientHello at once: create it when the ICE pair works.
    pub fn new(
        config: AssociationConfig,
        certificate: &Certificate,
        role: DtlsRole,
        remote: RemoteParameters,
        now: Instant,
    ) -> Result<Self, ChannelError> {
        let dtls_config = dimpl::Config::builder()
            .mtu(config.mtu)
            .max_queue_tx(256)
            .max_queue_rx(256)
            .require_client_certificate(true)
            .handshake_timeout(config.handshake_timeout)
            .flight_start_rto(config.dtls_initial_rto)
            .build()
            .map_err(|e| ChannelError::Dtls(format!("configuration: {e:?}")))?;
        let mut dtls = dimpl::Dtls::new_12(Arc::new(dtls_config), certificate.dtls(), now);
        dtls.set_active(role == DtlsRole::Client);

        let mut endpoint_config = EndpointConfig::new();
        let payload = config
            .mtu
            .saturating_sub(DTLS_OVERHEAD + SCTP_OVERHEAD)
            .max(512);
        endpoint_config.max_payload_size(u32::try_from(payload).unwrap_or(1100));
        // Both roles accept an incoming INIT: some stacks (aiortc by ICE role, libwebrtc always)
        // open the association from either side, and the endpoint needs a server
        // configuration to answer (or ignore) such a packet.
        let remote_digest = remote
            .fingerprint
            .sha256_digest()
            .map_err(|e| ChannelError::Dtls(e.to_string()))?;
        let mut server = ServerConfig::new();
        server.transport = Arc::new(transport_config(
            &config,
            remote.max_message_size,
            remote.sctp_port,
        ));
        let server = Some(Arc::new(server));
        let endpoint = Endpoint::new(Arc::new(endpoint_config), server);
        let mut assoc = Association {
            next_stream: match role {
                // RFC 8832 §6: the DTLS client uses even stream ids, the server odd ones.
                DtlsRole::Client => 0,
                DtlsRole::Server => 1,
            },
            config,
            role,
            remote_digest,
            remote_max_message_size: remote.max_message_size,
            remote_sctp_port: remote.sctp_port,
            dtls,
            dtls_timeout: None,
            dtls_connected: false,
            peer_verified: false,
            endpoint,
            sctp: None,
            sctp_connected: false,
            channels: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            closed: None,
            closing_since: None,
            dirty: false,
            shutdown_started: false,
            shutdown_complete_sent: false,
            buf: vec![0; 2048],
            stats: AssociationStats::default(),
            now,
        };
        assoc.drain_dtls(now);
        Ok(assoc)
    }

    /// Our DTLS role.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// Whether channels can be opened and used.
    pub fn is_connected(&self) -> bool {
        self.sctp_connected && self.closed.is_none()
    }

    /// Why the association ended, once it has.
    pub fn closed(&self) -> Option<&ChannelError> {
        self.closed.as_ref()
    }

    /// The largest message the peer accepts (its `max-message-size`, RFC 8841 §6).
    pub fn remote_max_message_size(&self) -> usize {
        let max = self
            .remote_max_message_size
            .unwrap_or(IMPLICIT_MAX_MESSAGE_SIZE);
        // 0 means "any size" (RFC 8841 §6); we still send no more than our own limit.
        usize::try_from(if max == 0 { u32::MAX } else { max }).unwrap_or(usize::MAX)
    }

    /// Counters.
    pub fn stats(&self) -> AssociationStats {
        let mut stats = self.stats.clone();
        if let Some((_, sctp)) = &self.sctp {
            let mut s = sctp.stats();
            stats.sctp_t3_timeouts = s.get_num_t3timeouts();
            stats.sctp_fast_retransmits = s.get_num_fast_retrans();
            stats.sctp_data_chunks_received = s.get_num_datas();
            stats.sctp_sacks_received = s.get_num_sacks();
        }
        stats
    }

    /// The SCTP round-trip time estimate, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.sctp.as_ref().map(|(_, a)| a.rtt())
    }

    /// A datagram that arrived on the ICE pair. Non-DTLS datagrams are counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        self.now = now;
        if self.closed.is_some() {
            return;
        }
        match data.first() {
            Some(b) if DTLS_FIRST_BYTES.contains(b) => {}
            _ => {
                self.stats.non_dtls_dropped += 1;
                return;
            }
        }
        self.stats.datagrams_received += 1;
        if let Err(e) = self.dtls.handle_timeout(now) {
            self.fail(dtls_error(e));
            return;
        }
        if let Err(e) = self.dtls.handle_packet(data) {
            self.fail(dtls_error(e));
            return;
        }
        self.drain_dtls(now);
        self.dirty = true;
    }

    /// Time passed: DTLS and SCTP retransmissions, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.closed.is_some() {
            return;
        }
        if self.dtls_timeout.is_some_and(|t| t <= now) {
            self.dtls_timeout = None;
            if let Err(e) = self.dtls.handle_timeout(now) {
                self.fail(dtls_error(e));
                return;
            }
            self.drain_dtls(now);
            self.dirty = true;
        }
        if let Some((_, sctp)) = &mut self.sctp {
            if sctp.poll_timeout().is_some_and(|t| t <= now) {
                sctp.handle_timeout(now);
                self.dirty = true;
            }
        }
        if self
            .closing_since
            .is_some_and(|t| now.saturating_duration_since(t) >= CLOSE_GRACE)
        {
            self.finish_close();
        }
    }

    /// When to call [`Association::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        if self.dirty {
            // Input not yet worked through: poll again now.
            return Some(self.now);
        }
        let sctp = self.sctp.as_ref().and_then(|(_, a)| a.poll_timeout());
        let grace = self.closing_since.map(|t| t + CLOSE_GRACE);
        [self.dtls_timeout, sctp, grace].into_iter().flatten().min()
    }

    /// The next datagram to send on the ICE pair.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.settle();
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.settle();
        self.events.pop_front()
    }

    /// Runs the SCTP machinery once for all the input since the last poll. sctp-proto's
    /// transmit path walks its whole flight on every call, so input is batched: a burst of
    /// datagrams (or of writes) costs one walk, not one per datagram.
    fn settle(&mut self) {
        if self.dirty {
            self.dirty = false;
            let now = self.now;
            self.pump(now);
        }
    }

    /// Opens a channel (RFC 8832 §6): its `DATA_CHANNEL_OPEN` goes out at once, and data may
    /// be sent on it right away (ordered until the peer's ACK).
    pub fn open_channel(&mut self, options: ChannelOptions) -> Result<ChannelId, ChannelError> {
        self.check_usable()?;
        if self.channels.len() >= self.config.max_channels {
            return Err(ChannelError::TooManyChannels);
        }
        let open = DcepMessage::Open(options.clone())
            .encode()
            .map_err(|e| ChannelError::Sctp(e.to_string()))?;
        let id = self.free_stream_id()?;
        let Some((_, sctp)) = &mut self.sctp else {
            return Err(ChannelError::NotConnected);
        };
        let mut stream = sctp
            .open_stream(id, PayloadProtocolIdentifier::Binary)
            .map_err(|e| ChannelError::Sctp(e.to_string()))?;
        stream
            .set_buffered_amount_low_threshold(self.config.send_buffer / 2)
            .map_err(|e| ChannelError::Sctp(e.to_string()))?;
        stream
            .write_with_ppi(&open, PayloadProtocolIdentifier::Dcep)
            .map_err(|e| ChannelError::Sctp(e.to_string()))?;
        self.channels.insert(
            id,
            Channel {
                options: Some(options),
                state: ChannelState::AwaitAck,
                early: None,
            },
        );
        self.dirty = true;
        Ok(id)
    }

    /// Whether a channel exists (open, being opened or closing, with data left to read).
    pub fn has_channel(&self, id: ChannelId) -> bool {
        self.channels.contains_key(&id)
    }

    /// The label, protocol and reliability of a channel.
    pub fn channel_options(&self, id: ChannelId) -> Option<&ChannelOptions> {
        self.channels.get(&id).and_then(|c| c.options.as_ref())
    }

    /// Sends one message on a channel. Fails without side effect when the message is larger
    /// than the peer accepts, or the channel's send buffer is full.
    pub fn send(&mut self, id: ChannelId, data: &[u8], binary: bool) -> Result<(), ChannelError> {
        self.check_usable()?;
        let max = self.remote_max_message_size();
        if data.len() > max {
            return Err(ChannelError::MessageTooLarge {
                size: data.len(),
                max,
            });
        }
        match self.channels.get(&id).map(|c| c.state) {
            Some(ChannelState::AwaitAck | ChannelState::Open) => {}
            _ => return Err(ChannelError::ChannelClosed(id)),
        }
        let send_buffer = self.config.send_buffer;
        let Some((_, sctp)) = &mut self.sctp else {
            return Err(ChannelError::NotConnected);
        };
        let mut stream = sctp
            .stream(id)
            .map_err(|_| ChannelError::ChannelClosed(id))?;
        let buffered = stream.buffered_amount().unwrap_or(0);
        if buffered > 0 && buffered + data.len() > send_buffer {
            return Err(ChannelError::SendBufferFull);
        }
        // RFC 8831 §6.6: an empty message is one zero byte with the "empty" PPID.
        let (payload, ppid): (&[u8], PayloadProtocolIdentifier) = match (data.is_empty(), binary) {
            (false, true) => (data, PayloadProtocolIdentifier::Binary),
            (false, false) => (data, PayloadProtocolIdentifier::String),
            (true, true) => (&[0], PayloadProtocolIdentifier::BinaryEmpty),
            (true, false) => (&[0], PayloadProtocolIdentifier::StringEmpty),
        };
        stream
            .write_with_ppi(payload, ppid)
            .map_err(|e| ChannelError::Sctp(e.to_string()))?;
        self.stats.messages_sent += 1;
        self.dirty = true;
        Ok(())
    }

    /// Bytes queued on a channel and not yet acknowledged by the peer.
    pub fn buffered_amount(&mut self, id: ChannelId) -> usize {
        self.sctp
            .as_mut()
            .and_then(|(_, a)| a.stream(id).ok())
            .and_then(|s| s.buffered_amount().ok())
            .unwrap_or(0)
    }

    /// The next message of a channel, if one is complete. DCEP messages are handled here and
    /// never returned.
    pub fn recv(&mut self, id: ChannelId) -> Result<Option<ChannelMessage>, ChannelError> {
        if let Some(m) = self.channels.get_mut(&id).and_then(|c| c.early.take()) {
            return Ok(Some(m));
        }
        self.read_message(id)
    }

    fn read_message(&mut self, id: ChannelId) -> Result<Option<ChannelMessage>, ChannelError> {
        loop {
            // Streams are only read once registered (their OPEN is read first).
            if !self.channels.contains_key(&id) {
                return Ok(None);
            }
            let Some((_, sctp)) = &mut self.sctp else {
                return Err(ChannelError::NotConnected);
            };
            let Ok(mut stream) = sctp.stream(id) else {
                return Ok(None);
            };
            let chunks = match stream.read_sctp() {
                Ok(Some(chunks)) => chunks,
                Ok(None) => return Ok(None),
                Err(_) => return Ok(None),
            };
            let mut data = vec![0; chunks.len()];
            let n = chunks.read(&mut data).unwrap_or(0);
            data.truncate(n);
            let ppid = chunks.ppi as u32;
            let state = self.channels.get(&id).map(|c| c.state);
            if ppid == PPID_DCEP {
                self.handle_dcep(id, &data);
                continue;
            }
            if state == Some(ChannelState::AwaitOpen) {
                // RFC 8832 §6: data before DATA_CHANNEL_OPEN breaks the protocol.
                self.stats.dcep_errors += 1;
                self.reset_stream(id);
                return Ok(None);
            }
            let binary = match ppid {
                PPID_BINARY => true,
                PPID_STRING => false,
                PPID_BINARY_EMPTY => {
                    data.clear();
                    true
                }
                PPID_STRING_EMPTY => {
                    data.clear();
                    false
                }
                // Legacy or unknown PPIDs: deliver as binary.
                _ => true,
            };
            self.stats.messages_received += 1;
            // Reading opened the receive window: the next poll sends the update.
            self.dirty = true;
            return Ok(Some(ChannelMessage { data, binary }));
        }
    }

    /// Closes a channel: resets its outgoing stream after the data queued before (RFC 8831
    /// §6.7, RFC 6525). [`ChannelEvent::ChannelClosed`] follows once the peer resets its side.
    pub fn close_channel(&mut self, id: ChannelId) {
        if let Some(c) = self.channels.get_mut(&id) {
            if c.state == ChannelState::Closing {
                return;
            }
            c.state = ChannelState::Closing;
        } else {
            return;
        }
        self.reset_sctp_stream(id);
        self.dirty = true;
    }

    /// Closes the association gracefully: SCTP SHUTDOWN once the data in flight is
    /// acknowledged, then DTLS close_notify. [`ChannelEvent::Closed`] with [`ChannelError::Closed`]
    /// follows.
    pub fn close(&mut self, now: Instant) {
        self.now = now;
        if self.closed.is_some() || self.closing_since.is_some() {
            return;
        }
        self.closing_since = Some(now);
        if !self.sctp_connected {
            self.finish_close();
            return;
        }
        self.dirty = true;
    }

    /// Starts the SCTP SHUTDOWN once every channel's queued data is acknowledged (SHUTDOWN
    /// itself only waits for data in flight, RFC 9260 §9.2).
    fn try_shutdown(&mut self) {
        if self.shutdown_started {
            return;
        }
        let Some((_, sctp)) = &mut self.sctp else {
            return;
        };
        let queued: usize = sctp
            .stream_ids()
            .into_iter()
            .filter_map(|id| sctp.stream(id).ok()?.buffered_amount().ok())
            .sum();
        if queued == 0 {
            self.shutdown_started = true;
            if sctp.shutdown().is_err() {
                self.finish_close();
            }
        }
    }

    /// Ends the association at once because the path under it is gone (ICE failed, consent
    /// lost) or for any reason the caller gives.
    pub fn abort(&mut self, reason: ChannelError) {
        self.fail(reason);
    }

    fn check_usable(&self) -> Result<(), ChannelError> {
        if let Some(e) = &self.closed {
            return Err(e.clone());
        }
        if self.closing_since.is_some() {
            return Err(ChannelError::Closed);
        }
        if !self.sctp_connected {
            return Err(ChannelError::NotConnected);
        }
        Ok(())
    }

    fn free_stream_id(&mut self) -> Result<ChannelId, ChannelError> {
        // Stream ids of our parity, skipping ones in use; at most 32768 candidates.
        for _ in 0..=u16::MAX / 2 {
            let id = self.next_stream;
            self.next_stream = match id.checked_add(2) {
                Some(n) if n < u16::MAX => n,
                _ => id % 2,
            };
            let in_use = self.channels.contains_key(&id)
                || self
                    .sctp
                    .as_ref()
                    .is_some_and(|(_, a)| a.stream_ids().contains(&id));
            if !in_use {
                return Ok(id);
            }
        }
        Err(ChannelError::TooManyChannels)
    }

    fn handle_dcep(&mut self, id: ChannelId, data: &[u8]) {
        let state = self.channels.get(&id).map(|c| c.state);
        match (DcepMessage::decode(data), state) {
            (Ok(DcepMessage::Open(options)), Some(ChannelState::AwaitOpen)) => {
                let Some((_, sctp)) = &mut self.sctp else {
                    return;
                };
                let Ok(mut stream) = sctp.stream(id) else {
                    return;
                };
                let ack = [0x02];
                let acked = stream
                    .write_with_ppi(&ack, PayloadProtocolIdentifier::Dcep)
                    .is_ok();
                let _ = stream.set_buffered_amount_low_threshold(self.config.send_buffer / 2);
                if !acked || apply_reliability(&mut stream, &options).is_err() {
                    self.stats.dcep_errors += 1;
                    self.reset_stream(id);
                    return;
                }
                if let Some(c) = self.channels.get_mut(&id) {
                    c.state = ChannelState::Open;
                    c.options = Some(options.clone());
                }
                self.events
                    .push_back(ChannelEvent::ChannelOpened { id, options });
            }
            (Ok(DcepMessage::Ack), Some(ChannelState::AwaitAck)) => {
                let options = self.channels.get(&id).and_then(|c| c.options.clone());
                if let (Some(options), Some((_, sctp))) = (options, &mut self.sctp) {
                    if let Ok(mut stream) = sctp.stream(id) {
                        let _ = apply_reliability(&mut stream, &options);
                    }
                }
                if let Some(c) = self.channels.get_mut(&id) {
                    c.state = ChannelState::Open;
                }
                self.events.push_back(ChannelEvent::ChannelAcked { id });
            }
            (Ok(_), Some(ChannelState::Closing)) => {}
            (result, _) => {
                tracing::debug!(stream = id, ?result, ?state, "unexpected DCEP message");
                self.stats.dcep_errors += 1;
                if state == Some(ChannelState::AwaitOpen) {
                    self.reset_stream(id);
                }
            }
        }
    }

    fn reset_stream(&mut self, id: ChannelId) {
        if let Some(c) = self.channels.get_mut(&id) {
            c.state = ChannelState::Closing;
        }
        self.reset_sctp_stream(id);
    }

    /// Drains DTLS output: datagrams to send, the peer's certificate, plaintext for SCTP.
    fn drain_dtls(&mut self, now: Instant) {
        let mut plaintext: Vec<Bytes> = Vec::new();
        let mut verdict: Option<Result<(), ChannelError>> = None;
        let mut connected = false;
        let mut peer_closed = false;
        loop {
            match self.dtls.poll_output(&mut self.buf) {
                dimpl::Output::Packet(p) => {
                    self.stats.datagrams_sent += 1;
                    if !self.dtls_connected {
                        self.stats.handshake_datagrams_sent += 1;
                    }
                    self.transmits.push_back(p.to_vec());
                }
                dimpl::Output::BufferTooSmall { needed } => {
                    self.buf.resize(needed, 0);
                }
                dimpl::Output::Timeout(t) => {
                    self.dtls_timeout = Some(t);
                    break;
                }
                dimpl::Output::Connected => connected = true,
                dimpl::Output::PeerCert(der) => {
                    let got = Fingerprint::of_der(der);
                    let same: bool = got.as_bytes().ct_eq(&self.remote_digest[..]).into();
                    verdict = Some(if same {
                        Ok(())
                    } else {
                        Err(ChannelError::FingerprintMismatch {
                            expected: Fingerprint::sha256(self.remote_digest),
                            got,
                        })
                    });
                }
                dimpl::Output::KeyingMaterial(..) => {}
                dimpl::Output::ApplicationData(d) => plaintext.push(Bytes::copy_from_slice(d)),
                dimpl::Output::CloseNotify => peer_closed = true,
                _ => {}
            }
        }
        match verdict {
            Some(Ok(())) => self.peer_verified = true,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "DTLS peer authentication failed");
                self.fail(e);
                return;
            }
            None => {}
        }
        if connected && !self.dtls_connected {
            if !self.peer_verified {
                self.fail(ChannelError::Dtls(
                    "the peer presented no certificate".into(),
                ));
                return;
            }
            self.dtls_connected = true;
            if self.role == DtlsRole::Client {
                self.start_sctp_client();
            }
        }
        // Plaintext before the peer is authenticated is never passed on.
        if self.peer_verified && self.dtls_connected {
            for p in plaintext {
                self.sctp_input(now, p);
            }
        }
        if peer_closed {
            self.fail(ChannelError::PeerClosed);
        }
    }

    fn start_sctp_client(&mut self) {
        let transport = transport_config(
            &self.config,
            self.remote_max_message_size,
            self.remote_sctp_port,
        );
        let mut client = ClientConfig::new();
        client.transport = Arc::new(transport);
        match self.endpoint.connect(client, SCTP_PEER) {
            Ok((handle, assoc)) => {
                self.sctp = Some((handle, assoc));
                self.dirty = true;
            }
            Err(e) => self.fail(ChannelError::Sctp(e.to_string())),
        }
    }

    fn sctp_input(&mut self, now: Instant, packet: Bytes) {
        match self.endpoint.handle(now, SCTP_PEER, None, None, packet) {
            // A second association (an INIT crossing ours) is dropped unanswered: the peer
            // completes the one we opened (RFC 9260 §5.2.1 collision handling on its side).
            Some((handle, DatagramEvent::NewAssociation(assoc))) if self.sctp.is_none() => {
                self.sctp = Some((handle, assoc));
            }
            Some((_, DatagramEvent::NewAssociation(_))) => {}
            Some((handle, DatagramEvent::AssociationEvent(event))) => {
                if let Some((h, assoc)) = &mut self.sctp {
                    if *h == handle {
                        assoc.handle_event(event);
                    }
                }
            }
            None => {}
        }
    }

    /// Moves SCTP forward: events, new streams, packets through DTLS.
    fn pump(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        let mut lost: Option<ChannelError> = None;
        let mut new_streams = Vec::new();
        let mut stream_events = Vec::new();
        if let Some((handle, sctp)) = &mut self.sctp {
            while let Some(ev) = sctp.poll_endpoint_event() {
                // sctp-proto announces "drained" when SHUTDOWN starts, and the endpoint then
                // forgets the association: the peer's SHUTDOWN ACK would find nobody and the
                // close could only end at the grace period. The endpoint goes with us anyway.
                if ev.is_drained() {
                    continue;
                }
                let _ = self.endpoint.handle_event(*handle, ev);
            }
            while let Some(ev) = sctp.poll() {
                match ev {
                    SctpEvent::Connected if !self.sctp_connected => {
                        self.sctp_connected = true;
                        self.events.push_back(ChannelEvent::Connected);
                    }
                    SctpEvent::HandshakeFailed { reason } => {
                        lost = Some(ChannelError::Sctp(reason.to_string()));
                    }
                    SctpEvent::AssociationLost { reason } => {
                        lost = Some(match reason {
                            sctp_proto::AssociationError::AssociationClosed
                            | sctp_proto::AssociationError::ApplicationClosed
                            | sctp_proto::AssociationError::Reset => ChannelError::PeerClosed,
                            sctp_proto::AssociationError::LocallyClosed => ChannelError::Closed,
                            other => ChannelError::Sctp(other.to_string()),
                        });
                    }
                    SctpEvent::Stream(e) => stream_events.push(e),
                    _ => {}
                }
            }
            while let Some(stream) = sctp.accept_stream() {
                new_streams.push(stream.stream_identifier());
            }
        }
        for id in new_streams {
            if self.channels.len() >= self.config.max_channels {
                self.reset_stream_untracked(id);
                continue;
            }
            self.channels.entry(id).or_insert(Channel {
                options: None,
                state: ChannelState::AwaitOpen,
                early: None,
            });
        }
        for e in stream_events {
            match e {
                StreamEvent::Readable { id } => {
                    let state = self.channels.get(&id).map(|c| c.state);
                    if matches!(
                        state,
                        Some(ChannelState::AwaitOpen | ChannelState::AwaitAck)
                    ) {
                        // Read the DCEP OPEN or ACK now, whether or not the caller reads
                        // this channel; a data message behind it is kept for the caller.
                        if let Ok(Some(m)) = self.read_message(id) {
                            if let Some(c) = self.channels.get_mut(&id) {
                                c.early = Some(m);
                                self.events.push_back(ChannelEvent::Readable { id });
                            }
                        }
                    } else if self.channels.contains_key(&id) {
                        self.events.push_back(ChannelEvent::Readable { id });
                    }
                }
                StreamEvent::BufferedAmountLow { id } => {
                    self.events
                        .push_back(ChannelEvent::BufferedAmountLow { id });
                }
                StreamEvent::Finished { id } => {
                    if self.channels.remove(&id).is_some() {
                        self.events.push_back(ChannelEvent::ChannelClosed { id });
                    }
                    // The peer reset its side: reset ours too (RFC 8831 §6.7).
                    self.reset_sctp_stream(id);
                }
                _ => {}
            }
        }
        if let Err(e) = self.flush_sctp(now) {
            lost.get_or_insert(e);
        }
        if let Some(e) = lost {
            if self.closing_since.is_some()
                && matches!(e, ChannelError::Closed | ChannelError::PeerClosed)
            {
                self.finish_close();
            } else {
                self.fail(e);
            }
            return;
        }
        if self.closing_since.is_some() {
            self.try_shutdown();
            if let Err(e) = self.flush_sctp(now) {
                self.fail(e);
                return;
            }
            // sctp-proto never moves the SHUTDOWN initiator to Closed after it sends
            // SHUTDOWN COMPLETE, so that packet going out marks the end.
            let done = self.shutdown_complete_sent
                || self.sctp.as_ref().is_some_and(|(_, a)| a.is_closed());
            if done {
                self.finish_close();
            }
        }
    }

    /// Sends what SCTP has to send, each packet in one DTLS record.
    fn flush_sctp(&mut self, now: Instant) -> Result<(), ChannelError> {
        let Some((_, sctp)) = &mut self.sctp else {
            return Ok(());
        };
        while let Some(t) = sctp.poll_transmit(now) {
            if let Payload::RawEncode(packets) = t.payload {
                for p in packets {
                    if p.get(SCTP_COMMON_HEADER_LEN) == Some(&CHUNK_SHUTDOWN_COMPLETE) {
                        self.shutdown_complete_sent = true;
                    }
                    self.dtls.send_application_data(&p).map_err(dtls_error)?;
                    drain_packets(
                        &mut self.dtls,
                        &mut self.buf,
                        &mut self.transmits,
                        &mut self.stats,
                        &mut self.dtls_timeout,
                    );
                }
            }
        }
        Ok(())
    }

    /// Resets the SCTP stream `id` in both directions (RFC 8831 §6.7, RFC 6525), if it exists.
    fn reset_sctp_stream(&mut self, id: ChannelId) {
        if let Some((_, sctp)) = &mut self.sctp {
            if let Ok(mut s) = sctp.stream(id) {
                let _ = s.close();
            }
        }
    }

    fn reset_stream_untracked(&mut self, id: ChannelId) {
        self.stats.dcep_errors += 1;
        self.reset_sctp_stream(id);
    }

    fn finish_close(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let _ = self.dtls.close();
        drain_packets(
            &mut self.dtls,
            &mut self.buf,
            &mut self.transmits,
            &mut self.stats,
            &mut self.dtls_timeout,
        );
        self.closed = Some(ChannelError::Closed);
        self.events
            .push_back(ChannelEvent::Closed(ChannelError::Closed));
    }

    fn fail(&mut self, reason: ChannelError) {
        if self.closed.is_some() {
            return;
        }
        if let Some((_, sctp)) = &mut self.sctp {
            let _ = sctp.close();
        }
        self.closed = Some(reason.clone());
        self.events.push_back(ChannelEvent::Closed(reason));
    }
}

/// Moves the datagrams DTLS produced to the transmit queue.
fn drain_packets(
    dtls: &mut dimpl::Dtls,
    buf: &mut Vec<u8>,
    transmits: &mut VecDeque<Vec<u8>>,
    stats: &mut AssociationStats,
    timeout: &mut Option<Instant>,
) {
    loop {
        match dtls.poll_output(buf) {
            dimpl::Output::Packet(p) => {
                stats.datagrams_sent += 1;
                transmits.push_back(p.to_vec());
            }
            dimpl::Output::BufferTooSmall { needed } => buf.resize(needed, 0),
            dimpl::Output::Timeout(t) => {
                *timeout = Some(t);
                break;
            }
            // Only packets are expected while sending; anything else is picked up by the
            // next full drain.
            _ => {}
        }
    }
}

fn transport_config(
    config: &AssociationConfig,
    remote_max_message_size: Option<u32>,
    remote_sctp_port: Option<u16>,
) -> TransportConfig {
    let remote_max = remote_max_message_size.unwrap_or(IMPLICIT_MAX_MESSAGE_SIZE);
    TransportConfig::default()
        .with_max_receive_buffer_size(config.receive_window)
        .with_max_receive_message_size(config.max_message_size)
        .with_max_send_message_size(if remote_max == 0 {
            u32::MAX
        } else {
            remote_max
        })
        .with_max_init_retransmits(None)
        .with_max_data_retransmits(None)
        .with_rto_min_ms(millis(config.sctp_rto_min))
        .with_rto_initial_ms(millis(config.sctp_rto_initial).max(millis(config.sctp_rto_min)))
        .with_local_port(config.sctp_port)
        .with_remote_port(remote_sctp_port.unwrap_or(DEFAULT_SCTP_PORT))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn apply_reliability(
    stream: &mut sctp_proto::Stream<'_>,
    options: &ChannelOptions,
) -> Result<(), sctp_proto::Error> {
    let (kind, value) = match options.reliability {
        Reliability::Reliable => (ReliabilityType::Reliable, 0),
        Reliability::MaxRetransmits(n) => (ReliabilityType::Rexmit, n),
        Reliability::MaxLifetimeMs(ms) => (ReliabilityType::Timed, ms),
    };
    stream.set_reliability_params(!options.ordered, kind, value)
}

fn dtls_error(e: dimpl::Error) -> ChannelError {
    match e {
        dimpl::Error::Timeout(_) => ChannelError::HandshakeTimeout,
        dimpl::Error::ConnectionClosed => ChannelError::PeerClosed,
        other => ChannelError::Dtls(format!("{other:?}")),
    }
}
