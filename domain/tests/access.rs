//! The access table: every command type has a requirement, roles are ordered, and four-eyes
//! guards exactly what changes what environments serve.

use domain::access::{Role, Scope, allows, changes_what_is_served, requirement};
use domain::command::Command;
use serde_json::json;

fn command(value: serde_json::Value) -> Command {
    serde_json::from_value(value).unwrap()
}

#[test]
fn roles_are_ordered_and_an_organisation_admin_meets_every_requirement() {
    assert!(
        Role::Viewer < Role::Editor
            && Role::Editor < Role::Approver
            && Role::Approver < Role::Admin
    );
    let set = command(
        json!({"type": "set_feature_state", "environment_id": 3, "feature_id": 7, "enabled": true}),
    );
    let needed = requirement(&set);
    assert_eq!(needed.scope, Scope::Environment(3));
    assert_eq!(needed.role, Role::Editor);
    assert!(!allows(&needed, None, false));
    assert!(!allows(&needed, Some(Role::Viewer), false));
    assert!(allows(&needed, Some(Role::Editor), false));
    assert!(allows(&needed, Some(Role::Admin), false));
    assert!(allows(&needed, None, true));
    assert!(needed.refusal().contains("editor"), "{}", needed.refusal());
}

#[test]
fn settings_keys_and_creations_need_an_admin() {
    for (value, scope) in [
        (
            json!({"type": "update_project", "project_id": 2, "settings": {"name": "p"}}),
            Scope::Project(2),
        ),
        (
            json!({"type": "issue_server_side_key", "environment_id": 3, "name": "k", "key_hash": "h"}),
            Scope::Environment(3),
        ),
        (
            json!({"type": "create_environment", "project_id": 2, "name": "e", "client_key": "k"}),
            Scope::Project(2),
        ),
        (
            json!({"type": "update_environment_settings", "environment_id": 3, "minimum_change_request_approvals": 2}),
            Scope::Environment(3),
        ),
    ] {
        let needed = requirement(&command(value.clone()));
        assert_eq!((needed.scope, needed.role), (scope, Role::Admin), "{value}");
        assert!(!allows(&needed, Some(Role::Approver), false), "{value}");
    }
    let organisation = requirement(&command(
        json!({"type": "create_organisation", "name": "o"}),
    ));
    assert!(
        !allows(&organisation, Some(Role::Admin), false),
        "a project admin is not an organisation admin"
    );
    assert!(allows(&organisation, None, true));
}

#[test]
fn four_eyes_guards_what_environments_serve_and_nothing_else() {
    let guarded = [
        json!({"type": "set_feature_state", "environment_id": 3, "feature_id": 7, "enabled": true}),
        json!({"type": "set_segment_override", "environment_id": 3, "feature_id": 7, "segment_id": 8, "enabled": true}),
        json!({"type": "remove_segment_override", "environment_id": 3, "feature_id": 7, "segment_id": 8}),
        json!({"type": "set_identity_override", "environment_id": 3, "identifier": "u", "feature_id": 7, "enabled": true}),
        json!({"type": "remove_identity_override", "environment_id": 3, "identifier": "u", "feature_id": 7}),
        json!({"type": "create_feature", "project_id": 2, "feature": {"name": "f"}}),
        json!({"type": "update_feature", "project_id": 2, "feature_id": 7, "changes": {}}),
        json!({"type": "delete_feature", "project_id": 2, "feature_id": 7}),
        json!({"type": "create_segment", "project_id": 2, "segment": {"name": "s", "rules": []}}),
        json!({"type": "update_segment", "project_id": 2, "segment_id": 8, "segment": {"name": "s", "rules": []}}),
        json!({"type": "delete_segment", "project_id": 2, "segment_id": 8}),
    ];
    let unguarded = [
        json!({"type": "rename_environment", "environment_id": 3, "name": "x"}),
        json!({"type": "issue_server_side_key", "environment_id": 3, "name": "k", "key_hash": "h"}),
        json!({"type": "update_environment_settings", "environment_id": 3, "minimum_change_request_approvals": 0}),
        json!({"type": "update_project", "project_id": 2, "settings": {"name": "p"}}),
        json!({"type": "create_environment", "project_id": 2, "name": "e", "client_key": "k"}),
        json!({"type": "create_project", "organisation_id": 1, "settings": {"name": "p"}}),
        json!({"type": "create_organisation", "name": "o"}),
        json!({"type": "create_user", "email": "a@b.c", "is_admin": false, "token_hash": "h"}),
        json!({"type": "set_project_role", "project_id": 2, "user_id": 4, "role": "editor"}),
    ];
    for value in &guarded {
        assert!(changes_what_is_served(&command(value.clone())), "{value}");
    }
    for value in &unguarded {
        assert!(!changes_what_is_served(&command(value.clone())), "{value}");
    }
    // Every command type is classified here, so a new one must be placed deliberately.
    let classified: std::collections::BTreeSet<&str> = guarded
        .iter()
        .chain(&unguarded)
        .map(|v| v["type"].as_str().unwrap())
        .collect();
    let all: std::collections::BTreeSet<&str> = Command::types().collect();
    assert_eq!(classified, all);
}
