//! Configuration of the ICE agent: pacing, timeouts and the explicit limits that bound the
//! state a peer can make us keep.

use std::time::Duration;

/// Settings of an [`crate::ice::Agent`]. Every limit is explicit; the defaults follow the RFCs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Number of components (RFC 8445 §5.1.1), 1 for a data channel.
    pub components: u16,
    /// Pacing of new connectivity checks and gathering transactions: Ta (RFC 8445 §14.2).
    /// The default is 10 ms: RFC 8445 §14.2 suggests 50 ms but lets an agent choose from the
    /// characteristics of its data (libnice uses 20 ms). A check is about 100 bytes, so even a
    /// full check list of 100 pairs costs 10 kB/s, and a data channel with a handful of
    /// candidates reaches its server-reflexive pair one Ta after its host pair: the lab measures
    /// about 11 ms to the first working pair through two port-restricted NATs at 10 ms, 22 ms at
    /// 20 ms, 84 ms at 50 ms. Values below 5 ms are raised to 5 ms (RFC 8445 §14.2).
    pub ta: Duration,
    /// Initial retransmission timeout of a connectivity check (RFC 8445 §14.3).
    pub check_rto: Duration,
    /// Maximum number of transmissions of one connectivity check (Rc, RFC 8489 §6.2.1).
    pub check_max_transmits: u32,
    /// Initial retransmission timeout of a STUN Binding to a STUN server while gathering.
    pub gather_rto: Duration,
    /// Maximum transmissions of a gathering Binding request.
    pub gather_max_transmits: u32,
    /// Upper bound on candidate pairs in the check list (RFC 8445 §6.1.2.5 recommends 100).
    pub max_candidate_pairs: usize,
    /// Upper bound on remote candidates kept, signalled or peer-reflexive.
    pub max_remote_candidates: usize,
    /// Upper bound on triggered checks waiting in the queue.
    pub max_triggered_checks: usize,
    /// Upper bound on how long the controlling agent waits for a better pair than its first
    /// valid one before it nominates (RFC 8445 §8.1.1). The wait is three round trips of the
    /// first valid pair, at least 10 ms, at most this.
    pub nomination_timeout: Duration,
    /// Mean interval of consent checks on a selected pair (RFC 7675 §5.1: 5 s, randomised ±20 %).
    /// They also serve as the keepalives of RFC 8445 §11.
    pub consent_interval: Duration,
    /// Time without consent after which sending stops (RFC 7675 §5.1: 30 s).
    pub consent_timeout: Duration,
    /// Time without any authenticated response after which a connected agent reports
    /// `Disconnected` (it recovers if consent comes back before `consent_timeout`).
    pub disconnected_timeout: Duration,
    /// How long the agent waits, once every check failed or none can be made, before it
    /// declares failure (gives late trickled candidates a chance, RFC 8838 §8).
    pub failed_timeout: Duration,
    /// Seed for the agent's random generator; `None` draws from the OS. Set only in tests and
    /// simulations that need determinism: credentials derived from a known seed are guessable.
    pub seed: Option<u64>,
    /// Value of the SOFTWARE attribute in requests, if any (RFC 8489 §14.14).
    pub software: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            components: 1,
            ta: Duration::from_millis(10),
            check_rto: Duration::from_millis(250),
            check_max_transmits: 7,
            gather_rto: Duration::from_millis(500),
            gather_max_transmits: 4,
            max_candidate_pairs: 100,
            max_remote_candidates: 64,
            max_triggered_checks: 64,
            nomination_timeout: Duration::from_millis(500),
            consent_interval: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
            disconnected_timeout: Duration::from_secs(8),
            failed_timeout: Duration::from_secs(10),
            seed: None,
            software: None,
        }
    }
}
