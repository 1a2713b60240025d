//! The impact of a change before it is made: which known identities (those with stored traits)
//! would be served a different flag (enabled or value) in an environment if the change were
//! committed now. Both sides are rendered into environment documents and evaluated by the engine
//! SDKs are served by, so the preview cannot disagree with what the change will do.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::document::{DocumentSource, render};
use crate::environment::Environment;
use crate::evaluation::{EvaluationContext, evaluate_for_identity};
use crate::flagsmith::identity_context;
use crate::identity::IdentityOverrides;
use crate::project::Project;

/// The most affected identities an impact names.
pub const SAMPLE_SIZE: usize = 20;

/// One side of the comparison: an environment as it is, or as it would be.
pub struct Side<'a> {
    pub project: &'a Project,
    pub environment: &'a Environment,
    /// Identifier → overrides, for the identities evaluated.
    pub identity_overrides: &'a BTreeMap<String, IdentityOverrides>,
}

/// What one flag is for one identity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Served {
    pub enabled: bool,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagChange {
    pub feature: String,
    pub before: Option<Served>,
    pub after: Option<Served>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AffectedIdentity {
    pub identifier: String,
    pub changes: Vec<FlagChange>,
}

/// How many identities were evaluated, how many would be served something else, and up to
/// [`SAMPLE_SIZE`] of those with what changes for them.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Impact {
    pub identities_evaluated: usize,
    pub identities_affected: usize,
    pub sample: Vec<AffectedIdentity>,
}

fn context_of(side: &Side<'_>) -> EvaluationContext {
    render(DocumentSource {
        organisation_name: "",
        project: side.project,
        environment: side.environment,
        identity_overrides: &mut side
            .identity_overrides
            .iter()
            .map(|(identifier, overrides)| (identifier.as_str(), overrides)),
        updated_at: String::new(),
    })
    .to_evaluation_context()
}

fn served(
    context: &EvaluationContext,
    identifier: &str,
    traits: &Map<String, Value>,
) -> BTreeMap<String, Served> {
    let identity = identity_context(identifier, traits.clone());
    evaluate_for_identity(context, Some(&identity))
        .flags
        .into_iter()
        .map(|(name, flag)| {
            (
                name,
                Served {
                    enabled: flag.enabled,
                    value: flag.value,
                },
            )
        })
        .collect()
}

/// The impact of going from `before` to `after` on `identities` (identifier, stored traits).
pub fn impact(
    before: &Side<'_>,
    after: &Side<'_>,
    identities: &[(String, Map<String, Value>)],
) -> Impact {
    let (then, now) = (context_of(before), context_of(after));
    let mut impact = Impact {
        identities_evaluated: identities.len(),
        ..Impact::default()
    };
    for (identifier, traits) in identities {
        let (was, will) = (
            served(&then, identifier, traits),
            served(&now, identifier, traits),
        );
        let mut names: Vec<&String> = was.keys().chain(will.keys()).collect();
        names.sort();
        names.dedup();
        let changes: Vec<FlagChange> = names
            .into_iter()
            .filter(|name| was.get(*name) != will.get(*name))
            .map(|name| FlagChange {
                feature: name.clone(),
                before: was.get(name).cloned(),
                after: will.get(name).cloned(),
            })
            .collect();
        if changes.is_empty() {
            continue;
        }
        impact.identities_affected += 1;
        if impact.sample.len() < SAMPLE_SIZE {
            impact.sample.push(AffectedIdentity {
                identifier: identifier.clone(),
                changes,
            });
        }
    }
    impact
}
