//! Completeness: every command type, enumerated from the command enums, leaves one row per event
//! with actor, before and after.

use super::*;

/// Runs every command type and checks, after each, that every event it appended has its row.
struct Exercise<'a> {
    server: &'a Server,
    exercised: BTreeSet<String>,
    checked_to: u64,
}

impl Exercise<'_> {
    async fn command(&mut self, command: Value) -> Value {
        let kind = command["type"].as_str().unwrap_or_default().to_string();
        let reply = self
            .server
            .post("/api/v1/commands/", command)
            .send()
            .await
            .expect_status(200)
            .body;
        self.check(&kind).await;
        reply
    }

    /// The rows of the events appended since the last check: one per event, each with actor,
    /// summary, before and after (not both null) and a patch; records `kind` as exercised.
    async fn check(&mut self, kind: &str) -> Vec<Value> {
        let head = self.server.events().await.len() as u64;
        assert!(head > self.checked_to, "{kind} appended nothing");
        let rows = history(self.server, "", None).await;
        let by_position: BTreeMap<u64, &Value> = rows
            .iter()
            .map(|r| (r["position"].as_u64().unwrap_or(0), r))
            .collect();
        let mut new = Vec::new();
        for position in self.checked_to + 1..=head {
            let row = by_position
                .get(&position)
                .unwrap_or_else(|| panic!("{kind}: no audit row for position {position}"));
            assert!(
                !row["actor"].as_str().unwrap_or("").is_empty(),
                "{kind}: {row}"
            );
            let actor_name = row["actor_name"].as_str().unwrap_or("");
            assert!(
                row["summary"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(actor_name)
                    && !actor_name.is_empty(),
                "{kind}: {row}"
            );
            assert!(
                row.get("before").is_some() && row.get("after").is_some(),
                "{kind}: {row}"
            );
            assert!(
                !(row["before"].is_null() && row["after"].is_null()),
                "{kind}: neither before nor after: {row}"
            );
            assert!(row["patch"].is_array(), "{kind}: {row}");
            new.push((*row).clone());
        }
        self.checked_to = head;
        self.exercised.insert(kind.to_string());
        new
    }

    fn row<'r>(rows: &'r [Value], event_type: &str) -> &'r Value {
        rows.iter()
            .find(|r| r["event_type"] == event_type)
            .unwrap_or_else(|| panic!("no {event_type} in {rows:?}"))
    }
}

fn in_(lead: Duration) -> String {
    (time::OffsetDateTime::now_utc() + lead)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn every_command_type_leaves_a_row_with_actor_before_and_after(backend: Backend) {
    let server = Server::start(backend).await;
    let mut x = Exercise {
        server: &server,
        exercised: BTreeSet::new(),
        checked_to: server.events().await.len() as u64,
    };
    let organisation = x
        .command(json!({"type": "create_organisation", "name": "audited org"}))
        .await["created"]["id"]
        .as_u64()
        .unwrap();
    let approver_token = "approver-token-0123456789abcdef";
    let approver = x
        .command(
            json!({"type": "create_user", "email": "ann@example.com", "is_admin": false,
                        "token_hash": sha(approver_token)}),
        )
        .await["created"]["id"]
        .as_u64()
        .unwrap();
    let project = x
        .command(
            json!({"type": "create_project", "organisation_id": organisation,
                        "settings": {"name": "shop"}}),
        )
        .await["created"]["id"]
        .as_u64()
        .unwrap();
    let environment = x
        .command(json!({"type": "create_environment", "project_id": project,
                        "name": "production", "client_key": "audited-key"}))
        .await["created"]["id"]
        .as_u64()
        .unwrap();
    x.command(
        json!({"type": "set_project_role", "project_id": project, "user_id": approver,
                     "role": "approver"}),
    )
    .await;
    let token = x
        .command(
            json!({"type": "issue_api_token", "user_id": approver, "name": "laptop",
                        "token_hash": sha("laptop-secret")}),
        )
        .await["created"]["id"]
        .as_u64()
        .unwrap();
    let service = x
        .command(
            json!({"type": "issue_service_token", "project_id": project, "name": "ci",
                        "role": "editor", "token_hash": sha("ci-secret")}),
        )
        .await["created"]["id"]
        .as_u64()
        .unwrap();
    x.command(json!({"type": "rotate_api_token", "token_id": token,
                     "token_hash": sha("laptop-secret-2")}))
        .await;
    x.command(json!({"type": "revoke_api_token", "token_id": service}))
        .await;
    let integration = x
        .command(
            json!({"type": "create_integration", "scope": {"project": project},
                        "kind": "datadog", "secrets": {"api_key": "a-reference"}}),
        )
        .await["created"]["id"]
        .as_u64()
        .unwrap();
    x.command(
        json!({"type": "update_integration", "scope": {"project": project},
                     "integration_id": integration, "enabled": false}),
    )
    .await;
    x.command(
        json!({"type": "remove_integration", "scope": {"project": project},
                     "integration_id": integration}),
    )
    .await;
    x.command(json!({"type": "update_project", "project_id": project,
                     "settings": {"name": "web shop"}}))
        .await;
    let feature = x
        .command(json!({"type": "create_feature", "project_id": project,
                        "feature": {"name": "checkout", "initial_value": "red"}}))
        .await["created"]["feature"]["id"]
        .as_u64()
        .unwrap();
    let doomed = x
        .command(json!({"type": "create_feature", "project_id": project,
                        "feature": {"name": "doomed"}}))
        .await["created"]["feature"]["id"]
        .as_u64()
        .unwrap();
    x.command(
        json!({"type": "update_feature", "project_id": project, "feature_id": feature,
                     "changes": {"description": "the checkout button"}}),
    )
    .await;
    x.command(json!({"type": "delete_feature", "project_id": project, "feature_id": doomed}))
        .await;
    let rules = |value: &str| {
        json!([{"type": "ALL", "conditions": [
            {"operator": "EQUAL", "property_": "plan", "value": value}], "rules": []}])
    };
    let segment = x
        .command(json!({"type": "create_segment", "project_id": project,
                        "segment": {"name": "beta", "rules": rules("pro")}}))
        .await["created"]["id"]
        .as_u64()
        .unwrap();
    x.command(
        json!({"type": "update_segment", "project_id": project, "segment_id": segment,
                     "segment": {"name": "beta", "rules": rules("team")}}),
    )
    .await;
    let changed = history(&server, "event_type=SegmentUpdated", None).await;
    assert_eq!(
        changed[0]["changes"],
        json!([
            "changed rules[0].conditions[0]: condition `plan EQUAL pro` → condition `plan EQUAL team`"
        ])
    );
    x.command(
        json!({"type": "rename_environment", "environment_id": environment,
                     "name": "prod"}),
    )
    .await;
    x.command(
        json!({"type": "issue_server_side_key", "environment_id": environment,
                     "name": "backend", "key_hash": sha("ser.backend-secret")}),
    )
    .await;
    x.command(
        json!({"type": "set_feature_state", "environment_id": environment,
                     "feature_id": feature, "enabled": true, "feature_state_value": "green"}),
    )
    .await;
    let enabled = history(&server, "event_type=FeatureStateSet", None).await;
    assert_eq!(
        enabled[0]["summary"],
        "admin@example.com enabled `checkout` and set it to \"green\" in prod"
    );
    assert_eq!(
        (
            enabled[0]["before"]["enabled"].clone(),
            enabled[0]["before"]["feature_state_value"].clone()
        ),
        (json!(false), json!("red")),
        "before is what was served: the feature's defaults"
    );
    x.command(
        json!({"type": "set_segment_override", "environment_id": environment,
                     "feature_id": feature, "segment_id": segment, "priority": 1,
                     "enabled": false}),
    )
    .await;
    x.command(
        json!({"type": "remove_segment_override", "environment_id": environment,
                     "feature_id": feature, "segment_id": segment}),
    )
    .await;
    x.command(json!({"type": "delete_segment", "project_id": project, "segment_id": segment}))
        .await;
    x.command(
        json!({"type": "set_identity_override", "environment_id": environment,
                     "identifier": "user-1", "feature_id": feature, "enabled": false}),
    )
    .await;
    x.command(
        json!({"type": "remove_identity_override", "environment_id": environment,
                     "identifier": "user-1", "feature_id": feature}),
    )
    .await;
    x.command(
        json!({"type": "erase_identity", "environment_id": environment,
                     "identifier": "user-1"}),
    )
    .await;
    let erased = &history(&server, "event_type=IdentityErased", None).await[0];
    assert_eq!(erased["identity"], "erased identity");
    assert_eq!(
        erased["summary"],
        "admin@example.com erased an identity in prod"
    );
    x.command(
        json!({"type": "update_environment_settings", "environment_id": environment,
                     "minimum_change_request_approvals": 1}),
    )
    .await;

    // The change-request commands, through their routes: the admin proposes, Ann approves.
    let ann = User {
        id: approver,
        token: approver_token.to_string(),
    };
    let open = |title: &str, live_from: Option<String>| {
        let mut body = json!({"title": title, "commands": [
            {"type": "set_feature_state", "environment_id": environment, "feature_id": feature,
             "enabled": true, "feature_state_value": title}]});
        if let Some(at) = live_from {
            body["live_from"] = json!(at);
        }
        server.post("/api/v1/environments/audited-key/change-requests/", body)
    };
    let act = |id: u64, action: &str, body: Value| {
        server.post(&format!("/api/v1/change-requests/{id}/{action}/"), body)
    };
    let launch = open("launch", None)
        .send()
        .await
        .expect_status(201)
        .u64("id");
    x.check("open_change_request").await;
    server
        .patch(
            &format!("/api/v1/change-requests/{launch}/"),
            json!({"title": "launch it"}),
        )
        .send()
        .await
        .expect_status(200);
    x.check("edit_change_request").await;
    server
        .patch(
            &format!("/api/v1/change-requests/{launch}/"),
            json!({"reviewers": [ann.id]}),
        )
        .send()
        .await
        .expect_status(200);
    let assigned = x.check("assign_reviewers").await;
    Exercise::row(&assigned, "ReviewersAssigned");
    act(launch, "comment", json!({"text": "looks right"}))
        .token(&ann.token)
        .send()
        .await
        .expect_status(200);
    x.check("comment_on_change_request").await;
    act(launch, "approve", json!({}))
        .token(&ann.token)
        .send()
        .await
        .expect_status(200);
    x.check("approve_change_request").await;
    act(launch, "withdraw-approval", json!({}))
        .token(&ann.token)
        .send()
        .await
        .expect_status(200);
    x.check("withdraw_approval").await;
    act(launch, "approve", json!({}))
        .token(&ann.token)
        .send()
        .await
        .expect_status(200);
    x.check("approve_change_request").await;
    act(launch, "commit", json!({}))
        .send()
        .await
        .expect_status(200);
    let committed = x.check("commit_change_request").await;
    let applied = Exercise::row(&committed, "FeatureStateSet");
    assert_eq!(applied["change_request"], launch, "{applied}");
    assert_eq!(
        applied["approvers"],
        json!(["ann@example.com"]),
        "{applied}"
    );
    let commit = Exercise::row(&committed, "ChangeRequestCommitted");
    assert!(
        commit["summary"]
            .as_str()
            .unwrap()
            .ends_with("approved by ann@example.com"),
        "{commit}"
    );

    let rejected = open("reject me", None)
        .send()
        .await
        .expect_status(201)
        .u64("id");
    x.check("open_change_request").await;
    act(rejected, "reject", json!({"reason": "not now"}))
        .token(&ann.token)
        .send()
        .await
        .expect_status(200);
    x.check("reject_change_request").await;
    let closed = open("close me", None)
        .send()
        .await
        .expect_status(201)
        .u64("id");
    x.check("open_change_request").await;
    act(closed, "close", json!({}))
        .send()
        .await
        .expect_status(200);
    x.check("close_change_request").await;

    let later = open("later", Some(in_(Duration::from_secs(3600))))
        .send()
        .await
        .expect_status(201)
        .u64("id");
    act(later, "approve", json!({}))
        .token(&ann.token)
        .send()
        .await
        .expect_status(200);
    act(later, "commit", json!({}))
        .send()
        .await
        .expect_status(200);
    x.check("commit_change_request").await;
    act(later, "cancel-schedule", json!({}))
        .send()
        .await
        .expect_status(200);
    x.check("cancel_schedule").await;

    let soon = open("soon", Some(in_(Duration::from_millis(1500))))
        .send()
        .await
        .expect_status(201)
        .u64("id");
    act(soon, "approve", json!({}))
        .token(&ann.token)
        .send()
        .await
        .expect_status(200);
    act(soon, "commit", json!({}))
        .send()
        .await
        .expect_status(200);
    x.check("commit_change_request").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let shown = server
            .get(&format!("/api/v1/change-requests/{soon}/"))
            .send()
            .await
            .expect_status(200)
            .body;
        if shown["status"] == "committed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not applied: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let went_live = x.check("apply_scheduled_change").await;
    assert!(
        went_live.iter().all(|r| r["actor"] == "scheduler"),
        "{went_live:?}"
    );

    // Enumerated from the command types: a new one without a step here fails.
    let all: BTreeSet<String> = Command::types()
        .chain(ChangeRequestCommand::VARIANTS.iter().copied())
        .map(String::from)
        .collect();
    assert_eq!(x.exercised, all, "exercise every command type here");

    // One row per event, and verify says so.
    let verified = server
        .get("/api/v1/audit-log/verify")
        .send()
        .await
        .expect_status(200)
        .body;
    let events = server.events().await.len() as u64;
    assert_eq!(
        verified["audit_history"],
        json!({"rows": events, "projected_position": events, "log_events": events, "complete": true})
    );

    // A search by feature finds the change requests that touch it, not only its own events.
    let by_feature = history(
        &server,
        &format!("feature={feature}&project={project}"),
        None,
    )
    .await;
    let types: BTreeSet<&str> = by_feature
        .iter()
        .filter_map(|r| r["event_type"].as_str())
        .collect();
    for expected in [
        "FeatureCreated",
        "FeatureStateSet",
        "ChangeRequestOpened",
        "ApprovalGiven",
    ] {
        assert!(types.contains(expected), "{expected} not in {types:?}");
    }

    // No secret, nor its hash, in any row.
    let text = serde_json::to_string(&history(&server, "", None).await).unwrap();
    for secret in [
        approver_token,
        "laptop-secret",
        "ci-secret",
        "ser.backend-secret",
    ] {
        assert!(!text.contains(secret), "{secret}");
        assert!(!text.contains(&sha(secret)), "the hash of {secret}");
    }
}

/// A former leader that applies batches the current one already wrote commits nothing: its
/// rows are refused (they are there already) and its transaction rolls back.
async fn a_former_leaders_batch_commits_nothing(backend: Backend) {
    use projections::runner::Projection;

    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "shop"})).await;
    server.environment(project, "former-leader").await;
    server.feature(project, json!({"name": "banner"})).await;
    let complete = || async {
        server
            .get("/api/v1/audit-log/verify")
            .send()
            .await
            .expect_status(200)
            .body["audit_history"]
            .clone()
    };
    let events = server.events().await;
    let count = events.len() as u64;
    let expected =
        json!({"rows": count, "projected_position": count, "log_events": count, "complete": true});
    assert_eq!(complete().await, expected);

    let pool = projections::connect(server.database_url())
        .await
        .expect("read models open");
    let mut former = projections::audit_history::AuditHistory::new(pool);
    let refused = former
        .apply(&events)
        .await
        .expect_err("the rows are there already");
    assert!(
        matches!(refused, projections::Error::Superseded(p) if p == count),
        "{refused}"
    );
    assert_eq!(complete().await, expected, "nothing more was written");
}

on_both_backends!(
    every_command_type_leaves_a_row_with_actor_before_and_after,
    a_former_leaders_batch_commits_nothing,
);
