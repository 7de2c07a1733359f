//! The link model of the simulated network: one-way delay, jitter and random loss.
//!
//! This is a small model of our own rather than the `str0m-netem` crate: the simulator keeps a
//! single event queue and a single seeded random generator for the whole network (so that one
//! seed fixes one exact run, NAT port choices included), and every link only needs to answer
//! "is this packet lost, and if not, how long does it take?". A per-link emulator with its own
//! queue, clock handling and generator would add a second source of ordering and randomness
//! for no gain here. Rate limits and queueing are not modelled.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

/// Properties of one link (a host's access link or a NAT's uplink), the same in both
/// directions. Each packet crossing the link is lost with probability `loss`, else delayed by
/// `delay` plus a uniformly drawn extra in `[0, jitter]` (jitter may reorder packets, as it
/// does on real paths).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay of every packet.
    pub delay: Duration,
    /// Upper bound of the uniformly distributed extra delay added to each packet.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a packet is lost on this link (values outside are clamped).
    pub loss: f64,
}

impl Default for LinkConfig {
    /// A perfect link: no delay, no jitter, no loss.
    fn default() -> Self {
        LinkConfig::ideal()
    }
}

impl LinkConfig {
    /// A perfect link: no delay, no jitter, no loss.
    pub const fn ideal() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }

    /// A link with a fixed one-way delay and nothing else.
    pub const fn with_delay(delay: Duration) -> Self {
        LinkConfig {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }

    /// The same link with random loss of probability `loss`.
    pub const fn loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// The same link with jitter up to `jitter`.
    pub const fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Draws the fate of one packet: `None` if lost, else its transit time. Always draws the
    /// loss sample first, then the jitter sample only when there is jitter.
    pub(crate) fn transit(&self, rng: &mut StdRng) -> Option<Duration> {
        let loss = if self.loss.is_nan() {
            0.0
        } else {
            self.loss.clamp(0.0, 1.0)
        };
        if loss > 0.0 && rng.random::<f64>() < loss {
            return None;
        }
        let extra = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            // Nanosecond resolution; links longer than u64::MAX ns are saturated.
            let max = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(rng.random_range(0..=max))
        };
        Some(self.delay.saturating_add(extra))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ideal_link_never_loses_or_delays() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            assert_eq!(LinkConfig::ideal().transit(&mut rng), Some(Duration::ZERO));
        }
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let mut rng = StdRng::seed_from_u64(2);
        let link =
            LinkConfig::with_delay(Duration::from_millis(10)).jitter(Duration::from_millis(5));
        let mut seen_extra = false;
        for _ in 0..1000 {
            let d = link.transit(&mut rng).expect("no loss configured");
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(15));
            seen_extra |= d > Duration::from_millis(10);
        }
        assert!(seen_extra);
    }

    #[test]
    fn loss_rate_is_roughly_as_configured() {
        let mut rng = StdRng::seed_from_u64(3);
        let link = LinkConfig::ideal().loss(0.1);
        let lost = (0..100_000)
            .filter(|_| link.transit(&mut rng).is_none())
            .count();
        // 10 % of 100 000 with a standard deviation of about 95.
        assert!((9_500..=10_500).contains(&lost), "lost {lost}");
        let all = LinkConfig::ideal().loss(1.0);
        assert!(all.transit(&mut rng).is_none());
        let nan = LinkConfig::ideal().loss(f64::NAN);
        assert!(nan.transit(&mut rng).is_some());
    }
}
