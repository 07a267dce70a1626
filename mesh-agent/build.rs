//! Embeds the git commit the agent is built from as `MESH_GIT_COMMIT` (a short hash),
//! for `GET /v1/info` and `meshctl info`; `unknown` when git or the checkout is absent
//! (a build from a crate tarball). Also the build facts `info` shows:
//! `MESH_BUILD_RUSTC` (`rustc --version`), `MESH_BUILD_TARGET` (the target triple) and
//! `MESH_BUILD_PROFILE` (`debug` or `release`, as cargo says).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MESH_GIT_COMMIT={commit}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MESH_BUILD_RUSTC={version}");
    for (var, name) in [
        ("TARGET", "MESH_BUILD_TARGET"),
        ("PROFILE", "MESH_BUILD_PROFILE"),
    ] {
        let value = std::env::var(var).unwrap_or_else(|_| "unknown".into());
        println!("cargo:rustc-env={name}={value}");
    }
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a
    // commit). Paths are resolved by git, so this works in worktrees too.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
