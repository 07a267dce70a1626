//! `meshctl monitor`: stream an agent's membership events, a group monitor (snapshot,
//! then joins and leaves with reasons) and its claims events, until Ctrl-C or the agent
//! closes the stream. One line per event (a snapshot prints a header line, then one
//! indented line per member); `--json` prints the agent's NDJSON lines as they come
//! (heartbeats excepted).

use std::io::{BufRead as _, Write as _};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mesh_api::{MonitorLine, MONITOR_HEARTBEAT_MS};

use crate::client::AdminArgs;
use crate::config_file::io_reason;
use crate::error::failure;
use crate::groups::escape;

/// `SCOPE` or `SCOPE/GROUP`, as `--groups` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupsTarget {
    scope: String,
    group: Option<String>,
}

impl std::str::FromStr for GroupsTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (scope, group) = match s.split_once('/') {
            Some((scope, group)) => (scope, Some(group)),
            None => (s, None),
        };
        if scope.is_empty() || group == Some("") {
            return Err(format!(
                "{s:?} is not SCOPE or SCOPE/GROUP (e.g. default, or default/workers)"
            ));
        }
        Ok(Self {
            scope: scope.to_owned(),
            group: group.map(str::to_owned),
        })
    }
}

impl GroupsTarget {
    /// The route with its query.
    fn path(&self) -> String {
        let mut path = format!("/v1/monitor/groups?scope={}", escape(&self.scope));
        if let Some(g) = &self.group {
            path.push_str("&group=");
            path.push_str(&escape(g));
        }
        path
    }
}

/// `meshctl monitor` options.
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// Membership events: up, suspect, alive, down, left (the default with no other
    /// stream).
    #[arg(long)]
    members: bool,
    /// A group monitor: a snapshot of SCOPE (every group) or SCOPE/GROUP, then every
    /// join and leave with its reason.
    #[arg(long, value_name = "SCOPE[/GROUP]")]
    groups: Option<GroupsTarget>,
    /// Claims events of this agent: lost, renewed, assigned, ephemeral names lost.
    #[arg(long)]
    claims: bool,
    /// Exit after this many events (a snapshot counts as one; for scripts).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print every line as the agent's JSON (NDJSON), heartbeats excepted.
    #[arg(long)]
    json: bool,
}

/// How long without any line (heartbeats included) before the agent is taken as gone.
const SILENCE: Duration = Duration::from_millis(MONITOR_HEARTBEAT_MS * 10);

/// What a reader thread passes on.
enum Got {
    /// A line and its parse.
    Line(String, MonitorLine),
    /// The stream failed or ended.
    Failed(anyhow::Error),
}

/// Runs `meshctl monitor`.
pub(crate) fn run(args: MonitorArgs) -> Result<()> {
    let client = args.admin.client();
    let mut paths = Vec::new();
    if args.members || (args.groups.is_none() && !args.claims) {
        paths.push("/v1/monitor/members".to_owned());
    }
    if let Some(g) = &args.groups {
        paths.push(g.path());
    }
    if args.claims {
        paths.push("/v1/monitor/claims".to_owned());
    }
    // Open every stream first, so a refusal is said before anything is printed.
    let mut readers = Vec::new();
    for path in &paths {
        readers.push(client.get_stream(path)?);
    }
    let (tx, rx) = mpsc::channel::<Got>();
    for reader in readers {
        let tx = tx.clone();
        let client = client.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let got = match line {
                    Ok(line) => match client.parse::<MonitorLine>(&line) {
                        Ok(parsed) => Got::Line(line, parsed),
                        Err(e) => Got::Failed(e),
                    },
                    Err(e) => Got::Failed(failure(
                        format!("lost the connection to the agent: {}", io_reason(&e)),
                        "is the agent still running? run `meshctl monitor` again",
                    )),
                };
                let failed = matches!(got, Got::Failed(_));
                if tx.send(got).is_err() || failed {
                    return;
                }
            }
            let _ = tx.send(Got::Failed(failure(
                "the agent closed the stream",
                "is the agent still running? run `meshctl monitor` again",
            )));
        });
    }
    drop(tx);
    let mut events = 0u64;
    loop {
        let (raw, line) = match rx.recv_timeout(SILENCE) {
            Ok(Got::Line(raw, line)) => (raw, line),
            Ok(Got::Failed(e)) => return Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(failure(
                    format!(
                        "the agent sent nothing for {} s (not even a heartbeat)",
                        SILENCE.as_secs()
                    ),
                    "is the agent overloaded or stopped? check `meshctl info`",
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        if line == MonitorLine::Heartbeat {
            continue;
        }
        let text = if args.json {
            format!("{raw}\n")
        } else {
            render(&line)
        };
        if !write_out(&text)? {
            // The reader went away (`meshctl monitor | head -3`): done.
            return Ok(());
        }
        match line {
            MonitorLine::Lagged { missed } => {
                return Err(failure(
                    format!("fell behind the agent's events and missed {missed}; the stream ended"),
                    "run `meshctl monitor` again (and `meshctl members` for the current state)",
                ))
            }
            MonitorLine::Overflowed => {
                return Err(failure(
                    "fell too far behind the group monitor; the stream ended",
                    "run `meshctl monitor --groups ...` again for a new snapshot",
                ))
            }
            _ => {}
        }
        events += 1;
        if args.count.is_some_and(|c| events >= c) {
            return Ok(());
        }
    }
}

/// Writes to stdout; `false` once the reader has gone away.
fn write_out(text: &str) -> Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(failure(
            format!("cannot write to stdout: {}", io_reason(&e)),
            "stdout is closed or full",
        )),
    }
}

/// One event for humans (a snapshot: a header line and one indented line per member).
fn render(line: &MonitorLine) -> String {
    match line {
        MonitorLine::Member {
            kind,
            name,
            addr,
            incarnation,
        } => format!(
            "member {name} {} at {addr} (incarnation {incarnation})\n",
            kind.as_str()
        ),
        MonitorLine::Snapshot {
            scope,
            group,
            members,
        } => {
            let what = match group {
                Some(g) => format!("{scope}/{g}"),
                None => scope.clone(),
            };
            let mut out = format!("snapshot {what}: {} members\n", members.len());
            for m in members {
                out.push_str(&format!(
                    "  {} {} x{}{}\n",
                    m.group,
                    m.pid,
                    m.count,
                    meta(&m.meta)
                ));
            }
            out
        }
        MonitorLine::Group {
            scope,
            group,
            pid,
            meta: m,
            reason,
            ..
        } => format!(
            "group {scope}/{group} {} {pid}{}\n",
            reason.as_str(),
            meta(m)
        ),
        MonitorLine::ClaimLost {
            task,
            token,
            reason,
        } => format!("claim {task} lost (token {token}, {})\n", reason.as_str()),
        MonitorLine::ClaimRenewed {
            task,
            token,
            valid_for_ms,
        } => format!(
            "claim {task} renewed (token {token}, valid {:.1}s)\n",
            *valid_for_ms as f64 / 1000.0
        ),
        MonitorLine::ClaimAssigned { task, token } => {
            format!("claim {task} assigned (token {token})\n")
        }
        MonitorLine::NameLost {
            name,
            version,
            reason,
        } => format!(
            "name {name} lost (version {version}, {})\n",
            reason.as_str()
        ),
        MonitorLine::Heartbeat => String::new(),
        MonitorLine::Lagged { missed } => format!("lagged: missed {missed} events\n"),
        MonitorLine::Overflowed => "overflowed\n".to_owned(),
    }
}

fn meta(m: &Option<String>) -> String {
    m.as_ref().map(|m| format!(" meta={m}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_targets_take_a_scope_and_an_optional_group() {
        let t: GroupsTarget = "default".parse().expect("scope");
        assert_eq!(t.path(), "/v1/monitor/groups?scope=default");
        let t: GroupsTarget = "s 1/w&x".parse().expect("scope/group");
        assert_eq!(t.path(), "/v1/monitor/groups?scope=s%201&group=w%26x");
        for bad in ["", "/g", "s/"] {
            assert!(bad.parse::<GroupsTarget>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_render_on_one_line_each() {
        let line = MonitorLine::Group {
            scope: "default".into(),
            group: "g".into(),
            pid: "n1/5/1".into(),
            node: "n1".into(),
            meta: Some("m".into()),
            reason: mesh_api::GroupEventReason::Joined,
        };
        assert_eq!(render(&line), "group default/g joined n1/5/1 meta=m\n");
        let line = MonitorLine::Member {
            kind: mesh_api::MemberEventKind::Down,
            name: "n2".into(),
            addr: "127.0.0.1:7946".parse().expect("addr"),
            incarnation: 4,
        };
        assert_eq!(
            render(&line),
            "member n2 down at 127.0.0.1:7946 (incarnation 4)\n"
        );
    }
}
