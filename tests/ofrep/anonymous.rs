//! A caller without a targeting key is anonymous, on OFREP as on `GET /api/v1/flags/`: both
//! serve the environment's flags, each in its environment-wide state, segments not evaluated.
//! Checked on every feature of every generated conformance document, whose segments include
//! ones an empty context matches (`IS_NOT_SET`), flags in dependency cycles, and overrides that
//! change a flag's type: none of that may reach an anonymous caller.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flaglog_tests::{Backend, SEEDS, Server, on_both_backends, seed};
use serde_json::{Value, json};

use crate::fixture::Ofrep;

/// Imports a document over the admin API and returns its client key once it is served.
async fn import(server: &Server, document: &Value) -> String {
    let client_key = server
        .post("/api/v1/environment-document/import/", document.clone())
        .send()
        .await
        .expect_status(201)
        .str("client_key")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server
        .get("/api/v1/flags/")
        .without_token()
        .header("x-environment-key", &client_key)
        .send()
        .await
        .status
        != 200
    {
        assert!(Instant::now() < deadline, "{client_key} is never served");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    client_key
}

/// What OFREP answers for a flag `GET /api/v1/flags/` lists as (`enabled`, `value`), by the
/// translation its module documents: a toggle's value is its state; a disabled value flag has
/// no value (the caller's default) and reason `DISABLED`; JSON object text is the object.
fn expected(enabled: bool, value: &Value) -> (Option<Value>, &'static str) {
    let reason = if enabled { "STATIC" } else { "DISABLED" };
    let value = match value {
        Value::Null => Some(Value::Bool(enabled)),
        _ if !enabled => None,
        Value::String(text) => Some(
            serde_json::from_str::<Value>(text)
                .ok()
                .filter(|v| v.is_object() && text.trim_start().starts_with('{'))
                .unwrap_or_else(|| value.clone()),
        ),
        other => Some(other.clone()),
    };
    (value, reason)
}

/// Checks one OFREP answer (a bulk item or a single answer) against the flags endpoint's flag.
fn check(answer: &Value, enabled: bool, value: &Value, what: &str) -> Option<String> {
    let (want_value, want_reason) = expected(enabled, value);
    let got = (
        answer.get("value").cloned(),
        answer["reason"].as_str().unwrap_or_default(),
        answer["metadata"]["enabled"].as_bool(),
    );
    let want = (want_value, want_reason, Some(enabled));
    (got != want).then(|| format!("{what}: got {got:?}, want {want:?} ({answer})"))
}

async fn without_a_targeting_key_ofrep_serves_what_the_flags_endpoint_serves(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    let mut compared = 0;
    let mut differences = Vec::new();
    for n in 1..=SEEDS {
        let seed = seed(n);
        let key = import(&server, &seed["environment_document"]).await;
        let listed = server
            .get("/api/v1/flags/")
            .without_token()
            .header("x-environment-key", &key)
            .send()
            .await
            .expect_status(200)
            .body;
        let flags: BTreeMap<String, (bool, Value)> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|flag| {
                let name = flag["feature"]["name"].as_str().unwrap().to_string();
                let enabled = flag["enabled"].as_bool().unwrap();
                (name, (enabled, flag["feature_state_value"].clone()))
            })
            .collect();
        assert!(!flags.is_empty(), "seed {n}: no flags");

        // Attributes without a targeting key are no identity's traits: they change nothing.
        let traits = seed["identities"][0]["traits"].clone();
        for body in [
            json!({"context": {}}),
            json!({}),
            json!({"context": traits}),
        ] {
            let bulk = ofrep.flags().key(&key).body(body.clone()).send().await;
            let bulk = bulk.expect_status(200);
            let mut names = bulk.keys();
            names.sort();
            let listed_names: Vec<&String> = flags.keys().collect();
            assert_eq!(
                names.iter().collect::<Vec<_>>(),
                listed_names,
                "seed {n}, {body}: the same flags"
            );
            for (name, (enabled, value)) in &flags {
                let what = format!("seed {n}, bulk {body}, {name}");
                differences.extend(check(bulk.flag(name), *enabled, value, &what));
                compared += 1;
            }
        }
        for (i, (name, (enabled, value))) in flags.iter().enumerate() {
            // Alternately an empty context and one with attributes.
            let context = if i % 2 == 0 {
                json!({})
            } else {
                traits.clone()
            };
            let single = ofrep.flag(name).key(&key).context(context).send().await;
            let what = format!("seed {n}, single, {name}");
            if single.status == 200 {
                differences.extend(check(&single.body, *enabled, value, &what));
            } else {
                differences.push(format!(
                    "{what}: answered {}: {}",
                    single.status, single.text
                ));
            }
            compared += 1;
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} answers differ from GET /api/v1/flags/:\n  {}",
        differences.len(),
        differences.join("\n  ")
    );
    assert!(compared >= 4 * 8 * 10, "only {compared} answers compared");
}

on_both_backends!(without_a_targeting_key_ofrep_serves_what_the_flags_endpoint_serves);
