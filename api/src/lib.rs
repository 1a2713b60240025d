//! flaglog's composition root: configuration, logging, the HTTP server and the command line.
//! It wires the write side (`commands`), the read side (`projections`) and the event log adapter
//! together; nothing else depends on it.

pub mod audit_checkpoints;
pub mod cli;
pub mod config;
pub mod dashboard;
#[cfg(feature = "eventstore-grpc")]
pub mod esdb;
pub mod flag_analytics;
pub mod http;
pub mod scheduler;
pub mod sdk_cache;
pub mod sdk_store;
pub mod signing_key;
pub mod telemetry;
pub mod workers;

use std::sync::Arc;

use commands::Commands;
use commands::store::Store;
use domain::log::EventLog;
use projections::audit_history::AuditHistory;
use projections::change_request_inbox::ChangeRequestInbox;
use projections::environment_documents::EnvironmentDocuments;
use projections::integrations::analytics::{AnalyticsQueue, worker as analytics_worker};
use projections::integrations::network::PrivateNetworks;
use projections::runner::ProjectionWorker;
use projections::workers::{Leadership, Placement, Workers};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Applies the schema and opens the event log at `database_url`.
pub async fn open_log(database_url: &str) -> Result<Arc<dyn EventLog>, domain::log::LogError> {
    commands::log::migrate(database_url).await?;
    commands::log::connect(database_url).await
}

/// The write side on `log`, for commands that need nothing else (the CLI's).
pub fn commands(log: Arc<dyn EventLog>) -> Commands {
    Commands::new(Store::new(log))
}

/// How a node runs, beside its database.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The SDK cache's tiers' bounds.
    pub bounds: sdk_cache::CacheBounds,
    /// How `/health` and `flaglog workers status` name the node.
    pub node_id: String,
    /// How often a signed checkpoint is published into the log (when it grew).
    pub audit_checkpoint_interval: std::time::Duration,
    /// The identity analytics queue's capacity (and each analytics integration's).
    pub analytics_queue: usize,
    /// The serving runtime's busy share from which identity analytics are shed (1: never).
    pub analytics_shed_above: f64,
    /// Whether integrations may reach private and local addresses (refused by default).
    pub integration_networks: PrivateNetworks,
    /// How often SDK evaluation counts are rolled up and API calls saved.
    pub flag_analytics_interval: std::time::Duration,
    /// How long flag analytics' buckets are kept.
    pub flag_analytics_retention: flag_analytics::Retention,
    /// Where the dashboard reads its own flags (dark mode, the announcement), if anywhere.
    pub own_flags: Option<dashboard::own_flags::OwnFlagsSource>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            bounds: sdk_cache::CacheBounds::default(),
            node_id: default_node_id(),
            audit_checkpoint_interval: audit_checkpoints::DEFAULT_INTERVAL,
            analytics_queue: projections::integrations::analytics::DEFAULT_CAPACITY,
            analytics_shed_above: projections::integrations::analytics::load::SATURATED,
            integration_networks: PrivateNetworks::Refused,
            flag_analytics_interval: flag_analytics::DEFAULT_INTERVAL,
            flag_analytics_retention: flag_analytics::Retention::default(),
            own_flags: None,
        }
    }
}

/// Everything the server needs, running: the log, the write side, the background workers (the
/// environment-documents projection, woken by the log, and what keeps the SDK cache fresh) and
/// the SDK cache, as node [`default_node_id`].
pub async fn start(database_url: &str) -> Result<http::AppState, String> {
    start_node(database_url, NodeOptions::default()).await
}

/// [`start`], with the SDK cache's tiers bounded to about `bounds`.
pub async fn start_with_sdk_cache(
    database_url: &str,
    bounds: sdk_cache::CacheBounds,
) -> Result<http::AppState, String> {
    start_node(
        database_url,
        NodeOptions {
            bounds,
            ..NodeOptions::default()
        },
    )
    .await
}

/// This process's node id when none is given: host name and process id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// Everything the server needs, running, as `options` say.
pub async fn start_node(
    database_url: &str,
    options: NodeOptions,
) -> Result<http::AppState, String> {
    let NodeOptions {
        bounds,
        node_id,
        audit_checkpoint_interval,
        analytics_queue,
        analytics_shed_above,
        integration_networks,
        flag_analytics_interval,
        flag_analytics_retention,
        own_flags,
    } = options;
    let node_id = node_id.as_str();
    // First, so that whatever the log writer appends from now on is counted.
    http::metrics::install();
    let log = open_log(database_url)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let pool = projections::connect(database_url)
        .await
        .map_err(|e| format!("cannot open the read models: {e}"))?;
    let leadership = Leadership::for_url(database_url)
        .map_err(|e| format!("cannot read the database URL: {e}"))?;
    let (document_changes, _) = broadcast::channel(4096);
    let sdk = Arc::new(sdk_cache::EnvironmentCache::new(pool.clone(), bounds));
    let sdk_store = sdk_store::SdkStore::open(pool.clone())
        .await
        .map_err(|e| format!("cannot read the stored identities: {e}"))?;

    let signing_key = Arc::new(signing_key::load_or_create(&pool).await?);
    let runtime = Arc::new(Workers::new(node_id, pool.clone(), leadership.clone()));
    // Every node listens first, so that nothing another node does from here on is missed.
    if let Leadership::AdvisoryLock(options) = &leadership {
        let newest = projections::document_notifications::newest_position(&pool)
            .await
            .map_err(|e| format!("cannot read the read models: {e}"))?;
        runtime.spawn(
            workers::NOTIFICATIONS,
            Placement::EveryNode,
            workers::Notifications::new(
                node_id,
                (**options).clone(),
                pool.clone(),
                document_changes.clone(),
                sdk_store.known_identities().clone(),
                newest,
            ),
        );
    }
    runtime.spawn(
        workers::SDK_CACHE,
        Placement::EveryNode,
        workers::CacheInvalidation {
            changes: document_changes.subscribe(),
            cache: sdk.clone(),
        },
    );
    let (progress, projection_progress) = watch::channel(0);
    let projection_pool = pool.clone();
    let projection_changes = document_changes.clone();
    let projection_log = log.clone();
    let projection_node = node_id.to_string();
    runtime.spawn(
        workers::ENVIRONMENT_DOCUMENTS,
        Placement::OneNode,
        ProjectionWorker::new(
            workers::ENVIRONMENT_DOCUMENTS,
            log.clone(),
            move || {
                EnvironmentDocuments::new(
                    projection_pool.clone(),
                    projection_log.clone(),
                    projection_changes.clone(),
                )
                .on_node(&projection_node)
            },
            progress,
        ),
    );

    let inbox_pool = pool.clone();
    let inbox_log = log.clone();
    runtime.spawn(
        workers::CHANGE_REQUEST_INBOX,
        Placement::OneNode,
        ProjectionWorker::new(
            workers::CHANGE_REQUEST_INBOX,
            log.clone(),
            move || ChangeRequestInbox::new(inbox_pool.clone(), inbox_log.clone()),
            watch::channel(0).0,
        ),
    );

    let audit_pool = pool.clone();
    runtime.spawn(
        workers::AUDIT_HISTORY,
        Placement::OneNode,
        ProjectionWorker::new(
            workers::AUDIT_HISTORY,
            log.clone(),
            move || AuditHistory::new(audit_pool.clone()),
            watch::channel(0).0,
        ),
    );

    runtime.spawn(
        audit_checkpoints::NAME,
        Placement::OneNode,
        audit_checkpoints::CheckpointPublisher::new(
            log.clone(),
            signing_key.clone(),
            audit_checkpoint_interval,
        ),
    );

    runtime.spawn(
        projections::integrations::delivery::NAME,
        Placement::OneNode,
        projections::integrations::delivery::Delivery::new(
            log.clone(),
            pool.clone(),
            integration_networks,
        )
        .map_err(|e| e.to_string())?,
    );

    let analytics = AnalyticsQueue::new(analytics_queue).shedding_above(analytics_shed_above);
    runtime.spawn(
        analytics_worker::NAME,
        Placement::EveryNode,
        analytics_worker::IdentityAnalytics::new(
            analytics.clone(),
            log.clone(),
            pool.clone(),
            node_id,
            integration_networks,
        )
        .map_err(|e| e.to_string())?,
    );

    runtime.spawn(
        flag_analytics::ROLLUP,
        Placement::OneNode,
        flag_analytics::Rollup::new(
            pool.clone(),
            flag_analytics_interval,
            flag_analytics_retention,
        ),
    );
    let api_calls = flag_analytics::ApiCalls::default();
    runtime.spawn(
        flag_analytics::USAGE,
        Placement::EveryNode,
        flag_analytics::UsageSaver::new(
            pool.clone(),
            api_calls.clone(),
            node_id,
            flag_analytics_interval,
        ),
    );

    let own_flag_values = dashboard::own_flags::SharedOwnFlags::default();
    if let Some(source) = own_flags {
        runtime.spawn(
            dashboard::own_flags::NAME,
            Placement::EveryNode,
            dashboard::own_flags::OwnFlagsReader::new(source, own_flag_values.clone())?,
        );
    }

    let commands = commands(log.clone());
    runtime.spawn(
        scheduler::NAME,
        Placement::OneNode,
        scheduler::Scheduler::new(commands.clone(), log.clone()),
    );

    Ok(http::AppState::new(http::Services {
        commands,
        log,
        sdk,
        sdk_store,
        analytics,
        api_calls,
        own_flags: own_flag_values,
        integration_networks,
        read_models: pool,
        signing_key,
        document_changes,
        projection_progress,
        workers: runtime,
        shutdown: CancellationToken::new(),
    }))
}
