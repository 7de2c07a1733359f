//! Endpoints: whatever is attached to a simulated host and exchanges datagrams, in the sans-IO
//! shape of the rest of the crate.

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// A UDP datagram in the simulated network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDatagram {
    /// The address it is sent from (one the endpoint is bound to).
    pub source: SocketAddr,
    /// Where it goes.
    pub destination: SocketAddr,
    /// The payload.
    pub contents: Vec<u8>,
}

/// Anything that sits on a simulated host, bound to one or more ports, and takes datagrams and
/// time and emits datagrams (the sans-IO shape of [`jingle_ice_proto::ice::Agent`]).
///
/// The network calls [`Endpoint::handle_receive`] and [`Endpoint::handle_timeout`] in virtual
/// time order and, after each, drains [`Endpoint::poll_transmit`] until it returns `None` and
/// asks [`Endpoint::poll_timeout`] again.
pub trait Endpoint {
    /// A datagram from `remote` arrived on the bound address `local`.
    fn handle_receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]);
    /// The time asked for by [`Endpoint::poll_timeout`] has come (`now` may be later).
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<SimDatagram>;
    /// When [`Endpoint::handle_timeout`] should next be called, if ever.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Called after the application changed the endpoint outside the network's own calls
    /// (through [`crate::Network::with_endpoint`]), before its transmits are drained.
    /// The default does nothing.
    fn touched(&mut self, now: Instant) {
        let _ = now;
    }
}

/// Type erasure that keeps the concrete type reachable (for typed handles) without relying on
/// trait upcasting, which needs a newer compiler than the crate's minimum.
pub(crate) trait ErasedEndpoint {
    fn endpoint(&mut self) -> &mut dyn Endpoint;
    fn endpoint_ref(&self) -> &dyn Endpoint;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<E: Endpoint + 'static> ErasedEndpoint for E {
    fn endpoint(&mut self) -> &mut dyn Endpoint {
        self
    }
    fn endpoint_ref(&self) -> &dyn Endpoint {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A datagram an endpoint received, with its arrival time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedDatagram {
    /// Virtual time of arrival.
    pub at: Instant,
    /// The bound address it arrived on.
    pub local: SocketAddr,
    /// The address it came from (after any NAT translation on the way).
    pub remote: SocketAddr,
    /// The payload.
    pub contents: Vec<u8>,
}

/// A plain socket-like endpoint: records every datagram it receives and sends whatever the
/// application queues with [`Recorder::send`]. Useful to probe NAT behaviour with raw
/// datagrams, or as a simple peer.
#[derive(Debug, Default)]
pub struct Recorder {
    received: Vec<ReceivedDatagram>,
    outgoing: VecDeque<SimDatagram>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Queues a datagram; the network sends it as soon as control returns to it.
    pub fn send(
        &mut self,
        source: SocketAddr,
        destination: SocketAddr,
        contents: impl Into<Vec<u8>>,
    ) {
        self.outgoing.push_back(SimDatagram {
            source,
            destination,
            contents: contents.into(),
        });
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> &[ReceivedDatagram] {
        &self.received
    }

    /// Takes everything received so far.
    pub fn take_received(&mut self) -> Vec<ReceivedDatagram> {
        std::mem::take(&mut self.received)
    }
}

impl Endpoint for Recorder {
    fn handle_receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.received.push(ReceivedDatagram {
            at: now,
            local,
            remote,
            contents: data.to_vec(),
        });
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self) -> Option<SimDatagram> {
        self.outgoing.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
