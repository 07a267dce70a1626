//! Summaries of samples and a tiny seeded RNG for choosing victims.

/// p50 / p99 / max of a set of samples (nearest-rank percentiles: with 5 samples, p99
/// is the largest; these are small-sample figures and the table says how many runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples`; `None` if there are none.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let rank = |p: f64| {
            // Nearest rank: the smallest sample with at least p of the samples at or below it.
            let r = (p * count as f64).ceil() as usize;
            sorted[r.clamp(1, count) - 1]
        };
        Some(Self {
            count,
            p50: rank(0.50),
            p99: rank(0.99),
            max: sorted[count - 1],
            mean: sorted.iter().sum::<f64>() / count as f64,
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
    fn nearest_rank_percentiles() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(
            s,
            Some(Summary {
                count: 5,
                p50: 3.0,
                p99: 5.0,
                max: 5.0,
                mean: 3.0
            })
        );
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&hundred);
        assert_eq!(s.map(|s| (s.p50, s.p99)), Some((50.0, 99.0)));
        assert_eq!(Summary::of(&[]), None);
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
