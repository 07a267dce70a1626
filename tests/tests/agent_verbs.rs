//! `meshctl info`, `rtt`, `join`, `leave` and `force-leave` against real `meshctl agent`
//! processes: what they print agrees with the agents, their refusals are one-line errors with a hint,
//! and a left agent's process exits 0 while the others see it `left`. Every wait is a
//! poll with a deadline.
//!
//! Needs `target/debug/meshctl` (or `MESHCTL_BIN`): `scripts/test` builds it first.

use std::process::Output;
use std::time::Duration;

use mesh_api::{InfoView, MemberState, RttView};
use mesh_tests::cluster::{meshctl, Cluster};

/// Generous: agents share two cores with the build and each other.
const CONVERGE: Duration = Duration::from_secs(30);

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

#[test]
fn info_rtt_and_leave_against_real_agents() {
    let mut cluster = Cluster::new();
    cluster.agent_args(&["--voters", "n1,n2,n3"]);
    cluster.start_n(3);
    let all = [0, 1, 2];
    cluster.wait_until(CONVERGE, "three alive", || {
        cluster.sees_alive(&all, &["n1", "n2", "n3"])
    });

    // info: each agent describes itself as its members list does.
    for agent in &cluster.agents {
        let admin = agent.admin.to_string();
        let out = run(&["info", "--json", "--admin", &admin]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: InfoView = serde_json::from_slice(&out.stdout).expect("info JSON");
        let me = agent.members().expect("members").remove(0);
        assert_eq!(
            (&info.name, info.incarnation, info.addr),
            (&me.name, me.incarnation, me.addr)
        );
        assert_eq!(info.voters, ["n1", "n2", "n3"]);
        assert_eq!(info.config.admin, agent.admin);
        assert_eq!(info.config.shards, Some(64));
        assert!(!info.commit.is_empty() && !info.version.is_empty());
        assert!(info.uptime_seconds > 0.0, "{info:?}");
        // Build facts of this very binary: the tests run a debug build.
        assert!(
            info.features.iter().any(|f| f == "dns-seeds"),
            "{:?}",
            info.features
        );
        assert_eq!(
            info.features.iter().any(|f| f == "debug-assertions"),
            cfg!(debug_assertions)
        );
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        assert_eq!(info.build.profile, profile, "{:?}", info.build);
        assert!(info.build.rustc.starts_with("rustc 1."), "{:?}", info.build);
        assert!(info.build.target.contains("linux"), "{:?}", info.build);
        assert!(info.config.dns_seeds.is_empty() && info.config.dns_server.is_none());
        let table = run(&["info", "--admin", &admin]);
        let text = String::from_utf8_lossy(&table.stdout).into_owned();
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["name", agent.name.as_str()]),
            "{text}"
        );
        let features = text
            .lines()
            .find(|l| l.starts_with("features "))
            .unwrap_or_else(|| panic!("no features row: {text}"));
        assert!(features.contains("dns-seeds,redb-store"), "{features}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("build ") && l.contains(&info.build.rustc)),
            "{text}"
        );
    }

    // rtt: measured within a few anti-entropy rounds, never zero.
    let n1 = cluster.agents[0].admin.to_string();
    cluster.wait_until(CONVERGE, "n1 has measured its round trip to n2", || {
        let out = run(&["rtt", "n2", "--json", "--admin", &n1]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let rtt: RttView = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        if rtt.name == "n2"
            && rtt.state == MemberState::Alive
            && rtt.rtt_ms > 0.0
            && rtt.rtt_ms < 5000.0
        {
            Ok(())
        } else {
            Err(format!("{rtt:?}"))
        }
    });
    let (error, hint) = failure(&run(&["rtt", "nope", "--admin", &n1]));
    assert!(error.contains("no member named \"nope\""), "{error}");
    assert!(hint.contains("meshctl members"), "{hint}");
    let (error, hint) = failure(&run(&["rtt", "n1", "--admin", &n1]));
    assert!(error.contains("no round trip to itself"), "{error}");
    assert!(hint.contains("ask another agent"), "{hint}");

    // leave: the answer comes first, then the process exits 0 and the others see it left.
    let n3 = cluster.agents[2].admin.to_string();
    let out = run(&["leave", "--json", "--admin", &n3]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["leaving"], "n3");
    let status = cluster.agents[2].wait_exit(CONVERGE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "n3 exits 0 after leaving:\n{}",
        cluster.agents[2].log_tail(20)
    );
    cluster.wait_until(CONVERGE, "n1 and n2 see n3 left", || {
        for agent in &cluster.agents[..2] {
            let seen = agent.view().map_err(|e| format!("{e:#}"))?;
            if seen.get("n3").map(|(s, _)| *s) != Some(MemberState::Left) {
                return Err(format!("{} sees n3 as {:?}", agent.name, seen.get("n3")));
            }
        }
        Ok(())
    });
    let (error, _) = failure(&run(&["info", "--admin", &n3]));
    assert!(error.contains("cannot reach the admin API"), "{error}");
}

#[test]
fn the_new_routes_need_the_token_and_a_refused_leave_stops_nothing() {
    let mut cluster = Cluster::new();
    cluster.agent_args(&["--admin-token", "s3cret-s3cret-s3cret"]);
    cluster.start("n1", &[]);
    let admin = cluster.agents[0].admin.to_string();
    for path in [
        "/v1/info",
        "/v1/rtt/n1",
        "/v1/monitor/members",
        "/v1/monitor/groups",
        "/v1/monitor/claims",
    ] {
        let (status, _) = cluster.agents[0].get(path).expect("GET");
        assert_eq!(status, 401, "{path} without the token");
    }
    let (status, _) = cluster.agents[0]
        .post_raw("/v1/leave", "application/json", "{}")
        .expect("POST");
    assert_eq!(status, 401, "leave without the token");
    let (status, _) = cluster.agents[0]
        .post_raw("/v1/force-leave", "application/json", r#"{"name":"n2"}"#)
        .expect("POST");
    assert_eq!(status, 401, "force-leave without the token");
    let (_, hint) = failure(&run(&["monitor", "--admin", &admin]));
    assert!(hint.contains("needs a token"), "{hint}");
    let (_, hint) = failure(&run(&["leave", "--admin", &admin]));
    assert!(hint.contains("needs a token"), "{hint}");
    // A fixed window, on purpose: it checks that nothing happens. An accepted leave
    // marks the agent not ready at once and exits it within a second here.
    assert!(
        cluster.agents[0]
            .wait_exit(Duration::from_secs(1))
            .is_none(),
        "a refused leave leaves the agent running"
    );
    let (status, body) = cluster.agents[0].get("/readyz").expect("readyz");
    assert_eq!((status, body.as_str()), (200, "ok"), "and not leaving");
    let out = run(&[
        "info",
        "--json",
        "--admin",
        &admin,
        "--token",
        "s3cret-s3cret-s3cret",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "leave",
        "--admin",
        &admin,
        "--token",
        "s3cret-s3cret-s3cret",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = cluster.agents[0].wait_exit(CONVERGE);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

/// `meshctl join`: two agents started without seeds stay apart (the control) until one
/// is asked to join through the other's address; it prints the member found there and
/// both then list each other alive. A join through an address where nothing answers is
/// a one-line error with a hint after its timeout; a join with no address or a bad one
/// is a usage error (exit 2) that asks the agent nothing.
#[test]
fn join_merges_two_lone_agents_and_a_dead_address_is_an_error() {
    use mesh_api::JoinAnswer;
    let mut cluster = Cluster::new();
    let a = cluster.start("n1", &[]);
    let b = cluster.start("n2", &[]);
    cluster.wait_until(CONVERGE, "both up", || {
        cluster.sees_alive(&[a], &["n1"])?;
        cluster.sees_alive(&[b], &["n2"])
    });
    std::thread::sleep(Duration::from_secs(2));
    let apart = cluster.agents[b].view().expect("view");
    assert!(
        !apart.contains_key("n1"),
        "found each other unasked: {apart:?}"
    );

    let admin_b = cluster.agents[b].admin.to_string();
    let quic_a = cluster.agents[a].quic.to_string();
    let out = run(&["join", &quic_a, "--json", "--admin", &admin_b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: JoinAnswer = serde_json::from_slice(&out.stdout).expect("join JSON");
    assert_eq!(answer.joined.len(), 1, "{answer:?}");
    assert_eq!(answer.joined[0].name, "n1");
    assert!(answer.failed.is_empty(), "{answer:?}");
    cluster.wait_until(CONVERGE, "merged", || {
        cluster.sees_alive(&[a, b], &["n1", "n2"])
    });
    // Again, as text: already a member, answered at once.
    let out = run(&["join", &quic_a, "--admin", &admin_b]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("joined n1 at {quic_a}\n")
    );

    // Nothing answers there: an error naming the address, after the timeout.
    let port = mesh_tests::cluster::free_udp_port();
    let nowhere = format!("127.0.0.1:{port}");
    let out = run(&["join", &nowhere, "--timeout", "1", "--admin", &admin_b]);
    let (error, hint) = failure(&out);
    assert!(
        error.contains(&nowhere) && error.contains("could not join"),
        "{error}"
    );
    assert!(hint.contains("advertised"), "{hint}");

    // Usage errors: nothing is sent.
    for args in [
        vec!["join", "--admin", admin_b.as_str()],
        vec!["join", "not-an-address", "--admin", admin_b.as_str()],
        vec![
            "join",
            &quic_a,
            "--timeout",
            "0",
            "--admin",
            admin_b.as_str(),
        ],
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn force_leave_marks_a_killed_agent_left_everywhere_and_refuses_a_live_one() {
    use mesh_api::ForceLeaveAnswer;
    let mut cluster = Cluster::new();
    cluster.start_n(3);
    let all = [0, 1, 2];
    cluster.wait_until(CONVERGE, "three alive", || {
        cluster.sees_alive(&all, &["n1", "n2", "n3"])
    });
    let n1 = cluster.agents[0].admin.to_string();

    // Refusals: one line and a hint, and nothing changes.
    let (error, hint) = failure(&run(&["force-leave", "n2", "--admin", &n1]));
    assert!(
        error.contains("n2 is alive") && error.contains("only a member declared down"),
        "{error}"
    );
    assert!(hint.contains("meshctl leave"), "{hint}");
    let (error, hint) = failure(&run(&["force-leave", "nope", "--admin", &n1]));
    assert!(error.contains("no member named \"nope\""), "{error}");
    assert!(hint.contains("meshctl members"), "{hint}");
    let (error, hint) = failure(&run(&["force-leave", "n1", "--admin", &n1]));
    assert!(error.contains("cannot force-leave itself"), "{error}");
    assert!(hint.contains("another agent"), "{hint}");
    let (error, _) = failure(&run(&["force-leave", "not a name!", "--admin", &n1]));
    assert!(error.contains("is not a node name"), "{error}");
    let port = mesh_tests::cluster::free_udp_port();
    let (error, _) = failure(&run(&[
        "force-leave",
        "n3",
        "--admin",
        &format!("127.0.0.1:{port}"),
    ]));
    assert!(error.contains("cannot reach the admin API"), "{error}");
    let seen = cluster.agents[1].view().expect("view");
    assert_eq!(
        seen.get("n2").map(|(s, _)| *s),
        Some(MemberState::Alive),
        "{seen:?}"
    );

    // A killed agent, once down, is force-left on n1 and seen left by n2 too.
    cluster.kill9(2);
    cluster.wait_until(CONVERGE, "n1 and n2 see n3 down", || {
        for agent in &cluster.agents[..2] {
            let seen = agent.view().map_err(|e| format!("{e:#}"))?;
            if seen.get("n3").map(|(s, _)| *s) != Some(MemberState::Down) {
                return Err(format!("{} sees n3 as {:?}", agent.name, seen.get("n3")));
            }
        }
        Ok(())
    });
    let out = run(&["force-leave", "n3", "--json", "--admin", &n1]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: ForceLeaveAnswer = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (answer.name.as_str(), answer.was),
        ("n3", MemberState::Down)
    );
    cluster.wait_until(CONVERGE, "n1 and n2 see n3 left", || {
        for agent in &cluster.agents[..2] {
            let seen = agent.view().map_err(|e| format!("{e:#}"))?;
            if seen.get("n3").map(|(s, _)| *s) != Some(MemberState::Left) {
                return Err(format!("{} sees n3 as {:?}", agent.name, seen.get("n3")));
            }
        }
        Ok(())
    });
    let n2 = cluster.agents[1].admin.to_string();
    let out = run(&["force-leave", "n3", "--admin", &n2]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "n3 had already left\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
