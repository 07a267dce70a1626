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
use serde::Deserialize;

use super::common::stopped;
use super::json_error;
use crate::runtime::AgentHandle;
use crate::views::api_policy;
use mesh_api::{GroupCount, GroupMember, GroupView, NameView, DEFAULT_SCOPE};
use mesh_core::registry::NameInfo;

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

/// [`NameView`] from the core's registry entry (the view is `mesh-api`'s, the entry
/// the core's: this trait is how the agent builds one).
trait NameViewExt {
    /// The view of `info`, registered as `name`.
    fn new(name: String, info: NameInfo) -> Self;
}

impl NameViewExt for NameView {
    fn new(name: String, info: NameInfo) -> Self {
        Self {
            name,
            node: info.pid.node.clone(),
            pid: info.pid.to_string(),
            hlc: format!("{}.{}", info.hlc.wall_ms, info.hlc.logical),
            policy: api_policy(info.policy),
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
