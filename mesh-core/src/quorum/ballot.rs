//! Ballots and node ids: the total order every Paxos decision is made by.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The id of a peer in the quorum plane, as an acceptor (a voter) or as a proposer.
///
/// The shell maps peer names to ids; a wiped peer must come back with a *new* id,
/// never its old one (its acceptor promises are gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A ballot `(round, node, incarnation)`, compared in that order (lexicographically).
///
/// Uniqueness: a ballot is only ever minted by the proposer `node` in its `incarnation`,
/// and that proposer never mints the same `round` twice within an incarnation (rounds
/// only grow, see [`Ballot::next`] and [`Ballot::above`]). The incarnation is bumped and
/// persisted by the shell at every boot *before* the first proposal, so two lives of one
/// node never share a ballot even though the round counter is not persisted.
///
/// [`Ballot::ZERO`] is below every minted ballot (minted ballots have `round >= 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// The round: the most significant part of the order.
    pub round: u64,
    /// The proposer that minted this ballot.
    pub node: NodeId,
    /// The proposer's incarnation (boot count) when it minted this ballot.
    pub incarnation: u64,
}

impl Ballot {
    /// The ballot below every minted ballot: what a fresh acceptor has promised.
    pub const ZERO: Self = Self {
        round: 0,
        node: NodeId(0),
        incarnation: 0,
    };

    /// The first ballot of `node` in `incarnation`.
    pub fn first(node: NodeId, incarnation: u64) -> Self {
        Self {
            round: 1,
            node,
            incarnation,
        }
    }

    /// The next ballot of the same proposer: one round up (saturating at `u64::MAX`).
    pub fn next(self) -> Self {
        Self {
            round: self.round.saturating_add(1),
            ..self
        }
    }

    /// A ballot of the same proposer strictly above both `self` and `seen` (a ballot of
    /// any proposer, e.g. the higher promise a conflict reported).
    pub fn above(self, seen: Self) -> Self {
        Self {
            round: self.round.max(seen.round).saturating_add(1),
            ..self
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.round, self.node, self.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(round: u64, node: u64, incarnation: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(node),
            incarnation,
        }
    }

    #[test]
    fn ballots_order_by_round_then_node_then_incarnation() {
        assert!(b(2, 1, 1) > b(1, 9, 9));
        assert!(b(1, 2, 1) > b(1, 1, 9));
        assert!(b(1, 1, 2) > b(1, 1, 1));
        assert!(Ballot::ZERO < Ballot::first(NodeId(0), 0));
    }

    #[test]
    fn next_and_above_always_climb_past_what_was_seen() {
        let mine = Ballot::first(NodeId(1), 3);
        assert!(mine.next() > mine);
        let seen = b(40, 7, 1);
        let up = mine.above(seen);
        assert!(up > seen && up > mine);
        assert_eq!((up.node, up.incarnation), (NodeId(1), 3));
    }

    #[test]
    fn two_incarnations_of_one_node_never_share_a_ballot() {
        // The round counter restarts at boot; the incarnation keeps them apart.
        let before = Ballot::first(NodeId(1), 1).next().next();
        let after = Ballot::first(NodeId(1), 2).next().next();
        assert_ne!(before, after);
    }
}
