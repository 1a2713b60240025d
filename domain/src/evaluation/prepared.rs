//! An evaluation context prepared for the many evaluations a server makes of it: what depends
//! on the context alone, worked out once instead of on every evaluation.
//!
//! That is which feature each segment override applies to, which segments override each
//! feature (and so whether a feature is targeted at all, which decides between the `DEFAULT`
//! and `STATIC` reasons), and each condition's value made ready for its operator
//! ([`Operand`]: cast, split, compiled). None of it changes a result: [`super::evaluation`]
//! prepares its context on the spot and evaluates it the same way.

use std::sync::Arc;

use super::context::{EvaluationContext, IdentityContext, SegmentRule};
use super::engine;
use super::operators::Operand;
use super::result::Evaluation;

/// An evaluation context with what its evaluations share. Built once per version of an
/// environment (a server keeps it next to the context), then evaluated for each identity.
pub struct PreparedContext {
    context: Arc<EvaluationContext>,
    plan: Plan,
}

impl PreparedContext {
    pub fn new(context: Arc<EvaluationContext>) -> Self {
        let plan = Plan::new(&context);
        PreparedContext { context, plan }
    }

    pub fn context(&self) -> &Arc<EvaluationContext> {
        &self.context
    }

    /// [`super::evaluation`] of this context for `identity`, with the preparation done once.
    pub fn evaluation<'a>(&'a self, identity: Option<&'a IdentityContext>) -> Evaluation<'a> {
        engine::run(&self.context, &self.plan, identity)
    }

    /// Roughly the heap bytes the preparation holds (the context apart).
    pub fn heap_size(&self) -> usize {
        self.plan.heap_size()
    }
}

/// What the engine reads besides the context, indexed like the context's segments and features.
pub(crate) struct Plan {
    /// Per segment, in context order.
    pub(crate) segments: Vec<SegmentPlan>,
    /// Per feature, in context order: the indices of the segments that override it, a segment
    /// repeated once per override of it. Empty for a feature no segment targets.
    pub(crate) segments_by_feature: Vec<Vec<usize>>,
}

pub(crate) struct SegmentPlan {
    /// The segment's rules, one for one.
    pub(crate) rules: Vec<RulePlan>,
    /// Per override, the index of the feature it overrides; `None` for a feature the context
    /// does not have (the override applies to nothing).
    pub(crate) targets: Vec<Option<usize>>,
}

/// A rule's operands: its conditions' and, recursively, its sub-rules', one for one.
pub(crate) struct RulePlan {
    pub(crate) conditions: Vec<Operand>,
    pub(crate) rules: Vec<RulePlan>,
}

impl Plan {
    pub(crate) fn new(context: &EvaluationContext) -> Plan {
        let mut segments_by_feature = vec![Vec::new(); context.features.len()];
        let segments = context
            .segments
            .values()
            .enumerate()
            .map(|(index, segment)| {
                let targets: Vec<Option<usize>> = segment
                    .overrides
                    .iter()
                    .map(|o| context.features.get_index_of(o.name.as_str()))
                    .collect();
                for feature in targets.iter().flatten() {
                    segments_by_feature[*feature].push(index);
                }
                SegmentPlan {
                    rules: segment.rules.iter().map(RulePlan::new).collect(),
                    targets,
                }
            })
            .collect();
        Plan {
            segments,
            segments_by_feature,
        }
    }

    fn heap_size(&self) -> usize {
        fn rule_size(rule: &RulePlan) -> usize {
            rule.conditions.capacity() * (std::mem::size_of::<Operand>() + 64)
                + rule.rules.capacity() * std::mem::size_of::<RulePlan>()
                + rule.rules.iter().map(rule_size).sum::<usize>()
        }
        let segments: usize = self
            .segments
            .iter()
            .map(|s| {
                std::mem::size_of::<SegmentPlan>()
                    + s.targets.capacity() * std::mem::size_of::<Option<usize>>()
                    + s.rules.capacity() * std::mem::size_of::<RulePlan>()
                    + s.rules.iter().map(rule_size).sum::<usize>()
            })
            .sum();
        let by_feature: usize = self
            .segments_by_feature
            .iter()
            .map(|v| std::mem::size_of::<Vec<usize>>() + v.capacity() * 8)
            .sum();
        segments + by_feature
    }
}

impl RulePlan {
    fn new(rule: &SegmentRule) -> RulePlan {
        RulePlan {
            conditions: rule
                .conditions
                .iter()
                .map(|c| Operand::new(&c.operator, &c.value))
                .collect(),
            rules: rule.rules.iter().map(RulePlan::new).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::{IdentityContext, evaluate_for_identity};
    use serde_json::json;

    #[test]
    fn a_prepared_context_evaluates_as_the_context_does() {
        let context: EvaluationContext = serde_json::from_value(json!({
            "environment": {"key": "env-key", "name": "Production"},
            "features": {
                "banner": {"key": "1", "name": "banner", "enabled": false, "value": null},
                "plain": {"key": "2", "name": "plain", "enabled": true, "value": 1},
                "split": {"key": "3", "name": "split", "enabled": true, "value": "c",
                    "variants": [{"value": "a", "weight": 50, "priority": 1}]}
            },
            "segments": {
                "7": {
                    "key": "7", "name": "pro users",
                    "rules": [{"type": "ALL", "conditions": [
                        {"property": "plan", "operator": "IN", "value": "free,pro"},
                        {"property": "", "operator": "PERCENTAGE_SPLIT", "value": "100"}
                    ]}],
                    "overrides": [
                        {"key": "4", "name": "banner", "enabled": true, "value": "hi"},
                        {"key": "5", "name": "absent", "enabled": true, "value": "x"}
                    ]
                },
                "8": {
                    "key": "8", "name": "nobody",
                    "rules": [{"type": "ALL", "conditions": [
                        {"property": "$.flags.plain.enabled", "operator": "EQUAL", "value": "false"}
                    ]}],
                    "overrides": [{"key": "6", "name": "split", "enabled": false, "value": 0}]
                }
            }
        }))
        .expect("a context");
        let prepared = PreparedContext::new(Arc::new(context.clone()));
        for plan in ["pro", "enterprise"] {
            let who: IdentityContext = serde_json::from_value(json!({
                "identifier": "alice", "traits": {"plan": plan}
            }))
            .expect("an identity");
            let expected = evaluate_for_identity(&context, Some(&who));
            assert_eq!(prepared.evaluation(Some(&who)).to_result(), expected);
            assert_eq!(
                prepared.evaluation(None).to_result(),
                evaluate_for_identity(&context, None)
            );
        }
        assert_eq!(
            prepared.evaluation(None).to_result().flags["banner"].reason,
            "DEFAULT"
        );
    }
}
