//! A convenience client for bots and examples: an [`XmppConnection`] that it owns, with the
//! [`JingleIce`] extension plugged in, service discovery answered (XEP-0030, XEP-0115 caps in
//! presence), STUN/TURN servers fetched from the user's server (XEP-0215) and fetched again
//! before their credentials expire.
//!
//! Applications with their own tokio-xmpp client use [`JingleIce`] directly and do what the
//! pump task here does: hand it every stanza, send what it emits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::sync::{oneshot, watch};

use super::connection::{XmppConfig, XmppConnection, XmppError, XmppSender};
use super::disco::{self, Features, Identity};
use super::extdisco::{self, IceServers};
use super::jingle::{IncomingSession, JingleIce, JingleIceConfig, JingleIceError, JingleSession};
use crate::jingle::stanza::{iq_error, iq_type, Condition, IqType};
use crate::jingle::{Reason, ReasonCondition};

/// Node of our XEP-0115 capabilities.
pub const CAPS_NODE: &str = "https://github.com/jingle-ice/jingle-ice";
/// Retry delay when fetching the external services failed.
const SERVICES_RETRY: Duration = Duration::from_secs(60);

/// Settings of a [`JingleClient`].
#[derive(Debug, Clone)]
pub struct JingleClientConfig {
    /// The account and how to reach its server.
    pub xmpp: XmppConfig,
    /// The Jingle extension's settings (manual STUN/TURN servers go here).
    pub ice: JingleIceConfig,
    /// Ask the server for STUN/TURN services (XEP-0215) and use them besides the manual ones.
    pub discover_services: bool,
    /// Our identity in disco#info.
    pub identity: Identity,
    /// Extra features to advertise (for example an application's namespace).
    pub extra_features: Vec<String>,
}

impl JingleClientConfig {
    /// Defaults: discovery on, identity `client/bot`.
    pub fn new(xmpp: XmppConfig) -> Self {
        JingleClientConfig {
            xmpp,
            ice: JingleIceConfig::default(),
            discover_services: true,
            identity: Identity::client_bot("jingle-ice"),
            extra_features: Vec::new(),
        }
    }
}

/// Why the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The XMPP connection failed.
    #[error(transparent)]
    Xmpp(#[from] XmppError),
    /// The Jingle session failed.
    #[error(transparent)]
    Jingle(#[from] JingleIceError),
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

/// A logged-in bot client with Jingle ICE-UDP (see the module documentation).
pub struct JingleClient {
    sender: XmppSender,
    ext: Arc<JingleIce>,
    features: Arc<Features>,
    services: Arc<Mutex<DiscoveredServices>>,
    disconnected: watch::Receiver<Option<String>>,
    pump: tokio::task::JoinHandle<()>,
    refresher: Option<tokio::task::JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl JingleClient {
    /// Logs in, announces our capabilities, fetches the external services and starts serving
    /// Jingle.
    pub async fn connect(mut config: JingleClientConfig) -> Result<JingleClient, ClientError> {
        let send_presence = config.xmpp.presence;
        config.xmpp.presence = false;
        let conn = XmppConnection::connect(config.xmpp.clone()).await?;
        let sender = conn.sender();
        let jid = sender.jid().clone();
        let mut features = Features::new(config.identity.clone(), CAPS_NODE);
        for f in &config.extra_features {
            features.add_feature(f);
        }
        let features = Arc::new(features);
        let ext = Arc::new(JingleIce::new(jid.clone(), config.ice.clone()));
        let services = Arc::new(Mutex::new(DiscoveredServices::default()));
        let (dis_tx, dis_rx) = watch::channel(None);
        let (shutdown, shutdown_rx) = oneshot::channel();
        let pump = tokio::spawn(pump(
            conn,
            ext.clone(),
            features.clone(),
            dis_tx,
            shutdown_rx,
        ));
        if send_presence {
            let mut presence = Element::bare("presence", crate::jingle::stanza::NS_CLIENT);
            presence.append_child(features.caps_element());
            sender.send(presence).await?;
        }
        let mut client = JingleClient {
            sender,
            ext,
            features,
            services,
            disconnected: dis_rx,
            pump,
            refresher: None,
            shutdown: Some(shutdown),
        };
        if config.discover_services {
            let manual = (
                config.ice.stun_servers.clone(),
                config.ice.turn_servers.clone(),
            );
            let next = client.refresh_services(&manual).await;
            let sender = client.sender.clone();
            let ext = client.ext.clone();
            let services = client.services.clone();
            client.refresher = Some(tokio::spawn(async move {
                let mut next = next;
                loop {
                    tokio::time::sleep(next).await;
                    next = fetch_services(&sender, &ext, &services, &manual).await;
                }
            }));
        }
        Ok(client)
    }

    async fn refresh_services(
        &self,
        manual: &(Vec<std::net::SocketAddr>, Vec<crate::turn::TurnConfig>),
    ) -> Duration {
        fetch_services(&self.sender, &self.ext, &self.services, manual).await
    }

    /// Our full JID.
    pub fn jid(&self) -> &FullJid {
        self.sender.jid()
    }

    /// The Jingle extension.
    pub fn extension(&self) -> &JingleIce {
        &self.ext
    }

    /// A handle to send raw stanzas and iq requests on the connection.
    pub fn sender(&self) -> &XmppSender {
        &self.sender
    }

    /// The features we advertise.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// What the last XEP-0215 query gave.
    pub fn discovered_services(&self) -> DiscoveredServices {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the XMPP connection ended, once it has.
    pub fn disconnect_reason(&self) -> Option<String> {
        self.disconnected.borrow().clone()
    }

    /// Asks the peer's disco#info (XEP-0030) whether it supports Jingle ICE-UDP.
    pub async fn peer_supports(&self, peer: &FullJid) -> Result<bool, ClientError> {
        let to = Jid::from(peer.clone());
        let reply = self.sender.iq(disco::info_query("", &to, None)).await?;
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

    /// The next session offered to us.
    pub async fn next_incoming(&self) -> Option<IncomingSession> {
        self.ext.next_incoming().await
    }

    /// Ends every session with `<gone/>` and logs off (unavailable presence, stream close).
    pub async fn close(mut self) {
        self.ext
            .terminate_all(Reason::with_text(ReasonCondition::Gone, "logging off"));
        // Give the pump a moment to send the terminates before the stream closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(r) = &self.refresher {
            r.abort();
        }
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.pump).await;
    }

    /// Drops the XMPP connection abruptly, without ending sessions (to test how peers cope).
    pub fn abort(self) {
        if let Some(r) = &self.refresher {
            r.abort();
        }
        self.pump.abort();
    }
}

impl Drop for JingleClient {
    fn drop(&mut self) {
        if let Some(r) = &self.refresher {
            r.abort();
        }
    }
}

/// Queries XEP-0215, installs the servers, and says when to query again.
async fn fetch_services(
    sender: &XmppSender,
    ext: &JingleIce,
    services: &Mutex<DiscoveredServices>,
    manual: &(Vec<std::net::SocketAddr>, Vec<crate::turn::TurnConfig>),
) -> Duration {
    let domain = BareJid::from_parts(None, sender.jid().domain());
    let reply = match sender.iq(extdisco::services_query("", &domain)).await {
        Ok(r) => r,
        Err(XmppError::IqError { stanza, .. }) => *stanza,
        Err(e) => {
            tracing::warn!("XEP-0215 query failed: {e}");
            return SERVICES_RETRY;
        }
    };
    let found = match extdisco::services_from_response(&reply) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("XEP-0215 answer unreadable: {e}");
            return SERVICES_RETRY;
        }
    };
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
    let mut stun = manual.0.clone();
    let mut turn = manual.1.clone();
    stun.extend(servers.stun.iter().copied());
    turn.extend(servers.turn.iter().cloned());
    ext.set_ice_servers(stun, turn);
    out.servers = servers;
    let next = out
        .refresh_at
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .unwrap_or(Duration::from_secs(3600));
    *services.lock().unwrap_or_else(|e| e.into_inner()) = out;
    next.max(Duration::from_secs(5))
}

/// Moves stanzas between the connection and the extension, answers disco#info and refuses
/// other requests with `<service-unavailable/>` (RFC 6120 §8.4).
async fn pump(
    mut conn: XmppConnection,
    ext: Arc<JingleIce>,
    features: Arc<Features>,
    disconnected: watch::Sender<Option<String>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let sender = conn.sender();
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                drop(sender);
                let _ = conn.close().await;
                let _ = disconnected.send(Some("logged off".to_owned()));
                return;
            }
            stanza = conn.next_stanza() => {
                let Some(stanza) = stanza else {
                    let why = conn
                        .disconnect_reason()
                        .map_or_else(|| "closed".to_owned(), |e| e.to_string());
                    let _ = disconnected.send(Some(why));
                    return;
                };
                if ext.handle_stanza(&stanza) {
                    continue;
                }
                let reply = disco::answer_info_query(&stanza, &features)
                    .or_else(|| extdisco::push_ack(&stanza))
                    .or_else(|| match iq_type(&stanza) {
                        Some(IqType::Get | IqType::Set) => Some(iq_error(
                            &stanza,
                            Condition::ServiceUnavailable,
                            None,
                            None,
                        )),
                        _ => None,
                    });
                if let Some(r) = reply {
                    let _ = sender.send(r).await;
                }
            }
            out = ext.next_outgoing() => {
                let Some(out) = out else { return };
                if sender.send(out).await.is_err() {
                    let _ = disconnected.send(Some("send failed".to_owned()));
                    return;
                }
            }
        }
    }
}
