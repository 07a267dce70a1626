//! What every benchmark prints about the machine and the tools it ran: the load
//! average (a shared machine's figures move with it) and the version of a peer tool.

use std::path::Path;
use std::process::Command;

/// The 1, 5 and 15 minute load averages, or `?` if `/proc/loadavg` cannot be read.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// First line of `program arg`'s output, or why it failed.
pub fn tool_version(program: &Path, arg: &str) -> String {
    match Command::new(program).arg(arg).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned(),
        Ok(out) => format!(
            "({} {arg} failed: {})",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("({} not runnable: {e})", program.display()),
    }
}
