//! The watcher: evicts the expired sessions of the shards this node watches.
//!
//! The shell makes a node watch the shards it is the preferred proposer of
//! ([`crate::quorum::preferred_proposer`] over `V ∩ alive`); during a change of view two
//! nodes may both watch a shard, which is safe (each times from its own observations).
//!
//! Sans-IO. Inputs: [`Watcher::watch`]/[`Watcher::unwatch`], [`Watcher::observe`] (any
//! linearizable table of a watched shard this node saw), [`Watcher::node_down`]/
//! [`Watcher::node_up`] (SWIM), [`Watcher::handle_completion`] and
//! [`Watcher::handle_timeout`]. Outputs: [`Watcher::poll_submit`] (reads and evicts) and
//! [`Watcher::poll_event`].
//!
//! # Invariants
//!
//! - *Never early*: for each session the watcher starts a timer on **its own clock** when
//!   it first learns a `renew_seq` value (from a result, i.e. after that refresh
//!   committed), and proposes `Evict(sid, renew_seq)` only once `TTL·(1+ρ)` has elapsed
//!   on that clock. Learning the same value again never restarts the timer; a different
//!   value always does. An observation older than one already seen (a lower
//!   `next_token`) is ignored.
//! - *SWIM only hurries reads*: [`Watcher::node_down`] triggers an early read of the
//!   shards where the node has sessions, never a shorter TTL.
//! - The table refuses an evict whose `renew_seq` moved, so a renew that raced the timer
//!   wins.
//!
//! Liveness: every watched shard is read every `refresh`, so a session opened or renewed
//! just before its holder died is learned within `refresh` and evicted `TTL·(1+ρ)` later.
//! With `reassign`, the evicted session's tasks go, in the same change, to the
//! HRW-preferred live sessions ([`preferred_owner`]).

use super::submit::{Submission, SubmitStats, Submitter};
use super::table::{preferred_owner, ClaimReject, SessionId, ShardChange, ShardId, ShardTable};
use super::{client_id, Drift, ShardOutcome};
use crate::quorum::{ProposeError, RequestId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// How a watcher behaves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatcherConfig {
    /// The request-id client of this life (see [`client_id`]; distinct from the holder's).
    pub client: u64,
    /// The clock-rate error bound ρ of every node.
    pub drift: Drift,
    /// How often each watched shard is read.
    pub refresh: Duration,
    /// Hand an evicted session's tasks to the HRW-preferred live sessions in the same
    /// change (otherwise they are freed).
    pub reassign: bool,
    /// Re-submissions of a timed-out change under the same request id.
    pub retries: u32,
}

impl WatcherConfig {
    /// Defaults: ρ = 0.1 %, refresh 1 s, no reassignment, 1 retry.
    pub fn new(node: &str, incarnation: u64) -> Self {
        Self {
            client: client_id(node, incarnation, "watcher"),
            drift: Drift { ppm: 1_000 },
            refresh: Duration::from_secs(1),
            reassign: false,
            retries: 1,
        }
    }
}

/// What a watcher reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WatcherEvent {
    /// A session was evicted by this watcher.
    Evicted {
        /// The shard.
        shard: ShardId,
        /// The evicted session.
        sid: SessionId,
        /// Tasks handed over in the same change, with their new sessions.
        reassigned: Vec<(String, SessionId)>,
    },
}

/// Counters a watcher keeps; the shell publishes them as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct WatcherStats {
    /// The submit queue's counters.
    pub submit: SubmitStats,
    /// Reads submitted.
    pub reads: u64,
    /// Evicts (and reassigns) submitted.
    pub evicts: u64,
    /// Sessions evicted.
    pub evicted: u64,
    /// Tasks handed over by reassignment.
    pub reassigned: u64,
    /// Evicts refused because the session was refreshed meanwhile.
    pub refused_moved: u64,
    /// Evicts refused because the session was already gone.
    pub refused_gone: u64,
    /// Evicts refused for another reason (e.g. a reassignment target vanished).
    pub refused_other: u64,
    /// Reads and evicts that timed out on every attempt.
    pub timed_out: u64,
    /// Observations dropped: older than one already seen.
    pub dropped_stale: u64,
    /// Observations ignored because the shard is not watched here (normal, not a drop:
    /// every result of a change this node proposed or forwarded is shown to it).
    pub ignored_unwatched: u64,
}

#[derive(Clone, Debug)]
struct Seen {
    renew_seq: u64,
    ttl: Duration,
    /// When this watcher learned `renew_seq` (its own clock).
    since: Instant,
    evicting: bool,
}

#[derive(Clone, Debug)]
struct Watched {
    /// `next_token` of the newest table observed.
    stamp: u64,
    /// That table (to aim reassignments).
    table: ShardTable,
    sessions: BTreeMap<SessionId, Seen>,
    next_read: Instant,
    reading: bool,
}

/// Evicts expired sessions (sans-IO).
#[derive(Clone, Debug)]
pub struct Watcher {
    config: WatcherConfig,
    submitter: Submitter<()>,
    shards: BTreeMap<ShardId, Watched>,
    down: BTreeSet<String>,
    events: VecDeque<WatcherEvent>,
    stats: WatcherStats,
}

impl Watcher {
    /// A watcher for this node's life.
    pub fn new(config: WatcherConfig) -> Self {
        Self {
            submitter: Submitter::new(config.client, config.retries, 1),
            config,
            shards: BTreeMap::new(),
            down: BTreeSet::new(),
            events: VecDeque::new(),
            stats: WatcherStats::default(),
        }
    }

    /// The request-id client of this watcher (route completions by it).
    pub fn client(&self) -> u64 {
        self.submitter.client()
    }

    /// The counters.
    pub fn stats(&self) -> WatcherStats {
        WatcherStats {
            submit: self.submitter.stats().clone(),
            ..self.stats.clone()
        }
    }

    /// The shards watched.
    pub fn watched(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.shards.keys().copied()
    }

    /// Start watching `shard` (this node became its preferred proposer): read it now.
    /// Timers start from what that read shows, never from anything earlier.
    pub fn watch(&mut self, now: Instant, shard: ShardId) {
        self.shards.entry(shard).or_insert_with(|| Watched {
            stamp: 0,
            table: ShardTable::default(),
            sessions: BTreeMap::new(),
            next_read: now,
            reading: false,
        });
    }

    /// Stop watching `shard`; its timers are dropped (a later watch starts afresh).
    pub fn unwatch(&mut self, shard: ShardId) {
        self.shards.remove(&shard);
    }

    /// SWIM declared `node` down: read the shards where it has sessions now (its
    /// sessions still expire only after `TTL·(1+ρ)`), and aim no reassignment at it.
    pub fn node_down(&mut self, now: Instant, node: &str) {
        self.down.insert(node.to_owned());
        for w in self.shards.values_mut() {
            if w.sessions.keys().any(|sid| sid.node == node) {
                w.next_read = w.next_read.min(now);
            }
        }
    }

    /// SWIM sees `node` alive again.
    pub fn node_up(&mut self, node: &str) {
        self.down.remove(node);
    }

    /// Learn from a linearizable table of `shard` seen at `now`: a result of any change
    /// this node made or proposed. On the shard's preferred proposer that is every commit,
    /// so each refresh is learned as it commits.
    pub fn observe(&mut self, now: Instant, shard: ShardId, table: &ShardTable) {
        let Some(w) = self.shards.get_mut(&shard) else {
            self.stats.ignored_unwatched += 1;
            return;
        };
        if table.next_token < w.stamp {
            self.stats.dropped_stale += 1;
            return;
        }
        w.stamp = table.next_token;
        w.table = table.clone();
        w.sessions.retain(|sid, _| table.sessions.contains_key(sid));
        for (sid, s) in &table.sessions {
            let known = w
                .sessions
                .get(sid)
                .is_some_and(|seen| seen.renew_seq == s.renew_seq);
            if !known {
                w.sessions.insert(
                    sid.clone(),
                    Seen {
                        renew_seq: s.renew_seq,
                        ttl: Duration::from_millis(s.ttl_ms),
                        since: now,
                        evicting: false,
                    },
                );
            }
        }
    }

    /// When [`Watcher::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let drift = self.config.drift;
        self.shards
            .values()
            .flat_map(|w| {
                let read = (!w.reading).then_some(w.next_read);
                let evicts = w
                    .sessions
                    .values()
                    .filter(|s| !s.evicting)
                    .map(move |s| s.since + drift.stretch(s.ttl));
                read.into_iter().chain(evicts)
            })
            .min()
    }

    /// Read the shards that are due and evict the sessions whose time ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let drift = self.config.drift;
        let shards: Vec<ShardId> = self.shards.keys().copied().collect();
        for shard in shards {
            let Some(w) = self.shards.get_mut(&shard) else {
                continue;
            };
            if !w.reading && w.next_read <= now {
                w.reading = true;
                w.next_read = now + self.config.refresh;
                self.stats.reads += 1;
                self.submitter.enqueue(now, shard, ShardChange::Read, ());
            }
            let expired: Vec<(SessionId, u64)> = w
                .sessions
                .iter_mut()
                .filter(|(_, s)| !s.evicting && s.since + drift.stretch(s.ttl) <= now)
                .map(|(sid, s)| {
                    s.evicting = true;
                    (sid.clone(), s.renew_seq)
                })
                .collect();
            for (sid, seen) in expired {
                let change = self.evict_change(now, shard, sid, seen);
                self.stats.evicts += 1;
                self.submitter.enqueue(now, shard, change, ());
            }
        }
    }

    /// The proposer finished `request` (one of this watcher's submissions).
    pub fn handle_completion(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<ShardOutcome, ProposeError>,
    ) {
        let Some(done) = self.submitter.handle_completion(now, request, result) else {
            return;
        };
        let shard = done.shard;
        if let Some(w) = self.shards.get_mut(&shard) {
            match &done.change {
                ShardChange::Read => w.reading = false,
                ShardChange::Evict { sid, .. } | ShardChange::Reassign { sid, .. } => {
                    if let Some(s) = w.sessions.get_mut(sid) {
                        s.evicting = false;
                    }
                }
                _ => {}
            }
        }
        let outcome = match &done.result {
            Err(ProposeError::Timeout) => {
                self.stats.timed_out += 1;
                return;
            }
            Ok(outcome) => outcome,
        };
        let Some(decision) = outcome.decision() else {
            return; // superseded
        };
        if let Err(reason) = decision {
            match reason {
                ClaimReject::RenewSeqMoved { .. } => self.stats.refused_moved += 1,
                ClaimReject::NoSession { sid } if Some(sid) == evicted_sid(&done.change) => {
                    self.stats.refused_gone += 1;
                }
                _ => self.stats.refused_other += 1,
            }
        }
        let table = outcome.value().cloned().unwrap_or_default();
        if let (Ok(_), ShardChange::Evict { sid, .. } | ShardChange::Reassign { sid, .. }) =
            (decision, &done.change)
        {
            let reassigned: Vec<(String, SessionId)> = match &done.change {
                ShardChange::Reassign { to, .. } => {
                    to.iter().map(|(t, s)| (t.clone(), s.clone())).collect()
                }
                _ => Vec::new(),
            };
            self.stats.evicted += 1;
            self.stats.reassigned += reassigned.len() as u64;
            self.events.push_back(WatcherEvent::Evicted {
                shard,
                sid: sid.clone(),
                reassigned,
            });
        }
        if self.shards.contains_key(&shard) {
            self.observe(now, shard, &table);
        }
    }

    /// The next change to propose.
    pub fn poll_submit(&mut self) -> Option<Submission> {
        self.submitter.poll_submit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<WatcherEvent> {
        self.events.pop_front()
    }

    /// `Evict`, or with `reassign` a `Reassign` of the session's tasks (as last seen) to
    /// the HRW-preferred live sessions.
    fn evict_change(&self, now: Instant, shard: ShardId, sid: SessionId, seen: u64) -> ShardChange {
        let evict = ShardChange::Evict {
            sid: sid.clone(),
            seen_renew_seq: seen,
        };
        let Some(w) = self.shards.get(&shard).filter(|_| self.config.reassign) else {
            return evict;
        };
        let drift = self.config.drift;
        // Live: present, not being evicted, not expired, on a node SWIM sees alive. One
        // session per node: the newest.
        let mut live: BTreeMap<&str, &SessionId> = BTreeMap::new();
        for (other, s) in &w.sessions {
            let alive = *other != sid
                && !s.evicting
                && now < s.since + drift.stretch(s.ttl)
                && !self.down.contains(&other.node);
            if alive {
                live.insert(other.node.as_str(), other);
            }
        }
        let to: BTreeMap<String, SessionId> = w
            .table
            .claims_of(&sid)
            .filter_map(|(task, _)| {
                let node = preferred_owner(task, live.keys().copied())?;
                Some((task.to_owned(), (*live.get(node)?).clone()))
            })
            .collect();
        if to.is_empty() {
            return evict;
        }
        ShardChange::Reassign {
            sid,
            seen_renew_seq: seen,
            to,
        }
    }
}

fn evicted_sid(change: &ShardChange) -> Option<&SessionId> {
    match change {
        ShardChange::Evict { sid, .. } | ShardChange::Reassign { sid, .. } => Some(sid),
        _ => None,
    }
}
