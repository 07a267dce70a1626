//! The admin API's task-claim, strong-name and quorum routes (`meshctl claim`,
//! `claims`, `release`, `names register --strong`, `names whereis --strong`,
//! `quorum status`), backed by a running agent.
//!
//! | route | body / query | answer |
//! |---|---|---|
//! | `POST /v1/claims` | [`ClaimBody`] `{"task", "ttl_ms"?}` | [`ClaimAnswer`] `{"task", "token", "valid_for_ms", "node"}` |
//! | `POST /v1/claims/hold` | [`ClaimBody`] | NDJSON stream of [`HoldLine`]s; closing it releases the claim |
//! | `POST /v1/claims/release` | [`ReleaseBody`] `{"task", "token"}` | [`ReleaseBody`] echoed |
//! | `GET /v1/claims` | `?shard=N` (default: every shard) | [`ClaimsView`]: linearizable reads of the shard tables |
//! | `POST /v1/names/strong` | [`StrongBody`] `{"name", "pid"?, "ephemeral"?}` | [`StrongNameView`] with the version |
//! | `GET /v1/names/strong` | | `[`[`StrongNameView`]`]`: this agent's cache |
//! | `GET /v1/names/strong/{name}` | `?linearizable=true\|false` | [`WhereisAnswer`], or 404 |
//! | `POST /v1/names/strong/release` | [`StrongReleaseBody`] `{"name", "version"}` | the body echoed |
//! | `POST /v1/names/strong/transfer` | [`StrongTransferBody`] `{"name", "version", "pid"}` | [`StrongNameView`] with the new version |
//! | `GET /v1/quorum` | | [`QuorumView`]: [`QuorumStatus`] plus the preferred proposer of every shard |
//!
//! # Properties
//!
//! - **Unavailable is explicit.** With no voters configured, before the voters' root is
//!   in force, or with fewer than a majority of the voters reachable, every route answers
//!   `503` with the reason (`claims unavailable: ...`) and nothing was submitted. Nothing
//!   here ever falls back to eventual names: strong and eventual names are separate
//!   routes, and an unknown strong name is a 404, never an eventual lookup.
//! - **No hang, no guess.** A call that has no decision within [`CALL_DEADLINE`] (the
//!   holder's own retries come first: 3 attempts of the proposer's 5 s op timeout, plus a
//!   forward timeout) answers `504` "may or may not have taken effect"; it is never
//!   reported as a success or a refusal it was not.
//! - **Bad input changes nothing.** A malformed body, an empty or oversized key, a TTL out
//!   of range or a malformed PID is a `400` before anything is submitted.
//!
//! Statuses: `503` unavailable; `409` held (with the holder and its token), name taken
//! (with the owner and version), stale token or version (with the current one), not held
//! by this agent, session lost; `404` no such strong name or local process; `504` no
//! decision in time; `400` bad input; `507` a shard table is full, or this agent already uses
//! the most distinct TTLs ([`MAX_TTLS`](mesh_core::node::quorum::MAX_TTLS)); `429` too many calls.
//!
//! # Decisions
//!
//! - **A claim belongs to the agent** (its holder, one session per shard and TTL), not to
//!   the HTTP client. `POST /v1/claims` leaves the task held — the agent renews it every
//!   TTL/3 — until `POST /v1/claims/release` with its token, or until the agent dies and
//!   the lease runs out. A repeated claim of a task the agent holds returns the same
//!   token (so a retry after a `504` is safe).
//! - **`/v1/claims/hold` binds the claim to the stream**: the first line is `claimed`
//!   with the token; `renewed` lines follow each acknowledged renew, `heartbeat` lines
//!   every second otherwise (so a departed client is noticed); `lost` (with why) ends the
//!   stream if the claim is lost. When the client goes away the agent releases the claim,
//!   retrying for up to two minutes while the quorum is unavailable or the outcome is
//!   unknown (`mesh_claims_hold_releases_total{result}` counts how it ended).
//!   A hold refuses a task the agent already holds, and a plain claim refuses a task
//!   under an open hold: otherwise the hold's release would pull the task from under the
//!   other caller.
//! - **A strong name without `pid`** is registered for a process the agent spawns and
//!   keeps: messages sent to the name wait in its mailbox (bounded; a full one refuses
//!   further sends as `mailbox_full`). The agent ends that process when the name is
//!   released or transferred through this API, when its cache shows the name gone or
//!   owned by someone else, or when the agent stops. With `pid`, the name goes to that
//!   process; a PID of this agent must be a live process (a PID of another node cannot
//!   be checked here and is taken as given).
//! - **`whereis` is cached unless asked otherwise**: the cache is what peers gossip (with
//!   the version; a send carries it and the owner's node refuses a stale one);
//!   `linearizable=true` is one quorum round.
//! - An eventual name spelled `strong` is shadowed by `GET /v1/names/strong` (read it in
//!   the `GET /v1/names` list); strong names spelled `release` or `transfer` are served
//!   by `GET` on those two routes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use metrics::counter;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::common::{bad_request, stopped, ApiJson, HEARTBEAT};
use super::json_error;
use crate::runtime::{AgentHandle, ApiError, ProcessHandle, QuorumStatus};
use mesh_core::claims::{
    CallOk, ClaimReject, ClaimsError, HolderEvent, LostReason, ShardId, ShardTable, StrongName,
    Unavailable,
};
use mesh_core::node::quorum::CallError;
use mesh_core::pid::Pid;

/// Longest a claims or strong-name route waits for a decision before it answers `504`.
pub const CALL_DEADLINE: Duration = Duration::from_secs(20);

/// How often a hold stream looks at the claim's validity.
const HOLD_POLL: Duration = Duration::from_millis(250);

/// The routes of this module, over a running agent.
pub(crate) fn routes(agent: AgentHandle) -> Router {
    let api = QuorumApi {
        agent,
        local: Arc::default(),
    };
    Router::new()
        .route("/v1/claims", get(claims).post(claim))
        .route("/v1/claims/hold", post(hold))
        .route("/v1/claims/release", post(release))
        .route("/v1/names/strong", get(strong_names).post(register))
        .route(
            "/v1/names/strong/release",
            get(|s: State<QuorumApi>, q: WhereisQueryResult| {
                whereis(s, Path("release".to_owned()), q)
            })
            .post(release_name),
        )
        .route(
            "/v1/names/strong/transfer",
            get(|s: State<QuorumApi>, q: WhereisQueryResult| {
                whereis(s, Path("transfer".to_owned()), q)
            })
            .post(transfer),
        )
        .route("/v1/names/strong/{name}", get(whereis))
        .route("/v1/quorum", get(quorum))
        .with_state(api)
}

/// The routes' state: the agent, and what this API keeps on it.
#[derive(Clone)]
struct QuorumApi {
    agent: AgentHandle,
    local: Arc<Mutex<Local>>,
}

/// What the API itself keeps on the agent.
#[derive(Default)]
struct Local {
    /// Tasks under an open hold stream.
    holds: BTreeSet<String>,
    /// Processes spawned to own a strong name registered without `pid`: name → the
    /// process and the version it was registered at (0: unknown, the call timed out).
    kept: BTreeMap<String, (ProcessHandle, u64)>,
}

impl QuorumApi {
    fn local(&self) -> MutexGuard<'_, Local> {
        // Nothing in `Local` is left half-updated by a panic.
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// ----- bodies and answers ------------------------------------------------------------

/// `POST /v1/claims` and `POST /v1/claims/hold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// The task key (1..=128 bytes).
    pub task: String,
    /// The lease TTL in milliseconds (default: the agent's `claims_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// The answer to `POST /v1/claims`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimAnswer {
    /// The task.
    pub task: String,
    /// Its fencing token: send it with every effect, and downstream refuse lower ones.
    pub token: u64,
    /// How long the claim is valid from now on the agent's clock, unless renewed (the
    /// agent renews it every TTL/3).
    pub valid_for_ms: u64,
    /// The agent that holds it.
    pub node: String,
}

/// `POST /v1/claims/release` (and its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// The task.
    pub task: String,
    /// Its current token (a stale one is refused with 409 and changes nothing).
    pub token: u64,
}

/// One line of a `POST /v1/claims/hold` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HoldLine {
    /// The task is claimed: first line.
    Claimed {
        /// The task.
        task: String,
        /// Its fencing token.
        token: u64,
        /// Validity left, in milliseconds.
        valid_for_ms: u64,
    },
    /// A renew was acknowledged: the validity moved on.
    Renewed {
        /// The token (unchanged).
        token: u64,
        /// Validity left, in milliseconds.
        valid_for_ms: u64,
    },
    /// Nothing changed for a second (lets the agent notice a departed client).
    Heartbeat,
    /// The claim is lost and the stream ends: stop using the token.
    Lost {
        /// The task.
        task: String,
        /// The lost token.
        token: u64,
        /// `evicted` (a result showed it gone), `expired` (no renew was acknowledged in
        /// time), `released` (released through the API), `agent_stopped`.
        reason: String,
    },
}

/// `?shard=N` of `GET /v1/claims`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShardQuery {
    shard: Option<u32>,
}

/// A session (lease) in a shard table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The session id, `node/incarnation/n`.
    pub session: String,
    /// The holder (the session's node).
    pub holder: String,
    /// The lease TTL in milliseconds.
    pub ttl_ms: u64,
    /// The stamp of its last refresh.
    pub renew_seq: u64,
}

/// A claim in a shard table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimView {
    /// The task.
    pub task: String,
    /// Its fencing token.
    pub token: u64,
    /// The holding node.
    pub holder: String,
    /// The holding session.
    pub session: String,
}

/// A strong name: its owner and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrongNameView {
    /// The name.
    pub name: String,
    /// The owning process.
    pub pid: String,
    /// The owner's node.
    pub node: String,
    /// The version (the name's fencing token).
    pub version: u64,
    /// Whether it vanishes with its registering agent's session.
    pub ephemeral: bool,
    /// For an ephemeral name read from a table or the cache, that session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl StrongNameView {
    fn new(name: &str, entry: &StrongName) -> Self {
        Self {
            name: name.to_owned(),
            pid: entry.owner.to_string(),
            node: entry.owner.node.clone(),
            version: entry.version,
            ephemeral: entry.sid.is_some(),
            session: entry.sid.as_ref().map(ToString::to_string),
        }
    }
}

/// One shard table as `GET /v1/claims` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardView {
    /// The shard.
    pub shard: u32,
    /// The shard's fencing counter: the next token, version or stamp it hands out.
    pub next_token: u64,
    /// Sessions, by id.
    pub sessions: Vec<SessionView>,
    /// Claims, by task.
    pub claims: Vec<ClaimView>,
    /// Strong names, by name.
    pub names: Vec<StrongNameView>,
}

impl ShardView {
    fn new(shard: ShardId, table: &ShardTable) -> Self {
        Self {
            shard: shard.0,
            next_token: table.next_token,
            sessions: table
                .sessions
                .iter()
                .map(|(sid, s)| SessionView {
                    session: sid.to_string(),
                    holder: sid.node.clone(),
                    ttl_ms: s.ttl_ms,
                    renew_seq: s.renew_seq,
                })
                .collect(),
            claims: table
                .claims
                .iter()
                .map(|(task, rec)| ClaimView {
                    task: task.clone(),
                    token: rec.token,
                    holder: rec.sid.node.clone(),
                    session: rec.sid.to_string(),
                })
                .collect(),
            names: table
                .names
                .iter()
                .map(|(name, n)| StrongNameView::new(name, n))
                .collect(),
        }
    }
}

/// The answer to `GET /v1/claims`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsView {
    /// The shards read: the one asked for (even if never written), or every shard that
    /// was ever written.
    pub shards: Vec<ShardView>,
}

/// `POST /v1/names/strong`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrongBody {
    /// The name (1..=128 bytes).
    pub name: String,
    /// The owner (`node/incarnation/local_id`); without it the agent spawns and keeps a
    /// process to own the name (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// Bind the name to the agent's session: it vanishes if the agent dies.
    #[serde(default)]
    pub ephemeral: bool,
}

/// `POST /v1/names/strong/release` (and its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrongReleaseBody {
    /// The name.
    pub name: String,
    /// Its current version (a stale one is refused with 409 and changes nothing).
    pub version: u64,
}

/// `POST /v1/names/strong/transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrongTransferBody {
    /// The name.
    pub name: String,
    /// Its current version.
    pub version: u64,
    /// The new owner.
    pub pid: String,
}

/// `?linearizable=true|false` of `GET /v1/names/strong/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhereisQuery {
    #[serde(default)]
    linearizable: bool,
}

/// The `whereis` query as its handler takes it (a bad one is answered as JSON).
type WhereisQueryResult = Result<Query<WhereisQuery>, QueryRejection>;

/// The answer to `GET /v1/names/strong/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhereisAnswer {
    /// The owner and version.
    #[serde(flatten)]
    pub entry: StrongNameView,
    /// True for a quorum read; false for this agent's cache (possibly stale).
    pub linearizable: bool,
}

/// The answer to `GET /v1/quorum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumView {
    /// The quorum plane as this agent sees it.
    #[serde(flatten)]
    pub status: QuorumStatus,
    /// The preferred proposer of each shard (index = shard) among the reachable voters.
    pub preferred_by_shard: Vec<Option<String>>,
}

// ----- errors ------------------------------------------------------------------------

/// Why a claims or strong-name route did not get a result.
#[derive(Debug)]
enum CallFailure {
    /// No decision within [`CALL_DEADLINE`].
    Deadline,
    /// The agent is stopping or busy.
    Api(ApiError),
    /// The call was refused or failed.
    Call(CallError),
}

impl CallFailure {
    fn response(&self, subject: &str) -> Response {
        match self {
            Self::Deadline => json_error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{subject}: no decision within {}s; the change may or may not have taken effect",
                    CALL_DEADLINE.as_secs()
                ),
            ),
            Self::Api(e) => stopped(e),
            Self::Call(e) => {
                let (status, message) = describe(subject, e);
                json_error(status, message)
            }
        }
    }

    /// The table's refusal, if that is what this is.
    fn rejection(&self) -> Option<&ClaimReject> {
        match self {
            Self::Call(CallError::Claims(ClaimsError::Rejected(r))) => Some(r),
            _ => None,
        }
    }
}

/// The status and message of a failed call about `subject` ("task \"job-1\"", ...).
fn describe(subject: &str, e: &CallError) -> (StatusCode, String) {
    let e = match e {
        CallError::BadTtl(why) => return (StatusCode::BAD_REQUEST, format!("ttl: {why}")),
        CallError::TooManyTtls { .. } => return (StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
        CallError::HeldWithOtherTtl { .. } => return (StatusCode::CONFLICT, e.to_string()),
        CallError::Claims(e) => e,
    };
    let status = match e {
        ClaimsError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ClaimsError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ClaimsError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
        ClaimsError::SessionLost | ClaimsError::NotHeld { .. } | ClaimsError::Superseded => {
            StatusCode::CONFLICT
        }
        ClaimsError::Rejected(r) => match r {
            ClaimReject::NoSuchName => StatusCode::NOT_FOUND,
            ClaimReject::BadLength { .. } | ClaimReject::InvalidTtl { .. } => {
                StatusCode::BAD_REQUEST
            }
            ClaimReject::TableFull { .. } | ClaimReject::Exhausted => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ClaimReject::Held { .. }
            | ClaimReject::NameTaken { .. }
            | ClaimReject::StaleToken { .. }
            | ClaimReject::VersionMismatch { .. }
            | ClaimReject::NotHeld { .. }
            | ClaimReject::NoSession { .. }
            | ClaimReject::RenewSeqMoved { .. }
            | ClaimReject::ReassignToEvicted => StatusCode::CONFLICT,
        },
    };
    let message = match e {
        // The reason says it all, whatever the call was.
        ClaimsError::Unavailable { .. } => e.to_string(),
        ClaimsError::Rejected(ClaimReject::Held { holder, token }) => format!(
            "{subject} is held by node {} (session {holder}) with token {token}",
            holder.node
        ),
        ClaimsError::Rejected(ClaimReject::NameTaken { owner, version }) => format!(
            "{subject} is taken by {owner} (node {}) at version {version}",
            owner.node
        ),
        ClaimsError::Rejected(ClaimReject::StaleToken { current }) => {
            format!("{subject}: stale token; the current one is {current}")
        }
        ClaimsError::Rejected(ClaimReject::VersionMismatch { current }) => {
            format!("{subject}: stale version; the current one is {current}")
        }
        ClaimsError::Rejected(ClaimReject::NoSuchName) => format!("{subject} has no owner"),
        ClaimsError::Rejected(ClaimReject::NotHeld { .. }) | ClaimsError::NotHeld { .. } => {
            format!(
                "{subject} is not held by this agent (a claim is released on the agent that \
                 holds it)"
            )
        }
        ClaimsError::Timeout => format!(
            "{subject}: no quorum answered in time; the change may or may not have taken effect"
        ),
        ClaimsError::SessionLost => format!(
            "{subject}: this agent's session in the shard was lost (evicted or expired); retry"
        ),
        other => format!("{subject}: {other}"),
    };
    (status, message)
}

/// Runs a call under [`CALL_DEADLINE`].
async fn settle<T>(
    call: impl Future<Output = Result<Result<T, CallError>, ApiError>>,
) -> Result<T, CallFailure> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Err(_) => Err(CallFailure::Deadline),
        Ok(Err(e)) => Err(CallFailure::Api(e)),
        Ok(Ok(Err(e))) => Err(CallFailure::Call(e)),
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

/// A result the holder should never give for this call: a bug, said as such.
fn unexpected(ok: &CallOk) -> Response {
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected result {ok:?}; this is a bug in mesh, please report it"),
    )
}

fn unavailable(reason: &Unavailable) -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ClaimsError::Unavailable {
            reason: reason.clone(),
        }
        .to_string(),
    )
}

/// Why this agent cannot read shard tables now, if it cannot: no voters, no root in
/// force yet, or fewer than a majority of the voters reachable.
fn not_ready(status: Option<&QuorumStatus>) -> Option<Response> {
    let Some(s) = status else {
        return Some(unavailable(&Unavailable::NoVoters));
    };
    if s.epoch.is_none() {
        return Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "claims unavailable: the voters' root record is not in force on this agent yet \
                 (formation state: {})",
                s.state
            ),
        ));
    }
    if s.reachable.len() < s.quorum {
        return Some(unavailable(&Unavailable::NoQuorum {
            reachable: s.reachable.len(),
            needed: s.quorum,
        }));
    }
    None
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How long from now (on the agent's clock) until `until`.
async fn remaining(agent: &AgentHandle, until: Instant) -> Result<Duration, ApiError> {
    agent
        .call(move |_, now| until.saturating_duration_since(now))
        .await
}

fn task_subject(task: &str) -> String {
    format!("task {task:?}")
}

fn name_subject(name: &str) -> String {
    format!("strong name {name:?}")
}

fn ndjson(line: &impl Serialize) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    Bytes::from(v)
}

// ----- claims ------------------------------------------------------------------------

async fn claim(State(api): State<QuorumApi>, ApiJson(body): ApiJson<ClaimBody>) -> Response {
    let subject = task_subject(&body.task);
    if api.local().holds.contains(&body.task) {
        return json_error(
            StatusCode::CONFLICT,
            format!("{subject} is held by an open hold stream on this agent"),
        );
    }
    let ttl = body.ttl_ms.map(Duration::from_millis);
    let (token, until) = match settle(api.agent.claim(&body.task, ttl)).await {
        Ok(CallOk::Claimed {
            token, valid_until, ..
        }) => (token, valid_until),
        Ok(other) => return unexpected(&other),
        Err(f) => return f.response(&subject),
    };
    match remaining(&api.agent, until).await {
        Ok(left) => Json(ClaimAnswer {
            task: body.task,
            token,
            valid_for_ms: ms(left),
            node: api.agent.identity().name,
        })
        .into_response(),
        Err(e) => stopped(&e),
    }
}

async fn release(State(api): State<QuorumApi>, ApiJson(body): ApiJson<ReleaseBody>) -> Response {
    let subject = task_subject(&body.task);
    match settle(api.agent.release(&body.task, body.token)).await {
        Ok(CallOk::Released { .. }) => Json(body).into_response(),
        Ok(other) => unexpected(&other),
        Err(f) => {
            if matches!(f.rejection(), Some(ClaimReject::StaleToken { .. })) {
                counter!("mesh_claims_token_rejections_total", "kind" => "release").increment(1);
            }
            f.response(&subject)
        }
    }
}

/// A task under an open hold stream: ends the hold when dropped (the stream ended or
/// the client went away) and, unless the claim was lost, releases it.
struct HoldGuard {
    api: QuorumApi,
    task: String,
    token: u64,
    /// The claim's TTL (for how long a release is retried).
    ttl: Duration,
    release: bool,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.api.local().holds.remove(&self.task);
        if !self.release {
            return;
        }
        let agent = self.api.agent.clone();
        let (task, token, ttl) = (self.task.clone(), self.token, self.ttl);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(release_hold(agent, task, token, ttl));
            }
            // Only when the runtime itself is going away: the agent stops with it.
            Err(_) => tracing::warn!(%task, token, "hold ended without a runtime to release"),
        }
    }
}

/// Pause between the attempts of [`release_hold`].
const HOLD_RELEASE_RETRY: Duration = Duration::from_secs(1);
/// Attempts of [`release_hold`] before it gives up (and counts it).
const HOLD_RELEASE_ATTEMPTS: u32 = 120;

/// Releases the claim of a hold that ended. A claim left behind would be renewed by the
/// agent for ever, so the release is retried while the quorum is unavailable or the
/// outcome is unknown. "Not held" may be transient: after a release whose outcome was
/// unknown, the holder adopts the claim again at its next renew (every TTL/3) if the
/// release did not take effect; so the release stops only once the claim has stayed
/// away for a whole TTL. Counted in `mesh_claims_hold_releases_total{result}`.
async fn release_hold(agent: AgentHandle, task: String, token: u64, ttl: Duration) {
    let mut away_since: Option<Instant> = None;
    let mut outcome = "failed";
    for attempt in 0..HOLD_RELEASE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(HOLD_RELEASE_RETRY).await;
        }
        match settle(agent.release(&task, token)).await {
            Ok(_) => {
                outcome = "released";
                break;
            }
            // The agent is stopping: its sessions go with it.
            Err(CallFailure::Api(_)) => return,
            // Held again with a newer token: that is another claim, not ours.
            Err(CallFailure::Call(CallError::Claims(ClaimsError::Rejected(
                ClaimReject::StaleToken { .. },
            )))) => {
                outcome = "gone";
                break;
            }
            Err(CallFailure::Call(CallError::Claims(
                ClaimsError::NotHeld { .. } | ClaimsError::Rejected(ClaimReject::NotHeld { .. }),
            ))) => {
                let since = *away_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ttl {
                    outcome = "gone";
                    break;
                }
            }
            Err(f) => {
                away_since = None;
                tracing::warn!(%task, token, error = ?f, attempt, "hold ended; release failed, retrying");
            }
        }
    }
    counter!("mesh_claims_hold_releases_total", "result" => outcome).increment(1);
    match outcome {
        "released" => tracing::info!(%task, token, "hold ended; claim released"),
        "gone" => tracing::debug!(%task, token, "hold ended; the claim was already gone"),
        _ => tracing::warn!(%task, token, "hold ended; gave up releasing the claim"),
    }
}

/// The state of a hold stream between two lines.
struct Hold {
    guard: HoldGuard,
    events: broadcast::Receiver<HolderEvent>,
    first: Option<HoldLine>,
    last_until: Instant,
    last_line: Instant,
    done: bool,
}

impl Hold {
    /// The next line, or `None` once the stream is over.
    async fn next_line(&mut self) -> Option<HoldLine> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.done {
            return None;
        }
        loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Ok(HolderEvent::Lost { task, token, reason })
                        if task == self.guard.task && token == self.guard.token =>
                    {
                        let reason = match reason {
                            LostReason::Evicted => "evicted",
                            LostReason::Expired => "expired",
                        };
                        return Some(self.lost(reason));
                    }
                    // Other tasks' events; a lagging receiver relies on the polling below.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        return Some(self.lost("agent_stopped"));
                    }
                },
                () = tokio::time::sleep(HOLD_POLL) => {
                    let task = self.guard.task.clone();
                    let seen = self
                        .guard
                        .api
                        .agent
                        .call(move |n, now| {
                            n.quorum()
                                .and_then(|q| q.validity(&task))
                                .map(|(t, until)| (t, until, until.saturating_duration_since(now)))
                        })
                        .await;
                    match seen {
                        Err(_) => return Some(self.lost("agent_stopped")),
                        Ok(Some((t, until, left))) if t == self.guard.token => {
                            if until > self.last_until {
                                self.last_until = until;
                                self.last_line = Instant::now();
                                return Some(HoldLine::Renewed {
                                    token: t,
                                    valid_for_ms: ms(left),
                                });
                            }
                            if self.last_line.elapsed() >= HEARTBEAT {
                                self.last_line = Instant::now();
                                return Some(HoldLine::Heartbeat);
                            }
                        }
                        // Not held any more, and no loss was reported: released through the
                        // API (or lost while this receiver lagged).
                        Ok(_) => return Some(self.lost("released")),
                    }
                }
            }
        }
    }

    fn lost(&mut self, reason: &str) -> HoldLine {
        self.done = true;
        self.guard.release = false;
        HoldLine::Lost {
            task: self.guard.task.clone(),
            token: self.guard.token,
            reason: reason.to_owned(),
        }
    }
}

async fn hold(State(api): State<QuorumApi>, ApiJson(body): ApiJson<ClaimBody>) -> Response {
    let task = body.task.clone();
    let subject = task_subject(&task);
    let held = {
        let t = task.clone();
        api.agent
            .call(move |n, _| n.quorum().and_then(|q| q.validity(&t)))
            .await
    };
    match held {
        Ok(Some((token, _))) => {
            return json_error(
                StatusCode::CONFLICT,
                format!("{subject} is already held by this agent with token {token}"),
            )
        }
        Ok(None) => {}
        Err(e) => return stopped(&e),
    }
    if !api.local().holds.insert(task.clone()) {
        return json_error(
            StatusCode::CONFLICT,
            format!("{subject} is held by an open hold stream on this agent"),
        );
    }
    // From here on the guard owns the hold (and, once claimed, the release).
    let ttl = body.ttl_ms.map(Duration::from_millis);
    let default_ttl = api
        .agent
        .call(|n, _| n.quorum().map(|q| q.config().ttl))
        .await;
    let mut guard = HoldGuard {
        api: api.clone(),
        task: task.clone(),
        token: 0,
        ttl: ttl
            .or(default_ttl.ok().flatten())
            .unwrap_or(crate::config::DEFAULT_CLAIMS_TTL),
        release: false,
    };
    // Subscribe before claiming, so that no loss can slip in between.
    let events = api.agent.subscribe_claims();
    let (token, until) = match settle(api.agent.claim(&task, ttl)).await {
        Ok(CallOk::Claimed {
            token, valid_until, ..
        }) => (token, valid_until),
        Ok(other) => return unexpected(&other),
        Err(f) => return f.response(&subject),
    };
    guard.token = token;
    guard.release = true;
    let left = match remaining(&api.agent, until).await {
        Ok(left) => left,
        Err(e) => return stopped(&e),
    };
    let state = Hold {
        guard,
        events,
        first: Some(HoldLine::Claimed {
            task,
            token,
            valid_for_ms: ms(left),
        }),
        last_until: until,
        last_line: Instant::now(),
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        let line = st.next_line().await?;
        Some((Ok::<_, std::convert::Infallible>(ndjson(&line)), st))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn claims(
    State(api): State<QuorumApi>,
    query: Result<Query<ShardQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(format!("bad query: {}", e.body_text())),
    };
    let status = match api.agent.quorum_status().await {
        Ok(s) => s,
        Err(e) => return stopped(&e),
    };
    if let Some(refused) = not_ready(status.as_ref()) {
        return refused;
    }
    let shards = status.map_or(0, |s| s.shards);
    let wanted: Vec<u32> = match q.shard {
        Some(s) if s >= shards => {
            return bad_request(format!(
                "shard {s} does not exist: this cluster has shards 0..={}",
                shards.saturating_sub(1)
            ))
        }
        Some(s) => vec![s],
        None => (0..shards).collect(),
    };
    let reads = wanted.iter().map(|s| {
        let agent = api.agent.clone();
        let shard = ShardId(*s);
        async move {
            let r = tokio::time::timeout(CALL_DEADLINE, agent.read_shard(shard)).await;
            (shard, r)
        }
    });
    let mut views = Vec::new();
    let mut late = Vec::new();
    for (shard, r) in futures_util::future::join_all(reads).await {
        match r {
            Ok(Ok(Some(Ok(Some(table))))) => views.push(ShardView::new(shard, &table)),
            // Never written: shown only when asked for by number.
            Ok(Ok(Some(Ok(None)))) if q.shard.is_some() => {
                views.push(ShardView::new(shard, &ShardTable::default()));
            }
            Ok(Ok(Some(Ok(None)))) => {}
            Ok(Ok(Some(Err(_)))) | Err(_) => late.push(shard.0),
            Ok(Ok(None)) => return unavailable(&Unavailable::NoVoters),
            Ok(Err(e)) => return stopped(&e),
        }
    }
    if !late.is_empty() {
        let list: Vec<String> = late.iter().map(ToString::to_string).collect();
        return json_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no quorum answered the read of shard {} in time",
                list.join(", ")
            ),
        );
    }
    Json(ClaimsView { shards: views }).into_response()
}

// ----- strong names ------------------------------------------------------------------

/// What to do with a kept process after a look at this agent's cache.
enum Sweep {
    /// The name is gone or owned by another process since it was registered: end it.
    End,
    /// The cache shows the name owned by it at this version (its registration timed
    /// out but took effect): remember the version.
    Learn(u64),
}

/// Ends the kept processes whose name this agent's cache shows released or owned by
/// another process since their registration. A process whose registration timed out
/// (version unknown) is kept until the cache shows it the owner, since a cache that has
/// not learned the registration yet looks the same as one where it never happened.
async fn sweep_kept(api: &QuorumApi) {
    let kept: Vec<(String, Pid, u64)> = api
        .local()
        .kept
        .iter()
        .map(|(name, (p, v))| (name.clone(), p.pid().clone(), *v))
        .collect();
    if kept.is_empty() {
        return;
    }
    let verdicts = api
        .agent
        .call(move |n, _| {
            let Some(q) = n.quorum() else {
                return Vec::new();
            };
            let cache = q.name_cache();
            let shards = q.config().shards;
            kept.into_iter()
                .filter_map(|(name, pid, version)| {
                    let verdict = match cache.whereis(&name) {
                        Some(e) if e.owner == pid && version == 0 => Sweep::Learn(e.version),
                        Some(e) if e.owner != pid && version > 0 && e.version > version => {
                            Sweep::End
                        }
                        Some(_) => return None,
                        // Absent from a table newer than its registration: released.
                        None => {
                            let shard = mesh_core::claims::shard_of(name.as_bytes(), shards);
                            let newer = cache
                                .snapshot(shard)
                                .is_some_and(|(stamp, _)| stamp > version);
                            if version > 0 && newer {
                                Sweep::End
                            } else {
                                return None;
                            }
                        }
                    };
                    Some((name, verdict))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    let mut local = api.local();
    for (name, verdict) in verdicts {
        match verdict {
            // Dropping the handle ends the process.
            Sweep::End => drop(local.kept.remove(&name)),
            Sweep::Learn(v) => {
                if let Some(entry) = local.kept.get_mut(&name) {
                    entry.1 = v;
                }
            }
        }
    }
}

/// Ends the kept process of `name`, if any (the name was released or transferred).
fn forget_kept(api: &QuorumApi, name: &str) {
    let removed = api.local().kept.remove(name);
    drop(removed);
}

async fn register(State(api): State<QuorumApi>, ApiJson(body): ApiJson<StrongBody>) -> Response {
    let subject = name_subject(&body.name);
    sweep_kept(&api).await;
    let (owner, process) = match &body.pid {
        Some(text) => {
            let pid = match text.parse::<Pid>() {
                Ok(p) => p,
                Err(e) => return bad_request(format!("pid: {e}")),
            };
            let me = api.agent.identity().name;
            if pid.node == me {
                let p = pid.clone();
                match api.agent.call(move |n, _| n.is_local_alive(&p)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return json_error(
                            StatusCode::NOT_FOUND,
                            format!("no such process on this agent: {pid}"),
                        )
                    }
                    Err(e) => return stopped(&e),
                }
            }
            (pid, None)
        }
        None => match api.agent.spawn(None).await {
            Ok(p) => (p.pid().clone(), Some(p)),
            Err(e) => return stopped(&e),
        },
    };
    let result = settle(
        api.agent
            .register_strong(&body.name, owner.clone(), body.ephemeral),
    )
    .await;
    let version = match &result {
        Ok(CallOk::Registered { version, .. }) => Some(*version),
        Ok(_) => None,
        // The name may be this process's: keep it until the cache says otherwise.
        Err(CallFailure::Deadline | CallFailure::Call(CallError::Claims(ClaimsError::Timeout))) => {
            Some(0)
        }
        Err(_) => None,
    };
    if let (Some(p), Some(v)) = (process, version) {
        api.local().kept.insert(body.name.clone(), (p, v));
    }
    match result {
        Ok(CallOk::Registered { name, version }) => Json(StrongNameView {
            node: owner.node.clone(),
            pid: owner.to_string(),
            name,
            version,
            ephemeral: body.ephemeral,
            session: None,
        })
        .into_response(),
        Ok(other) => unexpected(&other),
        Err(f) => f.response(&subject),
    }
}

async fn strong_names(State(api): State<QuorumApi>) -> Response {
    let list = api
        .agent
        .call(|n, _| {
            let q = n.quorum()?;
            let cache = q.name_cache();
            let mut all: Vec<StrongNameView> = (0..q.config().shards)
                .filter_map(|s| cache.snapshot(ShardId(s)))
                .flat_map(|(_, names)| names.iter().map(|(n, e)| StrongNameView::new(n, e)))
                .collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            Some(all)
        })
        .await;
    match list {
        Ok(Some(all)) => Json(all).into_response(),
        Ok(None) => unavailable(&Unavailable::NoVoters),
        Err(e) => stopped(&e),
    }
}

async fn whereis(
    State(api): State<QuorumApi>,
    Path(name): Path<String>,
    query: WhereisQueryResult,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(format!("bad query: {}", e.body_text())),
    };
    let subject = name_subject(&name);
    match settle(api.agent.whereis_strong(&name, q.linearizable)).await {
        Ok(Some(entry)) => Json(WhereisAnswer {
            entry: StrongNameView::new(&name, &entry),
            linearizable: q.linearizable,
        })
        .into_response(),
        Ok(None) if q.linearizable => {
            json_error(StatusCode::NOT_FOUND, format!("{subject} has no owner"))
        }
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            format!(
                "{subject} is not in this agent's cache (it has no owner, or the agent has not \
                 learned it yet; ask with linearizable=true)"
            ),
        ),
        Err(f) => f.response(&subject),
    }
}

async fn release_name(
    State(api): State<QuorumApi>,
    ApiJson(body): ApiJson<StrongReleaseBody>,
) -> Response {
    let subject = name_subject(&body.name);
    match settle(api.agent.release_strong(&body.name, body.version)).await {
        Ok(CallOk::NameReleased { .. }) => {
            forget_kept(&api, &body.name);
            Json(body).into_response()
        }
        Ok(other) => unexpected(&other),
        Err(f) => {
            if matches!(f.rejection(), Some(ClaimReject::VersionMismatch { .. })) {
                counter!("mesh_claims_token_rejections_total", "kind" => "name_version")
                    .increment(1);
            }
            f.response(&subject)
        }
    }
}

async fn transfer(
    State(api): State<QuorumApi>,
    ApiJson(body): ApiJson<StrongTransferBody>,
) -> Response {
    let subject = name_subject(&body.name);
    let to = match body.pid.parse::<Pid>() {
        Ok(p) => p,
        Err(e) => return bad_request(format!("pid: {e}")),
    };
    match settle(
        api.agent
            .transfer_strong(&body.name, body.version, to.clone()),
    )
    .await
    {
        Ok(CallOk::Transferred { name, version }) => {
            forget_kept(&api, &name);
            Json(StrongNameView {
                node: to.node.clone(),
                pid: to.to_string(),
                name,
                version,
                ephemeral: false,
                session: None,
            })
            .into_response()
        }
        Ok(other) => unexpected(&other),
        Err(f) => {
            if matches!(f.rejection(), Some(ClaimReject::VersionMismatch { .. })) {
                counter!("mesh_claims_token_rejections_total", "kind" => "name_version")
                    .increment(1);
            }
            f.response(&subject)
        }
    }
}

// ----- quorum ------------------------------------------------------------------------

async fn quorum(State(api): State<QuorumApi>) -> Response {
    let status = match api.agent.quorum_status().await {
        Ok(Some(s)) => s,
        Ok(None) => return unavailable(&Unavailable::NoVoters),
        Err(e) => return stopped(&e),
    };
    let preferred = api
        .agent
        .call(|n, _| {
            n.quorum().map(|q| {
                (0..q.config().shards)
                    .map(|s| q.preferred(ShardId(s)))
                    .collect::<Vec<_>>()
            })
        })
        .await;
    match preferred {
        Ok(p) => Json(QuorumView {
            status,
            preferred_by_shard: p.unwrap_or_default(),
        })
        .into_response(),
        Err(e) => stopped(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::claims::{SessionId, TableKind};

    fn sid(node: &str) -> SessionId {
        SessionId {
            node: node.into(),
            incarnation: 5,
            n: 2,
        }
    }

    fn claims(e: ClaimsError) -> CallError {
        CallError::Claims(e)
    }

    #[test]
    fn unavailable_is_a_503_that_says_why_and_names_no_subject() {
        let (status, msg) = describe(
            "task \"a\"",
            &claims(ClaimsError::Unavailable {
                reason: Unavailable::NoQuorum {
                    reachable: 1,
                    needed: 2,
                },
            }),
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            msg,
            "claims unavailable: only 1 of the 2 voters needed for a quorum are reachable"
        );
        let (status, msg) = describe(
            "task \"a\"",
            &claims(ClaimsError::Unavailable {
                reason: Unavailable::NoVoters,
            }),
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(msg.contains("no voters are configured"), "{msg}");
    }

    #[test]
    fn a_held_task_and_a_taken_name_are_409s_that_name_the_holder_and_its_token() {
        let (status, msg) = describe(
            "task \"job-1\"",
            &claims(ClaimsError::Rejected(ClaimReject::Held {
                holder: sid("n4"),
                token: 17,
            })),
        );
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            msg,
            "task \"job-1\" is held by node n4 (session n4/5/2) with token 17"
        );
        let owner: Pid = "n5/9/3".parse().expect("pid");
        let (status, msg) = describe(
            "strong name \"leader\"",
            &claims(ClaimsError::Rejected(ClaimReject::NameTaken {
                owner,
                version: 12,
            })),
        );
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            msg,
            "strong name \"leader\" is taken by n5/9/3 (node n5) at version 12"
        );
    }

    #[test]
    fn stale_tokens_and_versions_are_409s_with_the_current_one() {
        for (reject, word) in [
            (ClaimReject::StaleToken { current: 8 }, "token"),
            (ClaimReject::VersionMismatch { current: 8 }, "version"),
        ] {
            let (status, msg) = describe("x", &claims(ClaimsError::Rejected(reject)));
            assert_eq!(status, StatusCode::CONFLICT);
            assert_eq!(msg, format!("x: stale {word}; the current one is 8"));
        }
    }

    #[test]
    fn a_timeout_is_a_504_that_says_the_effect_is_unknown() {
        let (status, msg) = describe("task \"a\"", &claims(ClaimsError::Timeout));
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert!(msg.ends_with("may or may not have taken effect"), "{msg}");
        let r = CallFailure::Deadline.response("task \"a\"");
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn bad_input_is_a_400_and_other_refusals_get_their_own_status() {
        let cases = [
            (
                CallError::BadTtl("claims ttl 5 ms is outside 200..=86400000 ms".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                claims(ClaimsError::Rejected(ClaimReject::BadLength {
                    field: mesh_core::claims::Field::Task,
                    len: 200,
                    max: 128,
                })),
                StatusCode::BAD_REQUEST,
            ),
            (
                claims(ClaimsError::Rejected(ClaimReject::NoSuchName)),
                StatusCode::NOT_FOUND,
            ),
            (
                claims(ClaimsError::Rejected(ClaimReject::TableFull {
                    kind: TableKind::Claims,
                    max: 256,
                })),
                StatusCode::INSUFFICIENT_STORAGE,
            ),
            (
                claims(ClaimsError::Overloaded { max: 1024 }),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                claims(ClaimsError::NotHeld { task: "a".into() }),
                StatusCode::CONFLICT,
            ),
            (claims(ClaimsError::SessionLost), StatusCode::CONFLICT),
        ];
        for (e, want) in cases {
            assert_eq!(describe("s", &e).0, want, "{e:?}");
        }
        let (_, msg) = describe(
            "task \"a\"",
            &claims(ClaimsError::NotHeld { task: "a".into() }),
        );
        assert!(msg.contains("not held by this agent"), "{msg}");
    }

    #[test]
    fn reads_are_refused_without_voters_a_root_or_a_quorum() {
        assert_eq!(
            not_ready(None).map(|r| r.status()),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        let mut s = QuorumStatus {
            voters: vec!["n1".into(), "n2".into(), "n3".into()],
            epoch: None,
            state: "forming".into(),
            reason: None,
            reachable: vec!["n1".into(), "n2".into(), "n3".into()],
            quorum: 2,
            acceptor: false,
            shards: 8,
            preferred: BTreeMap::new(),
            watched: Vec::new(),
            stalled: BTreeMap::new(),
            largest_slot: None,
        };
        assert!(not_ready(Some(&s)).is_some(), "no root in force yet");
        s.epoch = Some(1);
        assert!(not_ready(Some(&s)).is_none());
        s.reachable = vec!["n1".into()];
        assert_eq!(
            not_ready(Some(&s)).map(|r| r.status()),
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "one of three voters is no quorum"
        );
    }

    #[test]
    fn a_shard_view_lists_sessions_claims_and_names_with_their_holders() {
        let mut t = ShardTable {
            next_token: 9,
            ..ShardTable::default()
        };
        t.sessions.insert(
            sid("n4"),
            mesh_core::claims::Session {
                ttl_ms: 2000,
                renew_seq: 8,
            },
        );
        t.claims.insert(
            "job-1".into(),
            mesh_core::claims::ClaimRecord {
                sid: sid("n4"),
                token: 7,
            },
        );
        t.names.insert(
            "leader".into(),
            StrongName {
                owner: "n4/5/1".parse().expect("pid"),
                version: 6,
                sid: Some(sid("n4")),
            },
        );
        let v = ShardView::new(ShardId(3), &t);
        assert_eq!((v.shard, v.next_token), (3, 9));
        assert_eq!(
            v.sessions,
            vec![SessionView {
                session: "n4/5/2".into(),
                holder: "n4".into(),
                ttl_ms: 2000,
                renew_seq: 8,
            }]
        );
        assert_eq!(
            v.claims,
            vec![ClaimView {
                task: "job-1".into(),
                token: 7,
                holder: "n4".into(),
                session: "n4/5/2".into(),
            }]
        );
        assert_eq!(v.names[0].version, 6);
        assert!(v.names[0].ephemeral);
        assert_eq!(v.names[0].node, "n4");
    }

    #[test]
    fn hold_lines_are_tagged_by_event_and_read_back() {
        let lines = [
            HoldLine::Claimed {
                task: "a".into(),
                token: 3,
                valid_for_ms: 1900,
            },
            HoldLine::Renewed {
                token: 3,
                valid_for_ms: 1850,
            },
            HoldLine::Heartbeat,
            HoldLine::Lost {
                task: "a".into(),
                token: 3,
                reason: "evicted".into(),
            },
        ];
        let text: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8(ndjson(l).to_vec()).expect("utf-8"))
            .collect();
        assert_eq!(
            text[0],
            "{\"event\":\"claimed\",\"task\":\"a\",\"token\":3,\"valid_for_ms\":1900}\n"
        );
        assert_eq!(text[2], "{\"event\":\"heartbeat\"}\n");
        for (line, t) in lines.iter().zip(&text) {
            let back: HoldLine = serde_json::from_str(t.trim_end()).expect("parses");
            assert_eq!(&back, line);
        }
    }

    #[test]
    fn a_whereis_answer_is_one_flat_object() {
        let a = WhereisAnswer {
            entry: StrongNameView {
                name: "leader".into(),
                pid: "n4/5/1".into(),
                node: "n4".into(),
                version: 6,
                ephemeral: false,
                session: None,
            },
            linearizable: true,
        };
        let v: serde_json::Value = serde_json::to_value(&a).expect("json");
        assert_eq!(v["version"], 6);
        assert_eq!(v["linearizable"], true);
        assert!(v.get("session").is_none());
        let back: WhereisAnswer = serde_json::from_value(v).expect("parses");
        assert_eq!(back, a);
    }

    #[test]
    fn bodies_refuse_unknown_fields() {
        let e = serde_json::from_str::<ClaimBody>("{\"task\":\"a\",\"ttl\":5}")
            .expect_err("unknown field");
        assert!(e.to_string().contains("ttl"), "{e}");
        let b: StrongBody = serde_json::from_str("{\"name\":\"x\"}").expect("defaults");
        assert_eq!((b.pid, b.ephemeral), (None, false));
    }
}
