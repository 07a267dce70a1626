//! `meshctl groups [GROUP]`: the groups one agent sees, with member counts, or one
//! group's members with their nodes.

use anyhow::Result;
use clap::Args;
use mesh_api::{GroupCount, GroupView, DEFAULT_SCOPE};

use crate::client::AdminArgs;
use crate::out::{print_stdout, table};

/// `meshctl groups` options.
#[derive(Debug, Args)]
pub(crate) struct GroupsArgs {
    /// Show this group's members instead of the list of groups.
    group: Option<String>,
    /// The scope (an independent namespace of groups).
    #[arg(long, default_value = DEFAULT_SCOPE)]
    scope: String,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `meshctl groups`.
pub(crate) fn run(args: GroupsArgs) -> Result<()> {
    let client = args.admin.client();
    let scope = escape(&args.scope);
    let text = match &args.group {
        None => {
            let (body, groups) =
                client.get_json::<Vec<GroupCount>>(&format!("/v1/groups?scope={scope}"))?;
            if args.json {
                format!("{body}\n")
            } else {
                render_groups(&groups)
            }
        }
        Some(group) => {
            let path = format!("/v1/groups/{}?scope={scope}", escape(group));
            let (body, view) = client.get_json::<GroupView>(&path)?;
            if args.json {
                format!("{body}\n")
            } else {
                render_members(&view)
            }
        }
    };
    print_stdout(&text)
}

fn render_groups(groups: &[GroupCount]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| vec![g.group.clone(), g.members.to_string()])
        .collect();
    table(&["GROUP", "MEMBERS"], &rows)
}

fn render_members(view: &GroupView) -> String {
    let rows: Vec<Vec<String>> = view
        .members
        .iter()
        .map(|m| {
            vec![
                m.pid.clone(),
                m.node.clone(),
                m.count.to_string(),
                m.meta.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["PID", "NODE", "COUNT", "META"], &rows)
}

/// Percent-encodes everything but unreserved characters (RFC 3986): safe as a query
/// value and as a path segment.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::GroupMember;

    #[test]
    fn escaping_keeps_unreserved_characters_and_encodes_the_rest() {
        assert_eq!(escape("workers-1.a_b~"), "workers-1.a_b~");
        assert_eq!(escape("a b/c?d&é"), "a%20b%2Fc%3Fd%26%C3%A9");
    }

    #[test]
    fn a_group_lists_its_members_with_nodes_and_counts() {
        let t = render_members(&GroupView {
            scope: "default".into(),
            group: "g".into(),
            members: vec![GroupMember {
                pid: "n1/5/2".into(),
                node: "n1".into(),
                count: 2,
                meta: Some("role=a".into()),
            }],
        });
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["PID", "NODE", "COUNT", "META"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["n1/5/2", "n1", "2", "role=a"]
        );
    }
}
