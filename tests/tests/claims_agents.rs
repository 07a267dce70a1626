//! Task claims and strong names between real `meshctl agent` processes on loopback:
//! five agents, of which `n1`, `n2`, `n3` are the voters, driven through `meshctl` and
//! the admin API as an operator would. Every wait is a poll with a deadline, and every
//! case asserts what a broken quorum plane would get wrong:
//!
//! - a `kill -9`ed holder's task is granted again within the lease bound, with a higher
//!   token, and not before the old holder's validity could have ended;
//! - of two concurrent strong registrations of one name exactly one wins, and the loser
//!   is told the winner;
//! - with one voter dead, claims and strong names keep working;
//! - with two voters dead, calls answer `503 Unavailable` within a bound — never a hang,
//!   never a success;
//! - with no voters configured, calls say so and never fall back to eventual names.
//!
//! Needs `target/debug/meshctl` (or `MESHCTL_BIN`): `scripts/test` builds it first.

use std::io::{BufRead, BufReader};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mesh_agent::admin::{
    ClaimAnswer, ClaimsView, HoldLine, ListenLine, QuorumView, SendAnswer, StrongNameView,
    WhereisAnswer,
};
use mesh_tests::cluster::{meshctl, metric_value, Cluster};
use serde_json::json;

/// The claims TTL the agents run with.
const TTL: Duration = Duration::from_secs(2);
/// The agents' clock-rate error bound ρ (the holder's and watcher's default, 1000 ppm).
const RHO: f64 = 0.001;
/// Detection: the watcher (the shard's preferred proposer, a voter) learns a session's
/// last renew when it commits it; if it missed it, the holder's SWIM `down` (about 2 s
/// with `--profile local`, README "Groups and names") triggers a read.
const DETECTION: Duration = Duration::from_secs(2);
/// One commit of the evict on loopback (a quorum round and an fsync), generously.
const COMMIT: Duration = Duration::from_millis(500);
/// Room for two shared cores, the 100 ms retry period of the test, and a forward
/// timeout (1.5 s) if a claim attempt went to a proposer that is slow to answer.
const MARGIN: Duration = Duration::from_secs(4);
/// Slack for the time a hold line takes to reach the test (the validity it reports is
/// computed on the agent when the line is written).
const LINE_SLACK: Duration = Duration::from_millis(500);
/// Agents forming and converging on two shared cores.
const CONVERGE: Duration = Duration::from_secs(30);
/// The agent's deadline for a quorum call (`mesh_agent::admin::CALL_DEADLINE`), plus
/// the time for the answer to come back.
const CALL_BOUND: Duration = Duration::from_secs(25);

/// `TTL·(1+ρ)` + detection + one commit: when a dead holder's task is claimable again.
fn claimable_again_bound() -> Duration {
    TTL.mul_f64(1.0 + RHO) + DETECTION + COMMIT
}

const NAMES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

/// Five agents, voters n1..n3, TTL 2 s, 8 shards; returns once every agent sees all
/// five alive and has the voters' root record in force with all three reachable.
fn voters_cluster() -> Cluster {
    voters_cluster_with(&[])
}

/// [`voters_cluster`] with `extra` agent flags.
fn voters_cluster_with(extra: &[&str]) -> Cluster {
    let mut c = Cluster::new();
    let mut args = vec![
        "--voters",
        "n1,n2,n3",
        "--claims-ttl",
        "2s",
        "--shards",
        "8",
    ];
    args.extend_from_slice(extra);
    c.agent_args(&args);
    c.start_n(5);
    let all: Vec<usize> = (0..5).collect();
    c.wait_until(CONVERGE, "every agent sees five alive", || {
        c.sees_alive(&all, &NAMES)
    });
    c.wait_until(CONVERGE, "every agent has the quorum plane formed", || {
        let mut wrong = String::new();
        for (i, who) in NAMES.iter().enumerate() {
            match quorum_view(&c, i) {
                Ok(v) if v.status.epoch == Some(1) && v.status.reachable.len() == 3 => {}
                Ok(v) => wrong.push_str(&format!(
                    "{who}: {} epoch {:?} reachable {:?}; ",
                    v.status.state, v.status.epoch, v.status.reachable
                )),
                Err(e) => wrong.push_str(&format!("{who}: {e}; ")),
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong)
        }
    });
    c
}

fn quorum_view(c: &Cluster, i: usize) -> Result<QuorumView, String> {
    let (status, body) = c.agents[i]
        .call("GET", "/v1/quorum", None)
        .map_err(|e| format!("{e:#}"))?;
    if status != 200 {
        return Err(format!("{status} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// An admin API call that must get an answer (a transport failure fails the test).
fn call(
    c: &Cluster,
    i: usize,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    c.agents[i]
        .call(method, path, body.as_ref())
        .unwrap_or_else(|e| panic!("{} {method} {path}: {e:#}", NAMES[i]))
}

fn claim(c: &Cluster, i: usize, task: &str) -> (u16, String) {
    call(c, i, "POST", "/v1/claims", Some(json!({ "task": task })))
}

fn admin(c: &Cluster, i: usize) -> String {
    c.agents[i].admin.to_string()
}

fn meshctl_output(args: &[&str]) -> Output {
    meshctl()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("meshctl runs")
}

/// The `error:` and `hint:` lines of a failed `meshctl` run (exit code 1).
fn failure_lines(out: &Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "an error line and a hint line: {stderr:?}");
    assert!(
        lines[0].starts_with("error: ") && lines[1].starts_with("hint: "),
        "{stderr}"
    );
    (lines[0].to_owned(), lines[1].to_owned())
}

/// A `meshctl` child whose stdout lines are read on a thread, each with the instant it
/// arrived, so the test can wait on them with a deadline.
struct LineChild {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl LineChild {
    fn spawn(args: &[&str]) -> Self {
        let mut child = meshctl()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("meshctl starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    fn next(&self, timeout: Duration) -> Option<(Instant, String)> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits for the process to exit; its status code and stderr.
    fn wait_exit(&mut self, timeout: Duration) -> Option<(Option<i32>, String)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Some((status.code(), err));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_killed_holders_task_is_claimable_again_within_the_bound_with_a_higher_token() {
    let mut c = voters_cluster();
    let (n4, n5) = (c.index("n4"), c.index("n5"));
    // n4 (not a voter: the shard's watcher survives it) holds job-1 through the CLI.
    let hold = LineChild::spawn(&[
        "claim",
        "job-1",
        "--hold",
        "--json",
        "--admin",
        &admin(&c, n4),
    ]);
    let Some((at, line)) = hold.next(CALL_BOUND) else {
        panic!("no claimed line\n{}", c.log_tails());
    };
    let Ok(HoldLine::Claimed {
        token: t1,
        valid_for_ms,
        ..
    }) = serde_json::from_str::<HoldLine>(&line)
    else {
        panic!("first line is not `claimed`: {line}");
    };
    // When n4's validity ends, on the test's clock (an upper estimate, see LINE_SLACK).
    let mut old_end = at + Duration::from_millis(valid_for_ms);

    let (status, body) = claim(&c, n5, "job-1");
    assert_eq!(status, 409, "a held task is refused: {body}");
    assert!(
        body.contains("held by node n4") && body.contains(&format!("with token {t1}")),
        "the refusal names the holder and its token: {body}"
    );

    // The holder renews (every TTL/3): its validity moves on.
    let mut renewed = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !renewed {
        if let Some((at, line)) = hold.next(Duration::from_millis(200)) {
            if let Ok(HoldLine::Renewed { valid_for_ms, .. }) = serde_json::from_str(&line) {
                old_end = old_end.max(at + Duration::from_millis(valid_for_ms));
                renewed = true;
            }
        }
    }
    assert!(renewed, "n4 renewed its claim\n{}", c.log_tails());

    c.kill9(n4);
    let killed = Instant::now();
    while let Some((at, line)) = hold.next(Duration::ZERO) {
        if let Ok(HoldLine::Renewed { valid_for_ms, .. }) = serde_json::from_str(&line) {
            old_end = old_end.max(at + Duration::from_millis(valid_for_ms));
        }
    }

    let bound = claimable_again_bound();
    let (granted_at, answer) = loop {
        let (status, body) = claim(&c, n5, "job-1");
        let now = Instant::now();
        match status {
            200 => {
                let a: ClaimAnswer = serde_json::from_str(&body).expect("claim answer");
                break (now, a);
            }
            409 => assert!(body.contains("held by node n4"), "{body}"),
            // A round that timed out may or may not have taken effect: retry.
            504 => {}
            other => panic!("unexpected answer {other}: {body}\n{}", c.log_tails()),
        }
        assert!(
            now.duration_since(killed) < bound + MARGIN,
            "job-1 not claimable {:?} after n4 was killed (bound {bound:?} + margin {MARGIN:?}); \
             last answer {status}: {body}\n{}",
            now.duration_since(killed),
            c.log_tails()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "job-1 claimable again {:?} after kill -9 (bound {bound:?}), {:?} after the old \
         validity's estimated end; token {t1} -> {}",
        granted_at.duration_since(killed),
        granted_at.saturating_duration_since(old_end),
        answer.token
    );
    assert!(
        answer.token > t1,
        "tokens increase across holders: {t1} then {}",
        answer.token
    );
    assert_eq!(answer.node, "n5");
    assert!(
        granted_at + LINE_SLACK >= old_end,
        "granted {:?} before the old holder's validity could have ended",
        old_end.duration_since(granted_at)
    );

    // The hold command noticed its agent die and says so.
    let mut hold = hold;
    let (code, stderr) = hold
        .wait_exit(Duration::from_secs(10))
        .expect("the hold command ends once its agent is gone");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");

    // The voter that evicted the session counted it.
    c.wait_until(
        Duration::from_secs(10),
        "a voter counted the eviction",
        || {
            let total: f64 = (0..3)
                .filter_map(|i| c.agents[i].metrics().ok())
                .filter_map(|m| metric_value(&m, "mesh_claims_evictions_total"))
                .sum();
            if total >= 1.0 {
                Ok(())
            } else {
                Err(format!("evictions counted: {total}"))
            }
        },
    );

    // `meshctl claims` (a quorum read of every shard) shows the new holder.
    let out = meshctl_output(&["claims", "--json", "--admin", &admin(&c, n5)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: ClaimsView = serde_json::from_slice(&out.stdout).expect("claims JSON");
    let held: Vec<(String, u64, String)> = view
        .shards
        .iter()
        .flat_map(|s| s.claims.iter())
        .map(|c| (c.task.clone(), c.token, c.holder.clone()))
        .collect();
    assert_eq!(held, [("job-1".to_owned(), answer.token, "n5".to_owned())]);
}

/// The holder and token of `task` in a quorum read through agent `i`.
fn holder_of(c: &Cluster, i: usize, task: &str) -> Result<Option<(String, u64)>, String> {
    let (status, body) = call(c, i, "GET", "/v1/claims", None);
    if status != 200 {
        return Err(format!("{status} {body}"));
    }
    let view: ClaimsView = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(view
        .shards
        .iter()
        .flat_map(|s| s.claims.iter())
        .find(|c| c.task == task)
        .map(|c| (c.holder.clone(), c.token)))
}

/// `--claims-reassign` on real agents: n5 offers itself as a worker for `job-r` by
/// trying to claim it (refused: n4 holds it; n5's session in the shard stays open and
/// renewed); n4 is `kill -9`ed; the task goes to n5 with a higher token within
/// TTL·(1+ρ) + detection + a commit + one renew period (when n5's holder learns of it),
/// without n5 claiming again; and n5's agent holds it: releasing it there with that
/// token succeeds (a holder that had not adopted the task would refuse it as not held).
#[test]
fn with_claims_reassign_a_killed_holders_task_goes_to_the_live_worker() {
    let mut c = voters_cluster_with(&["--claims-reassign"]);
    let (n4, n5) = (c.index("n4"), c.index("n5"));
    let (status, body) = claim(&c, n4, "job-r");
    assert_eq!(status, 200, "{body}");
    let first: ClaimAnswer = serde_json::from_str(&body).expect("claim answer");
    let (status, body) = claim(&c, n5, "job-r");
    assert_eq!(status, 409, "the worker's offer is a refused claim: {body}");

    c.kill9(n4);
    let killed = Instant::now();
    let bound = claimable_again_bound() + TTL / 3;
    let token = loop {
        match holder_of(&c, n5, "job-r") {
            Ok(Some((node, token))) if node == "n5" => break token,
            Ok(Some((node, _))) => assert_eq!(node, "n4", "only n4 or n5 may hold job-r"),
            Ok(None) => panic!("job-r was freed, not reassigned\n{}", c.log_tails()),
            Err(e) => assert!(e.starts_with("504"), "{e}"),
        }
        assert!(
            killed.elapsed() < bound + MARGIN,
            "job-r not reassigned {:?} after the kill (bound {bound:?})\n{}",
            killed.elapsed(),
            c.log_tails()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(token > first.token, "token {} then {token}", first.token);
    eprintln!(
        "job-r reassigned {:?} after kill -9 (bound {bound:?})",
        killed.elapsed()
    );

    // n5's holder adopted it (the `Assigned` event): it can release it with that token.
    let released = loop {
        let (status, body) = call(
            &c,
            n5,
            "POST",
            "/v1/claims/release",
            Some(json!({ "task": "job-r", "token": token })),
        );
        match status {
            200 => break body,
            // Not adopted yet (the next renew shows it) or a slow round: retry.
            404 | 409 | 504 => {}
            other => panic!("release answered {other}: {body}"),
        }
        assert!(
            killed.elapsed() < bound + MARGIN + TTL,
            "n5 never held job-r: {status} {body}\n{}",
            c.log_tails()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(released.contains("job-r"), "{released}");
    assert_eq!(holder_of(&c, n5, "job-r"), Ok(None), "released");
}

#[test]
fn a_hold_releases_its_claim_on_ctrl_c_and_when_its_client_vanishes() {
    let c = voters_cluster();
    let (n4, n5) = (c.index("n4"), c.index("n5"));
    let start = |task: &str| {
        let hold = LineChild::spawn(&["claim", task, "--hold", "--admin", &admin(&c, n5)]);
        let (_, line) = hold.next(CALL_BOUND).expect("a claimed line");
        assert!(
            line.starts_with(&format!("claimed {task} with token ")),
            "{line}"
        );
        let (status, body) = claim(&c, n4, task);
        assert_eq!(status, 409, "held while the hold runs: {body}");
        hold
    };
    // Ctrl-C: the command releases the claim itself, says so, and exits 0.
    let mut hold = start("job-h1");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(hold.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let (_, line) = hold.next(CALL_BOUND).expect("a released line");
    assert!(line.starts_with("released job-h1 (token "), "{line}");
    let (code, stderr) = hold.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(code, Some(0), "{stderr}");
    let (status, body) = claim(&c, n4, "job-h1");
    assert_eq!(status, 200, "released at once: {body}");

    // kill -9 of the command: the agent notices the closed stream and releases.
    let mut hold = start("job-h2");
    let _ = hold.child.kill();
    let _ = hold.child.wait();
    let gone = Instant::now();
    c.wait_until(
        Duration::from_secs(10),
        "n4 can claim job-h2",
        || match claim(&c, n4, "job-h2") {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        },
    );
    eprintln!(
        "a vanished hold client's claim was released within {:?}",
        gone.elapsed()
    );
    // The release is counted by the core and published with the agent's other figures
    // (periodically): job-h2 was released by the agent, job-h1 by the command (whose
    // hold's own release then found it gone).
    c.wait_until(
        Duration::from_secs(10),
        "the agent counts job-h2's release",
        || {
            let m = c.agents[n5].metrics().map_err(|e| e.to_string())?;
            match metric_value(&m, r#"mesh_claims_hold_releases_total{result="released"}"#) {
                Some(1.0) => Ok(()),
                other => Err(format!("released = {other:?}")),
            }
        },
    );
}

#[test]
fn two_concurrent_strong_registrations_of_one_name_have_exactly_one_winner() {
    let c = voters_cluster();
    let (n4, n5) = (c.index("n4"), c.index("n5"));
    for round in 0..3 {
        let name = format!("leader-{round}");
        let start = |i: usize| {
            meshctl()
                .args(["names", "register", "--strong", &name, "--json"])
                .args(["--admin", &admin(&c, i)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("meshctl starts")
        };
        // Both start before either is waited for: the registrations race.
        let (a, b) = (start(n4), start(n5));
        let outcomes = [
            ("n4", a.wait_with_output().expect("n4 register")),
            ("n5", b.wait_with_output().expect("n5 register")),
        ];
        let winners: Vec<&(&str, Output)> = outcomes
            .iter()
            .filter(|(_, o)| o.status.success())
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one registration of {name} wins: {outcomes:?}"
        );
        let (winner, out) = winners[0];
        let won: StrongNameView = serde_json::from_slice(&out.stdout).expect("register JSON");
        assert_eq!(
            won.node, *winner,
            "the owner is the process the winner's agent keeps"
        );
        let (_, lost) = outcomes
            .iter()
            .find(|(who, _)| who != winner)
            .expect("a loser");
        let (error, _) = failure_lines(lost);
        assert!(
            error.contains(&format!("is taken by {} ", won.pid))
                && error.contains(&format!("at version {}", won.version)),
            "the loser is told the winner: {error}"
        );

        // The quorum agrees, from any agent, and every agent's cache learns it.
        let path = format!("/v1/names/strong/{name}?linearizable=true");
        let (status, body) = call(&c, 0, "GET", &path, None);
        assert_eq!(status, 200, "{body}");
        let seen: WhereisAnswer = serde_json::from_str(&body).expect("whereis JSON");
        assert_eq!(
            (seen.entry.pid.as_str(), seen.entry.version),
            (won.pid.as_str(), won.version)
        );
        c.wait_until(
            Duration::from_secs(15),
            "every cache has the winner",
            || {
                let mut wrong = String::new();
                for (i, who) in NAMES.iter().enumerate() {
                    let (status, body) =
                        call(&c, i, "GET", &format!("/v1/names/strong/{name}"), None);
                    match serde_json::from_str::<WhereisAnswer>(&body) {
                        Ok(a)
                            if status == 200
                                && a.entry.pid == won.pid
                                && a.entry.version == won.version => {}
                        _ => wrong.push_str(&format!("{who}: {status} {body}; ")),
                    }
                }
                if wrong.is_empty() {
                    Ok(())
                } else {
                    Err(wrong)
                }
            },
        );
    }
    // A send to a strong name reaches its owner (the kept process), version-checked.
    let out = meshctl_output(&[
        "send",
        "--strong",
        "leader-0",
        "hi",
        "--json",
        "--admin",
        &admin(&c, 0),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: SendAnswer = serde_json::from_slice(&out.stdout).expect("send JSON");
    assert_eq!(sent.delivered, 1, "{sent:?}");
}

#[test]
fn with_one_voter_killed_claims_and_strong_names_keep_working() {
    let mut c = voters_cluster();
    let (n4, n5) = (c.index("n4"), c.index("n5"));
    // The voter to kill is the preferred proposer of the task's shard: the task's
    // changes were forwarded there, so this is the harder case.
    let task = "job-2";
    let shard = mesh_core::claims::shard_of(task.as_bytes(), 8).0 as usize;
    let victim = quorum_view(&c, n4)
        .expect("quorum status")
        .preferred_by_shard[shard]
        .clone()
        .expect("every shard has a preferred proposer");
    let survivors: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|v| *v != victim)
        .collect();
    c.kill9(c.index(&victim));
    let killed = Instant::now();
    // The first attempts may go to the dead voter as the preferred proposer and time
    // out (504); a majority is alive, so none is refused as unavailable.
    let first = loop {
        let (status, body) = claim(&c, n4, task);
        match status {
            200 => break serde_json::from_str::<ClaimAnswer>(&body).expect("claim answer"),
            504 => {}
            other => panic!("unexpected answer {other}: {body}\n{}", c.log_tails()),
        }
        assert!(
            killed.elapsed() < Duration::from_secs(45),
            "no claim succeeded within 45 s of one voter's death\n{}",
            c.log_tails()
        );
    };
    eprintln!(
        "first claim of {task} (its shard preferred {victim}) after {victim}'s death took {:?}",
        killed.elapsed()
    );
    let (status, body) = claim(&c, n5, task);
    assert_eq!(status, 409, "still exclusive: {body}");
    let (status, body) = call(
        &c,
        n4,
        "POST",
        "/v1/claims/release",
        Some(json!({"task": task, "token": first.token})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = claim(&c, n5, task);
    assert_eq!(status, 200, "released tasks are claimable at once: {body}");
    let second: ClaimAnswer = serde_json::from_str(&body).expect("claim answer");
    assert!(
        second.token > first.token,
        "{} then {}",
        first.token,
        second.token
    );

    let out = meshctl_output(&[
        "names",
        "register",
        "--strong",
        "after-kill",
        "--json",
        "--admin",
        &admin(&c, n5),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let won: StrongNameView = serde_json::from_slice(&out.stdout).expect("register JSON");
    let out = meshctl_output(&[
        "names",
        "whereis",
        "after-kill",
        "--linearizable",
        "--json",
        "--admin",
        &admin(&c, n4),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: WhereisAnswer = serde_json::from_slice(&out.stdout).expect("whereis JSON");
    assert_eq!((seen.entry.pid, seen.entry.version), (won.pid, won.version));
    assert!(seen.linearizable);

    // Once SWIM has declared the victim down, no shard prefers it as its proposer.
    c.wait_until(
        Duration::from_secs(15),
        "n4 sees the victim unreachable",
        || {
            let out = meshctl_output(&["quorum", "status", "--json", "--admin", &admin(&c, n4)]);
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            let view: QuorumView =
                serde_json::from_slice(&out.stdout).map_err(|e| format!("status JSON: {e}"))?;
            let prefers_victim = view
                .preferred_by_shard
                .iter()
                .any(|p| p.as_deref() == Some(victim.as_str()));
            if view.status.reachable == survivors && !prefers_victim {
                Ok(())
            } else {
                Err(format!(
                    "reachable {:?}, preferred {:?}",
                    view.status.reachable, view.preferred_by_shard
                ))
            }
        },
    );
}

#[test]
fn with_two_voters_killed_calls_answer_unavailable_within_a_bound() {
    let mut c = voters_cluster();
    let n4 = c.index("n4");
    let (status, body) = claim(&c, n4, "job-3");
    assert_eq!(status, 200, "{body}");
    c.kill9(c.index("n1"));
    c.kill9(c.index("n2"));
    let killed = Instant::now();
    // Calls in flight or made before SWIM declares the voters down time out (504: may
    // or may not have taken effect); after that they are refused at once (503). None
    // hangs, and none succeeds: one acceptor of three is no quorum.
    let mut answers = Vec::new();
    let message = loop {
        let asked = Instant::now();
        let (status, body) = claim(&c, n4, "job-4");
        let took = asked.elapsed();
        answers.push((status, took));
        assert!(took < CALL_BOUND, "a call took {took:?}: {status} {body}");
        match status {
            503 => break body,
            504 => assert!(body.contains("may or may not have taken effect"), "{body}"),
            other => panic!(
                "after two of three voters died a claim answered {other}: {body}\n{}",
                c.log_tails()
            ),
        }
        assert!(
            killed.elapsed() < DETECTION + CALL_BOUND,
            "not unavailable {:?} after the kills: {answers:?}",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "unavailable {:?} after the kills; answers {answers:?}",
        killed.elapsed()
    );
    assert!(
        message.contains(
            "claims unavailable: only 1 of the 2 voters needed for a quorum are reachable"
        ),
        "{message}"
    );

    // Every kind of call says so at once, through the CLI too.
    let started = Instant::now();
    let out = meshctl_output(&["claim", "job-5", "--admin", &admin(&c, n4)]);
    let (error, hint) = failure_lines(&out);
    assert!(
        error.starts_with("error: claims unavailable: only 1 of the 2"),
        "{error}"
    );
    assert!(hint.contains("meshctl quorum status"), "{hint}");
    for args in [
        &["names", "register", "--strong", "late"][..],
        &["names", "whereis", "late", "--linearizable"],
        &["claims"],
    ] {
        let mut args = args.to_vec();
        let a = admin(&c, n4);
        args.extend(["--admin", &a]);
        let (error, _) = failure_lines(&meshctl_output(&args));
        assert!(
            error.starts_with("error: claims unavailable"),
            "{args:?}: {error}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refusals are immediate, not timeouts: {:?}",
        started.elapsed()
    );

    // n4's own claim could not be renewed: it lapses (the holder never believes it
    // holds past its validity) and is counted as expired.
    c.wait_until(
        TTL * 3 + Duration::from_secs(5),
        "n4 counts job-3 as lost (expired)",
        || {
            let m = c.agents[n4].metrics().map_err(|e| format!("{e:#}"))?;
            match metric_value(&m, r#"mesh_claims_lost_total{reason="expired"}"#) {
                Some(v) if v >= 1.0 => Ok(()),
                other => Err(format!("lost expired: {other:?}")),
            }
        },
    );
}

#[test]
fn without_voters_calls_say_unavailable_and_never_fall_back_to_eventual_names() {
    let mut c = Cluster::new();
    c.start_n(1);
    let a = admin(&c, 0);
    // An eventual name "leader" exists.
    let listener = LineChild::spawn(&["listen", "--name", "leader", "--json", "--admin", &a]);
    let (_, ready) = listener
        .next(Duration::from_secs(15))
        .expect("listen gets ready");
    let Ok(ListenLine::Ready { pid, .. }) = serde_json::from_str::<ListenLine>(&ready) else {
        panic!("not a ready line: {ready}");
    };
    let out = meshctl_output(&["names", "whereis", "leader", "--admin", &a]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        pid,
        "the eventual name"
    );

    for args in [
        &["names", "whereis", "leader", "--strong"][..],
        &["names", "whereis", "leader", "--linearizable"],
        &["names", "register", "--strong", "leader"],
        &["claim", "job-1"],
        &["claims"],
        &["quorum", "status"],
        &["elect", "leader", "--", "true"],
    ] {
        let mut args = args.to_vec();
        // Before a `--` (elect's command), else at the end.
        let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        args.splice(at..at, ["--admin", a.as_str()]);
        let (error, hint) = failure_lines(&meshctl_output(&args));
        assert_eq!(
            error, "error: claims unavailable: no voters are configured",
            "{args:?}"
        );
        assert!(hint.contains("--voters"), "{args:?}: {hint}");
    }
    // A send to the strong name "leader" does not reach the eventual "leader".
    let out = meshctl_output(&["send", "--strong", "leader", "hi", "--admin", &a]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listener.next(Duration::from_millis(500)).is_none(),
        "the eventual holder got nothing"
    );
    let m = c.agents[0].metrics().expect("metrics");
    assert_eq!(metric_value(&m, "mesh_quorum_voters"), Some(0.0));
    assert_eq!(metric_value(&m, "mesh_claims_active"), Some(0.0));
}

/// The largest shard register any voter reports sending, and the stalled shards any
/// agent reports (`meshctl quorum status`).
fn register_health(c: &Cluster) -> (u64, Vec<String>) {
    let mut largest = 0;
    let mut stalled = Vec::new();
    for (i, name) in NAMES.iter().enumerate().take(c.agents.len()) {
        match quorum_view(c, i) {
            Ok(v) => {
                largest = largest.max(v.status.largest_slot.map_or(0, |(_, b)| b));
                for (shard, why) in v.status.stalled {
                    stalled.push(format!("{name} sees shard {shard} {why}"));
                }
            }
            Err(e) => stalled.push(format!("{name}: {e}")),
        }
    }
    (largest, stalled)
}

/// Every shard answers a linearizable read (`GET /v1/claims` reads them all).
fn every_shard_answers(c: &Cluster, i: usize) {
    let (status, body) = call(c, i, "GET", "/v1/claims", None);
    assert_eq!(status, 200, "every shard answers a read: {body}");
}

#[test]
fn three_hundred_distinct_ttls_from_one_agent_leave_every_shard_answering() {
    let c = voters_cluster();
    let n4 = c.index("n4");
    let (mut granted, mut refused) = (0, 0);
    for i in 0..300u64 {
        let task = format!("ttl-{i}");
        let body = json!({ "task": task, "ttl_ms": 1_000 + 7 * i });
        let (status, answer) = call(&c, n4, "POST", "/v1/claims", Some(body));
        match status {
            200 => {
                granted += 1;
                let a: ClaimAnswer = serde_json::from_str(&answer).expect("claim answer");
                let release = json!({ "task": task, "token": a.token });
                let (status, body) = call(&c, n4, "POST", "/v1/claims/release", Some(release));
                assert_eq!(status, 200, "release: {body}");
            }
            507 => {
                refused += 1;
                assert!(
                    answer.contains("at most 8 distinct claim TTLs"),
                    "the refusal names the limit: {answer}"
                );
            }
            other => panic!("claim {i}: {other} {answer}\n{}", c.log_tails()),
        }
    }
    assert!(
        granted >= 7 && refused > 0,
        "{granted} granted, {refused} refused"
    );
    // TTLs whose claims were released close their idle sessions and free their place:
    // a new TTL is granted again.
    c.wait_until(
        Duration::from_secs(20),
        "a fresh TTL is granted again",
        || {
            let body = json!({ "task": "fresh", "ttl_ms": 4_321 });
            match call(&c, n4, "POST", "/v1/claims", Some(body)) {
                (200, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            }
        },
    );
    // The same task under another TTL of the same agent is a clear refusal.
    let (status, body) = call(
        &c,
        n4,
        "POST",
        "/v1/claims",
        Some(json!({ "task": "fresh", "ttl_ms": 5_000 })),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("already held by this agent with ttl 4321 ms"),
        "{body}"
    );
    every_shard_answers(&c, n4);
    let (largest, stalled) = register_health(&c);
    assert!(stalled.is_empty(), "{stalled:?}");
    assert!(largest < 64 * 1024, "a shard register of {largest} bytes");
    let m = c.agents[n4].metrics().expect("metrics");
    assert_eq!(
        metric_value(&m, "mesh_quorum_dropped_total{reason=\"oversized\"}"),
        Some(0.0)
    );
}

#[test]
fn many_agent_lives_leave_every_shard_answering_with_a_flat_register() {
    // MESH_AGENT_LIVES=300 is the long run (README); CI runs a bounded number.
    let lives: u64 = std::env::var("MESH_AGENT_LIVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut c = voters_cluster();
    let n5 = c.index("n5");
    // Every life claims a task of shard 0, so that every life writes the same register.
    let tasks: Vec<String> = (0..)
        .map(|k| format!("life-{k}"))
        .filter(|t| mesh_core::claims::shard_of(t.as_bytes(), 8).0 == 0)
        .take(usize::try_from(lives).expect("small"))
        .collect();
    let mut sizes = Vec::new();
    let started = Instant::now();
    for (k, task) in tasks.iter().enumerate() {
        if k > 0 {
            c.restart(n5);
        }
        c.wait_until(CONVERGE, "the new life claims its task", || {
            match c.agents[n5].call("POST", "/v1/claims", Some(&json!({ "task": task }))) {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("{status} {body}")),
                Err(e) => Err(format!("{e:#}")),
            }
        });
        sizes.push(register_health(&c).0);
    }
    let per_life = started.elapsed() / u32::try_from(lives).expect("small");
    println!("{lives} lives ({per_life:?} each): largest register after each {sizes:?}");
    every_shard_answers(&c, c.index("n4"));
    let (largest, stalled) = register_health(&c);
    assert!(stalled.is_empty(), "{stalled:?}");
    // The previous format kept one whole table per life that ever wrote the shard (about
    // 1.6 KB a life here); the register now holds the live state and a bounded number of
    // compact records, whatever the number of lives.
    assert!(
        largest < 8 * 1024,
        "a shard register of {largest} bytes after {lives} lives"
    );
}

/// The `leader` event of a `meshctl elect --json` line: its token.
fn leader_token(line: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v["event"] == "leader").then(|| v["token"].as_u64())?
}

/// Waits for a line of `child` that `f` accepts; panics with the lines seen.
fn wait_line<T>(
    c: &Cluster,
    child: &LineChild,
    limit: Duration,
    what: &str,
    f: impl Fn(&str) -> Option<T>,
) -> (Instant, T) {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some((at, line)) = child.next(Duration::from_millis(100)) {
            if let Some(v) = f(&line) {
                return (at, v);
            }
            seen.push(line);
        }
    }
    panic!(
        "{what}: not within {limit:?}; lines {seen:?}\n{}",
        c.log_tails()
    );
}

/// The tokens the elected commands wrote, in order.
fn written_tokens(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `meshctl elect` end to end: two commands campaign for one election on n4 and n5;
/// one leads and runs its command with `MESH_FENCING_TOKEN` (the command writes it to
/// a file), the other waits (`campaigning`). n4 is `kill -9`ed: its `meshctl elect`
/// stops its command and fails with an `error:`/`hint:` pair; n5 leads within the
/// claim bound plus the campaign backoff and runs the command with a larger token.
/// The file holds exactly the two tokens, increasing, each the one its `leader` event
/// announced.
#[test]
fn meshctl_elect_runs_the_command_while_leading_and_fails_over_with_a_larger_token() {
    let mut c = voters_cluster();
    let (n4, n5) = (c.index("n4"), c.index("n5"));
    let file = c.dir().join("tokens");
    let script = format!(
        "echo \"$MESH_FENCING_TOKEN\" >> {}; exec sleep 1000",
        file.display()
    );
    let elect = |i: usize| {
        LineChild::spawn(&[
            "elect",
            "job",
            "--grace",
            "300ms",
            "--json",
            "--admin",
            &admin(&c, i),
            "--",
            "sh",
            "-c",
            &script,
        ])
    };
    let mut first = elect(n4);
    let (_, t1) = wait_line(&c, &first, CALL_BOUND, "n4 leads", leader_token);
    let second = elect(n5);
    wait_line(&c, &second, CALL_BOUND, "n5 campaigns", |l| {
        l.contains("\"event\":\"campaigning\"").then_some(())
    });
    c.wait_until(
        Duration::from_secs(5),
        "the leader's command ran",
        || match written_tokens(&file).as_slice() {
            [t] if *t == t1 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    c.kill9(n4);
    let killed = Instant::now();
    // The claim bound, a renew period of n5's missed attempts, the backoff cap (TTL/4).
    let bound = claimable_again_bound() + TTL / 4 + MARGIN;
    let (at, t2) = wait_line(&c, &second, bound + CALL_BOUND, "n5 leads", leader_token);
    let took = at.duration_since(killed);
    assert!(
        took <= bound,
        "n5 led {took:?} after the kill (bound {bound:?})"
    );
    assert!(t2 > t1, "tokens increase: {t1} then {t2}");
    c.wait_until(
        Duration::from_secs(5),
        "the new leader's command ran",
        || match written_tokens(&file).as_slice() {
            [a, b] if *a == t1 && *b == t2 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let (code, stderr) = first
        .wait_exit(Duration::from_secs(10))
        .expect("n4's meshctl elect ends once its agent is gone");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("\nhint: "),
        "{stderr}"
    );
    eprintln!("elect: token {t1} on n4, killed; token {t2} on n5 after {took:?}");
}

/// `meshctl elect` refusals on real agents, each an `error:` and a `hint:` line with
/// exit code 1 and the claim left free: a command that cannot be started, and a
/// `--grace` that leaves no time to lead (the lease is 2 s).
#[test]
fn meshctl_elect_refusals_are_one_line_errors_that_leave_the_election_free() {
    let c = voters_cluster();
    let a = admin(&c, 3);
    let cases: [(&[&str], &str, &str); 2] = [
        (
            &["elect", "e1", "--admin", &a, "--", "/nonexistent/cmd"],
            "error: cannot run \"/nonexistent/cmd\"",
            "check the command",
        ),
        (
            &["elect", "e2", "--grace", "5s", "--admin", &a, "--", "true"],
            "error: --grace 5s leaves no time to lead",
            "--claims-ttl",
        ),
    ];
    for (args, error, hint) in cases {
        let out = meshctl_output(args);
        let (e, h) = failure_lines(&out);
        assert!(e.starts_with(error), "{args:?}: {e}");
        assert!(h.contains(hint), "{args:?}: {h}");
    }
    // Both elections are free again: a plain claim of their tasks succeeds.
    for task in ["elect/e1", "elect/e2"] {
        c.wait_until(
            Duration::from_secs(10),
            "the election is free",
            || match claim(&c, 4, task) {
                (200, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            },
        );
    }
}

/// Sends `signal` to a process.
fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let pid = i32::try_from(pid).expect("a pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal sent");
}

/// The event name and token of a `meshctl elect --json` line.
fn elect_event(line: &str) -> Option<(String, Option<u64>)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some((v["event"].as_str()?.to_owned(), v["token"].as_u64()))
}

/// E1 through `meshctl elect`: the leader's agent n4 is paused (SIGSTOP), so no renew
/// reaches its `meshctl elect`, which stops its command (SIGTERM, reason
/// `validity_ending`) and sees it exit **before** n5's `meshctl elect` leads with a
/// larger token. Once n4 resumes it campaigns again (refused: n5 leads); when n5's
/// `meshctl elect` is interrupted (it stops its command and releases), n4 leads again
/// and restarts its command with a third, larger token. The commands wrote exactly the
/// three tokens, in order.
#[test]
fn meshctl_elect_stops_a_paused_leaders_command_before_another_leads_and_restarts_it_later() {
    use nix::sys::signal::Signal;
    let c = voters_cluster();
    let (n4, n5) = (c.index("n4"), c.index("n5"));
    let file = c.dir().join("tokens");
    let script = format!(
        "echo \"$MESH_FENCING_TOKEN\" >> {}; exec sleep 1000",
        file.display()
    );
    let elect = |i: usize| {
        LineChild::spawn(&[
            "elect",
            "job",
            "--grace",
            "300ms",
            "--json",
            "--admin",
            &admin(&c, i),
            "--",
            "sh",
            "-c",
            &script,
        ])
    };
    let first = elect(n4);
    let (_, t1) = wait_line(&c, &first, CALL_BOUND, "n4 leads", leader_token);
    let mut second = elect(n5);
    wait_line(&c, &second, CALL_BOUND, "n5 campaigns", |l| {
        elect_event(l).filter(|(e, _)| e == "campaigning")
    });

    let n4_pid = c.agents[n4].pid().expect("n4 runs");
    signal(n4_pid, Signal::SIGSTOP);
    let resume = scopeguard(n4_pid);
    let (stopping, reason) = wait_line(&c, &first, TTL * 2, "n4's command is stopped", |l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["event"] == "stopping" && v["token"].as_u64() == Some(t1))
            .then(|| v["reason"].as_str().map(str::to_owned))?
    });
    assert_eq!(reason, "validity_ending");
    let (exited, ()) = wait_line(
        &c,
        &first,
        Duration::from_secs(2),
        "n4's command exits",
        |l| {
            elect_event(l)
                .filter(|(e, t)| e == "exited" && *t == Some(t1))
                .map(|_| ())
        },
    );
    let bound = claimable_again_bound() + TTL / 4 + MARGIN;
    let (led, t2) = wait_line(&c, &second, bound + CALL_BOUND, "n5 leads", leader_token);
    assert!(t2 > t1, "tokens increase: {t1} then {t2}");
    assert!(
        stopping < led && exited < led,
        "n4's command ran until {:?} after n5 led",
        exited.saturating_duration_since(led)
    );
    eprintln!(
        "elect: n4 paused; its command exited {:?} before n5 led",
        led.duration_since(exited)
    );

    drop(resume); // SIGCONT
    wait_line(&c, &first, CALL_BOUND * 2, "n4 campaigns again", |l| {
        elect_event(l).filter(|(e, _)| e == "campaigning")
    });
    signal(second.child.id(), Signal::SIGINT);
    let (code, stderr) = second
        .wait_exit(Duration::from_secs(10))
        .expect("n5's meshctl elect ends on Ctrl-C");
    assert_eq!(code, Some(0), "{stderr}");
    let (_, t3) = wait_line(
        &c,
        &first,
        bound + CALL_BOUND,
        "n4 leads again",
        leader_token,
    );
    assert!(t3 > t2, "tokens increase: {t2} then {t3}");
    c.wait_until(
        Duration::from_secs(5),
        "the commands ran once per term",
        || match written_tokens(&file).as_slice() {
            [a, b, d] if (*a, *b, *d) == (t1, t2, t3) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// Resumes a SIGSTOPped process when dropped (also when the test fails).
struct Resume(u32);

fn scopeguard(pid: u32) -> Resume {
    Resume(pid)
}

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}
