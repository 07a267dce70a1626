//! The membership scenarios, run against one system at one cluster size:
//!
//! 1. **convergence** — start N agents at once (all joining through `n1`); t0 is taken
//!    just before the first spawn; the sample is the time until every agent reports
//!    all N alive. Each run uses a fresh cluster. With [`StartMode::SeedFirst`], `n1`
//!    is started and answering before t0, and the other N-1 are spawned after it.
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

/// How a fresh cluster is started for the convergence figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Every agent spawned at once; t0 just before the first spawn. Joiners race the
    /// seed's start-up, so their join-retry timers are part of the figure.
    AllAtOnce,
    /// The seed is started and answering first; t0 just before the other agents are
    /// spawned. Measures joining and dissemination without that race.
    SeedFirst,
}

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
    /// Print per-agent times on stderr.
    pub verbose: bool,
    /// How clusters are started.
    pub start: StartMode,
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
    /// How many of those hit the deadline (counted as "more than the deadline").
    pub convergence_timeouts: usize,
    /// Detection times, seconds.
    pub detection: Vec<f64>,
    /// Detection runs that failed (not detected, or no reconvergence after restart).
    pub detection_errors: Vec<String>,
    /// Kills not detected by every agent before the deadline (counted as "more than
    /// the deadline").
    pub detection_timeouts: usize,
    /// The deadline of every wait, seconds.
    pub timeout_secs: f64,
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
    /// Set when the system could not be measured at all (an agent would not start or
    /// exited by itself).
    pub fatal: Option<String>,
    /// Set when no converged cluster was left for the idle, RSS and detection figures.
    pub steady_error: Option<String>,
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

/// Why a wait ended without its condition.
#[derive(Debug, Clone)]
enum WaitError {
    /// An agent could not be started, or exited by itself: the system is broken, and
    /// further runs would fail the same way.
    Broken(String),
    /// The deadline passed (or killing/restarting failed); the message says who was
    /// not done and what it saw.
    Timeout(String),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Broken(m) | Self::Timeout(m) => f.write_str(m),
        }
    }
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
    let mut result = SystemResult {
        timeout_secs: settings.timeout.as_secs_f64(),
        ..SystemResult::default()
    };
    let mut converging = Watch::default();
    let mut steady: Option<Cluster> = None;

    // 1. Convergence, a fresh cluster per run; the last run's cluster is kept.
    for run in 1..=settings.runs {
        converging.run = run;
        // Drop the previous cluster before starting the next: never two at once.
        steady = None;
        match converge_fresh(kind, n, opts, settings, rng, &mut converging) {
            Ok((cluster, times)) => {
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
            Err(WaitError::Broken(e)) => {
                let message = format!("convergence run {run}: {e}");
                progress(kind, n, &message);
                result.fatal = Some(message);
                return result;
            }
            Err(WaitError::Timeout(e)) => {
                let message = format!("convergence run {run}: {e}");
                progress(kind, n, &message);
                result.convergence_errors.push(message);
                result.convergence_timeouts += 1;
            }
        }
    }
    result.downs_while_converging = converging.down_lines();
    let mut cluster = match steady {
        Some(cluster) => cluster,
        None => {
            // The last run did not converge: one more fresh cluster, not counted.
            progress(kind, n, "starting one more cluster for idle and detection");
            converging.run = settings.runs + 1;
            match converge_fresh(kind, n, opts, settings, rng, &mut converging) {
                Ok((cluster, _)) => cluster,
                Err(e) => {
                    let message = format!("no converged cluster for idle and detection: {e}");
                    progress(kind, n, &message);
                    result.steady_error = Some(message);
                    return result;
                }
            }
        }
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
        let victim_name = &names[victim];
        let detected = match detect_down(&mut cluster, victim, settings, &mut watch) {
            Ok(detected) => {
                result.detection.push(detected.as_secs_f64());
                format!("all saw it down after {:.3} s", detected.as_secs_f64())
            }
            Err(e) => {
                let message = format!(
                    "detection run {run} (victim {victim_name}): {e}{}",
                    logs_hint(&cluster, opts)
                );
                progress(kind, n, &message);
                result.detection_errors.push(message);
                match e {
                    WaitError::Timeout(_) => result.detection_timeouts += 1,
                    WaitError::Broken(_) => break,
                }
                "not detected in time".to_owned()
            }
        };
        match restart_and_reconverge(&mut cluster, victim, settings, &mut watch) {
            Ok(reconverged) => progress(
                kind,
                n,
                &format!(
                    "detection run {run}/{}: killed {victim_name}, {detected}; \
                     restarted, reconverged in {:.3} s",
                    settings.runs,
                    reconverged.as_secs_f64()
                ),
            ),
            Err(e) => {
                let message = format!(
                    "detection run {run} (victim {victim_name}): {e}{}",
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

/// Prepares and starts a fresh cluster and waits for it to converge.
fn converge_fresh(
    kind: SystemKind,
    n: usize,
    opts: &ClusterOptions,
    settings: &Settings,
    rng: &mut SplitMix64,
    watch: &mut Watch,
) -> Result<(Cluster, Converged), WaitError> {
    let mut cluster = Cluster::prepare(kind, n, opts, rng.next_u64())
        .map_err(|e| WaitError::Broken(format!("preparing the cluster: {e:#}")))?;
    let names = cluster.names();
    let outcome = match settings.start {
        StartMode::AllAtOnce => {
            let t0 = Instant::now();
            match cluster.start_all() {
                Ok(()) => wait_all_alive(&mut cluster, t0, &names, settings, watch),
                Err(e) => Err(WaitError::Broken(format!("{e:#}"))),
            }
        }
        StartMode::SeedFirst => start_seed_first(&mut cluster, &names, settings, watch),
    };
    match outcome {
        Ok(times) => Ok((cluster, times)),
        Err(WaitError::Broken(e)) => Err(WaitError::Broken(format!(
            "{e}{}",
            logs_hint(&cluster, opts)
        ))),
        Err(WaitError::Timeout(e)) => Err(WaitError::Timeout(format!(
            "{e}{}",
            logs_hint(&cluster, opts)
        ))),
    }
}

/// Starts the seed, waits until it answers a poll, then takes t0 and starts the rest.
fn start_seed_first(
    cluster: &mut Cluster,
    names: &[String],
    settings: &Settings,
    watch: &mut Watch,
) -> Result<Converged, WaitError> {
    let broken = |e: anyhow::Error| WaitError::Broken(format!("{e:#}"));
    let seed = &mut cluster.nodes[0];
    seed.start().map_err(broken)?;
    let deadline = Instant::now() + settings.timeout;
    loop {
        seed.ensure_running().map_err(broken)?;
        match seed.view() {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(WaitError::Timeout(format!(
                    "seed {} not answering after {:.0} s: {e:#}",
                    seed.name,
                    settings.timeout.as_secs_f64()
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let t0 = Instant::now();
    for node in &mut cluster.nodes[1..] {
        node.start().map_err(broken)?;
    }
    wait_all_alive(cluster, t0, names, settings, watch)
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
) -> Result<Converged, WaitError> {
    let deadline = t0 + settings.timeout;
    let count = cluster.nodes.len();
    let mut pending: Vec<usize> = (0..count).collect();
    let mut first_answer: Vec<Option<Duration>> = vec![None; count];
    let mut last_seen: Vec<String> = vec!["never polled".to_owned(); count];
    let mut done_at: Vec<Option<Duration>> = vec![None; count];
    loop {
        let sweep = Instant::now();
        let mut still = Vec::with_capacity(pending.len());
        for &i in &pending {
            let node = &mut cluster.nodes[i];
            node.ensure_running()
                .map_err(|e| WaitError::Broken(format!("{e:#}")))?;
            match node.view() {
                Ok(view) => {
                    let at = t0.elapsed();
                    first_answer[i].get_or_insert(at);
                    watch.observe(&node.name, &view);
                    if view.not_alive(names).is_empty() {
                        done_at[i] = Some(at);
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
            return Err(WaitError::Timeout(format!(
                "not converged after {:.0} s: {}",
                settings.timeout.as_secs_f64(),
                describe_pending(cluster, &pending, &last_seen)
            )));
        }
        std::thread::sleep(settings.poll_period.saturating_sub(sweep.elapsed()));
    }
    if settings.verbose {
        eprintln!("    all alive, per agent: {}", per_agent(cluster, &done_at));
    }
    let done = done_at.iter().flatten().max().copied().unwrap_or_default();
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
        let _ = write!(text, "[{}'s log: {}] ", node.name, node.log_problems(3));
    }
    for &i in pending.iter().take(10) {
        let _ = write!(text, "{} ({}); ", cluster.nodes[i].name, last_seen[i]);
    }
    if pending.len() > 10 {
        let _ = write!(text, "+{} more agents", pending.len() - 10);
    }
    text.trim_end_matches("; ").to_owned()
}

/// `n4 0.412, n2 0.463, ...`: per-agent times, fastest first.
fn per_agent(cluster: &Cluster, times: &[Option<Duration>]) -> String {
    let mut list: Vec<(Duration, &str)> = times
        .iter()
        .zip(&cluster.nodes)
        .filter_map(|(t, node)| t.map(|t| (t, node.name.as_str())))
        .collect();
    list.sort();
    list.iter()
        .map(|(t, name)| format!("{name} {:.3}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kills `victim` and waits until every other agent sees it down; the time is from
/// the kill.
fn detect_down(
    cluster: &mut Cluster,
    victim: usize,
    settings: &Settings,
    watch: &mut Watch,
) -> Result<Duration, WaitError> {
    let victim_name = cluster.nodes[victim].name.clone();
    let t0 = Instant::now();
    cluster.nodes[victim]
        .kill()
        .map_err(|e| WaitError::Broken(format!("killing: {e:#}")))?;
    let deadline = t0 + settings.timeout;
    let mut pending: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != victim).collect();
    let mut last_seen: Vec<String> = vec!["never polled".to_owned(); cluster.nodes.len()];
    let mut detected_at: Vec<Option<Duration>> = vec![None; cluster.nodes.len()];
    loop {
        let sweep = Instant::now();
        let mut still = Vec::with_capacity(pending.len());
        for &i in &pending {
            let node = &mut cluster.nodes[i];
            node.ensure_running()
                .map_err(|e| WaitError::Broken(format!("{e:#}")))?;
            match node.view() {
                Ok(view) => {
                    let at = t0.elapsed();
                    watch.observe(&node.name, &view);
                    match view.status(&victim_name) {
                        Some(status) if status.is_down() => detected_at[i] = Some(at),
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
            return Err(WaitError::Timeout(format!(
                "not detected after {:.0} s: {}",
                settings.timeout.as_secs_f64(),
                describe_pending(cluster, &pending, &last_seen)
            )));
        }
        std::thread::sleep(settings.poll_period.saturating_sub(sweep.elapsed()));
    }

    if settings.verbose {
        eprintln!(
            "    {victim_name} seen down, per agent: {}",
            per_agent(cluster, &detected_at)
        );
    }
    Ok(detected_at
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default())
}

/// Restarts the killed `victim` and waits until every agent sees all members alive;
/// the time is from the restart.
fn restart_and_reconverge(
    cluster: &mut Cluster,
    victim: usize,
    settings: &Settings,
    watch: &mut Watch,
) -> Result<Duration, String> {
    let names = cluster.names();
    let restart = Instant::now();
    cluster.nodes[victim]
        .start()
        .map_err(|e| format!("restarting: {e:#}"))?;
    // The victim stays excluded from false downs until every agent sees it alive
    // again: until then, seeing it down is correct.
    let times = wait_all_alive(cluster, restart, &names, settings, watch)
        .map_err(|e| format!("after restart: {e}"))?;
    Ok(times.done)
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
