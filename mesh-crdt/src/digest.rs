//! Compact per-origin digests and the anti-entropy reply they ask for.
//!
//! A digest is sent on every anti-entropy round, so it is a few dozen bytes per origin
//! whatever the number of entries: the incarnation, the contiguous prefix of the
//! context, a summary of the dot cloud, and two hashes of the live dots.
//!
//! Why hashes of the *live* dots and not only the context: a removal does not mint a
//! dot, it moves an existing dot from live to removed. A replica that saw an add but
//! lost the matching remove has exactly the same context as one that saw both; only the
//! live set tells them apart. The hashes are order-independent sums of mixed sequence
//! numbers, kept up to date on every change, so a digest costs O(origins) to build
//! (plus the live dots above the contiguous prefix, normally none).
//!
//! [`Orswot::missing_for`] answers a peer's digest with, per origin:
//! - the whole partition, if the peer does not know the origin or holds an older
//!   incarnation (or live state where we hold the retirement marker);
//! - everything we know above the peer's contiguous prefix (context and live dots,
//!   cut to the window above that prefix, so it claims only what it carries);
//! - if our contiguous prefix reaches the peer's and our live set below the peer's
//!   prefix hashes differently, the dots in that prefix that we know were removed, as a
//!   context-only piece (it claims exactly the removals, nothing else).
//!
//! Liveness: one push-pull round makes both contexts equal (each side ships what lies
//! above the other's prefix). A stale live dot (a lost remove) is then caught by
//! whichever side's prefix is at least as long as the other's — with equal contexts,
//! by both. The owner's prefix is never shorter than anyone's, so a live owner repairs
//! every peer it talks to even while it keeps changing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::origin::{mix, OriginState};
use crate::orswot::Orswot;
use crate::seqset::SeqSet;

/// One origin's summary in a [`Digest`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OriginDigest {
    /// The incarnation held for the origin.
    #[serde(rename = "i")]
    pub incarnation: u64,
    /// True if that incarnation is retired (purged).
    #[serde(rename = "r", default, skip_serializing_if = "is_false")]
    pub retired: bool,
    /// The context's contiguous prefix: every dot `1..=contiguous` is known.
    #[serde(rename = "c", default)]
    pub contiguous: u64,
    /// How many known dots lie above the prefix (the dot cloud), saturating.
    #[serde(rename = "n", default, skip_serializing_if = "is_zero")]
    pub cloud_dots: u64,
    /// A hash of the dot cloud's ranges (0 when the cloud is empty).
    #[serde(rename = "g", default, skip_serializing_if = "is_zero")]
    pub cloud_hash: u64,
    /// A hash of the live dots `<= contiguous`.
    #[serde(rename = "p", default)]
    pub prefix_hash: u64,
    /// A hash of all live dots.
    #[serde(rename = "l", default)]
    pub live_hash: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes &T
fn is_false(b: &bool) -> bool {
    !*b
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Per-origin summaries of a state, exchanged on every anti-entropy round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "O: Serialize", deserialize = "O: Deserialize<'de> + Ord"))]
pub struct Digest<O> {
    #[serde(rename = "o")]
    origins: BTreeMap<O, OriginDigest>,
}

impl<O> Default for Digest<O> {
    fn default() -> Self {
        Self {
            origins: BTreeMap::new(),
        }
    }
}

impl<O: Ord> Digest<O> {
    /// The summary of `origin`, if the digested state knows it.
    pub fn get(&self, origin: &O) -> Option<&OriginDigest> {
        self.origins.get(origin)
    }

    /// Every origin with its summary.
    pub fn iter(&self) -> impl Iterator<Item = (&O, &OriginDigest)> {
        self.origins.iter()
    }

    /// Number of origins summarized.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// True if the digested state knew no origin.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}

impl<O> Digest<O>
where
    O: Serialize + serde::de::DeserializeOwned + Ord,
{
    /// Encodes the digest (MessagePack, named fields).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self)
    }

    /// Decodes a digest; malformed input is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes)
    }

    /// The exact size of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        codec::encoded_len(self)
    }
}

fn cloud_hash(ctx: &SeqSet) -> u64 {
    ctx.ranges()
        .skip(usize::from(ctx.contiguous() > 0))
        .fold(0u64, |h, r| {
            mix(h ^ mix(*r.start()).rotate_left(1) ^ mix(*r.end()).rotate_left(33))
        })
}

impl<E: Clone + Ord + std::hash::Hash> OriginState<E> {
    pub(crate) fn digest(&self) -> OriginDigest {
        if self.retired {
            return OriginDigest {
                incarnation: self.incarnation,
                retired: true,
                ..OriginDigest::default()
            };
        }
        let contiguous = self.ctx.contiguous();
        OriginDigest {
            incarnation: self.incarnation,
            retired: false,
            contiguous,
            cloud_dots: self.ctx.cloud_len(),
            cloud_hash: cloud_hash(&self.ctx),
            prefix_hash: self.live_hash_upto(contiguous),
            live_hash: self.live_hash,
        }
    }

    /// What a peer summarized by `peer` lacks of this partition, or `None`.
    fn missing_for(&self, peer: &OriginDigest) -> Option<Self> {
        match self.key().cmp(&(peer.incarnation, peer.retired)) {
            std::cmp::Ordering::Less => return None,
            std::cmp::Ordering::Greater => return Some(self.clone()),
            std::cmp::Ordering::Equal if self.retired => return None,
            std::cmp::Ordering::Equal => {}
        }
        if self.digest() == *peer {
            return None;
        }
        // Everything we know above the peer's prefix. May repeat what its cloud
        // already holds; merging is idempotent.
        let mut piece = self.restrict(peer.contiguous.saturating_add(1), u64::MAX);
        // Removals the peer may have missed inside its prefix: comparable only if our
        // own prefix covers the peer's.
        if peer.contiguous > 0
            && self.ctx.contiguous() >= peer.contiguous
            && self.live_hash_upto(peer.contiguous) != peer.prefix_hash
        {
            let removed = SeqSet::prefix(peer.contiguous)
                .without_sorted(self.dots.range(..=peer.contiguous).map(|(&s, _)| s));
            piece.ctx.union(&removed);
        }
        (!piece.ctx.is_empty()).then_some(piece)
    }
}

impl<O: Ord + Clone, E: Ord + Clone + std::hash::Hash> Orswot<O, E> {
    /// This state's per-origin summaries.
    pub fn digest(&self) -> Digest<O> {
        Digest {
            origins: self
                .origins
                .iter()
                .map(|(o, s)| (o.clone(), s.digest()))
                .collect(),
        }
    }

    /// The summary of one origin, if known (what a propagation barrier compares:
    /// a peer whose summary of origin `o` equals the owner's holds everything the
    /// owner held when it computed its own).
    pub fn origin_digest(&self, origin: &O) -> Option<OriginDigest> {
        self.origins.get(origin).map(OriginState::digest)
    }

    /// True if a peer summarized (for `origin`) by `peer` holds everything this replica
    /// held of `origin` when it computed `then` (an earlier
    /// [`origin_digest`](Self::origin_digest) of this same replica): the adds *and* the
    /// removals. This is what a propagation barrier asks of its own origin.
    ///
    /// A removal mints no dot, so comparing prefixes alone misses it. Within one
    /// incarnation a replica's context and its set of removed dots only grow; so if the
    /// peer's prefix reaches `then`'s and the peer's live dots in its prefix hash like
    /// ours *now* (our prefix covering the peer's), every dot `then` knew is known to
    /// the peer and every dot `then` had removed is removed there too. This holds while
    /// the replica keeps changing after `then`. Dots `then` held above its prefix (a
    /// cloud, which an origin's own replica never has) are only covered by an exact
    /// match. A newer incarnation on the peer supersedes `then`. `None` (the peer does
    /// not know the origin) covers only an empty `then`.
    pub fn covered_by(&self, origin: &O, then: &OriginDigest, peer: Option<&OriginDigest>) -> bool {
        let Some(peer) = peer else {
            return then.contiguous == 0 && then.cloud_dots == 0 && then.live_hash == 0;
        };
        if peer.incarnation != then.incarnation {
            return peer.incarnation > then.incarnation;
        }
        if peer == then {
            return true;
        }
        if peer.retired || then.retired || then.cloud_dots != 0 {
            return false;
        }
        let Some(mine) = self.origins.get(origin) else {
            return false;
        };
        mine.key() == (then.incarnation, false)
            && peer.contiguous >= then.contiguous
            && mine.ctx.contiguous() >= peer.contiguous
            && mine.live_hash_upto(peer.contiguous) == peer.prefix_hash
    }

    /// The delta a peer whose state is summarized by `peer` lacks: merging it makes the
    /// peer's state include ours for every origin where ours is not behind.
    ///
    /// The reply is causally safe and may be cut with [`chunks`](Self::chunks): each
    /// piece claims only the dots it carries. Origins the peer is ahead on are left out
    /// (the peer's own reply to our digest covers them).
    pub fn missing_for(&self, peer: &Digest<O>) -> Self {
        let mut out = Self::new();
        for (origin, mine) in &self.origins {
            let piece = match peer.origins.get(origin) {
                None => Some(mine.clone()),
                Some(theirs) => mine.missing_for(theirs),
            };
            if let Some(piece) = piece {
                out.origins.insert(origin.clone(), piece);
            }
        }
        out
    }
}
