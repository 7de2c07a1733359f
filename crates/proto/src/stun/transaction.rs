//! The sans-IO client transaction over an unreliable transport (RFC 8489 §6.2.1).

use std::time::{Duration, Instant};

use super::constants::TransactionId;

/// Default initial retransmission timeout, RTO (RFC 8489 §6.2.1: "SHOULD be 500 ms").
pub const DEFAULT_RTO: Duration = Duration::from_millis(500);

/// Default number of transmissions, Rc (RFC 8489 §6.2.1: "SHOULD be 7").
pub const DEFAULT_MAX_TRANSMITS: u32 = 7;

/// Default factor of the final wait after the last transmission, Rm (RFC 8489 §6.2.1: "SHOULD
/// be 16").
pub const DEFAULT_LAST_WAIT_FACTOR: u32 = 16;

/// Retransmission settings of a client transaction (RFC 8489 §6.2.1). Default: RTO 500 ms,
/// Rc 7, Rm 16, no cap on the doubled RTO.
#[derive(Debug, Clone, Copy)]
pub struct RetransmitConfig {
    /// Initial retransmission timeout (RTO); the interval doubles after each transmission.
    pub rto: Duration,
    /// Total number of transmissions, the first included (Rc); 0 is treated as 1.
    pub max_transmits: u32,
    /// After the last transmission the transaction waits `last_wait_factor` × `rto` (Rm ×
    /// the initial RTO, as in the RFC's example) for a response before it times out.
    pub last_wait_factor: u32,
    /// Upper bound of the doubled interval (RFC 8489 §6.2.1 allows an upper bound; ICE
    /// connectivity checks use one, RFC 8445 §14.3).
    pub max_rto: Option<Duration>,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        RetransmitConfig {
            rto: DEFAULT_RTO,
            max_transmits: DEFAULT_MAX_TRANSMITS,
            last_wait_factor: DEFAULT_LAST_WAIT_FACTOR,
            max_rto: None,
        }
    }
}

/// Where a client transaction is (RFC 8489 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// Waiting for a response; more transmissions or the final wait may be ahead.
    Pending,
    /// A response arrived ([`ClientTransaction::complete`]).
    Completed,
    /// No response within Rc transmissions and the final wait.
    TimedOut,
}

/// Sans-IO client transaction over UDP (RFC 8489 §6.2.1): says when to (re)transmit the
/// request and when the transaction has timed out. It never touches a socket or a clock: the
/// caller passes `now`, sends the request whenever [`ClientTransaction::poll_transmit`]
/// returns true, wakes at [`ClientTransaction::poll_timeout`] and matches responses by
/// [`ClientTransaction::id`].
///
/// With the default configuration the request goes out at 0, 500, 1500, 3500, 7500, 15500
/// and 31500 ms and the transaction times out at 39500 ms, as in the RFC's example.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    id: TransactionId,
    config: RetransmitConfig,
    state: TransactionState,
    transmits: u32,
    /// The interval to wait after the next transmission.
    interval: Duration,
    /// When the next transmission is due, or after the last one the end of the final wait.
    deadline: Instant,
}

impl ClientTransaction {
    /// A new pending transaction whose first transmission is due at `now`.
    pub fn new(id: TransactionId, config: RetransmitConfig, now: Instant) -> Self {
        let config = RetransmitConfig {
            max_transmits: config.max_transmits.max(1),
            ..config
        };
        ClientTransaction {
            id,
            config,
            state: TransactionState::Pending,
            transmits: 0,
            interval: capped(config.rto, config.max_rto),
            deadline: now,
        }
    }

    /// The transaction id the request carries and a response must echo (RFC 8489 §6.3.3).
    pub fn id(&self) -> TransactionId {
        self.id
    }

    /// True if a (re)transmission is due at `now`: the caller sends the request, and the next
    /// one is scheduled after the current interval, which then doubles (up to `max_rto`).
    /// After the Rc-th transmission the final wait of Rm × RTO starts instead.
    pub fn poll_transmit(&mut self, now: Instant) -> bool {
        if self.state != TransactionState::Pending
            || self.transmits >= self.config.max_transmits
            || now < self.deadline
        {
            return false;
        }
        self.transmits += 1;
        if self.transmits >= self.config.max_transmits {
            let wait = capped(self.config.rto, self.config.max_rto)
                .saturating_mul(self.config.last_wait_factor);
            self.deadline = add(now, wait);
        } else {
            self.deadline = add(now, self.interval);
            self.interval = capped(self.interval.saturating_mul(2), self.config.max_rto);
        }
        true
    }

    /// When the caller should next call [`ClientTransaction::poll_transmit`] or
    /// [`ClientTransaction::handle_timeout`]: the next retransmission or the end of the final
    /// wait; `None` once the transaction has ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state == TransactionState::Pending).then_some(self.deadline)
    }

    /// Moves to [`TransactionState::TimedOut`] once the final wait after the last
    /// transmission has passed (RFC 8489 §6.2.1).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == TransactionState::Pending
            && self.transmits >= self.config.max_transmits
            && now >= self.deadline
        {
            self.state = TransactionState::TimedOut;
        }
    }

    /// Records that a response arrived: the transaction is over (RFC 8489 §6.3.3).
    pub fn complete(&mut self) {
        if self.state == TransactionState::Pending {
            self.state = TransactionState::Completed;
        }
    }

    /// The current state.
    pub fn state(&self) -> TransactionState {
        self.state
    }

    /// How many times the request has been sent so far.
    pub fn transmits(&self) -> u32 {
        self.transmits
    }
}

fn capped(rto: Duration, max: Option<Duration>) -> Duration {
    match max {
        Some(max) => rto.min(max),
        None => rto,
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
fn add(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}
