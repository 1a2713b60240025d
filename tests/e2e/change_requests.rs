//! Change requests end to end: proposed by an editor, approved by others (never the author), an
//! edit withdraws approvals, only current approvers (and, if required, assigned ones) count, the
//! commit applies everything in one append naming the request and its approvers, a stale request
//! is refused naming what moved and can be rebased, and of two racing commits one wins.

use flaglog_tests::{Backend, Server, User, on_both_backends, race};
use serde_json::{Value, json};

/// A project with one environment (four-eyes at `minimum`), a feature, an editor who proposes
/// and three approvers.
pub struct Review {
    pub server: Server,
    pub project: u64,
    pub environment: u64,
    pub key: &'static str,
    pub feature: u64,
    pub author: User,
    pub approvers: [User; 3],
}

pub async fn review(backend: Backend, minimum: u32) -> Review {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "reviewed"})).await;
    let key = "reviewed-key";
    server.environment(project, key).await;
    let feature = server.feature(project, json!({"name": "checkout"})).await;
    let environment = server
        .patch(
            &format!("/api/v1/environments/{key}/"),
            json!({"minimum_change_request_approvals": minimum}),
        )
        .send()
        .await
        .expect_status(200)
        .u64("id");
    let author = server.member(project, "author@example.com", "editor").await;
    let approvers = [
        server.member(project, "b@example.com", "approver").await,
        server.member(project, "c@example.com", "approver").await,
        server.member(project, "d@example.com", "approver").await,
    ];
    Review {
        server,
        project,
        environment,
        key,
        feature,
        author,
        approvers,
    }
}

impl Review {
    pub fn set_state(&self, value: &str) -> Value {
        json!({"type": "set_feature_state", "environment_id": self.environment,
               "feature_id": self.feature, "enabled": true, "feature_state_value": value})
    }

    pub async fn open(&self, commands: Vec<Value>, reviewers: &[&User]) -> Value {
        let reviewers: Vec<u64> = reviewers.iter().map(|u| u.id).collect();
        self.server
            .post(
                &format!("/api/v1/environments/{}/change-requests/", self.key),
                json!({"title": "turn checkout on", "commands": commands, "reviewers": reviewers}),
            )
            .token(&self.author.token)
            .send()
            .await
            .expect_status(201)
            .body
    }

    pub fn act(&self, id: &Value, action: &str, who: &User) -> flaglog_tests::Call {
        self.server
            .post(
                &format!("/api/v1/change-requests/{id}/{action}/"),
                json!({}),
            )
            .token(&who.token)
    }

    pub async fn show(&self, id: &Value) -> Value {
        self.server
            .get(&format!("/api/v1/change-requests/{id}/"))
            .send()
            .await
            .expect_status(200)
            .body
    }

    pub async fn served_value(&self) -> Value {
        let states = self
            .server
            .get(&format!("/api/v1/environments/{}/featurestates/", self.key))
            .send()
            .await
            .expect_status(200)
            .body;
        states
            .as_array()
            .and_then(|all| all.iter().find(|s| s["feature"]["id"] == self.feature))
            .map(|s| s["feature_state_value"].clone())
            .unwrap_or(Value::Null)
    }
}

async fn approved_by_others_and_committed_in_one_append_that_names_the_request(backend: Backend) {
    let r = review(backend, 1).await;
    let [b, c, _] = &r.approvers;
    let opened = r.open(vec![r.set_state("blue")], &[b]).await;
    let id = opened["id"].clone();
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["approval_count"], 0);
    assert_eq!(opened["required_approvals"], 1);
    let subject = format!("environment-{}/feature-{}", r.environment, r.feature);
    assert!(opened["base_versions"].get(&subject).is_some(), "{opened}");

    // The author cannot approve their own request, and nothing commits without approval.
    let own = r
        .act(&id, "approve", &r.author)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    assert!(
        own.str("message").contains("author"),
        "{}",
        own.str("message")
    );
    // Nor with a second token of their own.
    let second = r.server.personal_token(&r.author, "laptop").await;
    assert_ne!(second.token, r.author.token);
    let own = r
        .act(&id, "approve", &second)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    assert!(own.str("message").contains("author"), "{}", own.text);
    r.act(&id, "commit", &r.author)
        .send()
        .await
        .expect_error(409, "conflict", None);

    let approved = r.act(&id, "approve", b).send().await.expect_status(200);
    assert_eq!(approved.body["approval_count"], 1);
    r.act(&id, "approve", b)
        .send()
        .await
        .expect_error(409, "conflict", None);

    // An edit of the content withdraws every approval, as events.
    let before_edit = r.server.events().await.len();
    let edited = r
        .server
        .patch(
            &format!("/api/v1/change-requests/{id}/"),
            json!({"commands": [r.set_state("green")]}),
        )
        .token(&r.author.token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(edited.body["approval_count"], 0);
    assert_eq!(edited.body["approvals"], json!([]), "{}", edited.body);
    let types: Vec<String> = r.server.events().await[before_edit..]
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(types, ["ChangeRequestEdited", "ApprovalWithdrawn"]);
    r.act(&id, "commit", &r.author)
        .send()
        .await
        .expect_error(409, "conflict", None);

    r.act(&id, "approve", c).send().await.expect_status(200);
    assert_eq!(r.served_value().await, Value::Null, "nothing applied yet");
    let approved = r.show(&id).await;
    assert_eq!(
        approved["approvals"],
        json!([{"user_id": c.id, "current": true}])
    );
    let before_commit = r.server.events().await.len();
    let committed = r
        .act(&id, "commit", &r.author)
        .send()
        .await
        .expect_status(200);
    assert_eq!(committed.body["status"], "committed");
    assert_eq!(r.served_value().await, "green");

    // One append: the change and the commit, the change naming the request and its approver.
    let events = r.server.events().await;
    let appended = &events[before_commit..];
    let types: Vec<&str> = appended.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["FeatureStateSet", "ChangeRequestCommitted"]);
    assert_eq!(
        appended[0].recorded_at_micros, appended[1].recorded_at_micros,
        "one append"
    );
    let stream = format!("change-request-{id}");
    assert_eq!(appended[1].stream_id, stream);
    assert_eq!(
        appended[0].metadata.causation_id.as_deref(),
        Some(stream.as_str())
    );
    assert_eq!(appended[0].metadata.approvers, [format!("user:{}", c.id)]);

    // A committed request is final.
    r.act(&id, "approve", b)
        .send()
        .await
        .expect_error(409, "conflict", None);
}

async fn only_current_and_if_required_assigned_approvers_count(backend: Backend) {
    let r = review(backend, 2).await;
    let [b, c, d] = &r.approvers;
    let id = r.open(vec![r.set_state("v")], &[b]).await["id"].clone();
    r.act(&id, "approve", b).send().await.expect_status(200);
    let two = r.act(&id, "approve", c).send().await.expect_status(200);
    assert_eq!(two.body["approval_count"], 2);

    // C loses the approver role: their approval no longer counts.
    r.server.grant(r.project, c, "viewer").await;
    assert_eq!(r.show(&id).await["approval_count"], 1);
    let short = r
        .act(&id, "commit", &r.author)
        .send()
        .await
        .expect_error(409, "conflict", None);
    assert!(
        short.str("message").contains("2 approvals"),
        "{}",
        short.str("message")
    );

    // A viewer cannot approve at all.
    r.act(&id, "approve", c)
        .send()
        .await
        .expect_error(403, "forbidden", None);

    r.act(&id, "approve", d).send().await.expect_status(200);
    assert_eq!(r.show(&id).await["approval_count"], 2);
    // Only assigned reviewers count now: D is not assigned.
    r.server
        .patch(
            &format!("/api/v1/environments/{}/", r.key),
            json!({"approvals_from_assigned_reviewers_only": true}),
        )
        .send()
        .await
        .expect_status(200);
    assert_eq!(r.show(&id).await["approval_count"], 1);
    r.act(&id, "commit", &r.author)
        .send()
        .await
        .expect_error(409, "conflict", None);
    // Assigning D keeps the content, so the approvals stand, and D's now counts.
    let assigned = r
        .server
        .patch(
            &format!("/api/v1/change-requests/{id}/"),
            json!({"reviewers": [d.id]}),
        )
        .token(&r.author.token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(assigned.body["approval_count"], 2, "{}", assigned.body);
    r.act(&id, "commit", &r.author)
        .send()
        .await
        .expect_status(200);
    assert_eq!(r.served_value().await, "v");

    // A rejection is final, with its reason.
    let other = r.open(vec![r.set_state("w")], &[b]).await["id"].clone();
    r.server
        .post(
            &format!("/api/v1/change-requests/{other}/reject/"),
            json!({"reason": "not during the sale"}),
        )
        .token(&b.token)
        .send()
        .await
        .expect_status(200);
    let rejected = r.show(&other).await;
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reason"], "not during the sale");
    r.act(&other, "commit", &r.author)
        .send()
        .await
        .expect_error(409, "conflict", None);
}

async fn a_stale_request_names_what_moved_and_can_be_rebased(backend: Backend) {
    let r = review(backend, 1).await;
    let [b, _, _] = &r.approvers;
    let id = r.open(vec![r.set_state("proposed")], &[]).await["id"].clone();
    r.act(&id, "approve", b).send().await.expect_status(200);

    // The feature's state moves meanwhile (an admin's break-glass change).
    r.server
        .put(
            &format!(
                "/api/v1/environments/{}/featurestates/{}/",
                r.key, r.feature
            ),
            json!({"enabled": false}),
        )
        .header("X-Break-Glass-Reason", "incident")
        .send()
        .await
        .expect_status(200);
    let shown = r.show(&id).await;
    let conflict = &shown["conflicts"][0];
    assert_eq!(
        conflict["key"],
        format!("environment-{}/feature-{}", r.environment, r.feature)
    );
    let (base, current) = (
        conflict["base_revision"].as_u64().expect("base"),
        conflict["current_revision"].as_u64().expect("current"),
    );
    assert!(current > base, "{conflict}");

    let stale = r
        .act(&id, "commit", &r.author)
        .send()
        .await
        .expect_error(409, "conflict", None);
    let expected = format!(
        "feature {} in environment {} was at revision {base} and is now at revision {current}",
        r.feature, r.environment
    );
    assert!(
        stale.str("message").contains(&expected),
        "{}",
        stale.str("message")
    );
    assert_eq!(r.served_value().await, Value::Null);

    // Rebasing takes the current revisions and withdraws the approval of the old base.
    let rebased = r
        .act(&id, "rebase", &r.author)
        .send()
        .await
        .expect_status(200);
    assert_eq!(rebased.body["conflicts"], json!([]));
    assert_eq!(rebased.body["approval_count"], 0);
    r.act(&id, "approve", b).send().await.expect_status(200);
    r.act(&id, "commit", &r.author)
        .send()
        .await
        .expect_status(200);
    assert_eq!(r.served_value().await, "proposed");
}

async fn of_racing_commits_one_wins(backend: Backend) {
    let r = review(backend, 1).await;
    let [b, _, _] = &r.approvers;
    for round in 0..5 {
        let first = r.open(vec![r.set_state(&format!("a{round}"))], &[]).await["id"].clone();
        let second = r.open(vec![r.set_state(&format!("b{round}"))], &[]).await["id"].clone();
        r.act(&first, "approve", b).send().await.expect_status(200);
        r.act(&second, "approve", b).send().await.expect_status(200);
        // Two requests on the same feature, and the same request twice.
        let replies = race(vec![
            r.act(&first, "commit", &r.author),
            r.act(&second, "commit", &r.author),
            r.act(&first, "commit", &r.author),
        ])
        .await;
        let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| [200, 409].contains(s)),
            "{statuses:?}"
        );
        let winner = if replies[1].status == 200 {
            &second
        } else {
            &first
        };
        let won = r.show(winner).await;
        assert_eq!(won["status"], "committed");
        let expected = won["commands"][0]["feature_state_value"].clone();
        assert_eq!(r.served_value().await, expected, "round {round}");
        let loser = if replies[1].status == 200 {
            &first
        } else {
            &second
        };
        assert_eq!(r.show(loser).await["status"], "open", "round {round}");
        assert_eq!(
            r.server
                .events()
                .await
                .iter()
                .filter(|e| e.event_type == "ChangeRequestCommitted")
                .count(),
            round + 1
        );
    }
}

async fn project_definitions_go_through_the_projects_requests(backend: Backend) {
    let r = review(backend, 1).await;
    let [b, _, _] = &r.approvers;
    r.server
        .put(
            &format!("/api/v1/projects/{}/", r.project),
            json!({"name": "reviewed", "minimum_change_request_approvals": 1}),
        )
        .send()
        .await
        .expect_status(200);
    let create = json!({"type": "create_feature", "project_id": r.project,
                        "feature": {"name": "new_flag"}});
    // An environment's request may not carry a project's change.
    r.server
        .post(
            &format!("/api/v1/environments/{}/change-requests/", r.key),
            json!({"title": "t", "commands": [create.clone()]}),
        )
        .token(&r.author.token)
        .send()
        .await
        .expect_error(400, "bad_request", None);
    let opened = r
        .server
        .post(
            &format!("/api/v1/projects/{}/change-requests/", r.project),
            json!({"title": "a new flag", "commands": [create]}),
        )
        .token(&r.author.token)
        .send()
        .await
        .expect_status(201);
    let id = opened.body["id"].clone();
    r.act(&id, "approve", b).send().await.expect_status(200);
    r.act(&id, "commit", &r.author)
        .send()
        .await
        .expect_status(200);
    let features = r
        .server
        .get(&format!("/api/v1/projects/{}/features/", r.project))
        .send()
        .await
        .expect_status(200)
        .body;
    assert!(
        features
            .as_array()
            .is_some_and(|all| all.iter().any(|f| f["name"] == "new_flag")),
        "{features}"
    );
    let listed = r
        .server
        .get(&format!(
            "/api/v1/projects/{}/change-requests/?status=committed",
            r.project
        ))
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

on_both_backends!(
    approved_by_others_and_committed_in_one_append_that_names_the_request,
    only_current_and_if_required_assigned_approvers_count,
    a_stale_request_names_what_moved_and_can_be_rebased,
    of_racing_commits_one_wins,
    project_definitions_go_through_the_projects_requests,
);
