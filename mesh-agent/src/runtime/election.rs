//! Leader election on the API: [`AgentHandle::campaign`] and
//! [`AgentHandle::run_while_leader`].
//!
//! An election `NAME` is a hold ([`AgentHandle::hold`]) of the task
//! [`election_task`]`(NAME)`; the rules — when a leader must stop, which failures are
//! retried, the seeded backoff — are the core's ([`mesh_core::claims::election`], E1–E4).
//! This module only waits: it follows the hold's renews and loss, and sleeps.
//!
//! Validity: a [`Leadership`] is valid until the claim's `valid_until`
//! (`t0 + TTL·(1−ρ) − guard` on the agent's clock), which ends before any other node
//! can be granted the claim (S3). It is converted to a local deadline measured from
//! *before* the agent was asked, so it is never later than the agent's.

use std::future::Future;
use std::time::Duration;

use mesh_core::claims::election::{election_task, retryable, stop_by, Backoff};
use mesh_core::claims::{client_id, CallOk, HolderEvent};
use mesh_core::node::claims_plane::CallError;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::api::{ApiError, EventsError, Hold};
use super::AgentHandle;

/// What a leader's validity is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderState {
    /// Leading until then (local clock); a renew moves it on.
    Valid {
        /// The end of validity.
        until: Instant,
    },
    /// Not leading any more (lost, expired, resigned, or the agent stopped).
    Lost,
}

/// This agent leads an election ([`AgentHandle::campaign`]). Dropping it (or
/// [`Leadership::resign`]) ends the hold: the claim is released unless it was lost.
#[derive(Debug)]
pub struct Leadership {
    name: String,
    token: u64,
    state: watch::Receiver<LeaderState>,
    resign: Option<oneshot::Sender<()>>,
}

impl Leadership {
    /// The election's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: carry it with every effect (tokens of successive leaders
    /// strictly increase).
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The end of validity (local clock), or `None` once leadership is lost.
    pub fn valid_until(&self) -> Option<Instant> {
        match *self.state.borrow() {
            LeaderState::Valid { until } if Instant::now() < until => Some(until),
            _ => None,
        }
    }

    /// Whether this agent still leads.
    pub fn is_valid(&self) -> bool {
        self.valid_until().is_some()
    }

    /// A watch of the validity (for callers that select on it).
    pub fn watch(&self) -> watch::Receiver<LeaderState> {
        self.state.clone()
    }

    /// Completes once leadership is lost: a loss reported by the agent, or the validity
    /// ran out without a renew.
    pub async fn lost(&self) {
        let mut state = self.state.clone();
        loop {
            let until = match *state.borrow_and_update() {
                LeaderState::Lost => return,
                LeaderState::Valid { until } => until,
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {
                    if !matches!(*state.borrow(), LeaderState::Valid { until: u } if u > until) {
                        return;
                    }
                }
                changed = state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Gives up leadership: the claim is released (unless it was lost).
    pub fn resign(mut self) {
        if let Some(tx) = self.resign.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(tx) = self.resign.take() {
            let _ = tx.send(());
        }
    }
}

/// How [`AgentHandle::run_while_leader`] stops its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderOptions {
    /// The work is cancelled this long before validity ends (its stop latency).
    pub stop_margin: Duration,
}

impl Default for LeaderOptions {
    fn default() -> Self {
        Self {
            stop_margin: Duration::from_millis(100),
        }
    }
}

impl AgentHandle {
    /// The end of `until` (agent clock) as a local deadline, measured from before the
    /// agent was asked (never later than the agent's).
    async fn local_deadline(&self, until: std::time::Instant) -> Result<Instant, ApiError> {
        let before = Instant::now();
        let left = self
            .call(move |_, now| until.saturating_duration_since(now))
            .await?;
        Ok(before + left)
    }

    /// The claims TTL and a campaign backoff seeded by this node's name and life.
    async fn election_backoff(&self, name: &str) -> Result<Backoff, ApiError> {
        let ttl = self
            .call(|n, _| n.quorum().map(|q| q.config().ttl))
            .await?
            .unwrap_or(Duration::from_secs(10));
        let me = self.identity();
        let seed = client_id(&me.name, me.incarnation, &format!("election/{name}"));
        Ok(Backoff::new(ttl, seed))
    }

    /// Campaigns for election `name` until this agent leads it: claims
    /// [`election_task`]`(name)` under a hold, and retries a refusal (another leader, no
    /// quorum, a timed-out round) after the core's seeded backoff (E3, E4). Fails only
    /// when the agent stopped or the call is refused for good (e.g. a bad name).
    pub async fn campaign(&self, name: &str) -> Result<Leadership, ApiError<CallError>> {
        let mut backoff = self.election_backoff(name).await.map_err(ApiError::widen)?;
        loop {
            match self.try_campaign(name).await {
                Ok(Some(leadership)) => return Ok(leadership),
                Ok(None) => tokio::time::sleep(backoff.next_delay()).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// One campaign attempt: `Ok(None)` if it should be retried.
    async fn try_campaign(&self, name: &str) -> Result<Option<Leadership>, ApiError<CallError>> {
        let task = election_task(name);
        // Subscribe before claiming, so that no renew or loss slips in between.
        let events = self.subscribe_claims();
        let (hold, claimed) = self.hold(&task, None).map_err(ApiError::widen)?;
        let (token, until) = match claimed.await {
            Ok(CallOk::Claimed {
                token, valid_until, ..
            }) => (token, valid_until),
            Ok(other) => unreachable!("a hold's claim answered {other:?}"),
            Err(ApiError::Failed(CallError::Claims(e))) if retryable(&e) => return Ok(None),
            Err(ApiError::Busy) => return Ok(None),
            Err(e) => return Err(e),
        };
        let until = self.local_deadline(until).await.map_err(ApiError::widen)?;
        let (tx, state) = watch::channel(LeaderState::Valid { until });
        let (resign, resigned) = oneshot::channel();
        tokio::spawn(follow(
            self.clone(),
            task,
            token,
            hold,
            events,
            tx,
            resigned,
        ));
        Ok(Some(Leadership {
            name: name.to_owned(),
            token,
            state,
            resign: Some(resign),
        }))
    }

    /// Runs `work(token)` while this agent leads election `name`, with
    /// [`LeaderOptions::default`]; see [`AgentHandle::run_while_leader_with`].
    pub async fn run_while_leader<T, F, Fut>(
        &self,
        name: &str,
        work: F,
    ) -> Result<T, ApiError<CallError>>
    where
        F: FnMut(u64) -> Fut,
        Fut: Future<Output = T>,
    {
        self.run_while_leader_with(name, LeaderOptions::default(), work)
            .await
    }

    /// Campaigns for `name`, runs `work(token)` while leading, and cancels it (drops its
    /// future) by [`stop_by`]`(validity, stop_margin)` unless a renew moved the validity
    /// on (E1); after a loss it campaigns again with the core's backoff. Returns
    /// `work`'s output once it finishes while leading (and resigns).
    pub async fn run_while_leader_with<T, F, Fut>(
        &self,
        name: &str,
        options: LeaderOptions,
        mut work: F,
    ) -> Result<T, ApiError<CallError>>
    where
        F: FnMut(u64) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut backoff = self.election_backoff(name).await.map_err(ApiError::widen)?;
        loop {
            let leader = self.campaign(name).await?;
            backoff.reset();
            let state = leader.watch();
            let margin = options.stop_margin;
            let outcome = mesh_core::claims::run_while_holding(
                work(leader.token()),
                || match *state.borrow() {
                    LeaderState::Valid { until } => stop_by(until.into_std(), margin),
                    LeaderState::Lost => None,
                },
                |at| {
                    let mut state = state.clone();
                    async move {
                        // Also wake on a loss, so that work stops at once.
                        tokio::select! {
                            () = tokio::time::sleep_until(Instant::from_std(at)) => {}
                            () = async {
                                while state.changed().await.is_ok() {
                                    if *state.borrow() == LeaderState::Lost {
                                        return;
                                    }
                                }
                            } => {}
                        }
                    }
                },
            )
            .await;
            match outcome {
                Ok(out) => {
                    leader.resign();
                    return Ok(out);
                }
                Err(_cancelled) => {
                    drop(leader);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// Follows a leader's hold: renews move its validity on; a loss, the validity running
/// out, a resign or the agent stopping end it (and the hold, releasing the claim unless
/// it was lost).
async fn follow(
    agent: AgentHandle,
    task: String,
    token: u64,
    hold: Hold,
    mut events: super::Events<HolderEvent>,
    tx: watch::Sender<LeaderState>,
    mut resigned: oneshot::Receiver<()>,
) {
    let mut until = match *tx.borrow() {
        LeaderState::Valid { until } => until,
        LeaderState::Lost => return,
    };
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(HolderEvent::Renewed { task: t, token: k, valid_until })
                    if t == task && k == token =>
                {
                    match agent.local_deadline(valid_until).await {
                        Ok(next) if next > until => {
                            until = next;
                            let _ = tx.send(LeaderState::Valid { until });
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                Ok(HolderEvent::Lost { task: t, token: k, .. }) if t == task && k == token => {
                    break;
                }
                Ok(_) => {}
                Err(EventsError::Lagged(_)) => {
                    // Missed events: is the claim still ours?
                    match agent.validity(&task).await {
                        Ok(Some((k, _))) if k == token => {}
                        _ => break,
                    }
                }
                Err(EventsError::Closed) => break,
            },
            () = tokio::time::sleep_until(until) => break,
            _ = &mut resigned => break,
        }
    }
    let _ = tx.send(LeaderState::Lost);
    hold.end().await;
}
