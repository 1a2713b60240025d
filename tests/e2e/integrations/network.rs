//! Integrations may not reach private or local addresses unless the node allows it (as
//! `flaglog serve` does by default): a literal one is refused when configured, a name that
//! resolves to one is refused when sent, and the receiver behind it gets nothing.

use std::time::Duration;

use flaglog_tests::receiver::Receiver;
use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use super::{fast, project_with_environment};

/// A name of this machine that resolves only to non-public addresses (its host name, as on
/// the machines flaglog is tested on, or a loopback alias).
async fn private_name() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    for name in [hostname.trim(), "ip6-localhost", "localhost6"] {
        if name.is_empty() || name == "localhost" {
            continue;
        }
        let Ok(addresses) = tokio::net::lookup_host((name, 80)).await else {
            continue;
        };
        let addresses: Vec<_> = addresses.collect();
        if !addresses.is_empty()
            && addresses
                .iter()
                .all(|a| !projections::integrations::network::is_public(a.ip()))
        {
            return name.to_string();
        }
    }
    panic!(
        "no name of this machine resolves only to private addresses (its host name does on the test machines)"
    )
}

async fn private_addresses_are_refused_unless_allowed(backend: Backend) {
    // As `flaglog serve` runs without --allow-private-integration-urls.
    let (server, _) = Server::start_with_options(backend, api::NodeOptions::default()).await;
    let (project, _) = project_with_environment(&server, "net-env").await;
    let receiver = Receiver::start().await;
    let environments = "/api/v1/environments/net-env/integrations/";
    let refused = server
        .post(
            environments,
            json!({"kind": "webhook", "config": {"url": format!("{}/hook", receiver.base)}}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("config.url"));
    assert!(
        refused.text.contains("private or local address"),
        "{}",
        refused.text
    );
    // The cloud metadata service, as a vendor's base URL.
    server
        .post(
            &format!("/api/v1/projects/{project}/integrations/"),
            json!({"kind": "datadog", "config": {"base_url": "http://169.254.169.254", "api_key": "k"}}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("config.base_url"));

    // A name: it is checked where it resolves, at every request.
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    let name = private_name().await;
    let id = server
        .post(
            environments,
            json!({"kind": "webhook", "config": fast(json!({"url": format!("http://{name}:{port}/hook")}), 3)}),
        )
        .send()
        .await
        .expect_status(201)
        .u64("id");
    let feature = server.feature(project, json!({"name": "guarded"})).await;
    server
        .put(
            &format!("/api/v1/environments/net-env/featurestates/{feature}/"),
            json!({"enabled": true}),
        )
        .send()
        .await
        .expect_status(200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = server
            .get(&format!("{environments}{id}/status"))
            .send()
            .await
            .expect_status(200)
            .body;
        if status["dead_letters"].as_u64().unwrap() >= 1 {
            let error = status["last_error"].as_str().unwrap();
            assert!(
                error.contains(&name) && error.contains("private or local address"),
                "{error}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Refused before connecting, and not retried: the receiver heard nothing.
    assert!(receiver.received().is_empty());
}

on_both_backends!(private_addresses_are_refused_unless_allowed);
