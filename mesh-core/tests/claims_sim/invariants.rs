//! The properties checked over every run's [`Record`], one function each (DESIGN §9).
//!
//! Safety: [`linearizable_per_shard`] (with the final reads: acknowledged changes
//! survive the crash of any one voter), [`validity_windows_never_overlap`],
//! [`evictions_follow_validity`],
//! [`tokens_increase_with_validity`], [`fenced_resource_never_goes_back`].
//! Liveness (calm phase): [`dead_holder_is_evicted_in_time`],
//! [`renewing_holders_keep_their_claims`], [`one_isolated_voter_stalls_nothing`].

use super::lincheck::{self, Call, Failure, Model};
use super::world::{Record, Window, DETECTION, END, LIVE_FROM, REFRESH, RHO_PPM, TTL};
use mesh_core::claims::{shard_of, ShardChange, ShardId, ShardOutcome, ShardTable};
use mesh_core::quorum::{Change, Outcome};
use std::collections::BTreeMap;
use std::time::Duration;

/// The sequential specification of a shard: the register applying `ShardChange`s.
struct ShardModel;

/// What a change returned, as the checker compares it. A replay (a retry found already
/// decided) reports the recorded decision of the change's one application and the
/// table as it is at the replay, which is later than the change's linearization point:
/// only its decision (receipt or refusal) is compared. Everything else is compared
/// whole, table included.
#[derive(Debug)]
struct Seen(ShardOutcome);

impl PartialEq for Seen {
    fn eq(&self, other: &Self) -> bool {
        let replay = |o: &ShardOutcome| matches!(o, Outcome::Replayed { .. });
        if replay(&self.0) || replay(&other.0) {
            self.0.decision() == other.0.decision()
        } else {
            self.0 == other.0
        }
    }
}

impl Model for ShardModel {
    type State = Option<ShardTable>;
    type Op = ShardChange;
    type Ret = Seen;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, op: &ShardChange) -> (Self::State, Seen) {
        match op.apply(state.as_ref()) {
            Ok(new) => {
                let next = if op.is_read() {
                    state.clone()
                } else {
                    new.clone()
                };
                let receipt = op.receipt(new.as_ref());
                (
                    next,
                    Seen(Outcome::Applied {
                        value: new,
                        receipt,
                    }),
                )
            }
            Err(reason) => (
                state.clone(),
                Seen(Outcome::Rejected {
                    reason,
                    current: state.clone(),
                }),
            ),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// S1 + S5: every shard's history — every table op of every holder and watcher, with
/// timeouts and crashes as indeterminate, then reads of each shard from the voters'
/// durable state with one voter left out at a time — is linearizable. Returns the
/// checker's steps.
pub(crate) fn linearizable_per_shard(r: &Record) -> Result<u64, String> {
    let mut shards: BTreeMap<ShardId, Vec<Call<ShardChange, Seen>>> = BTreeMap::new();
    for op in &r.history {
        // A superseded op never took effect and never will: it is not part of the object's
        // history.
        if matches!(op.done, Some((_, Outcome::Superseded))) {
            continue;
        }
        shards.entry(op.shard).or_default().push(Call {
            op: op.change.clone(),
            invoked: nanos(op.invoked),
            returned: op.done.as_ref().map(|(t, o)| (nanos(*t), Seen(o.clone()))),
        });
    }
    let mut steps = 0;
    for (shard, calls) in shards {
        match lincheck::check(&ShardModel, &calls, 20_000_000) {
            Ok(s) => steps += s,
            Err(Failure::NotLinearizable { placed, stuck }) => {
                return Err(format!(
                    "{shard}: not linearizable ({} ops; {placed} placed at the deepest point; \
                     stuck on {stuck})",
                    calls.len()
                ))
            }
            Err(Failure::GaveUp { steps }) => {
                return Err(format!(
                    "{shard}: the linearizability checker gave up after {steps} steps"
                ))
            }
        }
    }
    Ok(steps)
}

/// The non-empty validity windows of each task, one per (token, holder life).
fn windows(r: &Record) -> BTreeMap<&str, Vec<&Window>> {
    let mut by_task: BTreeMap<&str, Vec<&Window>> = BTreeMap::new();
    for w in &r.windows {
        if w.end() > w.start {
            by_task.entry(w.task.as_str()).or_default().push(w);
        }
    }
    for list in by_task.values_mut() {
        list.sort_by_key(|w| (w.start, w.token));
    }
    by_task
}

/// S3: for one task, the windows in which holders believed different tokens valid (or
/// acted on them) never overlap in global time, and no token is held by two lives.
pub(crate) fn validity_windows_never_overlap(r: &Record) -> Result<(), String> {
    for (task, list) in windows(r) {
        let mut owner: BTreeMap<u64, &str> = BTreeMap::new();
        for w in &list {
            if let Some(other) = owner.insert(w.token, &w.who) {
                if other != w.who {
                    return Err(format!(
                        "{task}: token {} held by both {other} and {}",
                        w.token, w.who
                    ));
                }
            }
        }
        let mut latest: Option<&Window> = None;
        for w in list {
            if let Some(prev) = latest {
                if prev.token != w.token && prev.end() > w.start {
                    return Err(format!(
                        "{task}: validity windows overlap by {:?}: token {} of {} [{:?}, {:?}) \
                         and token {} of {} [{:?}, {:?})",
                        prev.end() - w.start,
                        prev.token,
                        prev.who,
                        prev.start,
                        prev.end(),
                        w.token,
                        w.who,
                        w.start,
                        w.end()
                    ));
                }
            }
            if latest.is_none_or(|l| w.end() > l.end()) {
                latest = Some(w);
            }
        }
    }
    Ok(())
}

/// S3, the lemma: an evict (or reassign) of a session commits only after every validity
/// its holder derived from that session has ended — the instant the tasks become
/// claimable by others never overlaps the evicted holder's validity. (This is what makes
/// the windows disjoint whatever the workload; it catches an early eviction even when no
/// other holder happens to claim the task in time.)
pub(crate) fn evictions_follow_validity(r: &Record) -> Result<(), String> {
    for op in &r.history {
        let (ShardChange::Evict { sid, .. } | ShardChange::Reassign { sid, .. }) = &op.change
        else {
            continue;
        };
        let Some((
            done,
            Outcome::Applied { .. }
            | Outcome::Replayed {
                decision: Ok(_), ..
            },
        )) = &op.done
        else {
            continue;
        };
        // Session ids are numbered per shard (by the shard's register): match the shard.
        let of_this_session = |w: &&Window| {
            w.session.as_ref() == Some(sid)
                && shard_of(w.task.as_bytes(), super::world::SHARDS) == op.shard
        };
        for w in r.windows.iter().filter(of_this_session) {
            if w.believed_end() > *done {
                return Err(format!(
                    "session {sid} evicted by {done:?} while {} held {} (token {}) valid until \
                     {:?}",
                    w.who,
                    w.task,
                    w.token,
                    w.believed_end()
                ));
            }
        }
    }
    Ok(())
}

/// S2: in the real-time order of their validity, a task's tokens strictly increase.
pub(crate) fn tokens_increase_with_validity(r: &Record) -> Result<(), String> {
    for (task, list) in windows(r) {
        for pair in list.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.token > b.token {
                return Err(format!(
                    "{task}: token {} ({}) valid from {:?}, after token {} ({}) from {:?}",
                    b.token, b.who, b.start, a.token, a.who, a.start
                ));
            }
        }
    }
    Ok(())
}

/// S4: the fenced resource never applied a token lower than one it had applied.
pub(crate) fn fenced_resource_never_goes_back(r: &Record) -> Result<(), String> {
    for (task, log) in &r.fenced {
        if let Some(w) = log.windows(2).find(|w| w[1] < w[0]) {
            return Err(format!(
                "{task}: fenced resource applied {} after {}",
                w[1], w[0]
            ));
        }
    }
    Ok(())
}

/// The L2 bound: the last refresh of the dead holder committed by its death; a watcher
/// learns it within a refresh period (or, if the watcher died, a new one takes over
/// after detection and reads at once), waits TTL·(1+ρ) on its own clock (at most
/// TTL·(1+ρ)/rate of real time), then commits the evict.
pub(crate) fn eviction_bound(slowest_rate: f64) -> Duration {
    let stretched = TTL.as_secs_f64() * (1.0 + f64::from(RHO_PPM) / 1e6) / slowest_rate;
    DETECTION + REFRESH + Duration::from_secs_f64(stretched) + Duration::from_millis(300)
}

/// L2: the holder killed in the calm phase has no session left in any shard (its tasks
/// are claimable) within the bound.
pub(crate) fn dead_holder_is_evicted_in_time(r: &Record) -> Result<Duration, String> {
    let Some((name, inc, at)) = &r.killed else {
        return Err("no holder was killed".into());
    };
    let bound = eviction_bound(r.slowest_rate);
    match r.killed_gone {
        Some(gone) if gone - *at <= bound => Ok(gone - *at),
        Some(gone) => Err(format!(
            "{name}#{inc} killed at {at:?}: sessions gone only after {:?} (bound {bound:?})",
            gone - *at
        )),
        None => Err(format!(
            "{name}#{inc} killed at {at:?}: sessions never seen gone by {END:?}"
        )),
    }
}

/// L3: after the faults (from `LIVE_FROM`), no holder that is alive — and so keeps
/// renewing with a quorum reachable — loses a claim.
pub(crate) fn renewing_holders_keep_their_claims(r: &Record) -> Result<(), String> {
    match r
        .lost_late
        .iter()
        .find(|(who, _, _)| r.survivors.contains(who))
    {
        Some((who, at, task)) => Err(format!("{who} lost {task} at {at:?} in the calm phase")),
        None => Ok(()),
    }
}

/// How long an op may take with one voter isolated and no other fault.
pub(crate) const CALM_OP_BOUND: Duration = Duration::from_millis(400);

/// L4: with one voter isolated (and nothing else wrong), every op of a live holder or
/// watcher completes, quickly.
pub(crate) fn one_isolated_voter_stalls_nothing(r: &Record) -> Result<Duration, String> {
    let mut slowest = Duration::ZERO;
    for op in &r.history {
        let late = op.invoked >= LIVE_FROM && op.invoked + CALM_OP_BOUND < END;
        if !late || !r.survivors.contains(&op.client) {
            continue;
        }
        match &op.done {
            Some((t, _)) if *t - op.invoked <= CALM_OP_BOUND => {
                slowest = slowest.max(*t - op.invoked)
            }
            Some((t, _)) => {
                return Err(format!(
                    "{} took {:?} in the calm phase: {:?}",
                    op.client,
                    *t - op.invoked,
                    op.change
                ))
            }
            None => {
                return Err(format!(
                    "{} never completed in the calm phase: {:?} invoked at {:?}",
                    op.client, op.change, op.invoked
                ))
            }
        }
    }
    Ok(slowest)
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Measured {
    pub(crate) checker_steps: u64,
    pub(crate) eviction_latency: Duration,
    pub(crate) calm_op_latency: Duration,
}

/// Every property, in order; the first failure names its property.
pub(crate) fn all(r: &Record) -> Result<Measured, String> {
    let checker_steps = linearizable_per_shard(r).map_err(|e| format!("linearizability: {e}"))?;
    validity_windows_never_overlap(r).map_err(|e| format!("overlap: {e}"))?;
    evictions_follow_validity(r).map_err(|e| format!("early eviction: {e}"))?;
    tokens_increase_with_validity(r).map_err(|e| format!("tokens: {e}"))?;
    fenced_resource_never_goes_back(r).map_err(|e| format!("fencing: {e}"))?;
    let eviction_latency =
        dead_holder_is_evicted_in_time(r).map_err(|e| format!("dead holder: {e}"))?;
    renewing_holders_keep_their_claims(r).map_err(|e| format!("renewing holder: {e}"))?;
    let calm_op_latency =
        one_isolated_voter_stalls_nothing(r).map_err(|e| format!("isolated voter: {e}"))?;
    Ok(Measured {
        checker_steps,
        eviction_latency,
        calm_op_latency,
    })
}
