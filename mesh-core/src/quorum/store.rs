//! The acceptor's durable store: per-key acceptor states and the voter root record, fsynced
//! before any reply that reveals them.
//!
//! This module is the store's *contract*, as raft-rs keeps storage a trait: the
//! [`AcceptorStore`] trait, the byte encoding of keys, states and the root record
//! ([`encode_key`], [`encode_state`], [`load_acceptor`]), [`StoreError`], the in-memory
//! [`MemStore`] the simulator runs, and [`GroupCommit`], the sans-IO piece that turns an
//! [`Acceptor`](super::Acceptor)'s outputs into one batch and holds back the replies until
//! that batch is durable. The production store, which reads the clock (to time commits)
//! and touches the disk, is the shell's: `RedbStore` in `mesh-agent` (one redb file).
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
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

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
/// Every [`AcceptorStore`] mints its id here when it creates a store.
pub fn mint_acceptor_id<R: Rng + ?Sized>(rng: &mut R) -> u64 {
    rng.next_u64().max(1)
}

/// The name of the voter root record in errors ([`StoreError::Corrupt`]'s `key`).
pub const ROOT_KEY: &str = "meta/root";

/// Decode a voter root record written by [`encode_state`]; an undecodable one is
/// [`StoreError::Corrupt`] naming [`ROOT_KEY`].
pub fn decode_root(bytes: &[u8]) -> Result<RootRecord, StoreError> {
    decode_versioned(bytes).map_err(|reason| StoreError::Corrupt {
        key: ROOT_KEY.to_owned(),
        reason,
    })
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
        self.root.as_deref().map(decode_root).transpose()
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
