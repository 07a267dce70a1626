//! `meshctl send`: send one message to a group, an eventual or strong name, or a PID,
//! and say what became of it.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::{ArgGroup, Args};
use mesh_api::{GroupMode, SendAnswer, SendBody, DEFAULT_SCOPE};

use crate::client::AdminArgs;
use crate::config_file::io_reason;
use crate::error::failure;
use crate::out::print_stdout;

/// `meshctl send` options.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("dest").required(true).args(["group", "name", "strong", "pid"])))]
#[command(group(ArgGroup::new("which").args(["one", "local", "nearest"])))]
pub(crate) struct SendArgs {
    /// Send to every member of this group.
    #[arg(long)]
    group: Option<String>,
    /// The group's scope.
    #[arg(long, default_value = DEFAULT_SCOPE, requires = "group")]
    scope: String,
    /// Only one member of the group, chosen at random.
    #[arg(long, requires = "group")]
    one: bool,
    /// Only the group's members on the agent asked.
    #[arg(long, requires = "group")]
    local: bool,
    /// One member: on the agent asked if possible, else on the nearest peer.
    #[arg(long, requires = "group")]
    nearest: bool,
    /// Send to the process registered under this eventual name.
    #[arg(long)]
    name: Option<String>,
    /// Send to the owner of this strong name (as the agent's cache has it); the message
    /// carries the name's version and the owner's node refuses a stale one.
    #[arg(long, value_name = "NAME")]
    strong: Option<String>,
    /// Send to this process (`node/incarnation/local_id`, as `meshctl groups G` shows).
    #[arg(long)]
    pid: Option<String>,
    /// The message; without it, --file or standard input.
    #[arg(conflicts_with = "file")]
    message: Option<String>,
    /// Read the message from this file.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
}

/// Runs `meshctl send`.
pub(crate) fn run(args: SendArgs) -> Result<()> {
    let bytes = message_bytes(&args)?;
    let (payload, payload_base64) = match String::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(e) => {
            use base64::Engine as _;
            (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            )
        }
    };
    let mode = if args.one {
        Some(GroupMode::One)
    } else if args.local {
        Some(GroupMode::Local)
    } else if args.nearest {
        Some(GroupMode::Nearest)
    } else {
        None
    };
    let body = SendBody {
        scope: args.group.as_ref().map(|_| args.scope.clone()),
        group: args.group.clone(),
        mode: args.group.as_ref().and(mode),
        name: args.name.clone(),
        strong: args.strong.clone(),
        pid: args.pid.clone(),
        payload,
        payload_base64,
    };
    let client = args.admin.client();
    let text = client.post("/v1/send", &body)?;
    let answer: SendAnswer = client.parse(&text)?;
    if args.json {
        print_stdout(&format!("{text}\n"))?;
    } else {
        print_stdout(&format!(
            "delivered to {} process{} ({} remote node{})\n",
            answer.delivered,
            if answer.delivered == 1 { "" } else { "es" },
            answer.remote_nodes,
            if answer.remote_nodes == 1 { "" } else { "s" },
        ))?;
    }
    if !answer.failed.is_empty() || !answer.timed_out.is_empty() || !answer.backpressure.is_empty()
    {
        let mut parts: Vec<String> = answer
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.pid, f.reason))
            .collect();
        parts.extend(
            answer
                .timed_out
                .iter()
                .map(|n| format!("node {n}: no answer")),
        );
        return Err(failure(
            format!("not delivered to every target: {}", parts.join(", ")),
            "mailbox_full means a receiver is slower than its senders; no answer means the \
             node may or may not have delivered (check `meshctl members`)",
        ));
    }
    Ok(())
}

fn message_bytes(args: &SendArgs) -> Result<Vec<u8>> {
    if let Some(m) = &args.message {
        return Ok(m.clone().into_bytes());
    }
    if let Some(path) = &args.file {
        return std::fs::read(path).map_err(|e| {
            failure(
                format!(
                    "cannot read the message file {}: {}",
                    path.display(),
                    io_reason(&e)
                ),
                "pass an existing file with --file, or give the message as an argument",
            )
        });
    }
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).map_err(|e| {
        failure(
            format!(
                "cannot read the message from standard input: {}",
                io_reason(&e)
            ),
            "give the message as an argument or with --file",
        )
    })?;
    Ok(buf)
}
