//! `meshctl listen`: hold a process on an agent for as long as the command runs. The
//! process joins the groups and/or registers the name; every message it receives is
//! printed as it arrives. When the command ends (Ctrl-C, a closed pipe, a lost
//! connection) the agent notices within a second, and the process exits and leaves
//! its groups and name.

use std::io::BufRead as _;

use anyhow::Result;
use clap::{Args, ValueEnum};
use mesh_api::{ListenBody, ListenLine, Policy as ApiPolicy, DEFAULT_SCOPE};

use crate::client::AdminArgs;
use crate::config_file::io_reason;
use crate::error::failure;
use crate::out::print_stdout;

/// What to do when a concurrent registration of the name elsewhere wins.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Policy {
    /// Retract this registration and print a notice (the default).
    Notify,
    /// Retract it and end the process (and so this command).
    Kill,
    /// Retract both registrations.
    UnregisterBoth,
}

/// `meshctl listen` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["group", "name"])))]
pub(crate) struct ListenArgs {
    /// Join this group (repeat for several).
    #[arg(long)]
    group: Vec<String>,
    /// Register this eventual name.
    #[arg(long)]
    name: Option<String>,
    /// The groups' scope.
    #[arg(long, default_value = DEFAULT_SCOPE)]
    scope: String,
    /// Conflict policy of the name.
    #[arg(long, value_enum, default_value = "notify", requires = "name")]
    policy: Policy,
    /// Metadata for the memberships and the name.
    #[arg(long)]
    meta: Option<String>,
    /// Exit after this many messages (for scripts).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print every event as a JSON line (including the first `ready` line).
    #[arg(long)]
    json: bool,
}

/// Runs `meshctl listen`.
pub(crate) fn run(args: ListenArgs) -> Result<()> {
    let body = ListenBody {
        groups: args.group.clone(),
        scope: Some(args.scope.clone()),
        name: args.name.clone(),
        policy: args.name.as_ref().map(|_| match args.policy {
            Policy::Notify => ApiPolicy::Notify,
            Policy::Kill => ApiPolicy::Kill,
            Policy::UnregisterBoth => ApiPolicy::UnregisterBoth,
        }),
        meta: args.meta.clone(),
        mailbox: None,
    };
    let client = args.admin.client();
    let reader = client.post_stream("/v1/listen", &body)?;
    let mut messages = 0u64;
    for line in reader.lines() {
        let line = line.map_err(|e| {
            failure(
                format!("lost the connection to the agent: {}", io_reason(&e)),
                "is the agent still running? the process it held has exited",
            )
        })?;
        let event: ListenLine = client.parse(&line)?;
        match &event {
            ListenLine::Heartbeat => continue,
            ListenLine::Ready { pid, .. } if !args.json => {
                eprintln!("listening as {pid}");
                continue;
            }
            _ => {}
        }
        if args.json {
            print_stdout(&format!("{line}\n"))?;
        } else {
            match &event {
                ListenLine::Message {
                    payload,
                    payload_base64,
                    ..
                } => {
                    let text = payload
                        .clone()
                        .or_else(|| payload_base64.as_ref().map(|b| format!("base64:{b}")))
                        .unwrap_or_default();
                    print_stdout(&format!("{text}\n"))?;
                }
                ListenLine::NameConflict { name, winner } => {
                    print_stdout(&format!("name conflict: {name} is kept by {winner}\n"))?;
                }
                ListenLine::Exited => print_stdout("exited\n")?,
                ListenLine::Ready { .. } | ListenLine::Heartbeat => {}
            }
        }
        match event {
            ListenLine::Message { .. } => {
                messages += 1;
                if args.count.is_some_and(|c| messages >= c) {
                    return Ok(());
                }
            }
            ListenLine::Exited => {
                return Err(failure(
                    "the agent ended the listening process",
                    "with --policy kill, a name conflict ends it; otherwise the agent stopped",
                ))
            }
            _ => {}
        }
    }
    Err(failure(
        "the agent closed the stream",
        "is the agent still running? the process it held has exited",
    ))
}
