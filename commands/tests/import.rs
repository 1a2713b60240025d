//! Importing environment documents through the write side, on both backends: one atomic append,
//! refused whole when any part is wrong.

use commands::Commands;
use commands::import::{import, parse_document};
use commands::log::testing::TestDatabase;
use commands::store::Store;
use domain::log::Metadata;
use serde_json::{Value, json};

fn seed_document() -> Value {
    let dir = std::env::var("FLAGLOG_REFERENCE_DIR").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/flagsmith"
        )
        .to_string()
    });
    let path = format!("{dir}/conformance/documents/seed-1.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&bytes).unwrap()
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(commands::log::testing::TestDatabase::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(commands::log::testing::TestDatabase::postgres().await).await })*
        }
    };
}

on_both_backends!(
    import_appends_every_stream_with_actor_import,
    a_document_the_rules_refuse_writes_nothing,
    importing_the_same_client_key_twice_is_refused_and_writes_nothing,
);

async fn import_appends_every_stream_with_actor_import(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let raw = serde_json::to_vec(&seed_document()).unwrap();
    let imported = import(
        &commands,
        &Metadata::actor("import"),
        parse_document(&raw).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(imported.client_key, "iM74ZerhGZDFSz3ogGb6zC");
    assert!(imported.server_side_key.starts_with("ser."));
    assert_eq!((imported.features, imported.segments), (40, 26));

    let events = log.read_all(0, 100_000).await.unwrap();
    assert!(events.iter().all(|e| e.metadata.actor == "import"));
    let count = |t: &str| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count("FeatureCreated"), 40);
    assert_eq!(count("SegmentCreated"), 26);
    assert_eq!(count("FeatureStateSet"), 40);
    assert!(count("SegmentOverrideSet") > 0);
    assert!(count("IdentityOverrideSet") > 0);
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains(&imported.server_side_key),
        "the server-side key itself is never stored"
    );
    let project = commands.project(imported.project_id).await.unwrap();
    assert!(project.state.feature_by_name("feature_00").is_some());
}

async fn a_document_the_rules_refuse_writes_nothing(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let mut document = seed_document();
    // The last segment gets an invalid MODULO condition: everything before it is fine.
    let segments = document["environment_document"]["project"]["segments"]
        .as_array_mut()
        .unwrap();
    let last = segments.len() - 1;
    segments[last]["rules"] = json!([{"type": "ALL", "rules": [],
        "conditions": [{"operator": "MODULO", "property_": "n", "value": "zero"}]}]);
    let raw = serde_json::to_vec(&document).unwrap();
    let err = import(
        &commands,
        &Metadata::actor("import"),
        parse_document(&raw).unwrap(),
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "project.segments[{last}].rules[0].conditions[0].value"
        )),
        "{message}"
    );
    assert_eq!(log.head().await.unwrap(), 0, "nothing was written");
}

async fn importing_the_same_client_key_twice_is_refused_and_writes_nothing(db: TestDatabase) {
    let log = db.event_log().await;
    let commands = Commands::new(Store::new(log.clone()));
    let raw = serde_json::to_vec(&seed_document()).unwrap();
    import(
        &commands,
        &Metadata::actor("import"),
        parse_document(&raw).unwrap(),
    )
    .await
    .unwrap();
    let head = log.head().await.unwrap();
    let err = import(
        &commands,
        &Metadata::actor("import"),
        parse_document(&raw).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        commands::Error::Domain(domain::Error::Conflict { .. })
    ));
    assert_eq!(log.head().await.unwrap(), head);
}

#[test]
fn documents_are_accepted_alone_or_wrapped() {
    let wrapped = seed_document();
    let bare = wrapped["environment_document"].clone();
    let as_environment = json!({"environment": bare.clone()});
    let parse = |v: &Value| parse_document(&serde_json::to_vec(v).unwrap()).unwrap();
    let expected = parse(&bare);
    assert_eq!(parse(&wrapped), expected);
    assert_eq!(parse(&as_environment), expected);
}

#[test]
fn malformed_documents_name_the_offending_path() {
    let mut document = seed_document();
    document["environment_document"]["feature_states"][3]["enabled"] = json!("yes");
    let err = parse_document(&serde_json::to_vec(&document).unwrap()).unwrap_err();
    assert_eq!(err.path, "$.environment_document.feature_states[3].enabled");
    let err = parse_document(b"[1]").unwrap_err();
    assert_eq!(err.path, "$");
    let err = parse_document(b"{not json").unwrap_err();
    assert!(err.message.contains("not JSON"));
}
