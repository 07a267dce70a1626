//! The admin API's tag routes: this node's tags, and placement by capability.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/tags` | [`TagsAnswer`]: this node's tags |
//! | `POST /v1/tags` | [`TagsBody`] → [`TagsAnswer`] (`200`, the whole new set); `422` naming the rule broken (nothing changes) |
//! | `GET /v1/place?key=K[&filter=SEL][&n=N]` | [`PlaceAnswer`]: live members matching `SEL`, best first for `K`; `400` for a bad selector, no key or `n` outside 1..=64 |

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mesh_api::{PlaceAnswer, TagsAnswer, TagsBody};
use mesh_types::tags::{Selector, Tags};

use super::common::{bad_request, stopped, ApiJson};
use super::json_error;
use crate::runtime::{AgentHandle, ApiError};

/// Most owners `GET /v1/place` lists.
const MAX_PLACE: usize = 64;

/// The routes of this module, over a running agent.
pub(crate) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/tags", get(get_tags).post(set_tags))
        .route("/v1/place", get(place))
}

fn own_tags(agent: &AgentHandle) -> TagsAnswer {
    let me = agent.members().into_iter().find(|m| m.is_self);
    TagsAnswer {
        name: agent.identity().name,
        tags: me.map(|m| m.tags).unwrap_or_default(),
    }
}

async fn get_tags(State(agent): State<AgentHandle>) -> Response {
    Json(own_tags(&agent)).into_response()
}

async fn set_tags(State(agent): State<AgentHandle>, ApiJson(body): ApiJson<TagsBody>) -> Response {
    let set: Tags = body.set;
    match agent.set_tags(set, body.unset).await {
        Ok(tags) => Json(TagsAnswer {
            name: agent.identity().name,
            tags,
        })
        .into_response(),
        Err(ApiError::Failed(e)) => {
            json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("tags: {e}"))
        }
        Err(e) => stopped(&e),
    }
}

/// The query of `GET /v1/place`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceQuery {
    key: String,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    n: Option<usize>,
}

async fn place(
    State(agent): State<AgentHandle>,
    query: Result<Query<PlaceQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return bad_request(format!(
                "bad query: {} (expected key=KEY, optional filter=SELECTOR and n=N)",
                e.body_text()
            ))
        }
    };
    if q.key.is_empty() {
        return bad_request("key: empty; give the key to place, e.g. ?key=job-7");
    }
    let n = q.n.unwrap_or(1);
    if !(1..=MAX_PLACE).contains(&n) {
        return bad_request(format!("n: {n} is outside 1..={MAX_PLACE}"));
    }
    let selector = match q.filter.as_deref().map(Selector::parse) {
        None => Selector::all(),
        Some(Ok(s)) => s,
        Some(Err(e)) => return bad_request(format!("filter: {e}")),
    };
    let owners = agent.place(&q.key, &selector, n);
    Json(PlaceAnswer {
        key: q.key,
        filter: selector.to_string(),
        owners,
    })
    .into_response()
}
