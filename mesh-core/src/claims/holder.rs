//! The holder: one per node, the claims and strong-name API over the shard tables.
//!
//! Sans-IO. Inputs: the calls ([`Holder::claim`], [`Holder::renew`],
//! [`Holder::release`], [`Holder::register_strong`], [`Holder::transfer_name`],
//! [`Holder::release_name`], [`Holder::whereis`]), [`Holder::handle_completion`] (the
//! proposer's answer to a submission) and [`Holder::handle_timeout`] (at
//! [`Holder::poll_timeout`]), each with `now`. Outputs: [`Holder::poll_submit`] (changes to
//! propose) and [`Holder::poll_event`] (call results, lost and assigned claims).
//!
//! # Invariants
//!
//! - *Validity is never overstated*: a claim's validity is `t0 + TTL·(1−ρ) − guard`,
//!   where `t0` is the `now` at which a change refreshing the session (open, renew, claim)
//!   first became ready to send — a retry keeps the first `t0` — and only once that change
//!   was acknowledged. [`Holder::is_valid`] is false from then on; nothing extends it but
//!   another acknowledged refresh.
//! - *A lost claim stays lost*: once [`HolderEvent::Lost`] was emitted for a token, the
//!   holder never reports that token valid again. Losses: a result shows the session or
//!   the claim gone (`Evicted`), or the validity ran out before a refresh was acknowledged
//!   (`Expired`, and the session is then closed and forgotten; the next call opens a new
//!   one with a new id).
//! - *Released means gone at once*: a claim stops being valid when its release is
//!   submitted, and a later result never brings it back.
//! - *At most once*: every change carries a request id; one change per shard is in flight,
//!   and a timed-out change is retried under the same id before the next one starts.
//! - *Unavailable is explicit*: with no voters configured, or fewer than a quorum
//!   reachable, calls fail at once with [`ClaimsError::Unavailable`] and submit nothing.
//!
//! Liveness: the holder renews every open session every `TTL/3` after its last refresh
//! — also one that holds nothing: an open session is this node's lease in the shard, and
//! a watcher may hand it an evicted holder's tasks at any time — so with a quorum
//! reachable it never loses a claim.

use super::submit::{Completed, Submission, SubmitStats, Submitter};
use super::table::{
    shard_of, ClaimReject, Field, SessionId, ShardChange, ShardId, ShardTable, StrongName,
    MAX_KEY_BYTES, MAX_TTL_MS, MIN_TTL_MS,
};
use super::{holder_client, ClaimsError, Drift, ShardOutcome, Unavailable};
use crate::pid::Pid;
use crate::quorum::{majority, Outcome, ProposeError, RequestId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// How a holder behaves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HolderConfig {
    /// This node's name (the sessions' holder).
    pub node: String,
    /// This node's boot incarnation (bumped and fsynced at every boot).
    pub incarnation: u64,
    /// Number of shards (fixed at cluster creation).
    pub shards: u32,
    /// Number of configured voters (0: claims are off).
    pub voters: usize,
    /// Session TTL.
    pub ttl: Duration,
    /// The clock-rate error bound ρ of every node.
    pub drift: Drift,
    /// Subtracted from every validity: margin for the time between a validity check and
    /// the effect it guards (fencing covers longer stalls).
    pub guard: Duration,
    /// Re-submissions of a timed-out change under the same request id.
    pub retries: u32,
    /// Most calls queued or in flight.
    pub max_calls: usize,
    /// The seq of this holder's first request. A holder made again for the same client
    /// (node, incarnation and TTL) must start above every seq its predecessors used:
    /// the register may still keep their record, and would take lower seqs for retries
    /// of older requests (superseded).
    pub first_seq: u64,
    /// Close a session that has held no claim and no name for this long (`None`: keep
    /// every session open and renewed — the node's lease in the shard, to which a
    /// watcher may hand tasks).
    pub idle_close: Option<Duration>,
}

impl HolderConfig {
    /// Defaults: TTL 10 s, ρ = 0.1 %, guard 100 ms, 2 retries, 1024 calls, sessions kept
    /// open while idle.
    pub fn new(node: impl Into<String>, incarnation: u64, shards: u32, voters: usize) -> Self {
        let node = node.into();
        Self {
            node,
            incarnation,
            shards,
            voters,
            ttl: Duration::from_secs(10),
            drift: Drift { ppm: 1_000 },
            guard: Duration::from_millis(100),
            retries: 2,
            max_calls: 1024,
            first_seq: 1,
            idle_close: None,
        }
    }

    /// The TTL in whole milliseconds.
    pub fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// The request-id client of this holder: [`holder_client`] of its node, incarnation
    /// and TTL.
    pub fn client(&self) -> u64 {
        holder_client(&self.node, self.incarnation, self.ttl_ms())
    }

    /// Checks the settings; [`Holder::new`] refuses what this refuses.
    pub fn validate(&self) -> Result<(), HolderConfigError> {
        check_ttl(self.ttl).map_err(|TtlError { ttl_ms }| HolderConfigError::Ttl { ttl_ms })?;
        // A renew sent TTL/3 after a refresh must leave time to complete before the
        // validity of that refresh ends.
        if self.ttl / 3 + self.guard >= self.drift.shrink(self.ttl) {
            return Err(HolderConfigError::Guard {
                guard: self.guard,
                ttl: self.ttl,
            });
        }
        if self.shards == 0 {
            return Err(HolderConfigError::Shards);
        }
        Ok(())
    }
}

/// Checks a claims TTL on its own: it must lie within 200 ms ..= 1 day
/// ([`MIN_TTL_MS`]..=[`MAX_TTL_MS`], what the shard table accepts), counted in whole
/// milliseconds. Pure; [`HolderConfig::validate`] applies the same rule, and with the
/// default guard (100 ms) and drift bound (0.1 %) every TTL it accepts also leaves a
/// holder time to renew, so a config can be checked before any holder exists.
pub fn check_ttl(ttl: Duration) -> Result<(), TtlError> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(TtlError { ttl_ms })
    }
}

/// Why [`check_ttl`] refused a TTL: it is outside 200 ms ..= 1 day
/// ([`MIN_TTL_MS`]..=[`MAX_TTL_MS`]). Nothing was built or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("claims ttl {ttl_ms} ms is outside {MIN_TTL_MS}..={MAX_TTL_MS} ms")]
pub struct TtlError {
    /// The refused TTL, in whole milliseconds (saturating).
    pub ttl_ms: u64,
}

/// Why a [`HolderConfig`] was refused (no holder was built).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HolderConfigError {
    /// The TTL is outside 200 ms ..= 1 day ([`MIN_TTL_MS`]..=[`MAX_TTL_MS`]).
    #[error("claims ttl {ttl_ms} ms is outside {MIN_TTL_MS}..={MAX_TTL_MS} ms")]
    Ttl {
        /// The refused TTL.
        ttl_ms: u64,
    },
    /// The guard leaves no time to renew: `TTL/3 + guard` must be below `TTL·(1−ρ)`.
    #[error("claims guard {guard:?} leaves no time to renew a {ttl:?} lease")]
    Guard {
        /// The refused guard.
        guard: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// The shard count is zero.
    #[error("claims shards must be at least 1")]
    Shards,
}

/// Identifies one call on a holder (local, not persisted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// A call's successful result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallOk {
    /// The task is held with `token`, valid until `valid_until` (extended by renews).
    Claimed {
        /// The task.
        task: String,
        /// Its fencing token.
        token: u64,
        /// The end of its validity on this node's clock.
        valid_until: Instant,
    },
    /// The session covering the task was refreshed.
    Renewed {
        /// The new end of validity of the session's claims.
        valid_until: Instant,
    },
    /// The task was freed.
    Released {
        /// The task.
        task: String,
    },
    /// The strong name was registered at `version` (its fencing token).
    Registered {
        /// The name.
        name: String,
        /// Its version.
        version: u64,
    },
    /// The strong name was transferred; its new version.
    Transferred {
        /// The name.
        name: String,
        /// Its new version.
        version: u64,
    },
    /// The strong name was freed.
    NameReleased {
        /// The name.
        name: String,
    },
    /// A linearizable `whereis`: the name's owner and version, if it has one.
    Whereis {
        /// The name.
        name: String,
        /// Its entry.
        entry: Option<StrongName>,
    },
}

/// Why a claim or an ephemeral name was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LostReason {
    /// A result showed the session (or the claim) gone: evicted, or reassigned.
    Evicted,
    /// The validity ran out before a renew was acknowledged (e.g. no quorum reachable).
    /// The session is closed and forgotten.
    Expired,
}

/// What the holder tells its callers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HolderEvent {
    /// A call finished.
    Done {
        /// The call.
        call: CallId,
        /// Its result.
        result: Result<CallOk, ClaimsError>,
    },
    /// A claim is no longer valid and never will be again. Stop using `token`.
    Lost {
        /// The task.
        task: String,
        /// The lost token.
        token: u64,
        /// Why.
        reason: LostReason,
    },
    /// A session refresh extended the validity of a claim this holder holds (one event
    /// per claim of the session, after each acknowledged renew).
    Renewed {
        /// The task.
        task: String,
        /// Its token.
        token: u64,
        /// Valid until then now (this node's clock).
        valid_until: Instant,
    },
    /// A task was handed to this holder without its asking (a reassignment, or a claim
    /// whose call timed out but took effect). Its validity is the session's.
    Assigned {
        /// The task.
        task: String,
        /// Its token.
        token: u64,
    },
    /// An ephemeral strong name owned through this holder's session is gone.
    NameLost {
        /// The name.
        name: String,
        /// Its last version.
        version: u64,
        /// Why.
        reason: LostReason,
    },
}

/// Counters a holder keeps; the shell publishes them as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HolderStats {
    /// The submit queue's counters (retries, timeouts, dropped completions).
    pub submit: SubmitStats,
    /// Calls accepted.
    pub calls: u64,
    /// Calls refused at once, by reason.
    pub refused_unavailable: u64,
    /// Calls refused because the queue was full.
    pub refused_overloaded: u64,
    /// Calls refused for bad input (key length) or because the task was not held.
    pub refused_bad_input: u64,
    /// Sessions opened (submitted).
    pub sessions_opened: u64,
    /// Automatic renews submitted.
    pub renews: u64,
    /// Renews that timed out on every attempt.
    pub renews_timed_out: u64,
    /// Claims lost because a result showed them gone.
    pub lost_evicted: u64,
    /// Claims lost because their validity ran out.
    pub lost_expired: u64,
    /// Ephemeral names lost.
    pub names_lost: u64,
    /// Claims adopted from a result ([`HolderEvent::Assigned`]).
    pub assigned: u64,
    /// Results dropped because they belong to a session this holder already forgot.
    pub dropped_old_session: u64,
    /// Sessions closed because they held nothing for `idle_close`.
    pub sessions_closed_idle: u64,
}

impl HolderStats {
    /// Adds `o`'s counters to these (the totals of several holders).
    pub fn add(&mut self, o: &Self) {
        self.submit.add(&o.submit);
        self.calls += o.calls;
        self.refused_unavailable += o.refused_unavailable;
        self.refused_overloaded += o.refused_overloaded;
        self.refused_bad_input += o.refused_bad_input;
        self.sessions_opened += o.sessions_opened;
        self.renews += o.renews;
        self.renews_timed_out += o.renews_timed_out;
        self.lost_evicted += o.lost_evicted;
        self.lost_expired += o.lost_expired;
        self.names_lost += o.names_lost;
        self.assigned += o.assigned;
        self.dropped_old_session += o.dropped_old_session;
        self.sessions_closed_idle += o.sessions_closed_idle;
    }
}

#[derive(Clone, Debug)]
enum Tag {
    /// An automatic change (open, renew, close).
    Internal,
    /// A caller's change.
    Call(CallId),
    /// A caller's linearizable whereis of a name.
    Whereis(CallId, String),
}

/// A session this holder opened (a result showed it in the table).
#[derive(Clone, Debug)]
struct Session {
    sid: SessionId,
    ttl: Duration,
    valid_until: Option<Instant>,
    renew_at: Option<Instant>,
    renewing: bool,
    /// The last call made under it, or when it last held something (for `idle_close`).
    last_used: Instant,
}

/// A call's change. One that needs the shard's session waits for the shard's
/// `OpenSession` to finish (sessions are numbered by the register, so their id is known
/// only then); while it waits, the shard's other calls wait behind it, so that a
/// shard's calls are still submitted in call order.
#[derive(Clone, Debug)]
enum Pending {
    /// A change that needs no session (a read, a release, a durable transfer).
    Plain(ShardChange),
    Claim {
        task: String,
    },
    Register {
        name: String,
        owner: Pid,
        ephemeral: bool,
    },
    Transfer {
        name: String,
        version: u64,
        to: Pid,
    },
}

impl Pending {
    /// The change, made under session `sid`; `None` if it needs a session and there is
    /// none.
    fn change(self, sid: Option<&SessionId>) -> Option<ShardChange> {
        if let Self::Plain(change) = self {
            return Some(change);
        }
        let sid = sid?.clone();
        Some(match self {
            Self::Plain(change) => change,
            Self::Claim { task } => ShardChange::Claim { task, sid },
            Self::Register {
                name,
                owner,
                ephemeral,
            } => ShardChange::RegisterName {
                name,
                owner,
                sid,
                ephemeral,
            },
            Self::Transfer { name, version, to } => ShardChange::TransferName {
                name,
                version,
                to,
                sid: Some(sid),
            },
        })
    }
}

#[derive(Clone, Debug, Default)]
struct ShardState {
    session: Option<Session>,
    /// While the shard's `OpenSession` is in flight: the calls waiting for it, in order.
    opening: Option<Vec<(Tag, Pending)>>,
    /// Held claims: task → token.
    claims: BTreeMap<String, u64>,
    /// Ephemeral names owned through the session: name → version.
    names: BTreeMap<String, u64>,
    /// Tokens and versions whose release was submitted: never adopted again.
    releasing: BTreeSet<u64>,
}

/// The per-node claims and strong-name client (sans-IO).
#[derive(Clone, Debug)]
pub struct Holder {
    config: HolderConfig,
    submitter: Submitter<Tag>,
    shards: BTreeMap<ShardId, ShardState>,
    /// Calls waiting for an `OpenSession` (in `ShardState::opening`).
    waiting: usize,
    next_call: u64,
    reachable: usize,
    events: VecDeque<HolderEvent>,
    stats: HolderStats,
}

impl Holder {
    /// A holder for this node's life; refuses a bad configuration.
    pub fn new(config: HolderConfig) -> Result<Self, HolderConfigError> {
        config.validate()?;
        Ok(Self {
            submitter: Submitter::new(config.client(), config.retries, config.first_seq),
            reachable: config.voters,
            config,
            shards: BTreeMap::new(),
            waiting: 0,
            next_call: 1,
            events: VecDeque::new(),
            stats: HolderStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HolderConfig {
        &self.config
    }

    /// The request-id client of this holder (route completions by it).
    pub fn client(&self) -> u64 {
        self.submitter.client()
    }

    /// The counters.
    pub fn stats(&self) -> HolderStats {
        HolderStats {
            submit: self.submitter.stats().clone(),
            ..self.stats.clone()
        }
    }

    /// The shard of a task key or a strong name.
    pub fn shard_of(&self, key: &str) -> ShardId {
        shard_of(key.as_bytes(), self.config.shards)
    }

    /// How many voters this node reaches (from the membership view). Below a quorum,
    /// new calls fail with [`Unavailable::NoQuorum`]; calls already submitted carry on.
    pub fn set_reachable_voters(&mut self, reachable: usize) {
        self.reachable = reachable;
    }

    /// The current session of `shard`, if any.
    pub fn session(&self, shard: ShardId) -> Option<&SessionId> {
        self.shards.get(&shard)?.session.as_ref().map(|s| &s.sid)
    }

    /// The token and the end of validity (this node's clock) of a held task.
    pub fn validity(&self, task: &str) -> Option<(u64, Instant)> {
        let st = self.shards.get(&self.shard_of(task))?;
        let token = *st.claims.get(task)?;
        let until = st.session.as_ref()?.valid_until?;
        Some((token, until))
    }

    /// How many claims this holder holds (read-only, for metrics): tasks whose claim it
    /// has seen acknowledged and not lost or released.
    pub fn held(&self) -> usize {
        self.shards.values().map(|st| st.claims.len()).sum()
    }

    /// Whether `token` is this holder's valid token for `task` at `now`: check it right
    /// before every effect, and send the token with the effect.
    pub fn is_valid(&self, now: Instant, task: &str, token: u64) -> bool {
        self.validity(task)
            .is_some_and(|(t, until)| t == token && now < until)
    }

    /// Claim `task`: a free task gets a fresh token; one already held by this holder's
    /// session keeps its token (and the session is refreshed). Opens the shard's session
    /// first if needed.
    pub fn claim(&mut self, now: Instant, task: &str) -> Result<CallId, ClaimsError> {
        self.admit(now, Field::Task, task)?;
        let shard = self.shard_of(task);
        let pending = Pending::Claim {
            task: task.to_owned(),
        };
        Ok(self.call_in_session(now, shard, pending))
    }

    /// Refresh, now, the session that covers `task` (renews also run by themselves).
    pub fn renew(&mut self, now: Instant, task: &str) -> Result<CallId, ClaimsError> {
        self.admit(now, Field::Task, task)?;
        let shard = self.shard_of(task);
        let sid = self.held_session(shard, task)?;
        Ok(self.call(now, shard, ShardChange::Renew { sid }))
    }

    /// Release `task` if `token` is its current token here; with another token the
    /// call is refused with [`ClaimReject::StaleToken`] and nothing changes (the task
    /// stays held and valid). A task not held here is refused as [`Holder::release`]
    /// refuses it. This is the check a caller holding a fencing token wants: a stale
    /// worker cannot release the claim its successor took.
    pub fn release_with_token(
        &mut self,
        now: Instant,
        task: &str,
        token: u64,
    ) -> Result<CallId, ClaimsError> {
        if let Some((current, _)) = self.validity(task) {
            if current != token {
                return Err(ClaimsError::Rejected(ClaimReject::StaleToken { current }));
            }
        }
        self.release(now, task)
    }

    /// Release `task`. It stops being valid at once, whatever the outcome.
    pub fn release(&mut self, now: Instant, task: &str) -> Result<CallId, ClaimsError> {
        self.admit(now, Field::Task, task)?;
        let shard = self.shard_of(task);
        self.held_session(shard, task)?;
        let st = self.shards.entry(shard).or_default();
        let Some(token) = st.claims.remove(task) else {
            return Err(self.not_held(task));
        };
        st.releasing.insert(token);
        let change = ShardChange::Release {
            task: task.to_owned(),
            token,
        };
        Ok(self.call(now, shard, change))
    }

    /// Register a strong name for `owner` if it has no owner; its version (fencing
    /// token) comes back in [`CallOk::Registered`]. The change is made under this
    /// holder's session in the name's shard (opened if needed), which makes it at most
    /// once; an `ephemeral` name is also bound to that session and vanishes with it.
    pub fn register_strong(
        &mut self,
        now: Instant,
        name: &str,
        owner: Pid,
        ephemeral: bool,
    ) -> Result<CallId, ClaimsError> {
        self.admit(now, Field::Name, name)?;
        let shard = self.shard_of(name);
        let pending = Pending::Register {
            name: name.to_owned(),
            owner,
            ephemeral,
        };
        Ok(self.call_in_session(now, shard, pending))
    }

    /// Transfer a strong name held at `version` to `to` (a new version); `ephemeral`
    /// binds it to this holder's session.
    pub fn transfer_name(
        &mut self,
        now: Instant,
        name: &str,
        version: u64,
        to: Pid,
        ephemeral: bool,
    ) -> Result<CallId, ClaimsError> {
        self.admit(now, Field::Name, name)?;
        let shard = self.shard_of(name);
        if ephemeral {
            let pending = Pending::Transfer {
                name: name.to_owned(),
                version,
                to,
            };
            return Ok(self.call_in_session(now, shard, pending));
        }
        let change = ShardChange::TransferName {
            name: name.to_owned(),
            version,
            to,
            sid: None,
        };
        Ok(self.call(now, shard, change))
    }

    /// Release a strong name held at `version`.
    pub fn release_name(
        &mut self,
        now: Instant,
        name: &str,
        version: u64,
    ) -> Result<CallId, ClaimsError> {
        self.admit(now, Field::Name, name)?;
        let shard = self.shard_of(name);
        self.shards
            .entry(shard)
            .or_default()
            .releasing
            .insert(version);
        let change = ShardChange::ReleaseName {
            name: name.to_owned(),
            version,
        };
        Ok(self.call(now, shard, change))
    }

    /// A linearizable `whereis` (one quorum round). For the cached mode see
    /// [`NameCache`](super::NameCache).
    pub fn whereis(&mut self, now: Instant, name: &str) -> Result<CallId, ClaimsError> {
        self.admit(now, Field::Name, name)?;
        let shard = self.shard_of(name);
        let call = self.new_call();
        let tag = Tag::Whereis(call, name.to_owned());
        self.submit(now, shard, tag, Pending::Plain(ShardChange::Read));
        Ok(call)
    }

    /// The next change to propose.
    pub fn poll_submit(&mut self) -> Option<Submission> {
        self.submitter.poll_submit()
    }

    /// The next event for callers.
    pub fn poll_event(&mut self) -> Option<HolderEvent> {
        self.events.pop_front()
    }

    /// When [`Holder::handle_timeout`] must be called next (a renew or an expiry).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.shards
            .values()
            .filter_map(|st| {
                let s = st.session.as_ref()?;
                [s.renew_at, s.valid_until, self.idle_deadline(st)]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .min()
    }

    /// Whether this holder has nothing at all: no session, no call queued, in flight or
    /// waiting. A shell that made it for one TTL may then drop it.
    pub fn is_idle(&self) -> bool {
        self.submitter.len() == 0
            && self.waiting == 0
            && self.shards.values().all(|st| st.session.is_none())
    }

    /// Renew sessions that are due, expire those whose validity ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let shards: Vec<ShardId> = self.shards.keys().copied().collect();
        for shard in shards {
            if self.expire_if_due(now, shard) || self.close_if_idle(now, shard) {
                continue;
            }
            let Some(s) = self
                .shards
                .get_mut(&shard)
                .and_then(|st| st.session.as_mut())
            else {
                continue;
            };
            if s.renewing || s.renew_at.is_none_or(|at| at > now) {
                continue;
            }
            s.renewing = true;
            s.renew_at = None;
            let sid = s.sid.clone();
            self.stats.renews += 1;
            self.submitter
                .enqueue(now, shard, ShardChange::Renew { sid }, Tag::Internal);
        }
    }

    /// The proposer finished `request` (one of this holder's submissions).
    pub fn handle_completion(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<ShardOutcome, ProposeError>,
    ) {
        let Some(done) = self.submitter.handle_completion(now, request, result) else {
            return;
        };
        if let ShardChange::OpenSession { .. } = done.change {
            self.open_finished(now, &done);
            return;
        }
        let shard = done.shard;
        let current = self.current_sid(shard);
        if session_of(&done.change).is_some_and(|sid| Some(sid) != current.as_ref()) {
            // Its results say nothing about the current session (if any).
            self.stats.dropped_old_session += 1;
        }
        let decision = done.result.as_ref().ok().and_then(Outcome::decision);
        let applied = matches!(decision, Some(Ok(_)));
        let table = done.result.as_ref().ok().and_then(Outcome::value).cloned();
        // 1. What the change itself did to local state (before learning from the table,
        //    so that a claim's own task is not announced as assigned).
        let result = self.finish(&done, table.as_ref(), current.as_ref());
        // 2. Learn from the table the change saw: refresh validity, adopt and drop claims.
        let refreshed = applied && current.is_some() && done.change.refreshes() == current.as_ref();
        if let ShardChange::Renew { sid } = &done.change {
            if Some(sid) == current.as_ref() {
                self.renew_finished(now, shard, done.result.is_err());
            }
        }
        if let Some(Err(ClaimReject::NoSession { sid })) = decision {
            // The register has no such session (evicted): forget it, so that the next
            // call opens anew.
            if Some(sid) == current.as_ref() {
                self.lose_session(shard, LostReason::Evicted);
            }
        }
        if let Some(table) = &table {
            self.learn(shard, table, refreshed.then_some(done.t0));
        }
        // 3. Tell the caller.
        let call = match done.tag {
            Tag::Internal => None,
            Tag::Call(call) | Tag::Whereis(call, _) => Some(call),
        };
        if let (Some(call), Some(result)) = (call, result) {
            let result = result.and_then(|ok| self.with_validity(shard, ok));
            self.events.push_back(HolderEvent::Done { call, result });
        }
    }

    // ---- internals ----

    /// The checks every call passes before anything is queued: claims configured, a
    /// quorum reachable, room in the queue, a well-formed key. Also expires the key's
    /// session if its validity ran out (so the call opens a new one).
    fn admit(&mut self, now: Instant, field: Field, key: &str) -> Result<(), ClaimsError> {
        if self.config.voters == 0 {
            self.stats.refused_unavailable += 1;
            return Err(ClaimsError::Unavailable {
                reason: Unavailable::NoVoters,
            });
        }
        let needed = majority(self.config.voters);
        if self.reachable < needed {
            self.stats.refused_unavailable += 1;
            return Err(ClaimsError::Unavailable {
                reason: Unavailable::NoQuorum {
                    reachable: self.reachable,
                    needed,
                },
            });
        }
        if self.submitter.len() + self.waiting >= self.config.max_calls {
            self.stats.refused_overloaded += 1;
            return Err(ClaimsError::Overloaded {
                max: self.config.max_calls,
            });
        }
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            self.stats.refused_bad_input += 1;
            return Err(ClaimsError::Rejected(ClaimReject::BadLength {
                field,
                len: key.len(),
                max: MAX_KEY_BYTES,
            }));
        }
        let shard = self.shard_of(key);
        self.expire_if_due(now, shard);
        Ok(())
    }

    fn new_call(&mut self) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        self.stats.calls += 1;
        call
    }

    fn call(&mut self, now: Instant, shard: ShardId, change: ShardChange) -> CallId {
        let call = self.new_call();
        self.submit(now, shard, Tag::Call(call), Pending::Plain(change));
        call
    }

    fn not_held(&mut self, task: &str) -> ClaimsError {
        self.stats.refused_bad_input += 1;
        ClaimsError::NotHeld {
            task: task.to_owned(),
        }
    }

    fn held_session(&mut self, shard: ShardId, task: &str) -> Result<SessionId, ClaimsError> {
        let st = self.shards.get(&shard);
        match st.and_then(|st| Some((st.claims.get(task)?, st.session.as_ref()?))) {
            Some((_, s)) => Ok(s.sid.clone()),
            None => Err(self.not_held(task)),
        }
    }

    fn current_sid(&self, shard: ShardId) -> Option<SessionId> {
        self.session(shard).cloned()
    }

    fn valid_until(&self, shard: ShardId) -> Option<Instant> {
        self.shards.get(&shard)?.session.as_ref()?.valid_until
    }

    /// A successful claim or renew reports the validity as it is after learning from
    /// the change's own table.
    fn with_validity(&self, shard: ShardId, ok: CallOk) -> Result<CallOk, ClaimsError> {
        match ok {
            CallOk::Claimed { task, token, .. } => match self.validity(&task) {
                Some((t, valid_until)) if t == token => Ok(CallOk::Claimed {
                    task,
                    token,
                    valid_until,
                }),
                // Only a result without a confirmed refresh gets here.
                _ => Err(ClaimsError::SessionLost),
            },
            CallOk::Renewed { .. } => match self.valid_until(shard) {
                Some(valid_until) => Ok(CallOk::Renewed { valid_until }),
                None => Err(ClaimsError::SessionLost),
            },
            other => Ok(other),
        }
    }

    /// Run `pending` under the shard's session: now if there is one, else once the
    /// shard's `OpenSession` (submitted here if none is in flight) has finished.
    fn call_in_session(&mut self, now: Instant, shard: ShardId, pending: Pending) -> CallId {
        let call = self.new_call();
        let st = self.shards.entry(shard).or_default();
        if st.session.is_none() && st.opening.is_none() {
            st.opening = Some(Vec::new());
            self.stats.sessions_opened += 1;
            let change = ShardChange::OpenSession {
                node: self.config.node.clone(),
                incarnation: self.config.incarnation,
                ttl_ms: self.config.ttl_ms(),
            };
            self.submitter.enqueue(now, shard, change, Tag::Internal);
        }
        self.submit(now, shard, Tag::Call(call), pending);
        call
    }

    /// Queue a call's change, or keep it waiting behind the shard's `OpenSession`.
    fn submit(&mut self, now: Instant, shard: ShardId, tag: Tag, pending: Pending) {
        let st = self.shards.entry(shard).or_default();
        if let Some(waiting) = st.opening.as_mut() {
            self.waiting += 1;
            waiting.push((tag, pending));
            return;
        }
        let sid = st.session.as_mut().map(|s| {
            s.last_used = now;
            s.sid.clone()
        });
        match pending.change(sid.as_ref()) {
            Some(change) => self.submitter.enqueue(now, shard, change, tag),
            // Only `call_in_session` submits changes that need a session, after making
            // sure there is one or an open is in flight.
            None => self.fail(tag, ClaimsError::SessionLost),
        }
    }

    /// Report `error` to the caller of `tag`, if it has one.
    fn fail(&mut self, tag: Tag, error: ClaimsError) {
        if let Tag::Call(call) | Tag::Whereis(call, _) = tag {
            self.events.push_back(HolderEvent::Done {
                call,
                result: Err(error),
            });
        }
    }

    /// The shard's `OpenSession` finished: adopt the session the register numbered (its
    /// receipt) and send the calls that waited for it, or fail them all.
    fn open_finished(&mut self, now: Instant, done: &Completed<Tag>) {
        let shard = done.shard;
        let st = self.shards.entry(shard).or_default();
        let waiting = st.opening.take().unwrap_or_default();
        self.waiting -= waiting.len();
        let opened = match &done.result {
            Ok(outcome) => match (outcome.decision(), outcome.value()) {
                (Some(Ok(n)), Some(table)) => {
                    let sid = SessionId {
                        node: self.config.node.clone(),
                        incarnation: self.config.incarnation,
                        n,
                    };
                    // A replay reports the table as it is now, where the session may
                    // already be gone.
                    if table.sessions.contains_key(&sid) {
                        Ok((sid, table))
                    } else {
                        Err(ClaimsError::SessionLost)
                    }
                }
                (Some(Ok(_)), None) => Err(ClaimsError::SessionLost),
                (Some(Err(reason)), _) => Err(ClaimsError::Rejected(reason.clone())),
                (None, _) => Err(ClaimsError::Superseded),
            },
            // It may have opened a session after all: one this holder never learns of,
            // never renews, and the watcher evicts (opening is at least once).
            Err(ProposeError::Timeout) => Err(ClaimsError::Timeout),
        };
        let sid = match opened {
            Ok((sid, table)) => {
                st.session = Some(Session {
                    sid: sid.clone(),
                    ttl: self.config.ttl,
                    valid_until: None,
                    renew_at: None,
                    renewing: false,
                    last_used: now,
                });
                self.learn(shard, table, Some(done.t0));
                Ok(sid)
            }
            Err(e) => Err(e),
        };
        for (tag, pending) in waiting {
            match pending.change(sid.as_ref().ok()) {
                Some(change) => self.submitter.enqueue(now, shard, change, tag),
                None => {
                    let e = sid
                        .as_ref()
                        .err()
                        .cloned()
                        .unwrap_or(ClaimsError::SessionLost);
                    self.fail(tag, e);
                }
            }
        }
    }

    /// When the shard's session becomes idle enough to close, if it holds nothing.
    fn idle_deadline(&self, st: &ShardState) -> Option<Instant> {
        let after = self.config.idle_close?;
        let s = st.session.as_ref()?;
        (st.claims.is_empty() && st.names.is_empty() && !s.renewing).then(|| s.last_used + after)
    }

    /// Close the shard's session if it held nothing for `idle_close`; true if it did.
    fn close_if_idle(&mut self, now: Instant, shard: ShardId) -> bool {
        let Some(st) = self.shards.get(&shard) else {
            return false;
        };
        if self.idle_deadline(st).is_none_or(|at| at > now) {
            return false;
        }
        if let Some(sid) = self.lose_session(shard, LostReason::Expired) {
            self.stats.sessions_closed_idle += 1;
            self.submitter
                .enqueue(now, shard, ShardChange::CloseSession { sid }, Tag::Internal);
        }
        true
    }

    /// Expire the shard's session if its validity ran out; true if it did.
    fn expire_if_due(&mut self, now: Instant, shard: ShardId) -> bool {
        let due = self
            .shards
            .get(&shard)
            .and_then(|st| st.session.as_ref())
            .and_then(|s| s.valid_until)
            .is_some_and(|until| until <= now);
        if !due {
            return false;
        }
        if let Some(sid) = self.lose_session(shard, LostReason::Expired) {
            // Free its tasks at once rather than after the watcher's timeout.
            self.submitter
                .enqueue(now, shard, ShardChange::CloseSession { sid }, Tag::Internal);
        }
        true
    }

    /// Forget the shard's session; everything it held is lost. Returns its id.
    fn lose_session(&mut self, shard: ShardId, reason: LostReason) -> Option<SessionId> {
        let st = self.shards.get_mut(&shard)?;
        let session = st.session.take()?;
        for (task, token) in std::mem::take(&mut st.claims) {
            self.events.push_back(HolderEvent::Lost {
                task,
                token,
                reason,
            });
            match reason {
                LostReason::Evicted => self.stats.lost_evicted += 1,
                LostReason::Expired => self.stats.lost_expired += 1,
            }
        }
        for (name, version) in std::mem::take(&mut st.names) {
            self.stats.names_lost += 1;
            self.events.push_back(HolderEvent::NameLost {
                name,
                version,
                reason,
            });
        }
        Some(session.sid)
    }

    fn renew_finished(&mut self, now: Instant, shard: ShardId, timed_out: bool) {
        let Some(s) = self
            .shards
            .get_mut(&shard)
            .and_then(|st| st.session.as_mut())
        else {
            return;
        };
        s.renewing = false;
        if timed_out {
            self.stats.renews_timed_out += 1;
            // Try again soon, but not at once: a shell that fails fast (no route to the
            // voters) must not make the holder spin.
            s.renew_at = Some(now + s.ttl / 12);
        }
    }

    /// The caller's result of a finished change, and its effect on local state.
    /// `None`: an internal change (no caller).
    fn finish(
        &mut self,
        done: &Completed<Tag>,
        table: Option<&ShardTable>,
        current: Option<&SessionId>,
    ) -> Option<Result<CallOk, ClaimsError>> {
        let shard = done.shard;
        let outcome = match &done.result {
            Err(ProposeError::Timeout) => Err(ClaimsError::Timeout),
            Ok(outcome) => match outcome.decision() {
                None => Err(ClaimsError::Superseded),
                Some(Err(reason)) => Err(self.rejection(reason)),
                Some(Ok(receipt)) => Ok(receipt),
            },
        };
        let st = self.shards.entry(shard).or_default();
        let result = match &done.change {
            // Handled by `open_finished`; closes have no caller.
            ShardChange::OpenSession { .. } | ShardChange::CloseSession { .. } => return None,
            ShardChange::Renew { sid } => outcome.and_then(|_| {
                if Some(sid) == current {
                    Ok(CallOk::Renewed {
                        valid_until: done.t0,
                    })
                } else {
                    Err(ClaimsError::SessionLost)
                }
            }),
            ShardChange::Claim { task, sid } => outcome.and_then(|token| {
                // The receipt is the token; the table (as of the decision, or now for a
                // retry found applied) must still show it, or it was lost meanwhile.
                let held = table
                    .and_then(|t| t.claims.get(task))
                    .is_some_and(|rec| rec.sid == *sid && rec.token == token);
                if held && Some(sid) == current {
                    st.claims.insert(task.clone(), token);
                    Ok(CallOk::Claimed {
                        task: task.clone(),
                        token,
                        valid_until: done.t0,
                    })
                } else {
                    Err(ClaimsError::SessionLost)
                }
            }),
            ShardChange::Release { task, token } => {
                st.releasing.remove(token);
                outcome.map(|_| CallOk::Released { task: task.clone() })
            }
            ShardChange::RegisterName { name, .. } | ShardChange::TransferName { name, .. } => {
                outcome.and_then(|version| {
                    let bound = match &done.change {
                        ShardChange::RegisterName {
                            sid,
                            ephemeral: true,
                            ..
                        } => Some(sid),
                        ShardChange::TransferName { sid, .. } => sid.as_ref(),
                        _ => None,
                    };
                    st.names.remove(name);
                    if let Some(sid) = bound {
                        let still = table
                            .and_then(|t| t.names.get(name))
                            .is_some_and(|n| n.version == version && n.sid.as_ref() == Some(sid));
                        if Some(sid) != current || !still {
                            return Err(ClaimsError::SessionLost);
                        }
                        st.names.insert(name.clone(), version);
                    }
                    Ok(match done.change {
                        ShardChange::RegisterName { .. } => CallOk::Registered {
                            name: name.clone(),
                            version,
                        },
                        _ => CallOk::Transferred {
                            name: name.clone(),
                            version,
                        },
                    })
                })
            }
            ShardChange::ReleaseName { name, version } => {
                st.releasing.remove(version);
                outcome.map(|_| {
                    if st.names.get(name) == Some(version) {
                        st.names.remove(name);
                    }
                    CallOk::NameReleased { name: name.clone() }
                })
            }
            ShardChange::Read => {
                let Tag::Whereis(_, name) = &done.tag else {
                    return None;
                };
                outcome.map(|_| CallOk::Whereis {
                    name: name.clone(),
                    entry: table.and_then(|t| t.names.get(name)).cloned(),
                })
            }
            // A holder never submits these.
            ShardChange::Evict { .. } | ShardChange::Reassign { .. } => return None,
        };
        Some(result)
    }

    /// A refusal as the caller sees it: a missing session means the session was lost.
    fn rejection(&self, reason: &ClaimReject) -> ClaimsError {
        match reason {
            ClaimReject::NoSession { .. } => ClaimsError::SessionLost,
            other => ClaimsError::Rejected(other.clone()),
        }
    }

    /// Learn from a table this holder's change saw (results of one shard arrive in
    /// commit order, one change at a time). `refreshed`: the change refreshed the current
    /// session, first sent at this `t0`.
    fn learn(&mut self, shard: ShardId, table: &ShardTable, refreshed: Option<Instant>) {
        let (drift, guard) = (self.config.drift, self.config.guard);
        let Some(st) = self.shards.get_mut(&shard) else {
            return;
        };
        let Some(session) = st.session.as_mut() else {
            return;
        };
        let Some(entry) = table.sessions.get(&session.sid) else {
            self.lose_session(shard, LostReason::Evicted);
            return;
        };
        let before = session.valid_until;
        if let Some(t0) = refreshed {
            let ttl = Duration::from_millis(entry.ttl_ms);
            let until = t0 + drift.shrink(ttl).saturating_sub(guard);
            session.valid_until = session.valid_until.max(Some(until));
            session.ttl = ttl;
            if !session.renewing {
                session.renew_at = Some(t0 + ttl / 3);
            }
        }
        let sid = session.sid.clone();
        let mine: BTreeMap<&str, u64> = table.claims_of(&sid).collect();
        let gone: Vec<(String, u64)> = st
            .claims
            .iter()
            .filter(|(task, token)| mine.get(task.as_str()) != Some(token))
            .map(|(t, k)| (t.clone(), *k))
            .collect();
        let extended = session
            .valid_until
            .filter(|u| before.is_some_and(|b| *u > b));
        for (task, token) in gone {
            st.claims.remove(&task);
            self.stats.lost_evicted += 1;
            self.events.push_back(HolderEvent::Lost {
                task,
                token,
                reason: LostReason::Evicted,
            });
        }
        if let Some(valid_until) = extended {
            for (task, token) in &st.claims {
                if mine.get(task.as_str()) == Some(token) {
                    self.events.push_back(HolderEvent::Renewed {
                        task: task.clone(),
                        token: *token,
                        valid_until,
                    });
                }
            }
        }
        for (task, token) in mine {
            if !st.claims.contains_key(task) && !st.releasing.contains(&token) {
                st.claims.insert(task.to_owned(), token);
                self.stats.assigned += 1;
                self.events.push_back(HolderEvent::Assigned {
                    task: task.to_owned(),
                    token,
                });
            }
        }
        let names: Vec<(String, u64)> = st.names.iter().map(|(n, v)| (n.clone(), *v)).collect();
        for (name, version) in names {
            let still = table
                .names
                .get(&name)
                .is_some_and(|n| n.version == version && n.sid.as_ref() == Some(&sid));
            if !still {
                st.names.remove(&name);
                self.stats.names_lost += 1;
                self.events.push_back(HolderEvent::NameLost {
                    name,
                    version,
                    reason: LostReason::Evicted,
                });
            }
        }
    }
}

/// The session a change is made under, if any (a close is always of a forgotten one).
fn session_of(change: &ShardChange) -> Option<&SessionId> {
    match change {
        ShardChange::Renew { sid }
        | ShardChange::Claim { sid, .. }
        | ShardChange::RegisterName { sid, .. } => Some(sid),
        ShardChange::TransferName { sid, .. } => sid.as_ref(),
        _ => None,
    }
}
