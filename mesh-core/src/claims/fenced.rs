//! The downstream side of fencing: a resource that refuses stale holders.
//!
//! A holder can be paused at any moment — between its validity check and its write, for
//! longer than its TTL — and wake up believing it still holds the task. The lease protocol
//! alone cannot stop that write; the resource must. Every effect carries the claim's
//! token, and the resource keeps, per task, the highest token it has applied **in the
//! same atomic step as the effect**: an effect with a lower token is refused.
//!
//! Invariant: for every task, the tokens of the applied effects never decrease.
//!
//! A downstream system does the same in its own storage, in one transaction:
//!
//! ```text
//! UPDATE jobs SET state = $state, fence = $token
//!  WHERE id = $task AND fence <= $token;      -- 0 rows: refused, a newer holder wrote
//! ```
//!
//! (or a compare-and-set on a `(fence, value)` pair). Keeping the fence anywhere else
//! than next to the data — a cache, a second table updated afterwards — reopens the race.
//! [`ShardTable::validate`](super::ShardTable::validate) against a linearizable read is
//! the other check, for systems that cannot store a fence: it narrows the window but,
//! unlike a fence, cannot close it.
//!
//! ```
//! use mesh_core::claims::{FenceError, FencedResource};
//!
//! let mut jobs: FencedResource<Vec<&str>> = FencedResource::new();
//! jobs.apply("job-1", 7, |log| log.push("old holder, first write")).unwrap();
//! jobs.apply("job-1", 9, |log| log.push("new holder")).unwrap();
//! // The old holder wakes up from a long pause and writes with its token 7: refused.
//! let late = jobs.apply("job-1", 7, |log| log.push("stale write"));
//! assert_eq!(late, Err(FenceError::Stale { token: 7, highest: 9 }));
//! assert_eq!(jobs.get("job-1").map(Vec::len), Some(2));
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why an effect was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FenceError {
    /// A higher token was already applied for this task: the caller's claim is stale
    /// (it was evicted or released and the task moved on). The effect did not run.
    #[error("token {token} is below the highest applied token {highest}")]
    Stale {
        /// The refused token.
        token: u64,
        /// The highest token applied so far.
        highest: u64,
    },
}

/// Counters of a fenced resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FencedStats {
    /// Effects applied.
    pub applied: u64,
    /// Effects refused because their token was stale.
    pub refused_stale: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Entry<T> {
    highest: u64,
    value: T,
}

/// Per-task state `T` guarded by the highest token applied to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FencedResource<T> {
    entries: BTreeMap<String, Entry<T>>,
    stats: FencedStats,
}

impl<T> Default for FencedResource<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            stats: FencedStats::default(),
        }
    }
}

impl<T: Default> FencedResource<T> {
    /// An empty resource.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `effect` on the task's state if `token` is at least the highest token applied
    /// to it, and raise that highest token — in one step. Otherwise refuse and change
    /// nothing. The effect must not fail half-way: compute first, then mutate.
    pub fn apply<R>(
        &mut self,
        task: &str,
        token: u64,
        effect: impl FnOnce(&mut T) -> R,
    ) -> Result<R, FenceError> {
        if let Some(e) = self.entries.get(task) {
            if token < e.highest {
                self.stats.refused_stale += 1;
                return Err(FenceError::Stale {
                    token,
                    highest: e.highest,
                });
            }
        }
        let e = self
            .entries
            .entry(task.to_owned())
            .or_insert_with(|| Entry {
                highest: token,
                value: T::default(),
            });
        e.highest = token;
        self.stats.applied += 1;
        Ok(effect(&mut e.value))
    }
}

impl<T> FencedResource<T> {
    /// The highest token applied to `task`.
    pub fn highest(&self, task: &str) -> Option<u64> {
        self.entries.get(task).map(|e| e.highest)
    }

    /// The task's state.
    pub fn get(&self, task: &str) -> Option<&T> {
        self.entries.get(task).map(|e| &e.value)
    }

    /// The counters.
    pub fn stats(&self) -> &FencedStats {
        &self.stats
    }
}
