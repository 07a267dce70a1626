//! `meshctl monitor` and the `GET /v1/monitor/...` streams against real `meshctl agent`
//! processes: a join shows up as a member event, a group join and exit show up on a
//! group monitor after its snapshot, abandoned streams free their subscriptions and
//! monitors, and the refusals are the documented error shapes. Every wait is a poll
//! with a deadline.
//!
//! Needs `target/debug/meshctl` (or `MESHCTL_BIN`): `scripts/test` builds it first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mesh_api::{GroupEventReason, MemberEventKind, MonitorLine};
use mesh_tests::cluster::{meshctl, metric_value, Agent, Cluster};

/// Generous: agents share two cores with the build and each other.
const CONVERGE: Duration = Duration::from_secs(30);

/// A `meshctl` child whose stdout lines are read on a thread, so the test can wait on
/// them with a deadline. Killed when dropped.
struct LineChild {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
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
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until a line satisfies `want`; panics with every line seen after
    /// `timeout`.
    fn wait_line(&mut self, timeout: Duration, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    let mut err = String::new();
                    if let Ok(Some(_)) = self.child.try_wait() {
                        if let Some(mut e) = self.child.stderr.take() {
                            let _ = e.read_to_string(&mut err);
                        }
                    }
                    panic!(
                        "timed out waiting for {what}; lines so far: {:#?}; stderr: {err}",
                        self.seen
                    );
                }
            }
        }
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    meshctl().args(args).output().expect("meshctl runs")
}

/// Exit code 1 and exactly an `error:` and a `hint:` line; returns them.
fn failure(out: &Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr:?}");
    assert!(lines[0].starts_with("error: ") && lines[1].starts_with("hint: "));
    (lines[0].to_owned(), lines[1].to_owned())
}

fn gauge(agent: &Agent, series: &str) -> Result<f64, String> {
    let text = agent.metrics().map_err(|e| format!("{e:#}"))?;
    metric_value(&text, series).ok_or_else(|| format!("no series {series}"))
}

/// Opens `path` on `admin` as a raw HTTP/1.1 stream and reads until its first line
/// (a snapshot or a heartbeat) has come, so the stream is surely open on the agent.
fn open_raw(admin: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(admin).expect("connect to the admin API");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&got).contains("\"event\"") {
        let n = s.read(&mut buf).expect("stream answers within 10 s");
        assert!(
            n > 0,
            "stream closed early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s
}

#[test]
fn monitor_shows_a_join_and_a_group_join_and_abandoned_streams_are_freed() {
    let mut cluster = Cluster::new();
    let a = cluster.start("n1", &[]);
    cluster.wait_until(CONVERGE, "n1 up", || cluster.sees_alive(&[a], &["n1"]));
    let admin_a = cluster.agents[a].admin.to_string();

    // Members: n2's arrival is an `up` line naming it, in JSON and for humans.
    let mut json = LineChild::spawn(&["monitor", "--json", "--admin", &admin_a]);
    let mut human = LineChild::spawn(&["monitor", "--members", "--admin", &admin_a]);
    cluster.wait_until(CONVERGE, "both member streams are open", || {
        let open = gauge(
            &cluster.agents[a],
            r#"mesh_admin_monitor_streams{stream="members"}"#,
        )?;
        (open == 2.0).then_some(()).ok_or(format!("{open} open"))
    });
    let quic_a = cluster.agents[a].quic;
    let b = cluster.start("n2", &[quic_a]);
    let line = json.wait_line(CONVERGE, "n2 up (JSON)", |l| l.contains("\"n2\""));
    let parsed: MonitorLine = serde_json::from_str(&line).expect("a MonitorLine");
    let MonitorLine::Member {
        kind,
        name,
        addr,
        incarnation,
    } = parsed
    else {
        panic!("not a member line: {line}")
    };
    assert_eq!(
        (kind, name.as_str(), addr),
        (MemberEventKind::Up, "n2", cluster.agents[b].quic)
    );
    assert!(incarnation > 0);
    human.wait_line(CONVERGE, "n2 up (text)", |l| {
        l.starts_with("member n2 up at ")
    });

    // Groups: the snapshot first, then a listener's join on n2 and its exit.
    let mut groups = LineChild::spawn(&["monitor", "--groups", "default/g", "--admin", &admin_a]);
    groups.wait_line(CONVERGE, "the snapshot", |l| {
        l == "snapshot default/g: 0 members"
    });
    let admin_b = cluster.agents[b].admin.to_string();
    let listener = LineChild::spawn(&["listen", "--group", "g", "--json", "--admin", &admin_b]);
    let joined = groups.wait_line(CONVERGE, "n2's listener joins g", |l| {
        l.starts_with("group default/g joined n2/")
    });
    let pid = joined
        .rsplit(' ')
        .next()
        .expect("a pid at the end")
        .to_owned();
    drop(listener);
    groups.wait_line(CONVERGE, "the listener's exit", |l| {
        l == format!("group default/g process_exit {pid}")
            || l == format!("group default/g left {pid}")
    });
    // The same through the JSON stream, for a whole scope, snapshot included.
    let listener = LineChild::spawn(&["listen", "--group", "h", "--json", "--admin", &admin_b]);
    cluster.wait_until(CONVERGE, "n1 sees the listener in h", || {
        let (_, body) = cluster.agents[a]
            .get("/v1/groups/h")
            .map_err(|e| format!("{e:#}"))?;
        body.contains("n2/").then_some(()).ok_or(body)
    });
    let mut scope = LineChild::spawn(&[
        "monitor", "--groups", "default", "--json", "--admin", &admin_a,
    ]);
    let line = scope.wait_line(CONVERGE, "a scope snapshot", |l| l.contains("\"snapshot\""));
    let MonitorLine::Snapshot {
        scope: s,
        group,
        members,
    } = serde_json::from_str(&line).expect("a MonitorLine")
    else {
        panic!("{line}")
    };
    assert_eq!((s.as_str(), group), ("default", None));
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(
        (members[0].group.as_str(), members[0].node.as_str()),
        ("h", "n2")
    );
    drop(listener);
    let line = scope.wait_line(CONVERGE, "the exit in h", |l| l.contains("\"group\":\"h\""));
    let MonitorLine::Group { reason, pid, .. } =
        serde_json::from_str(&line).expect("a MonitorLine")
    else {
        panic!("{line}")
    };
    assert_eq!(pid, members[0].pid);
    assert!(
        matches!(
            reason,
            GroupEventReason::ProcessExit | GroupEventReason::Left
        ),
        "{reason:?}"
    );

    // Abandoned streams: every subscription and monitor goes with its connection.
    drop((json, human, groups, scope));
    let agent = &cluster.agents[a];
    let counts = || -> Result<[f64; 4], String> {
        Ok([
            gauge(agent, r#"mesh_admin_monitor_streams{stream="members"}"#)?,
            gauge(agent, r#"mesh_admin_monitor_streams{stream="groups"}"#)?,
            gauge(agent, r#"mesh_admin_monitor_streams{stream="claims"}"#)?,
            gauge(agent, "mesh_groups_monitors")?,
        ])
    };
    cluster.wait_until(CONVERGE, "the CLI's streams are freed", || {
        let c = counts()?;
        (c == [0.0; 4]).then_some(()).ok_or(format!("{c:?}"))
    });
    let mut raw = Vec::new();
    for i in 0..12 {
        raw.push(open_raw(agent.admin, "/v1/monitor/members"));
        raw.push(open_raw(
            agent.admin,
            &format!("/v1/monitor/groups?group=g{i}"),
        ));
        raw.push(open_raw(agent.admin, "/v1/monitor/claims"));
    }
    cluster.wait_until(CONVERGE, "36 streams and 12 monitors are open", || {
        let c = counts()?;
        (c == [12.0, 12.0, 12.0, 12.0])
            .then_some(())
            .ok_or(format!("{c:?}"))
    });
    drop(raw);
    cluster.wait_until(CONVERGE, "abandoned streams are freed", || {
        let c = counts()?;
        (c == [0.0; 4]).then_some(()).ok_or(format!("{c:?}"))
    });
}

#[test]
fn monitor_refusals_are_usage_errors_or_one_line_with_a_hint() {
    let mut cluster = Cluster::new();
    let a = cluster.start("n1", &[]);
    cluster.wait_until(CONVERGE, "n1 up", || cluster.sees_alive(&[a], &["n1"]));
    let admin = cluster.agents[a].admin.to_string();

    // A bad --groups form is a usage error: nothing is opened.
    for bad in ["/g", "default/", ""] {
        let out = run(&["monitor", "--groups", bad, "--admin", &admin]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("SCOPE or SCOPE/GROUP"), "{stderr}");
    }

    // Nobody there: one line and a hint.
    let port = mesh_tests::cluster::free_udp_port();
    let nowhere = format!("127.0.0.1:{port}");
    let (error, hint) = failure(&run(&["monitor", "--admin", &nowhere]));
    assert!(error.contains("cannot reach the admin API"), "{error}");
    assert!(hint.contains("--admin"), "{hint}");

    // The routes refuse bad queries with a JSON error.
    for path in [
        "/v1/monitor/groups?scope=",
        "/v1/monitor/groups?group=",
        "/v1/monitor/groups?nope=1",
    ] {
        let (status, body) = cluster.agents[a].get(path).expect("answer");
        assert_eq!(status, 400, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
        assert!(v["error"].is_string(), "{body}");
    }

    // The agent stopping ends the stream with an error, not a hang.
    let mut child = LineChild::spawn(&["monitor", "--admin", &admin]);
    cluster.wait_until(CONVERGE, "the stream is open", || {
        let open = gauge(
            &cluster.agents[a],
            r#"mesh_admin_monitor_streams{stream="members"}"#,
        )?;
        (open == 1.0).then_some(()).ok_or(format!("{open} open"))
    });
    cluster.kill9(a);
    let deadline = Instant::now() + CONVERGE;
    let status = loop {
        if let Ok(Some(status)) = child.child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "monitor outlived its agent");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    if let Some(mut e) = child.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        err.starts_with("error: ") && err.contains("hint: "),
        "{err}"
    );
}

/// The claims stream: a claim's renewals show up, and so does its loss when the
/// quorum goes (the holder's validity runs out: `expired`).
#[test]
fn monitor_claims_shows_renewals_and_a_loss() {
    let mut cluster = Cluster::new();
    cluster.agent_args(&[
        "--voters",
        "n1,n2,n3",
        "--claims-ttl",
        "2s",
        "--shards",
        "8",
    ]);
    cluster.start_n(3);
    cluster.wait_until(CONVERGE, "three alive", || {
        cluster.sees_alive(&[0, 1, 2], &["n1", "n2", "n3"])
    });
    let admin = cluster.agents[0].admin.to_string();
    let mut json = LineChild::spawn(&["monitor", "--claims", "--json", "--admin", &admin]);
    let mut human = LineChild::spawn(&["monitor", "--claims", "--admin", &admin]);
    let mut token = 0;
    cluster.wait_until(CONVERGE, "n1 claims job-1", || {
        let out = run(&["claim", "job-1", "--json", "--admin", &admin]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        token = v["token"].as_u64().ok_or("no token")?;
        Ok(())
    });
    let line = json.wait_line(CONVERGE, "a renewal of job-1", |l| {
        l.contains("\"claim_renewed\"") && l.contains("\"job-1\"")
    });
    let MonitorLine::ClaimRenewed {
        token: t,
        valid_for_ms,
        ..
    } = serde_json::from_str(&line).expect("a MonitorLine")
    else {
        panic!("{line}")
    };
    assert_eq!(t, token);
    assert!(valid_for_ms <= 2_000, "{valid_for_ms}");
    human.wait_line(CONVERGE, "a renewal, for humans", |l| {
        l.starts_with(&format!("claim job-1 renewed (token {token}, valid "))
    });
    // No quorum: n1 cannot renew, and its claim expires.
    cluster.kill9(1);
    cluster.kill9(2);
    human.wait_line(CONVERGE, "the loss of job-1", |l| {
        l == format!("claim job-1 lost (token {token}, expired)")
    });
}
