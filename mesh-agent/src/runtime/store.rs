//! The durable side of the quorum plane in the shell: opens a voter's redb store at
//! boot, and runs the node's commits (fsync) on a blocking thread, one at a time, so the
//! node loop never waits for a disk.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::histogram;
use tokio::sync::mpsc;

use crate::redb_store::RedbStore;
use mesh_core::claims::{ShardId, ShardSlot};
use mesh_core::node::StoreBoot;
use mesh_core::quorum::store::load_acceptor;
use mesh_core::quorum::{AcceptorStore, RootRecord};

/// A finished durable write, fed back to the node.
#[derive(Debug)]
pub(super) enum Persisted {
    /// Commit `id` of acceptor states.
    Commit(u64, Result<(), String>),
    /// The root record.
    Root(Result<(), String>),
}

/// A voter's open store.
#[derive(Clone)]
pub(super) struct Store {
    inner: Arc<Mutex<RedbStore>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` and reads what the node boots from.
    pub(super) fn open(dir: &Path) -> Result<(Self, StoreBoot), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let (store, opened) = RedbStore::open(dir, &mut rand::rng()).map_err(|e| e.to_string())?;
        let root = store.root().map_err(|e| e.to_string())?;
        let states = load_acceptor::<ShardId, ShardSlot>(&store).map_err(|e| e.to_string())?;
        tracing::info!(
            store = %dir.display(),
            ?opened,
            acceptor_id = store.acceptor_id(),
            states = states.len(),
            root = root.is_some(),
            "quorum store open"
        );
        let boot = StoreBoot {
            acceptor_id: store.acceptor_id(),
            root,
            states,
        };
        Ok((
            Self {
                inner: Arc::new(Mutex::new(store)),
            },
            boot,
        ))
    }

    /// Commits `entries` on a blocking thread and reports to `done`.
    pub(super) fn commit(
        &self,
        id: u64,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        done: mpsc::UnboundedSender<Persisted>,
    ) {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .commit(&entries)
                .map(|stats| {
                    histogram!("mesh_quorum_fsync_seconds").record(stats.fsync.as_secs_f64());
                })
                .map_err(|e| e.to_string());
            histogram!("mesh_quorum_persist_seconds")
                .record(started.elapsed().max(Duration::ZERO).as_secs_f64());
            let _ = done.send(Persisted::Commit(id, result));
        });
    }

    /// Writes the root record on a blocking thread and reports to `done`.
    pub(super) fn set_root(&self, root: RootRecord, done: mpsc::UnboundedSender<Persisted>) {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let result = inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_root(&root)
                .map_err(|e| e.to_string());
            let _ = done.send(Persisted::Root(result));
        });
    }
}
