//! `meshctl completions SHELL`: shell completion scripts, written by clap's own
//! generator (`clap_complete`) from the same command definition that parses the
//! arguments, so they cannot drift from the real flags.

use anyhow::Result;
use clap::{Args, CommandFactory, ValueEnum};

use crate::out::print_stdout;
use crate::Cli;

/// The shells `meshctl completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompletionShell {
    /// Bash: `source <(meshctl completions bash)`.
    Bash,
    /// Zsh: save as `_meshctl` in a directory of `$fpath`.
    Zsh,
    /// Fish: save as `~/.config/fish/completions/meshctl.fish`.
    Fish,
}

/// `meshctl completions` options.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// The completion script for `shell`.
pub(crate) fn script(shell: CompletionShell) -> String {
    let generator = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut command, "meshctl", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `meshctl completions`.
pub(crate) fn run(args: CompletionsArgs) -> Result<()> {
    print_stdout(&script(args.shell))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_that_knows_the_verbs_and_their_flags() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let text = script(shell);
            for word in [
                "members",
                "info",
                "rtt",
                "leave",
                "force-leave",
                "monitor",
                "completions",
                "--admin",
            ] {
                assert!(text.contains(word), "{shell:?} script lacks {word}");
            }
        }
        assert!(script(CompletionShell::Bash).contains("complete -F"));
        assert!(script(CompletionShell::Zsh).starts_with("#compdef meshctl"));
        assert!(script(CompletionShell::Fish).contains("complete -c meshctl"));
    }
}
