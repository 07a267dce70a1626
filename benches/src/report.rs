//! The printed report: one table per cluster size with mesh, serf and mesh/serf, the
//! failures and false downs behind the figures, and the goals with met / not met.
//! Figures are printed, never asserted.

use std::fmt::Write as _;

use crate::scenario::SystemResult;
use crate::stats::{Figure, Percentiles};

/// One table cell.
#[derive(Debug, Clone)]
enum Cell {
    /// A figure and how many decimals to print.
    Num(f64, usize),
    /// A lower bound (a run hit the deadline), printed as `>60.0`.
    AtLeast(f64, usize),
    /// Free text (counts like `5/5`, or why a figure is missing).
    Text(String),
}

impl Cell {
    /// The figure, if any.
    fn figure(&self) -> Option<Figure> {
        match self {
            Self::Num(v, _) => Some(Figure {
                value: *v,
                at_least: false,
            }),
            Self::AtLeast(v, _) => Some(Figure {
                value: *v,
                at_least: true,
            }),
            Self::Text(_) => None,
        }
    }

    /// As printed.
    fn render(&self) -> String {
        match self {
            Self::Num(v, decimals) => format!("{v:.decimals$}"),
            Self::AtLeast(v, decimals) => format!(">{v:.decimals$}"),
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

/// A percentile of runs, some possibly censored at `deadline`, or `n/a`.
fn percentile_cell(
    samples: &[f64],
    censored: usize,
    deadline: f64,
    pick: fn(&Percentiles) -> Figure,
) -> Cell {
    match Percentiles::of(samples, censored, deadline).map(|p| pick(&p)) {
        None => na(),
        Some(f) if f.at_least => Cell::AtLeast(f.value, 1),
        Some(f) => Cell::Num(f.value, 3),
    }
}

/// Convergence percentile cell.
fn convergence_cell(r: &SystemResult, pick: fn(&Percentiles) -> Figure) -> Cell {
    percentile_cell(&r.convergence, r.convergence_timeouts, r.timeout_secs, pick)
}

/// Detection percentile cell.
fn detection_cell(r: &SystemResult, pick: fn(&Percentiles) -> Figure) -> Cell {
    percentile_cell(&r.detection, r.detection_timeouts, r.timeout_secs, pick)
}

/// The ratio `a / b` as far as bounds allow: exact, `<x` (only `b` is a lower bound),
/// `>x` (only `a` is), or `None` when nothing can be said.
pub fn ratio(a: Figure, b: Figure) -> Option<(f64, std::cmp::Ordering)> {
    use std::cmp::Ordering;
    if b.value <= 0.0 {
        return None;
    }
    let r = a.value / b.value;
    match (a.at_least, b.at_least) {
        (false, false) => Some((r, Ordering::Equal)),
        (false, true) => Some((r, Ordering::Less)),
        (true, false) => Some((r, Ordering::Greater)),
        (true, true) => None,
    }
}

/// A ratio as printed: `0.44`, `<0.32`, `>1.50` or `?`.
fn render_ratio(a: Figure, b: Figure) -> String {
    match ratio(a, b) {
        Some((r, std::cmp::Ordering::Equal)) => format!("{r:.2}"),
        Some((r, std::cmp::Ordering::Less)) => format!("<{r:.2}"),
        Some((r, std::cmp::Ordering::Greater)) => format!(">{r:.2}"),
        None => "?".to_owned(),
    }
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
            |r, _| convergence_cell(r, |p| p.p50),
            true,
        ),
        (
            "convergence p99 (s)",
            |r, _| convergence_cell(r, |p| p.p99),
            true,
        ),
        (
            "convergence max (s)",
            |r, _| convergence_cell(r, |p| p.max),
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
            |r, _| percentile_cell(&r.all_answering, 0, r.timeout_secs, |p| p.p50),
            true,
        ),
        (
            "detection p50 (s)",
            |r, _| detection_cell(r, |p| p.p50),
            true,
        ),
        (
            "detection p99 (s)",
            |r, _| detection_cell(r, |p| p.p99),
            true,
        ),
        (
            "detection max (s)",
            |r, _| detection_cell(r, |p| p.max),
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
        let ratio = match (ratio_wanted, m.figure(), s.figure()) {
            (true, Some(a), Some(b)) => render_ratio(a, b),
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
        let runs = |r: &SystemResult| {
            Percentiles::of(&r.convergence, r.convergence_timeouts, r.timeout_secs)
        };
        let (Some(a), Some(b)) = (runs(&m), runs(&s)) else {
            let _ = writeln!(out, "   N={}: no runs", size.n);
            continue;
        };
        let judge = |a: Figure, b: Figure| match ratio(a, b) {
            Some((r, std::cmp::Ordering::Equal)) => Some(r <= 0.5),
            Some((r, std::cmp::Ordering::Less)) if r <= 0.5 => Some(true),
            Some((r, std::cmp::Ordering::Greater)) if r > 0.5 => Some(false),
            _ => None,
        };
        let overall = match (judge(a.p50, b.p50), judge(a.p99, b.p99)) {
            (Some(true), Some(true)) => "MET",
            (Some(false), _) | (_, Some(false)) => "NOT MET",
            _ => "UNDETERMINED (deadline hit on both sides)",
        };
        let _ = writeln!(
            out,
            "   N={}: p50 ratio {}, p99 ratio {} -> {overall}",
            size.n,
            render_ratio(a.p50, b.p50),
            render_ratio(a.p99, b.p99)
        );
    }

    // 2. Detection p99 <= 3 s at N = 10 with the default LAN profile.
    let at_ten = sizes
        .iter()
        .find(|s| s.n == 10)
        .and_then(|s| measured(&s.mesh));
    let line = match at_ten
        .as_ref()
        .and_then(|m| Percentiles::of(&m.detection, m.detection_timeouts, m.timeout_secs))
    {
        _ if profile != "lan" => format!("not measured (profile is {profile}, goal is for lan)"),
        Some(d) => format!(
            "p99 {}{:.3} s over {} runs -> {}",
            if d.p99.at_least { ">" } else { "" },
            d.p99.value,
            d.completed + d.censored,
            verdict(!d.p99.at_least && d.p99.value <= 3.0)
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
    fn runs_that_hit_the_deadline_count_as_more_than_it() {
        let mut serf = result(&[1.0, 1.0, 1.2], &[6.0]);
        serf.convergence_timeouts = 2;
        serf.timeout_secs = 60.0;
        let size = SizeResults {
            n: 50,
            mesh: Some(result(&[10.0, 12.0, 15.0, 16.0, 20.0], &[5.0])),
            serf: Some(serf),
        };
        let table = render_size(&size, 5);
        let p99 = table
            .lines()
            .find(|l| l.starts_with("convergence p99"))
            .unwrap_or_default();
        assert!(p99.contains(">60.0") && p99.ends_with("<0.33"), "{p99}");
        let goals = render_goals(&[size], "lan");
        assert!(
            goals.contains("p50 ratio 12.50, p99 ratio <0.33 -> NOT MET"),
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
