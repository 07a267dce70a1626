//! `meshctl elect NAME [--grace D] -- CMD [ARGS]`: run a command while the agent asked
//! (`--admin`) leads election `NAME`, like `etcdctl elect` or `consul lock`.
//!
//! The election is a hold (`POST /v1/claims/hold`) of the task `elect/NAME`
//! ([`election_task`]); the rules are the core's ([`mesh_core::claims::election`]):
//!
//! - while another agent leads (or no quorum answers), the hold is retried after the
//!   core's seeded backoff (E3, E4); an agent without voters is an error;
//! - once it leads, CMD runs in its own process group with `MESH_FENCING_TOKEN` (the
//!   claim's token) and `MESH_ELECTION` set;
//! - the validity is measured from *before* the hold was asked (first line) and from
//!   each `renewed` line's arrival less [`LINE_SLACK`]; CMD gets SIGTERM at
//!   [`stop_by`]`(validity, grace + STOP_SLACK)` unless a renew moved the validity on,
//!   and SIGKILL `grace` later — both before the validity ends (E1);
//! - a `lost` line kills CMD at once (SIGKILL); after a loss it campaigns again, and CMD
//!   is restarted (with the new, larger token) when leadership returns;
//! - when CMD exits by itself, the claim is released and `meshctl` exits with CMD's code
//!   (1 if a signal ended it); Ctrl-C (or SIGTERM) stops CMD the same way (SIGTERM,
//!   grace, SIGKILL), releases the claim and exits 0.
//!
//! `--json` prints one event per line on stdout (CMD's own output goes to the same
//! stdout; redirect it to parse the events): `campaigning`, `leader`, `stopping`,
//! `killed`, `exited`, `released`.

use std::io::BufRead as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use mesh_api::{ClaimBody, HoldLine, InfoView, ReleaseBody};
use mesh_core::claims::election::{election_task, stop_by, Backoff};
use mesh_core::claims::{pinned_hash, ClaimsError, Unavailable};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::claim::UNAVAILABLE_HINT;
use crate::client::{AdminArgs, AdminClient, StatusHints};
use crate::config_file::{io_reason, parse_duration};
use crate::demo::StopSignal;
use crate::error::failure;
use crate::out::print_stdout;

/// Subtracted from every validity, on top of the grace period: signal delivery and the
/// poll period of this command.
const STOP_SLACK: Duration = Duration::from_millis(150);
/// Subtracted from a `renewed` line's validity: the time the line may have taken to
/// arrive after the agent computed it (loopback or a LAN).
const LINE_SLACK: Duration = Duration::from_millis(100);
/// How often the loop looks at CMD, Ctrl-C and the deadline while no line arrives.
const POLL: Duration = Duration::from_millis(50);
/// How long the first line of a hold may take (the agent answers within its 20 s call
/// deadline).
const FIRST_LINE: Duration = Duration::from_secs(30);
/// Refusals of a hold that mean "not now": another leader, no quorum, an
/// indeterminate round, a full queue.
const RETRIED: &[u16] = &[409, 429, 503, 504];

const ELECT_HINTS: StatusHints = &[
    (503, UNAVAILABLE_HINT),
    (
        400,
        "fix the election name (1 to 122 bytes: the task key is elect/NAME)",
    ),
];

/// `meshctl elect` options.
#[derive(Debug, Args)]
pub(crate) struct ElectArgs {
    /// The election's name (its claim is the task `elect/NAME`).
    name: String,
    /// How long CMD gets between SIGTERM and SIGKILL when leadership is about to end;
    /// both come before it ends, so keep it well below the agents' claims TTL.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    grace: Duration,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print one JSON event per line.
    #[arg(long)]
    json: bool,
    /// The command to run while leading, and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// One `--json` event.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event<'a> {
    /// Waiting to lead: why the last attempt was refused.
    Campaigning { election: &'a str, reason: &'a str },
    /// Leading: CMD started.
    Leader {
        election: &'a str,
        token: u64,
        valid_for_ms: u64,
        pid: u32,
    },
    /// CMD is being stopped (SIGTERM, or SIGKILL when the claim was lost).
    Stopping {
        election: &'a str,
        token: u64,
        reason: &'a str,
        signal: &'a str,
    },
    /// CMD did not stop within the grace period: SIGKILL.
    Killed { election: &'a str, token: u64 },
    /// CMD ended (`code` null: a signal ended it).
    Exited {
        election: &'a str,
        token: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The claim was released.
    Released { election: &'a str, token: u64 },
}

struct Elect<'a> {
    args: &'a ElectArgs,
    client: AdminClient,
    task: String,
    stop: StopSignal,
}

/// How a term as leader ended.
enum Ended {
    /// Leadership was lost or about to end: campaign again.
    Lost,
    /// CMD exited by itself with this code.
    Exited(i32),
    /// Ctrl-C.
    Interrupted,
}

/// Runs `meshctl elect`.
pub(crate) fn run(args: ElectArgs) -> Result<()> {
    let client = args.admin.client().for_quorum(ELECT_HINTS);
    let ttl = claims_ttl(&client)?;
    let e = Elect {
        task: election_task(&args.name),
        client,
        stop: StopSignal::install()?,
        args: &args,
    };
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = pinned_hash(&[
        e.task.as_bytes(),
        &std::process::id().to_le_bytes(),
        &now_ns.to_le_bytes(),
    ]);
    let mut backoff = Backoff::new(ttl, seed);
    let mut waiting: Option<String> = None;
    loop {
        if e.stop.requested() {
            return Ok(());
        }
        let sent = Instant::now();
        let body = ClaimBody {
            task: e.task.clone(),
            ttl_ms: None,
        };
        let reader = match e
            .client
            .post_stream_or_refusal("/v1/claims/hold", &body, RETRIED)?
        {
            Ok(reader) => reader,
            Err((status, message)) => {
                let no_voters = ClaimsError::Unavailable {
                    reason: Unavailable::NoVoters,
                }
                .to_string();
                if status == 503 && message == no_voters {
                    return Err(failure(message, UNAVAILABLE_HINT));
                }
                if waiting.as_deref() != Some(message.as_str()) {
                    e.emit(
                        &Event::Campaigning {
                            election: &e.args.name,
                            reason: &message,
                        },
                        &format!("campaigning for {}: {message}", e.args.name),
                    )?;
                    waiting = Some(message);
                }
                e.sleep(backoff.next_delay());
                continue;
            }
        };
        waiting = None;
        let lines = read_lines(reader);
        match e.lead(&lines, sent)? {
            Ended::Lost => {
                backoff.reset();
                e.sleep(backoff.next_delay());
            }
            Ended::Exited(code) => std::process::exit(code),
            Ended::Interrupted => return Ok(()),
        }
    }
}

/// The agent's default claims TTL (`GET /v1/info`); no TTL means no voters.
fn claims_ttl(client: &AdminClient) -> Result<Duration> {
    let (_, info) = client.get_json::<InfoView>("/v1/info")?;
    match info.config.claims_ttl_seconds {
        Some(s) => Ok(Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(10))),
        None => Err(failure(
            ClaimsError::Unavailable {
                reason: Unavailable::NoVoters,
            }
            .to_string(),
            UNAVAILABLE_HINT,
        )),
    }
}

type Lines = mpsc::Receiver<(Instant, std::io::Result<String>)>;

/// The stream's lines, each with its arrival, read on a thread.
fn read_lines(reader: Box<dyn std::io::BufRead + Send>) -> Lines {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines() {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

impl Elect<'_> {
    fn emit(&self, event: &Event<'_>, text: &str) -> Result<()> {
        if self.args.json {
            let line = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
            print_stdout(&format!("{line}\n"))
        } else {
            print_stdout(&format!("{text}\n"))
        }
    }

    /// Sleeps `d`, or less if Ctrl-C comes.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stop.requested() {
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(POLL));
        }
    }

    /// Best effort: the hold's end releases the claim too, once the stream closes.
    fn release(&self, token: u64) -> Result<()> {
        let body = ReleaseBody {
            task: self.task.clone(),
            token,
        };
        if self.client.post("/v1/claims/release", &body).is_ok() {
            self.emit(
                &Event::Released {
                    election: &self.args.name,
                    token,
                },
                &format!("released {} (token {token})", self.args.name),
            )?;
        }
        Ok(())
    }

    /// One term: wait for the claim, run CMD while it is valid, stop it in time.
    fn lead(&self, lines: &Lines, sent: Instant) -> Result<Ended> {
        let name = &self.args.name;
        let (token, valid_for_ms) = match lines.recv_timeout(FIRST_LINE) {
            Ok((_, Ok(line))) => match self.client.parse::<HoldLine>(&line)? {
                HoldLine::Claimed {
                    token,
                    valid_for_ms,
                    ..
                } => (token, valid_for_ms),
                other => {
                    return Err(failure(
                        format!("the agent answered the hold with {other:?}"),
                        "is --admin an agent of the same version?",
                    ))
                }
            },
            Ok((_, Err(e))) => return Err(connection_lost(name, &e)),
            Err(_) => {
                return Err(failure(
                    format!("the agent did not answer the hold of election {name:?}"),
                    "check `meshctl quorum status` on that agent",
                ))
            }
        };
        let margin = self.args.grace + STOP_SLACK;
        let mut deadline = sent + Duration::from_millis(valid_for_ms);
        let Some(first_stop) = stop_by(deadline, margin).filter(|t| *t > Instant::now()) else {
            self.release(token)?;
            return Err(failure(
                format!(
                    "--grace {:?} leaves no time to lead: the lease is valid for {} ms",
                    self.args.grace, valid_for_ms
                ),
                "use a --grace well below the agents' --claims-ttl (e.g. a tenth of it)",
            ));
        };
        let mut stop_at = first_stop;
        let mut child = match self.spawn(token) {
            Ok(child) => child,
            Err(e) => {
                self.release(token)?;
                return Err(e);
            }
        };
        self.emit(
            &Event::Leader {
                election: name,
                token,
                valid_for_ms,
                pid: child.id(),
            },
            &format!(
                "leading {name} with token {token} (valid for {} ms); running {} as pid {}",
                valid_for_ms,
                self.args.command.join(" "),
                child.id()
            ),
        )?;
        loop {
            if self.stop.requested() {
                self.terminate(&mut child, token, "interrupted")?;
                self.release(token)?;
                return Ok(Ended::Interrupted);
            }
            if let Some(status) = child.try_wait()? {
                self.exited(token, status)?;
                self.release(token)?;
                return Ok(Ended::Exited(status.code().unwrap_or(1)));
            }
            if Instant::now() >= stop_at {
                self.terminate(&mut child, token, "validity_ending")?;
                self.release(token)?;
                return Ok(Ended::Lost);
            }
            match lines.recv_timeout(POLL) {
                Ok((at, Ok(line))) => match self.client.parse::<HoldLine>(&line)? {
                    HoldLine::Renewed {
                        token: t,
                        valid_for_ms,
                    } if t == token => {
                        let until = (at + Duration::from_millis(valid_for_ms))
                            .checked_sub(LINE_SLACK)
                            .unwrap_or(at);
                        if until > deadline {
                            deadline = until;
                            if let Some(t) = stop_by(deadline, margin) {
                                stop_at = stop_at.max(t);
                            }
                        }
                    }
                    HoldLine::Lost { reason, .. } => {
                        self.kill_now(&mut child, token, &reason)?;
                        return Ok(Ended::Lost);
                    }
                    _ => {}
                },
                Ok((_, Err(e))) => {
                    self.terminate(&mut child, token, "agent_gone")?;
                    return Err(connection_lost(name, &e));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.terminate(&mut child, token, "agent_gone")?;
                    return Err(failure(
                        format!("the agent closed the hold of election {name:?}"),
                        "the agent may have stopped; run the command again once it is back",
                    ));
                }
            }
        }
    }

    fn spawn(&self, token: u64) -> Result<Child> {
        let (program, rest) =
            self.args.command.split_first().ok_or_else(|| {
                failure("no command given", "pass it after --: elect NAME -- CMD")
            })?;
        Command::new(program)
            .args(rest)
            .env("MESH_FENCING_TOKEN", token.to_string())
            .env("MESH_ELECTION", &self.args.name)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                failure(
                    format!("cannot run {program:?}: {}", io_reason(&e)),
                    "check the command after -- (a program on PATH, or a path to one)",
                )
            })
    }

    fn signal(child: &Child, signal: Signal) {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    /// SIGTERM, `grace`, then SIGKILL (to CMD's process group), and wait for it.
    fn terminate(&self, child: &mut Child, token: u64, reason: &str) -> Result<()> {
        if let Some(status) = child.try_wait()? {
            return self.exited(token, status);
        }
        let name = &self.args.name;
        self.emit(
            &Event::Stopping {
                election: name,
                token,
                reason,
                signal: "SIGTERM",
            },
            &format!("stopping pid {} (token {token}): {reason}", child.id()),
        )?;
        Self::signal(child, Signal::SIGTERM);
        let until = Instant::now() + self.args.grace;
        while Instant::now() < until {
            if let Some(status) = child.try_wait()? {
                return self.exited(token, status);
            }
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        Self::signal(child, Signal::SIGKILL);
        self.emit(
            &Event::Killed {
                election: name,
                token,
            },
            &format!(
                "killed pid {} (token {token}) after the grace period",
                child.id()
            ),
        )?;
        let status = child.wait()?;
        self.exited(token, status)
    }

    /// The claim is gone: SIGKILL at once.
    fn kill_now(&self, child: &mut Child, token: u64, reason: &str) -> Result<()> {
        if let Some(status) = child.try_wait()? {
            return self.exited(token, status);
        }
        self.emit(
            &Event::Stopping {
                election: &self.args.name,
                token,
                reason,
                signal: "SIGKILL",
            },
            &format!(
                "lost {} (token {token}): {reason}; killing pid {}",
                self.args.name,
                child.id()
            ),
        )?;
        Self::signal(child, Signal::SIGKILL);
        let status = child.wait()?;
        self.exited(token, status)
    }

    fn exited(&self, token: u64, status: std::process::ExitStatus) -> Result<()> {
        self.emit(
            &Event::Exited {
                election: &self.args.name,
                token,
                code: status.code(),
                signal: status.signal(),
            },
            &format!("the command (token {token}) ended: {status}"),
        )
    }
}

fn connection_lost(name: &str, e: &std::io::Error) -> anyhow::Error {
    failure(
        format!(
            "lost the connection to the agent leading election {name:?}: {}",
            io_reason(e)
        ),
        "the agent may have stopped; its claim ends a TTL after its last renew",
    )
}
