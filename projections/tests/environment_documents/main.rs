//! The environment-documents projection on both backends: it serves what Flagsmith's SDK computes,
//! it is rebuilt from position 0 to the same result, it resumes from its checkpoint, bounding
//! the aggregates it keeps loaded (down to one) changes nothing it writes, and a second instance
//! behind the stored checkpoint (a former leader on another node) writes nothing; and time travel
//! (`as_of`) renders, as of the head, exactly the projected rows.

use std::sync::Arc;
use std::time::Duration;

use commands::Commands;
use commands::handlers::Executed;
use commands::log::testing::TestDatabase;
use commands::store::Store;
use domain::command::Command;
use domain::evaluation::{evaluate, evaluate_for_identity};
use domain::flagsmith::{EnvironmentDocument, identity_context};
use domain::log::{EventLog, Metadata};
use projections::as_of::{self, Identities};
use projections::audit_history::{self, AuditHistory};
use projections::environment_documents::{self, EnvironmentDocuments};
use projections::runner;
use projections::runner::Projection;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

fn seed(n: u32) -> Value {
    let dir = std::env::var("FLAGLOG_REFERENCE_DIR").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/flagsmith"
        )
        .to_string()
    });
    let path = format!("{dir}/conformance/documents/seed-{n}.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// A projection running in the background until dropped.
struct Running {
    progress: watch::Receiver<u64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// A projection with the default bound on loaded aggregates.
    async fn start(log: Arc<dyn EventLog>, pool: sqlx::AnyPool) -> Self {
        Self::start_bounded(log, pool, environment_documents::DEFAULT_LOADED_AGGREGATES).await
    }

    /// A projection that keeps at most `bound` projects and environments loaded.
    async fn start_bounded(log: Arc<dyn EventLog>, pool: sqlx::AnyPool, bound: usize) -> Self {
        Self::start_with(log, pool, |p| p.with_loaded_aggregates(bound)).await
    }

    /// The projection `configure` makes of the default one.
    async fn start_with(
        log: Arc<dyn EventLog>,
        pool: sqlx::AnyPool,
        configure: impl FnOnce(EnvironmentDocuments) -> EnvironmentDocuments,
    ) -> Self {
        let (changes, _) = broadcast::channel(1024);
        let (progress_tx, progress) = watch::channel(0);
        let stop = CancellationToken::new();
        let stop_rx = stop.clone();
        let projection = configure(EnvironmentDocuments::new(pool, log.clone(), changes));
        let task = tokio::spawn(async move {
            runner::run(log, projection, progress_tx, stop_rx)
                .await
                .expect("projection runs");
        });
        Running {
            progress,
            stop,
            task,
        }
    }

    /// Waits (bounded) until the projection has applied everything up to `head`.
    async fn caught_up(&mut self, head: u64) {
        tokio::time::timeout(
            Duration::from_secs(20),
            self.progress.wait_for(|p| *p >= head),
        )
        .await
        .expect("projection catches up within 20 s")
        .expect("projection alive");
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(commands::log::testing::TestDatabase::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(commands::log::testing::TestDatabase::postgres().await).await })*
        }
    };
}

on_both_backends!(
    projected_documents_evaluate_as_flagsmith_does,
    incremental_and_rebuilt_read_models_are_identical,
    a_restarted_projection_resumes_from_its_checkpoint,
    a_projection_bounded_to_one_aggregate_writes_the_same_read_model,
    a_restarted_projection_applies_project_changes_after_its_checkpoint,
    a_former_leader_lagging_behind_cannot_replace_newer_rows,
);

mod time_travel;

async fn import_seed(commands: &Commands, n: u32) -> u64 {
    let raw = serde_json::to_vec(&seed(n)).unwrap();
    let document = commands::import::parse_document(&raw).unwrap();
    commands::import::import(commands, &Metadata::actor("import"), document)
        .await
        .unwrap()
        .environment_id
}

async fn projected_documents_evaluate_as_flagsmith_does(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    for n in [1, 2] {
        import_seed(&commands, n).await;
    }
    let pool = projections::connect(db.url()).await.unwrap();
    let mut running = Running::start(log.clone(), pool.clone()).await;
    running.caught_up(log.head().await.unwrap()).await;

    for n in [1, 2] {
        let data = seed(n);
        let key = data["environment_document"]["api_key"].as_str().unwrap();
        let stored = environment_documents::by_client_key(&pool, key)
            .await
            .unwrap()
            .expect("document projected");
        let document: EnvironmentDocument = serde_json::from_str(&stored.document).unwrap();
        assert_eq!(
            document.name.as_deref(),
            data["environment_document"]["name"].as_str()
        );
        let context = document.to_evaluation_context();

        let mut environment_only = context.clone();
        environment_only.segments.clear();
        assert_eq!(
            serde_json::to_value(evaluate(&environment_only)).unwrap(),
            data["environment_result"],
            "seed {n}"
        );
        // The precomputed /api/v1/flags/ body agrees with the environment result.
        let flags: Vec<Value> = serde_json::from_str(&stored.flags).unwrap();
        assert_eq!(flags.len(), 40);
        for flag in &flags {
            let name = flag["feature"]["name"].as_str().unwrap();
            let expected = &data["environment_result"]["flags"][name];
            assert_eq!(flag["enabled"], expected["enabled"], "seed {n} {name}");
            assert_eq!(
                flag["feature_state_value"], expected["value"],
                "seed {n} {name}"
            );
        }

        for identity in data["identities"].as_array().unwrap() {
            let traits: Vec<(String, Value)> = identity["traits"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let who = identity_context(identity["identifier"].as_str().unwrap(), traits);
            let result = evaluate_for_identity(&context, Some(&who));
            for (name, expected) in identity["result"]["flags"].as_object().unwrap() {
                let actual = serde_json::to_value(&result.flags[name]).unwrap();
                assert_eq!(
                    &actual, expected,
                    "seed {n} {} {name}",
                    identity["identifier"]
                );
            }
        }
    }
    running.stop().await;
}

/// Admin changes of every kind, applied while the projection runs.
async fn make_changes(commands: &Commands, environment_id: u64) {
    let env = commands.environment(environment_id).await.unwrap();
    let project_id = env.state.project_id;
    let created = execute(
        commands,
        json!({"type": "create_feature", "project_id": project_id,
               "feature": {"name": "new_flag", "default_enabled": true, "initial_value": 7}}),
    )
    .await
    .created_id()
    .unwrap();
    execute(
        commands,
        json!({"type": "set_feature_state", "environment_id": environment_id,
               "feature_id": created, "enabled": false, "feature_state_value": "off"}),
    )
    .await;
    execute(
        commands,
        json!({"type": "set_identity_override", "environment_id": environment_id,
               "identifier": "someone", "feature_id": created, "enabled": true,
               "feature_state_value": 1}),
    )
    .await;
    let project = commands.project(project_id).await.unwrap();
    let doomed = *project.state.features.keys().next().unwrap();
    execute(
        commands,
        json!({"type": "delete_feature", "project_id": project_id, "feature_id": doomed}),
    )
    .await;
    let mut settings = serde_json::to_value(&project.state.settings).unwrap();
    settings["name"] = json!("renamed");
    settings["hide_disabled_flags"] = json!(true);
    execute(
        commands,
        json!({"type": "update_project", "project_id": project_id, "settings": settings}),
    )
    .await;
}

/// Executes a command given in its JSON form, as a test user.
async fn execute(commands: &Commands, command: serde_json::Value) -> Executed {
    let command: Command = serde_json::from_value(command).unwrap();
    commands
        .execute(&Metadata::actor("test"), &command)
        .await
        .unwrap()
}

async fn incremental_and_rebuilt_read_models_are_identical(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let pool = projections::connect(db.url()).await.unwrap();
    let mut running = Running::start(log.clone(), pool.clone()).await;
    let first = import_seed(&commands, 3).await;
    running.caught_up(log.head().await.unwrap()).await;
    make_changes(&commands, first).await;
    let second = import_seed(&commands, 4).await;
    make_changes(&commands, second).await;
    running.caught_up(log.head().await.unwrap()).await;
    running.stop().await;
    let incremental = environment_documents::all(&pool).await.unwrap();
    assert_eq!(incremental.len(), 2);
    let flags: Vec<Value> = serde_json::from_str(&incremental[0].flags).unwrap();
    assert!(
        flags.iter().all(|f| f["enabled"] == true),
        "hide_disabled_flags hides disabled flags"
    );
    assert!(incremental[0].document.contains("new_flag"));

    EnvironmentDocuments::reset(&pool).await.unwrap();
    assert!(environment_documents::all(&pool).await.unwrap().is_empty());
    let mut rebuilt = Running::start(log.clone(), pool.clone()).await;
    rebuilt.caught_up(log.head().await.unwrap()).await;
    rebuilt.stop().await;
    assert_eq!(
        environment_documents::all(&pool).await.unwrap(),
        incremental
    );
}

async fn a_restarted_projection_resumes_from_its_checkpoint(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let pool = projections::connect(db.url()).await.unwrap();
    let environment = import_seed(&commands, 5).await;
    let mut running = Running::start(log.clone(), pool.clone()).await;
    running.caught_up(log.head().await.unwrap()).await;
    running.stop().await;

    // Changes land while no projection runs; a new one (fresh memory) picks up from the
    // checkpoint, warming its state from the log instead of re-applying it.
    make_changes(&commands, environment).await;
    let mut restarted = Running::start(log.clone(), pool.clone()).await;
    restarted.caught_up(log.head().await.unwrap()).await;
    restarted.stop().await;
    let resumed = environment_documents::all(&pool).await.unwrap();

    EnvironmentDocuments::reset(&pool).await.unwrap();
    let mut rebuilt = Running::start(log.clone(), pool.clone()).await;
    rebuilt.caught_up(log.head().await.unwrap()).await;
    rebuilt.stop().await;
    assert_eq!(environment_documents::all(&pool).await.unwrap(), resumed);
    assert!(resumed[0].document.contains("\"renamed\""));
}

async fn a_projection_bounded_to_one_aggregate_writes_the_same_read_model(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let pool = projections::connect(db.url()).await.unwrap();
    // One loaded aggregate: nearly every batch reloads the environments and projects it renders.
    let mut running = Running::start_bounded(log.clone(), pool.clone(), 1).await;
    let first = import_seed(&commands, 3).await;
    running.caught_up(log.head().await.unwrap()).await;
    make_changes(&commands, first).await;
    let second = import_seed(&commands, 4).await;
    make_changes(&commands, second).await;
    running.caught_up(log.head().await.unwrap()).await;
    running.stop().await;
    let incremental = environment_documents::all(&pool).await.unwrap();
    assert_eq!(incremental.len(), 2);
    for environment in &incremental {
        assert!(environment.document.contains("new_flag"));
        assert!(environment.document.contains("\"renamed\""));
    }

    // Rebuilt from position 0 (in batches of many streams), bounded to one and by default.
    for bound in [1, environment_documents::DEFAULT_LOADED_AGGREGATES] {
        EnvironmentDocuments::reset(&pool).await.unwrap();
        assert!(environment_documents::all(&pool).await.unwrap().is_empty());
        let mut rebuilt = Running::start_bounded(log.clone(), pool.clone(), bound).await;
        rebuilt.caught_up(log.head().await.unwrap()).await;
        rebuilt.stop().await;
        assert_eq!(
            environment_documents::all(&pool).await.unwrap(),
            incremental,
            "rebuilt with at most {bound} loaded aggregates"
        );
    }
}

async fn a_restarted_projection_applies_project_changes_after_its_checkpoint(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let pool = projections::connect(db.url()).await.unwrap();
    let environment = import_seed(&commands, 5).await;
    let project_id = commands
        .environment(environment)
        .await
        .unwrap()
        .state
        .project_id;
    execute(
        &commands,
        json!({"type": "create_environment", "project_id": project_id, "name": "second",
               "client_key": "second-environment-key"}),
    )
    .await;
    let mut running = Running::start(log.clone(), pool.clone()).await;
    running.caught_up(log.head().await.unwrap()).await;
    running.stop().await;
    assert_eq!(environment_documents::all(&pool).await.unwrap().len(), 2);

    // Only project events land while no projection runs: a restarted one has no project or
    // environment loaded, and must load both environments as they stood at each batch.
    for (bound, name) in [
        (1, "new_flag"),
        (
            environment_documents::DEFAULT_LOADED_AGGREGATES,
            "newer_flag",
        ),
    ] {
        execute(
            &commands,
            json!({"type": "create_feature", "project_id": project_id,
                   "feature": {"name": name, "default_enabled": true, "initial_value": 7}}),
        )
        .await;
        let project = commands.project(project_id).await.unwrap();
        let mut settings = serde_json::to_value(&project.state.settings).unwrap();
        settings["name"] = json!(format!("renamed for {name}"));
        execute(
            &commands,
            json!({"type": "update_project", "project_id": project_id, "settings": settings}),
        )
        .await;
        let head = log.head().await.unwrap();
        let mut restarted = Running::start_bounded(log.clone(), pool.clone(), bound).await;
        restarted.caught_up(head).await;
        restarted.stop().await;
        let resumed = environment_documents::all(&pool).await.unwrap();
        assert_eq!(resumed.len(), 2);
        for environment in &resumed {
            assert_eq!(environment.position, head, "bound {bound}");
            assert!(environment.document.contains(name), "bound {bound}");
            assert!(
                environment
                    .document
                    .contains(&format!("\"renamed for {name}\"")),
                "bound {bound}"
            );
        }
    }
    let resumed = environment_documents::all(&pool).await.unwrap();

    EnvironmentDocuments::reset(&pool).await.unwrap();
    let mut rebuilt = Running::start(log.clone(), pool.clone()).await;
    rebuilt.caught_up(log.head().await.unwrap()).await;
    rebuilt.stop().await;
    assert_eq!(environment_documents::all(&pool).await.unwrap(), resumed);
}

async fn a_former_leader_lagging_behind_cannot_replace_newer_rows(db: TestDatabase) {
    use projections::runner::Projection;
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let pool = projections::connect(db.url()).await.unwrap();
    let environment = import_seed(&commands, 5).await;
    let imported = log.head().await.unwrap();
    make_changes(&commands, environment).await;
    let mut running = Running::start(log.clone(), pool.clone()).await;
    running.caught_up(log.head().await.unwrap()).await;
    running.stop().await;
    let newest = environment_documents::all(&pool).await.unwrap();
    assert!(newest[0].position > imported, "the changes moved the row");

    // A second instance that only got as far as the import (as a former leader still finishing
    // an old batch would) applies it: refused as a whole, and nothing it rendered lands.
    let (changes, _) = broadcast::channel(16);
    let mut stale = EnvironmentDocuments::new(pool.clone(), log.clone(), changes);
    let old: Vec<_> = log
        .read_all(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .take_while(|e| e.position <= imported)
        .collect();
    let refused = stale.apply(&old).await;
    assert!(
        matches!(refused, Err(projections::Error::Superseded(p)) if p == imported),
        "{refused:?}"
    );
    assert_eq!(environment_documents::all(&pool).await.unwrap(), newest);
    let mut fresh = EnvironmentDocuments::new(pool.clone(), log.clone(), broadcast::channel(1).0);
    assert_eq!(fresh.checkpoint().await.unwrap(), log.head().await.unwrap());
}
