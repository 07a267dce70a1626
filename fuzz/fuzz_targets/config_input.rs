//! The agent's TOML config file (`meshctl agent --config FILE`) on arbitrary bytes, as
//! `meshctl` reads it: parse (`Layer::from_toml`), then fill in defaults and validate
//! (`Layer::resolve`), through `mesh_cli::fuzzing::config_file`.
//!
//! Besides never panicking: an error is one line (the CLI prints it after `error:`) and
//! names a line of the file (1 ..= lines + 1); a file that resolves prints back as TOML
//! (what `--check-config` shows), and that text is one the parser reads.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match mesh_cli::fuzzing::config_file(text) {
        Ok(printed) => match mesh_cli::fuzzing::config_file(&printed) {
            Ok(again) => assert_eq!(
                again, printed,
                "--check-config output reads back differently"
            ),
            Err(e) => panic!("--check-config output is not a valid config file: {e:?}\n{printed}"),
        },
        Err(mesh_cli::fuzzing::ConfigFileError::Parse { line, message }) => {
            assert!(
                line >= 1 && line <= text.lines().count() + 1,
                "line {line} of a {}-line file",
                text.lines().count()
            );
            assert!(
                !message.contains('\n'),
                "a multi-line parse error: {message:?}"
            );
        }
        Err(mesh_cli::fuzzing::ConfigFileError::Invalid(message)) => {
            assert!(!message.contains('\n'), "a multi-line error: {message:?}");
        }
    }
});
