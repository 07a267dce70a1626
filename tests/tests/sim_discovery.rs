//! DNS seed discovery in the deterministic simulator, over many seeds: the rule of
//! `mesh_core::discovery` (D1-D4) driving real nodes, with [`Sim::dns`] as the zone.
//! A failure prints the seed and a command that replays it.

use std::time::Duration;

use mesh_core::discovery::{DiscoveryConfig, DnsSeed};
use mesh_core::membership::MemberState;
use mesh_tests::sim::{for_each_seed, Sim};

/// Seeds per test: each simulates a minute or two of a small cluster.
const SEEDS: u64 = 60;
const NAME: &str = "mesh.sim";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Adds a node whose only seed is `dns://mesh.sim:7946`.
fn add_dns_node(sim: &mut Sim) -> usize {
    let seed: DnsSeed = format!("dns://{NAME}:7946").parse().expect("seed form");
    sim.node_config.discovery = DiscoveryConfig {
        seeds: vec![seed],
        ..DiscoveryConfig::default()
    };
    let n = sim.add_node(&[]);
    sim.node_config.discovery = DiscoveryConfig::default();
    n
}

fn sees_alive(sim: &Sim, observer: usize, target: usize) -> bool {
    sim.view(observer)
        .get(&sim.nodes[target].name)
        .is_some_and(|(_, s)| *s == MemberState::Alive)
}

/// D1 + D2: alone, the node looks the name up with backoff (not in a storm); once the
/// record appears it joins, and once joined it stops looking.
#[test]
fn a_record_that_appears_later_is_joined_and_lookups_stop_once_joined() {
    for_each_seed(
        "a_record_that_appears_later_is_joined_and_lookups_stop_once_joined",
        SEEDS,
        |seed| {
            let mut sim = Sim::new(seed);
            sim.add_cluster(2);
            if !sim.run_until(secs(15), Sim::all_see_all_alive) {
                return Err(format!("cluster did not form: {}", sim.describe()));
            }
            let lone = add_dns_node(&mut sim);
            sim.run_for(secs(10));
            if sim.live_view(lone).len() != 1 {
                return Err(format!("joined with no record: {:?}", sim.view(lone)));
            }
            // 0.5 + 1 + 2 + 4 s (±25 %) fit in 10 s: 4 or 5 lookups, 6 at most.
            let alone_lookups = sim.dns_lookups;
            if !(3..=6).contains(&alone_lookups) {
                return Err(format!(
                    "{alone_lookups} lookups in 10 s alone (D1 backoff)"
                ));
            }
            sim.dns.insert(NAME.to_owned(), vec![1]);
            if !sim.run_until(secs(40), Sim::all_see_all_alive) {
                return Err(format!(
                    "did not join once the record appeared: {}",
                    sim.describe()
                ));
            }
            let joined_lookups = sim.dns_lookups;
            sim.run_for(secs(30));
            if sim.dns_lookups != joined_lookups {
                return Err(format!(
                    "looked up {} times while joined (D2)",
                    sim.dns_lookups - joined_lookups
                ));
            }
            Ok(())
        },
    );
}

/// D2 + D3: the record's node dies and the record moves to another node; alone
/// again, the node looks the name up at once and joins the node it names now.
#[test]
fn a_changed_record_is_followed_once_the_node_is_alone_again() {
    for_each_seed(
        "a_changed_record_is_followed_once_the_node_is_alone_again",
        SEEDS,
        |seed| {
            let mut sim = Sim::new(seed);
            // Two lone nodes with no seeds: only DNS can bring anyone to them.
            let first = sim.add_node(&[]);
            let second = sim.add_node(&[]);
            sim.dns.insert(NAME.to_owned(), vec![first]);
            let dns_node = add_dns_node(&mut sim);
            if !sim.run_until(secs(15), |s| {
                sees_alive(s, dns_node, first) && sees_alive(s, first, dns_node)
            }) {
                return Err(format!("did not join the first record: {}", sim.describe()));
            }
            if sees_alive(&sim, dns_node, second) {
                return Err("joined a node no record named".into());
            }
            sim.kill(first);
            sim.dns.insert(NAME.to_owned(), vec![second]);
            if !sim.run_until(secs(60), |s| {
                sees_alive(s, dns_node, second) && sees_alive(s, second, dns_node)
            }) {
                return Err(format!(
                    "did not follow the changed record: {}",
                    sim.describe()
                ));
            }
            Ok(())
        },
    );
}
