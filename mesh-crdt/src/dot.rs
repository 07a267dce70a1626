//! Dots and the report a merge returns.

use serde::{Deserialize, Serialize};

/// The identity of one add: which origin minted it, in which of its incarnations, and
/// the origin's sequence number for it (1, 2, 3, ... per incarnation).
///
/// Only the origin mints its dots, so a dot names one element forever; removing the
/// add means removing the dot, and an element's multiplicity is its number of live dots.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot<O> {
    /// The node that added the element (and alone may remove it).
    #[serde(rename = "o")]
    pub origin: O,
    /// The origin's incarnation when it minted the dot.
    #[serde(rename = "i")]
    pub incarnation: u64,
    /// The origin's sequence number for the dot within that incarnation (from 1).
    #[serde(rename = "s")]
    pub seq: u64,
}

/// What happened to one dot during a merge (or a local purge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// The dot is new here: its element gained one occurrence.
    Added,
    /// The origin removed the dot (a leave); the element lost one occurrence.
    Removed,
    /// The dot went because its origin incarnation was superseded by a newer one or
    /// retired by [`purge_origin`](crate::Orswot::purge_origin); the origin did not
    /// necessarily remove it itself.
    Purged,
}

/// One dot that appeared or disappeared, with its element.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change<O, E> {
    /// The element whose multiplicity changed by one.
    pub element: E,
    /// The dot that appeared or disappeared.
    pub dot: Dot<O>,
    /// Whether the dot appeared, was removed by its origin, or was purged.
    pub kind: ChangeKind,
}

/// What a merge changed, in the order it changed it: enough for a view or a monitor to
/// update itself without rescanning the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeReport<O, E> {
    /// Every dot added or dropped by the merge.
    pub changes: Vec<Change<O, E>>,
    /// Set by [`Replica::merge`](crate::Replica::merge) when the incoming state retired
    /// or superseded the replica's *own* incarnation (someone purged this node while it
    /// was cut off). The replica keeps its own entries and ignores that part of the
    /// input; the caller must call [`Replica::reincarnate`](crate::Replica::reincarnate)
    /// with an incarnation larger than this value so the rest of the cluster sees the
    /// entries again. Always `None` for [`Orswot::merge`](crate::Orswot::merge).
    pub own_incarnation_superseded_by: Option<u64>,
}

impl<O, E> Default for MergeReport<O, E> {
    fn default() -> Self {
        Self {
            changes: Vec::new(),
            own_incarnation_superseded_by: None,
        }
    }
}

impl<O, E> MergeReport<O, E> {
    /// True if the merge changed nothing and superseded nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.own_incarnation_superseded_by.is_none()
    }
}
