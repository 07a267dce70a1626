//! The membership scenarios, run against one system at one cluster size:
//!
//! 1. **convergence** — start N agents at once (all joining through `n1`); t0 is taken
//!    just before the first spawn; the sample is the time until every agent reports
//!    all N alive. Each run uses a fresh cluster.
//! 2. **idle cost** — in the last converged cluster, after a settle pause: RSS of every
//!    agent, then bytes sent over an idle window (nftables counters on the agents'
//!    ports; for mesh also its own `mesh_transport_bytes_total{direction="out"}`).
//! 3. **detection** — in that cluster, `SIGKILL` a random non-seed agent; t0 is the
//!    kill; the sample is the time until every other agent reports it down (serf:
//!    `failed`). The victim is then restarted and the cluster must reconverge before
//!    the next run. Any *other* member seen down meanwhile is a false down.
//!
//! Polling: each agent's own view is asked for every `poll_period` (HTTP for mesh,
//! serf RPC for serf), only agents not yet done are polled, and an agent's time is the
//! moment its answer arrived. Every wait has a deadline and, when it passes, reports
//! which agents were not done and what they saw. No idle-window polling happens.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cluster::{describe_missing, Cluster, ClusterOptions, Status, SystemKind, View};
use crate::nft::{Counts, NftCounters};
use crate::stats::SplitMix64;

/// Knobs shared by every scenario.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Convergence runs and detection runs per system and size.
    pub runs: usize,
    /// Deadline of every wait.
    pub timeout: Duration,
    /// Time between two polls of the same agent.
    pub poll_period: Duration,
    /// Pause between convergence and the idle measurements.
    pub settle: Duration,
    /// Length of the idle window.
    pub idle_window: Duration,
    /// Why nft counters cannot be used, if so.
    pub nft_unavailable: Option<String>,
}

/// Bytes sent over the idle window.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Measured length of the window.
    pub window: Duration,
    /// nftables totals over the window (all agents), or why there are none.
    pub nft: Result<Counts, String>,
    /// mesh only: per-agent delta of `mesh_transport_bytes_total{direction="out"}`.
    pub metric_out: Option<Result<Vec<f64>, String>>,
}

/// Everything measured for one system at one size.
#[derive(Debug, Clone, Default)]
pub struct SystemResult {
    /// Convergence times of the runs that converged, seconds.
    pub convergence: Vec<f64>,
    /// Per run: time until every agent had answered a poll at all (process start-up
    /// and listener binding), seconds.
    pub all_answering: Vec<f64>,
    /// Runs that did not converge, with what was missing.
    pub convergence_errors: Vec<String>,
    /// Detection times, seconds.
    pub detection: Vec<f64>,
    /// Detection runs that failed (not detected, or no reconvergence after restart).
    pub detection_errors: Vec<String>,
    /// Live members seen down during detection runs (incl. reconvergence):
    /// `run k: OBSERVER saw SUBJECT down`.
    pub false_downs: Vec<String>,
    /// Distinct (run, observer, subject) where a live member was seen `suspect`
    /// (mesh only: serf does not show suspicion).
    pub false_suspects: usize,
    /// Members seen down while a fresh cluster converged.
    pub downs_while_converging: Vec<String>,
    /// Idle bytes, if measured.
    pub idle: Option<Idle>,
    /// RSS of each agent after convergence, bytes.
    pub rss: Vec<u64>,
    /// Set when the system could not be measured at all (e.g. its first run failed).
    pub fatal: Option<String>,
}

/// Records members seen not alive that should be alive.
#[derive(Debug, Default)]
struct Watch {
    /// The member expected to be down in the current run (the victim), if any.
    expected_down: Option<String>,
    /// Current run number, for reports.
    run: usize,
    /// (run, observer, subject) seen down.
    downs: BTreeSet<(usize, String, String)>,
    /// (run, observer, subject) seen suspect.
    suspects: BTreeSet<(usize, String, String)>,
}

impl Watch {
    /// Checks one agent's view.
    fn observe(&mut self, observer: &str, view: &View) {
        for (subject, status) in view.iter() {
            if self.expected_down.as_deref() == Some(subject) {
                continue;
            }
            let key = (self.run, observer.to_owned(), subject.to_owned());
            if status.is_down() {
                self.downs.insert(key);
            } else if status == Status::Suspect {
                self.suspects.insert(key);
            }
        }
    }

    /// The downs as report lines.
    fn down_lines(&self) -> Vec<String> {
        self.downs
            .iter()
            .map(|(run, observer, subject)| format!("run {run}: {observer} saw {subject} down"))
            .collect()
    }
}

/// Prints a progress line on stderr.
fn progress(kind: SystemKind, n: usize, message: &str) {
    eprintln!("[{kind} N={n}] {message}");
}

/// Runs every scenario for `kind` at size `n`. Never panics on a misbehaving system:
/// failures are recorded in the result.
pub fn measure(
    kind: SystemKind,
    n: usize,
    opts: &ClusterOptions,
    settings: &Settings,
    rng: &mut SplitMix64,
) -> SystemResult {
    let mut result = SystemResult::default();
    let mut converging = Watch::default();
    let mut steady: Option<Cluster> = None;

    // 1. Convergence, a fresh cluster per run; the last converged one is kept.
    for run in 1..=settings.runs {
        converging.run = run;
        // Drop the previous cluster before starting the next: never two at once.
        steady = None;
        let mut cluster = match Cluster::prepare(kind, n, opts, rng.next_u64()) {
            Ok(c) => c,
            Err(e) => {
                result.fatal = Some(format!("preparing the cluster: {e:#}"));
                return result;
            }
        };
        let names = cluster.names();
        let t0 = Instant::now();
        let outcome = cluster
            .start_all()
            .map_err(|e| format!("{e:#}"))
            .and_then(|()| wait_all_alive(&mut cluster, t0, &names, settings, &mut converging));
        match outcome {
            Ok(times) => {
                progress(
                    kind,
                    n,
                    &format!(
                        "convergence run {run}/{}: {:.3} s (all agents answering after {:.3} s)",
                        settings.runs,
                        times.done.as_secs_f64(),
                        times.all_answering.as_secs_f64()
                    ),
                );
                result.convergence.push(times.done.as_secs_f64());
                result.all_answering.push(times.all_answering.as_secs_f64());
                steady = Some(cluster);
            }
            Err(e) => {
                let message = format!("convergence run {run}: {e}{}", logs_hint(&cluster, opts));
                progress(kind, n, &message);
                if run == 1 {
                    result.fatal = Some(message);
                    return result;
                }
                result.convergence_errors.push(message);
            }
        }
    }
    result.downs_while_converging = converging.down_lines();
    let Some(mut cluster) = steady else {
        result.fatal = Some("the last convergence run failed: no cluster to measure".into());
        return result;
    };

    // 2. Idle cost.
    std::thread::sleep(settings.settle);
    result.rss = cluster
        .nodes
        .iter()
        .filter_map(|node| node.rss_bytes().ok())
        .collect();
    let idle = measure_idle(&mut cluster, settings);
    progress(kind, n, &describe_idle(&idle, n));
    result.idle = Some(idle);

    // 3. Detection.
    let mut watch = Watch::default();
    let names = cluster.names();
    for run in 1..=settings.runs {
        let victim = rng.in_range(1, n);
        watch.run = run;
        watch.expected_down = Some(names[victim].clone());
        match detect(&mut cluster, victim, &names, settings, &mut watch) {
            Ok(DetectOutcome {
                detected,
                reconverged,
            }) => {
                progress(
                    kind,
                    n,
                    &format!(
                        "detection run {run}/{}: killed {}, all saw it down after {:.3} s; \
                         restarted, reconverged in {:.3} s",
                        settings.runs,
                        names[victim],
                        detected.as_secs_f64(),
                        reconverged.as_secs_f64()
                    ),
                );
                result.detection.push(detected.as_secs_f64());
            }
            Err(e) => {
                let message = format!(
                    "detection run {run} (victim {}): {e}{}",
                    names[victim],
                    logs_hint(&cluster, opts)
                );
                progress(kind, n, &message);
                result.detection_errors.push(message);
                // The cluster's state is unknown now; further runs would measure noise.
                break;
            }
        }
    }
    result.false_downs = watch.down_lines();
    result.false_suspects = watch.suspects.len();
    result
}

/// Where the agent logs of a failed run can be read.
fn logs_hint(cluster: &Cluster, opts: &ClusterOptions) -> String {
    if opts.keep_files {
        format!(" (agent logs in {})", cluster.dir().display())
    } else {
        " (rerun with --keep-files to keep the agent logs)".to_owned()
    }
}

/// Times of one convergence wait.
#[derive(Debug, Clone, Copy)]
struct Converged {
    /// Until every agent had answered at least once.
    all_answering: Duration,
    /// Until every agent reported all members alive.
    done: Duration,
}

/// Polls every agent until each reports all of `names` alive; times are from `t0`.
fn wait_all_alive(
    cluster: &mut Cluster,
    t0: Instant,
    names: &[String],
    settings: &Settings,
    watch: &mut Watch,
) -> Result<Converged, String> {
    let deadline = t0 + settings.timeout;
    let count = cluster.nodes.len();
    let mut pending: Vec<usize> = (0..count).collect();
    let mut first_answer: Vec<Option<Duration>> = vec![None; count];
    let mut last_seen: Vec<String> = vec!["never polled".to_owned(); count];
    let mut done = Duration::ZERO;
    loop {
        let sweep = Instant::now();
        let mut still = Vec::with_capacity(pending.len());
        for &i in &pending {
            let node = &mut cluster.nodes[i];
            node.ensure_running().map_err(|e| format!("{e:#}"))?;
            match node.view() {
                Ok(view) => {
                    let at = t0.elapsed();
                    first_answer[i].get_or_insert(at);
                    watch.observe(&node.name, &view);
                    if view.not_alive(names).is_empty() {
                        done = done.max(at);
                    } else {
                        last_seen[i] = describe_missing(&view, names);
                        still.push(i);
                    }
                }
                Err(e) => {
                    last_seen[i] = format!("no answer ({e:#})");
                    still.push(i);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not converged after {:.0} s: {}",
                settings.timeout.as_secs_f64(),
                describe_pending(cluster, &pending, &last_seen)
            ));
        }
        std::thread::sleep(settings.poll_period.saturating_sub(sweep.elapsed()));
    }
    let all_answering = first_answer.iter().flatten().max().copied();
    Ok(Converged {
        all_answering: all_answering.unwrap_or(done),
        done,
    })
}

/// `n3 (sees 8/10 alive; ...); n7 (...)`, at most 10 agents.
fn describe_pending(cluster: &Cluster, pending: &[usize], last_seen: &[String]) -> String {
    let mut text = String::new();
    if let Some(&first) = pending.first() {
        let node = &cluster.nodes[first];
        let _ = write!(
            text,
            "[end of {}'s log: {}] ",
            node.name,
            node.log_tail(400).trim()
        );
    }
    for &i in pending.iter().take(10) {
        let _ = write!(text, "{} ({}); ", cluster.nodes[i].name, last_seen[i]);
    }
    if pending.len() > 10 {
        let _ = write!(text, "+{} more agents", pending.len() - 10);
    }
    text.trim_end_matches("; ").to_owned()
}

/// Times of one detection run.
#[derive(Debug, Clone, Copy)]
struct DetectOutcome {
    /// From the kill until every other agent reported the victim down.
    detected: Duration,
    /// From the restart until every agent reported all alive again.
    reconverged: Duration,
}

/// Kills `victim`, waits until every other agent sees it down, restarts it and waits
/// for the cluster to reconverge.
fn detect(
    cluster: &mut Cluster,
    victim: usize,
    names: &[String],
    settings: &Settings,
    watch: &mut Watch,
) -> Result<DetectOutcome, String> {
    let victim_name = names[victim].clone();
    let t0 = Instant::now();
    cluster.nodes[victim]
        .kill()
        .map_err(|e| format!("killing: {e:#}"))?;
    let deadline = t0 + settings.timeout;
    let mut pending: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != victim).collect();
    let mut last_seen: Vec<String> = vec!["never polled".to_owned(); cluster.nodes.len()];
    let mut detected = Duration::ZERO;
    loop {
        let sweep = Instant::now();
        let mut still = Vec::with_capacity(pending.len());
        for &i in &pending {
            let node = &mut cluster.nodes[i];
            node.ensure_running().map_err(|e| format!("{e:#}"))?;
            match node.view() {
                Ok(view) => {
                    let at = t0.elapsed();
                    watch.observe(&node.name, &view);
                    match view.status(&victim_name) {
                        Some(status) if status.is_down() => detected = detected.max(at),
                        status => {
                            last_seen[i] = format!(
                                "sees {victim_name} {}",
                                status.map_or("unknown".to_owned(), |s| s.to_string())
                            );
                            still.push(i);
                        }
                    }
                }
                Err(e) => {
                    last_seen[i] = format!("no answer ({e:#})");
                    still.push(i);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not detected after {:.0} s: {}",
                settings.timeout.as_secs_f64(),
                describe_pending(cluster, &pending, &last_seen)
            ));
        }
        std::thread::sleep(settings.poll_period.saturating_sub(sweep.elapsed()));
    }

    let restart = Instant::now();
    cluster.nodes[victim]
        .start()
        .map_err(|e| format!("restarting: {e:#}"))?;
    // The victim stays excluded from false downs until every agent sees it alive
    // again: until then, seeing it down is correct.
    let times = wait_all_alive(cluster, restart, names, settings, watch)
        .map_err(|e| format!("after restart: {e}"))?;
    Ok(DetectOutcome {
        detected,
        reconverged: times.done,
    })
}

/// Measures bytes sent over the idle window (nothing is polled meanwhile).
fn measure_idle(cluster: &mut Cluster, settings: &Settings) -> Idle {
    let mesh = cluster.kind == SystemKind::Mesh;
    let read_metrics = |cluster: &mut Cluster| -> Result<Vec<f64>, String> {
        cluster
            .nodes
            .iter_mut()
            .map(|node| node.mesh_bytes_out().map_err(|e| format!("{e:#}")))
            .collect()
    };
    let before = mesh.then(|| read_metrics(cluster));
    let counters = match &settings.nft_unavailable {
        Some(why) => Err(why.clone()),
        None => NftCounters::install(&cluster.gossip_ports()).map_err(|e| format!("{e:#}")),
    };
    let start = Instant::now();
    std::thread::sleep(settings.idle_window);
    let nft = counters.and_then(|c| {
        let counts = c.read().map_err(|e| format!("{e:#}"));
        c.remove().map_err(|e| format!("{e:#}"))?;
        counts
    });
    let window = start.elapsed();
    let after = mesh.then(|| read_metrics(cluster));
    let metric_out = match (before, after) {
        (Some(Ok(b)), Some(Ok(a))) => Some(Ok(a.iter().zip(&b).map(|(a, b)| a - b).collect())),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e)),
        _ => None,
    };
    Idle {
        window,
        nft,
        metric_out,
    }
}

/// One progress line about the idle window.
fn describe_idle(idle: &Idle, n: usize) -> String {
    let secs = idle.window.as_secs_f64();
    let per_peer = |bytes: f64| bytes / secs / n as f64;
    let wire = match &idle.nft {
        Ok(c) => format!(
            "{:.0} B/s/peer on the wire",
            per_peer(c.total_bytes() as f64)
        ),
        Err(e) => format!("nft n/a ({e})"),
    };
    let metric = match &idle.metric_out {
        Some(Ok(v)) => format!(
            ", {:.0} B/s/peer by mesh_transport_bytes_total",
            per_peer(v.iter().sum())
        ),
        Some(Err(e)) => format!(", metric n/a ({e})"),
        None => String::new(),
    };
    format!("idle {secs:.1} s: {wire}{metric}")
}
