//! What each command of the command line does. Errors come back as text for stderr; what other
//! tools read (a token, the import's JSON) is the last line of stdout.

use domain::log::Metadata;
use tokio::net::TcpListener;

use crate::config::{AdminCommand, Cli, Command};
use crate::sdk_cache::CacheBounds;
use crate::{commands, http, open_log, start_with_sdk_cache};

pub async fn run(cli: Cli) -> Result<(), String> {
    if let Command::Serve {
        bind,
        sdk_cache_mib,
        evaluation_cache_mib,
    } = cli.command
    {
        let bounds = CacheBounds {
            environments: sdk_cache_mib.saturating_mul(1024 * 1024),
            evaluables: evaluation_cache_mib.saturating_mul(1024 * 1024),
        };
        return serve(&cli.database_url, bind, bounds).await;
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

async fn serve(
    database_url: &str,
    bind: std::net::SocketAddr,
    bounds: CacheBounds,
) -> Result<(), String> {
    let state = start_with_sdk_cache(database_url, bounds).await?;
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
    println!("flaglog listening on http://{address}");
    if !has_users {
        println!(
            "No user yet. Create the first administrator and get their API token with\n  \
             flaglog admin create --email you@example.com\nor\n  \
             curl -X POST http://{address}/api/v1/users/config/init/ \
             -H 'Content-Type: application/json' -d '{{\"email\": \"you@example.com\"}}'"
        );
    }
    tracing::info!(%address, "serving");
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))
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
