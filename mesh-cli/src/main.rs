//! The `meshctl` binary; everything is in the library.

fn main() -> std::process::ExitCode {
    mesh_cli::main_entry()
}
