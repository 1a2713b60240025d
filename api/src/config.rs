//! flaglog's configuration and command line, in one place: every option also reads an
//! environment variable, so containers and scripts configure it the same way.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "flaglog",
    version,
    about = "An event-sourced feature-flag server, compatible with Flagsmith's SDKs"
)]
pub struct Cli {
    /// Where the event log lives: `sqlite://PATH` (created if missing) or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://./flaglog.db",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Log format: `text` for terminals, `json` for machines. The level comes from RUST_LOG.
    #[arg(long, env = "FLAGLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Applies the schema and serves the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "FLAGLOG_BIND", default_value = "127.0.0.1:8000")]
        bind: SocketAddr,
        /// Memory the SDK cache of flags bodies and documents may hold, in MiB (an estimate).
        #[arg(long, env = "FLAGLOG_SDK_CACHE_MIB", default_value_t = 256)]
        sdk_cache_mib: u64,
        /// Memory the cache of evaluation contexts (for identities and OFREP) may hold, in MiB
        /// (an estimate); an environment whose context was evicted rebuilds it on its next
        /// identity request.
        #[arg(long, env = "FLAGLOG_EVALUATION_CACHE_MIB", default_value_t = 64)]
        evaluation_cache_mib: u64,
        /// This node's name in /health and `flaglog workers status` (default: host name and
        /// process id). Give each node on one database its own.
        #[arg(long, env = "FLAGLOG_NODE_ID")]
        node_id: Option<String>,
        /// How often, in seconds, a checkpoint of the log signed with the server's key is
        /// published into the log itself (only when the log grew since the last one).
        #[arg(long, env = "FLAGLOG_AUDIT_CHECKPOINT_INTERVAL", default_value_t = 600)]
        audit_checkpoint_interval: u64,
        /// How many served identities the identity analytics queue holds, and each analytics
        /// integration's own queue; when one is full, an identity is dropped (and counted in
        /// the integration's status) rather than slow the identities endpoints down.
        #[arg(long, env = "FLAGLOG_ANALYTICS_QUEUE", default_value_t = projections::integrations::analytics::DEFAULT_CAPACITY)]
        analytics_queue: usize,
        /// The share of the time (0 to 1) the runtime serving requests is busy from which
        /// identity analytics yield: while it is that busy, identities served are dropped (and
        /// counted) instead of sent, so that analytics never take CPU from the endpoints of
        /// a saturated node. 1 never drops for that reason.
        #[arg(long, env = "FLAGLOG_ANALYTICS_SHED_ABOVE", default_value_t = projections::integrations::analytics::load::SATURATED, value_parser = share)]
        analytics_shed_above: f64,
        /// How often, in seconds, SDK evaluation counts are rolled up into 15-minute and hourly
        /// buckets and each node's SDK API-call counts are saved.
        #[arg(long, env = "FLAGLOG_FLAG_ANALYTICS_INTERVAL", default_value_t = 30)]
        flag_analytics_interval: u64,
        /// How many days flag analytics' 15-minute buckets are kept.
        #[arg(
            long,
            env = "FLAGLOG_FLAG_ANALYTICS_RETENTION_15M_DAYS",
            default_value_t = 7
        )]
        flag_analytics_retention_15m_days: u64,
        /// How many days flag analytics' hourly buckets are kept.
        #[arg(
            long,
            env = "FLAGLOG_FLAG_ANALYTICS_RETENTION_HOURLY_DAYS",
            default_value_t = 90
        )]
        flag_analytics_retention_hourly_days: u64,
        /// flaglog on flaglog: the client key of the environment whose flags `dark_mode` and
        /// `announcement` set the dashboard's theme and banner.
        #[arg(long, env = "FLAGLOG_ON_FLAGLOG_ENVIRONMENT_KEY")]
        flaglog_on_flaglog_environment_key: Option<String>,
        /// The SDK API the dashboard reads those flags from (default: this server's own,
        /// `http://<bind>/api/v1/`).
        #[arg(long, env = "FLAGLOG_ON_FLAGLOG_API_URL")]
        flaglog_on_flaglog_api_url: Option<String>,
        /// How often, in seconds, the dashboard reads its own flags.
        #[arg(long, env = "FLAGLOG_ON_FLAGLOG_REFRESH", default_value_t = 30)]
        flaglog_on_flaglog_refresh: u64,
        /// Let integrations reach private, loopback and link-local addresses (receivers on the
        /// same network as flaglog). Refused by default: whoever configures an integration
        /// could otherwise make the server send requests into its own network.
        #[arg(long, env = "FLAGLOG_ALLOW_PRIVATE_INTEGRATION_URLS")]
        allow_private_integration_urls: bool,
        /// Also serve the EventStoreDB-compatible gRPC read API on this address (a flaglog
        /// built with the eventstore-grpc feature): EventStoreDB clients read and subscribe to
        /// the log, with an organisation administrator's API token as the Basic password.
        #[arg(long, env = "FLAGLOG_EVENTSTORE_BIND")]
        eventstore_bind: Option<SocketAddr>,
    },
    /// Applies the database schema and exits.
    Migrate,
    /// Manages users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The background workers of every node on this database.
    Workers {
        #[command(subcommand)]
        command: WorkersCommand,
    },
    /// Imports a Flagsmith environment document as a new project and environment; prints one
    /// JSON line with project_id, environment_id, client_key and server_side_key.
    Import {
        /// The document: alone, or wrapped as {"environment": ...} or {"environment_document": ...}.
        #[arg(long)]
        environment_document: PathBuf,
    },
    /// Recomputes the log's hash chain; prints "intact: positions 1..N, head hash H" and exits
    /// 0, or names the first position that does not verify and exits 1.
    Verify {
        /// First position to check (default 1).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last position to check (default: the head).
        #[arg(long)]
        to: Option<u64>,
        /// A checkpoint saved earlier: its position (with --checkpoint-hash). The log must still
        /// extend it: not be cut back behind it, nor hold another hash there.
        #[arg(long, requires = "checkpoint_hash")]
        checkpoint_position: Option<u64>,
        /// The checkpoint's hash, 64 hex digits.
        #[arg(long, requires = "checkpoint_position")]
        checkpoint_hash: Option<String>,
        /// Verify this NDJSON export (`GET /api/v1/audit-log/export`) offline instead of the
        /// database: with --checkpoint (a signed checkpoint as served) and --public-key.
        #[arg(long, requires_all = ["checkpoint", "public_key"])]
        export: Option<PathBuf>,
        /// A signed checkpoint, as `GET /api/v1/audit-log/checkpoint` answered it (a JSON file).
        #[arg(long, requires = "export")]
        checkpoint: Option<PathBuf>,
        /// The server's public key the auditor trusts (64 hex digits).
        #[arg(long, requires = "export")]
        public_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Creates an administrator and prints their API token as the last line.
    Create {
        #[arg(long)]
        email: String,
        /// Optional password (at least 8 characters).
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Prints each worker on each node as a table: state, leader, position, lag, when the node
    /// last reported, last error.
    Status,
}

/// A share, from 0 to 1.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share between 0 and 1")),
    }
}
