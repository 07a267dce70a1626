//! The admin API's strong-name routes: register, list the cache, `whereis` (cached or
//! linearizable), release and transfer, and the processes this agent keeps to own
//! names registered without a `pid`. The table, properties and decisions are in
//! [`calls`](super::calls).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use metrics::counter;
use serde::Deserialize;

use super::calls::{name_subject, settle, unavailable, unexpected, CallFailure, QuorumApi};
use super::common::{bad_request, over_limit, stopped, ApiJson};
use super::json_error;
use crate::runtime::ApiError;
use mesh_core::claims::{
    CallOk, ClaimReject, ClaimsError, KeptVerdict, ShardId, StrongName, Unavailable,
};
use mesh_core::node::claims_plane::CallError;
use mesh_core::pid::Pid;

use mesh_api::{StrongBody, StrongNameView, StrongReleaseBody, StrongTransferBody, WhereisAnswer};

/// [`StrongNameView`] from a core strong-name entry (the view is `mesh-api`'s, the
/// entry the core's: this trait is how the agent builds one).
pub(super) trait StrongNameViewExt {
    /// The view of `entry`, registered as `name`.
    fn new(name: &str, entry: &StrongName) -> Self;
}

impl StrongNameViewExt for StrongNameView {
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

/// `?linearizable=true|false` of `GET /v1/names/strong/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhereisQuery {
    #[serde(default)]
    linearizable: bool,
}

/// The `whereis` query as its handler takes it (a bad one is answered as JSON).
pub(super) type WhereisQueryResult = Result<Query<WhereisQuery>, QueryRejection>;

/// Ends the kept processes whose name this agent's cache shows released or owned by
/// another process since their registration, as the core judges it
/// ([`NameCache::judge_kept`](mesh_core::claims::NameCache::judge_kept)).
pub(super) async fn sweep_kept(api: &QuorumApi) {
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
            kept.into_iter()
                .filter_map(|(name, pid, version)| {
                    let verdict = q.name_cache().judge_kept(&name, &pid, version)?;
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
            KeptVerdict::End => drop(local.kept.remove(&name)),
            KeptVerdict::Learn(v) => {
                if let Some(entry) = local.kept.get_mut(&name) {
                    entry.1 = v;
                }
            }
        }
    }
}

/// Ends the kept process of `name`, if any (the name was released or transferred).
pub(super) fn forget_kept(api: &QuorumApi, name: &str) {
    let removed = api.local().kept.remove(name);
    drop(removed);
}

pub(super) async fn register(
    State(api): State<QuorumApi>,
    ApiJson(body): ApiJson<StrongBody>,
) -> Response {
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
            Err(ApiError::Failed(e)) => return over_limit(&e),
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

pub(super) async fn strong_names(State(api): State<QuorumApi>) -> Response {
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

pub(super) async fn whereis(
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

pub(super) async fn release_name(
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

pub(super) async fn transfer(
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
