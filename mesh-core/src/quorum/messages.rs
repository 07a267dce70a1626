//! Wire messages between proposers and acceptors, the stored register value ([`Slot`])
//! and client changes ([`Change`]).

use super::ballot::{Ballot, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

/// A message from a proposer to an acceptor. `S` is the stored value (a [`Slot`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Request<K, S> {
    /// Phase 1: promise to ignore ballots below `ballot` and report what you accepted.
    Prepare {
        /// The register.
        key: K,
        /// The voter-set epoch the proposer believes in.
        epoch: u64,
        /// The ballot asking for a promise.
        ballot: Ballot,
    },
    /// Phase 2: accept `value` at `ballot`; and, if still possible, promise `next`
    /// (the one-round-trip optimisation: this Accept is also the Prepare for `next`).
    Accept {
        /// The register.
        key: K,
        /// The voter-set epoch the proposer believes in.
        epoch: u64,
        /// The ballot of this proposal.
        ballot: Ballot,
        /// The value to accept.
        value: S,
        /// The proposer's next ballot, to be promised along with the accept.
        next: Ballot,
    },
}

impl<K, S> Request<K, S> {
    /// The register this message is about.
    pub fn key(&self) -> &K {
        match self {
            Self::Prepare { key, .. } | Self::Accept { key, .. } => key,
        }
    }
}

/// A reply from an acceptor to a proposer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reply<K, S> {
    /// The acceptor promised `ballot`; `accepted` is its latest accepted value, if any.
    Promise {
        /// The register.
        key: K,
        /// The ballot promised.
        ballot: Ballot,
        /// The latest accepted `(ballot, value)`, if any.
        accepted: Option<(Ballot, S)>,
    },
    /// The acceptor accepted the value at `ballot`; `next_promised` tells whether it also
    /// promised the proposer's next ballot (the 1-RTT cache may only be used when a
    /// quorum did).
    Accepted {
        /// The register.
        key: K,
        /// The ballot accepted.
        ballot: Ballot,
        /// Whether the piggybacked promise of the next ballot was taken.
        next_promised: bool,
    },
    /// The acceptor refused `ballot` because it has promised (or accepted) `promised`,
    /// which is higher or equal. The proposer must climb above `promised`.
    Conflict {
        /// The register.
        key: K,
        /// The refused ballot.
        ballot: Ballot,
        /// The acceptor's promise that beat it.
        promised: Ballot,
    },
    /// The acceptor is in another voter-set epoch than the request; nothing changed.
    WrongEpoch {
        /// The register.
        key: K,
        /// The refused ballot.
        ballot: Ballot,
        /// The acceptor's epoch.
        epoch: u64,
    },
}

impl<K, S> Reply<K, S> {
    /// The register this reply is about.
    pub fn key(&self) -> &K {
        match self {
            Self::Promise { key, .. }
            | Self::Accepted { key, .. }
            | Self::Conflict { key, .. }
            | Self::WrongEpoch { key, .. } => key,
        }
    }

    /// The ballot of the request this reply answers.
    pub fn ballot(&self) -> Ballot {
        match self {
            Self::Promise { ballot, .. }
            | Self::Accepted { ballot, .. }
            | Self::Conflict { ballot, .. }
            | Self::WrongEpoch { ballot, .. } => *ballot,
        }
    }
}

/// Identifies one client change for at-most-once application: `(client, seq)`.
///
/// A client issues its changes to one key one at a time with increasing `seq`; it may
/// re-send the *same* id (on any proposer) after a timeout, and the change is applied at
/// most once (see [`Slot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The client (e.g. the local node id, or a node id and a session).
    pub client: u64,
    /// The client's sequence number, increasing per key.
    pub seq: u64,
}

/// The outcome of a change as the register saw it: the new value, or the change's
/// rejection (a failed condition) together with the value it saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome<V, R> {
    /// The change was applied (or was a read); the register now holds `value`.
    Applied {
        /// The register's value.
        value: Option<V>,
        /// The change's compact summary ([`Change::receipt`]), e.g. the token a claim
        /// got; 0 for reads and changes without one.
        receipt: u64,
    },
    /// The change's condition failed; the register was (and is) `current`.
    Rejected {
        /// Why the change refused.
        reason: R,
        /// The value the change saw.
        current: Option<V>,
    },
    /// A retry of a change already decided (same [`RequestId`]): nothing was applied
    /// now. `decision` is what the first application decided, as recorded — its receipt
    /// or its refusal — and `current` the register's value *now*, which includes that
    /// change's effect and any later ones (a linearizable read, not the value of then).
    Replayed {
        /// The recorded decision.
        decision: Result<u64, R>,
        /// The register's value now.
        current: Option<V>,
    },
    /// A *newer* change of the same client was already applied, so this older one is
    /// never applied any more; its own outcome is no longer kept.
    Superseded,
}

impl<V, R> Outcome<V, R> {
    /// The register's value this outcome reports (`None` for [`Outcome::Superseded`] and
    /// for a register never written).
    pub fn value(&self) -> Option<&V> {
        match self {
            Self::Applied { value, .. }
            | Self::Rejected { current: value, .. }
            | Self::Replayed { current: value, .. } => value.as_ref(),
            Self::Superseded => None,
        }
    }

    /// What the change itself came to: `Ok(receipt)` if it was applied (now or, for a
    /// replay, earlier), `Err(reason)` if it was refused, `None` if superseded.
    pub fn decision(&self) -> Option<Result<u64, &R>> {
        match self {
            Self::Applied { receipt, .. } => Some(Ok(*receipt)),
            Self::Rejected { reason, .. } => Some(Err(reason)),
            Self::Replayed { decision, .. } => Some(decision.as_ref().copied()),
            Self::Superseded => None,
        }
    }
}

/// One client's at-most-once record in a register: the `seq` of its last decided request
/// and, compactly, what came of it — the change's receipt, or the refusal's reason.
/// Never a copy of the value: the record's size does not grow with the register.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record<R> {
    /// The request's sequence number.
    #[serde(rename = "q")]
    pub seq: u64,
    /// `Ok(receipt)` if it was applied, `Err(reason)` if it was refused.
    #[serde(rename = "r")]
    pub result: Result<u64, R>,
    /// The slot's [`Slot::decided`] count when it was written: orders the records of
    /// clients that are not live, so that the oldest go first.
    #[serde(rename = "a", default)]
    pub at: u64,
}

/// How many records of clients that [`Change::live_clients`] does not name a slot keeps
/// besides the live ones (the most recent): a retry of such a client within that window
/// still gets its recorded decision rather than a fresh judgement.
pub const RECENT_RECORDS: usize = 16;

/// The value a register stores on the acceptors: the client value and the at-most-once
/// table.
///
/// **Idempotency lives in the value** (not in a side table): `applied` keeps, per client,
/// a compact [`Record`] of its last decided request. Because it is part of the value, it
/// is replicated by exactly the same Paxos round as the change itself, so a retried
/// request (same [`RequestId`]) finds its earlier application whichever proposer runs it
/// and whichever quorum answers, and is not applied twice.
///
/// # Bounded by the live state
///
/// - A record is a sequence number and a receipt or a refusal reason: its size does not
///   depend on the value.
/// - A refused change from a client without a record leaves no trace (it creates no
///   record); one from a client with a record updates that record in place.
/// - After every applied change the register keeps the records of the clients that
///   [`Change::live_clients`] names for the new value, and of the others only the
///   [`RECENT_RECORDS`] most recent: at most one record per live client plus a constant.
///   The layer above defines liveness so that a client whose record is retired can
///   never have a request applied again (see the claims' argument in `claims`); a late
///   request of such a client finds no record and is judged afresh by the change's own
///   conditions, which refuse it.
///
/// Decoding accepts the records of the previous format (a whole recorded outcome, value
/// included) and drops them: they belong to client lives of an older version, which
/// cannot talk to this one and so can no longer retry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(bound(
    serialize = "V: Serialize, R: Serialize",
    deserialize = "V: Deserialize<'de>, R: Deserialize<'de>"
))]
pub struct Slot<V, R> {
    /// The client value; `None` until the first write.
    pub value: Option<V>,
    /// Per client: its last decided request, compactly.
    #[serde(deserialize_with = "records::deserialize")]
    pub applied: BTreeMap<u64, Record<R>>,
    /// How many records were ever written (each record's [`Record::at`]).
    #[serde(default)]
    pub decided: u64,
}

impl<V, R> Default for Slot<V, R> {
    fn default() -> Self {
        Self {
            value: None,
            applied: BTreeMap::new(),
            decided: 0,
        }
    }
}

/// A client change `f(Option<V>) -> Result<Option<V>, Reject>`: the only way a register
/// changes. A read is [`Change::is_read`] and returns the current value unchanged.
///
/// Implement it on a (serializable) enum of the operations your layer needs, so that a
/// change can later travel to a remote proposer.
pub trait Change<V> {
    /// Why a conditional change refused (e.g. "expected 3, found 4").
    type Reject: Clone + Debug + Eq + Hash;

    /// Compute the new value from the current one, or refuse.
    fn apply(&self, current: Option<&V>) -> Result<Option<V>, Self::Reject>;

    /// Whether this change is a read (the identity). Reads are not recorded in the
    /// at-most-once table; they still complete the accept round.
    fn is_read(&self) -> bool {
        false
    }

    /// A compact summary of what this change did, computed from the value it produced
    /// (e.g. the token a claim got). It is kept in the client's [`Record`] and handed
    /// to a retry found already applied, in place of the value of that time.
    fn receipt(&self, new: Option<&V>) -> u64 {
        let _ = new;
        0
    }

    /// The clients whose at-most-once records a register holding `value` still needs,
    /// or `None` to keep every record (the default, for registers with a fixed set of
    /// clients). Records of other clients are retired after each applied change.
    fn live_clients(value: Option<&V>) -> Option<Vec<u64>>
    where
        Self: Sized,
    {
        let _ = value;
        None
    }
}

/// A ready-made change for simple registers: read, write, compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegisterChange<V> {
    /// The identity: returns the current value.
    Read,
    /// Sets the value unconditionally.
    Write(V),
    /// Sets `new` if the current value is `expected`.
    Cas {
        /// The value the register must hold (`None`: never written).
        expected: Option<V>,
        /// The value to set.
        new: V,
    },
}

/// Why a [`RegisterChange::Cas`] refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CasMismatch;

impl<V: Clone + PartialEq> Change<V> for RegisterChange<V> {
    type Reject = CasMismatch;

    fn apply(&self, current: Option<&V>) -> Result<Option<V>, CasMismatch> {
        match self {
            Self::Read => Ok(current.cloned()),
            Self::Write(v) => Ok(Some(v.clone())),
            Self::Cas { expected, new } => {
                if expected.as_ref() == current {
                    Ok(Some(new.clone()))
                } else {
                    Err(CasMismatch)
                }
            }
        }
    }

    fn is_read(&self) -> bool {
        matches!(self, Self::Read)
    }
}

/// Messages travel between ids: a request to an acceptor, or a reply to a proposer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Envelope<M> {
    /// The destination.
    pub to: NodeId,
    /// The message.
    pub msg: M,
}

/// Serde for [`Slot::applied`]: records of this format are kept; a record of the previous
/// format (`[seq, outcome]`, the outcome holding a whole value) is dropped on decoding.
mod records {
    use super::Record;
    use serde::{Deserialize, Deserializer};
    use std::collections::BTreeMap;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any<R> {
        Current(Record<R>),
        /// `[seq, outcome]` of the previous format (only its shape is read).
        #[allow(dead_code)]
        Legacy((u64, serde::de::IgnoredAny)),
    }

    pub(super) fn deserialize<'de, D, R>(d: D) -> Result<BTreeMap<u64, Record<R>>, D::Error>
    where
        D: Deserializer<'de>,
        R: Deserialize<'de>,
    {
        let all: BTreeMap<u64, Any<R>> = BTreeMap::deserialize(d)?;
        Ok(all
            .into_iter()
            .filter_map(|(client, r)| match r {
                Any::Current(r) => Some((client, r)),
                Any::Legacy(_) => None,
            })
            .collect())
    }
}
