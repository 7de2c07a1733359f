//! A STUN server endpoint for the simulated network: plain Binding (RFC 8489 §3, §6.3), no
//! authentication, built on [`jingle_ice_proto::stun`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use jingle_ice_proto::stun::{error_code, Class, Message, MessageEncoder, Method};

use super::endpoint::{Endpoint, SimDatagram};

/// Counters of a [`StunServer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StunServerStats {
    /// Binding requests answered with a success response.
    pub binding_answered: u64,
    /// Requests answered with an error (unknown comprehension-required attributes: 420,
    /// unsupported method: 400).
    pub errors_sent: u64,
    /// Datagrams ignored: not STUN, malformed, or not a request.
    pub ignored: u64,
}

/// A STUN server without authentication: answers every Binding request with a success
/// response carrying the request's source address in XOR-MAPPED-ADDRESS (RFC 8489 §14.2),
/// SOFTWARE if set, and FINGERPRINT (§14.7). Requests with unknown comprehension-required
/// attributes get 420 with UNKNOWN-ATTRIBUTES (§6.3.1); requests of other methods get 400.
/// Indications, responses and anything that does not decode are ignored (§6.3).
#[derive(Debug, Default)]
pub struct StunServer {
    software: Option<String>,
    outgoing: VecDeque<SimDatagram>,
    stats: StunServerStats,
}

impl StunServer {
    /// A server; bind it to its port (3478 is the default port, RFC 8489 §18.6) with
    /// [`crate::Network::add_endpoint`].
    pub fn new() -> Self {
        StunServer::default()
    }

    /// The same server with a SOFTWARE attribute in its responses (RFC 8489 §14.14).
    pub fn with_software(mut self, software: impl Into<String>) -> Self {
        self.software = Some(software.into());
        self
    }

    /// Counters.
    pub fn stats(&self) -> &StunServerStats {
        &self.stats
    }

    fn answer(&mut self, remote: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        let msg = Message::decode(data).ok()?;
        if msg.class() != Class::Request {
            return None;
        }
        let id = msg.transaction_id();
        let mut buf = Vec::new();
        let unknown = msg.unknown_comprehension_required();
        if !unknown.is_empty() {
            let mut enc = MessageEncoder::new(&mut buf, Class::ErrorResponse, msg.method(), id);
            enc.error_code(error_code::UNKNOWN_ATTRIBUTE, "Unknown Attribute")
                .unknown_attributes(unknown);
            self.finish(enc);
            self.stats.errors_sent += 1;
        } else if msg.method() != Method::BINDING {
            let mut enc = MessageEncoder::new(&mut buf, Class::ErrorResponse, msg.method(), id);
            enc.error_code(error_code::BAD_REQUEST, "Unsupported method");
            self.finish(enc);
            self.stats.errors_sent += 1;
        } else {
            let mut enc =
                MessageEncoder::new(&mut buf, Class::SuccessResponse, Method::BINDING, id);
            enc.xor_mapped_address(remote);
            self.finish(enc);
            self.stats.binding_answered += 1;
        }
        Some(buf)
    }

    fn finish(&self, mut enc: MessageEncoder<'_>) {
        if let Some(s) = &self.software {
            enc.software(s);
        }
        enc.fingerprint();
        enc.finish();
    }
}

impl Endpoint for StunServer {
    fn handle_receive(
        &mut self,
        _now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        match self.answer(remote, data) {
            Some(contents) => self.outgoing.push_back(SimDatagram {
                source: local,
                destination: remote,
                contents,
            }),
            None => self.stats.ignored += 1,
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self) -> Option<SimDatagram> {
        self.outgoing.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
