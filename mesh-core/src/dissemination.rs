//! The CRDT dissemination scheduler: which delta bytes go where, and when.
//!
//! Sans-IO, like [`crate::membership`]. The node hands in delta bytes with
//! [`Dissemination::push`], membership changes with [`Dissemination::set_peers`], each
//! outgoing SWIM packet with [`Dissemination::wrap_datagram`] (which returns the datagram
//! to send) and timer ticks with [`Dissemination::handle_tick`], every one with an
//! explicit `now`; it drains [`DisseminationOutput`]s with
//! [`Dissemination::poll_output`] and sleeps until [`Dissemination::poll_timeout`]. No
//! clock, no IO; randomness comes only from the seeded RNG given to
//! [`Dissemination::new`]. The scheduler sees bytes, never CRDTs: the node encodes the
//! deltas, merges what arrives, and runs the anti-entropy exchanges.
//!
//! # Three paths
//!
//! ```text
//!  push(channel, item) ──┬─ len ≤ piggyback_max_item ─> piggyback queue (per channel)
//!                        │      wrap_datagram(to, swim) fills the room the SWIM packet left
//!                        │      (byte-fair queuing over channels)  ──> one QUIC datagram
//!                        └─ larger ──────────────────> batch buffer (per channel)
//!                               every batch_interval: one frame of ≤ batch_max_bytes to each
//!                               of fanout(n) random live peers (same fair queuing) ──> Batch
//!  every anti_entropy_interval (and on request) ─────────────────────────> AntiEntropy
//! ```
//!
//! A datagram is `[kind/version 0x11][swim_len u16][item count u16][swim][items]`; a batch
//! frame is `[kind/version 0x21][item count u16][items]`; an item is
//! `[channel u8][len u16][len bytes]`, `len ≥ 1`, integers big-endian. The high nibble of
//! the first byte is the kind (1 datagram, 2 batch), the low nibble the version.
//!
//! **Rumor mongering** is the node's half of the bargain: an item received on either path
//! whose merge changed local state is pushed again, so it spreads epidemically; one that
//! changed nothing is not. Lost items are repaired by anti-entropy, which is why a
//! bounded number of transmissions and the overflow drop below are safe.
//!
//! # Properties
//!
//! `n` is the number of live peers (this node excluded) given to `set_peers`, so the
//! cluster has `N = n + 1` nodes; `transmissions(n) = max(floor, multiplier ·
//! ⌈log10(N + 1)⌉)` (memberlist's retransmit rule for SWIM updates: 8 sends with the
//! defaults in a cluster of 10 to 99 nodes) and `fanout(n) = min(n, max(1,
//! ⌈log2(n + 1)⌉))`.
//!
//! Safety:
//! - **S1 size bound.** Every datagram [`Dissemination::wrap_datagram`] returns is at most
//!   [`MAX_DATAGRAM`] bytes; every batch frame at most `batch_max_bytes`. Items are never
//!   split: an item that does not fit waits.
//! - **S2 nothing vanishes.** Per channel, at every moment,
//!   `pushed = queued_items + retired + dropped_overflow` ([`ChannelStats`]). An accepted
//!   item leaves its queue only by *retiring* — after it was sent to `transmissions(n)`
//!   distinct peers, or to every live peer, whichever comes first — or by the overflow
//!   drop. The **overflow drop is the only drop**: when a queue would exceed
//!   `queue_max_bytes`, its *oldest* items go and are counted in `dropped_overflow`;
//!   anti-entropy repairs what they carried. An item with no room, no peer, or no peer
//!   that still needs it waits.
//! - **S3 never twice to one peer.** An item is sent at most once to any one peer (on
//!   either path), so its transmissions reach distinct peers; once every live peer got it
//!   there is no one left to tell and it retires.
//! - **S4 bounded memory.** Each channel's piggyback queue and batch buffer each hold at
//!   most `queue_max_bytes` of item bytes.
//! - **S5 parsing is total.** [`unwrap_datagram`](Dissemination::unwrap_datagram) and
//!   [`decode_batch`] never panic; any input that is not exactly an encoding — a strict
//!   prefix (truncation), trailing bytes, an unknown kind or version, an empty item — is
//!   an error with a reason. Bad calls ([`PushError`], [`WrapError`]) change nothing but a
//!   counter.
//! - **S6 determinism.** Outputs depend only on the seed and the inputs (no hash-order
//!   iteration, no clock).
//!
//! Fairness and liveness:
//! - **F1 fair shares (byte-fair queuing).** Each lane keeps, per channel, the wire
//!   bytes (items with headers) it has served. A fill — one datagram, or one batch frame
//!   — repeatedly gives the room to the *least-served* channel that has an item it may
//!   send there (not yet sent to this peer, small enough for the room left; a channel's
//!   items go in queue order), ties going round robin, until nothing fits. Before a fill,
//!   a channel with items for the peer that lags more than the lag window
//!   `L = 2 · M` (`M` = the lane's largest item plus [`ITEM_HEADER`]) behind the
//!   most-served one is raised to `L` behind it, the shortfall counted in
//!   `lag_forgiven_bytes`. Hence:
//!   - *work conservation*: after a fill no eligible item fits the room left — room one
//!     channel cannot use goes to the others;
//!   - *long-run fairness*: channels that have items for every fill are served equal
//!     bytes over time: the totals of two of them differ by at most
//!     `L + M` plus what was forgiven to them; a datagram tail one channel could not
//!     use (its item was too big for it) is paid back in the next fill;
//!   - *bounded catch-up*: a channel that was idle or blocked gets priority for at most
//!     `L + M` bytes, so within one datagram two such channels' shares differ by at
//!     most `L + 2 · M`;
//!   - *no starvation by a flood*: the other `k − 1` channels, however many items they
//!     have queued, take at most `(k − 1) · (L + M)` bytes of a datagram before a
//!     channel's first waiting item, and none when that channel is the least served (as
//!     one that was idle is): then the item goes into the next datagram with room for
//!     it.
//!
//!   Why not deficit round robin: DRR assumes one continuous link. Over datagrams of
//!   varying room, a turn's quantum is often granted just before the room runs out; the
//!   credit is banked, has to be capped, and the truncated credit makes shares drift
//!   apart without bound (a random walk: in a one-off experiment over 300 random
//!   channel mixes × 500 datagrams, DRR's totals drifted up to 160 × `M` apart, the
//!   served counters' at most 2.2 × `M`). Per-datagram DRR that forfeits unused credit
//!   is bounded but biased: it hands every datagram's tail to the channel with the
//!   smaller items (63 % against 37 % for 30- and 200-byte items).
//! - **F2 waiting items go.** An item waits only for room, or for a peer it has not
//!   reached. Its channel's served count does not grow while it waits, so the channel
//!   soon becomes the least served and the item goes into the next datagram, to such a
//!   peer, with room for it; a batch item goes in the next batch round that picks a peer
//!   it has not reached (at most `batch_max_bytes` per peer and round; the rest waits for
//!   the next round).
//! - **F3 anti-entropy visits everyone.** Anti-entropy partners come from a ring of the
//!   live peers in random order (new peers are inserted at random places, departed ones
//!   removed): while the peers stay the same, any `n` consecutive periodic rounds visit
//!   every peer exactly once. [`request_anti_entropy`](Dissemination::request_anti_entropy)
//!   adds an immediate round with a given peer.
//! - **F4 convergence without broadcasts.** Because of F3 and push-pull exchanges, state
//!   converges even when every datagram trailer and batch frame is lost
//!   (`tests/dissemination_sim.rs`).
//! - **D1 direct push.** With `direct_max_peers ≥ n`, an item made here
//!   ([`push_own`](Dissemination::push_own)) on the batch path is sent to every live peer
//!   — each batch round with such an item waiting picks all `n` peers, in random order —
//!   and retires only once every live peer has it (it is exempt from `transmissions(n)`;
//!   S2 and S3 hold as stated otherwise). A join is then one hop from everyone, as in
//!   Erlang `pg`, at the cost of `n` frames per local change. Relayed items keep the
//!   gossip limit, and small ones are not batched eagerly then (they ride datagrams
//!   only: every peer already got the item from its origin); a frame that was lost is
//!   made up for by those datagrams and by anti-entropy.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The largest datagram payload this module produces or accepts: what quinn carries in
/// the first datagram of a connection (1162 bytes before path MTU discovery, less
/// overhead) minus the transport's one-byte version tag. See
/// [`crate::membership::MAX_PACKET_SIZE`].
pub const MAX_DATAGRAM: usize = 1160;

/// Kind/version byte of a datagram (kind 1, version 1).
pub const DATAGRAM_V1: u8 = 0x11;
/// Kind/version byte of a batch frame (kind 2, version 1).
pub const BATCH_V1: u8 = 0x21;
/// Bytes in front of the SWIM packet in a datagram: kind/version, SWIM length, item count.
pub const DATAGRAM_HEADER: usize = 5;
/// Bytes in front of the items of a batch frame: kind/version, item count.
pub const BATCH_HEADER: usize = 3;
/// Bytes in front of each item: channel and length.
pub const ITEM_HEADER: usize = 3;
/// The largest SWIM packet a datagram can wrap.
pub const MAX_SWIM: usize = MAX_DATAGRAM - DATAGRAM_HEADER;
/// The largest `batch_max_bytes`: half the transport's frame limit, leaving room for the
/// node's envelope around the frame.
pub const MAX_BATCH_BYTES: usize = mesh_types::frame::DEFAULT_MAX_FRAME / 2;
// Every SWIM packet the membership layer may build can be wrapped.
const _: () = assert!(crate::membership::MAX_PACKET_SIZE <= MAX_SWIM);

/// The most items one datagram or frame carries (its count field is a `u16`).
const MAX_ITEMS: usize = u16::MAX as usize;

/// A subsystem whose deltas share the dissemination budget (the node registers, e.g.,
/// groups = 0, names = 1). Items are tagged with it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u8);

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "channel {}", self.0)
    }
}

/// How many distinct peers a piggyback or batch item is sent to before it retires:
/// `max(floor, multiplier · ⌈log10(N + 1)⌉)` in a cluster of `N` nodes (this one and its
/// live peers), as memberlist retransmits SWIM updates. It also retires once every live
/// peer has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmissions {
    /// Sends per decade of cluster size.
    pub multiplier: u32,
    /// The least number of sends, whatever the cluster size (at least 1).
    pub floor: u32,
}

impl Transmissions {
    /// The number of transmissions for `live_peers` live peers, a cluster of
    /// `live_peers + 1` nodes.
    pub fn for_peers(self, live_peers: usize) -> usize {
        // ⌈log10(N + 1)⌉ for N = live_peers + 1 nodes = the number of decimal digits of N.
        let mut digits = 0usize;
        let mut rest = live_peers.saturating_add(1);
        while rest > 0 {
            digits += 1;
            rest /= 10;
        }
        let scaled = (self.multiplier as usize).saturating_mul(digits);
        scaled.max(self.floor as usize)
    }
}

impl Default for Transmissions {
    fn default() -> Self {
        Self {
            multiplier: 4,
            floor: 3,
        }
    }
}

/// How many random live peers receive each batch round: `⌈log2(n + 1)⌉`, at least 1,
/// at most `n`.
pub fn fanout(live_peers: usize) -> usize {
    // ⌈log2(n + 1)⌉ = number of binary digits of n.
    let bits = (usize::BITS - live_peers.leading_zeros()) as usize;
    bits.max(1).min(live_peers)
}

/// Scheduler settings. [`Dissemination::new`] validates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisseminationConfig {
    /// Items up to this many bytes ride SWIM datagrams; larger ones are batched. With its
    /// item header an item must fit an otherwise empty datagram:
    /// `1..=MAX_SWIM - ITEM_HEADER`.
    pub piggyback_max_item: usize,
    /// How many distinct peers each item is sent to.
    pub transmissions: Transmissions,
    /// How often batched items are sent.
    pub batch_interval: Duration,
    /// The largest batch frame. Must hold one item larger than `piggyback_max_item`;
    /// at most [`MAX_BATCH_BYTES`].
    pub batch_max_bytes: usize,
    /// How often a periodic anti-entropy round starts; `None` disables them (only
    /// [`Dissemination::request_anti_entropy`] starts rounds).
    pub anti_entropy_interval: Option<Duration>,
    /// Bound on each channel's piggyback queue and on each channel's batch buffer, in
    /// item bytes. Must hold the largest accepted item.
    pub queue_max_bytes: usize,
    /// Also batch small items (they still ride SWIM datagrams too): an item then goes
    /// out at the next batch round instead of waiting for SWIM traffic, which foca only
    /// sends on its probe period when membership is quiet. Costs a second copy of each
    /// small item; each copy counts in `pushed`.
    pub eager: bool,
    /// Direct push: while there are at most this many live peers, an item made here
    /// ([`Dissemination::push_own`]) that goes on the batch path is sent to *every*
    /// live peer (one hop, as Erlang `pg` does) instead of `transmissions(n)` of them;
    /// relayed items keep the gossip limit. 0 turns it off.
    pub direct_max_peers: usize,
}

impl Default for DisseminationConfig {
    fn default() -> Self {
        Self {
            piggyback_max_item: 256,
            transmissions: Transmissions::default(),
            batch_interval: Duration::from_millis(100),
            batch_max_bytes: 64 * 1024,
            anti_entropy_interval: Some(Duration::from_secs(1)),
            queue_max_bytes: 256 * 1024,
            eager: false,
            direct_max_peers: 0,
        }
    }
}

impl DisseminationConfig {
    /// The largest item a batch frame can carry, hence the largest item accepted.
    pub fn max_item(&self) -> usize {
        self.batch_max_bytes
            .saturating_sub(BATCH_HEADER + ITEM_HEADER)
            .min(u16::MAX as usize)
    }

    /// Checks every setting; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let max = MAX_SWIM - ITEM_HEADER;
        if !(1..=max).contains(&self.piggyback_max_item) {
            return Err(ConfigError::PiggybackMaxItem {
                value: self.piggyback_max_item,
                max,
            });
        }
        if self.transmissions.floor == 0 {
            return Err(ConfigError::TransmissionsFloor);
        }
        if self.batch_interval.is_zero() {
            return Err(ConfigError::BatchInterval);
        }
        let min = BATCH_HEADER + ITEM_HEADER + self.piggyback_max_item + 1;
        if !(min..=MAX_BATCH_BYTES).contains(&self.batch_max_bytes) {
            return Err(ConfigError::BatchMaxBytes {
                value: self.batch_max_bytes,
                min,
                max: MAX_BATCH_BYTES,
            });
        }
        if self.anti_entropy_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::AntiEntropyInterval);
        }
        if self.queue_max_bytes < self.max_item() {
            return Err(ConfigError::QueueMaxBytes {
                value: self.queue_max_bytes,
                min: self.max_item(),
            });
        }
        Ok(())
    }
}

/// Why [`Dissemination::new`] refused its configuration. Nothing was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `piggyback_max_item` is 0 or an item that large cannot fit a datagram.
    #[error("piggyback_max_item: {value} is outside 1..={max} bytes (an item and its {ITEM_HEADER}-byte header must fit an otherwise empty datagram)")]
    PiggybackMaxItem {
        /// The configured value.
        value: usize,
        /// The largest allowed value.
        max: usize,
    },
    /// `transmissions.floor` is 0: items would retire unsent.
    #[error("transmissions.floor: must be at least 1")]
    TransmissionsFloor,
    /// `batch_interval` is zero.
    #[error("batch_interval: must be longer than zero")]
    BatchInterval,
    /// `batch_max_bytes` cannot hold an item larger than `piggyback_max_item`, or
    /// exceeds [`MAX_BATCH_BYTES`].
    #[error("batch_max_bytes: {value} is outside {min}..={max} bytes (a frame must hold one item larger than piggyback_max_item and fit a transport frame)")]
    BatchMaxBytes {
        /// The configured value.
        value: usize,
        /// The smallest allowed value.
        min: usize,
        /// The largest allowed value.
        max: usize,
    },
    /// `anti_entropy_interval` is zero (use `None` to disable periodic rounds).
    #[error("anti_entropy_interval: must be longer than zero, or unset to disable")]
    AntiEntropyInterval,
    /// `queue_max_bytes` cannot hold the largest accepted item.
    #[error("queue_max_bytes: {value} is below {min} bytes, the largest accepted item")]
    QueueMaxBytes {
        /// The configured value.
        value: usize,
        /// The smallest allowed value.
        min: usize,
    },
    /// `channels` is empty.
    #[error("channels: at least one channel must be registered")]
    NoChannels,
    /// `channels` names the same id twice.
    #[error("channels: {0} is registered twice")]
    DuplicateChannel(ChannelId),
}

/// Why [`Dissemination::push`] refused an item. Nothing was queued; the refusal is
/// counted (`rejected` of the channel, or `rejected_unknown_channel`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The channel was not registered in [`Dissemination::new`].
    #[error("{0} is not registered")]
    UnknownChannel(ChannelId),
    /// An empty item carries nothing and has no encoding.
    #[error("empty item")]
    Empty,
    /// The item is larger than a batch frame can carry ([`DisseminationConfig::max_item`]);
    /// cut the delta into smaller chunks.
    #[error("item of {len} bytes exceeds the largest item, {max} bytes")]
    TooLarge {
        /// The item's length.
        len: usize,
        /// The largest accepted length.
        max: usize,
    },
}

/// Why [`Dissemination::wrap_datagram`] refused a SWIM packet. Nothing was sent and no
/// item was taken from its queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// The SWIM packet alone does not fit a datagram (the membership packet budget is
    /// larger than [`MAX_SWIM`]).
    #[error("SWIM packet of {len} bytes exceeds the {max} bytes a datagram can wrap")]
    SwimTooLarge {
        /// The packet's length.
        len: usize,
        /// [`MAX_SWIM`].
        max: usize,
    },
}

/// What is wrong with the items of a datagram trailer or a batch frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// Fewer than [`ITEM_HEADER`] bytes where an item header should start.
    #[error("item {index}: truncated header")]
    TruncatedHeader {
        /// The item's position in the list.
        index: usize,
    },
    /// The item's length runs past the end of the input.
    #[error("item {index}: {len} bytes announced, {remaining} left")]
    Truncated {
        /// The item's position in the list.
        index: usize,
        /// The announced length.
        len: usize,
        /// The bytes left in the input.
        remaining: usize,
    },
    /// A zero-length item (never produced).
    #[error("item {index}: empty")]
    Empty {
        /// The item's position in the list.
        index: usize,
    },
    /// Bytes after the announced number of items.
    #[error("{len} bytes after the last item")]
    TrailingBytes {
        /// How many.
        len: usize,
    },
}

/// Why [`Dissemination::unwrap_datagram`] refused a datagram. Nothing of it should be
/// used; the caller counts the drop with [`reason`](Self::reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Larger than [`MAX_DATAGRAM`].
    #[error("datagram of {len} bytes exceeds {MAX_DATAGRAM}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Shorter than the [`DATAGRAM_HEADER`].
    #[error("datagram of {len} bytes is shorter than its header")]
    TruncatedHeader {
        /// Its length.
        len: usize,
    },
    /// The first byte is not [`DATAGRAM_V1`] (another kind, or a newer version).
    #[error("unknown datagram kind/version {0:#04x}")]
    UnknownVersion(u8),
    /// The SWIM length runs past the end of the datagram.
    #[error("SWIM packet of {len} bytes announced, {available} available")]
    TruncatedSwim {
        /// The announced length.
        len: usize,
        /// The bytes after the header.
        available: usize,
    },
    /// The trailer is malformed.
    #[error("trailer: {0}")]
    Trailer(ItemError),
}

impl DatagramError {
    /// A short label for a drop counter.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::TruncatedHeader { .. } | Self::TruncatedSwim { .. } => "truncated",
            Self::UnknownVersion(_) => "unknown_version",
            Self::Trailer(_) => "malformed_trailer",
        }
    }
}

/// Why [`decode_batch`] refused a frame. Nothing of it should be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Shorter than the [`BATCH_HEADER`].
    #[error("batch frame of {len} bytes is shorter than its header")]
    TruncatedHeader {
        /// Its length.
        len: usize,
    },
    /// The first byte is not [`BATCH_V1`].
    #[error("unknown batch kind/version {0:#04x}")]
    UnknownVersion(u8),
    /// The items are malformed.
    #[error("items: {0}")]
    Items(ItemError),
}

/// Why [`encode_batch`] refused its items. Nothing was encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeBatchError {
    /// An item is empty or longer than `u16::MAX` bytes.
    #[error("item {index} has {len} bytes, outside 1..=65535")]
    ItemLength {
        /// The item's position.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// More than `u16::MAX` items.
    #[error("{0} items exceed 65535 per frame")]
    TooManyItems(usize),
}

/// What the node must do for the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisseminationOutput {
    /// Send this batch frame (decode with [`decode_batch`]) to `to` on a State-class
    /// stream.
    Batch {
        /// The peer.
        to: String,
        /// The encoded frame.
        frame: Bytes,
    },
    /// Run one push-pull anti-entropy exchange with `with` (the node does the digest work).
    AntiEntropy {
        /// The peer.
        with: String,
    },
}

/// Counters of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    /// The channel.
    pub id: ChannelId,
    /// Its name, as registered (a metric label).
    pub name: &'static str,
    /// Items accepted by `push`.
    pub pushed: u64,
    /// Items refused by `push` (empty or too large).
    pub rejected: u64,
    /// Item sends on datagrams (one per item and datagram).
    pub piggybacked_sends: u64,
    /// Item bytes sent on datagrams (headers excluded).
    pub piggybacked_bytes: u64,
    /// Item sends in batch frames (one per item and destination).
    pub batched_sends: u64,
    /// Item bytes sent in batch frames (headers excluded).
    pub batched_bytes: u64,
    /// Items that left a queue after their last transmission.
    pub retired: u64,
    /// Wire bytes of fair share this channel was owed but forgiven, because it fell more
    /// than the lag window behind the most-served channel (it was idle, or its items did
    /// not fit the room, while others sent). Not a drop: nothing is lost, it only loses
    /// priority it would otherwise have had.
    pub lag_forgiven_bytes: u64,
    /// Items dropped because a queue overflowed (the oldest go first). The only drop.
    pub dropped_overflow: u64,
    /// Bytes of those items.
    pub dropped_overflow_bytes: u64,
    /// Items queued now (piggyback and batch).
    pub queued_items: u64,
    /// Item bytes queued now (piggyback and batch).
    pub queued_bytes: u64,
}

/// Counters of the scheduler; the shell publishes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisseminationStats {
    /// Per channel, in registration order.
    pub channels: Vec<ChannelStats>,
    /// Pushes to a channel that was never registered (refused).
    pub rejected_unknown_channel: u64,
    /// Datagrams wrapped.
    pub datagrams: u64,
    /// SWIM packets refused by `wrap_datagram` (too large to wrap).
    pub datagrams_refused: u64,
    /// Trailer bytes added to datagrams (items with their headers).
    pub trailer_bytes: u64,
    /// Batch rounds run.
    pub batch_rounds: u64,
    /// Batch rounds that found no live peer (their items wait).
    pub batch_rounds_without_peers: u64,
    /// Batch frames emitted.
    pub batch_frames: u64,
    /// Anti-entropy rounds started (periodic and requested).
    pub anti_entropy_rounds: u64,
    /// Of those, started by `request_anti_entropy`.
    pub anti_entropy_requested: u64,
    /// Periodic anti-entropy rounds skipped for lack of a live peer.
    pub anti_entropy_without_peers: u64,
}

/// The two queues of every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Piggyback = 0,
    Batch = 1,
}

#[derive(Debug, Clone)]
struct Item {
    /// `1..=max_item` bytes (at most `u16::MAX`), checked at push.
    bytes: Bytes,
    /// The peers it was sent to, each once (S3); its transmissions so far.
    sent_to: Vec<String>,
    /// Made here and to be pushed to every live peer (batch lane, direct push).
    direct: bool,
}

impl Item {
    fn wire_len(&self) -> usize {
        ITEM_HEADER + self.bytes.len()
    }
}

#[derive(Debug, Clone, Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Sum of the items' lengths.
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Channel {
    id: ChannelId,
    queues: [Queue; 2],
    /// Per lane, the wire bytes this channel has been served (the fairness clock; see
    /// `fill`).
    served: [u64; 2],
}

/// The dissemination scheduler. See the [module docs](self) for its properties.
#[derive(Debug)]
pub struct Dissemination {
    config: DisseminationConfig,
    channels: Vec<Channel>,
    stats: DisseminationStats,
    rng: StdRng,
    /// Live peers, sorted and distinct.
    peers: Vec<String>,
    /// Per lane: where ties between equally served channels start in the next fill.
    tie_break: [usize; 2],
    /// Anti-entropy partners in visiting order (F3), and the next one's position.
    ring: Vec<String>,
    ring_next: usize,
    /// Set by the first input: the clock starts then.
    started: bool,
    batch_due: Option<Instant>,
    anti_entropy_due: Option<Instant>,
    outputs: VecDeque<DisseminationOutput>,
}

impl Dissemination {
    /// A scheduler for `channels` (id and metric name; ties between equally served
    /// channels go round robin in this order), with its RNG seeded by `rng_seed`.
    pub fn new(
        config: DisseminationConfig,
        channels: &[(ChannelId, &'static str)],
        rng_seed: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if channels.is_empty() {
            return Err(ConfigError::NoChannels);
        }
        for (i, (id, _)) in channels.iter().enumerate() {
            if channels[..i].iter().any(|(other, _)| other == id) {
                return Err(ConfigError::DuplicateChannel(*id));
            }
        }
        let stats = DisseminationStats {
            channels: channels
                .iter()
                .map(|&(id, name)| ChannelStats {
                    id,
                    name,
                    pushed: 0,
                    rejected: 0,
                    piggybacked_sends: 0,
                    piggybacked_bytes: 0,
                    batched_sends: 0,
                    batched_bytes: 0,
                    retired: 0,
                    lag_forgiven_bytes: 0,
                    dropped_overflow: 0,
                    dropped_overflow_bytes: 0,
                    queued_items: 0,
                    queued_bytes: 0,
                })
                .collect(),
            ..DisseminationStats::default()
        };
        Ok(Self {
            config,
            channels: channels
                .iter()
                .map(|&(id, _)| Channel {
                    id,
                    queues: [Queue::default(), Queue::default()],
                    served: [0, 0],
                })
                .collect(),
            stats,
            rng: StdRng::seed_from_u64(rng_seed),
            peers: Vec::new(),
            tie_break: [0, 0],
            ring: Vec::new(),
            ring_next: 0,
            started: false,
            batch_due: None,
            anti_entropy_due: None,
            outputs: VecDeque::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &DisseminationConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &DisseminationStats {
        &self.stats
    }

    /// The live peers (sorted), as last given to [`set_peers`](Self::set_peers).
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// Replaces the set of live peers (this node excluded; duplicates and empty names
    /// are ignored). It drives the batch fanout, the anti-entropy ring and
    /// `transmissions(n)`; items that now have enough transmissions, or that every live
    /// peer has, retire.
    pub fn set_peers(&mut self, now: Instant, live_peers: &[String]) {
        self.start(now);
        let mut peers: Vec<String> = live_peers
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect();
        peers.sort();
        peers.dedup();

        // The ring: drop departed peers, keeping the position; insert new ones at random
        // places (so each is visited within one turn of the ring).
        let next = self.ring_next;
        let mut index = 0;
        let mut kept_before_next = 0;
        self.ring.retain(|p| {
            let keep = peers.binary_search(p).is_ok();
            if keep && index < next {
                kept_before_next += 1;
            }
            index += 1;
            keep
        });
        self.ring_next = kept_before_next;
        let known: BTreeSet<String> = self.ring.iter().cloned().collect();
        for peer in peers.iter().filter(|p| !known.contains(*p)) {
            let at = self.rng.random_range(0..=self.ring.len());
            self.ring.insert(at, peer.clone());
            if at < self.ring_next {
                self.ring_next += 1;
            }
        }
        if self.ring_next >= self.ring.len() {
            self.ring_next = 0;
        }

        self.peers = peers;
        for c in 0..self.channels.len() {
            for lane in [Lane::Piggyback, Lane::Batch] {
                self.retire(c, lane);
            }
        }
    }

    /// Queues a delta to spread: one made here, or one received that changed local state
    /// (rumor mongering). Items up to `piggyback_max_item` bytes go to the channel's
    /// piggyback queue, larger ones to its batch buffer; if that overflows
    /// `queue_max_bytes`, its oldest items are dropped and counted.
    pub fn push(&mut self, now: Instant, channel: ChannelId, item: Bytes) -> Result<(), PushError> {
        self.push_item(now, channel, item, false)
    }

    /// [`push`](Self::push) for a delta made on this node: with
    /// [`DisseminationConfig::direct_max_peers`] set and at most that many live peers,
    /// its batch copy goes to every live peer (D1 in the module docs).
    pub fn push_own(
        &mut self,
        now: Instant,
        channel: ChannelId,
        item: Bytes,
    ) -> Result<(), PushError> {
        self.push_item(now, channel, item, true)
    }

    fn push_item(
        &mut self,
        now: Instant,
        channel: ChannelId,
        item: Bytes,
        own: bool,
    ) -> Result<(), PushError> {
        self.start(now);
        let Some(c) = self.channels.iter().position(|ch| ch.id == channel) else {
            self.stats.rejected_unknown_channel += 1;
            return Err(PushError::UnknownChannel(channel));
        };
        let max = self.config.max_item();
        let len = item.len();
        if len == 0 {
            self.stats.channels[c].rejected += 1;
            return Err(PushError::Empty);
        }
        // `max_item` is at most `u16::MAX`, the wire limit.
        if len > max {
            self.stats.channels[c].rejected += 1;
            return Err(PushError::TooLarge { len, max });
        }
        let small = len <= self.config.piggyback_max_item;
        if small {
            self.enqueue(c, Lane::Piggyback, item.clone(), false);
        }
        // While direct push is on (D1) every peer got an own item from its origin, so a
        // small relayed one only rides datagrams: eager batching of relays would send
        // each change n·transmissions(n) more frames that almost nobody needs.
        let eager = self.config.eager && (own || !self.direct_active());
        if !small || eager {
            if self.batch_is_empty() {
                self.batch_due = Some(now + self.config.batch_interval);
            }
            let direct = own && self.config.direct_max_peers > 0;
            self.enqueue(c, Lane::Batch, item, direct);
        }
        Ok(())
    }

    /// Queues an accepted item in one lane, dropping (and counting) the oldest items of
    /// that lane if it overflows.
    fn enqueue(&mut self, c: usize, lane: Lane, item: Bytes, direct: bool) {
        let len = item.len();
        let queue_max = self.config.queue_max_bytes;
        let queue = &mut self.channels[c].queues[lane as usize];
        queue.items.push_back(Item {
            bytes: item,
            sent_to: Vec::new(),
            direct,
        });
        queue.bytes += len;
        let stats = &mut self.stats.channels[c];
        stats.pushed += 1;
        // `queue_max_bytes >= max_item`, so the new item itself always stays.
        while queue.bytes > queue_max {
            let Some(oldest) = queue.items.pop_front() else {
                break;
            };
            queue.bytes -= oldest.bytes.len();
            stats.dropped_overflow += 1;
            stats.dropped_overflow_bytes += oldest.bytes.len() as u64;
        }
        self.refresh_queued(c);
    }

    /// Wraps a SWIM packet for `to` into a datagram of at most [`MAX_DATAGRAM`] bytes,
    /// filling the room the packet leaves with piggyback items not yet sent to `to`,
    /// shared fairly across channels (F1). Items that do not fit wait.
    pub fn wrap_datagram(
        &mut self,
        now: Instant,
        to: &str,
        swim: &[u8],
    ) -> Result<Bytes, WrapError> {
        self.start(now);
        let Some(room) = MAX_SWIM.checked_sub(swim.len()) else {
            self.stats.datagrams_refused += 1;
            return Err(WrapError::SwimTooLarge {
                len: swim.len(),
                max: MAX_SWIM,
            });
        };
        let picks = self.fill(Lane::Piggyback, to, room);
        let trailer: usize = picks.iter().map(|(_, item)| ITEM_HEADER + item.len()).sum();
        let mut out = BytesMut::with_capacity(DATAGRAM_HEADER + swim.len() + trailer);
        out.put_u8(DATAGRAM_V1);
        // Both fit: swim.len() <= MAX_SWIM and picks.len() <= MAX_ITEMS.
        out.put_u16(swim.len() as u16);
        out.put_u16(picks.len() as u16);
        out.put_slice(swim);
        write_items(&mut out, &picks);
        self.stats.datagrams += 1;
        self.stats.trailer_bytes += trailer as u64;
        Ok(out.freeze())
    }

    /// Splits a received datagram into its SWIM packet and its items. Never panics;
    /// anything but an exact encoding is an error (S5). Items of unregistered channels
    /// are returned too: the node decides what to do with them.
    #[allow(clippy::type_complexity)]
    pub fn unwrap_datagram(data: &[u8]) -> Result<(&[u8], Vec<(ChannelId, Bytes)>), DatagramError> {
        if data.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLarge { len: data.len() });
        }
        let Some((header, rest)) = data.split_first_chunk::<DATAGRAM_HEADER>() else {
            return Err(DatagramError::TruncatedHeader { len: data.len() });
        };
        let [kind, s0, s1, c0, c1] = *header;
        if kind != DATAGRAM_V1 {
            return Err(DatagramError::UnknownVersion(kind));
        }
        let swim_len = usize::from(u16::from_be_bytes([s0, s1]));
        let count = usize::from(u16::from_be_bytes([c0, c1]));
        if swim_len > rest.len() {
            return Err(DatagramError::TruncatedSwim {
                len: swim_len,
                available: rest.len(),
            });
        }
        let (swim, trailer) = rest.split_at(swim_len);
        let items = read_items(trailer, count).map_err(DatagramError::Trailer)?;
        Ok((swim, items))
    }

    /// Runs what is due at `now`: the batch round (one frame per fanout peer) and the
    /// periodic anti-entropy round.
    pub fn handle_tick(&mut self, now: Instant) {
        self.start(now);
        if self.batch_due.is_some_and(|due| due <= now) {
            self.batch_round(now);
        }
        if let (Some(due), Some(interval)) =
            (self.anti_entropy_due, self.config.anti_entropy_interval)
        {
            if due <= now {
                self.anti_entropy_due = Some(next_deadline(due, interval, now));
                match self.ring.get(self.ring_next) {
                    Some(peer) => {
                        let with = peer.clone();
                        self.ring_next = (self.ring_next + 1) % self.ring.len();
                        self.stats.anti_entropy_rounds += 1;
                        self.outputs
                            .push_back(DisseminationOutput::AntiEntropy { with });
                    }
                    None => self.stats.anti_entropy_without_peers += 1,
                }
            }
        }
    }

    /// Starts an anti-entropy round with `peer` now (e.g. right after it came up), on top
    /// of the periodic ones; the ring's order is unchanged.
    pub fn request_anti_entropy(&mut self, now: Instant, peer: &str) {
        self.start(now);
        self.stats.anti_entropy_rounds += 1;
        self.stats.anti_entropy_requested += 1;
        self.outputs.push_back(DisseminationOutput::AntiEntropy {
            with: peer.to_owned(),
        });
    }

    /// When [`handle_tick`](Self::handle_tick) next has work: the next batch round while
    /// batch items wait, and the next periodic anti-entropy round. `None` before the
    /// first input (the clock starts with it) or when nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.batch_due, self.anti_entropy_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next output, in the order produced.
    pub fn poll_output(&mut self) -> Option<DisseminationOutput> {
        self.outputs.pop_front()
    }

    /// The first input starts the clock: the first periodic anti-entropy round comes at
    /// a random point of the first interval, so nodes started together do not move in
    /// lockstep.
    fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(interval) = self.config.anti_entropy_interval {
            let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
            let offset = Duration::from_nanos(self.rng.random_range(1..=nanos));
            self.anti_entropy_due = Some(now + offset);
        }
    }

    fn batch_is_empty(&self) -> bool {
        self.channels
            .iter()
            .all(|ch| ch.queues[Lane::Batch as usize].items.is_empty())
    }

    /// Whether direct push is on for the current number of live peers (D1).
    fn direct_active(&self) -> bool {
        self.config.direct_max_peers > 0 && self.peers.len() <= self.config.direct_max_peers
    }

    fn has_direct_batch(&self) -> bool {
        self.channels.iter().any(|ch| {
            ch.queues[Lane::Batch as usize]
                .items
                .iter()
                .any(|i| i.direct)
        })
    }

    /// One batch round: a frame of the items each of `fanout(n)` random live peers has
    /// not had yet, of at most `batch_max_bytes`.
    fn batch_round(&mut self, now: Instant) {
        self.stats.batch_rounds += 1;
        if self.peers.is_empty() {
            self.stats.batch_rounds_without_peers += 1;
        } else {
            // A direct item waiting (D1): every live peer, in random order (so that
            // relayed items, which stop at their transmissions, still go to random
            // peers); otherwise `fanout(n)` random ones.
            let n = self.peers.len();
            let count = if self.direct_active() && self.has_direct_batch() {
                n
            } else {
                fanout(n)
            };
            // `sample` returns the indices in random order.
            let picked = rand::seq::index::sample(&mut self.rng, n, count);
            let room = self.config.batch_max_bytes - BATCH_HEADER;
            for i in picked {
                let to = self.peers[i].clone();
                let items = self.fill(Lane::Batch, &to, room);
                if !items.is_empty() {
                    self.stats.batch_frames += 1;
                    let frame = encode_items(BATCH_V1, &items);
                    self.outputs
                        .push_back(DisseminationOutput::Batch { to, frame });
                }
            }
        }
        self.batch_due = match self.batch_due {
            Some(due) if !self.batch_is_empty() => {
                Some(next_deadline(due, self.config.batch_interval, now))
            }
            _ => None,
        };
    }

    /// Byte-fair queuing over the channels' `lane` queues for `room` bytes of items
    /// bound for `to` (F1): the least-served channel with an item that fits goes next.
    /// Marks the picked items as sent to `to`, retires those that are done, and returns
    /// them in pick order.
    fn fill(&mut self, lane: Lane, to: &str, mut room: usize) -> Vec<(ChannelId, Bytes)> {
        let l = lane as usize;
        let k = self.channels.len();

        // The next item of a queue that may go in this fill, from `pos` on. Items skipped
        // here stay skipped: they were sent to `to` already, or the room only shrinks.
        fn candidate(queue: &Queue, pos: &mut usize, to: &str, room: usize) -> Option<usize> {
            while let Some(item) = queue.items.get(*pos) {
                if item.wire_len() <= room && !item.sent_to.iter().any(|p| p == to) {
                    return Some(*pos);
                }
                *pos += 1;
            }
            None
        }

        // Bounded catch-up: a channel with items for this peer is never more than the lag
        // window behind the most-served such channel.
        let backlogged: Vec<bool> = self
            .channels
            .iter()
            .map(|ch| {
                ch.queues[l]
                    .items
                    .iter()
                    .any(|i| !i.sent_to.iter().any(|p| p == to))
            })
            .collect();
        let top = (0..k)
            .filter(|&c| backlogged[c])
            .map(|c| self.channels[c].served[l])
            .max();
        if let Some(top) = top {
            let floor = top.saturating_sub(self.lag_window(lane));
            for c in (0..k).filter(|&c| backlogged[c]) {
                let served = &mut self.channels[c].served[l];
                if *served < floor {
                    self.stats.channels[c].lag_forgiven_bytes += floor - *served;
                    *served = floor;
                }
            }
        }

        // Ties between equally served channels go round robin, from a start that moves
        // on every fill.
        let start = self.tie_break[l] % k;
        self.tie_break[l] = (start + 1) % k;
        let mut pos = vec![0usize; k];
        let mut picks: Vec<(usize, usize)> = Vec::new();
        while picks.len() < MAX_ITEMS {
            let mut best: Option<(u64, usize, usize)> = None; // (served, channel, item)
            for j in 0..k {
                let c = (start + j) % k;
                let queue = &self.channels[c].queues[l];
                if let Some(i) = candidate(queue, &mut pos[c], to, room) {
                    let served = self.channels[c].served[l];
                    if best.is_none_or(|(s, _, _)| served < s) {
                        best = Some((served, c, i));
                    }
                }
            }
            let Some((_, c, i)) = best else {
                break; // nothing fits the room left
            };
            let wire = self.channels[c].queues[l].items[i].wire_len();
            self.channels[c].served[l] += wire as u64;
            room -= wire;
            pos[c] = i + 1;
            picks.push((c, i));
        }

        let mut out = Vec::with_capacity(picks.len());
        let mut touched = vec![false; k];
        for &(c, i) in &picks {
            let channel = &mut self.channels[c];
            let item = &mut channel.queues[lane as usize].items[i];
            item.sent_to.push(to.to_owned());
            out.push((channel.id, item.bytes.clone()));
            let stats = &mut self.stats.channels[c];
            let len = item.bytes.len() as u64;
            match lane {
                Lane::Piggyback => {
                    stats.piggybacked_sends += 1;
                    stats.piggybacked_bytes += len;
                }
                Lane::Batch => {
                    stats.batched_sends += 1;
                    stats.batched_bytes += len;
                }
            }
            touched[c] = true;
        }
        for (c, touched) in touched.into_iter().enumerate() {
            if touched {
                self.retire(c, lane);
            }
        }
        out
    }

    /// How far (in wire bytes) a channel with items may fall behind the most-served one
    /// in a lane: two of the lane's largest items, enough to absorb a datagram tail the
    /// channel could not use (its item did not fit the room left) on top of the normal
    /// one-item granularity, so that it is paid back in the next fill; beyond it the
    /// shortfall is forgiven, so a channel that was idle or blocked does not monopolise
    /// the fills after.
    fn lag_window(&self, lane: Lane) -> u64 {
        let largest = match lane {
            Lane::Piggyback => self.config.piggyback_max_item,
            Lane::Batch => self.config.max_item(),
        };
        2 * (ITEM_HEADER + largest) as u64
    }

    /// Removes the items of one queue that have had their transmissions or that every
    /// live peer has (S2, S3).
    fn retire(&mut self, c: usize, lane: Lane) {
        let limit = self.config.transmissions.for_peers(self.peers.len());
        let direct = self.direct_active();
        let peers = &self.peers;
        let done = |item: &Item| {
            (item.sent_to.len() >= limit && !(direct && item.direct))
                || (!peers.is_empty()
                    && item.sent_to.len() >= peers.len()
                    && peers.iter().all(|p| item.sent_to.contains(p)))
        };
        let queue = &mut self.channels[c].queues[lane as usize];
        let before = queue.items.len();
        let mut freed = 0;
        queue.items.retain(|item| {
            let keep = !done(item);
            if !keep {
                freed += item.bytes.len();
            }
            keep
        });
        queue.bytes -= freed;
        let retired = before - queue.items.len();
        if retired > 0 {
            self.stats.channels[c].retired += retired as u64;
            self.refresh_queued(c);
        }
    }

    fn refresh_queued(&mut self, c: usize) {
        let queues = &self.channels[c].queues;
        let stats = &mut self.stats.channels[c];
        stats.queued_items = queues.iter().map(|q| q.items.len() as u64).sum();
        stats.queued_bytes = queues.iter().map(|q| q.bytes as u64).sum();
    }
}

/// The deadline after `due` for a period of `interval`, never in the past of `now` (a
/// late tick does not cause a burst of catch-up rounds).
fn next_deadline(due: Instant, interval: Duration, now: Instant) -> Instant {
    let next = due + interval;
    if next > now {
        next
    } else {
        now + interval
    }
}

/// Encodes items as a batch frame: `[BATCH_V1][count u16][items]`.
pub fn encode_batch(items: &[(ChannelId, Bytes)]) -> Result<Bytes, EncodeBatchError> {
    if items.len() > MAX_ITEMS {
        return Err(EncodeBatchError::TooManyItems(items.len()));
    }
    for (index, (_, bytes)) in items.iter().enumerate() {
        if bytes.is_empty() || bytes.len() > u16::MAX as usize {
            return Err(EncodeBatchError::ItemLength {
                index,
                len: bytes.len(),
            });
        }
    }
    Ok(encode_items(BATCH_V1, items))
}

/// Decodes a batch frame. Never panics; anything but an exact encoding is an error.
pub fn decode_batch(frame: &[u8]) -> Result<Vec<(ChannelId, Bytes)>, BatchError> {
    let Some((&[kind, c0, c1], rest)) = frame.split_first_chunk::<BATCH_HEADER>() else {
        return Err(BatchError::TruncatedHeader { len: frame.len() });
    };
    if kind != BATCH_V1 {
        return Err(BatchError::UnknownVersion(kind));
    }
    let count = usize::from(u16::from_be_bytes([c0, c1]));
    read_items(rest, count).map_err(BatchError::Items)
}

/// `[kind][count u16][items]`; the caller guarantees at most `u16::MAX` items of
/// `1..=u16::MAX` bytes each.
fn encode_items(kind: u8, items: &[(ChannelId, Bytes)]) -> Bytes {
    let len: usize = items.iter().map(|(_, b)| ITEM_HEADER + b.len()).sum();
    let mut out = BytesMut::with_capacity(BATCH_HEADER + len);
    out.put_u8(kind);
    out.put_u16(items.len() as u16);
    write_items(&mut out, items);
    out.freeze()
}

fn write_items(out: &mut BytesMut, items: &[(ChannelId, Bytes)]) {
    for (channel, bytes) in items {
        out.put_u8(channel.0);
        out.put_u16(bytes.len() as u16);
        out.put_slice(bytes);
    }
}

/// Exactly `count` items and nothing after them.
fn read_items(mut rest: &[u8], count: usize) -> Result<Vec<(ChannelId, Bytes)>, ItemError> {
    // Every item takes at least ITEM_HEADER + 1 bytes: do not trust `count` for the
    // allocation.
    let mut items = Vec::with_capacity(count.min(rest.len() / (ITEM_HEADER + 1)));
    for index in 0..count {
        let Some((&[channel, l0, l1], body)) = rest.split_first_chunk::<ITEM_HEADER>() else {
            return Err(ItemError::TruncatedHeader { index });
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len == 0 {
            return Err(ItemError::Empty { index });
        }
        if len > body.len() {
            return Err(ItemError::Truncated {
                index,
                len,
                remaining: body.len(),
            });
        }
        let (bytes, tail) = body.split_at(len);
        items.push((ChannelId(channel), Bytes::copy_from_slice(bytes)));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(ItemError::TrailingBytes { len: rest.len() });
    }
    Ok(items)
}

#[cfg(test)]
mod tests;
