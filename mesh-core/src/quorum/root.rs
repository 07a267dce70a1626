//! The voter root record and its formation, sans-IO.
//!
//! Every node is configured with the same voter *names* (`--voters n1,n2,n3`: 3 or 5).
//! Acceptor ids are minted per store ([`AcceptorStore`](super::AcceptorStore)), so a voter
//! whose data was wiped comes back with a new id. The [`RootRecord`] binds each voter name
//! to the acceptor id it had when the cluster formed, under an epoch; the quorum plane uses
//! those ids (proposers' `voters`, the `to` of every [`Envelope`](super::Envelope)) and
//! routes them to node names through the root.
//!
//! **Formation creates the root once, at epoch 1**; [`Formation`] only ever forms or
//! adopts that epoch-1 root. Later roots (voter changes, [`reconfig`](super::reconfig))
//! carry their quorum rules and the pending change in the optional
//! [`RootRecord::quorums`] and [`RootRecord::pending`] fields; handing them out through
//! the node is not wired yet, so in a running cluster V is still the formed one.
//!
//! A voter that was wiped after formation is *not* re-admitted: it comes back as
//! [`FormationState::NotAVoter`] (it still proposes as a client). Re-admitting it, or
//! replacing it, needs a voter change (one voter at a time, epoch-fenced: the procedure is
//! in [`reconfig`](super::reconfig), its wiring a later step); until then the cluster runs
//! on the remaining voters' majority.
//!
//! # Properties
//!
//! **Safety**
//!
//! 1. *A root is created at most once per configuration*: only the smallest-named voter
//!    creates one, only while it has none, and only when a fresh answer from every other
//!    voter says it has none either. (The one exception: a creator wiped before any other
//!    node took its root. That root died with it — nobody holds it — and the creator's new
//!    life forms another.)
//! 2. *Every node that has a root has the same one*: a node takes a root only from voters
//!    that hold it (a voter's answer reports its persisted root), and only from *fresh*
//!    answers (below). A voter persists it before acting on it or reporting it, and so
//!    becomes a second holder; a non-voter, which holds nothing durable, waits for fresh
//!    reports from a majority of the voters.
//! 3. *A wiped voter never votes under its old id*: its store has a new acceptor id, which
//!    differs from its entry in the root, so it ends in [`FormationState::NotAVoter`] and
//!    [`Formation::is_acceptor`] is false — for the rest of this version.
//! 4. *Mismatched configurations are refused, never merged*: a hello with another voter set
//!    (by [`VoterNames::hash`]) is counted and reported; while forming, a mismatch with one
//!    of our own voters stops formation in [`FormationState::ConfigMismatch`].
//!
//! **Liveness**: once every configured voter has been up and able to exchange messages
//! with the smallest-named voter at some point (not necessarily at the same time), every
//! voter that can reach a voter holding the root gets it in force, and every non-voter that
//! can reach a majority of the voters does. Formation needs *all* voters once, and the
//! smallest-named one in particular; after that, nothing here is needed again.
//!
//! # The protocol
//!
//! One message, [`Hello`]. Until it has a root, a node asks every voter every `retry`
//! (`ask: Some(nonce)`); every node answers every ask at once (`answer: Some(nonce)`) with
//! the root in force on it, if any. Answers never ask back, so nothing ping-pongs.
//!
//! 1. A voter that gets a fresh answer with a root persists it
//!    ([`FormationOutput::Persist`]); once it is durable the root is in force there. A
//!    non-voter has the root in force once a majority of the voters freshly reported it.
//! 2. The smallest-named voter, once every other voter freshly answered with no root,
//!    creates `RootRecord { epoch: 1, voters }` from their acceptor ids and its own,
//!    persists it, and then asks every voter (the push) until each one's answer shows the
//!    root (the ack). A voter answers the push and takes the root from the answer to its
//!    own next ask. The creator keeps asking a voter that never acks (one that is down for
//!    good) every `retry`: a small, bounded cost.
//! 3. A voter whose acceptor id is not the one the root lists for it was wiped:
//!    [`FormationState::NotAVoter`].
//!
//! # Freshness: why hellos carry `ask` and `answer`
//!
//! A node asks a voter with a random nonce (`ask`) and takes what the voter reports only
//! from a hello that answers its current nonce (`answer`), i.e. a report made *after* the
//! question. Each nonce is answered once, and a voter seen with another acceptor id (a
//! wiped, restarted life) gets a new nonce, so nothing its earlier life said counts again.
//! Without this, a stale root of a creator that was wiped in mid-formation could still be
//! in flight and be adopted by one voter while the creator's new life, told "no root" by
//! everyone, creates another: two roots. With it, once a voter has answered the new life,
//! the old life's messages are stale to it, and its answer told the new life everything it
//! had (adopted roots included, since answers wait while a root is being persisted).
//!
//! # Driving it
//!
//! Feed [`Formation::handle_hello`] with every hello received,
//! [`Formation::handle_timeout`] at [`Formation::poll_timeout`], and drain
//! [`Formation::poll_output`] after each: send each [`FormationOutput::Send`]; on
//! [`FormationOutput::Persist`] call [`AcceptorStore::set_root`](super::AcceptorStore::set_root)
//! (a failure stops the process) and then [`Formation::handle_persisted`];
//! [`FormationOutput::RootInForce`] comes once — build the proposers (and, if
//! [`Formation::is_acceptor`], the acceptor) from it. The seed must be fresh at every boot
//! (OS entropy): nonces of two lives of one node must not repeat.

use super::ballot::NodeId;
use super::reconfig::{Pending, Quorums};
use crate::identity::{validate_name, NameError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// The epoch of a formed root (the only one [`Formation`] creates or adopts).
pub const ROOT_EPOCH: u64 = 1;

/// How often a node repeats an unanswered ask, by default.
pub const DEFAULT_RETRY: Duration = Duration::from_millis(500);

/// The voter set and the acceptor id of each voter, under an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RootRecord {
    /// The voter-set epoch every quorum request carries ([`ROOT_EPOCH`] in this version).
    pub epoch: u64,
    /// `(node name, acceptor id)` of every voter, sorted by name.
    pub voters: Vec<(String, u64)>,
    /// The quorum rules of this epoch; `None` (every epoch-1 root, and every store written
    /// before voter changes) means majorities of `voters` ([`RootRecord::quorums`]).
    /// Absent from the encoding when `None`, so epoch-1 roots keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorums: Option<Box<Quorums>>,
    /// The voter change in progress, if any ([`reconfig`](super::reconfig)). Absent from
    /// the encoding when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Box<Pending>>,
}

impl RootRecord {
    /// The quorum rules every proposer of this epoch uses: the explicit ones, or
    /// majorities of the voters.
    pub fn quorums(&self) -> Quorums {
        self.quorums
            .as_deref()
            .cloned()
            .unwrap_or_else(|| Quorums::majority(self.voters.iter().map(|(_, id)| *id)))
    }

    /// The acceptor ids, for [`Proposer::new`](super::Proposer::new)'s `voters`.
    pub fn acceptor_ids(&self) -> Vec<NodeId> {
        self.voters.iter().map(|(_, id)| NodeId(*id)).collect()
    }

    /// The acceptor id the root lists for voter `name`.
    pub fn acceptor_of(&self, name: &str) -> Option<NodeId> {
        self.voters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| NodeId(*id))
    }

    /// The node name to route a message for `acceptor` to.
    pub fn voter_of(&self, acceptor: NodeId) -> Option<&str> {
        self.voters
            .iter()
            .find(|(_, id)| *id == acceptor.0)
            .map(|(n, _)| n.as_str())
    }

    /// Whether this is a well-formed root for `voters`: the epoch of this version, exactly
    /// the configured names in order, distinct non-zero acceptor ids.
    fn check(&self, voters: &VoterNames) -> Result<(), String> {
        if self.epoch != ROOT_EPOCH {
            return Err(format!(
                "epoch {} (this version only knows {ROOT_EPOCH})",
                self.epoch
            ));
        }
        let names: Vec<&str> = self.voters.iter().map(|(n, _)| n.as_str()).collect();
        if names
            != voters
                .names()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        {
            return Err(format!(
                "it lists voters {}, the configuration has {}",
                names.join(","),
                voters
            ));
        }
        let ids: BTreeSet<u64> = self.voters.iter().map(|(_, id)| *id).collect();
        if ids.len() != self.voters.len() || ids.contains(&0) {
            return Err("its acceptor ids are not distinct and non-zero".to_owned());
        }
        Ok(())
    }
}

impl fmt::Display for RootRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}:", self.epoch)?;
        for (name, id) in &self.voters {
            write!(f, " {name}={id:016x}")?;
        }
        Ok(())
    }
}

/// Why a voter list was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VotersError {
    /// Not 3 or 5 names. Nothing was configured.
    #[error("voters: give 3 or 5 distinct node names, not {0}")]
    Count(usize),
    /// A name is listed twice. Nothing was configured.
    #[error("voters: {0:?} is listed twice")]
    Duplicate(String),
    /// A name is not a valid node name. Nothing was configured.
    #[error("voters: {0}")]
    Name(#[from] NameError),
}

/// The configured voter names: 3 or 5 distinct valid node names, kept sorted (the order on
/// the command line does not matter).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VoterNames {
    names: Vec<String>,
    hash: u64,
}

impl VoterNames {
    /// Check and sort `names`.
    pub fn new<I, S>(names: I) -> Result<Self, VotersError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        for name in &names {
            validate_name(name)?;
        }
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(VotersError::Duplicate(w[0].clone()));
        }
        if names.len() != 3 && names.len() != 5 {
            return Err(VotersError::Count(names.len()));
        }
        let parts: Vec<&[u8]> = names.iter().map(String::as_bytes).collect();
        let hash = pinned_hash(b"mesh-voters", &parts);
        Ok(Self { names, hash })
    }

    /// Parse a comma-separated list, as `--voters n1,n2,n3` gives it.
    pub fn parse(list: &str) -> Result<Self, VotersError> {
        Self::new(list.split(',').map(str::trim))
    }

    /// The names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `name` is a voter.
    pub fn contains(&self, name: &str) -> bool {
        self.names
            .binary_search_by(|n| n.as_str().cmp(name))
            .is_ok()
    }

    /// The smallest name: the only voter that may create the root.
    pub fn creator(&self) -> &str {
        // `new` guarantees 3 or 5 names.
        self.names.first().map_or("", String::as_str)
    }

    /// A pinned hash of the sorted names: equal configurations have equal hashes on every
    /// platform and version.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

impl fmt::Display for VoterNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names.join(","))
    }
}

/// The [`NodeId`] a node named `name` proposes (mints ballots) under. A pinned hash (FNV-1a
/// 64, then the SplitMix64 finaliser), so every peer maps a name to the same id on every
/// platform and version; never 0.
pub fn proposer_id(name: &str) -> NodeId {
    NodeId(pinned_hash(b"mesh-proposer", &[name.as_bytes()]).max(1))
}

/// FNV-1a 64 over `domain ‖ 0 ‖ part ‖ 0 ‖ part ‖ 0 …`, then the SplitMix64 finaliser.
/// Node names never contain a 0 byte, so the encoding is unambiguous.
fn pinned_hash(domain: &[u8], parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().chain(std::iter::once(&0u8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(domain);
    for part in parts {
        eat(part);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The one formation message, sent to voters (asks) and back (answers).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's node name.
    pub name: String,
    /// The sender's acceptor id if it is a voter (from its store), `None` otherwise.
    pub acceptor_id: Option<u64>,
    /// The root in force on the sender (for a voter: persisted), if any.
    pub root: Option<RootRecord>,
    /// [`VoterNames::hash`] of the sender's configuration.
    pub voter_names_hash: u64,
    /// A nonce the recipient should answer: the sender wants a fresh report.
    pub ask: Option<u64>,
    /// The recipient's nonce this hello answers: the report is fresher than that ask.
    pub answer: Option<u64>,
}

/// What a node is configured with.
#[derive(Clone, Debug)]
pub struct FormationConfig {
    /// This node's name.
    pub name: String,
    /// The configured voters (the same on every node).
    pub voters: VoterNames,
    /// The acceptor id of this node's store: `Some` exactly when this node is a voter.
    pub acceptor_id: Option<u64>,
    /// The root found in this node's store at boot (voters only).
    pub stored_root: Option<RootRecord>,
    /// How often an unanswered ask is repeated.
    pub retry: Duration,
    /// The seed of the nonce RNG: fresh at every boot (OS entropy; a fixed one in tests).
    pub seed: u64,
}

/// Why [`Formation::new`] refused a configuration. Nothing was started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormationError {
    /// This node's name is not a valid node name.
    #[error("name: {0}")]
    Name(#[from] NameError),
    /// This node is a voter but no acceptor id (store) was given.
    #[error("{0} is a voter and needs the acceptor id of its store")]
    MissingAcceptorId(String),
    /// This node is not a voter but an acceptor id or a stored root was given.
    #[error("{0} is not a voter and has no acceptor store")]
    NotAVoterStore(String),
    /// The acceptor id is 0, which no store mints.
    #[error("acceptor id 0 is not valid")]
    ZeroAcceptorId,
    /// The retry interval is zero.
    #[error("retry interval must be positive")]
    ZeroRetry,
}

/// Why [`Formation::handle_persisted`] refused the call. Nothing changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersistedError {
    /// No root was waiting to be persisted.
    #[error("no root was waiting to be persisted")]
    NothingPending,
}

/// Where formation stands on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormationState {
    /// Exchanging hellos; no root yet.
    Forming,
    /// A root was created or adopted and is being persisted (it is not acted on yet).
    Persisting(RootRecord),
    /// The root is in force and this node is one of its acceptors.
    Voter(RootRecord),
    /// The root is in force on this node, which is not a voter (it proposes as a client).
    NonVoter(RootRecord),
    /// The root is in force, but this node, a configured voter, is not the acceptor the
    /// root lists for its name (its store was wiped): it must not act as an acceptor, and
    /// still proposes as a client. Re-admitting it needs a voter change (a later issue).
    NotAVoter {
        /// The root in force.
        root: RootRecord,
        /// `"wiped: acceptor id X, root lists Y"`.
        reason: String,
    },
    /// Formation refused to go on: the configured voters disagree with a voter's, or with
    /// the stored root. Nothing was merged; an operator must fix the configuration.
    ConfigMismatch {
        /// What disagrees with what.
        reason: String,
    },
}

/// What the shell must do for the formation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormationOutput {
    /// Send `hello` to the node named `to`.
    Send {
        /// The node name.
        to: String,
        /// The message.
        hello: Hello,
    },
    /// Persist this root ([`AcceptorStore::set_root`](super::AcceptorStore::set_root)),
    /// then call [`Formation::handle_persisted`]. A failure stops the process.
    Persist(RootRecord),
    /// The root is in force on this node (emitted once).
    RootInForce(RootRecord),
    /// A configuration disagrees (reported once per peer; `peer: None` for the stored
    /// root). Log it loudly.
    ConfigMismatch {
        /// The peer whose configuration differs, if it is a peer's.
        peer: Option<String>,
        /// What disagrees with what.
        reason: String,
    },
    /// A voter freshly reported another root than the one in force here (reported once per
    /// peer; never merged). Only possible when every voter holding the root was wiped.
    RootConflict {
        /// The voter.
        peer: String,
        /// Its root.
        theirs: RootRecord,
    },
}

/// Counters the formation keeps; the shell publishes them as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormationStats {
    /// Hellos received.
    pub hellos: u64,
    /// Asks sent.
    pub asks_sent: u64,
    /// Fresh answers taken.
    pub fresh_answers: u64,
    /// Answers dropped: they answer a nonce that is no longer the current one.
    pub stale_answers: u64,
    /// Hellos dropped: our own name, an invalid name, or a voter without an acceptor id
    /// (or a non-voter with one).
    pub bad_hellos: u64,
    /// Hellos dropped: their root is not a valid root of our configuration.
    pub bad_roots: u64,
    /// Hellos dropped: another voter configuration.
    pub config_mismatches: u64,
    /// Asks answered late, once the root being persisted was durable.
    pub asks_deferred: u64,
    /// Asks of peers of our configuration dropped: this node is in
    /// [`FormationState::ConfigMismatch`] (peers of another configuration are answered, so
    /// that they see the disagreement).
    pub asks_refused: u64,
    /// Voters seen with a new acceptor id (a wiped peer).
    pub peer_lives_changed: u64,
    /// Fresh reports of another root than ours.
    pub root_conflicts: u64,
    /// Roots this node created.
    pub roots_created: u64,
    /// Roots this node adopted from a voter.
    pub roots_adopted: u64,
}

/// What this node knows of one other voter.
#[derive(Clone, Debug)]
struct Peer {
    /// The acceptor id it last showed.
    life: Option<u64>,
    /// The nonce of our current ask.
    nonce: u64,
    /// Whether it freshly answered in its current life, and the root it then reported.
    answered: bool,
    root: Option<RootRecord>,
}

/// Forms (or finds) the voter root record on one node. See the module docs.
#[derive(Debug)]
pub struct Formation {
    name: String,
    voters: VoterNames,
    acceptor_id: Option<u64>,
    retry: Duration,
    rng: StdRng,
    state: FormationState,
    peers: BTreeMap<String, Peer>,
    next_ask: Option<Instant>,
    announced: bool,
    /// Asks that came while persisting, answered once the root is durable.
    deferred: BTreeMap<String, u64>,
    /// Peers whose configuration mismatch was reported.
    mismatch_reported: BTreeSet<String>,
    /// Peers whose conflicting root was reported.
    conflict_reported: BTreeSet<String>,
    outputs: VecDeque<FormationOutput>,
    stats: FormationStats,
}

impl Formation {
    /// Start formation on a node; a voter with a valid stored root has it in force at once.
    pub fn new(config: FormationConfig, now: Instant) -> Result<Self, FormationError> {
        validate_name(&config.name)?;
        let is_voter = config.voters.contains(&config.name);
        match (is_voter, config.acceptor_id) {
            (true, None) => return Err(FormationError::MissingAcceptorId(config.name)),
            (true, Some(0)) => return Err(FormationError::ZeroAcceptorId),
            (false, Some(_)) => return Err(FormationError::NotAVoterStore(config.name)),
            _ if !is_voter && config.stored_root.is_some() => {
                return Err(FormationError::NotAVoterStore(config.name))
            }
            _ => {}
        }
        if config.retry.is_zero() {
            return Err(FormationError::ZeroRetry);
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let peers = config
            .voters
            .names()
            .iter()
            .filter(|n| **n != config.name)
            .map(|n| {
                let peer = Peer {
                    life: None,
                    nonce: rng.next_u64(),
                    answered: false,
                    root: None,
                };
                (n.clone(), peer)
            })
            .collect();
        let mut formation = Self {
            name: config.name,
            voters: config.voters,
            acceptor_id: config.acceptor_id,
            retry: config.retry,
            rng,
            state: FormationState::Forming,
            peers,
            next_ask: None,
            announced: false,
            deferred: BTreeMap::new(),
            mismatch_reported: BTreeSet::new(),
            conflict_reported: BTreeSet::new(),
            outputs: VecDeque::new(),
            stats: FormationStats::default(),
        };
        match config.stored_root {
            None => formation.send_asks(now),
            Some(root) => match root.check(&formation.voters) {
                Ok(()) => formation.enter_in_force(now, root),
                Err(why) => {
                    let reason = format!("the stored root does not fit: {why}");
                    formation.refuse(None, reason);
                }
            },
        }
        Ok(formation)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where formation stands.
    pub fn state(&self) -> &FormationState {
        &self.state
    }

    /// The root in force on this node, if any.
    pub fn root_in_force(&self) -> Option<&RootRecord> {
        match &self.state {
            FormationState::Voter(root)
            | FormationState::NonVoter(root)
            | FormationState::NotAVoter { root, .. } => Some(root),
            _ => None,
        }
    }

    /// Whether this node acts as an acceptor (under the id its root lists for it).
    pub fn is_acceptor(&self) -> bool {
        matches!(self.state, FormationState::Voter(_))
    }

    /// The counters.
    pub fn stats(&self) -> FormationStats {
        self.stats
    }

    /// The next thing the shell must do, in order.
    pub fn poll_output(&mut self) -> Option<FormationOutput> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_ask
    }

    /// Repeat the asks that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_ask.is_some_and(|at| at <= now) {
            self.send_asks(now);
        }
    }

    /// The root of the last [`FormationOutput::Persist`] is durable: act on it.
    pub fn handle_persisted(&mut self, now: Instant) -> Result<(), PersistedError> {
        let FormationState::Persisting(root) = &self.state else {
            return Err(PersistedError::NothingPending);
        };
        let root = root.clone();
        self.enter_in_force(now, root);
        for (to, nonce) in std::mem::take(&mut self.deferred) {
            self.answer(&to, nonce);
        }
        Ok(())
    }

    /// Handle a hello from a peer. Never panics; a hello that cannot be used is dropped and
    /// counted, and changes nothing but the counters.
    pub fn handle_hello(&mut self, now: Instant, hello: Hello) {
        self.stats.hellos += 1;
        if hello.name == self.name || validate_name(&hello.name).is_err() {
            self.stats.bad_hellos += 1;
            return;
        }
        let from_voter = self.voters.contains(&hello.name);
        if hello.voter_names_hash != self.voters.hash() {
            self.stats.config_mismatches += 1;
            let reason = format!(
                "{} is configured with other voters than {} (hash {:016x}, ours {:016x})",
                hello.name,
                self.voters,
                hello.voter_names_hash,
                self.voters.hash()
            );
            if from_voter && self.state == FormationState::Forming {
                self.refuse(Some(hello.name.clone()), reason);
            } else if self.mismatch_reported.insert(hello.name.clone()) {
                let peer = Some(hello.name.clone());
                self.outputs
                    .push_back(FormationOutput::ConfigMismatch { peer, reason });
            }
            // Answer at once and without a root, whatever our state, so that it sees the
            // disagreement too (and refuses, if we are one of its voters).
            if let Some(nonce) = hello.ask {
                let to = hello.name;
                let hello = Hello {
                    root: None,
                    ..self.hello(None, Some(nonce))
                };
                self.outputs.push_back(FormationOutput::Send { to, hello });
            }
            return;
        }
        if from_voter != hello.acceptor_id.is_some() || hello.acceptor_id == Some(0) {
            self.stats.bad_hellos += 1;
            return;
        }
        if let Some(root) = &hello.root {
            if root.check(&self.voters).is_err() {
                self.stats.bad_roots += 1;
                return;
            }
        }
        if let (Some(id), Some(peer)) = (hello.acceptor_id, self.peers.get_mut(&hello.name)) {
            if peer.life.is_some_and(|life| life != id) {
                // Another life of this voter: nothing its earlier life said counts now.
                self.stats.peer_lives_changed += 1;
                peer.nonce = self.rng.next_u64();
                peer.answered = false;
                peer.root = None;
            }
            peer.life = Some(id);
            if hello.answer.is_some() {
                if hello.answer == Some(peer.nonce) {
                    self.stats.fresh_answers += 1;
                    peer.nonce = self.rng.next_u64();
                    peer.answered = true;
                    peer.root = hello.root.clone();
                    self.take_report(now, &hello.name, hello.root.clone());
                } else {
                    self.stats.stale_answers += 1;
                }
            }
        }
        if let Some(nonce) = hello.ask {
            self.answer(&hello.name, nonce);
        }
        self.maybe_create();
    }

    /// A voter's fresh report of its root.
    fn take_report(&mut self, now: Instant, peer: &str, root: Option<RootRecord>) {
        let Some(theirs) = root else { return };
        if self.state == FormationState::Forming {
            if self.acceptor_id.is_some() {
                // A voter that persists it is its second holder: it can no longer be lost
                // to one wipe.
                self.stats.roots_adopted += 1;
                self.persist(theirs);
            } else if self.reported_by_a_majority(&theirs) {
                // A non-voter holds nothing durable, so it waits until the root cannot be
                // lost to one wipe (of a creator that alone had it).
                self.stats.roots_adopted += 1;
                self.enter_in_force(now, theirs);
            }
            return;
        }
        let ours = self.root_in_force().or(match &self.state {
            FormationState::Persisting(root) => Some(root),
            _ => None,
        });
        if ours.is_some_and(|ours| *ours != theirs) {
            self.stats.root_conflicts += 1;
            if self.conflict_reported.insert(peer.to_owned()) {
                let peer = peer.to_owned();
                self.outputs
                    .push_back(FormationOutput::RootConflict { peer, theirs });
            }
        }
    }

    /// Whether a majority of the voters freshly reported `root` (in their current lives).
    fn reported_by_a_majority(&self, root: &RootRecord) -> bool {
        let holders = self
            .peers
            .values()
            .filter(|p| p.answered && p.root.as_ref() == Some(root))
            .count();
        holders >= super::majority(self.voters.names().len())
    }

    /// The creator's rule: no root anywhere, and a fresh answer from every other voter.
    fn maybe_create(&mut self) {
        if self.state != FormationState::Forming || self.name != self.voters.creator() {
            return;
        }
        let Some(own) = self.acceptor_id else { return };
        let mut voters = vec![(self.name.clone(), own)];
        for (name, peer) in &self.peers {
            match (peer.answered, peer.life, &peer.root) {
                (true, Some(id), None) => voters.push((name.clone(), id)),
                _ => return,
            }
        }
        voters.sort();
        let root = RootRecord {
            epoch: ROOT_EPOCH,
            quorums: None,
            pending: None,
            voters,
        };
        if root.check(&self.voters).is_err() {
            // Two voters showed the same acceptor id: never create a root from that.
            return;
        }
        self.stats.roots_created += 1;
        self.persist(root);
    }

    fn persist(&mut self, root: RootRecord) {
        self.state = FormationState::Persisting(root.clone());
        self.outputs.push_back(FormationOutput::Persist(root));
    }

    fn enter_in_force(&mut self, now: Instant, root: RootRecord) {
        self.state = match self.acceptor_id {
            None => FormationState::NonVoter(root.clone()),
            Some(id) => match root.acceptor_of(&self.name) {
                Some(listed) if listed.0 == id => FormationState::Voter(root.clone()),
                listed => FormationState::NotAVoter {
                    reason: format!(
                        "wiped: acceptor id {id:016x}, root lists {}",
                        listed.map_or("nothing".to_owned(), |l| format!("{:016x}", l.0))
                    ),
                    root: root.clone(),
                },
            },
        };
        if !std::mem::replace(&mut self.announced, true) {
            self.outputs.push_back(FormationOutput::RootInForce(root));
        }
        // The creator pushes the root to the voters that have not shown it yet.
        self.send_asks(now);
    }

    fn refuse(&mut self, peer: Option<String>, reason: String) {
        self.state = FormationState::ConfigMismatch {
            reason: reason.clone(),
        };
        self.next_ask = None;
        if let Some(p) = &peer {
            self.mismatch_reported.insert(p.clone());
        }
        self.outputs
            .push_back(FormationOutput::ConfigMismatch { peer, reason });
    }

    /// Whether we want a fresh answer from `peer`.
    fn wants(&self, peer: &Peer) -> bool {
        match &self.state {
            FormationState::Forming => true,
            FormationState::Voter(root) | FormationState::NotAVoter { root, .. } => {
                self.name == self.voters.creator()
                    && !(peer.answered && peer.root.as_ref() == Some(root))
            }
            _ => false,
        }
    }

    fn send_asks(&mut self, now: Instant) {
        let wanted: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| self.wants(p))
            .map(|(n, _)| n.clone())
            .collect();
        for to in &wanted {
            let ask = self.peers.get(to).map(|p| p.nonce);
            let hello = self.hello(ask, None);
            self.stats.asks_sent += 1;
            self.outputs.push_back(FormationOutput::Send {
                to: to.clone(),
                hello,
            });
        }
        self.next_ask = (!wanted.is_empty()).then(|| now + self.retry);
    }

    /// Answer an ask of a peer of our configuration: later while persisting; never while
    /// refusing (a refusing voter must not be counted as "no root" by a creator).
    fn answer(&mut self, to: &str, nonce: u64) {
        match self.state {
            FormationState::Persisting(_) => {
                self.stats.asks_deferred += 1;
                self.deferred.insert(to.to_owned(), nonce);
            }
            FormationState::ConfigMismatch { .. } => self.stats.asks_refused += 1,
            _ => {
                let hello = self.hello(None, Some(nonce));
                let to = to.to_owned();
                self.outputs.push_back(FormationOutput::Send { to, hello });
            }
        }
    }

    /// A hello with our report. Answers never carry an ask (asks go out on the timer
    /// only), so two nodes never answer each other back and forth.
    fn hello(&self, ask: Option<u64>, answer: Option<u64>) -> Hello {
        Hello {
            name: self.name.clone(),
            acceptor_id: self.acceptor_id,
            root: self.root_in_force().cloned(),
            voter_names_hash: self.voters.hash(),
            ask,
            answer,
        }
    }
}

#[cfg(test)]
#[path = "root_tests.rs"]
mod tests;
