//! `meshctl quorum status`: the quorum plane as one agent sees it — voters, epoch,
//! which voters it reaches, and which voter is the preferred proposer of each shard.

use anyhow::Result;
use clap::{Args, Subcommand};
use mesh_api::QuorumView;

use crate::claim::UNAVAILABLE_HINT;
use crate::client::{AdminArgs, StatusHints};
use crate::out::{print_stdout, table};

const STATUS_HINTS: StatusHints = &[(503, UNAVAILABLE_HINT)];

/// `meshctl quorum` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum QuorumCommand {
    /// Voters, epoch, reachability and preferred proposers, as one agent sees them.
    Status(StatusArgs),
}

/// `meshctl quorum status` options.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Also list every shard with its preferred proposer.
    #[arg(long)]
    shards: bool,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Runs `meshctl quorum`.
pub(crate) fn run(command: QuorumCommand) -> Result<()> {
    let QuorumCommand::Status(args) = command;
    let client = args.admin.client().for_quorum(STATUS_HINTS);
    let (body, view) = client.get_json::<QuorumView>("/v1/quorum")?;
    if args.json {
        return print_stdout(&format!("{body}\n"));
    }
    print_stdout(&render(&view, args.shards))
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// A summary block, the voters table, and with `shards` the shard table.
fn render(view: &QuorumView, shards: bool) -> String {
    let s = &view.status;
    let state = match &s.reason {
        Some(why) => format!("{} ({why})", s.state),
        None => s.state.clone(),
    };
    let summary = vec![
        vec!["state".to_owned(), state],
        vec![
            "epoch".to_owned(),
            s.epoch
                .map_or_else(|| "none (not formed yet)".to_owned(), |e| e.to_string()),
        ],
        vec![
            "quorum".to_owned(),
            format!(
                "{} of {} voters, {} reachable{}",
                s.quorum,
                s.voters.len(),
                s.reachable.len(),
                if s.reachable.len() < s.quorum {
                    " (unavailable: no majority)"
                } else {
                    ""
                }
            ),
        ],
        vec!["acceptor".to_owned(), yes_no(s.acceptor)],
        vec![
            "shards".to_owned(),
            format!("{} (this agent watches {})", s.shards, s.watched.len()),
        ],
        vec![
            "register".to_owned(),
            s.largest_slot.map_or_else(
                || "-".to_owned(),
                |(shard, bytes)| format!("largest {bytes} bytes (shard {shard})"),
            ),
        ],
    ];
    let mut summary = summary;
    if !s.stalled.is_empty() {
        let list: Vec<String> = s
            .stalled
            .iter()
            .map(|(shard, why)| format!("shard {shard} ({why})"))
            .collect();
        summary.push(vec!["stalled".to_owned(), list.join(", ")]);
    }
    let mut out = String::new();
    // A two-column block without a header: drop the table's header line.
    for line in table(&["", ""], &summary).lines().skip(1) {
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    let voters: Vec<Vec<String>> = s
        .voters
        .iter()
        .map(|v| {
            vec![
                v.clone(),
                yes_no(s.reachable.contains(v)),
                s.preferred.get(v).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&["VOTER", "REACHABLE", "PREFERRED SHARDS"], &voters));
    if shards {
        let rows: Vec<Vec<String>> = view
            .preferred_by_shard
            .iter()
            .enumerate()
            .map(|(i, p)| vec![i.to_string(), p.clone().unwrap_or_else(|| "-".to_owned())])
            .collect();
        out.push('\n');
        out.push_str(&table(&["SHARD", "PREFERRED PROPOSER"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::QuorumStatus;

    fn view() -> QuorumView {
        QuorumView {
            status: QuorumStatus {
                voters: vec!["n1".into(), "n2".into(), "n3".into()],
                epoch: Some(1),
                state: "non_voter".into(),
                reason: None,
                reachable: vec!["n1".into(), "n3".into()],
                quorum: 2,
                acceptor: false,
                shards: 2,
                preferred: [("n1".to_owned(), 1), ("n3".to_owned(), 1)].into(),
                watched: Vec::new(),
                stalled: Default::default(),
                largest_slot: Some((1, 2048)),
            },
            preferred_by_shard: vec![Some("n3".into()), Some("n1".into())],
        }
    }

    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    #[test]
    fn the_status_shows_epoch_quorum_reachability_and_preferred_shards() {
        let text = render(&view(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(words(lines[0]), ["state", "non_voter"]);
        assert_eq!(words(lines[1]), ["epoch", "1"]);
        assert_eq!(
            words(lines[2]),
            ["quorum", "2", "of", "3", "voters,", "2", "reachable"]
        );
        assert!(
            lines.iter().any(|l| words(l) == ["n2", "no", "0"]),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| words(l) == ["n3", "yes", "1"]),
            "{text}"
        );
        assert!(
            !text.contains("PREFERRED PROPOSER"),
            "shards only on request"
        );
    }

    #[test]
    fn a_minority_view_says_it_is_unavailable_and_shards_list_their_proposer() {
        let mut v = view();
        v.status.reachable = vec!["n1".into()];
        let text = render(&v, true);
        assert!(
            text.contains("1 reachable (unavailable: no majority)"),
            "{text}"
        );
        assert!(text.lines().any(|l| words(l) == ["0", "n3"]), "{text}");
        assert!(text.lines().any(|l| words(l) == ["1", "n1"]), "{text}");
    }

    #[test]
    fn the_largest_register_is_shown_and_a_stalled_shard_is_named_with_why() {
        let mut v = view();
        let text = render(&v, false);
        assert!(
            text.lines()
                .any(|l| words(l) == ["register", "largest", "2048", "bytes", "(shard", "1)"]),
            "{text}"
        );
        assert!(!text.contains("stalled"), "nothing stalled: {text}");
        v.status.stalled = [(1, "oversized".to_owned()), (3, "timeouts".to_owned())].into();
        let text = render(&v, false);
        assert!(
            text.lines().any(|l| words(l)
                == [
                    "stalled",
                    "shard",
                    "1",
                    "(oversized),",
                    "shard",
                    "3",
                    "(timeouts)"
                ]),
            "{text}"
        );
    }
}
