//! `meshctl names`: the eventual names one agent sees, and `meshctl names whereis`.

use anyhow::Result;
use clap::{Args, Subcommand};
use mesh_core::admin::NameView;

use crate::client::AdminArgs;
use crate::groups::escape;
use crate::out::{print_stdout, table};

/// `meshctl names` options.
#[derive(Debug, Args)]
pub(crate) struct NamesArgs {
    #[command(subcommand)]
    command: Option<NamesCommand>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum NamesCommand {
    /// Which process holds a name (as this agent sees it).
    Whereis {
        /// The name.
        name: String,
    },
}

/// Runs `meshctl names`.
pub(crate) fn run(args: NamesArgs) -> Result<()> {
    let client = args.admin.client();
    let text = match args.command {
        None => {
            let (body, names) = client.get_json::<Vec<NameView>>("/v1/names")?;
            if args.json {
                format!("{body}\n")
            } else {
                render(&names)
            }
        }
        Some(NamesCommand::Whereis { name }) => {
            let (body, view) =
                client.get_json::<NameView>(&format!("/v1/names/{}", escape(&name)))?;
            if args.json {
                format!("{body}\n")
            } else {
                format!("{}\n", view.pid)
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
