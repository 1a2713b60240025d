//! Periodic snapshots of what rendering one environment needs, so time travel stays fast on a
//! long log: the directory, the environment's project, the environment and its identities'
//! overrides, folded up to a position, and when it was last touched. The environment-documents
//! projection writes one for an environment it renders when [`SNAPSHOT_EVERY`] positions have
//! passed since that environment's last one (in the same transaction as the rows, at the
//! batch's last position); `projections::as_of` starts from the latest snapshot at or before the
//! position it is asked for and folds only what the environment's streams gained since.
//!
//! A snapshot is derived, like every read model: it is what folding the log gives, so deleting
//! them all changes no answer, only its cost (the tests compare both ways).

use std::collections::BTreeMap;

use domain::directory::Directory;
use domain::environment::Environment;
use domain::identity::IdentityOverrides;
use domain::model::EnvironmentId;
use domain::project::Project;
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

use crate::Error;

/// Log positions between two snapshots of one environment (at most; one is taken only when the
/// environment is rendered).
pub const SNAPSHOT_EVERY: u64 = 10_000;

/// What rendering one environment needs, as folded up to `position`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvironmentSnapshot {
    pub position: u64,
    pub directory: Directory,
    pub project: Project,
    pub environment: Environment,
    /// Its identities' overrides, by identifier.
    pub identities: BTreeMap<String, IdentityOverrides>,
    /// When, and at which position, the last event that touched the environment was recorded.
    pub last_change: (i64, u64),
}

/// Keeps `snapshot` of environment `environment_id` (inside the projection's transaction).
pub(crate) async fn write(
    tx: &mut sqlx::AnyConnection,
    environment_id: EnvironmentId,
    snapshot: &EnvironmentSnapshot,
) -> Result<(), Error> {
    let state = serde_json::to_string(snapshot).map_err(|e| Error::Other(e.to_string()))?;
    sqlx::query(
        "INSERT INTO environment_snapshots (environment_id, position, state) VALUES ($1, $2, $3) \
         ON CONFLICT (environment_id, position) DO NOTHING",
    )
    .bind(environment_id as i64)
    .bind(snapshot.position as i64)
    .bind(state)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The latest snapshot of environment `environment_id` at or before `position`.
pub async fn latest(
    pool: &AnyPool,
    environment_id: EnvironmentId,
    position: u64,
) -> Result<Option<EnvironmentSnapshot>, Error> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state FROM environment_snapshots WHERE environment_id = $1 AND position <= $2 \
         ORDER BY position DESC LIMIT 1",
    )
    .bind(environment_id as i64)
    .bind(position as i64)
    .fetch_optional(pool)
    .await?;
    state
        .map(|state| serde_json::from_str(&state).map_err(|e| Error::Other(e.to_string())))
        .transpose()
}

/// The position of environment `environment_id`'s latest snapshot (0: none).
pub(crate) async fn last_position(
    pool: &AnyPool,
    environment_id: EnvironmentId,
) -> Result<u64, Error> {
    let position: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(position) FROM environment_snapshots WHERE environment_id = $1",
    )
    .bind(environment_id as i64)
    .fetch_one(pool)
    .await?;
    Ok(position.map_or(0, |p| p as u64))
}
