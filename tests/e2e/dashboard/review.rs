//! Four-eyes in the dashboard, with two people in two browsers: where the environment asks for
//! an approval, the author's toggle becomes a proposal; the author cannot approve it (no button,
//! and a forged approval is refused); the approver finds it in the inbox and approves; the author
//! commits; the SDK serves the change, and the audit page names both people.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use super::{Browser, Page, served};

/// The first form action on `page` that starts with `prefix`.
fn action(page: &Page, prefix: &str) -> Option<String> {
    let marker = format!("action=\"{prefix}");
    let start = page.html.find(&marker)? + "action=\"".len();
    let end = page.html[start..].find('"')?;
    Some(page.html[start..start + end].to_string())
}

async fn a_proposal_is_approved_by_another_person_and_committed_by_its_author(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "shop"})).await;
    server.environment(project, "prod-key").await;
    let feature = server.feature(project, json!({"name": "banner"})).await;
    server
        .patch(
            "/api/v1/environments/prod-key/",
            json!({"minimum_change_request_approvals": 1}),
        )
        .send()
        .await
        .expect_status(200);
    server.member(project, "author@example.com", "editor").await;
    server
        .member(project, "approver@example.com", "approver")
        .await;

    let author = Browser::signed_in(&server, "author@example.com", "a long secret").await;
    let page = author.get(&format!("/projects/{project}")).await;
    assert!(page.html.contains("Propose turning on"), "{}", page.html);
    assert!(
        !page.html.contains(">Turn on<"),
        "no direct toggle under four-eyes"
    );
    // The direct route is refused too: the rule is the API's.
    let environment_id = server
        .get("/api/v1/environments/prod-key/")
        .send()
        .await
        .expect_status(200)
        .u64("id");
    author
        .post(
            &format!("/environments/{environment_id}/features/{feature}/enabled"),
            &[("csrf", &page.csrf()), ("enabled", "true")],
        )
        .await
        .expect(
            403,
            &format!("/environments/{environment_id}/features/{feature}/enabled"),
        );
    let propose = action(&page, "/environments/").expect("a proposal form");
    assert!(propose.ends_with("/propose"), "{propose}");
    let request = author
        .post(&propose, &[("csrf", &page.csrf()), ("enabled", "true")])
        .await;
    assert_eq!(request.status, 200, "{}", request.html);
    let request_path = request.url.clone();
    assert!(
        request_path.starts_with("/change-requests/"),
        "{request_path}"
    );
    assert!(request.html.contains("Turn on banner in env prod-key"));
    assert!(request.html.contains("0 of 1"), "{}", request.html);
    assert!(
        !request.html.contains(">Approve<"),
        "the author gets no approve button"
    );
    // A forged approval by the author is refused.
    let refused = author
        .post(
            &format!("{request_path}/approve"),
            &[("csrf", &request.csrf())],
        )
        .await;
    assert!(
        refused.status == 403 || refused.status == 409,
        "{}: {}",
        refused.status,
        refused.html
    );

    let approver = Browser::signed_in(&server, "approver@example.com", "a long secret").await;
    let inbox = approver
        .get("/change-requests")
        .await
        .expect(200, "/change-requests");
    assert!(
        inbox.html.contains("Turn on banner") && inbox.html.contains("0 of 1"),
        "{}",
        inbox.html
    );
    let page = approver.get(&request_path).await;
    assert!(page.html.contains(">Approve<"));
    let approved = approver
        .post(
            &format!("{request_path}/approve"),
            &[("csrf", &page.csrf())],
        )
        .await
        .expect(200, &request_path);
    assert!(
        approved.html.contains("1 of 1") && approved.html.contains("approver@example.com"),
        "{}",
        approved.html
    );

    let page = author.get(&request_path).await;
    let committed = author
        .post(&format!("{request_path}/commit"), &[("csrf", &page.csrf())])
        .await
        .expect(200, &request_path);
    assert!(committed.html.contains("committed"), "{}", committed.html);
    served(&server, "prod-key", None, "the committed change", |f| {
        f[0]["enabled"] == json!(true)
    })
    .await;
    let audit = author.get(&format!("/audit?project={project}")).await;
    assert!(
        audit.html.contains("author@example.com")
            && audit.html.contains("approved by approver@example.com"),
        "{}",
        audit.html
    );
}

on_both_backends!(a_proposal_is_approved_by_another_person_and_committed_by_its_author);
