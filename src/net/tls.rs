//! TLS to TURN servers ("turns", RFC 8656 §3.1): which roots are trusted, which name each
//! server's certificate must carry, and the handshake on a connected TCP stream.
//!
//! The sans-IO TURN client frames messages on a TLS stream exactly as on TCP; only this layer
//! knows about TLS. Certificates are verified by rustls (with the `ring` provider) against the
//! system's roots (`rustls-native-certs`, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) or
//! against the CA certificates of a PEM file given to
//! [`IceConnectionBuilder::turn_ca_file`](super::IceConnectionBuilder::turn_ca_file).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::error::Error;
use crate::turn::{TurnConfig, TurnTransport};

/// The ALPN protocol identifier of TURN, "stun.turn" (RFC 7443), offered in the handshake.
pub const ALPN_STUN_TURN: &[u8] = b"stun.turn";

/// Why the stream to a TURN server (TCP or TLS, RFC 8656 §3.1) could not be set up. The
/// allocations on that server fail; the agent goes on with its other candidates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnStreamError {
    /// The TCP connection could not be made.
    #[error("cannot connect to the TURN server: {0}")]
    Connect(String),
    /// Connecting (and the TLS handshake) took longer than the driver's bound.
    #[error("connecting to the TURN server timed out")]
    Timeout,
    /// The server's certificate did not verify against the trusted roots or for the expected
    /// name (RFC 8656 §3.1, RFC 9525).
    #[error("the TURN server's certificate was rejected: {0}")]
    Certificate(String),
    /// The TLS handshake failed for another reason (protocol versions, alerts, a closed
    /// connection).
    #[error("TLS handshake with the TURN server failed: {0}")]
    Handshake(String),
    /// TLS was asked for but no TLS configuration exists for this server.
    #[error("no TLS configuration for this TURN server")]
    NotConfigured,
}

/// A stream to a TURN server that could not be set up, as reported by
/// [`IceConnection::turn_stream_failures`](super::IceConnection::turn_stream_failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnStreamFailure {
    /// The server's address.
    pub server: SocketAddr,
    /// TCP or TLS.
    pub transport: TurnTransport,
    /// What went wrong.
    pub error: TurnStreamError,
}

/// Where the certificates that TURN servers over TLS must chain to come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum TrustedRoots {
    /// The system's roots (rustls-native-certs; `SSL_CERT_FILE` and `SSL_CERT_DIR` override).
    #[default]
    System,
    /// Only the CA certificates of this PEM file.
    CaFile(PathBuf),
}

/// The TLS side of the driver: one client configuration and the name to verify per server.
#[derive(Clone)]
pub(crate) struct TurnTls {
    connector: TlsConnector,
    names: HashMap<SocketAddr, ServerName<'static>>,
}

impl std::fmt::Debug for TurnTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnTls")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl TurnTls {
    /// The TLS settings for the TLS servers among `servers`, or `None` when there is none.
    /// Fails on a server name that is neither a DNS name nor an IP address, on one address
    /// configured with two names, and on a CA file that cannot be read or holds no
    /// certificate.
    pub(crate) async fn new(
        servers: &[TurnConfig],
        roots: &TrustedRoots,
    ) -> Result<Option<TurnTls>, Error> {
        let mut names = HashMap::new();
        for config in servers.iter().filter(|c| c.transport == TurnTransport::Tls) {
            let name = server_name(config)?;
            if let Some(other) = names.insert(config.server, name.clone()) {
                if other != name {
                    return Err(Error::InvalidConfig(
                        "one TURN server address is configured with two TLS server names",
                    ));
                }
            }
        }
        if names.is_empty() {
            return Ok(None);
        }
        let store = match roots {
            TrustedRoots::System => tokio::task::spawn_blocking(system_roots)
                .await
                .map_err(|e| Error::Io(io::Error::other(e)))?,
            TrustedRoots::CaFile(path) => ca_file_roots(path)?,
        };
        let config = client_config(store).map_err(|e| Error::Tls(e.to_string()))?;
        Ok(Some(TurnTls {
            connector: TlsConnector::from(config),
            names,
        }))
    }

    /// Whether `server` was configured for TLS (it has a name to verify).
    pub(crate) fn knows(&self, server: SocketAddr) -> bool {
        self.names.contains_key(&server)
    }

    /// Runs the TLS handshake with `server` on a connected `tcp` stream, verifying the
    /// server's certificate for its configured name.
    pub(crate) async fn connect(
        &self,
        server: SocketAddr,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, TurnStreamError> {
        let name = self
            .names
            .get(&server)
            .cloned()
            .ok_or(TurnStreamError::NotConfigured)?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(handshake_error)
    }
}

/// The name to verify for a TLS server: its configured name, else its IP address.
fn server_name(config: &TurnConfig) -> Result<ServerName<'static>, Error> {
    match &config.server_name {
        Some(name) => {
            ServerName::try_from(name.clone()).map_err(|_| Error::InvalidServerName(name.clone()))
        }
        None => Ok(ServerName::IpAddress(config.server.ip().into())),
    }
}

/// A rustls client configuration with the `ring` provider, its safe default protocol
/// versions (TLS 1.2 and 1.3), `roots` as trust anchors, no client certificate, and the
/// TURN ALPN identifier (RFC 7443).
fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_STUN_TURN.to_vec()];
    Ok(Arc::new(config))
}

/// The system's root certificates. Unreadable or unparsable ones are skipped (and logged);
/// an empty store makes every handshake fail with an unknown issuer.
fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    if add_system_roots(&mut store) == 0 {
        tracing::warn!("no system root certificate found: TURN over TLS cannot verify servers");
    }
    store
}

/// Adds the system's root certificates (`rustls-native-certs`, which honours `SSL_CERT_FILE`)
/// to `store`; returns how many were added. Used for TURN over TLS and for the XMPP stream.
pub(crate) fn add_system_roots(store: &mut RootCertStore) -> usize {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "a system root certificate could not be loaded");
    }
    let (added, ignored) = store.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system root certificates rustls cannot use");
    }
    added
}

/// Adds the CA certificates of the PEM file at `path` to `store`; the reason when the file
/// cannot be read, holds a certificate rustls cannot use, or holds none.
pub(crate) fn add_ca_file(store: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("unusable certificate: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err("no certificate in the file".into());
    }
    Ok(())
}

/// The CA certificates of the PEM file at `path`.
fn ca_file_roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    add_ca_file(&mut store, path).map_err(|reason| Error::CaFile {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(store)
}

/// Sorts a failed handshake: a rejected certificate, or anything else.
fn handshake_error(error: io::Error) -> TurnStreamError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls @ rustls::Error::InvalidCertificate(_)) => {
            TurnStreamError::Certificate(tls.to_string())
        }
        Some(tls) => TurnStreamError::Handshake(tls.to_string()),
        None => TurnStreamError::Handshake(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::TurnCredentials;

    fn config(transport: TurnTransport, name: Option<&str>) -> TurnConfig {
        let mut c = TurnConfig::new(
            "127.0.0.1:5349".parse().expect("address"),
            transport,
            TurnCredentials::long_term("user", "pass"),
        );
        c.server_name = name.map(str::to_owned);
        c
    }

    #[tokio::test]
    async fn no_tls_server_needs_no_roots() {
        let servers = [
            config(TurnTransport::Udp, None),
            config(TurnTransport::Tcp, None),
        ];
        let missing = TrustedRoots::CaFile("/nonexistent/ca.pem".into());
        assert!(TurnTls::new(&servers, &missing)
            .await
            .expect("not even read")
            .is_none());
    }

    #[tokio::test]
    async fn bad_ca_files_and_names_are_refused() {
        let servers = [config(TurnTransport::Tls, Some("localhost"))];
        let missing = TrustedRoots::CaFile("/nonexistent/ca.pem".into());
        let err = TurnTls::new(&servers, &missing).await.expect_err("missing");
        assert!(matches!(err, Error::CaFile { .. }), "{err}");

        let dir = std::env::temp_dir().join(format!("jingle-ice-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = TurnTls::new(&servers, &TrustedRoots::CaFile(empty))
            .await
            .expect_err("empty");
        assert!(err.to_string().contains("no certificate"), "{err}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let err = TurnTls::new(&servers, &TrustedRoots::CaFile(garbage))
            .await
            .expect_err("garbage");
        assert!(matches!(err, Error::CaFile { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);

        let bad_name = [config(TurnTransport::Tls, Some("not a name!"))];
        let err = TurnTls::new(&bad_name, &TrustedRoots::System)
            .await
            .expect_err("bad name");
        assert!(matches!(err, Error::InvalidServerName(_)), "{err}");

        let two_names = [
            config(TurnTransport::Tls, Some("a.example")),
            config(TurnTransport::Tls, Some("b.example")),
        ];
        let err = TurnTls::new(&two_names, &TrustedRoots::System)
            .await
            .expect_err("two names");
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    }

    #[test]
    fn the_name_defaults_to_the_server_ip() {
        let name = server_name(&config(TurnTransport::Tls, None)).expect("ip");
        assert_eq!(
            name,
            ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().expect("ip").into())
        );
        let name = server_name(&config(TurnTransport::Tls, Some("turn.example"))).expect("dns");
        assert!(matches!(name, ServerName::DnsName(_)));
    }

    #[test]
    fn a_rejected_certificate_is_told_apart() {
        let bad = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(matches!(
            handshake_error(bad),
            TurnStreamError::Certificate(_)
        ));
        let other = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        assert!(matches!(
            handshake_error(other),
            TurnStreamError::Handshake(_)
        ));
    }
}
