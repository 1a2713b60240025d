//! How every node hears that an environment's document changed, whichever node projected it: on
//! PostgreSQL the environment-documents projection sends a `NOTIFY` on [`CHANNEL`] inside the
//! transaction that writes the rows (so it is delivered on commit, and only then), naming the
//! node that projected it, and every other node's listener (in `api`) turns it back into
//! [`DocumentChanged`]s for its caches and realtime streams. The projecting node announces its
//! own changes in-process right after the commit, as on SQLite: sooner, and before it reports
//! the batch applied, so whoever waits for the projection has had its announcements. A listener
//! that reconnects may have missed some: it asks [`changed_since`] for every document newer
//! than the newest it heard of.

use sqlx::AnyPool;

use crate::Error;
use crate::environment_documents::DocumentChanged;

/// The name sqlx's `Any` driver gives PostgreSQL connections.
pub const POSTGRES: &str = "PostgreSQL";

/// The channel changed documents are notified on (PostgreSQL only: on SQLite, one process, the
/// in-process channel is all there is).
pub const CHANNEL: &str = "flaglog_documents";

/// Most bytes of one notification's payload (PostgreSQL allows just under 8000).
const NOTIFY_PAYLOAD_MAX: usize = 7000;

/// `changes` projected by node `node` as notification payloads: JSON objects
/// `{"node", "changes"}` of arrays `[environment id, position, updated at, client key]`, as many
/// to a payload as fit.
pub fn payloads(node: &str, changes: &[DocumentChanged]) -> Vec<String> {
    let head = format!("{{\"node\":{},\"changes\":[", serde_json::json!(node));
    let wrap = |items: &[String]| format!("{head}{}]}}", items.join(","));
    let mut payloads = Vec::new();
    let mut items: Vec<String> = Vec::new();
    let empty = head.len() + 2;
    let mut size = empty;
    for change in changes {
        let item = serde_json::json!([
            change.environment_id,
            change.position,
            change.updated_at_micros,
            change.client_key
        ])
        .to_string();
        if !items.is_empty() && size + item.len() + 1 > NOTIFY_PAYLOAD_MAX {
            payloads.push(wrap(&items));
            items.clear();
            size = empty;
        }
        size += item.len() + 1;
        items.push(item);
    }
    if !items.is_empty() {
        payloads.push(wrap(&items));
    }
    payloads
}

/// The node and the changes a notification payload carries (`None` if it is malformed).
pub fn parse(payload: &str) -> Option<(String, Vec<DocumentChanged>)> {
    type Item = (u64, u64, i64, String);
    #[derive(serde::Deserialize)]
    struct Payload {
        node: String,
        changes: Vec<Item>,
    }
    serde_json::from_str::<Payload>(payload)
        .map(|Payload { node, changes }| {
            let changes = changes
                .into_iter()
                .map(
                    |(environment_id, position, updated_at_micros, client_key)| DocumentChanged {
                        environment_id,
                        client_key,
                        updated_at_micros,
                        position,
                    },
                )
                .collect();
            (node, changes)
        })
        .ok()
}

/// Every environment whose stored document is newer than `position`, as changes (what a
/// listener that may have missed notifications announces after reconnecting).
pub async fn changed_since(pool: &AnyPool, position: u64) -> Result<Vec<DocumentChanged>, Error> {
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT environment_id, client_key, updated_at_micros, position \
         FROM environment_documents WHERE position > $1 ORDER BY position",
    )
    .bind(position as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, client_key, updated_at_micros, position)| DocumentChanged {
                environment_id: id as u64,
                client_key,
                updated_at_micros,
                position: position as u64,
            },
        )
        .collect())
}

/// The newest position any stored document reflects (0 if none).
pub async fn newest_position(pool: &AnyPool) -> Result<u64, Error> {
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(position) FROM environment_documents")
        .fetch_one(pool)
        .await?;
    Ok(newest.map_or(0, |p| p as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: u64, key: &str) -> DocumentChanged {
        DocumentChanged {
            environment_id: id,
            client_key: key.to_string(),
            updated_at_micros: 1_700_000_000_000_000 + id as i64,
            position: 10 + id,
        }
    }

    #[test]
    fn payloads_round_trip_and_stay_under_the_limit() {
        let changes: Vec<_> = (0..500)
            .map(|i| change(i, &format!("key \"{i}\"\n with odd bytes é")))
            .collect();
        let sent = payloads("node \"a\"", &changes);
        assert!(sent.len() > 1, "500 changes do not fit one payload");
        assert!(sent.iter().all(|p| p.len() <= NOTIFY_PAYLOAD_MAX));
        let mut parsed = Vec::new();
        for payload in &sent {
            let (node, changes) = parse(payload).expect("a valid payload");
            assert_eq!(node, "node \"a\"");
            parsed.extend(changes);
        }
        assert_eq!(parsed, changes);
        assert!(parse("not json").is_none());
        assert!(payloads("a", &[]).is_empty());
    }
}
