//! Erlang/OTP `pg` run side by side with mesh's groups: N Erlang nodes on loopback
//! (`-sname`, one cookie, `-kernel start_pg true`), driven by a hidden controller node
//! that runs the entry points of `erlang/meshbench_pg.erl` and prints `key value`
//! lines, which this module parses.
//!
//! Everything runs under the harness's cleanup: the module is compiled into a
//! [`ScratchDir`], `epmd` runs in the foreground on a port of its own (every `erl` gets
//! `-start_epmd false` and `ERL_EPMD_PORT`, so no daemon outlives the run and other
//! Erlang users of the machine are not touched), and every VM is a [`ChildGuard`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cleanup::{ChildGuard, ScratchDir};
use crate::cluster::log_tail;
use crate::ports::free_ports;

/// The Erlang source of the benchmark's entry points.
pub const MODULE_SOURCE: &str = include_str!("erlang/meshbench_pg.erl");

/// Scheduler flags of every VM: no busy waiting. By default an idle BEAM scheduler
/// spins before it sleeps; with several VMs on two shared cores the spinning VMs take
/// the CPU from the ones with work (measured here: distributed throughput 68 k/s with
/// spinning, see BENCHMARKS.md), which would be a handicap of the setup, not of Erlang.
pub const NO_BUSY_WAIT: [&str; 6] = ["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"];

/// Where the Erlang tools are.
#[derive(Debug, Clone)]
pub struct ErlangOptions {
    /// `erl`.
    pub erl: PathBuf,
    /// `erlc`.
    pub erlc: PathBuf,
    /// `epmd`.
    pub epmd: PathBuf,
    /// Keep the scratch directory (node logs) after the run.
    pub keep_files: bool,
}

impl ErlangOptions {
    /// The tools found on `PATH` (Debian package `erlang-base`).
    pub fn from_path(keep_files: bool) -> Self {
        Self {
            erl: "erl".into(),
            erlc: "erlc".into(),
            epmd: "epmd".into(),
            keep_files,
        }
    }

    /// The OTP release (`25`), or why `erl` cannot run.
    pub fn otp_release(&self) -> Result<String> {
        let out = Command::new(&self.erl)
            .args(["-noshell", "-eval"])
            .arg("io:format(\"~s erts ~s~n\", [erlang:system_info(otp_release), erlang:system_info(version)]), halt().")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.erl.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                self.erl.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(format!(
            "OTP {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// A running set of Erlang nodes (or none, for single-VM runs) with the benchmark
/// module compiled and an `epmd` of their own.
#[derive(Debug)]
pub struct ErlangCluster {
    opts: ErlangOptions,
    dir: ScratchDir,
    cookie: String,
    epmd_port: u16,
    /// Node short names (`b1`, ...), in order.
    names: Vec<String>,
    /// `epmd` and the nodes; dropped (killed) with the cluster.
    children: Vec<ChildGuard>,
    controllers: usize,
}

impl ErlangCluster {
    /// Compiles the module, starts `epmd` and `n` nodes named `b1..bn`; does not wait
    /// for them (the controller connects with retries).
    pub fn start(n: usize, opts: &ErlangOptions, salt: u64) -> Result<Self> {
        let mut dir = ScratchDir::new(&format!("meshbench-erlang-{n}-"))?;
        if opts.keep_files {
            dir.keep();
        }
        let src = dir.path().join("meshbench_pg.erl");
        std::fs::write(&src, MODULE_SOURCE).context("writing meshbench_pg.erl")?;
        let out = Command::new(&opts.erlc)
            .arg("-o")
            .arg(dir.path())
            .arg(&src)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", opts.erlc.display()))?;
        if !out.status.success() {
            bail!(
                "erlc failed: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let epmd_port = free_ports(1, salt)?[0];
        let mut cluster = Self {
            opts: opts.clone(),
            cookie: format!("meshbench{}", salt % 1_000_000_007),
            epmd_port,
            names: (1..=n).map(|i| format!("b{i}")).collect(),
            children: Vec::new(),
            controllers: 0,
            dir,
        };
        if n > 0 {
            let log = File::create(cluster.dir.path().join("epmd.log"))?;
            let mut epmd = Command::new(&opts.epmd);
            epmd.args(["-port", &epmd_port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            cluster.children.push(ChildGuard::spawn(&mut epmd)?);
            // epmd must be listening before a node registers with it.
            std::thread::sleep(Duration::from_millis(200));
            for name in cluster.names.clone() {
                let log = File::create(cluster.dir.path().join(format!("{name}.log")))?;
                let mut erl = cluster.erl_command(&name, false);
                erl.stdout(log.try_clone()?).stderr(log);
                cluster.children.push(ChildGuard::spawn(&mut erl)?);
            }
        }
        Ok(cluster)
    }

    /// Node short names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The scratch directory (node logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn erl_command(&self, name: &str, hidden: bool) -> Command {
        let mut erl = Command::new(&self.opts.erl);
        erl.args(NO_BUSY_WAIT)
            .args(["-sname", name, "-setcookie", &self.cookie])
            .args(["-noshell", "-noinput", "-start_epmd", "false"])
            .args(["-kernel", "start_pg", "true"])
            .arg("-pa")
            .arg(self.dir.path())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdin(Stdio::null());
        if hidden {
            erl.arg("-hidden");
        }
        erl
    }

    /// Runs `call` (an Erlang expression calling a `meshbench_pg` entry point) on a
    /// fresh hidden controller node, or, with `distributed = false`, in a VM without
    /// distribution; returns its stdout lines. Fails with its output if it exits
    /// non-zero or does not end within `timeout`.
    pub fn control(
        &mut self,
        call: &str,
        distributed: bool,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        self.controllers += 1;
        let out_path = self.dir.path().join(format!("ctl{}.out", self.controllers));
        let out = File::create(&out_path)?;
        let mut erl = if distributed {
            self.erl_command(&format!("ctl{}", self.controllers), true)
        } else {
            let mut erl = Command::new(&self.opts.erl);
            erl.args(NO_BUSY_WAIT)
                .args(["-noshell", "-noinput", "-kernel", "start_pg", "true", "-pa"])
                .arg(self.dir.path())
                .stdin(Stdio::null());
            erl
        };
        erl.arg("-eval")
            .arg(call)
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut child = ChildGuard::spawn(&mut erl)?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.exit_status()? {
                break status;
            }
            if Instant::now() >= deadline {
                child.kill()?;
                bail!(
                    "the Erlang controller did not finish within {:.0} s; its output:\n{}",
                    timeout.as_secs_f64(),
                    log_tail(&out_path, 2000)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            bail!(
                "the Erlang controller failed ({status}): {}",
                tail(&text, 2000)
            );
        }
        Ok(text.lines().map(str::to_owned).collect())
    }
}

/// The last `max` bytes of `text`, on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].trim()
}

/// `["b1","b2"]`: names as an Erlang list of strings.
pub fn erl_strings(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!("[{}]", quoted.join(","))
}

/// One join of the visibility run: seconds until every node listed the member, or
/// `None` if some node had not when the deadline passed.
pub type JoinSample = Option<f64>;

/// Parses the controller's `vis J us T` / `vis J timeout K` lines, in join order;
/// any `error` line (a crash inside the VM) fails.
pub fn parse_visibility(lines: &[String]) -> Result<Vec<JoinSample>> {
    let mut samples = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["vis", _, "us", us] => {
                let us: f64 = us.parse().with_context(|| format!("bad line {line:?}"))?;
                samples.push(Some(us / 1e6));
            }
            ["vis", _, "timeout", _] => samples.push(None),
            ["error", ..] => bail!("Erlang: {line}"),
            _ => {}
        }
    }
    Ok(samples)
}

/// What one throughput run reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErlThroughput {
    /// Group sends completed (each to every member).
    pub sends: u64,
    /// Length of the sending window, microseconds.
    pub elapsed_us: u64,
    /// Members each send went to.
    pub targets: u64,
    /// Messages received by the members during the window.
    pub delivered: u64,
    /// Messages received by 1 s after the window.
    pub settled: u64,
}

/// Parses the controller's `tp sends S elapsed_us E targets T delivered D settled D2`.
pub fn parse_throughput(lines: &[String]) -> Result<ErlThroughput> {
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"error") {
            bail!("Erlang: {line}");
        }
        if words.first() != Some(&"tp") {
            continue;
        }
        let field = |key: &str| -> Result<u64> {
            let at = words
                .iter()
                .position(|w| *w == key)
                .with_context(|| format!("no {key} in {line:?}"))?;
            words
                .get(at + 1)
                .with_context(|| format!("no value for {key} in {line:?}"))?
                .parse()
                .with_context(|| format!("bad {key} in {line:?}"))
        };
        return Ok(ErlThroughput {
            sends: field("sends")?,
            elapsed_us: field("elapsed_us")?,
            targets: field("targets")?,
            delivered: field("delivered")?,
            settled: field("settled")?,
        });
    }
    bail!("no `tp` line in the Erlang output: {lines:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn visibility_lines_keep_join_order_and_timeouts_as_none() -> Result<()> {
        let out = lines("connected_ms 219\nvis 1 us 7623\nvis 2 timeout 3\nvis 3 us 5000\n");
        assert_eq!(
            parse_visibility(&out)?,
            vec![Some(0.007623), None, Some(0.005)]
        );
        Ok(())
    }

    #[test]
    fn a_crash_inside_the_vm_is_an_error_not_an_empty_run() {
        let out = lines("vis 1 us 10\nerror error:badarg []\n");
        assert!(parse_visibility(&out).is_err());
        assert!(parse_throughput(&out).is_err());
    }

    #[test]
    fn throughput_line_is_read_by_key() -> Result<()> {
        let out = lines("connected_ms 26\ntp sends 5419 elapsed_us 2000771 targets 40 delivered 178233 settled 216760\n");
        assert_eq!(
            parse_throughput(&out)?,
            ErlThroughput {
                sends: 5419,
                elapsed_us: 2_000_771,
                targets: 40,
                delivered: 178_233,
                settled: 216_760,
            }
        );
        assert!(parse_throughput(&lines("connected_ms 1\n")).is_err());
        Ok(())
    }

    #[test]
    fn names_become_an_erlang_list_of_strings() {
        assert_eq!(erl_strings(&["b1".into(), "b2".into()]), r#"["b1","b2"]"#);
    }
}
