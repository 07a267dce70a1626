//! Where a claims change is proposed: the routing rules of the claims plane (Q3 of
//! [`super`]), as a sans-IO unit of their own so that [`super::QuorumPlane`] and the
//! claims simulation (`mesh-core/tests/claims_sim`) run the same code.
//!
//! The caller names the candidate proposers (the plane: the voters live in SWIM, and
//! itself if it is one; the simulation: its SWIM view) and moves the messages; the
//! router decides and keeps the bookkeeping:
//!
//! - **R1 one proposer per shard.** A change goes to the shard's HRW-preferred
//!   candidate ([`preferred_proposer`] over [`proposer_id`] of the names), the same for
//!   every node that sees the same candidates; if that is this node it is proposed here
//!   ([`Route::Local`]).
//! - **R2 skip who did not answer.** A forwarded change not answered within the forward
//!   timeout ([`Router::expire`]) times out for the caller; its retry (the same request
//!   id) skips that proposer, so it goes to the next candidate in HRW order, and that
//!   proposer is skipped for every change for the slow backoff, or until it is heard
//!   from ([`Router::heard_from`]). When every candidate is skipped the change is
//!   proposed here.
//! - **R3 the preferred proposer watches.** A node watches the shards it is the
//!   preferred candidate of (no skips) ([`Router::watches`]), and its watcher learns
//!   every table its proposer decides.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::claims::ShardId;
use crate::quorum::{preferred_proposer, proposer_id, NodeId, RequestId};

/// Where a change goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Propose it here.
    Local,
    /// Forward it to this node's proposer (the router now waits for its answer).
    Forward(String),
}

/// A forwarded change waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingForward {
    /// The change's shard.
    pub shard: ShardId,
    /// The proposer it was sent to.
    pub to: String,
    /// When it was sent.
    pub sent: Instant,
    /// When it times out.
    pub deadline: Instant,
}

/// The router's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Changes forwarded to another node.
    pub forwarded: u64,
    /// Changes routed here.
    pub local: u64,
    /// Routes that skipped the preferred proposer (it timed out on the change, or is
    /// slow).
    pub skipped: u64,
    /// Forwarded changes that timed out.
    pub timeouts: u64,
    /// Answers to forwards that had timed out already.
    pub late: u64,
}

/// A deliberately broken rule, for the claims simulation's negative controls only.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingMutation {
    /// R2 broken: a retry goes to the proposer that timed out on it again, and nobody
    /// is skipped as slow.
    NeverSkip,
    /// R3 broken: no node watches any shard.
    NeverWatch,
}

/// The routing state of one node. See the module docs.
#[derive(Debug, Clone)]
pub struct Router {
    me: String,
    forward_timeout: Duration,
    slow_backoff: Duration,
    /// Forwarded changes not answered yet, by request.
    forwarded: BTreeMap<RequestId, PendingForward>,
    /// Per change, the proposers that timed out on it: its retry goes to the next one.
    excluded: BTreeMap<RequestId, BTreeSet<String>>,
    /// Proposers that let a forward time out, skipped until then (or until heard from):
    /// SWIM may take seconds to declare an isolated node down, and every new change
    /// would otherwise wait a forward timeout on it.
    slow: BTreeMap<String, Instant>,
    stats: RouterStats,
    mutation: Option<RoutingMutation>,
}

/// Past this many changes with exclusions, the bookkeeping of long-gone retries is
/// forgotten wholesale.
const MAX_EXCLUDED: usize = 4096;

impl Router {
    /// The router of node `me`: a forward not answered within `forward_timeout` times
    /// out, and its proposer is then skipped for `slow_backoff`.
    pub fn new(me: &str, forward_timeout: Duration, slow_backoff: Duration) -> Self {
        Self {
            me: me.to_owned(),
            forward_timeout,
            slow_backoff,
            forwarded: BTreeMap::new(),
            excluded: BTreeMap::new(),
            slow: BTreeMap::new(),
            stats: RouterStats::default(),
            mutation: None,
        }
    }

    /// Breaks one rule on purpose (the simulation's negative controls; never in a node).
    #[doc(hidden)]
    pub fn set_mutation(&mut self, mutation: Option<RoutingMutation>) {
        self.mutation = mutation;
    }

    /// The counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// The HRW-preferred proposer of `shard` among `candidates` (by [`proposer_id`]).
    pub fn preferred<'a>(
        shard: ShardId,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Option<String> {
        let ids: Vec<(NodeId, &str)> = candidates
            .into_iter()
            .map(|c| (proposer_id(c), c))
            .collect();
        let only: Vec<NodeId> = ids.iter().map(|(i, _)| *i).collect();
        let best = preferred_proposer(&shard.0.to_le_bytes(), &only)?;
        ids.into_iter()
            .find(|(i, _)| *i == best)
            .map(|(_, n)| n.to_owned())
    }

    /// Whether this node watches `shard` (R3): it is the shard's preferred candidate.
    pub fn watches<'a>(
        &self,
        shard: ShardId,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        if self.mutation == Some(RoutingMutation::NeverWatch) {
            return false;
        }
        Self::preferred(shard, candidates).as_deref() == Some(self.me.as_str())
    }

    /// Routes change `request` on `shard` (R1, R2). A [`Route::Forward`] is waited for
    /// until its deadline ([`Router::poll_timeout`]).
    pub fn route<'a>(
        &mut self,
        now: Instant,
        request: RequestId,
        shard: ShardId,
        candidates: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Route {
        self.slow.retain(|_, until| *until > now);
        let skip = self.mutation != Some(RoutingMutation::NeverSkip);
        let mut excluded = match self.excluded.get(&request) {
            Some(e) if skip => e.clone(),
            _ => BTreeSet::new(),
        };
        if skip {
            excluded.extend(self.slow.keys().cloned());
        }
        let chosen = Self::preferred(
            shard,
            candidates
                .clone()
                .into_iter()
                .filter(|c| !excluded.contains(*c)),
        );
        if !excluded.is_empty() && chosen != Self::preferred(shard, candidates) {
            self.stats.skipped += 1;
        }
        match chosen {
            Some(p) if p != self.me => {
                self.forwarded.insert(
                    request,
                    PendingForward {
                        shard,
                        to: p.clone(),
                        sent: now,
                        deadline: now + self.forward_timeout,
                    },
                );
                self.stats.forwarded += 1;
                Route::Forward(p)
            }
            _ => {
                self.stats.local += 1;
                Route::Local
            }
        }
    }

    /// A message came from node `from`: it is no longer skipped as slow.
    pub fn heard_from(&mut self, from: &str) {
        self.slow.remove(from);
    }

    /// The answer to forwarded change `request` came: what was waiting, or `None` if
    /// it timed out already (the caller saw the timeout; the answer is late).
    pub fn answered(&mut self, request: RequestId) -> Option<PendingForward> {
        let pending = self.forwarded.remove(&request);
        if pending.is_none() {
            self.stats.late += 1;
        }
        pending
    }

    /// Change `request` finished for its caller, decided (`ok`) or not.
    pub fn completed(&mut self, request: RequestId, ok: bool) {
        if ok {
            self.excluded.remove(&request);
        } else if self.excluded.len() > MAX_EXCLUDED {
            self.excluded.clear();
        }
    }

    /// When the next forward times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.forwarded.values().map(|f| f.deadline).min()
    }

    /// The forwards that timed out by `now` (R2), in request order: each is over for
    /// its caller (a timeout), its proposer is skipped by its retry and, for the slow
    /// backoff, by every change.
    pub fn expire(&mut self, now: Instant) -> Vec<(RequestId, PendingForward)> {
        let due: Vec<RequestId> = self
            .forwarded
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(r, _)| *r)
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for request in due {
            if let Some(f) = self.forwarded.remove(&request) {
                self.excluded
                    .entry(request)
                    .or_default()
                    .insert(f.to.clone());
                self.slow.insert(f.to.clone(), now + self.slow_backoff);
                self.stats.timeouts += 1;
                out.push((request, f));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(seq: u64) -> RequestId {
        RequestId { client: 7, seq }
    }

    const NODES: [&str; 4] = ["a", "b", "c", "d"];

    /// A shard whose preferred proposer among NODES is not "a", and "a"'s router.
    fn setup() -> (ShardId, String, Router) {
        let shard = (0..64)
            .map(ShardId)
            .find(|s| Router::preferred(*s, NODES).as_deref() != Some("a"))
            .expect("some shard prefers another node");
        let p = Router::preferred(shard, NODES).expect("candidates");
        let r = Router::new("a", Duration::from_millis(100), Duration::from_secs(1));
        (shard, p, r)
    }

    #[test]
    fn a_retry_after_a_timeout_goes_to_the_next_proposer_in_hrw_order() {
        let (shard, p, mut r) = setup();
        let t0 = Instant::now();
        assert_eq!(r.route(t0, rid(1), shard, NODES), Route::Forward(p.clone()));
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        assert!(r.expire(t0 + Duration::from_millis(99)).is_empty());
        let due = r.expire(t0 + Duration::from_millis(100));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.to, p);
        let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != p).collect();
        let next = Router::preferred(shard, rest).expect("candidates");
        let t1 = t0 + Duration::from_millis(101);
        let route = r.route(t1, rid(1), shard, NODES);
        if next == "a" {
            assert_eq!(route, Route::Local);
        } else {
            assert_eq!(route, Route::Forward(next));
        }
        assert_eq!(r.stats().skipped, 1);
        // A late answer to the first attempt is not the retry's.
        r.answered(rid(1));
        assert_eq!(r.answered(rid(1)), None);
        assert_eq!(r.stats().late, 1);
    }

    #[test]
    fn a_slow_proposer_is_skipped_until_heard_from_or_its_backoff_ends() {
        let (shard, p, mut r) = setup();
        let t0 = Instant::now();
        r.route(t0, rid(1), shard, NODES);
        r.expire(t0 + Duration::from_millis(100));
        let t1 = t0 + Duration::from_millis(200);
        assert_ne!(r.route(t1, rid(2), shard, NODES), Route::Forward(p.clone()));
        r.heard_from(&p);
        assert_eq!(r.route(t1, rid(3), shard, NODES), Route::Forward(p.clone()));
        r.expire(t1 + Duration::from_millis(100));
        let later = t1 + Duration::from_millis(1_200);
        assert_eq!(r.route(later, rid(4), shard, NODES), Route::Forward(p));
    }

    #[test]
    fn the_mutations_break_their_rules() {
        let (shard, p, mut r) = setup();
        r.set_mutation(Some(RoutingMutation::NeverSkip));
        let t0 = Instant::now();
        r.route(t0, rid(1), shard, NODES);
        r.expire(t0 + Duration::from_millis(100));
        assert_eq!(
            r.route(t0 + Duration::from_millis(101), rid(1), shard, NODES),
            Route::Forward(p.clone())
        );
        let mut w = Router::new(&p, Duration::from_millis(100), Duration::from_secs(1));
        assert!(w.watches(shard, NODES));
        w.set_mutation(Some(RoutingMutation::NeverWatch));
        assert!(!w.watches(shard, NODES));
    }
}
