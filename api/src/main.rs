//! The `flaglog` binary: parses the command line and runs the chosen command.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = api::config::Cli::parse();
    api::telemetry::init(cli.log_format);
    match api::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flaglog: {e}");
            ExitCode::FAILURE
        }
    }
}
