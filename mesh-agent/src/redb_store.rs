//! The production acceptor store: one redb file, every commit fsynced.
//!
//! [`RedbStore`] implements mesh-core's [`AcceptorStore`] contract (see
//! [`mesh_core::quorum::store`] for the properties every store keeps: durable before
//! visible, atomic batches, a failed write stops the store, acceptor ids never reused,
//! bad bytes an error and never a panic). It is the shell's part of the quorum plane: it
//! reads the clock (to time commits) and touches the disk. A batch is one redb
//! transaction, so after a crash either all of its keys are durable or none are (redb's
//! copy-on-write commit with checksums), and it costs one fsync however many keys it
//! holds; a damaged file fails to open (redb checks every page checksum on open).

use mesh_core::quorum::store::{
    decode_root, encode_state, mint_acceptor_id, AcceptorStore, CommitStats, Entry, StoreError,
};
use mesh_core::quorum::RootRecord;
use rand::Rng;
use redb::backends::FileBackend;
use redb::{
    BackendError, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
    StorageBackend, TableDefinition, TableError,
};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The database file inside the store's directory.
pub const STORE_FILE: &str = "acceptor.redb";

const STATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("acceptor_states");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_ACCEPTOR_ID: &str = "acceptor_id";
const META_ROOT: &str = "root";
/// redb's page cache: the store is small (one entry per shard) and read once at boot.
const CACHE_BYTES: usize = 16 << 20;

/// Counters a [`RedbStore`] keeps; the shell publishes them as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write transactions committed (batches and root records).
    pub commits: u64,
    /// Entries written by batches.
    pub keys: u64,
    /// Bytes written by batches.
    pub bytes: u64,
    /// fsyncs the database issued (one per commit with redb's 1-phase commit).
    pub fsyncs: u64,
    /// Durable writes that failed (each stopped the store).
    pub failed_writes: u64,
}

/// The production [`AcceptorStore`]: one redb file, every commit fsynced
/// ([`Durability::Immediate`]).
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    acceptor_id: u64,
    stopped: bool,
    stats: StoreStats,
    backend: BackendHandle,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("acceptor_id", &self.acceptor_id)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Open the store in directory `dir` (created if missing), or create it there with an
    /// acceptor id drawn from `rng` — which must not repeat across wipes (seed it from OS
    /// entropy). The creation is fsynced, directory entry included, before this returns.
    pub fn open<R: Rng + ?Sized>(dir: &Path, rng: &mut R) -> Result<(Self, Opened), StoreError> {
        let path = dir.join(STORE_FILE);
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("cannot create {dir:?}: {e}")))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| open_err(e.to_string()))?;
        let (backend, handle) =
            CountingBackend::new(FileBackend::new(file).map_err(|e| open_err(db_reason(e)))?);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create_with_backend(backend)
            .map_err(|e| open_err(db_reason(e)))?;
        let mut store = Self {
            db,
            path: path.clone(),
            acceptor_id: 0,
            stopped: false,
            stats: StoreStats::default(),
            backend: handle,
        };
        if let Some(id) = store.read_acceptor_id()? {
            store.acceptor_id = id;
            return Ok((store, Opened::Existing));
        }
        if !store.load()?.is_empty() || store.root()?.is_some() {
            return Err(StoreError::Corrupt {
                key: format!("meta/{META_ACCEPTOR_ID}"),
                reason: "missing, but the store holds data".to_owned(),
            });
        }
        let id = mint_acceptor_id(rng);
        store.write(|txn| {
            txn.open_table(STATES)?;
            txn.open_table(META)?
                .insert(META_ACCEPTOR_ID, id.to_le_bytes().as_slice())?;
            Ok(())
        })?;
        // The file is new: make its directory entry durable too, or a crash could lose
        // the whole store after we answered as this acceptor.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::Write(format!("cannot fsync {dir:?}: {e}")))?;
        store.acceptor_id = id;
        Ok((store, Opened::Created))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            fsyncs: self.backend.syncs.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    fn read_acceptor_id(&self) -> Result<Option<u64>, StoreError> {
        let Some(bytes) = self.read_meta(META_ACCEPTOR_ID)? else {
            return Ok(None);
        };
        let raw: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt {
                key: format!("meta/{META_ACCEPTOR_ID}"),
                reason: format!("{} bytes, expected 8", bytes.len()),
            })?;
        match u64::from_le_bytes(raw) {
            0 => Err(StoreError::Corrupt {
                key: format!("meta/{META_ACCEPTOR_ID}"),
                reason: "0 is not an acceptor id".to_owned(),
            }),
            id => Ok(Some(id)),
        }
    }

    fn read_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = |e: &dyn fmt::Display| StoreError::Read(e.to_string());
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let table = match txn.open_table(META) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(read(&e)),
        };
        let value = table.get(key).map_err(|e| read(&e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// One fsynced write transaction; any failure stops the store.
    fn write(
        &mut self,
        fill: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        if self.stopped {
            return Err(StoreError::Stopped);
        }
        let result = (|| -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            fill(&txn)?;
            txn.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.stats.commits += 1;
                Ok(())
            }
            Err(e) => {
                self.stopped = true;
                self.stats.failed_writes += 1;
                Err(StoreError::Write(e.to_string()))
            }
        }
    }

    /// Make every later fsync fail, as a dying disk would (tests only).
    #[cfg(test)]
    pub(crate) fn fail_fsyncs(&self) {
        self.backend.fail_syncs.store(true, Ordering::Relaxed);
    }

    /// Start (`true`) or stop logging the file operations; stopping returns the log
    /// (tests only).
    #[cfg(test)]
    pub(crate) fn log_file_ops(&self, on: bool) -> Vec<BackendOp> {
        let mut log = self
            .backend
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let taken = log.take().unwrap_or_default();
        if on {
            *log = Some(Vec::new());
        }
        taken
    }
}

impl AcceptorStore for RedbStore {
    fn acceptor_id(&self) -> u64 {
        self.acceptor_id
    }

    fn load(&self) -> Result<Vec<Entry>, StoreError> {
        let read = |e: &dyn fmt::Display| StoreError::Read(e.to_string());
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let table = match txn.open_table(STATES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read(&e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| read(&e))? {
            let (k, v) = entry.map_err(|e| read(&e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn commit(&mut self, batch: &[Entry]) -> Result<CommitStats, StoreError> {
        if self.stopped {
            return Err(StoreError::Stopped);
        }
        if batch.is_empty() {
            return Ok(CommitStats::default());
        }
        let start = Instant::now();
        self.write(|txn| {
            let mut table = txn.open_table(STATES)?;
            for (key, state) in batch {
                table.insert(key.as_slice(), state.as_slice())?;
            }
            Ok(())
        })?;
        let stats = CommitStats {
            keys: batch.len(),
            bytes: batch.iter().map(|(k, v)| k.len() + v.len()).sum(),
            fsync: start.elapsed(),
        };
        self.stats.keys += stats.keys as u64;
        self.stats.bytes += stats.bytes as u64;
        Ok(stats)
    }

    fn root(&self) -> Result<Option<RootRecord>, StoreError> {
        let Some(bytes) = self.read_meta(META_ROOT)? else {
            return Ok(None);
        };
        decode_root(&bytes).map(Some)
    }

    fn set_root(&mut self, root: &RootRecord) -> Result<(), StoreError> {
        let bytes = encode_state(root)?;
        self.write(|txn| {
            txn.open_table(META)?.insert(META_ROOT, bytes.as_slice())?;
            Ok(())
        })
    }
}

fn db_reason(e: DatabaseError) -> String {
    match e {
        DatabaseError::DatabaseAlreadyOpen => "already open by another process".to_owned(),
        other => other.to_string(),
    }
}

/// What the store keeps of its backend: the fsync counter (and, in tests, a fault switch).
#[derive(Clone, Debug, Default)]
struct BackendHandle {
    syncs: Arc<AtomicU64>,
    fail_syncs: Arc<AtomicBool>,
    /// Tests only: when `Some`, every write, resize and fsync is logged (torn-write tests
    /// replay prefixes of it).
    #[cfg(test)]
    log: Arc<std::sync::Mutex<Option<Vec<BackendOp>>>>,
}

/// One operation on the store file, as the torn-write tests replay it.
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BackendOp {
    /// `write(offset, data)`.
    Write(u64, Vec<u8>),
    /// `set_len(len)`.
    SetLen(u64),
    /// `sync_data()`.
    Sync,
}

#[cfg(test)]
impl BackendHandle {
    fn record(&self, op: impl FnOnce() -> BackendOp) {
        if let Some(log) = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            log.push(op());
        }
    }
}

/// redb's file backend, counting fsyncs (and able to fail them in tests).
#[derive(Debug)]
struct CountingBackend {
    inner: FileBackend,
    handle: BackendHandle,
}

impl CountingBackend {
    fn new(inner: FileBackend) -> (Self, BackendHandle) {
        let handle = BackendHandle::default();
        let backend = Self {
            inner,
            handle: handle.clone(),
        };
        (backend, handle)
    }
}

impl StorageBackend for CountingBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        #[cfg(test)]
        self.handle.record(|| BackendOp::SetLen(len));
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.handle.fail_syncs.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()?;
        #[cfg(test)]
        self.handle.record(|| BackendOp::Sync);
        self.handle.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        #[cfg(test)]
        self.handle
            .record(|| BackendOp::Write(offset, data.to_vec()));
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// Whether [`RedbStore::open`] made a new store or found one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// No store was there (or an empty file from a creation that never finished): a new
    /// acceptor id was minted and fsynced.
    Created,
    /// An existing store was opened with its acceptor id and data.
    Existing,
}

#[cfg(test)]
#[path = "redb_store_tests.rs"]
mod tests;
