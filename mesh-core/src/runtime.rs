//! The tokio shell: feeds [`crate::membership::Membership`] from the QUIC transport
//! and a timer heap, publishes events and metrics, and serves the admin API.
//!
//! The shell holds no protocol logic. One task owns the state machine and reads one
//! bounded input channel; timers live in a deadline heap inside that task (never one
//! spawned sleep per timer), and timers due together are handled in foca's order.
//! The loop never awaits IO: sends are `try_send`/non-blocking and counted when
//! dropped.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::config::AgentConfig;
use crate::identity::NodeId;
use crate::membership::{MemberState, MembershipEvent};

/// One member as the admin API and `meshctl members` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Address peers dial.
    pub addr: SocketAddr,
    /// Boot incarnation.
    pub incarnation: u64,
    /// Liveness as this node sees it.
    pub state: MemberState,
    /// Seconds since it entered that state.
    pub age_seconds: f64,
    /// True for the node answering.
    #[serde(default)]
    pub is_self: bool,
}

/// Why an agent could not start. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Something else failed; the message says what and where.
    #[error("{0}")]
    Other(String),
}

/// A running agent.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// Validates `config`, binds the transport and the admin API, and starts joining.
    pub async fn start(config: AgentConfig) -> Result<AgentHandle, StartError> {
        config.validate()?;
        todo!("runtime shell")
    }
}

/// A cheap handle on a running agent.
#[derive(Debug, Clone)]
pub struct AgentHandle {}

impl AgentHandle {
    /// This node's current identity.
    pub fn identity(&self) -> NodeId {
        todo!("runtime shell")
    }

    /// Every member this node knows, itself first.
    pub fn members(&self) -> Vec<MemberView> {
        todo!("runtime shell")
    }

    /// Membership events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        todo!("runtime shell")
    }

    /// The membership loop has turned recently.
    pub fn is_live(&self) -> bool {
        todo!("runtime shell")
    }

    /// Joined a cluster, or alone with no seeds configured.
    pub fn is_ready(&self) -> bool {
        todo!("runtime shell")
    }

    /// Address the admin API listens on.
    pub fn admin_addr(&self) -> SocketAddr {
        todo!("runtime shell")
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        todo!("runtime shell")
    }

    /// Leaves the cluster gracefully (peers see `left`), then stops everything,
    /// waiting at most `grace` for the leave to go out.
    pub async fn leave(&self, grace: Duration) {
        let _ = grace;
        todo!("runtime shell")
    }

    /// Resolves when the agent has stopped.
    pub async fn stopped(&self) {
        todo!("runtime shell")
    }
}
