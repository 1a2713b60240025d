//! Logging through tracing-subscriber: readable on a terminal, JSON for machines, level from
//! `RUST_LOG` (default `info`). Logs go to stderr so stdout stays for what commands print.
//!
//! Lines are written by a background thread through a buffer (tracing-appender's non-blocking
//! writer): a request thread formats its line and hands it over instead of making a `write`
//! system call of its own, and the thread flushes whenever it has caught up, so lines still
//! appear at once. Nothing is dropped: when the thread falls behind, loggers wait.

use std::io::{BufWriter, IsTerminal, Stderr};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Sets up logging. Keep the guard until the process ends: dropping it flushes what is left.
pub fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr: BufWriter<Stderr> = BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("flaglog-log-writer")
        .finish(stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: escape codes in a log file are noise to whoever reads it,
        // and writing them was a quarter of the cost of each request's line.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("flaglog: logging was already set up: {e}");
    }
    guard
}
