//! The admin API's task-claim routes: `POST /v1/claims`, `POST /v1/claims/hold` (the
//! NDJSON hold stream), `POST /v1/claims/release` and `GET /v1/claims` (linearizable
//! reads of the shard tables). The table, properties and decisions are in
//! [`calls`](super::calls).

use std::time::{Duration, Instant};

use crate::runtime::{Events, EventsError};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mesh_core::node::ReadError;
use metrics::counter;
use serde::Deserialize;

use super::calls::{
    ms, ndjson, not_ready, remaining, settle, task_subject, unavailable, unexpected, QuorumApi,
    CALL_DEADLINE,
};
use super::common::{bad_request, stopped, ApiJson, HEARTBEAT};
use super::json_error;
use mesh_core::claims::{
    CallOk, ClaimReject, HolderEvent, LostReason, ShardId, ShardTable, Unavailable,
};

use super::strong_names::StrongNameViewExt as _;
use mesh_api::{
    ClaimAnswer, ClaimBody, ClaimView, ClaimsView, HoldLine, ReleaseBody, SessionView, ShardView,
    StrongNameView,
};

/// `?shard=N` of `GET /v1/claims`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShardQuery {
    shard: Option<u32>,
}

/// [`ShardView`] from a core shard table (the view is `mesh-api`'s, the table the
/// core's: this trait is how the agent builds one).
pub(super) trait ShardViewExt {
    /// The view of `table`, shard `shard`.
    fn new(shard: ShardId, table: &ShardTable) -> Self;
}

impl ShardViewExt for ShardView {
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

pub(super) async fn claim(
    State(api): State<QuorumApi>,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Response {
    let subject = task_subject(&body.task);
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

pub(super) async fn release(
    State(api): State<QuorumApi>,
    ApiJson(body): ApiJson<ReleaseBody>,
) -> Response {
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

/// A task under an open hold stream. Its [`runtime::Hold`](crate::runtime::Hold) ends
/// the hold when dropped (the stream ended or the client went away); the core decides
/// the rest ([`mesh_core::claims::hold`]): unless the claim was lost, it is released,
/// with retries, and the outcome is counted in `mesh_claims_hold_releases_total{result}`.
/// A refused hold ends nothing (the task may be another stream's).
pub(super) struct HoldGuard {
    api: QuorumApi,
    task: String,
    _hold: crate::runtime::Hold,
}

/// The state of a hold stream between two lines.
pub(super) struct HoldStream {
    guard: HoldGuard,
    token: u64,
    events: Events<HolderEvent>,
    first: Option<HoldLine>,
    last_line: Instant,
    done: bool,
}

impl HoldStream {
    /// The next line, or `None` once the stream is over.
    async fn next_line(&mut self) -> Option<HoldLine> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.done {
            return None;
        }
        loop {
            let beat = HEARTBEAT.saturating_sub(self.last_line.elapsed());
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Ok(HolderEvent::Lost { task, token, reason })
                        if task == self.guard.task && token == self.token =>
                    {
                        let reason = match reason {
                            LostReason::Evicted => "evicted",
                            LostReason::Expired => "expired",
                        };
                        return Some(self.lost(reason));
                    }
                    Ok(HolderEvent::Renewed { task, token, valid_until })
                        if task == self.guard.task && token == self.token =>
                    {
                        let Ok(left) = remaining(&self.guard.api.agent, valid_until).await else {
                            return Some(self.lost("agent_stopped"));
                        };
                        self.last_line = Instant::now();
                        return Some(HoldLine::Renewed {
                            token,
                            valid_for_ms: ms(left),
                        });
                    }
                    // Other tasks' events; a lagging receiver relies on the heartbeat's
                    // look at the claim below.
                    Ok(_) | Err(EventsError::Lagged(_)) => {}
                    Err(EventsError::Closed) => {
                        return Some(self.lost("agent_stopped"));
                    }
                },
                () = tokio::time::sleep(beat) => {
                    // Once a heartbeat: is the claim still ours? (A release through the
                    // API, or a loss this receiver missed by lagging, ends the stream.)
                    let task = self.guard.task.clone();
                    let seen = self
                        .guard
                        .api
                        .agent
                        .call(move |n, _| n.quorum().and_then(|q| q.validity(&task)))
                        .await;
                    self.last_line = Instant::now();
                    return Some(match seen {
                        Err(_) => self.lost("agent_stopped"),
                        Ok(Some((t, _))) if t == self.token => HoldLine::Heartbeat,
                        Ok(_) => self.lost("released"),
                    });
                }
            }
        }
    }

    fn lost(&mut self, reason: &str) -> HoldLine {
        self.done = true;
        HoldLine::Lost {
            task: self.guard.task.clone(),
            token: self.token,
            reason: reason.to_owned(),
        }
    }
}

pub(super) async fn hold(
    State(api): State<QuorumApi>,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Response {
    let task = body.task.clone();
    let subject = task_subject(&task);
    let ttl = body.ttl_ms.map(Duration::from_millis);
    // Subscribe before claiming, so that no loss can slip in between.
    let events = api.agent.subscribe_claims();
    let (hold, claimed) = match api.agent.hold(&task, ttl) {
        Ok(started) => started,
        Err(e) => return stopped(&e),
    };
    let guard = HoldGuard {
        api: api.clone(),
        task: task.clone(),
        _hold: hold,
    };
    let (token, until) = match settle(claimed).await {
        Ok(CallOk::Claimed {
            token, valid_until, ..
        }) => (token, valid_until),
        Ok(other) => return unexpected(&other),
        Err(f) => return f.response(&subject),
    };
    let left = match remaining(&api.agent, until).await {
        Ok(left) => left,
        Err(e) => return stopped(&e),
    };
    let state = HoldStream {
        guard,
        token,
        events,
        first: Some(HoldLine::Claimed {
            task,
            token,
            valid_for_ms: ms(left),
        }),
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

pub(super) async fn claims(
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
            Ok(Ok(Some(table))) => views.push(ShardView::new(shard, &table)),
            // Never written: shown only when asked for by number.
            Ok(Ok(None)) if q.shard.is_some() => {
                views.push(ShardView::new(shard, &ShardTable::default()));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => match e.into_failed() {
                Ok(ReadError::Timeout(_)) => late.push(shard.0),
                Ok(ReadError::Off) => return unavailable(&Unavailable::NoVoters),
                Err(e) => return stopped(&e),
            },
            Err(_) => late.push(shard.0),
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
