//! flaglog on flaglog: the dashboard's dark mode and announcement banner are flags, read
//! through a flaglog SDK endpoint (`GET {api_url}flags/`) from the environment
//! `FLAGLOG_ON_FLAGLOG_ENVIRONMENT_KEY` names, as Flagsmith's dashboard reads its own flags from
//! Flagsmith. `dark_mode` enabled: the dashboard is dark whatever the browser prefers;
//! `announcement` enabled: its value is shown as a banner on every page (a string, or an object
//! with `title` and `description`). Without the configuration, or while the endpoint cannot be
//! read, the defaults hold: the browser's colour scheme and no banner.
//!
//! The `flaglog_on_flaglog` worker (every node) reads the flags every refresh interval.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use projections::Error;
use projections::workers::{Context, Worker};
use serde_json::Value;

/// The worker's name in `/health`.
pub const NAME: &str = "flaglog_on_flaglog";
/// How often the flags are read by default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);
/// How long one read may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the dashboard's own flags come from.
#[derive(Debug, Clone)]
pub struct OwnFlagsSource {
    /// The SDK API's base, e.g. `http://127.0.0.1:8000/api/v1/`.
    pub api_url: String,
    /// The environment's client key.
    pub environment_key: String,
    pub refresh: Duration,
}

/// The dashboard's own flags as last read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OwnFlags {
    pub dark_mode: bool,
    pub announcement: Option<String>,
}

/// [`OwnFlags`], shared by the pages and the worker that reads them.
#[derive(Debug, Default, Clone)]
pub struct SharedOwnFlags(Arc<RwLock<OwnFlags>>);

impl SharedOwnFlags {
    pub fn get(&self) -> OwnFlags {
        self.0.read().map(|f| f.clone()).unwrap_or_default()
    }

    fn set(&self, flags: OwnFlags) {
        if let Ok(mut current) = self.0.write() {
            *current = flags;
        }
    }
}

/// The flags of an SDK `flags/` answer that the dashboard reads.
fn own_flags_of(answer: &Value) -> OwnFlags {
    let flag = |name: &str| {
        answer.as_array().and_then(|flags| {
            flags
                .iter()
                .find(|f| f["feature"]["name"] == name)
                .filter(|f| f["enabled"] == true)
        })
    };
    let announcement = flag("announcement").and_then(|f| {
        let value = &f["feature_state_value"];
        let value = match value {
            // A JSON object given as text, as Flagsmith values often are.
            Value::String(text) => serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| value.clone()),
            other => other.clone(),
        };
        match &value {
            Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Value::Object(fields) => {
                let text: Vec<&str> = ["title", "description"]
                    .iter()
                    .filter_map(|k| fields.get(*k)?.as_str())
                    .filter(|t| !t.trim().is_empty())
                    .collect();
                (!text.is_empty()).then(|| text.join(": "))
            }
            _ => None,
        }
    });
    OwnFlags {
        dark_mode: flag("dark_mode").is_some(),
        announcement,
    }
}

/// Reads the dashboard's own flags every refresh interval.
pub struct OwnFlagsReader {
    source: OwnFlagsSource,
    flags: SharedOwnFlags,
    client: reqwest::Client,
}

impl OwnFlagsReader {
    pub fn new(source: OwnFlagsSource, flags: SharedOwnFlags) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("flaglog on flaglog: {e}"))?;
        Ok(OwnFlagsReader {
            source,
            flags,
            client,
        })
    }

    async fn read(&self) -> Result<OwnFlags, String> {
        let url = format!("{}flags/", self.source.api_url);
        let response = self
            .client
            .get(&url)
            .header("X-Environment-Key", &self.source.environment_key)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|e| e.without_url().to_string())?;
        Ok(own_flags_of(&answer))
    }
}

#[async_trait]
impl Worker for OwnFlagsReader {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let mut reads = 0;
        loop {
            match self.read().await {
                Ok(flags) => {
                    self.flags.set(flags);
                    reads += 1;
                    context.progress(reads, 0, 0.0);
                }
                // Keeps the flags last read; says why in the log (never the key).
                Err(e) => tracing::warn!(error = %e, "the dashboard's own flags cannot be read"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.source.refresh) => {}
                () = context.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag(name: &str, enabled: bool, value: Value) -> Value {
        json!({"feature": {"name": name}, "enabled": enabled, "feature_state_value": value})
    }

    #[test]
    fn dark_mode_and_the_announcement_come_from_enabled_flags() {
        let answer = json!([
            flag("dark_mode", true, Value::Null),
            flag("announcement", true, json!("Maintenance at 22:00")),
        ]);
        assert_eq!(
            own_flags_of(&answer),
            OwnFlags {
                dark_mode: true,
                announcement: Some("Maintenance at 22:00".into())
            }
        );
        let off = json!([
            flag("dark_mode", false, Value::Null),
            flag("announcement", false, json!("hidden")),
        ]);
        assert_eq!(own_flags_of(&off), OwnFlags::default());
        assert_eq!(own_flags_of(&json!({"not": "flags"})), OwnFlags::default());
    }

    #[test]
    fn an_announcement_object_shows_its_title_and_description() {
        let text = json!({"title": "New", "description": "Versions are here"}).to_string();
        let answer = json!([flag("announcement", true, json!(text))]);
        assert_eq!(
            own_flags_of(&answer).announcement.as_deref(),
            Some("New: Versions are here")
        );
        let empty = json!([flag("announcement", true, json!("  "))]);
        assert_eq!(own_flags_of(&empty).announcement, None);
    }
}
