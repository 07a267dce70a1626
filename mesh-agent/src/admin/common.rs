//! What every admin route module shares: the error answers for a stopped or busy
//! agent and for bad input, the JSON body extractor, and the stream heartbeat.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;

use super::json_error;
use crate::runtime::ApiError;

/// How often a `listen` or `claims/hold` stream writes a heartbeat line.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// The agent is stopping (`503`) or its command queue is full (`429`). Routes match
/// their family's refusals first; one that reaches here is a route's bug, said as such.
pub(crate) fn stopped<E: std::fmt::Display>(e: &ApiError<E>) -> Response {
    let status = match e {
        ApiError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::Busy => StatusCode::TOO_MANY_REQUESTS,
        ApiError::Failed(e) => {
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("unhandled refusal {e}; this is a bug in mesh, please report it"),
            )
        }
    };
    json_error(status, e.to_string())
}

/// `507`: the node holds the most it may of a resource (processes, monitors); the
/// error names the limit and its setting. Like the TTL table's limit.
pub(crate) fn over_limit(e: &mesh_core::node::LimitError) -> Response {
    json_error(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
}

/// `400` with `msg` as the error.
pub(crate) fn bad_request(msg: impl Into<String>) -> Response {
    json_error(StatusCode::BAD_REQUEST, msg)
}

/// A body that is not the JSON object the route takes: 4xx with axum's reason (it
/// names the field for unknown or mistyped keys).
pub(crate) fn json_rejection(e: &JsonRejection) -> Response {
    json_error(e.status(), format!("bad request body: {}", e.body_text()))
}

/// A JSON request body whose rejection is answered like every other error of the API
/// (`{"error": ...}` with axum's status and reason), so handlers take the value itself.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(e) => Err(json_rejection(&e)),
        }
    }
}
