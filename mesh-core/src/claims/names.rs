//! Strong names outside the quorum round: the cached `whereis` and the receiver's check.
//!
//! A linearizable `whereis` is one quorum round ([`Holder::whereis`](super::Holder::whereis)).
//! The default read is this cache: the names of each shard as of the newest table this
//! node learned (from its own results, or gossiped by peers), each with its **version**.
//! A send to a strong name carries the version the sender resolved; the receiving node
//! refuses it unless that version is the one it knows as current for the name — a sender
//! with a stale cache is told so and re-resolves, and a message never reaches an owner
//! that lost the name.
//!
//! Invariants: a shard's cached names only move forward (a table with a lower
//! `next_token` than the cached one is ignored); the cache never invents an entry; a send
//! is accepted only for an exact `(owner, version)` match.
//!
//! The cache is a hint for *finding* an owner; nothing that must be unique is decided on
//! it (that is what versions and the receiver's check are for).

use super::table::{shard_of, ShardId, ShardTable, StrongName};
use crate::pid::Pid;
use std::collections::BTreeMap;

/// Why a receiving node refused a send to a strong name. Nothing was delivered.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SendRefused {
    /// The sender's version is older than the current one: re-resolve and resend.
    #[error("stale version; the current one is {current}")]
    Stale {
        /// The version this node knows as current.
        current: u64,
    },
    /// This node does not know the name at that version (released, or not yet learned):
    /// re-resolve with a linearizable `whereis`.
    #[error("name not known at that version (known: {known:?})")]
    NotCurrent {
        /// The version this node knows, if any.
        known: Option<u64>,
    },
    /// The name at that version belongs to another process.
    #[error("the name belongs to {owner}")]
    WrongOwner {
        /// The owner at that version.
        owner: Pid,
    },
}

/// What to do with a process an agent keeps to own a strong name (one registered
/// without a PID), judged on the cache ([`NameCache::judge_kept`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeptVerdict {
    /// The name is gone, or owned by another process, since its registration: end the
    /// process.
    End,
    /// The cache shows the process the owner at this version (its registration timed
    /// out but took effect): remember the version.
    Learn(u64),
}

/// Counters of a name cache.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NameCacheStats {
    /// Shard tables learned.
    pub learned: u64,
    /// Shard tables dropped because an equal or newer one was cached.
    pub dropped_stale: u64,
    /// Sends accepted.
    pub sends_accepted: u64,
    /// Sends refused.
    pub sends_refused: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Cached {
    stamp: u64,
    names: BTreeMap<String, StrongName>,
}

/// The names of every shard as of the newest table seen.
#[derive(Clone, Debug)]
pub struct NameCache {
    shards: u32,
    cached: BTreeMap<ShardId, Cached>,
    stats: NameCacheStats,
}

impl NameCache {
    /// An empty cache for a cluster of `shards` shards.
    pub fn new(shards: u32) -> Self {
        Self {
            shards,
            cached: BTreeMap::new(),
            stats: NameCacheStats::default(),
        }
    }

    /// Learn a shard's names from a table of it (a linearizable result). Returns whether
    /// the cache changed.
    pub fn learn(&mut self, shard: ShardId, table: &ShardTable) -> bool {
        self.learn_names(shard, table.next_token, &table.names)
    }

    /// Learn a shard's names as of stamp `next_token` (what a peer gossips, see
    /// [`NameCache::snapshot`]). Older or equal stamps are ignored.
    pub fn learn_names(
        &mut self,
        shard: ShardId,
        next_token: u64,
        names: &BTreeMap<String, StrongName>,
    ) -> bool {
        let cached = self.cached.entry(shard).or_default();
        if next_token <= cached.stamp {
            self.stats.dropped_stale += 1;
            return false;
        }
        cached.stamp = next_token;
        cached.names = names.clone();
        self.stats.learned += 1;
        true
    }

    /// A shard's cached names and their stamp, to gossip.
    pub fn snapshot(&self, shard: ShardId) -> Option<(u64, &BTreeMap<String, StrongName>)> {
        self.cached.get(&shard).map(|c| (c.stamp, &c.names))
    }

    /// The cached `whereis`: the owner and version of `name` as of the newest table seen
    /// (possibly stale; send with the version, the receiver checks it).
    pub fn whereis(&self, name: &str) -> Option<&StrongName> {
        let shard = shard_of(name.as_bytes(), self.shards);
        self.cached.get(&shard)?.names.get(name)
    }

    /// The receiving node's check of a send to `name` at `version` for process `to`.
    pub fn check_send(&mut self, name: &str, version: u64, to: &Pid) -> Result<(), SendRefused> {
        let known = self.whereis(name).cloned();
        let verdict = match known {
            Some(n) if n.version > version => Err(SendRefused::Stale { current: n.version }),
            Some(n) if n.version == version && n.owner != *to => {
                Err(SendRefused::WrongOwner { owner: n.owner })
            }
            Some(n) if n.version == version => Ok(()),
            other => Err(SendRefused::NotCurrent {
                known: other.map(|n| n.version),
            }),
        };
        match verdict {
            Ok(()) => self.stats.sends_accepted += 1,
            Err(_) => self.stats.sends_refused += 1,
        }
        verdict
    }

    /// Judges a kept process `pid` registered as `name` at `version` (0: unknown, the
    /// registration timed out). `None`: keep it as it is. A process of unknown version is
    /// kept until the cache shows it the owner (a cache that has not learned the
    /// registration yet looks the same as one where it never happened); one of a known
    /// version ends once the cache shows the name owned by another process at a newer
    /// version, or absent from a table newer than the registration.
    pub fn judge_kept(&self, name: &str, pid: &Pid, version: u64) -> Option<KeptVerdict> {
        match self.whereis(name) {
            Some(e) if e.owner == *pid && version == 0 => Some(KeptVerdict::Learn(e.version)),
            Some(e) if e.owner != *pid && version > 0 && e.version > version => {
                Some(KeptVerdict::End)
            }
            Some(_) => None,
            None => {
                let shard = shard_of(name.as_bytes(), self.shards);
                let newer = self
                    .snapshot(shard)
                    .is_some_and(|(stamp, _)| stamp > version);
                (version > 0 && newer).then_some(KeptVerdict::End)
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> &NameCacheStats {
        &self.stats
    }
}
