//! The `cairn` binary.

fn main() -> std::process::ExitCode {
    cairn::cli::main().into()
}
