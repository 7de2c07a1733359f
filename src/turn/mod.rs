//! TURN client (RFC 8656), sans-IO: one allocation on one server, its permissions and
//! channels, over UDP or a stream (TCP, or TLS unwrapped by the I/O layer).
//!
//! [`TurnClient`] never touches a socket or a clock. The caller feeds it what arrives from the
//! server ([`TurnClient::handle_input`]), sends what it asks ([`TurnClient::poll_transmit`]),
//! wakes it at [`TurnClient::poll_timeout`] and reads [`TurnEvent`]s: the relayed address once
//! allocated, data from peers, failures. Data for a peer goes through
//! [`TurnClient::send_to`], as a Send indication (RFC 8656 §10) or, once a channel is bound
//! ([`TurnClient::bind_channel`]), as ChannelData (RFC 8656 §12).

mod client;
mod credentials;
mod framing;

pub use client::{
    TurnClient, TurnConfig, TurnError, TurnEvent, TurnState, TurnStats, TurnTransmit,
    TurnTransport, CHANNEL_LIFETIME, CHANNEL_REFRESH, CHANNEL_REUSE_DELAY,
    DEFAULT_ALLOCATION_LIFETIME, DEFAULT_RELIABLE_TIMEOUT, MAX_STALE_NONCE_RETRIES,
    PERMISSION_LIFETIME, PERMISSION_REFRESH, PROTOCOL_UDP,
};
pub use credentials::Credentials;
pub use framing::{
    encode_channel_data, is_valid_channel, ChannelData, Frame, FrameError, StreamFramer,
    CHANNEL_DATA_HEADER_LEN, CHANNEL_MAX, CHANNEL_MIN, MAX_STREAM_FRAME_LEN,
};
