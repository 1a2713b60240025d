//! The erasable table beside the log (`domain::log::IdentityReferences`): an identifier gets one
//! reference per environment, whoever assigns it first; erasing deletes it for good; and the
//! migration that introduced references recorded the identifiers of events written before them.

use domain::aggregate::DomainEvent;
use domain::identity::IdentityEvent;
use sha2::{Digest, Sha256};

use super::*;

pub(super) async fn an_identifier_keeps_the_first_reference_assigned_until_erased(h: Harness) {
    let log = &h.log;
    assert_eq!(log.identity_reference(1, "ann", None).await.unwrap(), None);
    let first = log
        .identity_reference(1, "ann", Some("r-one"))
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("r-one"));
    let again = log
        .identity_reference(1, "ann", Some("r-two"))
        .await
        .unwrap();
    assert_eq!(again.as_deref(), Some("r-one"), "the first assignment wins");
    assert_eq!(
        log.identity_reference(2, "ann", None).await.unwrap(),
        None,
        "references are per environment"
    );
    // Identifiers as long as accepted, in characters of several bytes each.
    let long = "é".repeat(domain::identity::MAX_IDENTIFIER_LEN);
    let assigned = log
        .identity_reference(1, &long, Some("r-long"))
        .await
        .unwrap();
    assert_eq!(assigned.as_deref(), Some("r-long"));

    let references = ["r-one".to_string(), "r-long".into(), "unknown".into()];
    let found = log.identifiers(1, &references).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found["r-one"], "ann");
    assert_eq!(found["r-long"], long);
    assert!(log.identifiers(2, &references).await.unwrap().is_empty());
    assert!(log.identifiers(1, &[]).await.unwrap().is_empty());

    assert!(log.erase_identifier(1, "r-one").await.unwrap());
    assert!(
        !log.erase_identifier(1, "r-one").await.unwrap(),
        "nothing left"
    );
    assert_eq!(log.identity_reference(1, "ann", None).await.unwrap(), None);
    assert!(
        !log.identifiers(1, &references)
            .await
            .unwrap()
            .contains_key("r-one")
    );
    let anew = log
        .identity_reference(1, "ann", Some("r-three"))
        .await
        .unwrap();
    assert_eq!(
        anew.as_deref(),
        Some("r-three"),
        "after erasure, a new identity"
    );
}

pub(super) async fn concurrent_assignments_agree_on_one_reference(h: Harness) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let log = h.log.clone();
            tokio::spawn(async move {
                log.identity_reference(1, "racer", Some(&format!("r-{i}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut references = BTreeSet::new();
    for task in tasks {
        references.insert(task.await.unwrap());
    }
    assert_eq!(references.len(), 1, "{references:?}");
    assert!(references.iter().all(Option::is_some));
}

/// Events of schema version 1 named the identity by identifier, in a stream named by its
/// SHA-256. Migration 0009 is undone, such an event appended, and the migration run again.
pub(super) async fn the_migration_records_identifiers_of_events_written_before_references(
    h: Harness,
) {
    h.execute_raw("DROP TABLE identity_references")
        .await
        .unwrap();
    h.execute_raw("DELETE FROM _sqlx_migrations WHERE version = 9")
        .await
        .unwrap();
    let digest = hex::encode(Sha256::digest("legacy@example.com".as_bytes()));
    let stream = format!("identity-4-{digest}");
    h.append(vec![to(
        &stream,
        ExpectedVersion::NoStream,
        vec![event(
            "IdentityOverrideSet",
            json!({"environment_id": 4, "identifier": "legacy@example.com", "feature_id": 1,
                   "state": {"enabled": true, "feature_state_value": null}}),
        )],
    )])
    .await;
    commands::log::migrate(h.db.url()).await.unwrap();

    let reference = h
        .log
        .identity_reference(4, "legacy@example.com", None)
        .await;
    assert_eq!(reference.unwrap().as_deref(), Some(digest.as_str()));
    let recorded = h.log.read_stream(&stream, 0).await.unwrap();
    let decoded = IdentityEvent::from_recorded(&recorded[0]).unwrap();
    assert_eq!(
        decoded.identity(),
        digest,
        "read with the hash as reference"
    );
}
