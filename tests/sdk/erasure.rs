//! Erasure (`DELETE /api/v1/environments/{key}/identities/{identifier}`): an identity's
//! identifier and traits are forgotten without breaking the log's hash chain. Its overrides stop
//! applying, the audit history shows an erased identity, the chain still verifies, and no
//! answer (audit list, exports, change requests, documents now and as of before the erasure) nor
//! the database itself holds the identifier afterwards. Another identity, set up the same way,
//! is the control: it is still found everywhere.

use flaglog_tests::{Backend, on_both_backends};
use serde_json::{Value, json};

use crate::{Sdk, SdkCall, environment_with_server_key, start, trait_list};

const KEY: &str = "erasure-key";
/// The identity erased: an e-mail address, as identifiers often are.
const PERSON: &str = "erase.me@example.com";
/// Its trait value: personal data too.
const PERSONAL_TRAIT: &str = "Flat 3, 12 Erasure Street";
/// The control, set up as `PERSON` is and not erased.
const OTHER: &str = "keep.me@example.com";

async fn set_up_identity(sdk: &Sdk, environment_id: u64, identifier: &str, banner: u64) {
    sdk.post(
        "/api/v1/identities/",
        json!({"identifier": identifier,
               "traits": trait_list(&json!({"address": format!("{identifier}: {PERSONAL_TRAIT}")}))}),
    )
    .environment_key(KEY)
    .send()
    .await
    .expect_status(200);
    sdk.post(
        &format!("/api/v1/environments/{KEY}/identity-overrides/"),
        json!({"identifier": identifier, "feature": banner, "enabled": true,
               "feature_state_value": "just for you"}),
    )
    .send()
    .await
    .expect_status(204);
    // A change request proposing another override: stored in the log, by reference.
    sdk.post(
        &format!("/api/v1/environments/{KEY}/change-requests/"),
        json!({"title": "personal banner", "commands": [
            {"type": "set_identity_override", "environment_id": environment_id,
             "identifier": identifier, "feature_id": banner, "enabled": false}]}),
    )
    .send()
    .await
    .expect_status(201);
}

/// The banner the identity is served (through the SDK's GET, which stores nothing).
async fn banner_for(sdk: &Sdk, server_key: &str, identifier: &str) -> Value {
    let reply = sdk
        .get(&format!("/api/v1/identities/?identifier={identifier}"))
        .environment_key(server_key)
        .send()
        .await
        .expect_status(200);
    reply.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"]["name"] == "banner")
        .unwrap()["feature_state_value"]
        .clone()
}

/// Every answer that could name an identity, as text.
async fn answers(sdk: &Sdk, before_erasure: u64) -> Vec<(String, String)> {
    let mut answers = Vec::new();
    for path in [
        "/api/v1/audit-log/?limit=1000".to_string(),
        "/api/v1/audit-log/export?format=ndjson".to_string(),
        "/api/v1/audit-log/export?format=csv".to_string(),
        format!("/api/v1/environments/{KEY}/change-requests/"),
        format!("/api/v1/environment-document/?environment={KEY}&as_of_position={before_erasure}"),
        format!("/api/v1/environments/{KEY}/featurestates/?as_of_position={before_erasure}"),
    ] {
        let reply = sdk.get(&path).send().await.expect_status(200);
        answers.push((path, reply.text));
    }
    answers
}

/// Everything the database holds, as text: `pg_dump` of it, or the SQLite file and its
/// write-ahead log as they are on disk (free pages included).
fn database_dump(url: &str) -> String {
    if url.starts_with("postgres") {
        let dump = std::process::Command::new("pg_dump")
            .args(["--data-only", url])
            .output()
            .expect("pg_dump runs");
        assert!(dump.status.success(), "pg_dump: {dump:?}");
        String::from_utf8_lossy(&dump.stdout).into_owned()
    } else {
        let path = url.trim_start_matches("sqlite://");
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

async fn erasing_an_identity_forgets_it_and_keeps_the_chain(backend: Backend) {
    let sdk = start(backend).await;
    let (project, environment_id, server_key) = environment_with_server_key(&sdk, KEY).await;
    sdk.projected().await;
    let banner = sdk
        .feature(project, json!({"name": "banner", "initial_value": "plain"}))
        .await;
    sdk.put(
        &format!("/api/v1/environments/{KEY}/featurestates/{banner}/"),
        json!({"enabled": true, "feature_state_value": "plain"}),
    )
    .send()
    .await
    .expect_status(200);
    for identifier in [PERSON, OTHER] {
        set_up_identity(&sdk, environment_id, identifier, banner).await;
    }
    sdk.projected().await;
    assert_eq!(banner_for(&sdk, &server_key, PERSON).await, "just for you");
    let before_erasure = sdk.log.head().await.unwrap();
    let log = sdk.log_text().await;
    for identifier in [PERSON, OTHER] {
        assert!(
            !log.contains(identifier),
            "the log never holds an identifier"
        );
    }
    let answered = answers(&sdk, before_erasure).await;
    assert!(
        answered.iter().any(|(_, text)| text.contains(PERSON)),
        "before the erasure the identity is named"
    );

    let erased = sdk
        .delete(&format!(
            "/api/v1/environments/{KEY}/identities/erase.me%40example.com"
        ))
        .send()
        .await
        .expect_status(200);
    assert_eq!(erased.body["identifier_erased"], true);
    assert_eq!(erased.body["traits_erased"], true);
    assert!(erased.body["position"].as_u64().unwrap() > before_erasure);

    // Its override no longer applies; the other's does. The document SDKs download names only
    // the other.
    let document = sdk
        .get("/api/v1/environment-document/")
        .environment_key(&server_key)
        .send()
        .await
        .expect_status(200);
    assert!(!document.text.contains(PERSON) && document.text.contains(OTHER));
    assert_eq!(banner_for(&sdk, &server_key, PERSON).await, "plain");
    assert_eq!(banner_for(&sdk, &server_key, OTHER).await, "just for you");

    // The chain still verifies, every event included.
    let verified = sdk
        .get("/api/v1/audit-log/verify")
        .send()
        .await
        .expect_status(200);
    assert_eq!(verified.body["intact"], true, "{}", verified.text);

    // The audit history names the erased identity as such, and the other by its identifier.
    let history = sdk
        .get("/api/v1/audit-log/?limit=1000")
        .send()
        .await
        .expect_status(200);
    let rows = history.body["results"].as_array().unwrap();
    let identities: Vec<&str> = rows.iter().filter_map(|r| r["identity"].as_str()).collect();
    assert!(identities.contains(&"erased identity"), "{identities:?}");
    assert!(identities.contains(&OTHER), "{identities:?}");
    assert!(
        rows.iter().any(|r| r["event_type"] == "IdentityErased"
            && r["summary"]
                .as_str()
                .unwrap()
                .contains("erased an identity")),
        "the erasure itself is in the history"
    );

    // No answer and nothing in the database holds the identifier or its trait any more.
    for (path, text) in answers(&sdk, before_erasure).await {
        assert!(!text.contains(PERSON), "{path} still names the identity");
        assert!(
            !text.contains(&format!("{PERSON}: {PERSONAL_TRAIT}")),
            "{path} still holds its trait"
        );
    }
    let past = sdk
        .get(&format!(
            "/api/v1/environment-document/?environment={KEY}&as_of_position={before_erasure}"
        ))
        .send()
        .await
        .expect_status(200);
    assert!(
        past.text.contains(OTHER),
        "the control is in the past document"
    );
    let dump = database_dump(sdk.database_url());
    assert!(
        dump.contains(OTHER),
        "the dump holds the control's identifier"
    );
    assert!(
        !dump.contains(PERSON),
        "the database still holds the identifier"
    );
    assert!(
        !dump.contains(&format!("{PERSON}: {PERSONAL_TRAIT}")),
        "the database still holds the trait"
    );

    // Erased twice: nothing is left to erase. The same identifier later is a new identity.
    sdk.delete(&format!("/api/v1/environments/{KEY}/identities/{PERSON}"))
        .send()
        .await
        .expect_error(404, "not_found", None);
    sdk.post(
        &format!("/api/v1/environments/{KEY}/identity-overrides/"),
        json!({"identifier": PERSON, "feature": banner, "enabled": true,
               "feature_state_value": "new here"}),
    )
    .send()
    .await
    .expect_status(204);
    sdk.projected().await;
    // The SDK cache drops what the projection changed on its own worker (api::workers::
    // CacheInvalidation), an instant after the projection's progress: the new identity's
    // override is served once that worker has had the change.
    let deadline = tokio::time::Instant::now() + crate::PROJECTION_DEADLINE;
    loop {
        let served = banner_for(&sdk, &server_key, PERSON).await;
        if served == "new here" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new identity was still served {served:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

on_both_backends!(erasing_an_identity_forgets_it_and_keeps_the_chain);
