//! The audit history (`GET /api/v1/audit-log/`, its exports): complete by construction and by
//! test (every command type, enumerated from the command enums, leaves rows with actor, before
//! and after, one per event), every filter, a cursor that stays stable while events arrive,
//! exports of the same query, and viewers who see only the projects they hold a role on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use domain::command::Command;
use domain::command::change_request::ChangeRequestCommand;
use flaglog_tests::{Backend, Server, User, on_both_backends};
use serde_json::{Value, json};
use strum::VariantNames;

fn sha(secret: &str) -> String {
    commands::secrets::sha256_hex(secret)
}

/// Every row of the history, newest first, through every page.
async fn history(server: &Server, query: &str, token: Option<&str>) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if query.is_empty() { "" } else { "&" };
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit-log/?{query}{separator}limit=100&cursor={c}"),
            None => format!("/api/v1/audit-log/?{query}{separator}limit=100"),
        };
        let mut call = server.get(&path);
        if let Some(token) = token {
            call = call.token(token);
        }
        let page = call.send().await.expect_status(200).body;
        rows.extend(page["results"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return rows,
        }
    }
}

fn positions(rows: &[Value]) -> Vec<u64> {
    rows.iter().filter_map(|r| r["position"].as_u64()).collect()
}

mod completeness;
mod queries;
