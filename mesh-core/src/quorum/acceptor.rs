//! The acceptor: per-key promised ballot, accepted ballot and value, and epoch.
//!
//! Sans-IO: [`Acceptor::handle_request`] takes a request, [`Acceptor::poll_output`] hands
//! out what to do. **Contract: fsync before every reply.** Every reply comes out either
//! inside [`AcceptorOutput::Persist`] (`then`) or as [`AcceptorOutput::Send`]; the shell
//! must release replies *in output order* and only once every `Persist` output before it
//! (and its own) is durable. Group commit is the natural way: drain all outputs, write all
//! persisted states, fsync once, then send all replies. A failed fsync must stop the
//! process (the promise may already be visible in memory, but nobody may learn of it).
//!
//! After a restart the shell rebuilds the acceptor with [`Acceptor::restore`] from the
//! durable states; un-persisted changes are lost, which is safe precisely because their
//! replies were never sent.

use super::ballot::{Ballot, NodeId};
use super::messages::{Envelope, Reply, Request};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

/// The durable state of one register on one acceptor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AcceptorState<S> {
    /// The highest ballot promised. Only grows. Always `>=` the accepted ballot.
    pub promised: Ballot,
    /// The latest accepted ballot and value.
    pub accepted: Option<(Ballot, S)>,
    /// The voter-set epoch this state was written in.
    pub epoch: u64,
}

impl<S> AcceptorState<S> {
    fn fresh(epoch: u64) -> Self {
        Self {
            promised: Ballot::ZERO,
            accepted: None,
            epoch,
        }
    }
}

/// What the shell must do for the acceptor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AcceptorOutput<K, S> {
    /// Write `state` for `key` durably, then (after fsync, and after every earlier output)
    /// send `then`.
    Persist {
        /// The register.
        key: K,
        /// Its whole new state.
        state: AcceptorState<S>,
        /// The reply to release once `state` is durable.
        then: Envelope<Reply<K, S>>,
    },
    /// Send a reply that changed nothing — still only after every earlier `Persist`
    /// output is durable (it may reveal state those outputs wrote).
    Send(Envelope<Reply<K, S>>),
}

/// Counters an acceptor keeps; the shell publishes them as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AcceptorStats {
    /// Promises given (phase 1 or piggybacked on an accept).
    pub promises: u64,
    /// Values accepted.
    pub accepts: u64,
    /// Requests refused because of a higher promise.
    pub conflicts: u64,
    /// Requests refused because of another epoch.
    pub wrong_epoch: u64,
}

/// A CASPaxos acceptor for many registers (keys `K`, stored values `S`).
///
/// Equality and hashing ignore the [`AcceptorStats`] counters (two acceptors that would
/// behave the same are equal; a model checker relies on that).
#[derive(Clone, Debug)]
pub struct Acceptor<K: Ord, S> {
    id: NodeId,
    epoch: u64,
    keys: BTreeMap<K, AcceptorState<S>>,
    outputs: VecDeque<AcceptorOutput<K, S>>,
    stats: AcceptorStats,
}

impl<K: Ord, S: PartialEq> PartialEq for Acceptor<K, S> {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.epoch) == (other.id, other.epoch)
            && self.keys == other.keys
            && self.outputs == other.outputs
    }
}

impl<K: Ord, S: Eq> Eq for Acceptor<K, S> {}

impl<K: Ord + Hash, S: Hash> Hash for Acceptor<K, S> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.id, self.epoch).hash(state);
        self.keys.hash(state);
        self.outputs.hash(state);
    }
}

impl<K: Ord + Clone, S: Clone> Acceptor<K, S> {
    /// A fresh acceptor `id` (with no durable state) in voter-set `epoch`.
    pub fn new(id: NodeId, epoch: u64) -> Self {
        Self::restore(id, epoch, [])
    }

    /// An acceptor rebuilt after a restart from its durable per-key states.
    pub fn restore(
        id: NodeId,
        epoch: u64,
        durable: impl IntoIterator<Item = (K, AcceptorState<S>)>,
    ) -> Self {
        Self {
            id,
            epoch,
            keys: durable.into_iter().collect(),
            outputs: VecDeque::new(),
            stats: AcceptorStats::default(),
        }
    }

    /// This acceptor's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current (possibly not yet durable) state of `key`.
    pub fn state(&self, key: &K) -> Option<&AcceptorState<S>> {
        self.keys.get(key)
    }

    /// The voter-set epoch this acceptor serves (requests of any other are refused).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Move to the root of `epoch`, once the shell has made that root durable in this
    /// acceptor's store (never before: a restart must come back in it). Epochs only grow:
    /// a lower or equal one is ignored. Every key's state is kept as it is: promises and
    /// accepted values carry across epochs (the voter-change argument relies on it).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// The keys this acceptor holds a state for (a rescan's work list).
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.keys()
    }

    /// The counters.
    pub fn stats(&self) -> &AcceptorStats {
        &self.stats
    }

    /// Handle one request from proposer `from`. Never panics on peer input; a request that
    /// cannot be granted gets a [`Reply::Conflict`] or [`Reply::WrongEpoch`].
    pub fn handle_request(&mut self, from: NodeId, request: Request<K, S>) {
        let epoch = self.epoch;
        match request {
            Request::Prepare {
                key,
                epoch: e,
                ballot,
            } => {
                if !self.admit(from, &key, e, ballot) {
                    return;
                }
                let Some(state) = self.keys.get_mut(&key) else {
                    return;
                };
                let changed = ballot > state.promised;
                state.promised = ballot;
                let reply = Reply::Promise {
                    key: key.clone(),
                    ballot,
                    accepted: state.accepted.clone(),
                };
                self.stats.promises += 1;
                self.emit(from, key, changed, reply);
            }
            Request::Accept {
                key,
                epoch: e,
                ballot,
                value,
                next,
            } => {
                if !self.admit(from, &key, e, ballot) {
                    return;
                }
                let Some(state) = self.keys.get_mut(&key) else {
                    return;
                };
                // Accept, then (atomically, in the same durable write) promise `next` if
                // nobody promised higher meanwhile: the Prepare of the proposer's next
                // round, answered with "my latest accepted value is the one you just sent".
                let before = state.clone();
                state.accepted = Some((ballot, value));
                state.promised = ballot;
                if next > state.promised {
                    state.promised = next;
                }
                let next_promised = state.promised == next;
                state.epoch = epoch;
                let changed = before.promised != state.promised
                    || before.accepted.as_ref().map(|(b, _)| *b) != Some(ballot);
                self.stats.accepts += 1;
                if next_promised {
                    self.stats.promises += 1;
                }
                let reply = Reply::Accepted {
                    key: key.clone(),
                    ballot,
                    next_promised,
                };
                self.emit(from, key, changed, reply);
            }
        }
    }

    /// The next thing the shell must do, in order.
    pub fn poll_output(&mut self) -> Option<AcceptorOutput<K, S>> {
        self.outputs.pop_front()
    }

    fn emit(&mut self, to: NodeId, key: K, changed: bool, reply: Reply<K, S>) {
        let then = Envelope { to, msg: reply };
        if changed {
            if let Some(state) = self.keys.get(&key) {
                let state = state.clone();
                self.outputs
                    .push_back(AcceptorOutput::Persist { key, state, then });
                return;
            }
        }
        self.outputs.push_back(AcceptorOutput::Send(then));
    }

    /// The checks every request passes before it may change state: the epoch is ours
    /// and the ballot is not below our promise. On refusal the reply is queued and
    /// `false` returned; on success the key has a state (fresh if it was unknown).
    fn admit(&mut self, from: NodeId, key: &K, epoch: u64, ballot: Ballot) -> bool {
        if epoch != self.epoch {
            self.refuse_epoch(from, key.clone(), ballot);
            return false;
        }
        let ours = self.epoch;
        let promised = self
            .keys
            .entry(key.clone())
            .or_insert_with(|| AcceptorState::fresh(ours))
            .promised;
        if ballot < promised {
            self.conflict(from, key.clone(), ballot, promised);
            return false;
        }
        true
    }

    fn conflict(&mut self, to: NodeId, key: K, ballot: Ballot, promised: Ballot) {
        self.stats.conflicts += 1;
        let reply = Reply::Conflict {
            key,
            ballot,
            promised,
        };
        self.outputs
            .push_back(AcceptorOutput::Send(Envelope { to, msg: reply }));
    }

    fn refuse_epoch(&mut self, to: NodeId, key: K, ballot: Ballot) {
        self.stats.wrong_epoch += 1;
        let reply = Reply::WrongEpoch {
            key,
            ballot,
            epoch: self.epoch,
        };
        self.outputs
            .push_back(AcceptorOutput::Send(Envelope { to, msg: reply }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type A = Acceptor<&'static str, u32>;
    const P: NodeId = NodeId(9);

    fn b(round: u64) -> Ballot {
        Ballot {
            round,
            node: P,
            incarnation: 1,
        }
    }

    fn prepare(round: u64) -> Request<&'static str, u32> {
        Request::Prepare {
            key: "k",
            epoch: 1,
            ballot: b(round),
        }
    }

    fn accept(round: u64, value: u32, next: u64) -> Request<&'static str, u32> {
        Request::Accept {
            key: "k",
            epoch: 1,
            ballot: b(round),
            value,
            next: b(next),
        }
    }

    fn replies(a: &mut A) -> Vec<(bool, Reply<&'static str, u32>)> {
        std::iter::from_fn(|| a.poll_output())
            .map(|o| match o {
                AcceptorOutput::Persist { then, .. } => (true, then.msg),
                AcceptorOutput::Send(e) => (false, e.msg),
            })
            .collect()
    }

    #[test]
    fn a_promise_is_persisted_before_it_is_sent() {
        let mut a = A::new(NodeId(1), 1);
        a.handle_request(P, prepare(3));
        let out = replies(&mut a);
        assert_eq!(
            out,
            vec![(
                true,
                Reply::Promise {
                    key: "k",
                    ballot: b(3),
                    accepted: None
                }
            )]
        );
    }

    #[test]
    fn a_prepare_below_the_promise_is_refused_with_the_higher_ballot() {
        let mut a = A::new(NodeId(1), 1);
        a.handle_request(P, prepare(5));
        a.handle_request(P, prepare(4));
        let out = replies(&mut a);
        assert_eq!(
            out[1],
            (
                false,
                Reply::Conflict {
                    key: "k",
                    ballot: b(4),
                    promised: b(5)
                }
            )
        );
        assert_eq!(a.state(&"k").map(|s| s.promised), Some(b(5)));
    }

    #[test]
    fn an_accept_with_a_stale_ballot_is_refused_and_changes_nothing() {
        let mut a = A::new(NodeId(1), 1);
        a.handle_request(P, prepare(5));
        a.handle_request(P, accept(4, 7, 6));
        let out = replies(&mut a);
        assert!(matches!(out[1], (false, Reply::Conflict { promised, .. }) if promised == b(5)));
        assert_eq!(a.state(&"k").and_then(|s| s.accepted), None);
    }

    #[test]
    fn an_accept_piggybacks_the_promise_of_the_next_ballot() {
        let mut a = A::new(NodeId(1), 1);
        a.handle_request(P, prepare(1));
        a.handle_request(P, accept(1, 7, 2));
        let out = replies(&mut a);
        assert_eq!(
            out[1],
            (
                true,
                Reply::Accepted {
                    key: "k",
                    ballot: b(1),
                    next_promised: true
                }
            )
        );
        let s = a.state(&"k").cloned();
        assert_eq!(s.as_ref().map(|s| s.promised), Some(b(2)));
        // The cached ballot 2 now works without a phase 1 ...
        a.handle_request(P, accept(2, 8, 3));
        // ... but a ballot below it does not.
        a.handle_request(P, accept(1, 9, 2));
        let out = replies(&mut a);
        assert!(matches!(
            out[0],
            (
                true,
                Reply::Accepted {
                    next_promised: true,
                    ..
                }
            )
        ));
        assert!(matches!(out[1], (false, Reply::Conflict { .. })));
    }

    #[test]
    fn a_higher_promise_in_between_denies_the_piggybacked_promise() {
        let mut a = A::new(NodeId(1), 1);
        let other = Ballot {
            round: 2,
            node: NodeId(10),
            incarnation: 1,
        };
        a.handle_request(P, prepare(1));
        a.handle_request(
            NodeId(10),
            Request::Prepare {
                key: "k",
                epoch: 1,
                ballot: other,
            },
        );
        // Ballot 1 is now below the promise: refused outright.
        a.handle_request(P, accept(1, 7, 2));
        let out = replies(&mut a);
        assert!(matches!(out[2], (false, Reply::Conflict { promised, .. }) if promised == other));
    }

    #[test]
    fn a_request_from_another_epoch_is_refused() {
        let mut a = A::new(NodeId(1), 2);
        a.handle_request(P, prepare(1));
        let out = replies(&mut a);
        assert!(matches!(
            out[0],
            (false, Reply::WrongEpoch { epoch: 2, .. })
        ));
        assert!(a.state(&"k").is_none());
    }

    #[test]
    fn a_duplicate_prepare_is_answered_again_without_a_new_write() {
        let mut a = A::new(NodeId(1), 1);
        a.handle_request(P, prepare(1));
        a.handle_request(P, prepare(1));
        let out = replies(&mut a);
        assert!(out[0].0);
        assert!(!out[1].0);
        assert!(matches!(out[1].1, Reply::Promise { .. }));
    }
}
