//! flaglog on flaglog: a dashboard reads its dark mode and announcement banner as flags from a
//! flaglog SDK endpoint (here another flaglog's); turning a flag off there turns it off here.

use std::time::Duration;

use api::dashboard::own_flags::OwnFlagsSource;
use flaglog_tests::{Backend, Server, on_both_backends, test_node};
use serde_json::json;

use super::Browser;

async fn set_flag(server: &Server, feature: u64, enabled: bool, value: serde_json::Value) {
    server
        .put(
            &format!("/api/v1/environments/ff-key/featurestates/{feature}/"),
            json!({"enabled": enabled, "feature_state_value": value}),
        )
        .send()
        .await
        .expect_status(200);
}

/// Polls `browser`'s home page until `check` holds of its HTML.
async fn home_until(browser: &Browser, check: impl Fn(&str) -> bool) -> String {
    let mut html = String::new();
    for _ in 0..100 {
        html = browser.get("/").await.html;
        if check(&html) {
            return html;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the home page never matched: {html}");
}

async fn the_dashboards_theme_and_banner_are_flags_read_through_an_sdk_endpoint(backend: Backend) {
    let source = Server::start(backend).await;
    let project = source.project(json!({"name": "flaglog"})).await;
    source.environment(project, "ff-key").await;
    let dark = source.feature(project, json!({"name": "dark_mode"})).await;
    let banner = source
        .feature(project, json!({"name": "announcement"}))
        .await;
    set_flag(&source, dark, true, serde_json::Value::Null).await;
    set_flag(&source, banner, true, json!("Maintenance at 22:00 UTC")).await;

    let options = api::NodeOptions {
        own_flags: Some(OwnFlagsSource {
            api_url: format!("{}/api/v1/", source.base),
            environment_key: "ff-key".into(),
            refresh: Duration::from_millis(100),
        }),
        ..test_node()
    };
    let (dashboard, _) = Server::start_with_options(backend, options).await;
    dashboard.user("ops@example.com").await;
    let browser = Browser::signed_in(&dashboard, "ops@example.com", "a long secret").await;
    let html = home_until(&browser, |html| {
        html.contains("<html lang=\"en\" class=\"dark\">")
    })
    .await;
    assert!(
        html.contains("<div class=\"banner\" role=\"status\">Maintenance at 22:00 UTC</div>"),
        "{html}"
    );
    set_flag(&source, dark, false, serde_json::Value::Null).await;
    set_flag(&source, banner, false, json!("Maintenance at 22:00 UTC")).await;
    // Both off there (two changes, read at any moment between them): both off here.
    home_until(&browser, |html| {
        !html.contains("class=\"dark\"") && !html.contains("class=\"banner\"")
    })
    .await;
}

on_both_backends!(the_dashboards_theme_and_banner_are_flags_read_through_an_sdk_endpoint);
