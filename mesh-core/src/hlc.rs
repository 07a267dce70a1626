//! A hybrid logical clock (Kulkarni et al., 2014), sans-IO.
//!
//! An [`Hlc`] timestamp is `(wall_ms, logical)`: the largest physical time seen (this
//! node's wall clock or any timestamp received), and a counter that orders events
//! within one millisecond. The clock never reads the system time itself: callers pass
//! the wall clock in, so the simulator can drive it.
//!
//! Properties (tested below):
//! - **Monotonic**: every timestamp [`HlcClock::now`] returns is larger than every
//!   earlier one from the same clock, even when the wall clock steps back.
//! - **Causal**: after [`HlcClock::observe`]`(t)`, every later `now()` is above `t`.
//! - **Close to physical time**: `wall_ms` is never behind the wall clock passed in,
//!   and never ahead of the largest wall clock or observed time.

use serde::{Deserialize, Serialize};

/// A hybrid logical timestamp. Ordered by `wall_ms`, then `logical`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the largest seen).
    #[serde(rename = "w")]
    pub wall_ms: u64,
    /// Orders timestamps with the same `wall_ms`.
    #[serde(rename = "c")]
    pub logical: u32,
}

/// One node's hybrid logical clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest timestamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new timestamp for a local event, given the wall clock now.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        self.last = if wall_ms > self.last.wall_ms {
            Hlc {
                wall_ms,
                logical: 0,
            }
        } else {
            self.bump(self.last)
        };
        self.last
    }

    /// Takes in a timestamp received from another node.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }

    fn bump(&self, t: Hlc) -> Hlc {
        match t.logical.checked_add(1) {
            Some(logical) => Hlc {
                wall_ms: t.wall_ms,
                logical,
            },
            // 2^32 events in one millisecond: borrow the next millisecond.
            None => Hlc {
                wall_ms: t.wall_ms.saturating_add(1),
                logical: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn timestamps_only_grow_and_stay_above_what_was_observed(
            steps in proptest::collection::vec((any::<bool>(), 0u64..50, 0u64..60, 0u32..3), 1..200)
        ) {
            let mut clock = HlcClock::new();
            let mut prev = Hlc::default();
            let mut max_seen = 0u64;
            for (is_local, wall, remote_wall, remote_logical) in steps {
                if is_local {
                    let t = clock.now(wall);
                    prop_assert!(t > prev, "{t:?} not above {prev:?}");
                    prop_assert!(t.wall_ms >= wall);
                    max_seen = max_seen.max(wall);
                    prop_assert!(t.wall_ms <= max_seen.max(prev.wall_ms));
                    prev = t;
                } else {
                    let r = Hlc { wall_ms: remote_wall, logical: remote_logical };
                    clock.observe(r);
                    max_seen = max_seen.max(remote_wall);
                    let t = clock.now(0);
                    prop_assert!(t > r && t > prev);
                    prev = t;
                }
            }
        }
    }

    #[test]
    fn a_wall_clock_step_back_keeps_order() {
        let mut c = HlcClock::new();
        let a = c.now(1000);
        let b = c.now(400);
        assert!(b > a);
        assert_eq!(b.wall_ms, 1000);
        assert_eq!(b.logical, 1);
    }
}
