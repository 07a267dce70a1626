//! The examples in `mesh-agent/examples/`, run as real processes over real QUIC on
//! loopback.
//!
//! Each child process is this test binary run again with `MESH_EXAMPLE_CHILD` naming
//! the example and `MESH_EXAMPLE_ARGS` its command line (one argument a line): the
//! test [`child_process_entry_point`] then runs that example's `parse` and `run`, the
//! same code its `main` runs, and exits. The PEM comes in `MESH_CA_PEM`,
//! `MESH_CERT_PEM` and `MESH_KEY_PEM`, generated in memory here. The test reads each
//! child's stdout lines and waits on them with deadlines; children are killed when
//! dropped, also when a test panics.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mesh_agent::runtime::{Agent, StartError, Tls};
use mesh_transport::certs::{generate_ca, issue_node_cert, CertPair};
use mesh_transport::tls::TlsError;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/worker.rs"]
mod worker;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/singleton.rs"]
mod singleton;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/strong_name.rs"]
mod strong_name;

const CHILD_ENV: &str = "MESH_EXAMPLE_CHILD";
const ARGS_ENV: &str = "MESH_EXAMPLE_ARGS";

/// Not a test of its own: the body of a child process (see the module docs). Without
/// `MESH_EXAMPLE_CHILD` it does nothing.
#[test]
fn child_process_entry_point() {
    let Ok(which) = std::env::var(CHILD_ENV) else {
        return;
    };
    // Never outlive the test that started this child (if it is killed, its Drop that
    // kills children does not run).
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(2);
        }
    });
    // libtest printed "test child_process_entry_point ... " with no newline: end that
    // line, so the example's lines start lines of their own.
    println!();
    let args: Vec<String> = std::env::var(ARGS_ENV)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async move {
        match which.as_str() {
            "worker" => worker::run(worker::parse(args)?).await,
            "singleton" => singleton::run(singleton::parse(args)?).await,
            "strong_name" => strong_name::run(strong_name::parse(args)?).await,
            other => Err(format!("no example {other:?}").into()),
        }
    });
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Process tests run one at a time: a 2-core machine starved by three clusters at
/// once would see false suspicions.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A cluster CA and certificates issued by it, all in memory.
struct Pki {
    ca: CertPair,
}

impl Pki {
    fn new() -> Self {
        Self {
            ca: generate_ca("examples").expect("a CA"),
        }
    }

    fn node(&self, name: &str) -> CertPair {
        issue_node_cert(&self.ca, name).expect("a node certificate")
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port on loopback")
}

/// One example running as a child process.
struct Child {
    name: String,
    process: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Child {
    /// Runs `example` with `args`, TLS PEM `ca`, `cert`, `key` in its environment.
    fn spawn(name: &str, example: &str, args: &[String], ca: &str, cert: &str, key: &str) -> Self {
        let exe = std::env::current_exe().expect("the test executable");
        let mut process = Command::new(exe)
            .args([
                "--exact",
                "child_process_entry_point",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, example)
            .env(ARGS_ENV, args.join("\n"))
            .env("MESH_CA_PEM", ca)
            .env("MESH_CERT_PEM", cert)
            .env("MESH_KEY_PEM", key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a child");
        let stdout = process.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = process.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_str(&text);
            }
        });
        Self {
            name: name.to_owned(),
            process,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Takes in whatever the child printed since the last look.
    fn poll(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// The first line seen so far that starts with `prefix`.
    fn line(&mut self, prefix: &str) -> Option<String> {
        self.poll();
        self.seen.iter().find(|l| l.starts_with(prefix)).cloned()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Waits for the child to exit, at most `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.process.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What every child printed, for a failure message.
fn context(children: &mut [&mut Child]) -> String {
    let mut out = String::new();
    for c in children.iter_mut() {
        c.poll();
        out.push_str(&format!(
            "--- {} stdout:\n{}\n--- {} stderr (tail):\n{}\n",
            c.name,
            c.seen.join("\n"),
            c.name,
            tail(&c.stderr(), 20)
        ));
    }
    out
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `probe` over the children every 50 ms until it returns `Some`; panics with
/// what every child printed after `timeout`.
fn wait_for<T>(
    children: &mut [&mut Child],
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut(&mut [&mut Child]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe(children) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting until {what}\n{}",
                context(children)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

// ---- sockets of a process, from /proc ---------------------------------------------

/// The inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let dir = format!("/proc/{pid}/fd");
    let mut out = HashSet::new();
    for entry in std::fs::read_dir(&dir)
        .expect("read /proc/PID/fd")
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse().ok())
            {
                out.insert(inode);
            }
        }
    }
    out
}

/// Rows of `/proc/net/<table>` (and its IPv6 twin) owned by `inodes`: (local port,
/// state).
fn sockets_in(table: &str, inodes: &HashSet<u64>) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for file in [format!("/proc/net/{table}"), format!("/proc/net/{table}6")] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            if !inodes.contains(&inode) {
                continue;
            }
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                .unwrap_or(0);
            out.push((port, (*state).to_owned()));
        }
    }
    out
}

/// Local ports on which process `pid` has a TCP socket listening (state `0A`).
fn tcp_listen_ports(pid: u32) -> Vec<u16> {
    sockets_in("tcp", &socket_inodes(pid))
        .into_iter()
        .filter(|(_, state)| state == "0A")
        .map(|(port, _)| port)
        .collect()
}

/// Local ports of process `pid`'s UDP sockets.
fn udp_ports(pid: u32) -> Vec<u16> {
    sockets_in("udp", &socket_inodes(pid))
        .into_iter()
        .map(|(port, _)| port)
        .collect()
}

// ---- the tests ----------------------------------------------------------------------

#[test]
fn the_socket_checker_sees_a_tcp_listener_and_a_udp_socket_of_this_process() {
    // The negative control of the no-admin check below: a listener that exists is seen.
    let me = std::process::id();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = listener.local_addr().expect("addr").port();
    assert!(
        tcp_listen_ports(me).contains(&port),
        "listener on {port} not seen"
    );
    let udp = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    let uport = udp.local_addr().expect("addr").port();
    assert!(
        udp_ports(me).contains(&uport),
        "UDP socket on {uport} not seen"
    );
    drop(listener);
    assert!(
        !tcp_listen_ports(me).contains(&port),
        "a closed listener still seen"
    );
}

#[test]
fn the_worker_answers_a_message_and_listens_on_no_tcp_port() {
    let _serial = exclusive();
    let pki = Pki::new();
    let (w1, c1) = (pki.node("w1"), pki.node("c1"));
    let (wport, cport) = (free_udp_port(), free_udp_port());
    let wbind = format!("127.0.0.1:{wport}");
    let mut worker = Child::spawn(
        "w1",
        "worker",
        &args(&["serve", "--name", "w1", "--bind", &wbind]),
        &pki.ca.cert_pem,
        &w1.cert_pem,
        &w1.key_pem,
    );
    wait_for(
        &mut [&mut worker],
        Duration::from_secs(30),
        "w1 is ready",
        |c| c[0].line("ready w1 "),
    );

    // No admin API: the worker's process has its QUIC socket and no TCP listener at all.
    assert!(
        udp_ports(worker.pid()).contains(&wport),
        "the worker's QUIC socket on {wport} is not among its sockets: {:?}",
        udp_ports(worker.pid())
    );
    assert_eq!(
        tcp_listen_ports(worker.pid()),
        Vec::<u16>::new(),
        "an agent started with no_admin listens on TCP"
    );

    let mut asker = Child::spawn(
        "c1",
        "worker",
        &args(&[
            "ask",
            "--name",
            "c1",
            "--bind",
            &format!("127.0.0.1:{cport}"),
            "--seed",
            &wbind,
        ]),
        &pki.ca.cert_pem,
        &c1.cert_pem,
        &c1.key_pem,
    );
    let answer = wait_for(
        &mut [&mut asker, &mut worker],
        Duration::from_secs(60),
        "c1 prints the worker's answer",
        |c| c[0].line("answer "),
    );
    assert_eq!(answer, "answer echo: hello from c1");
    let status = asker.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "the asker did not exit cleanly: {status:?}\n{}",
        asker.stderr()
    );
    let answered = wait_for(
        &mut [&mut worker],
        Duration::from_secs(10),
        "w1 says it answered",
        |c| c[0].line("answered "),
    );
    assert_eq!(answered, "answered 13 bytes");
    worker.kill();
}

#[test]
fn bad_pem_is_refused_with_a_clear_error_and_nothing_starts() {
    let _serial = exclusive();
    let pki = Pki::new();
    let n1 = pki.node("n1");
    let port = free_udp_port();

    // As a process: the example exits with the TLS error and never gets ready.
    let mut child = Child::spawn(
        "n1",
        "worker",
        &args(&[
            "serve",
            "--name",
            "n1",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ]),
        &pki.ca.cert_pem,
        "this is not PEM",
        &n1.key_pem,
    );
    let status = child.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a bad certificate did not make the example fail: {status:?}"
    );
    child.poll();
    assert!(child.line("ready").is_none(), "{:?}", child.seen);
    assert!(
        child
            .stderr()
            .contains("error: tls: no certificate found in certificate PEM"),
        "{}",
        child.stderr()
    );

    // In this process: the start fails before anything binds, for a garbage
    // certificate and for another node's key.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let other = pki.node("n2");
    let bind: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let admin_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let pem = |cert: &str, key: &str| Tls::Pem {
        ca: pki.ca.cert_pem.clone().into_bytes(),
        cert: cert.as_bytes().to_vec(),
        key: key.as_bytes().to_vec(),
    };
    let start =
        |tls: Tls| runtime.block_on(Agent::builder("n1", tls).bind(bind).admin(admin).start());
    let err = start(pem(
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        &n1.key_pem,
    ))
    .expect_err("garbage certificate accepted");
    assert!(
        matches!(err, StartError::Tls(TlsError::Pem { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("tls: malformed PEM in certificate PEM"),
        "{err}"
    );
    let err = start(pem(&n1.cert_pem, &other.key_pem)).expect_err("another node's key accepted");
    assert!(
        matches!(err, StartError::Tls(TlsError::KeyMismatch { .. })),
        "{err}"
    );
    // Nothing was bound: both ports are still free.
    drop(UdpSocket::bind(bind).expect("the QUIC port is still free"));
    drop(TcpListener::bind(admin).expect("the admin port is still free"));

    // Control: the same start with the right PEM binds both.
    let handle = start(pem(&n1.cert_pem, &n1.key_pem)).expect("good PEM starts");
    assert_eq!(handle.admin_api(), Some(admin));
    assert!(
        UdpSocket::bind(bind).is_err(),
        "a started agent holds its QUIC port"
    );
    assert!(
        TcpListener::bind(admin).is_err(),
        "a started agent holds its admin port"
    );
    runtime.block_on(handle.leave(Duration::from_secs(2)));
}

#[test]
fn the_singleton_fails_over_within_the_bound_to_a_larger_fencing_token() {
    let _serial = exclusive();
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let fence = dir.path().join("work.log");
    let names = ["s1", "s2", "s3"];
    let ports: Vec<u16> = names.iter().map(|_| free_udp_port()).collect();
    let seed = format!("127.0.0.1:{}", ports[0]);
    let mut children: Vec<Child> = names
        .iter()
        .zip(&ports)
        .map(|(name, port)| {
            let pair = pki.node(name);
            let data = dir.path().join(name);
            let mut a = args(&[
                "--name",
                name,
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--voters",
                "s1,s2,s3",
                "--data-dir",
                &data.to_string_lossy(),
                "--fence",
                &fence.to_string_lossy(),
                "--ttl-ms",
                "2000",
            ]);
            if *name != "s1" {
                a.extend(args(&["--seed", &seed]));
            }
            Child::spawn(
                name,
                "singleton",
                &a,
                &pki.ca.cert_pem,
                &pair.cert_pem,
                &pair.key_pem,
            )
        })
        .collect();

    let leader_of =
        |c: &mut Child| -> Option<u64> { c.line("leader ")?.rsplit("token=").next()?.parse().ok() };
    let mut refs: Vec<&mut Child> = children.iter_mut().collect();
    let (first, t1) = wait_for(
        &mut refs,
        Duration::from_secs(90),
        "one singleton leads",
        |c| {
            c.iter_mut()
                .enumerate()
                .find_map(|(i, c)| leader_of(c).map(|t| (i, t)))
        },
    );
    let work = format!("work token={t1} step=2");
    wait_for(
        &mut refs,
        Duration::from_secs(30),
        "the leader works",
        |c| c[first].line(&work),
    );
    // One leader at a time: the others stand by.
    for (i, c) in refs.iter_mut().enumerate() {
        if i != first {
            assert_eq!(leader_of(c), None, "two leaders at once");
        }
    }

    refs[first].kill();
    let killed = Instant::now();
    let (second, t2) = wait_for(
        &mut refs,
        Duration::from_secs(90),
        "another singleton takes over",
        |c| {
            c.iter_mut()
                .enumerate()
                .filter(|(i, _)| *i != first)
                .find_map(|(i, c)| leader_of(c).map(|t| (i, t)))
        },
    );
    assert!(
        t2 > t1,
        "the new leader's token {t2} is not larger than {t1}"
    );
    let took = killed.elapsed();
    println!("leader {first} token {t1}, killed; leader {second} token {t2} after {took:?}");
    // TTL·(1+ρ) + SWIM detection (local profile, ~2 s) + a forward timeout (the dead
    // leader was a voter, maybe the shard's proposer) + one commit + the campaign
    // backoff's cap (TTL/4), with room for two shared cores.
    let ttl = Duration::from_secs(2);
    let bound = ttl.mul_f64(1.001)
        + Duration::from_secs(2)
        + Duration::from_millis(1500)
        + Duration::from_millis(500)
        + ttl / 4
        + Duration::from_secs(4);
    assert!(took <= bound, "took over after {took:?} (bound {bound:?})");
    let work = format!("work token={t2} step=1");
    wait_for(
        &mut refs,
        Duration::from_secs(30),
        "the new leader works",
        |c| c[second].line(&work),
    );

    // The fenced resource saw the first leader's steps, then only the second's.
    let written = std::fs::read_to_string(&fence).expect("the fence file");
    let tokens: Vec<u64> = written
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] <= w[1]),
        "tokens went back: {tokens:?}"
    );
    assert!(tokens.contains(&t1) && tokens.contains(&t2), "{tokens:?}");

    // Negative control: the fence refuses the old leader's token now.
    let check = singleton::Fence::new(fence.clone());
    assert!(
        !check.write(t1, 999).expect("write"),
        "a stale token was accepted"
    );
    assert!(!std::fs::read_to_string(&fence)
        .expect("read")
        .contains(" 999"));
    assert!(
        check.write(t2, 1000).expect("write"),
        "the current token was refused"
    );
    drop(refs);
    for c in &mut children {
        c.kill();
    }
}

#[test]
fn a_client_reaches_the_strong_name_service_by_name() {
    let _serial = exclusive();
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = ["a", "b", "c"];
    let ports: Vec<u16> = (0..4).map(|_| free_udp_port()).collect();
    let seed = format!("127.0.0.1:{}", ports[0]);
    let mut children: Vec<Child> = Vec::new();
    for (i, name) in servers.iter().enumerate() {
        let pair = pki.node(name);
        let mut a = args(&[
            "serve",
            "--name",
            name,
            "--bind",
            &format!("127.0.0.1:{}", ports[i]),
            "--voters",
            "a,b,c",
            "--data-dir",
            &dir.path().join(name).to_string_lossy(),
        ]);
        if i > 0 {
            a.extend(args(&["--seed", &seed]));
        }
        children.push(Child::spawn(
            name,
            "strong_name",
            &a,
            &pki.ca.cert_pem,
            &pair.cert_pem,
            &pair.key_pem,
        ));
    }
    let d = pki.node("d");
    children.push(Child::spawn(
        "d",
        "strong_name",
        &args(&[
            "ask",
            "--name",
            "d",
            "--bind",
            &format!("127.0.0.1:{}", ports[3]),
            "--voters",
            "a,b,c",
            "--seed",
            &seed,
        ]),
        &pki.ca.cert_pem,
        &d.cert_pem,
        &d.key_pem,
    ));
    let mut refs: Vec<&mut Child> = children.iter_mut().collect();
    let server = wait_for(
        &mut refs,
        Duration::from_secs(90),
        "one server holds the name",
        |c| {
            c[..3]
                .iter_mut()
                .find_map(|c| c.line("serving billing on ").map(|_| c.name.clone()))
        },
    );
    let answer = wait_for(
        &mut refs,
        Duration::from_secs(90),
        "d gets an answer",
        |c| c[3].line("answer "),
    );
    assert_eq!(answer, format!("answer billing@{server}: hello from d"));
    // The name has one owner: the other servers stand by.
    let serving = refs[..3]
        .iter_mut()
        .filter_map(|c| c.line("serving "))
        .count();
    assert_eq!(serving, 1, "more than one server holds the strong name");
    drop(refs);
    for c in &mut children {
        c.kill();
    }
}

#[test]
fn the_readme_shows_the_worker_example_verbatim() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples/worker.rs")).expect("worker.rs");
    let readme = std::fs::read_to_string(root.join("../README.md")).expect("README.md");
    let block = readme_block(&readme, "<!-- example: mesh-agent/examples/worker.rs -->")
        .expect("README has the worker example block after its marker");
    assert!(
        block == example,
        "README's worker block differs from mesh-agent/examples/worker.rs; copy the file into the block"
    );
    // Negative control: the block finder does not accept a changed copy.
    let changed = readme.replacen("run(parse(", "run(parse2(", 1);
    assert_ne!(
        readme_block(&changed, "<!-- example: mesh-agent/examples/worker.rs -->"),
        Some(example)
    );
}

/// The fenced ```rust block right after `marker`.
fn readme_block(readme: &str, marker: &str) -> Option<String> {
    let after = &readme[readme.find(marker)? + marker.len()..];
    let body = after.trim_start().strip_prefix("```rust\n")?;
    let end = body.find("\n```\n")?;
    Some(format!("{}\n", &body[..end]))
}

/// E1 in the shell, in this process: `run_while_leader` cancels (drops) the leader's work
/// before its validity ends. Four agents (voters v1..v3, candidate c1, TTL 2 s); c1
/// leads election `w`; two voters leave, so c1's renews can no longer be acknowledged
/// and its validity runs out. The work's future must have been dropped, and before the
/// last validity end c1's agent reported for the claim (`AgentHandle::validity`,
/// polled); a work that outlived it fails the test.
#[test]
fn run_while_leader_cancels_the_work_before_the_leaders_validity_ends() {
    use mesh_core::membership::Profile;
    let _serial = exclusive();
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let names = ["v1", "v2", "v3", "c1"];
        let ports: Vec<u16> = names.iter().map(|_| free_udp_port()).collect();
        let seed: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().expect("addr");
        let mut agents = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let pair = pki.node(name);
            let tls = Tls::Pem {
                ca: pki.ca.cert_pem.clone().into_bytes(),
                cert: pair.cert_pem.into_bytes(),
                key: pair.key_pem.into_bytes(),
            };
            let bind: SocketAddr = format!("127.0.0.1:{}", ports[i]).parse().expect("addr");
            let mut b = Agent::builder(*name, tls)
                .bind(bind)
                .voters(["v1", "v2", "v3"])
                .data_dir(dir.path().join(name))
                .claims_ttl(Duration::from_secs(2))
                .profile(Profile::Local)
                .no_admin();
            if i > 0 {
                b = b.seeds([seed]);
            }
            agents.push(b.start().await.expect("agent starts"));
        }
        let c1 = agents[3].clone();
        let cancelled: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (tx, mut tokens) = tokio::sync::mpsc::unbounded_channel();
        struct Guard(Arc<Mutex<Option<Instant>>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                let mut at = self
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                at.get_or_insert_with(Instant::now);
            }
        }
        let seen = Arc::clone(&cancelled);
        let run = tokio::spawn({
            let c1 = c1.clone();
            async move {
                c1.run_while_leader("w", move |token| {
                    let guard = Guard(Arc::clone(&seen));
                    let _ = tx.send(token);
                    async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                    }
                })
                .await
            }
        });
        let token = tokio::time::timeout(Duration::from_secs(90), tokens.recv())
            .await
            .expect("c1 leads within 90 s")
            .expect("a token");
        // The validity c1's agent reports, polled until it is gone.
        let mut last_end = None;
        let mut poll_validity = |v: Option<(u64, Instant)>| {
            if let Some((t, end)) = v {
                assert_eq!(t, token, "the leader's claim carries its token");
                last_end = Some(end);
            }
        };
        poll_validity(c1.validity("elect/w").await.expect("agent runs"));
        for v in [&agents[1], &agents[2]] {
            v.leave(Duration::from_secs(1)).await;
        }
        let stopped_voters = Instant::now();
        while cancelled.lock().expect("lock").is_none() {
            assert!(
                stopped_voters.elapsed() < Duration::from_secs(10),
                "the work was never cancelled"
            );
            poll_validity(c1.validity("elect/w").await.expect("agent runs"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let at = cancelled.lock().expect("lock").expect("cancelled");
        let end = last_end.expect("a validity was seen");
        assert!(
            at < end,
            "the work was cancelled {:?} after its validity ended",
            at - end
        );
        assert!(
            tokens.try_recv().is_err(),
            "no second term without a quorum"
        );
        run.abort();
        for a in [&agents[0], &agents[3]] {
            a.leave(Duration::from_secs(1)).await;
        }
    });
}
