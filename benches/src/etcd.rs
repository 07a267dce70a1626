//! The etcd side of `claims-bench`: a 3-member etcd cluster on loopback (Debian's
//! `etcd-server`, data directories on the same disk as mesh's, WAL fsync on as by
//! default), driven through etcd's HTTP/JSON gateway (`/v3/...`, keep-alive HTTP/1.1
//! connections) so that no process start-up is measured.
//!
//! The equivalent of a mesh claim, as etcd's own `concurrency` package does it: a
//! client holds a **lease** (its session, `POST /v3/lease/grant`, kept alive) and claims
//! a key with a **transaction** `if create_revision(key) == 0 then put(key, lease)`
//! (`POST /v3/kv/txn`); a release deletes the key (`POST /v3/kv/deleterange`). A strong
//! name is the same transaction without a lease. All requests go to the leader (found
//! with `POST /v3/maintenance/status`), the best case for etcd: a follower forwards
//! writes to the leader.
//!
//! Failover: the holder is a real etcd client process, `etcdctl lease keep-alive`,
//! keeping alive the lease its key was put with; it is killed with `SIGKILL` and the
//! retrier's transaction, tried every period, succeeds once the leader has expired the
//! lease. etcd enforces a minimum lease TTL (it raises shorter requests); the granted
//! TTL is what [`EtcdClient::grant`] returns and what the tables print.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::claims::{ErrorCounts, FailoverRun, LatencyRun, LatencySummary, WindowRun};
use crate::cleanup::{ChildGuard, ScratchDir};
use crate::ports::free_ports;

/// Standard base64 (with padding), as etcd's JSON gateway wants keys and values.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An int64 of the gateway's JSON, which writes them as strings.
fn int64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A client of one member's JSON gateway (one keep-alive connection).
#[derive(Debug, Clone)]
pub struct EtcdClient {
    http: ureq::Agent,
    base: String,
}

impl EtcdClient {
    /// A client of the member at `url` (`http://127.0.0.1:port`).
    pub fn new(url: &str) -> Self {
        Self {
            http: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            base: url.to_owned(),
        }
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .http
            .post(&url)
            .send_json(body)
            .with_context(|| format!("POST {url}"))?;
        let value: Value = response
            .body_mut()
            .read_json()
            .with_context(|| format!("reading the answer of {url}"))?;
        if let Some(error) = value.get("error").or_else(|| value.get("message")) {
            bail!("POST {url}: {error}");
        }
        Ok(value)
    }

    /// Grants a lease of `ttl` seconds: its id and the TTL etcd granted.
    pub fn grant(&self, ttl: i64) -> Result<(i64, i64)> {
        let v = self.post("/v3/lease/grant", &json!({ "TTL": ttl }))?;
        let id = v.get("ID").and_then(int64).context("lease grant: no ID")?;
        let granted = v
            .get("TTL")
            .and_then(int64)
            .context("lease grant: no TTL")?;
        Ok((id, granted))
    }

    /// Revokes a lease (and deletes its keys).
    pub fn revoke(&self, id: i64) -> Result<()> {
        self.post("/v3/lease/revoke", &json!({ "ID": id.to_string() }))?;
        Ok(())
    }

    /// `if create_revision(key) == 0 then put(key, lease)`: whether it was created.
    pub fn create(&self, key: &str, lease: Option<i64>) -> Result<bool> {
        let mut put = json!({ "key": base64(key.as_bytes()), "value": base64(b"claimed") });
        if let Some(lease) = lease {
            put["lease"] = json!(lease.to_string());
        }
        let txn = json!({
            "compare": [{
                "key": base64(key.as_bytes()),
                "result": "EQUAL",
                "target": "CREATE",
                "create_revision": "0"
            }],
            "success": [{ "request_put": put }]
        });
        let v = self.post("/v3/kv/txn", &txn)?;
        // proto3 JSON leaves out a false `succeeded`.
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.post(
            "/v3/kv/deleterange",
            &json!({ "key": base64(key.as_bytes()) }),
        )?;
        Ok(())
    }

    /// `(member id, leader id)` as this member reports them.
    pub fn status(&self) -> Result<(u64, u64)> {
        let v = self.post("/v3/maintenance/status", &json!({}))?;
        let id = |v: Option<&Value>| -> Option<u64> {
            match v? {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            }
        };
        let member =
            id(v.get("header").and_then(|h| h.get("member_id"))).context("status: no member id")?;
        let leader = id(v.get("leader")).context("status: no leader")?;
        Ok((member, leader))
    }
}

/// A running 3-member etcd cluster.
pub struct EtcdCluster {
    dir: ScratchDir,
    members: Vec<ChildGuard>,
    /// Client URLs, one per member.
    urls: Vec<String>,
    /// Index of the leader (when last asked).
    leader: usize,
    etcdctl: PathBuf,
}

impl EtcdCluster {
    /// Starts `etcd` × 3 with data directories under `parent` and waits until every
    /// member answers and a leader is elected.
    pub fn start(
        etcd: &Path,
        etcdctl: &Path,
        parent: &Path,
        keep_files: bool,
        salt: u64,
    ) -> Result<Self> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let mut dir = ScratchDir::new_in(parent, "meshbench-etcd-")?;
        if keep_files {
            dir.keep();
        }
        let ports = free_ports(6, salt ^ 0x65746364)?;
        let url = |port: u16| format!("http://{}", SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        let names: Vec<String> = (1..=3).map(|i| format!("e{i}")).collect();
        let initial: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}={}", url(ports[2 * i + 1])))
            .collect();
        let mut members = Vec::new();
        let mut urls = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let (client, peer) = (url(ports[2 * i]), url(ports[2 * i + 1]));
            let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
            let mut cmd = Command::new(etcd);
            cmd.args(["--name", name])
                .arg("--data-dir")
                .arg(dir.path().join(name))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("meshbench-{salt:x}")])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            members.push(ChildGuard::spawn(&mut cmd)?);
            urls.push(client);
        }
        let mut cluster = Self {
            dir,
            members,
            urls,
            leader: 0,
            etcdctl: etcdctl.to_owned(),
        };
        cluster.wait_leader(Duration::from_secs(60))?;
        Ok(cluster)
    }

    fn wait_leader(&mut self, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        let mut last = anyhow!("not asked yet");
        while t0.elapsed() < timeout {
            for (i, m) in self.members.iter_mut().enumerate() {
                if let Some(status) = m.exit_status()? {
                    bail!(
                        "etcd member e{} exited ({status}); log in {}",
                        i + 1,
                        self.dir.path().display()
                    );
                }
            }
            let mut ids = Vec::new();
            for url in &self.urls {
                match EtcdClient::new(url).status() {
                    Ok(s) => ids.push(s),
                    Err(e) => last = e,
                }
            }
            if ids.len() == self.urls.len() && ids[0].1 != 0 {
                if let Some(i) = ids.iter().position(|(member, _)| *member == ids[0].1) {
                    self.leader = i;
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "etcd has no leader after {:.0} s: {last:#} (logs in {})",
            timeout.as_secs_f64(),
            self.dir.path().display()
        )
    }

    /// The leader's client URL.
    pub fn leader_url(&self) -> &str {
        &self.urls[self.leader]
    }

    /// The leader's name (`e1`..`e3`).
    pub fn leader_name(&self) -> String {
        format!("e{}", self.leader + 1)
    }

    /// A client of the leader.
    pub fn client(&self) -> EtcdClient {
        EtcdClient::new(self.leader_url())
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `etcdctl lease keep-alive` for `lease` (the holder process) and waits for
    /// its first keep-alive answer.
    pub fn keep_alive(&self, lease: i64) -> Result<ChildGuard> {
        let mut cmd = Command::new(&self.etcdctl);
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", self.leader_url()])
            .args(["lease", "keep-alive", &format!("{lease:x}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = ChildGuard::spawn(&mut cmd)?;
        let (_, stdout) = child.take_pipes();
        let stdout = stdout.context("etcdctl: no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.contains("keepalived") => Ok(child),
            Ok(line) => bail!("etcdctl lease keep-alive said {line:?}"),
            Err(_) => bail!("etcdctl lease keep-alive said nothing within 10 s"),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn count(errors: &mut ErrorCounts, e: &anyhow::Error) {
    // The first words of the error, without the request's URL and key.
    let text = format!("{e:#}");
    let kind = if text.contains("timed out") || text.contains("Timeout") {
        "timeout".to_owned()
    } else if let Some(i) = text.find(": ") {
        text[i + 2..].chars().take(60).collect()
    } else {
        text.chars().take(60).collect()
    };
    *errors.entry(kind).or_default() += 1;
}

/// What an etcd latency run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdOp {
    /// The claim transaction with the client's session lease (granted once).
    ClaimWithSession,
    /// A lease grant, then the claim transaction with that lease.
    GrantAndClaim,
    /// The create-if-absent transaction without a lease (a strong name).
    StrongName,
}

/// `ops` operations of kind `op`, one at a time, on the leader; each key is deleted
/// (and, for [`EtcdOp::GrantAndClaim`], its lease revoked) afterwards, untimed.
pub fn latency(cluster: &EtcdCluster, op: EtcdOp, ops: usize, salt: u64) -> Result<LatencyRun> {
    let client = cluster.client();
    let session = match op {
        EtcdOp::ClaimWithSession => Some(client.grant(60)?.0),
        _ => None,
    };
    let mut run = LatencyRun::default();
    for i in 0..ops {
        let key = format!("lat-{salt:x}-{op:?}-{i}");
        let t0 = Instant::now();
        let done = match op {
            EtcdOp::ClaimWithSession => client.create(&key, session).map(|ok| (ok, None)),
            EtcdOp::GrantAndClaim => client
                .grant(60)
                .and_then(|(lease, _)| Ok((client.create(&key, Some(lease))?, Some(lease)))),
            EtcdOp::StrongName => client.create(&key, None).map(|ok| (ok, None)),
        };
        let took = t0.elapsed();
        match done {
            Ok((true, lease)) => {
                run.acquire.push(micros(took));
                let t1 = Instant::now();
                match client.delete(&key) {
                    Ok(()) => run.release.push(micros(t1.elapsed())),
                    Err(e) => count(&mut run.errors, &e),
                }
                if let Some(lease) = lease {
                    client.revoke(lease)?;
                }
            }
            Ok((false, _)) => *run.errors.entry("key exists".to_owned()).or_default() += 1,
            Err(e) => count(&mut run.errors, &e),
        }
    }
    if let Some(lease) = session {
        client.revoke(lease)?;
    }
    Ok(run)
}

/// `clients` threads, each with its own connection and session lease, claiming and
/// deleting fresh keys for `window`.
pub fn window(
    cluster: &EtcdCluster,
    clients: usize,
    window: Duration,
    salt: u64,
) -> Result<WindowRun> {
    let url = cluster.leader_url().to_owned();
    let t0 = Instant::now() + Duration::from_millis(200);
    let deadline = t0 + window;
    let results: Vec<Result<(Vec<u64>, ErrorCounts)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let url = url.clone();
                scope.spawn(move || -> Result<(Vec<u64>, ErrorCounts)> {
                    let client = EtcdClient::new(&url);
                    let (lease, _) = client.grant(60)?;
                    let mut latencies = Vec::new();
                    let mut errors = ErrorCounts::new();
                    // Every client starts at t0, its lease in hand.
                    std::thread::sleep(t0.saturating_duration_since(Instant::now()));
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let key = format!("tp-{salt:x}-{c}-{i}");
                        i += 1;
                        let start = Instant::now();
                        match client.create(&key, Some(lease)) {
                            Ok(true) => {
                                let at = Instant::now();
                                if at <= deadline {
                                    latencies.push(micros(at - start));
                                }
                                if let Err(e) = client.delete(&key) {
                                    count(&mut errors, &e);
                                }
                            }
                            Ok(false) => *errors.entry("key exists".to_owned()).or_default() += 1,
                            Err(e) => count(&mut errors, &e),
                        }
                    }
                    let _ = client.revoke(lease);
                    Ok((latencies, errors))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let mut run = WindowRun {
        elapsed: window,
        ..WindowRun::default()
    };
    let mut latencies = Vec::new();
    for r in results {
        let (l, e) = r?;
        latencies.extend(l);
        for (k, v) in e {
            *run.errors.entry(k).or_default() += v;
        }
    }
    run.claims = latencies.len() as u64;
    run.latency = LatencySummary::of(&latencies);
    Ok(run)
}

/// One failover run: a lease of `ttl` seconds (etcd may raise it: the granted TTL is
/// returned), a key put with it, `etcdctl lease keep-alive` as the holder; the holder
/// is killed and the retrier's transaction tried every `every` until it succeeds.
pub fn failover(
    cluster: &EtcdCluster,
    key: &str,
    ttl: i64,
    every: Duration,
    timeout: Duration,
) -> Result<(FailoverRun, i64)> {
    let client = cluster.client();
    let (lease, granted) = client.grant(ttl)?;
    if !client.create(key, Some(lease))? {
        bail!("failover key {key} exists already");
    }
    let mut holder = cluster.keep_alive(lease)?;
    let retrier = cluster.client();
    if retrier.create(key, None)? {
        bail!("the retrier claimed {key} while its lease was alive");
    }
    let mut run = FailoverRun {
        attempts: 1,
        ..FailoverRun::default()
    };
    *run.errors.entry("key exists".to_owned()).or_default() += 1;
    let killed = Instant::now();
    holder.kill()?;
    loop {
        let attempt = Instant::now();
        run.attempts += 1;
        match retrier.create(key, None) {
            Ok(true) => {
                run.took = Some(killed.elapsed());
                break;
            }
            Ok(false) => *run.errors.entry("key exists".to_owned()).or_default() += 1,
            Err(e) => count(&mut run.errors, &e),
        }
        if killed.elapsed() > timeout {
            break;
        }
        std::thread::sleep(every.saturating_sub(attempt.elapsed()));
    }
    client.delete(key)?;
    Ok((run, granted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn gateway_int64s_are_read_from_strings_and_numbers() {
        assert_eq!(
            int64(&json!("7587869413563912203")),
            Some(7_587_869_413_563_912_203)
        );
        assert_eq!(int64(&json!(2)), Some(2));
        assert_eq!(int64(&json!("two")), None);
        assert_eq!(int64(&json!(null)), None);
    }
}
