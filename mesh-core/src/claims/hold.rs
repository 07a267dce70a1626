//! Holds: claims bound to a client's stream (the admin API's `POST /v1/claims/hold`,
//! `meshctl claim --hold`). A hold claims a task; while the stream is open the agent's
//! holder renews the claim as it renews every claim; when the stream ends the hold's
//! claim is released, and that release is retried until it is known to have taken
//! effect (or the claim is known to be gone). This module decides all of that; the
//! shell only opens the hold, carries its lines to the client, and says when the stream
//! ended. Sans-IO: every input carries `now`, and [`Holds::poll_timeout`] says when the
//! next retry is due.
//!
//! # Properties
//!
//! - **H1 exclusion.** While a hold on a task is open, or its release is still being
//!   retried, a plain claim of that task on this node is refused (and so is a second
//!   hold): otherwise the hold's release would pull the task from under the other
//!   caller. A hold is refused for a task this node already holds.
//! - **H2 an ended hold releases its claim.** Unless the claim was lost (the holder said
//!   so), ending a hold starts a release of its token, retried every
//!   [`RELEASE_RETRY`] while the quorum is unavailable or the outcome unknown, for at
//!   most [`RELEASE_ATTEMPTS`] attempts; a claim left behind would be renewed for ever.
//! - **H3 no early "gone".** "Not held" may be transient: after a release whose outcome
//!   was unknown, the holder adopts the claim again at its next renew if the release did
//!   not take effect. So "not held" ends the release only once the claim has stayed away
//!   for a whole TTL ([`HoldOutcome::Gone`]).
//! - **H4 only its own claim.** A release carries the hold's token; a newer token (the
//!   task was claimed again) ends the release as [`HoldOutcome::Gone`] and touches
//!   nothing.
//!
//! The simulator (`tests/tests/sim_claims.rs`) runs holds through the whole node under
//! partitions; the unit tests below check each rule.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{CallOk, ClaimReject, ClaimsError};

/// Pause between two attempts of an ended hold's release.
pub const RELEASE_RETRY: Duration = Duration::from_secs(1);
/// Attempts of an ended hold's release before it gives up ([`HoldOutcome::Failed`]).
pub const RELEASE_ATTEMPTS: u32 = 120;

crate::reason::reasons! {
    /// How an ended hold's release ended; counted as
    /// `mesh_claims_hold_releases_total{result}`.
    pub enum HoldOutcome {
        /// The release took effect.
        Released => "released",
        /// The claim was already gone: lost, released otherwise, or claimed again with a
        /// newer token.
        Gone => "gone",
        /// Given up after [`RELEASE_ATTEMPTS`] attempts.
        Failed => "failed",
    }
}

/// What one release attempt came to, as the hold machine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseAnswer {
    /// Released.
    Released,
    /// Refused with a newer token: another claim, not the hold's.
    Stale,
    /// Not held (by this node) at the moment.
    NotHeld,
    /// Unavailable, timed out, or any other failure: retry.
    Retry,
}

impl ReleaseAnswer {
    /// Classifies a release call's result (or the error it was refused with at once).
    pub fn of(result: &Result<CallOk, ClaimsError>) -> Self {
        match result {
            Ok(_) => Self::Released,
            Err(ClaimsError::Rejected(ClaimReject::StaleToken { .. })) => Self::Stale,
            Err(
                ClaimsError::NotHeld { .. } | ClaimsError::Rejected(ClaimReject::NotHeld { .. }),
            ) => Self::NotHeld,
            Err(_) => Self::Retry,
        }
    }
}

#[derive(Debug, Clone)]
struct Open {
    /// The claim's token once the hold's claim succeeded.
    token: Option<u64>,
    /// The claim's TTL (how long "not held" must last to count as gone).
    ttl: Duration,
    /// The holder reported the claim lost: nothing to release.
    lost: bool,
    /// The client went away before the claim's result came: release it when it does.
    closed: bool,
}

#[derive(Debug, Clone)]
struct Releasing {
    token: u64,
    ttl: Duration,
    attempts: u32,
    next_at: Instant,
    away_since: Option<Instant>,
    in_flight: bool,
}

/// The holds of one node. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    open: BTreeMap<String, Open>,
    releasing: BTreeMap<String, Releasing>,
}

impl Holds {
    /// True while `task` is under an open hold or its release is being retried (H1).
    pub fn is_busy(&self, task: &str) -> bool {
        self.open.contains_key(task) || self.releasing.contains_key(task)
    }

    /// Opens a hold on `task` whose claim (with `ttl`) the caller is about to submit.
    /// False (nothing changed) if the task is busy (H1).
    pub fn open(&mut self, task: &str, ttl: Duration) -> bool {
        if self.is_busy(task) {
            return false;
        }
        self.open.insert(
            task.to_owned(),
            Open {
                token: None,
                ttl,
                lost: false,
                closed: false,
            },
        );
        true
    }

    /// The hold's claim finished at `now`: with its token, or failed (the hold is
    /// over, with nothing to release). If the client already went away, the claim's
    /// release starts now (H2); true then.
    pub fn claimed(&mut self, now: Instant, task: &str, token: Option<u64>) -> bool {
        let Some(t) = token else {
            self.open.remove(task);
            return false;
        };
        let Some(o) = self.open.get_mut(task) else {
            return false;
        };
        o.token = Some(t);
        if o.closed {
            o.closed = false;
            return self.close(now, task);
        }
        false
    }

    /// The holder reported `task`'s claim at `token` lost: an open hold on it has
    /// nothing to release, and a release in progress stops (H2).
    pub fn lost(&mut self, task: &str, token: u64) -> Option<HoldOutcome> {
        if let Some(o) = self.open.get_mut(task) {
            if o.token == Some(token) {
                o.lost = true;
            }
        }
        match self.releasing.get(task) {
            Some(r) if r.token == token => {
                self.releasing.remove(task);
                Some(HoldOutcome::Gone)
            }
            _ => None,
        }
    }

    /// The hold's token, if its claim succeeded and was not lost.
    pub fn token(&self, task: &str) -> Option<u64> {
        self.open
            .get(task)
            .filter(|o| !o.lost)
            .and_then(|o| o.token)
    }

    /// The client's stream ended: the hold is over, and its claim (if it has one that
    /// was not lost) is to be released from `now` on (H2). True if a release starts.
    pub fn close(&mut self, now: Instant, task: &str) -> bool {
        let Some(mut o) = self.open.remove(task) else {
            return false;
        };
        if o.token.is_none() && !o.lost {
            // The claim's result is still to come: [`Holds::claimed`] releases it.
            o.closed = true;
            self.open.insert(task.to_owned(), o);
            return false;
        }
        let Some(token) = o.token.filter(|_| !o.lost) else {
            return false;
        };
        self.releasing.insert(
            task.to_owned(),
            Releasing {
                token,
                ttl: o.ttl,
                attempts: 0,
                next_at: now,
                away_since: None,
                in_flight: false,
            },
        );
        true
    }

    /// The releases to start now, as `(task, token)`; each is in flight until
    /// [`Holds::answered`].
    pub fn due(&mut self, now: Instant) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (task, r) in &mut self.releasing {
            if !r.in_flight && r.next_at <= now {
                r.in_flight = true;
                r.attempts += 1;
                out.push((task.clone(), r.token));
            }
        }
        out
    }

    /// A release attempt of `task` came back with `answer`: the outcome if the release
    /// is over (H2, H3, H4), else `None` and the next attempt is scheduled.
    pub fn answered(
        &mut self,
        now: Instant,
        task: &str,
        answer: ReleaseAnswer,
    ) -> Option<(u64, HoldOutcome)> {
        let r = self.releasing.get_mut(task)?;
        r.in_flight = false;
        let outcome = match answer {
            ReleaseAnswer::Released => Some(HoldOutcome::Released),
            ReleaseAnswer::Stale => Some(HoldOutcome::Gone),
            ReleaseAnswer::NotHeld => {
                let since = *r.away_since.get_or_insert(now);
                (now.saturating_duration_since(since) >= r.ttl).then_some(HoldOutcome::Gone)
            }
            ReleaseAnswer::Retry => {
                r.away_since = None;
                None
            }
        };
        let outcome = outcome.or((r.attempts >= RELEASE_ATTEMPTS).then_some(HoldOutcome::Failed));
        match outcome {
            Some(o) => {
                let token = r.token;
                self.releasing.remove(task);
                Some((token, o))
            }
            None => {
                r.next_at = now + RELEASE_RETRY;
                None
            }
        }
    }

    /// When the next release attempt is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.releasing
            .values()
            .filter(|r| !r.in_flight)
            .map(|r| r.next_at)
            .min()
    }

    /// Holds open and releases in progress.
    pub fn counts(&self) -> (usize, usize) {
        (self.open.len(), self.releasing.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    fn opened(h: &mut Holds, task: &str, token: u64) {
        assert!(h.open(task, TTL));
        h.claimed(Instant::now(), task, Some(token));
    }

    #[test]
    fn a_busy_task_refuses_a_second_hold_until_its_release_is_over() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        opened(&mut h, "a", 7);
        assert!(!h.open("a", TTL), "H1: a second hold on an open one");
        assert!(h.close(t0, "a"));
        assert!(h.is_busy("a"), "H1: busy while the release runs");
        assert_eq!(h.due(t0), vec![("a".to_owned(), 7)]);
        assert_eq!(
            h.answered(t0, "a", ReleaseAnswer::Released),
            Some((7, HoldOutcome::Released))
        );
        assert!(!h.is_busy("a"));
        assert!(h.open("a", TTL));
    }

    #[test]
    fn an_unknown_outcome_is_retried_every_second_until_released() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        opened(&mut h, "a", 3);
        h.close(t0, "a");
        assert_eq!(h.due(t0).len(), 1);
        assert_eq!(h.due(t0).len(), 0, "one attempt in flight at a time");
        assert_eq!(h.answered(t0, "a", ReleaseAnswer::Retry), None);
        assert_eq!(h.poll_timeout(), Some(t0 + RELEASE_RETRY));
        assert!(h.due(t0 + RELEASE_RETRY / 2).is_empty());
        assert_eq!(h.due(t0 + RELEASE_RETRY).len(), 1);
        assert_eq!(
            h.answered(t0 + RELEASE_RETRY, "a", ReleaseAnswer::Released),
            Some((3, HoldOutcome::Released))
        );
    }

    #[test]
    fn not_held_is_gone_only_after_a_whole_ttl_away() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        opened(&mut h, "a", 3);
        h.close(t0, "a");
        let mut now = t0;
        let mut outcome = None;
        while outcome.is_none() {
            assert_eq!(h.due(now).len(), 1);
            outcome = h.answered(now, "a", ReleaseAnswer::NotHeld);
            if outcome.is_none() {
                now += RELEASE_RETRY;
            }
        }
        assert_eq!(outcome, Some((3, HoldOutcome::Gone)));
        assert!(now - t0 >= TTL, "H3: gone after {:?}", now - t0);
        // A retry in between starts the count again.
        opened(&mut h, "b", 4);
        h.close(t0, "b");
        h.due(t0);
        assert_eq!(h.answered(t0, "b", ReleaseAnswer::NotHeld), None);
        h.due(t0 + TTL / 2);
        assert_eq!(h.answered(t0 + TTL / 2, "b", ReleaseAnswer::Retry), None);
        h.due(t0 + TTL);
        assert_eq!(h.answered(t0 + TTL, "b", ReleaseAnswer::NotHeld), None);
    }

    #[test]
    fn a_newer_token_ends_the_release_and_a_lost_claim_needs_none() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        opened(&mut h, "a", 3);
        h.close(t0, "a");
        h.due(t0);
        assert_eq!(
            h.answered(t0, "a", ReleaseAnswer::Stale),
            Some((3, HoldOutcome::Gone))
        );
        opened(&mut h, "b", 5);
        assert_eq!(h.lost("b", 5), None);
        assert_eq!(h.token("b"), None);
        assert!(!h.close(t0, "b"), "H2: nothing to release after a loss");
        assert!(!h.is_busy("b"));
        // A failed claim leaves nothing behind either.
        assert!(h.open("c", TTL));
        h.claimed(t0, "c", None);
        assert!(!h.is_busy("c"));
    }

    #[test]
    fn a_client_gone_before_the_claim_came_back_still_gets_it_released() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        assert!(h.open("a", TTL));
        assert!(!h.close(t0, "a"), "nothing to release yet");
        assert!(h.is_busy("a"), "H1: still busy, the claim may be taken");
        assert!(
            h.claimed(t0, "a", Some(9)),
            "H2: the release starts with the token"
        );
        assert_eq!(h.due(t0), vec![("a".to_owned(), 9)]);
        // And a claim that failed after the client left leaves nothing.
        assert!(h.open("b", TTL));
        h.close(t0, "b");
        assert!(!h.claimed(t0, "b", None));
        assert!(!h.is_busy("b"));
    }

    #[test]
    fn a_release_gives_up_after_the_last_attempt() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        opened(&mut h, "a", 3);
        h.close(t0, "a");
        let mut now = t0;
        for attempt in 1..=RELEASE_ATTEMPTS {
            assert_eq!(h.due(now).len(), 1);
            let r = h.answered(now, "a", ReleaseAnswer::Retry);
            if attempt < RELEASE_ATTEMPTS {
                assert_eq!(r, None);
                now += RELEASE_RETRY;
            } else {
                assert_eq!(r, Some((3, HoldOutcome::Failed)));
            }
        }
        assert!(!h.is_busy("a"));
    }
}
