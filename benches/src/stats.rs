//! Percentiles of runs (some of which may hit their deadline) and a tiny seeded RNG
//! for choosing victims.

/// A figure that may be only a lower bound: the value of a run that hit its deadline
/// is "more than the deadline", not the deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// The value, or the deadline when `at_least`.
    pub value: f64,
    /// True if the real value is above `value` (unknown by how much).
    pub at_least: bool,
}

/// p50 / p99 / max over runs, some of which may have hit the deadline (censored).
/// Censored runs rank above every completed run, so they are never silently dropped:
/// if a percentile falls on one, it is reported as "> deadline".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Runs that completed.
    pub completed: usize,
    /// Runs that hit the deadline.
    pub censored: usize,
    /// Median (nearest rank).
    pub p50: Figure,
    /// 99th percentile (nearest rank).
    pub p99: Figure,
    /// Largest.
    pub max: Figure,
}

impl Percentiles {
    /// Percentiles of `samples` plus `censored` runs known only to exceed `deadline`;
    /// `None` if there are no runs at all.
    pub fn of(samples: &[f64], censored: usize, deadline: f64) -> Option<Self> {
        let total = samples.len() + censored;
        if total == 0 {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let r = ((p * total as f64).ceil() as usize).clamp(1, total);
            match sorted.get(r - 1) {
                Some(&value) => Figure {
                    value,
                    at_least: false,
                },
                None => Figure {
                    value: deadline,
                    at_least: true,
                },
            }
        };
        Some(Self {
            completed: samples.len(),
            censored,
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        })
    }
}

/// SplitMix64: a small, seedable generator, so a run's victims can be replayed with
/// `--seed`.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..high` (`high > low`).
    pub fn in_range(&mut self, low: usize, high: usize) -> usize {
        let span = (high - low) as u64;
        low + (self.next_u64() % span) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn censored_runs_rank_above_completed_ones() {
        let p = Percentiles::of(&[1.0, 2.0, 3.0], 2, 60.0);
        let exact = |value| Figure {
            value,
            at_least: false,
        };
        let bound = Figure {
            value: 60.0,
            at_least: true,
        };
        assert_eq!(p.map(|p| p.p50), Some(exact(3.0)));
        assert_eq!(p.map(|p| (p.p99, p.max)), Some((bound, bound)));
        let p = Percentiles::of(&[1.0, 2.0], 0, 60.0);
        assert_eq!(p.map(|p| (p.p99, p.max)), Some((exact(2.0), exact(2.0))));
        assert_eq!(Percentiles::of(&[], 0, 60.0), None);
    }

    #[test]
    fn range_stays_in_bounds_and_is_replayable() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            let x = a.in_range(1, 10);
            assert!((1..10).contains(&x));
            assert_eq!(x, b.in_range(1, 10));
        }
    }
}
