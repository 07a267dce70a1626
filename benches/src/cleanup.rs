//! Everything the harness starts or creates outside itself — agent processes, scratch
//! directories, the `meshbench` nftables table — is registered here, so that it is undone
//! on every way out:
//!
//! - normal return and errors: the guards ([`ChildGuard`], [`ScratchDir`], and the nft
//!   guard in [`crate::nft`]) undo their part on `Drop`;
//! - Ctrl-C, `SIGTERM`, `SIGHUP`: [`install_signal_handler`] blocks those signals in the
//!   process and waits for them on a thread of its own, which kills every registered
//!   child, deletes the registered nft tables and scratch directories, then exits with
//!   status 130. (`process::exit` runs no destructors, hence the registry.)
//!
//! Children are started in their own process group, so a Ctrl-C typed in the terminal
//! reaches only the harness, which then kills them with `SIGKILL`.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};

/// What is to be undone if the harness is interrupted.
struct Registry {
    /// Process ids of running children.
    children: BTreeSet<i32>,
    /// Scratch directories to remove.
    dirs: Vec<PathBuf>,
    /// nftables tables to delete, as `(family, name)`.
    nft_tables: Vec<(String, String)>,
    /// Set once cleanup has begun: nothing new may start after that.
    shutting_down: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    children: BTreeSet::new(),
    dirs: Vec::new(),
    nft_tables: Vec::new(),
    shutting_down: false,
});

/// The registry, even if a panicking thread poisoned it (the data stays meaningful).
fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Blocks `SIGINT`, `SIGTERM` and `SIGHUP` and handles them on a dedicated thread that
/// undoes everything registered and exits with status 130.
///
/// Call it first thing in `main`, before any other thread exists: threads inherit the
/// signal mask, and a thread that does not block the signals could receive them.
/// (Children get a clean mask: std resets it when it spawns a process.)
pub fn install_signal_handler() -> Result<()> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_block().context("blocking termination signals")?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            let name = set.wait().map_or("a signal", Signal::as_str);
            eprintln!("\nbench: got {name}: killing agents and cleaning up");
            undo_everything();
            std::process::exit(130);
        })
        .context("spawning the signal thread")?;
    Ok(())
}

/// Kills every registered child, deletes every registered nft table and scratch
/// directory. Used by the signal thread; the guards do the same piece by piece.
fn undo_everything() {
    let mut reg = registry();
    reg.shutting_down = true;
    for &pid in &reg.children {
        let pid = nix::unistd::Pid::from_raw(pid);
        // Errors mean it is already gone (or reaped by its guard): nothing to do.
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    reg.children.clear();
    for (family, name) in reg.nft_tables.drain(..) {
        let _ = Command::new("nft")
            .args(["delete", "table", &family, &name])
            .status();
    }
    for dir in reg.dirs.drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A child process that is killed (`SIGKILL`) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    /// The child; `None` once killed and reaped.
    child: Option<Child>,
    /// Its pid, kept for the registry.
    pid: i32,
}

impl ChildGuard {
    /// Spawns `command` in a process group of its own and registers it.
    pub fn spawn(command: &mut Command) -> Result<Self> {
        // Hold the lock across spawn + register so the signal thread cannot miss it.
        let mut reg = registry();
        if reg.shutting_down {
            bail!("shutting down: not starting {command:?}");
        }
        let child = command
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        reg.children.insert(pid);
        Ok(Self {
            child: Some(child),
            pid,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The child's stdin and stdout pipes, if the command asked for them (each can be
    /// taken once).
    pub fn take_pipes(
        &mut self,
    ) -> (
        Option<std::process::ChildStdin>,
        Option<std::process::ChildStdout>,
    ) {
        match self.child.as_mut() {
            Some(child) => (child.stdin.take(), child.stdout.take()),
            None => (None, None),
        }
    }

    /// `Some(status)` if the child has exited on its own (it is then reaped).
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait().context("checking a child")?;
        if status.is_some() {
            self.child = None;
            registry().children.remove(&self.pid);
        }
        Ok(status)
    }

    /// Sends `SIGKILL` and reaps the child; a no-op if it is already gone.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // `kill` fails only if the child already exited; `wait` reaps it either way.
        let _ = child.kill();
        let waited = child.wait();
        registry().children.remove(&self.pid);
        waited.context("reaping a killed child")?;
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A temporary directory removed on drop (unless kept), and on Ctrl-C.
#[derive(Debug)]
pub struct ScratchDir {
    /// The directory; `None` once kept.
    dir: Option<tempfile::TempDir>,
    /// Its path.
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a fresh directory under the system temp dir, named with `prefix`.
    pub fn new(prefix: &str) -> Result<Self> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    /// Creates a fresh directory under `parent`, named with `prefix` (to choose the
    /// disk that data directories live on).
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
        let path = dir.path().to_path_buf();
        registry().dirs.push(path.clone());
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place after the harness ends (for reading agent logs).
    pub fn keep(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
            registry().dirs.retain(|d| d != &self.path);
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.dir.take().is_some() {
            registry().dirs.retain(|d| d != &self.path);
        }
    }
}

/// Registers an nftables table for deletion on Ctrl-C.
pub(crate) fn register_nft_table(family: &str, name: &str) {
    registry()
        .nft_tables
        .push((family.to_owned(), name.to_owned()));
}

/// Forgets a table registered with [`register_nft_table`] (it was deleted normally).
pub(crate) fn deregister_nft_table(family: &str, name: &str) {
    registry()
        .nft_tables
        .retain(|(f, n)| !(f == family && n == name));
}
