//! `POST /api/v1/identities/` and `GET /api/v1/identities/?identifier=`: an identity's flags,
//! evaluated with its traits. Traits are stored (unless transient) for later evaluations, in
//! the SDK store beside the log: identifying is not a change to any flag, so it is not an event.

use flaglog_tests::{Backend, on_both_backends};
use serde_json::{Value, json};

use crate::{
    SEEDS, Sdk, SdkCall, api_flags, assert_same_flags, engine_flags, gold_segment_of, import, seed,
    start, start_without_cached_contexts, trait_list,
};

async fn identities_of_every_seed_document_match_flagsmiths_engine(backend: Backend) {
    seed_identities_match_flagsmiths_engine(&start(backend).await).await;
}

/// The same when no evaluation context stays cached (each is rebuilt from the read model).
async fn identities_match_flagsmiths_engine_without_cached_contexts(backend: Backend) {
    seed_identities_match_flagsmiths_engine(&start_without_cached_contexts(backend).await).await;
}

async fn seed_identities_match_flagsmiths_engine(server: &Sdk) {
    for n in 1..=SEEDS {
        let seed = seed(n);
        let imported = import(server, &seed["environment_document"]).await;
        let identities = seed["identities"].as_array().unwrap();
        assert_eq!(identities.len(), 60, "seed {n}");
        for (i, identity) in identities.iter().enumerate() {
            let identifier = identity["identifier"].as_str().unwrap();
            let traits = trait_list(&identity["traits"]);
            // Alternate the keys: both kinds identify.
            let key = if i % 2 == 0 {
                &imported.client_key
            } else {
                &imported.server_side_key
            };
            let reply = server
                .post(
                    "/api/v1/identities/",
                    json!({"identifier": identifier, "traits": traits}),
                )
                .environment_key(key)
                .send()
                .await
                .expect_status(200);
            assert_eq!(reply.body["identifier"], identifier, "{}", reply.text);
            assert_eq!(
                sorted_traits(&reply.body["traits"]),
                sorted_traits(&traits),
                "seed {n} identity {identifier}: the answer lists its traits"
            );
            assert_same_flags(
                &api_flags(&reply.body["flags"]),
                &engine_flags(&identity["result"]),
                &format!("seed {n} identity {identifier}"),
            );
        }
    }
}

fn sorted_traits(traits: &Value) -> Vec<(String, Value)> {
    let mut traits: Vec<(String, Value)> = traits
        .as_array()
        .unwrap_or_else(|| panic!("traits are a list: {traits}"))
        .iter()
        .map(|t| {
            (
                t["trait_key"].as_str().unwrap().to_string(),
                t["trait_value"].clone(),
            )
        })
        .collect();
    traits.sort_by(|a, b| a.0.cmp(&b.0));
    traits
}

/// A client key whose environment has the feature `banner` ("plain", disabled), overridden to
/// "shiny" (enabled) for the segment of identities whose trait `plan` is "gold".
const KEY: &str = "traits-client-key";

async fn gold_segment(backend: Backend) -> Sdk {
    let server = start(backend).await;
    let project = server.project(json!({"name": "traits"})).await;
    server.environment(project, KEY).await;
    let banner = server
        .feature(project, json!({"name": "banner", "initial_value": "plain"}))
        .await;
    let gold = gold_segment_of(&server, project).await;
    server
        .put(
            &format!("/api/v1/environments/{KEY}/segment-overrides/{banner}/{gold}/"),
            json!({"priority": 1, "enabled": true, "feature_state_value": "shiny"}),
        )
        .send()
        .await
        .expect_status(204);
    server.projected().await;
    server
}

/// What `banner` is for the identity and which traits the answer lists, after `body` is posted.
async fn identify(server: &Sdk, body: Value) -> (Value, Vec<(String, Value)>) {
    let reply = server
        .post("/api/v1/identities/", body)
        .environment_key(KEY)
        .send()
        .await
        .expect_status(200);
    (banner(&reply.body), sorted_traits(&reply.body["traits"]))
}

/// The same, for `GET /api/v1/identities/?identifier=` (stored traits only).
async fn stored(server: &Sdk, identifier: &str) -> (Value, Vec<(String, Value)>) {
    let reply = server
        .get(&format!("/api/v1/identities/?identifier={identifier}"))
        .environment_key(KEY)
        .send()
        .await
        .expect_status(200);
    assert_eq!(reply.body["identifier"], identifier, "{}", reply.text);
    (banner(&reply.body), sorted_traits(&reply.body["traits"]))
}

fn banner(body: &Value) -> Value {
    let flags = api_flags(&body["flags"]);
    let (enabled, value) = flags.get("banner").cloned().unwrap();
    json!({"enabled": enabled, "value": value})
}

fn shiny() -> Value {
    json!({"enabled": true, "value": "shiny"})
}

fn plain() -> Value {
    json!({"enabled": false, "value": "plain"})
}

fn listed(traits: &[(&str, Value)]) -> Vec<(String, Value)> {
    traits
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect()
}

async fn stored_traits_decide_later_evaluations(backend: Backend) {
    let server = gold_segment(backend).await;
    let head = server.log.head().await.unwrap();

    // Nothing stored yet: the identity is in no segment.
    assert_eq!(stored(&server, "alice").await, (plain(), vec![]));

    let gold = json!({"trait_key": "plan", "trait_value": "gold"});
    assert_eq!(
        identify(&server, json!({"identifier": "alice", "traits": [gold]})).await,
        (shiny(), listed(&[("plan", json!("gold"))]))
    );
    assert_eq!(
        stored(&server, "alice").await,
        (shiny(), listed(&[("plan", json!("gold"))])),
        "a later request evaluates with the stored trait"
    );

    // Identifying again with other traits keeps the stored ones.
    assert_eq!(
        identify(
            &server,
            json!({"identifier": "alice", "traits": [{"trait_key": "age", "trait_value": 30}]})
        )
        .await,
        (
            shiny(),
            listed(&[("age", json!(30)), ("plan", json!("gold"))])
        )
    );
    // Without traits, too.
    assert_eq!(
        identify(&server, json!({"identifier": "alice"})).await,
        (
            shiny(),
            listed(&[("age", json!(30)), ("plan", json!("gold"))])
        )
    );

    // A new value replaces the stored one.
    assert_eq!(
        identify(
            &server,
            json!({"identifier": "alice", "traits": [{"trait_key": "plan", "trait_value": "free"}]})
        )
        .await,
        (
            plain(),
            listed(&[("age", json!(30)), ("plan", json!("free"))])
        )
    );
    identify(&server, json!({"identifier": "alice", "traits": [gold]})).await;

    // A null value deletes the stored trait.
    let delete = json!({"trait_key": "plan", "trait_value": null});
    assert_eq!(
        identify(&server, json!({"identifier": "alice", "traits": [delete]})).await,
        (plain(), listed(&[("age", json!(30))]))
    );
    assert_eq!(
        stored(&server, "alice").await,
        (plain(), listed(&[("age", json!(30))]))
    );

    // Traits belong to their identity.
    assert_eq!(stored(&server, "bob").await, (plain(), vec![]));

    assert_eq!(
        server.log.head().await.unwrap(),
        head,
        "identifying appends nothing to the log: traits are not events"
    );

    // A store opened anew on the database, as after a restart, knows which identities have
    // stored traits (alice alone: bob was only read) and reads theirs.
    let environment = server
        .state
        .sdk
        .by_client_key(KEY)
        .await
        .unwrap()
        .unwrap()
        .environment_id;
    let reopened = api::sdk_store::SdkStore::open(server.state.sdk_store.pool().clone())
        .await
        .unwrap();
    assert_eq!(reopened.known_identities().len(), 1);
    assert_eq!(
        Value::Object(reopened.traits(environment, "alice").await.unwrap()),
        json!({"age": 30})
    );
    assert!(
        reopened
            .traits(environment, "bob")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn transient_identities_and_traits_are_not_stored(backend: Backend) {
    let server = gold_segment(backend).await;
    let gold = json!({"trait_key": "plan", "trait_value": "gold"});

    // A transient identity: evaluated with its traits, nothing stored.
    assert_eq!(
        identify(
            &server,
            json!({"identifier": "carol", "traits": [gold], "transient": true})
        )
        .await,
        (shiny(), listed(&[("plan", json!("gold"))]))
    );
    assert_eq!(stored(&server, "carol").await, (plain(), vec![]));

    // A transient trait: used now, not stored; its siblings are stored.
    let transient_gold = json!({"trait_key": "plan", "trait_value": "gold", "transient": true});
    let age = json!({"trait_key": "age", "trait_value": 41});
    assert_eq!(
        identify(
            &server,
            json!({"identifier": "dave", "traits": [transient_gold, age]})
        )
        .await,
        (
            shiny(),
            listed(&[("age", json!(41)), ("plan", json!("gold"))])
        )
    );
    assert_eq!(
        stored(&server, "dave").await,
        (plain(), listed(&[("age", json!(41))]))
    );

    // A transient identity does not change what is stored either.
    identify(&server, json!({"identifier": "dave", "traits": [gold]})).await;
    let free = json!({"trait_key": "plan", "trait_value": "free"});
    assert_eq!(
        identify(
            &server,
            json!({"identifier": "dave", "traits": [free], "transient": true})
        )
        .await
        .0,
        plain()
    );
    assert_eq!(
        stored(&server, "dave").await,
        (
            shiny(),
            listed(&[("age", json!(41)), ("plan", json!("gold"))])
        )
    );
}

/// Once `/api/v1/flags/` shows a change, identities show it too, though the environment's
/// evaluation context was cached before it.
async fn identities_see_a_change_as_soon_as_flags_do(backend: Backend) {
    let server = gold_segment(backend).await;
    let nobody = json!({"identifier": "nobody"});
    assert_eq!(identify(&server, nobody.clone()).await.0, plain());

    let banner = flags(&server).await[0]["feature"]["id"].as_u64().unwrap();
    server
        .put(
            &format!("/api/v1/environments/{KEY}/featurestates/{banner}/"),
            json!({"enabled": true, "feature_state_value": "changed"}),
        )
        .send()
        .await
        .expect_status(200);
    let changed = json!({"enabled": true, "value": "changed"});
    let deadline = tokio::time::Instant::now() + crate::PROJECTION_DEADLINE;
    while banner_of_flags(&flags(&server).await) != changed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(identify(&server, nobody).await.0, changed);
    // The segment's override still wins for its members.
    let gold = json!({"trait_key": "plan", "trait_value": "gold"});
    assert_eq!(
        identify(&server, json!({"identifier": "g", "traits": [gold]}))
            .await
            .0,
        shiny()
    );
}

async fn flags(server: &Sdk) -> Value {
    server
        .get("/api/v1/flags/")
        .environment_key(KEY)
        .send()
        .await
        .expect_status(200)
        .body
}

fn banner_of_flags(flags: &Value) -> Value {
    let (enabled, value) = api_flags(flags).get("banner").cloned().unwrap();
    json!({"enabled": enabled, "value": value})
}

on_both_backends!(
    identities_of_every_seed_document_match_flagsmiths_engine,
    identities_see_a_change_as_soon_as_flags_do,
    identities_match_flagsmiths_engine_without_cached_contexts,
    stored_traits_decide_later_evaluations,
    transient_identities_and_traits_are_not_stored,
);
