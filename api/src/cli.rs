//! What each command of the command line does. Errors come back as text for stderr; what other
//! tools read (a token, the import's JSON) is the last line of stdout.

use domain::log::Metadata;
use tokio::net::TcpListener;

use crate::config::{AdminCommand, Cli, Command, WorkersCommand};
use crate::sdk_cache::CacheBounds;
use crate::{NodeOptions, commands, default_node_id, http, open_log, start_node};
use std::time::Duration;

use projections::integrations::network::PrivateNetworks;

use crate::dashboard::own_flags::OwnFlagsSource;
use crate::flag_analytics::Retention;

/// An SDK API base as SDKs take it: ending with `/`.
fn api_base(url: String) -> String {
    if url.ends_with('/') {
        url
    } else {
        format!("{url}/")
    }
}

fn days(days: u64) -> Duration {
    Duration::from_secs(days.saturating_mul(86_400))
}

pub async fn run(cli: Cli) -> Result<(), String> {
    if let Command::Serve {
        bind,
        sdk_cache_mib,
        evaluation_cache_mib,
        node_id,
        audit_checkpoint_interval,
        analytics_queue,
        analytics_shed_above,
        flag_analytics_interval,
        flag_analytics_retention_15m_days,
        flag_analytics_retention_hourly_days,
        flaglog_on_flaglog_environment_key,
        flaglog_on_flaglog_api_url,
        flaglog_on_flaglog_refresh,
        allow_private_integration_urls,
        eventstore_bind,
    } = cli.command
    {
        let options = NodeOptions {
            bounds: CacheBounds {
                environments: sdk_cache_mib.saturating_mul(1024 * 1024),
                evaluables: evaluation_cache_mib.saturating_mul(1024 * 1024),
            },
            node_id: node_id
                .filter(|id| !id.trim().is_empty())
                .unwrap_or_else(default_node_id),
            audit_checkpoint_interval: std::time::Duration::from_secs(
                audit_checkpoint_interval.max(1),
            ),
            analytics_queue,
            analytics_shed_above,
            integration_networks: if allow_private_integration_urls {
                PrivateNetworks::Allowed
            } else {
                PrivateNetworks::Refused
            },
            flag_analytics_interval: Duration::from_secs(flag_analytics_interval.max(1)),
            flag_analytics_retention: Retention {
                fifteen_minutes: days(flag_analytics_retention_15m_days),
                hourly: days(flag_analytics_retention_hourly_days),
            },
            own_flags: flaglog_on_flaglog_environment_key
                .filter(|key| !key.trim().is_empty())
                .map(|environment_key| OwnFlagsSource {
                    api_url: api_base(
                        flaglog_on_flaglog_api_url
                            .unwrap_or_else(|| format!("http://{bind}/api/v1/")),
                    ),
                    environment_key,
                    refresh: Duration::from_secs(flaglog_on_flaglog_refresh.max(1)),
                }),
        };
        return serve(&cli.database_url, bind, eventstore_bind, options).await;
    }
    if let Command::Verify {
        export: Some(export),
        checkpoint: Some(checkpoint),
        public_key: Some(public_key),
        ..
    } = &cli.command
    {
        return verify_export(export, checkpoint, public_key);
    }
    let log = open_log(&cli.database_url)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    match cli.command {
        Command::Serve { .. } | Command::Migrate => {
            println!("schema is up to date");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Create { email, password },
        } => {
            let user = commands(log)
                .create_user(
                    &Metadata::actor("cli"),
                    &email,
                    password.as_deref(),
                    true,
                    false,
                )
                .await
                .map_err(|e| e.to_string())?;
            println!("created administrator {} (user {})", email.trim(), user.id);
            println!("API token (send as 'Authorization: Token <token>'):");
            println!("{}", user.token);
            Ok(())
        }
        Command::Workers {
            command: WorkersCommand::Status,
        } => {
            let pool = projections::connect(&cli.database_url)
                .await
                .map_err(|e| format!("cannot open the database: {e}"))?;
            let statuses = projections::workers::status::read_all(&pool)
                .await
                .map_err(|e| format!("cannot read the workers' status: {e}"))?;
            print!("{}", crate::workers::status_table(&statuses));
            Ok(())
        }
        Command::Verify {
            from,
            to,
            checkpoint_position,
            checkpoint_hash,
            ..
        } => {
            let checkpoint = match (checkpoint_position, checkpoint_hash.as_deref()) {
                (Some(position), Some(hash)) => Some(::commands::verify::Checkpoint {
                    position,
                    hash: crate::http::admin::audit::parse_hash(hash)
                        .map_err(|e| format!("--checkpoint-hash: {e}"))?,
                }),
                _ => None,
            };
            let verification = ::commands::verify::verify(&*log, from, to, checkpoint)
                .await
                .map_err(|e| format!("cannot read the log: {e}"))?;
            if verification.intact {
                println!("{}", verification.summary());
                let pool = projections::connect(&cli.database_url)
                    .await
                    .map_err(|e| format!("cannot open the database: {e}"))?;
                let head = log
                    .head()
                    .await
                    .map_err(|e| format!("cannot read the log: {e}"))?;
                match projections::audit_history::completeness(&pool, head).await {
                    Ok(completeness) => println!("{completeness}"),
                    Err(e) => println!("audit history: cannot be read: {e}"),
                }
                Ok(())
            } else {
                Err(verification.summary())
            }
        }
        Command::Import {
            environment_document,
        } => {
            let bytes = std::fs::read(&environment_document)
                .map_err(|e| format!("cannot read {}: {e}", environment_document.display()))?;
            let document = ::commands::import::parse_document(&bytes).map_err(|e| {
                format!(
                    "{} is not a valid environment document: at {}: {}",
                    environment_document.display(),
                    e.path,
                    e.message
                )
            })?;
            let imported =
                ::commands::import::import(&commands(log), &Metadata::actor("import"), document)
                    .await
                    .map_err(|e| format!("import refused: {e}"))?;
            println!(
                "{}",
                serde_json::to_string(&imported).map_err(|e| e.to_string())?
            );
            Ok(())
        }
    }
}

/// `flaglog verify --export FILE --checkpoint FILE --public-key KEY`: offline, no database.
fn verify_export(
    export: &std::path::Path,
    checkpoint: &std::path::Path,
    public_key: &str,
) -> Result<(), String> {
    let read = |path: &std::path::Path| {
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let checkpoint: domain::checkpoint::SignedCheckpoint =
        serde_json::from_reader(std::io::BufReader::new(read(checkpoint)?))
            .map_err(|e| format!("the checkpoint is not a signed checkpoint: {e}"))?;
    let verification = ::commands::verify::verify_export(
        std::io::BufReader::new(read(export)?),
        &checkpoint,
        public_key,
    );
    if verification.intact {
        println!(
            "{}; extends the checkpoint at position {}",
            verification.summary(),
            checkpoint.position
        );
        Ok(())
    } else {
        Err(verification.summary())
    }
}

/// Serves until SIGTERM or Ctrl-C, then shuts down in order: stop accepting and end the
/// realtime streams, let in-flight requests finish, stop the workers (each at a safe point: the
/// projection between batches), and return, so `main` flushes the log and exits 0.
async fn serve(
    database_url: &str,
    bind: std::net::SocketAddr,
    eventstore_bind: Option<std::net::SocketAddr>,
    options: NodeOptions,
) -> Result<(), String> {
    #[cfg(not(feature = "eventstore-grpc"))]
    if eventstore_bind.is_some() {
        return Err(
            "--eventstore-bind needs a flaglog built with the eventstore-grpc feature \
             (cargo build --release --features eventstore-grpc)"
                .into(),
        );
    }
    let node_id = options.node_id.clone();
    let state = start_node(database_url, options).await?;
    let has_users = !state
        .commands
        .directory()
        .await
        .map_err(|e| e.to_string())?
        .state
        .users
        .is_empty();
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("flaglog listening on http://{address} as node {node_id}");
    if !has_users {
        println!(
            "No user yet. Create the first administrator and get their API token with\n  \
             flaglog admin create --email you@example.com\nor\n  \
             curl -X POST http://{address}/api/v1/users/config/init/ \
             -H 'Content-Type: application/json' -d '{{\"email\": \"you@example.com\"}}'"
        );
    }
    tracing::info!(%address, node = %node_id, "serving");
    let shutdown = state.shutdown.clone();
    let workers = state.workers.clone();
    let signalled = shutdown.clone();
    let eventstore = eventstore_api(state.clone(), eventstore_bind).await?;
    let http = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            signalled.cancel();
        })
        .into_future();
    // Both stop on the same signal (the EventStoreDB API's on `shutdown`, cancelled then).
    let (served, eventstore_served) = tokio::join!(
        async { http.await.map_err(|e| format!("server error: {e}")) },
        eventstore
    );
    let served = served.and(eventstore_served);
    tracing::info!("requests finished; stopping the workers");
    shutdown.cancel();
    workers.shutdown().await;
    tracing::info!("stopped");
    served
}

/// The EventStoreDB API's server, listening on `bind` (when given): a future that serves until
/// the server shuts down.
async fn eventstore_api(
    state: http::AppState,
    bind: Option<std::net::SocketAddr>,
) -> Result<impl std::future::Future<Output = Result<(), String>>, String> {
    #[cfg(feature = "eventstore-grpc")]
    let listener = match bind {
        Some(bind) => {
            let listener = TcpListener::bind(bind)
                .await
                .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            println!("flaglog's EventStoreDB API listening on esdb://{address}?tls=false");
            Some(listener)
        }
        None => None,
    };
    #[cfg(not(feature = "eventstore-grpc"))]
    let _ = (&state, bind);
    Ok(async move {
        #[cfg(feature = "eventstore-grpc")]
        if let Some(listener) = listener {
            return crate::esdb::serve(state, listener).await;
        }
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
