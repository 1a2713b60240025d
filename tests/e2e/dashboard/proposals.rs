//! With four-eyes on, every edit form proposes instead of changing: a feature's state (with a
//! schedule), its definition (the project's four-eyes), a segment; nothing is served until a
//! request is approved and committed. A scheduled request can have its schedule cancelled, and
//! an open one shows its impact on known identities.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use super::{Browser, environment_id, flag, served, submit};

async fn with_four_eyes_every_edit_form_proposes_a_change(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "shop"})).await;
    server.environment(project, "fe-key").await;
    let environment = environment_id(&server, "fe-key").await;
    let feature = server.feature(project, json!({"name": "banner"})).await;
    server.member(project, "owner@example.com", "admin").await;
    server.member(project, "ed@example.com", "editor").await;
    server.member(project, "ap@example.com", "approver").await;
    // A known identity, so that the impact has someone to evaluate.
    served(
        &server,
        "fe-key",
        Some(("known", json!([{"trait_key": "plan", "trait_value": "x"}]))),
        "an identity",
        |_| true,
    )
    .await;

    // The administrator turns four-eyes on for the project and the environment in settings.
    let owner = Browser::signed_in(&server, "owner@example.com", "a long secret").await;
    let settings = format!("/projects/{project}/settings");
    let page = owner.get(&settings).await.expect(200, &settings);
    let fields = [("name", "shop"), ("minimum_change_request_approvals", "1")];
    submit(&owner, &page, &settings, &fields)
        .await
        .expect(200, &settings);
    let fields = [
        ("minimum_change_request_approvals", "1"),
        ("feature_versioning", "on"),
    ];
    let saved = submit(
        &owner,
        &page,
        &format!("/environments/{environment}/settings"),
        &fields,
    )
    .await
    .expect(200, &settings);
    assert!(
        saved.html.contains("name=\"feature_versioning\" checked"),
        "{}",
        saved.html
    );
    let project_settings = server
        .get(&format!("/api/v1/projects/{project}/"))
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(
        project_settings["minimum_change_request_approvals"],
        json!(1),
        "{project_settings}"
    );

    // The editor's forms say "Propose"; the state form opens a scheduled proposal.
    let editor = Browser::signed_in(&server, "ed@example.com", "a long secret").await;
    let feature_page = format!("/projects/{project}/features/{feature}");
    let page = editor.get(&feature_page).await.expect(200, &feature_page);
    assert!(
        page.html.contains("Propose change") && !page.html.contains(">Save<"),
        "{}",
        page.html
    );
    let state = format!("/environments/{environment}/features/{feature}/state");
    let fields = [
        ("enabled", "on"),
        ("kind", "none"),
        ("live_from", "2099-01-01T00:00"),
    ];
    let request = submit(&editor, &page, &state, &fields).await;
    assert_eq!(request.status, 200, "{}", request.html);
    assert!(
        request.url.starts_with("/change-requests/"),
        "{}",
        request.url
    );
    assert!(
        request.html.contains("Change banner in env fe-key"),
        "{}",
        request.html
    );
    assert!(request.html.contains("Goes live at"), "{}", request.html);
    assert!(
        request
            .html
            .contains("known identities would be served something else"),
        "{}",
        request.html
    );
    let scheduled_request = request.url.clone();

    // The definition and a new segment are proposed in the project.
    let fields = [("description", "proposed"), ("initial_kind", "none")];
    let proposed = submit(
        &editor,
        &page,
        &format!("{feature_page}/definition"),
        &fields,
    )
    .await;
    assert!(
        proposed.url.starts_with("/change-requests/"),
        "{}",
        proposed.url
    );
    assert!(proposed.html.contains("Change the definition of banner"));
    // Its page shows the field before and after; its author may schedule it.
    assert!(
        proposed.html.contains("banner: description") && proposed.html.contains("proposed&quot;"),
        "{}",
        proposed.html
    );
    let rescheduled = submit(
        &editor,
        &proposed,
        &format!("{}/schedule", proposed.url),
        &[("live_from", "2099-02-03T04:05")],
    )
    .await
    .expect(200, &proposed.url);
    assert!(
        rescheduled.html.contains("2099-02-03T04:05"),
        "{}",
        rescheduled.html
    );
    // A new feature is proposed too.
    let project_page = editor.get(&format!("/projects/{project}")).await;
    assert!(
        project_page.html.contains("Propose feature"),
        "{}",
        project_page.html
    );
    let proposed = submit(
        &editor,
        &project_page,
        &format!("/projects/{project}/features"),
        &[("name", "later")],
    )
    .await;
    assert!(
        proposed.url.starts_with("/change-requests/"),
        "{}",
        proposed.url
    );
    assert!(
        proposed.html.contains("Create feature later"),
        "{}",
        proposed.html
    );
    let segments = format!("/projects/{project}/segments");
    let page = editor.get(&segments).await;
    assert!(page.html.contains("Propose change"));
    let fields = [
        ("name", "beta"),
        ("group0_type", "ALL"),
        ("group0_c0_property", "beta"),
        ("group0_c0_operator", "IS_SET"),
        ("group0_c0_value", ""),
    ];
    let proposed = submit(&editor, &page, &segments, &fields).await;
    assert!(
        proposed.url.starts_with("/change-requests/"),
        "{}",
        proposed.url
    );
    assert!(
        proposed.html.contains("<code>beta</code> is set"),
        "{}",
        proposed.html
    );
    let defined = server
        .get(&format!("/api/v1/projects/{project}/segments/"))
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(defined, json!([]), "nothing is created before review");
    served(&server, "fe-key", None, "still off", |f| {
        flag(f, "banner")["enabled"] == json!(false)
    })
    .await;

    // Approved and committed, the state request is scheduled; its schedule can be cancelled.
    let approver = Browser::signed_in(&server, "ap@example.com", "a long secret").await;
    let page = approver.get(&scheduled_request).await;
    submit(
        &approver,
        &page,
        &format!("{scheduled_request}/approve"),
        &[],
    )
    .await
    .expect(200, &scheduled_request);
    let page = editor.get(&scheduled_request).await;
    let committed = submit(&editor, &page, &format!("{scheduled_request}/commit"), &[])
        .await
        .expect(200, &scheduled_request);
    assert!(
        committed.html.contains("Cancel the schedule"),
        "{}",
        committed.html
    );
    let cancelled = submit(
        &editor,
        &committed,
        &format!("{scheduled_request}/cancel-schedule"),
        &[],
    )
    .await
    .expect(200, &scheduled_request);
    assert!(
        cancelled.html.contains("<strong>open</strong>"),
        "{}",
        cancelled.html
    );
    served(&server, "fe-key", None, "still off", |f| {
        flag(f, "banner")["enabled"] == json!(false)
    })
    .await;
}

on_both_backends!(with_four_eyes_every_edit_form_proposes_a_change);
