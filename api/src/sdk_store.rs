//! SDK-submitted data that is not a flag mutation, so not an event: identities' traits and flag
//! evaluation counts. Kept in plain tables (`migrations/*/0003_sdk_data.sql`) in the log's
//! database; they never reach the audit history.

use serde_json::{Map, Value};
use sqlx::AnyPool;

pub type Traits = Map<String, Value>;

#[derive(Clone)]
pub struct SdkStore {
    pool: AnyPool,
}

impl SdkStore {
    pub fn new(pool: AnyPool) -> Self {
        SdkStore { pool }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The traits stored for an identity (empty when it has none).
    pub async fn traits(&self, environment_id: u64, identifier: &str) -> sqlx::Result<Traits> {
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

    /// Stores an identity's traits, replacing what was stored.
    pub async fn store_traits(
        &self,
        environment_id: u64,
        identifier: &str,
        traits: &Traits,
    ) -> sqlx::Result<()> {
        let text = serde_json::to_string(traits).unwrap_or_else(|_| "{}".into());
        sqlx::query(
            "INSERT INTO identity_traits (environment_id, identifier, traits, updated_at_micros) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (environment_id, identifier) \
             DO UPDATE SET traits = excluded.traits, updated_at_micros = excluded.updated_at_micros",
        )
        .bind(environment_id as i64)
        .bind(identifier)
        .bind(text)
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds SDK-reported evaluation counts to the current hour's.
    pub async fn add_counts(
        &self,
        environment_id: u64,
        counts: &[(String, i64)],
    ) -> sqlx::Result<()> {
        let hour_start = now_micros() / 1_000_000 / 3600 * 3600;
        let mut tx = self.pool.begin().await?;
        for (feature_name, count) in counts {
            sqlx::query(
                "INSERT INTO flag_analytics (environment_id, feature_name, hour_start, count) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (environment_id, feature_name, hour_start) \
                 DO UPDATE SET count = flag_analytics.count + excluded.count",
            )
            .bind(environment_id as i64)
            .bind(feature_name)
            .bind(hour_start)
            .bind(*count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Counts per (feature, hour start in Unix seconds) of an environment.
    pub async fn counts(&self, environment_id: u64) -> sqlx::Result<Vec<(String, i64, i64)>> {
        sqlx::query_as(
            "SELECT feature_name, hour_start, count FROM flag_analytics \
             WHERE environment_id = $1 ORDER BY feature_name, hour_start",
        )
        .bind(environment_id as i64)
        .fetch_all(&self.pool)
        .await
    }
}

fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}
