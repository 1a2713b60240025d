//! Both adapters' erasable table of identifiers (`identity_references`, migration 0009): how
//! `domain::log::IdentityReferences` is kept beside the log, in the same database.

use std::collections::HashMap;

use async_trait::async_trait;
use domain::log::{IdentityReferences, LogError};
use domain::model::EnvironmentId;
use sha2::{Digest, Sha256};

use super::{PostgresEventLog, SqliteEventLog};

fn storage(e: sqlx::Error) -> LogError {
    LogError::Storage(e.to_string())
}

fn sha256_hex(identifier: &str) -> String {
    hex::encode(Sha256::digest(identifier.as_bytes()))
}

fn id(environment_id: EnvironmentId) -> i64 {
    i64::try_from(environment_id).unwrap_or(i64::MAX)
}

#[async_trait]
impl IdentityReferences for PostgresEventLog {
    async fn identity_reference(
        &self,
        environment_id: EnvironmentId,
        identifier: &str,
        assign: Option<&str>,
    ) -> Result<Option<String>, LogError> {
        let digest = sha256_hex(identifier);
        if let Some(reference) = assign {
            sqlx::query(
                "INSERT INTO identity_references \
                 (environment_id, reference, identifier_sha256, identifier) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id(environment_id))
            .bind(reference)
            .bind(&digest)
            .bind(identifier)
            .execute(self.pool())
            .await
            .map_err(storage)?;
        }
        sqlx::query_scalar(
            "SELECT reference FROM identity_references \
             WHERE environment_id = $1 AND identifier_sha256 = $2",
        )
        .bind(id(environment_id))
        .bind(&digest)
        .fetch_optional(self.pool())
        .await
        .map_err(storage)
    }

    async fn identifiers(
        &self,
        environment_id: EnvironmentId,
        references: &[String],
    ) -> Result<HashMap<String, String>, LogError> {
        if references.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT reference, identifier FROM identity_references \
             WHERE environment_id = $1 AND reference = ANY($2)",
        )
        .bind(id(environment_id))
        .bind(references)
        .fetch_all(self.pool())
        .await
        .map_err(storage)?;
        Ok(rows.into_iter().collect())
    }

    async fn erase_identifier(
        &self,
        environment_id: EnvironmentId,
        reference: &str,
    ) -> Result<bool, LogError> {
        let deleted = sqlx::query(
            "DELETE FROM identity_references WHERE environment_id = $1 AND reference = $2",
        )
        .bind(id(environment_id))
        .bind(reference)
        .execute(self.pool())
        .await
        .map_err(storage)?;
        Ok(deleted.rows_affected() > 0)
    }
}

#[async_trait]
impl IdentityReferences for SqliteEventLog {
    async fn identity_reference(
        &self,
        environment_id: EnvironmentId,
        identifier: &str,
        assign: Option<&str>,
    ) -> Result<Option<String>, LogError> {
        let digest = sha256_hex(identifier);
        if let Some(reference) = assign {
            sqlx::query(
                "INSERT INTO identity_references \
                 (environment_id, reference, identifier_sha256, identifier) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )
            .bind(id(environment_id))
            .bind(reference)
            .bind(&digest)
            .bind(identifier)
            .execute(self.pool())
            .await
            .map_err(storage)?;
        }
        sqlx::query_scalar(
            "SELECT reference FROM identity_references \
             WHERE environment_id = ?1 AND identifier_sha256 = ?2",
        )
        .bind(id(environment_id))
        .bind(&digest)
        .fetch_optional(self.pool())
        .await
        .map_err(storage)
    }

    async fn identifiers(
        &self,
        environment_id: EnvironmentId,
        references: &[String],
    ) -> Result<HashMap<String, String>, LogError> {
        if references.is_empty() {
            return Ok(HashMap::new());
        }
        let list = serde_json::to_string(references)
            .map_err(|e| LogError::Invalid(format!("identity references: {e}")))?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT reference, identifier FROM identity_references \
             WHERE environment_id = ?1 AND reference IN (SELECT value FROM json_each(?2))",
        )
        .bind(id(environment_id))
        .bind(list)
        .fetch_all(self.pool())
        .await
        .map_err(storage)?;
        Ok(rows.into_iter().collect())
    }

    /// The connections overwrite what they delete (`secure_delete`, see
    /// [`super::sqlite::connect_options`]), so the identifier leaves no trace in free pages.
    async fn erase_identifier(
        &self,
        environment_id: EnvironmentId,
        reference: &str,
    ) -> Result<bool, LogError> {
        let deleted = sqlx::query(
            "DELETE FROM identity_references WHERE environment_id = ?1 AND reference = ?2",
        )
        .bind(id(environment_id))
        .bind(reference)
        .execute(self.pool())
        .await
        .map_err(storage)?;
        Ok(deleted.rows_affected() > 0)
    }
}
