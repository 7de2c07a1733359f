//! The XEP-0166 session state machine, sans-IO, for both roles.
//!
//! A [`SessionManager`] holds every Jingle session of one local full JID. It takes the stanzas
//! the XMPP connection receives ([`SessionManager::handle_stanza`]), the application's decisions
//! ([`initiate`](SessionManager::initiate), [`accept`](SessionManager::accept),
//! [`terminate`](SessionManager::terminate), local candidates, ICE restarts) and the current
//! time, and returns stanzas to send ([`poll_transmit`](SessionManager::poll_transmit)), what
//! happened ([`poll_event`](SessionManager::poll_event)) and when to wake it
//! ([`poll_timeout`](SessionManager::poll_timeout)). It never touches a socket or a clock.
//!
//! Rules it enforces (each with its section):
//! - every `<iq type='set'/>` carrying `<jingle/>` is answered: a result, or the error of
//!   XEP-0166 §10 (`<item-not-found/>` + `<unknown-session/>` for a sid it does not know under
//!   the sender's full JID, `<unexpected-request/>` + `<out-of-order/>` for an action the state
//!   does not allow, `<conflict/>` + `<tie-break/>` for the losing simultaneous
//!   `session-initiate` (§7.2.16), `<feature-not-implemented/>` + `<unsupported-info/>` for a
//!   session-info payload nobody here understands (§6.8), `<bad-request/>` for a malformed
//!   element, `<resource-constraint/>` past the configured limits on sessions);
//! - remote candidates beyond [`TransportLimits::max_candidates`] in one element or
//!   [`SessionConfig::max_remote_candidates`] per content are ignored, the first ones kept: the
//!   request is answered with a result (XEP-0166 has no error for it, `xep/0166.md`);
//! - a session is keyed by the peer's full JID and the sid: a stanza about a session from any
//!   other JID finds no session and gets `<unknown-session/>`;
//! - once terminated a session is forgotten (§6.7: later requests get `<unknown-session/>`);
//! - an unanswered request, a session not accepted in time and a peer gone offline (§6.7,
//!   unavailable presence with no further word for [`SessionConfig::gone_grace`]) end the
//!   session with `<timeout/>` or `<gone/>`.
//!
//! Transports: the session machine names none; it asks the [`TransportRegistry`] of
//! [`SessionConfig::transports`] (by default Conversations' `webrtc-datachannel:1`, XEP-0176
//! ICE-UDP and XEP-0261 IBB), whose [`TransportMethod`]s read each `<transport/>`, check offers
//! and answers (a failed check is answered `<bad-request/>`), say which contents join the
//! XEP-0338 BUNDLE `<group/>` sent with an offer or answer, and shape `transport-info`: whatever
//! the caller puts in its offer or answer is the kind every later `transport-info` of that
//! content is wrapped in (for a data channel: the SCTP attributes repeated, ufrag/pwd and
//! candidates inside, no fingerprint, as Conversations sends them). An offer with no registered
//! transport is declined with `<unsupported-transports/>`,
//! a `transport-replace` to one not registered is rejected.
//!
//! Trickle ICE (XEP-0176 §5.5): local candidates are batched for
//! [`SessionConfig::trickle_delay`] and sent in one `transport-info` per content; the responder
//! keeps its candidates until the application accepts and sends them in `session-accept`, so a
//! peer learns no address of ours before we agreed to talk. Remote candidates are reported as they
//! arrive, before `session-accept` included.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jid::FullJid;
use minidom::Element;
use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::element::{
    Action, Content, Jingle, JingleError, Reason, ReasonCondition, Transport, NS_JINGLE,
};
use super::transports::ice_udp::{IceUdpCandidate, IceUdpTransport, Skipped, TransportLimits};
use super::transports::{TransportMethod, TransportRegistry};
use crate::ice::Credentials;
use crate::xmpp::stanza::{
    iq, iq_error, iq_result, iq_type, jingle_error, limit_error, set_attr, Condition, IqType,
    JingleCondition, StanzaError, StanzaLimits, NS_CLIENT,
};

/// How long an ended session is remembered, so that a `session-info` or `session-terminate`
/// that crossed our `session-terminate` gets an empty result rather than `<unknown-session/>`:
/// Conversations sends its `<checksum/>` after the data and fails the transfer when that is
/// refused, even after the receiver ended the session with `<success/>`.
pub const ENDED_LINGER: Duration = Duration::from_secs(30);
/// Most ended sessions remembered at once (the oldest are forgotten first).
pub const MAX_ENDED: usize = 256;

/// Length of the session ids we generate (XEP-0166 §7.1: random, an NMTOKEN).
const SID_LEN: usize = 16;
/// Length of the iq ids we generate.
const IQ_ID_LEN: usize = 12;

/// Limits and timers of a [`SessionManager`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Most live sessions in total; a `session-initiate` beyond it gets `<resource-constraint/>`.
    pub max_sessions: usize,
    /// Most live sessions with one peer full JID.
    pub max_sessions_per_peer: usize,
    /// Bounds on every ICE-UDP transport element read from a peer.
    pub transport_limits: TransportLimits,
    /// Most remote candidates kept per content over the life of a session (the offer or answer
    /// and every transport-info together, counted again from 0 after an ICE restart). Beyond
    /// it the first ones are kept and the rest are ignored and counted in the transport's
    /// [`Skipped::over_limit`]; the request is still answered with a result (XEP-0166 defines
    /// no error for it; `xep/0166.md`, "Many candidates").
    pub max_remote_candidates: usize,
    /// Most requests awaiting an answer; beyond it the oldest is given up as timed out.
    pub max_pending_requests: usize,
    /// How long an iq set may stay unanswered (RFC 6120 gives none; a lost peer must not hold a
    /// session forever).
    pub request_timeout: Duration,
    /// How long a session may stay pending (initiated, not accepted) before it ends with
    /// `<timeout/>`.
    pub accept_timeout: Duration,
    /// After an unavailable presence from the peer, how long to wait for any other word from it
    /// before ending its sessions with `<gone/>` (XEP-0166 §6.7 suggests 5 or 10 seconds).
    pub gone_grace: Duration,
    /// How long local candidates are held to share one `transport-info` (0 sends each at once).
    pub trickle_delay: Duration,
    /// Most local candidates held for one session before they are sent regardless.
    pub max_trickle_batch: usize,
    /// Description namespaces we accept in an incoming session; empty accepts any and leaves the
    /// decision to the application.
    pub applications: Vec<String>,
    /// The transport methods accepted, in order of preference and fallback (see
    /// [`TransportRegistry`]); [`Default`] is data channel, ICE-UDP, IBB. A method for a
    /// namespace the library does not interpret is added as an
    /// [`OpaqueMethod`](super::transports::OpaqueMethod) (its transports are kept as elements for
    /// the application).
    pub transports: TransportRegistry,
    /// Namespaces of `session-info` payloads the application understands (XEP-0166 §6.8)
    /// besides those of the session's own descriptions, which are always passed on; others get
    /// `<unsupported-info/>`.
    pub info_namespaces: Vec<String>,
    /// Seed for ids and sids; `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_sessions: 64,
            max_sessions_per_peer: 8,
            transport_limits: TransportLimits::default(),
            max_remote_candidates: 128,
            max_pending_requests: 256,
            request_timeout: Duration::from_secs(30),
            accept_timeout: Duration::from_secs(120),
            gone_grace: Duration::from_secs(5),
            trickle_delay: Duration::from_millis(20),
            max_trickle_batch: 16,
            applications: Vec::new(),
            transports: TransportRegistry::default(),
            info_namespaces: Vec::new(),
            seed: None,
        }
    }
}

/// Identifies a session: the peer's full JID and the sid (XEP-0166 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// The peer's full JID.
    pub peer: FullJid,
    /// The session id.
    pub sid: String,
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} with {}", self.sid, self.peer)
    }
}

/// Where a session is in XEP-0166 §5.1's state machine (ENDED sessions are forgotten).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Initiated, not yet accepted.
    Pending,
    /// Accepted.
    Active,
}

/// Which side of the session we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRole {
    /// We sent `session-initiate`.
    Initiator,
    /// We received it.
    Responder,
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A peer offers a session (acknowledged already); answer with
    /// [`SessionManager::accept`] or [`SessionManager::terminate`].
    Incoming {
        /// The session.
        key: SessionKey,
        /// The offered contents.
        contents: Vec<Content>,
    },
    /// The peer accepted our session.
    Accepted {
        /// The session.
        key: SessionKey,
        /// The peer's contents (its transports carry its credentials and first candidates).
        contents: Vec<Content>,
    },
    /// The peer sent transport information for a content: trickled candidates, or with
    /// `restart` new ICE credentials (XEP-0176 §5.6).
    TransportInfo {
        /// The session.
        key: SessionKey,
        /// The content's name.
        content: String,
        /// The transport as received.
        transport: Transport,
        /// Whether the credentials differ from the ones known so far (an ICE restart).
        restart: bool,
    },
    /// The peer proposes to replace a content's transport (XEP-0166 §7.2.15, acknowledged
    /// already); answer with [`SessionManager::accept_transport`] or
    /// [`SessionManager::reject_transport`].
    TransportReplace {
        /// The session.
        key: SessionKey,
        /// The content's name.
        content: String,
        /// The transport proposed.
        transport: Transport,
    },
    /// The peer accepted our `transport-replace`: the content now uses `transport` (the peer's
    /// version of it, e.g. with a smaller IBB block size).
    TransportAccepted {
        /// The session.
        key: SessionKey,
        /// The content's name.
        content: String,
        /// The transport as the peer accepted it.
        transport: Transport,
    },
    /// The peer rejected our `transport-replace` (`transport-reject`, or an error answer): the
    /// content keeps its transport.
    TransportRejected {
        /// The session.
        key: SessionKey,
        /// The content's name.
        content: String,
    },
    /// The peer sent a `session-info` payload of a namespace in
    /// [`SessionConfig::info_namespaces`] (acknowledged already).
    Info {
        /// The session.
        key: SessionKey,
        /// The payload.
        payload: Element,
    },
    /// A request of ours was refused (other than the ones that end the session).
    RequestFailed {
        /// The session.
        key: SessionKey,
        /// The action refused.
        action: Action,
        /// The peer's error, or `None` when it did not answer in time.
        error: Option<StanzaError>,
    },
    /// The session is over.
    Terminated {
        /// The session.
        key: SessionKey,
        /// Why.
        reason: Reason,
        /// Whether the peer ended it (`session-terminate` or an error answer) rather than us.
        by_peer: bool,
    },
}

/// Why a call of the application cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No live session with this key.
    #[error("no session {0}")]
    UnknownSession(SessionKey),
    /// The call is not possible in the session's state (accepting our own session, ...).
    #[error("session {0} cannot do this now: {1}")]
    OutOfOrder(SessionKey, &'static str),
    /// A limit of [`SessionConfig`] was reached.
    #[error("too many sessions")]
    TooManySessions,
    /// The content name is not one of the session's.
    #[error("session {0} has no content {1:?}")]
    UnknownContent(SessionKey, String),
    /// A session needs at least one content.
    #[error("a session needs at least one content")]
    NoContent,
}

struct ContentState {
    content: Content,
    /// The kind of transport our side negotiated, without ICE contents: what our
    /// `transport-info`s for this content are wrapped in. `None` until we offered or answered.
    wrapper: Option<Transport>,
    local: Option<Credentials>,
    remote: Option<Credentials>,
    remote_candidates: usize,
    generation: u8,
    /// Our `transport-replace` awaiting the peer's accept or reject.
    replacing: Option<Transport>,
    /// The peer's `transport-replace` awaiting our answer.
    replace_offered: Option<Transport>,
}

struct Session {
    role: SessionRole,
    state: SessionState,
    contents: Vec<ContentState>,
    /// When a pending session gives up waiting for acceptance.
    accept_deadline: Option<Instant>,
    /// When the peer counts as gone (after an unavailable presence).
    gone_at: Option<Instant>,
    /// Local candidates waiting to be sent, per content name.
    trickle: Vec<(String, IceUdpCandidate)>,
    /// When the held candidates go out.
    trickle_at: Option<Instant>,
}

impl Session {
    fn content_mut(&mut self, name: &str) -> Option<&mut ContentState> {
        self.contents.iter_mut().find(|c| c.content.name == name)
    }

    /// Whether `contents` is non-empty and names only contents of this session (what every
    /// action about existing contents must satisfy).
    fn has_all(&self, contents: &[Content]) -> bool {
        !contents.is_empty()
            && contents
                .iter()
                .all(|c| self.contents.iter().any(|s| s.content.name == c.name))
    }

    fn description_namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .contents
            .iter()
            .filter_map(|c| c.content.description_ns())
            .collect();
        v.sort();
        v
    }
}

struct PendingRequest {
    key: SessionKey,
    action: Action,
    deadline: Instant,
}

/// The Jingle sessions of one local full JID, sans-IO (see the module documentation).
pub struct SessionManager {
    local: FullJid,
    config: SessionConfig,
    rng: StdRng,
    sessions: HashMap<SessionKey, Session>,
    requests: HashMap<String, PendingRequest>,
    transmits: VecDeque<Element>,
    events: VecDeque<SessionEvent>,
    /// Sessions ended lately, with when to forget them (oldest first; see [`ENDED_LINGER`]).
    ended: VecDeque<(SessionKey, Instant)>,
}

impl SessionManager {
    /// A manager for sessions of `local` (our full JID, as bound on the connection).
    pub fn new(local: FullJid, config: SessionConfig) -> Self {
        let rng = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        SessionManager {
            local,
            config,
            rng,
            sessions: HashMap::new(),
            requests: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ended: VecDeque::new(),
        }
    }

    /// Our full JID.
    pub fn local_jid(&self) -> &FullJid {
        &self.local
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The live sessions.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionKey> + '_ {
        self.sessions.keys()
    }

    /// The state and our role in a live session.
    pub fn session_state(&self, key: &SessionKey) -> Option<(SessionState, SessionRole)> {
        self.sessions.get(key).map(|s| (s.state, s.role))
    }

    /// The contents of a live session as last negotiated.
    pub fn contents(&self, key: &SessionKey) -> Option<Vec<Content>> {
        self.sessions
            .get(key)
            .map(|s| s.contents.iter().map(|c| c.content.clone()).collect())
    }

    /// The transport method to propose in a `transport-replace` (XEP-0166 §7.2.15) for a
    /// content whose ICE found no path: the next one after the content's transport in the
    /// order of [`SessionConfig::transports`] that needs no ICE
    /// ([`TransportRegistry::fallback_after`]). `None`: there is no fallback (no such session
    /// or content, or no such method registered).
    pub fn fallback_transport(
        &self,
        key: &SessionKey,
        content: &str,
    ) -> Option<&dyn TransportMethod> {
        let session = self.sessions.get(key)?;
        let state = session
            .contents
            .iter()
            .find(|c| c.content.name == content)?;
        let current = state.content.transport.as_ref().map(Transport::ns);
        self.config
            .transports
            .fallback_after(current.as_deref().unwrap_or_default())
    }

    /// Number of requests awaiting an answer.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    fn random_string(&mut self, len: usize) -> String {
        (&mut self.rng)
            .sample_iter(Alphanumeric)
            .take(len)
            .map(char::from)
            .collect()
    }

    /// Offers a new session to `peer` with `contents` (XEP-0166 §6.2): sends
    /// `session-initiate` and returns the session's key. ICE-UDP transports carry our credentials
    /// and the candidates known so far; later ones go through
    /// [`add_local_candidates`](Self::add_local_candidates).
    pub fn initiate(
        &mut self,
        peer: FullJid,
        contents: Vec<Content>,
        now: Instant,
    ) -> Result<SessionKey, SessionError> {
        if contents.is_empty() {
            return Err(SessionError::NoContent);
        }
        self.check_room(&peer)?;
        let key = loop {
            let key = SessionKey {
                peer: peer.clone(),
                sid: self.random_string(SID_LEN),
            };
            if !self.sessions.contains_key(&key) {
                break key;
            }
        };
        let mut jingle = Jingle::new(Action::SessionInitiate, key.sid.clone());
        jingle.initiator = Some(self.local.to_string());
        jingle.contents = contents.clone();
        let transports = &self.config.transports;
        jingle
            .payloads
            .extend(transports.bundle_group(&jingle.contents));
        let states = contents
            .into_iter()
            .map(|c| content_state_local(transports, c))
            .collect();
        self.sessions.insert(
            key.clone(),
            Session {
                role: SessionRole::Initiator,
                state: SessionState::Pending,
                contents: states,
                accept_deadline: Some(now + self.config.accept_timeout),
                gone_at: None,
                trickle: Vec::new(),
                trickle_at: None,
            },
        );
        self.send_request(&key, jingle, now);
        Ok(key)
    }

    /// Accepts an incoming session (XEP-0166 §6.5) with our side of each content (description
    /// and transport with our credentials and candidates); candidates held since the offer are
    /// added to the matching ICE-UDP transports.
    pub fn accept(
        &mut self,
        key: &SessionKey,
        contents: Vec<Content>,
        now: Instant,
    ) -> Result<(), SessionError> {
        if contents.is_empty() {
            return Err(SessionError::NoContent);
        }
        let local = self.local.to_string();
        let session = self
            .sessions
            .get_mut(key)
            .ok_or_else(|| SessionError::UnknownSession(key.clone()))?;
        if session.role != SessionRole::Responder || session.state != SessionState::Pending {
            return Err(SessionError::OutOfOrder(
                key.clone(),
                "only a pending incoming session can be accepted",
            ));
        }
        let mut contents = contents;
        let held = std::mem::take(&mut session.trickle);
        session.trickle_at = None;
        for c in &mut contents {
            if let Some(t) = c.transport.as_mut().and_then(Transport::ice_udp_mut) {
                for (name, cand) in &held {
                    if *name == c.name && !t.candidates.iter().any(|x| x.id == cand.id) {
                        t.candidates.push(cand.clone());
                    }
                }
            }
            let Some(state) = session.content_mut(&c.name) else {
                return Err(SessionError::UnknownContent(key.clone(), c.name.clone()));
            };
            state.local = c.ice_credentials();
            state.wrapper = c
                .transport
                .as_ref()
                .map(|t| self.config.transports.wrapper_of(t));
            state.content.description = c.description.clone().or(state.content.description.take());
        }
        session.state = SessionState::Active;
        session.accept_deadline = None;
        let mut jingle = Jingle::new(Action::SessionAccept, key.sid.clone());
        jingle.responder = Some(local);
        jingle.contents = contents;
        jingle
            .payloads
            .extend(self.config.transports.bundle_group(&jingle.contents));
        self.send_request(key, jingle, now);
        Ok(())
    }

    /// Ends a session (XEP-0166 §6.7): sends `session-terminate` with `reason`, forgets the
    /// session at once and reports [`SessionEvent::Terminated`].
    pub fn terminate(
        &mut self,
        key: &SessionKey,
        reason: Reason,
        now: Instant,
    ) -> Result<(), SessionError> {
        if !self.sessions.contains_key(key) {
            return Err(SessionError::UnknownSession(key.clone()));
        }
        self.end(key, reason, false, true, now);
        Ok(())
    }

    /// Queues local candidates of a content for the peer (trickle, XEP-0176 §5.5); they go out
    /// in one `transport-info` after [`SessionConfig::trickle_delay`], or with `session-accept`
    /// when we are a responder that has not accepted yet.
    pub fn add_local_candidates(
        &mut self,
        key: &SessionKey,
        content: &str,
        candidates: Vec<IceUdpCandidate>,
        now: Instant,
    ) -> Result<(), SessionError> {
        let delay = self.config.trickle_delay;
        let max = self.config.max_trickle_batch;
        let session = self
            .sessions
            .get_mut(key)
            .ok_or_else(|| SessionError::UnknownSession(key.clone()))?;
        if session.content_mut(content).is_none() {
            return Err(SessionError::UnknownContent(
                key.clone(),
                content.to_owned(),
            ));
        }
        session
            .trickle
            .extend(candidates.into_iter().map(|c| (content.to_owned(), c)));
        let held = session.role == SessionRole::Responder && session.state == SessionState::Pending;
        if held {
            return Ok(());
        }
        if session.trickle.len() >= max || delay.is_zero() {
            self.flush_trickle(key, now);
        } else if session.trickle_at.is_none() {
            session.trickle_at = Some(now + delay);
        }
        Ok(())
    }

    /// Signals an ICE restart of a content (XEP-0176 §5.6, RFC 8445 §9): sends a
    /// `transport-info` with the new credentials and candidates at once, candidates carrying the
    /// next generation. Held candidates of the previous generation for that content are dropped.
    pub fn restart(
        &mut self,
        key: &SessionKey,
        content: &str,
        credentials: Credentials,
        candidates: Vec<IceUdpCandidate>,
        now: Instant,
    ) -> Result<(), SessionError> {
        let session = self
            .sessions
            .get_mut(key)
            .ok_or_else(|| SessionError::UnknownSession(key.clone()))?;
        session.trickle.retain(|(name, _)| name != content);
        let state = session
            .content_mut(content)
            .ok_or_else(|| SessionError::UnknownContent(key.clone(), content.to_owned()))?;
        state.generation = state.generation.wrapping_add(1);
        let generation = state.generation;
        state.local = Some(credentials.clone());
        let mut ice = IceUdpTransport::new(&credentials, candidates);
        for c in &mut ice.candidates {
            c.generation = generation;
        }
        let transport = self.config.transports.wrap_ice(state.wrapper.as_ref(), ice);
        let creator = state.content.creator;
        let mut jingle = Jingle::new(Action::TransportInfo, key.sid.clone());
        jingle.contents.push(Content {
            creator,
            name: content.to_owned(),
            senders: state.content.senders,
            disposition: None,
            description: None,
            transport: Some(transport),
            security: None,
        });
        self.send_request(key, jingle, now);
        Ok(())
    }

    /// Proposes a new transport for a content (XEP-0166 §7.2.15, `transport-replace`),
    /// typically the In-Band Bytestreams fallback when ICE found no path. The answer comes as
    /// [`SessionEvent::TransportAccepted`] or [`SessionEvent::TransportRejected`].
    pub fn replace_transport(
        &mut self,
        key: &SessionKey,
        content: &str,
        transport: Transport,
        now: Instant,
    ) -> Result<(), SessionError> {
        let state = content_state(&mut self.sessions, key, content)?;
        if state.replacing.is_some() {
            return Err(SessionError::OutOfOrder(
                key.clone(),
                "a transport-replace of this content is already pending",
            ));
        }
        state.replacing = Some(transport.clone());
        let jingle = transport_action(Action::TransportReplace, key, &state.content, transport);
        self.send_request(key, jingle, now);
        Ok(())
    }

    /// Accepts the peer's `transport-replace` of a content (`transport-accept`) with our
    /// version of the transport (for IBB, the block size we take, at most the offered one).
    pub fn accept_transport(
        &mut self,
        key: &SessionKey,
        content: &str,
        transport: Transport,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.answer_replace(key, content, Some(transport), now)
    }

    /// Rejects the peer's `transport-replace` of a content (`transport-reject`): the content
    /// keeps its transport.
    pub fn reject_transport(
        &mut self,
        key: &SessionKey,
        content: &str,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.answer_replace(key, content, None, now)
    }

    fn answer_replace(
        &mut self,
        key: &SessionKey,
        content: &str,
        accept: Option<Transport>,
        now: Instant,
    ) -> Result<(), SessionError> {
        let state = content_state(&mut self.sessions, key, content)?;
        let Some(offered) = state.replace_offered.take() else {
            return Err(SessionError::OutOfOrder(
                key.clone(),
                "no transport-replace of this content to answer",
            ));
        };
        let jingle = match accept {
            Some(t) => {
                state.wrapper = Some(self.config.transports.wrapper_of(&t));
                state.content.transport = Some(t.clone());
                transport_action(Action::TransportAccept, key, &state.content, t)
            }
            None => transport_action(Action::TransportReject, key, &state.content, offered),
        };
        self.send_request(key, jingle, now);
        Ok(())
    }

    /// Sends a `session-info` (XEP-0166 §6.8) with `payload`, or empty as a ping.
    pub fn send_info(
        &mut self,
        key: &SessionKey,
        payload: Option<Element>,
        now: Instant,
    ) -> Result<(), SessionError> {
        if !self.sessions.contains_key(key) {
            return Err(SessionError::UnknownSession(key.clone()));
        }
        let mut jingle = Jingle::new(Action::SessionInfo, key.sid.clone());
        jingle.payloads.extend(payload);
        self.send_request(key, jingle, now);
        Ok(())
    }

    /// The next stanza to send on the XMPP connection.
    pub fn poll_transmit(&mut self) -> Option<Element> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sessions = self
            .sessions
            .values()
            .flat_map(|s| [s.accept_deadline, s.gone_at, s.trickle_at])
            .flatten();
        let requests = self.requests.values().map(|r| r.deadline);
        sessions.chain(requests).min()
    }

    /// Runs the timers due at `now`: trickle batches, unanswered requests, sessions never
    /// accepted, peers gone.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.trickle_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.flush_trickle(&key, now);
        }
        let expired: Vec<String> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(req) = self.requests.remove(&id) {
                self.request_failed(req, None, now);
            }
        }
        let ended: Vec<(SessionKey, ReasonCondition)> = self
            .sessions
            .iter()
            .filter_map(|(k, s)| {
                if s.gone_at.is_some_and(|t| t <= now) {
                    Some((k.clone(), ReasonCondition::Gone))
                } else if s.accept_deadline.is_some_and(|t| t <= now) {
                    Some((k.clone(), ReasonCondition::Timeout))
                } else {
                    None
                }
            })
            .collect();
        for (key, condition) in ended {
            let text = match condition {
                ReasonCondition::Gone => "the peer went offline",
                _ => "the session was not accepted in time",
            };
            self.end(&key, Reason::with_text(condition, text), false, true, now);
        }
    }

    /// Takes a stanza received on the XMPP connection. Returns whether it was for the Jingle
    /// layer (a Jingle request, or the answer to one of ours); other stanzas are left to the
    /// caller. Unavailable presence from a peer starts its sessions' `gone` timer and is not
    /// consumed.
    pub fn handle_stanza(&mut self, stanza: &Element, now: Instant) -> bool {
        let from = stanza.attr("from").and_then(|f| FullJid::new(f).ok());
        if let Some(peer) = &from {
            self.heard_from(peer, stanza, now);
        }
        if stanza.is("presence", NS_CLIENT) {
            return false;
        }
        match iq_type(stanza) {
            Some(IqType::Set) => {
                let Some(jingle) = stanza.get_child("jingle", NS_JINGLE) else {
                    return false;
                };
                // Bounded before anything walks or copies it (a hostile peer's nesting would
                // otherwise overflow the stack of whoever clones or drops a copy).
                if let Err(exceeded) = StanzaLimits::DEFAULT.check(stanza) {
                    if let Some(error) = limit_error(stanza, exceeded) {
                        self.reply(error);
                    }
                    return true;
                }
                self.handle_request(stanza, jingle, from, now);
                true
            }
            Some(kind @ (IqType::Result | IqType::Error)) => {
                self.handle_answer(stanza, kind, from.as_ref(), now)
            }
            _ => false,
        }
    }

    /// Records that the peer spoke: an unavailable presence arms the gone timer, anything else
    /// from it disarms it.
    fn heard_from(&mut self, peer: &FullJid, stanza: &Element, now: Instant) {
        let unavailable =
            stanza.is("presence", NS_CLIENT) && stanza.attr("type") == Some("unavailable");
        let grace = self.config.gone_grace;
        for (key, session) in self.sessions.iter_mut() {
            if key.peer == *peer {
                if unavailable {
                    session.gone_at.get_or_insert(now + grace);
                } else {
                    session.gone_at = None;
                }
            }
        }
    }

    fn handle_answer(
        &mut self,
        stanza: &Element,
        kind: IqType,
        from: Option<&FullJid>,
        now: Instant,
    ) -> bool {
        let Some(id) = stanza.attr("id") else {
            return false;
        };
        let Some(req) = self.requests.get(id) else {
            return false;
        };
        // Only the peer may answer (RFC 6120 §8.1.2.1 allows an error from its server too,
        // which comes from the bare JID or the domain: accept those as errors).
        let from_peer = from == Some(&req.key.peer);
        let from_peer_server = stanza.attr("from").is_some_and(|f| {
            f == req.key.peer.to_bare().as_str() || f == req.key.peer.domain().as_str()
        });
        if !(from_peer || (kind == IqType::Error && from_peer_server)) {
            return false;
        }
        let Some(req) = self.requests.remove(id) else {
            return false;
        };
        if kind == IqType::Error {
            let error = StanzaError::from_stanza(stanza).unwrap_or(StanzaError {
                condition: Condition::Other,
                condition_name: "undefined-condition".to_owned(),
                jingle: None,
                text: None,
            });
            self.request_failed(req, Some(error), now);
        }
        true
    }

    /// A request of ours was refused (`error`) or went unanswered (`None`).
    fn request_failed(&mut self, req: PendingRequest, error: Option<StanzaError>, now: Instant) {
        if !self.sessions.contains_key(&req.key) {
            return;
        }
        match req.action {
            Action::SessionInitiate | Action::SessionAccept => {
                let reason = match &error {
                    None => Reason::with_text(ReasonCondition::Timeout, "the peer did not answer"),
                    Some(e) if e.jingle == Some(JingleCondition::TieBreak) => {
                        // The peer's own offer won (XEP-0166 §7.2.16): point at it if we have it.
                        match self.rival_offer(&req.key) {
                            Some(sid) => Reason::new(ReasonCondition::AlternativeSession(sid)),
                            None => Reason::with_text(
                                ReasonCondition::GeneralError,
                                "lost the tie-break of a simultaneous session-initiate",
                            ),
                        }
                    }
                    Some(e) => Reason::with_text(ReasonCondition::GeneralError, e.to_string()),
                };
                // A refused initiate needs no session-terminate: the peer has no session.
                let notify = error.is_none() || req.action == Action::SessionAccept;
                self.end(&req.key, reason, error.is_some(), notify, now);
            }
            Action::SessionTerminate => {}
            Action::TransportReplace if !is_unknown_session(error.as_ref()) => {
                // An error answer (or none) to our transport-replace is a rejection.
                if let Some(session) = self.sessions.get_mut(&req.key) {
                    for state in &mut session.contents {
                        if state.replacing.take().is_some() {
                            self.events.push_back(SessionEvent::TransportRejected {
                                key: req.key.clone(),
                                content: state.content.name.clone(),
                            });
                        }
                    }
                }
                self.events.push_back(SessionEvent::RequestFailed {
                    key: req.key,
                    action: Action::TransportReplace,
                    error,
                });
            }
            action => {
                if error
                    .as_ref()
                    .is_some_and(|e| e.jingle == Some(JingleCondition::UnknownSession))
                {
                    let reason = Reason::with_text(
                        ReasonCondition::GeneralError,
                        "the peer no longer knows the session",
                    );
                    self.end(&req.key, reason, true, false, now);
                } else {
                    self.events.push_back(SessionEvent::RequestFailed {
                        key: req.key,
                        action,
                        error,
                    });
                }
            }
        }
    }

    /// The sid of a pending offer from the same peer, of the same applications as our session
    /// `ours`: the session that replaces ours after a tie-break.
    fn rival_offer(&self, ours: &SessionKey) -> Option<String> {
        let apps = self.sessions.get(ours)?.description_namespaces();
        self.sessions
            .iter()
            .find(|(k, s)| {
                k.peer == ours.peer
                    && s.role == SessionRole::Responder
                    && s.state == SessionState::Pending
                    && s.description_namespaces() == apps
            })
            .map(|(k, _)| k.sid.clone())
    }

    fn handle_request(
        &mut self,
        stanza: &Element,
        jingle_el: &Element,
        from: Option<FullJid>,
        now: Instant,
    ) {
        let Some(peer) = from else {
            self.reply(iq_error(
                stanza,
                Condition::BadRequest,
                None,
                Some("a Jingle request must come from a full JID"),
            ));
            return;
        };
        let (action, sid) = match Jingle::read_header(jingle_el) {
            Ok(h) => h,
            Err(e) => {
                self.reply(iq_error(
                    stanza,
                    Condition::BadRequest,
                    None,
                    Some(&e.to_string()),
                ));
                return;
            }
        };
        let key = SessionKey { peer, sid };
        if action != Action::SessionInitiate && !self.sessions.contains_key(&key) {
            let late = matches!(action, Action::SessionInfo | Action::SessionTerminate);
            if late && self.ended_lately(&key, now) {
                // It crossed our session-terminate: nothing to do, and no cause for an error.
                self.reply(iq_result(stanza));
            } else {
                self.reply(jingle_error(stanza, JingleCondition::UnknownSession));
            }
            return;
        }
        let limits = self.config.transport_limits;
        let jingle = match Jingle::from_element_with(jingle_el, limits, &self.config.transports) {
            Ok(j) => j,
            Err(e) => {
                self.reply(bad_request(stanza, &e));
                return;
            }
        };
        match action {
            Action::SessionInitiate => self.on_initiate(stanza, key, jingle, now),
            Action::SessionAccept => self.on_accept(stanza, key, jingle),
            Action::SessionTerminate => {
                self.reply(iq_result(stanza));
                let reason = jingle
                    .reason
                    .unwrap_or_else(|| Reason::new(ReasonCondition::Success));
                self.end(&key, reason, true, false, now);
            }
            Action::SessionInfo => self.on_info(stanza, key, jingle),
            Action::TransportInfo => self.on_transport_info(stanza, key, jingle),
            Action::TransportReplace => self.on_transport_replace(stanza, key, jingle, now),
            Action::TransportAccept | Action::TransportReject => {
                self.on_transport_answer(stanza, key, jingle, action)
            }
            _ => {
                // content-*, description-info, security-info: none of our applications
                // negotiates them yet.
                self.reply(iq_error(
                    stanza,
                    Condition::FeatureNotImplemented,
                    None,
                    Some(action.as_str()),
                ));
            }
        }
    }

    fn on_initiate(&mut self, stanza: &Element, key: SessionKey, mut jingle: Jingle, now: Instant) {
        if self.sessions.contains_key(&key) {
            self.reply(jingle_error(stanza, JingleCondition::OutOfOrder));
            return;
        }
        if jingle.contents.is_empty() {
            self.reply(iq_error(
                stanza,
                Condition::BadRequest,
                None,
                Some("session-initiate without content"),
            ));
            return;
        }
        if let Err(text) = self.config.transports.check_offer(&jingle.contents) {
            self.reply(iq_error(stanza, Condition::BadRequest, None, Some(&text)));
            return;
        }
        if self.check_room(&key.peer).is_err() {
            self.reply(iq_error(stanza, Condition::ResourceConstraint, None, None));
            return;
        }
        // Simultaneous initiation (XEP-0166 §7.2.16): our pending offer of the same kind to
        // the same peer competes with this one; the lower sid wins, then the lower JID.
        let mut theirs: Vec<String> = jingle
            .contents
            .iter()
            .filter_map(Content::description_ns)
            .collect();
        theirs.sort();
        let rival = self
            .sessions
            .iter()
            .find(|(k, s)| {
                k.peer == key.peer
                    && s.role == SessionRole::Initiator
                    && s.state == SessionState::Pending
                    && s.description_namespaces() == theirs
            })
            .map(|(k, _)| k.clone());
        if let Some(ours) = rival {
            let we_win = match ours.sid.as_bytes().cmp(key.sid.as_bytes()) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => self.local.as_str() < key.peer.as_str(),
            };
            if we_win {
                self.reply(jingle_error(stanza, JingleCondition::TieBreak));
                return;
            }
            // Theirs overrules ours. The peer answers ours with a tie-break error if it was
            // still waiting on its own offer when ours arrived; if ours reached it first it
            // acknowledged it, so ours is terminated explicitly, pointing at the survivor.
            let reason = Reason::new(ReasonCondition::AlternativeSession(key.sid.clone()));
            self.end(&ours, reason, false, true, now);
        }
        self.reply(iq_result(stanza));
        keep_first_candidates(&mut jingle.contents, self.config.max_remote_candidates);
        let mut contents = Vec::with_capacity(jingle.contents.len());
        let mut states = Vec::with_capacity(jingle.contents.len());
        for c in jingle.contents {
            let remote = c.ice_credentials();
            let count = c.candidate_count();
            states.push(ContentState {
                content: c.clone(),
                wrapper: None,
                local: None,
                remote,
                remote_candidates: count,
                generation: 0,
                replacing: None,
                replace_offered: None,
            });
            contents.push(c);
        }
        let transports_ok = contents.iter().any(|c| {
            c.transport
                .as_ref()
                .is_some_and(|t| self.config.transports.contains(&t.ns()))
        });
        let apps_ok = self.config.applications.is_empty()
            || contents.iter().any(|c| {
                c.description_ns()
                    .is_some_and(|ns| self.config.applications.contains(&ns))
            });
        self.sessions.insert(
            key.clone(),
            Session {
                role: SessionRole::Responder,
                state: SessionState::Pending,
                contents: states,
                accept_deadline: Some(now + self.config.accept_timeout),
                gone_at: None,
                trickle: Vec::new(),
                trickle_at: None,
            },
        );
        // XEP-0166 §6.3: acknowledge first, then decline what we cannot do.
        if !apps_ok {
            let reason = Reason::new(ReasonCondition::UnsupportedApplications);
            self.end_quietly(&key, reason, now);
        } else if !transports_ok {
            let reason = Reason::new(ReasonCondition::UnsupportedTransports);
            self.end_quietly(&key, reason, now);
        } else {
            self.events
                .push_back(SessionEvent::Incoming { key, contents });
        }
    }

    fn on_accept(&mut self, stanza: &Element, key: SessionKey, mut jingle: Jingle) {
        let Some(session) = self.sessions.get_mut(&key) else {
            self.reply(jingle_error(stanza, JingleCondition::UnknownSession));
            return;
        };
        if session.role != SessionRole::Initiator || session.state != SessionState::Pending {
            self.reply(jingle_error(stanza, JingleCondition::OutOfOrder));
            return;
        }
        if !session.has_all(&jingle.contents) {
            self.reply(iq_error(
                stanza,
                Condition::BadRequest,
                None,
                Some("session-accept contents do not match the offer"),
            ));
            return;
        }
        for c in &jingle.contents {
            let offered = session
                .content_mut(&c.name)
                .and_then(|s| s.content.transport.as_ref());
            let checked = self
                .config
                .transports
                .check_answer(offered, c.transport.as_ref());
            if let Err(text) = checked {
                self.reply(iq_error(stanza, Condition::BadRequest, None, Some(&text)));
                return;
            }
        }
        keep_first_candidates(&mut jingle.contents, self.config.max_remote_candidates);
        for c in &jingle.contents {
            if let Some(state) = session.content_mut(&c.name) {
                state.remote = c.ice_credentials();
                state.remote_candidates = c.candidate_count();
                if c.description.is_some() {
                    state.content.description = c.description.clone();
                }
            }
        }
        session.state = SessionState::Active;
        session.accept_deadline = None;
        self.reply(iq_result(stanza));
        self.events.push_back(SessionEvent::Accepted {
            key,
            contents: jingle.contents,
        });
    }

    fn on_transport_replace(
        &mut self,
        stanza: &Element,
        key: SessionKey,
        jingle: Jingle,
        now: Instant,
    ) {
        let local_is_initiator = self
            .sessions
            .get(&key)
            .is_some_and(|s| s.role == SessionRole::Initiator);
        let supported = |ns: &str| self.config.transports.contains(ns);
        let mut verdicts = Vec::with_capacity(jingle.contents.len());
        for c in &jingle.contents {
            let Some(t) = &c.transport else {
                self.reply(iq_error(
                    stanza,
                    Condition::BadRequest,
                    None,
                    Some("transport-replace without a transport"),
                ));
                return;
            };
            verdicts.push(supported(&t.ns()));
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            self.reply(jingle_error(stanza, JingleCondition::UnknownSession));
            return;
        };
        if !session.has_all(&jingle.contents) {
            self.reply(iq_error(
                stanza,
                Condition::BadRequest,
                None,
                Some("transport-replace for a content the session does not have"),
            ));
            return;
        }
        // Tie-break (XEP-0166 §7.2.16, existing session): the initiator's replace wins.
        let clash = jingle.contents.iter().any(|c| {
            session
                .content_mut(&c.name)
                .is_some_and(|s| s.replacing.is_some())
        });
        if clash && local_is_initiator {
            self.reply(jingle_error(stanza, JingleCondition::TieBreak));
            return;
        }
        self.reply(iq_result(stanza));
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let mut rejected = Vec::new();
        for (c, ok) in jingle.contents.into_iter().zip(verdicts) {
            let Some(state) = session.content_mut(&c.name) else {
                continue;
            };
            state.replacing = None;
            let Some(transport) = c.transport else {
                continue;
            };
            state.replace_offered = Some(transport.clone());
            if ok {
                self.events.push_back(SessionEvent::TransportReplace {
                    key: key.clone(),
                    content: c.name,
                    transport,
                });
            } else {
                rejected.push(c.name);
            }
        }
        for name in rejected {
            let _ = self.reject_transport(&key, &name, now);
        }
    }

    fn on_transport_answer(
        &mut self,
        stanza: &Element,
        key: SessionKey,
        jingle: Jingle,
        action: Action,
    ) {
        let Some(session) = self.sessions.get_mut(&key) else {
            self.reply(jingle_error(stanza, JingleCondition::UnknownSession));
            return;
        };
        let pending = !jingle.contents.is_empty()
            && jingle.contents.iter().all(|c| {
                session
                    .content_mut(&c.name)
                    .is_some_and(|s| s.replacing.is_some())
            });
        if !pending {
            self.reply(jingle_error(stanza, JingleCondition::OutOfOrder));
            return;
        }
        if action == Action::TransportAccept
            && jingle.contents.iter().any(|c| c.transport.is_none())
        {
            self.reply(iq_error(
                stanza,
                Condition::BadRequest,
                None,
                Some("transport-accept without a transport"),
            ));
            return;
        }
        self.reply(iq_result(stanza));
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        for c in jingle.contents {
            let Some(state) = session.content_mut(&c.name) else {
                continue;
            };
            let ours = state.replacing.take();
            match (action, c.transport, ours) {
                (Action::TransportAccept, Some(theirs), Some(_)) => {
                    state.wrapper = Some(self.config.transports.wrapper_of(&theirs));
                    state.content.transport = Some(theirs.clone());
                    self.events.push_back(SessionEvent::TransportAccepted {
                        key: key.clone(),
                        content: c.name,
                        transport: theirs,
                    });
                }
                _ => self.events.push_back(SessionEvent::TransportRejected {
                    key: key.clone(),
                    content: c.name,
                }),
            }
        }
    }

    fn on_info(&mut self, stanza: &Element, key: SessionKey, jingle: Jingle) {
        let Some(payload) = jingle.payloads.into_iter().next() else {
            // XEP-0166 §6.8: an empty session-info is a ping.
            self.reply(iq_result(stanza));
            return;
        };
        // A payload of the session's own application (XEP-0166 §7.2.9: session-info carries
        // application-specific information, such as XEP-0234's <checksum/>) is always for the
        // application; other namespaces only when configured.
        let ns = payload.ns();
        let own = self
            .sessions
            .get(&key)
            .is_some_and(|s| s.description_namespaces().contains(&ns));
        if own || self.config.info_namespaces.contains(&ns) {
            self.reply(iq_result(stanza));
            self.events.push_back(SessionEvent::Info { key, payload });
        } else {
            self.reply(jingle_error(stanza, JingleCondition::UnsupportedInfo));
        }
    }

    fn on_transport_info(&mut self, stanza: &Element, key: SessionKey, jingle: Jingle) {
        let limit = self.config.max_remote_candidates;
        let Some(session) = self.sessions.get_mut(&key) else {
            self.reply(jingle_error(stanza, JingleCondition::UnknownSession));
            return;
        };
        if jingle.contents.is_empty() {
            self.reply(iq_error(
                stanza,
                Condition::BadRequest,
                None,
                Some("transport-info without content"),
            ));
            return;
        }
        // Check everything before changing anything: a bad content leaves the session as it was.
        for c in &jingle.contents {
            let Some(state) = session.content_mut(&c.name) else {
                self.reply(iq_error(
                    stanza,
                    Condition::BadRequest,
                    None,
                    Some("transport-info for a content the session does not have"),
                ));
                return;
            };
            let Some(t) = &c.transport else {
                self.reply(iq_error(
                    stanza,
                    Condition::BadRequest,
                    None,
                    Some("transport-info without transport"),
                ));
                return;
            };
            let expected = self
                .config
                .transports
                .info_namespace(state.content.transport.as_ref());
            if t.ns() != expected {
                self.reply(iq_error(
                    stanza,
                    Condition::BadRequest,
                    None,
                    Some("transport-info for another transport than the content's"),
                ));
                return;
            }
        }
        let mut events = Vec::with_capacity(jingle.contents.len());
        for c in jingle.contents {
            let (Some(state), Some(mut transport)) = (session.content_mut(&c.name), c.transport)
            else {
                continue;
            };
            let creds = transport.ice_udp().and_then(IceUdpTransport::credentials);
            let restart = match (&creds, &state.remote) {
                (Some(new), Some(old)) => new != old,
                _ => false,
            };
            if let Some(new) = creds {
                state.remote = Some(new);
            }
            // Beyond the session's bound the first ones are kept, the rest ignored.
            let base = if restart { 0 } else { state.remote_candidates };
            if let Some(t) = transport.ice_udp_mut() {
                t.keep_first_candidates(limit.saturating_sub(base));
            }
            let added = transport.ice_udp().map_or(0, |t| t.candidates.len());
            state.remote_candidates = if restart {
                added
            } else {
                state.remote_candidates + added
            };
            events.push(SessionEvent::TransportInfo {
                key: key.clone(),
                content: c.name,
                transport,
                restart,
            });
        }
        self.reply(iq_result(stanza));
        self.events.extend(events);
    }

    fn check_room(&self, peer: &FullJid) -> Result<(), SessionError> {
        let per_peer = self.sessions.keys().filter(|k| k.peer == *peer).count();
        if self.sessions.len() >= self.config.max_sessions
            || per_peer >= self.config.max_sessions_per_peer
        {
            return Err(SessionError::TooManySessions);
        }
        Ok(())
    }

    fn flush_trickle(&mut self, key: &SessionKey, now: Instant) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.trickle_at = None;
        let held = std::mem::take(&mut session.trickle);
        if held.is_empty() {
            return;
        }
        let mut jingle = Jingle::new(Action::TransportInfo, key.sid.clone());
        for state in &session.contents {
            let cands: Vec<IceUdpCandidate> = held
                .iter()
                .filter(|(name, _)| *name == state.content.name)
                .map(|(_, c)| {
                    let mut c = c.clone();
                    c.generation = state.generation;
                    c
                })
                .collect();
            if cands.is_empty() {
                continue;
            }
            // XEP-0176 §5.3: ufrag and pwd accompany every candidate sent.
            let ice = match &state.local {
                Some(creds) => IceUdpTransport::new(creds, cands),
                None => IceUdpTransport {
                    ufrag: None,
                    pwd: None,
                    candidates: cands,
                    fingerprint: None,
                    skipped: Skipped::default(),
                },
            };
            let transport = self.config.transports.wrap_ice(state.wrapper.as_ref(), ice);
            jingle.contents.push(Content {
                creator: state.content.creator,
                name: state.content.name.clone(),
                senders: state.content.senders,
                disposition: None,
                description: None,
                transport: Some(transport),
                security: None,
            });
        }
        if !jingle.contents.is_empty() {
            self.send_request(key, jingle, now);
        }
    }

    fn send_request(&mut self, key: &SessionKey, jingle: Jingle, now: Instant) {
        let id = self.random_string(IQ_ID_LEN);
        let mut stanza = iq(
            IqType::Set,
            &id,
            key.peer.as_str(),
            Some(jingle.to_element()),
        );
        set_attr(&mut stanza, "from", self.local.as_str());
        if self.requests.len() >= self.config.max_pending_requests {
            let oldest = self
                .requests
                .iter()
                .min_by_key(|(_, r)| r.deadline)
                .map(|(id, _)| id.clone());
            if let Some(old) = oldest.and_then(|id| self.requests.remove(&id)) {
                self.request_failed(old, None, now);
            }
        }
        self.requests.insert(
            id,
            PendingRequest {
                key: key.clone(),
                action: jingle.action,
                deadline: now + self.config.request_timeout,
            },
        );
        self.transmits.push_back(stanza);
    }

    fn reply(&mut self, mut stanza: Element) {
        set_attr(&mut stanza, "from", self.local.as_str());
        self.transmits.push_back(stanza);
    }

    /// Ends a session the application never heard of (declined at once after the ack).
    fn end_quietly(&mut self, key: &SessionKey, reason: Reason, now: Instant) {
        if self.sessions.remove(key).is_some() {
            let mut jingle = Jingle::new(Action::SessionTerminate, key.sid.clone());
            jingle.reason = Some(reason);
            self.send_request(key, jingle, now);
        }
    }

    /// Forgets a session, optionally telling the peer, and reports it.
    /// Whether `key` ended less than [`ENDED_LINGER`] ago (forgetting older ones).
    fn ended_lately(&mut self, key: &SessionKey, now: Instant) -> bool {
        while self.ended.front().is_some_and(|(_, until)| *until <= now) {
            self.ended.pop_front();
        }
        self.ended.iter().any(|(k, _)| k == key)
    }

    fn end(&mut self, key: &SessionKey, reason: Reason, by_peer: bool, notify: bool, now: Instant) {
        if self.sessions.remove(key).is_none() {
            return;
        }
        if self.ended.len() >= MAX_ENDED {
            self.ended.pop_front();
        }
        self.ended.push_back((key.clone(), now + ENDED_LINGER));
        if notify {
            let mut jingle = Jingle::new(Action::SessionTerminate, key.sid.clone());
            jingle.reason = Some(reason.clone());
            self.send_request(key, jingle, now);
        }
        // Requests still awaiting answers stay recorded, so that their answers are recognised
        // (and dropped) rather than handed to the application as stray stanzas.
        self.events.push_back(SessionEvent::Terminated {
            key: key.clone(),
            reason,
            by_peer,
        });
    }
}

fn is_unknown_session(error: Option<&StanzaError>) -> bool {
    error.is_some_and(|e| e.jingle == Some(JingleCondition::UnknownSession))
}

/// A `transport-replace` / `-accept` / `-reject` of one content carrying `transport`.
fn transport_action(
    action: Action,
    key: &SessionKey,
    content: &Content,
    transport: Transport,
) -> Jingle {
    let mut jingle = Jingle::new(action, key.sid.clone());
    jingle.contents.push(Content {
        creator: content.creator,
        name: content.name.clone(),
        senders: content.senders,
        disposition: None,
        description: None,
        transport: Some(transport),
        security: None,
    });
    jingle
}

fn content_state_local(transports: &TransportRegistry, content: Content) -> ContentState {
    let local = content.ice_credentials();
    let wrapper = content.transport.as_ref().map(|t| transports.wrapper_of(t));
    ContentState {
        content,
        wrapper,
        local,
        remote: None,
        remote_candidates: 0,
        generation: 0,
        replacing: None,
        replace_offered: None,
    }
}

/// Keeps at most `max` remote candidates in each content's ICE-UDP transport (the first ones;
/// see [`SessionConfig::max_remote_candidates`]).
fn keep_first_candidates(contents: &mut [Content], max: usize) {
    for c in contents {
        if let Some(t) = c.transport.as_mut().and_then(Transport::ice_udp_mut) {
            t.keep_first_candidates(max);
        }
    }
}

/// The state of `content` in the session `key`.
fn content_state<'a>(
    sessions: &'a mut HashMap<SessionKey, Session>,
    key: &SessionKey,
    content: &str,
) -> Result<&'a mut ContentState, SessionError> {
    sessions
        .get_mut(key)
        .ok_or_else(|| SessionError::UnknownSession(key.clone()))?
        .content_mut(content)
        .ok_or_else(|| SessionError::UnknownContent(key.clone(), content.to_owned()))
}

fn bad_request(stanza: &Element, e: &JingleError) -> Element {
    iq_error(stanza, Condition::BadRequest, None, Some(&e.to_string()))
}
