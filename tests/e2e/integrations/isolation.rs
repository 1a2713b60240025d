//! A hung receiver holds up only its own integration: while one webhook's receiver never
//! answers, another webhook on the same environment gets every change, and the SDK and admin
//! endpoints answer.

use flaglog_tests::receiver::Receiver;
use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use super::{fast, project_with_environment};

async fn a_hung_receiver_holds_up_only_its_own_integration(backend: Backend) {
    let server = Server::start(backend).await;
    let (project, _) = project_with_environment(&server, "iso-env").await;
    let hung = Receiver::start().await;
    hung.stall();
    let healthy = Receiver::start().await;
    let integrations = "/api/v1/environments/iso-env/integrations/";
    for receiver in [&hung, &healthy] {
        server
            .post(
                integrations,
                json!({"kind": "webhook", "config": fast(json!({"url": format!("{}/hook", receiver.base)}), 3)}),
            )
            .send()
            .await
            .expect_status(201);
    }
    let feature = server.feature(project, json!({"name": "isolated"})).await;
    let changes = 5;
    for n in 0..changes {
        server
            .put(
                &format!("/api/v1/environments/iso-env/featurestates/{feature}/"),
                json!({"enabled": n % 2 == 0}),
            )
            .send()
            .await
            .expect_status(200);
    }
    // The creation and every change, to the healthy receiver.
    healthy
        .until("every change at the healthy receiver", |d| {
            d.len() > changes
        })
        .await;
    // Meanwhile the hung one has answered nothing: it has only ever been sent the first
    // message (retried, if the sender's timeout passed meanwhile).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while hung.received().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hung receiver got nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stuck = hung.received();
    assert!(
        stuck
            .iter()
            .all(|r| r.answered == 0 && r.body == stuck[0].body)
    );
    // The SDK and admin endpoints answer.
    server
        .get("/api/v1/flags/")
        .without_token()
        .header("x-environment-key", "iso-env")
        .send()
        .await
        .expect_status(200);
    server
        .get(&format!("/api/v1/projects/{project}/features/"))
        .send()
        .await
        .expect_status(200);
}

on_both_backends!(a_hung_receiver_holds_up_only_its_own_integration);
