//! The log of a whole test run: with `FLAGLOG_TEST_LOG` set to a file, every test process that
//! starts a server appends what flaglog logs to it (flaglog's own crates at `debug`, the rest at
//! `info`, or `FLAGLOG_TEST_LOG_FILTER`), so that `scripts/test` can check the run's log (no
//! secret in it). Without it, nothing is logged, as before.

use std::fs::OpenOptions;
use std::sync::{Mutex, Once};

static INSTALLED: Once = Once::new();

/// Installs the run's log writer in this process, once; does nothing without `FLAGLOG_TEST_LOG`.
pub fn install() {
    INSTALLED.call_once(|| {
        let Some(path) = std::env::var_os("FLAGLOG_TEST_LOG") else {
            return;
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("FLAGLOG_TEST_LOG {}: {e}", path.to_string_lossy()));
        let filter = std::env::var("FLAGLOG_TEST_LOG_FILTER").unwrap_or_else(|_| {
            "info,api=debug,commands=debug,projections=debug,domain=debug".to_string()
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init();
    });
}
