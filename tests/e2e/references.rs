//! Rules that span aggregates hold under concurrency: an override, a feature state or an
//! allocation names a segment, feature or option of the project, and a concurrent deletion of
//! that thing never leaves a reference to something that did not exist when it was written.
//! Each race is run for many rounds with the two requests released together; afterwards the log
//! is folded to check every reference at the position it was written, and every losing request
//! must have been told clearly (404 or 409, or 400 naming the missing option).

use std::collections::HashMap;

use domain::aggregate::{Aggregate, DomainEvent};
use domain::environment::{Environment, EnvironmentEvent};
use domain::identity::IdentityEvent;
use domain::log::RecordedEvent;
use domain::model::FeatureState;
use domain::project::{Project, ProjectEvent};
use flaglog_tests::{Backend, Server, on_both_backends, race};
use serde_json::json;

const ROUNDS: usize = 30;

/// Folds the log and panics at the first event that refers to a feature, segment or option the
/// project did not have at that position, or if the final state keeps such a reference.
fn assert_no_dangling_references(events: &[RecordedEvent]) {
    let mut projects: HashMap<u64, Project> = HashMap::new();
    let mut environments: HashMap<u64, Environment> = HashMap::new();
    let check = |project: &Project, feature_id: u64, state: &FeatureState, at: &RecordedEvent| {
        let feature = project.features.get(&feature_id).unwrap_or_else(|| {
            panic!(
                "position {}: {} names deleted feature {feature_id}",
                at.position, at.event_type
            )
        });
        for allocation in &state.multivariate_feature_state_values {
            let option = allocation.multivariate_feature_option;
            assert!(
                feature.multivariate_options.iter().any(|o| o.id == option),
                "position {}: {} allocates removed option {option}",
                at.position,
                at.event_type
            );
        }
    };
    for event in events {
        if event.stream_id.starts_with("project-") {
            let decoded = ProjectEvent::from_recorded(event).unwrap();
            let id = match &decoded {
                ProjectEvent::ProjectCreated { id, .. } => *id,
                _ => event.stream_id["project-".len()..].parse().unwrap(),
            };
            projects.entry(id).or_default().apply(&decoded);
        } else if event.stream_id.starts_with("environment-") {
            let decoded = EnvironmentEvent::from_recorded(event).unwrap();
            let id = match &decoded {
                EnvironmentEvent::EnvironmentCreated { id, .. } => *id,
                _ => event.stream_id["environment-".len()..].parse().unwrap(),
            };
            let env = environments.entry(id).or_default();
            env.apply(&decoded);
            let project = &projects[&env.project_id];
            match &decoded {
                EnvironmentEvent::FeatureStateSet { feature_id, state } => {
                    check(project, *feature_id, state, event)
                }
                EnvironmentEvent::SegmentOverrideSet {
                    feature_id,
                    r#override,
                } => {
                    check(project, *feature_id, &r#override.state, event);
                    assert!(
                        project.segments.contains_key(&r#override.segment_id),
                        "position {}: override of deleted segment {}",
                        event.position,
                        r#override.segment_id
                    );
                }
                _ => {}
            }
        } else if event.stream_id.starts_with("identity-")
            && let IdentityEvent::IdentityOverrideSet {
                environment_id,
                feature_id,
                state,
                ..
            } = IdentityEvent::from_recorded(event).unwrap()
        {
            let project = &projects[&environments[&environment_id].project_id];
            check(project, feature_id, &state, event);
        }
    }
    for env in environments.values() {
        let project = &projects[&env.project_id];
        for (feature_id, segment_id) in env.segment_overrides.keys() {
            if project.features.contains_key(feature_id) {
                assert!(
                    project.segments.contains_key(segment_id),
                    "environment {} keeps an override of deleted segment {segment_id}",
                    env.id
                );
            }
        }
        for (feature_id, state) in &env.feature_states {
            if let Some(feature) = project.features.get(feature_id) {
                for allocation in &state.multivariate_feature_state_values {
                    assert!(
                        feature
                            .multivariate_options
                            .iter()
                            .any(|o| o.id == allocation.multivariate_feature_option),
                        "environment {} keeps an allocation on a removed option",
                        env.id
                    );
                }
            }
        }
    }
}

async fn deleting_a_segment_races_setting_an_override_of_it(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    server.environment(project, "env-key").await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let (mut deleted, mut overridden) = (0, 0);
    for round in 0..ROUNDS {
        let segment = server
            .segment(project, json!({"name": format!("s{round}"), "rules": []}))
            .await;
        let replies = race(vec![
            server.delete(&format!("/api/v1/projects/{project}/segments/{segment}/")),
            server.put(
                &format!("/api/v1/environments/env-key/segment-overrides/{feature}/{segment}/"),
                json!({"enabled": true, "feature_state_value": round}),
            ),
        ])
        .await;
        match (replies[0].status, replies[1].status) {
            (204, 404) => {
                deleted += 1;
                assert_eq!(replies[1].body["error"], "not_found", "{}", replies[1].text);
            }
            (409, 204) => {
                overridden += 1;
                assert_eq!(
                    replies[0].body["field"], "segment_id",
                    "{}",
                    replies[0].text
                );
                let message = replies[0].body["message"].as_str().unwrap_or("");
                assert!(
                    message.contains("`f`") && message.contains("env env-key"),
                    "the refusal names the feature and environment using it: {message}"
                );
            }
            other => panic!("round {round}: {other:?}: {replies:#?}"),
        }
    }
    assert_no_dangling_references(&server.events().await);
    assert_eq!(deleted + overridden, ROUNDS);
}

async fn deleting_a_feature_races_setting_its_state(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    server.environment(project, "env-key").await;
    for round in 0..ROUNDS {
        let feature = server
            .feature(project, json!({"name": format!("f{round}")}))
            .await;
        let replies = race(vec![
            server.delete(&format!("/api/v1/projects/{project}/features/{feature}/")),
            server.put(
                &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
                json!({"enabled": true, "feature_state_value": round}),
            ),
        ])
        .await;
        assert_eq!(replies[0].status, 204, "round {round}: {}", replies[0].text);
        match replies[1].status {
            // Set before the deletion, which then went through.
            200 => {}
            404 => assert_eq!(replies[1].body["error"], "not_found", "{}", replies[1].text),
            other => panic!("round {round}: state answered {other}: {}", replies[1].text),
        }
    }
    assert_no_dangling_references(&server.events().await);
}

async fn removing_an_option_races_an_allocation_on_it(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    server.environment(project, "env-key").await;
    let (mut removed, mut allocated) = (0, 0);
    for round in 0..ROUNDS {
        let created = server
            .post(
                &format!("/api/v1/projects/{project}/features/"),
                json!({"name": format!("mv{round}"), "multivariate_options": [
                    {"value": "a", "default_percentage_allocation": 10},
                    {"value": "b", "default_percentage_allocation": 10}]}),
            )
            .send()
            .await
            .expect_status(201);
        let feature = created.u64("id");
        let options = &created.body["multivariate_options"];
        let (keep, doomed) = (options[0]["id"].clone(), options[1]["id"].clone());
        let replies = race(vec![
            server.patch(
                &format!("/api/v1/projects/{project}/features/{feature}/"),
                json!({"multivariate_options": [
                    {"id": keep, "value": "a", "default_percentage_allocation": 10}]}),
            ),
            server.put(
                &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
                json!({"enabled": true, "multivariate_feature_state_values": [
                    {"multivariate_feature_option": doomed, "percentage_allocation": 40}]}),
            ),
        ])
        .await;
        match (replies[0].status, replies[1].status) {
            (200, 400) => {
                removed += 1;
                assert_eq!(
                    replies[1].body["field"],
                    "multivariate_feature_state_values[0].multivariate_feature_option",
                    "{}",
                    replies[1].text
                );
            }
            (409, 200) => {
                allocated += 1;
                assert_eq!(
                    replies[0].body["field"], "multivariate_options",
                    "{}",
                    replies[0].text
                );
                assert!(
                    replies[0].body["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("env env-key"),
                    "{}",
                    replies[0].text
                );
            }
            other => panic!("round {round}: {other:?}: {replies:#?}"),
        }
    }
    assert_no_dangling_references(&server.events().await);
    assert_eq!(removed + allocated, ROUNDS);
}

/// Without a race: what an environment uses cannot be removed from under it, and once the use
/// is removed (an event of its own, for the auditor) the removal goes through.
async fn removing_what_an_environment_uses_is_refused_until_the_use_is_removed(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    server.environment(project, "env-key").await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let segment = server
        .segment(project, json!({"name": "beta", "rules": []}))
        .await;
    let override_path =
        format!("/api/v1/environments/env-key/segment-overrides/{feature}/{segment}/");
    server
        .put(&override_path, json!({"enabled": true}))
        .send()
        .await
        .expect_status(204);
    let segment_path = format!("/api/v1/projects/{project}/segments/{segment}/");
    server
        .delete(&segment_path)
        .send()
        .await
        .expect_error(409, "conflict", Some("segment_id"));
    server
        .delete(&override_path)
        .send()
        .await
        .expect_status(204);
    server.delete(&segment_path).send().await.expect_status(204);
    let types: Vec<String> = server
        .events()
        .await
        .into_iter()
        .map(|e| e.event_type)
        .filter(|t| t.starts_with("Segment"))
        .collect();
    assert_eq!(
        types,
        [
            "SegmentCreated",
            "SegmentOverrideSet",
            "SegmentOverrideRemoved",
            "SegmentDeleted"
        ]
    );
    assert_no_dangling_references(&server.events().await);
}

on_both_backends!(
    deleting_a_segment_races_setting_an_override_of_it,
    deleting_a_feature_races_setting_its_state,
    removing_an_option_races_an_allocation_on_it,
    removing_what_an_environment_uses_is_refused_until_the_use_is_removed,
);
