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

use indexmap::IndexMap;
use serde_json::Value;

use super::context::{
    ConditionOperator, EvaluationContext, FeatureContext, FeatureValue, IdentityContext, RuleType,
    SegmentCondition, SegmentContext, SegmentRule,
};
use super::hashing::hashed_percentage;
use super::jsonpath::{Query, Segment, Selector, slice_indices};
use super::operators::{cast_float, is_in, matches};
use super::python::{
    ContextValue, owned_scalar_to_context_value, scalar_to_context_value, string_to_context_value,
    to_context_value,
};
use super::result::{Evaluation, Flag, Reason};

/// The override a feature gets from a matched segment, with that segment's name.
type Override<'a> = (&'a FeatureContext, &'a str);

pub(crate) fn run<'a>(
    context: &'a EvaluationContext,
    identity: Option<&'a IdentityContext>,
) -> Evaluation<'a> {
    let mut evaluator = Evaluator::new(context, identity);
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
    /// Memoised segment verdicts (by segment key) for flag resolution.
    segment_matches: HashMap<&'a str, bool>,
    /// Keys of the segments overriding each feature name (a key repeats once per override).
    segments_by_feature: Option<HashMap<&'a str, Vec<&'a str>>>,
}

struct Evaluator<'a> {
    context: &'a EvaluationContext,
    identity: Option<&'a IdentityContext>,
    identity_key: Option<Cow<'a, str>>,
    lazy: LazyFlags<'a>,
}

/// A node reached by a JSONPath query.
enum Node<'a> {
    Root,
    Environment,
    Identity,
    Traits,
    Features,
    Segments,
    Flags,
    Flag(Flag<'a>),
    Str(&'a str),
    Json(Cow<'a, Value>),
}

impl Node<'_> {
    /// Whether a descendant segment looks inside this node (objects and arrays only).
    fn is_container(&self) -> bool {
        match self {
            Node::Str(_) => false,
            Node::Json(value) => matches!(value.as_ref(), Value::Object(_) | Value::Array(_)),
            _ => true,
        }
    }
}

impl<'a> Evaluator<'a> {
    fn new(context: &'a EvaluationContext, identity: Option<&'a IdentityContext>) -> Self {
        let identity_key = identity.map(|identity| match identity.key.as_deref() {
            Some(key) if !key.is_empty() => Cow::Borrowed(key),
            _ => Cow::Owned(format!(
                "{}_{}",
                context.environment.key, identity.identifier
            )),
        });
        Evaluator {
            context,
            identity,
            identity_key,
            lazy: LazyFlags::default(),
        }
    }

    /// The matched segments, and the winning override of each feature (by feature index).
    fn evaluate_segments(&mut self) -> (Vec<&'a SegmentContext>, Vec<Option<Override<'a>>>) {
        let mut results = Vec::new();
        let context = self.context;
        let mut overrides: Vec<Option<Override<'a>>> = vec![None; context.features.len()];
        for segment in context.segments.values() {
            let hits = self.lazy.cycle_hits;
            let matched = self.in_segment(segment);
            if self.lazy.cycle_hits != hits || !matched {
                // A verdict reached by cutting a cycle is neither a match nor a non-match.
                continue;
            }
            results.push(segment);
            for candidate in &segment.overrides {
                // An override of a feature the context does not have applies to nothing.
                let Some(i) = context.features.get_index_of(candidate.name.as_str()) else {
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
        let context = self.context;
        // Whether any segment overrides each feature (by feature index).
        let mut targeted = vec![false; context.features.len()];
        for segment in context.segments.values() {
            for candidate in &segment.overrides {
                if let Some(i) = context.features.get_index_of(candidate.name.as_str()) {
                    targeted[i] = true;
                }
            }
        }
        context
            .features
            .values()
            .zip(overrides.iter().zip(targeted))
            .map(|(feature, (winner, targeted))| match winner {
                Some((feature_override, segment_name)) => {
                    self.flag_result(feature_override, Reason::TargetingMatch(segment_name))
                }
                None if targeted => self.flag_result(feature, Reason::Default),
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

    fn in_segment(&mut self, segment: &'a SegmentContext) -> bool {
        if segment.rules.is_empty() {
            return false;
        }
        for rule in &segment.rules {
            if !self.rule_matches(rule, &segment.key) {
                return false;
            }
        }
        true
    }

    fn rule_matches(&mut self, rule: &'a SegmentRule, segment_key: &'a str) -> bool {
        // Both sides are evaluated (each short-circuiting on its own), as in Flagsmith: reading
        // a flag on the second side has effects even when the first side already failed.
        let conditions = rule.conditions.is_empty()
            || quantify(self, rule.rule_type, &rule.conditions, |this, condition| {
                this.condition_matches(condition, segment_key)
            });
        let rules = rule.rules.is_empty()
            || quantify(self, rule.rule_type, &rule.rules, |this, sub_rule| {
                this.rule_matches(sub_rule, segment_key)
            });
        conditions && rules
    }

    fn condition_matches(&mut self, condition: &'a SegmentCondition, segment_key: &str) -> bool {
        let value = if condition.operator == ConditionOperator::PercentageSplit
            && condition.property.is_empty()
        {
            // A percentage split without a property buckets the identity itself.
            self.identity_key
                .as_deref()
                .map(|key| ContextValue::Str(Cow::Owned(key.to_owned())))
        } else {
            self.context_value(&condition.property)
        };
        match &condition.operator {
            ConditionOperator::In => is_in(&condition.value, value.as_ref()),
            ConditionOperator::PercentageSplit => {
                let Some(value) = value else {
                    return false;
                };
                let Some(threshold) = cast_float(&condition.value) else {
                    return false;
                };
                hashed_percentage(&[segment_key, &value.py_str()]) <= threshold
            }
            ConditionOperator::IsSet => value.is_some(),
            ConditionOperator::IsNotSet => value.is_none(),
            operator => value.is_some_and(|value| matches(operator, &condition.value, &value)),
        }
    }

    /// The value a condition property designates: a trait, or (for `$.`-prefixed properties
    /// that are not also trait names) the first node a JSONPath query finds in the context.
    fn context_value(&mut self, property: &str) -> Option<ContextValue<'a>> {
        let trait_value = self.trait_value(property);
        if !property.starts_with("$.") {
            return trait_value.and_then(to_context_value);
        }
        if let Some(value) = trait_value.filter(|v| !v.is_null()) {
            return to_context_value(value);
        }
        // The paths every identity-override segment and most JSONPath conditions use, without
        // parsing them on each evaluation.
        match property {
            "$.identity.identifier" => {
                return self
                    .identity
                    .map(|identity| string_to_context_value(&identity.identifier));
            }
            "$.environment.name" => {
                return Some(string_to_context_value(&self.context.environment.name));
            }
            "$.environment.key" => {
                return Some(string_to_context_value(&self.context.environment.key));
            }
            _ => {}
        }
        let query = Query::parse(property).ok()?;
        match self.first_node(Node::Root, &query.segments)? {
            Node::Str(s) => Some(string_to_context_value(s)),
            Node::Json(Cow::Borrowed(value)) => scalar_to_context_value(value),
            Node::Json(Cow::Owned(value)) => owned_scalar_to_context_value(value),
            _ => None,
        }
    }

    fn trait_value(&self, name: &str) -> Option<&'a Value> {
        self.identity.and_then(|identity| identity.traits.get(name))
    }

    /// The first node of the query's result, found depth-first and lazily, as Flagsmith's
    /// JSONPath library yields them: a flag is resolved only if the query reaches it.
    fn first_node(&mut self, node: Node<'a>, segments: &[Segment]) -> Option<Node<'a>> {
        let Some((segment, rest)) = segments.split_first() else {
            return Some(node);
        };
        if segment.descendant {
            self.first_in_descendants(node, &segment.selectors, rest)
        } else {
            self.first_selected(&node, &segment.selectors, rest)
        }
    }

    /// A descendant segment: the selectors apply to the node, then to each container below it,
    /// depth-first in document order.
    fn first_in_descendants(
        &mut self,
        node: Node<'a>,
        selectors: &[Selector],
        rest: &[Segment],
    ) -> Option<Node<'a>> {
        if let Some(found) = self.first_selected(&node, selectors, rest) {
            return Some(found);
        }
        for child in self.children(&node) {
            if child.is_container()
                && let Some(found) = self.first_in_descendants(child, selectors, rest)
            {
                return Some(found);
            }
        }
        None
    }

    fn first_selected(
        &mut self,
        node: &Node<'a>,
        selectors: &[Selector],
        rest: &[Segment],
    ) -> Option<Node<'a>> {
        for selector in selectors {
            match selector {
                Selector::Name(name) => {
                    if let Some(child) = self.child(node, name)
                        && let Some(found) = self.first_node(child, rest)
                    {
                        return Some(found);
                    }
                }
                Selector::Wildcard => {
                    for child in self.children(node) {
                        if let Some(found) = self.first_node(child, rest) {
                            return Some(found);
                        }
                    }
                }
                Selector::Index(index) => {
                    if let Node::Json(value) = node
                        && let Value::Array(items) = value.as_ref()
                    {
                        let len = items.len() as i64;
                        let position = if *index < 0 { len + index } else { *index };
                        if (0..len).contains(&position)
                            && let Some(found) = array_child(value, position as usize)
                                .and_then(|child| self.first_node(child, rest))
                        {
                            return Some(found);
                        }
                    }
                }
                Selector::Slice { start, end, step } => {
                    if let Node::Json(value) = node
                        && let Value::Array(items) = value.as_ref()
                    {
                        for position in slice_indices(items.len(), *start, *end, *step) {
                            if let Some(found) = array_child(value, position)
                                .and_then(|child| self.first_node(child, rest))
                            {
                                return Some(found);
                            }
                        }
                    }
                }
            }
        }
        None
    }

    fn child(&mut self, node: &Node<'a>, name: &str) -> Option<Node<'a>> {
        let context = self.context;
        match node {
            Node::Root => match name {
                "environment" => Some(Node::Environment),
                "identity" => self.identity.map(|_| Node::Identity),
                "segments" => Some(Node::Segments),
                "features" => Some(Node::Features),
                "flags" => Some(Node::Flags),
                _ => None,
            },
            Node::Environment => match name {
                "key" => Some(Node::Str(&context.environment.key)),
                "name" => Some(Node::Str(&context.environment.name)),
                _ => None,
            },
            Node::Identity => {
                let identity = self.identity?;
                match name {
                    "identifier" => Some(Node::Str(&identity.identifier)),
                    "key" => self.identity_key.as_ref().map(|key| match key {
                        Cow::Borrowed(key) => Node::Str(key),
                        Cow::Owned(key) => Node::Json(Cow::Owned(Value::String(key.clone()))),
                    }),
                    "traits" => Some(Node::Traits),
                    _ => None,
                }
            }
            Node::Traits => self.trait_value(name).map(|v| Node::Json(Cow::Borrowed(v))),
            Node::Features => context.features.get(name).map(to_json_node),
            Node::Segments => context.segments.get(name).map(to_json_node),
            // Reading a flag resolves it; an unresolvable one is a node whose value is null.
            Node::Flags => Some(match self.read_flag(name) {
                Some(flag) => Node::Flag(flag),
                None => Node::Json(Cow::Owned(Value::Null)),
            }),
            Node::Flag(flag) => match name {
                "name" => Some(json_string(flag.name())),
                "enabled" => Some(Node::Json(Cow::Owned(Value::Bool(flag.enabled())))),
                "value" => Some(Node::Json(Cow::Borrowed(flag.value))),
                "reason" => Some(Node::Json(Cow::Owned(Value::String(
                    flag.reason.to_string(),
                )))),
                "variant" => Some(Node::Json(Cow::Owned(
                    flag.variant
                        .map_or(Value::Null, |v| Value::String(v.to_owned())),
                ))),
                "metadata" => flag
                    .metadata()
                    .map(|metadata| Node::Json(Cow::Owned(metadata))),
                _ => None,
            },
            Node::Json(value) => match value {
                Cow::Borrowed(Value::Object(map)) => {
                    map.get(name).map(|v| Node::Json(Cow::Borrowed(v)))
                }
                Cow::Owned(Value::Object(map)) => {
                    map.get(name).map(|v| Node::Json(Cow::Owned(v.clone())))
                }
                _ => None,
            },
            Node::Str(_) => None,
        }
    }

    /// Every child of a node, for a wildcard. Wildcards never resolve flags: they see the ones
    /// resolved so far, as iterating Flagsmith's lazy mapping does.
    fn children(&self, node: &Node<'a>) -> Vec<Node<'a>> {
        let context = self.context;
        match node {
            // The order of the context the Flagsmith SDK builds from an environment document.
            Node::Root => {
                let mut children = vec![Node::Environment, Node::Features, Node::Segments];
                if self.identity.is_some() {
                    children.push(Node::Identity);
                }
                children.push(Node::Flags);
                children
            }
            Node::Environment => vec![
                Node::Str(&context.environment.key),
                Node::Str(&context.environment.name),
            ],
            // A derived key comes last, as the engine adds it to the identity it was given.
            Node::Identity => match (self.identity, &self.identity_key) {
                (Some(identity), Some(Cow::Borrowed(key))) => {
                    vec![
                        Node::Str(&identity.identifier),
                        Node::Str(key),
                        Node::Traits,
                    ]
                }
                (Some(identity), Some(Cow::Owned(key))) => vec![
                    Node::Str(&identity.identifier),
                    Node::Traits,
                    Node::Json(Cow::Owned(Value::String(key.clone()))),
                ],
                _ => Vec::new(),
            },
            Node::Traits => self
                .identity
                .map(|identity| {
                    identity
                        .traits
                        .values()
                        .map(|v| Node::Json(Cow::Borrowed(v)))
                        .collect()
                })
                .unwrap_or_default(),
            Node::Features => context.features.values().map(to_json_node).collect(),
            Node::Segments => context.segments.values().map(to_json_node).collect(),
            Node::Flags => self
                .lazy
                .resolved
                .values()
                .copied()
                .map(Node::Flag)
                .collect(),
            Node::Flag(flag) => {
                let mut children = vec![
                    Node::Json(Cow::Owned(Value::Bool(flag.enabled()))),
                    json_string(flag.name()),
                    Node::Json(Cow::Owned(Value::String(flag.reason.to_string()))),
                    Node::Json(Cow::Borrowed(flag.value)),
                    Node::Json(Cow::Owned(
                        flag.variant
                            .map_or(Value::Null, |v| Value::String(v.to_owned())),
                    )),
                ];
                if let Some(metadata) = flag.metadata() {
                    children.push(Node::Json(Cow::Owned(metadata)));
                }
                children
            }
            Node::Json(Cow::Borrowed(value)) => match value {
                Value::Object(map) => map.values().map(|v| Node::Json(Cow::Borrowed(v))).collect(),
                Value::Array(items) => items.iter().map(|v| Node::Json(Cow::Borrowed(v))).collect(),
                _ => Vec::new(),
            },
            Node::Json(Cow::Owned(value)) => match value {
                Value::Object(map) => map
                    .values()
                    .map(|v| Node::Json(Cow::Owned(v.clone())))
                    .collect(),
                Value::Array(items) => items
                    .iter()
                    .map(|v| Node::Json(Cow::Owned(v.clone())))
                    .collect(),
                _ => Vec::new(),
            },
            Node::Str(_) => Vec::new(),
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
        let Some((name, feature)) = context.features.get_key_value(name) else {
            // Depending on a feature absent from the context: nothing to resolve.
            return;
        };
        let name = name.as_str();
        self.lazy.resolving.push(name);
        let feature_override = self.segment_override(name);
        self.lazy.resolving.pop();

        if self.lazy.cyclic.contains(name) {
            return;
        }
        let flag = match feature_override {
            Some((feature_override, segment_name)) => {
                self.flag_result(feature_override, Reason::TargetingMatch(segment_name))
            }
            None => {
                let reason = if self.segments_by_feature().contains_key(name) {
                    Reason::Default
                } else {
                    Reason::Static
                };
                self.flag_result(feature, reason)
            }
        };
        self.lazy.resolved.insert(name, flag);
    }

    fn segments_by_feature(&mut self) -> &HashMap<&'a str, Vec<&'a str>> {
        let context = self.context;
        self.lazy.segments_by_feature.get_or_insert_with(|| {
            let mut index: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
            for (key, segment) in &context.segments {
                for feature_override in &segment.overrides {
                    index
                        .entry(feature_override.name.as_str())
                        .or_default()
                        .push(key.as_str());
                }
            }
            index
        })
    }

    /// The winning override of one feature among the segments that override it, each segment's
    /// verdict memoised.
    fn segment_override(&mut self, name: &str) -> Option<Override<'a>> {
        let keys = self
            .segments_by_feature()
            .get(name)
            .cloned()
            .unwrap_or_default();
        let context = self.context;
        let mut best: Option<Override<'a>> = None;
        for key in keys {
            if !self.segment_matches(key) {
                continue;
            }
            let Some(segment) = context.segments.get(key) else {
                continue;
            };
            for candidate in segment.overrides.iter().filter(|o| o.name == name) {
                if wins_over(candidate, best.map(|(fc, _)| fc)) {
                    best = Some((candidate, &segment.name));
                }
            }
        }
        best
    }

    fn segment_matches(&mut self, key: &'a str) -> bool {
        if let Some(matched) = self.lazy.segment_matches.get(key) {
            return *matched;
        }
        let Some(segment) = self.context.segments.get(key) else {
            return false;
        };
        let hits = self.lazy.cycle_hits;
        let matched = self.in_segment(segment);
        if self.lazy.cycle_hits != hits {
            // Reached by cutting a cycle: not a match, and not worth memoising.
            return false;
        }
        self.lazy.segment_matches.insert(key, matched);
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
fn quantify<'a, T>(
    evaluator: &mut Evaluator<'a>,
    rule_type: RuleType,
    items: &'a [T],
    mut holds: impl FnMut(&mut Evaluator<'a>, &'a T) -> bool,
) -> bool {
    match rule_type {
        RuleType::All => items.iter().all(|item| holds(evaluator, item)),
        RuleType::Any => items.iter().any(|item| holds(evaluator, item)),
        RuleType::None => !items.iter().any(|item| holds(evaluator, item)),
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

/// A string node computed from a flag (a JSON string, as Flagsmith's mapping yields it).
fn json_string<'a>(s: &str) -> Node<'a> {
    Node::Json(Cow::Owned(Value::String(s.to_owned())))
}

fn to_json_node<'a, T: serde::Serialize>(item: &T) -> Node<'a> {
    Node::Json(Cow::Owned(
        serde_json::to_value(item).unwrap_or(Value::Null),
    ))
}

fn array_child<'a>(array: &Cow<'a, Value>, index: usize) -> Option<Node<'a>> {
    match array {
        Cow::Borrowed(Value::Array(items)) => {
            items.get(index).map(|v| Node::Json(Cow::Borrowed(v)))
        }
        Cow::Owned(Value::Array(items)) => {
            items.get(index).map(|v| Node::Json(Cow::Owned(v.clone())))
        }
        _ => None,
    }
}
