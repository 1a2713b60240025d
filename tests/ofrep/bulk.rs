//! Every flag (`POST /ofrep/v1/evaluate/flags`): the same answers as one flag at a time, in the
//! environment's order, with an ETag that changes with the environment and with the context, and
//! a 304 for a client that already has the answer.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use crate::fixture::{CLIENT_KEY, Ofrep, eventually, shop};

async fn bulk_answers_every_flag_as_the_single_endpoint_does(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;

    let contexts = [
        json!({}),
        json!({"targetingKey": "user-1", "plan": "pro"}),
        json!({"targetingKey": "vip", "plan": "free", "age": 30, "beta": true}),
    ];
    for context in contexts {
        let bulk = ofrep
            .flags()
            .key(CLIENT_KEY)
            .context(context.clone())
            .send()
            .await
            .expect_status(200);
        assert_eq!(bulk.header("content-type"), Some("application/json"));
        assert_eq!(bulk.keys(), shop.names(), "every flag, in order");
        for key in shop.names() {
            let single = ofrep
                .flag(key)
                .key(CLIENT_KEY)
                .context(context.clone())
                .send()
                .await
                .expect_status(200);
            assert_eq!(*bulk.flag(key), single.body, "{key} for {context}");
        }
    }
}

async fn the_etag_follows_the_environment_and_the_context(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let shop = shop(&server, &ofrep).await;
    let context = json!({"targetingKey": "user-1", "plan": "pro", "age": 30});
    let bulk = || ofrep.flags().key(CLIENT_KEY).context(context.clone());

    let first = bulk().send().await.expect_status(200);
    let etag = first.etag();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "a quoted entity tag: {etag}"
    );

    // Unchanged: 304, no body, the same ETag; whichever key names the environment, and
    // whichever order the context's attributes come in.
    let same_context_reordered = json!({"age": 30, "plan": "pro", "targetingKey": "user-1"});
    let unchanged = [
        bulk().if_none_match(&etag),
        bulk().if_none_match(&format!("W/{etag}")),
        bulk().if_none_match(&format!("\"other\", {etag}")),
        ofrep
            .flags()
            .bearer(&shop.server_key)
            .context(same_context_reordered)
            .if_none_match(&etag),
    ];
    for request in unchanged {
        let answer = request.send().await.expect_status(304);
        assert_eq!(answer.text, "");
        assert_eq!(answer.etag(), etag);
    }
    let again = bulk().send().await.expect_status(200);
    assert_eq!(again.etag(), etag, "the same request, the same ETag");
    assert_eq!(again.body, first.body);

    // Another context: another ETag, and the old one does not match it.
    for other in [
        json!({"targetingKey": "user-2", "plan": "pro", "age": 30}),
        json!({"targetingKey": "user-1", "plan": "free", "age": 30}),
        json!({"targetingKey": "user-1", "plan": "pro"}),
        json!({}),
    ] {
        let answer = ofrep
            .flags()
            .key(CLIENT_KEY)
            .context(other.clone())
            .if_none_match(&etag)
            .send()
            .await
            .expect_status(200);
        assert_ne!(answer.etag(), etag, "{other}");
    }

    // A change of the environment: a new ETag, and the old one no longer matches.
    server
        .put(
            &format!(
                "{}/featurestates/{}/",
                shop.env_path(),
                shop.feature("max_items")
            ),
            json!({"enabled": true, "feature_state_value": 50}),
        )
        .send()
        .await
        .expect_status(200);
    let changed = eventually("max_items becomes 50", || bulk().if_none_match(&etag))
        .until(|answer| answer.status == 200 && answer.flag("max_items")["value"] == 50)
        .await;
    let new_etag = changed.etag();
    assert_ne!(new_etag, etag);
    bulk()
        .if_none_match(&new_etag)
        .send()
        .await
        .expect_status(304);
}

async fn a_project_hiding_disabled_flags_hides_them_here_too(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let project = server
        .project(json!({"name": "Discreet", "hide_disabled_flags": true}))
        .await;
    server.environment(project, "discreet-client").await;
    server
        .feature(project, json!({"name": "hidden", "default_enabled": false}))
        .await;
    server
        .feature(project, json!({"name": "shown", "default_enabled": true}))
        .await;

    // `shown` came last: once it is served, `hidden` exists too.
    let bulk = eventually("both features are served", || {
        ofrep.flags().key("discreet-client")
    })
    .until(|answer| answer.status == 200 && answer.keys() == ["shown"])
    .await;
    assert_eq!(bulk.flag("shown")["value"], true);
    ofrep
        .flag("hidden")
        .key("discreet-client")
        .send()
        .await
        .expect_error(404, "FLAG_NOT_FOUND");
}

on_both_backends!(
    bulk_answers_every_flag_as_the_single_endpoint_does,
    the_etag_follows_the_environment_and_the_context,
    a_project_hiding_disabled_flags_hides_them_here_too,
);
