//! `meshctl claim`, `meshctl claims` and `meshctl release`: task claims on the quorum
//! plane.
//!
//! A claim belongs to the agent asked (`--admin`), not to the command:
//! `meshctl claim TASK` leaves the task held — the agent renews it every TTL/3 — until
//! `meshctl release TASK --token T` on the same agent, or until the agent dies and its
//! lease runs out (then another agent can claim the task, with a higher token).
//! `meshctl claim TASK --hold` binds the claim to the command instead: it prints the
//! token, stays while the agent renews, and on Ctrl-C releases the claim and exits 0;
//! if the claim is lost it says why and exits 1. Every refusal is an `error:` line and
//! a `hint:` line: `503` means no quorum (nothing was done), `504` that the outcome is
//! unknown.

use std::io::BufRead as _;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mesh_api::{ClaimAnswer, ClaimBody, ClaimsView, HoldLine, ReleaseBody};

use crate::client::{default_admin, AdminArgs, AdminClient, StatusHints};
use crate::config_file::{io_reason, parse_duration};
use crate::demo::StopSignal;
use crate::error::failure;
use crate::out::{print_stdout, table};

/// The hint for a `503` of any quorum call.
pub(crate) const UNAVAILABLE_HINT: &str =
    "claims and strong names need a majority of the voters: check `meshctl quorum status` \
     (agents must run with --voters; on a minority side, wait for the partition to heal)";

const CLAIM_HINTS: StatusHints = &[
    (503, UNAVAILABLE_HINT),
    (
        504,
        "the claim may or may not have been made: run the same command again (a repeat \
         claim by this agent returns the same token)",
    ),
    (
        409,
        "if the task is held, wait for its release or eviction (`meshctl claims` shows the \
         holder); if the agent's session was lost, run the command again",
    ),
    (
        400,
        "fix the task key (1 to 128 bytes) or the --ttl (200ms to 1 day)",
    ),
];

const RELEASE_HINTS: StatusHints = &[
    (503, UNAVAILABLE_HINT),
    (
        504,
        "the release may or may not have taken effect: check with `meshctl claims`, or run \
         it again",
    ),
    (
        409,
        "pass the task's current token (`meshctl claims`), to the agent that holds it \
         (--admin)",
    ),
];

const CLAIMS_HINTS: StatusHints = &[
    (503, UNAVAILABLE_HINT),
    (
        504,
        "no quorum answered the read in time: retry, or check `meshctl quorum status`",
    ),
    (
        400,
        "pass a shard number below the cluster's shard count (`meshctl quorum status`)",
    ),
];

/// How often `--hold` looks for Ctrl-C while no line arrives.
const POLL: Duration = Duration::from_millis(100);

/// `meshctl claim` options.
#[derive(Debug, Args)]
pub(crate) struct ClaimArgs {
    /// The task key (1 to 128 bytes).
    task: String,
    /// Lease TTL, e.g. 10s or 1500ms [default: the agent's --claims-ttl].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// Hold the claim while this command runs: Ctrl-C releases it.
    #[arg(long)]
    hold: bool,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON (with --hold, every line of the stream but heartbeats).
    #[arg(long)]
    json: bool,
}

/// `meshctl release` options. `--token` is the claim's token here, so the admin API's
/// bearer token is `--admin-token` (or `MESH_ADMIN_TOKEN`).
#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    /// The task key.
    task: String,
    /// The claim's current fencing token.
    #[arg(long, value_name = "T")]
    token: u64,
    /// Admin API of the agent that holds the claim (HOST:PORT).
    #[arg(long, env = "MESH_ADMIN", value_name = "ADDR", default_value_t = default_admin())]
    admin: String,
    /// Bearer token of that admin API.
    #[arg(
        long = "admin-token",
        env = "MESH_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `meshctl claims` options.
#[derive(Debug, Args)]
pub(crate) struct ClaimsArgs {
    /// Read only this shard (default: every shard).
    #[arg(long, value_name = "N")]
    shard: Option<u32>,
    /// Also list the sessions (leases) with their holder and TTL.
    #[arg(long)]
    sessions: bool,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Runs `meshctl claim`.
pub(crate) fn run_claim(args: ClaimArgs) -> Result<()> {
    let client = args.admin.client().for_quorum(CLAIM_HINTS);
    let body = ClaimBody {
        task: args.task.clone(),
        ttl_ms: args
            .ttl
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    if args.hold {
        return hold(&client, &body, args.json);
    }
    let text = client.post("/v1/claims", &body)?;
    let answer: ClaimAnswer = client.parse(&text)?;
    if args.json {
        return print_stdout(&format!("{text}\n"));
    }
    print_stdout(&format!(
        "claimed {} with token {} on {} (valid for {}; the agent renews it until \
         `meshctl release {} --token {}`)\n",
        answer.task,
        answer.token,
        answer.node,
        seconds(answer.valid_for_ms),
        answer.task,
        answer.token
    ))
}

/// `--hold`: claim, print the token, and keep the stream open until Ctrl-C (then
/// release) or until the claim is lost.
fn hold(client: &AdminClient, body: &ClaimBody, json: bool) -> Result<()> {
    let stop = StopSignal::install()?;
    let reader = client.post_stream("/v1/claims/hold", body)?;
    // Lines are read on a thread, so that Ctrl-C is seen while none arrives.
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut claimed: Option<u64> = None;
    loop {
        if stop.requested() {
            return match claimed {
                Some(token) => release_held(client, &body.task, token, json),
                None => Err(failure(
                    "interrupted before the claim was made",
                    "check with `meshctl claims` whether the agent holds the task",
                )),
            };
        }
        let line = match lines.recv_timeout(POLL) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                return Err(failure(
                    format!(
                        "lost the connection to the agent holding {:?}: {}",
                        body.task,
                        io_reason(&e)
                    ),
                    "the agent may have stopped; its claim ends a TTL after its last renew",
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(failure(
                    format!("the agent holding {:?} closed the stream", body.task),
                    "the agent may have stopped; its claim ends a TTL after its last renew",
                ))
            }
        };
        let event: HoldLine = client.parse(&line)?;
        if json && event != HoldLine::Heartbeat {
            print_stdout(&format!("{line}\n"))?;
        }
        match event {
            HoldLine::Claimed {
                task,
                token,
                valid_for_ms,
            } => {
                claimed = Some(token);
                if !json {
                    print_stdout(&format!(
                        "claimed {task} with token {token} (valid for {}; renewed while this \
                         runs, Ctrl-C releases it)\n",
                        seconds(valid_for_ms)
                    ))?;
                }
            }
            HoldLine::Renewed { .. } | HoldLine::Heartbeat => {}
            HoldLine::Lost {
                task,
                token,
                reason,
            } => {
                return Err(failure(
                    format!("lost the claim of {task:?} (token {token}): {reason}"),
                    match reason.as_str() {
                        "released" => "someone released it through the agent's API",
                        _ => {
                            "the agent could not renew it in time (check `meshctl quorum \
                             status`); stop using the token, and claim the task again"
                        }
                    },
                ))
            }
        }
    }
}

/// Releases a held claim after Ctrl-C (the agent would also release it once it sees the
/// stream closed; releasing here confirms it).
fn release_held(client: &AdminClient, task: &str, token: u64, json: bool) -> Result<()> {
    let body = ReleaseBody {
        task: task.to_owned(),
        token,
    };
    client
        .clone()
        .for_quorum(RELEASE_HINTS)
        .post("/v1/claims/release", &body)?;
    if json {
        eprintln!("released {task} (token {token})");
        Ok(())
    } else {
        print_stdout(&format!("released {task} (token {token})\n"))
    }
}

/// Runs `meshctl release`.
pub(crate) fn run_release(args: ReleaseArgs) -> Result<()> {
    let admin = AdminArgs {
        admin: args.admin,
        token: args.admin_token,
    };
    let client = admin.client().for_quorum(RELEASE_HINTS);
    let body = ReleaseBody {
        task: args.task,
        token: args.token,
    };
    let text = client.post("/v1/claims/release", &body)?;
    if args.json {
        return print_stdout(&format!("{text}\n"));
    }
    print_stdout(&format!("released {} (token {})\n", body.task, body.token))
}

/// Runs `meshctl claims`.
pub(crate) fn run_claims(args: ClaimsArgs) -> Result<()> {
    let client = args.admin.client().for_quorum(CLAIMS_HINTS);
    let path = match args.shard {
        Some(s) => format!("/v1/claims?shard={s}"),
        None => "/v1/claims".to_owned(),
    };
    let (body, view) = client.get_json::<ClaimsView>(&path)?;
    if args.json {
        return print_stdout(&format!("{body}\n"));
    }
    print_stdout(&render(&view, args.sessions, args.shard.is_some()))
}

/// The tables of `meshctl claims`: claims always; strong names if there are any;
/// sessions on request; with `--shard`, a first line with the shard's fencing counter.
fn render(view: &ClaimsView, sessions: bool, one_shard: bool) -> String {
    let mut out = String::new();
    if one_shard {
        for s in &view.shards {
            out.push_str(&format!(
                "shard {} (next token {})\n",
                s.shard, s.next_token
            ));
        }
    }
    let claims: Vec<Vec<String>> = view
        .shards
        .iter()
        .flat_map(|s| {
            s.claims.iter().map(move |c| {
                vec![
                    s.shard.to_string(),
                    c.task.clone(),
                    c.token.to_string(),
                    c.holder.clone(),
                    c.session.clone(),
                ]
            })
        })
        .collect();
    out.push_str(&table(
        &["SHARD", "TASK", "TOKEN", "HOLDER", "SESSION"],
        &claims,
    ));
    let names: Vec<Vec<String>> = view
        .shards
        .iter()
        .flat_map(|s| {
            s.names.iter().map(move |n| {
                vec![
                    s.shard.to_string(),
                    n.name.clone(),
                    n.version.to_string(),
                    n.pid.clone(),
                    n.session.clone().unwrap_or_default(),
                ]
            })
        })
        .collect();
    if !names.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["SHARD", "STRONG NAME", "VERSION", "OWNER", "SESSION"],
            &names,
        ));
    }
    if sessions {
        let rows: Vec<Vec<String>> = view
            .shards
            .iter()
            .flat_map(|s| {
                s.sessions.iter().map(move |x| {
                    vec![
                        s.shard.to_string(),
                        x.session.clone(),
                        x.holder.clone(),
                        seconds(x.ttl_ms),
                        x.renew_seq.to_string(),
                    ]
                })
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["SHARD", "SESSION", "HOLDER", "TTL", "RENEW_SEQ"],
            &rows,
        ));
    }
    out
}

/// Milliseconds as seconds for people: `9.9s`, `2s`.
fn seconds(ms: u64) -> String {
    let s = format!("{:.1}", ms as f64 / 1000.0);
    format!("{}s", s.trim_end_matches(".0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::{ClaimView, SessionView, ShardView, StrongNameView};

    fn view() -> ClaimsView {
        ClaimsView {
            shards: vec![ShardView {
                shard: 12,
                next_token: 9,
                sessions: vec![SessionView {
                    session: "n4/5/1".into(),
                    holder: "n4".into(),
                    ttl_ms: 2000,
                    renew_seq: 8,
                }],
                claims: vec![ClaimView {
                    task: "job-1".into(),
                    token: 7,
                    holder: "n4".into(),
                    session: "n4/5/1".into(),
                }],
                names: Vec::new(),
            }],
        }
    }

    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    #[test]
    fn claims_are_listed_with_their_shard_token_and_holder() {
        let text = render(&view(), false, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            words(lines[0]),
            ["SHARD", "TASK", "TOKEN", "HOLDER", "SESSION"]
        );
        assert_eq!(words(lines[1]), ["12", "job-1", "7", "n4", "n4/5/1"]);
    }

    #[test]
    fn one_shard_shows_its_counter_and_sessions_come_on_request() {
        let mut v = view();
        v.shards[0].names.push(StrongNameView {
            name: "leader".into(),
            pid: "n4/5/3".into(),
            node: "n4".into(),
            version: 6,
            ephemeral: false,
            session: None,
        });
        let text = render(&v, true, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "shard 12 (next token 9)");
        assert!(
            lines
                .iter()
                .any(|l| words(l) == ["12", "leader", "6", "n4/5/3"]),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| words(l) == ["12", "n4/5/1", "n4", "2s", "8"]),
            "{text}"
        );
    }

    #[test]
    fn durations_read_as_seconds() {
        assert_eq!(seconds(9_900), "9.9s");
        assert_eq!(seconds(2_000), "2s");
        assert_eq!(seconds(0), "0s");
    }
}
