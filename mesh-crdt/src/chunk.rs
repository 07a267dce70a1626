//! Cutting a large delta into pieces bounded by encoded size.
//!
//! A piece is *causally safe*: its context covers only the dots it carries. Each origin
//! partition is cut along its sequence numbers into windows `lo..=hi`, and a piece gets,
//! for its windows, exactly the context inside the window and every live dot inside it.
//! A dot the piece's context covers is therefore either carried live or known removed
//! by the sender, and a receiver that applies any subset of the pieces, in any order,
//! drops only dots the sender knows were removed. (An element removed and re-added
//! since has a new dot, possibly in another piece; until that piece arrives the
//! receiver shows the element absent, which is what the owner itself went through.)
//!
//! This is the bug delta_crdt_ex had (derekkraan/delta_crdt_ex#65, data loss when a
//! sync is split): its partial diffs carried the sender's whole causal context ("I have
//! seen everything up to X") with only some of the entries, so the receiver concluded
//! that every entry it held under X and did not find in the piece had been removed, and
//! deleted it. Cutting by key (element) cannot fix that with a per-origin context;
//! cutting by dot window can.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, EncodeError};
use crate::origin::OriginState;
use crate::orswot::Orswot;

/// Why a delta could not be cut. Nothing is returned and nothing changes.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// A single indivisible part (one live dot with its element, or one origin's
    /// incarnation header) encodes larger than the limit. Raise the limit or shrink the
    /// element.
    #[error("an indivisible piece encodes to {needed} bytes, over the {max_bytes}-byte limit")]
    TooSmall {
        /// Encoded size of the smallest piece that would have to be sent.
        needed: usize,
        /// The limit asked for.
        max_bytes: usize,
    },
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// One indivisible run of an origin's partition: a live dot, a run of removed dots, or
/// (for a partition with no context) its header alone.
struct Unit<'a, O> {
    origin: &'a O,
    /// `None`: the whole partition (a retirement marker or an empty incarnation).
    window: Option<(u64, u64)>,
    /// Estimated encoded bytes (an over-estimate; checked after packing).
    cost: usize,
}

/// Estimated fixed cost of a chunk (the outer map) and of one origin inside it.
const CHUNK_OVERHEAD: usize = 8;
const ORIGIN_OVERHEAD: usize = 40;
const DOT_OVERHEAD: usize = 14;
const REMOVED_RUN_COST: usize = 20;

impl<O, E> Orswot<O, E>
where
    O: Serialize + DeserializeOwned + Ord + Clone,
    E: Serialize + DeserializeOwned + Ord + Clone + std::hash::Hash,
{
    /// Cuts this delta into pieces whose encoding is at most `max_bytes` each.
    ///
    /// Merging all pieces (in any order) equals merging `self`; merging any subset is
    /// causally safe (see the module docs). An empty delta gives no pieces; a delta
    /// that already fits gives itself.
    pub fn chunks(&self, max_bytes: usize) -> Result<Vec<Self>, ChunkError> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        if codec::encoded_len(self)? <= max_bytes {
            return Ok(vec![self.clone()]);
        }
        let units = self.units()?;
        let mut out = Vec::new();
        let mut start = 0;
        let mut estimate = CHUNK_OVERHEAD;
        for (i, unit) in units.iter().enumerate() {
            let new_origin = i == start || units[i - 1].origin != unit.origin;
            let cost = unit.cost
                + if new_origin {
                    self.origin_cost(unit.origin)?
                } else {
                    0
                };
            if i > start && estimate + cost > max_bytes {
                self.emit(&units[start..i], max_bytes, &mut out)?;
                start = i;
                estimate = CHUNK_OVERHEAD + unit.cost + self.origin_cost(unit.origin)?;
            } else {
                estimate += cost;
            }
        }
        self.emit(&units[start..], max_bytes, &mut out)?;
        Ok(out)
    }

    fn origin_cost(&self, origin: &O) -> Result<usize, EncodeError> {
        Ok(codec::encoded_len(origin)? + ORIGIN_OVERHEAD)
    }

    /// Builds the piece for `units`, and halves it until it fits.
    fn emit(
        &self,
        units: &[Unit<'_, O>],
        max_bytes: usize,
        out: &mut Vec<Self>,
    ) -> Result<(), ChunkError> {
        if units.is_empty() {
            return Ok(());
        }
        let piece = self.build(units);
        let needed = codec::encoded_len(&piece)?;
        if needed <= max_bytes {
            out.push(piece);
            return Ok(());
        }
        if units.len() == 1 {
            return Err(ChunkError::TooSmall { needed, max_bytes });
        }
        let (left, right) = units.split_at(units.len() / 2);
        self.emit(left, max_bytes, out)?;
        self.emit(right, max_bytes, out)
    }

    /// The piece made of consecutive `units`: per origin, the state restricted to the
    /// window from its first unit's start to its last unit's end.
    fn build(&self, units: &[Unit<'_, O>]) -> Self {
        let mut piece = Self::new();
        let mut i = 0;
        while i < units.len() {
            let origin = units[i].origin;
            let mut j = i;
            while j + 1 < units.len() && units[j + 1].origin == origin {
                j += 1;
            }
            if let Some(state) = self.origins.get(origin) {
                let part = match (units[i].window, units[j].window) {
                    (Some((lo, _)), Some((_, hi))) => state.restrict(lo, hi),
                    _ => state.clone(),
                };
                piece.origins.insert(origin.clone(), part);
            }
            i = j + 1;
        }
        piece
    }

    /// Every origin's partition as indivisible units in sequence order.
    fn units(&self) -> Result<Vec<Unit<'_, O>>, EncodeError> {
        let mut units = Vec::new();
        for (origin, state) in &self.origins {
            if state.retired || state.ctx.is_empty() {
                units.push(Unit {
                    origin,
                    window: None,
                    cost: 0,
                });
                continue;
            }
            push_units(origin, state, &mut units)?;
        }
        Ok(units)
    }
}

/// Splits one live partition into units: each live dot alone, each maximal run of
/// removed dots between them as one unit.
fn push_units<'a, O, E: Serialize + Ord + Clone>(
    origin: &'a O,
    state: &OriginState<E>,
    units: &mut Vec<Unit<'a, O>>,
) -> Result<(), EncodeError> {
    for range in state.ctx.ranges() {
        let (start, end) = (*range.start(), *range.end());
        let mut cursor = Some(start);
        for (&seq, element) in state.dots.range(range) {
            if let Some(c) = cursor {
                if seq > c {
                    units.push(Unit {
                        origin,
                        window: Some((c, seq - 1)),
                        cost: REMOVED_RUN_COST,
                    });
                }
            }
            units.push(Unit {
                origin,
                window: Some((seq, seq)),
                cost: codec::encoded_len(&**element)? + DOT_OVERHEAD,
            });
            cursor = seq.checked_add(1).filter(|&next| next <= end);
        }
        if let Some(c) = cursor {
            units.push(Unit {
                origin,
                window: Some((c, end)),
                cost: REMOVED_RUN_COST,
            });
        }
    }
    Ok(())
}
