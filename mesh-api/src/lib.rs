//! The admin HTTP API's wire types: the request and answer bodies, the views, the
//! lines of its NDJSON streams and the constants a client needs, with serde.
//!
//! This crate is the contract between a running agent (`mesh-agent`, which serves the
//! API) and its clients (`meshctl`'s client commands, scripts, orchestrators): the JSON
//! these types serialize to is the admin API's JSON, and changing it is a breaking
//! change of the API. The routes are listed in the README (the admin API sections) and
//! in `mesh-agent`'s `admin` module docs; every type here names the route it belongs to.
//!
//! It depends on serde alone, so a client can speak to an agent without building one:
//! no tokio, no QUIC, no TLS, no storage. The core's enums that appear in bodies
//! ([`MemberState`], [`GroupMode`], [`SyncMode`]) have their own copies here, spelled
//! the same on the wire; `mesh-agent` converts between them and the core's. Turning the
//! core's state into these views is `mesh-agent`'s job too.
//!
//! ```
//! let body = mesh_api::ClaimBody { task: "job-1".into(), ttl_ms: Some(10_000) };
//! let json = serde_json::to_string(&body).unwrap();
//! assert_eq!(json, r#"{"task":"job-1","ttl_ms":10000}"#);
//! ```

#![deny(missing_docs)]

use std::time::Duration;

mod claims;
mod groups;
mod info;
mod members;
mod messaging;
mod monitor;
mod quorum;
mod strong_names;
mod tags;

pub use claims::{
    ClaimAnswer, ClaimBody, ClaimView, ClaimsView, HoldLine, ReleaseBody, SessionView, ShardView,
};
pub use groups::{GroupCount, GroupMember, GroupView, NameView, Policy};
pub use info::{
    BuildInfo, ConfigSummary, InfoView, JoinAnswer, JoinBody, JoinFailed, Joined, LeaveAnswer,
    RttView,
};
pub use members::{ForceLeaveAnswer, ForceLeaveBody, MemberState, MemberView};
pub use messaging::{
    Failed, GroupMode, ListenBody, ListenLine, SendAnswer, SendBody, SyncBody, SyncMode,
};
pub use monitor::{
    GroupEventReason, LostReason, MemberEventKind, MonitorGroupsQuery, MonitorLine, SnapshotMember,
    MONITOR_HEARTBEAT_MS,
};
pub use quorum::{QuorumStatus, QuorumView};
pub use strong_names::{
    StrongBody, StrongNameView, StrongReleaseBody, StrongTransferBody, WhereisAnswer,
};
pub use tags::{PlaceAnswer, TagsAnswer, TagsBody};

/// The admin API's default port (on loopback: `127.0.0.1:7947`).
pub const DEFAULT_ADMIN_PORT: u16 = 7947;

/// The scope used when a request names none.
pub const DEFAULT_SCOPE: &str = "default";

/// Longest a claims or strong-name route waits for a decision before it answers `504`.
pub const CALL_DEADLINE: Duration = Duration::from_secs(20);
