//! The evaluation result, in the JSON shape of Flagsmith's `evaluation-result.json` schema:
//! every flag with its value and the reason it has it, and the segments the context matched.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationResult {
    /// One flag per feature of the context, by feature name, in context order.
    pub flags: IndexMap<String, FlagResult>,
    /// The segments the context matched, in context order.
    pub segments: Vec<SegmentResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagResult {
    pub name: String,
    pub enabled: bool,
    pub value: Value,
    /// Why the flag has this value; see [`Reason`] for the forms.
    pub reason: String,
    /// The chosen multivariate value's key; `"control"` when a split applied but no variant
    /// took the identity; `None` when no split applied (or the chosen value has no key).
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentResult {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// The reasons a flag result can give, as Flagsmith words them (the `reason` strings are part of
/// what SDKs and OpenFeature providers read, so they are kept as text in [`FlagResult`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// No segment in the context overrides the feature at all.
    Static,
    /// Segments override the feature, but none of them matched.
    Default,
    /// A matched segment's override applies.
    TargetingMatch { segment: String },
    /// A multivariate value was chosen; `weight` is already printed as Python prints it.
    Split { weight: String },
    /// The flag is part of a dependency cycle (`$.flags.NAME` conditions reading each other).
    CircularDependency,
}

impl Reason {
    pub fn to_reason_string(&self) -> String {
        match self {
            Reason::Static => "STATIC".to_owned(),
            Reason::Default => "DEFAULT".to_owned(),
            Reason::TargetingMatch { segment } => targeting_match_reason(segment),
            Reason::Split { weight } => format!("SPLIT; weight={weight}"),
            Reason::CircularDependency => "ERROR; code=CIRCULAR_DEPENDENCY".to_owned(),
        }
    }
}

/// The reason string of [`Reason::TargetingMatch`], from a borrowed segment name.
pub(crate) fn targeting_match_reason(segment: &str) -> String {
    format!("TARGETING_MATCH; segment={segment}")
}
