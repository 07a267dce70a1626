//! The shell's clock: CLOCK_BOOTTIME as an [`Instant`].
//!
//! `std::time::Instant` is CLOCK_MONOTONIC on Linux, which stops while the machine is
//! suspended. A claim holder that measured its lease on it would, after a resume,
//! believe it still holds a lease that expired during the suspend. The node therefore
//! runs on a clock that counts suspend: [`Clock::now`] is a fixed `Instant` taken at
//! start plus the CLOCK_BOOTTIME time elapsed since then. Every `now` the shell hands
//! the node comes from here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::time::{clock_gettime, ClockId};

/// CLOCK_BOOTTIME, anchored to an `Instant` (see the module docs). Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_boot: Duration,
}

fn boottime() -> Option<Duration> {
    let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?;
    let secs = u64::try_from(ts.tv_sec()).ok()?;
    let nanos = u32::try_from(ts.tv_nsec()).ok()?;
    Some(Duration::new(secs, nanos))
}

impl Clock {
    /// A clock anchored now.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            base_boot: boottime().unwrap_or_default(),
        }
    }

    /// The current time on the boot clock. Falls back to the monotonic clock if the
    /// boot clock cannot be read (not Linux).
    pub fn now(&self) -> Instant {
        match boottime() {
            Some(t) => self.base + t.saturating_sub(self.base_boot),
            None => Instant::now(),
        }
    }

    /// The wall clock, in milliseconds since the Unix epoch (0 before 1970).
    pub fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_clock_moves_forward_with_real_time() {
        let c = Clock::new();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = c.now();
        let d = b.saturating_duration_since(a);
        assert!(d >= Duration::from_millis(19), "{d:?}");
        assert!(d < Duration::from_secs(5), "{d:?}");
    }
}
