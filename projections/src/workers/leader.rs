//! Leadership of a one-node worker: which node may run it right now.
//!
//! On PostgreSQL a node leads while it holds a session-level advisory lock keyed by the worker's
//! name, taken with `pg_try_advisory_lock` on a connection of its own (a [`PgConnection`], not a
//! pooled one: a pool could hand the session that holds the lock to someone else, or close it
//! when idle, and the lock would go with it). The lock lives exactly as long as that session, so
//! a leader that dies, even by `kill -9`, loses it as soon as PostgreSQL sees the connection
//! close, and a follower's next attempt takes it. The leader checks its connection every
//! [`super::STATUS_INTERVAL`]; if the session is gone, so is the lock, and it stops.
//!
//! The lock is of the two-key form (`WORKER_LOCK_CLASS`, a hash of the name), a key space apart
//! from the event log writer's single-key lock.
//!
//! On SQLite there is one process per database, so it always leads and takes no lock.

use sha2::{Digest, Sha256};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The first key of every worker's advisory lock ("flag" in ASCII).
pub const WORKER_LOCK_CLASS: i32 = 0x666c_6167;

/// How a node finds out whether it may run a one-node worker.
#[derive(Clone, Debug)]
pub enum Leadership {
    /// One process per database (SQLite): always the leader.
    Always,
    /// An advisory lock on this PostgreSQL database.
    AdvisoryLock(Box<PgConnectOptions>),
}

impl Leadership {
    /// What the database at `database_url` needs: a lock on PostgreSQL, none on SQLite.
    pub fn for_url(database_url: &str) -> Result<Self, sqlx::Error> {
        if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
            Ok(Leadership::AdvisoryLock(Box::new(database_url.parse()?)))
        } else {
            Ok(Leadership::Always)
        }
    }

    pub(crate) fn lock(&self, name: &str) -> LeaderLock {
        LeaderLock {
            leadership: self.clone(),
            key: lock_key(name),
            name: name.to_string(),
            connection: None,
            held: false,
        }
    }
}

/// The second key of `name`'s lock: the first four bytes of the name's SHA-256, the same in
/// every process and every build (std's hasher promises neither across Rust versions, and two
/// builds side by side in a rolling upgrade must agree on who leads).
fn lock_key(name: &str) -> i32 {
    let digest = Sha256::digest(name.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// One worker's lock on one node.
pub(crate) struct LeaderLock {
    leadership: Leadership,
    key: i32,
    name: String,
    connection: Option<PgConnection>,
    held: bool,
}

impl LeaderLock {
    /// Takes the lock if nobody holds it; true if this node holds it now.
    pub async fn try_acquire(&mut self) -> Result<bool, sqlx::Error> {
        let options = match &self.leadership {
            Leadership::Always => return Ok(true),
            Leadership::AdvisoryLock(options) => options,
        };
        if self.held {
            return Ok(true);
        }
        if self.connection.is_none() {
            let options = options
                .clone()
                .application_name(&format!("flaglog-leader-{}", self.name));
            self.connection = Some(PgConnection::connect_with(&options).await?);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Ok(false);
        };
        let taken: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(WORKER_LOCK_CLASS)
            .bind(self.key)
            .fetch_one(&mut *connection)
            .await;
        match taken {
            Ok(taken) => {
                self.held = taken;
                Ok(taken)
            }
            Err(e) => {
                self.connection = None;
                Err(e)
            }
        }
    }

    /// Whether the session holding the lock is still there (an error if it is not: the lock
    /// went with it).
    pub async fn check(&mut self) -> Result<(), sqlx::Error> {
        if !self.held {
            return Ok(());
        }
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        if let Err(e) = connection.ping().await {
            self.connection = None;
            self.held = false;
            return Err(e);
        }
        Ok(())
    }

    /// Gives the lock up (closing the session if unlocking fails, which releases it too).
    pub async fn release(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        if let Some(connection) = self.connection.as_mut() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(WORKER_LOCK_CLASS)
                .bind(self.key)
                .execute(&mut *connection)
                .await;
            if unlocked.is_err()
                && let Some(connection) = self.connection.take()
            {
                let _ = connection.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes of different builds must agree on the key: it is pinned, not whatever a hasher gives.
    #[test]
    fn lock_keys_are_the_same_in_every_build() {
        assert_eq!(lock_key("environment_documents"), EXPECTED);
        assert_ne!(lock_key("environment_documents"), lock_key("scheduler"));
    }

    // The first four bytes of SHA-256("environment_documents"), big-endian.
    const EXPECTED: i32 = 1_623_745_757;
}
