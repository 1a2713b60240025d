//! The commands' JSON form is a contract (it is stored inside events and shown to approvers):
//! every variant round-trips byte for byte, and a new variant without a sample here fails.

use std::collections::BTreeSet;

use super::*;

/// One sample of every command type, in its canonical JSON form (fields in declaration order,
/// absent optional fields omitted).
const SAMPLES: &[&str] = &[
    r#"{"type":"create_organisation","name":"Acme"}"#,
    r#"{"type":"create_user","email":"a@example.com","is_admin":true,"password_hash":"$argon2id$v=19$x","token_hash":"ab12","only_if_first":false}"#,
    r#"{"type":"create_project","organisation_id":1,"settings":{"name":"web","feature_name_regex":null,"case_sensitive_feature_names":false,"hide_disabled_flags":true}}"#,
    r#"{"type":"create_environment","project_id":2,"name":"production","client_key":"abcDEF123"}"#,
    r#"{"type":"set_project_role","project_id":2,"user_id":4,"role":"approver"}"#,
    r#"{"type":"issue_api_token","user_id":4,"name":"laptop","token_hash":"ef56"}"#,
    r#"{"type":"issue_service_token","project_id":2,"name":"ci","role":"editor","token_hash":"ab78"}"#,
    r#"{"type":"rotate_api_token","token_id":5,"token_hash":"cd90"}"#,
    r#"{"type":"revoke_api_token","token_id":5}"#,
    r#"{"type":"create_integration","scope":{"environment":3},"kind":"webhook","config":{"url":"https://hooks.example.com/flags"},"secrets":{"secret":"0f3a9c"},"enabled":true}"#,
    r#"{"type":"update_integration","scope":{"organisation":1},"integration_id":2,"config":{"url":"https://b.example.com"},"enabled":false}"#,
    r#"{"type":"remove_integration","scope":{"project":2},"integration_id":2}"#,
    r#"{"type":"update_project","project_id":2,"settings":{"name":"web","feature_name_regex":"[a-z_]+","case_sensitive_feature_names":true,"hide_disabled_flags":false}}"#,
    r#"{"type":"create_feature","project_id":2,"feature":{"name":"colour","type":"MULTIVARIATE","default_enabled":true,"initial_value":"red","description":"the button","tags":["ui"],"multivariate_options":[{"value":"blue","default_percentage_allocation":25.5,"key":"b"},{"id":9,"value":7,"default_percentage_allocation":0.0}]}}"#,
    r#"{"type":"update_feature","project_id":2,"feature_id":7,"changes":{"default_enabled":false,"multivariate_options":[{"id":9,"value":7,"default_percentage_allocation":10.0}]}}"#,
    r#"{"type":"delete_feature","project_id":2,"feature_id":7}"#,
    r#"{"type":"create_segment","project_id":2,"segment":{"name":"beta","rules":[{"type":"ALL","conditions":[{"operator":"EQUAL","property_":"plan","value":"pro"}],"rules":[]}]}}"#,
    r#"{"type":"update_segment","project_id":2,"segment_id":8,"segment":{"name":"beta","description":"paying users","rules":[]}}"#,
    r#"{"type":"delete_segment","project_id":2,"segment_id":8}"#,
    r#"{"type":"rename_environment","environment_id":3,"name":"prod"}"#,
    r#"{"type":"update_environment_settings","environment_id":3,"minimum_change_request_approvals":2,"feature_versioning":true}"#,
    r#"{"type":"issue_server_side_key","environment_id":3,"name":"backend","key_hash":"cd34"}"#,
    r#"{"type":"set_feature_state","environment_id":3,"feature_id":7,"enabled":true,"feature_state_value":"blue"}"#,
    r#"{"type":"set_segment_override","environment_id":3,"feature_id":7,"segment_id":8,"priority":1,"enabled":false,"feature_state_value":null,"multivariate_feature_state_values":[{"multivariate_feature_option":9,"percentage_allocation":50.0}]}"#,
    r#"{"type":"remove_segment_override","environment_id":3,"feature_id":7,"segment_id":8}"#,
    r#"{"type":"set_identity_override","environment_id":3,"identifier":"user-1","feature_id":7,"enabled":true,"feature_state_value":12}"#,
    r#"{"type":"remove_identity_override","environment_id":3,"identifier":"user-1","feature_id":7}"#,
    // As stored in a change request: the identity by reference.
    r#"{"type":"set_identity_override","environment_id":3,"identity":"5f1c0a","feature_id":7,"enabled":false,"feature_state_value":null}"#,
    r#"{"type":"erase_identity","environment_id":3,"identifier":"user-1"}"#,
];

#[test]
fn every_command_round_trips_its_json_byte_for_byte() {
    for sample in SAMPLES {
        let command: Command =
            serde_json::from_str(sample).unwrap_or_else(|e| panic!("{sample}: {e}"));
        let written = serde_json::to_string(&command).unwrap();
        assert_eq!(&written, sample);
        let stored = StoredCommand::new(&command).unwrap();
        assert_eq!(stored.schema_version, SCHEMA_VERSION);
        assert_eq!(stored.decode().unwrap(), command);
    }
}

#[test]
fn every_command_type_has_a_sample() {
    let sampled: BTreeSet<&str> = SAMPLES
        .iter()
        .map(|s| serde_json::from_str::<Command>(s).unwrap().type_name())
        .collect();
    let all: BTreeSet<&str> = Command::types().collect();
    assert_eq!(sampled, all, "add a sample for each new command type");
    assert_eq!(
        all.len(),
        Command::types().count(),
        "command types are unique across aggregates"
    );
}

#[test]
fn an_unknown_type_is_refused_naming_the_known_ones() {
    let err = serde_json::from_str::<Command>(r#"{"type":"launch_rocket"}"#).unwrap_err();
    assert!(err.to_string().contains("launch_rocket"), "{err}");
    assert!(err.to_string().contains("set_feature_state"), "{err}");
    let err = serde_json::from_str::<Command>(r#"{"environment_id":3}"#).unwrap_err();
    assert!(err.to_string().contains("type"), "{err}");
}

#[test]
fn a_stored_command_of_an_unknown_schema_version_is_refused_not_misread() {
    let stored = StoredCommand {
        schema_version: SCHEMA_VERSION + 1,
        command: serde_json::from_str(SAMPLES[0]).unwrap(),
    };
    let err = stored.decode().unwrap_err();
    assert!(err.0.contains("schema version"), "{err}");
}

mod decisions {
    use super::super::*;
    use crate::aggregate::Aggregate;
    use crate::environment::Environment;
    use crate::error::Error;
    use crate::project::{Project, ProjectSettings};
    use serde_json::json;

    fn project_with_feature_and_segment() -> Project {
        let mut project = Project::from_events(
            &crate::project::Project::create(
                1,
                1,
                ProjectSettings {
                    name: "p".into(),
                    ..ProjectSettings::default()
                },
            )
            .unwrap(),
        );
        let create: ProjectCommand = serde_json::from_value(json!({"type": "create_feature",
            "project_id": 1, "feature": {"name": "colour", "multivariate_options": [
                {"value": "blue", "default_percentage_allocation": 10},
                {"value": "green", "default_percentage_allocation": 10}]}}))
        .unwrap();
        let segment: ProjectCommand = serde_json::from_value(json!({"type": "create_segment",
            "project_id": 1, "segment": {"name": "beta", "rules": []}}))
        .unwrap();
        for command in [create, segment] {
            for event in project::decide(&project, &command, &ProjectFacts::default()).unwrap() {
                project.apply(&event);
            }
        }
        project
    }

    fn environment(project: &Project, command: serde_json::Value) -> Environment {
        let mut env = Environment::from_events(&Environment::create(3, 1, "prod", "k").unwrap());
        let command: EnvironmentCommand = serde_json::from_value(command).unwrap();
        let facts = EnvironmentFacts { project };
        for event in environment::decide(&env, &command, &facts).unwrap() {
            env.apply(&event);
        }
        env
    }

    #[test]
    fn a_segment_with_overrides_cannot_be_deleted_and_the_refusal_names_them() {
        let project = project_with_feature_and_segment();
        // Feature 1 has options 2 and 3; the segment is 4.
        let env = environment(
            &project,
            json!({"type": "set_segment_override", "environment_id": 3, "feature_id": 1,
                   "segment_id": 4, "enabled": true}),
        );
        let delete = ProjectCommand::DeleteSegment {
            project_id: 1,
            segment_id: 4,
        };
        assert!(delete.reads_environments());
        let environments = [env];
        let err = project::decide(
            &project,
            &delete,
            &ProjectFacts {
                environments: &environments,
            },
        )
        .unwrap_err();
        let Error::Conflict { field, message } = err else {
            panic!("{err:?}")
        };
        assert_eq!(field, "segment_id");
        assert!(
            message.contains("`colour`") && message.contains("`prod`"),
            "{message}"
        );
        // Without uses it goes through.
        assert!(project::decide(&project, &delete, &ProjectFacts::default()).is_ok());
    }

    #[test]
    fn an_option_with_allocations_cannot_be_removed() {
        let project = project_with_feature_and_segment();
        let env = environment(
            &project,
            json!({"type": "set_feature_state", "environment_id": 3, "feature_id": 1,
                   "enabled": true, "multivariate_feature_state_values": [
                       {"multivariate_feature_option": 3, "percentage_allocation": 40}]}),
        );
        let environments = [env];
        let facts = ProjectFacts {
            environments: &environments,
        };
        let keep_only = |id: u64| -> ProjectCommand {
            serde_json::from_value(json!({"type": "update_feature", "project_id": 1,
                "feature_id": 1, "changes": {"multivariate_options": [
                    {"id": id, "value": "x", "default_percentage_allocation": 10}]}}))
            .unwrap()
        };
        assert!(keep_only(2).reads_environments());
        let err = project::decide(&project, &keep_only(2), &facts).unwrap_err();
        assert!(
            matches!(&err, Error::Conflict { field, message }
                if field == "multivariate_options" && message.contains("option 3")),
            "{err:?}"
        );
        // Removing the unused option 2 is fine.
        assert!(project::decide(&project, &keep_only(3), &facts).is_ok());
    }

    #[test]
    fn feature_states_and_overrides_of_missing_features_or_segments_are_not_found() {
        let project = project_with_feature_and_segment();
        let env = Environment::from_events(&Environment::create(3, 1, "prod", "k").unwrap());
        let facts = EnvironmentFacts { project: &project };
        let set: EnvironmentCommand =
            serde_json::from_value(json!({"type": "set_segment_override",
            "environment_id": 3, "feature_id": 1, "segment_id": 99, "enabled": true}))
            .unwrap();
        assert!(set.reads_project());
        assert!(matches!(
            environment::decide(&env, &set, &facts),
            Err(Error::NotFound {
                entity: "segment",
                ..
            })
        ));
        let state: EnvironmentCommand = serde_json::from_value(json!({"type": "set_feature_state",
            "environment_id": 3, "feature_id": 42, "enabled": true}))
        .unwrap();
        assert!(matches!(
            environment::decide(&env, &state, &facts),
            Err(Error::NotFound {
                entity: "feature",
                ..
            })
        ));
        let elsewhere: EnvironmentCommand =
            serde_json::from_value(json!({"type": "rename_environment",
            "environment_id": 4, "name": "x"}))
            .unwrap();
        assert!(!elsewhere.reads_project());
        assert!(matches!(
            environment::decide(&env, &elsewhere, &facts),
            Err(Error::NotFound {
                entity: "environment",
                ..
            })
        ));
    }
}
