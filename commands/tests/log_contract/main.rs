//! The `EventLog` contract: one suite of behaviours, run against the PostgreSQL and the SQLite
//! adapter alike (the `contract!` macro instantiates every body once per backend), plus the
//! PostgreSQL-only behaviours of several nodes sharing one database (`nodes`). Each module holds
//! one part of the contract; this file the harness and the list every backend runs.
//!
//! Every test gets a fresh database from `commands::log::testing::TestDatabase`. The PostgreSQL
//! tests never skip: if PostgreSQL is unreachable they fail, saying so.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use commands::log::Backend;
use commands::log::testing::TestDatabase;
use domain::log::{
    Appended, EventLog, ExpectedVersion, GENESIS_HASH, LogError, Metadata, NewEvent, RecordedEvent,
    StreamAppend, canonical_json, verify_chain,
};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};

mod appends;
mod chain;
mod concurrency;
mod identity_references;
mod nodes;
mod reads;
mod waiting;

use appends::*;
use chain::*;
use concurrency::*;
use identity_references::*;
use reads::*;
use waiting::*;

/// Long enough that a slow CI machine does not make a prompt wake-up look late.
const PROMPTLY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Harness

/// One adapter on one fresh database.
struct Harness {
    // Declared before `db` so the adapter goes away before its database is dropped.
    log: Arc<dyn EventLog>,
    db: TestDatabase,
}

impl Harness {
    async fn postgres() -> Self {
        Self::on(TestDatabase::postgres().await).await
    }

    async fn sqlite() -> Self {
        Self::on(TestDatabase::sqlite().await).await
    }

    async fn on(db: TestDatabase) -> Self {
        Self {
            log: db.event_log().await,
            db,
        }
    }

    /// Runs `sql` on a connection of its own, bypassing the adapter.
    async fn execute_raw(&self, sql: &'static str) -> Result<u64, String> {
        match self.db.backend() {
            Backend::Postgres => {
                let mut connection = PgConnection::connect(self.db.url()).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut connection)
                    .await
                    .map(|done| done.rows_affected())
            }
            Backend::Sqlite => {
                let mut connection = SqliteConnection::connect(self.db.url()).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut connection)
                    .await
                    .map(|done| done.rows_affected())
            }
        }
        .map_err(|e| e.to_string())
    }

    /// The payload column exactly as stored.
    async fn stored_payload_text(&self, position: i64) -> String {
        let sql = match self.db.backend() {
            Backend::Postgres => "SELECT payload FROM events WHERE position = $1",
            Backend::Sqlite => "SELECT payload FROM events WHERE position = ?1",
        };
        match self.db.backend() {
            Backend::Postgres => {
                let mut connection = PgConnection::connect(self.db.url()).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(position)
                    .fetch_one(&mut connection)
                    .await
            }
            Backend::Sqlite => {
                let mut connection = SqliteConnection::connect(self.db.url()).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(position)
                    .fetch_one(&mut connection)
                    .await
            }
        }
        .unwrap()
    }

    /// Appends that are expected to succeed.
    async fn append(&self, appends: Vec<StreamAppend>) -> Appended {
        self.log.append(appends, metadata()).await.unwrap()
    }

    async fn everything(&self) -> Vec<RecordedEvent> {
        self.log.read_all(0, usize::MAX).await.unwrap()
    }
}

fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        schema_version: 1,
        payload,
    }
}

fn to(stream_id: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream_id: stream_id.into(),
        expected,
        events,
    }
}

/// `n` numbered events.
fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("Happened", json!({ "n": i })))
        .collect()
}

fn metadata() -> Metadata {
    Metadata {
        actor: "user:42".into(),
        request_id: Some("req-1".into()),
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        reason: Some("rollout: ünïcödé reason ✓".into()),
        break_glass: true,
        approvers: vec!["user:7".into(), "user:9".into()],
    }
}

fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// Fails a test that hangs (say, on a lock nobody releases) instead of blocking the run.
async fn within_limit(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(300), test)
        .await
        .expect("the test did not finish within 300 s");
}

// ---------------------------------------------------------------------------------------------
// The contract, instantiated for both backends

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::within_limit(super::$name(super::Harness::postgres().await)).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::within_limit(super::$name(super::Harness::sqlite().await)).await;
                }
            )*
        }
    };
}

contract!(
    append_then_read_stream_round_trips_events_and_metadata,
    read_stream_between_is_what_a_stream_gained_between_two_positions,
    read_positions_reads_exactly_those_events_in_order,
    read_all_honours_after_and_limit,
    head_is_the_last_position,
    no_stream_on_an_existing_stream_conflicts_and_writes_nothing,
    stale_exact_version_conflicts_and_writes_nothing,
    multi_stream_append_is_all_or_nothing,
    invalid_appends_are_refused_and_write_nothing,
    hash_chain_verifies_and_survives_the_storage_round_trip,
    update_is_rejected_by_the_database,
    delete_is_rejected_by_the_database,
    truncate_is_rejected_by_the_database,
    wait_for_events_wakes_promptly_when_another_task_appends,
    wait_for_events_returns_after_max_wait_when_nothing_happens,
    wait_for_events_returns_at_once_when_the_head_is_already_past,
    concurrent_no_stream_appends_admit_exactly_one,
    appends_after_reopening_continue_the_chain,
    expectations_see_appends_made_through_another_instance,
    tailing_reader_never_skips_an_event_under_concurrent_writers,
    expectations_on_streams_not_written_are_checked_and_write_nothing,
    a_write_decided_on_a_read_stream_is_ordered_before_any_change_to_it,
    read_stored_gives_the_bytes_the_chain_hashes,
    an_identifier_keeps_the_first_reference_assigned_until_erased,
    concurrent_assignments_agree_on_one_reference,
    the_migration_records_identifiers_of_events_written_before_references,
);
