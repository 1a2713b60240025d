//! A project's other pages: settings (a feature name rule the create form then obeys; read-only
//! for a viewer), time travel (the environment as it was at a past position, beside now), and
//! integrations (delivery status, a dead letter, replayed from the page once the receiver is
//! back).

use flaglog_tests::receiver::Receiver;
use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use super::{Browser, environment_id, submit};

async fn settings_time_travel_and_integrations_pages_work(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "shop"})).await;
    server.environment(project, "pp-key").await;
    let environment = environment_id(&server, "pp-key").await;
    server.member(project, "owner@example.com", "admin").await;
    server.member(project, "vi@example.com", "viewer").await;
    let owner = Browser::signed_in(&server, "owner@example.com", "a long secret").await;

    // Settings: a feature name rule, obeyed by the create form.
    let settings = format!("/projects/{project}/settings");
    let page = owner.get(&settings).await.expect(200, &settings);
    let fields = [
        ("name", "shop"),
        ("feature_name_regex", "[a-z_]+"),
        ("minimum_change_request_approvals", "0"),
    ];
    let saved = submit(&owner, &page, &settings, &fields)
        .await
        .expect(200, &settings);
    assert!(saved.html.contains("value=\"[a-z_]+\""), "{}", saved.html);
    let features = format!("/projects/{project}/features");
    let refused = submit(&owner, &page, &features, &[("name", "BadName")]).await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    assert!(refused.html.contains("[a-z_]+"), "{}", refused.html);
    let project_page = format!("/projects/{project}");
    submit(&owner, &page, &features, &[("name", "good_name")])
        .await
        .expect(200, &project_page);
    let viewer = Browser::signed_in(&server, "vi@example.com", "a long secret").await;
    let read_only = viewer.get(&settings).await.expect(200, &settings);
    assert!(
        read_only.html.contains("<fieldset disabled>"),
        "{}",
        read_only.html
    );
    let forged = submit(&viewer, &read_only, &settings, &fields).await;
    assert_eq!(forged.status, 403, "{}", forged.html);

    // Time travel: before the toggle it was off; now it is on.
    let before = server.events().await.len().to_string();
    let feature = server
        .get(&format!("/api/v1/projects/{project}/features/"))
        .send()
        .await
        .expect_status(200)
        .body[0]["id"]
        .as_u64()
        .unwrap();
    server
        .put(
            &format!("/api/v1/environments/pp-key/featurestates/{feature}/"),
            json!({"enabled": true}),
        )
        .send()
        .await
        .expect_status(200);
    let travel = format!("/projects/{project}/time-travel");
    let then = viewer
        .get(&format!(
            "{travel}?environment={environment}&position={before}"
        ))
        .await
        .expect(200, &travel);
    let row = then
        .html
        .find("<code>good_name</code>")
        .expect("the feature's row");
    let cells = &then.html[row..];
    let off = cells.find(">Off<").expect("off then");
    let on = cells.find(">On<").expect("on now");
    assert!(off < on, "then off, now on: {cells}");
    let future = viewer
        .get(&format!(
            "{travel}?environment={environment}&at=2999-01-01T00:00"
        ))
        .await;
    assert_eq!(future.status, 400, "{}", future.html);
    let nonsense = viewer.get(&format!("{travel}?environment=abc")).await;
    assert_eq!(nonsense.status, 400, "{}", nonsense.html);
    assert!(
        nonsense.html.contains("<h1>400 Bad Request</h1>"),
        "{}",
        nonsense.html
    );

    // Integrations: a failing receiver's event is dead-lettered; replayed, it arrives.
    let receiver = Receiver::start().await;
    receiver.fail_always(500);
    let config = json!({"url": format!("{}/hook", receiver.base), "retry_initial_ms": 20, "retry_max_ms": 50, "max_attempts": 2});
    server
        .post(
            "/api/v1/environments/pp-key/integrations/",
            json!({"kind": "webhook", "config": config}),
        )
        .send()
        .await
        .expect_status(201);
    server
        .put(
            &format!("/api/v1/environments/pp-key/featurestates/{feature}/"),
            json!({"enabled": false}),
        )
        .send()
        .await
        .expect_status(200);
    let integrations = format!("/projects/{project}/integrations");
    let mut page = owner.get(&integrations).await.expect(200, &integrations);
    for _ in 0..400 {
        if page.html.contains("Dead letters</caption>") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        page = owner.get(&integrations).await;
    }
    assert!(
        page.html.contains("Dead letters</caption>")
            && page.html.contains("webhook on environment env pp-key"),
        "{}",
        page.html
    );
    assert_eq!(
        viewer.get(&integrations).await.status,
        403,
        "administrators only"
    );
    receiver.recover();
    let action = {
        let start = page.html.find("/replay\"").expect("a replay form");
        let from = page.html[..start].rfind("action=\"").unwrap() + "action=\"".len();
        page.html[from..start + "/replay".len()].to_string()
    };
    submit(&owner, &page, &action, &[("from_position", "")])
        .await
        .expect(200, &integrations);
    receiver
        .until("the replayed dead letter", |d| !d.is_empty())
        .await;
}

on_both_backends!(settings_time_travel_and_integrations_pages_work);
