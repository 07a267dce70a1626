//! Node tags in the deterministic simulator, over many seeds: the properties of
//! `mesh_core::tags` (T1 newest wins, T2 only live members) on whole nodes, with loss,
//! lost broadcasts, crashes and restarts.

use std::time::Duration;

use mesh_core::membership::EventKind;
use mesh_core::node::{Command, Reply};
use mesh_tests::sim::{for_each_seed, Sim};
use mesh_types::tags::{parse_list, Tags};

/// Seeds per test in an ordinary run.
const SEEDS: u64 = 40;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn tags(s: &str) -> Tags {
    parse_list(s).expect("valid test tags")
}

/// A cluster of `n` nodes whose node `i` boots with `idx=i`, converged.
fn tagged_cluster(n: usize, seed: u64) -> Result<Sim, String> {
    let mut sim = Sim::new(seed);
    for i in 0..n {
        sim.node_config.tags = tags(&format!("idx={i}"));
        sim.add_node(if i == 0 { &[] } else { &[0] });
    }
    if !sim.run_until(secs(20), Sim::all_see_all_alive) {
        return Err(format!("no convergence: {}", sim.describe()));
    }
    Ok(sim)
}

/// Whether every live node holds `want` as the tags of node `of` (`None`: holds none).
fn all_hold(sim: &Sim, of: usize, want: Option<&Tags>) -> bool {
    let name = format!("n{of}");
    sim.live_nodes().into_iter().filter(|&n| n != of).all(|n| {
        sim.node(n)
            .is_some_and(|node| node.tags().get(&name) == want)
    })
}

fn set_tags(sim: &mut Sim, n: usize, set: &str, unset: &[&str]) -> Result<Tags, String> {
    let cmd = Command::SetTags {
        set: tags(set),
        unset: unset.iter().map(|s| (*s).to_owned()).collect(),
    };
    match sim.run_command(n, cmd, secs(1)) {
        Some(Reply::Tags(r)) => r.map_err(|e| format!("refused: {e}")),
        other => Err(format!("set_tags replied {other:?}")),
    }
}

/// Boot tags reach every node, and a run-time change replaces them everywhere, with a
/// `Tags` membership event on every other node.
#[test]
fn boot_tags_converge_and_a_change_reaches_every_node() {
    for_each_seed(
        "boot_tags_converge_and_a_change_reaches_every_node",
        SEEDS,
        |seed| {
            let mut sim = tagged_cluster(6, seed)?;
            let all_boot =
                |sim: &Sim| (0..6).all(|i| all_hold(sim, i, Some(&tags(&format!("idx={i}")))));
            if !sim.run_until(secs(5), all_boot) {
                return Err("boot tags did not converge in 5 s".into());
            }
            let before = sim.observed.len();
            let now = set_tags(&mut sim, 2, "role=db,zone=a", &["idx"])?;
            if now != tags("role=db,zone=a") {
                return Err(format!("the reply is not the new set: {now:?}"));
            }
            let want = tags("role=db,zone=a");
            if !sim.run_until(secs(2), |s| all_hold(s, 2, Some(&want))) {
                return Err("the change did not reach every node in 2 s".into());
            }
            let events: Vec<usize> = sim.observed[before..]
                .iter()
                .filter(|o| o.event.kind == EventKind::Tags && o.event.member.name == "n2")
                .map(|o| o.observer)
                .collect();
            for n in (0..6).filter(|&n| n != 2) {
                if !events.contains(&n) {
                    return Err(format!("n{n} reported no tags event: {events:?}"));
                }
            }
            Ok(())
        },
    );
}

/// With every broadcast lost, anti-entropy alone carries a change (its O(1) digest
/// differs, so the full table goes across).
#[test]
fn anti_entropy_alone_carries_a_change() {
    for_each_seed("anti_entropy_alone_carries_a_change", SEEDS, |seed| {
        let mut sim = tagged_cluster(5, seed)?;
        sim.lose_broadcasts = true;
        set_tags(&mut sim, 3, "gpu=1", &[])?;
        let want = tags("idx=3,gpu=1");
        if !sim.run_until(secs(15), |s| all_hold(s, 3, Some(&want))) {
            return Err(format!(
                "anti-entropy did not carry the change in 15 s (lost {} broadcasts)",
                sim.broadcasts_lost
            ));
        }
        if sim.broadcasts_lost == 0 {
            return Err("no broadcast was lost: the test did not test anti-entropy".into());
        }
        Ok(())
    });
}

/// T2: a dead node's tags go from every view and do not come back through anti-entropy
/// with nodes that saw them; its next life's tags (version 1 again) replace them.
#[test]
fn a_dead_nodes_tags_go_and_its_next_life_wins() {
    for_each_seed(
        "a_dead_nodes_tags_go_and_its_next_life_wins",
        SEEDS,
        |seed| {
            let mut sim = tagged_cluster(5, seed)?;
            for _ in 0..3 {
                set_tags(&mut sim, 4, "v=x", &[])?;
                set_tags(&mut sim, 4, "v=y", &[])?;
            }
            let want = tags("idx=4,v=y");
            if !sim.run_until(secs(3), |s| all_hold(s, 4, Some(&want))) {
                return Err("the changes did not converge".into());
            }
            sim.kill(4);
            if !sim.run_until(secs(30), |s| all_hold(s, 4, None)) {
                return Err("a dead node's tags were still held after 30 s".into());
            }
            sim.run_for(secs(10));
            if !all_hold(&sim, 4, None) {
                return Err("a dead node's tags came back".into());
            }
            sim.node_config.tags = tags("idx=4,life=2");
            sim.restart(4);
            let want = tags("idx=4,life=2");
            if !sim.run_until(secs(20), |s| all_hold(s, 4, Some(&want))) {
                return Err(format!(
                    "the new life's tags did not replace the old: {}",
                    sim.describe()
                ));
            }
            Ok(())
        },
    );
}

/// T3 on a node: a refused change keeps the old set and sends nothing.
#[test]
fn a_refused_change_changes_nothing_anywhere() {
    let mut sim = tagged_cluster(3, 7).expect("converges");
    let too_many: String = (0..65)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let cmd = Command::SetTags {
        set: too_many
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        unset: Vec::new(),
    };
    match sim.run_command(1, cmd, secs(1)) {
        Some(Reply::Tags(Err(e))) => assert!(e.to_string().contains("at most 64"), "{e}"),
        other => panic!("65 tags were not refused: {other:?}"),
    }
    sim.run_for(secs(3));
    assert!(all_hold(&sim, 1, Some(&tags("idx=1"))));
    assert_eq!(
        sim.node(1).map(|n| n.tags().own_item().version),
        Some(1),
        "a refused change spent a version"
    );
}
