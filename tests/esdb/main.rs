//! flaglog's EventStoreDB-compatible read API (feature `eventstore-grpc`), consumed by the
//! `eventstore` crate, EventStoreDB's own Rust client, as it would consume an EventStoreDB:
//! reads of `$all` and of a stream, catch-up subscriptions that turn live, resuming from a
//! position, filters, and the refusals (appends, a token that is not an administrator's).

use std::time::Duration;

use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, Position, ReadAllOptions,
    ReadStreamOptions, StreamPosition, SubscribeToAllOptions, SubscriptionEvent,
    SubscriptionFilter,
};
use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const WITHIN: Duration = Duration::from_secs(30);

/// A server with some history (a project, an environment, two features) and its EventStoreDB
/// API on a loopback port: the server, the project, the API's port.
async fn serving(backend: Backend) -> (Server, u64, u16) {
    let (server, state) = Server::start_with_state(backend).await;
    let project = server.project(json!({"name": "esdb"})).await;
    server.environment(project, "esdb-env").await;
    for name in ["checkout", "banner"] {
        server.feature(project, json!({"name": name})).await;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(api::esdb::serve(state, listener));
    (server, project, port)
}

fn connect(port: u16, token: &str) -> Client {
    let settings: ClientSettings =
        format!("esdb://admin:{token}@127.0.0.1:{port}?tls=false&discoveryInterval=0")
            .parse()
            .unwrap();
    Client::new(settings).unwrap()
}

async fn the_eventstore_client_reads_the_log(backend: Backend) {
    let (server, _, port) = serving(backend).await;
    let client = connect(port, server.token());
    let head = server.log.head().await.unwrap();
    let logged = server.log.read_all(0, head as usize).await.unwrap();

    // $all from the start: every event, in order, as the log has it.
    let mut read = client.read_all(&ReadAllOptions::default()).await.unwrap();
    let mut read_count = 0;
    while let Some(resolved) = read.next().await.unwrap() {
        let event = resolved.get_original_event();
        let logged = &logged[read_count];
        read_count += 1;
        assert_eq!(event.position.commit, logged.position);
        assert_eq!(event.stream_id, logged.stream_id);
        assert_eq!(event.revision, logged.version - 1);
        assert_eq!(event.event_type, logged.event_type);
        assert_eq!(event.id, api::esdb::event_id(logged.position));
        assert!(event.is_json);
        assert_eq!(
            serde_json::from_slice::<Value>(&event.data).unwrap(),
            logged.payload
        );
        // The client keeps whole seconds of the `created` ticks it is sent.
        assert_eq!(
            event.created.timestamp(),
            logged.recorded_at_micros / 1_000_000,
            "created"
        );
    }
    assert_eq!(read_count, logged.len());

    // $all backwards from the end, two events.
    let mut read = client
        .read_all(
            &ReadAllOptions::default()
                .position(StreamPosition::End)
                .backwards()
                .max_count(2),
        )
        .await
        .unwrap();
    let mut positions = Vec::new();
    while let Some(event) = read.next().await.unwrap() {
        positions.push(event.get_original_event().position.commit);
    }
    assert_eq!(positions, vec![head, head - 1]);

    // One stream from its second revision.
    let stream = logged.last().unwrap().stream_id.clone();
    let in_stream: Vec<_> = logged.iter().filter(|e| e.stream_id == stream).collect();
    assert!(in_stream.len() >= 2, "{stream} has two events");
    let mut read = client
        .read_stream(
            stream.as_str(),
            &ReadStreamOptions::default().position(StreamPosition::Position(1)),
        )
        .await
        .unwrap();
    let mut revisions = Vec::new();
    while let Some(event) = read.next().await.unwrap() {
        revisions.push(event.get_original_event().revision);
    }
    assert_eq!(revisions, (1..in_stream.len() as u64).collect::<Vec<_>>());

    // A stream that does not exist.
    let mut read = client
        .read_stream("no-such-stream", &ReadStreamOptions::default())
        .await
        .unwrap();
    assert!(read.next().await.is_err(), "not found");

    // Appends are refused, saying why.
    let refused = client
        .append_to_stream(
            "anything",
            &AppendToStreamOptions::default(),
            EventData::json("Tried", &json!({})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");

    // A token that is not an administrator's reads nothing.
    let stranger = connect(port, "not-a-token");
    assert!(stranger.read_all(&ReadAllOptions::default()).await.is_err());
}

async fn subscriptions_catch_up_turn_live_and_resume(backend: Backend) {
    let (server, project, port) = serving(backend).await;
    let client = connect(port, server.token());
    let head = server.log.head().await.unwrap();

    // From the start: confirmation, every event, caught up; then a change made now.
    let mut subscription = client
        .subscribe_to_all(&SubscribeToAllOptions::default())
        .await;
    let mut seen = Vec::new();
    let mut caught_up = false;
    while !caught_up {
        let event = tokio::time::timeout(WITHIN, subscription.next_subscription_event())
            .await
            .unwrap()
            .unwrap();
        match event {
            SubscriptionEvent::EventAppeared(e) => {
                seen.push(e.get_original_event().position.commit)
            }
            SubscriptionEvent::CaughtUp => caught_up = true,
            _ => {}
        }
    }
    assert_eq!(seen, (1..=head).collect::<Vec<_>>());
    let feature = server.feature(project, json!({"name": "live_one"})).await;
    let live = tokio::time::timeout(WITHIN, subscription.next())
        .await
        .unwrap()
        .unwrap();
    let live = live.get_original_event();
    assert_eq!(live.position.commit, head + 1);
    let payload: Value = serde_json::from_slice(&live.data).unwrap();
    assert!(
        payload.to_string().contains("live_one"),
        "{payload} (feature {feature})"
    );

    // Resuming after a position: the next event is the one after it.
    let resume_after = head - 2;
    let mut resumed = client
        .subscribe_to_all(
            &SubscribeToAllOptions::default().position(StreamPosition::Position(Position {
                commit: resume_after,
                prepare: resume_after,
            })),
        )
        .await;
    let first = tokio::time::timeout(WITHIN, resumed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.get_original_event().position.commit, resume_after + 1);

    // Filtered on event types: only those, every one of them.
    let logged = server.log.read_all(0, 10_000).await.unwrap();
    let prefix = "Feature";
    let wanted: Vec<u64> = logged
        .iter()
        .filter(|e| e.event_type.starts_with(prefix))
        .map(|e| e.position)
        .collect();
    assert!(!wanted.is_empty());
    let mut filtered = client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .filter(SubscriptionFilter::on_event_type().add_prefix(prefix)),
        )
        .await;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(WITHIN, filtered.next_subscription_event())
            .await
            .unwrap()
            .unwrap()
        {
            SubscriptionEvent::EventAppeared(e) => got.push(e.get_original_event().position.commit),
            SubscriptionEvent::CaughtUp => break,
            _ => {}
        }
    }
    assert_eq!(got, wanted);
}

async fn a_stream_subscription_catches_up_and_turns_live(backend: Backend) {
    let (server, project, port) = serving(backend).await;
    let client = connect(port, server.token());
    let feature = server.feature(project, json!({"name": "streamed"})).await;
    let toggle = |enabled: bool| {
        server
            .put(
                &format!("/api/v1/environments/esdb-env/featurestates/{feature}/"),
                json!({"enabled": enabled}),
            )
            .send()
    };
    toggle(true).await.expect_status(200);
    // The stream the change went to, and its events so far.
    let last = server
        .log
        .read_all(server.log.head().await.unwrap() - 1, 1)
        .await
        .unwrap();
    let stream = last[0].stream_id.clone();
    let version = last[0].version;
    let mut subscription = client
        .subscribe_to_stream(
            stream.as_str(),
            &eventstore::SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    let mut revisions = Vec::new();
    loop {
        match tokio::time::timeout(WITHIN, subscription.next_subscription_event())
            .await
            .unwrap()
            .unwrap()
        {
            SubscriptionEvent::EventAppeared(e) => revisions.push(e.get_original_event().revision),
            SubscriptionEvent::CaughtUp => break,
            _ => {}
        }
    }
    assert_eq!(revisions, (0..version).collect::<Vec<_>>());
    toggle(false).await.expect_status(200);
    let live = tokio::time::timeout(WITHIN, subscription.next())
        .await
        .unwrap()
        .unwrap();
    let live = live.get_original_event();
    assert_eq!(
        (live.stream_id.as_str(), live.revision),
        (stream.as_str(), version)
    );
}

on_both_backends!(
    a_stream_subscription_catches_up_and_turns_live,
    the_eventstore_client_reads_the_log,
    subscriptions_catch_up_turn_live_and_resume,
);
