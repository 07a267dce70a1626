//! The admin API's messaging routes (`meshctl send`, `listen`, `sync`), backed by a
//! running agent.
//!
//! | route | body / query | answer |
//! |---|---|---|
//! | `POST /v1/send` | [`SendBody`] (`group`, `name`, `strong` or `pid`) | [`SendAnswer`]: delivered counts, failures, nodes that did not answer |
//! | `POST /v1/listen` | [`ListenBody`] | NDJSON stream of [`ListenLine`]s while the client stays connected |
//! | `POST /v1/sync` | `{"mode": "quorum"\|"all", "timeout_ms"}` | `{"ok": true}` or 504 |
//!
//! `listen` holds a process on the agent for as long as the HTTP response is being
//! read: the process joins the groups and/or registers the name, and every delivery is
//! one JSON line. When the client goes away (Ctrl-C, a dropped connection), the next
//! write fails — a heartbeat line goes out every second so that happens promptly — the
//! stream is dropped, and with it the process: it exits and its memberships go.
//!
//! Malformed requests get a 4xx with `{"error": "..."}` and change nothing.

use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;

use super::common::{bad_request, json_rejection, over_limit, stopped, ApiJson, HEARTBEAT};
use super::json_error;
use crate::runtime::ApiError;
use crate::runtime::{AgentHandle, ProcessHandle};
use crate::views::{conflict_policy, group_mode, sync_mode};
use mesh_api::{Failed, ListenBody, ListenLine, SendAnswer, SendBody, SyncBody, DEFAULT_SCOPE};
use mesh_core::node::{Dest, NameError, SendError};
use mesh_core::pid::Pid;
use mesh_core::process::Delivery;

/// The routes of this module, over a running agent.
pub(crate) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/send", post(send))
        .route("/v1/listen", post(listen))
        .route("/v1/sync", post(sync))
}

/// What the agent makes of a [`SendBody`] (the body is `mesh-api`'s, the destination
/// and payload the core's).
trait SendBodyExt {
    /// The one destination the body names, or why it does not name exactly one.
    fn dest(&self) -> Result<Dest, String>;
    /// The payload, from text or base64.
    fn payload(&self) -> Result<Bytes, String>;
}

impl SendBodyExt for SendBody {
    fn dest(&self) -> Result<Dest, String> {
        let given = [
            self.group.is_some(),
            self.name.is_some(),
            self.strong.is_some(),
            self.pid.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(
                "give exactly one destination: \"group\", \"name\", \"strong\" or \"pid\"".into(),
            );
        }
        if self.group.is_none() && (self.scope.is_some() || self.mode.is_some()) {
            return Err("\"scope\" and \"mode\" only go with \"group\"".into());
        }
        if let Some(group) = &self.group {
            return Ok(Dest::Group {
                scope: self
                    .scope
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SCOPE.to_owned()),
                group: group.clone(),
                mode: group_mode(self.mode.unwrap_or_default()),
            });
        }
        if let Some(name) = &self.name {
            return Ok(Dest::Name(name.clone()));
        }
        if let Some(name) = &self.strong {
            return Ok(Dest::Strong(name.clone()));
        }
        let pid = self.pid.as_deref().unwrap_or_default();
        pid.parse::<Pid>().map(Dest::Pid).map_err(|e| e.to_string())
    }

    fn payload(&self) -> Result<Bytes, String> {
        match (&self.payload, &self.payload_base64) {
            (Some(text), None) => Ok(Bytes::from(text.clone().into_bytes())),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(Bytes::from)
                .map_err(|e| format!("payload_base64 is not valid base64: {e}")),
            _ => Err("give exactly one of \"payload\" (text) and \"payload_base64\"".into()),
        }
    }
}

fn send_error(e: &SendError) -> Response {
    let status = match e {
        SendError::NoProcess(_) | SendError::NoSuchName(_) | SendError::EmptyGroup { .. } => {
            StatusCode::NOT_FOUND
        }
        SendError::MailboxFull(_) => StatusCode::TOO_MANY_REQUESTS,
        SendError::NodeDown(_) | SendError::Backpressure(_) | SendError::NoVoters => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        SendError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
    };
    json_error(status, e.to_string())
}

async fn send(State(h): State<AgentHandle>, ApiJson(body): ApiJson<SendBody>) -> Response {
    let dest = match body.dest() {
        Ok(d) => d,
        Err(why) => return bad_request(why),
    };
    let payload = match body.payload() {
        Ok(p) => p,
        Err(why) => return bad_request(why),
    };
    let single = dest.is_single();
    let (receipt, outcome) = match h.send_confirmed(None, dest, payload).await {
        Ok(v) => v,
        Err(ApiError::Failed(e)) => return send_error(&e),
        Err(e) => return stopped(&e),
    };
    let mut failed: Vec<Failed> = receipt
        .failed_local
        .iter()
        .chain(outcome.failed.iter())
        .map(|(pid, why)| Failed {
            pid: pid.to_string(),
            reason: why.as_str().to_owned(),
        })
        .collect();
    failed.sort_by(|a, b| a.pid.cmp(&b.pid));
    let answer = SendAnswer {
        delivered: receipt.delivered_local + outcome.delivered,
        remote_nodes: receipt.remote_nodes,
        failed,
        timed_out: outcome.timed_out,
        backpressure: outcome.refused,
    };
    // A single destination that refused is an error to the sender, not a success with
    // a footnote.
    if single && answer.delivered == 0 {
        if let Some(f) = answer.failed.first() {
            let status = if f.reason == "mailbox_full" {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::NOT_FOUND
            };
            return json_error(
                status,
                format!("{} refused the message: {}", f.pid, f.reason),
            );
        }
        if !answer.timed_out.is_empty() {
            return json_error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "node {} did not confirm delivery in time; the message may or may not have arrived",
                    answer.timed_out.join(", ")
                ),
            );
        }
    }
    Json(answer).into_response()
}

/// How the agent writes a [`ListenLine`] (the line is `mesh-api`'s, the delivery the
/// core's).
trait ListenLineExt: Sized {
    /// The line for a delivery to the listening process.
    fn from_delivery(d: Delivery) -> Self;
    /// The line as NDJSON: its JSON and a newline.
    fn to_line(&self) -> Bytes;
}

impl ListenLineExt for ListenLine {
    fn from_delivery(d: Delivery) -> Self {
        match d {
            Delivery::Message { from, payload } => {
                let (text, b64) = match std::str::from_utf8(&payload) {
                    Ok(t) => (Some(t.to_owned()), None),
                    Err(_) => (
                        None,
                        Some(base64::engine::general_purpose::STANDARD.encode(&payload)),
                    ),
                };
                Self::Message {
                    from: from.map(|p| p.to_string()),
                    payload: text,
                    payload_base64: b64,
                }
            }
            Delivery::NameConflict { name, winner } => Self::NameConflict {
                name,
                winner: winner.to_string(),
            },
        }
    }

    fn to_line(&self) -> Bytes {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        v.push(b'\n');
        Bytes::from(v)
    }
}

async fn listen(State(h): State<AgentHandle>, ApiJson(body): ApiJson<ListenBody>) -> Response {
    if body.groups.is_empty() && body.name.is_none() {
        return bad_request("give at least one group (\"groups\") or a \"name\"");
    }
    let scope = body
        .scope
        .clone()
        .unwrap_or_else(|| DEFAULT_SCOPE.to_owned());
    // The process exits (and undoes whatever it did) if anything below fails: the
    // handle is dropped on every early return.
    let process = match h.spawn(body.mailbox).await {
        Ok(p) => p,
        Err(ApiError::Failed(e)) => return over_limit(&e),
        Err(e) => return stopped(&e),
    };
    if !body.groups.is_empty() {
        match h
            .join(&scope, &body.groups, process.pid(), body.meta.clone())
            .await
        {
            Ok(()) => {}
            Err(ApiError::Failed(e)) => return bad_request(e.to_string()),
            Err(e) => return stopped(&e),
        }
    }
    if let Some(name) = &body.name {
        let policy = conflict_policy(body.policy.unwrap_or_default());
        match h
            .register(name, process.pid(), body.meta.clone(), policy)
            .await
        {
            Ok(()) => {}
            Err(ApiError::Failed(NameError::AlreadyRegistered(holder))) => {
                return json_error(
                    StatusCode::CONFLICT,
                    format!("{name:?} is already registered to {holder}"),
                )
            }
            Err(ApiError::Failed(e)) => return bad_request(e.to_string()),
            Err(e) => return stopped(&e),
        }
    }
    let ready = ListenLine::Ready {
        pid: process.pid().to_string(),
        groups: body.groups.clone(),
        scope,
        name: body.name.clone(),
    };
    let stream = futures_util::stream::unfold(
        (Some(process), Some(ready)),
        |(process, first)| async move {
            if let Some(line) = first {
                return Some((
                    Ok::<_, std::convert::Infallible>(line.to_line()),
                    (process, None),
                ));
            }
            let p: ProcessHandle = process?;
            let line = tokio::select! {
                d = p.recv() => match d {
                    Some(d) => ListenLine::from_delivery(d),
                    None => {
                        // Exited: say so once, then end the stream.
                        return Some((Ok(ListenLine::Exited.to_line()), (None, None)));
                    }
                },
                () = tokio::time::sleep(HEARTBEAT) => ListenLine::Heartbeat,
            };
            Some((Ok(line.to_line()), (Some(p), None)))
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn sync(
    State(h): State<AgentHandle>,
    body: Result<Json<SyncBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => SyncBody::default(),
        Err(e) => return json_rejection(&e),
    };
    if body.timeout_ms == 0 || body.timeout_ms > 60_000 {
        return bad_request("timeout_ms must be between 1 and 60000");
    }
    match h
        .sync(sync_mode(body.mode), Duration::from_millis(body.timeout_ms))
        .await
    {
        Ok(()) => Json(serde_json::json!({"ok": true})).into_response(),
        Err(ApiError::Failed(e)) => json_error(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Err(e) => stopped(&e),
    }
}
