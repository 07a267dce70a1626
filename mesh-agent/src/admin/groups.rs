//! The admin API's groups and eventual-names routes (`meshctl groups`, `names`),
//! backed by a running agent.
//!
//! | route | body / query | answer |
//! |---|---|---|
//! | `GET /v1/scopes` | | `["default", ...]` scopes with at least one group |
//! | `GET /v1/groups` | `?scope=S` | `[{"group", "members"}]` (distinct processes) |
//! | `GET /v1/groups/{group}` | `?scope=S` | `{"scope", "group", "members": [{"pid", "node", "count", "meta"}]}` |
//! | `GET /v1/names` | | `[{"name", "pid", "node", "hlc", "meta", "policy"}]` |
//! | `GET /v1/names/{name}` | | one of those, or 404 |
//!
//! Malformed requests get a 4xx with `{"error": "..."}` and change nothing.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::common::stopped;
use super::json_error;
use crate::runtime::AgentHandle;
use mesh_core::registry::{ConflictPolicy, NameInfo};

/// The scope used when a request names none.
pub const DEFAULT_SCOPE: &str = "default";

/// The routes of this module, over a running agent.
pub(crate) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/scopes", get(scopes))
        .route("/v1/groups", get(groups))
        .route("/v1/groups/{group}", get(group))
        .route("/v1/names", get(names))
        .route("/v1/names/{name}", get(name))
}

/// `?scope=S`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScopeQuery {
    scope: Option<String>,
}

impl ScopeQuery {
    fn scope(&self) -> String {
        self.scope
            .clone()
            .unwrap_or_else(|| DEFAULT_SCOPE.to_owned())
    }
}

/// A name's conflict policy as the API spells it (`notify`, `kill`,
/// `unregister_both`); the wire format inside the cluster uses one-letter names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The loser's claim is retracted and its process notified (default).
    #[default]
    Notify,
    /// As notify, and the losing process is ended.
    Kill,
    /// Both claims are retracted and both processes notified.
    UnregisterBoth,
}

impl From<Policy> for ConflictPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Notify => Self::Notify,
            Policy::Kill => Self::Kill,
            Policy::UnregisterBoth => Self::UnregisterBoth,
        }
    }
}

impl From<ConflictPolicy> for Policy {
    fn from(p: ConflictPolicy) -> Self {
        match p {
            ConflictPolicy::Notify => Self::Notify,
            ConflictPolicy::Kill => Self::Kill,
            ConflictPolicy::UnregisterBoth => Self::UnregisterBoth,
        }
    }
}

/// One line of `GET /v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCount {
    /// The group.
    pub group: String,
    /// Distinct member processes.
    pub members: usize,
}

/// One member in `GET /v1/groups/{group}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The process.
    pub pid: String,
    /// Its node.
    pub node: String,
    /// How many times it joined (multiplicity).
    pub count: usize,
    /// Its metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// `GET /v1/groups/{group}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The scope.
    pub scope: String,
    /// The group.
    pub group: String,
    /// Members, by PID.
    pub members: Vec<GroupMember>,
}

/// One name in `GET /v1/names`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameView {
    /// The name.
    pub name: String,
    /// The holder.
    pub pid: String,
    /// The holder's node.
    pub node: String,
    /// The claim's hybrid logical timestamp, `wall_ms.logical`.
    pub hlc: String,
    /// Conflict policy.
    pub policy: Policy,
    /// Metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

impl NameView {
    fn new(name: String, info: NameInfo) -> Self {
        Self {
            name,
            node: info.pid.node.clone(),
            pid: info.pid.to_string(),
            hlc: format!("{}.{}", info.hlc.wall_ms, info.hlc.logical),
            policy: info.policy.into(),
            meta: info.meta,
        }
    }
}

async fn scopes(State(h): State<AgentHandle>) -> Response {
    match h.call(|n, _| n.registry().scopes()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => stopped(&e),
    }
}

async fn groups(State(h): State<AgentHandle>, Query(q): Query<ScopeQuery>) -> Response {
    let scope = q.scope();
    match h.call(move |n, _| n.registry().group_counts(&scope)).await {
        Ok(counts) => Json(
            counts
                .into_iter()
                .map(|(group, members)| GroupCount { group, members })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => stopped(&e),
    }
}

async fn group(
    State(h): State<AgentHandle>,
    Path(group): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> Response {
    let scope = q.scope();
    let (s, g) = (scope.clone(), group.clone());
    match h
        .call(move |n, _| n.registry().members_with_meta(&s, &g))
        .await
    {
        Ok(members) => Json(GroupView {
            scope,
            group,
            members: members
                .into_iter()
                .map(|(pid, count, meta)| GroupMember {
                    node: pid.node.clone(),
                    pid: pid.to_string(),
                    count,
                    meta,
                })
                .collect(),
        })
        .into_response(),
        Err(e) => stopped(&e),
    }
}

async fn names(State(h): State<AgentHandle>) -> Response {
    match h.call(|n, _| n.registry().registered()).await {
        Ok(list) => Json(
            list.into_iter()
                .map(|(name, info)| NameView::new(name, info))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => stopped(&e),
    }
}

async fn name(State(h): State<AgentHandle>, Path(name): Path<String>) -> Response {
    match h.whereis(&name).await {
        Ok(Some(info)) => Json(NameView::new(name, info)).into_response(),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            format!("no process is registered as {name:?}"),
        ),
        Err(e) => stopped(&e),
    }
}
