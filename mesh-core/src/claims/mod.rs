//! Task claims and strong names: a per-shard lease protocol on the CASPaxos register
//! ([`crate::quorum`]), sans-IO.
//!
//! Task keys and strong names hash ([`shard_of`], pinned) to a fixed number of shards.
//! Each shard is **one register** holding a [`ShardTable`]: the shard's fencing counter
//! `next_token`, the holders' sessions (leases), the claims and the strong names. Every
//! change is a [`ShardChange`] run by the register's proposer, so every change of a shard
//! is atomic and linearizable, and a retried change is applied at most once (by its
//! [`RequestId`](crate::quorum::RequestId)).
//!
//! # Properties
//!
//! **Safety**
//!
//! - *S1 — linearizable per shard*: every table operation (claim, renew, release, evict,
//!   name register/transfer/release, read) takes effect atomically at one point between
//!   its submission and its completion; an op that timed out may or may not take effect.
//! - *S2 — the fencing counter never goes back*: `next_token` only grows, and every change
//!   that modifies a table takes at least one fresh value from it. Hence claim tokens of a
//!   task, versions of a strong name, and sessions' `renew_seq` stamps all strictly
//!   increase, across every holder, every restart and every release (no per-name
//!   tombstones needed: a re-registered name gets a version above every earlier one).
//! - *S3 — never two valid holders*: for one task, the validity intervals of different
//!   tokens never overlap in real time, with every node's clock *rate* within `1 ± ρ`
//!   (offsets do not matter; only elapsed time is used). The argument:
//!   1. the holder takes `t0` just before it submits a change that refreshes its session
//!      (`OpenSession`, `Renew`, `Claim`; a retry keeps the `t0` of its first attempt) and,
//!      once the change is acknowledged, holds the session's claims valid until
//!      `t0 + TTL·(1−ρ) − guard` of its own clock: at most `t0 + TTL` in real time;
//!   2. the change commits after `t0` and stamps the session with a fresh `renew_seq`;
//!   3. the watcher learns that `renew_seq` from a linearizable result — after the commit
//!      — and proposes `Evict(sid, renew_seq)` only after `TTL·(1+ρ)` of its own clock: at
//!      least `TTL` of real time after it learned it;
//!   4. `Evict` is refused if `renew_seq` moved (the session was refreshed since), and a
//!      task is only granted a new token once no session holds it.
//!
//!   So the old token's validity ends before the eviction commits, and the new token's
//!   validity starts after it. A release ends the holder's validity when it is submitted.
//! - *S4 — fencing*: an effect guarded by [`FencedResource`] is applied only with a token
//!   at least the highest it has applied for that task, checked and stored atomically with
//!   the effect; a paused holder that wakes up after its validity is refused there.
//! - *S5 — durability*: an acknowledged change survives the crash of any minority of
//!   voters (the register's persist-before-reply, see [`crate::quorum::acceptor`]).
//! - Bad input (oversized keys, bad TTLs, full tables) is refused by the change with a
//!   [`ClaimReject`] and changes nothing.
//! - *S6 — at most once, in bounded state*: no change is applied twice, and the shard's
//!   register holds the live state and a bounded number of compact records, whatever
//!   the history (lives, TTLs, refusals). The argument is in "At-most-once with bounded
//!   records" below.
//!
//! **Liveness** (with a majority of the voters connected)
//!
//! - *L1*: every operation completes (the register's backoff; the [`Holder`] and
//!   [`Watcher`] retry a timed-out change under the same request id).
//! - *L2*: a dead holder's tasks become claimable within `TTL·(1+ρ)` (watcher clock) +
//!   detection (the watcher's refresh period, or a SWIM "down" that triggers an early
//!   read, or a new watcher taking over) + one commit.
//! - *L3*: a holder that keeps renewing (every `TTL/3`) never loses its claims.
//! - *L4*: one isolated voter stalls nothing (quorums are majorities).
//!
//! These are checked by the unit and property tests of each module and by the seeded
//! simulation `tests/claims_sim.rs` (real acceptors, proposers, holders and watchers under
//! partitions, pauses, crashes with un-fsynced loss and clock-rate skew; a Wing–Gong /
//! Lowe linearizability checker over every history; negative controls).
//!
//! # Pieces
//!
//! - [`table`]: [`ShardTable`], [`ShardChange`], [`ClaimReject`], [`shard_of`],
//!   [`preferred_owner`].
//! - [`holder`]: the per-node [`Holder`]: sessions, renews, validity, calls.
//! - [`watcher`]: the [`Watcher`]: evicts expired sessions of the shards this node is the
//!   preferred proposer of.
//! - [`fenced`]: [`FencedResource`], the downstream side of fencing.
//! - [`names`]: [`NameCache`], the cached (gossiped) `whereis` and the receiver's check
//!   that refuses sends with a stale version.
//! - [`singleton`]: [`run_while_holding`], which cancels work before its validity ends.
//! - [`election`]: leader election on a claim: when a leader must stop, the campaign
//!   backoff.
//!
//! # Driving it
//!
//! The [`Holder`] and the [`Watcher`] emit [`Submission`]s `(shard, change, request id)`;
//! the shell proposes each on the quorum plane (`Proposer<ShardId, ShardTable,
//! ShardChange>`, preferably the shard's HRW-preferred proposer) and hands the completion
//! back by request id. Every table the shell sees for a shard may also be fed to
//! [`Watcher::observe`] and [`NameCache::learn`].
//!
//! ```text
//!  app ──claim/release/register──▶ Holder ──poll_submit──▶ Proposer ──▶ voters
//!   ▲                                ▲  └──poll_event (Done, Lost, Assigned)──▶ app
//!   │            Watcher ──Evict─────┤
//!   └── is_valid(now, task, token)   └──handle_completion(now, request, result)◀── Proposer
//! ```
//!
//! Time: every input takes `now`. The shell must derive it from a clock that keeps
//! counting while the machine is suspended (Linux `CLOCK_BOOTTIME`), so that a suspended
//! holder does not believe less time passed than did.
//!
//! # What the shell must do
//!
//! - Propose every [`Submission`] with `Some(request)` (every change is at most once;
//!   reads are not recorded by the register anyway) and route the completion back by
//!   `request.client` to the holder or the watcher.
//! - Route a shard's changes to its preferred proposer
//!   ([`crate::quorum::preferred_proposer`] of the shard id's LE bytes over `V ∩ alive`),
//!   over a reliable stream. If it does not answer within a short timeout, report a
//!   timeout to the holder, skip that node for a while and send the retry to the next
//!   node in HRW order (any node may propose; only load and the 1-RTT cache prefer one).
//!   One proposer per shard matters: the register runs one change per key at a time, and
//!   duelling proposers starve renews — the simulation showed 200–400 ms ops with five
//!   proposers on one shard, and a failover where every node proposed locally lost renews;
//!   the next HRW choice is the same for every node, so a failover keeps one proposer.
//! - Make the preferred proposer's node watch the shard ([`Watcher::watch`]) and feed its
//!   watcher every table its proposer decides on for that shard ([`Watcher::observe`]):
//!   it then learns every refresh as it commits and evicts promptly.
//! - Tell the holder how many voters it reaches ([`Holder::set_reachable_voters`]) and the
//!   watcher about SWIM downs ([`Watcher::node_down`]).
//! - Build the holder of each TTL and the watcher with this boot's incarnation: the
//!   holder's request-id client is [`holder_client`] of its node, incarnation and TTL
//!   (the register keeps its record while it has a session), the watcher's a
//!   [`client_id`] of this boot. A holder made again for a TTL in the same life must
//!   continue its request seqs ([`HolderConfig::first_seq`]).
//!
//! # Decisions
//!
//! - **One fencing counter per shard** (`next_token`) stamps claim tokens, name versions
//!   and sessions' `renew_seq`: all strictly increase without per-name tombstones (a
//!   released and re-registered name gets a version above every earlier one), and an
//!   evict can never match a later refresh or a later life of a session (no ABA).
//!   Versions are therefore not dense (`v1 = 7`, `v2 = 12`), only increasing.
//! - A session has no separate `holder` field: its holder is `sid.node`.
//! - `Claim` refreshes the session (it proves the holder alive as well as a renew), so a
//!   claim is valid from its own `t0`.
//! - `Reassign` carries a target per task (`to: task → session`), so each task can go to
//!   its own HRW-preferred live worker; tasks it does not list are freed. `TransferName`
//!   carries the new owner's session binding (`sid`), since the old one's session rarely
//!   suits the new owner.
//! - A holder renews every open session, also an idle one: a session is the node's lease
//!   in the shard, and a watcher may reassign tasks to any live session.
//! - A holder runs one change per shard at a time, and retries a timed-out change under
//!   the same request id before the next starts: the register's at-most-once table keeps
//!   only the last request of each client per key.
//! - **Sessions are numbered by the register** (`OpenSession` takes a stamp as the
//!   session's `n` and hands it back as its receipt), as Raft numbers client sessions
//!   by log index: then no late copy of an open can bring back a closed session, which
//!   is what lets the register retire a client's record with its last session. A call
//!   that needs the session waits for the open's answer; the shard's later calls wait
//!   behind it, so a shard's calls still go out in call order.
//! - **Every strong-name registration is made under the registering holder's session**
//!   (`RegisterName { sid, ephemeral }`; an ephemeral name is also bound to it): a
//!   durable registration is otherwise the one change a late copy could apply twice
//!   (after the name was released).
//!
//! # At-most-once with bounded records (S6)
//!
//! The register keeps one compact record per client ([`Record`](crate::quorum::Record):
//! a sequence number and a receipt or a refusal) and retires the records the table no
//! longer needs ([`Change::live_clients`](crate::quorum::Change::live_clients)). Here:
//!
//! - Every holder life and TTL is one request-id client, [`holder_client`]`(node,
//!   incarnation, ttl)`; its record is kept exactly while the table holds a session of
//!   that node, incarnation and TTL. Every other record — the watcher's, a holder's whose
//!   sessions are all gone — is retired by the next applied change.
//! - So the slot holds at most [`MAX_SESSIONS`](table::MAX_SESSIONS) records, whatever
//!   the history: the number of lives, of TTLs ever used, of refused requests.
//!
//! *Claim*: still, no request is applied twice. Let `r` be a request of client `c`.
//!
//! 1. While `c` has a record, a copy of `r` finds `seq == record.seq` (it was decided:
//!    the copy gets the same receipt or refusal, nothing is applied) or `seq <
//!    record.seq` (superseded, nothing is applied); the holder runs its changes of a
//!    shard one at a time in `seq` order, so no newer request of `c` was decided before
//!    `r`'s first copy.
//! 2. Once `c`'s record is retired, `c` has no session in the table, and none of its
//!    sessions can come back: sessions are numbered by the register with fresh stamps
//!    (an `OpenSession` always opens a *new* one). So a later copy of any request made
//!    under one of `c`'s sessions (`Renew`, `Claim`, `CloseSession`, `RegisterName`,
//!    an ephemeral `TransferName`) is refused with `NoSession`, leaving no trace.
//! 3. The other changes are conditional on what only their first application changes:
//!    `Release` and `ReleaseName`/`TransferName` need the task's token or the name's
//!    version to be current, and applying them moves it on to a fresh stamp (stamps are
//!    never reused, S2); `Evict` and `Reassign` need the session's `renew_seq` and the
//!    session itself, which they remove.
//!
//! The one exception is the registration itself: a late copy of an `OpenSession` whose
//! record was retired opens another, empty session — which the holder never learns of,
//! never renews, and the watcher evicts after `TTL·(1+ρ)`, as Raft's `RegisterClient`
//! may register a client twice. Opening is at-least-once; everything made under a
//! session is at-most-once. `tests/claims_sim.rs` checks this over every history
//! (`a_retried_request_is_never_applied_twice`), and `claims::tests` bounds the slot
//! over random lives and TTLs.

pub mod election;
pub mod fenced;
pub mod hold;
pub mod holder;
pub mod names;
pub mod singleton;
mod submit;
pub mod table;
pub mod watcher;

#[cfg(test)]
mod tests;

pub use fenced::{FenceError, FencedResource, FencedStats};
pub use hold::{HoldOutcome, Holds};
pub use holder::{
    check_ttl, CallId, CallOk, Holder, HolderConfig, HolderConfigError, HolderEvent, HolderStats,
    LostReason, TtlError,
};
pub use names::{KeptVerdict, NameCache, NameCacheStats, SendRefused};
pub use singleton::{run_while_holding, Cancelled};
pub use submit::{Submission, SubmitStats};
pub use table::{
    preferred_owner, shard_of, ClaimRecord, ClaimReject, Field, Session, SessionId, ShardChange,
    ShardId, ShardTable, StrongName, TableKind,
};
pub use watcher::{Watcher, WatcherConfig, WatcherEvent, WatcherStats};

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The register value of a shard as the quorum plane stores and sends it.
pub type ShardSlot = crate::quorum::Slot<ShardTable, ClaimReject>;

/// What a proposer reports for a shard change.
pub type ShardOutcome = crate::quorum::Outcome<ShardTable, ClaimReject>;

/// A bound `ρ` on the *rate* error of every node's clock, in parts per million: a clock
/// measures a real interval `d` as something within `d·(1−ρ) ..= d·(1+ρ)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Drift {
    ppm: u32,
}

/// Why a [`Drift`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("clock drift bound {ppm} ppm is not below {max} ppm (ρ < 0.5)")]
pub struct DriftError {
    /// The refused value.
    pub ppm: u32,
    /// The largest accepted value plus one.
    pub max: u32,
}

impl Drift {
    /// No rate error at all (only for tests and simulations with perfect clocks).
    pub const ZERO: Self = Self { ppm: 0 };

    /// Refused bounds: `ρ ≥ 0.5` would leave a holder less than half of its TTL.
    const LIMIT_PPM: u32 = 500_000;

    /// `ρ = ppm / 1_000_000`; refused unless `ρ < 0.5`.
    pub fn from_ppm(ppm: u32) -> Result<Self, DriftError> {
        if ppm >= Self::LIMIT_PPM {
            return Err(DriftError {
                ppm,
                max: Self::LIMIT_PPM,
            });
        }
        Ok(Self { ppm })
    }

    /// The bound in parts per million.
    pub fn ppm(self) -> u32 {
        self.ppm
    }

    /// `d·(1−ρ)`, rounded down: how long a holder may trust a lease of length `d`.
    pub fn shrink(self, d: Duration) -> Duration {
        scale(d, 1_000_000 - u128::from(self.ppm), false)
    }

    /// `d·(1+ρ)`, rounded up: how long a watcher must wait before a lease of length `d`
    /// has surely run out.
    pub fn stretch(self, d: Duration) -> Duration {
        scale(d, 1_000_000 + u128::from(self.ppm), true)
    }
}

fn scale(d: Duration, per_million: u128, round_up: bool) -> Duration {
    let n = d.as_nanos() * per_million;
    let q = if round_up {
        n.div_ceil(1_000_000)
    } else {
        n / 1_000_000
    };
    Duration::from_nanos(u64::try_from(q).unwrap_or(u64::MAX))
}

/// The pinned hash of the claims plane: FNV-1a 64 over every part, each prefixed by its
/// length (u32 LE) so that part boundaries count, then the SplitMix64 finaliser (the same
/// construction as [`crate::quorum::hrw_weight`]). Pinned: shards and HRW preferences are
/// computed from it by every peer, across versions and platforms; never change it
/// without a cluster-wide migration.
pub fn pinned_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes();
        for b in len.iter().chain(part.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The request-id client of one holder life and TTL: a pinned hash of the node name, its
/// boot incarnation and the TTL in milliseconds. The register keeps this client's
/// at-most-once record while the shard holds a session of that node, incarnation and TTL
/// (see "At-most-once with bounded records" above).
pub fn holder_client(node: &str, incarnation: u64, ttl_ms: u64) -> u64 {
    pinned_hash(&[
        node.as_bytes(),
        &incarnation.to_le_bytes(),
        b"holder",
        &ttl_ms.to_le_bytes(),
    ])
}

/// The request-id client of one watcher (or other) life: a pinned hash of the node name,
/// its boot incarnation and a role (`"holder"`, `"watcher"`). Unique per life with
/// overwhelming probability (64 bits), so that a restarted node never collides with the
/// at-most-once record of its previous life.
pub fn client_id(node: &str, incarnation: u64, role: &str) -> u64 {
    pinned_hash(&[node.as_bytes(), &incarnation.to_le_bytes(), role.as_bytes()])
}

/// Why the quorum plane cannot serve a call right now.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum Unavailable {
    /// The cluster has no voters configured: claims and strong names are off. Nothing
    /// was submitted; configure `--voters` to use them (eventual names are a separate
    /// API and are never used instead).
    #[error("no voters are configured")]
    NoVoters,
    /// This node reaches fewer than a majority of the voters (it is on a minority side of
    /// a partition, or voters are down). Nothing was submitted; retry after the partition
    /// heals.
    #[error("only {reachable} of the {needed} voters needed for a quorum are reachable")]
    NoQuorum {
        /// Voters this node currently reaches.
        reachable: usize,
        /// The quorum size.
        needed: usize,
    },
}

/// Why a claims or strong-name call failed, as the caller of the [`Holder`] sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ClaimsError {
    /// The quorum plane is unavailable; nothing was submitted and nothing changed.
    #[error("claims unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: Unavailable,
    },
    /// The shard table refused the change (e.g. the task is held by another session, a
    /// name is taken, a version is stale, bad input). Nothing changed in the table.
    #[error("refused: {0}")]
    Rejected(ClaimReject),
    /// No quorum answered in time, even after retries under the same request id: the
    /// change may or may not have taken effect (it is applied at most once). For a claim,
    /// a later renew reveals it: the task then arrives as [`HolderEvent::Assigned`].
    #[error("timed out; the change may or may not have taken effect")]
    Timeout,
    /// This holder's session in the shard was lost (evicted, expired or never opened)
    /// before the call could use it. The holder forgot the session; calling again opens
    /// a new one.
    #[error("the session in this shard was lost")]
    SessionLost,
    /// This holder does not hold the task (nothing was submitted).
    #[error("task {task:?} is not held by this holder")]
    NotHeld {
        /// The task.
        task: String,
    },
    /// A newer change of this holder on the same shard was applied first, so this one
    /// never will be. Nothing changed. (Only a shell that reorders submissions causes it.)
    #[error("superseded by a newer change of this holder")]
    Superseded,
    /// Too many calls are queued in this holder; nothing was submitted. Back off.
    #[error("too many calls in flight (at most {max})")]
    Overloaded {
        /// The queue bound.
        max: usize,
    },
}
