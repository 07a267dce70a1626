//! Node tags and placement against real `meshctl agent` processes: tags set at boot and
//! at run time are seen on every node, `members --filter` and `place` agree with them on
//! every agent, and bad input is a one-line error with a hint that changes nothing.
//! Every wait is a poll with a deadline.
//!
//! Needs `target/debug/meshctl` (or `MESHCTL_BIN`): `scripts/test` builds it first.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use mesh_api::{MemberView, PlaceAnswer, TagsAnswer};
use mesh_tests::cluster::{meshctl, Cluster};

/// Generous: agents share two cores with the build and each other.
const CONVERGE: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> Output {
    meshctl().args(args).output().expect("meshctl runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit code 1 and exactly an `error:` and a `hint:` line; returns the error line.
fn failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr:?}");
    assert!(lines[0].starts_with("error: ") && lines[1].starts_with("hint: "));
    lines[0].to_owned()
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Whether `members` shows `name` with exactly `want`.
fn shows(members: &[MemberView], name: &str, want: &BTreeMap<String, String>) -> bool {
    members.iter().any(|m| m.name == name && &m.tags == want)
}

#[test]
fn tags_filters_and_placement_on_real_agents() {
    let mut cluster = Cluster::new();
    cluster.agent_args(&["--tag", "tier=base"]);
    cluster.start_n(3);
    let all = [0, 1, 2];
    cluster.wait_until(CONVERGE, "three alive", || {
        cluster.sees_alive(&all, &["n1", "n2", "n3"])
    });
    let admin: Vec<String> = cluster.agents.iter().map(|a| a.admin.to_string()).collect();

    // Boot tags reach everyone.
    let base = tags(&[("tier", "base")]);
    cluster.wait_until(CONVERGE, "boot tags on every node", || {
        for a in &cluster.agents {
            let m = a.members().map_err(|e| e.to_string())?;
            for name in ["n1", "n2", "n3"] {
                if !shows(&m, name, &base) {
                    return Err(format!(
                        "{} does not show {name} with tier=base: {m:?}",
                        a.name
                    ));
                }
            }
        }
        Ok(())
    });

    // Run-time changes, through the CLI, reach everyone.
    let set: TagsAnswer = serde_json::from_str(&ok(&run(&[
        "tags",
        "set",
        "region=eu",
        "role=worker",
        "--json",
        "--admin",
        &admin[0],
    ])))
    .expect("tags JSON");
    let n1_tags = tags(&[("tier", "base"), ("region", "eu"), ("role", "worker")]);
    assert_eq!((set.name.as_str(), &set.tags), ("n1", &n1_tags));
    ok(&run(&["tags", "set", "region=us", "--admin", &admin[1]]));
    let n2_tags = tags(&[("tier", "base"), ("region", "us")]);
    cluster.wait_until(CONVERGE, "run-time tags on every node", || {
        for a in &cluster.agents {
            let m = a.members().map_err(|e| e.to_string())?;
            if !shows(&m, "n1", &n1_tags) || !shows(&m, "n2", &n2_tags) {
                return Err(format!("{} does not show the new tags yet", a.name));
            }
        }
        Ok(())
    });
    let shown = ok(&run(&["tags", "show", "--admin", &admin[0]]));
    assert_eq!(shown, "region=eu\nrole=worker\ntier=base\n");

    // members --filter, the same on every agent; the table has the TAGS column.
    for a in &admin {
        let out = ok(&run(&[
            "members",
            "--filter",
            "region=eu",
            "--json",
            "--admin",
            a,
        ]));
        let m: Vec<MemberView> = serde_json::from_str(&out).expect("members JSON");
        assert_eq!(
            m.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["n1"],
            "{out}"
        );
        let out = ok(&run(&[
            "members",
            "--filter",
            "tier=base,region!=eu",
            "--json",
            "--admin",
            a,
        ]));
        let m: Vec<MemberView> = serde_json::from_str(&out).expect("members JSON");
        let mut names: Vec<&str> = m.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["n2", "n3"], "{out}");
    }
    let table = ok(&run(&["members", "--admin", &admin[2]]));
    assert!(
        table.lines().next().is_some_and(|h| h.contains("TAGS")),
        "{table}"
    );
    assert!(table.contains("region=eu,role=worker,tier=base"), "{table}");

    // place: every agent computes the same owners from the same view.
    let mut answers = Vec::new();
    for a in &admin {
        let out = ok(&run(&[
            "place",
            "job-7",
            "--filter",
            "tier=base",
            "--n",
            "3",
            "--json",
            "--admin",
            a,
        ]));
        let p: PlaceAnswer = serde_json::from_str(&out).expect("place JSON");
        answers.push(p.owners);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let mut owners = answers[0].clone();
    owners.sort_unstable();
    assert_eq!(owners, ["n1", "n2", "n3"]);
    let eu = ok(&run(&[
        "place",
        "job-7",
        "--filter",
        "region=eu",
        "--admin",
        &admin[2],
    ]));
    assert_eq!(eu, "n1\n");

    // Bad input: one-line errors with a hint, and nothing changes.
    let e = failure(&run(&["members", "--filter", "a b", "--admin", &admin[0]]));
    assert!(e.contains("bad selector term"), "{e}");
    let e = failure(&run(&[
        "place",
        "job-7",
        "--filter",
        "zone=nowhere",
        "--admin",
        &admin[0],
    ]));
    assert!(e.contains("no live member matches"), "{e}");
    let big: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|k| format!("{k}={}", "x".repeat(200)))
        .collect();
    let mut args = vec!["tags", "set"];
    args.extend(big.iter().map(String::as_str));
    args.extend(["--admin", admin[0].as_str()]);
    let e = failure(&run(&args));
    assert!(e.contains("at most 512"), "{e}");
    let out = run(&["tags", "set", "no-equals-sign", "--admin", &admin[0]]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed pair is a usage error"
    );
    let e = failure(&run(&["tags", "set", "k=1", "k=2", "--admin", &admin[0]]));
    assert!(e.contains("given twice"), "{e}");
    let after: TagsAnswer =
        serde_json::from_str(&ok(&run(&["tags", "show", "--json", "--admin", &admin[0]])))
            .expect("tags JSON");
    assert_eq!(after.tags, n1_tags, "a refused change changed the tags");

    // unset, seen everywhere.
    ok(&run(&[
        "tags", "unset", "role", "region", "--admin", &admin[0],
    ]));
    cluster.wait_until(CONVERGE, "the unset on every node", || {
        for a in &cluster.agents {
            let m = a.members().map_err(|e| e.to_string())?;
            if !shows(&m, "n1", &base) {
                return Err(format!("{} still shows n1's old tags", a.name));
            }
        }
        Ok(())
    });
}

/// A bad tag at boot stops the agent before it starts, naming the key.
#[test]
fn a_bad_boot_tag_is_refused_at_start() {
    let out = run(&[
        "agent",
        "--name",
        "n1",
        "--tag",
        "bad key=1",
        "--check-config",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "agent",
        "--name",
        "n1",
        "--tag",
        "a=1",
        "--tag",
        "a=2",
        "--ca",
        "x",
        "--cert",
        "y",
        "--key",
        "z",
        "--check-config",
    ]);
    let e = failure(&out);
    assert!(e.contains("given twice"), "{e}");
    let out = run(&[
        "agent",
        "--name",
        "n1",
        "--tag",
        "a=1",
        "--ca",
        "x",
        "--cert",
        "y",
        "--key",
        "z",
        "--check-config",
    ]);
    let text = ok(&out);
    assert!(
        text.contains("[tags]") && text.contains("a = \"1\""),
        "{text}"
    );
}
