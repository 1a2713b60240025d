//! Importing a Flagsmith environment document: parsing it (alone, or wrapped as
//! `{"environment": ...}` / `{"environment_document": ...}`), and appending what
//! `domain::import::plan` decides in ONE atomic append, so a refused document writes nothing.

use domain::environment;
use domain::flagsmith::EnvironmentDocument;
use domain::identity;
use domain::log::{ExpectedVersion, Metadata, StreamAppend};
use domain::project;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::handlers::{Commands, Decision};
use crate::secrets;
use crate::store::encode;

/// What an import created. `server_side_key` is shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub project_id: u64,
    pub environment_id: u64,
    pub client_key: String,
    pub server_side_key: String,
    pub features: usize,
    pub segments: usize,
    pub identity_overrides: usize,
}

/// A document that does not parse, with the JSON path of the offending part.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub path: String,
    pub message: String,
}

/// Parses a document given alone or wrapped in `environment` / `environment_document`.
pub fn parse_document(bytes: &[u8]) -> std::result::Result<EnvironmentDocument, ParseError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ParseError {
        path: "$".into(),
        message: format!("not JSON: {e}"),
    })?;
    let (prefix, document) = match value {
        Value::Object(mut map) => {
            if let Some(inner) = map.remove("environment_document") {
                ("environment_document.", inner)
            } else if !map.contains_key("api_key") && map.contains_key("environment") {
                (
                    "environment.",
                    map.remove("environment").unwrap_or(Value::Null),
                )
            } else {
                ("", Value::Object(map))
            }
        }
        _ => {
            return Err(ParseError {
                path: "$".into(),
                message: "an environment document is a JSON object".into(),
            });
        }
    };
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        ParseError {
            path: if path == "." {
                format!("$.{}", prefix.trim_end_matches('.'))
                    .trim_end_matches('.')
                    .to_string()
            } else {
                format!("$.{prefix}{path}")
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// Imports `document` as a new project and environment.
pub async fn import(
    commands: &Commands,
    metadata: &Metadata,
    document: EnvironmentDocument,
) -> Result<Imported> {
    let server_side_key = secrets::new_server_side_key();
    let key_hash = secrets::sha256_hex(&server_side_key);
    commands
        .run(metadata, domain::directory::STREAM, || async {
            let dir = commands.directory().await?;
            let plan = domain::import::plan(&dir.state, &document, key_hash.clone())?;
            let mut appends = vec![
                dir.append(&plan.directory_events)?,
                new_stream(project::stream(plan.project_id), &plan.project_events)?,
                new_stream(
                    environment::stream(plan.environment_id),
                    &plan.environment_events,
                )?,
            ];
            for (identifier, events) in &plan.identity_events {
                appends.push(new_stream(
                    identity::stream(plan.environment_id, identifier),
                    events,
                )?);
            }
            let imported = Imported {
                project_id: plan.project_id,
                environment_id: plan.environment_id,
                client_key: plan.client_key.clone(),
                server_side_key: server_side_key.clone(),
                features: plan.feature_count,
                segments: plan.segment_count,
                identity_overrides: plan.identity_events.values().map(Vec::len).sum(),
            };
            Ok(Decision {
                reviewed_by: None,
                writes: appends,
                expectations: vec![],
                outcome: imported,
            })
        })
        .await
        .map(|(imported, _)| imported)
}

/// An append that creates a stream: it must not exist yet.
fn new_stream<E: domain::aggregate::DomainEvent>(
    stream_id: String,
    events: &[E],
) -> Result<StreamAppend> {
    Ok(StreamAppend {
        stream_id,
        expected: ExpectedVersion::NoStream,
        events: encode(events)?,
    })
}
