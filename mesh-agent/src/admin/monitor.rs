//! The admin API's monitor streams (`meshctl monitor`): NDJSON, one
//! [`MonitorLine`] per line.
//!
//! | route | query | lines |
//! |---|---|---|
//! | `GET /v1/monitor/members` | | `member` per membership event, `heartbeat`, `lagged` (last) |
//! | `GET /v1/monitor/groups` | `?scope=S[&group=G]` | `snapshot` (first), `group` per change with its reason, `heartbeat`, `overflowed` (last) |
//! | `GET /v1/monitor/claims` | | `claim_lost`, `claim_renewed`, `claim_assigned`, `name_lost`, `heartbeat`, `lagged` (last) |
//!
//! A stream writes a heartbeat after [`MONITOR_HEARTBEAT_MS`] without a line, so a
//! departed client is noticed (the write fails) within a couple of heartbeats; the
//! stream's state is then dropped, and with it its broadcast receiver or its group
//! monitor (whose `Drop` ends it on the node). A subscriber that falls behind gets
//! `lagged`/`overflowed` and the stream ends: never a silent gap. While open, each
//! stream counts in `mesh_admin_monitor_streams{stream}`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use metrics::gauge;
use tokio::time::Instant;

use super::common::{bad_request, over_limit, stopped};
use crate::runtime::{AgentHandle, ApiError, Events, EventsError, MonitorError, MonitorHandle};
use mesh_api::{
    GroupEventReason, LostReason, MemberEventKind, MonitorGroupsQuery, MonitorLine, SnapshotMember,
    DEFAULT_SCOPE, MONITOR_HEARTBEAT_MS,
};
use mesh_core::claims::HolderEvent;
use mesh_core::membership::{EventKind, MembershipEvent};
use mesh_core::node::MonitorItem;
use mesh_core::registry::{EventReason, GroupEvent};

/// The routes of this module, over a running agent.
pub(crate) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/monitor/members", get(members))
        .route("/v1/monitor/groups", get(groups))
        .route("/v1/monitor/claims", get(claims))
}

const HEARTBEAT: Duration = Duration::from_millis(MONITOR_HEARTBEAT_MS);

/// Counts one open stream in `mesh_admin_monitor_streams{stream}` while it lives.
struct Open(&'static str);

impl Open {
    fn new(stream: &'static str) -> Self {
        gauge!("mesh_admin_monitor_streams", "stream" => stream).increment(1.0);
        Self(stream)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        gauge!("mesh_admin_monitor_streams", "stream" => self.0).decrement(1.0);
    }
}

/// What a source gives the stream next.
enum Next {
    /// A line; more may follow.
    Line(MonitorLine),
    /// The last line: the stream ends after it.
    Last(MonitorLine),
    /// The source ended (the agent stopped): the stream ends with no line.
    End,
}

fn to_line(line: &MonitorLine) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    Bytes::from(v)
}

/// An NDJSON response of `first` (if any), then the lines `next` gives, with a
/// heartbeat after each [`HEARTBEAT`] of silence. `next` is called with the source and
/// the deadline of the next heartbeat; it returns `None` when the deadline passed.
fn ndjson<S, F, Fut>(
    stream: &'static str,
    first: Option<MonitorLine>,
    source: S,
    next: F,
) -> Response
where
    S: Send + 'static,
    F: Fn(S, Instant) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = (S, Option<Next>)> + Send,
{
    let open = Open::new(stream);
    let lines = futures_util::stream::unfold(
        (Some(source), first, open),
        move |(source, first, open)| async move {
            if let Some(line) = first {
                return Some((
                    Ok::<_, std::convert::Infallible>(to_line(&line)),
                    (source, None, open),
                ));
            }
            let source = source?;
            let (source, next) = next(source, Instant::now() + HEARTBEAT).await;
            match next.unwrap_or(Next::Line(MonitorLine::Heartbeat)) {
                Next::Line(line) => Some((Ok(to_line(&line)), (Some(source), None, open))),
                Next::Last(line) => Some((Ok(to_line(&line)), (None, None, open))),
                Next::End => None,
            }
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn member_line(ev: &MembershipEvent) -> MonitorLine {
    let kind = match ev.kind {
        EventKind::Up => MemberEventKind::Up,
        EventKind::Suspect => MemberEventKind::Suspect,
        EventKind::Alive => MemberEventKind::Alive,
        EventKind::Down => MemberEventKind::Down,
        EventKind::Left => MemberEventKind::Left,
        EventKind::Tags => MemberEventKind::Tags,
    };
    MonitorLine::Member {
        kind,
        name: ev.member.name.clone(),
        addr: ev.member.addr,
        incarnation: ev.member.incarnation,
    }
}

async fn members(State(h): State<AgentHandle>) -> Response {
    let events = h.subscribe();
    ndjson(
        "members",
        None,
        events,
        |mut events: Events<MembershipEvent>, deadline| async move {
            let next = tokio::select! {
                ev = events.recv() => Some(match ev {
                    Ok(ev) => Next::Line(member_line(&ev)),
                    Err(EventsError::Lagged(missed)) => Next::Last(MonitorLine::Lagged { missed }),
                    Err(EventsError::Closed) => Next::End,
                }),
                () = tokio::time::sleep_until(deadline) => None,
            };
            (events, next)
        },
    )
}

fn group_reason(r: EventReason) -> GroupEventReason {
    match r {
        EventReason::Joined => GroupEventReason::Joined,
        EventReason::Left => GroupEventReason::Left,
        EventReason::ProcessExit => GroupEventReason::ProcessExit,
        EventReason::NodeDown => GroupEventReason::NodeDown,
        EventReason::NodeRestored => GroupEventReason::NodeRestored,
        EventReason::MetaChanged => GroupEventReason::MetaChanged,
    }
}

fn group_line(ev: GroupEvent) -> MonitorLine {
    MonitorLine::Group {
        scope: ev.scope,
        group: ev.group,
        node: ev.pid.node.clone(),
        pid: ev.pid.to_string(),
        meta: ev.meta,
        reason: group_reason(ev.reason),
    }
}

async fn groups(
    State(h): State<AgentHandle>,
    query: Result<Query<MonitorGroupsQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(format!("bad query: {}", e.body_text())),
    };
    let scope = q.scope.unwrap_or_else(|| DEFAULT_SCOPE.to_owned());
    if scope.is_empty() || q.group.as_deref() == Some("") {
        return bad_request("scope and group must not be empty (omit group for every group)");
    }
    let (snapshot, monitor) = match h.monitor(None, &scope, q.group.as_deref()).await {
        Ok(v) => v,
        Err(ApiError::Failed(MonitorError::OverLimit(e))) => return over_limit(&e),
        Err(ApiError::Failed(e)) => return bad_request(e.to_string()),
        Err(ApiError::Stopped) => return stopped(&ApiError::<std::convert::Infallible>::Stopped),
        Err(ApiError::Busy) => return stopped(&ApiError::<std::convert::Infallible>::Busy),
    };
    let first = MonitorLine::Snapshot {
        scope: snapshot.scope,
        group: snapshot.group,
        members: snapshot
            .members
            .into_iter()
            .map(|m| SnapshotMember {
                group: m.group,
                node: m.pid.node.clone(),
                pid: m.pid.to_string(),
                count: m.count,
                meta: m.meta,
            })
            .collect(),
    };
    ndjson(
        "groups",
        Some(first),
        monitor,
        |monitor: MonitorHandle, deadline| async move {
            let next = tokio::select! {
                item = monitor.recv() => Some(match item {
                    Some(MonitorItem::Event(ev)) => Next::Line(group_line(ev)),
                    Some(MonitorItem::Overflowed) => Next::Last(MonitorLine::Overflowed),
                    None => Next::End,
                }),
                () = tokio::time::sleep_until(deadline) => None,
            };
            (monitor, next)
        },
    )
}

fn lost_reason(r: mesh_core::claims::LostReason) -> LostReason {
    match r {
        mesh_core::claims::LostReason::Evicted => LostReason::Evicted,
        mesh_core::claims::LostReason::Expired => LostReason::Expired,
    }
}

/// The line for a holder event; `None` for a call's result (its caller has it).
fn claim_line(ev: HolderEvent) -> Option<MonitorLine> {
    Some(match ev {
        HolderEvent::Done { .. } => return None,
        HolderEvent::Lost {
            task,
            token,
            reason,
        } => MonitorLine::ClaimLost {
            task,
            token,
            reason: lost_reason(reason),
        },
        HolderEvent::Renewed {
            task,
            token,
            valid_until,
        } => MonitorLine::ClaimRenewed {
            task,
            token,
            valid_for_ms: u64::try_from(
                valid_until
                    .saturating_duration_since(std::time::Instant::now())
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        },
        HolderEvent::Assigned { task, token } => MonitorLine::ClaimAssigned { task, token },
        HolderEvent::NameLost {
            name,
            version,
            reason,
        } => MonitorLine::NameLost {
            name,
            version,
            reason: lost_reason(reason),
        },
    })
}

async fn claims(State(h): State<AgentHandle>) -> Response {
    let events = h.subscribe_claims();
    ndjson(
        "claims",
        None,
        events,
        |mut events: Events<HolderEvent>, deadline| async move {
            let next = loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(ev) => if let Some(line) = claim_line(ev) {
                            break Some(Next::Line(line));
                        },
                        Err(EventsError::Lagged(missed)) => {
                            break Some(Next::Last(MonitorLine::Lagged { missed }))
                        }
                        Err(EventsError::Closed) => break Some(Next::End),
                    },
                    () = tokio::time::sleep_until(deadline) => break None,
                }
            };
            (events, next)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_membership_kind_keeps_its_name() {
        for kind in EventKind::ALL {
            let ev = MembershipEvent {
                kind,
                member: mesh_core::identity::NodeId {
                    name: "n2".into(),
                    addr: "127.0.0.1:1".parse().expect("addr"),
                    incarnation: 3,
                },
                at: std::time::Instant::now(),
            };
            let MonitorLine::Member { kind: k, .. } = member_line(&ev) else {
                panic!("not a member line")
            };
            assert_eq!(k.as_str(), kind.as_str());
        }
    }

    /// The stream's rule: the first line, then each source line in order, a heartbeat
    /// when the source had nothing by the deadline, and nothing after a last line.
    #[tokio::test]
    async fn a_stream_writes_heartbeats_and_ends_after_its_last_line() {
        use std::collections::VecDeque;
        let script: VecDeque<Option<Next>> = VecDeque::from([
            Some(Next::Line(MonitorLine::Overflowed)),
            None,
            Some(Next::Last(MonitorLine::Lagged { missed: 7 })),
            Some(Next::Line(MonitorLine::Heartbeat)),
        ]);
        let response = ndjson(
            "members",
            Some(MonitorLine::Lagged { missed: 1 }),
            script,
            |mut q: VecDeque<Option<Next>>, _| async move {
                let next = q.pop_front().unwrap_or(Some(Next::End));
                (q, next)
            },
        );
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/x-ndjson")
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let lines: Vec<MonitorLine> = String::from_utf8_lossy(&body)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a MonitorLine"))
            .collect();
        assert_eq!(
            lines,
            [
                MonitorLine::Lagged { missed: 1 },
                MonitorLine::Overflowed,
                MonitorLine::Heartbeat,
                MonitorLine::Lagged { missed: 7 },
            ]
        );
    }

    #[test]
    fn every_group_reason_keeps_its_effect() {
        for r in [
            EventReason::Joined,
            EventReason::Left,
            EventReason::ProcessExit,
            EventReason::NodeDown,
            EventReason::NodeRestored,
            EventReason::MetaChanged,
        ] {
            assert_eq!(group_reason(r).effect(), r.effect(), "{r:?}");
        }
    }
}
