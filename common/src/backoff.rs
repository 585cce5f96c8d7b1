//! The one retry back-off: delivery to the API, ZooKeeper reconnects and counter
//! contention all wait with it.

use std::time::Duration;

use rand::RngExt;

/// Exponential back-off with jitter: the n-th delay is uniform in
/// `[floor × c, c]` where `c = min(cap, base × 2ⁿ)` and `floor` is 0 (full jitter, the
/// default) unless set with [`Backoff::with_floor`], so many retrying clients spread out
/// instead of retrying in step. [`Backoff::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    floor: f64,
    attempt: u32,
}

impl Default for Backoff {
    /// 200 ms doubling to a 10 s cap.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
    }
}

impl Backoff {
    /// Back-off starting at `base`, doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            floor: 0.0,
            attempt: 0,
        }
    }

    /// Never waits less than `floor` (0..=1) of the current ceiling: for retries where an
    /// immediate one is pointless (reconnecting to a server that just refused).
    pub fn with_floor(mut self, floor: f64) -> Backoff {
        self.floor = floor.clamp(0.0, 1.0);
        self
    }

    /// The upper bound of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next retry; each call doubles the ceiling until the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let least = (nanos as f64 * self.floor) as u64;
        Duration::from_nanos(rand::rng().random_range(least..=nanos))
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the first delay (call after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_cap_with_jitter_below_ceiling() {
        let mut b = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_millis());
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(10));
        }
        assert_eq!(
            ceilings,
            vec![200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000, 10000]
        );
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(200));
        assert!(b.next_delay() <= Duration::from_millis(200));
    }

    #[test]
    fn a_floor_keeps_delays_above_that_part_of_the_ceiling() {
        let mut b =
            Backoff::new(Duration::from_millis(100), Duration::from_secs(2)).with_floor(0.5);
        for _ in 0..50 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} of {ceiling:?}");
        }
    }
}
