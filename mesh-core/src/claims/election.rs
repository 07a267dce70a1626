//! Leader election on a claim: the rules the shell's `campaign` / `run_while_leader`
//! and `meshctl elect` follow (sans-IO; the shell only waits).
//!
//! An election `NAME` is the claim of the task [`election_task`]`(NAME)`. The candidate
//! that holds it leads, its claim token is its fencing token, and its leadership is
//! valid exactly while the claim is: until the holder's `valid_until`, which is
//! `t0 + TTL·(1−ρ) − guard` of its own clock (S3 of [`crate::claims`]): that ends, in real
//! time, before the watcher's `TTL·(1+ρ)` eviction can commit, and so before any other
//! candidate can be granted the claim. Hence two leaders' validities never overlap.
//!
//! # Rules
//!
//! - *E1 stop before validity ends*: the leader's work must be stopped by
//!   [`stop_by`]`(valid_until, margin)`, where `margin` covers its own stop latency (for a
//!   child process: SIGTERM, the grace period, SIGKILL). A renew moves `valid_until`
//!   on; nothing else does.
//! - *E2 fencing*: effects carry the token to a [`FencedResource`](super::FencedResource);
//!   tokens of successive leaders strictly increase (S2).
//! - *E3 campaign retries*: a refusal because another candidate holds the claim, an
//!   unavailable quorum, a timed-out round or a lost session is retried after
//!   [`Backoff::next_delay`] ([`retryable`]); bad input, and an agent with no voters
//!   configured, are not.
//! - *E4 backoff*: delays grow from `max(TTL/20, 50 ms)` doubling to a cap of `TTL/4`,
//!   each drawn uniformly from the upper half of the current step with a seeded PRNG
//!   (candidates seeded differently spread out); a win resets it. So once the holder is
//!   gone a candidate retries within `TTL/4` of the claim becoming free.

use std::time::{Duration, Instant};

use super::table::ClaimReject;
use super::{ClaimsError, Unavailable};

/// The task key an election named `name` claims.
pub fn election_task(name: &str) -> String {
    format!("elect/{name}")
}

/// E1: the instant by which the leader's work must have stopped, given the claim's
/// validity end and the work's stop latency `margin` (`None`: no time left at all).
pub fn stop_by(valid_until: Instant, margin: Duration) -> Option<Instant> {
    valid_until.checked_sub(margin)
}

/// E3: whether a failed campaign attempt should be retried after a backoff.
pub fn retryable(error: &ClaimsError) -> bool {
    match error {
        // No voters: claims are off for good on this agent.
        ClaimsError::Unavailable {
            reason: Unavailable::NoVoters,
        } => false,
        ClaimsError::Unavailable { .. }
        | ClaimsError::Timeout
        | ClaimsError::SessionLost
        | ClaimsError::Superseded
        | ClaimsError::Overloaded { .. } => true,
        ClaimsError::Rejected(reject) => matches!(
            reject,
            ClaimReject::Held { .. }
                | ClaimReject::NoSession { .. }
                | ClaimReject::TableFull { .. }
        ),
        ClaimsError::NotHeld { .. } => false,
    }
}

/// E4: the seeded campaign backoff.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    state: u64,
}

impl Backoff {
    /// A backoff for claims of lease `ttl`, seeded with `seed` (e.g. a hash of the node
    /// name and incarnation).
    pub fn new(ttl: Duration, seed: u64) -> Self {
        let cap = (ttl / 4).max(Duration::from_millis(50));
        Self {
            base: (ttl / 20).max(Duration::from_millis(50)).min(cap),
            cap,
            attempt: 0,
            state: seed,
        }
    }

    /// The largest delay it ever returns.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The delay before the next attempt: uniform in `[step/2, step]`, `step =
    /// min(cap, base·2^attempt)`.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let span = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
        let r = self.splitmix() % span.saturating_add(1);
        half + Duration::from_nanos(r)
    }

    /// A win (or a fresh start): the next delay is the base again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn splitmix(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::SessionId;

    #[test]
    fn backoff_grows_to_its_cap_stays_in_range_resets_and_depends_on_the_seed() {
        let ttl = Duration::from_secs(2);
        let mut b = Backoff::new(ttl, 7);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= ttl / 4), "{delays:?}");
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[11] >= ttl / 8, "reached the cap's range: {delays:?}");
        b.reset();
        assert!(
            b.next_delay() <= Duration::from_millis(100),
            "reset to the base"
        );
        let mut other = Backoff::new(ttl, 8);
        let theirs: Vec<Duration> = (0..12).map(|_| other.next_delay()).collect();
        assert_ne!(delays, theirs, "seeds spread candidates");
        let mut same = Backoff::new(ttl, 7);
        let again: Vec<Duration> = (0..12).map(|_| same.next_delay()).collect();
        assert_eq!(delays, again, "seeded: reproducible");
    }

    #[test]
    fn stop_by_ends_before_validity_by_the_margin() {
        let now = Instant::now();
        let until = now + Duration::from_secs(1);
        assert_eq!(
            stop_by(until, Duration::from_millis(300)),
            Some(now + Duration::from_millis(700))
        );
        assert!(stop_by(until, Duration::from_millis(300)).is_some_and(|t| t < until));
    }

    #[test]
    fn held_and_unavailable_are_retried_bad_input_is_not() {
        let sid = SessionId {
            node: "n1".into(),
            incarnation: 1,
            n: 3,
        };
        assert!(retryable(&ClaimsError::Rejected(ClaimReject::Held {
            holder: sid,
            token: 4
        })));
        assert!(retryable(&ClaimsError::Unavailable {
            reason: Unavailable::NoQuorum {
                reachable: 1,
                needed: 2
            }
        }));
        assert!(!retryable(&ClaimsError::Unavailable {
            reason: Unavailable::NoVoters
        }));
        assert!(retryable(&ClaimsError::Timeout));
        assert!(!retryable(&ClaimsError::Rejected(ClaimReject::BadLength {
            field: crate::claims::Field::Task,
            len: 999,
            max: 256
        })));
        assert!(!retryable(&ClaimsError::NotHeld { task: "t".into() }));
    }
}
