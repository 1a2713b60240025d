//! The admin flow end to end: organisation → project → environment → server-side key → features
//! → feature states → segment → segment override → identity override. Every mutation is one
//! request whose events carry the caller, the request id and the reason, and every read reflects
//! the writes before it. Secrets (API tokens, server-side keys) never reach the log.

use domain::log::RecordedEvent;
use flaglog_tests::{Backend, Call, Reply, Server, on_both_backends};
use serde_json::{Value, json};

/// The correlation id every step of a flow sends.
const CORRELATION: &str = "flow-correlation-1";

/// Sends `call` as the flow step `request_id` (with a reason and a correlation id) and checks
/// the answer echoes the request id.
async fn step(call: Call, request_id: &str) -> Reply {
    let reply = call
        .header("x-request-id", request_id)
        .header("x-change-reason", &reason(request_id))
        .header("x-correlation-id", CORRELATION)
        .send()
        .await;
    assert_eq!(
        reply.header("x-request-id"),
        Some(request_id),
        "{}: the answer carries the request id",
        reply.description
    );
    reply
}

fn reason(request_id: &str) -> String {
    format!("ticket FL-1: {request_id}")
}

fn condition(operator: &str, property: Option<&str>, value: Option<&str>) -> Value {
    json!({"operator": operator, "property_": property, "value": value})
}

/// Rules nesting ALL, ANY and NONE three levels deep, using every operator (the four ordering
/// comparisons, and EQUAL, also with `:semver` values).
fn rules_with_every_operator() -> Value {
    json!([{"type": "ALL", "conditions": [], "rules": [
        {"type": "ANY", "conditions": [
            condition("EQUAL", Some("plan"), Some("gold")),
            condition("NOT_EQUAL", Some("plan"), Some("free")),
            condition("GREATER_THAN", Some("age"), Some("18")),
            condition("GREATER_THAN_INCLUSIVE", Some("age"), Some("21")),
            condition("LESS_THAN", Some("age"), Some("65")),
            condition("LESS_THAN_INCLUSIVE", Some("age"), Some("64.5")),
        ], "rules": []},
        {"type": "ALL", "conditions": [
            condition("EQUAL", Some("app_version"), Some("1.2.3:semver")),
            condition("GREATER_THAN", Some("app_version"), Some("1.2.3:semver")),
            condition("GREATER_THAN_INCLUSIVE", Some("app_version"), Some("1.2.3:semver")),
            condition("LESS_THAN", Some("app_version"), Some("1.2.3:semver")),
            condition("LESS_THAN_INCLUSIVE", Some("app_version"), Some("1.2.3:semver")),
        ], "rules": []},
        {"type": "NONE", "conditions": [
            condition("CONTAINS", Some("email"), Some("@example.com")),
            condition("NOT_CONTAINS", Some("email"), Some("spam")),
            condition("IN", Some("country"), Some("GB,FR,DE")),
            condition("REGEX", Some("email"), Some("^[a-z.]+@[a-z]+\\.com$")),
        ], "rules": [
            {"type": "ANY", "conditions": [
                condition("PERCENTAGE_SPLIT", None, Some("25.5")),
                condition("IS_SET", Some("beta_opt_in"), None),
                condition("IS_NOT_SET", Some("banned"), None),
                condition("MODULO", Some("user_number"), Some("3|1")),
                condition("EQUAL", Some("$.identity.identifier"), Some("vip")),
            ], "rules": []},
        ]},
    ]}])
}

/// One request's expected events: (stream, event type).
struct Expected {
    request_id: String,
    events: Vec<(String, &'static str)>,
}

fn expect(request_id: &str, events: &[(&str, &'static str)]) -> Expected {
    Expected {
        request_id: request_id.to_string(),
        events: events.iter().map(|(s, t)| (s.to_string(), *t)).collect(),
    }
}

/// Checks the log after the bootstrap holds exactly `expected`, in order, each event with the
/// admin as actor and its request's id, reason and correlation id.
fn check_log(server: &Server, events: &[RecordedEvent], expected: &[Expected]) {
    let bootstrap: Vec<&str> = events[..3].iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        bootstrap,
        ["UserCreated", "ApiTokenIssued", "OrganisationCreated"]
    );
    let actual: Vec<(String, String, Option<String>)> = events[3..]
        .iter()
        .map(|e| {
            (
                e.stream_id.clone(),
                e.event_type.clone(),
                e.metadata.request_id.clone(),
            )
        })
        .collect();
    let wanted: Vec<(String, String, Option<String>)> = expected
        .iter()
        .flat_map(|step| {
            step.events.iter().map(|(stream, event_type)| {
                (
                    stream.clone(),
                    event_type.to_string(),
                    Some(step.request_id.clone()),
                )
            })
        })
        .collect();
    assert_eq!(
        actual, wanted,
        "the log holds each request's events, in order"
    );
    let actor = format!("user:{}", server.admin_id);
    for event in &events[3..] {
        let request_id = event.metadata.request_id.as_deref().unwrap();
        assert_eq!(event.metadata.actor, actor, "{}", event.event_type);
        assert_eq!(
            event.metadata.reason.as_deref(),
            Some(reason(request_id).as_str()),
            "{}",
            event.event_type
        );
        assert_eq!(
            event.metadata.correlation_id.as_deref(),
            Some(CORRELATION),
            "{}",
            event.event_type
        );
    }
}

fn payload_of<'a>(events: &'a [RecordedEvent], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.event_type == event_type)
        .map(|e| &e.payload)
        .collect()
}

async fn the_whole_admin_flow_works_and_each_mutation_is_an_event(backend: Backend) {
    let server = Server::start(backend).await;
    let mut expected = Vec::new();

    // Organisation.
    let organisation = step(
        server.post("/api/v1/organisations/", json!({"name": "  Acme  "})),
        "req-organisation",
    )
    .await
    .expect_status(201);
    assert_eq!(organisation.body["name"], "Acme");
    let organisation = organisation.u64("id");
    expected.push(expect(
        "req-organisation",
        &[("directory", "OrganisationCreated")],
    ));

    // Project.
    let project = step(
        server.post(
            "/api/v1/projects/",
            json!({"organisation": organisation, "name": "Shop", "hide_disabled_flags": true}),
        ),
        "req-project",
    )
    .await
    .expect_status(201);
    let project_view = project.body.clone();
    let project = project.u64("id");
    assert_eq!(
        project_view,
        json!({"id": project, "organisation": organisation, "name": "Shop",
               "feature_name_regex": null, "case_sensitive_feature_names": false,
               "hide_disabled_flags": true, "minimum_change_request_approvals": 0,
               "approvals_from_assigned_reviewers_only": false})
    );
    let project_stream = format!("project-{project}");
    expected.push(expect(
        "req-project",
        &[
            ("directory", "ProjectRegistered"),
            (&project_stream, "ProjectCreated"),
        ],
    ));

    // Environment with a chosen client key.
    let api_key = "prod_client-key.42";
    let environment = step(
        server.post(
            "/api/v1/environments/",
            json!({"project": project, "name": "Production", "api_key": api_key}),
        ),
        "req-environment",
    )
    .await
    .expect_status(201);
    assert_eq!(environment.body["api_key"], api_key);
    assert_eq!(environment.body["project"], project);
    assert_eq!(environment.body["name"], "Production");
    assert_eq!(environment.body["server_side_keys"], json!([]));
    let environment_id = environment.u64("id");
    let environment_stream = format!("environment-{environment_id}");
    expected.push(expect(
        "req-environment",
        &[
            ("directory", "EnvironmentRegistered"),
            (&environment_stream, "EnvironmentCreated"),
        ],
    ));
    let env_path = format!("/api/v1/environments/{api_key}");

    // Server-side key, shown once.
    let issued = step(
        server.post(&format!("{env_path}/api-keys/"), json!({"name": "backend"})),
        "req-server-key",
    )
    .await
    .expect_status(201);
    let server_key = issued.str("key").to_string();
    assert!(server_key.starts_with("ser."), "{server_key}");
    assert!(server_key.len() > 20, "{server_key}");
    assert_eq!(issued.body["name"], "backend");
    expected.push(expect(
        "req-server-key",
        &[(&environment_stream, "ServerSideKeyIssued")],
    ));

    // Standard features with each kind of initial value.
    let standard = [
        ("banner_text", json!("hello")),
        ("max_items", json!(42)),
        ("ratio", json!(0.25)),
        ("dark_mode", json!(true)),
    ];
    let mut feature_ids = Vec::new();
    for (i, (name, value)) in standard.iter().enumerate() {
        let request_id = format!("req-feature-{name}");
        let created = step(
            server.post(
                &format!("/api/v1/projects/{project}/features/"),
                json!({"name": name, "type": "STANDARD", "default_enabled": i % 2 == 0,
                       "initial_value": value, "description": format!("the {name}"),
                       "tags": ["web"]}),
            ),
            &request_id,
        )
        .await
        .expect_status(201);
        assert_eq!(created.body["name"], *name);
        assert_eq!(created.body["type"], "STANDARD");
        assert_eq!(created.body["initial_value"], *value);
        assert_eq!(created.body["default_enabled"], i % 2 == 0);
        assert_eq!(created.body["project"], project);
        feature_ids.push(created.u64("id"));
        expected.push(expect(&request_id, &[(&project_stream, "FeatureCreated")]));
    }
    let [banner, max_items, ratio, dark_mode] = feature_ids[..] else {
        unreachable!()
    };

    // A multivariate feature with options.
    let colour = step(
        server.post(
            &format!("/api/v1/projects/{project}/features/"),
            json!({"name": "colour", "type": "MULTIVARIATE", "default_enabled": true,
                   "initial_value": "grey",
                   "multivariate_options": [
                       {"value": "red", "default_percentage_allocation": 30},
                       {"value": "blue", "default_percentage_allocation": 20.5},
                       {"value": 7, "default_percentage_allocation": 0}]}),
        ),
        "req-feature-colour",
    )
    .await
    .expect_status(201);
    assert_eq!(colour.body["type"], "MULTIVARIATE");
    let colour_view = colour.body.clone();
    let options = colour.body["multivariate_options"].as_array().unwrap();
    let values: Vec<&Value> = options.iter().map(|o| &o["value"]).collect();
    assert_eq!(values, [&json!("red"), &json!("blue"), &json!(7)]);
    let option_ids: Vec<u64> = options.iter().map(|o| o["id"].as_u64().unwrap()).collect();
    let colour = colour.u64("id");
    let mut all_ids = feature_ids.clone();
    all_ids.push(colour);
    all_ids.extend(&option_ids);
    let distinct: std::collections::BTreeSet<_> = all_ids.iter().collect();
    assert_eq!(distinct.len(), all_ids.len(), "ids are unique: {all_ids:?}");
    expected.push(expect(
        "req-feature-colour",
        &[(&project_stream, "FeatureCreated")],
    ));

    // Feature states.
    let state = step(
        server.put(
            &format!("{env_path}/featurestates/{max_items}/"),
            json!({"enabled": true, "feature_state_value": 100}),
        ),
        "req-state-max-items",
    )
    .await
    .expect_status(200);
    assert_eq!(
        state.body["feature"],
        json!({"id": max_items, "name": "max_items", "type": "STANDARD"})
    );
    assert_eq!(state.body["enabled"], true);
    assert_eq!(state.body["feature_state_value"], 100);
    expected.push(expect(
        "req-state-max-items",
        &[(&environment_stream, "FeatureStateSet")],
    ));

    let state = step(
        server.put(
            &format!("{env_path}/featurestates/{colour}/"),
            json!({"enabled": true, "feature_state_value": "green",
                   "multivariate_feature_state_values": [
                       {"multivariate_feature_option": option_ids[0], "percentage_allocation": 50},
                       {"multivariate_feature_option": option_ids[1], "percentage_allocation": 49.5}]}),
        ),
        "req-state-colour",
    )
    .await
    .expect_status(200);
    let allocations: Vec<(u64, f64)> = state.body["multivariate_feature_state_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["multivariate_feature_option"].as_u64().unwrap(),
                a["percentage_allocation"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(allocations, [(option_ids[0], 50.0), (option_ids[1], 49.5)]);
    expected.push(expect(
        "req-state-colour",
        &[(&environment_stream, "FeatureStateSet")],
    ));

    // A segment using every operator, nested ALL/ANY/NONE.
    let rules = rules_with_every_operator();
    let segment = step(
        server.post(
            &format!("/api/v1/projects/{project}/segments/"),
            json!({"name": "power users", "description": "the keen ones", "rules": rules}),
        ),
        "req-segment",
    )
    .await
    .expect_status(201);
    assert_eq!(
        segment.body["rules"], rules,
        "rules come back as they were sent"
    );
    let segment_view = segment.body.clone();
    let segment = segment.u64("id");
    assert!(!all_ids.contains(&segment));
    expected.push(expect(
        "req-segment",
        &[(&project_stream, "SegmentCreated")],
    ));

    // A segment override with a priority.
    step(
        server.put(
            &format!("{env_path}/segment-overrides/{banner}/{segment}/"),
            json!({"priority": 1, "enabled": true, "feature_state_value": "hello, power user"}),
        ),
        "req-segment-override",
    )
    .await
    .expect_status(204);
    expected.push(expect(
        "req-segment-override",
        &[(&environment_stream, "SegmentOverrideSet")],
    ));

    // An identity override.
    step(
        server.post(
            &format!("{env_path}/identity-overrides/"),
            json!({"identifier": "user-42", "feature": dark_mode, "enabled": false,
                   "feature_state_value": "off for you"}),
        ),
        "req-identity-override",
    )
    .await
    .expect_status(204);
    let identity_stream = server.identity_stream(environment_id, "user-42").await;
    expected.push(expect(
        "req-identity-override",
        &[(&identity_stream, "IdentityOverrideSet")],
    ));

    // Reads reflect every write.
    let organisations = server
        .get("/api/v1/organisations/")
        .send()
        .await
        .expect_status(200);
    assert!(
        organisations
            .body
            .as_array()
            .unwrap()
            .contains(&json!({"id": organisation, "name": "Acme"})),
        "{}",
        organisations.text
    );
    let shown = server
        .get(&format!("/api/v1/projects/{project}/"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(shown.body, project_view);
    let projects = server
        .get("/api/v1/projects/")
        .send()
        .await
        .expect_status(200);
    assert_eq!(projects.body, json!([project_view]));

    let expected_environment = json!({"id": environment_id, "project": project,
        "name": "Production", "api_key": api_key,
        "server_side_keys": [{"id": 1, "name": "backend"}],
        "minimum_change_request_approvals": 0, "approvals_from_assigned_reviewers_only": false,
        "feature_versioning": false});
    let shown = server
        .get(&format!("{env_path}/"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(shown.body, expected_environment);
    let listed = server
        .get(&format!("/api/v1/environments/?project={project}"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(listed.body, json!([expected_environment]));
    let other_project = server
        .get(&format!("/api/v1/environments/?project={}", project + 100))
        .send()
        .await
        .expect_status(200);
    assert_eq!(other_project.body, json!([]));

    let features = server
        .get(&format!("/api/v1/projects/{project}/features/"))
        .send()
        .await
        .expect_status(200);
    let names: Vec<&str> = features
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["banner_text", "max_items", "ratio", "dark_mode", "colour"]
    );
    let shown = server
        .get(&format!("/api/v1/projects/{project}/features/{colour}/"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(shown.body, colour_view);

    let states = server
        .get(&format!("{env_path}/featurestates/"))
        .send()
        .await
        .expect_status(200);
    let state_of = |id: u64| {
        states
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["feature"]["id"] == id)
            .unwrap_or_else(|| panic!("no state for feature {id}: {}", states.text))
            .clone()
    };
    assert_eq!(state_of(banner)["feature_state_value"], "hello");
    assert_eq!(state_of(banner)["enabled"], true);
    assert_eq!(state_of(ratio)["feature_state_value"], 0.25);
    assert_eq!(state_of(dark_mode)["feature_state_value"], true);
    let max_items_state = state_of(max_items);
    assert!(
        max_items_state["feature_state_value"].is_i64(),
        "an integer stays an integer through the log: {max_items_state}"
    );
    assert_eq!(max_items_state["feature_state_value"], 100);
    assert_eq!(max_items_state["enabled"], true);
    let colour_state = state_of(colour);
    assert_eq!(colour_state["feature_state_value"], "green");
    assert_eq!(
        colour_state["multivariate_feature_state_values"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let shown = server
        .get(&format!("/api/v1/projects/{project}/segments/{segment}/"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(shown.body, segment_view);
    let segments = server
        .get(&format!("/api/v1/projects/{project}/segments/"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(segments.body, json!([segment_view]));

    let overrides = server
        .get(&format!(
            "{env_path}/identity-overrides/?identifier=user-42"
        ))
        .send()
        .await
        .expect_status(200);
    let overrides = overrides.body.as_array().unwrap();
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    assert_eq!(
        overrides[0]["feature"],
        json!({"id": dark_mode, "name": "dark_mode", "type": "STANDARD"})
    );
    assert_eq!(overrides[0]["enabled"], false);
    assert_eq!(overrides[0]["feature_state_value"], "off for you");
    let nobody = server
        .get(&format!(
            "{env_path}/identity-overrides/?identifier=user-43"
        ))
        .send()
        .await
        .expect_status(200);
    assert_eq!(nobody.body, json!([]));

    // The log: each request's events in order, with who, which request and why.
    let events = server.events().await;
    check_log(&server, &events, &expected);

    let segment_override = payload_of(&events, "SegmentOverrideSet")[0];
    assert_eq!(segment_override["feature_id"], banner);
    assert_eq!(segment_override["override"]["segment_id"], segment);
    assert_eq!(segment_override["override"]["priority"], 1);
    assert_eq!(segment_override["override"]["state"]["enabled"], true);
    assert_eq!(
        segment_override["override"]["state"]["feature_state_value"],
        "hello, power user"
    );
    let identity_override = payload_of(&events, "IdentityOverrideSet")[0];
    assert_eq!(identity_override["environment_id"], environment_id);
    // The identity by its reference: no identifier is ever written to the log.
    assert_eq!(identity_override.get("identifier"), None);
    assert_eq!(
        format!(
            "identity-{environment_id}-{}",
            identity_override["identity"].as_str().unwrap()
        ),
        identity_stream
    );
    assert_eq!(identity_override["feature_id"], dark_mode);
    let created_segment = payload_of(&events, "SegmentCreated")[0];
    assert_eq!(created_segment["segment"]["rules"], rules);

    // Secrets never reach the log, whole or in part.
    let log_text = server.log_text().await;
    assert!(
        log_text.contains(api_key),
        "the search sees payloads: the public client key is there"
    );
    let token = server.token();
    assert!(!log_text.contains(token), "the API token is in the log");
    assert!(
        !log_text.contains(&server_key),
        "the server-side key is in the log"
    );
    assert!(
        !log_text.contains(&server_key["ser.".len()..]),
        "the server-side key's secret part is in the log"
    );
    let key_issued = payload_of(&events, "ServerSideKeyIssued")[0];
    assert_eq!(key_issued["name"], "backend");
    assert!(key_issued["key_hash"].as_str().unwrap().len() == 64);
    // Nor in any read.
    for path in [format!("{env_path}/"), "/api/v1/environments/".to_string()] {
        let reply = server.get(&path).send().await.expect_status(200);
        assert!(!reply.text.contains(&server_key), "{path} shows the key");
    }
}

on_both_backends!(the_whole_admin_flow_works_and_each_mutation_is_an_event);

mod later_changes;
