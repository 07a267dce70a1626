//! The claims and strong-name measurements of `claims-bench`, mesh side (the etcd side
//! is [`crate::etcd`]).
//!
//! The mesh cluster ([`MeshCluster`]) is five worker processes of this binary
//! ([`crate::worker`]), each embedding a [`mesh_agent::runtime::Agent`] with real QUIC on
//! loopback: the voters `n1,n2,n3` (each an acceptor with its redb store in a data
//! directory on the real disk, fsync on, group commit across shards) and two
//! non-voters, `n4` (the client of the latency and throughput runs, and the retrier of
//! the failover runs) and `n5` (the holder that is killed). A non-voter's call goes to
//! the shard's HRW-preferred proposer among the voters, which runs it on the three
//! acceptors.
//!
//! - **Latency** ([`ClaimsCommand::Latency`]): one client, one operation at a time. A
//!   claim op claims a fresh task (tasks go round the shards, whose sessions were
//!   opened beforehand by [`ClaimsCommand::Warm`]) and, untimed, releases it; the
//!   sample is the time of `AgentHandle::claim` until its result. A strong-name op
//!   registers a fresh name (`AgentHandle::register_strong`, not ephemeral) and,
//!   untimed, releases it.
//! - **Throughput** ([`ClaimsCommand::Window`]): `clients` concurrent clients on one
//!   agent for a fixed window, client `c` on shard `c mod shards`, each claiming a
//!   fresh task of its shard and releasing it, again and again. A claim counts if it
//!   completed within the window; errors are counted by kind.
//! - **Failover** ([`ClaimsCommand::Hold`], [`ClaimsCommand::Acquire`]): `n5` claims a
//!   fresh task with TTL `t`; `n4` starts claiming the same task every `every_ms`
//!   (its first refusal is reported as [`ClaimsReply::Trying`]), the harness then
//!   `SIGKILL`s `n5` and times from just before the kill until `n4`'s
//!   [`ClaimsReply::Acquired`] arrives. `n5` is then restarted (same name, ports and
//!   data directory, so a new incarnation) for the next run.
//!
//! Voters report their quorum counters ([`ClaimsCommand::Stats`]) before and after each
//! window, so the tables can say how many durable commits (fsyncs) and keys per commit
//! the run cost.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mesh_agent::runtime::{AgentHandle, ApiError, ProcessHandle};
use mesh_core::claims::{shard_of, CallOk, ClaimsError};
use mesh_core::node::claims_plane::CallError;
use serde::{Deserialize, Serialize};

use crate::cleanup::ScratchDir;
use crate::groups::progress;
use crate::ports::free_ports;
use crate::stats::Percentiles;
use crate::worker::{issue_certs, say, Worker, WorkerArgs, WorkerCommand, WorkerReply};

/// Error counts by kind (`timeout`, `unavailable`, `rejected_held`, `busy`, ...).
pub type ErrorCounts = BTreeMap<String, u64>;

/// What a latency run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOp {
    /// Claim a fresh task (then release it, untimed).
    Claim,
    /// Register a fresh strong name (then release it, untimed).
    StrongName,
}

/// What the harness tells a worker in the claims benchmark (see [`crate::worker`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimsCommand {
    /// Retry a claim until one succeeds (the quorum plane is formed and reachable),
    /// then open a session in every shard for TTL `ttl_ms` (claim and release one
    /// task per shard, concurrently).
    Warm {
        /// The TTL of the sessions.
        ttl_ms: u64,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// `ops` operations of kind `op`, one at a time.
    Latency {
        /// What to time.
        op: ClaimOp,
        /// How many.
        ops: usize,
        /// Claims TTL.
        ttl_ms: u64,
    },
    /// `clients` concurrent claim-and-release loops for `ms` milliseconds.
    Window {
        /// The window.
        ms: u64,
        /// Concurrent clients.
        clients: usize,
        /// Claims TTL.
        ttl_ms: u64,
    },
    /// Claim `task` with TTL `ttl_ms` (retrying while the quorum plane is unavailable)
    /// and keep it (the agent renews it) until the worker dies.
    Hold {
        /// The task.
        task: String,
        /// Its TTL.
        ttl_ms: u64,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// Claim `task` every `every_ms` until it succeeds (then release it, untimed).
    Acquire {
        /// The task.
        task: String,
        /// Claims TTL.
        ttl_ms: u64,
        /// Period of the attempts.
        every_ms: u64,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// This node's quorum counters.
    Stats,
}

impl ClaimsCommand {
    /// Whether the numbers can work.
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Warm { .. } | Self::Hold { .. } | Self::Stats => true,
            Self::Latency { ops, .. } => *ops > 0,
            Self::Window { clients, ms, .. } => *clients > 0 && *ms > 0,
            Self::Acquire { every_ms, .. } => *every_ms > 0,
        }
    }
}

/// Latencies of one kind of operation, microseconds, by nearest rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl LatencySummary {
    /// The summary of `samples` (microseconds); all zero when there are none.
    pub fn of(samples: &[u64]) -> Self {
        let secs: Vec<f64> = samples.iter().map(|&us| us as f64).collect();
        match Percentiles::of(&secs, 0, 0.0) {
            None => Self::default(),
            Some(p) => Self {
                n: samples.len(),
                p50_us: p.p50.value as u64,
                p99_us: p.p99.value as u64,
                max_us: p.max.value as u64,
            },
        }
    }
}

/// A node's quorum counters (see `mesh_core::node::claims_plane::QuorumStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCounters {
    /// Durable commits (one fsync each).
    pub commits: u64,
    /// Keys written by them.
    pub commit_keys: u64,
    /// Changes this node proposed that were decided.
    pub committed: u64,
    /// Prepare requests its proposer sent (a 1-RTT change sends none).
    pub requests_prepare: u64,
    /// Accept requests its proposer sent.
    pub requests_accept: u64,
    /// Changes that timed out.
    pub timeouts: u64,
}

impl QuorumCounters {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            commits: self.commits.saturating_sub(before.commits),
            commit_keys: self.commit_keys.saturating_sub(before.commit_keys),
            committed: self.committed.saturating_sub(before.committed),
            requests_prepare: self
                .requests_prepare
                .saturating_sub(before.requests_prepare),
            requests_accept: self.requests_accept.saturating_sub(before.requests_accept),
            timeouts: self.timeouts.saturating_sub(before.timeouts),
        }
    }

    fn add(&mut self, o: &Self) {
        self.commits += o.commits;
        self.commit_keys += o.commit_keys;
        self.committed += o.committed;
        self.requests_prepare += o.requests_prepare;
        self.requests_accept += o.requests_accept;
        self.timeouts += o.timeouts;
    }
}

/// Time the voters spent in durable commits (from their `mesh_quorum_persist_seconds`
/// and `mesh_quorum_fsync_seconds` histograms), summed over the three.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitTime {
    /// Commits.
    pub count: f64,
    /// Seconds from a commit's hand-off to its end (the transaction and its fsync,
    /// on the blocking thread).
    pub persist_secs: f64,
    /// Seconds of the redb commit itself (the write and its fsync).
    pub fsync_secs: f64,
}

impl CommitTime {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            count: self.count - before.count,
            persist_secs: self.persist_secs - before.persist_secs,
            fsync_secs: self.fsync_secs - before.fsync_secs,
        }
    }

    /// Mean persist time of one commit, milliseconds.
    pub fn mean_persist_ms(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.persist_secs * 1000.0 / self.count)
    }

    /// Mean redb commit (write + fsync) time, milliseconds.
    pub fn mean_fsync_ms(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.fsync_secs * 1000.0 / self.count)
    }
}

/// The sum of every sample of metric `name` (any labels) in Prometheus text.
pub fn metric_total(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(Ok(v)) = value
            .and_then(|v| v.split_whitespace().next())
            .map(str::parse::<f64>)
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// What a worker answers to a [`ClaimsCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimsReply {
    /// Sessions are open in every shard.
    Warm {
        /// From the command until the first successful claim, microseconds.
        first_claim_us: u64,
        /// Shards whose warm-up claim failed.
        failed_shards: u64,
    },
    /// A latency run ended.
    Latency {
        /// The timed operation's latency of every successful op, microseconds, in order.
        samples_us: Vec<u64>,
        /// The untimed follow-up (release) of every op, microseconds.
        release_us: Vec<u64>,
        /// Failed operations by kind.
        errors: ErrorCounts,
    },
    /// A throughput window ended.
    Window {
        /// Claims that completed within the window.
        claims: u64,
        /// The window, microseconds.
        elapsed_us: u64,
        /// Claim latency under this load.
        latency: LatencySummary,
        /// Failed claims and releases by kind.
        errors: ErrorCounts,
    },
    /// The task is held.
    Held {
        /// Its fencing token.
        token: u64,
    },
    /// The first attempt of an acquire was refused (the task is held elsewhere); the
    /// attempts go on.
    Trying {
        /// Why it was refused.
        refused: String,
    },
    /// An acquire succeeded.
    Acquired {
        /// The new fencing token.
        token: u64,
        /// Attempts made.
        attempts: u64,
        /// From the command until the success, microseconds.
        waited_us: u64,
        /// Refused attempts by kind.
        errors: ErrorCounts,
    },
    /// An acquire gave up.
    NotAcquired {
        /// Attempts made.
        attempts: u64,
        /// Refused attempts by kind.
        errors: ErrorCounts,
    },
    /// This node's quorum counters (`None`: no quorum plane).
    Stats(Option<QuorumCounters>),
}

/// Fresh keys sorted by the shard they hash to: `prefix-k` for `k = 0, 1, 2, ...`, each
/// hashed once and kept for its shard until asked for, so that a key of a given shard
/// costs about one hash and one `format!` whatever the shard count. (Searching
/// `prefix-k` for one shard at a time costs `shards` of each per key: at 256 shards that
/// was 7 % of the client agent's CPU in a profile.)
#[derive(Debug, Clone)]
pub struct ShardKeys {
    prefix: String,
    shards: u32,
    next: u64,
    spare: Vec<Vec<String>>,
}

/// Most keys kept per shard; past that, keys of a shard nobody asks for are dropped
/// (every key is fresh, so nothing is lost).
const SPARE_PER_SHARD: usize = 1024;

impl ShardKeys {
    /// Keys `prefix-k` for `shards` shards.
    pub fn new(prefix: &str, shards: u32) -> Self {
        let shards = shards.max(1);
        Self {
            prefix: prefix.to_owned(),
            shards,
            next: 0,
            spare: vec![Vec::new(); shards as usize],
        }
    }

    /// A key never handed out before that hashes to `shard` (modulo the shard count).
    pub fn take(&mut self, shard: u32) -> String {
        let shard = shard % self.shards;
        if let Some(key) = self.spare[shard as usize].pop() {
            return key;
        }
        loop {
            let key = format!("{}-{}", self.prefix, self.next);
            self.next += 1;
            let s = shard_of(key.as_bytes(), self.shards).0;
            if s == shard {
                return key;
            }
            let spare = &mut self.spare[s as usize];
            if spare.len() < SPARE_PER_SHARD {
                spare.push(key);
            }
        }
    }
}

/// The kind of a failed claims call, for the error tables.
pub fn error_kind(e: &CallError) -> String {
    let kind = match e {
        CallError::BadTtl(_) => "bad_ttl",
        CallError::TooManyTtls { .. } => "too_many_ttls",
        CallError::HeldWithOtherTtl { .. } => "held_with_other_ttl",
        CallError::AlreadyHeld { .. } => "already_held",
        CallError::UnderHold { .. } => "under_hold",
        CallError::Claims(c) => match c {
            ClaimsError::Unavailable { .. } => "unavailable",
            ClaimsError::Rejected(r) => {
                let debug = format!("{r:?}");
                let variant = debug
                    .split(|c: char| !c.is_alphanumeric())
                    .next()
                    .unwrap_or("other");
                return format!("rejected_{}", variant.to_lowercase());
            }
            ClaimsError::Timeout => "timeout",
            ClaimsError::SessionLost => "session_lost",
            ClaimsError::NotHeld { .. } => "not_held",
            ClaimsError::Superseded => "superseded",
            ClaimsError::Overloaded { .. } => "overloaded",
        },
    };
    kind.to_owned()
}

/// The outcome of one call as the loops see it: the result, or the error's kind.
fn outcome(r: Result<CallOk, ApiError<CallError>>) -> Result<Result<CallOk, String>> {
    match r {
        Ok(ok) => Ok(Ok(ok)),
        Err(ApiError::Failed(e)) => Ok(Err(error_kind(&e))),
        Err(ApiError::Busy) => Ok(Err("busy".to_owned())),
        Err(ApiError::Stopped) => bail!("the agent stopped"),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn count(errors: &mut ErrorCounts, kind: String) {
    *errors.entry(kind).or_default() += 1;
}

/// A claim that worked, and its untimed release.
struct ClaimDone {
    /// From the call until its result.
    took: Duration,
    /// When the result arrived.
    at: Instant,
    /// The release's latency, if it worked.
    released: Option<Duration>,
}

/// Claims `task` and, if that worked, releases it; a failure is counted in `errors` by
/// kind (after a `Busy`, it backs off 1 ms).
async fn claim_release(
    agent: &AgentHandle,
    task: &str,
    ttl: Duration,
    errors: &mut ErrorCounts,
) -> Result<Option<ClaimDone>> {
    let t0 = Instant::now();
    let claimed = outcome(agent.claim(task, Some(ttl)).await)?;
    let at = Instant::now();
    let took = at - t0;
    let token = match claimed {
        Ok(CallOk::Claimed { token, .. }) => token,
        Ok(other) => {
            count(errors, format!("unexpected {other:?}"));
            return Ok(None);
        }
        Err(kind) => {
            if kind == "busy" {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            count(errors, kind);
            return Ok(None);
        }
    };
    let released = match outcome(agent.release(task, token).await)? {
        Ok(_) => Some(at.elapsed()),
        Err(kind) => {
            count(errors, format!("release_{kind}"));
            None
        }
    };
    Ok(Some(ClaimDone { took, at, released }))
}

/// The claims side of a worker.
pub(crate) struct ClaimsWorker {
    agent: AgentHandle,
    name: String,
    shards: u32,
    /// Numbers the task and name prefixes of each command, so no two commands reuse a
    /// key.
    seq: u64,
    /// The owner of the strong names it registers.
    owner: Option<ProcessHandle>,
}

impl ClaimsWorker {
    /// The claims side of the worker `name` with `shards` shards.
    pub(crate) fn new(agent: &AgentHandle, name: &str, shards: u32) -> Self {
        Self {
            agent: agent.clone(),
            name: name.to_owned(),
            shards,
            seq: 0,
            owner: None,
        }
    }

    fn prefix(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("{what}-{}-{}", self.name, self.seq)
    }

    /// Runs one command (an acquire also writes its [`ClaimsReply::Trying`] line).
    pub(crate) async fn handle(&mut self, cmd: ClaimsCommand) -> Result<ClaimsReply> {
        let ms = Duration::from_millis;
        match cmd {
            ClaimsCommand::Warm { ttl_ms, timeout_ms } => {
                self.warm(ms(ttl_ms), ms(timeout_ms)).await
            }
            ClaimsCommand::Latency { op, ops, ttl_ms } => self.latency(op, ops, ms(ttl_ms)).await,
            ClaimsCommand::Window {
                ms: window,
                clients,
                ttl_ms,
            } => self.window(ms(window), clients, ms(ttl_ms)).await,
            ClaimsCommand::Hold {
                task,
                ttl_ms,
                timeout_ms,
            } => self.hold(&task, ms(ttl_ms), ms(timeout_ms)).await,
            ClaimsCommand::Acquire {
                task,
                ttl_ms,
                every_ms,
                timeout_ms,
            } => {
                self.acquire(&task, ms(ttl_ms), ms(every_ms), ms(timeout_ms))
                    .await
            }
            ClaimsCommand::Stats => {
                let counters = self
                    .agent
                    .call(|n, _| {
                        n.quorum().map(|q| {
                            let s = q.stats();
                            QuorumCounters {
                                commits: s.commits,
                                commit_keys: s.commit_keys,
                                committed: s.committed,
                                requests_prepare: s.requests_prepare,
                                requests_accept: s.requests_accept,
                                timeouts: s.timeouts,
                            }
                        })
                    })
                    .await?;
                Ok(ClaimsReply::Stats(counters))
            }
        }
    }

    async fn warm(&mut self, ttl: Duration, timeout: Duration) -> Result<ClaimsReply> {
        let t0 = Instant::now();
        let mut keys = ShardKeys::new(&self.prefix("warm"), self.shards);
        let first = keys.take(0);
        let mut errors = ErrorCounts::new();
        loop {
            if claim_release(&self.agent, &first, ttl, &mut errors)
                .await?
                .is_some()
            {
                break;
            }
            if t0.elapsed() > timeout {
                bail!(
                    "no claim succeeded within {:.0} s: {errors:?}",
                    timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first_claim = t0.elapsed();
        let mut set = tokio::task::JoinSet::new();
        for shard in 1..self.shards {
            let agent = self.agent.clone();
            let task = keys.take(shard);
            set.spawn(async move {
                let mut errors = ErrorCounts::new();
                claim_release(&agent, &task, ttl, &mut errors).await
            });
        }
        let mut failed = 0;
        while let Some(done) = set.join_next().await {
            if !matches!(done, Ok(Ok(Some(_)))) {
                failed += 1;
            }
        }
        Ok(ClaimsReply::Warm {
            first_claim_us: micros(first_claim),
            failed_shards: failed,
        })
    }

    async fn latency(&mut self, op: ClaimOp, ops: usize, ttl: Duration) -> Result<ClaimsReply> {
        let mut keys = ShardKeys::new(&self.prefix("lat"), self.shards);
        let mut samples = Vec::with_capacity(ops);
        let mut releases = Vec::with_capacity(ops);
        let mut errors = ErrorCounts::new();
        if op == ClaimOp::StrongName && self.owner.is_none() {
            self.owner = Some(self.agent.spawn(None).await?);
        }
        for i in 0..ops {
            let shard = u32::try_from(i % self.shards as usize).unwrap_or(0);
            let key = keys.take(shard);
            match op {
                ClaimOp::Claim => {
                    if let Some(done) = claim_release(&self.agent, &key, ttl, &mut errors).await? {
                        samples.push(micros(done.took));
                        releases.extend(done.released.map(micros));
                    }
                }
                ClaimOp::StrongName => {
                    let owner = match &self.owner {
                        Some(p) => p.pid().clone(),
                        None => bail!("no owner process"),
                    };
                    let t0 = Instant::now();
                    let registered = outcome(self.agent.register_strong(&key, owner, false).await)?;
                    let took = t0.elapsed();
                    match registered {
                        Ok(CallOk::Registered { version, .. }) => {
                            samples.push(micros(took));
                            let t1 = Instant::now();
                            match outcome(self.agent.release_strong(&key, version).await)? {
                                Ok(_) => releases.push(micros(t1.elapsed())),
                                Err(kind) => count(&mut errors, format!("release_{kind}")),
                            }
                        }
                        Ok(other) => count(&mut errors, format!("unexpected {other:?}")),
                        Err(kind) => count(&mut errors, kind),
                    }
                }
            }
        }
        Ok(ClaimsReply::Latency {
            samples_us: samples,
            release_us: releases,
            errors,
        })
    }

    async fn window(
        &mut self,
        window: Duration,
        clients: usize,
        ttl: Duration,
    ) -> Result<ClaimsReply> {
        let keys = std::sync::Arc::new(std::sync::Mutex::new(ShardKeys::new(
            &self.prefix("tp"),
            self.shards,
        )));
        let t0 = Instant::now();
        let deadline = t0 + window;
        let mut set = tokio::task::JoinSet::new();
        for c in 0..clients {
            let agent = self.agent.clone();
            let keys = keys.clone();
            set.spawn(async move {
                let mut errors = ErrorCounts::new();
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    // Client c's i-th task is in shard c + i·clients: with as many
                    // clients as shards each client keeps to its own shard, and one
                    // client goes round them all.
                    let shard = (c as u64 + i * clients as u64) as u32;
                    let task = keys
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take(shard);
                    i += 1;
                    if let Some(done) = claim_release(&agent, &task, ttl, &mut errors).await? {
                        // A claim counts if it completed within the window.
                        if done.at <= deadline {
                            latencies.push(micros(done.took));
                        }
                    }
                }
                Ok::<_, anyhow::Error>((latencies, errors))
            });
        }
        let mut latencies = Vec::new();
        let mut errors = ErrorCounts::new();
        while let Some(done) = set.join_next().await {
            let (l, e) = done.context("a client task failed")??;
            latencies.extend(l);
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
        Ok(ClaimsReply::Window {
            claims: latencies.len() as u64,
            elapsed_us: micros(window),
            latency: LatencySummary::of(&latencies),
            errors,
        })
    }

    async fn hold(&mut self, task: &str, ttl: Duration, timeout: Duration) -> Result<ClaimsReply> {
        let t0 = Instant::now();
        let mut errors = ErrorCounts::new();
        loop {
            match outcome(self.agent.claim(task, Some(ttl)).await)? {
                Ok(CallOk::Claimed { token, .. }) => return Ok(ClaimsReply::Held { token }),
                Ok(other) => bail!("claim answered {other:?}"),
                Err(kind) => count(&mut errors, kind),
            }
            if t0.elapsed() > timeout {
                bail!(
                    "could not claim {task} within {:.0} s: {errors:?}",
                    timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn acquire(
        &mut self,
        task: &str,
        ttl: Duration,
        every: Duration,
        timeout: Duration,
    ) -> Result<ClaimsReply> {
        let t0 = Instant::now();
        let mut errors = ErrorCounts::new();
        let mut attempts = 0u64;
        loop {
            let attempt = Instant::now();
            attempts += 1;
            match outcome(self.agent.claim(task, Some(ttl)).await)? {
                Ok(CallOk::Claimed { token, .. }) => {
                    let waited = t0.elapsed();
                    // Untimed: free it so that the cluster's tables stay small.
                    let _ = self.agent.release(task, token).await;
                    return Ok(ClaimsReply::Acquired {
                        token,
                        attempts,
                        waited_us: micros(waited),
                        errors,
                    });
                }
                Ok(other) => bail!("claim answered {other:?}"),
                Err(kind) => {
                    if attempts == 1 {
                        say(&WorkerReply::Claims(ClaimsReply::Trying {
                            refused: kind.clone(),
                        }));
                    }
                    count(&mut errors, kind);
                }
            }
            if t0.elapsed() > timeout {
                return Ok(ClaimsReply::NotAcquired { attempts, errors });
            }
            tokio::time::sleep(every.saturating_sub(attempt.elapsed())).await;
        }
    }
}

// ----- the harness side -------------------------------------------------------------

/// Knobs of the mesh runs.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    /// Claim shards.
    pub shards: u32,
    /// Default claims TTL (latency and throughput runs).
    pub ttl: Duration,
    /// Where the scratch directory (data dirs, certificates, logs) goes.
    pub dir: std::path::PathBuf,
    /// Keep it after the run.
    pub keep_files: bool,
}

/// The voters.
pub const VOTERS: [&str; 3] = ["n1", "n2", "n3"];
/// The client of the latency and throughput runs, and the failover retrier.
pub const CLIENT: &str = "n4";
/// The holder killed in the failover runs.
pub const HOLDER: &str = "n5";

/// Three voters and two non-voters (see the module docs).
pub struct MeshCluster {
    dir: ScratchDir,
    exe: std::path::PathBuf,
    workers: BTreeMap<String, Worker>,
    settings: MeshSettings,
}

fn ms_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl MeshCluster {
    /// Issues certificates and starts the five workers (`exe` is this binary), waits
    /// until each is ready and `n4` can claim, and opens `n4`'s sessions in every shard.
    pub fn start(exe: &Path, meshctl: &Path, s: &MeshSettings, salt: u64) -> Result<Self> {
        std::fs::create_dir_all(&s.dir).with_context(|| format!("creating {}", s.dir.display()))?;
        let mut dir = ScratchDir::new_in(&s.dir, "meshbench-claims-")?;
        if s.keep_files {
            dir.keep();
        }
        let certs = dir.path().join("certs");
        let names: Vec<String> = VOTERS
            .iter()
            .chain([CLIENT, HOLDER].iter())
            .map(|s| (*s).to_owned())
            .collect();
        issue_certs(meshctl, &certs, &names)?;
        let ports = free_ports(2 * names.len(), salt)?;
        let seed = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));
        let mut cluster = Self {
            exe: exe.to_owned(),
            workers: BTreeMap::new(),
            settings: s.clone(),
            dir,
        };
        for (i, name) in names.iter().enumerate() {
            let join = (i > 0).then_some(seed);
            let mut args = WorkerArgs::new(name, &certs, (ports[2 * i], ports[2 * i + 1]), join);
            args.voters = VOTERS.iter().map(|v| (*v).to_owned()).collect();
            args.data_dir = Some(cluster.dir.path().join(name));
            args.shards = s.shards;
            args.claims_ttl_ms = ms_u64(s.ttl);
            let worker = Worker::start(exe, cluster.dir.path(), &args)?;
            cluster.workers.insert(name.clone(), worker);
        }
        for w in cluster.workers.values_mut() {
            w.wait_ready(Duration::from_secs(60))?;
        }
        let t0 = Instant::now();
        let warm = cluster.ask(
            CLIENT,
            ClaimsCommand::Warm {
                ttl_ms: ms_u64(s.ttl),
                timeout_ms: 60_000,
            },
            Duration::from_secs(120),
        )?;
        progress(
            "mesh",
            &format!(
                "cluster up; {CLIENT} claimed after {:.1} s and opened its sessions: {warm:?}",
                t0.elapsed().as_secs_f64()
            ),
        );
        Ok(cluster)
    }

    /// The scratch directory (data dirs and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends a claims command to worker `name` and waits for its reply.
    pub fn ask(
        &mut self,
        name: &str,
        cmd: ClaimsCommand,
        timeout: Duration,
    ) -> Result<ClaimsReply> {
        let w = self
            .workers
            .get_mut(name)
            .with_context(|| format!("no worker {name}"))?;
        match w.ask(&WorkerCommand::Claims(cmd), timeout)? {
            WorkerReply::Claims(reply) => Ok(reply),
            other => bail!("worker {name}: expected a claims reply, got {other:?}"),
        }
    }

    /// The voters' commit time so far, summed (from their metrics endpoints).
    pub fn voter_commit_time(&self) -> Result<CommitTime> {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut total = CommitTime::default();
        for v in VOTERS {
            let w = self
                .workers
                .get(v)
                .with_context(|| format!("no worker {v}"))?;
            let url = format!("http://{}/metrics", w.admin());
            let text = http
                .get(&url)
                .call()
                .with_context(|| format!("GET {url}"))?
                .body_mut()
                .read_to_string()?;
            let get = |name: &str| metric_total(&text, name).unwrap_or(0.0);
            total.count += get("mesh_quorum_persist_seconds_count");
            total.persist_secs += get("mesh_quorum_persist_seconds_sum");
            total.fsync_secs += get("mesh_quorum_fsync_seconds_sum");
        }
        Ok(total)
    }

    /// The voters' quorum counters, summed.
    pub fn voter_counters(&mut self) -> Result<QuorumCounters> {
        let mut total = QuorumCounters::default();
        for v in VOTERS {
            match self.ask(v, ClaimsCommand::Stats, Duration::from_secs(10))? {
                ClaimsReply::Stats(Some(c)) => total.add(&c),
                other => bail!("{v}: expected quorum counters, got {other:?}"),
            }
        }
        Ok(total)
    }

    /// A latency run on worker `from`.
    pub fn latency(&mut self, from: &str, op: ClaimOp, ops: usize) -> Result<LatencyRun> {
        let cmd = ClaimsCommand::Latency {
            op,
            ops,
            ttl_ms: ms_u64(self.settings.ttl),
        };
        let timeout = Duration::from_secs(60) + Duration::from_secs(2) * ops as u32;
        let before = self.voter_commit_time()?;
        let reply = self.ask(from, cmd, timeout)?;
        let commits = self.voter_commit_time()?.since(&before);
        match reply {
            ClaimsReply::Latency {
                samples_us,
                release_us,
                errors,
            } => Ok(LatencyRun {
                acquire: samples_us,
                release: release_us,
                errors,
                commits: Some(commits),
            }),
            other => bail!("{from}: expected a latency report, got {other:?}"),
        }
    }

    /// A throughput window of `clients` clients on `n4`, with the voters' commits.
    pub fn window(&mut self, clients: usize, window: Duration) -> Result<WindowRun> {
        let before = self.voter_counters()?;
        let time_before = self.voter_commit_time()?;
        let cmd = ClaimsCommand::Window {
            ms: ms_u64(window),
            clients,
            ttl_ms: ms_u64(self.settings.ttl),
        };
        let reply = self.ask(CLIENT, cmd, window + Duration::from_secs(60))?;
        let after = self.voter_counters()?;
        let commits = self.voter_commit_time()?.since(&time_before);
        match reply {
            ClaimsReply::Window {
                claims,
                elapsed_us,
                latency,
                errors,
            } => Ok(WindowRun {
                claims,
                elapsed: Duration::from_micros(elapsed_us),
                latency,
                errors,
                voters: after.since(&before),
                commits: Some(commits),
            }),
            other => bail!("{CLIENT}: expected a window report, got {other:?}"),
        }
    }

    /// One failover run with TTL `ttl` (see the module docs); `None` if `n4` gave up
    /// after `timeout`.
    pub fn failover(
        &mut self,
        task: &str,
        ttl: Duration,
        every: Duration,
        timeout: Duration,
    ) -> Result<FailoverRun> {
        let held = self.ask(
            HOLDER,
            ClaimsCommand::Hold {
                task: task.to_owned(),
                ttl_ms: ms_u64(ttl),
                timeout_ms: 60_000,
            },
            Duration::from_secs(90),
        )?;
        let ClaimsReply::Held { token: old_token } = held else {
            bail!("{HOLDER}: expected held, got {held:?}");
        };
        let client = self
            .workers
            .get_mut(CLIENT)
            .with_context(|| format!("no worker {CLIENT}"))?;
        client.send(&WorkerCommand::Claims(ClaimsCommand::Acquire {
            task: task.to_owned(),
            ttl_ms: ms_u64(ttl),
            every_ms: ms_u64(every),
            timeout_ms: ms_u64(timeout),
        }))?;
        match client.expect(Duration::from_secs(30))? {
            WorkerReply::Claims(ClaimsReply::Trying { refused }) if refused == "rejected_held" => {}
            other => bail!("{CLIENT}: the first attempt should be refused as held, got {other:?}"),
        }
        let holder = self
            .workers
            .get_mut(HOLDER)
            .with_context(|| format!("no worker {HOLDER}"))?;
        let args = holder.args().clone();
        let killed = Instant::now();
        holder.kill()?;
        let client = self
            .workers
            .get_mut(CLIENT)
            .with_context(|| format!("no worker {CLIENT}"))?;
        let reply = client.expect(timeout + Duration::from_secs(30))?;
        let took = killed.elapsed();
        // The holder comes back (a new incarnation) for the next run.
        let mut restarted = Worker::start(&self.exe, self.dir.path(), &args)?;
        restarted.wait_ready(Duration::from_secs(60))?;
        self.workers.insert(HOLDER.to_owned(), restarted);
        match reply {
            WorkerReply::Claims(ClaimsReply::Acquired {
                token,
                attempts,
                errors,
                ..
            }) => Ok(FailoverRun {
                took: Some(took),
                attempts,
                old_token,
                new_token: Some(token),
                errors,
            }),
            WorkerReply::Claims(ClaimsReply::NotAcquired { attempts, errors }) => Ok(FailoverRun {
                took: None,
                attempts,
                old_token,
                new_token: None,
                errors,
            }),
            other => bail!("{CLIENT}: expected an acquire result, got {other:?}"),
        }
    }
}

/// One latency run.
#[derive(Debug, Clone, Default)]
pub struct LatencyRun {
    /// The timed operation's latencies, microseconds.
    pub acquire: Vec<u64>,
    /// The untimed release's latencies, microseconds.
    pub release: Vec<u64>,
    /// Failures by kind.
    pub errors: ErrorCounts,
    /// mesh: the voters' commit time during the run.
    pub commits: Option<CommitTime>,
}

/// One throughput window.
#[derive(Debug, Clone, Default)]
pub struct WindowRun {
    /// Claims completed within the window.
    pub claims: u64,
    /// The window.
    pub elapsed: Duration,
    /// Claim latency under this load.
    pub latency: LatencySummary,
    /// Failures by kind.
    pub errors: ErrorCounts,
    /// What the three voters did meanwhile (summed).
    pub voters: QuorumCounters,
    /// mesh: the voters' commit time meanwhile.
    pub commits: Option<CommitTime>,
}

impl WindowRun {
    /// Claims per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.claims as f64 / secs
        } else {
            0.0
        }
    }
}

/// One failover run.
#[derive(Debug, Clone, Default)]
pub struct FailoverRun {
    /// From just before the kill until the new claim; `None`: not within the deadline.
    pub took: Option<Duration>,
    /// Attempts the retrier made.
    pub attempts: u64,
    /// The killed holder's token.
    pub old_token: u64,
    /// The new holder's token.
    pub new_token: Option<u64>,
    /// Refused attempts by kind.
    pub errors: ErrorCounts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::claims::{ClaimReject, Unavailable};

    #[test]
    fn keys_land_in_the_shard_asked_for_and_are_never_handed_out_twice() {
        let mut keys = ShardKeys::new("tp-n4-3", 64);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2000u32 {
            let shard = (i * 7) % 70;
            let key = keys.take(shard);
            assert_eq!(shard_of(key.as_bytes(), 64).0, shard % 64, "{key}");
            assert!(seen.insert(key), "a key was handed out twice");
        }
        // One shard asked for again and again: the others' spare keys stay bounded.
        for _ in 0..100 {
            keys.take(3);
        }
        assert!(keys.spare.iter().all(|s| s.len() <= SPARE_PER_SHARD));
    }

    #[test]
    fn error_kinds_name_the_variant_without_its_fields() {
        let held = CallError::Claims(ClaimsError::Rejected(ClaimReject::NoSuchName));
        assert_eq!(error_kind(&held), "rejected_nosuchname");
        let unavailable = CallError::Claims(ClaimsError::Unavailable {
            reason: Unavailable::NoQuorum {
                reachable: 1,
                needed: 2,
            },
        });
        assert_eq!(error_kind(&unavailable), "unavailable");
        assert_eq!(
            error_kind(&CallError::Claims(ClaimsError::Timeout)),
            "timeout"
        );
        assert_eq!(error_kind(&CallError::BadTtl("short".into())), "bad_ttl");
    }

    #[test]
    fn claims_lines_round_trip_and_pointless_commands_are_refused() {
        let cmds = [
            ClaimsCommand::Latency {
                op: ClaimOp::StrongName,
                ops: 500,
                ttl_ms: 10_000,
            },
            ClaimsCommand::Acquire {
                task: "fo-1".into(),
                ttl_ms: 1000,
                every_ms: 20,
                timeout_ms: 30_000,
            },
        ];
        for c in cmds {
            let line = WorkerCommand::Claims(c.clone()).to_line();
            assert_eq!(WorkerCommand::parse(&line), Some(WorkerCommand::Claims(c)));
        }
        let reply = WorkerReply::Claims(ClaimsReply::Window {
            claims: 7,
            elapsed_us: 1_000_000,
            latency: LatencySummary::of(&[3, 1, 2]),
            errors: [("timeout".to_owned(), 2)].into(),
        });
        assert_eq!(WorkerReply::parse(&reply.to_line()), Some(reply));
        for bad in [
            ClaimsCommand::Latency {
                op: ClaimOp::Claim,
                ops: 0,
                ttl_ms: 1,
            },
            ClaimsCommand::Window {
                ms: 1000,
                clients: 0,
                ttl_ms: 1,
            },
            ClaimsCommand::Acquire {
                task: "t".into(),
                ttl_ms: 1,
                every_ms: 0,
                timeout_ms: 1,
            },
        ] {
            let line = WorkerCommand::Claims(bad).to_line();
            assert_eq!(WorkerCommand::parse(&line), None);
        }
    }

    #[test]
    fn latency_summary_uses_nearest_rank() {
        let samples: Vec<u64> = (1..=200).collect();
        let s = LatencySummary::of(&samples);
        assert_eq!((s.n, s.p50_us, s.p99_us, s.max_us), (200, 100, 198, 200));
        assert_eq!(LatencySummary::of(&[]), LatencySummary::default());
    }

    #[test]
    fn metric_totals_add_every_series_of_that_name_only() {
        let text = "# TYPE mesh_quorum_persist_seconds histogram\n\
            mesh_quorum_persist_seconds_bucket{le=\"0.005\"} 3\n\
            mesh_quorum_persist_seconds_sum 0.25\n\
            mesh_quorum_persist_seconds_count 40\n\
            mesh_quorum_persist_seconds_count_other 7\n\
            x_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\n";
        assert_eq!(
            metric_total(text, "mesh_quorum_persist_seconds_count"),
            Some(40.0)
        );
        assert_eq!(
            metric_total(text, "mesh_quorum_persist_seconds_sum"),
            Some(0.25)
        );
        assert_eq!(metric_total(text, "x_total"), Some(5.0));
        assert_eq!(metric_total(text, "missing"), None);
        let d = CommitTime {
            count: 50.0,
            persist_secs: 0.5,
            fsync_secs: 0.4,
        }
        .since(&CommitTime {
            count: 40.0,
            persist_secs: 0.25,
            fsync_secs: 0.2,
        });
        assert_eq!(d.mean_persist_ms(), Some(25.0));
        assert!((d.mean_fsync_ms().unwrap_or(0.0) - 20.0).abs() < 1e-9);
        assert_eq!(CommitTime::default().mean_persist_ms(), None);
    }

    #[test]
    fn counters_subtract_and_never_go_negative() {
        let before = QuorumCounters {
            commits: 10,
            commit_keys: 30,
            ..QuorumCounters::default()
        };
        let after = QuorumCounters {
            commits: 15,
            commit_keys: 50,
            ..QuorumCounters::default()
        };
        let d = after.since(&before);
        assert_eq!((d.commits, d.commit_keys), (5, 20));
        assert_eq!(before.since(&after).commits, 0);
    }
}
