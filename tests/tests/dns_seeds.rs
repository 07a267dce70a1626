//! DNS seeds against a real DNS server: Debian's `dnsmasq` on a loopback port,
//! serving a hosts file (re-read on SIGHUP) and one SRV record. Real agents point
//! at it with `--dns-server`.
//!
//! Covered: a name that does not exist (NXDOMAIN: the log line and the metric), the
//! record appearing later (the lone agent follows it), the record changing (from an
//! address nobody answers at to a live agent, which it then joins), and an SRV seed.
//!
//! Skipped, with the reason printed, only when `dnsmasq` is not installed (`.ci/run`
//! installs `dnsmasq-base`, so CI runs it).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mesh_tests::cluster::{free_udp_port, metric_value, wait_until, Cluster};

/// Time for a lone agent to look again (its backoff is at most 30 s, ±25 %) and join.
const FOLLOW: Duration = Duration::from_secs(45);

/// dnsmasq on `127.0.0.1:port`, killed on drop.
struct Dnsmasq {
    child: Child,
    port: u16,
    hosts: PathBuf,
    log: PathBuf,
}

impl Dnsmasq {
    fn start(dir: &Path, srv: &str) -> Self {
        let hosts = dir.join("dns-hosts");
        std::fs::write(&hosts, "").expect("hosts file");
        let log = dir.join("dnsmasq.log");
        let port = free_udp_port();
        let out = std::fs::File::create(&log).expect("dnsmasq log");
        let err = out.try_clone().expect("dnsmasq log");
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--keep-in-foreground",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--log-queries",
                "--log-facility=-",
                // Answer names under mesh.test from the hosts file only: a missing
                // one is NXDOMAIN rather than REFUSED for want of an upstream.
                "--local=/mesh.test/",
                "--local-ttl=0",
                "--user=root",
                "--pid-file=",
                &format!("--srv-host={srv}"),
            ])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn dnsmasq");
        let me = Self {
            child,
            port,
            hosts,
            log,
        };
        wait_until(
            Duration::from_secs(10),
            "dnsmasq listens",
            || {
                // Listening, and the hosts file read once.
                let text = std::fs::read_to_string(&me.log).unwrap_or_default();
                if text.contains(&format!("read {}", me.hosts.display())) {
                    Ok(())
                } else {
                    Err(text)
                }
            },
            String::new,
        );
        me
    }

    fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the hosts file and makes dnsmasq re-read it.
    fn set_hosts(&self, text: &str) {
        let marker = format!("read {}", self.hosts.display());
        let reads = |text: &str| text.matches(&marker).count();
        let before = reads(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let mut f = std::fs::File::create(&self.hosts).expect("hosts file");
        f.write_all(text.as_bytes()).expect("write hosts");
        f.sync_all().expect("sync hosts");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP dnsmasq");
        wait_until(
            Duration::from_secs(10),
            "dnsmasq re-reads its hosts file",
            || {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                if reads(&text) > before {
                    Ok(())
                } else {
                    Err(text)
                }
            },
            String::new,
        );
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dnsmasq_missing() -> Option<String> {
    match Command::new("dnsmasq").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("dnsmasq --version failed: {:?}", out.status)),
        Err(e) => Some(format!("dnsmasq is not installed ({e})")),
    }
}

fn log_of(cluster: &Cluster, i: usize) -> String {
    std::fs::read_to_string(&cluster.agents[i].log).unwrap_or_default()
}

fn metric(cluster: &Cluster, i: usize, series: &str) -> f64 {
    cluster.agents[i]
        .metrics()
        .ok()
        .and_then(|t| metric_value(&t, series))
        .unwrap_or(-1.0)
}

#[test]
fn dns_seeds_follow_a_real_dns_server() {
    if let Some(why) = dnsmasq_missing() {
        eprintln!("SKIPPED dns_seeds_follow_a_real_dns_server: {why}; install dnsmasq-base");
        return;
    }
    let mut cluster = Cluster::new();
    let n1 = cluster.start("n1", &[]);
    let quic1: SocketAddr = cluster.agents[n1].quic;
    let port1 = quic1.port();
    let dns = Dnsmasq::start(
        cluster.dir(),
        &format!("_mesh._udp.mesh.test,n1.mesh.test,{port1}"),
    );
    // The SRV target's address is there from the start; seed.mesh.test is not.
    dns.set_hosts("127.0.0.1 n1.mesh.test\n");
    let server = dns.server();

    // NXDOMAIN: alone, one clear log line naming the seed and what to check, counted.
    let seed = format!("dns://seed.mesh.test:{port1}");
    cluster.agent_args(&["--seed", &seed, "--dns-server", &server]);
    let n2 = cluster.start("n2", &[]);
    let nx = r#"mesh_seed_resolve_failures_total{reason="nxdomain"}"#;
    cluster.wait_until(FOLLOW, "the NXDOMAIN is logged and counted", || {
        let log = log_of(&cluster, n2);
        let line = log
            .lines()
            .find(|l| l.contains("WARN") && l.contains(&seed) && l.contains("nxdomain"));
        match line {
            Some(l) if l.contains("check that seed.mesh.test has A or AAAA records") => {}
            Some(l) => return Err(format!("the line says nothing to check: {l}")),
            None => return Err("no warning naming the seed".into()),
        }
        let n = metric(&cluster, n2, nx);
        if n >= 1.0 {
            Ok(())
        } else {
            Err(format!("{nx} = {n}"))
        }
    });
    cluster
        .sees_alive(&[n2], &["n2"])
        .expect("alone with no record");
    assert_eq!(
        metric(&cluster, n2, "mesh_membership_joined"),
        0.0,
        "not ready"
    );

    // The record appears, pointing where nobody answers (127.0.0.3: the agents bind
    // 127.0.0.1 only): the agent takes it and stays alone.
    dns.set_hosts("127.0.0.1 n1.mesh.test\n127.0.0.3 seed.mesh.test\n");
    let dead = format!("resolves to 127.0.0.3:{port1}");
    cluster.wait_until(FOLLOW, "the appeared record is taken", || {
        if log_of(&cluster, n2).contains(&dead) {
            Ok(())
        } else {
            Err(format!("no {dead:?} line"))
        }
    });
    let failures = metric(&cluster, n2, nx);
    cluster
        .sees_alive(&[n2], &["n2"])
        .expect("nobody answers there");

    // The record changes to n1's address: still alone, the agent looks again, follows
    // it and joins.
    dns.set_hosts("127.0.0.1 n1.mesh.test\n127.0.0.1 seed.mesh.test\n");
    cluster.wait_until(FOLLOW, "n2 joins n1 through the changed record", || {
        cluster.sees_alive(&[n1, n2], &["n1", "n2"])
    });
    assert!(
        log_of(&cluster, n2).contains(&format!("resolves to {quic1}")),
        "the change is logged"
    );
    assert_eq!(
        metric(&cluster, n2, nx),
        failures,
        "answers that resolve are not failures"
    );

    // SRV, mixed with a static seed that answers nothing: the SRV record's target
    // and port bring n3 in.
    let nowhere = format!("127.0.0.1:{}", free_udp_port());
    cluster.agent_args(&[
        "--seed",
        &format!("{nowhere},dns+srv://_mesh._udp.mesh.test"),
        "--dns-server",
        &server,
    ]);
    let n3 = cluster.start("n3", &[]);
    cluster.wait_until(FOLLOW, "n3 joins through the SRV record", || {
        cluster.sees_alive(&[n1, n2, n3], &["n1", "n2", "n3"])
    });
    assert!(
        log_of(&cluster, n3).contains(&format!("resolves to {quic1}")),
        "{}",
        log_of(&cluster, n3)
    );
    assert_eq!(
        metric(
            &cluster,
            n3,
            r#"mesh_seed_resolve_failures_total{reason="no_records"}"#
        ),
        0.0
    );
}
