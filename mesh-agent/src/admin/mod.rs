//! The admin HTTP API.
//!
//! One listener serves everything an operator, a script or an orchestrator asks of a
//! running agent:
//!
//! | route          | answer                                                    | token |
//! |----------------|-----------------------------------------------------------|-------|
//! | `GET /v1/members[?filter=SEL]` | JSON array of [`MemberView`], this node first; `filter` keeps members whose tags match a selector (`400` for a bad one) | yes |
//! | `GET /metrics` | Prometheus text format 0.0.4                              | yes   |
//! | `GET /livez`   | `200 ok` while the membership loop turns, else `503`      | no    |
//! | `GET /readyz`  | `200 ok` once joined (or alone by design), else `503` + why | no  |
//! | `/v1/groups`, `/v1/names`, `/v1/send`, `/v1/listen`, ... | groups and names (see `groups.rs`), messaging (see `messaging.rs`) | yes |
//! | `/v1/claims`, `/v1/names/strong`, `/v1/quorum`, ... | task claims, strong names, the quorum plane (see `quorum.rs`) | yes |
//! | `GET /v1/info`, `GET /v1/rtt/{name}`, `POST /v1/leave` | the agent itself, round trips, a graceful leave (see `info.rs`) | yes |
//! | `GET`/`POST /v1/tags`, `GET /v1/place` | this node's tags, placement by capability (see `tags.rs`) | yes |
//! | `GET /v1/monitor/members`, `/v1/monitor/groups`, `/v1/monitor/claims` | NDJSON event streams (see `monitor.rs`) | yes |
//!
//! When a token is configured, every route except the two probes needs
//! `Authorization: Bearer <token>`; the probes stay open because orchestrators call
//! them without credentials and they reveal nothing but a status. Errors are JSON
//! objects `{"error": "..."}` so scripts can parse every answer the same way.
//!
//! The router is generic over [`AdminView`], the small read-only face of a node it
//! needs, so it can be tested without a network or a cluster. [`AgentHandle`]
//! implements it; the runtime builds the whole API with [`agent_router`] (the base
//! routes plus the groups, names and messaging routes, which need a running agent)
//! and runs it with [`serve`].

use std::future::Future;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::runtime::AgentHandle;
pub use conn::ConnLimits;

mod calls;
mod claims;
mod common;
mod conn;
mod groups;
mod info;
mod messaging;
mod monitor;
mod quorum;
mod strong_names;
mod tags;

// The request and answer bodies live in `mesh-api` (the API's contract, which clients
// depend on without this crate); re-exported here so that paths stay as they were.
pub use info::{BUILD_COMMIT, VERSION};
pub use mesh_api::{
    ClaimAnswer, ClaimBody, ClaimView, ClaimsView, Failed, GroupCount, GroupMember, GroupMode,
    GroupView, HoldLine, ListenBody, ListenLine, MemberState, MemberView, NameView, Policy,
    QuorumStatus, QuorumView, ReleaseBody, SendAnswer, SendBody, SessionView, ShardView,
    StrongBody, StrongNameView, StrongReleaseBody, StrongTransferBody, SyncBody, SyncMode,
    WhereisAnswer, CALL_DEADLINE, DEFAULT_SCOPE,
};

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What the admin API reads from a node. Implementations must be cheap to clone
/// (a handle) and must answer quickly: they are called on the HTTP tasks.
pub trait AdminView: Clone + Send + Sync + 'static {
    /// Every member this node knows, itself first.
    fn members(&self) -> Vec<MemberView>;
    /// The node's main loop is turning (answers `/livez`).
    fn is_live(&self) -> bool;
    /// The node has joined a cluster, or runs alone by design (answers `/readyz`).
    fn is_ready(&self) -> bool;
    /// Why the node is not ready: one line, shown in the `/readyz` body.
    fn not_ready_reason(&self) -> String {
        "not ready: has not joined a cluster yet (no seed has answered)".to_owned()
    }
    /// Prometheus text for `/metrics`.
    fn render_metrics(&self) -> String;
}

impl AdminView for AgentHandle {
    fn members(&self) -> Vec<MemberView> {
        Self::members(self)
    }
    fn is_live(&self) -> bool {
        Self::is_live(self)
    }
    fn is_ready(&self) -> bool {
        Self::is_ready(self)
    }
    fn render_metrics(&self) -> String {
        Self::render_metrics(self)
    }
}

/// The admin API over `view`: members, metrics and the probes. With `token` set (and
/// non-empty), every route but `/livez` and `/readyz` requires `Authorization: Bearer
/// <token>`.
pub fn router<V: AdminView>(view: V, token: Option<String>) -> Router {
    finish(base_routes(view), token)
}

/// The whole admin API of a running agent: [`router`]'s routes plus groups, names,
/// send, listen (the `groups` and `messaging` routes) and claims, strong names and the quorum (the
/// `quorum` routes; see the tables in those modules' docs).
pub fn agent_router(handle: AgentHandle, token: Option<String>) -> Router {
    let groups = groups::routes().with_state(handle.clone());
    let messaging = messaging::routes().with_state(handle.clone());
    let quorum = calls::routes(handle.clone());
    let agent = info::routes()
        .merge(tags::routes())
        .with_state(handle.clone());
    let monitors = monitor::routes().with_state(handle.clone());
    finish(
        base_routes(handle)
            .merge(agent)
            .merge(monitors)
            .merge(groups)
            .merge(messaging)
            .merge(quorum),
        token,
    )
}

fn base_routes<V: AdminView>(view: V) -> Router {
    Router::new()
        .route("/v1/members", get(members::<V>))
        .route("/metrics", get(metrics::<V>))
        .route("/livez", get(livez::<V>))
        .route("/readyz", get(readyz::<V>))
        .with_state(view)
}

fn finish(routes: Router, token: Option<String>) -> Router {
    let token = token.filter(|t| !t.is_empty()).map(BearerToken);
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(token, require_token))
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// lets requests in flight finish.
///
/// Errors only if the listener itself fails; a broken connection is that
/// connection's problem.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, ConnLimits::default()).await
}

/// [`serve`] with other connection bounds than the defaults (1 024 connections, 90 s
/// without a write: see [`ConnLimits`]).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ConnLimits,
) -> std::io::Result<()> {
    axum::serve(conn::GuardedListener::new(listener, limits), router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
}

pub(crate) fn json_error(status: StatusCode, error: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: error.into(),
        }),
    )
        .into_response()
}

/// The query of `GET /v1/members`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersQuery {
    /// A tag selector (`region=eu,role!=edge`); members whose tags match it.
    #[serde(default)]
    filter: Option<String>,
}

async fn members<V: AdminView>(
    State(view): State<V>,
    query: Result<axum::extract::Query<MembersQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let filter = match query {
        Ok(q) => q.0.filter,
        Err(e) => return common::bad_request(format!("bad query: {}", e.body_text())),
    };
    let selector = match filter.as_deref().map(mesh_types::tags::Selector::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return common::bad_request(format!("filter: {e}")),
    };
    let mut members = view.members();
    if let Some(sel) = selector {
        members.retain(|m| sel.matches(&m.tags));
    }
    Json(members).into_response()
}

async fn metrics<V: AdminView>(State(view): State<V>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        view.render_metrics(),
    )
        .into_response()
}

async fn livez<V: AdminView>(State(view): State<V>) -> (StatusCode, &'static str) {
    if view.is_live() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not live: the membership loop has stalled",
        )
    }
}

async fn readyz<V: AdminView>(State(view): State<V>) -> (StatusCode, String) {
    if view.is_ready() {
        (StatusCode::OK, "ok".to_owned())
    } else {
        // One line, whatever the implementation returned.
        let reason = view.not_ready_reason().replace(['\r', '\n'], " ");
        (StatusCode::SERVICE_UNAVAILABLE, reason)
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// The configured bearer token. Its `Debug` does not print the secret.
#[derive(Clone)]
struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

/// Routes that answer without a token: orchestrator probes.
fn is_open_route(path: &str) -> bool {
    matches!(path, "/livez" | "/readyz")
}

async fn require_token(
    State(token): State<Option<BearerToken>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if is_open_route(request.uri().path()) || presented_token_matches(request.headers(), &token.0) {
        return next.run(request).await;
    }
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (send Authorization: Bearer <token>)",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Whether the request carries `Authorization: Bearer <expected>`.
fn presented_token_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let scheme = b"bearer ";
    if value.len() < scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return false;
    }
    let presented = value[scheme.len()..].trim_ascii();
    constant_time_eq(presented, expected.as_bytes())
}

/// Compares two byte strings in time that depends only on their lengths, so a
/// client cannot find the token byte by byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// A node whose answers the test sets.
    #[derive(Clone, Default)]
    struct FakeView {
        live: Arc<AtomicBool>,
        ready: Arc<AtomicBool>,
    }

    impl AdminView for FakeView {
        fn members(&self) -> Vec<MemberView> {
            vec![
                MemberView {
                    name: "n1".into(),
                    addr: "127.0.0.1:7946".parse().expect("addr"),
                    incarnation: 3,
                    state: MemberState::Alive,
                    age_seconds: 12.5,
                    is_self: true,
                    tags: Default::default(),
                },
                MemberView {
                    name: "n2".into(),
                    addr: "127.0.0.1:7948".parse().expect("addr"),
                    incarnation: 1,
                    state: MemberState::Down,
                    age_seconds: 0.25,
                    is_self: false,
                    tags: Default::default(),
                },
            ]
        }
        fn is_live(&self) -> bool {
            self.live.load(Ordering::SeqCst)
        }
        fn is_ready(&self) -> bool {
            self.ready.load(Ordering::SeqCst)
        }
        fn render_metrics(&self) -> String {
            "# TYPE mesh_members gauge\nmesh_members{state=\"alive\"} 1\n".to_owned()
        }
    }

    /// A served router; stops when dropped.
    struct Server {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Server {
        async fn start(view: FakeView, token: Option<&str>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let addr = listener.local_addr().expect("local addr");
            let (stop, stopped) = oneshot::channel::<()>();
            let app = router(view, token.map(str::to_owned));
            let task = tokio::spawn(serve(listener, app, async move {
                let _ = stopped.await;
            }));
            Self {
                addr,
                stop: Some(stop),
                task,
            }
        }

        /// GET `path` (with an optional Authorization value) from a blocking thread.
        async fn get(&self, path: &str, auth: Option<&str>) -> Reply {
            let url = format!("http://{}{path}", self.addr);
            let auth = auth.map(str::to_owned);
            tokio::task::spawn_blocking(move || request("GET", &url, auth.as_deref()))
                .await
                .expect("request thread")
        }

        async fn shutdown(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let result = tokio::time::timeout(Duration::from_secs(5), &mut self.task)
                .await
                .expect("serve stops after shutdown")
                .expect("serve task");
            assert!(result.is_ok(), "serve returned {result:?}");
        }
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        content_type: String,
        body: String,
    }

    fn request(method: &str, url: &str, auth: Option<&str>) -> Reply {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let response = match method {
            "GET" => {
                let mut req = agent.get(url);
                if let Some(auth) = auth {
                    req = req.header("Authorization", auth);
                }
                req.call()
            }
            _ => agent.post(url).send_empty(),
        };
        let mut response = response.expect("HTTP exchange");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Reply {
            status: response.status().as_u16(),
            content_type,
            body: response.body_mut().read_to_string().expect("body"),
        }
    }

    fn error_of(reply: &Reply) -> String {
        assert!(
            reply.content_type.starts_with("application/json"),
            "{reply:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON error body");
        v["error"].as_str().expect("error field").to_owned()
    }

    /// Issue 14: admin connections are bounded in number and in idleness. With 2
    /// slots and a 300 ms idle limit: a connection that never sends a request
    /// (slowloris) is closed, a third connection while two are held is closed at once,
    /// and once the slots are free a request is served.
    #[tokio::test]
    async fn idle_connections_are_cut_and_the_count_is_bounded() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = ConnLimits {
            max_connections: 2,
            idle: Duration::from_millis(300),
        };
        let app = router(FakeView::default(), None);
        let task = tokio::spawn(serve_with(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            limits,
        ));

        // Closed by the server: a read ends (EOF or reset) well within the deadline.
        async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
            let mut buf = [0u8; 256];
            matches!(
                tokio::time::timeout(within, async {
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await,
                Ok(())
            )
        }

        // A slowloris: half a request line, then nothing.
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET /livez HT").await.expect("write");
        let mut quiet = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Both slots are held (the listener accepts in arrival order, so these two took
        // them): a third connection is closed at once.
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
        third
            .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok();
        let mut answer = String::new();
        let _ = tokio::time::timeout(
            Duration::from_millis(250),
            third.read_to_string(&mut answer),
        )
        .await;
        assert!(answer.is_empty(), "a third connection was served: {answer}");
        // The idle two are cut after the idle limit.
        assert!(
            closed_within(&mut slow, Duration::from_secs(3)).await,
            "the slowloris stays"
        );
        assert!(
            closed_within(&mut quiet, Duration::from_secs(3)).await,
            "the quiet one stays"
        );
        // The slots are free again: a whole request is served.
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(3), conn.read_to_string(&mut answer))
            .await
            .expect("answered")
            .expect("read");
        assert!(answer.starts_with("HTTP/1.1 "), "served: {answer}");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    #[tokio::test]
    async fn members_are_served_as_the_json_array_of_member_views() {
        let server = Server::start(FakeView::default(), None).await;
        let reply = server.get("/v1/members", None).await;
        assert_eq!(reply.status, 200);
        assert!(reply.content_type.starts_with("application/json"));
        let members: Vec<MemberView> = serde_json::from_str(&reply.body).expect("members JSON");
        assert_eq!(members, FakeView::default().members());
        let raw: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
        assert_eq!(
            raw[1]["state"], "down",
            "states are lower case: {}",
            reply.body
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let server = Server::start(FakeView::default(), None).await;
        let reply = server.get("/metrics", None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, METRICS_CONTENT_TYPE);
        assert_eq!(reply.body, FakeView::default().render_metrics());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn probes_follow_liveness_and_readiness() {
        let view = FakeView::default();
        let server = Server::start(view.clone(), None).await;

        let live = server.get("/livez", None).await;
        assert_eq!(live.status, 503, "{live:?}");
        let ready = server.get("/readyz", None).await;
        assert_eq!(ready.status, 503);
        assert!(ready.body.starts_with("not ready"), "{ready:?}");
        assert!(!ready.body.contains('\n'), "one line: {ready:?}");

        view.live.store(true, Ordering::SeqCst);
        view.ready.store(true, Ordering::SeqCst);
        let live = server.get("/livez", None).await;
        assert_eq!((live.status, live.body.as_str()), (200, "ok"));
        let ready = server.get("/readyz", None).await;
        assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));
        server.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_get_json_errors() {
        let server = Server::start(FakeView::default(), None).await;
        let reply = server.get("/v1/nope", None).await;
        assert_eq!(reply.status, 404);
        assert!(error_of(&reply).contains("/v1/nope"));

        let url = format!("http://{}/v1/members", server.addr);
        let reply = tokio::task::spawn_blocking(move || request("POST", &url, None))
            .await
            .expect("request thread");
        assert_eq!(reply.status, 405);
        assert!(error_of(&reply).contains("POST"));
        server.shutdown().await;
    }

    #[tokio::test]
    async fn a_token_guards_everything_but_the_probes() {
        let view = FakeView::default();
        view.live.store(true, Ordering::SeqCst);
        view.ready.store(true, Ordering::SeqCst);
        let server = Server::start(view, Some("s3cret")).await;

        for path in ["/v1/members", "/metrics", "/v1/nope"] {
            for auth in [
                None,
                Some("Bearer wrong"),
                Some("Bearer s3cre"),
                Some("Basic s3cret"),
            ] {
                let reply = server.get(path, auth).await;
                assert_eq!(reply.status, 401, "{path} with {auth:?}: {reply:?}");
                assert!(error_of(&reply).contains("token"));
            }
        }
        for path in ["/livez", "/readyz"] {
            assert_eq!(server.get(path, None).await.status, 200, "{path} is open");
        }
        assert_eq!(
            server
                .get("/v1/members", Some("Bearer s3cret"))
                .await
                .status,
            200
        );
        assert_eq!(
            server.get("/metrics", Some("bearer  s3cret")).await.status,
            200
        );
        assert_eq!(
            server.get("/v1/nope", Some("Bearer s3cret")).await.status,
            404
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn an_empty_token_means_no_token() {
        let server = Server::start(FakeView::default(), Some("")).await;
        assert_eq!(server.get("/v1/members", None).await.status, 200);
        server.shutdown().await;
    }

    #[test]
    fn token_comparison_checks_every_byte_and_the_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
