//! Seed discovery by DNS: when to look a seed name up again.
//!
//! A DNS seed is a name standing for any number of seed addresses:
//! `dns://NAME:PORT` (its A and AAAA records, each at `PORT`) or
//! `dns+srv://_mesh._udp.NAME` (its SRV records: each target's addresses at the
//! record's port). [`Discovery`] holds the names, the addresses each last resolved to,
//! and the rule for looking them up again; the shell does the lookups
//! ([`Discovery::poll_resolve`]) and hands each result back
//! ([`Discovery::handle_resolved`]). Like the rest of `mesh-core` it reads no clock
//! and does no IO, and its jitter comes from a seeded RNG.
//!
//! # The rule
//!
//! - **D1 alone means look.** While the node is alone (no live member), every name is
//!   resolved at once and then again after a backoff: [`DiscoveryConfig::backoff_min`]
//!   doubling up to [`DiscoveryConfig::backoff_max`], each delay scaled by a seeded
//!   factor in 0.75..=1.25 so a fleet restarted together does not query in step. A
//!   seed that fails (its addresses answer no announce) leaves the node alone, so it is
//!   looked up again under the same rule.
//! - **D2 joined means quiet.** While the node has a live member, nothing is looked up
//!   and the backoff goes back to its minimum; when the node finds itself alone again,
//!   the names are looked up at once (at most once per `backoff_min`).
//! - **D3 a failure keeps what we had.** A failed lookup (NXDOMAIN, no records, a
//!   timeout) keeps the addresses of the last good answer, backs off like a success,
//!   and is retried under D1; a DNS outage never empties the seed list.
//! - **D4 one lookup per name at a time.** A name whose lookup is in flight is not
//!   asked for again until its result is handed in.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A seed given by DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsSeed {
    /// `dns://NAME:PORT`: every A and AAAA record of `name`, at `port`.
    Host {
        /// The name to resolve.
        name: String,
        /// The port peers listen on.
        port: u16,
    },
    /// `dns+srv://NAME`: every SRV record of `name` (conventionally
    /// `_mesh._udp.DOMAIN`), each target's addresses at the record's port.
    Srv {
        /// The SRV owner name.
        name: String,
    },
}

impl DnsSeed {
    /// The name looked up.
    pub fn name(&self) -> &str {
        match self {
            Self::Host { name, .. } | Self::Srv { name } => name,
        }
    }

    /// Whether `text` is written as a DNS seed (`dns://` or `dns+srv://`), right or
    /// wrong: a caller can then report [`DnsSeedError`] rather than "not an address".
    pub fn is_dns_form(text: &str) -> bool {
        let t = text.trim();
        t.starts_with("dns://") || t.starts_with("dns+srv://")
    }
}

impl fmt::Display for DnsSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { name, port } => write!(f, "dns://{name}:{port}"),
            Self::Srv { name } => write!(f, "dns+srv://{name}"),
        }
    }
}

/// A DNS seed that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsSeedError {
    /// Neither `dns://` nor `dns+srv://`.
    #[error("{0:?} is not a DNS seed: write dns://NAME:PORT or dns+srv://_mesh._udp.NAME")]
    Scheme(String),
    /// `dns://NAME` without a port (or with one that is not 1..=65535).
    #[error("{0:?} needs a port 1..=65535: write dns://NAME:PORT, e.g. dns://mesh.internal:7946")]
    Port(String),
    /// The name is empty or not a DNS name.
    #[error("{0:?} has no valid DNS name (letters, digits, '-', '_' and dots)")]
    Name(String),
}

fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl FromStr for DnsSeed {
    type Err = DnsSeedError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        if let Some(name) = t.strip_prefix("dns+srv://") {
            if !valid_dns_name(name) {
                return Err(DnsSeedError::Name(t.to_owned()));
            }
            return Ok(Self::Srv {
                name: name.to_owned(),
            });
        }
        let Some(rest) = t.strip_prefix("dns://") else {
            return Err(DnsSeedError::Scheme(t.to_owned()));
        };
        let Some((name, port)) = rest.rsplit_once(':') else {
            return Err(DnsSeedError::Port(t.to_owned()));
        };
        let port: u16 = match port.parse() {
            Ok(p) if p != 0 => p,
            _ => return Err(DnsSeedError::Port(t.to_owned())),
        };
        if !valid_dns_name(name) {
            return Err(DnsSeedError::Name(t.to_owned()));
        }
        Ok(Self::Host {
            name: name.to_owned(),
            port,
        })
    }
}

impl Serialize for DnsSeed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DnsSeed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a lookup gave no addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolveFailure {
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no record of the asked type (or the SRV targets have
    /// no addresses).
    NoRecords,
    /// No server answered in time.
    Timeout,
    /// Anything else (refused, malformed answer, no server configured).
    Error,
}

impl ResolveFailure {
    /// Every reason, for registering metrics at zero.
    pub const ALL: [Self; 4] = [Self::NxDomain, Self::NoRecords, Self::Timeout, Self::Error];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NxDomain => "nxdomain",
            Self::NoRecords => "no_records",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// Discovery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The names to resolve.
    pub seeds: Vec<DnsSeed>,
    /// First delay between lookups of a name while alone.
    pub backoff_min: Duration,
    /// Largest delay between lookups of a name while alone.
    pub backoff_max: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            seeds: Vec::new(),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// A lookup the shell must do; hand the result to [`Discovery::handle_resolved`]
/// with the same `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    /// Which name (an index into [`DiscoveryConfig::seeds`]).
    pub index: usize,
    /// The name and its form.
    pub seed: DnsSeed,
}

#[derive(Debug)]
struct Entry {
    seed: DnsSeed,
    addrs: Vec<SocketAddr>,
    next_at: Instant,
    backoff: Duration,
    in_flight: bool,
    last_started: Option<Instant>,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Lookups asked for.
    pub lookups: u64,
    /// Lookups that failed.
    pub failures: u64,
    /// Answers that changed a name's addresses.
    pub changes: u64,
}

/// The DNS seed state machine (the rule is in the [module docs](self)).
#[derive(Debug)]
pub struct Discovery {
    config: DiscoveryConfig,
    entries: Vec<Entry>,
    alone: bool,
    rng: StdRng,
    stats: DiscoveryStats,
}

impl Discovery {
    /// Starts with every name due at `now`.
    pub fn new(config: DiscoveryConfig, rng_seed: u64, now: Instant) -> Self {
        let entries = config
            .seeds
            .iter()
            .map(|seed| Entry {
                seed: seed.clone(),
                addrs: Vec::new(),
                next_at: now,
                backoff: config.backoff_min,
                in_flight: false,
                last_started: None,
            })
            .collect();
        Self {
            config,
            entries,
            alone: true,
            rng: StdRng::seed_from_u64(rng_seed),
            stats: DiscoveryStats::default(),
        }
    }

    /// True when no DNS seed is configured (then it never asks for anything).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> &DiscoveryStats {
        &self.stats
    }

    /// Every address the names last resolved to (sorted, no duplicates).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self
            .entries
            .iter()
            .flat_map(|e| e.addrs.iter().copied())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Tells whether the node is alone now (D1, D2). Call it before
    /// [`Discovery::poll_resolve`] on every turn.
    pub fn set_alone(&mut self, now: Instant, alone: bool) {
        if alone == self.alone {
            return;
        }
        self.alone = alone;
        for e in &mut self.entries {
            e.backoff = self.config.backoff_min;
            if alone {
                // Found ourselves alone: look again now, but not more often than
                // backoff_min however the membership flaps.
                let earliest = e
                    .last_started
                    .map_or(now, |at| at + self.config.backoff_min);
                e.next_at = earliest.max(now);
            }
        }
    }

    /// The next lookup due at `now`, if any; marks it in flight (D4).
    pub fn poll_resolve(&mut self, now: Instant) -> Option<Resolve> {
        if !self.alone {
            return None;
        }
        let (index, e) = self
            .entries
            .iter_mut()
            .enumerate()
            .find(|(_, e)| !e.in_flight && e.next_at <= now)?;
        e.in_flight = true;
        e.last_started = Some(now);
        self.stats.lookups += 1;
        Some(Resolve {
            index,
            seed: e.seed.clone(),
        })
    }

    /// When the next lookup is due (None while joined, or while every lookup is in
    /// flight).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.alone {
            return None;
        }
        self.entries
            .iter()
            .filter(|e| !e.in_flight)
            .map(|e| e.next_at)
            .min()
    }

    /// The lookup of name `index` ended. Returns true when the addresses changed
    /// (then the seeds to announce to are [`Discovery::addresses`]). An unknown index
    /// changes nothing.
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        index: usize,
        result: Result<Vec<SocketAddr>, ResolveFailure>,
    ) -> bool {
        let jitter = self.rng.random_range(750u64..=1250);
        let Some(e) = self.entries.get_mut(index) else {
            return false;
        };
        e.in_flight = false;
        e.next_at = now + e.backoff * u32::try_from(jitter).unwrap_or(1000) / 1000;
        e.backoff = (e.backoff * 2).min(self.config.backoff_max);
        match result {
            Ok(mut addrs) if !addrs.is_empty() => {
                addrs.sort();
                addrs.dedup();
                if addrs == e.addrs {
                    return false;
                }
                e.addrs = addrs;
                self.stats.changes += 1;
                true
            }
            // An empty answer is a failure too; keep what we had (D3).
            Ok(_) | Err(_) => {
                self.stats.failures += 1;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(texts: &[&str]) -> Vec<DnsSeed> {
        texts.iter().map(|t| t.parse().expect("seed")).collect()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn discovery(names: &[&str]) -> (Discovery, Instant) {
        let now = Instant::now();
        let config = DiscoveryConfig {
            seeds: seeds(names),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
        };
        (Discovery::new(config, 7, now), now)
    }

    #[test]
    fn seed_forms_parse_print_back_and_bad_ones_say_what_to_write() {
        for text in [
            "dns://mesh.internal:7946",
            "dns+srv://_mesh._udp.example.org",
        ] {
            let seed: DnsSeed = text.parse().expect("parses");
            assert_eq!(seed.to_string(), text);
        }
        assert_eq!(
            "dns://a.b:1".parse::<DnsSeed>(),
            Ok(DnsSeed::Host {
                name: "a.b".into(),
                port: 1
            })
        );
        assert!(matches!(
            "dns://mesh.internal".parse::<DnsSeed>(),
            Err(DnsSeedError::Port(_))
        ));
        assert!(matches!(
            "dns://mesh.internal:0".parse::<DnsSeed>(),
            Err(DnsSeedError::Port(_))
        ));
        assert!(matches!(
            "dns://:7946".parse::<DnsSeed>(),
            Err(DnsSeedError::Name(_))
        ));
        assert!(matches!(
            "dns+srv://bad name".parse::<DnsSeed>(),
            Err(DnsSeedError::Name(_))
        ));
        assert!(matches!(
            "http://x:1".parse::<DnsSeed>(),
            Err(DnsSeedError::Scheme(_))
        ));
        assert!(DnsSeed::is_dns_form(" dns+srv://x") && !DnsSeed::is_dns_form("10.0.0.1:1"));
    }

    #[test]
    fn alone_every_name_is_looked_up_at_once_and_one_at_a_time() {
        let (mut d, now) = discovery(&["dns://a:1", "dns+srv://_mesh._udp.b"]);
        let first = d.poll_resolve(now).expect("a due");
        let second = d.poll_resolve(now).expect("b due");
        assert_eq!((first.index, second.index), (0, 1));
        assert_eq!(d.poll_resolve(now), None, "both in flight (D4)");
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(
            d.poll_resolve(now + Duration::from_secs(60)),
            None,
            "still in flight"
        );
    }

    #[test]
    fn while_alone_lookups_back_off_with_jitter_and_records_that_appear_are_taken() {
        let (mut d, mut now) = discovery(&["dns://a:1"]);
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let r = d.poll_resolve(now).expect("due");
            assert!(!d.handle_resolved(now, r.index, Err(ResolveFailure::NxDomain)));
            let next = d.poll_timeout().expect("armed");
            gaps.push(next - now);
            assert_eq!(d.poll_resolve(next - Duration::from_millis(1)), None);
            now = next;
        }
        // 1, 2, 4, 8, 8, 8 seconds, each within ±25 %.
        for (gap, nominal) in gaps.iter().zip([1u64, 2, 4, 8, 8, 8]) {
            let nominal = Duration::from_secs(nominal);
            assert!(
                *gap >= nominal * 3 / 4 && *gap <= nominal * 5 / 4,
                "{gaps:?}"
            );
        }
        assert!(
            gaps.windows(2).any(|w| w[0] * 2 != w[1]),
            "jittered: {gaps:?}"
        );
        assert_eq!(d.stats().failures, 6);
        // The record appears.
        let r = d.poll_resolve(now).expect("due");
        assert!(d.handle_resolved(now, r.index, Ok(vec![addr("10.0.0.1:1")])));
        assert_eq!(d.addresses(), [addr("10.0.0.1:1")]);
    }

    #[test]
    fn the_same_seed_gives_the_same_jitter() {
        let gaps = |seed: u64| {
            let now = Instant::now();
            let config = DiscoveryConfig {
                seeds: seeds(&["dns://a:1"]),
                ..DiscoveryConfig::default()
            };
            let mut d = Discovery::new(config, seed, now);
            let r = d.poll_resolve(now).expect("due");
            d.handle_resolved(now, r.index, Err(ResolveFailure::Timeout));
            d.poll_timeout().expect("armed") - now
        };
        assert_eq!(gaps(1), gaps(1));
        assert!((1..20).any(|s| gaps(s) != gaps(0)), "the seed matters");
    }

    #[test]
    fn a_failure_keeps_the_last_good_addresses_and_a_change_replaces_them() {
        let (mut d, now) = discovery(&["dns://a:1", "dns://b:2"]);
        let a = d.poll_resolve(now).expect("a");
        let b = d.poll_resolve(now).expect("b");
        assert!(d.handle_resolved(now, a.index, Ok(vec![addr("10.0.0.1:1")])));
        assert!(d.handle_resolved(
            now,
            b.index,
            Ok(vec![addr("10.0.0.2:2"), addr("10.0.0.1:1")])
        ));
        assert_eq!(d.addresses(), [addr("10.0.0.1:1"), addr("10.0.0.2:2")]);
        // Both due again well after their (jittered) backoff.
        let later = now + Duration::from_secs(10);
        let a = d.poll_resolve(later).expect("a again");
        assert!(!d.handle_resolved(later, a.index, Err(ResolveFailure::NxDomain)));
        assert_eq!(
            d.addresses(),
            [addr("10.0.0.1:1"), addr("10.0.0.2:2")],
            "D3"
        );
        let b = d.poll_resolve(later).expect("b again");
        assert!(
            !d.handle_resolved(later, b.index, Ok(Vec::new())),
            "empty is a failure"
        );
        assert_eq!(
            d.addresses(),
            [addr("10.0.0.1:1"), addr("10.0.0.2:2")],
            "D3"
        );
        let later = now + Duration::from_secs(100);
        let a = d.poll_resolve(later).expect("a again");
        let b = d.poll_resolve(later).expect("b again");
        assert!(
            !d.handle_resolved(
                later,
                b.index,
                Ok(vec![addr("10.0.0.1:1"), addr("10.0.0.2:2")])
            ),
            "same set in another order is no change"
        );
        assert!(d.handle_resolved(later, a.index, Ok(vec![addr("10.0.0.9:1")])));
        assert_eq!(
            d.addresses(),
            [addr("10.0.0.1:1"), addr("10.0.0.2:2"), addr("10.0.0.9:1")]
        );
        assert!(!d.handle_resolved(later, 99, Ok(vec![addr("10.0.0.7:1")])));
    }

    #[test]
    fn joined_nothing_is_looked_up_and_alone_again_looks_at_once_with_a_floor() {
        let (mut d, now) = discovery(&["dns://a:1"]);
        let r = d.poll_resolve(now).expect("due");
        d.handle_resolved(now, r.index, Ok(vec![addr("10.0.0.1:1")]));
        let t1 = now + Duration::from_millis(100);
        d.set_alone(t1, false);
        assert_eq!(d.poll_timeout(), None, "D2");
        assert_eq!(d.poll_resolve(t1 + Duration::from_secs(600)), None);
        // Alone again 200 ms after the last lookup started: wait for backoff_min.
        let t2 = now + Duration::from_millis(200);
        d.set_alone(t2, true);
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_secs(1)));
        // Long after: at once, with the backoff back at its minimum.
        let (mut d, now) = discovery(&["dns://a:1"]);
        for i in 0..4u64 {
            let at = now + Duration::from_secs(100 * i);
            let r = d.poll_resolve(at).expect("due");
            d.handle_resolved(at, r.index, Err(ResolveFailure::Error));
        }
        let t = now + Duration::from_secs(1000);
        d.set_alone(t, false);
        d.set_alone(t, true);
        assert_eq!(d.poll_timeout(), Some(t));
        let r = d.poll_resolve(t).expect("due");
        d.handle_resolved(t, r.index, Err(ResolveFailure::Error));
        let gap = d.poll_timeout().expect("armed") - t;
        assert!(gap <= Duration::from_millis(1250), "backoff reset: {gap:?}");
    }
}
