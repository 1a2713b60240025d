//! The approver's inbox: change requests across every environment and project the caller reads,
//! answered from the inbox projection, filtered by state, author, reviewer (`me`), feature,
//! environment and project, newest first with keyset paging, each shown with the approvals that
//! count and its conflicts. The projection agrees with the requests' own pages, sees a change in
//! the very next list, and rebuilt from position 0 writes the same rows.

use flaglog_tests::{Backend, Server, User, on_both_backends};
use projections::change_request_inbox::{self, ChangeRequestInbox, InboxQuery};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct Team {
    server: Server,
    state: api::http::AppState,
    projects: [u64; 2],
    environments: [u64; 2],
    features: [u64; 2],
    author: User,
    reviewer: User,
    /// Reads the first project only.
    viewer: User,
}

const KEYS: [&str; 2] = ["inbox-a", "inbox-b"];

async fn team(backend: Backend) -> Team {
    let (server, state) = Server::start_with_state(backend).await;
    let mut projects = [0; 2];
    let mut environments = [0; 2];
    let mut features = [0; 2];
    for i in 0..2 {
        projects[i] = server.project(json!({"name": format!("p{i}")})).await;
        server.environment(projects[i], KEYS[i]).await;
        features[i] = server
            .feature(projects[i], json!({"name": format!("f{i}")}))
            .await;
        environments[i] = server
            .patch(
                &format!("/api/v1/environments/{}/", KEYS[i]),
                json!({"minimum_change_request_approvals": 1}),
            )
            .send()
            .await
            .expect_status(200)
            .u64("id");
    }
    let author = server
        .member(projects[0], "author@example.com", "editor")
        .await;
    server.grant(projects[1], &author, "editor").await;
    let reviewer = server
        .member(projects[0], "rev@example.com", "approver")
        .await;
    server.grant(projects[1], &reviewer, "approver").await;
    let viewer = server
        .member(projects[0], "view@example.com", "viewer")
        .await;
    Team {
        server,
        state,
        projects,
        environments,
        features,
        author,
        reviewer,
        viewer,
    }
}

impl Team {
    async fn open(&self, i: usize, value: &str, reviewers: &[&User]) -> u64 {
        let reviewers: Vec<u64> = reviewers.iter().map(|u| u.id).collect();
        self.server
            .post(
                &format!("/api/v1/environments/{}/change-requests/", KEYS[i]),
                json!({"title": format!("{value} in {i}"), "reviewers": reviewers,
                       "commands": [{"type": "set_feature_state",
                                     "environment_id": self.environments[i],
                                     "feature_id": self.features[i], "enabled": true,
                                     "feature_state_value": value}]}),
            )
            .token(&self.author.token)
            .send()
            .await
            .expect_status(201)
            .u64("id")
    }

    async fn inbox(&self, query: &str, who: &User) -> Vec<u64> {
        let listed = self
            .server
            .get(&format!("/api/v1/change-requests/?{query}"))
            .token(&who.token)
            .send()
            .await
            .expect_status(200);
        ids(&listed.body)
    }
}

fn ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|r| r["id"].as_u64().expect("an id"))
        .collect()
}

async fn the_inbox_lists_across_environments_with_every_filter(backend: Backend) {
    let t = team(backend).await;
    let a1 = t.open(0, "blue", &[&t.reviewer]).await;
    let b1 = t.open(1, "green", &[&t.reviewer]).await;
    let a2 = t.open(0, "red", &[]).await;
    let me = &t.reviewer;

    // Newest first, across both projects, for a reviewer assigned in both.
    assert_eq!(t.inbox("status=open&reviewer=me", me).await, [b1, a1]);
    assert_eq!(t.inbox("status=open", me).await, [a2, b1, a1]);
    assert_eq!(
        t.inbox(&format!("reviewer={}", me.id), &t.author).await,
        [b1, a1]
    );
    assert_eq!(
        t.inbox(&format!("author={}", t.author.id), me).await,
        [a2, b1, a1]
    );
    assert_eq!(
        t.inbox(&format!("author={}", me.id), me).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        t.inbox(
            &format!("project={}&feature={}", t.projects[1], t.features[1]),
            me
        )
        .await,
        [b1]
    );
    assert_eq!(
        t.inbox(&format!("environment={}", KEYS[0]), me).await,
        [a2, a1]
    );
    assert_eq!(
        t.inbox(&format!("project={}", t.projects[1]), me).await,
        [b1]
    );
    // Keyset paging.
    assert_eq!(t.inbox("limit=2", me).await, [a2, b1]);
    assert_eq!(t.inbox(&format!("limit=2&before={b1}"), me).await, [a1]);
    // A viewer of the first project sees its requests only.
    assert_eq!(t.inbox("", &t.viewer).await, [a2, a1]);

    // Each entry is shown as its page shows it: approvals that count, and conflicts now.
    let approved = t
        .server
        .post(&format!("/api/v1/change-requests/{a1}/approve/"), json!({}))
        .token(&me.token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(approved.body["approval_count"], 1);
    let listed = t
        .server
        .get(&format!("/api/v1/change-requests/?environment={}", KEYS[0]))
        .token(&me.token)
        .send()
        .await
        .expect_status(200);
    let mut pages = Vec::new();
    for id in [a2, a1] {
        let page = t
            .server
            .get(&format!("/api/v1/change-requests/{id}/"))
            .send()
            .await
            .expect_status(200);
        pages.push(page.body);
    }
    assert_eq!(listed.body, Value::Array(pages));

    // Committing a1 makes a2 stale (same feature): the next list already shows both.
    t.server
        .post(&format!("/api/v1/change-requests/{a1}/commit/"), json!({}))
        .token(&t.author.token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(t.inbox("status=open&reviewer=me", me).await, [b1]);
    assert_eq!(t.inbox("status=committed", me).await, [a1]);
    assert_eq!(
        t.inbox("status=open,committed&environment=inbox-a", me)
            .await,
        [a2, a1]
    );
    let stale = t
        .server
        .get(&format!(
            "/api/v1/change-requests/?status=open&environment={}",
            KEYS[0]
        ))
        .send()
        .await
        .expect_status(200);
    assert_eq!(stale.body[0]["id"], a2);
    assert_eq!(
        stale.body[0]["conflicts"].as_array().map(Vec::len),
        Some(1),
        "{}",
        stale.text
    );

    // Bad filters are refused, naming what is wrong.
    let refused = t
        .server
        .get("/api/v1/change-requests/?status=pending")
        .send()
        .await
        .expect_error(400, "bad_request", Some("status"));
    assert!(refused.text.contains("open"), "{}", refused.text);
    t.server
        .get("/api/v1/change-requests/?reviewer=someone")
        .send()
        .await
        .expect_error(400, "bad_request", Some("reviewer"));
    t.server
        .get("/api/v1/change-requests/?environment=nowhere")
        .send()
        .await
        .expect_error(404, "not_found", None);

    // Rebuilt from position 0, the projection writes the same rows.
    let everything = InboxQuery {
        limit: 1000,
        ..InboxQuery::default()
    };
    let pool = t.state.read_models.clone();
    let before = change_request_inbox::query(&pool, &everything)
        .await
        .unwrap();
    assert_eq!(before.len(), 3);
    ChangeRequestInbox::reset(&pool).await.unwrap();
    assert!(
        change_request_inbox::query(&pool, &everything)
            .await
            .unwrap()
            .is_empty()
    );
    let head = t.state.log.head().await.unwrap();
    let (progress, mut applied) = watch::channel(0);
    let stop = CancellationToken::new();
    let rebuild = tokio::spawn(projections::runner::run(
        t.state.log.clone(),
        ChangeRequestInbox::new(pool.clone(), t.state.log.clone()),
        progress,
        stop.clone(),
    ));
    applied.wait_for(|p| *p >= head).await.unwrap();
    stop.cancel();
    rebuild.await.unwrap().unwrap();
    let after = change_request_inbox::query(&pool, &everything)
        .await
        .unwrap();
    assert_eq!(after, before);
}

on_both_backends!(the_inbox_lists_across_environments_with_every_filter);
