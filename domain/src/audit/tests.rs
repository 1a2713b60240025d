use serde_json::json;

use super::*;
use crate::log::Metadata;
use crate::model::{Feature, FeatureState, FeatureStateKey, FeatureType, Segment};

/// Builds a log in memory: each event gets the next position.
#[derive(Default)]
struct Log {
    fold: AuditFold,
    position: u64,
}

impl Log {
    fn record(&mut self, stream: &str, event: &impl DomainEvent, metadata: Metadata) -> AuditEntry {
        self.position += 1;
        let new = event.to_new_event().unwrap();
        let record = RecordedEvent {
            position: self.position,
            stream_id: stream.to_string(),
            version: 1,
            event_type: new.event_type,
            schema_version: new.schema_version,
            payload: new.payload,
            metadata,
            recorded_at_micros: 1_700_000_000_000_000 + self.position as i64,
            prev_hash: [0; 32],
            hash: [0; 32],
        };
        self.fold.entry(&record).unwrap()
    }

    fn by(&mut self, stream: &str, event: &impl DomainEvent) -> AuditEntry {
        self.record(stream, event, Metadata::actor("user:1"))
    }

    /// Organisation 1, user 1 (alice), project 1 `shop` with feature 7 `checkout`, environment
    /// 3 `production`.
    fn with_project() -> Log {
        let mut log = Log::default();
        log.by(
            directory::STREAM,
            &DirectoryEvent::OrganisationCreated {
                id: 1,
                name: "acme".into(),
            },
        );
        log.by(
            directory::STREAM,
            &DirectoryEvent::UserCreated {
                id: 1,
                email: "alice@example.com".into(),
                is_admin: true,
                password_hash: Some("$argon2id$secret".into()),
            },
        );
        log.by(
            directory::STREAM,
            &DirectoryEvent::ProjectRegistered {
                id: 1,
                organisation_id: 1,
            },
        );
        log.by(
            "project-1",
            &ProjectEvent::ProjectCreated {
                id: 1,
                organisation_id: 1,
                settings: crate::project::ProjectSettings {
                    name: "shop".into(),
                    ..Default::default()
                },
            },
        );
        log.by(
            directory::STREAM,
            &DirectoryEvent::EnvironmentRegistered {
                id: 3,
                project_id: 1,
                client_key: "prod-key".into(),
            },
        );
        log.by(
            "environment-3",
            &EnvironmentEvent::EnvironmentCreated {
                id: 3,
                project_id: 1,
                name: "production".into(),
                client_key: "prod-key".into(),
            },
        );
        log.by(
            "project-1",
            &ProjectEvent::FeatureCreated {
                feature: feature("blue"),
            },
        );
        log
    }
}

fn feature(initial: &str) -> Feature {
    Feature {
        id: 7,
        name: "checkout".into(),
        feature_type: FeatureType::Standard,
        default_enabled: false,
        initial_value: json!(initial),
        description: None,
        tags: vec![],
        multivariate_options: vec![],
    }
}

fn state(enabled: bool, value: &str) -> FeatureState {
    FeatureState {
        enabled,
        feature_state_value: json!(value),
        multivariate_feature_state_values: vec![],
        key: FeatureStateKey::default(),
    }
}

#[test]
fn enabling_a_feature_says_who_what_where_with_the_defaults_as_before() {
    let mut log = Log::with_project();
    let entry = log.by(
        "environment-3",
        &EnvironmentEvent::FeatureStateSet {
            feature_id: 7,
            state: state(true, "blue"),
        },
    );
    assert_eq!(
        entry.summary,
        "alice@example.com enabled `checkout` in production"
    );
    assert_eq!(
        (
            entry.organisation_id,
            entry.project_id,
            entry.environment_id
        ),
        (Some(1), Some(1), Some(3))
    );
    assert_eq!(entry.feature_id, Some(7));
    assert_eq!(
        entry.before["enabled"],
        json!(false),
        "the feature's default"
    );
    assert_eq!(entry.before["feature_state_value"], json!("blue"));
    assert_eq!(entry.after["enabled"], json!(true));
    let patch = entry.patch.as_array().unwrap();
    assert!(
        patch
            .iter()
            .any(|op| op["path"] == "/enabled" && op["value"] == json!(true)),
        "{patch:?}"
    );
}

#[test]
fn a_value_change_says_the_new_value() {
    let mut log = Log::with_project();
    let entry = log.by(
        "environment-3",
        &EnvironmentEvent::FeatureStateSet {
            feature_id: 7,
            state: state(false, "green"),
        },
    );
    assert_eq!(
        entry.summary,
        "alice@example.com set `checkout` to \"green\" in production"
    );
}

#[test]
fn a_deleted_feature_is_named_from_before() {
    let mut log = Log::with_project();
    let entry = log.by("project-1", &ProjectEvent::FeatureDeleted { id: 7 });
    assert_eq!(
        entry.summary,
        "alice@example.com deleted feature `checkout` from project `shop`"
    );
    assert_eq!(entry.before["name"], json!("checkout"));
    assert_eq!(entry.after, Value::Null);
}

#[test]
fn segment_changes_name_the_rule_and_condition() {
    let mut log = Log::with_project();
    let segment = |value: &str, extra: bool| {
        let mut conditions =
            vec![json!({"operator": "EQUAL", "property_": "plan", "value": value})];
        if extra {
            conditions.push(json!({"operator": "GREATER_THAN", "property_": "age", "value": "18"}));
        }
        serde_json::from_value::<Segment>(json!({
            "id": 9, "name": "beta",
            "rules": [{"type": "ALL", "rules": [{"type": "ANY", "conditions": conditions}]}]
        }))
        .unwrap()
    };
    let created = log.by(
        "project-1",
        &ProjectEvent::SegmentCreated {
            segment: segment("pro", false),
        },
    );
    assert!(
        created
            .changes
            .contains(&"added rules[0].rules[0].conditions[0]: condition `plan EQUAL pro`".into()),
        "{:?}",
        created.changes
    );
    let updated = log.by(
        "project-1",
        &ProjectEvent::SegmentUpdated {
            segment: segment("team", true),
        },
    );
    assert_eq!(
        updated.changes,
        vec![
            "changed rules[0].rules[0].conditions[0]: condition `plan EQUAL pro` → condition `plan EQUAL team`".to_string(),
            "added rules[0].rules[0].conditions[1]: condition `age GREATER_THAN 18`".to_string(),
        ]
    );
    assert!(
        updated.summary.starts_with(
            "alice@example.com changed segment `beta` in project `shop`: changed rules[0]"
        ),
        "{}",
        updated.summary
    );
    assert_eq!(updated.segment_id, Some(9));
}

#[test]
fn no_secret_hash_reaches_an_entry() {
    let mut log = Log::with_project();
    let issued = log.by(
        directory::STREAM,
        &DirectoryEvent::ApiTokenIssued {
            user_id: 1,
            token_hash: "f00dfeed".into(),
            id: Some(4),
            name: Some("laptop".into()),
        },
    );
    let rotated = log.by(
        directory::STREAM,
        &DirectoryEvent::ApiTokenRotated {
            id: 4,
            token_hash: "beefcafe".into(),
        },
    );
    let key = log.by(
        "environment-3",
        &EnvironmentEvent::ServerSideKeyIssued {
            id: 1,
            name: "backend".into(),
            key_hash: "c0ffee11".into(),
        },
    );
    assert_eq!(
        rotated.summary,
        "alice@example.com rotated API token `laptop`"
    );
    assert_eq!(rotated.before["secret_generation"], json!(1));
    assert_eq!(rotated.after["secret_generation"], json!(2));
    let mut fold = AuditFold::default();
    std::mem::swap(&mut fold, &mut log.fold);
    let user = fold.show(&Part::User(1));
    for entry in [&issued, &rotated, &key] {
        let text = serde_json::to_string(entry).unwrap();
        for secret in ["f00dfeed", "beefcafe", "c0ffee11", "argon2id"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    assert!(!user.to_string().contains("argon2id"));
}

#[test]
fn a_committed_request_names_its_approvers_and_the_applied_events_name_the_request() {
    let mut log = Log::with_project();
    log.by(
        directory::STREAM,
        &DirectoryEvent::UserCreated {
            id: 2,
            email: "bob@example.com".into(),
            is_admin: false,
            password_hash: None,
        },
    );
    let command = crate::command::StoredCommand {
        schema_version: 1,
        command: json!({"type": "set_feature_state", "environment_id": 3, "feature_id": 7, "enabled": true}),
    };
    let opened = log.by(
        "change-request-5",
        &ChangeRequestEvent::ChangeRequestOpened {
            id: 5,
            scope: Scope::Environment(3),
            title: "launch".into(),
            description: String::new(),
            author: 1,
            content: crate::change_request::Content {
                commands: vec![command],
                ..Default::default()
            },
            content_hash: "h".into(),
        },
    );
    assert_eq!(opened.features, BTreeSet::from([7]), "found by its feature");
    assert_eq!(opened.environment_id, Some(3));
    let metadata = Metadata {
        actor: "user:1".into(),
        causation_id: Some("change-request-5".into()),
        approvers: vec!["user:2".into()],
        ..Default::default()
    };
    let applied = log.record(
        "environment-3",
        &EnvironmentEvent::FeatureStateSet {
            feature_id: 7,
            state: state(true, "blue"),
        },
        metadata.clone(),
    );
    let committed = log.record(
        "change-request-5",
        &ChangeRequestEvent::ChangeRequestCommitted {
            approvers: vec![2],
            content_hash: "h".into(),
        },
        metadata,
    );
    assert_eq!(applied.change_request_id, Some(5));
    assert_eq!(applied.approvers, vec!["bob@example.com".to_string()]);
    assert_eq!(
        committed.summary,
        "alice@example.com committed change request #5 in production, approved by bob@example.com"
    );
    assert_eq!(committed.before["status"], json!("open"));
    assert_eq!(committed.after["status"], json!("committed"));
}

#[test]
fn identity_overrides_name_the_identity_by_reference_and_their_previous_state() {
    let mut log = Log::with_project();
    let stream = crate::identity::stream(3, "ref42");
    let set = |enabled| IdentityEvent::IdentityOverrideSet {
        environment_id: 3,
        identity: "ref42".into(),
        feature_id: 7,
        state: state(enabled, "blue"),
    };
    let first = log.by(&stream, &set(true));
    let second = log.by(&stream, &set(false));
    assert_eq!(first.before, Value::Null);
    assert_eq!(second.before["enabled"], json!(true));
    assert_eq!(second.identity.as_deref(), Some("ref42"));
    assert_eq!(
        second.summary,
        "alice@example.com overrode `checkout` for identity `ref42` in production"
    );

    let erased = log.by(
        &stream,
        &IdentityEvent::IdentityErased {
            environment_id: 3,
            identity: "ref42".into(),
        },
    );
    assert_eq!(erased.identity.as_deref(), Some("ref42"));
    assert_eq!(erased.before["overrides"]["7"]["enabled"], json!(false));
    assert_eq!(erased.after, json!({"overrides": {}, "erased": true}));
    assert_eq!(
        erased.summary,
        "alice@example.com erased an identity in production"
    );
}

/// The flag states integrations are told about are Flagsmith's feature-state objects, and
/// their text is that of the JSON objects they were written as before they were typed (keys
/// in the order of their names): rows written either way read the same.
#[test]
fn flag_states_are_flagsmith_feature_state_objects_in_the_text_of_json_objects() {
    let mut log = Log::with_project();
    let multivariate = Feature {
        feature_type: FeatureType::Multivariate,
        description: Some("the \"checkout\" flow".into()),
        multivariate_options: serde_json::from_value(json!([
            {"id": 11, "value": "red"},
            {"id": 12, "value": 12}
        ]))
        .unwrap(),
        ..feature("blue")
    };
    log.by(
        "project-1",
        &ProjectEvent::FeatureUpdated {
            feature: multivariate,
        },
    );
    log.by(
        "project-1",
        &ProjectEvent::SegmentCreated {
            segment: serde_json::from_value(json!({"id": 9, "name": "beta", "rules": []})).unwrap(),
        },
    );
    let allocated = FeatureState {
        multivariate_feature_state_values: serde_json::from_value(json!([
            {"multivariate_feature_option": 11, "percentage_allocation": 30.0},
            {"multivariate_feature_option": 13, "percentage_allocation": 12.5, "id": 40}
        ]))
        .unwrap(),
        ..state(true, "blue")
    };
    let set = log.by(
        "environment-3",
        &EnvironmentEvent::FeatureStateSet {
            feature_id: 7,
            state: allocated,
        },
    );
    let overridden = log.by(
        "environment-3",
        &EnvironmentEvent::SegmentOverrideSet {
            feature_id: 7,
            r#override: crate::environment::SegmentOverride {
                segment_id: 9,
                priority: Some(2),
                state: state(false, "green"),
            },
        },
    );
    let feature = json!({
        "id": 7,
        "name": "checkout",
        "type": "MULTIVARIATE",
        "description": "the \"checkout\" flow",
        "initial_value": "blue",
        "default_enabled": false,
        "created_date": null,
        "project": {"id": 1, "name": "shop"},
    });
    let environment = json!({"id": 3, "name": "production"});
    let written = |entry: &AuditEntry| {
        let change = &entry.flags[0];
        (
            serde_json::to_string(&change.previous_state).unwrap(),
            serde_json::to_string(&change.new_state).unwrap(),
        )
    };
    let state_object = |enabled: bool, value: &str, segment: Value, multivariate: Value| {
        json!({
            "enabled": enabled,
            "feature_state_value": value,
            "environment": environment,
            "feature": feature,
            "identity": null,
            "identity_identifier": null,
            "feature_segment": segment,
            "multivariate_feature_state_values": multivariate,
        })
        .to_string()
    };
    assert_eq!(
        written(&set),
        (
            // Before it was set: the feature's defaults, each option at its default share.
            state_object(
                false,
                "blue",
                Value::Null,
                json!([
                    {"id": 11, "multivariate_feature_option": {"id": 11, "value": "red"},
                     "percentage_allocation": 0.0},
                    {"id": 12, "multivariate_feature_option": {"id": 12, "value": 12},
                     "percentage_allocation": 0.0},
                ])
            ),
            state_object(
                true,
                "blue",
                Value::Null,
                json!([
                    {"id": 11, "multivariate_feature_option": {"id": 11, "value": "red"},
                     "percentage_allocation": 30.0},
                    {"id": 40, "multivariate_feature_option": {"id": 13, "value": null},
                     "percentage_allocation": 12.5},
                ])
            )
        )
    );
    assert_eq!(set.flags[0].kind, FlagChangeKind::Updated);
    assert_eq!(
        written(&overridden),
        (
            "null".to_string(),
            state_object(
                false,
                "green",
                json!({"segment": {"id": 9, "name": "beta", "description": null}, "priority": 2}),
                json!([])
            )
        )
    );
    assert_eq!(overridden.flags[0].kind, FlagChangeKind::Created);
}
