//! `meshctl tags show|set|unset` (this agent's tags) and `meshctl place KEY` (placement
//! by capability).

use std::collections::BTreeMap;

use anyhow::Result;
use clap::{Args, Subcommand};
use mesh_api::{PlaceAnswer, TagsAnswer, TagsBody};

use crate::client::AdminArgs;
use crate::error::failure;
use crate::groups::escape;
use crate::out::print_stdout;

/// `meshctl tags` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TagsCommand {
    /// Print this agent's tags, one KEY=VALUE a line.
    Show(ShowArgs),
    /// Add or replace tags at run time (gossiped to every member; no restart).
    Set(SetArgs),
    /// Remove tags at run time.
    Unset(UnsetArgs),
}

/// `meshctl tags show` options.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of lines.
    #[arg(long)]
    json: bool,
}

/// `meshctl tags set` options.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// Tags to set, KEY=VALUE (e.g. region=eu role=worker).
    #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_pair)]
    tags: Vec<(String, String)>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of lines.
    #[arg(long)]
    json: bool,
}

/// `meshctl tags unset` options.
#[derive(Debug, Args)]
pub(crate) struct UnsetArgs {
    /// Keys to remove.
    #[arg(required = true, value_name = "KEY")]
    keys: Vec<String>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of lines.
    #[arg(long)]
    json: bool,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    mesh_types::tags::parse_pair(s).map_err(|e| e.to_string())
}

/// Runs `meshctl tags ...`.
pub(crate) fn run(command: TagsCommand) -> Result<()> {
    let (admin, json, body) = match command {
        TagsCommand::Show(a) => (a.admin, a.json, None),
        TagsCommand::Set(a) => {
            let mut set = BTreeMap::new();
            for (k, v) in a.tags {
                if set.insert(k.clone(), v).is_some() {
                    return Err(failure(
                        format!("tag {k:?} given twice"),
                        "give each key once: meshctl tags set KEY=VALUE [KEY=VALUE...]",
                    ));
                }
            }
            let body = TagsBody {
                set,
                unset: Vec::new(),
            };
            (a.admin, a.json, Some(body))
        }
        TagsCommand::Unset(a) => {
            let body = TagsBody {
                set: BTreeMap::new(),
                unset: a.keys,
            };
            (a.admin, a.json, Some(body))
        }
    };
    let client = admin.client().with_hints(&[(
        422,
        "tags are KEY=VALUE: keys of letters, digits and . _ / -, printable ASCII values; \
         at most 64 tags and 512 bytes in all",
    )]);
    let text = match body {
        None => client.get("/v1/tags")?,
        Some(body) => client.post("/v1/tags", &body)?,
    };
    let answer: TagsAnswer = client.parse(&text)?;
    if json {
        return print_stdout(&format!("{text}\n"));
    }
    let mut out = String::new();
    for (k, v) in &answer.tags {
        out.push_str(&format!("{k}={v}\n"));
    }
    print_stdout(&out)
}

/// `meshctl place` options.
#[derive(Debug, Args)]
pub(crate) struct PlaceArgs {
    /// The key to place (a task, a shard, a daemon's name...).
    key: String,
    /// Only members whose tags match this selector, e.g. 'region=eu,role!=edge'
    /// (terms KEY=VALUE, KEY!=VALUE, KEY, !KEY; all must hold).
    #[arg(long, value_name = "SELECTOR")]
    filter: Option<String>,
    /// How many owners to show: the preferred one, then the next choices (1 to 64).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    n: u16,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of lines.
    #[arg(long)]
    json: bool,
}

/// Runs `meshctl place`: one owner a line, best first; fails if no live member matches.
pub(crate) fn run_place(args: PlaceArgs) -> Result<()> {
    let client = args.admin.client().with_hints(&[(
        400,
        "selectors are comma-separated KEY=VALUE, KEY!=VALUE, KEY or !KEY terms",
    )]);
    let mut path = format!("/v1/place?key={}&n={}", escape(&args.key), args.n);
    if let Some(f) = &args.filter {
        path.push_str(&format!("&filter={}", escape(f)));
    }
    let text = client.get(&path)?;
    let answer: PlaceAnswer = client.parse(&text)?;
    if args.json {
        return print_stdout(&format!("{text}\n"));
    }
    if answer.owners.is_empty() {
        return Err(failure(
            format!("no live member matches {:?}", answer.filter),
            "see the members' tags with `meshctl members`, or loosen --filter",
        ));
    }
    print_stdout(
        &answer
            .owners
            .iter()
            .map(|o| format!("{o}\n"))
            .collect::<String>(),
    )
}
