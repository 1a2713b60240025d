//! Time travel (`as_of`): as of the head, every environment is its projected row; from a
//! snapshot, the same as from the log, at every position.

use super::*;

/// Every projected environment's past document as of `position`, in the order of its rows.
async fn past_documents(
    log: &dyn EventLog,
    pool: &sqlx::AnyPool,
    commands: &Commands,
    position: u64,
) -> Vec<environment_documents::RenderedEnvironment> {
    let mut pasts = Vec::new();
    for row in environment_documents::all(pool).await.unwrap() {
        let project = commands
            .environment(row.environment_id)
            .await
            .unwrap()
            .state
            .project_id;
        pasts.push(
            as_of::environment_at(
                log,
                pool,
                row.environment_id,
                project,
                position,
                Identities::All,
            )
            .await
            .unwrap()
            .expect("the environment exists"),
        );
    }
    pasts
}

/// Time travel folds and renders with the projection's code: as of the head, the past document
/// of every environment (imported seeds with their identity overrides, then changed) is its
/// projected row, byte for byte, with the same position and `updated_at`.
async fn as_of_the_head_every_environment_is_its_projected_row(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let pool = projections::connect(db.url()).await.unwrap();
    let mut running = Running::start(log.clone(), pool.clone()).await;
    for n in [3, 4] {
        let environment = import_seed(&commands, n).await;
        make_changes(&commands, environment).await;
    }
    let head = log.head().await.unwrap();
    running.caught_up(head).await;
    running.stop().await;

    assert_eq!(as_of::position_at(&*log, i64::MIN).await.unwrap(), 0);
    assert_eq!(as_of::position_at(&*log, i64::MAX).await.unwrap(), head);
    // Identity streams are found in the audit history as far as it got, and by a pass over the
    // rest of the log: with no history, half of one, and all of it, the past is the same.
    let events = log.read_all(0, head as usize).await.unwrap();
    let mut history = AuditHistory::new(pool.clone());
    let mut pasts = Vec::new();
    for indexed in [0, events.len() / 2, events.len()] {
        let already = projections::checkpoint(&pool, audit_history::NAME)
            .await
            .unwrap() as usize;
        if indexed > already {
            history.apply(&events[already..indexed]).await.unwrap();
        }
        pasts.push(past_documents(&*log, &pool, &commands, head).await);
    }
    assert!(pasts.windows(2).all(|w| w[0] == w[1]));
    for (row, past) in environment_documents::all(&pool)
        .await
        .unwrap()
        .into_iter()
        .zip(pasts.remove(0))
    {
        let project = commands
            .environment(row.environment_id)
            .await
            .unwrap()
            .state
            .project_id;
        let document: Value = serde_json::from_str(&row.document).unwrap();
        assert!(
            document["identity_overrides"]
                .as_array()
                .is_some_and(|o| !o.is_empty()),
            "identity overrides (found by the pass over the log) are rendered"
        );
        assert_eq!(
            (
                &past.document,
                &past.flags,
                past.updated_at_micros,
                past.position
            ),
            (
                &row.document,
                &row.flags,
                row.updated_at_micros,
                row.position
            )
        );
        // The row's last change was recorded at its `updated_at`: an instant finds it, or a
        // later event of the same append.
        let at = as_of::position_at(&*log, row.updated_at_micros)
            .await
            .unwrap();
        assert!(at >= row.position, "{at} < {}", row.position);
        let before = as_of::environment_at(
            &*log,
            &pool,
            row.environment_id,
            project,
            row.position - 1,
            Identities::All,
        )
        .await
        .unwrap();
        assert_ne!(before.map(|b| b.document), Some(row.document.clone()));
    }
}

/// Time travel from the projection's snapshots answers what folding the whole log answers, at
/// every position (a snapshot taken every few positions, so most answers start from one).
async fn as_of_from_a_snapshot_is_as_of_from_the_log(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let pool = projections::connect(db.url()).await.unwrap();
    let mut running =
        Running::start_with(log.clone(), pool.clone(), |p| p.with_snapshots_every(3)).await;
    let mut environments = Vec::new();
    for n in [3, 4] {
        let environment = import_seed(&commands, n).await;
        make_changes(&commands, environment).await;
        environments.push(environment);
    }
    let head = log.head().await.unwrap();
    running.caught_up(head).await;
    running.stop().await;
    let events = log.read_all(0, head as usize).await.unwrap();
    AuditHistory::new(pool.clone())
        .apply(&events)
        .await
        .unwrap();
    let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM environment_snapshots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(taken >= 4, "only {taken} snapshots");

    let pasts = async || {
        let mut pasts = Vec::new();
        for &environment in &environments {
            let project = commands
                .environment(environment)
                .await
                .unwrap()
                .state
                .project_id;
            let someone = commands
                .identity_reference(environment, "someone", false)
                .await
                .unwrap();
            assert!(someone.is_some(), "the identity has a reference");
            // Every few positions (each answer reads the log again), and the head.
            let stride = (head / 40).max(1) as usize;
            for position in (1..=head).step_by(stride).chain([head]) {
                for identities in [Identities::All, Identities::One(someone.as_deref())] {
                    let past = as_of::environment_at(
                        &*log,
                        &pool,
                        environment,
                        project,
                        position,
                        identities,
                    )
                    .await
                    .unwrap();
                    // One identity's past is for evaluating it: its overrides and the flags
                    // count (when the environment last changed counts every identity's
                    // overrides from a snapshot, only this one's without).
                    let one = matches!(identities, Identities::One(_));
                    pasts.push(past.map(|p| {
                        let document: Value = serde_json::from_str(&p.document).unwrap();
                        if one {
                            (document["identity_overrides"].to_string(), p.flags, 0, 0)
                        } else {
                            (p.document, p.flags, p.updated_at_micros, p.position)
                        }
                    }));
                }
            }
        }
        pasts
    };
    let from_snapshots = pasts().await;
    sqlx::query("DELETE FROM environment_snapshots")
        .execute(&pool)
        .await
        .unwrap();
    let from_the_log = pasts().await;
    assert_eq!(from_snapshots.len(), from_the_log.len());
    for (i, (a, b)) in from_snapshots.iter().zip(&from_the_log).enumerate() {
        // Not assert_eq!: a document is long.
        assert!(a == b, "answer {i} differs");
    }
    assert!(from_snapshots.iter().filter(|p| p.is_some()).count() > 10);
    let with_someone = from_snapshots
        .iter()
        .flatten()
        .filter(|(overrides, ..)| overrides.contains("someone"))
        .count();
    assert!(with_someone > 0, "no answer holds the identity's override");
}

on_both_backends!(
    as_of_the_head_every_environment_is_its_projected_row,
    as_of_from_a_snapshot_is_as_of_from_the_log,
);
