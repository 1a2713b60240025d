//! Time travel (`as_of` / `as_of_position`): what the server answers about the past is what it
//! served then, byte for byte. Each test records what SDKs were actually served after each of
//! a sequence of changes, with the instant and the log position, and then asks about each.

use flaglog_tests::{Backend, Reply, on_both_backends};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Sdk, SdkCall, environment_with_server_key, gold_segment_of, start};

const KEY: &str = "time-travel-key";

/// What was served once: the body's exact text, when (after it arrived), the log's head then
/// and the position the document reflects (from its ETag, `"<environment>-<position>"`).
#[derive(Debug)]
struct Served {
    what: String,
    text: String,
    instant: String,
    head: u64,
    position: u64,
}

/// Now, as RFC 3339 with microseconds (the log's resolution).
fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}

fn position_of(reply: &Reply) -> u64 {
    let etag = reply.header("etag").unwrap().trim_matches('"').to_string();
    etag.rsplit('-').next().unwrap().parse().unwrap()
}

/// Waits for the projection, then records the document an SDK with `server_key` is served. If
/// the change made a new document (`after` is the position of the one before), it waits until
/// the SDK cache has dropped the old one too, as an SDK polling for it would.
async fn serve_document(sdk: &Sdk, server_key: &str, what: &str, after: Option<u64>) -> Served {
    sdk.projected().await;
    let head = sdk.log.head().await.unwrap();
    let deadline = std::time::Instant::now() + crate::PROJECTION_DEADLINE;
    loop {
        let reply = sdk
            .get("/api/v1/environment-document/")
            .environment_key(server_key)
            .send()
            .await
            .expect_status(200);
        let position = position_of(&reply);
        if after.is_none_or(|after| position > after) {
            return Served {
                what: what.to_string(),
                position,
                instant: now(),
                head,
                text: reply.text,
            };
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still served the document of position {position}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// [`serve_document`] after a change of the environment's document.
async fn serve_changed(sdk: &Sdk, server_key: &str, what: &str, served: &mut Vec<Served>) {
    let after = served.last().map(|s| s.position);
    served.push(serve_document(sdk, server_key, what, after).await);
}

/// `path` asked about the past with the admin token (`query` adds `as_of…=`).
async fn past(sdk: &Sdk, path: &str, query: &str) -> Reply {
    let separator = if path.contains('?') { '&' } else { '?' };
    sdk.get(&format!("{path}{separator}{query}")).send().await
}

async fn feature_state(sdk: &Sdk, feature: u64, enabled: bool, value: &str) {
    sdk.put(
        &format!("/api/v1/environments/{KEY}/featurestates/{feature}/"),
        json!({"enabled": enabled, "feature_state_value": value}),
    )
    .send()
    .await
    .expect_status(200);
}

async fn segment_override(sdk: &Sdk, feature: u64, segment: u64, value: &str) {
    sdk.put(
        &format!("/api/v1/environments/{KEY}/segment-overrides/{feature}/{segment}/"),
        json!({"priority": 1, "enabled": true, "feature_state_value": value}),
    )
    .send()
    .await
    .expect_status(204);
}

async fn identity_override(sdk: &Sdk, identifier: &str, feature: u64, enabled: bool, value: &str) {
    sdk.post(
        &format!("/api/v1/environments/{KEY}/identity-overrides/"),
        json!({"identifier": identifier, "feature": feature, "enabled": enabled,
               "feature_state_value": value}),
    )
    .send()
    .await
    .expect_status(204);
}

async fn past_documents_are_the_documents_served_then(backend: Backend) {
    let sdk = start(backend).await;
    let (project, _, server_key) = environment_with_server_key(&sdk, KEY).await;
    let mut served = vec![serve_document(&sdk, &server_key, "no features", None).await];

    let banner = sdk
        .feature(project, json!({"name": "banner", "initial_value": "plain"}))
        .await;
    serve_changed(&sdk, &server_key, "banner created", &mut served).await;
    feature_state(&sdk, banner, true, "plain").await;
    serve_changed(&sdk, &server_key, "banner enabled", &mut served).await;
    feature_state(&sdk, banner, true, "shiny").await;
    serve_changed(&sdk, &server_key, "banner's value changed", &mut served).await;

    let gold = gold_segment_of(&sdk, project).await;
    segment_override(&sdk, banner, gold, "golden").await;
    serve_changed(&sdk, &server_key, "segment override", &mut served).await;

    identity_override(&sdk, "alice", banner, false, "alice's").await;
    serve_changed(&sdk, &server_key, "identity override", &mut served).await;

    let footer = sdk
        .feature(project, json!({"name": "footer", "initial_value": 3}))
        .await;
    serve_changed(&sdk, &server_key, "footer created", &mut served).await;
    sdk.delete(&format!("/api/v1/projects/{project}/features/{footer}/"))
        .send()
        .await
        .expect_status(204);
    serve_changed(&sdk, &server_key, "footer deleted", &mut served).await;

    // Changes elsewhere move the log's head, not this environment's document.
    let elsewhere = sdk.project(json!({"name": "elsewhere"})).await;
    sdk.feature(elsewhere, json!({"name": "unrelated"})).await;
    served.push(serve_document(&sdk, &server_key, "another project changed", None).await);

    let distinct: std::collections::BTreeSet<&str> =
        served.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        distinct.len(),
        served.len() - 1,
        "every change but the last changed the document"
    );

    let document = "/api/v1/environment-document/";
    for then in &served {
        let what = &then.what;
        for query in [
            format!("as_of_position={}", then.position),
            format!("as_of_position={}", then.head),
            format!("as_of={}", then.instant),
        ] {
            // Named by client key in the query, and by server-side key as an SDK names it.
            let by_client_key = past(&sdk, &format!("{document}?environment={KEY}"), &query)
                .await
                .expect_status(200);
            assert_eq!(by_client_key.text, then.text, "{what}, {query}");
            let by_server_key = sdk
                .get(&format!("{document}?{query}"))
                .header("x-environment-key", &server_key)
                .send()
                .await
                .expect_status(200);
            assert_eq!(by_server_key.text, then.text, "{what}, {query}");
        }
        let reply = past(
            &sdk,
            document,
            &format!("environment={KEY}&as_of={}", then.instant),
        )
        .await
        .expect_status(200);
        assert_eq!(
            reply.header("x-flaglog-as-of-position"),
            Some(then.head.to_string().as_str()),
            "{what}: an instant stands for the last event recorded at or before it"
        );
    }

    // Before the environment existed there was no document.
    past(
        &sdk,
        &format!("{document}?environment={KEY}"),
        "as_of_position=1",
    )
    .await
    .expect_error(404, "not_found", None);
    past(
        &sdk,
        &format!("{document}?environment={KEY}"),
        "as_of=2000-01-01T00:00:00Z",
    )
    .await
    .expect_error(404, "not_found", None);
    // Without as_of the route is the SDK endpoint, as it always was.
    let now = sdk
        .get(document)
        .environment_key(&server_key)
        .send()
        .await
        .expect_status(200);
    assert_eq!(now.text, served.last().unwrap().text);
}

/// The feature states then: the admin API's list, filtered to one feature.
async fn past_feature_states_are_the_states_then(backend: Backend) {
    let sdk = start(backend).await;
    let (project, _, _) = environment_with_server_key(&sdk, KEY).await;
    let banner = sdk
        .feature(project, json!({"name": "banner", "initial_value": "plain"}))
        .await;
    let created = sdk.log.head().await.unwrap();
    feature_state(&sdk, banner, true, "shiny").await;
    let changed = sdk.log.head().await.unwrap();
    feature_state(&sdk, banner, false, "dull").await;

    let states = format!("/api/v1/environments/{KEY}/featurestates/?feature={banner}");
    let state_at = |position: u64| {
        let sdk = &sdk;
        let states = &states;
        async move {
            let reply = past(sdk, states, &format!("as_of_position={position}"))
                .await
                .expect_status(200);
            assert_eq!(
                reply.header("x-flaglog-as-of-position"),
                Some(position.to_string().as_str())
            );
            let list = reply.body.as_array().unwrap().clone();
            assert_eq!(list.len(), 1, "{}", reply.text);
            (
                list[0]["enabled"].clone(),
                list[0]["feature_state_value"].clone(),
            )
        }
    };
    assert_eq!(state_at(created).await, (json!(false), json!("plain")));
    assert_eq!(state_at(changed).await, (json!(true), json!("shiny")));
    let head = sdk.log.head().await.unwrap();
    assert_eq!(state_at(head).await, (json!(false), json!("dull")));
    // As of the head is what the list says now.
    let now = sdk.get(&states).send().await.expect_status(200);
    let then = past(&sdk, &states, &format!("as_of_position={head}")).await;
    assert_eq!(then.text, now.text);
}

/// What `GET /api/v1/identities/?identifier=` answers an SDK now, and the log's head then. If
/// the change changed the answer (`previous` was the one before), it waits until the SDK cache
/// has dropped the old environment too.
async fn identity_now(sdk: &Sdk, identifier: &str, previous: Option<&str>) -> (String, u64) {
    sdk.projected().await;
    let head = sdk.log.head().await.unwrap();
    let deadline = std::time::Instant::now() + crate::PROJECTION_DEADLINE;
    loop {
        let reply = sdk
            .get(&format!("/api/v1/identities/?identifier={identifier}"))
            .environment_key(KEY)
            .send()
            .await
            .expect_status(200);
        if previous != Some(reply.text.as_str()) {
            return (reply.text, head);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served {}",
            reply.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn an_identitys_past_flags_are_the_flags_it_got_then(backend: Backend) {
    let sdk = start(backend).await;
    let (project, _, _) = environment_with_server_key(&sdk, KEY).await;
    let banner = sdk
        .feature(project, json!({"name": "banner", "initial_value": "plain"}))
        .await;
    let gold = gold_segment_of(&sdk, project).await;
    // Alice's stored trait puts her in the segment (traits are not versioned: they stay put).
    sdk.projected().await;
    sdk.post(
        "/api/v1/identities/",
        json!({"identifier": "alice", "traits": [{"trait_key": "plan", "trait_value": "gold"}]}),
    )
    .environment_key(KEY)
    .send()
    .await
    .expect_status(200);

    let mut served = vec![identity_now(&sdk, "alice", None).await];
    segment_override(&sdk, banner, gold, "golden").await;
    let previous = served.last().map(|(text, _)| text.clone());
    served.push(identity_now(&sdk, "alice", previous.as_deref()).await);
    for value in ["alice's", "alice's again"] {
        identity_override(&sdk, "alice", banner, true, value).await;
        let previous = served.last().map(|(text, _)| text.clone());
        served.push(identity_now(&sdk, "alice", previous.as_deref()).await);
    }
    // Someone else's override changes nothing for alice.
    identity_override(&sdk, "bob", banner, false, "bob's").await;
    served.push(identity_now(&sdk, "alice", None).await);

    let distinct: std::collections::BTreeSet<&str> =
        served.iter().map(|(text, _)| text.as_str()).collect();
    assert_eq!(distinct.len(), 4, "{served:#?}");
    for (text, head) in &served {
        let reply = sdk
            .get(&format!(
                "/api/v1/identities/?identifier=alice&as_of_position={head}"
            ))
            .header("x-environment-key", KEY)
            .send()
            .await
            .expect_status(200);
        assert_eq!(&reply.text, text, "as of position {head}");
        assert_eq!(reply.header("x-flaglog-traits-as-of"), Some("now"));
    }
}

async fn asking_about_the_past_needs_a_readers_token_and_a_sane_moment(backend: Backend) {
    let sdk = start(backend).await;
    let (project, _, server_key) = environment_with_server_key(&sdk, KEY).await;
    sdk.feature(project, json!({"name": "banner"})).await;
    let head = sdk.log.head().await.unwrap();
    let document = format!("/api/v1/environment-document/?environment={KEY}");
    let identity = format!("/api/v1/identities/?identifier=alice&environment={KEY}");
    let states = format!("/api/v1/environments/{KEY}/featurestates/");

    for path in [&document, &identity] {
        // No token: an SDK's key does not open the past.
        let call = sdk
            .get(&format!("{path}&as_of_position={head}"))
            .environment_key(&server_key);
        call.send().await.expect_error(401, "unauthorized", None);
    }
    // Someone without a role on the project may not read it; a viewer may.
    let outsider = sdk.user("outsider@example.com").await;
    let viewer = sdk.user("viewer@example.com").await;
    sdk.grant(project, &viewer, "viewer").await;
    for path in [&document, &identity, &states] {
        let path = format!(
            "{path}{}as_of_position={head}",
            if path.contains('?') { '&' } else { '?' }
        );
        sdk.get(&path)
            .token(&outsider.token)
            .send()
            .await
            .expect_error(403, "forbidden", None);
        sdk.get(&path)
            .token(&viewer.token)
            .send()
            .await
            .expect_status(200);
    }

    let past_head = head + 1_000;
    for path in [&document, &identity, &states] {
        let bad = |query: String| {
            let separator = if path.contains('?') { '&' } else { '?' };
            sdk.get(&format!("{path}{separator}{query}")).send()
        };
        bad("as_of=yesterday".into())
            .await
            .expect_error(400, "bad_request", Some("as_of"));
        bad("as_of=2999-01-01T00:00:00Z".into()).await.expect_error(
            400,
            "bad_request",
            Some("as_of"),
        );
        bad(format!("as_of_position={past_head}"))
            .await
            .expect_error(400, "bad_request", Some("as_of_position"));
        for position in ["0", "-1", "x"] {
            bad(format!("as_of_position={position}"))
                .await
                .expect_error(400, "bad_request", Some("as_of_position"));
        }
        bad(format!("as_of_position={head}&as_of=2026-01-01T00:00:00Z"))
            .await
            .expect_error(400, "bad_request", Some("as_of_position"));
    }
    // The environment is named once, and exists.
    let bare = format!("/api/v1/environment-document/?as_of_position={head}");
    sdk.get(&bare)
        .send()
        .await
        .expect_error(400, "bad_request", Some("environment"));
    sdk.get(&format!("{bare}&environment={KEY}"))
        .header("x-environment-key", KEY)
        .send()
        .await
        .expect_error(400, "bad_request", Some("environment"));
    sdk.get(&format!("{bare}&environment=nobody"))
        .send()
        .await
        .expect_error(404, "not_found", None);
    sdk.get(&format!(
        "/api/v1/identities/?as_of_position={head}&environment={KEY}"
    ))
    .send()
    .await
    .expect_error(400, "bad_request", Some("identifier"));

    // POST stores traits: it is not a way to ask about the past.
    sdk.post(
        &format!("/api/v1/identities/?as_of_position={head}"),
        json!({"identifier": "alice"}),
    )
    .environment_key(KEY)
    .send()
    .await
    .expect_error(400, "bad_request", Some("as_of"));

    // A query string that does not ask about the past leaves the SDK endpoint as it is.
    let sdk_reply = sdk
        .get("/api/v1/environment-document/?unrelated=1")
        .environment_key(&server_key)
        .send()
        .await
        .expect_status(200);
    assert!(
        sdk_reply.body["feature_states"].is_array(),
        "{}",
        sdk_reply.text
    );
}

on_both_backends!(
    past_documents_are_the_documents_served_then,
    past_feature_states_are_the_states_then,
    an_identitys_past_flags_are_the_flags_it_got_then,
    asking_about_the_past_needs_a_readers_token_and_a_sane_moment,
);
