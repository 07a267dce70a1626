//! Real `meshctl agent` processes on loopback: joining, crash and restart, a peer
//! with a foreign certificate, garbage on the UDP port, and `meshctl` agreeing with
//! the admin API. Every wait is a poll with a deadline (see `mesh_tests::cluster`);
//! the one fixed observation window (the foreign peer) is explained where it is.
//!
//! Needs `target/debug/meshctl` (or `MESHCTL_BIN`): `scripts/test` builds it first.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mesh_api::MemberState;
use mesh_api::MemberView;
use mesh_tests::cluster::{exclusive, log_file, meshctl, metric_value, wait_until, Cluster};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Generous: agents share two cores with the build and each other.
const CONVERGE: Duration = Duration::from_secs(30);

const FIVE: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

#[test]
fn five_agents_joined_through_one_seed_all_see_five_alive() {
    let mut cluster = Cluster::new();
    cluster.start_n(5);
    let all: Vec<usize> = (0..5).collect();
    cluster.wait_until(CONVERGE, "every agent sees n1..n5 alive", || {
        cluster.sees_alive(&all, &FIVE)
    });
    for agent in &cluster.agents {
        let members = agent.members().expect("members");
        assert_eq!(members[0].name, agent.name, "self comes first");
        assert!(members[0].is_self && members.iter().filter(|m| m.is_self).count() == 1);
        let (status, body) = agent.get("/readyz").expect("readyz");
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "{} is ready",
            agent.name
        );
    }
}

#[test]
fn a_killed_agent_is_marked_down_and_comes_back_with_a_higher_incarnation() {
    let mut cluster = Cluster::new();
    cluster.start_n(5);
    let all: Vec<usize> = (0..5).collect();
    cluster.wait_until(CONVERGE, "every agent sees n1..n5 alive", || {
        cluster.sees_alive(&all, &FIVE)
    });
    let victim = cluster.index("n3");
    let before = cluster.agents[victim].view().expect("view")["n3"].1;

    cluster.kill9(victim);
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    cluster.wait_until(CONVERGE, "the others mark n3 down", || {
        let mut wrong = String::new();
        for &i in &others {
            let seen = cluster.agents[i].view().map_err(|e| format!("{e:#}"))?;
            if seen.get("n3").map(|(state, _)| *state) != Some(MemberState::Down) {
                wrong.push_str(&format!(
                    "{} sees n3 as {:?}; ",
                    cluster.agents[i].name,
                    seen.get("n3")
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong)
        }
    });

    cluster.restart(victim);
    cluster.wait_until(
        CONVERGE,
        "everyone sees n3 alive with a higher incarnation",
        || {
            let mut wrong = String::new();
            for agent in &cluster.agents {
                let seen = agent.view().map_err(|e| format!("{}: {e:#}", agent.name))?;
                match seen.get("n3") {
                    Some((MemberState::Alive, inc)) if *inc > before => {}
                    other => wrong.push_str(&format!(
                        "{} sees n3 as {other:?} (was incarnation {before}); ",
                        agent.name
                    )),
                }
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong)
            }
        },
    );
    cluster.wait_until(CONVERGE, "all five alive again", || {
        cluster.sees_alive(&all, &FIVE)
    });
}

#[test]
fn an_agent_with_a_foreign_certificate_never_becomes_a_member() {
    let mut cluster = Cluster::new();
    let seed = cluster.start_n(2);
    let members = [0, 1];
    cluster.wait_until(CONVERGE, "n1 and n2 see each other", || {
        cluster.sees_alive(&members, &["n1", "n2"])
    });
    let foreign = cluster.other_ca("foreign-ca");
    let rogue = cluster.start_with_ca("rogue", &[seed], &foreign);

    // The rogue demonstrably dials: the seed counts refused handshakes.
    let series = r#"mesh_transport_handshake_failures_total{kind="auth"}"#;
    cluster.wait_until(
        CONVERGE,
        "the seed counts an auth handshake failure",
        || {
            let text = cluster.agents[0].metrics().map_err(|e| format!("{e:#}"))?;
            match metric_value(&text, series) {
                Some(v) if v > 0.0 => Ok(()),
                v => Err(format!("{series} = {v:?}")),
            }
        },
    );

    // A bounded observation window is the point here: "never joins" can only be
    // watched for a while. 3 s is 15 probe periods of the local profile, and the
    // rogue keeps re-announcing to its seed the whole time.
    let window = Instant::now() + Duration::from_secs(3);
    while Instant::now() < window {
        for &i in &members {
            let view = cluster.agents[i].view().expect("member view");
            assert!(
                !view.contains_key("rogue"),
                "{} lists the rogue: {view:?}\n{}",
                cluster.agents[i].name,
                cluster.log_tails()
            );
        }
        let rogue_view = cluster.agents[rogue].view().expect("rogue view");
        assert_eq!(
            rogue_view.keys().collect::<Vec<_>>(),
            ["rogue"],
            "the rogue knows nobody\n{}",
            cluster.log_tails()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cluster.agents[rogue].is_running(), "the rogue is still up");
    cluster
        .sees_alive(&members, &["n1", "n2"])
        .unwrap_or_else(|e| panic!("members unaffected: {e}"));
}

/// Issue 14, as the hostile operator found it: a second agent started with a valid
/// certificate for a live member's name (`n2`) ran for 9 s, and the seed replaced the
/// real n2's address and incarnation, the real n2 saw others down, and the real one
/// stayed out for minutes after the impostor died. Now, for a 9 s window with the
/// impostor re-announcing the whole time: every real member keeps seeing the real n2
/// (its address and incarnation) alive, the real n2 keeps seeing everyone alive, and
/// the seed counts the refusals; after the impostor is killed nothing changes.
#[test]
fn a_second_agent_with_a_live_members_name_never_displaces_it() {
    let mut cluster = Cluster::new();
    let seed = cluster.start_n(3);
    let members = [0, 1, 2];
    cluster.wait_until(CONVERGE, "n1..n3 see each other", || {
        cluster.sees_alive(&members, &["n1", "n2", "n3"])
    });
    let real = (
        cluster.agents[1].quic,
        cluster.agents[0].view().expect("view")["n2"].1,
    );
    let impostor = cluster.start_duplicate("n2", &[seed]);
    let series = r#"mesh_transport_handshake_failures_total{kind="name_conflict"}"#;
    cluster.wait_until(CONVERGE, "the seed refuses the second n2", || {
        let text = cluster.agents[0].metrics().map_err(|e| format!("{e:#}"))?;
        match metric_value(&text, series) {
            Some(v) if v > 0.0 => Ok(()),
            v => Err(format!("{series} = {v:?}")),
        }
    });
    let check = |cluster: &Cluster, when: &str| {
        for &i in &members {
            let seen = cluster.agents[i].members().expect("members");
            for m in &seen {
                let displaced = m.name == "n2" && (m.addr, m.incarnation) != real;
                assert!(
                    m.state == MemberState::Alive && !displaced,
                    "{when}: {} sees {} as {:?} at {}#{} (the real n2 is {}#{})\n{}",
                    cluster.agents[i].name,
                    m.name,
                    m.state,
                    m.addr,
                    m.incarnation,
                    real.0,
                    real.1,
                    cluster.log_tails()
                );
            }
        }
    };
    // A bounded observation window is the point, as for the foreign certificate: the
    // tester's impostor ran 9 s.
    let window = Instant::now() + Duration::from_secs(9);
    while Instant::now() < window {
        check(&cluster, "while the impostor runs");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        cluster.agents[impostor].is_running(),
        "the impostor is still up"
    );
    cluster.kill9(impostor);
    let window = Instant::now() + Duration::from_secs(3);
    while Instant::now() < window {
        check(&cluster, "after the impostor died");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn random_datagrams_on_the_quic_port_crash_nothing() {
    let mut cluster = Cluster::new();
    cluster.start_n(3);
    let all = [0, 1, 2];
    let three = ["n1", "n2", "n3"];
    cluster.wait_until(CONVERGE, "three alive", || cluster.sees_alive(&all, &three));

    let seed = std::env::var("MESH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("fuzz seed {seed} (reproduce with MESH_FUZZ_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let targets: Vec<_> = cluster.agents.iter().map(|a| a.quic).collect();
    for n in 0..3000 {
        let packet = garbage(&mut rng, n);
        let target = targets[n % targets.len()];
        // A full socket buffer only drops a datagram, which is fine here.
        let _ = socket.send_to(&packet, target);
        if n % 200 == 0 {
            // Let the receivers breathe so most packets are actually read.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    for agent in &mut cluster.agents {
        assert!(
            agent.is_running(),
            "{} died of garbage (seed {seed})",
            agent.name
        );
    }
    for agent in &cluster.agents {
        let (status, body) = agent.get("/livez").expect("livez");
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "{} is live (seed {seed})",
            agent.name
        );
    }
    cluster.wait_until(CONVERGE, "three still alive after the garbage", || {
        cluster.sees_alive(&all, &three)
    });
    // The garbage shows in the metrics (issue 14: it was counted nowhere): every agent
    // counts what its socket received, and those without the QUIC fixed bit as dropped.
    // Agent k gets the packets n ≡ k (mod 3), so only the third gets first bytes left
    // random (`garbage`), about half of them without the bit.
    let series = r#"mesh_transport_udp_dropped_total{reason="not_quic"}"#;
    let mut not_quic = 0.0;
    for agent in &cluster.agents {
        let text = agent.metrics().expect("metrics");
        let received = metric_value(&text, "mesh_transport_udp_datagrams_received_total");
        assert!(
            received.is_some_and(|v| v >= 100.0),
            "{}: received = {received:?} (seed {seed})",
            agent.name
        );
        not_quic += metric_value(&text, series).unwrap_or(0.0);
        assert!(
            metric_value(
                &text,
                r#"mesh_transport_udp_dropped_total{reason="kernel_receive_buffer"}"#
            )
            .is_some(),
            "{}: the kernel's drops are published",
            agent.name
        );
    }
    assert!(
        not_quic >= 100.0,
        "{series} summed = {not_quic} (seed {seed})"
    );
}

/// A datagram that is random, or random behind a QUIC-looking header.
fn garbage(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let len = match n % 4 {
        0 => rng.random_range(1..64),
        1 => 1200,
        _ => rng.random_range(1..1500),
    };
    let mut packet = vec![0u8; len];
    rng.fill(&mut packet[..]);
    match n % 3 {
        // Long header, QUIC v1, plausible connection-id lengths: reaches the
        // Initial-packet decryption path.
        0 if len > 16 => {
            packet[0] = 0xc0 | (packet[0] & 0x3f);
            packet[1..5].copy_from_slice(&1u32.to_be_bytes());
            packet[5] = 8;
            packet[14] = 8;
        }
        // Short header: looks like 1-RTT data for an unknown connection.
        1 => packet[0] = 0x40 | (packet[0] & 0x3f),
        _ => {}
    }
    packet
}

#[test]
fn meshctl_members_json_agrees_with_the_admin_api() {
    let mut cluster = Cluster::new();
    cluster.start_n(3);
    let all = [0, 1, 2];
    cluster.wait_until(CONVERGE, "three alive", || {
        cluster.sees_alive(&all, &["n1", "n2", "n3"])
    });
    type Row = (String, std::net::SocketAddr, u64, MemberState, bool);
    let rows = |members: Vec<MemberView>| -> BTreeMap<String, Row> {
        members
            .into_iter()
            .map(|m| {
                (
                    m.name.clone(),
                    (m.name, m.addr, m.incarnation, m.state, m.is_self),
                )
            })
            .collect()
    };
    for agent in &cluster.agents {
        let api = rows(agent.members().expect("members"));
        let out = meshctl()
            .args(["members", "--json", "--admin", &agent.admin.to_string()])
            .output()
            .expect("meshctl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: Vec<MemberView> =
            serde_json::from_slice(&out.stdout).expect("meshctl prints the members JSON");
        assert_eq!(
            rows(cli),
            api,
            "{} (ages may differ, nothing else)",
            agent.name
        );

        let table = meshctl()
            .args(["members", "--admin", &agent.admin.to_string()])
            .output()
            .expect("meshctl runs");
        let table = String::from_utf8_lossy(&table.stdout).into_owned();
        let first_row: Vec<&str> = table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            first_row.first().copied(),
            Some(format!("{}*", agent.name).as_str()),
            "{table}"
        );
        assert_eq!(table.lines().count(), 4, "{table}");
    }
}

#[test]
fn meshctl_demo_forms_a_cluster_and_exits_when_ready() {
    let _exclusive = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("demo.out");
    let err_path = dir.path().join("demo.err");
    let child = meshctl()
        .args(["demo", "--peers", "3", "--exit-when-ready"])
        .stdin(Stdio::null())
        .stdout(log_file(&out_path))
        .stderr(log_file(&err_path))
        .spawn()
        .expect("meshctl demo starts");
    let mut demo = StopOnDrop(child);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut status = None;
    wait_until(
        Duration::from_secs(60),
        "meshctl demo exits",
        || match demo.0.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                Ok(())
            }
            Ok(None) => Err("still running".to_owned()),
            Err(e) => Err(e.to_string()),
        },
        || format!("stdout:\n{}\nstderr:\n{}", read(&out_path), read(&err_path)),
    );
    let stdout = read(&out_path);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        read(&err_path)
    );
    assert!(
        stdout.contains("all 3 agents see 3 alive members"),
        "{stdout}"
    );
    assert!(
        stdout.contains("meshctl members --admin 127.0.0.1:"),
        "{stdout}"
    );
    // The groups plane, step by step: a listener, the name resolved elsewhere, a group
    // send that arrives.
    let listener = stdout
        .lines()
        .find(|l| l.starts_with("groups: n1 runs a listener n1/"))
        .unwrap_or_else(|| panic!("no listener line: {stdout}"));
    assert!(
        listener.ends_with("in group demo under the name demo-listener"),
        "{listener}"
    );
    let pid = listener
        .split_whitespace()
        .nth(5)
        .expect("the listener's pid");
    assert!(
        stdout.contains(&format!("names: n3 resolves demo-listener to {pid} on n1")),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("groups: n3 sent \"hello from n3\" to group demo: delivered to 1 process\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("groups: the listener on n1 received \"hello from n3\""),
        "{stdout}"
    );
    let order: Vec<usize> = [
        "groups: n1 runs",
        "names: n3",
        "groups: n3 sent",
        "received",
        "claims:",
    ]
    .iter()
    .map(|l| {
        stdout
            .find(l)
            .unwrap_or_else(|| panic!("{l:?} missing: {stdout}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "step order: {stdout}"
    );
}

/// A `meshctl demo` process: on drop (a failed test), SIGTERM so it stops its
/// agents, then SIGKILL if it lingers.
struct StopOnDrop(Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
