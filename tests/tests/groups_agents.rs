//! Process groups, eventual names and sends between real `meshctl agent` processes on
//! loopback, driven through `meshctl listen`, `meshctl send`, `meshctl groups` and
//! `meshctl names` as an operator would. Every wait is a poll with a deadline.
//!
//! Needs `target/debug/meshctl` (or `MESHCTL_BIN`): `scripts/test` builds it first.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mesh_agent::admin::{GroupView, ListenLine, NameView};
use mesh_tests::cluster::{meshctl, Cluster};

/// Generous: agents share two cores with the build and each other.
const CONVERGE: Duration = Duration::from_secs(30);

/// The documented bound (README, "Groups and names"): with `--profile local` a
/// killed agent is declared down within about 2 s and its entries are hidden at
/// once; 10 s leaves room for a loaded machine.
const HIDE_BOUND: Duration = Duration::from_secs(10);

/// A `meshctl listen --json` child and the lines it prints, read on a thread so the
/// test can wait on them with a deadline.
struct Listener {
    child: Child,
    lines: mpsc::Receiver<String>,
    pid: String,
}

impl Listener {
    fn start(admin: std::net::SocketAddr, args: &[&str]) -> Result<Self, String> {
        let mut child = meshctl()
            .arg("listen")
            .args(args)
            .args(["--admin", &admin.to_string(), "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn listen: {e}"))?;
        let stdout: ChildStdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut l = Self {
            child,
            lines,
            pid: String::new(),
        };
        match l.next_event(Duration::from_secs(15)) {
            Some(ListenLine::Ready { pid, .. }) => {
                l.pid = pid;
                Ok(l)
            }
            other => {
                let _ = l.child.kill();
                let _ = l.child.wait();
                let mut stderr = String::new();
                if let Some(mut e) = l.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                Err(format!(
                    "listen did not get ready ({other:?}); stderr: {stderr}"
                ))
            }
        }
    }

    /// The next line other than a heartbeat, within `timeout`.
    fn next_event(&self, timeout: Duration) -> Option<ListenLine> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            match serde_json::from_str::<ListenLine>(&line) {
                Ok(ListenLine::Heartbeat) => continue,
                Ok(ev) => return Some(ev),
                Err(e) => panic!("listen printed a line that is not a ListenLine: {line:?}: {e}"),
            }
        }
    }

    /// Events up to and including the message `marker`.
    fn events_until_message(&self, marker: &str, timeout: Duration) -> Vec<ListenLine> {
        let mut seen = Vec::new();
        while let Some(ev) = self.next_event(timeout) {
            let done = matches!(&ev, ListenLine::Message { payload: Some(p), .. } if p == marker);
            seen.push(ev);
            if done {
                return seen;
            }
        }
        panic!("{marker:?} never arrived; saw {seen:?}");
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn meshctl_ok(admin: std::net::SocketAddr, args: &[&str]) -> String {
    let out = meshctl()
        .args(args)
        .args(["--admin", &admin.to_string()])
        .output()
        .expect("meshctl runs");
    assert!(
        out.status.success(),
        "meshctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn group_pids(cluster: &Cluster, i: usize, group: &str) -> Result<Vec<String>, String> {
    let out = meshctl()
        .args([
            "groups",
            group,
            "--json",
            "--admin",
            &cluster.agents[i].admin.to_string(),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let view: GroupView = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut pids: Vec<String> = view.members.into_iter().map(|m| m.pid).collect();
    pids.sort();
    Ok(pids)
}

fn wait_group(
    cluster: &Cluster,
    observers: &[usize],
    group: &str,
    want: &[&str],
    timeout: Duration,
) {
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    cluster.wait_until(
        timeout,
        &format!("every observer sees {group} = {want:?}"),
        || {
            for &i in observers {
                let got = group_pids(cluster, i, group)?;
                if got != want {
                    return Err(format!("{} sees {got:?}", cluster.agents[i].name));
                }
            }
            Ok(())
        },
    );
}

fn start_three() -> Cluster {
    let mut cluster = Cluster::new();
    cluster.start_n(3);
    let all = [0, 1, 2];
    cluster.wait_until(CONVERGE, "every agent sees n1..n3 alive", || {
        cluster.sees_alive(&all, &["n1", "n2", "n3"])
    });
    cluster
}

#[test]
fn a_group_send_from_a_third_agent_reaches_each_listener_once() {
    let cluster = start_three();
    let a = Listener::start(cluster.agents[0].admin, &["--group", "g"]).expect("listen on n1");
    let b = Listener::start(cluster.agents[1].admin, &["--group", "g"]).expect("listen on n2");
    wait_group(&cluster, &[0, 1, 2], "g", &[&a.pid, &b.pid], CONVERGE);

    let out = meshctl_ok(cluster.agents[2].admin, &["send", "--group", "g", "hello"]);
    assert_eq!(out.trim(), "delivered to 2 processes (2 remote nodes)");
    // A second message is the marker: whatever arrived before it arrived once or more.
    meshctl_ok(cluster.agents[2].admin, &["send", "--group", "g", "bye"]);
    for l in [&a, &b] {
        let events = l.events_until_message("bye", CONVERGE);
        let hellos = events
            .iter()
            .filter(|e| matches!(e, ListenLine::Message { payload: Some(p), .. } if p == "hello"))
            .count();
        assert_eq!(hellos, 1, "{} got {events:?}", l.pid);
        assert_eq!(events.len(), 2, "nothing but hello and bye: {events:?}");
    }
}

#[test]
fn a_killed_listeners_agent_leaves_the_group_on_the_others_within_the_bound() {
    let mut cluster = start_three();
    let a = Listener::start(cluster.agents[0].admin, &["--group", "g"]).expect("listen on n1");
    let b = Listener::start(cluster.agents[1].admin, &["--group", "g"]).expect("listen on n2");
    wait_group(&cluster, &[0, 2], "g", &[&a.pid, &b.pid], CONVERGE);

    cluster.kill9(1);
    wait_group(&cluster, &[0, 2], "g", &[&a.pid], HIDE_BOUND);
    drop(b);
}

#[test]
fn two_agents_registering_one_name_at_once_end_with_one_holder_and_one_notice() {
    let cluster = start_three();
    // Both registrations must happen before either agent hears of the other's; they are
    // started together, and an attempt where one saw the other first (409) is retried
    // under a fresh name.
    let mut attempt = 0;
    let (x, y, name) = loop {
        attempt += 1;
        assert!(attempt <= 10, "never got two concurrent registrations");
        let name = format!("leader-{attempt}");
        let (a0, a1) = (cluster.agents[0].admin, cluster.agents[1].admin);
        let (n0, n1) = (name.clone(), name.clone());
        let t0 =
            std::thread::spawn(move || Listener::start(a0, &["--name", &n0, "--policy", "notify"]));
        let t1 =
            std::thread::spawn(move || Listener::start(a1, &["--name", &n1, "--policy", "notify"]));
        let (r0, r1) = (t0.join().expect("thread"), t1.join().expect("thread"));
        if let (Ok(x), Ok(y)) = (r0, r1) {
            break (x, y, name);
        }
    };

    // Everyone converges on one holder.
    let mut holder = String::new();
    cluster.wait_until(CONVERGE, "all three agree on the holder", || {
        let mut seen = Vec::new();
        for agent in &cluster.agents {
            let (status, body) = agent
                .get(&format!("/v1/names/{name}"))
                .map_err(|e| format!("{e:#}"))?;
            if status != 200 {
                return Err(format!("{} answered {status}", agent.name));
            }
            let view: NameView = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            if !body.contains(r#""policy":"notify""#) {
                return Err(format!("the API spells the policy out: {body}"));
            }
            seen.push(view.pid);
        }
        seen.dedup();
        match seen.as_slice() {
            [one] => {
                holder = one.clone();
                Ok(())
            }
            _ => Err(format!("views differ: {seen:?}")),
        }
    });
    let (winner, loser) = if holder == x.pid { (&x, &y) } else { (&y, &x) };
    assert_eq!(
        holder, winner.pid,
        "the holder is one of the two registrants"
    );

    // The loser's process still runs (policy notify): a direct message is the marker
    // after which its notices are counted.
    let loser_admin = if loser.pid.starts_with("n1/") {
        cluster.agents[0].admin
    } else {
        cluster.agents[1].admin
    };
    meshctl_ok(loser_admin, &["send", "--pid", &loser.pid, "marker"]);
    let events = loser.events_until_message("marker", CONVERGE);
    let notices: Vec<&ListenLine> = events
        .iter()
        .filter(|e| matches!(e, ListenLine::NameConflict { .. }))
        .collect();
    assert_eq!(
        notices.len(),
        1,
        "exactly one notice to the loser: {events:?}"
    );
    assert_eq!(
        notices[0],
        &ListenLine::NameConflict {
            name: name.clone(),
            winner: winner.pid.clone()
        }
    );
    // The winner got no notice: a message through the name reaches it first.
    meshctl_ok(
        cluster.agents[2].admin,
        &["send", "--name", &name, "to-holder"],
    );
    let events = winner.events_until_message("to-holder", CONVERGE);
    assert_eq!(
        events.len(),
        1,
        "the winner saw only the message: {events:?}"
    );
}

#[test]
fn malformed_requests_get_a_4xx_json_error_and_change_nothing() {
    let cluster = start_three();
    let a = Listener::start(cluster.agents[0].admin, &["--group", "g"]).expect("listen on n1");
    wait_group(&cluster, &[0], "g", &[&a.pid], CONVERGE);
    let agent = &cluster.agents[0];
    let json = "application/json";
    let cases: [(&str, &str, &str, &str); 9] = [
        ("/v1/send", json, "{not json", "bad request body"),
        (
            "/v1/send",
            "text/plain",
            r#"{"group":"g","payload":"x"}"#,
            "bad request body",
        ),
        ("/v1/send", json, r#"{"grup":"g","payload":"x"}"#, "grup"),
        (
            "/v1/send",
            json,
            r#"{"group":"g","pid":"n1/1/1","payload":"x"}"#,
            "exactly one destination",
        ),
        (
            "/v1/send",
            json,
            r#"{"pid":"n1//1","payload":"x"}"#,
            "invalid PID",
        ),
        ("/v1/send", json, r#"{"group":"g"}"#, "payload"),
        (
            "/v1/send",
            json,
            r#"{"group":"g","payload_base64":"%%%"}"#,
            "base64",
        ),
        (
            "/v1/listen",
            json,
            r#"{"scope":"default"}"#,
            "at least one group",
        ),
        ("/v1/sync", json, r#"{"timeout_ms":0}"#, "timeout_ms"),
    ];
    for (path, content_type, body, says) in cases {
        let (status, text) = agent.post_raw(path, content_type, body).expect("answer");
        assert!(
            (400..500).contains(&status),
            "{path} {body}: {status} {text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("a JSON error body");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says),
            "{path} {body}: {error:?} should mention {says:?}"
        );
    }
    // A body over the limit (axum's 2 MiB) is refused with 413 before it is parsed.
    let huge = format!(r#"{{"group":"g","payload":"{}"}}"#, "x".repeat(3 << 20));
    let (status, text) = agent.post_raw("/v1/send", json, &huge).expect("answer");
    assert_eq!(status, 413, "{}", &text[..text.len().min(200)]);
    // Nothing changed: the listener got nothing, the group is as it was.
    assert_eq!(
        group_pids(&cluster, 0, "g").expect("groups"),
        vec![a.pid.clone()]
    );
    meshctl_ok(agent.admin, &["send", "--group", "g", "marker"]);
    let events = a.events_until_message("marker", CONVERGE);
    assert_eq!(
        events.len(),
        1,
        "no stray message reached the listener: {events:?}"
    );
}

/// Issue 14: `POST /v1/listen` requests whose client closes before reading the reply
/// left processes behind for good (0 → 38 → 74 → 190 over rounds of 500-1 000). 1 000
/// requests (750 listens, 250 group monitors) are abandoned here at once, half reset right after the request is written
/// and half closed after the first reply byte; afterwards the agent must hold no
/// process and no monitor, the group no member, and it must still serve a listener. On a debug build on
/// loopback this burst did not reproduce the leak even without the fixes (the window,
/// a client gone between the spawn command and its reply, is narrow here); the
/// deterministic control is `a_spawn_abandoned_before_its_reply_leaves_no_process` in
/// `mesh-agent/src/runtime/start.rs`, which fails without them.
#[test]
fn a_thousand_abandoned_listen_streams_leave_no_process_behind() {
    use std::io::{Read, Write};
    let mut cluster = Cluster::new();
    cluster.start("n1", &[]);
    let admin = cluster.agents[0].admin;
    let body = r#"{"groups":["abandoned"]}"#;
    let request = format!(
        "POST /v1/listen HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Every fourth stream is a group monitor instead (it holds a monitor, not a
    // process).
    let monitor = format!("GET /v1/monitor/groups?scope=default HTTP/1.1\r\nHost: {admin}\r\n\r\n");
    // All at once, as a hostile client would: 1 000 connections each write a request,
    // then every one closes, half of them after the first reply byte (so the agent
    // has many spawns in flight when the closes arrive).
    let mut conns: Vec<(usize, std::net::TcpStream)> = Vec::new();
    for i in 0..1000 {
        let mut conn = std::net::TcpStream::connect(admin).expect("connect to the admin API");
        let ask = if i % 4 == 3 { &monitor } else { &request };
        conn.write_all(ask.as_bytes()).expect("write the request");
        conns.push((i, conn));
    }
    for (i, mut conn) in conns {
        if i % 2 == 1 {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut first = [0u8; 1];
            let _ = conn.read(&mut first);
        } else {
            // Reset rather than close: the agent's next read fails at once.
            let linger = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            nix::sys::socket::setsockopt(&conn, nix::sys::socket::sockopt::Linger, &linger)
                .expect("SO_LINGER");
        }
        drop(conn);
    }
    let held = || -> Result<(f64, f64), String> {
        let text = cluster.agents[0].metrics().map_err(|e| e.to_string())?;
        let get = |series: &str| {
            mesh_tests::cluster::metric_value(&text, series)
                .ok_or_else(|| format!("no {series} in /metrics"))
        };
        Ok((get("mesh_processes")?, get("mesh_monitors")?))
    };
    cluster.wait_until(
        Duration::from_secs(20),
        "every abandoned stream's process and monitor has ended",
        || match held()? {
            (p, m) if p < 0.5 && m < 0.5 => Ok(()),
            (p, m) => Err(format!("mesh_processes = {p}, mesh_monitors = {m}")),
        },
    );
    wait_group(&cluster, &[0], "abandoned", &[], Duration::from_secs(5));
    // And the agent still serves a listener that stays.
    let a = Listener::start(admin, &["--group", "abandoned"]).expect("listen after the flood");
    wait_group(
        &cluster,
        &[0],
        "abandoned",
        &[&a.pid],
        Duration::from_secs(5),
    );
}

/// Bounded resources (issue 14): with `--max-processes 3`, three `listen` streams hold
/// three processes and a fourth request is refused with 507 naming the limit, counted
/// in `mesh_limit_refusals_total`; closing one stream makes room for the next.
#[test]
fn a_listen_past_max_processes_is_refused_with_507_and_room_comes_back() {
    let mut cluster = Cluster::new();
    cluster.agent_args(&["--max-processes", "3"]);
    cluster.start("n1", &[]);
    let admin = cluster.agents[0].admin;
    let held: Vec<Listener> = (0..3)
        .map(|i| Listener::start(admin, &["--group", "g"]).unwrap_or_else(|e| panic!("{i}: {e}")))
        .collect();
    let (status, body) = cluster.agents[0]
        .post_raw("/v1/listen", "application/json", r#"{"groups":["g"]}"#)
        .expect("POST");
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("max_processes"), "{body}");
    // Published with the node's metrics, at most a second late.
    cluster.wait_until(Duration::from_secs(5), "the refusal is counted", || {
        let text = cluster.agents[0].metrics().map_err(|e| e.to_string())?;
        match mesh_tests::cluster::metric_value(
            &text,
            r#"mesh_limit_refusals_total{resource="processes"}"#,
        ) {
            Some(v) if v >= 1.0 => Ok(()),
            v => Err(format!("refusals = {v:?}")),
        }
    });
    drop(held);
    cluster.wait_until(Duration::from_secs(10), "a listen fits again", || {
        Listener::start(admin, &["--group", "g"]).map(drop)
    });
}
