//! The evaluation itself: which segments a context matches, which override or default each
//! feature gets, which multivariate value an identity receives, and flags that depend on flags.
//!
//! It follows Flagsmith's engine step by step, including the order in which it evaluates things,
//! because with flag dependencies order is observable: a condition `$.flags.NAME.enabled`
//! resolves that flag on demand (memoising segment verdicts on the way), a dependency cycle is
//! cut where it closes, and a segment whose verdict rested on a cut cycle neither matches nor
//! counts as not matching. Short-circuiting follows Python's `all`/`any` for the same reason:
//! whether a flag gets read at all can change what is cut.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::context::{
    ConditionOperator, EvaluationContext, FeatureContext, FeatureValue, IdentityContext, RuleType,
    SegmentCondition, SegmentContext, SegmentRule,
};
use super::hashing::hashed_percentage;
use super::operators::{Operand, holds};
use super::prepared::{Plan, RulePlan, SegmentPlan};
use super::result::{Evaluation, Flag, Reason};
use indexmap::IndexMap;

mod query;

/// The override a feature gets from a matched segment, with that segment's name.
type Override<'a> = (&'a FeatureContext, &'a str);

/// Evaluates `context` for `identity`, with `plan` prepared from that same context. The result
/// borrows the context only.
pub(crate) fn run<'a>(
    context: &'a EvaluationContext,
    plan: &Plan,
    identity: Option<&'a IdentityContext>,
) -> Evaluation<'a> {
    let mut evaluator = Evaluator::new(context, plan, identity);
    let (segments, overrides) = evaluator.evaluate_segments();
    let mut flags = evaluator.evaluate_features(&overrides);

    if evaluator.lazy.used {
        // Flags resolved on demand take precedence: they were resolved with the cycle guard,
        // unlike the single pass above.
        let lazy = std::mem::take(&mut evaluator.lazy);
        for (name, flag) in lazy.resolved {
            if let Some(i) = context.features.get_index_of(name) {
                flags[i] = flag;
            }
        }
        for name in lazy.cyclic {
            if let Some(i) = context.features.get_index_of(name) {
                flags[i].reason = Reason::CircularDependency;
            }
        }
    }

    Evaluation {
        context,
        flags,
        segments,
    }
}

/// State of `$.flags` for one evaluation: the flags resolved so far and the bookkeeping that
/// detects dependency cycles.
#[derive(Default)]
struct LazyFlags<'a> {
    /// Set the first time a condition reads a flag.
    used: bool,
    /// Resolved flags, in resolution order.
    resolved: IndexMap<&'a str, Flag<'a>>,
    /// Flags found to be part of a dependency cycle.
    cyclic: HashSet<&'a str>,
    /// Incremented whenever a cycle is cut; a segment evaluation that saw it change rests on an
    /// unresolvable flag.
    cycle_hits: u64,
    /// The flags being resolved, innermost last.
    resolving: Vec<&'a str>,
    /// Memoised segment verdicts (by segment index) for flag resolution.
    segment_matches: HashMap<usize, bool>,
}

/// One evaluation: the context (`'a`, which the result borrows) and its plan (`'p`).
struct Evaluator<'a, 'p> {
    context: &'a EvaluationContext,
    plan: &'p Plan,
    identity: Option<&'a IdentityContext>,
    identity_key: Option<Cow<'a, str>>,
    lazy: LazyFlags<'a>,
}

impl<'a, 'p> Evaluator<'a, 'p> {
    fn new(
        context: &'a EvaluationContext,
        plan: &'p Plan,
        identity: Option<&'a IdentityContext>,
    ) -> Self {
        let identity_key = identity.map(|identity| match identity.key.as_deref() {
            Some(key) if !key.is_empty() => Cow::Borrowed(key),
            _ => Cow::Owned(format!(
                "{}_{}",
                context.environment.key, identity.identifier
            )),
        });
        Evaluator {
            context,
            plan,
            identity,
            identity_key,
            lazy: LazyFlags::default(),
        }
    }

    /// The matched segments, and the winning override of each feature (by feature index).
    fn evaluate_segments(&mut self) -> (Vec<&'a SegmentContext>, Vec<Option<Override<'a>>>) {
        let mut results = Vec::new();
        let context = self.context;
        let plan = self.plan;
        let mut overrides: Vec<Option<Override<'a>>> = vec![None; context.features.len()];
        for (segment, segment_plan) in context.segments.values().zip(&plan.segments) {
            let hits = self.lazy.cycle_hits;
            let matched = self.in_segment(segment, segment_plan);
            if self.lazy.cycle_hits != hits || !matched {
                // A verdict reached by cutting a cycle is neither a match nor a non-match.
                continue;
            }
            results.push(segment);
            for (candidate, target) in segment.overrides.iter().zip(&segment_plan.targets) {
                // An override of a feature the context does not have applies to nothing.
                let Some(i) = *target else {
                    continue;
                };
                if wins_over(candidate, overrides[i].map(|(fc, _)| fc)) {
                    overrides[i] = Some((candidate, &segment.name));
                }
            }
        }
        (results, overrides)
    }

    fn evaluate_features(&self, overrides: &[Option<Override<'a>>]) -> Vec<Flag<'a>> {
        self.context
            .features
            .values()
            .zip(overrides.iter().zip(&self.plan.segments_by_feature))
            .map(|(feature, (winner, by))| match winner {
                Some((feature_override, segment_name)) => {
                    self.flag_result(feature_override, Reason::TargetingMatch(segment_name))
                }
                // Targeted by some segment, though by none that matched.
                None if !by.is_empty() => self.flag_result(feature, Reason::Default),
                None => self.flag_result(feature, Reason::Static),
            })
            .collect()
    }

    fn flag_result(&self, feature: &'a FeatureContext, mut reason: Reason<'a>) -> Flag<'a> {
        let mut value = &feature.value;
        let mut variant = None;
        if let Some(identity_key) = self.identity_key.as_deref()
            && !feature.variants.is_empty()
        {
            variant = Some("control");
            let percentage = hashed_percentage(&[&feature.key, identity_key]);
            if let Some(chosen) = chosen_variant(&feature.variants, percentage) {
                reason = Reason::Split(&chosen.weight);
                value = &chosen.value;
                variant = chosen.key.as_deref();
            }
        }
        Flag {
            source: feature,
            value,
            reason,
            variant,
        }
    }

    fn in_segment(&mut self, segment: &'a SegmentContext, plan: &'p SegmentPlan) -> bool {
        if segment.rules.is_empty() {
            return false;
        }
        for (rule, rule_plan) in segment.rules.iter().zip(&plan.rules) {
            if !self.rule_matches(rule, rule_plan, &segment.key) {
                return false;
            }
        }
        true
    }

    fn rule_matches(
        &mut self,
        rule: &'a SegmentRule,
        plan: &'p RulePlan,
        segment_key: &str,
    ) -> bool {
        // Both sides are evaluated (each short-circuiting on its own), as in Flagsmith: reading
        // a flag on the second side has effects even when the first side already failed.
        let conditions = rule.conditions.is_empty()
            || quantify(
                self,
                rule.rule_type,
                rule.conditions.iter().zip(&plan.conditions),
                |this, (condition, operand)| {
                    this.condition_matches(condition, operand, segment_key)
                },
            );
        let rules = rule.rules.is_empty()
            || quantify(
                self,
                rule.rule_type,
                rule.rules.iter().zip(&plan.rules),
                |this, (sub_rule, sub_plan)| this.rule_matches(sub_rule, sub_plan, segment_key),
            );
        conditions && rules
    }

    fn condition_matches(
        &mut self,
        condition: &'a SegmentCondition,
        operand: &Operand,
        segment_key: &str,
    ) -> bool {
        if condition.operator == ConditionOperator::PercentageSplit {
            let threshold = match operand {
                Operand::Threshold(threshold) => *threshold,
                _ => None,
            };
            if condition.property.is_empty() {
                // A percentage split without a property buckets the identity itself.
                let (Some(key), Some(threshold)) = (self.identity_key.as_deref(), threshold) else {
                    return false;
                };
                return hashed_percentage(&[segment_key, key]) <= threshold;
            }
            // The property is read first, threshold or not: reading a flag has effects.
            let value = self.context_value(&condition.property);
            let (Some(value), Some(threshold)) = (value, threshold) else {
                return false;
            };
            return hashed_percentage(&[segment_key, &value.py_str()]) <= threshold;
        }
        let value = self.context_value(&condition.property);
        match &condition.operator {
            ConditionOperator::IsSet => value.is_some(),
            ConditionOperator::IsNotSet => value.is_none(),
            operator => value.is_some_and(|value| holds(operator, operand, &value)),
        }
    }

    /// `$.flags.NAME`: the flag's result, resolving it on first read.
    fn read_flag(&mut self, name: &str) -> Option<Flag<'a>> {
        if let Some(flag) = self.lazy.resolved.get(name) {
            return Some(*flag);
        }
        self.lazy.used = true;
        self.resolve_feature(name);
        self.lazy.resolved.get(name).copied()
    }

    fn resolve_feature(&mut self, name: &str) {
        if let Some(start) = self.lazy.resolving.iter().position(|n| *n == name) {
            // A dependency cycle: every flag from the first read of this one is in it.
            let cycle: Vec<&'a str> = self.lazy.resolving[start..].to_vec();
            self.lazy.cyclic.extend(cycle);
            self.lazy.cycle_hits += 1;
            return;
        }
        let context = self.context;
        let Some((index, name, feature)) = context.features.get_full(name) else {
            // Depending on a feature absent from the context: nothing to resolve.
            return;
        };
        let name = name.as_str();
        self.lazy.resolving.push(name);
        let feature_override = self.segment_override(index);
        self.lazy.resolving.pop();

        if self.lazy.cyclic.contains(name) {
            return;
        }
        let flag = match feature_override {
            Some((feature_override, segment_name)) => {
                self.flag_result(feature_override, Reason::TargetingMatch(segment_name))
            }
            None => {
                let reason = if self.plan.segments_by_feature[index].is_empty() {
                    Reason::Static
                } else {
                    Reason::Default
                };
                self.flag_result(feature, reason)
            }
        };
        self.lazy.resolved.insert(name, flag);
    }

    /// The winning override of one feature (by index) among the segments that override it,
    /// each segment's verdict memoised.
    fn segment_override(&mut self, feature: usize) -> Option<Override<'a>> {
        let context = self.context;
        let plan = self.plan;
        let mut best: Option<Override<'a>> = None;
        for &index in &plan.segments_by_feature[feature] {
            if !self.segment_matches(index) {
                continue;
            }
            let Some((_, segment)) = context.segments.get_index(index) else {
                continue;
            };
            let targets = &plan.segments[index].targets;
            for (candidate, _) in segment
                .overrides
                .iter()
                .zip(targets)
                .filter(|(_, target)| **target == Some(feature))
            {
                if wins_over(candidate, best.map(|(fc, _)| fc)) {
                    best = Some((candidate, &segment.name));
                }
            }
        }
        best
    }

    fn segment_matches(&mut self, index: usize) -> bool {
        if let Some(matched) = self.lazy.segment_matches.get(&index) {
            return *matched;
        }
        let plan = self.plan;
        let (Some((_, segment)), Some(segment_plan)) = (
            self.context.segments.get_index(index),
            plan.segments.get(index),
        ) else {
            return false;
        };
        let hits = self.lazy.cycle_hits;
        let matched = self.in_segment(segment, segment_plan);
        if self.lazy.cycle_hits != hits {
            // Reached by cutting a cycle: not a match, and not worth memoising.
            return false;
        }
        self.lazy.segment_matches.insert(index, matched);
        matched
    }
}

/// The multivariate value whose band of weights holds `percentage`, walking the values in
/// ascending priority (stably, like Python's `sorted`: equal priorities keep their order); `None`
/// leaves the identity with the control value. Values are usually stored in priority order
/// already, and then nothing is sorted.
fn chosen_variant(variants: &[FeatureValue], percentage: f64) -> Option<&FeatureValue> {
    fn choose<'v>(
        ordered: impl Iterator<Item = &'v FeatureValue>,
        percentage: f64,
    ) -> Option<&'v FeatureValue> {
        let mut start = 0.0;
        for candidate in ordered {
            let limit = candidate.weight.as_f64().unwrap_or(f64::NAN) + start;
            if start <= percentage && percentage < limit {
                return Some(candidate);
            }
            start = limit;
        }
        None
    }
    let in_order = |a: &FeatureValue, b: &FeatureValue| {
        a.priority.numeric_cmp(&b.priority) != std::cmp::Ordering::Greater
    };
    if variants.is_sorted_by(in_order) {
        return choose(variants.iter(), percentage);
    }
    let mut by_priority: Vec<&FeatureValue> = variants.iter().collect();
    by_priority.sort_by(|a, b| a.priority.numeric_cmp(&b.priority));
    choose(by_priority.into_iter(), percentage)
}

/// Applies a rule's quantifier to items, short-circuiting as Python's `all`/`any` do.
fn quantify<'a, 'p, I: Iterator>(
    evaluator: &mut Evaluator<'a, 'p>,
    rule_type: RuleType,
    mut items: I,
    mut holds: impl FnMut(&mut Evaluator<'a, 'p>, I::Item) -> bool,
) -> bool {
    match rule_type {
        RuleType::All => items.all(|item| holds(evaluator, item)),
        RuleType::Any => items.any(|item| holds(evaluator, item)),
        RuleType::None => !items.any(|item| holds(evaluator, item)),
    }
}

/// Lower priority wins; without one, an override is the weakest; the first seen wins a tie.
fn wins_over(candidate: &FeatureContext, incumbent: Option<&FeatureContext>) -> bool {
    match incumbent {
        None => true,
        Some(incumbent) => {
            candidate.priority.unwrap_or(f64::INFINITY)
                < incumbent.priority.unwrap_or(f64::INFINITY)
        }
    }
}
