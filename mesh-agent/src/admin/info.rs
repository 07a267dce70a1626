//! The admin API's agent routes: what the agent is, the round trip to a member, and a
//! graceful leave.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/info` | [`InfoView`]: version and commit, name, incarnation, uptime, profile, voters, config summary, compiled-in features and build facts |
//! | `GET /v1/rtt/{name}` | [`RttView`]; `404` for an unknown member, `503` before a round trip was measured, `400` for this node itself |
//! | `POST /v1/join` | [`JoinBody`] → [`JoinAnswer`] (`200`) if at least one address was reached (a member advertising it is alive), else `504` naming each failure; `400` for no address or a bad timeout |
//! | `POST /v1/leave` | `202` [`LeaveAnswer`], then the agent leaves gracefully and stops |
//! | `POST /v1/force-leave` | [`ForceLeaveBody`] → [`ForceLeaveAnswer`] (`200`): a down member marked left, gossiped cluster-wide; `404` for an unknown name, `409` for a member alive or suspect, `400` for the agent itself |

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::common::{bad_request, stopped, ApiJson};
use super::json_error;
use crate::runtime::AgentHandle;
use mesh_api::{
    BuildInfo, ConfigSummary, ForceLeaveAnswer, ForceLeaveBody, InfoView, JoinAnswer, JoinBody,
    JoinFailed, Joined, LeaveAnswer, RttView,
};
use mesh_core::membership::ForceLeaveError;
use mesh_core::membership::Profile;

/// The git commit the agent was built from (short hash), or `unknown`.
pub const BUILD_COMMIT: &str = env!("MESH_GIT_COMMIT");

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What is compiled in ([`InfoView::features`]). `mesh-agent` defines no cargo feature
/// yet; one added later is listed here with `cfg!(feature = "...")`.
pub(crate) fn features() -> Vec<String> {
    let mut out = vec!["dns-seeds".to_owned(), "redb-store".to_owned()];
    if cfg!(debug_assertions) {
        out.push("debug-assertions".to_owned());
    }
    out
}

/// How this binary was built ([`InfoView::build`]).
pub(crate) fn build_info() -> BuildInfo {
    BuildInfo {
        profile: env!("MESH_BUILD_PROFILE").to_owned(),
        rustc: env!("MESH_BUILD_RUSTC").to_owned(),
        target: env!("MESH_BUILD_TARGET").to_owned(),
    }
}

/// How long `POST /v1/leave` lets the goodbye go out before the agent stops.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// The routes of this module, over a running agent.
pub(crate) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/rtt/{name}", get(rtt))
        .route("/v1/join", post(join))
        .route("/v1/leave", post(leave))
        .route("/v1/force-leave", post(force_leave))
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Lan => "lan",
        Profile::Wan => "wan",
        Profile::Local => "local",
    }
}

async fn info(State(agent): State<AgentHandle>) -> Response {
    let admin = agent.admin_addr();
    let uptime_seconds = agent
        .members()
        .into_iter()
        .find(|m| m.is_self)
        .map_or(0.0, |m| m.age_seconds);
    let id = agent.identity();
    let read = agent
        .call(move |n, _| {
            let c = n.config();
            let quorum = n.quorum().map(|q| q.config());
            (
                profile_name(c.membership.profile),
                quorum
                    .map(|q| q.voters.names().to_vec())
                    .unwrap_or_default(),
                ConfigSummary {
                    admin,
                    seeds: c.membership.seeds.clone(),
                    dns_seeds: c.discovery.seeds.iter().map(ToString::to_string).collect(),
                    dns_server: None,
                    packet_size: c.membership.packet_size,
                    permdown_seconds: c.registry.permdown.as_secs_f64(),
                    mailbox_capacity: c.mailbox_capacity,
                    shards: quorum.map(|q| q.shards),
                    claims_ttl_seconds: quorum.map(|q| q.ttl.as_secs_f64()),
                },
            )
        })
        .await;
    match read {
        Ok((profile, voters, config)) => Json(InfoView {
            version: VERSION.to_owned(),
            commit: BUILD_COMMIT.to_owned(),
            name: id.name,
            incarnation: id.incarnation,
            addr: id.addr,
            uptime_seconds,
            profile: profile.to_owned(),
            voters,
            config: ConfigSummary {
                dns_server: agent.dns_server(),
                ..config
            },
            features: features(),
            build: build_info(),
        })
        .into_response(),
        Err(e) => stopped(&e),
    }
}

async fn rtt(State(agent): State<AgentHandle>, Path(name): Path<String>) -> Response {
    let members = agent.members();
    let Some(member) = members.iter().find(|m| m.name == name) else {
        return json_error(
            StatusCode::NOT_FOUND,
            format!("no member named {name:?} is known to this agent"),
        );
    };
    if member.is_self {
        return json_error(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is the agent asked: it has no round trip to itself"),
        );
    }
    let peer = name.clone();
    match agent.call(move |n, _| n.rtt(&peer)).await {
        Ok(Some(rtt)) => Json(RttView {
            name,
            rtt_ms: rtt.as_secs_f64() * 1000.0,
            state: member.state,
        })
        .into_response(),
        Ok(None) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no round trip to {name:?} measured yet (it is {}; round trips are measured \
                 on anti-entropy exchanges with live members)",
                member.state.as_str()
            ),
        ),
        Err(e) => stopped(&e),
    }
}

/// How long `POST /v1/join` waits for each address by default.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait a join may ask for.
const JOIN_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// Most addresses in one join.
const JOIN_MAX_ADDRS: usize = 64;

async fn join(State(agent): State<AgentHandle>, ApiJson(body): ApiJson<JoinBody>) -> Response {
    if body.addrs.is_empty() {
        return bad_request("addrs: give at least one address to join through");
    }
    if body.addrs.len() > JOIN_MAX_ADDRS {
        return bad_request(format!(
            "addrs: at most {JOIN_MAX_ADDRS} addresses per join"
        ));
    }
    let timeout = body.timeout_ms.map_or(JOIN_TIMEOUT, Duration::from_millis);
    if timeout.is_zero() || timeout > JOIN_TIMEOUT_MAX {
        return bad_request(format!(
            "timeout_ms: must be between 1 and {}",
            JOIN_TIMEOUT_MAX.as_millis()
        ));
    }
    let tries = body.addrs.iter().map(|&addr| {
        let agent = agent.clone();
        async move { (addr, agent.announce(addr, timeout).await) }
    });
    let mut answer = JoinAnswer {
        joined: Vec::new(),
        failed: Vec::new(),
    };
    for (addr, r) in futures_util::future::join_all(tries).await {
        match r {
            Ok(name) => answer.joined.push(Joined { addr, name }),
            Err(crate::runtime::ApiError::Failed(e)) => answer.failed.push(JoinFailed {
                addr,
                error: e.to_string(),
            }),
            Err(e) => return stopped(&e),
        }
    }
    if answer.joined.is_empty() {
        let why: Vec<String> = answer
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.addr, f.error))
            .collect();
        return json_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "could not join through any address ({}); check that a mesh node of this \
                 cluster listens there and advertises that address",
                why.join("; ")
            ),
        );
    }
    Json(answer).into_response()
}

async fn leave(State(agent): State<AgentHandle>) -> Response {
    let leaving = agent.identity().name;
    tracing::info!("leaving the cluster: asked by the admin API (POST /v1/leave)");
    // The answer goes out first: the admin server stops only after the node has, and
    // it lets this request finish.
    tokio::spawn(async move { agent.leave(LEAVE_GRACE).await });
    (StatusCode::ACCEPTED, Json(LeaveAnswer { leaving })).into_response()
}

async fn force_leave(
    State(agent): State<AgentHandle>,
    ApiJson(body): ApiJson<ForceLeaveBody>,
) -> Response {
    match agent.force_leave(&body.name).await {
        Ok((id, was)) => {
            tracing::info!(member = %id, was = was.as_str(), "force-left: asked by the admin API");
            Json(ForceLeaveAnswer {
                name: id.name,
                incarnation: id.incarnation,
                was: crate::views::member_state(was),
            })
            .into_response()
        }
        Err(crate::runtime::ApiError::Failed(e)) => {
            let status = match e {
                ForceLeaveError::Unknown(_) => StatusCode::NOT_FOUND,
                ForceLeaveError::Live { .. } => StatusCode::CONFLICT,
                ForceLeaveError::Myself => StatusCode::BAD_REQUEST,
            };
            json_error(status, e.to_string())
        }
        Err(e) => stopped(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_commit_is_the_checkout_head_or_unknown_outside_git() {
        let head = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        match head {
            Some(head) => assert_eq!(BUILD_COMMIT, head, "build.rs embeds HEAD"),
            None => assert_eq!(BUILD_COMMIT, "unknown"),
        }
    }

    #[test]
    fn profiles_are_named_as_the_config_spells_them() {
        for p in [Profile::Lan, Profile::Wan, Profile::Local] {
            assert_eq!(profile_name(p).parse::<Profile>(), Ok(p));
        }
    }
}
