//! The proposer: runs client changes on registers through the two CASPaxos phases.
//!
//! Sans-IO: [`Proposer::propose`] (a client request), [`Proposer::handle_reply`] (a
//! message from an acceptor) and [`Proposer::handle_timeout`] (the timer) are the inputs;
//! [`Proposer::poll_output`] (messages and completions) and [`Proposer::poll_timeout`]
//! (when to call `handle_timeout` next) are the outputs. Time comes in as `now`, and the
//! backoff jitter from the RNG the caller hands in.
//!
//! Per key the proposer runs one change at a time (later ones queue) and keeps the
//! one-round-trip cache: after a quorum accepted its value *and* promised its next
//! ballot, the next change on that key goes straight to phase 2 with that ballot. Any
//! conflict, timeout or failed round drops the cache.

use super::ballot::{Ballot, NodeId};
use super::messages::{
    Change, Envelope, Outcome, Record, Reply, Request, RequestId, Slot, RECENT_RECORDS,
};
use super::reconfig::Quorums;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Timing of a proposer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProposerConfig {
    /// How long one round trip (phase 1 or phase 2) may take before it counts as failed.
    pub attempt_timeout: Duration,
    /// How long a change may take in all before it completes with
    /// [`ProposeError::Timeout`] (its effect is then unknown).
    pub op_timeout: Duration,
    /// The smallest backoff after a failed round.
    pub backoff_base: Duration,
    /// The largest backoff (before jitter).
    pub backoff_max: Duration,
}

impl Default for ProposerConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(5),
            backoff_max: Duration::from_millis(500),
        }
    }
}

/// Identifies a change submitted to one proposer (local, not persisted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Why a change did not complete.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ProposeError {
    /// No quorum answered within the op timeout. The change may or may not have been
    /// applied (it may even be applied later, by whoever finishes its partial accept);
    /// retry with the same [`RequestId`] to find out — it will not be applied twice.
    #[error("no quorum within the op timeout; the change's effect is unknown")]
    Timeout,
}

/// A finished change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Completion<K, V, R> {
    /// The change.
    pub op: OpId,
    /// Its register.
    pub key: K,
    /// What the register decided, or why we do not know.
    pub result: Result<Outcome<V, R>, ProposeError>,
}

/// What the shell must do for the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProposerOutput<K, V, R> {
    /// Send a request to an acceptor.
    Send(Envelope<Request<K, Slot<V, R>>>),
    /// Hand a result to the client.
    Complete(Completion<K, V, R>),
}

/// Counters a proposer keeps; the shell publishes them as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProposerStats {
    /// Phase 1 rounds started.
    pub prepares: u64,
    /// Phase 2 rounds started (including the cached ones).
    pub accepts: u64,
    /// Changes that started in phase 2 thanks to the cache (a later conflict may still
    /// send them back to phase 1).
    pub cache_hits: u64,
    /// Rounds that failed (conflict or round-trip timeout) and backed off.
    pub failed_rounds: u64,
    /// Changes completed with a decision.
    pub committed: u64,
    /// Changes completed with [`ProposeError::Timeout`].
    pub timeouts: u64,
    /// Replies ignored (stale ballot, unknown key, not a voter, other epoch).
    pub ignored_replies: u64,
    /// [`Reply::WrongEpoch`] replies: an acceptor in another epoch refused a request.
    pub wrong_epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Op<C> {
    id: OpId,
    request: Option<RequestId>,
    change: C,
    deadline: Instant,
}

/// What an acceptor reported in its promise: its latest accepted ballot and value.
type Promised<V, R> = Option<(Ballot, Slot<V, R>)>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase<V, R> {
    Preparing {
        ballot: Ballot,
        until: Instant,
        promises: BTreeMap<NodeId, Promised<V, R>>,
    },
    Accepting {
        ballot: Ballot,
        next: Ballot,
        until: Instant,
        value: Slot<V, R>,
        outcome: Outcome<V, R>,
        accepted: BTreeSet<NodeId>,
        next_promised: BTreeSet<NodeId>,
    },
    Backoff {
        until: Instant,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Active<V, C: Change<V>> {
    op: Op<C>,
    failures: u32,
    phase: Phase<V, C::Reject>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct KeyState<V, C: Change<V>> {
    /// The 1-RTT cache: a ballot a quorum promised, and the value they hold.
    cache: Option<(Ballot, Slot<V, C::Reject>)>,
    /// The highest ballot any acceptor told us about for this key.
    seen: Ballot,
    active: Option<Active<V, C>>,
    queue: VecDeque<Op<C>>,
}

impl<V, C: Change<V>> KeyState<V, C> {
    fn new() -> Self {
        Self {
            cache: None,
            seen: Ballot::ZERO,
            active: None,
            queue: VecDeque::new(),
        }
    }
}

/// A CASPaxos proposer over the voters and quorum rules of one root epoch (which
/// [`Proposer::set_root`] moves on).
///
/// Equality and hashing ignore the [`ProposerStats`] counters (two proposers that would
/// behave the same are equal; a model checker relies on that).
#[derive(Clone, Debug)]
pub struct Proposer<K: Ord, V, C: Change<V>> {
    id: NodeId,
    epoch: u64,
    /// Every acceptor either rule names: whom requests go to.
    voters: Vec<NodeId>,
    quorums: Quorums,
    /// The highest epoch above ours an acceptor refused us with.
    newer_epoch: Option<u64>,
    config: ProposerConfig,
    /// The last ballot minted (any key): rounds only grow within an incarnation.
    minted: Ballot,
    next_op: u64,
    keys: BTreeMap<K, KeyState<V, C>>,
    outputs: VecDeque<ProposerOutput<K, V, C::Reject>>,
    stats: ProposerStats,
}

impl<K: Ord + PartialEq, V: PartialEq, C: Change<V> + PartialEq> PartialEq for Proposer<K, V, C> {
    fn eq(&self, o: &Self) -> bool {
        (
            self.id,
            self.epoch,
            self.minted,
            self.next_op,
            self.newer_epoch,
        ) == (o.id, o.epoch, o.minted, o.next_op, o.newer_epoch)
            && self.quorums == o.quorums
            && self.voters == o.voters
            && self.config == o.config
            && self.keys == o.keys
            && self.outputs == o.outputs
    }
}

impl<K: Ord + Eq, V: Eq, C: Change<V> + Eq> Eq for Proposer<K, V, C> {}

impl<K: Ord + Hash, V: Hash, C: Change<V> + Hash> Hash for Proposer<K, V, C> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (
            self.id,
            self.epoch,
            self.minted,
            self.next_op,
            self.newer_epoch,
        )
            .hash(state);
        self.quorums.hash(state);
        self.voters.hash(state);
        self.config.hash(state);
        self.keys.hash(state);
        self.outputs.hash(state);
    }
}

impl<K, V, C> Proposer<K, V, C>
where
    K: Ord + Clone,
    V: Clone,
    C: Change<V> + Clone,
{
    /// A proposer `id` in its `incarnation` (which the shell must have bumped and fsynced
    /// at this boot, before calling this), for the voter set `voters` of `epoch`.
    /// Quorums are majorities of `voters` (duplicates are ignored).
    pub fn new(
        id: NodeId,
        incarnation: u64,
        epoch: u64,
        voters: impl IntoIterator<Item = NodeId>,
        config: ProposerConfig,
    ) -> Self {
        let quorums = Quorums::majority(voters.into_iter().map(|v| v.0));
        Self::with_quorums(id, incarnation, epoch, quorums, config)
    }

    /// Like [`Proposer::new`], with explicit quorum rules (a root's
    /// [`RootRecord::quorums`](super::RootRecord::quorums)).
    pub fn with_quorums(
        id: NodeId,
        incarnation: u64,
        epoch: u64,
        quorums: Quorums,
        config: ProposerConfig,
    ) -> Self {
        Self {
            id,
            epoch,
            voters: quorums.acceptors(),
            quorums,
            newer_epoch: None,
            config,
            minted: Ballot {
                round: 0,
                node: id,
                incarnation,
            },
            next_op: 0,
            keys: BTreeMap::new(),
            outputs: VecDeque::new(),
            stats: ProposerStats::default(),
        }
    }

    /// This proposer's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The voters (every acceptor either rule names), sorted.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// The epoch this proposer's requests carry.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The quorum rules in use.
    pub fn quorums(&self) -> &Quorums {
        &self.quorums
    }

    /// The highest epoch above ours that an acceptor refused a request with, if any: this
    /// proposer is on an old root. The shell fetches the newer root (from a voter) and
    /// calls [`Proposer::set_root`]; meanwhile the refused rounds time out and retry.
    pub fn newer_epoch(&self) -> Option<u64> {
        self.newer_epoch
    }

    /// Move to the root of `epoch` with `quorums` (ignored unless `epoch` is above ours):
    /// every cached promise is dropped and every round in flight restarts from phase 1
    /// under the new rules (its promises and accepts were counted under the old ones).
    /// Queued and active changes keep their deadlines; none is completed here.
    pub fn set_root(&mut self, now: Instant, epoch: u64, quorums: Quorums) {
        if epoch <= self.epoch {
            return;
        }
        self.epoch = epoch;
        self.voters = quorums.acceptors();
        self.quorums = quorums;
        if self.newer_epoch.is_some_and(|e| e <= epoch) {
            self.newer_epoch = None;
        }
        let mut restart = Vec::new();
        self.keys.retain(|key, state| {
            state.cache = None;
            if state.active.is_some() {
                restart.push(key.clone());
            }
            state.active.is_some() || !state.queue.is_empty()
        });
        for key in restart {
            self.start_prepare(now, &key);
        }
    }

    /// The counters.
    pub fn stats(&self) -> &ProposerStats {
        &self.stats
    }

    /// Whether the next change on `key` can skip phase 1.
    pub fn has_cached_promise(&self, key: &K) -> bool {
        self.keys.get(key).is_some_and(|k| k.cache.is_some())
    }

    /// Submit a change on `key`. `request` makes it at-most-once across retries (reads
    /// pass `None`). Completes later with a [`ProposerOutput::Complete`] carrying the
    /// returned [`OpId`].
    pub fn propose(&mut self, now: Instant, key: K, request: Option<RequestId>, change: C) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        let op = Op {
            id,
            request,
            change,
            deadline: now + self.config.op_timeout,
        };
        let state = self.keys.entry(key.clone()).or_insert_with(KeyState::new);
        state.queue.push_back(op);
        if state.active.is_none() {
            self.start_next(now, &key);
        }
        id
    }

    /// Handle a reply from acceptor `from`. Stale or unexpected replies are counted and
    /// ignored; peer input never panics.
    pub fn handle_reply<Rn: Rng + ?Sized>(
        &mut self,
        now: Instant,
        from: NodeId,
        reply: Reply<K, Slot<V, C::Reject>>,
        rng: &mut Rn,
    ) {
        if !self.voters.contains(&from) {
            self.stats.ignored_replies += 1;
            return;
        }
        if let Reply::WrongEpoch { epoch, .. } = &reply {
            self.stats.wrong_epoch += 1;
            if *epoch > self.epoch {
                self.newer_epoch = Some(self.newer_epoch.map_or(*epoch, |e| e.max(*epoch)));
            }
            return;
        }
        let key = reply.key().clone();
        let quorums = &self.quorums;
        let Some(state) = self.keys.get_mut(&key) else {
            self.stats.ignored_replies += 1;
            return;
        };
        let Some(active) = state.active.as_mut() else {
            self.stats.ignored_replies += 1;
            return;
        };
        match (reply, &mut active.phase) {
            (
                Reply::Promise {
                    ballot, accepted, ..
                },
                Phase::Preparing {
                    ballot: mine,
                    promises,
                    ..
                },
            ) if ballot == *mine => {
                promises.insert(from, accepted);
                if quorums.prepare.met_by(promises.keys()) {
                    // The latest accepted value among a quorum is the register's value.
                    let current = promises
                        .values()
                        .flatten()
                        .max_by_key(|(b, _)| *b)
                        .map(|(_, s)| s.clone())
                        .unwrap_or_default();
                    let ballot = *mine;
                    self.start_accept(now, &key, ballot, current);
                }
            }
            (
                Reply::Accepted {
                    ballot,
                    next_promised: promised,
                    ..
                },
                Phase::Accepting {
                    ballot: mine,
                    next,
                    value,
                    outcome,
                    accepted,
                    next_promised,
                    ..
                },
            ) if ballot == *mine => {
                accepted.insert(from);
                if promised {
                    next_promised.insert(from);
                }
                if quorums.accept.met_by(accepted.iter()) {
                    // The piggybacked promises are a phase 1 for `next`: they must make a
                    // prepare quorum for the cache to skip it.
                    state.cache = quorums
                        .prepare
                        .met_by(next_promised.iter())
                        .then(|| (*next, value.clone()));
                    let outcome = outcome.clone();
                    let op = active.op.id;
                    state.active = None;
                    self.stats.committed += 1;
                    self.outputs.push_back(ProposerOutput::Complete(Completion {
                        op,
                        key: key.clone(),
                        result: Ok(outcome),
                    }));
                    self.start_next(now, &key);
                }
            }
            (
                Reply::Conflict {
                    ballot, promised, ..
                },
                phase,
            ) => {
                state.seen = state.seen.max(promised);
                state.cache = None;
                let current = match phase {
                    Phase::Preparing { ballot, .. } | Phase::Accepting { ballot, .. } => {
                        Some(*ballot)
                    }
                    Phase::Backoff { .. } => None,
                };
                if current == Some(ballot) {
                    self.fail_round(now, &key, rng);
                } else {
                    self.stats.ignored_replies += 1;
                }
            }
            _ => self.stats.ignored_replies += 1,
        }
    }

    /// Handle the timer (call it at or after [`Proposer::poll_timeout`]).
    pub fn handle_timeout<Rn: Rng + ?Sized>(&mut self, now: Instant, rng: &mut Rn) {
        let keys: Vec<K> = self
            .keys
            .iter()
            .filter(|(_, s)| s.active.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(active) = self.keys.get(&key).and_then(|s| s.active.as_ref()) else {
                continue;
            };
            if now >= active.op.deadline {
                let op = active.op.id;
                if let Some(s) = self.keys.get_mut(&key) {
                    s.active = None;
                    s.cache = None;
                }
                self.stats.timeouts += 1;
                self.outputs.push_back(ProposerOutput::Complete(Completion {
                    op,
                    key: key.clone(),
                    result: Err(ProposeError::Timeout),
                }));
                self.start_next(now, &key);
                continue;
            }
            match active.phase {
                Phase::Backoff { until } if now >= until => self.start_prepare(now, &key),
                Phase::Preparing { until, .. } | Phase::Accepting { until, .. } if now >= until => {
                    if let Some(s) = self.keys.get_mut(&key) {
                        s.cache = None;
                    }
                    self.fail_round(now, &key, rng);
                }
                _ => {}
            }
        }
    }

    /// When [`Proposer::handle_timeout`] must be called next, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.keys
            .values()
            .filter_map(|s| s.active.as_ref())
            .map(|a| {
                let until = match &a.phase {
                    Phase::Preparing { until, .. }
                    | Phase::Accepting { until, .. }
                    | Phase::Backoff { until } => *until,
                };
                until.min(a.op.deadline)
            })
            .min()
    }

    /// The next thing the shell must do.
    pub fn poll_output(&mut self) -> Option<ProposerOutput<K, V, C::Reject>> {
        self.outputs.pop_front()
    }

    /// A ballot strictly above everything this proposer minted and `seen`.
    fn mint(&mut self, seen: Ballot) -> Ballot {
        self.minted = self.minted.above(seen);
        self.minted
    }

    fn start_next(&mut self, now: Instant, key: &K) {
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        if state.active.is_some() {
            return;
        }
        let Some(op) = state.queue.pop_front() else {
            // Nothing left to do on this key: keep only the cache.
            if state.cache.is_none() {
                self.keys.remove(key);
            }
            return;
        };
        if now >= op.deadline {
            self.stats.timeouts += 1;
            self.outputs.push_back(ProposerOutput::Complete(Completion {
                op: op.id,
                key: key.clone(),
                result: Err(ProposeError::Timeout),
            }));
            self.start_next(now, key);
            return;
        }
        let cache = state.cache.take();
        state.active = Some(Active {
            op,
            failures: 0,
            phase: Phase::Backoff { until: now },
        });
        match cache {
            Some((ballot, value)) => {
                self.stats.cache_hits += 1;
                self.start_accept(now, key, ballot, value);
            }
            None => self.start_prepare(now, key),
        }
    }

    fn start_prepare(&mut self, now: Instant, key: &K) {
        let seen = self.keys.get(key).map_or(Ballot::ZERO, |s| s.seen);
        let ballot = self.mint(seen);
        let until = now + self.config.attempt_timeout;
        let Some(active) = self.keys.get_mut(key).and_then(|s| s.active.as_mut()) else {
            return;
        };
        active.phase = Phase::Preparing {
            ballot,
            until,
            promises: BTreeMap::new(),
        };
        self.stats.prepares += 1;
        for to in self.quorums.prepare.ids() {
            self.outputs.push_back(ProposerOutput::Send(Envelope {
                to,
                msg: Request::Prepare {
                    key: key.clone(),
                    epoch: self.epoch,
                    ballot,
                },
            }));
        }
    }

    /// Phase 2 at `ballot` (promised by a quorum whose latest value is `current`):
    /// apply the change — a read or a refused change writes `current` back unchanged,
    /// which is what makes them linearizable — and ask for the accept.
    fn start_accept(&mut self, now: Instant, key: &K, ballot: Ballot, current: Slot<V, C::Reject>) {
        let next = self.mint(ballot);
        let until = now + self.config.attempt_timeout;
        let Some(active) = self.keys.get_mut(key).and_then(|s| s.active.as_mut()) else {
            return;
        };
        let (value, outcome) = apply(&active.op, current);
        active.phase = Phase::Accepting {
            ballot,
            next,
            until,
            value: value.clone(),
            outcome,
            accepted: BTreeSet::new(),
            next_promised: BTreeSet::new(),
        };
        self.stats.accepts += 1;
        for &to in &self.voters {
            self.outputs.push_back(ProposerOutput::Send(Envelope {
                to,
                msg: Request::Accept {
                    key: key.clone(),
                    epoch: self.epoch,
                    ballot,
                    value: value.clone(),
                    next,
                },
            }));
        }
    }

    /// A round failed (conflict or round-trip timeout): back off with jitter, then
    /// retry from phase 1 with a higher ballot.
    fn fail_round<Rn: Rng + ?Sized>(&mut self, now: Instant, key: &K, rng: &mut Rn) {
        let (base, max) = (self.config.backoff_base, self.config.backoff_max);
        let Some(active) = self.keys.get_mut(key).and_then(|s| s.active.as_mut()) else {
            return;
        };
        active.failures = active.failures.saturating_add(1);
        let cap = base
            .saturating_mul(1u32 << active.failures.min(16))
            .min(max)
            .max(base);
        // "Equal jitter": half fixed, half uniform, so duelling proposers drift apart.
        let half = cap / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        let jitter = Duration::from_nanos(rng.next_u64() % nanos);
        active.phase = Phase::Backoff {
            until: now + half + jitter,
        };
        self.stats.failed_rounds += 1;
    }
}

/// Apply `op` to the register value `current`, honouring the at-most-once table:
///
/// - a retry of the client's last decided request gets that decision again
///   ([`Outcome::Replayed`]: its receipt or its refusal, with the value as it is now),
///   and an older request is superseded;
/// - an applied change records its receipt; a refusal updates the client's record only
///   if it has one (a refused change from an unknown client leaves no trace);
/// - after an applied change, records of clients the new value no longer needs
///   ([`Change::live_clients`]) are retired, but for the [`RECENT_RECORDS`] most recent.
fn apply<V: Clone, C: Change<V>>(
    op: &Op<C>,
    current: Slot<V, C::Reject>,
) -> (Slot<V, C::Reject>, Outcome<V, C::Reject>) {
    decide(current, op.request, &op.change)
}

/// What phase 2 writes: the register value `current` after `change` under `request`
/// (with the at-most-once rules of [`Slot`]), and the change's outcome. Pure and
/// deterministic — every proposer computes the same from the same inputs; public so that
/// tests, simulations and benchmarks can run the register's decisions without a quorum.
pub fn decide<V: Clone, C: Change<V>>(
    mut current: Slot<V, C::Reject>,
    request: Option<RequestId>,
    change: &C,
) -> (Slot<V, C::Reject>, Outcome<V, C::Reject>) {
    let recorded = request.filter(|_| !change.is_read());
    if let Some(rid) = recorded {
        if let Some(record) = current.applied.get(&rid.client) {
            if rid.seq == record.seq {
                // A retry of a change already decided: do not apply it again.
                let outcome = Outcome::Replayed {
                    decision: record.result.clone(),
                    current: current.value.clone(),
                };
                return (current, outcome);
            }
            if rid.seq < record.seq {
                return (current, Outcome::Superseded);
            }
        }
    }
    match change.apply(current.value.as_ref()) {
        Ok(new) => {
            let receipt = change.receipt(new.as_ref());
            current.value = new.clone();
            if let Some(rid) = recorded {
                current.decided += 1;
                current.applied.insert(
                    rid.client,
                    Record {
                        seq: rid.seq,
                        result: Ok(receipt),
                        at: current.decided,
                    },
                );
            }
            if !change.is_read() {
                retire::<V, C>(&mut current);
            }
            let outcome = Outcome::Applied {
                value: new,
                receipt,
            };
            (current, outcome)
        }
        Err(reason) => {
            if let Some(rid) = recorded {
                if let Some(record) = current.applied.get_mut(&rid.client) {
                    current.decided += 1;
                    *record = Record {
                        seq: rid.seq,
                        result: Err(reason.clone()),
                        at: current.decided,
                    };
                }
            }
            let outcome = Outcome::Rejected {
                reason,
                current: current.value.clone(),
            };
            (current, outcome)
        }
    }
}

/// Retire the records of clients that `current`'s value no longer needs, keeping the
/// [`RECENT_RECORDS`] most recent of them.
fn retire<V, C: Change<V>>(current: &mut Slot<V, C::Reject>) {
    let Some(live) = C::live_clients(current.value.as_ref()) else {
        return;
    };
    let mut others: Vec<(u64, u64)> = current
        .applied
        .iter()
        .filter(|(client, _)| !live.contains(client))
        .map(|(client, r)| (r.at, *client))
        .collect();
    if others.len() <= RECENT_RECORDS {
        return;
    }
    others.sort_unstable();
    for (_, client) in &others[..others.len() - RECENT_RECORDS] {
        current.applied.remove(client);
    }
}
