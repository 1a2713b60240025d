//! SDK-submitted data that is not a flag mutation, so not an event: identities' traits and flag
//! evaluation counts. Kept in plain tables (`migrations/*/0003_sdk_data.sql`) in the log's
//! database; they never reach the audit history.
//!
//! Most identities SDKs evaluate have no stored traits (transient identities, or identities seen
//! for the first time), and a database round trip for each would cost more than the evaluation.
//! So the store knows, in memory, which identities have stored traits ([`KnownIdentities`]: a
//! 64-bit hash of environment and identifier each, ~16 bytes an identity) and reads only
//! theirs. The set is loaded when the store opens and grows before each write, so a reader
//! racing a write either sees the hash and reads the row, or reads as if before the write. A
//! hash collision costs one needless read, never a wrong answer.
//!
//! Several nodes on one PostgreSQL share the set: a node that adds an identity new to its set
//! sends its hash on [`IDENTITIES_CHANNEL`] (before the write, as it adds it to its own set
//! first), and every node's `notifications` worker (`crate::workers`) adds it to its set, and
//! reloads the whole set after reconnecting, as it may have missed some. A node that starts
//! loads the set after it listens. So traits stored through one node are read by the others
//! without a restart, as soon as the notification arrives.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use sqlx::AnyPool;

pub type Traits = Map<String, Value>;

/// The PostgreSQL channel that carries the hash of each identity new to a node's set.
pub const IDENTITIES_CHANNEL: &str = "flaglog_identities";

#[derive(Clone)]
pub struct SdkStore {
    pool: AnyPool,
    known: Arc<KnownIdentities>,
    /// Whether other nodes may share the database (PostgreSQL): then new hashes are notified.
    notify: bool,
}

/// The identities that have stored traits, as hashes of (environment, identifier).
#[derive(Default)]
pub struct KnownIdentities(RwLock<HashSet<u64>>);

impl KnownIdentities {
    fn key(environment_id: u64, identifier: &str) -> u64 {
        // SipHash with fixed keys: the same hash in every process and run.
        let mut hasher = DefaultHasher::new();
        (environment_id, identifier).hash(&mut hasher);
        hasher.finish()
    }

    /// False only if the identity certainly has no stored traits.
    fn may_have(&self, environment_id: u64, identifier: &str) -> bool {
        let key = Self::key(environment_id, identifier);
        // A poisoned lock (a panic while adding) still holds a valid set.
        let set = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        set.contains(&key)
    }

    /// Adds an identity; true if it was not known.
    fn add(&self, environment_id: u64, identifier: &str) -> bool {
        self.add_hash(Self::key(environment_id, identifier))
    }

    /// Adds an identity by its hash (as another node notified it); true if it was not known.
    pub fn add_hash(&self, hash: u64) -> bool {
        let mut set = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        set.insert(hash)
    }

    /// Adds every identity with stored traits in `pool` (one scan of their keys).
    pub async fn load(&self, pool: &AnyPool) -> sqlx::Result<()> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT environment_id, identifier FROM identity_traits")
                .fetch_all(pool)
                .await?;
        for (environment_id, identifier) in rows {
            self.add(environment_id as u64, &identifier);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SdkStore {
    /// The store on `pool`, knowing which identities have stored traits (one scan of their
    /// keys).
    pub async fn open(pool: AnyPool) -> sqlx::Result<Self> {
        let known = KnownIdentities::default();
        known.load(&pool).await?;
        let notify = pool.acquire().await?.backend_name() == POSTGRES;
        Ok(SdkStore {
            pool,
            known: Arc::new(known),
            notify,
        })
    }

    /// The identities this store knows to have stored traits.
    pub fn known_identities(&self) -> &Arc<KnownIdentities> {
        &self.known
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The traits stored for an identity (empty when it has none, without asking the database
    /// when it is known to have none).
    pub async fn traits(&self, environment_id: u64, identifier: &str) -> sqlx::Result<Traits> {
        if !self.known.may_have(environment_id, identifier) {
            return Ok(Traits::new());
        }
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT traits FROM identity_traits WHERE environment_id = $1 AND identifier = $2",
        )
        .bind(environment_id as i64)
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await?;
        Ok(stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    /// Every identity of the environment with stored traits, by identifier.
    pub async fn identities(&self, environment_id: u64) -> sqlx::Result<Vec<(String, Traits)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT identifier, traits FROM identity_traits WHERE environment_id = $1 \
             ORDER BY identifier",
        )
        .bind(environment_id as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(identifier, text)| (identifier, serde_json::from_str(&text).unwrap_or_default()))
            .collect())
    }

    /// Stores an identity's traits, replacing what was stored.
    pub async fn store_traits(
        &self,
        environment_id: u64,
        identifier: &str,
        traits: &Traits,
    ) -> sqlx::Result<()> {
        let text = serde_json::to_string(traits).unwrap_or_else(|_| "{}".into());
        // Known before it is written, here and (notified) on other nodes: see the module's
        // documentation.
        if self.known.add(environment_id, identifier) && self.notify {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(IDENTITIES_CHANNEL)
                .bind(KnownIdentities::key(environment_id, identifier).to_string())
                .execute(&self.pool)
                .await?;
        }
        sqlx::query(
            "INSERT INTO identity_traits (environment_id, identifier, traits, updated_at_micros) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (environment_id, identifier) \
             DO UPDATE SET traits = excluded.traits, updated_at_micros = excluded.updated_at_micros",
        )
        .bind(environment_id as i64)
        .bind(identifier)
        .bind(text)
        .bind(projections::now_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes an identity's stored traits (its erasure); whether it had any.
    pub async fn erase_traits(&self, environment_id: u64, identifier: &str) -> sqlx::Result<bool> {
        let deleted = sqlx::query(
            "DELETE FROM identity_traits WHERE environment_id = $1 AND identifier = $2",
        )
        .bind(environment_id as i64)
        .bind(identifier)
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Records SDK-reported evaluation counts as they arrived (raw rows, which the
    /// `flag_analytics` worker rolls up: [`crate::flag_analytics`]).
    pub async fn add_counts(
        &self,
        environment_id: u64,
        counts: &[(String, i64)],
    ) -> sqlx::Result<()> {
        let now = projections::now_micros();
        let mut tx = self.pool.begin().await?;
        for (feature_name, count) in counts {
            sqlx::query(
                "INSERT INTO flag_evaluations \
                 (environment_id, feature_name, recorded_at_micros, count) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(environment_id as i64)
            .bind(feature_name)
            .bind(now)
            .bind(*count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Counts per (feature, hour start in Unix seconds) of an environment: the hourly buckets
    /// and the raw rows not yet rolled up.
    pub async fn counts(&self, environment_id: u64) -> sqlx::Result<Vec<(String, i64, i64)>> {
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT feature_name FROM flag_evaluation_buckets WHERE environment_id = $1 \
             UNION SELECT DISTINCT feature_name FROM flag_evaluations WHERE environment_id = $1",
        )
        .bind(environment_id as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = Vec::new();
        for (name,) in names {
            let hours = crate::flag_analytics::series(
                &self.pool,
                environment_id,
                &name,
                crate::flag_analytics::HOUR,
                0,
                i64::MAX / 1_000_000,
            )
            .await?;
            counts.extend(
                hours
                    .into_iter()
                    .map(|(hour, count)| (name.clone(), hour, count)),
            );
        }
        counts.sort();
        Ok(counts)
    }
}

/// The name sqlx's `Any` driver gives PostgreSQL connections.
const POSTGRES: &str = projections::document_notifications::POSTGRES;
