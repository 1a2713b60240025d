//! Flag analytics: how often SDKs evaluated each flag, and how many SDK API calls each
//! environment took, kept in the database (`migrations/*/0014_flag_analytics.sql`).
//!
//! Evaluation counts (`POST /api/v1/analytics/flags/`) are written raw as they arrive
//! (`SdkStore::add_counts`, one row per flag); the `flag_analytics` worker (one node) rolls them
//! up every interval into 15-minute and 1-hour buckets, deleting the raw rows it rolled up in
//! the same transaction (each row by its id, so a row committed meanwhile is left for the next
//! pass, never lost), and deletes buckets older than their [`Retention`]. Reads ([`series`])
//! add the raw rows not yet rolled up, so a count is visible as soon as it is written.
//!
//! API calls are counted in memory on the request path ([`ApiCalls::record`]: a read lock and
//! an atomic add) and the `sdk_usage` worker (every node) adds each node's counts to its own
//! row per environment and day, so nodes never contend on a row.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use projections::Error;
use projections::workers::{Context, Worker};
use sqlx::AnyPool;

/// The rollup worker's name in `/health`.
pub const ROLLUP: &str = "flag_analytics";
/// The API-call counters' worker's name in `/health`.
pub const USAGE: &str = "sdk_usage";
/// How often raw counts are rolled up and API calls saved by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// The buckets' sizes, in seconds.
pub const FIFTEEN_MINUTES: i64 = 900;
pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;
/// Raw rows one rollup transaction takes at most (a longer backlog takes several).
const ROLLUP_BATCH: i64 = 5_000;
/// Ids one DELETE names at most.
const DELETE_CHUNK: usize = 500;

/// How long buckets are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub fifteen_minutes: Duration,
    pub hourly: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            fifteen_minutes: Duration::from_secs(7 * DAY as u64),
            hourly: Duration::from_secs(90 * DAY as u64),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("flag analytics: {e}"))
}

/// Rolls up raw evaluation counts and applies the retention.
pub struct Rollup {
    pool: AnyPool,
    interval: Duration,
    retention: Retention,
}

impl Rollup {
    pub fn new(pool: AnyPool, interval: Duration, retention: Retention) -> Self {
        Rollup {
            pool,
            interval,
            retention,
        }
    }

    /// One pass: every raw row, in batches; then the retention. The rows rolled up.
    pub async fn run_once(&self) -> Result<u64, Error> {
        let mut total = 0;
        loop {
            let rolled = rollup_batch(&self.pool).await.map_err(failed)?;
            total += rolled;
            if rolled < ROLLUP_BATCH as u64 {
                break;
            }
        }
        let now = projections::now_micros() / 1_000_000;
        for (resolution, kept) in [
            (FIFTEEN_MINUTES, self.retention.fifteen_minutes),
            (HOUR, self.retention.hourly),
        ] {
            sqlx::query(
                "DELETE FROM flag_evaluation_buckets \
                 WHERE resolution_seconds = $1 AND bucket_start < $2",
            )
            .bind(resolution)
            .bind(now - kept.as_secs() as i64)
            .execute(&self.pool)
            .await
            .map_err(failed)?;
        }
        Ok(total)
    }
}

/// Rolls up at most [`ROLLUP_BATCH`] raw rows in one transaction; how many.
async fn rollup_batch(pool: &AnyPool) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
        "SELECT id, environment_id, feature_name, recorded_at_micros, count \
         FROM flag_evaluations ORDER BY id LIMIT $1",
    )
    .bind(ROLLUP_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut buckets: BTreeMap<(i64, String, i64, i64), i64> = BTreeMap::new();
    for (_, environment_id, feature_name, at, count) in &rows {
        let second = at / 1_000_000;
        for resolution in [FIFTEEN_MINUTES, HOUR] {
            let start = second - second.rem_euclid(resolution);
            *buckets
                .entry((*environment_id, feature_name.clone(), resolution, start))
                .or_default() += count;
        }
    }
    for ((environment_id, feature_name, resolution, start), count) in buckets {
        sqlx::query(
            "INSERT INTO flag_evaluation_buckets \
             (environment_id, feature_name, resolution_seconds, bucket_start, count) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (environment_id, feature_name, resolution_seconds, bucket_start) \
             DO UPDATE SET count = flag_evaluation_buckets.count + excluded.count",
        )
        .bind(environment_id)
        .bind(feature_name)
        .bind(resolution)
        .bind(start)
        .bind(count)
        .execute(&mut *tx)
        .await?;
    }
    let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
    for chunk in ids.chunks(DELETE_CHUNK) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        // Only placeholders are formatted in; the ids are bound.
        let sql = format!(
            "DELETE FROM flag_evaluations WHERE id IN ({})",
            marks.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(rows.len() as u64)
}

#[async_trait]
impl Worker for Rollup {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let mut rolled = 0;
        loop {
            rolled += self.run_once().await?;
            context.progress(rolled, 0, 0.0);
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = context.cancelled() => return Ok(()),
            }
        }
    }
}

/// The evaluations of `feature_name` in an environment from `from` to `to` (Unix seconds,
/// `to` excluded), per bucket of `resolution` seconds ([`FIFTEEN_MINUTES`] or [`HOUR`]), in
/// order, buckets without evaluations left out; raw rows not yet rolled up included.
pub async fn series(
    pool: &AnyPool,
    environment_id: u64,
    feature_name: &str,
    resolution: i64,
    from: i64,
    to: i64,
) -> sqlx::Result<Vec<(i64, i64)>> {
    let rolled: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT bucket_start, count FROM flag_evaluation_buckets \
         WHERE environment_id = $1 AND feature_name = $2 AND resolution_seconds = $3 \
         AND bucket_start >= $4 AND bucket_start < $5",
    )
    .bind(environment_id as i64)
    .bind(feature_name)
    .bind(resolution)
    .bind(from - from.rem_euclid(resolution))
    .bind(to)
    .fetch_all(pool)
    .await?;
    let raw: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT recorded_at_micros, count FROM flag_evaluations \
         WHERE environment_id = $1 AND feature_name = $2 \
         AND recorded_at_micros >= $3 AND recorded_at_micros < $4",
    )
    .bind(environment_id as i64)
    .bind(feature_name)
    .bind((from - from.rem_euclid(resolution)) * 1_000_000)
    .bind(to * 1_000_000)
    .fetch_all(pool)
    .await?;
    let mut buckets: BTreeMap<i64, i64> = rolled.into_iter().collect();
    for (at, count) in raw {
        let second = at / 1_000_000;
        *buckets
            .entry(second - second.rem_euclid(resolution))
            .or_default() += count;
    }
    Ok(buckets.into_iter().collect())
}

/// SDK API calls per day (Unix seconds of the day's start, UTC) of the environments given,
/// from `from` to `to` (days' starts, `to` excluded), summed over nodes and environments.
pub async fn calls_per_day(
    pool: &AnyPool,
    environment_ids: &[u64],
    from: i64,
    to: i64,
) -> sqlx::Result<Vec<(i64, i64)>> {
    let mut days: BTreeMap<i64, i64> = BTreeMap::new();
    for environment_id in environment_ids {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT day_start, count FROM sdk_api_calls \
             WHERE environment_id = $1 AND day_start >= $2 AND day_start < $3",
        )
        .bind(*environment_id as i64)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
        for (day, count) in rows {
            *days.entry(day).or_default() += count;
        }
    }
    Ok(days.into_iter().collect())
}

/// This node's SDK API calls per environment since they were last saved.
#[derive(Default, Clone)]
pub struct ApiCalls(Arc<RwLock<HashMap<u64, AtomicU64>>>);

impl ApiCalls {
    /// Counts one call to an SDK endpoint of `environment_id`.
    pub fn record(&self, environment_id: u64) {
        {
            let counters = self.0.read().unwrap_or_else(|p| p.into_inner());
            if let Some(counter) = counters.get(&environment_id) {
                counter.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut counters = self.0.write().unwrap_or_else(|p| p.into_inner());
        counters
            .entry(environment_id)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last call, zeroed.
    fn take(&self) -> Vec<(u64, u64)> {
        let counters = self.0.read().unwrap_or_else(|p| p.into_inner());
        counters
            .iter()
            .map(|(id, counter)| (*id, counter.swap(0, Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    /// Puts counts back (a save that failed), to be saved with the next.
    fn restore(&self, counts: &[(u64, u64)]) {
        for (environment_id, count) in counts {
            let counters = self.0.read().unwrap_or_else(|p| p.into_inner());
            if let Some(counter) = counters.get(environment_id) {
                counter.fetch_add(*count, Ordering::Relaxed);
            }
        }
    }
}

/// Saves this node's API-call counts every interval, and once more when stopped.
pub struct UsageSaver {
    pool: AnyPool,
    calls: ApiCalls,
    node: String,
    interval: Duration,
}

impl UsageSaver {
    pub fn new(pool: AnyPool, calls: ApiCalls, node: &str, interval: Duration) -> Self {
        UsageSaver {
            pool,
            calls,
            node: node.to_string(),
            interval,
        }
    }

    async fn save(&self) -> Result<u64, Error> {
        let counts = self.calls.take();
        let now = projections::now_micros() / 1_000_000;
        let day = now - now.rem_euclid(DAY);
        let mut saved = 0;
        for (i, (environment_id, count)) in counts.iter().enumerate() {
            let added = sqlx::query(
                "INSERT INTO sdk_api_calls (environment_id, day_start, node, count) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (environment_id, day_start, node) \
                 DO UPDATE SET count = sdk_api_calls.count + excluded.count",
            )
            .bind(*environment_id as i64)
            .bind(day)
            .bind(&self.node)
            .bind(*count as i64)
            .execute(&self.pool)
            .await;
            if let Err(e) = added {
                self.calls.restore(&counts[i..]);
                return Err(failed(e));
            }
            saved += count;
        }
        Ok(saved)
    }
}

#[async_trait]
impl Worker for UsageSaver {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let mut saved = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = context.cancelled() => {
                    self.save().await?;
                    return Ok(());
                }
            }
            saved += self.save().await?;
            context.progress(saved, 0, 0.0);
        }
    }
}
