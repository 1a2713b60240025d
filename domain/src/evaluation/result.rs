//! The evaluation result, in the JSON shape of Flagsmith's `evaluation-result.json` schema:
//! every flag with its value and the reason it has it, and the segments the context matched;
//! and the same borrowed from the context ([`Evaluation`]), which is what the engine produces and
//! what a server serialises without copying.

use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use super::context::{EvaluationContext, FeatureContext, Metadata, SegmentContext};
use super::python::number_str;

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

/// Why a flag has its value, as Flagsmith words it (the `reason` strings are part of what SDKs
/// and OpenFeature providers read; `Display` writes them). Borrowed from the context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason<'a> {
    /// No segment in the context overrides the feature at all.
    Static,
    /// Segments override the feature, but none of them matched.
    Default,
    /// A matched segment's override applies: the segment's name.
    TargetingMatch(&'a str),
    /// A multivariate value was chosen: its weight, printed as Python prints it.
    Split(&'a Number),
    /// The flag is part of a dependency cycle (`$.flags.NAME` conditions reading each other).
    CircularDependency,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Static => f.write_str("STATIC"),
            Reason::Default => f.write_str("DEFAULT"),
            Reason::TargetingMatch(segment) => write!(f, "TARGETING_MATCH; segment={segment}"),
            Reason::Split(weight) => write!(f, "SPLIT; weight={}", number_str(weight)),
            Reason::CircularDependency => f.write_str("ERROR; code=CIRCULAR_DEPENDENCY"),
        }
    }
}

/// One flag of an evaluation, borrowed from the context it was evaluated on: what a
/// [`FlagResult`] holds, without copying a name, a value or a reason.
#[derive(Debug, Clone, Copy)]
pub struct Flag<'a> {
    /// The feature's default state, or the segment override that applied (same name).
    pub source: &'a FeatureContext,
    /// `source`'s value, or the multivariate value chosen for the identity.
    pub value: &'a Value,
    pub reason: Reason<'a>,
    /// The chosen multivariate value's key; `"control"` when a split applied but no variant
    /// took the identity; `None` when no split applied (or the chosen value has no key).
    pub variant: Option<&'a str>,
}

impl<'a> Flag<'a> {
    pub fn name(&self) -> &'a str {
        &self.source.name
    }

    pub fn enabled(&self) -> bool {
        self.source.enabled
    }

    /// The metadata carried to the result: `source`'s, when Python would call it truthy.
    pub fn metadata(&self) -> Option<Value> {
        truthy_metadata(self.source.metadata.as_ref())
    }

    /// Whether the flag is enabled and valued as `feature`'s own default state (no segment
    /// override applied, and no multivariate value other than the control value was chosen):
    /// then SDK endpoints list it the same for every identity.
    pub fn is_default_state_of(&self, feature: &FeatureContext) -> bool {
        std::ptr::eq(self.source, feature) && std::ptr::eq(self.value, &feature.value)
    }

    pub fn to_result(&self) -> FlagResult {
        FlagResult {
            name: self.name().to_owned(),
            enabled: self.enabled(),
            value: self.value.clone(),
            reason: self.reason.to_string(),
            variant: self.variant.map(str::to_owned),
            metadata: self.metadata(),
        }
    }
}

/// An evaluation borrowed from its context: one [`Flag`] per feature in context order, and the
/// segments matched in context order. [`Evaluation::to_result`] makes the owned
/// [`EvaluationResult`].
#[derive(Debug, Clone)]
pub struct Evaluation<'a> {
    pub(crate) context: &'a EvaluationContext,
    /// Index `i` is the flag of `context.features[i]`.
    pub flags: Vec<Flag<'a>>,
    pub segments: Vec<&'a SegmentContext>,
}

impl<'a> Evaluation<'a> {
    /// The context this evaluation borrows from.
    pub fn context(&self) -> &'a EvaluationContext {
        self.context
    }

    /// The flag of the feature named `name`.
    pub fn flag(&self, name: &str) -> Option<&Flag<'a>> {
        self.flags.get(self.context.features.get_index_of(name)?)
    }

    pub fn to_result(&self) -> EvaluationResult {
        EvaluationResult {
            flags: self
                .flags
                .iter()
                .map(|flag| (flag.name().to_owned(), flag.to_result()))
                .collect(),
            segments: self
                .segments
                .iter()
                .map(|segment| SegmentResult {
                    name: segment.name.clone(),
                    metadata: truthy_metadata(segment.metadata.as_ref()),
                })
                .collect(),
        }
    }
}

/// Metadata as a result carries it: when Python would call it truthy.
fn truthy_metadata(metadata: Option<&Metadata>) -> Option<Value> {
    metadata.map(Metadata::to_value).filter(is_truthy)
}

/// Python truthiness, which decides whether metadata is carried to a result.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}
