//! A small blocking client for an agent's admin API.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mesh_api::{MemberView, DEFAULT_ADMIN_PORT};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config_file::io_reason;
use crate::error::failure;

/// The `--admin` and `--token` options every query command takes (global, so they may
/// also follow a subcommand: `meshctl names whereis X --admin ...`).
#[derive(Debug, Clone, Args)]
pub(crate) struct AdminArgs {
    /// Admin API of the agent to ask (HOST:PORT).
    #[arg(long, env = "MESH_ADMIN", value_name = "ADDR", default_value_t = default_admin(),
          global = true)]
    pub(crate) admin: String,
    /// Bearer token of that admin API (also --admin-token).
    #[arg(
        long,
        visible_alias = "admin-token",
        env = "MESH_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub(crate) token: Option<String>,
}

pub(crate) fn default_admin() -> String {
    format!("127.0.0.1:{DEFAULT_ADMIN_PORT}")
}

impl AdminArgs {
    /// A client for these options.
    pub(crate) fn client(&self) -> AdminClient {
        AdminClient::new(&self.admin, self.token.clone())
    }
}

/// Longest we wait for an agent to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest we wait for a quorum call: the agent's own deadline
/// ([`mesh_api::CALL_DEADLINE`]) plus room for the answer to come back.
const QUORUM_TIMEOUT: Duration = Duration::from_secs(30);

/// Hints a command gives for answers of a given HTTP status, instead of the generic
/// ones (for example "check `meshctl quorum status`" for a 503 of a claims call).
pub(crate) type StatusHints = &'static [(u16, &'static str)];
/// Longest we wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Talks to one agent's admin API.
#[derive(Debug, Clone)]
pub(crate) struct AdminClient {
    /// `host:port` as the operator wrote it, for messages.
    shown: String,
    /// `http://host:port`.
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    timeout: Duration,
    hints: StatusHints,
}

impl AdminClient {
    /// A client for the admin API at `admin` (`host:port`, or an `http://` URL).
    pub(crate) fn new(admin: &str, token: Option<String>) -> Self {
        let admin = admin.trim().trim_end_matches('/');
        let (shown, base) = match admin.strip_prefix("http://") {
            Some(rest) => (rest.to_owned(), admin.to_owned()),
            None => (admin.to_owned(), format!("http://{admin}")),
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The admin API is local or on a private network: never via a proxy.
            .proxy(None)
            .timeout_global(Some(TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        Self {
            shown,
            base,
            token: token.filter(|t| !t.is_empty()),
            agent,
            timeout: TIMEOUT,
            hints: &[],
        }
    }

    /// This client for quorum calls: it waits up to 30 s (the agent answers 504 after
    /// its own 20 s deadline) and gives `hints` for the statuses they list.
    pub(crate) fn for_quorum(mut self, hints: StatusHints) -> Self {
        self.timeout = QUORUM_TIMEOUT;
        self.hints = hints;
        self
    }

    /// This client with `hints` for the statuses they list (at the usual timeout).
    pub(crate) fn with_hints(mut self, hints: StatusHints) -> Self {
        self.hints = hints;
        self
    }

    /// The raw JSON of `GET /v1/members[?filter=SELECTOR]`.
    pub(crate) fn members_json(&self, filter: Option<&str>) -> Result<String> {
        let body = self.get(&members_path(filter))?;
        // Check the shape, so `--json` never passes on something else.
        self.parse_members(&body)?;
        Ok(body)
    }

    /// `GET /v1/members`, parsed.
    pub(crate) fn members(&self) -> Result<Vec<MemberView>> {
        self.members_filtered(None)
    }

    /// `GET /v1/members[?filter=SELECTOR]`, parsed.
    pub(crate) fn members_filtered(&self, filter: Option<&str>) -> Result<Vec<MemberView>> {
        let body = self.get(&members_path(filter))?;
        self.parse_members(&body)
    }

    fn parse_members(&self, body: &str) -> Result<Vec<MemberView>> {
        self.parse(body)
    }

    /// The body of a successful `GET path`; every failure says what to do.
    pub(crate) fn get(&self, path: &str) -> Result<String> {
        let mut request = self
            .agent
            .get(format!("{}{path}", self.base))
            .config()
            .timeout_global(Some(self.timeout))
            .build();
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| self.transport_failure(&e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_failure(&e))?;
        self.check(path, status, body)
    }

    /// `GET path`, parsed as `T`.
    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<(String, T)> {
        let body = self.get(path)?;
        let value = self.parse(&body)?;
        Ok((body, value))
    }

    /// The body of a successful `POST path` with a JSON body.
    pub(crate) fn post(&self, path: &str, body: &impl Serialize) -> Result<String> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .config()
            .timeout_global(Some(self.timeout))
            .build();
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request
            .send_json(body)
            .map_err(|e| self.transport_failure(&e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_failure(&e))?;
        self.check(path, status, text)
    }

    /// `POST path` whose answer is a stream of lines (`/v1/listen`): no overall
    /// timeout, the reader ends when the agent closes the stream.
    pub(crate) fn post_stream(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Box<dyn std::io::BufRead + Send>> {
        let response = self.post_streaming(path, body)?;
        self.stream_body(path, response)
    }

    /// Sends `POST path` with no overall timeout, for an answer read as a stream.
    fn post_streaming(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .config()
            .timeout_global(None)
            .build();
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request
            .send_json(body)
            .map_err(|e| self.transport_failure(&e))
    }

    /// `GET path` whose answer is a stream of lines (`/v1/monitor/...`): no overall
    /// timeout, the reader ends when the agent closes the stream.
    pub(crate) fn get_stream(&self, path: &str) -> Result<Box<dyn std::io::BufRead + Send>> {
        let mut request = self
            .agent
            .get(format!("{}{path}", self.base))
            .config()
            .timeout_global(None)
            .build();
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| self.transport_failure(&e))?;
        self.stream_body(path, response)
    }

    /// The body of a streaming answer as a line reader, or the failure its status says.
    fn stream_body(
        &self,
        path: &str,
        response: ureq::http::Response<ureq::Body>,
    ) -> Result<Box<dyn std::io::BufRead + Send>> {
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if !(200..=299).contains(&status) {
            let text = body
                .read_to_string()
                .map_err(|e| self.transport_failure(&e))?;
            self.check(path, status, text)?;
        }
        Ok(Box::new(std::io::BufReader::new(body.into_reader())))
    }

    /// [`AdminClient::post_stream`], but a refusal with one of `statuses` comes back
    /// as `Ok(Err((status, message)))` for the caller to decide on (e.g. to retry).
    pub(crate) fn post_stream_or_refusal(
        &self,
        path: &str,
        body: &impl Serialize,
        statuses: &[u16],
    ) -> Result<Result<Box<dyn std::io::BufRead + Send>, (u16, String)>> {
        let response = self.post_streaming(path, body)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if !(200..=299).contains(&status) {
            let text = body
                .read_to_string()
                .map_err(|e| self.transport_failure(&e))?;
            if statuses.contains(&status) {
                return Ok(Err((status, error_text(&text))));
            }
            self.check(path, status, text)?;
        }
        Ok(Ok(Box::new(std::io::BufReader::new(body.into_reader()))))
    }

    /// Parses an answer, or says the agent answered something unexpected.
    pub(crate) fn parse<T: DeserializeOwned>(&self, body: &str) -> Result<T> {
        serde_json::from_str(body).map_err(|e| {
            failure(
                format!(
                    "unexpected answer from the admin API at {}: {e}",
                    self.shown
                ),
                "is --admin the admin port of a mesh agent (not its QUIC port)?",
            )
        })
    }

    fn check(&self, path: &str, status: u16, body: String) -> Result<String> {
        let hinted = self
            .hints
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, h)| *h);
        match status {
            200..=299 => Ok(body),
            401 => Err(failure(
                format!(
                    "the admin API at {} refused the request: 401 unauthorized ({})",
                    self.shown,
                    error_text(&body)
                ),
                if self.token.is_some() {
                    "the token is wrong: pass the agent's --admin-token value with --token \
                     (or MESH_ADMIN_TOKEN)"
                } else {
                    "this agent needs a token: pass --token (or set MESH_ADMIN_TOKEN)"
                },
            )),
            404 if error_text(&body).starts_with("no route for") => Err(failure(
                format!("the admin API at {} has no {path} (404)", self.shown),
                "is --admin the admin port of a mesh agent of the same version?",
            )),
            _ if hinted.is_some() => Err(failure(error_text(&body), hinted.unwrap_or_default())),
            404 => Err(failure(
                error_text(&body),
                "check the name, group or PID (`meshctl groups`, `meshctl names`)",
            )),
            400 | 409 | 413 | 422 => Err(failure(
                error_text(&body),
                "fix the request (see `meshctl help`)",
            )),
            429 | 503 | 504 => Err(failure(
                error_text(&body),
                "the destination is slow or unreachable: retry later, or check `meshctl members`",
            )),
            _ => Err(failure(
                format!(
                    "the admin API at {} answered {status}: {}",
                    self.shown,
                    error_text(&body)
                ),
                "check the agent's log",
            )),
        }
    }

    fn transport_failure(&self, err: &ureq::Error) -> anyhow::Error {
        let reason = match err {
            ureq::Error::Io(e) => io_reason(e),
            ureq::Error::Timeout(_) => "timed out".to_owned(),
            ureq::Error::HostNotFound => "host not found".to_owned(),
            ureq::Error::ConnectionFailed => "connection failed".to_owned(),
            ureq::Error::BadUri(_) => {
                return failure(
                    format!("{:?} is not an admin address: {err}", self.shown),
                    "pass --admin HOST:PORT, e.g. --admin 127.0.0.1:7947",
                );
            }
            other => other.to_string(),
        };
        failure(
            format!("cannot reach the admin API at {} ({reason})", self.shown),
            "is the agent running? pass --admin HOST:PORT of its admin API (or set MESH_ADMIN)",
        )
    }
}

/// The `error` field of a JSON error body, else the body itself, on one line.
fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(200).collect())
}

fn members_path(filter: Option<&str>) -> String {
    match filter {
        Some(f) => format!("/v1/members?filter={}", crate::groups::escape(f)),
        None => "/v1/members".to_owned(),
    }
}
