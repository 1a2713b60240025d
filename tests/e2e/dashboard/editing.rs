//! Managing flags in the dashboard, each step checked where it matters (what SDKs are served):
//! a feature's state and value, its multivariate options and allocations, a segment made with
//! the rule builder and overridden, an identity override, search, restoring a version, and
//! deleting the feature.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use super::{Browser, environment_id, flag, served, submit};

async fn a_feature_is_managed_from_its_page_and_sdks_see_each_change(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "shop"})).await;
    server.environment(project, "edit-key").await;
    let environment = environment_id(&server, "edit-key").await;
    let feature = server.feature(project, json!({"name": "banner"})).await;
    server.member(project, "owner@example.com", "admin").await;
    let browser = Browser::signed_in(&server, "owner@example.com", "a long secret").await;
    let feature_page = format!("/projects/{project}/features/{feature}");
    let page = browser.get(&feature_page).await.expect(200, &feature_page);
    assert!(
        page.html.contains("Change state in env edit-key"),
        "{}",
        page.html
    );

    // State and value.
    let state = format!("/environments/{environment}/features/{feature}/state");
    let fields = [("enabled", "on"), ("kind", "string"), ("value", "hello")];
    submit(&browser, &page, &state, &fields)
        .await
        .expect(200, &feature_page);
    served(&server, "edit-key", None, "on with its value", |f| {
        flag(f, "banner")["enabled"] == json!(true)
            && flag(f, "banner")["feature_state_value"] == json!("hello")
    })
    .await;
    // A value that is not of its kind is a 400 page naming the field; nothing changes.
    let refused = submit(
        &browser,
        &page,
        &state,
        &[("kind", "integer"), ("value", "4.5")],
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    assert!(refused.html.contains("not an integer"), "{}", refused.html);

    // A multivariate option (the blank spare row is ignored), then all identities on it.
    let definition = format!("{feature_page}/definition");
    let fields = [
        ("description", "the top banner"),
        ("tags", "ui, marketing"),
        ("initial_kind", "none"),
        ("option0_kind", "string"),
        ("option0_value", "blue"),
        ("option0_key", "b"),
        ("option0_percentage", "0"),
        ("option1_kind", "string"),
        ("option1_value", ""),
        ("option1_percentage", "0"),
    ];
    submit(&browser, &page, &definition, &fields)
        .await
        .expect(200, &feature_page);
    let defined = server
        .get(&format!("/api/v1/projects/{project}/features/{feature}/"))
        .send()
        .await
        .expect_status(200)
        .body;
    let options = defined["multivariate_options"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(options.len(), 1, "{defined}");
    assert_eq!(defined["tags"], json!(["ui", "marketing"]));
    let option = options[0]["id"].as_u64().unwrap().to_string();
    let page = browser.get(&feature_page).await;
    let share = format!("allocation_{option}");
    let fields = [
        ("enabled", "on"),
        ("kind", "string"),
        ("value", "hello"),
        (share.as_str(), "100"),
    ];
    submit(&browser, &page, &state, &fields)
        .await
        .expect(200, &feature_page);
    served(
        &server,
        "edit-key",
        Some(("someone", json!([]))),
        "the variant",
        |f| flag(f, "banner")["feature_state_value"] == json!("blue"),
    )
    .await;

    // A segment from the rule builder, with every operator offered; then an override of it.
    let segments = format!("/projects/{project}/segments");
    let page = browser.get(&segments).await.expect(200, &segments);
    for operator in [
        "EQUAL",
        "PERCENTAGE_SPLIT",
        "MODULO",
        "IS_NOT_SET",
        "REGEX",
        "IN",
    ] {
        assert!(
            page.html.contains(&format!("value=\"{operator}\"")),
            "{operator}"
        );
    }
    let fields = [
        ("name", "pro users"),
        ("group0_type", "ANY"),
        ("group0_c0_property", "plan"),
        ("group0_c0_operator", "EQUAL"),
        ("group0_c0_value", "pro"),
        ("group0_c1_property", ""),
        ("group0_c1_operator", ""),
        ("group0_c1_value", ""),
    ];
    let listed = submit(&browser, &page, &segments, &fields)
        .await
        .expect(200, &segments);
    assert!(
        listed.html.contains("pro users") && listed.html.contains("<code>plan</code> ="),
        "{}",
        listed.html
    );
    let segment = server
        .get(&format!("/api/v1/projects/{project}/segments/"))
        .send()
        .await
        .expect_status(200)
        .body[0]["id"]
        .as_u64()
        .unwrap()
        .to_string();
    let overrides = format!("/environments/{environment}/features/{feature}/segment-overrides");
    let fields = [
        ("segment", segment.as_str()),
        ("priority", "1"),
        ("enabled", "on"),
        ("kind", "string"),
        ("value", "for pros"),
        (share.as_str(), "0"),
    ];
    let page = browser.get(&feature_page).await;
    let shown = submit(&browser, &page, &overrides, &fields)
        .await
        .expect(200, &feature_page);
    assert!(shown.html.contains("pro users"), "{}", shown.html);
    let pro = json!([{"trait_key": "plan", "trait_value": "pro"}]);
    served(
        &server,
        "edit-key",
        Some(("a-pro", pro.clone())),
        "the segment override",
        |f| flag(f, "banner")["feature_state_value"] == json!("for pros"),
    )
    .await;

    // An identity override, looked up on the page afterwards.
    let identities = format!("/environments/{environment}/features/{feature}/identity-overrides");
    let fields = [
        ("identifier", "vip"),
        ("enabled", "on"),
        ("kind", "string"),
        ("value", "for vip"),
    ];
    let looked_up = submit(&browser, &shown, &identities, &fields).await;
    assert_eq!(
        (looked_up.status, looked_up.url.as_str()),
        (200, feature_page.as_str())
    );
    assert!(
        looked_up.html.contains("&quot;for vip&quot;") || looked_up.html.contains("\"for vip\""),
        "{}",
        looked_up.html
    );
    served(
        &server,
        "edit-key",
        Some(("vip", json!([]))),
        "the identity override",
        |f| flag(f, "banner")["feature_state_value"] == json!("for vip"),
    )
    .await;

    // Search.
    let found = browser.get(&format!("/projects/{project}?q=BANN")).await;
    assert!(found.html.contains(&format!("id=\"feature-{feature}\"")));
    let none = browser
        .get(&format!("/projects/{project}?q=checkout"))
        .await;
    assert!(!none.html.contains(&format!("id=\"feature-{feature}\"")));

    // Restoring the first version takes away what came after it: the override, the split.
    let versions = format!("/environments/{environment}/features/{feature}/versions");
    let page = browser.get(&versions).await.expect(200, &versions);
    assert!(page.html.contains("Restore version 1"), "{}", page.html);
    let compared = browser.get(&format!("{versions}?from=1&to=3")).await;
    assert!(
        compared.html.contains("Segment") && compared.html.contains("override added"),
        "{}",
        compared.html
    );
    submit(&browser, &page, &format!("{versions}/1/restore"), &[])
        .await
        .expect(200, &versions);
    served(
        &server,
        "edit-key",
        Some(("a-pro", pro)),
        "version 1 again",
        |f| flag(f, "banner")["feature_state_value"] == json!("hello"),
    )
    .await;

    // Deleting it.
    let page = browser.get(&feature_page).await;
    let project_page = format!("/projects/{project}");
    submit(&browser, &page, &format!("{feature_page}/delete"), &[])
        .await
        .expect(200, &project_page);
    served(&server, "edit-key", None, "the feature gone", |f| {
        f.as_array().is_some_and(|all| all.is_empty())
    })
    .await;
}

on_both_backends!(a_feature_is_managed_from_its_page_and_sdks_see_each_change);
