//! Flagsmith-exact flag evaluation (see ARCHITECTURE.md).
//!
//! A pure function from an [`EvaluationContext`] (environment, optional identity with traits,
//! features, segments) to an [`EvaluationResult`] (every flag with value, reason and variant, and
//! the matched segments). Both are serde types in the JSON shape of Flagsmith's evaluation
//! context and result schemas, and the function reproduces Flagsmith's engine
//! (`flagsmith-flag-engine` 11.1.1) exactly, as the conformance tests under `domain/tests` prove:
//! an identity must get the same flags from flaglog as from a Flagsmith SDK evaluating the same
//! environment document locally.
//!
//! Evaluation never fails and never panics: a malformed condition (bad regex, bad semver, a
//! non-numeric MODULO, ...) simply does not match. It does no IO; the only shared state is a
//! cache of compiled regular expressions.
//!
//! ```
//! use domain::evaluation::{evaluate, EvaluationContext};
//!
//! let context: EvaluationContext = serde_json::from_value(serde_json::json!({
//!     "environment": {"key": "env-key", "name": "Production"},
//!     "identity": {"identifier": "alice", "traits": {"plan": "pro"}},
//!     "features": {
//!         "banner": {"key": "1", "name": "banner", "enabled": false, "value": null}
//!     },
//!     "segments": {
//!         "7": {
//!             "key": "7", "name": "pro users",
//!             "rules": [{"type": "ALL", "conditions": [
//!                 {"property": "plan", "operator": "EQUAL", "value": "pro"}
//!             ]}],
//!             "overrides": [{"key": "2", "name": "banner", "enabled": true, "value": "hi"}]
//!         }
//!     }
//! }))
//! .unwrap();
//! let result = evaluate(&context);
//! assert_eq!(result.flags["banner"].value, "hi");
//! assert_eq!(result.flags["banner"].reason, "TARGETING_MATCH; segment=pro users");
//! ```

mod context;
mod engine;
mod hashing;
mod jsonpath;
mod operators;
mod prepared;
mod pyregex;
mod python;
mod result;
mod semver;

pub use context::{
    ConditionOperator, ContextMap, EnvironmentContext, EvaluationContext, FeatureContext,
    FeatureValue, IdentityContext, Metadata, Priority, RuleType, SegmentCondition, SegmentContext,
    SegmentRule,
};
pub use hashing::hashed_percentage;
pub use operators::regex_compiles;
pub use prepared::PreparedContext;
pub(crate) use python::py_eq as python_eq;
pub use result::{
    Evaluation, EvaluationResult, Flag, FlagResult, Reason, SegmentResult, is_truthy,
};

/// Evaluates every feature of the context for the context's identity (if any).
pub fn evaluate(context: &EvaluationContext) -> EvaluationResult {
    evaluation(context, context.identity.as_ref()).to_result()
}

/// Evaluates the context as if its identity were `identity` (the context's own is ignored).
///
/// A server keeps one context per environment and evaluates it for each request's identity
/// without cloning the features and segments.
pub fn evaluate_for_identity(
    context: &EvaluationContext,
    identity: Option<&IdentityContext>,
) -> EvaluationResult {
    evaluation(context, identity).to_result()
}

/// [`evaluate_for_identity`], borrowed from the context instead of copied out of it: what a
/// server serialises straight into a response. Its [`Evaluation::to_result`] is exactly
/// [`evaluate_for_identity`]'s result.
///
/// What this works out from the context alone is worked out anew on each call; a server that
/// evaluates one context many times keeps a [`PreparedContext`] instead, whose
/// [`PreparedContext::evaluation`] gives the same result.
pub fn evaluation<'a>(
    context: &'a EvaluationContext,
    identity: Option<&'a IdentityContext>,
) -> Evaluation<'a> {
    engine::run(context, &prepared::Plan::new(context), identity)
}

/// What an anonymous caller gets: every feature in its environment-wide state, without identity
/// and without segments (reason `STATIC`, no variant), as Flagsmith's `GET /api/v1/flags/`
/// serves it. Segments are not evaluated at all: a segment that would match an empty context
/// (`IS_NOT_SET`, say) does not apply, and no flag dependency can form a cycle. Both flaglog's
/// flags body and anonymous OpenFeature (OFREP) requests are this evaluation.
pub fn environment_evaluation(context: &EvaluationContext) -> Evaluation<'_> {
    Evaluation {
        context,
        flags: context
            .features
            .values()
            .map(|feature| Flag {
                source: feature,
                value: &feature.value,
                reason: Reason::Static,
                variant: None,
            })
            .collect(),
        segments: Vec::new(),
    }
}
