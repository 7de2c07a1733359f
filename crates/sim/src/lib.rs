//! A deterministic simulated network in virtual time: hosts, NAT boxes with every RFC 4787
//! behaviour, links with delay, jitter and loss, a STUN server and a TURN server.
//!
//! Nothing here touches a socket or a clock: time is `start + offset`, advanced by the
//! [`Network`] from one event to the next, and every random choice (loss, jitter, NAT ports)
//! comes from one generator seeded with the seed given to [`Network::new`], so one seed gives
//! one exact run. The test suite and benchmarks use it to put ICE agents behind every kind of
//! NAT; applications built on [`jingle_ice_proto::ice::Agent`] can use it the same way.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use jingle_ice_sim::{LinkConfig, Network, NatConfig, MappingBehavior, FilteringBehavior,
//!     Realm, Recorder};
//!
//! let mut net = Network::new(7, Instant::now());
//! let link = LinkConfig::with_delay(Duration::from_millis(5));
//! let nat = net.add_nat(Realm::Internet, "203.0.113.1".parse()?,
//!     NatConfig::new(MappingBehavior::EndpointIndependent,
//!                    FilteringBehavior::AddressAndPortDependent), link)?;
//! let client = net.add_host(Realm::Lan(nat), "10.0.0.2".parse()?, LinkConfig::ideal())?;
//! let server = net.add_host(Realm::Internet, "198.51.100.1".parse()?, link)?;
//! let c = net.add_endpoint(client, &[5000], Recorder::new())?;
//! let s = net.add_endpoint(server, &[9], Recorder::new())?;
//! net.with_endpoint(c, |r, _| r.send("10.0.0.2:5000".parse().unwrap(),
//!     "198.51.100.1:9".parse().unwrap(), b"hello".to_vec()));
//! net.run_for(Duration::from_secs(1));
//! let got = &net.endpoint(s).unwrap().received()[0];
//! assert_eq!(got.remote.ip().to_string(), "203.0.113.1"); // translated by the NAT
//! assert_eq!(got.at - net.start(), Duration::from_millis(10));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod agent;
mod endpoint;
mod link;
mod nat;
mod network;
mod stun_server;
mod turn_server;

pub use agent::{AgentEndpoint, ReceivedData};
pub use endpoint::{Endpoint, ReceivedDatagram, Recorder, SimDatagram};
pub use link::LinkConfig;
pub use nat::{
    FilteringBehavior, MappingBehavior, NatConfig, NatStats, PortAllocation,
    DEFAULT_MAPPING_TIMEOUT, MIN_EXTERNAL_PORT,
};
pub use network::{
    DropReason, EndpointHandle, HostId, NatId, Network, NetworkStats, Realm, RunOutcome, SimError,
    TraceEvent, TraceKind,
};
pub use stun_server::{StunServer, StunServerStats};
pub use turn_server::{TurnServer, TurnServerStats};

#[cfg(test)]
mod tests;
