//! The shard table — one register per shard — and the changes that run on it.
//!
//! # Invariants (checked by the unit and property tests in `claims::tests`)
//!
//! - `next_token` never decreases, and every change that modifies the table takes at
//!   least one fresh value from it: claim tokens, name versions and `renew_seq` stamps
//!   are unique in the shard and strictly increase in commit order.
//! - Every claim and every ephemeral name belongs to a session present in the table:
//!   closing or evicting a session removes its claims and its ephemeral names in the
//!   same change (atomically).
//! - `Evict(sid, seen)` and `Reassign(sid, seen, ..)` apply only if the session's
//!   `renew_seq` is still `seen`. Stamps are never reused, so an evict can never match a
//!   later refresh or a later life of the session (no ABA).
//! - A refused change changes nothing; so does a change that would grow the table past
//!   its bounds ([`MAX_SESSIONS`], [`MAX_CLAIMS`], [`MAX_NAMES`]) or carries oversized
//!   keys ([`MAX_KEY_BYTES`], [`MAX_NODE_BYTES`]).
//! - Idempotence: a `Claim` by the session that already holds the task returns the same
//!   token. Every other change that could apply twice is conditional on something only
//!   its first application changes (a token, a version, a `renew_seq`) or is made under
//!   a session that must exist; `OpenSession` always opens a *new* session, numbered by
//!   the register, so no session id is ever reused.
//!
//! Timing (when an evict is *safe*) is not the table's business: it cannot measure time.
//! The [`Watcher`](super::Watcher) proposes evicts only after `TTL·(1+ρ)`.
//!
//! Size: a full table (every bound reached, longest keys) encodes to under 160 KiB of
//! MessagePack (pinned by a test). Every Accept and Promise carries the register's whole
//! [`Slot`](crate::quorum::Slot): the table plus one compact at-most-once record per
//! live holder client and at most [`RECENT_RECORDS`](crate::quorum::RECENT_RECORDS)
//! others (see "At-most-once with bounded records" in [`crate::claims`]), so it stays
//! well under the transport's 1 MiB frame limit whatever the history.
//!
//! Limits a full table answers with [`ClaimReject::TableFull`] (HTTP `507`, naming the
//! table and its bound): [`MAX_SESSIONS`] sessions, [`MAX_CLAIMS`] claims and
//! [`MAX_NAMES`] strong names per shard.

use super::{holder_client, pinned_hash};
use crate::pid::Pid;
use crate::quorum::Change;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest task key or strong name, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Longest node name in a [`SessionId`] or a [`Pid`], in bytes (as node names).
pub const MAX_NODE_BYTES: usize = 63;
/// Most sessions one shard holds.
pub const MAX_SESSIONS: usize = 64;
/// Most claims one shard holds.
pub const MAX_CLAIMS: usize = 256;
/// Most strong names one shard holds.
pub const MAX_NAMES: usize = 256;
/// Shortest session TTL, in milliseconds.
pub const MIN_TTL_MS: u64 = 200;
/// Longest session TTL, in milliseconds (one day).
pub const MAX_TTL_MS: u64 = 86_400_000;

/// A shard: one register of the quorum plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// The shard of a task key or a strong name among `shards` shards (fixed at cluster
/// creation): the pinned [`pinned_hash`] of the key, reduced by multiply-shift (Lemire).
/// Never `DefaultHasher`: every peer and every version must agree. A count of 0 is
/// treated as 1 (configuration validation refuses 0 before it gets here).
pub fn shard_of(key: &[u8], shards: u32) -> ShardId {
    let n = u128::from(shards.max(1));
    let h = u128::from(pinned_hash(&[key]));
    // (h·n) >> 64 < n ≤ u32::MAX: the cast cannot truncate.
    ShardId(((h * n) >> 64) as u32)
}

/// The HRW-preferred owner of `task` among `candidates` (node names of live workers):
/// highest [`pinned_hash`]`(task, node)`, ties by name. Every peer computes the same
/// answer from the same inputs; it is only a preference (used to aim a reassignment),
/// never a safety condition.
pub fn preferred_owner<'a>(
    task: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .max_by_key(|node| (pinned_hash(&[task.as_bytes(), node.as_bytes()]), *node))
}

/// A holder's session in one shard, like an etcd lease id. `n` is numbered by the shard's
/// register (a stamp of its fencing counter, taken by [`ShardChange::OpenSession`]), so
/// an id is never reused within its shard — a closed session never comes back — and
/// `node` and `incarnation` name the holder life. Ids are per shard: two shards may each
/// have a session `n1/3/7`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId {
    /// The holder's node name.
    #[serde(rename = "n")]
    pub node: String,
    /// The holder's boot incarnation.
    #[serde(rename = "i")]
    pub incarnation: u64,
    /// The session's number in its shard (a stamp, never reused there).
    #[serde(rename = "s")]
    pub n: u64,
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.node, self.incarnation, self.n)
    }
}

/// A session (lease). Its holder is the session id's node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Session {
    /// The lease length, in milliseconds.
    #[serde(rename = "t")]
    pub ttl_ms: u64,
    /// The stamp of the last change that refreshed the session (open, renew, claim):
    /// a value of the shard's fencing counter, so never reused.
    #[serde(rename = "r")]
    pub renew_seq: u64,
}

/// Who holds a task, with which fencing token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The holding session.
    #[serde(rename = "s")]
    pub sid: SessionId,
    /// The fencing token: strictly increasing per task across every holder ever.
    #[serde(rename = "k")]
    pub token: u64,
}

/// A strong name's owner and version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StrongName {
    /// The owning process.
    #[serde(rename = "o")]
    pub owner: Pid,
    /// The name's fencing token: strictly increasing across registrations and transfers.
    #[serde(rename = "v")]
    pub version: u64,
    /// For an ephemeral name, the session it vanishes with.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
}

/// One shard's state: the register value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardTable {
    /// The shard's fencing counter: the next stamp to hand out. Never decreases.
    #[serde(rename = "t")]
    pub next_token: u64,
    /// Sessions (leases) by id. Encoded as a list of pairs (struct keys are not valid
    /// JSON map keys).
    #[serde(rename = "s", with = "pairs")]
    pub sessions: BTreeMap<SessionId, Session>,
    /// Claims by task key.
    #[serde(rename = "c")]
    pub claims: BTreeMap<String, ClaimRecord>,
    /// Strong names by name.
    #[serde(rename = "n")]
    pub names: BTreeMap<String, StrongName>,
}

impl Default for ShardTable {
    /// The table of a shard that was never written. Stamps start at 1, so 0 is never a
    /// token, a version or a `renew_seq`.
    fn default() -> Self {
        Self {
            next_token: 1,
            sessions: BTreeMap::new(),
            claims: BTreeMap::new(),
            names: BTreeMap::new(),
        }
    }
}

/// Which string of a change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    /// A task key.
    Task,
    /// A strong name.
    Name,
    /// A node name (of a session id or a PID).
    Node,
}

/// Which table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TableKind {
    /// Sessions ([`MAX_SESSIONS`]).
    Sessions,
    /// Claims ([`MAX_CLAIMS`]).
    Claims,
    /// Strong names ([`MAX_NAMES`]).
    Names,
}

/// Why a [`ShardChange`] refused. Every refusal leaves the table exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum ClaimReject {
    /// The task is held by another session, with this token. Nothing changed; wait for
    /// a release or an eviction.
    #[error("held by {holder} with token {token}")]
    Held {
        /// The holding session.
        holder: SessionId,
        /// Its token.
        token: u64,
    },
    /// The session does not exist (never opened, closed or evicted). Nothing changed;
    /// its holder has lost its claims in this shard and must open a new session.
    #[error("no session {sid}")]
    NoSession {
        /// The missing session.
        sid: SessionId,
    },
    /// The token is not the task's current one (the claim moved on). Nothing changed.
    #[error("stale token; the current one is {current}")]
    StaleToken {
        /// The task's current token.
        current: u64,
    },
    /// The task is not held (by anyone, or by the session being evicted). Nothing
    /// changed.
    #[error("task {task:?} is not held")]
    NotHeld {
        /// The task.
        task: String,
    },
    /// The strong name already has an owner. Nothing changed.
    #[error("name taken by {owner} at version {version}")]
    NameTaken {
        /// The current owner.
        owner: Pid,
        /// Its version.
        version: u64,
    },
    /// The strong name has no owner. Nothing changed.
    #[error("no such strong name")]
    NoSuchName,
    /// The version is not the name's current one. Nothing changed.
    #[error("version mismatch; the current one is {current}")]
    VersionMismatch {
        /// The name's current version.
        current: u64,
    },
    /// The session was refreshed since the watcher saw `renew_seq`: it is alive, and the
    /// evict is refused. Nothing changed.
    #[error("renew_seq moved to {current}")]
    RenewSeqMoved {
        /// The session's current stamp.
        current: u64,
    },
    /// A reassignment named the evicted session itself as a target. Nothing changed.
    #[error("cannot reassign a task to the session being evicted")]
    ReassignToEvicted,
    /// A key or node name is empty or longer than `max` bytes. Nothing changed.
    #[error("{field:?} of {len} bytes; must be 1..={max}")]
    BadLength {
        /// Which string.
        field: Field,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The TTL is outside `MIN_TTL_MS..=MAX_TTL_MS`. Nothing changed.
    #[error("ttl {ttl_ms} ms out of range")]
    InvalidTtl {
        /// The refused TTL.
        ttl_ms: u64,
    },
    /// The table is full. Nothing changed; release, close or wait for evictions.
    #[error("{kind:?} table full ({max})")]
    TableFull {
        /// Which table.
        kind: TableKind,
        /// Its bound.
        max: usize,
    },
    /// The shard's fencing counter is exhausted (2^64 stamps). Nothing changed; the
    /// shard can take no more changes (unreachable in practice).
    #[error("fencing counter exhausted")]
    Exhausted,
}

/// A change of a shard table; the register applies it atomically.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShardChange {
    /// Open a new session of holder life `(node, incarnation)` with a TTL. The register
    /// numbers it: its id is `SessionId { node, incarnation, n }` with `n` a fresh stamp
    /// (also its first `renew_seq`), handed back as the change's receipt. Session ids are
    /// therefore never reused, and a session, once closed or evicted, never comes back:
    /// a late copy of this change opens another session (that nobody renews and the
    /// watcher evicts), never the old one.
    #[serde(rename = "o")]
    OpenSession {
        /// The holder's node name.
        #[serde(rename = "n")]
        node: String,
        /// The holder's boot incarnation.
        #[serde(rename = "i")]
        incarnation: u64,
        /// Its lease length.
        #[serde(rename = "t")]
        ttl_ms: u64,
    },
    /// Refresh the session (new `renew_seq`): covers all its claims and ephemeral names.
    #[serde(rename = "r")]
    Renew {
        /// The session.
        #[serde(rename = "s")]
        sid: SessionId,
    },
    /// Close the session; its claims and ephemeral names go with it.
    #[serde(rename = "x")]
    CloseSession {
        /// The session.
        #[serde(rename = "s")]
        sid: SessionId,
    },
    /// Claim a task for a session. Also refreshes the session.
    #[serde(rename = "c")]
    Claim {
        /// The task key.
        #[serde(rename = "k")]
        task: String,
        /// The claiming session.
        #[serde(rename = "s")]
        sid: SessionId,
    },
    /// Free a task held with `token`.
    #[serde(rename = "l")]
    Release {
        /// The task key.
        #[serde(rename = "k")]
        task: String,
        /// The token it is held with.
        #[serde(rename = "v")]
        token: u64,
    },
    /// Remove an expired session (and its claims and ephemeral names) if it was not
    /// refreshed since the watcher saw `seen_renew_seq`.
    #[serde(rename = "e")]
    Evict {
        /// The session.
        #[serde(rename = "s")]
        sid: SessionId,
        /// The stamp the watcher timed.
        #[serde(rename = "r")]
        seen_renew_seq: u64,
    },
    /// `Evict` plus, in the same change, a new claim of each listed task (all held by the
    /// evicted session) for its target session, with a fresh token each. Tasks of the
    /// evicted session that are not listed are freed.
    #[serde(rename = "a")]
    Reassign {
        /// The session to evict.
        #[serde(rename = "s")]
        sid: SessionId,
        /// The stamp the watcher timed.
        #[serde(rename = "r")]
        seen_renew_seq: u64,
        /// Task → the live session it goes to (normally its HRW-preferred worker's).
        #[serde(rename = "to")]
        to: BTreeMap<String, SessionId>,
    },
    /// Register a strong name if it has no owner; version = a fresh stamp. Made under
    /// the registering holder's session `sid` (which must exist: a late copy from a
    /// closed session is refused); `ephemeral` binds the name to that session, so that
    /// it vanishes with it.
    #[serde(rename = "n")]
    RegisterName {
        /// The name.
        #[serde(rename = "k")]
        name: String,
        /// The owning process.
        #[serde(rename = "o")]
        owner: Pid,
        /// The registering holder's session.
        #[serde(rename = "s")]
        sid: SessionId,
        /// Whether the name vanishes with `sid`.
        #[serde(rename = "e", default)]
        ephemeral: bool,
    },
    /// Give a strong name held at `version` to `to` (a fresh version), bound to `sid`
    /// (ephemeral) or to none (durable).
    #[serde(rename = "m")]
    TransferName {
        /// The name.
        #[serde(rename = "k")]
        name: String,
        /// The version the caller saw.
        #[serde(rename = "v")]
        version: u64,
        /// The new owner.
        #[serde(rename = "o")]
        to: Pid,
        /// The new owner's session for an ephemeral name.
        #[serde(rename = "s", default)]
        sid: Option<SessionId>,
    },
    /// Free a strong name held at `version`.
    #[serde(rename = "u")]
    ReleaseName {
        /// The name.
        #[serde(rename = "k")]
        name: String,
        /// The version the caller saw.
        #[serde(rename = "v")]
        version: u64,
    },
    /// Read the table (a linearizable read: it still completes the accept round).
    #[serde(rename = "q")]
    Read,
}

impl ShardChange {
    /// The existing session this change refreshes when it applies (renew, claim; an
    /// open refreshes the session it creates, whose id is its receipt).
    pub fn refreshes(&self) -> Option<&SessionId> {
        match self {
            Self::Renew { sid } | Self::Claim { sid, .. } => Some(sid),
            _ => None,
        }
    }
}

impl Change<ShardTable> for ShardChange {
    type Reject = ClaimReject;

    fn apply(&self, current: Option<&ShardTable>) -> Result<Option<ShardTable>, ClaimReject> {
        if let Self::Read = self {
            return Ok(current.cloned());
        }
        // Work on a copy: a refusal anywhere leaves the register value untouched.
        let mut table = current.cloned().unwrap_or_default();
        table.step(self)?;
        Ok(Some(table))
    }

    fn is_read(&self) -> bool {
        matches!(self, Self::Read)
    }

    /// Open: the new session's `n`. Claim: the task's token. Register and transfer: the
    /// name's new version. Renew: the session's new stamp. Others: 0.
    fn receipt(&self, new: Option<&ShardTable>) -> u64 {
        let Some(t) = new else { return 0 };
        match self {
            // The open took exactly one stamp, the last one.
            Self::OpenSession { .. } => t.next_token.saturating_sub(1),
            Self::Claim { task, .. } => t.claims.get(task).map_or(0, |c| c.token),
            Self::RegisterName { name, .. } | Self::TransferName { name, .. } => {
                t.names.get(name).map_or(0, |n| n.version)
            }
            Self::Renew { sid } => t.sessions.get(sid).map_or(0, |s| s.renew_seq),
            _ => 0,
        }
    }

    /// The holder lives with a session in the table (one client per life and TTL, see
    /// [`holder_client`]). Every other record — watchers', and holders' whose sessions
    /// are all gone — is retired; see the argument in [`crate::claims`].
    fn live_clients(value: Option<&ShardTable>) -> Option<Vec<u64>> {
        let mut live: Vec<u64> = value
            .into_iter()
            .flat_map(|t| t.sessions.iter())
            .map(|(sid, s)| holder_client(&sid.node, sid.incarnation, s.ttl_ms))
            .collect();
        live.sort_unstable();
        live.dedup();
        Some(live)
    }
}

impl ShardTable {
    /// Whether `token` is the current token of `task`: the check a downstream system
    /// makes against a (linearizable) read before honouring a holder's effect.
    pub fn validate(&self, task: &str, token: u64) -> Result<&ClaimRecord, ClaimReject> {
        match self.claims.get(task) {
            Some(rec) if rec.token == token => Ok(rec),
            Some(rec) => Err(ClaimReject::StaleToken { current: rec.token }),
            None => Err(ClaimReject::NotHeld {
                task: task.to_owned(),
            }),
        }
    }

    /// The claims of session `sid`, as `(task, token)`.
    pub fn claims_of<'a>(&'a self, sid: &'a SessionId) -> impl Iterator<Item = (&'a str, u64)> {
        self.claims
            .iter()
            .filter(move |(_, rec)| rec.sid == *sid)
            .map(|(task, rec)| (task.as_str(), rec.token))
    }

    /// Take the next stamp of the fencing counter.
    fn stamp(&mut self) -> Result<u64, ClaimReject> {
        let s = self.next_token;
        self.next_token = s.checked_add(1).ok_or(ClaimReject::Exhausted)?;
        Ok(s)
    }

    fn session_mut(&mut self, sid: &SessionId) -> Result<&mut Session, ClaimReject> {
        self.sessions
            .get_mut(sid)
            .ok_or_else(|| ClaimReject::NoSession { sid: sid.clone() })
    }

    fn require_session(&self, sid: &SessionId) -> Result<&Session, ClaimReject> {
        self.sessions
            .get(sid)
            .ok_or_else(|| ClaimReject::NoSession { sid: sid.clone() })
    }

    /// Remove a session with everything bound to it (one step of one change).
    fn drop_session(&mut self, sid: &SessionId) {
        self.sessions.remove(sid);
        self.claims.retain(|_, rec| rec.sid != *sid);
        self.names.retain(|_, n| n.sid.as_ref() != Some(sid));
    }

    /// The session must exist and still carry the stamp the watcher timed.
    fn check_evict(&self, sid: &SessionId, seen: u64) -> Result<(), ClaimReject> {
        let s = self.require_session(sid)?;
        if s.renew_seq != seen {
            return Err(ClaimReject::RenewSeqMoved {
                current: s.renew_seq,
            });
        }
        Ok(())
    }

    fn check_name_owner(&self, owner: &Pid, sid: Option<&SessionId>) -> Result<(), ClaimReject> {
        check_len(Field::Node, &owner.node, MAX_NODE_BYTES)?;
        if let Some(sid) = sid {
            self.require_session(sid)?;
        }
        Ok(())
    }

    /// Apply one change in place. The caller discards `self` on error, but every arm
    /// also checks everything before it writes anything.
    fn step(&mut self, change: &ShardChange) -> Result<(), ClaimReject> {
        match change {
            ShardChange::Read => {}
            ShardChange::OpenSession {
                node,
                incarnation,
                ttl_ms,
            } => {
                check_len(Field::Node, node, MAX_NODE_BYTES)?;
                if !(MIN_TTL_MS..=MAX_TTL_MS).contains(ttl_ms) {
                    return Err(ClaimReject::InvalidTtl { ttl_ms: *ttl_ms });
                }
                check_room(self.sessions.len(), TableKind::Sessions, MAX_SESSIONS)?;
                let n = self.stamp()?;
                self.sessions.insert(
                    SessionId {
                        node: node.clone(),
                        incarnation: *incarnation,
                        n,
                    },
                    Session {
                        ttl_ms: *ttl_ms,
                        renew_seq: n,
                    },
                );
            }
            ShardChange::Renew { sid } => {
                self.require_session(sid)?;
                let seq = self.stamp()?;
                self.session_mut(sid)?.renew_seq = seq;
            }
            ShardChange::CloseSession { sid } => {
                self.require_session(sid)?;
                self.stamp()?;
                self.drop_session(sid);
            }
            ShardChange::Claim { task, sid } => {
                check_len(Field::Task, task, MAX_KEY_BYTES)?;
                self.require_session(sid)?;
                match self.claims.get(task) {
                    Some(rec) if rec.sid != *sid => {
                        return Err(ClaimReject::Held {
                            holder: rec.sid.clone(),
                            token: rec.token,
                        })
                    }
                    // The same session again: same token, and the session is refreshed.
                    Some(_) => {
                        let seq = self.stamp()?;
                        self.session_mut(sid)?.renew_seq = seq;
                    }
                    None => {
                        check_room(self.claims.len(), TableKind::Claims, MAX_CLAIMS)?;
                        let token = self.stamp()?;
                        self.session_mut(sid)?.renew_seq = token;
                        self.claims.insert(
                            task.clone(),
                            ClaimRecord {
                                sid: sid.clone(),
                                token,
                            },
                        );
                    }
                }
            }
            ShardChange::Release { task, token } => {
                self.validate(task, *token)?;
                self.stamp()?;
                self.claims.remove(task);
            }
            ShardChange::Evict {
                sid,
                seen_renew_seq,
            } => {
                self.check_evict(sid, *seen_renew_seq)?;
                self.stamp()?;
                self.drop_session(sid);
            }
            ShardChange::Reassign {
                sid,
                seen_renew_seq,
                to,
            } => {
                self.check_evict(sid, *seen_renew_seq)?;
                for (task, target) in to {
                    if target == sid {
                        return Err(ClaimReject::ReassignToEvicted);
                    }
                    self.require_session(target)?;
                    if self.claims.get(task).map(|r| &r.sid) != Some(sid) {
                        return Err(ClaimReject::NotHeld { task: task.clone() });
                    }
                }
                self.stamp()?;
                self.drop_session(sid);
                // `to` has at most as many entries as the evicted session held, so the
                // claims table cannot grow past its bound here.
                for (task, target) in to {
                    let token = self.stamp()?;
                    self.claims.insert(
                        task.clone(),
                        ClaimRecord {
                            sid: target.clone(),
                            token,
                        },
                    );
                }
            }
            ShardChange::RegisterName {
                name,
                owner,
                sid,
                ephemeral,
            } => {
                check_len(Field::Name, name, MAX_KEY_BYTES)?;
                self.check_name_owner(owner, Some(sid))?;
                if let Some(n) = self.names.get(name) {
                    return Err(ClaimReject::NameTaken {
                        owner: n.owner.clone(),
                        version: n.version,
                    });
                }
                check_room(self.names.len(), TableKind::Names, MAX_NAMES)?;
                let version = self.stamp()?;
                self.names.insert(
                    name.clone(),
                    StrongName {
                        owner: owner.clone(),
                        version,
                        sid: ephemeral.then(|| sid.clone()),
                    },
                );
            }
            ShardChange::TransferName {
                name,
                version,
                to,
                sid,
            } => {
                self.check_name_version(name, *version)?;
                self.check_name_owner(to, sid.as_ref())?;
                let version = self.stamp()?;
                self.names.insert(
                    name.clone(),
                    StrongName {
                        owner: to.clone(),
                        version,
                        sid: sid.clone(),
                    },
                );
            }
            ShardChange::ReleaseName { name, version } => {
                self.check_name_version(name, *version)?;
                self.stamp()?;
                self.names.remove(name);
            }
        }
        Ok(())
    }

    fn check_name_version(&self, name: &str, version: u64) -> Result<(), ClaimReject> {
        match self.names.get(name) {
            None => Err(ClaimReject::NoSuchName),
            Some(n) if n.version != version => {
                Err(ClaimReject::VersionMismatch { current: n.version })
            }
            Some(_) => Ok(()),
        }
    }
}

fn check_len(field: Field, s: &str, max: usize) -> Result<(), ClaimReject> {
    if s.is_empty() || s.len() > max {
        return Err(ClaimReject::BadLength {
            field,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn check_room(len: usize, kind: TableKind, max: usize) -> Result<(), ClaimReject> {
    if len >= max {
        return Err(ClaimReject::TableFull { kind, max });
    }
    Ok(())
}

/// Serde for a map with non-string keys: a list of `(key, value)` pairs. A duplicate key
/// on decoding is an error (a well-formed table never has one).
mod pairs {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub(super) fn serialize<S, K, V>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        K: Serialize,
        V: Serialize,
    {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    {
        let list: Vec<(K, V)> = Vec::deserialize(d)?;
        let n = list.len();
        let map: BTreeMap<K, V> = list.into_iter().collect();
        if map.len() != n {
            return Err(D::Error::custom("duplicate key"));
        }
        Ok(map)
    }
}
