//! How `meshctl` reports failure: one `error:` line saying what went wrong and one
//! `hint:` line saying what to do about it, then exit code 1.
//!
//! Commands return `anyhow::Result`; an error that knows its hint is a [`Failure`],
//! attached with [`Hint::hint`] or built with [`failure`]. Anything else is printed
//! with a generic hint.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

/// An error with a hint for the operator.
#[derive(Debug)]
pub(crate) struct Failure {
    what: String,
    hint: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Failure {}

/// A [`Failure`] as an `anyhow::Error`.
pub(crate) fn failure(what: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        what: what.into(),
        hint: hint.into(),
    })
}

/// Attaches a hint to any error.
pub(crate) trait Hint<T> {
    /// Turns the error into a [`Failure`] with this hint; its message keeps the
    /// whole context chain on one line.
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E> Hint<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| {
            let e: anyhow::Error = e.into();
            failure(format!("{e:#}"), hint)
        })
    }
}

/// Collapses a message onto one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints `error:` and `hint:` for `err` to stderr and returns exit code 1.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    let (what, hint) = match err.downcast_ref::<Failure>() {
        Some(f) => (f.what.clone(), f.hint.clone()),
        None => (
            format!("{err:#}"),
            "run `meshctl help` for usage".to_owned(),
        ),
    };
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", one_line(&what));
    let _ = writeln!(stderr, "hint: {}", one_line(&hint));
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn a_hint_keeps_the_context_chain_on_one_line() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("disk\non fire"));
        let err = r
            .context("cannot write x")
            .hint("try y")
            .expect_err("error");
        let f = err.downcast_ref::<Failure>().expect("a Failure");
        assert_eq!(one_line(&f.what), "cannot write x: disk on fire");
        assert_eq!(f.hint, "try y");
    }
}
