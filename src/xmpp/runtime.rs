//! The tokio side of Jingle ICE-UDP: a [`JingleRuntime`] extension that sits next to the
//! application's own XMPP client, runs the sans-IO [`SessionManager`] and one
//! [`IceConnection`] per session, and hands out established sessions.
//!
//! The extension never owns the XMPP connection: the application gives it every stanza it
//! receives ([`JingleRuntime::handle_stanza`] says whether it was taken) and sends every stanza the
//! extension emits ([`JingleRuntime::next_outgoing`]), tells it when a new stream is online
//! ([`JingleRuntime::stream_online`]) or lost ([`JingleRuntime::stream_lost`]), and answers the iq
//! requests nobody took ([`JingleRuntime::refuse_unhandled`]). The rest is the extension's: it
//! answers disco#info and its XEP-0115 caps node with the features it has enabled, asks the
//! user's server for STUN/TURN services (XEP-0215) and again before their credentials expire,
//! acknowledges XEP-0215 pushes, and sends everything through its [`Outbox`]: its requests are
//! tracked, a Jingle request the server bounces while the peer is briefly offline is sent again,
//! and a new stream re-sends its directed presences (with a disco#info probe to each session
//! peer) and its unanswered requests. `examples/tokio_xmpp_client.rs` is the whole pump for a
//! `tokio_xmpp::Client`:
//!
//! ```no_run
//! use futures::StreamExt;
//! use jingle_ice::xmpp::JingleRuntime;
//! use minidom::Element;
//! use tokio_xmpp::{Client, Event, Stanza};
//!
//! async fn pump(mut client: Client, ext: &JingleRuntime) -> Result<(), Box<dyn std::error::Error>> {
//!     loop {
//!         tokio::select! {
//!             event = client.next() => match event {
//!                 Some(Event::Online { resumed: false, .. }) => ext.stream_online(),
//!                 Some(Event::Disconnected(_)) => ext.stream_lost(),
//!                 Some(Event::Stanza(s)) => {
//!                     let s = Element::from(s);
//!                     if !ext.handle_stanza(&s) {
//!                         ext.refuse_unhandled(&s);
//!                     }
//!                 }
//!                 Some(_) => {}
//!                 None => return Ok(()),
//!             },
//!             Some(out) = ext.next_outgoing() => {
//!                 client.send_stanza(Stanza::try_from(out)?).await?;
//!             }
//!         }
//!     }
//! }
//! ```
//!
//! A session is opened with
//! [`JingleRuntime::connect`] (initiator, controlling agent) or taken from
//! [`JingleRuntime::next_incoming`] and accepted (responder, controlled agent); both return a
//! [`JingleSession`] once ICE has connected. Local candidates are trickled as they are gathered
//! (a relayed candidate that replaces a lost TURN allocation too, long after gathering), remote
//! ones reach the agent as they arrive (before `session-accept` included), a failed agent ends
//! the session with `<failed-transport/>` (a failed or lost TURN allocation does not), a peer's
//! ICE restart restarts ours, and a selected pair lost with its TURN allocation restarts ICE.
//!
//! By default sessions carry Conversations' `webrtc-datachannel:1` transport: the ICE-UDP
//! transport wrapped with our DTLS certificate's fingerprint (XEP-0320), and once ICE has
//! connected, a DTLS-authenticated SCTP association ([`JingleSession::data_channels`]). A peer
//! whose certificate does not match the fingerprint it signalled ends the session with
//! `<security-error/>`. Offers of plain ICE-UDP (XEP-0176) are still accepted, and
//! [`JingleRuntimeConfig::data_channels`] turns ours off.
//!
//! Fallback (XEP-0234 §2, XEP-0261): when ICE finds no path before the session is established,
//! the initiator proposes In-Band Bytestreams with `transport-replace`, the responder (which
//! waits for it, as Conversations' does) answers `transport-accept`, the initiator opens the
//! bytestream, and the session's bytes go through the XMPP server
//! ([`JingleSession::ibb`]). [`JingleRuntimeConfig::ibb_fallback`] turns it off. Which
//! transport to fall back to is data: the next one without ICE in the order of the session
//! layer's [`TransportRegistry`](crate::jingle::TransportRegistry)
//! ([`SessionManager::fallback_transport`]); IBB is the only one this runtime drives, so a
//! registry whose next one is not IBB (or that has none) means no fallback.
//!
//! Simultaneous initiation (XEP-0166 §7.2.16): when our offer to a peer loses the tie-break to
//! the peer's own offer of the same application, [`JingleRuntime::connect`] accepts the peer's
//! session instead and returns it, so both sides end up in one session.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use rand::distr::Alphanumeric;
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::disco::{self, Features, Identity};
use super::extdisco::{self, IceServers};
use super::ibb::{IbbChannel, IbbShared};
use super::outbox::{Outbox, PROBE_ID_PREFIX};
use super::stream::SessionStream;
use crate::channel::{Certificate, ChannelError, ChannelOptions, DtlsRole, RemoteParameters};
use crate::ibb::{IbbConfig, IbbError, IbbStream, IbbTransport};
use crate::ice::{Candidate, Credentials, Role};
use crate::jingle::{
    dtls_role, Content, DataChannelTransport, DtlsFingerprint, IceUdpCandidate, IceUdpTransport,
    Reason, ReasonCondition, Senders, SessionConfig, SessionError, SessionEvent, SessionKey,
    SessionManager, Setup, StanzaLimits, Transport,
};
use crate::net::{
    DataChannels, DataChannelsConfig, IceConnection, IceConnectionBuilder, SelectedPair, Signal,
    Signalling,
};
use crate::turn::TurnConfig;
use crate::xmpp::stanza::{iq_error, iq_type, limit_error, Condition, IqType, NS_CLIENT};

/// Name of the single content our sessions carry: `"0"`, because Conversations routes
/// candidates by content name as libwebrtc's media id (see `xep/webrtc-datachannel.md`).
pub const CONTENT_NAME: &str =
    crate::jingle::transports::webrtc_datachannel::CONVERSATIONS_CONTENT_NAME;
/// Capacity of the outgoing stanza queue; past it stanzas are dropped and counted
/// ([`JingleRuntime::dropped_stanzas`]).
pub const OUTGOING_QUEUE: usize = 1024;
/// Capacity of the queue of incoming offers; past it offers are declined with `<busy/>`.
pub const INCOMING_QUEUE: usize = 16;

/// Node of our XEP-0115 capabilities (the default of [`JingleRuntimeConfig::caps_node`]).
pub const CAPS_NODE: &str = "https://github.com/jingle-ice/jingle-ice";
/// Default of [`JingleRuntimeConfig::outbox_capacity`].
pub const OUTBOX_CAPACITY: usize = 1024;
/// Default of [`JingleRuntimeConfig::peer_wait`]: the Jingle request timeout.
pub const PEER_WAIT: Duration = Duration::from_secs(30);
/// How long an XEP-0215 query waits for the server's answer.
pub const SERVICES_TIMEOUT: Duration = Duration::from_secs(30);
/// Retry delay when fetching the external services failed.
const SERVICES_RETRY: Duration = Duration::from_secs(60);
/// Prefix of the ids of our XEP-0215 queries.
const SERVICES_ID_PREFIX: &str = "jingle-ice-extdisco-";

/// Makes the ICE connection builder for a new session (interfaces, ports, agent settings).
pub type BuilderFn = Arc<dyn Fn(Role) -> IceConnectionBuilder + Send + Sync>;

/// Settings of a [`JingleRuntime`].
#[derive(Clone)]
pub struct JingleRuntimeConfig {
    /// Limits and timers of the session layer.
    pub session: SessionConfig,
    /// STUN servers for server-reflexive candidates.
    pub stun_servers: Vec<SocketAddr>,
    /// TURN servers for relayed candidates.
    pub turn_servers: Vec<TurnConfig>,
    /// Builds the ICE connection of each session; servers above are added to it.
    pub builder: BuilderFn,
    /// How long [`JingleRuntime::connect`] and [`IncomingSession::accept`] wait for ICE to connect
    /// once the session is accepted, before ending it with `<failed-transport/>`.
    pub connect_timeout: Duration,
    /// Offer the `webrtc-datachannel:1` transport (encrypted data channels, what Conversations
    /// uses); `false` offers plain ICE-UDP. Offers of either kind are accepted.
    pub data_channels: bool,
    /// Settings of the data-channel association of each session.
    pub channels: DataChannelsConfig,
    /// Fall back to In-Band Bytestreams through the server when ICE finds no path (see the
    /// module documentation); `false` ends such sessions with `<failed-transport/>`.
    pub ibb_fallback: bool,
    /// Settings of the In-Band Bytestreams of fallen-back sessions.
    pub ibb: IbbConfig,
    /// Our identity in disco#info (XEP-0030 §3.1).
    pub identity: Identity,
    /// The node of our XEP-0115 caps: the URI naming the application.
    pub caps_node: String,
    /// Features advertised besides the extension's own ([`disco::OUR_FEATURES`]), for example
    /// file transfer ([`crate::apps::file_transfer::enable`]) or tubes.
    pub extra_features: Vec<String>,
    /// On [`JingleRuntime::stream_online`], send our available presence with XEP-0115 caps first
    /// (RFC 6121 §4.2). Off by default: a client that sends its own presence adds
    /// [`JingleRuntime::caps_element`] to it instead.
    pub presence: bool,
    /// On [`JingleRuntime::stream_online`], ask our server for STUN/TURN services (XEP-0215), use
    /// them besides the manual ones, and ask again before their credentials expire.
    pub discover_services: bool,
    /// Most stanzas kept while the stream is down ([`JingleRuntime::stream_lost`]); past it the
    /// oldest are dropped (counted in [`JingleRuntime::dropped_stanzas`]).
    pub outbox_capacity: usize,
    /// How long after first sending it a Jingle request (other than `session-initiate`) is
    /// sent again when the server bounces it because the peer is offline
    /// (`<service-unavailable/>` or `<recipient-unavailable/>`, RFC 6121 §8.5.3.2.1), and how
    /// long unanswered requests are sent again after a new stream (see [`Outbox`]).
    pub peer_wait: Duration,
}

impl Default for JingleRuntimeConfig {
    fn default() -> Self {
        JingleRuntimeConfig {
            session: SessionConfig::default(),
            stun_servers: Vec::new(),
            turn_servers: Vec::new(),
            builder: Arc::new(IceConnection::builder),
            connect_timeout: Duration::from_secs(30),
            data_channels: true,
            channels: DataChannelsConfig::default(),
            ibb_fallback: true,
            ibb: IbbConfig::default(),
            identity: Identity::client_bot("jingle-ice"),
            caps_node: CAPS_NODE.to_owned(),
            extra_features: Vec::new(),
            presence: false,
            discover_services: true,
            outbox_capacity: OUTBOX_CAPACITY,
            peer_wait: PEER_WAIT,
        }
    }
}

impl std::fmt::Debug for JingleRuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JingleRuntimeConfig")
            .field("session", &self.session)
            .field("stun_servers", &self.stun_servers)
            .field("turn_servers", &self.turn_servers)
            .field("connect_timeout", &self.connect_timeout)
            .field("ibb_fallback", &self.ibb_fallback)
            .field("identity", &self.identity)
            .field("extra_features", &self.extra_features)
            .field("presence", &self.presence)
            .field("discover_services", &self.discover_services)
            .field("peer_wait", &self.peer_wait)
            .finish_non_exhaustive()
    }
}

/// Why a session could not be opened or went away.
#[derive(Debug, thiserror::Error)]
pub enum JingleRuntimeError {
    /// The session layer refused the call.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// ICE gave no connection (and no fallback was tried: it is off, or the session was
    /// already established).
    #[error("ICE: {0}")]
    Ice(#[from] IceFailure),
    /// The session ended (by either side) before it was established.
    #[error("session ended: {0}")]
    Terminated(Reason),
    /// The extension was shut down.
    #[error("the Jingle extension is closed")]
    Closed,
    /// The session carries no byte stream: it is a plain ICE-UDP session (datagrams only).
    #[error("the session carries datagrams only: no data channel and no bytestream")]
    NoStream,
    /// The peer's transport cannot carry an authenticated data channel (the session was ended
    /// with `<security-error/>`).
    #[error("data channel negotiation: {0}")]
    Negotiation(ChannelNegotiation),
    /// The data-channel association could not be set up (the session was ended: with
    /// `<security-error/>` for a fingerprint mismatch).
    #[error("data channel: {0}")]
    Channel(ChannelError),
    /// ICE found no path and the fallback to In-Band Bytestreams failed too (the session was
    /// ended with `<failed-transport/>`).
    #[error(
        "no peer-to-peer path ({cause}), and the In-Band Bytestreams fallback failed: {fallback}"
    )]
    Fallback {
        /// Why the session needed the fallback.
        cause: FallbackCause,
        /// Why the fallback failed.
        fallback: FallbackFailure,
    },
    /// The offer protects its content with a security method this extension cannot apply
    /// (XEP-0391 Jingle Encrypted Transports: [`IncomingSession::security`]); it was declined
    /// with `<security-error/>` rather than accepted without it.
    #[error("the offer is encrypted with {0}, which is not supported")]
    UnsupportedSecurity(String),
}

/// Why ICE gave a session no connection.
#[derive(Debug, thiserror::Error)]
pub enum IceFailure {
    /// The ICE connection could not be started, failed (no candidate pair works, RFC 8445
    /// §8.1) or closed.
    #[error(transparent)]
    Connection(#[from] crate::net::Error),
    /// No pair was selected within [`JingleRuntimeConfig::connect_timeout`].
    #[error("ICE did not connect within {0:?}")]
    Timeout(Duration),
    /// The peer gave up on ICE first and proposed In-Band Bytestreams.
    #[error("the peer fell back to In-Band Bytestreams")]
    PeerFellBack,
}

/// Why a session needed the In-Band Bytestreams fallback.
#[derive(Debug, thiserror::Error)]
pub enum FallbackCause {
    /// ICE found no path.
    #[error(transparent)]
    Ice(IceFailure),
    /// The peer's offer has In-Band Bytestreams as its only transport (Dino, Conversations
    /// over Tor).
    #[error("the offer has In-Band Bytestreams only")]
    IbbOnlyOffer,
    /// Something else stopped the session before it was established.
    #[error("{0}")]
    Other(Box<JingleRuntimeError>),
}

/// Why the In-Band Bytestreams fallback (XEP-0261) failed.
#[derive(Debug, thiserror::Error)]
pub enum FallbackFailure {
    /// The peer answered our `transport-replace` with another stream id.
    #[error("the peer accepted another IBB stream id")]
    OtherStreamId,
    /// The peer rejected In-Band Bytestreams (`transport-reject`).
    #[error("the peer rejected In-Band Bytestreams")]
    Rejected,
    /// The initiator did not propose the fallback in time (we are the responder).
    #[error("no In-Band Bytestreams proposal within {0:?}")]
    NoProposal(Duration),
    /// The bytestream did not open in time.
    #[error("the bytestream did not open within {0:?}")]
    NotOpened(Duration),
    /// The bytestream failed while opening.
    #[error(transparent)]
    Stream(#[from] IbbError),
}

/// What the data-channel association of a session needs from the negotiation: the peer's
/// parameters and our DTLS role, or why they are unusable.
type ChannelParams = Result<(RemoteParameters, DtlsRole), ChannelNegotiation>;

/// Why the peer's transport cannot carry an authenticated data channel (XEP-0320, RFC 8842).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNegotiation {
    /// The peer's offer or answer has no DTLS fingerprint.
    #[error("the peer signalled no DTLS fingerprint")]
    NoFingerprint,
    /// Its fingerprint cannot authenticate a certificate (not SHA-256).
    #[error(transparent)]
    Fingerprint(#[from] crate::channel::FingerprintError),
    /// The two `setup` values give no DTLS client and server.
    #[error(transparent)]
    Setup(#[from] crate::jingle::DtlsError),
}

/// The peer's data-channel parameters from its transport, and our DTLS role from the two
/// `setup` values (RFC 8842 §5.3).
fn channel_params(
    peer: &DataChannelTransport,
    offer: Setup,
    answer: Setup,
    local_offered: bool,
) -> ChannelParams {
    let fp = peer
        .fingerprint()
        .ok_or(ChannelNegotiation::NoFingerprint)?;
    fp.fingerprint.check_supported()?;
    let fingerprint = fp.fingerprint.clone();
    let role = dtls_role(offer, answer, local_offered)?;
    Ok((
        RemoteParameters {
            fingerprint,
            max_message_size: peer.max_message_size_or_default(),
            sctp_port: Some(peer.sctp_port_or_default()),
        },
        role,
    ))
}

/// Our transport for an offer or answer: ICE-UDP, wrapped with our fingerprint when `setup` is
/// given.
fn our_transport(
    creds: &Credentials,
    cands: Vec<IceUdpCandidate>,
    certificate: Option<&Certificate>,
    setup: Option<Setup>,
    max_message_size: u32,
) -> Transport {
    let ice = IceUdpTransport::new(creds, cands);
    match (certificate, setup) {
        (Some(cert), Some(setup)) => {
            let fp = DtlsFingerprint::new(setup, cert.fingerprint());
            let mut t = DataChannelTransport::with_fingerprint(ice, fp);
            t.max_message_size = Some(max_message_size);
            Transport::DataChannel(t)
        }
        _ => Transport::IceUdp(ice),
    }
}

/// A `connect` call waiting for the session that replaces its offer.
type Waiter = oneshot::Sender<Result<JingleSession, JingleRuntimeError>>;

/// Where the In-Band Bytestreams fallback of a session stands.
#[derive(Debug, Clone, PartialEq)]
enum Fallback {
    /// Nothing proposed.
    None,
    /// The peer proposed this transport (we answer it).
    Offered(IbbTransport),
    /// The peer accepted our proposal, as this transport.
    Accepted(IbbTransport),
    /// The peer rejected our proposal.
    Rejected,
}

/// What the extension keeps per session.
struct Slot {
    /// The session's ICE connection, once its signalling is attached (see
    /// [`SessionSignalling`]).
    ice: Option<Arc<IceConnection>>,
    /// Remote transports received before the ICE connection exists (trickle before accept).
    early: Vec<(IceUdpTransport, bool)>,
    /// Set once the session has ended.
    ended: watch::Sender<Option<Reason>>,
    /// Session-info payloads for the application.
    info: mpsc::Sender<Element>,
    info_rx: Option<mpsc::Receiver<Element>>,
    /// Accepted by the peer (initiator side).
    accepted: watch::Sender<bool>,
    /// Candidates already signalled.
    sent: HashSet<(SocketAddr, u16)>,
    /// The description offered (to accept the peer's session in its place after a tie-break).
    description: Option<Element>,
    /// Waiting `connect` call to hand a replacement session to after a lost tie-break.
    replaced: Option<Waiter>,
    /// Stanzas sent to the peer about this session.
    stanzas: Arc<AtomicU64>,
    /// The peer's offer (responder side).
    offer: Vec<Content>,
    /// Taken over by a `connect` call after a tie-break; not for `next_incoming`.
    claimed: bool,
    /// Data-channel parameters, once both transports are known (data-channel sessions only).
    channel: Option<ChannelParams>,
    /// ICE connected (a later ICE failure ends the session instead of falling back).
    established: bool,
    /// The IBB fallback's progress.
    fallback: watch::Sender<Fallback>,
    /// The application description of the peer's `session-accept` (initiator side).
    answer: Option<Element>,
    /// The session's In-Band Bytestream, once it fell back.
    ibb: Option<Arc<IbbShared>>,
}

struct State {
    mgr: SessionManager,
    slots: HashMap<SessionKey, Slot>,
    /// Sessions that replace one of our offers after a lost tie-break: the new key, with the
    /// waiter and the description.
    replacements: HashMap<SessionKey, (Waiter, Option<Element>)>,
}

struct Inner {
    state: Mutex<State>,
    config: JingleRuntimeConfig,
    /// Our DTLS certificate (one per extension); `None` if it could not be made, in which case
    /// only plain ICE-UDP is offered and accepted.
    certificate: Option<Certificate>,
    /// STUN and TURN servers for new sessions (replaceable at run time).
    servers: Mutex<(Vec<SocketAddr>, Vec<TurnConfig>)>,
    outgoing: mpsc::Sender<Element>,
    incoming: mpsc::Sender<IncomingSession>,
    wake: Arc<Notify>,
    dropped: AtomicU64,
    /// Stanzas refused for breaking [`StanzaLimits::DEFAULT`].
    rejected: AtomicU64,
    /// Sessions whose owner dropped them while live ([`EndOnDrop`]), ended by the timer task
    /// (a drop may happen where the state is locked). At most one entry per session.
    abandoned: Mutex<Vec<EndOnDrop>>,
    /// The stream's side: what waits to be sent, our unanswered requests, directed presences.
    link: Mutex<Link>,
    /// Wakes [`JingleRuntime::next_outgoing`] when the link changed.
    link_wake: Notify,
    /// What we advertise (XEP-0030, XEP-0115).
    features: Features,
    /// The XEP-0215 queries.
    services: Mutex<ServicesState>,
    /// Whether an XEP-0215 query (or resolving its answer) is under way.
    services_busy: watch::Sender<bool>,
    /// Wakes the XEP-0215 refresh task.
    services_wake: Notify,
}

/// The extension's view of the XMPP stream.
struct Link {
    outbox: Outbox,
    /// Between [`JingleRuntime::stream_lost`] and [`JingleRuntime::stream_online`], stanzas are kept.
    online: bool,
}

/// What the last XEP-0215 query gave.
#[derive(Debug, Clone, Default)]
pub struct DiscoveredServices {
    /// Usable servers (manual ones not included).
    pub servers: IceServers,
    /// Services skipped or unusable, with the reason.
    pub problems: Vec<String>,
    /// When the credentials must be fetched again.
    pub refresh_at: Option<SystemTime>,
    /// Whether the server answered that it offers none (not an error).
    pub none_offered: bool,
}

/// Where the XEP-0215 queries stand.
#[derive(Default)]
struct ServicesState {
    /// The id of the query on the wire and when it was sent.
    pending: Option<(String, Instant)>,
    /// When to ask again.
    next_query: Option<Instant>,
    /// Queries made so far (for their ids).
    queries: u64,
    found: DiscoveredServices,
}

/// The Jingle ICE-UDP extension for one local full JID (see the module documentation).
pub struct JingleRuntime {
    inner: Arc<Inner>,
    outgoing: tokio::sync::Mutex<mpsc::Receiver<Element>>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<IncomingSession>>,
    timer: tokio::task::JoinHandle<()>,
    services_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for JingleRuntime {
    fn drop(&mut self) {
        self.timer.abort();
        if let Some(t) = &self.services_task {
            t.abort();
        }
    }
}

impl JingleRuntime {
    /// Starts the extension for `local`, our full JID as bound on the XMPP connection. Must be
    /// called inside a tokio runtime.
    pub fn new(local: FullJid, config: JingleRuntimeConfig) -> Self {
        let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
        let mut features = Features::new(config.identity.clone(), &config.caps_node);
        for f in &config.extra_features {
            features.add_feature(f);
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                mgr: SessionManager::new(local, config.session.clone()),
                slots: HashMap::new(),
                replacements: HashMap::new(),
            }),
            servers: Mutex::new((config.stun_servers.clone(), config.turn_servers.clone())),
            certificate: match Certificate::generate() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "no DTLS certificate: plain ICE-UDP only");
                    None
                }
            },
            outgoing: out_tx,
            incoming: in_tx,
            wake: Arc::new(Notify::new()),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            abandoned: Mutex::new(Vec::new()),
            link: Mutex::new(Link {
                outbox: Outbox::new(config.outbox_capacity, config.peer_wait),
                online: true,
            }),
            link_wake: Notify::new(),
            features,
            services: Mutex::new(ServicesState::default()),
            services_busy: watch::channel(false).0,
            services_wake: Notify::new(),
            config,
        });
        let timer = tokio::spawn(run_timers(Arc::downgrade(&inner)));
        let services_task = inner
            .config
            .discover_services
            .then(|| tokio::spawn(run_services(Arc::downgrade(&inner))));
        JingleRuntime {
            inner,
            outgoing: tokio::sync::Mutex::new(out_rx),
            incoming: tokio::sync::Mutex::new(in_rx),
            timer,
            services_task,
        }
    }

    /// Our full JID.
    pub fn local_jid(&self) -> FullJid {
        self.inner.lock().mgr.local_jid().clone()
    }

    /// Replaces the STUN and TURN servers used by sessions opened from now on (for example
    /// after a XEP-0215 query, or when its credentials were refreshed). Running sessions get
    /// the TURN servers too: new credentials for a server they use replace the old ones, and
    /// their allocations that gave up because the server refused the old ones (time-limited
    /// credentials that expired) start again.
    pub fn set_ice_servers(&self, stun: Vec<SocketAddr>, turn: Vec<TurnConfig>) {
        self.inner.set_ice_servers(stun, turn);
    }

    /// Takes a stanza received on the XMPP connection; returns whether it was taken (the caller
    /// handles the others, and answers an iq request nobody took, for example with
    /// [`JingleRuntime::refuse_unhandled`]). Unavailable presence is looked at but not taken.
    ///
    /// Taken besides Jingle and In-Band Bytestream stanzas: disco#info queries to us (XEP-0030,
    /// and on our XEP-0115 caps node), answered with [`JingleRuntime::features`]; XEP-0215 pushes
    /// (acknowledged) and the answers to our own XEP-0215 queries; the answers to the disco#info
    /// probes of [`JingleRuntime::stream_online`]; and a server's bounce of one of our Jingle
    /// requests while its peer is briefly offline (the request is sent again, see
    /// [`Outbox`]). A presence error (from a server, RFC 6121 §4.6.3) is not word from the peer
    /// and is left to the caller.
    ///
    /// A stanza beyond [`StanzaLimits::DEFAULT`] (nested too deep, too many elements, too
    /// large) is taken whatever it holds: an iq request is answered with
    /// `<policy-violation/>`, anything else is dropped, and both are counted
    /// ([`JingleRuntime::rejected_stanzas`]). The caller must not walk, clone or print such a
    /// stanza either, and should drop it with [`crate::jingle::dismantle`]: minidom recurses once
    /// per level in all of these.
    pub fn handle_stanza(&self, stanza: &Element) -> bool {
        if let Err(exceeded) = StanzaLimits::DEFAULT.check(stanza) {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(from = ?stanza.attr("from"), %exceeded, "stanza refused");
            if let Some(error) = limit_error(stanza, exceeded) {
                self.inner.send(error);
            }
            return true;
        }
        let now = Instant::now();
        if self.inner.link().outbox.answer(stanza, now) {
            self.inner.link_wake.notify_one();
            return true;
        }
        if self.inner.services_answer(stanza) {
            return true;
        }
        if stanza.name() == "presence" && stanza.attr("type") == Some("error") {
            return false;
        }
        let mut st = self.inner.lock();
        let taken = st.mgr.handle_stanza(stanza, now);
        self.inner.process(&mut st);
        let streams: Vec<Arc<IbbShared>> = if taken {
            Vec::new()
        } else {
            st.slots.values().filter_map(|s| s.ibb.clone()).collect()
        };
        drop(st);
        self.inner.wake.notify_one();
        // In-Band Bytestream stanzas of fallen-back sessions.
        if taken || streams.iter().any(|ibb| ibb.handle_iq(stanza)) {
            return true;
        }
        if stanza
            .attr("id")
            .is_some_and(|id| id.starts_with(PROBE_ID_PREFIX))
            && matches!(iq_type(stanza), Some(IqType::Result | IqType::Error))
        {
            tracing::info!(from = ?stanza.attr("from"), kind = ?stanza.attr("type"), "a session peer answered after our new stream");
            return true;
        }
        if let Some(reply) = disco::answer_info_query(stanza, &self.inner.features)
            .or_else(|| extdisco::push_ack(stanza))
        {
            self.inner.send(reply);
            return true;
        }
        false
    }

    /// Answers an iq request (get or set) that nobody handled with `<service-unavailable/>`
    /// (RFC 6120 §8.4), through [`JingleRuntime::next_outgoing`]; returns whether `stanza` was such a
    /// request. Call it for every stanza that neither [`JingleRuntime::handle_stanza`] nor the
    /// application took.
    pub fn refuse_unhandled(&self, stanza: &Element) -> bool {
        if stanza.name() != "iq" || !matches!(iq_type(stanza), Some(IqType::Get | IqType::Set)) {
            return false;
        }
        self.inner
            .send(iq_error(stanza, Condition::ServiceUnavailable, None, None));
        true
    }

    /// The next stanza to send on the XMPP connection; `None` once the extension is dropped.
    ///
    /// Everything the extension sends passes through its [`Outbox`]: the stanza returned is
    /// counted as sent (an iq request to a full JID is remembered until answered, a directed
    /// presence until a new stream). Between [`JingleRuntime::stream_lost`] and
    /// [`JingleRuntime::stream_online`] nothing is returned: stanzas are kept (at most
    /// [`JingleRuntimeConfig::outbox_capacity`]) and go out on the new stream, after our unanswered
    /// requests. Keep calling it all the time, also while offline: it also sends again the
    /// Jingle requests the server bounced.
    pub async fn next_outgoing(&self) -> Option<Element> {
        let mut rx = self.outgoing.lock().await;
        loop {
            let retry_at = {
                let now = Instant::now();
                let mut link = self.inner.link();
                link.outbox.due(now);
                if link.online {
                    if let Some(stanza) = link.outbox.pop() {
                        link.outbox.sent(&stanza, now);
                        return Some(stanza);
                    }
                }
                link.outbox.next_retry()
            };
            tokio::select! {
                _ = self.inner.link_wake.notified() => {}
                stanza = rx.recv() => {
                    let stanza = stanza?;
                    let mut link = self.inner.link();
                    if link.online && link.outbox.queued() == 0 {
                        link.outbox.sent(&stanza, Instant::now());
                        return Some(stanza);
                    }
                    if !link.outbox.push(stanza) {
                        tracing::warn!(
                            dropped = link.outbox.dropped(),
                            "the offline queue is full: the oldest stanza was dropped"
                        );
                    }
                }
                _ = sleep_until(retry_at), if retry_at.is_some() => {}
            }
        }
    }

    /// A stanza from [`JingleRuntime::next_outgoing`] could not be sent after all (the stream broke
    /// while sending it): it goes back first in line. Optional: after
    /// [`JingleRuntime::stream_lost`] our unanswered requests are sent again anyway, but other
    /// stanzas (an iq result, a presence) only through this.
    pub fn unsent(&self, stanza: Element) {
        self.inner.link().outbox.unsent(stanza);
        self.inner.link_wake.notify_one();
    }

    /// The XMPP stream is up: call it when a new stream is online (not after a XEP-0198
    /// resumption, which loses nothing), also the first time. Our announced presence goes out
    /// first when [`JingleRuntimeConfig::presence`] is set, then our directed presences to session
    /// peers (RFC 6121 §4.6: a server keeps them per stream), each followed by a disco#info
    /// probe sent until the peer answers (its answer tells the sessions that the peer is there,
    /// XEP-0166 §6.7), then our requests that got no answer on the old stream, then what was
    /// kept meanwhile. With [`JingleRuntimeConfig::discover_services`], the STUN/TURN services of
    /// our server are asked for (XEP-0215) and used for new sessions (and their refreshed
    /// credentials by running ones), and asked for again before they expire.
    ///
    /// A new stream without [`JingleRuntime::stream_lost`] before it counts as a loss first. The
    /// stream must be bound to our full JID ([`JingleRuntime::local_jid`]): peers know our sessions
    /// by it (XEP-0166 §7.1).
    pub fn stream_online(&self) {
        let now = Instant::now();
        {
            let mut link = self.inner.link();
            if link.online {
                link.outbox.lost(now);
            }
            link.online = true;
            link.outbox.reannounce();
            if self.inner.config.presence {
                let mut presence = Element::bare("presence", NS_CLIENT);
                presence.append_child(self.inner.features.caps_element());
                link.outbox.unsent(presence);
            }
        }
        self.inner.link_wake.notify_one();
        if self.inner.config.discover_services {
            self.inner.query_services(now);
        }
    }

    /// The XMPP stream is lost: from now on [`JingleRuntime::next_outgoing`] keeps what the
    /// extension sends until [`JingleRuntime::stream_online`], and our unanswered requests go back
    /// in line. The sessions carry on (their peer-to-peer paths do not need the server).
    pub fn stream_lost(&self) {
        {
            let mut link = self.inner.link();
            if link.online {
                link.online = false;
                link.outbox.lost(Instant::now());
            }
        }
        self.inner.services().pending = None;
        self.inner.services_busy.send_replace(false);
        self.inner.link_wake.notify_one();
    }

    /// Stanzas waiting to be sent (kept while offline, or not yet taken from
    /// [`JingleRuntime::next_outgoing`]).
    pub fn queued_stanzas(&self) -> usize {
        let in_channel = self.inner.outgoing.max_capacity() - self.inner.outgoing.capacity();
        self.inner.link().outbox.queued() + in_channel
    }

    /// Our Jingle requests that have not reached their peer yet (sent and not answered, or
    /// bounced and waiting to be sent again). A client logging off should wait for them for
    /// a while, or a peer briefly offline never gets our last `session-terminate`.
    pub fn undelivered_requests(&self) -> usize {
        self.inner.link().outbox.undelivered_jingle()
    }

    /// What we advertise in disco#info (XEP-0030) and caps (XEP-0115).
    pub fn features(&self) -> &Features {
        &self.inner.features
    }

    /// The XEP-0115 `<c/>` element for our presence (see [`JingleRuntimeConfig::presence`]).
    pub fn caps_element(&self) -> Element {
        self.inner.features.caps_element()
    }

    /// What the last XEP-0215 query gave.
    pub fn discovered_services(&self) -> DiscoveredServices {
        self.inner.services().found.clone()
    }

    /// Waits until no XEP-0215 query is under way (at most [`SERVICES_TIMEOUT`] plus the time
    /// to resolve the servers' names): after [`JingleRuntime::stream_online`], the discovered
    /// servers are in use once it returns.
    pub async fn services_settled(&self) {
        let mut busy = self.inner.services_busy.subscribe();
        let _ = busy.wait_for(|b| !*b).await;
    }

    /// Stanzas dropped: the application did not take them fast enough, or the offline queue
    /// was full.
    pub fn dropped_stanzas(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed) + self.inner.link().outbox.dropped()
    }

    /// Received stanzas refused for breaking [`StanzaLimits::DEFAULT`] (see
    /// [`JingleRuntime::handle_stanza`]).
    pub fn rejected_stanzas(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// The next session offered by a peer (already acknowledged; accept or decline it).
    pub async fn next_incoming(&self) -> Option<IncomingSession> {
        let mut rx = self.incoming.lock().await;
        loop {
            let offer = rx.recv().await?;
            // Skip offers that ended meanwhile or were taken over by a connect() call.
            let live = self
                .inner
                .lock()
                .slots
                .get(&offer.key)
                .is_some_and(|s| !s.claimed);
            if live {
                return Some(offer);
            }
        }
    }

    /// Offers a session carrying `description` to `peer` (a full JID whose support was checked)
    /// and waits until it is accepted and ICE has connected.
    pub async fn connect(
        &self,
        peer: FullJid,
        description: Element,
    ) -> Result<JingleSession, JingleRuntimeError> {
        self.connect_with_senders(peer, description, Senders::Both)
            .await
    }

    /// [`JingleRuntime::connect`] with the content's `senders` (XEP-0166 §7.3): `Responder` asks
    /// the peer for data, as a XEP-0234 file request does.
    pub async fn connect_with_senders(
        &self,
        peer: FullJid,
        description: Element,
        senders: Senders,
    ) -> Result<JingleSession, JingleRuntimeError> {
        let started = Instant::now();
        let conn = Arc::new(self.inner.start_ice(Role::Controlling).await?);
        let creds = conn.local_credentials();
        let (replaced_tx, replaced_rx) = oneshot::channel();
        let (key, ended_rx, accepted_rx, stanzas) = {
            let mut st = self.inner.lock();
            let mut sent = HashSet::new();
            let cands = signal_candidates(&conn, &mut sent);
            let setup = self.inner.config.data_channels.then_some(Setup::Actpass);
            let mut content = Content::new(
                CONTENT_NAME,
                description.clone(),
                our_transport(
                    &creds,
                    cands,
                    self.inner.certificate.as_ref(),
                    setup,
                    self.inner.config.channels.association.max_message_size,
                ),
            );
            content.senders = senders;
            self.inner.directed_presence(&peer);
            let key = st.mgr.initiate(peer, vec![content], Instant::now())?;
            let (slot, ended_rx, accepted_rx) = Slot::new(Some(description), sent);
            let stanzas = slot.stanzas.clone();
            let mut slot = slot;
            slot.replaced = Some(replaced_tx);
            st.slots.insert(key.clone(), slot);
            self.inner.process(&mut st);
            (key, ended_rx, accepted_rx, stanzas)
        };
        self.inner.wake.notify_one();
        attach_signalling(&self.inner, &key, &conn).await;
        {
            let mut st = self.inner.lock();
            if let Some(slot) = st.slots.get_mut(&key) {
                for (t, restart) in slot.early.drain(..) {
                    signal_remote(&conn, &t, restart);
                }
                slot.ice = Some(conn.clone());
            }
        }
        let mut session = JingleSession {
            key: key.clone(),
            conn: Some(conn),
            inner: self.inner.clone(),
            ended: ended_rx,
            info: tokio::sync::Mutex::new(self.inner.take_info(&key)),
            started,
            established_in: Duration::ZERO,
            stanzas,
            channels: None,
            ibb: None,
            _end_on_drop: EndOnDrop::new(&self.inner, &key, ReasonCondition::Cancel, true),
        };
        match session
            .establish(accepted_rx, self.inner.config.connect_timeout)
            .await
        {
            Ok(()) => {
                session.established_in = started.elapsed();
                session.start_channels().await?;
                Ok(session)
            }
            Err(JingleRuntimeError::Terminated(r))
                if matches!(r.condition, ReasonCondition::AlternativeSession(_)) =>
            {
                // Lost the tie-break: the peer's session replaces ours.
                match replaced_rx.await {
                    Ok(replacement) => replacement,
                    Err(_) => Err(JingleRuntimeError::Terminated(r)),
                }
            }
            Err(e @ JingleRuntimeError::Terminated(_)) => Err(e),
            Err(e) => {
                session.fall_back(true, e).await?;
                session.established_in = started.elapsed();
                Ok(session)
            }
        }
    }

    /// Ends every session with `reason` (for example `<gone/>` before logging off).
    pub fn terminate_all(&self, reason: Reason) {
        // Sessions the application dropped end with their own reason first.
        self.inner.end_abandoned();
        let mut st = self.inner.lock();
        let keys: Vec<SessionKey> = st.mgr.sessions().cloned().collect();
        for k in keys {
            let _ = st.mgr.terminate(&k, reason.clone(), Instant::now());
        }
        self.inner.process(&mut st);
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.inner.lock().mgr.sessions().count()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn services(&self) -> MutexGuard<'_, ServicesState> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Our server's domain (where XEP-0215 services are asked for).
    fn domain(&self) -> BareJid {
        BareJid::from_parts(None, self.lock().mgr.local_jid().domain())
    }

    /// Sends a XEP-0215 query to our server (replacing one under way).
    fn query_services(&self, now: Instant) {
        let id = {
            let mut sv = self.services();
            sv.queries += 1;
            let id = format!("{SERVICES_ID_PREFIX}{}", sv.queries);
            sv.pending = Some((id.clone(), now));
            sv.next_query = None;
            id
        };
        self.services_busy.send_replace(true);
        self.send(extdisco::services_query(&id, &self.domain()));
        self.services_wake.notify_one();
    }

    /// Takes the answer to our XEP-0215 query: installs the servers it names (resolved by a
    /// task) and schedules the next query. Whether `stanza` was that answer.
    fn services_answer(self: &Arc<Self>, stanza: &Element) -> bool {
        if !matches!(iq_type(stanza), Some(IqType::Result | IqType::Error)) {
            return false;
        }
        let Some(id) = stanza.attr("id") else {
            return false;
        };
        let domain = self.domain();
        let from_server = match stanza.attr("from").filter(|f| !f.is_empty()) {
            None => true,
            Some(f) => Jid::new(f)
                .is_ok_and(|f| f == domain || f.to_bare() == self.lock().mgr.local_jid().to_bare()),
        };
        {
            let mut sv = self.services();
            if !from_server || sv.pending.as_ref().is_none_or(|(p, _)| p != id) {
                return false;
            }
            sv.pending = None;
        }
        let found = match extdisco::services_from_response(stanza) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("XEP-0215 answer unreadable: {e}");
                self.services_failed();
                return true;
            }
        };
        let inner = self.clone();
        tokio::spawn(async move {
            let plan = extdisco::plan(&found.services);
            let (servers, problems) = extdisco::resolve(&plan).await;
            let mut out = DiscoveredServices {
                none_offered: found.services.is_empty(),
                refresh_at: extdisco::refresh_at(&found.services, SystemTime::now()),
                ..DiscoveredServices::default()
            };
            out.problems
                .extend(found.skipped.iter().map(|s| format!("{s:?}")));
            out.problems
                .extend(plan.unusable.iter().map(|u| format!("{u:?}")));
            out.problems.extend(problems.iter().map(|p| p.to_string()));
            let mut stun = inner.config.stun_servers.clone();
            let mut turn = inner.config.turn_servers.clone();
            stun.extend(servers.stun.iter().copied());
            turn.extend(servers.turn.iter().cloned());
            inner.set_ice_servers(stun, turn);
            out.servers = servers;
            let next = out
                .refresh_at
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::from_secs(3600))
                .max(Duration::from_secs(5));
            {
                let mut sv = inner.services();
                sv.found = out;
                if sv.pending.is_none() {
                    sv.next_query = Some(Instant::now() + next);
                }
            }
            inner.services_busy.send_replace(false);
            inner.services_wake.notify_one();
        });
        true
    }

    /// The XEP-0215 query failed: ask again after [`SERVICES_RETRY`].
    fn services_failed(&self) {
        self.services().next_query = Some(Instant::now() + SERVICES_RETRY);
        self.services_busy.send_replace(false);
        self.services_wake.notify_one();
    }

    /// See [`JingleRuntime::set_ice_servers`].
    fn set_ice_servers(&self, stun: Vec<SocketAddr>, turn: Vec<TurnConfig>) {
        *self.servers.lock().unwrap_or_else(|e| e.into_inner()) = (stun, turn.clone());
        let st = self.lock();
        for slot in st.slots.values() {
            if let Some(ice) = &slot.ice {
                ice.signal(Signal::TurnServers(turn.clone()));
            }
        }
    }

    async fn start_ice(&self, role: Role) -> Result<IceConnection, JingleRuntimeError> {
        let mut b = (self.config.builder)(role);
        let (stun, turn) = self
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in stun {
            b = b.stun_server(s);
        }
        for t in turn {
            b = b.turn_server(t);
        }
        b.start()
            .await
            .map_err(|e| JingleRuntimeError::Ice(IceFailure::Connection(e)))
    }

    /// Sends directed presence to a session's peer (RFC 6121 §4.6), so that its server tells
    /// it when we go offline even without a roster subscription, and ours tells us (XEP-0166
    /// §6.7 relies on unavailable presence).
    fn directed_presence(&self, peer: &FullJid) {
        let mut p = Element::bare("presence", crate::xmpp::stanza::NS_CLIENT);
        crate::xmpp::stanza::set_attr(&mut p, "to", peer.as_str());
        if self.outgoing.try_send(p).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn take_info(&self, key: &SessionKey) -> mpsc::Receiver<Element> {
        let mut st = self.lock();
        st.slots
            .get_mut(key)
            .and_then(|s| s.info_rx.take())
            .unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Ends the sessions whose owners dropped them (see [`EndOnDrop`]) and are still live: an
    /// offer nobody answered with `<decline/>`, an accepted or initiated session with
    /// `<cancel/>`. A copy of an offer that another party took over ends nothing.
    fn end_abandoned(self: &Arc<Self>) {
        let abandoned =
            std::mem::take(&mut *self.abandoned.lock().unwrap_or_else(|e| e.into_inner()));
        if abandoned.is_empty() {
            return;
        }
        let mut st = self.lock();
        for mut gone in abandoned {
            gone.armed = false;
            gone.end(&mut st);
        }
        self.process(&mut st);
    }

    /// Queues a stanza for the application to send; counted and dropped when the queue is full.
    fn send(&self, stanza: Element) {
        if self.outgoing.try_send(stanza).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("outgoing stanza queue full: stanza dropped");
        }
    }

    /// Sends what the session manager emitted and dispatches its events. Called with the
    /// state locked after every input.
    fn process(self: &Arc<Self>, st: &mut State) {
        while let Some(stanza) = st.mgr.poll_transmit() {
            if let Some(to) = stanza.attr("to") {
                for (k, slot) in st.slots.iter() {
                    if k.peer.as_str() == to {
                        slot.stanzas.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            self.send(stanza);
        }
        while let Some(event) = st.mgr.poll_event() {
            self.dispatch(st, event);
        }
    }

    fn dispatch(self: &Arc<Self>, st: &mut State, event: SessionEvent) {
        match event {
            SessionEvent::Incoming { key, contents } => {
                // No directed presence yet: a stranger learns nothing of us (our presence, and
                // later that we went offline) before the user accepts its offer.
                let (mut slot, _, _) = Slot::new(None, HashSet::new());
                // No receiver exists yet: `send` would not store the value.
                slot.accepted.send_replace(true);
                if let Some(t) = our_content(&contents).and_then(Content::ice_udp) {
                    slot.early.push((t.clone(), false));
                }
                slot.offer = contents;
                let replacement = st.replacements.remove(&key);
                slot.claimed = replacement.is_some();
                let offer = slot.incoming(key.clone(), self);
                st.slots.insert(key.clone(), slot);
                if let Some((waiter, description)) = replacement {
                    // Our offer lost the tie-break: accept theirs for the waiting connect().
                    take_over(offer, waiter, description);
                } else if self.incoming.try_send(offer).is_err() {
                    let _ = st.mgr.terminate(
                        &key,
                        Reason::with_text(ReasonCondition::Busy, "too many pending offers"),
                        Instant::now(),
                    );
                }
            }
            SessionEvent::Accepted { key, contents } => {
                if let Some(slot) = st.slots.get_mut(&key) {
                    let content = our_content(&contents);
                    if let Some(Transport::DataChannel(t)) =
                        content.and_then(|c| c.transport.as_ref())
                    {
                        slot.channel = Some(match t.fingerprint() {
                            Some(fp) => channel_params(t, Setup::Actpass, fp.setup, true),
                            None => Err(ChannelNegotiation::NoFingerprint),
                        });
                    }
                    if let Some(t) = content.and_then(Content::ice_udp) {
                        slot.remote(t.clone(), false);
                    }
                    slot.answer = content.and_then(|c| c.description.clone());
                    let _ = slot.accepted.send(true);
                }
            }
            SessionEvent::TransportInfo {
                key,
                transport,
                restart,
                ..
            } => {
                if let (Some(slot), Some(t)) = (st.slots.get_mut(&key), transport.ice_udp()) {
                    slot.remote(t.clone(), restart);
                }
            }
            SessionEvent::TransportReplace {
                key,
                content,
                transport,
            } => {
                let usable = st.slots.get(&key).and_then(|slot| {
                    let ibb = transport.ibb()?;
                    (self.config.ibb_fallback && !slot.established && slot.ibb.is_none())
                        .then(|| ibb.clone())
                });
                match (usable, st.slots.get(&key)) {
                    (Some(t), Some(slot)) => {
                        slot.fallback.send_replace(Fallback::Offered(t));
                    }
                    _ => {
                        let _ = st.mgr.reject_transport(&key, &content, Instant::now());
                    }
                }
            }
            SessionEvent::TransportAccepted { key, transport, .. } => {
                if let Some(slot) = st.slots.get(&key) {
                    slot.fallback.send_replace(match transport.ibb() {
                        Some(t) => Fallback::Accepted(t.clone()),
                        None => Fallback::Rejected,
                    });
                }
            }
            SessionEvent::TransportRejected { key, .. } => {
                if let Some(slot) = st.slots.get(&key) {
                    slot.fallback.send_replace(Fallback::Rejected);
                }
            }
            SessionEvent::Info { key, payload } => {
                if let Some(slot) = st.slots.get(&key) {
                    let _ = slot.info.try_send(payload);
                }
            }
            SessionEvent::RequestFailed { key, action, error } => {
                tracing::debug!(%key, ?action, ?error, "Jingle request failed");
            }
            SessionEvent::Terminated { key, reason, .. } => {
                if let Some(mut slot) = st.slots.remove(&key) {
                    if let ReasonCondition::AlternativeSession(sid) = &reason.condition {
                        if let Some(waiter) = slot.replaced.take() {
                            let new_key = SessionKey {
                                peer: key.peer.clone(),
                                sid: sid.clone(),
                            };
                            match st.slots.get_mut(&new_key) {
                                // The peer's offer is already here (queued for next_incoming):
                                // take it over for the waiting connect().
                                Some(other) if !other.claimed => {
                                    other.claimed = true;
                                    let offer = other.incoming(new_key, self);
                                    take_over(offer, waiter, slot.description.clone());
                                }
                                _ => {
                                    st.replacements
                                        .insert(new_key, (waiter, slot.description.clone()));
                                }
                            }
                        }
                    }
                    if let Some(ice) = &slot.ice {
                        ice.signal(Signal::Close);
                    }
                    if let Some(ibb) = &slot.ibb {
                        ibb.abort();
                    }
                    let _ = slot.ended.send(Some(reason));
                }
            }
        }
    }
}

impl Slot {
    fn new(
        description: Option<Element>,
        sent: HashSet<(SocketAddr, u16)>,
    ) -> (Slot, watch::Receiver<Option<Reason>>, watch::Receiver<bool>) {
        let (ended, ended_rx) = watch::channel(None);
        let (accepted, accepted_rx) = watch::channel(false);
        let (info, info_rx) = mpsc::channel(64);
        (
            Slot {
                ice: None,
                early: Vec::new(),
                ended,
                info,
                info_rx: Some(info_rx),
                accepted,
                sent,
                description,
                replaced: None,
                stanzas: Arc::new(AtomicU64::new(0)),
                offer: Vec::new(),
                claimed: false,
                channel: None,
                established: false,
                fallback: watch::channel(Fallback::None).0,
                answer: None,
                ibb: None,
            },
            ended_rx,
            accepted_rx,
        )
    }

    /// The peer's offer this slot holds, as an [`IncomingSession`] for `key`.
    fn incoming(&self, key: SessionKey, inner: &Arc<Inner>) -> IncomingSession {
        IncomingSession {
            end_on_drop: EndOnDrop::new(inner, &key, ReasonCondition::Decline, self.claimed),
            key,
            contents: self.offer.clone(),
            inner: inner.clone(),
            ended: self.ended.subscribe(),
            accepted: self.accepted.subscribe(),
            stanzas: self.stanzas.clone(),
            received: Instant::now(),
        }
    }

    fn remote(&mut self, t: IceUdpTransport, restart: bool) {
        match &self.ice {
            Some(ice) => signal_remote(ice, &t, restart),
            None => self.early.push((t, restart)),
        }
    }
}

/// The content our sessions use: the one named [`CONTENT_NAME`], or the only one.
fn our_content(contents: &[Content]) -> Option<&Content> {
    contents
        .iter()
        .find(|c| c.name == CONTENT_NAME || contents.len() == 1)
}

/// Accepts the peer's offer that replaced ours after a tie-break, for the `connect` call
/// waiting on `waiter`, with the description we had offered.
fn take_over(offer: IncomingSession, waiter: Waiter, description: Option<Element>) {
    tokio::spawn(async move {
        let desc = description
            .or_else(|| offer.description().cloned())
            .unwrap_or_else(|| Element::bare("description", "urn:invalid"));
        let _ = waiter.send(offer.accept(desc).await);
    });
}

/// XEP-0176 candidates for the local candidates not signalled yet.
fn signal_candidates(
    conn: &IceConnection,
    sent: &mut HashSet<(SocketAddr, u16)>,
) -> Vec<IceUdpCandidate> {
    conn.local_candidates()
        .into_iter()
        .filter(|c| sent.insert((c.address, c.component)))
        .map(|c| IceUdpCandidate::new(c, candidate_id()))
        .collect()
}

fn candidate_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(10)
        .map(char::from)
        .collect()
}

/// Sleeps until `at`, or forever without one (for a disabled `select!` branch).
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Asks for the XEP-0215 services again when their credentials are about to expire, and
/// gives up on a query the server did not answer in [`SERVICES_TIMEOUT`].
async fn run_services(inner: std::sync::Weak<Inner>) {
    loop {
        let (at, notified) = {
            let Some(inner) = inner.upgrade() else { return };
            let now = Instant::now();
            let online = inner.link().online;
            let mut sv = inner.services();
            let timed_out = sv
                .pending
                .as_ref()
                .is_some_and(|(_, sent)| now >= *sent + SERVICES_TIMEOUT);
            let due = sv.pending.is_none() && sv.next_query.is_some_and(|t| now >= t);
            if timed_out {
                tracing::warn!("XEP-0215 query not answered in {SERVICES_TIMEOUT:?}");
                sv.pending = None;
                drop(sv);
                inner.services_failed();
                continue;
            }
            if due && online {
                drop(sv);
                inner.query_services(now);
                continue;
            }
            // Offline, a due query waits for stream_online (which asks anyway).
            let at = match &sv.pending {
                Some((_, sent)) => Some(*sent + SERVICES_TIMEOUT),
                None if online => sv.next_query,
                None => None,
            };
            drop(sv);
            (at, inner.clone())
        };
        tokio::select! {
            _ = sleep_until(at) => {}
            _ = notified.services_wake.notified() => {}
        }
    }
}

/// Runs the session manager's timers.
async fn run_timers(inner: std::sync::Weak<Inner>) {
    loop {
        let (deadline, notified) = {
            let Some(inner) = inner.upgrade() else { return };
            inner.end_abandoned();
            let st = inner.lock();
            let streams = st.slots.values().filter_map(|s| s.ibb.as_ref());
            let deadline = streams
                .filter_map(|ibb| ibb.poll_timeout())
                .chain(st.mgr.poll_timeout())
                .min();
            drop(st);
            (deadline, inner.clone())
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {
                let now = Instant::now();
                let mut st = notified.lock();
                st.mgr.handle_timeout(now);
                notified.process(&mut st);
                let streams: Vec<Arc<IbbShared>> =
                    st.slots.values().filter_map(|s| s.ibb.clone()).collect();
                drop(st);
                for ibb in streams {
                    ibb.handle_timeout(now);
                }
            }
            _ = notified.wake.notified() => {}
        }
        drop(notified);
    }
}

/// Hands the peer's credentials and candidates of `t` to the session's ICE driver task.
fn signal_remote(ice: &IceConnection, t: &IceUdpTransport, restart: bool) {
    ice.signal(Signal::Remote {
        credentials: t.credentials(),
        candidates: t.ice_candidates().cloned().collect(),
        restart,
    });
}

/// Attaches the session's signalling to its ICE connection: from now on the connection's
/// driver task, the one task of the session, trickles our candidates, signals restarts and
/// ends the session when ICE fails.
async fn attach_signalling(inner: &Arc<Inner>, key: &SessionKey, conn: &IceConnection) {
    let signalling = SessionSignalling {
        inner: inner.clone(),
        key: key.clone(),
    };
    // Fails only once the connection is closed, which ends the session another way.
    let _ = conn.attach_signalling(Box::new(signalling)).await;
}

/// The runtime's side of a session's ICE signalling, called by the connection's driver task
/// ([`Signalling`]).
struct SessionSignalling {
    inner: Arc<Inner>,
    key: SessionKey,
}

impl Signalling for SessionSignalling {
    fn local_candidate(&mut self, c: &Candidate) {
        let mut st = self.inner.lock();
        let fresh = st
            .slots
            .get_mut(&self.key)
            .is_some_and(|slot| slot.sent.insert((c.address, c.component)));
        if fresh {
            let cand = IceUdpCandidate::new(c.clone(), candidate_id());
            let _ =
                st.mgr
                    .add_local_candidates(&self.key, CONTENT_NAME, vec![cand], Instant::now());
            self.inner.process(&mut st);
        }
        drop(st);
        self.inner.wake.notify_one();
    }

    /// Signals the new credentials with every local candidate in a `transport-info`
    /// (XEP-0176 §5.6).
    fn restarted(&mut self, credentials: &Credentials, candidates: &[Candidate]) {
        let mut st = self.inner.lock();
        let cands = match st.slots.get_mut(&self.key) {
            Some(slot) => {
                slot.sent.clear();
                candidates
                    .iter()
                    .filter(|c| slot.sent.insert((c.address, c.component)))
                    .map(|c| IceUdpCandidate::new(c.clone(), candidate_id()))
                    .collect()
            }
            None => Vec::new(),
        };
        let _ = st.mgr.restart(
            &self.key,
            CONTENT_NAME,
            credentials.clone(),
            cands,
            Instant::now(),
        );
        self.inner.process(&mut st);
        drop(st);
        self.inner.wake.notify_one();
    }

    fn failed(&mut self) {
        let mut st = self.inner.lock();
        // Before the session is established, the fallback decides.
        let falls_back = falls_back_to_ibb(&self.inner.config, &st.mgr, &self.key)
            && st.slots.get(&self.key).is_some_and(|s| !s.established);
        if falls_back {
            return;
        }
        let _ = st.mgr.terminate(
            &self.key,
            Reason::with_text(ReasonCondition::FailedTransport, "ICE failed"),
            Instant::now(),
        );
        self.inner.process(&mut st);
        drop(st);
        self.inner.wake.notify_one();
    }
}

/// Whether a session whose ICE found no path falls back to In-Band Bytestreams: the fallback is
/// on and IBB is the next transport of the session layer's registry
/// ([`SessionManager::fallback_transport`]), the only fallback this runtime drives.
fn falls_back_to_ibb(config: &JingleRuntimeConfig, mgr: &SessionManager, key: &SessionKey) -> bool {
    config.ibb_fallback
        && mgr
            .fallback_transport(key, CONTENT_NAME)
            .is_some_and(|m| m.namespace() == crate::ibb::NS_JINGLE_IBB)
}

/// A session offered by a peer, acknowledged and waiting for the application's decision.
pub struct IncomingSession {
    key: SessionKey,
    contents: Vec<Content>,
    inner: Arc<Inner>,
    ended: watch::Receiver<Option<Reason>>,
    accepted: watch::Receiver<bool>,
    stanzas: Arc<AtomicU64>,
    received: Instant,
    end_on_drop: EndOnDrop,
}

impl std::fmt::Debug for IncomingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingSession")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl IncomingSession {
    /// The session (peer full JID and sid).
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// The offered contents.
    pub fn contents(&self) -> &[Content] {
        &self.contents
    }

    /// The application description of the offer.
    pub fn description(&self) -> Option<&Element> {
        self.contents.iter().find_map(|c| c.description.as_ref())
    }

    /// The `<security/>` element of the offer's content (XEP-0391 Jingle Encrypted Transports,
    /// such as an OMEMO-protected file transfer), if it has one: its data would be encrypted
    /// with a key this extension cannot read, so [`IncomingSession::accept`] refuses it.
    pub fn security(&self) -> Option<&Element> {
        self.contents.iter().find_map(|c| c.security.as_ref())
    }

    /// What [`IncomingSession::security`] names: its namespace with its `type` and `cipher`
    /// (XEP-0391 §5), for messages.
    pub fn security_summary(&self) -> Option<String> {
        self.security().map(|s| {
            let mut text = s.ns();
            for attr in ["type", "cipher"] {
                if let Some(v) = s.attr(attr) {
                    text.push_str(&format!(" {attr}={v}"));
                }
            }
            text
        })
    }

    /// Declines the offer (XEP-0166 §6.3, `<decline/>` unless another reason is given).
    pub fn decline(self, reason: Reason) {
        let mut st = self.inner.lock();
        let _ = st.mgr.terminate(&self.key, reason, Instant::now());
        self.inner.process(&mut st);
    }

    /// Accepts with our `description`, starts ICE (controlled) and waits until it connects.
    pub async fn accept(self, description: Element) -> Result<JingleSession, JingleRuntimeError> {
        if let Some(security) = self.security_summary() {
            // Accepting would claim encryption we cannot apply (XEP-0391 §6).
            self.decline(Reason::with_text(
                ReasonCondition::SecurityError,
                format!("{security} is not supported"),
            ));
            return Err(JingleRuntimeError::UnsupportedSecurity(security));
        }
        let started = self.received;
        // Now that the offer is wanted, its peer may hear when we go (RFC 6121 §4.6).
        self.inner.directed_presence(&self.key.peer);
        let ibb_offer = our_content(&self.contents)
            .and_then(|c| c.transport.as_ref())
            .and_then(Transport::ibb)
            .cloned();
        if let Some(offer) = ibb_offer {
            return self.accept_ibb(description, offer).await;
        }
        let conn = match self.inner.start_ice(Role::Controlled).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                let mut st = self.inner.lock();
                let _ = st.mgr.terminate(
                    &self.key,
                    Reason::with_text(ReasonCondition::FailedTransport, e.to_string()),
                    Instant::now(),
                );
                self.inner.process(&mut st);
                return Err(e);
            }
        };
        let creds = conn.local_credentials();
        attach_signalling(&self.inner, &self.key, &conn).await;
        let gone = !self.inner.lock().slots.contains_key(&self.key);
        if gone {
            conn.close().await;
            let reason = self
                .ended
                .borrow()
                .clone()
                .unwrap_or_else(|| Reason::new(ReasonCondition::Cancel));
            return Err(JingleRuntimeError::Terminated(reason));
        }
        {
            let mut st = self.inner.lock();
            let Some(slot) = st.slots.get_mut(&self.key) else {
                return Err(JingleRuntimeError::Closed);
            };
            for (t, restart) in slot.early.drain(..) {
                signal_remote(&conn, &t, restart);
            }
            slot.ice = Some(conn.clone());
            let cands = signal_candidates(&conn, &mut slot.sent);
            let offered = our_content(&self.contents);
            // Answer a data-channel offer in kind (setup from the offer's, RFC 8842 §5.3).
            let mut setup = None;
            if let (Some(Transport::DataChannel(t)), Some(_)) = (
                offered.and_then(|c| c.transport.as_ref()),
                self.inner.certificate.as_ref(),
            ) {
                let offer_setup = t.fingerprint().map_or(Setup::Actpass, |f| f.setup);
                match offer_setup.answer() {
                    Ok(answer) => {
                        setup = Some(answer);
                        slot.channel = Some(channel_params(t, offer_setup, answer, false));
                    }
                    Err(e) => slot.channel = Some(Err(e.into())),
                }
            }
            let mut content = offered.cloned().unwrap_or_else(|| {
                Content::new(
                    CONTENT_NAME,
                    description.clone(),
                    Transport::IceUdp(IceUdpTransport::new(&creds, Vec::new())),
                )
            });
            content.description = Some(description);
            content.transport = Some(our_transport(
                &creds,
                cands,
                self.inner.certificate.as_ref(),
                setup,
                self.inner.config.channels.association.max_message_size,
            ));
            st.mgr.accept(&self.key, vec![content], Instant::now())?;
            self.inner.process(&mut st);
        }
        self.inner.wake.notify_one();
        let mut session = JingleSession {
            key: self.key.clone(),
            conn: Some(conn),
            inner: self.inner.clone(),
            ended: self.ended,
            info: tokio::sync::Mutex::new(self.inner.take_info(&self.key)),
            started,
            established_in: Duration::ZERO,
            stanzas: self.stanzas,
            channels: None,
            ibb: None,
            _end_on_drop: self.end_on_drop.accepted(),
        };
        match session
            .establish(self.accepted, self.inner.config.connect_timeout)
            .await
        {
            Ok(()) => {
                session.established_in = started.elapsed();
                session.start_channels().await?;
            }
            Err(e @ JingleRuntimeError::Terminated(_)) => return Err(e),
            Err(e) => {
                session.fall_back(false, e).await?;
                session.established_in = started.elapsed();
            }
        }
        Ok(session)
    }
}

impl IncomingSession {
    /// Accepts an offer whose transport is In-Band Bytestreams (XEP-0261: what Dino, and
    /// Conversations over Tor, offer when nothing else fits): no ICE; the answer keeps the
    /// offer's stream id with the smaller block size, and the session is established when the
    /// initiator's `<open/>` arrives (XEP-0261 §2).
    async fn accept_ibb(
        self,
        description: Element,
        offer: IbbTransport,
    ) -> Result<JingleSession, JingleRuntimeError> {
        if !self.inner.config.ibb_fallback {
            let reason = Reason::with_text(
                ReasonCondition::UnsupportedTransports,
                "In-Band Bytestreams are turned off here",
            );
            self.decline(reason.clone());
            return Err(JingleRuntimeError::Terminated(reason));
        }
        let config = self.inner.config.ibb.clone();
        let block = offer.block_size.min(config.block_size);
        let peer = self.key.peer.to_string();
        let prefix = format!("ibb-{}", candidate_id());
        let shared = {
            let mut st = self.inner.lock();
            let Some(slot) = st.slots.get_mut(&self.key) else {
                return Err(JingleRuntimeError::Terminated(
                    self.ended
                        .borrow()
                        .clone()
                        .unwrap_or_else(|| Reason::new(ReasonCondition::Cancel)),
                ));
            };
            let stream = IbbStream::acceptor(&peer, &offer.sid, block, config, &prefix);
            // Registered before our answer goes out: the peer's <open/> follows it.
            let shared =
                IbbShared::new(stream, self.inner.outgoing.clone(), self.inner.wake.clone());
            slot.ibb = Some(shared.clone());
            let mut content = our_content(&self.contents).cloned().unwrap_or_else(|| {
                Content::new(
                    CONTENT_NAME,
                    description.clone(),
                    Transport::Ibb(offer.clone()),
                )
            });
            content.description = Some(description);
            content.transport = Some(Transport::Ibb(IbbTransport {
                sid: offer.sid.clone(),
                block_size: block,
            }));
            st.mgr.accept(&self.key, vec![content], Instant::now())?;
            self.inner.process(&mut st);
            shared
        };
        self.inner.wake.notify_one();
        let session = JingleSession {
            key: self.key.clone(),
            conn: None,
            inner: self.inner.clone(),
            ended: self.ended,
            info: tokio::sync::Mutex::new(self.inner.take_info(&self.key)),
            started: self.received,
            established_in: Duration::ZERO,
            stanzas: self.stanzas,
            channels: None,
            ibb: None,
            _end_on_drop: self.end_on_drop.accepted(),
        };
        let wait = self.inner.config.connect_timeout;
        let mut ended = session.ended.clone();
        let opened = tokio::select! {
            r = tokio::time::timeout(wait, shared.opened()) => r,
            _ = ended.wait_for(Option::is_some) => return Err(session.ended_error()),
        };
        let failure = match opened {
            Ok(Ok(())) => {
                session.mark_established();
                let mut session = session;
                session.established_in = session.started.elapsed();
                session.ibb = Some(IbbChannel::new(shared));
                return Ok(session);
            }
            Ok(Err(e)) => FallbackFailure::Stream(e),
            Err(_) => FallbackFailure::NotOpened(wait),
        };
        session.end(Reason::with_text(
            ReasonCondition::FailedTransport,
            failure.to_string(),
        ));
        Err(JingleRuntimeError::Fallback {
            cause: FallbackCause::IbbOnlyOffer,
            fallback: failure,
        })
    }
}

/// Ends a session whose owner drops it while it is live: an [`IncomingSession`] neither
/// accepted nor declined (`<decline/>`), the future of [`IncomingSession::accept`] or
/// [`JingleRuntime::connect`] dropped before it finished, a [`JingleSession`] dropped without
/// [`JingleSession::end`] (`<cancel/>`, XEP-0166 §6.7). The end is handed to the timer task,
/// since a drop may happen where the extension's state is locked.
struct EndOnDrop {
    inner: Arc<Inner>,
    key: SessionKey,
    reason: ReasonCondition,
    /// This is the copy of an offer given to the party that took it over (a connect() whose own
    /// offer lost the tie-break); the other copy, still queued for
    /// [`JingleRuntime::next_incoming`], must not end the session when it is skipped.
    claimer: bool,
    armed: bool,
}

impl EndOnDrop {
    fn new(inner: &Arc<Inner>, key: &SessionKey, reason: ReasonCondition, claimer: bool) -> Self {
        EndOnDrop {
            inner: inner.clone(),
            key: key.clone(),
            reason,
            claimer,
            armed: true,
        }
    }

    /// Ends the session if it is still live and this guard's to end.
    fn end(&self, st: &mut State) {
        let live = st
            .slots
            .get(&self.key)
            .is_some_and(|slot| self.claimer || !slot.claimed);
        if live {
            tracing::debug!(key = %self.key, "session dropped while live: ending it");
            let reason = Reason::with_text(self.reason.clone(), "dropped by the application");
            let _ = st.mgr.terminate(&self.key, reason, Instant::now());
        }
    }

    /// The same guard for the accepted session: dropping it cancels.
    fn accepted(mut self) -> Self {
        self.reason = ReasonCondition::Cancel;
        self
    }
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let inner = self.inner.clone();
        // At once when the state is free, so that the terminate goes out before anything the
        // application does next (a log-off's <gone/>, say); else (it is locked, perhaps by
        // this very thread) by the timer task.
        if let Ok(mut st) = inner.state.try_lock() {
            self.end(&mut st);
            inner.process(&mut st);
            return;
        }
        let mut pending = inner.abandoned.lock().unwrap_or_else(|e| e.into_inner());
        pending.push(EndOnDrop {
            inner: self.inner.clone(),
            key: self.key.clone(),
            reason: self.reason.clone(),
            claimer: self.claimer,
            armed: false,
        });
        drop(pending);
        inner.wake.notify_one();
    }
}

/// An established Jingle ICE-UDP session: the ICE connection to the peer and the session's
/// signalling.
pub struct JingleSession {
    key: SessionKey,
    /// The ICE connection; `None` for a session offered with In-Band Bytestreams only.
    conn: Option<Arc<IceConnection>>,
    inner: Arc<Inner>,
    ended: watch::Receiver<Option<Reason>>,
    info: tokio::sync::Mutex<mpsc::Receiver<Element>>,
    started: Instant,
    established_in: Duration,
    stanzas: Arc<AtomicU64>,
    channels: Option<DataChannels>,
    ibb: Option<IbbChannel>,
    _end_on_drop: EndOnDrop,
}

impl std::fmt::Debug for JingleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JingleSession")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl JingleSession {
    /// Waits for acceptance (initiator) and ICE connectivity, or the end of the session.
    async fn establish(
        &self,
        mut accepted: watch::Receiver<bool>,
        timeout: Duration,
    ) -> Result<(), JingleRuntimeError> {
        let mut ended = self.ended.clone();
        let ended_reason = async move {
            let r = ended.wait_for(Option::is_some).await;
            match r {
                Ok(v) => v
                    .clone()
                    .unwrap_or_else(|| Reason::new(ReasonCondition::GeneralError)),
                Err(_) => Reason::new(ReasonCondition::GeneralError),
            }
        };
        let ready = async {
            if accepted.wait_for(|a| *a).await.is_err() {
                // The session is gone: its end reason is reported by the other branch.
                std::future::pending::<()>().await;
            }
            let connected = async {
                let Some(conn) = &self.conn else {
                    return Err(crate::net::Error::Failed);
                };
                conn.wait_connected().await?;
                // Established means a selected (nominated) pair, RFC 8445 §8.1.1.
                conn.wait_selected(1).await.map(|_| ())
            };
            match tokio::time::timeout(timeout, connected).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(JingleRuntimeError::Ice(IceFailure::Connection(e))),
                Err(_) => Err(JingleRuntimeError::Ice(IceFailure::Timeout(timeout))),
            }
        };
        // The peer may give up on ICE first and propose the fallback.
        let mut fallback = self.fallback_watch();
        let fallback_offered = async move {
            if fallback
                .wait_for(|f| matches!(f, Fallback::Offered(_)))
                .await
                .is_err()
            {
                std::future::pending::<()>().await;
            }
        };
        let r = tokio::select! {
            biased;
            reason = ended_reason => Err(JingleRuntimeError::Terminated(reason)),
            () = fallback_offered => Err(JingleRuntimeError::Ice(IceFailure::PeerFellBack)),
            r = ready => r,
        };
        if r.is_ok() {
            self.mark_established();
        }
        r
    }

    fn fallback_watch(&self) -> watch::Receiver<Fallback> {
        match self.inner.lock().slots.get(&self.key) {
            Some(slot) => slot.fallback.subscribe(),
            None => watch::channel(Fallback::None).1,
        }
    }

    fn mark_established(&self) {
        if let Some(slot) = self.inner.lock().slots.get_mut(&self.key) {
            slot.established = true;
        }
    }

    fn ended_error(&self) -> JingleRuntimeError {
        JingleRuntimeError::Terminated(
            self.end_reason()
                .unwrap_or_else(|| Reason::new(ReasonCondition::GeneralError)),
        )
    }

    /// ICE found no path (`cause`): falls back to In-Band Bytestreams (XEP-0261 through
    /// XEP-0166 §7.2.15). The initiator proposes it unless the peer already did; the responder
    /// waits for the proposal. Ends the session with `<failed-transport/>` when the fallback is
    /// off or fails.
    async fn fall_back(
        &mut self,
        initiator: bool,
        cause: JingleRuntimeError,
    ) -> Result<(), JingleRuntimeError> {
        fn fail(
            this: &JingleSession,
            cause: JingleRuntimeError,
            fallback: FallbackFailure,
        ) -> JingleRuntimeError {
            let text = format!("no peer-to-peer path ({cause}); {fallback}");
            this.end(Reason::with_text(ReasonCondition::FailedTransport, text));
            match this.end_reason() {
                Some(r) if r.condition != ReasonCondition::FailedTransport => {
                    JingleRuntimeError::Terminated(r)
                }
                _ => JingleRuntimeError::Fallback {
                    cause: match cause {
                        JingleRuntimeError::Ice(f) => FallbackCause::Ice(f),
                        other => FallbackCause::Other(Box::new(other)),
                    },
                    fallback,
                },
            }
        }
        let no_fallback = {
            let st = self.inner.lock();
            st.mgr.session_state(&self.key).is_some()
                && !falls_back_to_ibb(&self.inner.config, &st.mgr, &self.key)
        };
        if !self.inner.config.ibb_fallback || no_fallback {
            let text = cause.to_string();
            self.end(Reason::with_text(ReasonCondition::FailedTransport, text));
            return Err(cause);
        }
        let config = self.inner.config.ibb.clone();
        let ours = IbbTransport {
            sid: candidate_id(),
            block_size: config.block_size,
        };
        let mut rx = {
            let mut st = self.inner.lock();
            let Some(slot) = st.slots.get_mut(&self.key) else {
                return Err(self.ended_error());
            };
            if let Some(ice) = &slot.ice {
                ice.signal(Signal::Close);
            }
            let rx = slot.fallback.subscribe();
            if initiator && *rx.borrow() == Fallback::None {
                let proposal = Transport::Ibb(ours.clone());
                st.mgr
                    .replace_transport(&self.key, CONTENT_NAME, proposal, Instant::now())?;
                self.inner.process(&mut st);
            }
            rx
        };
        self.inner.wake.notify_one();
        tracing::info!(key = %self.key, %cause, "no peer-to-peer path: falling back to In-Band Bytestreams");
        let wait = self.inner.config.connect_timeout;
        let mut ended = self.ended.clone();
        let decided = tokio::select! {
            r = tokio::time::timeout(wait, rx.wait_for(|f| *f != Fallback::None)) => match r {
                Ok(Ok(f)) => f.clone(),
                _ => Fallback::None,
            },
            _ = ended.wait_for(Option::is_some) => return Err(self.ended_error()),
        };
        let peer = self.key.peer.to_string();
        let prefix = format!("ibb-{}", candidate_id());
        let shared = {
            let mut st = self.inner.lock();
            let outgoing = self.inner.outgoing.clone();
            let timers = self.inner.wake.clone();
            let (stream, answer) = match decided {
                Fallback::Offered(t) => {
                    let block = t.block_size.min(config.block_size);
                    let stream = IbbStream::acceptor(&peer, &t.sid, block, config, &prefix);
                    let answer = IbbTransport {
                        sid: t.sid,
                        block_size: block,
                    };
                    (stream, Some(answer))
                }
                Fallback::Accepted(t) if t.sid == ours.sid => {
                    let block = t.block_size.min(config.block_size);
                    let stream =
                        IbbStream::opener(&peer, &t.sid, block, config, &prefix, Instant::now());
                    (stream, None)
                }
                Fallback::Accepted(_) => {
                    drop(st);
                    return Err(fail(self, cause, FallbackFailure::OtherStreamId));
                }
                Fallback::Rejected => {
                    drop(st);
                    return Err(fail(self, cause, FallbackFailure::Rejected));
                }
                Fallback::None => {
                    drop(st);
                    return Err(fail(self, cause, FallbackFailure::NoProposal(wait)));
                }
            };
            let Some(slot) = st.slots.get_mut(&self.key) else {
                drop(st);
                return Err(self.ended_error());
            };
            // Registered before our answer goes out: the peer's <open/> follows it.
            let shared = IbbShared::new(stream, outgoing, timers);
            slot.ibb = Some(shared.clone());
            if let Some(answer) = answer {
                let answer = Transport::Ibb(answer);
                st.mgr
                    .accept_transport(&self.key, CONTENT_NAME, answer, Instant::now())?;
                self.inner.process(&mut st);
            }
            shared
        };
        self.inner.wake.notify_one();
        let opened = tokio::select! {
            r = tokio::time::timeout(wait, shared.opened()) => r,
            _ = ended.wait_for(Option::is_some) => return Err(self.ended_error()),
        };
        match opened {
            Ok(Ok(())) => {
                self.mark_established();
                self.ibb = Some(IbbChannel::new(shared));
                Ok(())
            }
            Ok(Err(e)) => Err(fail(self, cause, FallbackFailure::Stream(e))),
            Err(_) => Err(fail(self, cause, FallbackFailure::NotOpened(wait))),
        }
    }

    /// For a data-channel session, runs DTLS (checking the peer's fingerprint) and SCTP over
    /// the connected ICE pair; ends the session if that fails.
    async fn start_channels(&mut self) -> Result<(), JingleRuntimeError> {
        let params = self
            .inner
            .lock()
            .slots
            .get(&self.key)
            .and_then(|s| s.channel.clone());
        let Some(params) = params else {
            return Ok(());
        };
        let (remote, role) = match params {
            Ok(p) => p,
            Err(why) => {
                self.end(Reason::with_text(
                    ReasonCondition::SecurityError,
                    why.to_string(),
                ));
                return Err(JingleRuntimeError::Negotiation(why));
            }
        };
        let (Some(certificate), Some(conn)) = (self.inner.certificate.clone(), self.conn.clone())
        else {
            return Err(JingleRuntimeError::Channel(ChannelError::Closed));
        };
        let connect = DataChannels::connect(
            conn,
            &certificate,
            role,
            remote,
            self.inner.config.channels.clone(),
        );
        let mut ended = self.ended.clone();
        let outcome = tokio::select! {
            r = connect => r,
            _ = ended.wait_for(Option::is_some) => Err(ChannelError::PeerClosed),
        };
        match outcome {
            Ok(channels) => {
                self.channels = Some(channels);
                Ok(())
            }
            Err(e) => {
                let condition = match e {
                    ChannelError::FingerprintMismatch { .. } => ReasonCondition::SecurityError,
                    _ => ReasonCondition::FailedTransport,
                };
                tracing::warn!(key = %self.key, error = %e, "data channels failed");
                if let Some(reason) = self.end_reason() {
                    return Err(JingleRuntimeError::Terminated(reason));
                }
                self.end(Reason::with_text(condition, e.to_string()));
                Err(JingleRuntimeError::Channel(e))
            }
        }
    }

    /// Opens a byte stream to the peer, whatever the session's transport: a new reliable,
    /// ordered data channel with `label` and `protocol` (RFC 8832), or the session's
    /// In-Band Bytestream once it fell back (its one stream: each call gives it again).
    /// [`JingleRuntimeError::NoStream`] for a plain ICE-UDP session, which carries datagrams
    /// only ([`Self::connection`]).
    pub fn open_stream(
        &self,
        label: &str,
        protocol: &str,
    ) -> Result<SessionStream, JingleRuntimeError> {
        if let Some(ibb) = self.ibb() {
            return Ok(SessionStream::Ibb(ibb));
        }
        let channels = self.channels.as_ref().ok_or(JingleRuntimeError::NoStream)?;
        channels
            .open(ChannelOptions::reliable(label, protocol))
            .map(SessionStream::Channel)
            .map_err(JingleRuntimeError::Channel)
    }

    /// The next byte stream the peer opens: its next data channel, or the session's In-Band
    /// Bytestream once it fell back. `None` once the session's association is closed, or at
    /// once for a plain ICE-UDP session.
    pub async fn accept_stream(&self) -> Option<SessionStream> {
        if let Some(ibb) = self.ibb() {
            return Some(SessionStream::Ibb(ibb));
        }
        self.channels
            .as_ref()?
            .accept()
            .await
            .map(SessionStream::Channel)
    }

    /// The data channels of a `webrtc-datachannel:1` session (DTLS-authenticated SCTP over the
    /// ICE pair): open channels, accept the peer's. `None` for a plain ICE-UDP session.
    pub fn data_channels(&self) -> Option<&DataChannels> {
        self.channels.as_ref()
    }

    /// The In-Band Bytestream of a session that fell back to it (ICE found no path): the
    /// session's bytes go through the XMPP server. `None` while ICE carries the session.
    pub fn ibb(&self) -> Option<IbbChannel> {
        self.ibb.clone()
    }

    /// The application description the peer sent: the one in its `session-accept` when we
    /// initiated (XEP-0234: where a receiver asks for a range), the one in its offer when we
    /// accepted. `None` once the session has ended.
    pub fn peer_description(&self) -> Option<Element> {
        let st = self.inner.lock();
        let slot = st.slots.get(&self.key)?;
        slot.answer
            .clone()
            .or_else(|| our_content(&slot.offer).and_then(|c| c.description.clone()))
    }

    /// The session (peer full JID and sid).
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// The ICE connection: `send`, `recv`, selected pairs, stats. `None` for a session the
    /// peer offered with In-Band Bytestreams only ([`JingleSession::ibb`] carries it).
    pub fn connection(&self) -> Option<&IceConnection> {
        self.conn.as_deref()
    }

    /// The selected pair of component 1.
    pub fn selected_pair(&self) -> Option<SelectedPair> {
        self.conn.as_ref().and_then(|c| c.selected_pair(1))
    }

    /// Time from the offer (sent or received) to a selected ICE pair.
    pub fn established_in(&self) -> Duration {
        self.established_in
    }

    /// When the offer was sent or received.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stanzas we sent to the peer about this session so far (requests and answers).
    pub fn stanzas_sent(&self) -> u64 {
        self.stanzas.load(Ordering::Relaxed)
    }

    /// Sends a `session-info` payload.
    pub fn send_info(&self, payload: Element) -> Result<(), JingleRuntimeError> {
        let mut st = self.inner.lock();
        st.mgr.send_info(&self.key, Some(payload), Instant::now())?;
        self.inner.process(&mut st);
        Ok(())
    }

    /// The next `session-info` payload from the peer (of the session's own application, or of
    /// a namespace listed in [`SessionConfig::info_namespaces`]).
    pub async fn next_info(&self) -> Option<Element> {
        self.info.lock().await.recv().await
    }

    /// Ends the session with `reason` and closes its ICE connection.
    pub fn end(&self, reason: Reason) {
        let mut st = self.inner.lock();
        let _ = st.mgr.terminate(&self.key, reason, Instant::now());
        self.inner.process(&mut st);
    }

    /// Waits until the session ends (by either side, a failure or a timeout) and says why.
    pub async fn closed(&self) -> Reason {
        let mut ended = self.ended.clone();
        let reason = match ended.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        reason.unwrap_or_else(|| Reason::new(ReasonCondition::GeneralError))
    }

    /// Why the session ended, if it has.
    pub fn end_reason(&self) -> Option<Reason> {
        self.ended.borrow().clone()
    }
}
