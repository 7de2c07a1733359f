//! The tokio driver: sockets, interfaces and timers around the sans-IO [`crate::ice::Agent`].
//!
//! This is the one place of the crate with I/O. [`IceConnection::builder`] enumerates the local
//! interfaces ([`usable_addresses`]), binds one UDP socket per host candidate and component
//! (RFC 8445 §5.1.1.1), hands them and the STUN servers to an [`Agent`](crate::ice::Agent), and
//! spawns a task that runs the agent's timers, sends its transmits from the right socket and
//! feeds it every datagram received. STUN and application data share each socket; the agent
//! tells them apart (RFC 7983 first-byte rules) and application data is queued for
//! [`IceConnection::recv`].
//!
//! TURN servers reached over TCP or TLS (RFC 8656 §3.1) get one stream each, opened on the
//! agent's first transmit to them. TLS uses rustls (`ring` provider) and verifies the server's
//! certificate against the system's roots (which honour `SSL_CERT_FILE`) or a CA file
//! ([`IceConnectionBuilder::turn_ca_file`]), for [`TurnConfig::server_name`] or else the
//! server's IP address; a stream that cannot be set up is listed by
//! [`IceConnection::turn_stream_failures`] and fails only that server's allocations.
//!
//! [`TurnConfig::server_name`]: crate::turn::TurnConfig::server_name
//!
//! ```no_run
//! # async fn demo() -> Result<(), jingle_ice::net::Error> {
//! use jingle_ice::ice::Role;
//! use jingle_ice::net::IceConnection;
//!
//! let conn = IceConnection::builder(Role::Controlling)
//!     .stun_server("192.0.2.1:3478".parse().expect("address"))
//!     .start()
//!     .await?;
//! let ours = conn.local_credentials(); // signal these to the peer
//! while let Some(event) = conn.next_event().await {
//!     // signal local candidates, watch the state...
//!     # let _ = (&ours, event);
//! }
//! # Ok(())
//! # }
//! ```

mod connection;
#[cfg(feature = "channel")]
mod datachannel;
mod driver;
mod error;
mod interfaces;
mod shared;
pub(crate) mod tls;

pub use connection::{
    IceConnection, IceConnectionBuilder, DEFAULT_EVENT_QUEUE, DEFAULT_RECEIVE_QUEUE,
};
#[cfg(feature = "channel")]
pub use datachannel::{DataChannel, DataChannels, DataChannelsConfig, DataChannelsInfo};
pub(crate) use driver::{Signal, Signalling};
pub use error::Error;
pub use interfaces::{usable_addresses, AddressPolicy, LocalAddress};
pub use shared::{ConnectionStats, Datagram, SelectedPair};
pub use tls::{TurnStreamError, TurnStreamFailure, ALPN_STUN_TURN};
