//! A convenience XMPP client connection for bots and examples: it owns one tokio-xmpp 6 stream,
//! logs in (RFC 6120 §5 STARTTLS, §6 SASL, §7 resource binding), and offers stanzas in and out,
//! iq requests with matched replies (RFC 6120 §8.2.3, §10.1), and a clean log-off (§4.4).
//!
//! Library users who already run their own tokio-xmpp client do not need this module: they
//! hand the extension's stanzas to their own client. [`XmppTlsConnector`] is still useful to
//! them: it is a tokio-xmpp [`ServerConnector`] that trusts a given CA file (for example a test
//! lab's CA) without touching process-wide settings such as `SSL_CERT_FILE`.
//!
//! What this wrapper does not do: reconnect (a lost stream ends [`XmppConnection::next_stanza`]
//! and [`XmppConnection::disconnect_reason`] says why), XEP-0198 stream management, and
//! answering iq requests for the application (it must answer every `get` and `set` it receives,
//! RFC 6120 §8.2.3).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::nesting::NestingGuard;
use crate::jingle::{dismantle, StanzaLimits};
use crate::xmpp::stanza::limit_error;
use ::sasl::common::ChannelBinding;
use futures::{SinkExt, StreamExt};
use jid::{FullJid, Jid};
use minidom::Element;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::net::tls::{add_ca_file, add_system_roots};
use crate::xmpp::stanza::{set_attr, NS_CLIENT};
use tokio_rustls::TlsConnector;
use tokio_xmpp::connect::{DnsConfig, ServerConnector, ServerConnectorError};
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, PendingFeaturesRecv, ReadError, RecvFeaturesError,
    StreamHeader, Timeouts, XmlStream, XmppStreamElement,
};
use xmpp_parsers::bind::{BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ping::Ping;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use xmpp_parsers::starttls;
use xmpp_parsers::stream_error::StreamError;
use xmpp_parsers::stream_features::StreamFeatures;

mod sasl;

pub use sasl::{AuthFailure, Gs2Binding, SaslChoice, TLS_EXPORTER};

/// The stream namespace, of `<stream:error/>` (RFC 6120 §4.9).
const NS_STREAM: &str = "http://etherx.jabber.org/streams";
/// The id of the resource-binding request (RFC 6120 §7.6).
const BIND_ID: &str = "jingle-ice-bind";
/// Prefix of the ids of our keep-alive pings to the server (XEP-0199 §4.2), whose replies the
/// connection swallows.
const KEEPALIVE_ID_PREFIX: &str = "jingle-ice-keepalive-";
/// The keying-material label of the `tls-exporter` channel binding (RFC 9266 §2).
const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// Length of the `tls-exporter` channel-binding data (RFC 9266 §2).
const TLS_EXPORTER_LEN: usize = 32;
/// Default bound on one iq request (the wrapper's choice; RFC 6120 leaves it to the client).
pub const DEFAULT_IQ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on the whole login: TCP, STARTTLS, SASL and resource binding.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default capacity of the incoming stanza queue (see [`XmppConfig::incoming_capacity`]).
pub const DEFAULT_INCOMING_CAPACITY: usize = 256;
/// At most this many [`XmppSender::iq`] requests wait for their replies at once.
pub const MAX_PENDING_IQS: usize = 256;
/// Capacity of the outgoing queue; [`XmppSender::send`] waits while it is full.
const OUTGOING_CAPACITY: usize = 64;
/// Silence on the stream before a keep-alive ping is sent, and then the wait for any data
/// before the stream counts as dead (tokio-xmpp's soft and hard read timeouts).
const STREAM_TIMEOUTS: Timeouts = Timeouts {
    read_timeout: Duration::from_secs(120),
    response_timeout: Duration::from_secs(30),
};
/// Bound on a clean log-off: unavailable presence, our stream footer, the server's footer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why connecting failed, or why an established connection or a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum XmppError {
    /// The configuration cannot work (for example a JID without a local part).
    #[error("invalid XMPP configuration: {0}")]
    Config(String),
    /// The CA file could not be read or holds no usable certificate.
    #[error("cannot use the CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection to the server could be made (RFC 6120 §3.2).
    #[error("cannot connect to the XMPP server: {0}")]
    Connect(String),
    /// STARTTLS or the TLS handshake failed, for example on a certificate that does not verify
    /// for the domain (RFC 6120 §5.4.3, §13.7.2).
    #[error("TLS with the XMPP server failed: {0}")]
    Tls(String),
    /// SASL failed (RFC 6120 §6.4.5): the reason says whether the credentials are wrong, the
    /// channel binding was refused, no mechanism fits, ...
    #[error("XMPP authentication failed: {0}")]
    Auth(AuthFailure),
    /// The server ended the stream with a stream error (RFC 6120 §4.9).
    #[error("the XMPP server sent a stream error: {0}")]
    Stream(String),
    /// The server broke the stream protocol (unexpected elements, bad XML, bind refused).
    #[error("XMPP protocol failure: {0}")]
    Protocol(String),
    /// A bounded wait ran out: the login, or an iq request without a reply.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection is closed, or was lost (the reason is included).
    #[error("the XMPP connection is closed: {0}")]
    Disconnected(String),
    /// An iq request was answered with an error (RFC 6120 §8.3).
    #[error("the iq request failed with <{condition}/>{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    IqError {
        /// The defined condition (RFC 6120 §8.3.3), e.g. `service-unavailable`.
        condition: String,
        /// The error's text, if any.
        text: Option<String>,
        /// The whole error stanza.
        stanza: Box<Element>,
    },
    /// [`MAX_PENDING_IQS`] requests are already waiting for replies.
    #[error("too many iq requests pending (at most {0})")]
    TooManyPendingIqs(usize),
    /// The stanza handed to [`XmppSender::iq`] is not an iq get or set, or has a bad address.
    #[error("invalid stanza: {0}")]
    InvalidStanza(String),
}

impl ServerConnectorError for XmppError {}

/// How to reach and log in to an account.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    /// The account: a bare JID (the server picks the resource) or a full JID (this resource is
    /// requested, RFC 6120 §7.6).
    pub jid: Jid,
    /// The account's password.
    pub password: String,
    /// Connect to this address instead of looking up the domain's SRV records (RFC 6120
    /// §3.2.1). The certificate is still checked for the JID's domain.
    pub server: Option<SocketAddr>,
    /// Trust the CA certificates of this PEM file for the server certificate.
    pub ca_file: Option<PathBuf>,
    /// Also trust the system's roots (`rustls-native-certs`). With `false` only `ca_file` is
    /// trusted. Default `true`.
    pub system_roots: bool,
    /// Bound on one [`XmppSender::iq`] request. Default [`DEFAULT_IQ_TIMEOUT`].
    pub iq_timeout: Duration,
    /// Bound on the login. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Send an initial `<presence/>` once online (RFC 6121 §4.2). Default `true`.
    pub presence: bool,
    /// How many received stanzas wait for [`XmppConnection::next_stanza`]. When the queue is
    /// full, an incoming iq `get`/`set` is answered with `<resource-constraint/>` (RFC 6120
    /// §8.3.3.18, type `wait`) and any other stanza is dropped and counted
    /// ([`XmppConnection::dropped_stanzas`]); replies to [`XmppSender::iq`] never go through
    /// this queue. Default [`DEFAULT_INCOMING_CAPACITY`].
    pub incoming_capacity: usize,
}

impl XmppConfig {
    /// A configuration with the defaults: SRV lookup, system roots, initial presence.
    pub fn new(jid: Jid, password: impl Into<String>) -> Self {
        XmppConfig {
            jid,
            password: password.into(),
            server: None,
            ca_file: None,
            system_roots: true,
            iq_timeout: DEFAULT_IQ_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            presence: true,
            incoming_capacity: DEFAULT_INCOMING_CAPACITY,
        }
    }
}

// ---- TLS -----------------------------------------------------------------------------------

/// The TCP + STARTTLS stream under an XMPP stream, its reads bounded in XML nesting
/// ([`NestingGuard`]).
pub type XmppTlsStream = BufStream<NestingGuard<TlsStream<TcpStream>>>;

/// A tokio-xmpp [`ServerConnector`]: TCP to a fixed address or the domain's SRV targets, then
/// STARTTLS (RFC 6120 §5) with a rustls configuration whose roots are the system's, a CA file's,
/// or both; the certificate must be valid for the JID's domain (RFC 6120 §13.7.2.1).
///
/// tokio-xmpp's own StartTLS connector always uses the system roots; this one lets a
/// program trust a private CA without setting `SSL_CERT_FILE` for the whole process. Hand it
/// to `tokio_xmpp::Client::new_with_connector` to use it with a tokio-xmpp client.
///
/// Through that trait it hands tokio-xmpp no channel-binding data: tokio-xmpp 6 picks a
/// `-PLUS` mechanism whenever it has binding data and the server offers one, without asking
/// which binding types the server supports (XEP-0440), and servers that bind only `tls-unique`
/// (ejabberd 23.01) then refuse the login on TLS 1.3. Without the data it logs in with plain
/// SCRAM over this verified TLS. [`XmppConnection`] chooses for itself and binds with
/// `tls-exporter` where the server announces it.
#[derive(Clone)]
pub struct XmppTlsConnector {
    server: Option<SocketAddr>,
    tls: TlsConnector,
}

impl fmt::Debug for XmppTlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XmppTlsConnector")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl XmppTlsConnector {
    /// A connector to `server` (or the SRV targets of the JID's domain when `None`) trusting
    /// the CA certificates of `ca_file` and, with `system_roots`, the system's roots. Fails when
    /// the CA file cannot be used or no root at all is left.
    pub fn new(
        server: Option<SocketAddr>,
        ca_file: Option<&Path>,
        system_roots: bool,
    ) -> Result<Self, XmppError> {
        let mut roots = RootCertStore::empty();
        if system_roots {
            add_system_roots(&mut roots);
        }
        if let Some(path) = ca_file {
            add_ca_file(&mut roots, path).map_err(|reason| XmppError::CaFile {
                path: path.to_path_buf(),
                reason,
            })?;
        }
        if roots.is_empty() {
            return Err(XmppError::Config(
                "no trusted root certificate: give a CA file or enable the system roots".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| XmppError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(XmppTlsConnector {
            server,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Connects, runs STARTTLS and opens the encrypted stream (RFC 6120 §5.4.3.3): the result
    /// is ready for SASL. `ns` is the stream's content namespace (`jabber:client`).
    pub async fn connect_starttls(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<XmppTlsStream>, ChannelBinding), XmppError> {
        let domain = jid.domain().as_str();
        let tcp = match self.server {
            Some(addr) => TcpStream::connect(addr)
                .await
                .map_err(|e| XmppError::Connect(format!("{addr}: {e}")))?,
            None => DnsConfig::srv_default_client(domain)
                .resolve()
                .await
                .map_err(|e| XmppError::Connect(format!("{domain}: {e}")))?,
        };
        let header = || StreamHeader {
            to: Some(Cow::Borrowed(domain)),
            from: None,
            id: None,
        };
        let plain = initiate_stream(BufStream::new(tcp), ns, header(), timeouts)
            .await
            .map_err(|e| XmppError::Connect(format!("opening the stream: {e}")))?;
        let (features, mut plain) = plain
            .recv_features::<FallibleStreamElement>()
            .await
            .map_err(features_error)?;
        if !features.can_starttls() {
            return Err(XmppError::Tls(
                "the server does not offer STARTTLS (RFC 6120 §5.3.1)".into(),
            ));
        }
        plain
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                starttls::Request,
            )))
            .await
            .map_err(|e| XmppError::Connect(format!("sending <starttls/>: {e}")))?;
        loop {
            match plain.next().await {
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Starttls(
                    starttls::Nonza::Proceed(_),
                )))) => break,
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Starttls(
                    starttls::Nonza::Failure(_),
                )))) => {
                    return Err(XmppError::Tls(
                        "the server answered <starttls/> with <failure/>".into(),
                    ))
                }
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                    return Err(XmppError::Stream(e.0.to_string()))
                }
                Some(Ok(other)) => {
                    return Err(XmppError::Protocol(format!(
                        "unexpected element during STARTTLS: {other:?}"
                    )))
                }
                Some(Err(ReadError::SoftTimeout)) => {}
                Some(Err(e)) => {
                    return Err(XmppError::Connect(format!("during STARTTLS: {e}")));
                }
                None => {
                    return Err(XmppError::Connect(
                        "the server closed the connection during STARTTLS".into(),
                    ))
                }
            }
        }
        // The server sends nothing after <proceed/> until the handshake, so no buffered data
        // is lost here (RFC 6120 §5.4.3.3).
        let tcp = plain.into_inner().into_inner();
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| XmppError::Config(format!("domain {domain:?}: {e}")))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| XmppError::Tls(tls_reason(&e)))?;
        let binding = channel_binding(&tls);
        // Nesting is bounded before the parser sees a byte (see super::nesting).
        let stream = initiate_stream(
            BufStream::new(NestingGuard::new(tls)),
            ns,
            header(),
            timeouts,
        )
        .await
        .map_err(|e| XmppError::Connect(format!("opening the encrypted stream: {e}")))?;
        Ok((stream, binding))
    }
}

impl ServerConnector for XmppTlsConnector {
    type Stream = XmppTlsStream;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), tokio_xmpp::Error> {
        // See the type's documentation: no binding data for tokio-xmpp's own SASL.
        let (stream, _binding) = self.connect_starttls(jid, ns, timeouts).await?;
        Ok((stream, ChannelBinding::None))
    }
}

/// The rustls reason inside a failed handshake, else the I/O error.
fn tls_reason(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls @ rustls::Error::InvalidCertificate(_)) => {
            format!("the server certificate was rejected: {tls}")
        }
        Some(tls) => tls.to_string(),
        None => error.to_string(),
    }
}

/// `tls-exporter` channel-binding data for TLS 1.3 (RFC 9266); none for older versions.
fn channel_binding(tls: &TlsStream<TcpStream>) -> ChannelBinding {
    let (_, connection) = tls.get_ref();
    if connection.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return ChannelBinding::None;
    }
    match connection.export_keying_material(vec![0u8; TLS_EXPORTER_LEN], TLS_EXPORTER_LABEL, None) {
        Ok(data) => ChannelBinding::TlsExporter(data),
        Err(error) => {
            tracing::debug!(%error, "no tls-exporter channel binding");
            ChannelBinding::None
        }
    }
}

fn features_error(e: RecvFeaturesError) -> XmppError {
    match e {
        RecvFeaturesError::StreamError(e) => XmppError::Stream(e.0.to_string()),
        RecvFeaturesError::Io(e) => {
            XmppError::Connect(format!("waiting for the stream features: {e}"))
        }
    }
}

// ---- login ---------------------------------------------------------------------------------

/// The encrypted, authenticated stream, read as plain elements.
type ElementStream = XmlStream<XmppTlsStream, Element>;

/// SASL (RFC 6120 §6) on `stream` with the account's credentials, then the stream restart;
/// returns the features of the new stream, the stream, and the mechanism used. `binding` is
/// the connection's `tls-exporter` data, if any: whether it is used depends on what the server
/// announces (see [`sasl`]).
async fn authenticate(
    stream: PendingFeaturesRecv<XmppTlsStream>,
    binding: ChannelBinding,
    jid: &Jid,
    password: &str,
) -> Result<(StreamFeatures, ElementStream, SaslChoice), XmppError> {
    let node = jid
        .node()
        .ok_or_else(|| XmppError::Config(format!("the JID {jid} has no local part")))?;
    // The features are read as a plain element: xmpp-parsers' typed features fail as a whole
    // on a channel-binding type it does not know (XEP-0440 types are an open registry).
    let mut stream = stream.skip_features::<Element>();
    let features = loop {
        match stream.next().await {
            Some(Ok(el)) => break el,
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => return Err(read_failure(e)),
            None => {
                return Err(XmppError::Disconnected(
                    "the server closed the connection before its stream features".into(),
                ))
            }
        }
    };
    if let Some(error) = stream_error(&features) {
        return Err(error);
    }
    if !features.is("features", NS_STREAM) {
        return Err(XmppError::Protocol(format!(
            "expected the stream features, got <{}/>",
            features.name()
        )));
    }
    let offered = sasl::SaslFeatures::read(&features);
    let exporter = match binding {
        ChannelBinding::TlsExporter(data) => Some(data),
        _ => None,
    };
    let choice = sasl::choose_mechanism(
        &offered.mechanisms,
        offered.channel_bindings.as_deref(),
        exporter.is_some(),
    )
    .map_err(XmppError::Auth)?;
    tracing::debug!(%choice, offered = ?offered.mechanisms, channel_bindings = ?offered.channel_bindings, "SASL");
    sasl::exchange(&mut stream, choice, node.as_str(), password, exporter).await?;
    let stream = stream
        .initiate_reset()
        .send_header(StreamHeader {
            to: Some(Cow::Borrowed(jid.domain().as_str())),
            from: None,
            id: None,
        })
        .await
        .map_err(|e| XmppError::Connect(format!("restarting the stream after SASL: {e}")))?;
    let (features, stream) = stream
        .recv_features::<Element>()
        .await
        .map_err(features_error)?;
    Ok((features, stream, choice))
}

/// Resource binding (RFC 6120 §7): returns the full JID the server bound.
async fn bind(
    stream: &mut ElementStream,
    features: &StreamFeatures,
    jid: &Jid,
) -> Result<FullJid, XmppError> {
    if !features.can_bind() {
        return Err(XmppError::Protocol(
            "the server offers no resource binding (RFC 6120 §7)".into(),
        ));
    }
    let resource = jid.resource().map(|r| r.as_str().to_owned());
    let request = Element::from(Iq::from_set(BIND_ID, BindQuery::new(resource)));
    stream
        .send(&request)
        .await
        .map_err(|e| XmppError::Disconnected(format!("sending the bind request: {e}")))?;
    loop {
        let el = next_login_element(stream, "resource binding").await?;
        if !(el.name() == "iq" && el.attr("id") == Some(BIND_ID)) {
            tracing::debug!(element = %String::from(&el), "ignored before resource binding");
            continue;
        }
        return match el.attr("type") {
            Some("result") => el
                .children()
                .find_map(|child| BindResponse::try_from(child.clone()).ok())
                .map(|response| response.jid)
                .ok_or_else(|| XmppError::Protocol("a bind result without a JID".into())),
            _ => {
                let (condition, text) = stanza_error_condition(&el);
                Err(XmppError::Protocol(format!(
                    "resource binding refused: <{condition}/>{}",
                    text.map(|t| format!(" ({t})")).unwrap_or_default()
                )))
            }
        };
    }
}

/// A read failure of an established stream, as an error.
/// The next element of the stream during a login step (`during` names it: "SASL", "resource
/// binding"): soft read timeouts are waited out; the end of the stream, a read error or a
/// stream error fail the step.
async fn next_login_element<Io>(
    stream: &mut XmlStream<Io, Element>,
    during: &str,
) -> Result<Element, XmppError>
where
    Io: tokio::io::AsyncBufRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let el = match stream.next().await {
            Some(Ok(el)) => el,
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => return Err(read_failure(e)),
            None => {
                return Err(XmppError::Disconnected(format!(
                    "the server closed the connection during {during}"
                )))
            }
        };
        return match stream_error(&el) {
            Some(error) => Err(error),
            None => Ok(el),
        };
    }
}

fn read_failure(e: ReadError) -> XmppError {
    match e {
        ReadError::StreamFooterReceived => {
            XmppError::Disconnected("the server closed the stream".into())
        }
        ReadError::HardError(e) if e.kind() == io::ErrorKind::TimedOut => {
            XmppError::Timeout("the server stopped answering".into())
        }
        ReadError::HardError(e) => XmppError::Disconnected(format!("connection lost: {e}")),
        ReadError::ParseError(e) => {
            XmppError::Protocol(format!("unparsable XML from the server: {e}"))
        }
        ReadError::SoftTimeout => XmppError::Timeout("silence on the stream".into()),
    }
}

/// `<stream:error/>` (RFC 6120 §4.9) as an error.
fn stream_error(el: &Element) -> Option<XmppError> {
    if !el.is("error", NS_STREAM) {
        return None;
    }
    Some(match StreamError::try_from(el.clone()) {
        Ok(e) => XmppError::Stream(e.to_string()),
        Err(_) => XmppError::Stream(String::from(el)),
    })
}

/// The defined condition and text of an error stanza (RFC 6120 §8.3.2), as
/// [`crate::xmpp::stanza::StanzaError::from_stanza`] reads them; `undefined-condition` when it has no `<error/>`.
fn stanza_error_condition(el: &Element) -> (String, Option<String>) {
    match crate::xmpp::stanza::StanzaError::from_stanza(el) {
        Some(e) => (e.condition_name, e.text),
        None => ("undefined-condition".into(), None),
    }
}

// ---- the connection ------------------------------------------------------------------------

/// Who may answer a pending iq request (RFC 6120 §10.1).
#[derive(Debug, Clone)]
enum Responder {
    /// The request went to our own account or server (no `to`, our bare JID, or our
    /// domain): the reply may have no `from`, or come from our bare JID or our domain.
    OwnAccount,
    /// The reply must come from exactly this address.
    Exactly(Jid),
}

struct Pending {
    responder: Responder,
    reply: oneshot::Sender<Element>,
}

/// State shared between the handles and the driver task.
struct Shared {
    jid: FullJid,
    iq_timeout: Duration,
    pending: Mutex<HashMap<String, Pending>>,
    reason: Mutex<Option<XmppError>>,
    dropped: AtomicU64,
    /// Received stanzas refused for breaking [`StanzaLimits::DEFAULT`].
    rejected: AtomicU64,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reason(&self) -> Option<XmppError> {
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn closed_error(&self) -> XmppError {
        match self.reason() {
            Some(XmppError::Disconnected(r)) => XmppError::Disconnected(r),
            Some(e) => XmppError::Disconnected(e.to_string()),
            None => XmppError::Disconnected("the connection task ended".into()),
        }
    }

    /// Whether `from` may answer a request for `responder`.
    fn accepts(&self, responder: &Responder, from: Option<&str>) -> bool {
        let from = match from.filter(|f| !f.is_empty()) {
            None => return matches!(responder, Responder::OwnAccount),
            Some(f) => match Jid::new(f) {
                Ok(j) => j,
                Err(_) => return false,
            },
        };
        match responder {
            Responder::OwnAccount => self.is_own_account(&from),
            Responder::Exactly(expected) => &from == expected,
        }
    }

    /// Our bare JID or our server's domain.
    fn is_own_account(&self, jid: &Jid) -> bool {
        jid.resource().is_none()
            && jid.domain() == self.jid.domain()
            && (jid.node().is_none() || jid.node() == self.jid.node())
    }
}

/// What the handles ask the driver to do.
enum Command {
    Send(Element),
    Close(oneshot::Sender<()>),
}

/// A clonable handle that sends stanzas and iq requests on an [`XmppConnection`]; it works
/// from any task, also after the connection value moved elsewhere.
#[derive(Clone)]
pub struct XmppSender {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl fmt::Debug for XmppSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XmppSender")
            .field("jid", &self.shared.jid)
            .finish_non_exhaustive()
    }
}

impl XmppSender {
    /// Our full JID, as bound by the server (RFC 6120 §7.6.3).
    pub fn jid(&self) -> &FullJid {
        &self.shared.jid
    }

    /// Queues a stanza (an `<iq/>`, `<message/>` or `<presence/>` in the `jabber:client`
    /// namespace) for sending; waits while the outgoing queue is full. Fails once the
    /// connection is closed.
    pub async fn send(&self, stanza: Element) -> Result<(), XmppError> {
        self.commands
            .send(Command::Send(stanza))
            .await
            .map_err(|_| self.shared.closed_error())
    }

    /// Sends an iq `get` or `set` (RFC 6120 §8.2.3) and returns the `result` reply. An empty
    /// or missing `id` is filled in. Only a reply with the same id from the addressee counts:
    /// from exactly the `to` JID, or, for a request to our own account or server (no `to`, our
    /// bare JID or our domain), from no address, our bare JID or our domain (RFC 6120 §10.1).
    /// Fails with [`XmppError::IqError`] on an `error` reply, [`XmppError::Timeout`] after the
    /// configured iq timeout, and [`XmppError::Disconnected`] when the stream ends first.
    pub async fn iq(&self, mut request: Element) -> Result<Element, XmppError> {
        if request.name() != "iq" || !matches!(request.attr("type"), Some("get" | "set")) {
            return Err(XmppError::InvalidStanza(
                "iq() takes an <iq type='get'/> or <iq type='set'/>".into(),
            ));
        }
        let responder = match request.attr("to") {
            None | Some("") => Responder::OwnAccount,
            Some(to) => {
                let to = Jid::new(to)
                    .map_err(|e| XmppError::InvalidStanza(format!("bad 'to' {to:?}: {e}")))?;
                if self.shared.is_own_account(&to) {
                    Responder::OwnAccount
                } else {
                    Responder::Exactly(to)
                }
            }
        };
        let id = match request.attr("id").filter(|id| !id.is_empty()) {
            Some(id) => id.to_owned(),
            None => {
                let id = format!("jingle-ice-{:016x}", rand::random::<u64>());
                set_attr(&mut request, "id", &id);
                id
            }
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut pending = self.shared.pending();
            if pending.len() >= MAX_PENDING_IQS {
                return Err(XmppError::TooManyPendingIqs(MAX_PENDING_IQS));
            }
            if pending.contains_key(&id) {
                return Err(XmppError::InvalidStanza(format!(
                    "an iq with id {id:?} is already pending"
                )));
            }
            pending.insert(
                id.clone(),
                Pending {
                    responder,
                    reply: reply_tx,
                },
            );
        }
        // Removes the entry however this future ends (reply, timeout, error, cancellation).
        let _guard = PendingGuard {
            shared: &self.shared,
            id: &id,
        };
        self.send(request).await?;
        let reply = match tokio::time::timeout(self.shared.iq_timeout, reply_rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(self.shared.closed_error()),
            Err(_) => {
                return Err(XmppError::Timeout(format!(
                    "no reply to iq {id:?} within {:?}",
                    self.shared.iq_timeout
                )))
            }
        };
        match reply.attr("type") {
            Some("result") => Ok(reply),
            _ => {
                let (condition, text) = stanza_error_condition(&reply);
                Err(XmppError::IqError {
                    condition,
                    text,
                    stanza: Box::new(reply),
                })
            }
        }
    }
}

struct PendingGuard<'a> {
    shared: &'a Shared,
    id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending().remove(self.id);
    }
}

/// A logged-in XMPP client connection owned by this value (see the module documentation).
///
/// Dropping it logs off cleanly in the background, like [`XmppConnection::close`] without
/// waiting (unless [`XmppSender`] clones are still alive: they keep the connection open).
pub struct XmppConnection {
    sender: XmppSender,
    incoming: mpsc::Receiver<Element>,
    sasl: SaslChoice,
}

impl fmt::Debug for XmppConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XmppConnection")
            .field("jid", &self.sender.shared.jid)
            .finish_non_exhaustive()
    }
}

impl XmppConnection {
    /// Connects, secures the stream with STARTTLS, authenticates with SASL, binds a resource
    /// (RFC 6120 §5-§7) and, if configured, sends initial presence (RFC 6121 §4.2). The whole
    /// login is bounded by [`XmppConfig::connect_timeout`]. Errors say which step failed:
    /// [`XmppError::Connect`], [`XmppError::Tls`], [`XmppError::Auth`], [`XmppError::Stream`],
    /// [`XmppError::Timeout`], ...
    pub async fn connect(config: XmppConfig) -> Result<XmppConnection, XmppError> {
        if config.jid.node().is_none() {
            return Err(XmppError::Config(format!(
                "the JID {} has no local part",
                config.jid
            )));
        }
        if config.incoming_capacity == 0 {
            return Err(XmppError::Config(
                "the incoming queue needs room for one stanza".into(),
            ));
        }
        let connector = XmppTlsConnector::new(
            config.server,
            config.ca_file.as_deref(),
            config.system_roots,
        )?;
        let login = async {
            let (stream, binding) = connector
                .connect_starttls(&config.jid, NS_CLIENT, STREAM_TIMEOUTS)
                .await?;
            let (features, mut stream, sasl) =
                authenticate(stream, binding, &config.jid, &config.password).await?;
            let jid = bind(&mut stream, &features, &config.jid).await?;
            if config.presence {
                stream
                    .send(&Element::from(Presence::available()))
                    .await
                    .map_err(|e| XmppError::Disconnected(format!("sending presence: {e}")))?;
            }
            Ok::<_, XmppError>((jid, stream, sasl))
        };
        let (jid, stream, sasl) = tokio::time::timeout(config.connect_timeout, login)
            .await
            .map_err(|_| {
                XmppError::Timeout(format!(
                    "the login did not finish within {:?}",
                    config.connect_timeout
                ))
            })??;
        tracing::debug!(%jid, "XMPP session established");
        let shared = Arc::new(Shared {
            jid,
            iq_timeout: config.iq_timeout,
            pending: Mutex::new(HashMap::new()),
            reason: Mutex::new(None),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        let (commands_tx, commands_rx) = mpsc::channel(OUTGOING_CAPACITY);
        let (incoming_tx, incoming_rx) = mpsc::channel(config.incoming_capacity);
        let driver = Driver {
            stream,
            shared: Arc::clone(&shared),
            commands: commands_rx,
            incoming: incoming_tx,
            keepalives: 0,
        };
        tokio::spawn(driver.run());
        Ok(XmppConnection {
            sender: XmppSender {
                commands: commands_tx,
                shared,
            },
            incoming: incoming_rx,
            sasl,
        })
    }

    /// Our full JID, as bound by the server (RFC 6120 §7.6.3).
    pub fn jid(&self) -> &FullJid {
        self.sender.jid()
    }

    /// The SASL mechanism and channel binding this connection logged in with (RFC 6120 §6).
    pub fn sasl(&self) -> SaslChoice {
        self.sasl
    }

    /// A clonable handle for sending from other tasks.
    pub fn sender(&self) -> XmppSender {
        self.sender.clone()
    }

    /// See [`XmppSender::send`].
    pub async fn send(&self, stanza: Element) -> Result<(), XmppError> {
        self.sender.send(stanza).await
    }

    /// See [`XmppSender::iq`].
    pub async fn iq(&self, request: Element) -> Result<Element, XmppError> {
        self.sender.iq(request).await
    }

    /// The next received stanza (iq replies that matched an [`XmppSender::iq`] request are
    /// not among them), or `None` once the stream has ended: then
    /// [`disconnect_reason`](Self::disconnect_reason) says why.
    pub async fn next_stanza(&mut self) -> Option<Element> {
        self.incoming.recv().await
    }

    /// Why the stream ended, once it has: `None` while it is up.
    pub fn disconnect_reason(&self) -> Option<XmppError> {
        self.sender.shared.reason()
    }

    /// How many received stanzas were dropped because the incoming queue was full (see
    /// [`XmppConfig::incoming_capacity`]).
    pub fn dropped_stanzas(&self) -> u64 {
        self.sender.shared.dropped.load(Ordering::Relaxed)
    }

    /// How many received stanzas were refused for breaking [`StanzaLimits::DEFAULT`] (nested
    /// too deep, too many elements, too large): never handed on, an iq request among them
    /// answered with `<policy-violation/>`.
    pub fn rejected_stanzas(&self) -> u64 {
        self.sender.shared.rejected.load(Ordering::Relaxed)
    }

    /// Logs off cleanly: unavailable presence (RFC 6121 §4.5.1), then the stream's closing
    /// tag, waiting (bounded) for the server's (RFC 6120 §4.4). Stanzas queued before are sent
    /// first. Returns the reason the stream had already ended, if it had.
    pub async fn close(self) -> Result<(), XmppError> {
        let (done_tx, done_rx) = oneshot::channel();
        if self
            .sender
            .commands
            .send(Command::Close(done_tx))
            .await
            .is_err()
        {
            return Err(self.sender.shared.closed_error());
        }
        match tokio::time::timeout(CLOSE_TIMEOUT * 2, done_rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.sender.shared.closed_error()),
            Err(_) => Err(XmppError::Timeout("closing the stream".into())),
        }
    }
}

/// The task that owns the stream.
struct Driver {
    stream: ElementStream,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Element>,
    keepalives: u64,
}

/// How the driver loop ended.
enum End {
    /// Log off cleanly, then tell this waiter (if any).
    Close(Option<oneshot::Sender<()>>),
    /// The stream failed or the server ended it.
    Failed(XmppError),
    /// The server closed the stream: answer with our footer.
    RemoteClosed,
}

impl Driver {
    async fn run(mut self) {
        let end = self.serve().await;
        let reason = match end {
            End::Close(done) => {
                self.log_off().await;
                let reason = XmppError::Disconnected("closed by us".into());
                self.finish(reason);
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
            End::RemoteClosed => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.stream.shutdown()).await;
                XmppError::Disconnected("the server closed the stream".into())
            }
            End::Failed(e) => e,
        };
        tracing::debug!(%reason, "XMPP stream ended");
        self.finish(reason);
    }

    /// Records why the stream ended and fails every pending request.
    fn finish(&mut self, reason: XmppError) {
        *self
            .shared
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
        self.shared.pending().clear();
        self.commands.close();
    }

    async fn serve(&mut self) -> End {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Send(stanza)) => {
                        if let Err(e) = self.stream.send(&stanza).await {
                            return End::Failed(XmppError::Disconnected(format!("write failed: {e}")));
                        }
                    }
                    Some(Command::Close(done)) => return End::Close(Some(done)),
                    // The connection value and every sender are gone.
                    None => return End::Close(None),
                },
                item = self.stream.next() => match item {
                    Some(Ok(el)) => {
                        if let Some(error) = stream_error(&el) {
                            return End::Failed(error);
                        }
                        if let Err(e) = self.received(el).await {
                            return End::Failed(e);
                        }
                    }
                    Some(Err(ReadError::SoftTimeout)) => {
                        // Keep-alive (XEP-0199 §4.2): any answer resets the read timer.
                        self.keepalives += 1;
                        let id = format!("{KEEPALIVE_ID_PREFIX}{}", self.keepalives);
                        let ping = Element::from(Iq::from_get(id, Ping));
                        if let Err(e) = self.stream.send(&ping).await {
                            return End::Failed(XmppError::Disconnected(format!("write failed: {e}")));
                        }
                    }
                    Some(Err(ReadError::StreamFooterReceived)) | None => return End::RemoteClosed,
                    Some(Err(e)) => return End::Failed(read_failure(e)),
                },
            }
        }
    }

    /// One received stanza: an awaited iq reply goes to its waiter, the rest to the queue. A
    /// stanza beyond [`StanzaLimits::DEFAULT`] goes nowhere: it is taken apart without
    /// recursion, and an iq request is answered with `<policy-violation/>`.
    async fn received(&mut self, el: Element) -> Result<(), XmppError> {
        if let Err(exceeded) = StanzaLimits::DEFAULT.check(&el) {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(from = ?el.attr("from"), %exceeded, "stanza refused");
            let reply = limit_error(&el, exceeded);
            dismantle(el);
            if let Some(reply) = reply {
                self.stream
                    .send(&reply)
                    .await
                    .map_err(|e| XmppError::Disconnected(format!("write failed: {e}")))?;
            }
            return Ok(());
        }
        let is_iq = el.name() == "iq";
        let iq_type = el.attr("type").unwrap_or_default().to_owned();
        if is_iq && matches!(iq_type.as_str(), "result" | "error") {
            let id = el.attr("id").unwrap_or_default();
            if id.starts_with(KEEPALIVE_ID_PREFIX)
                && self.shared.accepts(&Responder::OwnAccount, el.attr("from"))
            {
                return Ok(());
            }
            let waiter = {
                let mut pending = self.shared.pending();
                match pending.get(id) {
                    Some(p) if self.shared.accepts(&p.responder, el.attr("from")) => {
                        pending.remove(id)
                    }
                    Some(_) => {
                        tracing::debug!(id, from = ?el.attr("from"), "an iq reply from an unexpected sender is not accepted");
                        None
                    }
                    None => None,
                }
            };
            if let Some(waiter) = waiter {
                // The requester may have given up in the meantime.
                let _ = waiter.reply.send(el);
                return Ok(());
            }
        }
        match self.incoming.try_send(el) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(el)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                if is_iq && matches!(iq_type.as_str(), "get" | "set") {
                    tracing::warn!(
                        "incoming queue full: answering an iq with <resource-constraint/>"
                    );
                    if let Some(reply) = busy_reply(&el) {
                        self.stream
                            .send(&reply)
                            .await
                            .map_err(|e| XmppError::Disconnected(format!("write failed: {e}")))?;
                    }
                } else {
                    tracing::warn!(stanza = el.name(), "incoming queue full: stanza dropped");
                }
                Ok(())
            }
            // Nobody reads any more (the connection value is gone): the stanza has no taker.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }

    /// Unavailable presence, our closing tag, then the server's (bounded).
    async fn log_off(&mut self) {
        let off = async {
            let unavailable = Element::from(Presence::new(PresenceType::Unavailable));
            self.stream.send(&unavailable).await?;
            self.stream.shutdown().await?;
            // Read until the server's closing tag (or the end of the connection).
            while let Some(item) = self.stream.next().await {
                match item {
                    Ok(_) | Err(ReadError::SoftTimeout) | Err(ReadError::ParseError(_)) => {}
                    Err(ReadError::StreamFooterReceived) | Err(ReadError::HardError(_)) => break,
                }
            }
            Ok::<_, io::Error>(())
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, off).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%e, "the stream did not close cleanly"),
            Err(_) => tracing::debug!("the server did not close its stream in time"),
        }
    }
}

/// `<resource-constraint/>` (type `wait`, RFC 6120 §8.3.3.18) for an iq get or set.
fn busy_reply(request: &Element) -> Option<Element> {
    let id = request.attr("id")?;
    let error = StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::ResourceConstraint,
        "en",
        "too many stanzas waiting",
    );
    let mut reply = Element::from(Iq::from_error(id, error));
    if let Some(from) = request.attr("from") {
        set_attr(&mut reply, "to", from);
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            jid: FullJid::new("alice@example.test/r1").unwrap(),
            iq_timeout: DEFAULT_IQ_TIMEOUT,
            pending: Mutex::new(HashMap::new()),
            reason: Mutex::new(None),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    #[test]
    fn replies_to_own_account_requests_come_from_the_account_or_server() {
        let s = shared();
        let own = Responder::OwnAccount;
        assert!(s.accepts(&own, None));
        assert!(s.accepts(&own, Some("")));
        assert!(s.accepts(&own, Some("alice@example.test")));
        assert!(s.accepts(&own, Some("example.test")));
        assert!(!s.accepts(&own, Some("bob@example.test")));
        assert!(!s.accepts(&own, Some("alice@example.test/other")));
        assert!(!s.accepts(&own, Some("evil.test")));
        assert!(!s.accepts(&own, Some("not a jid@@")));
    }

    #[test]
    fn replies_to_other_entities_come_from_exactly_them() {
        let s = shared();
        let bob = Responder::Exactly(Jid::new("bob@example.test/x").unwrap());
        assert!(s.accepts(&bob, Some("bob@example.test/x")));
        assert!(
            s.accepts(&bob, Some("BOB@example.test/x")),
            "JIDs compare normalised"
        );
        assert!(!s.accepts(&bob, None));
        assert!(!s.accepts(&bob, Some("example.test")));
        assert!(!s.accepts(&bob, Some("bob@example.test")));
        assert!(!s.accepts(&bob, Some("bob@example.test/y")));
    }

    #[test]
    fn error_conditions_are_read_from_error_stanzas() {
        let el: Element = "<iq xmlns='jabber:client' type='error' id='1'><error type='cancel'>\
            <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
            <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text></error></iq>"
            .parse()
            .unwrap();
        let (condition, text) = stanza_error_condition(&el);
        assert_eq!(condition, "service-unavailable");
        assert_eq!(text.as_deref(), Some("gone"));
        let bare: Element = "<iq xmlns='jabber:client' type='error' id='1'/>"
            .parse()
            .unwrap();
        assert_eq!(stanza_error_condition(&bare).0, "undefined-condition");
    }

    #[test]
    fn a_full_queue_answers_iq_requests_with_resource_constraint() {
        let req: Element =
            "<iq xmlns='jabber:client' type='get' id='q1' from='bob@example.test/x'/>"
                .parse()
                .unwrap();
        let reply = busy_reply(&req).unwrap();
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("q1"));
        assert_eq!(reply.attr("to"), Some("bob@example.test/x"));
        assert_eq!(stanza_error_condition(&reply).0, "resource-constraint");
    }

    #[test]
    fn stream_errors_are_recognised() {
        let el: Element = "<error xmlns='http://etherx.jabber.org/streams'>\
            <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>"
            .parse()
            .unwrap();
        let e = stream_error(&el).unwrap();
        assert!(e.to_string().contains("conflict"), "{e}");
        let iq: Element = "<iq xmlns='jabber:client' type='get' id='1'/>"
            .parse()
            .unwrap();
        assert!(stream_error(&iq).is_none());
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let e =
            XmppTlsConnector::new(None, Some(Path::new("/nonexistent/ca.pem")), false).unwrap_err();
        assert!(matches!(e, XmppError::CaFile { .. }), "{e}");
        let e = XmppTlsConnector::new(None, None, false).unwrap_err();
        assert!(matches!(e, XmppError::Config(_)), "{e}");
    }
}
