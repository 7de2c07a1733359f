//! Stream tubes: a local TCP service shared with a peer over a Jingle session, every TCP
//! connection carried by its own data channel (`xep/tube.md`).
//!
//! The sharing side offers the session ([`share`]) with a [`TubeDescription`] naming the
//! service; the connecting side accepts it ([`IncomingTube::accept`]) with a local
//! [`TcpListener`]. Each TCP connection accepted there opens a reliable, ordered data channel
//! (its own SCTP stream) in the session's association, and the sharing side connects it to the
//! service. Bytes flow both ways with per-connection credit (`xep/tube.md` §4, see
//! [`pipe`](mod@pipe)), so one slow consumer cannot starve the others; half-close and failures cross
//! the tube (a TCP FIN becomes `fin`, a refused or failed connection resets the other end).
//! [`Tube::run`] carries connections until the session ends.

pub use jingle_ice_proto::apps::tube_description as description;
pub mod pipe;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jid::FullJid;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use description::{TubeDescription, TubeDescriptionError, NS_TUBE};
pub use pipe::{Control, PipeEnd, INITIAL_CREDIT};

use crate::channel::ChannelOptions;
use crate::jingle::{Reason, ReasonCondition};
use crate::net::{DataChannel, SelectedPair};
use crate::xmpp::{
    IncomingSession, JingleRuntime, JingleRuntimeConfig, JingleRuntimeError, JingleSession,
};
use pipe::{pipe, ActiveGuard, Counters, PipeConfig};

/// Label of every tube connection's channel (`xep/tube.md` §3).
pub const CHANNEL_LABEL: &str = "tube";
/// Sub-protocol of every tube connection's channel (`xep/tube.md` §3): the namespace.
pub const CHANNEL_PROTOCOL: &str = NS_TUBE;

/// How long [`Tube::run`] lets its connections reset their TCP connections once the tube has
/// ended.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// How long [`Tube::run`] waits for the peer's `session-terminate` after the association
/// closed, before ending the session itself with `<connectivity-error/>`.
const PEER_END_WAIT: Duration = Duration::from_secs(2);

/// Advertises tubes in disco#info (XEP-0030 §3.1, `xep/tube.md` §5) so that peers can find
/// who takes them. Tubes use no `session-info` payload.
///
/// One call for either way of running the runtime: `enable(&mut config)` for a
/// [`JingleRuntime`] in the application's own XMPP client, `enable(&mut config.runtime)` for a
/// [`JingleClient`](crate::xmpp::JingleClient) bot.
pub fn enable(config: &mut JingleRuntimeConfig) {
    let ns = NS_TUBE.to_string();
    if !config.extra_features.contains(&ns) {
        config.extra_features.push(ns);
    }
}

/// Settings of a tube (either side).
#[derive(Debug, Clone)]
pub struct TubeConfig {
    /// Most connections carried at once; more are refused (reset on the connecting side,
    /// answered `error` on the sharing side).
    pub max_connections: usize,
    /// Bytes the peer may have in flight towards us on each connection (each connection's
    /// receive buffer; at least [`INITIAL_CREDIT`]). Bounds a connection's throughput to
    /// about `window / RTT`.
    pub window: u64,
    /// Largest data message sent (also bounded by the peer's `max-message-size`).
    pub chunk: usize,
    /// How long the sharing side waits for the service to accept a connection.
    pub service_connect_timeout: Duration,
}

impl Default for TubeConfig {
    fn default() -> Self {
        TubeConfig {
            max_connections: 64,
            window: 512 * 1024,
            chunk: 64 * 1024,
            service_connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a tube could not be set up. The session has been ended with the matching reason.
#[derive(Debug, thiserror::Error)]
pub enum TubeError {
    /// Opening the session failed (peer unreachable, declined, ICE failed, ...).
    #[error("session: {0}")]
    Session(#[from] JingleRuntimeError),
    /// The session has no data channel (the peer chose plain ICE-UDP).
    #[error("the session carries no data channel")]
    NoChannel,
    /// The offer is not a tube we take.
    #[error("offer: {0}")]
    Offer(#[from] TubeDescriptionError),
}

/// A snapshot of a tube's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TubeStats {
    /// Connections carried so far.
    pub connections: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections refused (over the limit, or the service refused).
    pub refused: u64,
    /// Connections that ended abortively.
    pub failed: u64,
    /// Bytes from our local connections to the peer.
    pub bytes_sent: u64,
    /// Bytes from the peer to our local connections.
    pub bytes_received: u64,
}

enum Side {
    /// We offered: channels from the peer go to this service (`host:port`).
    Share(String),
    /// We accepted: local connections to this listener go to the peer.
    Connect(TcpListener),
}

/// An established tube: the session, our side of it, and its counters. Dropping it (or
/// [`Tube::close`]) ends the session with `<success/>` (XEP-0166 §6.7).
pub struct Tube {
    session: JingleSession,
    description: TubeDescription,
    side: Side,
    config: TubeConfig,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Tube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tube")
            .field("peer", &self.session.key().peer)
            .field("service", &self.description.service)
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

/// Offers `service_addr` (`host:port`, connected to for each of the peer's connections) to
/// `peer` as the stream tube `description`, and waits until the peer accepts and the data
/// channels are up.
pub async fn share(
    jingle: &JingleRuntime,
    peer: FullJid,
    description: TubeDescription,
    service_addr: impl Into<String>,
    config: TubeConfig,
) -> Result<Tube, TubeError> {
    let session = jingle.connect(peer, description.to_element()).await?;
    Tube::new(
        session,
        description,
        Side::Share(service_addr.into()),
        config,
    )
}

/// A tube offered by a peer, waiting for the application's decision.
pub struct IncomingTube {
    session: IncomingSession,
    description: TubeDescription,
}

impl std::fmt::Debug for IncomingTube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingTube")
            .field("peer", &self.session.key().peer)
            .field("description", &self.description)
            .finish()
    }
}

impl IncomingTube {
    /// Reads a tube offer. A session that is not one is declined here
    /// (`<unsupported-applications/>`, or `<failed-application/>` for a malformed tube) and the
    /// error returned.
    pub fn from_session(session: IncomingSession) -> Result<IncomingTube, TubeError> {
        let parsed = match session.description() {
            Some(d) => TubeDescription::from_element(d),
            None => Err(TubeDescriptionError::NotATube("no description".into())),
        };
        match parsed {
            Ok(description) => Ok(IncomingTube {
                session,
                description,
            }),
            Err(e) => {
                let condition = match e {
                    TubeDescriptionError::NotATube(_) => ReasonCondition::UnsupportedApplications,
                    _ => ReasonCondition::FailedApplication,
                };
                session.decline(Reason::with_text(condition, e.to_string()));
                Err(e.into())
            }
        }
    }

    /// Who offers it.
    pub fn peer(&self) -> &FullJid {
        &self.session.key().peer
    }

    /// The offer.
    pub fn description(&self) -> &TubeDescription {
        &self.description
    }

    /// Declines (`<decline/>`).
    pub fn decline(self) {
        self.session.decline(Reason::new(ReasonCondition::Decline));
    }

    /// Accepts: connections to `listener` will be carried to the peer's service once
    /// [`Tube::run`] runs.
    pub async fn accept(
        self,
        listener: TcpListener,
        config: TubeConfig,
    ) -> Result<Tube, TubeError> {
        let session = self.session.accept(self.description.to_element()).await?;
        Tube::new(session, self.description, Side::Connect(listener), config)
    }
}

impl Tube {
    fn new(
        session: JingleSession,
        description: TubeDescription,
        side: Side,
        config: TubeConfig,
    ) -> Result<Tube, TubeError> {
        if session.data_channels().is_none() {
            session.end(Reason::with_text(
                ReasonCondition::FailedTransport,
                "no data channel",
            ));
            return Err(TubeError::NoChannel);
        }
        Ok(Tube {
            session,
            description,
            side,
            config,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The session underneath.
    pub fn session(&self) -> &JingleSession {
        &self.session
    }

    /// The offer.
    pub fn description(&self) -> &TubeDescription {
        &self.description
    }

    /// The connecting side's listening address (`None` on the sharing side).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.side {
            Side::Connect(l) => l.local_addr().ok(),
            Side::Share(_) => None,
        }
    }

    /// The ICE pair the tube runs on.
    pub fn selected_pair(&self) -> Option<SelectedPair> {
        self.session.selected_pair()
    }

    /// The counters now.
    pub fn stats(&self) -> TubeStats {
        let c = &self.counters;
        TubeStats {
            connections: c.opened.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
        }
    }

    /// Ends the session with `<success/>`.
    pub fn close(&self) {
        if self.session.end_reason().is_none() {
            self.session.end(Reason::new(ReasonCondition::Success));
        }
    }

    /// Carries connections until the session ends, and says why it ended; connections still
    /// open then are reset. Call it once per tube. Dropping the future stops every connection
    /// at once (their TCP connections are closed).
    pub async fn run(&self) -> Reason {
        let Some(channels) = self.session.data_channels() else {
            self.close();
            return Reason::with_text(ReasonCondition::FailedTransport, "no data channel");
        };
        let pipe_config = PipeConfig {
            window: self.config.window,
            chunk: self.config.chunk,
        };
        let mut tasks = JoinSet::new();
        // Turned true when the tube ends: open connections are then reset, not closed
        // cleanly, so that no client takes a cut stream for a complete one.
        let (stop, stopped) = watch::channel(false);
        let reason = loop {
            let local = async {
                match &self.side {
                    Side::Connect(l) => l.accept().await,
                    Side::Share(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                reason = self.session.closed() => break reason,
                channel = channels.accept() => match channel {
                    Some(c) => self.peer_channel(c, pipe_config, &mut tasks, &stopped),
                    None => {
                        // The peer's session-terminate may trail its association's close.
                        if let Ok(r) =
                            tokio::time::timeout(PEER_END_WAIT, self.session.closed()).await
                        {
                            break r;
                        }
                        let why = channels
                            .closed_reason()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "the association closed".into());
                        let reason = Reason::with_text(ReasonCondition::ConnectivityError, why);
                        self.session.end(reason.clone());
                        break reason;
                    }
                },
                accepted = local => match accepted {
                    Ok((stream, from)) => {
                        self.local_connection(stream, from, pipe_config, &mut tasks, &stopped)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "tube: accepting a local connection failed");
                        // Out of descriptors and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        };
        stop.send_replace(true);
        let _ = tokio::time::timeout(STOP_WAIT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.shutdown().await;
        reason
    }

    fn at_limit(&self) -> bool {
        self.counters.active.load(Ordering::Relaxed) >= self.config.max_connections as u64
    }

    /// A channel the peer opened: a connection to the service (sharing side), or refused.
    fn peer_channel(
        &self,
        mut channel: DataChannel,
        config: PipeConfig,
        tasks: &mut JoinSet<()>,
        stopped: &watch::Receiver<bool>,
    ) {
        let service = match &self.side {
            Side::Share(s) if channel.protocol() == CHANNEL_PROTOCOL => s.clone(),
            _ => {
                tracing::warn!(
                    label = channel.label(),
                    protocol = channel.protocol(),
                    "tube: refusing a channel that is not a tube connection"
                );
                channel.close();
                return;
            }
        };
        if self.at_limit() {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                limit = self.config.max_connections,
                "tube: refusing a connection over the limit"
            );
            let msg = Control::Error(format!(
                "too many connections (limit {})",
                self.config.max_connections
            ))
            .encode();
            tasks.spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    channel.send(msg.as_bytes(), false),
                )
                .await;
                channel.close();
            });
            return;
        }
        let counters = self.counters.clone();
        let timeout = self.config.service_connect_timeout;
        let stopped = stopped.clone();
        // Counted before the task runs, so that a burst of connections sees the limit.
        let active = ActiveGuard::new(counters.clone());
        tasks.spawn(async move {
            let _active = active;
            let connect = async move {
                match tokio::time::timeout(timeout, TcpStream::connect(service.as_str())).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {timeout:?}"),
                    )),
                }
            };
            let end = pipe(channel, connect, config, counters, stopped).await;
            if let PipeEnd::Failed(why) = end {
                tracing::info!(%why, "tube connection failed");
            }
        });
    }

    /// A local TCP connection (connecting side): a new channel to the peer, or refused.
    fn local_connection(
        &self,
        stream: TcpStream,
        from: SocketAddr,
        config: PipeConfig,
        tasks: &mut JoinSet<()>,
        stopped: &watch::Receiver<bool>,
    ) {
        if self.at_limit() {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                %from,
                limit = self.config.max_connections,
                "tube: refusing a local connection over the limit"
            );
            // A reset, so the client sees a refusal rather than an empty answer.
            let _ = stream.set_zero_linger();
            return;
        }
        let Some(channels) = self.session.data_channels() else {
            let _ = stream.set_zero_linger();
            return;
        };
        let channel = match channels.open(ChannelOptions::reliable(CHANNEL_LABEL, CHANNEL_PROTOCOL))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%from, error = %e, "tube: no channel for a local connection");
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_zero_linger();
                return;
            }
        };
        let counters = self.counters.clone();
        let stopped = stopped.clone();
        let active = ActiveGuard::new(counters.clone());
        tasks.spawn(async move {
            let _active = active;
            let end = pipe(channel, async { Ok(stream) }, config, counters, stopped).await;
            if let PipeEnd::Failed(why) = end {
                tracing::info!(%from, %why, "tube connection failed");
            }
        });
    }
}

impl Drop for Tube {
    fn drop(&mut self) {
        self.close();
    }
}
