//! One flag (`POST /ofrep/v1/evaluate/flags/{key}`): each kind of Flagsmith flag answers a value
//! an OpenFeature client of the matching type can use, with OpenFeature's reason and a variant;
//! the context's targeting key and attributes are the identity and its traits.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::{Value, json};

use crate::fixture::{CLIENT_KEY, LAYOUT, Ofrep, Shop, shop};

async fn evaluate(ofrep: &Ofrep, key: &str, context: Value) -> Value {
    ofrep
        .flag(key)
        .key(CLIENT_KEY)
        .context(context)
        .send()
        .await
        .expect_status(200)
        .body
}

fn answer(shop: &Shop, key: &str, value: Option<Value>, reason: &str, variant: &str) -> Value {
    let mut answer = json!({"key": key, "reason": reason, "variant": variant,
        "metadata": {"enabled": reason != "DISABLED", "featureId": shop.feature(key)}});
    if let Some(value) = value {
        answer["value"] = value;
    }
    answer
}

async fn each_kind_of_flag_answers_a_value_of_its_type(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;
    let layout: Value = serde_json::from_str(LAYOUT).unwrap();
    let expected = [
        // A toggle's value is its state.
        answer(&shop, "dark_mode", Some(json!(true)), "STATIC", "enabled"),
        answer(
            &shop,
            "maintenance",
            Some(json!(false)),
            "DISABLED",
            "disabled",
        ),
        // Without a targeting key the caller is anonymous: the environment's flag, STATIC,
        // though `vip`'s identity override (a segment) and the `pro users` segment override
        // these two (an identity that matches neither gets DEFAULT: see below).
        answer(&shop, "banner", Some(json!("hello")), "STATIC", "enabled"),
        answer(&shop, "max_items", Some(json!(42)), "STATIC", "enabled"),
        answer(&shop, "ratio", Some(json!(0.25)), "STATIC", "enabled"),
        // JSON text answers as the object it holds.
        answer(&shop, "layout", Some(layout), "STATIC", "enabled"),
        // A disabled value is withheld: the client's code default applies.
        answer(&shop, "legacy_text", None, "DISABLED", "disabled"),
        answer(
            &shop,
            "welcome",
            Some(json!("generic")),
            "STATIC",
            "enabled",
        ),
        // Without an identity there is no split: the control value.
        answer(&shop, "colour", Some(json!("grey")), "STATIC", "enabled"),
    ];
    for expected in expected {
        let key = expected["key"].as_str().unwrap();
        assert_eq!(evaluate(&ofrep, key, json!({})).await, expected, "{key}");
    }
    // The same without any context at all (what the Python provider sends without one).
    let without_context = ofrep
        .flag("max_items")
        .key(CLIENT_KEY)
        .body(json!({}))
        .send()
        .await
        .expect_status(200);
    assert_eq!(without_context.body["value"], 42);
    assert_eq!(
        without_context.header("content-type"),
        Some("application/json")
    );
}

async fn an_attribute_matching_a_segment_gets_its_override(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;

    let pro = evaluate(
        &ofrep,
        "welcome",
        json!({"targetingKey": "user-1", "plan": "pro"}),
    )
    .await;
    assert_eq!(
        pro,
        answer(
            &shop,
            "welcome",
            Some(json!("welcome, pro")),
            "TARGETING_MATCH",
            "enabled"
        )
    );
    let free = evaluate(
        &ofrep,
        "welcome",
        json!({"targetingKey": "user-1", "plan": "free"}),
    )
    .await;
    assert_eq!(free["value"], "generic");
    assert_eq!(free["reason"], "DEFAULT");
    // Traits belong to an identity: without a targeting key the caller is anonymous and gets
    // the environment's flag, segments not evaluated, as `GET /api/v1/flags/` serves it.
    let anonymous = evaluate(&ofrep, "welcome", json!({"plan": "pro"})).await;
    assert_eq!(anonymous["value"], "generic");
    assert_eq!(anonymous["reason"], "STATIC");
    // The context is the whole truth: nothing of the previous request's traits was kept.
    let later = evaluate(&ofrep, "welcome", json!({"targetingKey": "user-1"})).await;
    assert_eq!(later["value"], "generic");
}

async fn an_identity_override_targets_its_identifier(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;

    let vip = evaluate(&ofrep, "banner", json!({"targetingKey": "vip"})).await;
    assert_eq!(
        vip,
        answer(
            &shop,
            "banner",
            Some(json!("hello, vip")),
            "TARGETING_MATCH",
            "enabled"
        )
    );
    let other = evaluate(&ofrep, "banner", json!({"targetingKey": "not-vip"})).await;
    assert_eq!(other["value"], "hello");
}

async fn a_multivariate_flag_splits_identities_into_variants(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;

    // `red` takes 100%: every identity falls in its bucket. Options made through the admin API
    // have no key, so the variant is the value.
    for identifier in ["user-1", "user-2", "someone else"] {
        let split = evaluate(&ofrep, "colour", json!({"targetingKey": identifier})).await;
        assert_eq!(
            split,
            answer(&shop, "colour", Some(json!("red")), "SPLIT", "red"),
            "{identifier}"
        );
    }
}

async fn a_disabled_flag_answers_disabled_whatever_the_targeting(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;

    // Switch `colour` off: even an identity in the split is answered DISABLED, without value.
    server
        .put(
            &format!(
                "{}/featurestates/{}/",
                shop.env_path(),
                shop.feature("colour")
            ),
            json!({"enabled": false, "feature_state_value": "grey"}),
        )
        .send()
        .await
        .expect_status(200);
    let context = json!({"targetingKey": "user-1"});
    let answer = crate::fixture::eventually("colour is switched off", || {
        ofrep
            .flag("colour")
            .key(CLIENT_KEY)
            .context(context.clone())
    })
    .until(|answer| answer.body["reason"] == "DISABLED")
    .await;
    assert_eq!(
        answer.body,
        json!({"key": "colour", "reason": "DISABLED", "variant": "disabled",
               "metadata": {"enabled": false, "featureId": shop.feature("colour")}})
    );
}

async fn nested_and_null_attributes_are_ignored(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;

    // Only scalars can be traits; the rest of a context does not change the answer.
    let plain = json!({"targetingKey": "user-1", "plan": "pro"});
    let decorated = json!({"targetingKey": "user-1", "plan": "pro",
        "address": {"country": "FR"}, "roles": ["admin"], "nickname": null});
    for key in shop.names() {
        assert_eq!(
            evaluate(&ofrep, key, decorated.clone()).await,
            evaluate(&ofrep, key, plain.clone()).await,
            "{key}"
        );
    }
}

async fn every_kind_of_key_in_every_header_names_the_environment(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;

    let requests = [
        ofrep.flag("max_items").key(CLIENT_KEY),
        ofrep.flag("max_items").key(&shop.server_key),
        ofrep.flag("max_items").bearer(CLIENT_KEY),
        ofrep.flag("max_items").bearer(&shop.server_key),
        ofrep
            .flag("max_items")
            .header("authorization", &format!("bearer {CLIENT_KEY}")),
        ofrep.flag("max_items").header("x-api-key", CLIENT_KEY),
        ofrep
            .flag("max_items")
            .header("x-api-key", &shop.server_key),
    ];
    for request in requests {
        let answer = request.send().await.expect_status(200);
        assert_eq!(answer.body["value"], 42);
    }
}

on_both_backends!(
    each_kind_of_flag_answers_a_value_of_its_type,
    an_attribute_matching_a_segment_gets_its_override,
    an_identity_override_targets_its_identifier,
    a_multivariate_flag_splits_identities_into_variants,
    a_disabled_flag_answers_disabled_whatever_the_targeting,
    nested_and_null_attributes_are_ignored,
    every_kind_of_key_in_every_header_names_the_environment,
);
