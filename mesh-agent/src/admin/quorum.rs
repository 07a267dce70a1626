//! The admin API's quorum route: `GET /v1/quorum`, the plane's status plus the preferred
//! proposer of every shard.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::calls::{unavailable, QuorumApi};
use super::common::stopped;
use mesh_api::QuorumView;
use mesh_core::claims::{ShardId, Unavailable};

pub(super) async fn quorum(State(api): State<QuorumApi>) -> Response {
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
