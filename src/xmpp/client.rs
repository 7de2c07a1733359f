//! A convenience client for bots and examples: an [`XmppConnection`] that it owns, with the
//! [`JingleRuntime`] extension plugged in, service discovery answered (XEP-0030, XEP-0115 caps in
//! presence), STUN/TURN servers fetched from the user's server (XEP-0215) and fetched again
//! before their credentials expire.
//!
//! All of that but the connection is the extension's own: the client's pump only hands it every
//! stanza, sends what it emits, refuses what nobody took, and tells it when the stream is lost
//! and back ([`JingleRuntime::stream_lost`], [`JingleRuntime::stream_online`]). Applications with their
//! own tokio-xmpp client use [`JingleRuntime`] directly with the same few calls
//! (`examples/tokio_xmpp_client.rs`).
//!
//! When the connection drops (anything but [`JingleClient::close`]), the client reconnects with
//! backoff ([`ReconnectPolicy`]) and asks the server to bind the same resource again (RFC 6120
//! §7.7): peers know our sessions by our full JID (XEP-0166 §7.1) and refuse session stanzas
//! from any other, so the Jingle extension, its sessions and their peer-to-peer channels carry
//! on as they were. It announces itself again (presence with XEP-0115 caps) and sends what the
//! extension emitted meanwhile, in order (a bounded queue), after the requests that were on the
//! wire when the stream died and got no answer. A Jingle request the server bounces because the
//! peer is offline for a moment (it is probably reconnecting too) is sent again for
//! [`ReconnectPolicy::peer_wait`]. If the server binds another resource, or reconnecting fails
//! for good, the sessions end with `<connectivity-error/>` and the client is closed:
//! [`JingleClient::state`], [`JingleClient::watch_state`] and
//! [`JingleClient::disconnect_reason`] say so.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jid::{FullJid, Jid};
use minidom::Element;
use tokio::sync::{oneshot, watch};

use super::connection::{XmppConfig, XmppConnection, XmppError, XmppSender};
use super::disco::{self, Features};
use super::runtime::{
    sleep_until, IncomingSession, JingleRuntime, JingleRuntimeConfig, JingleRuntimeError,
    JingleSession,
};
pub use super::runtime::{DiscoveredServices, CAPS_NODE};
use crate::jingle::{Reason, ReasonCondition};
use crate::xmpp::stanza::NS_CLIENT;

/// Pause between ending the sessions in [`JingleClient::close`] and logging off, so the
/// extension's terminates reach the pump first.
const CLOSE_GRACE: Duration = Duration::from_millis(100);
/// How long the pump waits for more stanzas the extension may still emit when logging off.
const DRAIN_WAIT: Duration = Duration::from_millis(20);
/// Bound on the log-off itself (RFC 6120 §4.4), after the queue is flushed.
const LOG_OFF_WAIT: Duration = Duration::from_secs(10);
/// The gone grace (XEP-0166 §6.7) of a [`JingleClientConfig`]: how long after a peer's
/// unavailable presence its sessions wait for another word from it. A server restart closes
/// the peer's stream with unavailable presence to us (we sent it directed presence) and the
/// peer needs the restart plus its reconnect backoff to be back: 5 s is too short for that
/// (measured in the lab: about 5 s offline with the server down 2 s). A peer that is really
/// gone also stops answering ICE consent checks (RFC 7675), which fails the session's path.
pub const CLIENT_GONE_GRACE: Duration = Duration::from_secs(20);
/// The reason recorded when the application closed the client.
pub const LOGGED_OFF: &str = "logged off";

/// Settings of a [`JingleClient`].
#[derive(Debug, Clone)]
pub struct JingleClientConfig {
    /// The account and how to reach its server.
    pub xmpp: XmppConfig,
    /// The Jingle runtime's settings: manual STUN/TURN servers, XEP-0215 discovery, the
    /// identity and features announced in disco#info (what `file_transfer::enable` and
    /// `tube::enable` add to), the session layer's settings.
    pub runtime: JingleRuntimeConfig,
    /// How to get the connection back after losing it.
    pub reconnect: ReconnectPolicy,
}

impl JingleClientConfig {
    /// Defaults: discovery on, identity `client/bot`, reconnecting on
    /// ([`ReconnectPolicy::default`]), and a gone grace (XEP-0166 §6.7) of
    /// [`CLIENT_GONE_GRACE`] instead of the session manager's 5 s.
    pub fn new(xmpp: XmppConfig) -> Self {
        let mut runtime = JingleRuntimeConfig::default();
        runtime.session.gone_grace = CLIENT_GONE_GRACE;
        JingleClientConfig {
            xmpp,
            runtime,
            reconnect: ReconnectPolicy::default(),
        }
    }
}

/// How a [`JingleClient`] gets its XMPP connection back after losing it (not a stream error
/// `<conflict/>`, RFC 6120 §4.9.3.3: another login took our resource, and reconnecting would
/// only throw it out in turn).
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// Most login attempts after one loss; 0 turns reconnecting off.
    pub max_attempts: u32,
    /// Give up when no attempt succeeded this long after the loss.
    pub max_time: Duration,
    /// Wait before the first attempt; doubled after each failed one, up to `max_delay` (each
    /// wait varies by ± 20 %).
    pub initial_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
    /// Most stanzas kept while offline; past it the oldest are dropped (logged, counted in
    /// [`ConnectionStatus::dropped_stanzas`]).
    pub queue_capacity: usize,
    /// How long after first sending it a Jingle request (other than `session-initiate`) is
    /// sent again when the server bounces it because the peer is offline
    /// (`<service-unavailable/>` or `<recipient-unavailable/>`, RFC 6121 §8.5.3.2.1): after a
    /// server restart the peer reconnects too, a moment before or after us. Unanswered requests
    /// that were on the wire when our stream died are also resent within this time, and the
    /// disco#info probe to each session peer after a reconnect is repeated this long.
    pub peer_wait: Duration,
    /// How long [`JingleClient::close`] may wait, when offline, for a reconnect to send the
    /// stanzas still queued (for example the last `session-terminate`).
    pub flush_timeout: Duration,
}

impl Default for ReconnectPolicy {
    /// 60 attempts within 2 minutes, 250 ms doubling to 2 s (± 20 % jitter), 1024 queued
    /// stanzas, 30 s peer wait (the Jingle request timeout), 15 s flush on close. The waits are
    /// short because Jingle sessions wait for us meanwhile: a peer ends them after its gone
    /// grace (XEP-0166 §6.7) unless it hears from us again.
    fn default() -> Self {
        ReconnectPolicy {
            max_attempts: 60,
            max_time: Duration::from_secs(120),
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            queue_capacity: 1024,
            peer_wait: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(15),
        }
    }
}

impl ReconnectPolicy {
    /// No reconnecting: a lost connection closes the client and ends its sessions.
    pub fn disabled() -> Self {
        ReconnectPolicy {
            max_attempts: 0,
            ..ReconnectPolicy::default()
        }
    }

    /// The wait before attempt `attempt` (1 is the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

/// Where a [`JingleClient`]'s XMPP connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    /// Logged in; stanzas flow.
    Online,
    /// The connection was lost; the sessions live on while the client logs in again.
    Reconnecting {
        /// The attempt under way or next (1 is the first).
        attempt: u32,
        /// Why the connection was lost.
        reason: String,
    },
    /// For good: logged off ([`LOGGED_OFF`]), or lost and not recovered (the reason says why).
    Closed {
        /// Why.
        reason: String,
    },
}

/// What [`JingleClient::watch_state`] publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// The connection's state.
    pub state: ClientState,
    /// Successful reconnects so far.
    pub reconnects: u32,
    /// Stanzas dropped because the offline queue was full.
    pub dropped_stanzas: u64,
}

/// Why the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The XMPP connection failed.
    #[error(transparent)]
    Xmpp(#[from] XmppError),
    /// The Jingle session failed.
    #[error(transparent)]
    Jingle(#[from] JingleRuntimeError),
    /// The peer does not advertise Jingle ICE-UDP (XEP-0166 §11, XEP-0176 §7).
    #[error("{0} does not support Jingle ICE-UDP")]
    Unsupported(FullJid),
    /// The peer's disco#info answer could not be read.
    #[error("cannot read {peer}'s disco#info answer: {reason}")]
    Disco {
        /// The peer.
        peer: FullJid,
        /// Why.
        reason: String,
    },
}

/// A logged-in bot client with Jingle ICE-UDP (see the module documentation).
pub struct JingleClient {
    jid: FullJid,
    current: Arc<Mutex<XmppSender>>,
    ext: Arc<JingleRuntime>,
    status: watch::Receiver<ConnectionStatus>,
    pump: tokio::task::JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
    close_wait: Duration,
}

impl JingleClient {
    /// Logs in, announces our capabilities, fetches the external services and starts serving
    /// Jingle.
    pub async fn connect(mut config: JingleClientConfig) -> Result<JingleClient, ClientError> {
        let send_presence = config.xmpp.presence;
        config.xmpp.presence = false;
        let conn = XmppConnection::connect(config.xmpp.clone()).await?;
        let jid = conn.jid().clone();
        let policy = config.reconnect.clone();
        // The extension does the announcing, the tracking and the answering itself.
        let mut runtime = config.runtime.clone();
        runtime.presence = send_presence;
        runtime.outbox_capacity = policy.queue_capacity;
        runtime.peer_wait = policy.peer_wait;
        let ext = Arc::new(JingleRuntime::new(jid.clone(), runtime));
        ext.stream_online();
        let current = Arc::new(Mutex::new(conn.sender()));
        let (status_tx, status_rx) = watch::channel(ConnectionStatus {
            state: ClientState::Online,
            reconnects: 0,
            dropped_stanzas: 0,
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        // Logins after a loss ask for the resource bound now (RFC 6120 §7.7).
        let mut again = config.xmpp.clone();
        again.jid = Jid::from(jid.clone());
        let pump = Pump {
            config: again,
            jid: jid.clone(),
            policy: policy.clone(),
            ext: ext.clone(),
            current: current.clone(),
            status: status_tx,
            shutdown: shutdown_rx,
            closing: None,
        };
        let pump = tokio::spawn(pump.run(conn));
        if config.runtime.discover_services {
            ext.services_settled().await;
        }
        Ok(JingleClient {
            jid,
            current,
            ext,
            status: status_rx,
            pump,
            shutdown: Some(shutdown),
            close_wait: policy.flush_timeout + LOG_OFF_WAIT,
        })
    }

    /// Our full JID: the same across reconnects.
    pub fn jid(&self) -> &FullJid {
        &self.jid
    }

    /// The Jingle extension.
    pub fn extension(&self) -> &JingleRuntime {
        &self.ext
    }

    /// A handle to send raw stanzas and iq requests on the current connection (after a
    /// reconnect, ask again: a handle of a lost connection fails with
    /// [`XmppError::Disconnected`]).
    pub fn sender(&self) -> XmppSender {
        lock(&self.current).clone()
    }

    /// The features we advertise.
    pub fn features(&self) -> &Features {
        self.ext.features()
    }

    /// What the last XEP-0215 query gave.
    pub fn discovered_services(&self) -> DiscoveredServices {
        self.ext.discovered_services()
    }

    /// Where the XMPP connection stands.
    pub fn state(&self) -> ClientState {
        self.status.borrow().state.clone()
    }

    /// How many times the connection was lost and logged in again.
    pub fn reconnects(&self) -> u32 {
        self.status.borrow().reconnects
    }

    /// A receiver of every change of the connection's state (and its counters), for a bot's
    /// log or a test.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionStatus> {
        self.status.clone()
    }

    /// Why the XMPP connection is down: the loss being recovered from while reconnecting,
    /// the final reason once closed ([`LOGGED_OFF`] after [`close`](Self::close)), `None`
    /// while online.
    pub fn disconnect_reason(&self) -> Option<String> {
        match &self.status.borrow().state {
            ClientState::Online => None,
            ClientState::Reconnecting { reason, .. } | ClientState::Closed { reason } => {
                Some(reason.clone())
            }
        }
    }

    /// Asks the peer's disco#info (XEP-0030) whether it supports Jingle ICE-UDP.
    pub async fn peer_supports(&self, peer: &FullJid) -> Result<bool, ClientError> {
        let to = Jid::from(peer.clone());
        let reply = self.sender().iq(disco::info_query("", &to, None)).await?;
        let info = disco::parse_info_result(&reply).map_err(|e| ClientError::Disco {
            peer: peer.clone(),
            reason: e.to_string(),
        })?;
        Ok(info.supports_jingle_ice_udp())
    }

    /// Checks the peer's support, then opens a session with `description` and waits until ICE
    /// is connected.
    pub async fn open(
        &self,
        peer: FullJid,
        description: Element,
    ) -> Result<JingleSession, ClientError> {
        if !self.peer_supports(&peer).await? {
            return Err(ClientError::Unsupported(peer));
        }
        Ok(self.ext.connect(peer, description).await?)
    }

    /// The next session offered to us; `None` once the client is closed for good (then
    /// [`disconnect_reason`](Self::disconnect_reason) says why).
    pub async fn next_incoming(&self) -> Option<IncomingSession> {
        let mut status = self.status.clone();
        tokio::select! {
            biased;
            offer = self.ext.next_incoming() => offer,
            _ = status.wait_for(|s| matches!(s.state, ClientState::Closed { .. })) => None,
        }
    }

    /// Ends every session with `<gone/>` and logs off (unavailable presence, stream close).
    /// Stanzas still queued go out first; when offline, a reconnect is awaited for them for
    /// at most [`ReconnectPolicy::flush_timeout`].
    pub async fn close(mut self) {
        self.ext
            .terminate_all(Reason::with_text(ReasonCondition::Gone, "logging off"));
        // Give the pump a moment to take the terminates before it logs off.
        tokio::time::sleep(CLOSE_GRACE).await;
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(self.close_wait, &mut self.pump).await;
    }

    /// Drops the XMPP connection abruptly, without ending sessions (to test how peers cope).
    pub fn abort(self) {
        self.pump.abort();
    }
}

/// Locks a mutex, also a poisoned one (the data is replaced whole, never left half-written).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---- the pump --------------------------------------------------------------------------------

/// Why serving or reconnecting stopped.
enum Stop {
    /// The application closed the client (the queue is flushed, or could not be).
    LoggedOff,
    /// The connection is gone for good.
    Failed(String),
}

/// The task that owns the connection: moves stanzas between it and the extension (which
/// answers disco#info and tracks, retries and re-announces itself, see [`JingleRuntime`]), refuses
/// the requests nobody takes with `<service-unavailable/>` (RFC 6120 §8.4), and reconnects
/// after a loss.
struct Pump {
    config: XmppConfig,
    jid: FullJid,
    policy: ReconnectPolicy,
    ext: Arc<JingleRuntime>,
    current: Arc<Mutex<XmppSender>>,
    status: watch::Sender<ConnectionStatus>,
    shutdown: oneshot::Receiver<()>,
    /// Set when the application asked to log off: the deadline for flushing the queue.
    closing: Option<Instant>,
}

impl Pump {
    async fn run(mut self, mut conn: XmppConnection) {
        loop {
            let lost = match self.serve(&mut conn).await {
                Ok(()) => {
                    if tokio::time::timeout(LOG_OFF_WAIT, conn.close())
                        .await
                        .is_err()
                    {
                        tracing::debug!("the log-off did not finish in time");
                    }
                    self.closed(LOGGED_OFF.to_owned());
                    return;
                }
                Err(reason) => reason,
            };
            self.ext.stream_lost();
            match self.reconnect(lost).await {
                Ok(c) => conn = c,
                Err(Stop::LoggedOff) => {
                    self.closed(LOGGED_OFF.to_owned());
                    return;
                }
                Err(Stop::Failed(reason)) => {
                    tracing::error!("XMPP connection closed for good: {reason}");
                    if self.closing.is_none() {
                        self.ext.terminate_all(Reason::with_text(
                            ReasonCondition::ConnectivityError,
                            "the XMPP connection is lost",
                        ));
                    }
                    self.closed(reason);
                    return;
                }
            }
        }
    }

    fn publish(&self, state: ClientState, reconnected: bool) {
        let dropped = self.ext.dropped_stanzas();
        self.status.send_modify(|s| {
            s.state = state;
            s.dropped_stanzas = dropped;
            if reconnected {
                s.reconnects += 1;
            }
        });
    }

    fn closed(&self, reason: String) {
        self.publish(ClientState::Closed { reason }, false);
    }

    /// Whether a log-off may finish: nothing left to send, no Jingle request on its way.
    fn flushed(&self) -> bool {
        self.ext.queued_stanzas() == 0 && self.ext.undelivered_requests() == 0
    }

    /// Serves one connection. `Ok` once the application logged off and the queue is flushed;
    /// `Err` with the reason when the connection was lost.
    async fn serve(&mut self, conn: &mut XmppConnection) -> Result<(), String> {
        let sender = conn.sender();
        // After a log-off request, stanzas the extension may still emit are waited for a moment.
        let mut drain_until = self.closing.map(|_| Instant::now() + DRAIN_WAIT);
        loop {
            if self.closing.is_some()
                && drain_until.is_none_or(|t| Instant::now() >= t)
                && self.flushed()
            {
                return Ok(());
            }
            tokio::select! {
                _ = &mut self.shutdown, if self.closing.is_none() => {
                    self.closing = Some(Instant::now() + self.policy.flush_timeout);
                    drain_until = Some(Instant::now() + DRAIN_WAIT);
                    let left = self.ext.undelivered_requests();
                    if left > 0 {
                        tracing::info!(
                            "logging off once {left} Jingle request(s) reach their peer (at most {:?})",
                            self.policy.flush_timeout
                        );
                    }
                }
                _ = sleep_until(drain_until), if drain_until.is_some() => {
                    drain_until = None;
                }
                _ = sleep_until(self.closing), if self.closing.is_some() => {
                    tracing::warn!(
                        "logged off with {} Jingle request(s) not delivered: their peer stayed away",
                        self.ext.undelivered_requests()
                    );
                    return Ok(());
                }
                stanza = conn.next_stanza() => {
                    let Some(stanza) = stanza else {
                        return Err(conn
                            .disconnect_reason()
                            .map_or_else(|| "the stream ended".to_owned(), |e| e.to_string()));
                    };
                    if !self.ext.handle_stanza(&stanza) {
                        self.ext.refuse_unhandled(&stanza);
                    }
                }
                out = self.ext.next_outgoing() => {
                    // The extension lives as long as this task holds it.
                    let Some(out) = out else { return Ok(()) };
                    if out.is("presence", NS_CLIENT) {
                        tracing::debug!(to = ?out.attr("to"), kind = ?out.attr("type"), "presence sent");
                    }
                    if let Err(e) = sender.send(out.clone()).await {
                        self.ext.unsent(out);
                        return Err(e.to_string());
                    }
                }
            }
        }
    }

    /// Logs in again after a loss, with backoff, as the same full JID.
    async fn reconnect(&mut self, reason: String) -> Result<XmppConnection, Stop> {
        let lost_at = Instant::now();
        if self.closing.is_some() && self.ext.queued_stanzas() == 0 {
            return Err(Stop::LoggedOff);
        }
        if reason.contains("conflict") {
            return Err(Stop::Failed(format!(
                "{reason}: another login took our resource, not reconnecting"
            )));
        }
        if self.policy.max_attempts == 0 {
            return Err(Stop::Failed(format!(
                "{reason} (reconnecting is turned off)"
            )));
        }
        tracing::warn!(
            "XMPP connection lost ({reason}); reconnecting as {} ({} stanza(s) waiting)",
            self.jid,
            self.ext.queued_stanzas()
        );
        let deadline = lost_at + self.policy.max_time;
        let mut last = reason.clone();
        let mut attempts = 0;
        for attempt in 1..=self.policy.max_attempts {
            self.publish(
                ClientState::Reconnecting {
                    attempt,
                    reason: reason.clone(),
                },
                false,
            );
            // A little jitter, so the clients of a restarted server do not all come at once.
            let jitter = rand::random_range(0.8..1.2);
            let wake = Instant::now() + self.policy.delay(attempt).mul_f64(jitter);
            if wake >= deadline {
                break;
            }
            self.offline(tokio::time::sleep_until(wake.into())).await?;
            attempts = attempt;
            tracing::info!(
                "XMPP reconnect attempt {attempt}/{} as {}",
                self.policy.max_attempts,
                self.jid
            );
            let left = deadline.saturating_duration_since(Instant::now());
            let login = tokio::time::timeout(left, XmppConnection::connect(self.config.clone()));
            let conn = match self.offline(login).await? {
                Err(_) => {
                    last = "the login did not finish before the reconnect deadline".into();
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!("XMPP reconnect attempt {attempt} failed: {e}");
                    let fatal = matches!(
                        e,
                        XmppError::Auth(_) | XmppError::Config(_) | XmppError::CaFile { .. }
                    );
                    last = e.to_string();
                    if fatal {
                        break;
                    }
                    continue;
                }
                Ok(Ok(conn)) => conn,
            };
            if conn.jid() != &self.jid {
                let msg = format!(
                    "the server bound {} instead of {} on reconnect: peers know our Jingle \
                     sessions by our full JID (XEP-0166 §7.1), so they cannot continue",
                    conn.jid(),
                    self.jid
                );
                let _ = tokio::time::timeout(LOG_OFF_WAIT, conn.close()).await;
                return Err(Stop::Failed(msg));
            }
            *lock(&self.current) = conn.sender();
            self.ext.stream_online();
            self.publish(ClientState::Online, true);
            tracing::warn!(
                "XMPP reconnected as {} after {attempt} attempt(s), {:.1} s offline; sending {} \
                 waiting stanza(s)",
                self.jid,
                lost_at.elapsed().as_secs_f64(),
                self.ext.queued_stanzas()
            );
            return Ok(conn);
        }
        Err(Stop::Failed(format!(
            "gave up reconnecting after {attempts} attempt(s) in {:.0} s (lost: {reason}; last \
             failure: {last})",
            lost_at.elapsed().as_secs_f64()
        )))
    }

    /// Runs `fut` while offline: the extension keeps what it emits meanwhile (it is polled so
    /// that it can), and a log-off request bounds the wait (or ends it at once when nothing is
    /// queued).
    async fn offline<F: Future>(&mut self, fut: F) -> Result<F::Output, Stop> {
        tokio::pin!(fut);
        loop {
            let closing = self.closing;
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = &mut self.shutdown, if self.closing.is_none() => {
                    // Let the extension emit what the log-off ends (the terminates).
                    let _ = tokio::time::timeout(DRAIN_WAIT, self.ext.next_outgoing()).await;
                    if self.flushed() {
                        return Err(Stop::LoggedOff);
                    }
                    tracing::info!(
                        "logging off while offline: waiting up to {:?} to send {} stanza(s)",
                        self.policy.flush_timeout,
                        self.ext.queued_stanzas()
                    );
                    self.closing = Some(Instant::now() + self.policy.flush_timeout);
                }
                out = self.ext.next_outgoing() => {
                    // Offline, the extension keeps its stanzas: this returns only if it was
                    // told the stream is back, which only this task does.
                    if let Some(out) = out {
                        self.ext.unsent(out);
                    }
                }
                _ = sleep_until(closing), if closing.is_some() => {
                    tracing::warn!(
                        "logged off without sending {} queued stanza(s): still offline",
                        self.ext.queued_stanzas()
                    );
                    return Err(Stop::LoggedOff);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.delay(1), Duration::from_millis(250));
        assert_eq!(p.delay(2), Duration::from_millis(500));
        assert_eq!(p.delay(3), Duration::from_secs(1));
        assert_eq!(p.delay(4), Duration::from_secs(2));
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(2));
        assert_eq!(ReconnectPolicy::disabled().max_attempts, 0);
    }
}
