//! Calls into the claims plane from the admin API: the state that the task-claim
//! ([`claims`](super::claims)), strong-name ([`strong_names`](super::strong_names)) and
//! quorum ([`quorum`](super::quorum)) routes share, their router, running a call under
//! a deadline, and how each refusal maps to a status. These routes serve `meshctl
//! claim`, `claims`, `release`, `names register --strong`, `names whereis --strong` and
//! `quorum status`, backed by a running agent.
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
//! the most distinct TTLs ([`MAX_TTLS`](mesh_core::node::claims_plane::MAX_TTLS)); `429` too many calls.
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
//!   under an open hold or whose hold's release is still running: otherwise the hold's
//!   release would pull the task from under the other caller. These rules are the
//!   core's ([`mesh_core::claims::hold`], run by the simulator); this module carries
//!   the lines (a `renewed` line per [`HolderEvent::Renewed`](mesh_core::claims::HolderEvent),
//!   and a look at the claim once a heartbeat) and tells the core when the stream ended.
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

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::Serialize;

use super::claims::{claim, claims, hold, release};
use super::common::stopped;
use super::json_error;
use super::quorum::quorum;
use super::strong_names::{
    register, release_name, strong_names, transfer, whereis, WhereisQueryResult,
};
use crate::runtime::{AgentHandle, ApiError, ProcessHandle};
use mesh_api::QuorumStatus;
use mesh_core::claims::{CallOk, ClaimReject, ClaimsError, Unavailable};
use mesh_core::node::claims_plane::CallError;

pub(super) use mesh_api::CALL_DEADLINE;

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
pub(super) struct QuorumApi {
    pub(super) agent: AgentHandle,
    pub(super) local: Arc<Mutex<Local>>,
}

/// What the API itself keeps on the agent.
#[derive(Default)]
pub(super) struct Local {
    /// Processes spawned to own a strong name registered without `pid`: name → the
    /// process and the version it was registered at (0: unknown, the call timed out).
    pub(super) kept: BTreeMap<String, (ProcessHandle, u64)>,
}

impl QuorumApi {
    pub(super) fn local(&self) -> MutexGuard<'_, Local> {
        // Nothing in `Local` is left half-updated by a panic.
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why a claims or strong-name route did not get a result.
#[derive(Debug)]
pub(super) enum CallFailure {
    /// No decision within [`CALL_DEADLINE`].
    Deadline,
    /// The agent is stopping or busy.
    Api(ApiError),
    /// The call was refused or failed.
    Call(CallError),
}

impl CallFailure {
    pub(super) fn response(&self, subject: &str) -> Response {
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
    pub(super) fn rejection(&self) -> Option<&ClaimReject> {
        match self {
            Self::Call(CallError::Claims(ClaimsError::Rejected(r))) => Some(r),
            _ => None,
        }
    }
}

/// The status and message of a failed call about `subject` ("task \"job-1\"", ...).
pub(super) fn describe(subject: &str, e: &CallError) -> (StatusCode, String) {
    let e = match e {
        CallError::BadTtl(why) => return (StatusCode::BAD_REQUEST, format!("ttl: {why}")),
        CallError::TooManyTtls { .. } => return (StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
        CallError::HeldWithOtherTtl { .. }
        | CallError::AlreadyHeld { .. }
        | CallError::UnderHold { .. } => return (StatusCode::CONFLICT, e.to_string()),
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
pub(super) async fn settle<T>(
    call: impl Future<Output = Result<T, ApiError<CallError>>>,
) -> Result<T, CallFailure> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Err(_) => Err(CallFailure::Deadline),
        Ok(Err(e)) => Err(match e.into_failed() {
            Ok(e) => CallFailure::Call(e),
            Err(e) => CallFailure::Api(e),
        }),
        Ok(Ok(v)) => Ok(v),
    }
}

/// A result the holder should never give for this call: a bug, said as such.
pub(super) fn unexpected(ok: &CallOk) -> Response {
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected result {ok:?}; this is a bug in mesh, please report it"),
    )
}

pub(super) fn unavailable(reason: &Unavailable) -> Response {
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
pub(super) fn not_ready(status: Option<&QuorumStatus>) -> Option<Response> {
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

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How long from now (on the agent's clock) until `until`.
pub(super) async fn remaining(agent: &AgentHandle, until: Instant) -> Result<Duration, ApiError> {
    agent
        .call(move |_, now| until.saturating_duration_since(now))
        .await
}

pub(super) fn task_subject(task: &str) -> String {
    format!("task {task:?}")
}

pub(super) fn name_subject(name: &str) -> String {
    format!("strong name {name:?}")
}

pub(super) fn ndjson(line: &impl Serialize) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::claims::ShardViewExt as _;
    use mesh_api::{
        ClaimBody, ClaimView, HoldLine, SessionView, ShardView, StrongBody, StrongNameView,
        WhereisAnswer,
    };
    use mesh_core::claims::{SessionId, TableKind};
    use mesh_core::claims::{ShardId, ShardTable, StrongName};
    use mesh_core::pid::Pid;

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
