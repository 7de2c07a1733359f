//! The errors of the tokio driver ([`IceConnection`](super::IceConnection) and its builder).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong when starting or using an [`IceConnection`](super::IceConnection).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A socket could not be bound.
    #[error("could not bind a UDP socket on {addr}: {source}")]
    Bind {
        /// The address (and first port tried).
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Interface enumeration found no address the policy allows, or none could be bound.
    #[error("no usable local address to gather host candidates from")]
    NoUsableAddress,
    /// The builder was given settings that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// A TURN server over TLS was given a name that is neither a DNS name nor an IP address
    /// ([`crate::turn::TurnConfig::server_name`]).
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// The CA file given to [`IceConnectionBuilder::turn_ca_file`](super::IceConnectionBuilder::turn_ca_file) cannot be used.
    #[error("cannot use the CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS client could not be configured.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The component number is 0 or above the configured number of components.
    #[error("component {0} does not exist")]
    InvalidComponent(u16),
    /// No pair is usable for the component: not connected yet, failed, or consent lost
    /// (RFC 7675 §5.1).
    #[error("no usable path for component {component}")]
    NoPath {
        /// The component.
        component: u16,
    },
    /// ICE failed: no pair works (RFC 8445 §8.1.2, RFC 7675 §5.1).
    #[error("ICE failed")]
    Failed,
    /// The connection was closed (by [`IceConnection::close`](super::IceConnection::close), or its driver task ended).
    #[error("the connection is closed")]
    Closed,
}
