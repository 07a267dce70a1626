//! Submitting shard changes: one in flight per shard, retries under the same request id.
//!
//! Shared by the [`Holder`](super::Holder) and the [`Watcher`](super::Watcher). The
//! register's at-most-once table keeps only the *last* request of each client per key,
//! so a client must run its changes on one shard one at a time, in request-id order, and
//! retry a timed-out change under the *same* id before it moves on (otherwise the retry
//! would be superseded, or the newer change applied twice). That is this queue.
//!
//! It also records `t0` for every change: the `now` of the input call at which the
//! change became ready to send (the shell sends what [`Submitter::poll_submit`] hands out
//! right after that call returns, so `t0` is no later than the real send). A retry keeps
//! the `t0` of the first attempt: the change may have been applied by that attempt.

use super::table::{ShardChange, ShardId};
use super::ShardOutcome;
use crate::quorum::{ProposeError, RequestId};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// A change to propose on the quorum plane: on register `shard`, at most once by
/// `request`. The shell hands the proposer's completion back by `request`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Submission {
    /// The register.
    pub shard: ShardId,
    /// The change.
    pub change: ShardChange,
    /// Its at-most-once id (reads carry one too; the register does not record reads).
    pub request: RequestId,
}

/// Counters of a submit queue; part of the holder's and the watcher's stats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubmitStats {
    /// Changes handed to the shell for the first time.
    pub submitted: u64,
    /// Re-submissions of a timed-out change under the same request id.
    pub retried: u64,
    /// Changes that finished with a decision (applied, refused or superseded).
    pub decided: u64,
    /// Changes that timed out on every attempt (indeterminate).
    pub timed_out: u64,
    /// Completions dropped: another client's, unknown or already finished request ids
    /// (a duplicate or a completion for a previous life).
    pub dropped_unknown: u64,
}

impl SubmitStats {
    /// Adds `o`'s counters to these.
    pub fn add(&mut self, o: &Self) {
        self.submitted += o.submitted;
        self.retried += o.retried;
        self.decided += o.decided;
        self.timed_out += o.timed_out;
        self.dropped_unknown += o.dropped_unknown;
    }
}

/// A change that finished (decided or out of retries).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Completed<T> {
    /// The register.
    pub(crate) shard: ShardId,
    /// The change.
    pub(crate) change: ShardChange,
    /// What the caller attached to it.
    pub(crate) tag: T,
    /// When it first became ready to send.
    pub(crate) t0: Instant,
    /// The proposer's last answer.
    pub(crate) result: Result<ShardOutcome, ProposeError>,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    seq: u64,
    change: ShardChange,
    tag: T,
    t0: Option<Instant>,
    attempts: u32,
}

#[derive(Clone, Debug)]
struct Queue<T> {
    active: Option<Entry<T>>,
    waiting: VecDeque<Entry<T>>,
}

/// Per-shard FIFO of changes with one in flight per shard.
#[derive(Clone, Debug)]
pub(crate) struct Submitter<T> {
    client: u64,
    next_seq: u64,
    retries: u32,
    queues: BTreeMap<ShardId, Queue<T>>,
    /// In-flight request seq → its shard.
    in_flight: BTreeMap<u64, ShardId>,
    ready: VecDeque<Submission>,
    len: usize,
    stats: SubmitStats,
}

impl<T> Submitter<T> {
    /// A queue for request-id client `client`, retrying a timed-out change `retries`
    /// more times, numbering its requests from `first_seq`.
    pub(crate) fn new(client: u64, retries: u32, first_seq: u64) -> Self {
        Self {
            client,
            next_seq: first_seq.max(1),
            retries,
            queues: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            ready: VecDeque::new(),
            len: 0,
            stats: SubmitStats::default(),
        }
    }

    pub(crate) fn client(&self) -> u64 {
        self.client
    }

    /// Changes queued or in flight.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn stats(&self) -> &SubmitStats {
        &self.stats
    }

    /// Queue `change` on `shard`; it is sent once every earlier change on that shard
    /// finished.
    pub(crate) fn enqueue(&mut self, now: Instant, shard: ShardId, change: ShardChange, tag: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.len += 1;
        let entry = Entry {
            seq,
            change,
            tag,
            t0: None,
            attempts: 0,
        };
        let queue = self.queues.entry(shard).or_insert_with(|| Queue {
            active: None,
            waiting: VecDeque::new(),
        });
        queue.waiting.push_back(entry);
        if queue.active.is_none() {
            self.start_next(now, shard);
        }
    }

    /// The next change to propose.
    pub(crate) fn poll_submit(&mut self) -> Option<Submission> {
        self.ready.pop_front()
    }

    /// The proposer finished `request`. A timeout with retries left re-submits it (same
    /// id, same `t0`) and returns `None`; otherwise the change is finished and the next
    /// one on its shard starts. Unknown ids are counted and ignored.
    pub(crate) fn handle_completion(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<ShardOutcome, ProposeError>,
    ) -> Option<Completed<T>> {
        let shard = match self.in_flight.get(&request.seq) {
            Some(shard) if request.client == self.client => *shard,
            _ => {
                self.stats.dropped_unknown += 1;
                return None;
            }
        };
        let queue = self.queues.get_mut(&shard)?;
        let active = queue.active.as_mut()?;
        if result.is_err() && active.attempts <= self.retries {
            active.attempts += 1;
            self.stats.retried += 1;
            self.ready.push_back(Submission {
                shard,
                change: active.change.clone(),
                request,
            });
            return None;
        }
        let done = queue.active.take()?;
        self.in_flight.remove(&request.seq);
        self.len -= 1;
        match result {
            Ok(_) => self.stats.decided += 1,
            Err(_) => self.stats.timed_out += 1,
        }
        self.start_next(now, shard);
        Some(Completed {
            shard,
            change: done.change,
            tag: done.tag,
            t0: done.t0.unwrap_or(now),
            result,
        })
    }

    fn start_next(&mut self, now: Instant, shard: ShardId) {
        let Some(queue) = self.queues.get_mut(&shard) else {
            return;
        };
        let Some(mut entry) = queue.waiting.pop_front() else {
            self.queues.remove(&shard);
            return;
        };
        entry.t0 = Some(now);
        entry.attempts = 1;
        self.in_flight.insert(entry.seq, shard);
        self.stats.submitted += 1;
        self.ready.push_back(Submission {
            shard,
            change: entry.change.clone(),
            request: RequestId {
                client: self.client,
                seq: entry.seq,
            },
        });
        queue.active = Some(entry);
    }
}
