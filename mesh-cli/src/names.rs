//! `meshctl names`: the eventual names one agent sees, `meshctl names whereis`, and the
//! strong names (`--strong`: registered, transferred and released through a quorum).
//!
//! Eventual and strong names are separate namespaces and stay separate here: without
//! `--strong` (or `--linearizable`, which implies it) every command is about eventual
//! names, with it about strong names, and a strong lookup that finds nothing is an
//! error — never a silent fall-back to an eventual name of the same spelling.
//! Eventual names are registered by a process (`meshctl listen --name NAME`); strong
//! names with `meshctl names register --strong NAME`.

use anyhow::Result;
use clap::{Args, Subcommand};
use mesh_api::{
    NameView, StrongBody, StrongNameView, StrongReleaseBody, StrongTransferBody, WhereisAnswer,
};

use crate::claim::UNAVAILABLE_HINT;
use crate::client::{AdminArgs, StatusHints};
use crate::groups::escape;
use crate::out::{print_stdout, table};

const REGISTER_HINTS: StatusHints = &[
    (503, UNAVAILABLE_HINT),
    (
        504,
        "the registration may or may not have taken effect: check with `meshctl names \
         whereis --strong NAME --linearizable`",
    ),
    (
        409,
        "the name is taken: its owner is in the message; wait for its release, or choose \
         another name",
    ),
    (404, "--pid must be a live process of the agent asked"),
    (400, "fix the name (1 to 128 bytes) or the --pid"),
];

const CHANGE_HINTS: StatusHints = &[
    (503, UNAVAILABLE_HINT),
    (
        504,
        "the change may or may not have taken effect: check with `meshctl names whereis \
         --strong NAME --linearizable`",
    ),
    (
        409,
        "pass the name's current version (`meshctl names whereis --strong NAME \
         --linearizable`)",
    ),
    (
        404,
        "nothing to change: see the name's owner with `meshctl names whereis --strong NAME \
         --linearizable`",
    ),
    (400, "fix the name or the PID"),
];

const WHEREIS_HINTS: StatusHints = &[
    (503, UNAVAILABLE_HINT),
    (
        504,
        "no quorum answered in time: retry, or check `meshctl quorum status`",
    ),
    (
        404,
        "without --linearizable the agent's cache answers, which may not have learned a \
         new name yet; eventual names are looked up without --strong",
    ),
];

/// `meshctl names` options.
#[derive(Debug, Args)]
pub(crate) struct NamesArgs {
    #[command(subcommand)]
    command: Option<NamesCommand>,
    /// List the strong names in the agent's cache instead of the eventual names.
    #[arg(long)]
    strong: bool,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum NamesCommand {
    /// Which process holds a name (an eventual name as this agent sees it, or with
    /// --strong a strong name).
    Whereis {
        /// The name.
        name: String,
        /// Look up a strong name (the agent's cache, with its version).
        #[arg(long)]
        strong: bool,
        /// Look up a strong name with one quorum round instead of the cache (implies
        /// --strong).
        #[arg(long)]
        linearizable: bool,
    },
    /// Register a strong name (a quorum decides: exactly one of concurrent registrations
    /// wins, and its version is the name's fencing token).
    Register {
        /// The strong name to register.
        #[arg(long, value_name = "NAME")]
        strong: String,
        /// The owning process (`node/incarnation/local_id`) [default: a process the
        /// agent spawns and keeps until the name is released or transferred].
        #[arg(long, value_name = "PID")]
        pid: Option<String>,
        /// Bind the name to the agent's session: it vanishes if the agent dies.
        #[arg(long)]
        ephemeral: bool,
    },
    /// Release a strong name held at its current version.
    #[command(disable_version_flag = true)]
    Release {
        /// The strong name.
        #[arg(long, value_name = "NAME")]
        strong: String,
        /// Its current version.
        #[arg(long, value_name = "V")]
        version: u64,
    },
    /// Give a strong name held at its current version to another process (a new
    /// version).
    #[command(disable_version_flag = true)]
    Transfer {
        /// The strong name.
        #[arg(long, value_name = "NAME")]
        strong: String,
        /// Its current version.
        #[arg(long, value_name = "V")]
        version: u64,
        /// The new owner (`node/incarnation/local_id`).
        #[arg(long, value_name = "PID")]
        to: String,
    },
}

/// Runs `meshctl names`.
pub(crate) fn run(args: NamesArgs) -> Result<()> {
    let client = args.admin.client();
    let json = args.json;
    let text = match args.command {
        None if args.strong => {
            let client = client.for_quorum(&[(503, UNAVAILABLE_HINT)]);
            let (body, names) = client.get_json::<Vec<StrongNameView>>("/v1/names/strong")?;
            if json {
                format!("{body}\n")
            } else {
                render_strong(&names)
            }
        }
        None => {
            let (body, names) = client.get_json::<Vec<NameView>>("/v1/names")?;
            if json {
                format!("{body}\n")
            } else {
                render(&names)
            }
        }
        Some(NamesCommand::Whereis {
            name,
            strong,
            linearizable,
        }) if strong || linearizable => {
            let client = client.for_quorum(WHEREIS_HINTS);
            let path = format!(
                "/v1/names/strong/{}?linearizable={linearizable}",
                escape(&name)
            );
            let (body, a) = client.get_json::<WhereisAnswer>(&path)?;
            if json {
                format!("{body}\n")
            } else {
                format!(
                    "{} (version {}, {})\n",
                    a.entry.pid,
                    a.entry.version,
                    if a.linearizable {
                        "linearizable"
                    } else {
                        "cached"
                    }
                )
            }
        }
        Some(NamesCommand::Whereis { name, .. }) => {
            let (body, view) =
                client.get_json::<NameView>(&format!("/v1/names/{}", escape(&name)))?;
            if json {
                format!("{body}\n")
            } else {
                format!("{}\n", view.pid)
            }
        }
        Some(NamesCommand::Register {
            strong,
            pid,
            ephemeral,
        }) => {
            let client = client.for_quorum(REGISTER_HINTS);
            let kept = pid.is_none();
            let body = StrongBody {
                name: strong,
                pid,
                ephemeral,
            };
            let text = client.post("/v1/names/strong", &body)?;
            let v: StrongNameView = client.parse(&text)?;
            if json {
                format!("{text}\n")
            } else {
                format!(
                    "registered strong name {} at version {} to {}{}\n",
                    v.name,
                    v.version,
                    v.pid,
                    if kept {
                        " (a process the agent keeps)"
                    } else {
                        ""
                    }
                )
            }
        }
        Some(NamesCommand::Release { strong, version }) => {
            let client = client.for_quorum(CHANGE_HINTS);
            let body = StrongReleaseBody {
                name: strong,
                version,
            };
            let text = client.post("/v1/names/strong/release", &body)?;
            if json {
                format!("{text}\n")
            } else {
                format!("released strong name {} (version {version})\n", body.name)
            }
        }
        Some(NamesCommand::Transfer {
            strong,
            version,
            to,
        }) => {
            let client = client.for_quorum(CHANGE_HINTS);
            let body = StrongTransferBody {
                name: strong,
                version,
                pid: to,
            };
            let text = client.post("/v1/names/strong/transfer", &body)?;
            let v: StrongNameView = client.parse(&text)?;
            if json {
                format!("{text}\n")
            } else {
                format!(
                    "transferred strong name {} to {} at version {}\n",
                    v.name, v.pid, v.version
                )
            }
        }
    };
    print_stdout(&text)
}

fn render(names: &[NameView]) -> String {
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.pid.clone(),
                n.node.clone(),
                n.hlc.clone(),
                n.meta.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["NAME", "PID", "NODE", "HLC", "META"], &rows)
}

fn render_strong(names: &[StrongNameView]) -> String {
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.pid.clone(),
                n.node.clone(),
                n.version.to_string(),
                if n.ephemeral { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    table(&["NAME", "PID", "NODE", "VERSION", "EPHEMERAL"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_names_are_listed_with_version_and_ephemerality() {
        let t = render_strong(&[StrongNameView {
            name: "leader".into(),
            pid: "n4/5/3".into(),
            node: "n4".into(),
            version: 12,
            ephemeral: true,
            session: Some("n4/5/1".into()),
        }]);
        let lines: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines[0], ["NAME", "PID", "NODE", "VERSION", "EPHEMERAL"]);
        assert_eq!(lines[1], ["leader", "n4/5/3", "n4", "12", "yes"]);
    }
}
