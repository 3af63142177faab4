//! The `tessera` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    tessera_server::cli::main()
}
