//! The `tessera` binary; everything lives in the library.
#![forbid(unsafe_code)]

// Every request allocates a few small buffers (headers, JSON, the session
// view); glibc's malloc showed up at ~15% of a verify under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tessera_server::cli::main()
}
