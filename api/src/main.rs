//! The `flaglog` binary: parses the command line and runs the chosen command.

use std::process::ExitCode;

use clap::Parser;

/// See the dependency's comment in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = api::config::Cli::parse();
    // Flushes the log when main returns.
    let _log_writer = api::telemetry::init(cli.log_format);
    match api::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flaglog: {e}");
            ExitCode::FAILURE
        }
    }
}
