//! Importing a Flagsmith environment document: parsing it (alone, or wrapped as
//! `{"environment": ...}` / `{"environment_document": ...}`), and appending what
//! `domain::import::plan` decides in ONE atomic append, so a refused document writes nothing.

use std::collections::HashMap;

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
            let plan = plan_with_references(commands, &dir.state, &document, &key_hash).await?;
            let mut appends = vec![
                dir.append(&plan.directory_events)?,
                new_stream(project::stream(plan.project_id), &plan.project_events)?,
                new_stream(
                    environment::stream(plan.environment_id),
                    &plan.environment_events,
                )?,
            ];
            for (reference, events) in &plan.identity_events {
                appends.push(new_stream(
                    identity::stream(plan.environment_id, reference),
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

/// The import's plan, each identity with a reference recorded beside the log (new random ones;
/// should an earlier attempt of this import have recorded others for the same new environment,
/// those, planned again).
async fn plan_with_references(
    commands: &Commands,
    directory: &domain::directory::Directory,
    document: &EnvironmentDocument,
    key_hash: &str,
) -> Result<domain::import::ImportPlan> {
    let mut known: HashMap<String, String> = HashMap::new();
    loop {
        let plan = domain::import::plan(directory, document, key_hash.to_string(), &mut |id| {
            known
                .entry(id.to_string())
                .or_insert_with(secrets::new_identity_reference)
                .clone()
        })?;
        let mut recorded = true;
        for (reference, identifier) in &plan.identifiers {
            let actual = commands
                .store()
                .log()
                .identity_reference(plan.environment_id, identifier, Some(reference))
                .await?
                .unwrap_or_else(|| reference.clone());
            if actual != *reference {
                known.insert(identifier.clone(), actual);
                recorded = false;
            }
        }
        if recorded {
            return Ok(plan);
        }
    }
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
