//! Test support: a fresh, migrated, isolated database per test, on either backend.
//!
//! Compiled for this crate's tests and, with the `test-support` feature, for other crates' tests
//! (add `commands = { workspace = true, features = ["test-support"] }` to their dev-dependencies).
//!
//! ```no_run
//! # async fn example() {
//! use commands::log::testing::TestDatabase;
//! let db = TestDatabase::postgres().await; // or TestDatabase::sqlite().await
//! let log = db.event_log().await;          // Arc<dyn EventLog> on db.url()
//! // ... the database is dropped when `db` is.
//! # }
//! ```
//!
//! PostgreSQL databases are created from the admin URL in `DATABASE_URL` (default
//! [`DEFAULT_ADMIN_URL`]) and dropped `WITH (FORCE)` when the [`TestDatabase`] is dropped. If
//! PostgreSQL cannot be reached, [`TestDatabase::postgres`] panics with a message saying so: a test
//! that needs PostgreSQL fails rather than silently passing without it.

use std::path::PathBuf;
use std::sync::Arc;

use domain::log::EventLog;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::Backend;

/// The admin URL used when `DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test and is removed when dropped.
pub struct TestDatabase {
    url: String,
    backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { admin_url: String, name: String },
    Sqlite { path: PathBuf },
}

impl TestDatabase {
    /// The PostgreSQL admin URL test databases are created from.
    pub fn admin_url() -> String {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
    }

    /// A new, migrated PostgreSQL database. Panics (failing the test) if PostgreSQL is unreachable.
    pub async fn postgres() -> Self {
        let admin_url = Self::admin_url();
        let name = format!("flaglog_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for this test but is not reachable at {admin_url} ({e}). \
                 Start it (e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main start`) or set \
                 DATABASE_URL to an admin URL."
            )
        });
        admin
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name} at {admin_url}: {e}"));
        let _ = admin.close().await;

        let database = Self {
            url: with_database(&admin_url, &name),
            backend: Backend::Postgres,
            cleanup: Cleanup::Postgres { admin_url, name },
        };
        database.migrate().await;
        database
    }

    /// A new, migrated SQLite database in a temporary file.
    pub async fn sqlite() -> Self {
        let path =
            std::env::temp_dir().join(format!("flaglog-test-{}.db", uuid::Uuid::new_v4().simple()));
        let database = Self {
            url: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite,
            cleanup: Cleanup::Sqlite { path },
        };
        database.migrate().await;
        database
    }

    /// The database's URL, for [`connect`](super::connect) or a pool of one's own.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A new event log adapter on this database (each call is a separate instance, like a
    /// separate node). Panics if it cannot be opened.
    pub async fn event_log(&self) -> Arc<dyn EventLog> {
        super::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening the event log at {}: {e}", self.url))
    }

    async fn migrate(&self) {
        super::migrate(&self.url)
            .await
            .unwrap_or_else(|e| panic!("migrating test database {}: {e}", self.url));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                // Drop runs outside any async context we could await in: use a thread with its
                // own small runtime. Best effort: a failure leaves a stray flaglog_test_* database.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let mut admin = PgConnection::connect(&admin_url)
                            .await
                            .map_err(|e| e.to_string())?;
                        admin
                            .execute(AssertSqlSafe(format!(
                                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                            )))
                            .await
                            .map_err(|e| e.to_string())?;
                        let _ = admin.close().await;
                        Ok::<(), String>(())
                    })
                })
                .join();
                if let Ok(Err(error)) = dropped {
                    eprintln!("warning: could not drop test database: {error}");
                }
            }
        }
    }
}

/// `url` with its database (path) replaced by `name`, keeping user, host and query parameters.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "t2"),
            "postgresql://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t3"),
            "postgres://h:5432/t3"
        );
    }
}
