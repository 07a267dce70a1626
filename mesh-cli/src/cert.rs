//! `meshctl cert`: make the cluster CA and node certificates.
//!
//! Existing files are never overwritten without `--force`: replacing a CA silently
//! would cut every node issued from it out of the cluster.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use mesh_core::identity::validate_name;
use mesh_transport::certs::{generate_ca, issue_node_cert, pair_paths, read_pair, write_pair};

use crate::error::{failure, Hint};

/// `meshctl cert` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Create a cluster CA: DIR/ca.crt and DIR/ca.key (keep ca.key secret).
    Ca {
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Cluster name recorded in the CA certificate.
        #[arg(long, value_name = "NAME", default_value = "mesh")]
        cluster: String,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a node certificate signed by the CA: DIR/NAME.crt and DIR/NAME.key.
    Issue {
        /// Directory holding ca.crt and ca.key.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// Node name (the agent's --name).
        #[arg(long)]
        name: String,
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `meshctl cert ...`.
pub(crate) fn run(command: CertCommand) -> Result<()> {
    match command {
        CertCommand::Ca {
            out,
            cluster,
            force,
        } => {
            refuse_overwrite(&out, "ca", force)?;
            let ca = generate_ca(&cluster).hint("pass a non-empty --cluster NAME")?;
            write_pair(&out, "ca", &ca).hint("check that --out is a writable directory")?;
            let (crt, key) = pair_paths(&out, "ca");
            println!("wrote {} and {}", crt.display(), key.display());
            println!(
                "keep {} secret: whoever holds it can admit nodes",
                key.display()
            );
            Ok(())
        }
        CertCommand::Issue {
            ca_dir,
            name,
            out,
            force,
        } => {
            validate_name(&name).map_err(|e| {
                failure(
                    format!("--name {name:?}: {e}"),
                    "node names are short DNS-like labels, e.g. n1 or web-3",
                )
            })?;
            refuse_overwrite(&out, &name, force)?;
            let ca = read_pair(&ca_dir, "ca").hint(format!(
                "--ca-dir must hold ca.crt and ca.key; make them with `meshctl cert ca --out {}`",
                ca_dir.display()
            ))?;
            let pair = issue_node_cert(&ca, &name)
                .hint("check that --ca-dir holds a CA made by `meshctl cert ca`")?;
            write_pair(&out, &name, &pair).hint("check that --out is a writable directory")?;
            let (crt, key) = pair_paths(&out, &name);
            println!("wrote {} and {}", crt.display(), key.display());
            Ok(())
        }
    }
}

/// Fails if `dir/basename.crt` or `dir/basename.key` exists, unless `force`.
fn refuse_overwrite(dir: &Path, basename: &str, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    let (crt, key) = pair_paths(dir, basename);
    for path in [crt, key] {
        if path.exists() {
            return Err(failure(
                format!("{} already exists", path.display()),
                "pass --force to overwrite it, or choose another --out directory",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_and_a_node_certificate_are_written_and_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let ca = || CertCommand::Ca {
            out: ca_dir.clone(),
            cluster: "test".into(),
            force: false,
        };
        run(ca()).expect("ca");
        assert!(ca_dir.join("ca.crt").exists() && ca_dir.join("ca.key").exists());
        let before = std::fs::read(ca_dir.join("ca.key")).expect("read");
        let err = run(ca()).expect_err("exists");
        assert!(err.to_string().contains("already exists"), "{err:#}");
        assert_eq!(std::fs::read(ca_dir.join("ca.key")).expect("read"), before);

        let issue = |force| CertCommand::Issue {
            ca_dir: ca_dir.clone(),
            name: "n1".into(),
            out: dir.path().join("n1"),
            force,
        };
        run(issue(false)).expect("issue");
        assert!(dir.path().join("n1/n1.crt").exists());
        assert!(run(issue(false)).is_err());
        run(issue(true)).expect("forced");
    }

    #[test]
    fn issuing_without_a_ca_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = run(CertCommand::Issue {
            ca_dir: dir.path().join("nope"),
            name: "n1".into(),
            out: dir.path().to_owned(),
            force: false,
        })
        .expect_err("no CA");
        assert!(err.to_string().contains("ca.crt"), "{err:#}");
    }

    #[test]
    fn a_bad_node_name_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = run(CertCommand::Issue {
            ca_dir: dir.path().to_owned(),
            name: "bad name".into(),
            out: dir.path().join("out"),
            force: false,
        })
        .expect_err("bad name");
        assert!(err.to_string().contains("--name"), "{err:#}");
        assert!(!dir.path().join("out").exists());
    }
}
