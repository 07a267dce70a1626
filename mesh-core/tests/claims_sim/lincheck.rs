//! A linearizability checker in the style of Wing & Gong with Lowe's memoisation (the
//! algorithm behind Porcupine and Knossos' WGL checker).
//!
//! A history is a list of calls, each with its invocation time and, if it completed, its
//! completion time and the result it returned. An op that never completed (a timeout, a
//! crash) is *indeterminate*: it may take effect at any point after its invocation, or
//! never, and its result is unconstrained. The history is linearizable iff some total
//! order of all completed ops (and any subset of the indeterminate ones) respects
//! real-time order (`a` completed before `b` was invoked ⇒ `a` before `b`) and replays on
//! the sequential model with exactly the results observed.
//!
//! The search is a depth-first walk over "which op takes effect next": the candidates
//! are the ops not yet placed that were invoked no later than the earliest completion
//! among the completed ops not yet placed. A visited `(placed set, model state)` pair is
//! never explored twice (Lowe), and an indeterminate op that would not change the state
//! is never placed (it constrains nothing). Iterative, so long histories do not overflow
//! the stack.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification.
pub(crate) trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash + Debug;
    /// An operation.
    type Op: Debug;
    /// What an operation returns.
    type Ret: PartialEq + Debug;
    /// The initial state.
    fn init(&self) -> Self::State;
    /// Apply `op` to `state`: the next state and the result.
    fn step(&self, state: &Self::State, op: &Self::Op) -> (Self::State, Self::Ret);
}

/// One call in a history. Times are any totally ordered clock (global simulated time).
#[derive(Clone, Debug)]
pub(crate) struct Call<O, R> {
    /// The operation.
    pub(crate) op: O,
    /// When it was invoked.
    pub(crate) invoked: u64,
    /// When it completed and what it returned; `None`: indeterminate.
    pub(crate) returned: Option<(u64, R)>,
}

/// The outcome of a check that did not find a linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No linearization exists. `placed` ops were linearized at the deepest point the
    /// search reached; `stuck` describes the op that could not be placed there.
    NotLinearizable {
        /// Ops placed at the deepest point.
        placed: usize,
        /// The completed op that blocked every extension there.
        stuck: String,
    },
    /// The search exceeded its step budget (neither verdict).
    GaveUp {
        /// Steps taken.
        steps: u64,
    },
}

struct Frame<S> {
    state: S,
    op: usize,
    next: usize,
}

/// Check `history` against `model`, taking at most `max_steps` search steps. On success,
/// the number of steps taken.
pub(crate) fn check<M: Model>(
    model: &M,
    history: &[Call<M::Op, M::Ret>],
    max_steps: u64,
) -> Result<u64, Failure> {
    let n = history.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| history[i].invoked);
    let completed_total = history.iter().filter(|c| c.returned.is_some()).count();
    let words = n.div_ceil(64).max(1);
    let mut placed = vec![0u64; words];
    let is_placed = |bits: &[u64], i: usize| bits[i / 64] & (1 << (i % 64)) != 0;
    let mut memo: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = model.init();
    let mut done = 0usize;
    let mut cursor = 0usize;
    let mut steps = 0u64;
    let mut deepest = (0usize, String::new());

    loop {
        if done == completed_total {
            return Ok(steps);
        }
        steps += 1;
        if steps > max_steps {
            return Err(Failure::GaveUp { steps });
        }
        // Candidates: unplaced ops invoked no later than the earliest completion among
        // the unplaced completed ops.
        let frontier = order
            .iter()
            .filter(|&&i| !is_placed(&placed, i))
            .filter_map(|&i| history[i].returned.as_ref().map(|(t, _)| (*t, i)))
            .min();
        let bound = frontier.map_or(u64::MAX, |(t, _)| t);
        let candidates: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| !is_placed(&placed, i) && history[i].invoked <= bound)
            .collect();
        if stack.len() >= deepest.0 {
            if let Some((_, i)) = frontier {
                deepest = (stack.len(), format!("{:?}", history[i]));
            }
        }
        let mut advanced = false;
        for (k, &i) in candidates.iter().enumerate().skip(cursor) {
            let call = &history[i];
            let (next, ret) = model.step(&state, &call.op);
            match &call.returned {
                Some((_, observed)) if *observed != ret => continue,
                None if next == state => continue,
                _ => {}
            }
            placed[i / 64] |= 1 << (i % 64);
            if !memo.insert((placed.clone(), next.clone())) {
                placed[i / 64] &= !(1 << (i % 64));
                continue;
            }
            stack.push(Frame {
                state: std::mem::replace(&mut state, next),
                op: i,
                next: k + 1,
            });
            if call.returned.is_some() {
                done += 1;
            }
            cursor = 0;
            advanced = true;
            break;
        }
        if advanced {
            continue;
        }
        let Some(frame) = stack.pop() else {
            return Err(Failure::NotLinearizable {
                placed: deepest.0,
                stuck: deepest.1,
            });
        };
        placed[frame.op / 64] &= !(1 << (frame.op % 64));
        if history[frame.op].returned.is_some() {
            done -= 1;
        }
        state = frame.state;
        cursor = frame.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of one small integer: `Some(v)` writes, `None` reads.
    struct Reg;

    impl Model for Reg {
        type State = u8;
        type Op = Option<u8>;
        type Ret = u8;
        fn init(&self) -> u8 {
            0
        }
        fn step(&self, s: &u8, op: &Option<u8>) -> (u8, u8) {
            match op {
                Some(v) => (*v, *v),
                None => (*s, *s),
            }
        }
    }

    fn w(v: u8, invoked: u64, done: Option<u64>) -> Call<Option<u8>, u8> {
        Call {
            op: Some(v),
            invoked,
            returned: done.map(|t| (t, v)),
        }
    }

    fn r(seen: u8, invoked: u64, done: u64) -> Call<Option<u8>, u8> {
        Call {
            op: None,
            invoked,
            returned: Some((done, seen)),
        }
    }

    #[test]
    fn concurrent_ops_may_take_effect_in_either_order() {
        // w1 and w2 overlap; the reads after both see 2, so w1 went first.
        let h = [
            w(1, 0, Some(10)),
            w(2, 5, Some(15)),
            r(2, 20, 25),
            r(2, 30, 35),
        ];
        assert!(check(&Reg, &h, 10_000).is_ok());
        // A read overlapping a write may see the old or the new value.
        let h = [w(1, 0, Some(10)), r(0, 5, 8), r(1, 6, 9)];
        assert!(check(&Reg, &h, 10_000).is_ok());
    }

    #[test]
    fn a_read_after_a_completed_write_that_misses_it_is_caught() {
        let h = [w(1, 0, Some(10)), r(0, 11, 12)];
        assert!(matches!(
            check(&Reg, &h, 10_000),
            Err(Failure::NotLinearizable { .. })
        ));
    }

    #[test]
    fn a_value_that_un_happens_is_caught() {
        // Two reads in real-time order see 1 then 0: w1 cannot be undone (the LWT bug).
        let h = [w(1, 0, None), r(1, 5, 6), r(0, 7, 8)];
        assert!(matches!(
            check(&Reg, &h, 10_000),
            Err(Failure::NotLinearizable { .. })
        ));
    }

    #[test]
    fn an_indeterminate_write_may_or_may_not_have_taken_effect() {
        let took = [w(7, 0, None), r(7, 50, 60)];
        let never = [w(7, 0, None), r(0, 50, 60), r(0, 70, 80)];
        let late = [w(7, 0, None), r(0, 50, 60), r(7, 70, 80)];
        for h in [&took[..], &never[..], &late[..]] {
            assert!(check(&Reg, h, 10_000).is_ok(), "{h:?}");
        }
    }

    #[test]
    fn a_result_the_model_cannot_produce_is_caught() {
        let h = [w(1, 0, Some(1)), r(3, 2, 3)];
        assert!(check(&Reg, &h, 10_000).is_err());
    }

    #[test]
    fn the_search_gives_up_instead_of_running_forever() {
        // Many overlapping writes and a contradictory read: exponential without memo
        // hits, so a tiny budget is exceeded.
        let mut h: Vec<_> = (1..=12).map(|v| w(v, 0, Some(100))).collect();
        h.push(r(99, 0, 100));
        assert!(matches!(check(&Reg, &h, 50), Err(Failure::GaveUp { .. })));
    }
}
