//! What a condition's property reads: a trait, or a JSONPath query into the context (the
//! environment, the identity, features, segments, and `$.flags`, which resolves flags on demand).
//! Nodes are found depth-first and lazily, as Flagsmith's JSONPath library yields them.

use std::borrow::Cow;

use serde_json::Value;

use super::Evaluator;
use crate::evaluation::jsonpath::{Query, Segment, Selector, slice_indices};
use crate::evaluation::python::{
    ContextValue, owned_scalar_to_context_value, scalar_to_context_value, string_to_context_value,
    to_context_value,
};
use crate::evaluation::result::Flag;

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

impl<'a> Evaluator<'a, '_> {
    /// The value a condition property designates: a trait, or (for `$.`-prefixed properties
    /// that are not also trait names) the first node a JSONPath query finds in the context.
    pub(super) fn context_value(&mut self, property: &str) -> Option<ContextValue<'a>> {
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
