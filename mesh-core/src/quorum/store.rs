//! The acceptor's durable store: per-key acceptor states and the voter root record, fsynced
//! before any reply that reveals them.
//!
//! This is the IO shell of the quorum plane, not a state machine: it reads the clock (to
//! time commits) and touches the disk. The protocol code stays sans-IO; the only sans-IO
//! piece here is [`GroupCommit`], which turns an [`Acceptor`](super::Acceptor)'s outputs
//! into one batch and holds back the replies until that batch is durable.
//!
//! # Properties
//!
//! **Safety**
//!
//! - *Durable before visible*: [`AcceptorStore::commit`] and [`AcceptorStore::set_root`]
//!   return `Ok` only once the data is fsynced; [`GroupCommit::finish`] releases replies
//!   only for a batch whose commit returned `Ok`, and in the acceptor's output order. So no
//!   peer ever learns of a promise or an accept that a crash could take back.
//! - *Atomic batches*: a batch is one transaction — after a crash either all of its keys
//!   are durable or none are (redb's copy-on-write commit with checksums), and it costs one
//!   fsync however many keys it holds (group commit).
//! - *A failed write stops the store*: after any failed commit or `set_root`, every later
//!   write returns [`StoreError::Stopped`] and writes nothing. The shell must stop the
//!   process (the acceptor's memory may be ahead of the disk; only a restart from the
//!   durable state is safe).
//! - *Acceptor ids are never reused*: the id is minted from the injected RNG when the store
//!   is created and kept with the data, so a wiped directory comes back with a new id
//!   (the RNG must not repeat across wipes: seed it from OS entropy in the shell) and a
//!   restart keeps the old one.
//! - *Bad bytes are an error, never a panic*: undecodable data on load is
//!   [`StoreError::Corrupt`] naming the key; a damaged file fails to open (redb checks every
//!   page checksum on open).
//!
//! **Liveness**: none beyond the disk's; a commit blocks for one fsync.
//!
//! # Driving it
//!
//! ```
//! use mesh_core::quorum::store::{load_acceptor, AcceptorStore, GroupCommit, MemStore};
//! use mesh_core::quorum::*;
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let mut store = MemStore::new(&mut StdRng::seed_from_u64(1));
//! let id = NodeId(store.acceptor_id());
//! // At boot: rebuild the acceptor from what is durable.
//! let durable = load_acceptor::<String, u32>(&store).expect("readable store");
//! let mut acceptor: Acceptor<String, u32> = Acceptor::restore(id, 1, durable);
//!
//! let ballot = Ballot::first(NodeId(9), 1);
//! acceptor.handle_request(NodeId(9), Request::Prepare { key: "k".into(), epoch: 1, ballot });
//! // One turn of the shell: drain, write everything, fsync once, then reply in order.
//! let mut group = GroupCommit::new();
//! while let Some(out) = acceptor.poll_output() {
//!     group.push(out).expect("encodable"); // an error here: stop the process
//! }
//! let committed = store.commit(group.batch());
//! let replies = group.finish(&committed);
//! committed.expect("fsync succeeded"); // an error here: stop the process
//! assert_eq!(replies.len(), 1); // now send them, in this order
//! ```

use super::acceptor::{AcceptorOutput, AcceptorState};
use super::messages::{Envelope, Reply};
use super::root::RootRecord;
use rand::Rng;
use redb::backends::FileBackend;
use redb::{
    BackendError, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
    StorageBackend, TableDefinition, TableError,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One stored `(key, state)` pair, both encoded (see [`encode_key`], [`encode_state`]).
pub type Entry = (Vec<u8>, Vec<u8>);

/// The durable home of one acceptor: its id, its per-key states and the voter root record.
///
/// Keys and states are bytes, so the store does not depend on the register's types; use
/// [`encode_key`], [`encode_state`] and [`load_acceptor`] for the typed view.
///
/// **Contract** (every implementation): a write returns `Ok` only after its data is
/// durable (fsynced); a failed write stops the store (every later write returns
/// [`StoreError::Stopped`]); the acceptor id never changes for the life of the data and a
/// fresh store never gets the id of an earlier one.
pub trait AcceptorStore {
    /// This store's acceptor id, minted when the store was created and never reused.
    fn acceptor_id(&self) -> u64;

    /// Every durable `(key, state)` pair, in key order.
    fn load(&self) -> Result<Vec<Entry>, StoreError>;

    /// One durable write of many keys: returns only after the data is fsynced. A later
    /// entry for the same key wins. An empty batch writes nothing and succeeds.
    fn commit(&mut self, batch: &[Entry]) -> Result<CommitStats, StoreError>;

    /// The durable voter root record, if one was set.
    fn root(&self) -> Result<Option<RootRecord>, StoreError>;

    /// Replace the voter root record; returns only after it is fsynced.
    fn set_root(&mut self, root: &RootRecord) -> Result<(), StoreError>;
}

/// What one durable write did; the shell turns `fsync` into `mesh_quorum_fsync_seconds`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Entries written (a key repeated in the batch counts each time).
    pub keys: usize,
    /// Key and state bytes written.
    pub bytes: usize,
    /// Wall time of the whole durable write: the transaction and its fsync.
    pub fsync: Duration,
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

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened or created: the directory is not writable, the file
    /// is locked by another process, is not a redb file, or failed its integrity check.
    /// Nothing was changed; nothing is open.
    #[error("cannot open the acceptor store {path}: {reason}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A durable write failed (a failed fsync among others). The write may or may not be
    /// durable; no reply may reveal it. The store is now stopped and the process must stop.
    #[error("durable write failed, the process must stop: {0}")]
    Write(String),
    /// An earlier durable write failed; this write was refused and wrote nothing.
    #[error("the acceptor store stopped after a failed durable write; the process must stop")]
    Stopped,
    /// Reading the store failed. Nothing was changed.
    #[error("cannot read the acceptor store: {0}")]
    Read(String),
    /// The bytes stored under `key` cannot be decoded. Nothing was changed; the store
    /// needs an operator (restore it, or wipe it so that it comes back as a new acceptor).
    #[error("corrupt entry {key} in the acceptor store: {reason}")]
    Corrupt {
        /// The key, printed as its decoded value where possible, else as hex.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value could not be encoded. Nothing was written. As fatal as a failed write when
    /// it happens to an acceptor output (its reply can never be released).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's message.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------
// Encoding

/// The first byte of every encoded state: the format, so a later version can migrate.
const STATE_FORMAT: u8 = 1;

/// Encode a register key: compact MessagePack, so the same key always gives the same bytes
/// (use integers, strings, byte strings and tuples or structs of them; no hash maps).
pub fn encode_key<K: Serialize + ?Sized>(key: &K) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec(key).map_err(|e| StoreError::Encode {
        what: "a key",
        reason: e.to_string(),
    })
}

/// Encode a state (an [`AcceptorState`], a [`RootRecord`], ...): a format byte, then
/// MessagePack with field names (fields can be added later with `#[serde(default)]`).
pub fn encode_state<T: Serialize + ?Sized>(state: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![STATE_FORMAT];
    rmp_serde::encode::write_named(&mut out, state).map_err(|e| StoreError::Encode {
        what: "a state",
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Decode a state written by [`encode_state`]; `key` only names the entry in the error.
pub fn decode_state<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    decode_versioned(bytes).map_err(|reason| StoreError::Corrupt {
        key: describe_key(key),
        reason,
    })
}

/// Every durable acceptor state of `store`, decoded, ready for
/// [`Acceptor::restore`](super::Acceptor::restore). The first undecodable entry is a
/// [`StoreError::Corrupt`] naming its key.
pub fn load_acceptor<K, S>(
    store: &(impl AcceptorStore + ?Sized),
) -> Result<Vec<(K, AcceptorState<S>)>, StoreError>
where
    K: DeserializeOwned,
    S: DeserializeOwned,
{
    store
        .load()?
        .into_iter()
        .map(|(key, state)| {
            let k = rmp_serde::from_slice(&key).map_err(|e| StoreError::Corrupt {
                key: describe_key(&key),
                reason: format!("undecodable key: {e}"),
            })?;
            Ok((k, decode_state(&key, &state)?))
        })
        .collect()
}

fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        None => Err("empty value".to_owned()),
        Some((&STATE_FORMAT, body)) => rmp_serde::from_slice(body).map_err(|e| e.to_string()),
        Some((format, _)) => Err(format!(
            "unknown format {format} (this version reads {STATE_FORMAT})"
        )),
    }
}

/// A printable name for a stored key: its MessagePack value as JSON where it decodes
/// completely (`"shard-7"`, `7`, `[1,"a"]`), else hex (`0x…`).
fn describe_key(key: &[u8]) -> String {
    let mut cursor = std::io::Cursor::new(key);
    let decoded = serde_json::Value::deserialize(&mut rmp_serde::Deserializer::new(&mut cursor));
    match decoded {
        Ok(value) if usize::try_from(cursor.position()).ok() == Some(key.len()) => {
            value.to_string()
        }
        _ => {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// A fresh acceptor id: random, never 0 (0 is the node of [`Ballot::ZERO`](super::Ballot)).
fn mint_acceptor_id<R: Rng + ?Sized>(rng: &mut R) -> u64 {
    rng.next_u64().max(1)
}

// ---------------------------------------------------------------------------------------
// redb

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
        decode_versioned(&bytes)
            .map(Some)
            .map_err(|reason| StoreError::Corrupt {
                key: format!("meta/{META_ROOT}"),
                reason,
            })
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
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.handle.fail_syncs.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()?;
        self.handle.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
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

// ---------------------------------------------------------------------------------------
// In memory

/// An in-memory [`AcceptorStore`] for tests and the simulator, modelling a disk with a
/// page cache: a committed write is durable; the data of a failed write is readable by the
/// process that wrote it ([`AcceptorStore::load`]) but lost by [`MemStore::crash`].
#[derive(Clone, Debug)]
pub struct MemStore {
    acceptor_id: u64,
    durable: Vec<Entry>,
    root: Option<Vec<u8>>,
    unsynced: Vec<Entry>,
    fail_next: bool,
    stopped: bool,
    commits: u64,
}

impl MemStore {
    /// A new (or wiped) store with an acceptor id drawn from `rng`.
    pub fn new<R: Rng + ?Sized>(rng: &mut R) -> Self {
        Self {
            acceptor_id: mint_acceptor_id(rng),
            durable: Vec::new(),
            root: None,
            unsynced: Vec::new(),
            fail_next: false,
            stopped: false,
            commits: 0,
        }
    }

    /// What a restarted process finds: the durable data only, the same acceptor id, and a
    /// store that writes again.
    pub fn crash(&self) -> Self {
        Self {
            unsynced: Vec::new(),
            fail_next: false,
            stopped: false,
            ..self.clone()
        }
    }

    /// Make the next durable write fail like a failed fsync (its data stays unsynced).
    pub fn fail_next_write(&mut self) {
        self.fail_next = true;
    }

    /// Durable writes that succeeded.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Start a durable write: `Ok(true)` to apply it, `Ok(false)` if it fails now.
    fn begin(&mut self) -> Result<bool, StoreError> {
        if self.stopped {
            return Err(StoreError::Stopped);
        }
        if std::mem::take(&mut self.fail_next) {
            self.stopped = true;
            return Ok(false);
        }
        self.commits += 1;
        Ok(true)
    }
}

fn upsert(map: &mut Vec<Entry>, key: &[u8], value: &[u8]) {
    match map.binary_search_by(|(k, _)| k.as_slice().cmp(key)) {
        Ok(i) => map[i].1 = value.to_vec(),
        Err(i) => map.insert(i, (key.to_vec(), value.to_vec())),
    }
}

impl AcceptorStore for MemStore {
    fn acceptor_id(&self) -> u64 {
        self.acceptor_id
    }

    fn load(&self) -> Result<Vec<Entry>, StoreError> {
        let mut all = self.durable.clone();
        for (k, v) in &self.unsynced {
            upsert(&mut all, k, v);
        }
        Ok(all)
    }

    fn commit(&mut self, batch: &[Entry]) -> Result<CommitStats, StoreError> {
        if self.stopped {
            return Err(StoreError::Stopped);
        }
        if batch.is_empty() {
            return Ok(CommitStats::default());
        }
        if !self.begin()? {
            self.unsynced.extend(batch.iter().cloned());
            return Err(StoreError::Write("injected fsync failure".to_owned()));
        }
        for (k, v) in batch {
            upsert(&mut self.durable, k, v);
        }
        Ok(CommitStats {
            keys: batch.len(),
            bytes: batch.iter().map(|(k, v)| k.len() + v.len()).sum(),
            fsync: Duration::ZERO,
        })
    }

    fn root(&self) -> Result<Option<RootRecord>, StoreError> {
        self.root
            .as_deref()
            .map(|bytes| {
                decode_versioned(bytes).map_err(|reason| StoreError::Corrupt {
                    key: format!("meta/{META_ROOT}"),
                    reason,
                })
            })
            .transpose()
    }

    fn set_root(&mut self, root: &RootRecord) -> Result<(), StoreError> {
        let bytes = encode_state(root)?;
        if !self.begin()? {
            return Err(StoreError::Write("injected fsync failure".to_owned()));
        }
        self.root = Some(bytes);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Group commit

/// Counters a [`GroupCommit`] keeps; the shell publishes them as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batches whose commit succeeded.
    pub batches: u64,
    /// Entries in those batches.
    pub keys: u64,
    /// Persist outputs folded into a later one for the same key in the same batch.
    pub coalesced: u64,
    /// Replies released after a successful commit.
    pub released: u64,
    /// Replies dropped because their batch's commit failed.
    pub dropped_commit_failed: u64,
    /// Replies dropped because a state could not be encoded.
    pub dropped_encode_failed: u64,
    /// Outputs refused because the batcher had stopped (after a failed commit or encoding).
    pub dropped_stopped: u64,
}

/// Group commit for one acceptor, sans-IO: feed it the acceptor's outputs in order with
/// [`push`](Self::push), commit [`batch`](Self::batch), and hand the result to
/// [`finish`](Self::finish), which returns the replies to send — all of them, in output
/// order, if the commit succeeded; none if it failed.
///
/// Each key appears once per batch, with its latest state (states are whole, a later one
/// supersedes an earlier one). A failed commit or encoding stops the batcher for good:
/// like the store, it then refuses every output, because the process must stop.
#[derive(Debug)]
pub struct GroupCommit<K, S> {
    batch: Vec<Entry>,
    index: HashMap<Vec<u8>, usize>,
    replies: Vec<Envelope<Reply<K, S>>>,
    stopped: bool,
    stats: GroupCommitStats,
}

impl<K, S> Default for GroupCommit<K, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, S> GroupCommit<K, S> {
    /// An empty batcher.
    pub fn new() -> Self {
        Self {
            batch: Vec::new(),
            index: HashMap::new(),
            replies: Vec::new(),
            stopped: false,
            stats: GroupCommitStats::default(),
        }
    }

    /// The entries to commit in one durable write (empty if only replies are pending).
    pub fn batch(&self) -> &[Entry] {
        &self.batch
    }

    /// Replies waiting for the commit.
    pub fn pending_replies(&self) -> usize {
        self.replies.len()
    }

    /// The counters.
    pub fn stats(&self) -> GroupCommitStats {
        self.stats
    }

    /// End the batch with the result of committing [`batch`](Self::batch): on `Ok` the
    /// replies to send now, in order; on `Err` none (they are dropped, counted, and the
    /// batcher stops). The batcher is empty afterwards.
    pub fn finish<T>(&mut self, commit: &Result<T, StoreError>) -> Vec<Envelope<Reply<K, S>>> {
        let replies = std::mem::take(&mut self.replies);
        let keys = self.batch.len() as u64;
        self.batch.clear();
        self.index.clear();
        if commit.is_err() || self.stopped {
            self.stopped = true;
            self.stats.dropped_commit_failed += replies.len() as u64;
            return Vec::new();
        }
        self.stats.batches += u64::from(keys > 0);
        self.stats.keys += keys;
        self.stats.released += replies.len() as u64;
        replies
    }
}

impl<K: Serialize, S: Serialize> GroupCommit<K, S> {
    /// Add the acceptor's next output. An error (the state cannot be encoded, or the
    /// batcher stopped) drops its reply and every pending one, stops the batcher, and
    /// means: stop the process.
    pub fn push(&mut self, output: AcceptorOutput<K, S>) -> Result<(), StoreError> {
        if self.stopped {
            self.stats.dropped_stopped += 1;
            return Err(StoreError::Stopped);
        }
        let reply = match output {
            AcceptorOutput::Send(reply) => reply,
            AcceptorOutput::Persist { key, state, then } => {
                let encoded = encode_key(&key).and_then(|k| Ok((k, encode_state(&state)?)));
                let (key, state) = match encoded {
                    Ok(entry) => entry,
                    Err(e) => {
                        self.stopped = true;
                        self.stats.dropped_encode_failed += 1 + self.replies.len() as u64;
                        self.replies.clear();
                        self.batch.clear();
                        self.index.clear();
                        return Err(e);
                    }
                };
                match self.index.get(&key) {
                    Some(&i) => {
                        self.batch[i].1 = state;
                        self.stats.coalesced += 1;
                    }
                    None => {
                        self.index.insert(key.clone(), self.batch.len());
                        self.batch.push((key, state));
                    }
                }
                then
            }
        };
        self.replies.push(reply);
        Ok(())
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
