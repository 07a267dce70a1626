//! `meshctl members`: the members one agent knows, as a table or as JSON.

use anyhow::Result;
use clap::Args;
use mesh_api::MemberView;

use crate::client::AdminArgs;
use crate::out::{print_stdout, table};

/// `meshctl members` options.
#[derive(Debug, Args)]
pub(crate) struct MembersArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Only members whose tags match this selector, e.g. 'region=eu,role!=edge'
    /// (terms KEY=VALUE, KEY!=VALUE, KEY, !KEY; all must hold).
    #[arg(long, value_name = "SELECTOR")]
    filter: Option<String>,
}

/// Runs `meshctl members`.
pub(crate) fn run(args: MembersArgs) -> Result<()> {
    let client = args.admin.client().with_hints(&[(
        400,
        "selectors are comma-separated KEY=VALUE, KEY!=VALUE, KEY or !KEY terms",
    )]);
    let filter = args.filter.as_deref();
    let text = if args.json {
        format!("{}\n", client.members_json(filter)?)
    } else {
        render_table(&client.members_filtered(filter)?)
    };
    print_stdout(&text)
}

/// The members as an aligned table: this node first (marked `*`), then by name.
pub(crate) fn render_table(members: &[MemberView]) -> String {
    let mut sorted: Vec<&MemberView> = members.iter().collect();
    sorted.sort_by(|a, b| b.is_self.cmp(&a.is_self).then_with(|| a.name.cmp(&b.name)));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|m| {
            vec![
                if m.is_self {
                    format!("{}*", m.name)
                } else {
                    m.name.clone()
                },
                m.addr.to_string(),
                m.incarnation.to_string(),
                m.state.as_str().to_owned(),
                human_age(m.age_seconds),
                if m.tags.is_empty() {
                    "-".to_owned()
                } else {
                    mesh_types::tags::format_list(&m.tags)
                },
            ]
        })
        .collect();
    table(
        &["NAME", "ADDRESS", "INCARNATION", "STATE", "AGE", "TAGS"],
        &rows,
    )
}

/// A duration for humans: `3s`, `2m10s`, `1h4m`, `2d3h`.
pub(crate) fn human_age(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "0s".to_owned();
    }
    // `as` saturates; fractions of a second are not shown.
    let s = seconds.floor() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use mesh_api::MemberState;

    use super::*;

    fn member(name: &str, state: MemberState, is_self: bool) -> MemberView {
        MemberView {
            name: name.into(),
            addr: "127.0.0.1:7946".parse().expect("addr"),
            incarnation: 12,
            state,
            age_seconds: 130.4,
            is_self,
            tags: if is_self {
                mesh_types::tags::parse_list("region=eu,role=worker").expect("valid")
            } else {
                Default::default()
            },
        }
    }

    #[test]
    fn ages_read_like_durations() {
        assert_eq!(human_age(0.2), "0s");
        assert_eq!(human_age(3.9), "3s");
        assert_eq!(human_age(130.0), "2m10s");
        assert_eq!(human_age(3840.0), "1h4m");
        assert_eq!(human_age(2.0 * 86400.0 + 3.0 * 3600.0 + 5.0), "2d3h");
        assert_eq!(human_age(-1.0), "0s");
        assert_eq!(human_age(f64::NAN), "0s");
        assert_eq!(human_age(f64::INFINITY), "0s");
    }

    #[test]
    fn the_table_puts_self_first_and_marks_it() {
        let table = render_table(&[
            member("zed", MemberState::Alive, false),
            member("n2", MemberState::Down, false),
            member("n1", MemberState::Alive, true),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "ADDRESS", "INCARNATION", "STATE", "AGE", "TAGS"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "n1*",
                "127.0.0.1:7946",
                "12",
                "alive",
                "2m10s",
                "region=eu,role=worker"
            ]
        );
        assert!(lines[2].trim_end().ends_with(" -"));
        assert!(lines[2].starts_with("n2 "));
        assert!(lines[3].starts_with("zed "));
        // Columns line up.
        let col = lines[0].find("ADDRESS").expect("column");
        assert!(lines
            .iter()
            .all(|l| l[col..].starts_with("127.") || l[col..].starts_with("ADDRESS")));
    }
}
