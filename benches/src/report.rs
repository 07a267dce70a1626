//! The printed report: one table per cluster size with mesh, serf and mesh/serf, the
//! failures and false downs behind the figures, and the goals with met / not met.
//! Figures are printed, never asserted.

use std::fmt::Write as _;

use crate::scenario::SystemResult;
use crate::stats::Summary;

/// One table cell.
#[derive(Debug, Clone)]
enum Cell {
    /// A figure and how many decimals to print.
    Num(f64, usize),
    /// Free text (counts like `5/5`, or why a figure is missing).
    Text(String),
}

impl Cell {
    /// The figure, if any.
    fn value(&self) -> Option<f64> {
        match self {
            Self::Num(v, _) => Some(*v),
            Self::Text(_) => None,
        }
    }

    /// As printed.
    fn render(&self) -> String {
        match self {
            Self::Num(v, decimals) => format!("{v:.decimals$}"),
            Self::Text(t) => t.clone(),
        }
    }
}

/// "n/a".
fn na() -> Cell {
    Cell::Text("n/a".to_owned())
}

/// Results of both systems at one size (`None`: not run).
#[derive(Debug, Clone, Default)]
pub struct SizeResults {
    /// Cluster size.
    pub n: usize,
    /// mesh.
    pub mesh: Option<SystemResult>,
    /// serf.
    pub serf: Option<SystemResult>,
}

/// A row: label, how to get the cell from a result, whether a ratio makes sense.
type RowFn = fn(&SystemResult, usize) -> Cell;

/// A summary figure or `n/a`.
fn summary_cell(samples: &[f64], pick: fn(&Summary) -> f64) -> Cell {
    Summary::of(samples).map_or_else(na, |s| Cell::Num(pick(&s), 3))
}

/// Idle bytes per second per peer from nft, using `bytes` of the counts.
fn idle_nft_cell(r: &SystemResult, n: usize, bytes: fn(&crate::nft::Counts) -> u64) -> Cell {
    match &r.idle {
        None => na(),
        Some(idle) => match &idle.nft {
            Ok(c) => Cell::Num(bytes(c) as f64 / idle.window.as_secs_f64() / n as f64, 0),
            Err(_) => na(),
        },
    }
}

/// Idle bytes per second per agent from mesh's metric, reduced with `pick` (mean/max).
fn idle_metric_cell(r: &SystemResult, pick: fn(&[f64]) -> f64) -> Cell {
    match &r.idle {
        Some(idle) => match &idle.metric_out {
            Some(Ok(per_agent)) if !per_agent.is_empty() => {
                let rates: Vec<f64> = per_agent
                    .iter()
                    .map(|b| b / idle.window.as_secs_f64())
                    .collect();
                Cell::Num(pick(&rates), 0)
            }
            _ => na(),
        },
        None => na(),
    }
}

/// Mean of a non-empty slice.
fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Largest of a non-empty slice.
fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MIN, f64::max)
}

/// RSS in MiB reduced with `pick`.
fn rss_cell(r: &SystemResult, pick: fn(&[f64]) -> f64) -> Cell {
    if r.rss.is_empty() {
        return na();
    }
    let mib: Vec<f64> = r.rss.iter().map(|b| *b as f64 / 1_048_576.0).collect();
    Cell::Num(pick(&mib), 1)
}

/// The rows of a size table: label, cell, ratio wanted.
fn rows() -> Vec<(&'static str, RowFn, bool)> {
    vec![
        (
            "convergence p50 (s)",
            |r, _| summary_cell(&r.convergence, |s| s.p50),
            true,
        ),
        (
            "convergence p99 (s)",
            |r, _| summary_cell(&r.convergence, |s| s.p99),
            true,
        ),
        (
            "convergence max (s)",
            |r, _| summary_cell(&r.convergence, |s| s.max),
            true,
        ),
        (
            "  runs converged",
            |r, _| {
                let ok = r.convergence.len();
                Cell::Text(format!("{ok}/{}", ok + r.convergence_errors.len()))
            },
            false,
        ),
        (
            "  all agents answering p50 (s)",
            |r, _| summary_cell(&r.all_answering, |s| s.p50),
            true,
        ),
        (
            "detection p50 (s)",
            |r, _| summary_cell(&r.detection, |s| s.p50),
            true,
        ),
        (
            "detection p99 (s)",
            |r, _| summary_cell(&r.detection, |s| s.p99),
            true,
        ),
        (
            "detection max (s)",
            |r, _| summary_cell(&r.detection, |s| s.max),
            true,
        ),
        (
            "  detection runs ok",
            |r, _| {
                let ok = r.detection.len();
                Cell::Text(format!("{ok}/{}", ok + r.detection_errors.len()))
            },
            false,
        ),
        (
            "false downs (detection runs)",
            |r, _| Cell::Num(r.false_downs.len() as f64, 0),
            false,
        ),
        (
            "live peers seen suspect",
            |r, _| Cell::Num(r.false_suspects as f64, 0),
            false,
        ),
        (
            "downs seen while converging",
            |r, _| Cell::Num(r.downs_while_converging.len() as f64, 0),
            false,
        ),
        (
            "idle B/s/peer, wire (nft, IP)",
            |r, n| idle_nft_cell(r, n, crate::nft::Counts::total_bytes),
            true,
        ),
        (
            "idle B/s/peer, UDP payload (nft)",
            |r, n| idle_nft_cell(r, n, crate::nft::Counts::udp_payload_bytes),
            true,
        ),
        (
            "idle B/s/peer, TCP (nft, IP)",
            |r, n| idle_nft_cell(r, n, |c| c.tcp.bytes),
            false,
        ),
        (
            "idle packets/s/peer (nft)",
            |r, n| idle_nft_cell(r, n, |c| c.udp.packets + c.tcp.packets),
            true,
        ),
        (
            "idle B/s/peer, mesh metric mean",
            |r, _| idle_metric_cell(r, mean),
            false,
        ),
        (
            "idle B/s/peer, mesh metric max",
            |r, _| idle_metric_cell(r, max),
            false,
        ),
        ("RSS per peer mean (MiB)", |r, _| rss_cell(r, mean), true),
        ("RSS per peer max (MiB)", |r, _| rss_cell(r, max), true),
    ]
}

/// The cell for a system that was not run or could not be measured.
fn missing_cell(result: Option<&SystemResult>) -> Cell {
    match result {
        None => Cell::Text("not run".to_owned()),
        Some(_) => Cell::Text("failed".to_owned()),
    }
}

/// The table for one size, followed by failures and false downs.
pub fn render_size(size: &SizeResults, runs: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== N = {} agents, {runs} runs per figure (p99 of {runs} samples is their max) ==",
        size.n
    );
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>10} {:>10}",
        "", "mesh", "serf", "mesh/serf"
    );
    let mesh = size.mesh.as_ref().filter(|r| r.fatal.is_none());
    let serf = size.serf.as_ref().filter(|r| r.fatal.is_none());
    for (label, cell_of, ratio_wanted) in rows() {
        let m = mesh.map_or_else(|| missing_cell(size.mesh.as_ref()), |r| cell_of(r, size.n));
        let s = serf.map_or_else(|| missing_cell(size.serf.as_ref()), |r| cell_of(r, size.n));
        let ratio = match (ratio_wanted, m.value(), s.value()) {
            (true, Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{label:<34} {:>10} {:>10} {ratio:>10}",
            m.render(),
            s.render()
        );
    }
    for (name, result) in [("mesh", &size.mesh), ("serf", &size.serf)] {
        let Some(r) = result else { continue };
        let mut notes: Vec<String> = Vec::new();
        notes.extend(r.fatal.iter().map(|e| format!("not measured: {e}")));
        notes.extend(r.steady_error.iter().cloned());
        notes.extend(r.convergence_errors.iter().cloned());
        notes.extend(r.detection_errors.iter().cloned());
        notes.extend(
            r.false_downs
                .iter()
                .take(10)
                .map(|d| format!("false down: {d}")),
        );
        notes.extend(
            r.downs_while_converging
                .iter()
                .take(5)
                .map(|d| format!("down while converging: {d}")),
        );
        if let Some(idle) = &r.idle {
            if let Err(e) = &idle.nft {
                notes.push(format!("idle bytes via nft: n/a ({e})"));
            }
            if let Some(Err(e)) = &idle.metric_out {
                notes.push(format!("idle bytes via metric: n/a ({e})"));
            }
        }
        for note in notes {
            let _ = writeln!(out, "  {name}: {note}");
        }
    }
    out
}

/// Verdict text.
fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "NOT MET"
    }
}

/// The goals and whether the figures meet them.
pub fn render_goals(sizes: &[SizeResults], profile: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== goals ==");
    let measured = |r: &Option<SystemResult>| r.as_ref().filter(|r| r.fatal.is_none()).cloned();

    // 1. Convergence at least 2x faster than serf (ratio <= 0.5 at p50 and p99).
    let _ = writeln!(
        out,
        "1. convergence at least 2x faster than serf (mesh/serf <= 0.50 at p50 and p99):"
    );
    for size in sizes {
        let (Some(m), Some(s)) = (measured(&size.mesh), measured(&size.serf)) else {
            let _ = writeln!(out, "   N={}: not measured (needs both systems)", size.n);
            continue;
        };
        match (Summary::of(&m.convergence), Summary::of(&s.convergence)) {
            (Some(a), Some(b)) => {
                let (r50, r99) = (a.p50 / b.p50, a.p99 / b.p99);
                let _ = writeln!(
                    out,
                    "   N={}: p50 ratio {r50:.2}, p99 ratio {r99:.2} -> {}",
                    size.n,
                    verdict(r50 <= 0.5 && r99 <= 0.5)
                );
            }
            _ => {
                let _ = writeln!(out, "   N={}: no converged runs", size.n);
            }
        }
    }

    // 2. Detection p99 <= 3 s at N = 10 with the default LAN profile.
    let at_ten = sizes
        .iter()
        .find(|s| s.n == 10)
        .and_then(|s| measured(&s.mesh));
    let line = match at_ten.as_ref().and_then(|m| Summary::of(&m.detection)) {
        _ if profile != "lan" => format!("not measured (profile is {profile}, goal is for lan)"),
        Some(d) => format!(
            "p99 {:.3} s over {} runs -> {}",
            d.p99,
            d.count,
            verdict(d.p99 <= 3.0)
        ),
        None => "not measured (run with --peers including 10 and --system mesh|both)".into(),
    };
    let _ = writeln!(out, "2. detection p99 <= 3 s at N=10, lan profile: {line}");

    // 3. Zero false downs.
    let mesh_results: Vec<(usize, SystemResult)> = sizes
        .iter()
        .filter_map(|s| measured(&s.mesh).map(|m| (s.n, m)))
        .collect();
    if mesh_results.is_empty() {
        let _ = writeln!(out, "3. zero false downs: not measured");
    } else {
        let total: usize = mesh_results.iter().map(|(_, m)| m.false_downs.len()).sum();
        let while_converging: usize = mesh_results
            .iter()
            .map(|(_, m)| m.downs_while_converging.len())
            .sum();
        let per_size: Vec<String> = mesh_results
            .iter()
            .map(|(n, m)| format!("N={n}: {}", m.false_downs.len()))
            .collect();
        let _ = writeln!(
            out,
            "3. zero false downs (mesh, detection runs): {total} ({}) -> {}; \
             downs seen while converging: {while_converging}",
            per_size.join(", "),
            verdict(total == 0)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(convergence: &[f64], detection: &[f64]) -> SystemResult {
        SystemResult {
            convergence: convergence.to_vec(),
            detection: detection.to_vec(),
            ..SystemResult::default()
        }
    }

    #[test]
    fn table_shows_ratio_and_goals_judge_it() {
        let size = SizeResults {
            n: 10,
            mesh: Some(result(&[0.5, 0.6], &[1.0, 2.0])),
            serf: Some(result(&[2.0, 2.0], &[5.0, 6.0])),
        };
        let table = render_size(&size, 2);
        let line = table
            .lines()
            .find(|l| l.starts_with("convergence p50"))
            .unwrap_or_default();
        assert!(line.ends_with("0.25"), "{line}");
        let goals = render_goals(&[size], "lan");
        assert!(
            goals.contains("p50 ratio 0.25, p99 ratio 0.30 -> MET"),
            "{goals}"
        );
        assert!(goals.contains("p99 2.000 s over 2 runs -> MET"), "{goals}");
        assert!(
            goals.contains("zero false downs (mesh, detection runs): 0"),
            "{goals}"
        );
    }

    #[test]
    fn a_failed_system_is_marked_not_measured() {
        let size = SizeResults {
            n: 10,
            mesh: Some(SystemResult {
                fatal: Some("meshctl exited".into()),
                ..SystemResult::default()
            }),
            serf: Some(result(&[2.0], &[5.0])),
        };
        let table = render_size(&size, 1);
        assert!(table.contains("failed"), "{table}");
        assert!(
            table.contains("mesh: not measured: meshctl exited"),
            "{table}"
        );
        let goals = render_goals(&[size], "lan");
        assert!(goals.contains("N=10: not measured"), "{goals}");
    }
}
