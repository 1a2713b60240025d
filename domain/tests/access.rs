//! The access table: every command type has a requirement, roles are ordered, and four-eyes
//! guards exactly what changes what environments serve.

use domain::access::{Role, Scope, allows, changes_what_is_served, requirement};
use domain::aggregate::Aggregate;
use domain::command::Command;
use domain::directory::{Directory, DirectoryEvent, Principal, UserEntry};
use serde_json::json;

/// A directory with project 2 (environment 3) and user 2 holding `role` on it, and user 2's
/// principal; `organisation_admin` makes user 2 one.
fn user_with(role: Option<Role>, organisation_admin: bool) -> (Directory, Principal) {
    let mut directory = Directory::default();
    let events = [
        DirectoryEvent::OrganisationCreated {
            id: 1,
            name: "o".into(),
        },
        DirectoryEvent::ProjectRegistered {
            id: 2,
            organisation_id: 1,
        },
        DirectoryEvent::EnvironmentRegistered {
            id: 3,
            project_id: 2,
            client_key: "k".into(),
        },
        DirectoryEvent::UserCreated {
            id: 2,
            email: "u@x.io".into(),
            is_admin: organisation_admin,
            password_hash: None,
        },
        DirectoryEvent::ProjectRoleSet {
            project_id: 2,
            user_id: 2,
            role,
        },
    ];
    events.iter().for_each(|e| directory.apply(e));
    let user = UserEntry {
        id: 2,
        email: "u@x.io".into(),
        is_admin: organisation_admin,
    };
    (
        directory,
        Principal::User {
            user,
            token_id: Some(1),
        },
    )
}

fn allowed(needed: &domain::access::Requirement, role: Option<Role>, org_admin: bool) -> bool {
    let (directory, principal) = user_with(role, org_admin);
    allows(&directory, &principal, needed)
}

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
    assert!(!allowed(&needed, None, false));
    assert!(!allowed(&needed, Some(Role::Viewer), false));
    assert!(allowed(&needed, Some(Role::Editor), false));
    assert!(allowed(&needed, Some(Role::Admin), false));
    assert!(allowed(&needed, None, true));
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
        (
            json!({"type": "create_integration", "scope": {"environment": 3}, "kind": "webhook"}),
            Scope::Environment(3),
        ),
        (
            json!({"type": "remove_integration", "scope": {"project": 2}, "integration_id": 1}),
            Scope::Project(2),
        ),
        (
            json!({"type": "update_integration", "scope": {"organisation": 1}, "integration_id": 1}),
            Scope::Organisation(Some(1)),
        ),
    ] {
        let needed = requirement(&command(value.clone()));
        assert_eq!((needed.scope, needed.role), (scope, Role::Admin), "{value}");
        assert!(!allowed(&needed, Some(Role::Approver), false), "{value}");
    }
    let organisation = requirement(&command(
        json!({"type": "create_organisation", "name": "o"}),
    ));
    assert!(
        !allowed(&organisation, Some(Role::Admin), false),
        "a project admin is not an organisation admin"
    );
    assert!(allowed(&organisation, None, true));
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
        json!({"type": "erase_identity", "environment_id": 3, "identifier": "u"}),
        json!({"type": "rename_environment", "environment_id": 3, "name": "x"}),
        json!({"type": "issue_server_side_key", "environment_id": 3, "name": "k", "key_hash": "h"}),
        json!({"type": "update_environment_settings", "environment_id": 3, "minimum_change_request_approvals": 0}),
        json!({"type": "update_project", "project_id": 2, "settings": {"name": "p"}}),
        json!({"type": "create_environment", "project_id": 2, "name": "e", "client_key": "k"}),
        json!({"type": "create_project", "organisation_id": 1, "settings": {"name": "p"}}),
        json!({"type": "create_organisation", "name": "o"}),
        json!({"type": "create_user", "email": "a@b.c", "is_admin": false, "token_hash": "h"}),
        json!({"type": "set_project_role", "project_id": 2, "user_id": 4, "role": "editor"}),
        json!({"type": "issue_api_token", "user_id": 4, "name": "t", "token_hash": "h"}),
        json!({"type": "issue_service_token", "project_id": 2, "name": "ci", "role": "editor", "token_hash": "h"}),
        json!({"type": "rotate_api_token", "token_id": 5, "token_hash": "h"}),
        json!({"type": "revoke_api_token", "token_id": 5}),
        json!({"type": "create_integration", "scope": {"environment": 3}, "kind": "webhook", "config": {"url": "https://x.io"}}),
        json!({"type": "update_integration", "scope": {"environment": 3}, "integration_id": 1, "enabled": false}),
        json!({"type": "remove_integration", "scope": {"environment": 3}, "integration_id": 1}),
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

#[test]
fn a_user_issues_their_own_tokens_and_a_project_admin_issues_service_tokens() {
    let own = requirement(&command(
        json!({"type": "issue_api_token", "user_id": 2, "name": "t", "token_hash": "h"}),
    ));
    let others = requirement(&command(
        json!({"type": "issue_api_token", "user_id": 4, "name": "t", "token_hash": "h"}),
    ));
    assert!(allowed(&own, None, false));
    assert!(!allowed(&others, Some(Role::Admin), false));
    assert!(allowed(&others, None, true));
    let service = requirement(&command(
        json!({"type": "issue_service_token", "project_id": 2, "name": "ci", "role": "viewer", "token_hash": "h"}),
    ));
    assert!(!allowed(&service, Some(Role::Approver), false));
    assert!(allowed(&service, Some(Role::Admin), false));
}

#[test]
fn a_service_token_acts_with_its_role_on_its_project_only() {
    let (directory, _) = user_with(None, false);
    let token = Principal::ServiceToken {
        token_id: 9,
        project_id: 2,
        role: Role::Editor,
    };
    let set = |environment: u64| {
        requirement(&command(json!({"type": "set_feature_state",
            "environment_id": environment, "feature_id": 7, "enabled": true})))
    };
    assert!(allows(&directory, &token, &set(3)));
    assert!(
        !allows(&directory, &token, &set(4)),
        "another project's environment"
    );
    let settings = requirement(&command(json!({"type": "update_environment_settings",
        "environment_id": 3, "minimum_change_request_approvals": 0})));
    assert!(!allows(&directory, &token, &settings));
    let organisation = requirement(&command(
        json!({"type": "create_organisation", "name": "o"}),
    ));
    assert!(!allows(&directory, &token, &organisation));
}
