//! The project aggregate: a project's settings, its features (with their multivariate options)
//! and its segments. One stream per project (`project-{id}`) is the consistency boundary for
//! feature names (unique per project, also under concurrent creation) and for the ids of
//! features, segments and options, which are allocated here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, DomainEvent};
use crate::error::{Error, Result};
use crate::model::{
    Feature, FeatureId, FeatureType, MultivariateOption, OptionId, OrganisationId, ProjectId,
    Segment, SegmentId, SegmentRule, validate_name, validate_percentage, validate_rules,
    validate_value,
};

pub fn stream(id: ProjectId) -> String {
    format!("project-{id}")
}

/// A project's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProjectSettings {
    pub name: String,
    /// Feature names must match this regular expression (whole name) when set.
    #[serde(default)]
    pub feature_name_regex: Option<String>,
    /// Feature names are unique ignoring case unless this is set.
    #[serde(default)]
    pub case_sensitive_feature_names: bool,
    #[serde(default)]
    pub hide_disabled_flags: bool,
    /// Approvals a change request of the project's definitions (features, their options,
    /// segments) needs; 0 turns four-eyes off for them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minimum_change_request_approvals: u32,
    /// Only approvals of the reviewers assigned to a request count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approvals_from_assigned_reviewers_only: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ProjectSettings {
    pub fn validate(&self) -> Result<()> {
        validate_name("name", &self.name)?;
        if let Some(pattern) = &self.feature_name_regex {
            regex::Regex::new(pattern).map_err(|e| {
                Error::invalid(
                    "feature_name_regex",
                    format!("invalid regular expression: {e}"),
                )
            })?;
        }
        if self.minimum_change_request_approvals > crate::environment::MAX_MINIMUM_APPROVALS {
            return Err(Error::invalid(
                "minimum_change_request_approvals",
                format!(
                    "must be at most {}",
                    crate::environment::MAX_MINIMUM_APPROVALS
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProjectEvent {
    ProjectCreated {
        id: ProjectId,
        organisation_id: OrganisationId,
        settings: ProjectSettings,
    },
    ProjectUpdated {
        settings: ProjectSettings,
    },
    FeatureCreated {
        feature: Feature,
    },
    /// The feature's whole new definition (the previous one is the event before it).
    FeatureUpdated {
        feature: Feature,
    },
    FeatureDeleted {
        id: FeatureId,
    },
    SegmentCreated {
        segment: Segment,
    },
    SegmentUpdated {
        segment: Segment,
    },
    SegmentDeleted {
        id: SegmentId,
    },
}

impl DomainEvent for ProjectEvent {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub organisation_id: OrganisationId,
    pub settings: ProjectSettings,
    pub features: BTreeMap<FeatureId, Feature>,
    pub segments: BTreeMap<SegmentId, Segment>,
    /// Highest id ever given to a feature, segment or option here: ids are never reused.
    pub max_id: u64,
    /// How many times each feature's definition changed (created, updated, deleted): what a
    /// change request's base is compared with.
    pub feature_revisions: BTreeMap<FeatureId, u64>,
    /// The same for segments.
    pub segment_revisions: BTreeMap<SegmentId, u64>,
    pub exists: bool,
}

impl Aggregate for Project {
    type Event = ProjectEvent;

    fn apply(&mut self, event: &ProjectEvent) {
        match event {
            ProjectEvent::ProjectCreated {
                id,
                organisation_id,
                settings,
            } => {
                self.id = *id;
                self.organisation_id = *organisation_id;
                self.settings = settings.clone();
                self.exists = true;
            }
            ProjectEvent::ProjectUpdated { settings } => self.settings = settings.clone(),
            ProjectEvent::FeatureCreated { feature } | ProjectEvent::FeatureUpdated { feature } => {
                self.max_id = self.max_id.max(feature.id);
                for option in &feature.multivariate_options {
                    self.max_id = self.max_id.max(option.id);
                }
                *self.feature_revisions.entry(feature.id).or_default() += 1;
                self.features.insert(feature.id, feature.clone());
            }
            ProjectEvent::FeatureDeleted { id } => {
                *self.feature_revisions.entry(*id).or_default() += 1;
                self.features.remove(id);
            }
            ProjectEvent::SegmentCreated { segment } | ProjectEvent::SegmentUpdated { segment } => {
                self.max_id = self.max_id.max(segment.id);
                *self.segment_revisions.entry(segment.id).or_default() += 1;
                self.segments.insert(segment.id, segment.clone());
            }
            ProjectEvent::SegmentDeleted { id } => {
                *self.segment_revisions.entry(*id).or_default() += 1;
                self.segments.remove(id);
            }
        }
    }
}

/// A multivariate option as given in a command: `id` only when importing or keeping an option.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OptionInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<OptionId>,
    pub value: Value,
    #[serde(default)]
    pub default_percentage_allocation: f64,
    /// Reported as the flag's `variant` when chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The definition of a feature as given in a command. `id` is set only by the importer, which
/// keeps the ids evaluation hashes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<FeatureId>,
    pub name: String,
    #[serde(rename = "type", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub feature_type: FeatureType,
    #[serde(default)]
    pub default_enabled: bool,
    #[serde(default)]
    pub initial_value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub multivariate_options: Vec<OptionInput>,
}

/// Changes to a feature; `None` keeps what is there. The name cannot change: SDKs and code
/// refer to features by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_value: Option<Value>,
    /// An empty string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multivariate_options: Option<Vec<OptionInput>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<SegmentId>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Flagsmith's segment rules: `[{"type": "ALL"|"ANY"|"NONE", "conditions": [{"operator",
    /// "property_", "value"}], "rules": [...]}]`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub rules: Vec<SegmentRule>,
}

impl Project {
    pub fn require_exists(&self, id: ProjectId) -> Result<()> {
        if self.exists {
            Ok(())
        } else {
            Err(Error::not_found("project", id))
        }
    }

    pub fn feature(&self, id: FeatureId) -> Result<&Feature> {
        self.features
            .get(&id)
            .ok_or_else(|| Error::not_found("feature", id))
    }

    pub fn feature_by_name(&self, name: &str) -> Option<&Feature> {
        self.features.values().find(|f| f.name == name)
    }

    pub fn segment(&self, id: SegmentId) -> Result<&Segment> {
        self.segments
            .get(&id)
            .ok_or_else(|| Error::not_found("segment", id))
    }

    pub fn create(
        id: ProjectId,
        organisation_id: OrganisationId,
        settings: ProjectSettings,
    ) -> Result<Vec<ProjectEvent>> {
        settings.validate()?;
        Ok(vec![ProjectEvent::ProjectCreated {
            id,
            organisation_id,
            settings,
        }])
    }

    pub fn update(&self, settings: ProjectSettings) -> Result<Vec<ProjectEvent>> {
        self.require_exists(self.id)?;
        settings.validate()?;
        if settings == self.settings {
            return Ok(vec![]);
        }
        Ok(vec![ProjectEvent::ProjectUpdated { settings }])
    }

    fn next_id(&self, taken: &mut u64) -> u64 {
        *taken = (*taken).max(self.max_id) + 1;
        *taken
    }

    fn names_clash(&self, a: &str, b: &str) -> bool {
        if self.settings.case_sensitive_feature_names {
            a == b
        } else {
            a.to_lowercase() == b.to_lowercase()
        }
    }

    /// Decides a feature's creation; returns the feature as created.
    pub fn create_feature(&self, input: FeatureInput) -> Result<(Feature, Vec<ProjectEvent>)> {
        self.require_exists(self.id)?;
        let name = input.name.trim().to_string();
        validate_name("name", &name)?;
        if let Some(pattern) = &self.settings.feature_name_regex {
            let anchored = format!("^(?:{pattern})$");
            let matches = regex::Regex::new(&anchored).is_ok_and(|re| re.is_match(&name));
            if !matches {
                return Err(Error::invalid(
                    "name",
                    format!("must match the project's feature name pattern {pattern:?}"),
                ));
            }
        }
        if self
            .features
            .values()
            .any(|f| self.names_clash(&f.name, &name))
        {
            return Err(Error::conflict(
                "name",
                format!("a feature named {name:?} already exists in this project"),
            ));
        }
        let mut taken = 0;
        let id = match input.id {
            Some(id) if self.features.contains_key(&id) => {
                return Err(Error::conflict("id", format!("feature id {id} is taken")));
            }
            Some(id) => id,
            None => self.next_id(&mut taken),
        };
        taken = taken.max(id);
        let options = self.options_from(&input.multivariate_options, &[], &mut taken)?;
        let feature = Feature {
            id,
            name,
            feature_type: if options.is_empty() {
                input.feature_type
            } else {
                FeatureType::Multivariate
            },
            default_enabled: input.default_enabled,
            initial_value: input.initial_value,
            description: input.description,
            tags: input.tags,
            multivariate_options: options,
        };
        validate_value("initial_value", &feature.initial_value)?;
        Ok((
            feature.clone(),
            vec![ProjectEvent::FeatureCreated { feature }],
        ))
    }

    /// Turns option inputs into options: kept ids must exist (or be new imported ids), new ones
    /// are allocated, and default allocations must sum to at most 100.
    fn options_from(
        &self,
        inputs: &[OptionInput],
        existing: &[MultivariateOption],
        taken: &mut u64,
    ) -> Result<Vec<MultivariateOption>> {
        let mut options: Vec<MultivariateOption> = Vec::with_capacity(inputs.len());
        let mut total = 0.0;
        for (i, input) in inputs.iter().enumerate() {
            let field = format!("multivariate_options[{i}]");
            validate_value(&format!("{field}.value"), &input.value)?;
            validate_percentage(
                &format!("{field}.default_percentage_allocation"),
                input.default_percentage_allocation,
            )?;
            total += input.default_percentage_allocation;
            let id = match input.id {
                Some(id) => {
                    let known = existing.iter().any(|o| o.id == id);
                    if !known && id <= self.max_id && !existing.is_empty() {
                        return Err(Error::invalid(
                            format!("{field}.id"),
                            format!("this feature has no option {id}"),
                        ));
                    }
                    if options.iter().any(|o| o.id == id) {
                        return Err(Error::invalid(format!("{field}.id"), "duplicate option id"));
                    }
                    *taken = (*taken).max(id);
                    id
                }
                None => self.next_id(taken),
            };
            options.push(MultivariateOption {
                id,
                value: input.value.clone(),
                default_percentage_allocation: input.default_percentage_allocation,
                key: input.key.clone(),
            });
        }
        if total > 100.0 + 1e-9 {
            return Err(Error::invalid(
                "multivariate_options",
                format!("default allocations sum to {total}, more than 100"),
            ));
        }
        Ok(options)
    }

    /// Decides a feature's change; returns the feature as changed.
    pub fn update_feature(
        &self,
        id: FeatureId,
        changes: FeatureChanges,
    ) -> Result<(Feature, Vec<ProjectEvent>)> {
        let current = self.feature(id)?;
        let mut feature = current.clone();
        if let Some(enabled) = changes.default_enabled {
            feature.default_enabled = enabled;
        }
        if let Some(value) = changes.initial_value {
            validate_value("initial_value", &value)?;
            feature.initial_value = value;
        }
        if let Some(description) = changes.description {
            // An empty description clears it.
            feature.description = (!description.is_empty()).then_some(description);
        }
        if let Some(tags) = changes.tags {
            feature.tags = tags;
        }
        if let Some(options) = changes.multivariate_options {
            let mut taken = 0;
            feature.multivariate_options =
                self.options_from(&options, &current.multivariate_options, &mut taken)?;
            if !feature.multivariate_options.is_empty() {
                feature.feature_type = FeatureType::Multivariate;
            }
        }
        if &feature == current {
            return Ok((feature, vec![]));
        }
        Ok((
            feature.clone(),
            vec![ProjectEvent::FeatureUpdated { feature }],
        ))
    }

    pub fn delete_feature(&self, id: FeatureId) -> Result<Vec<ProjectEvent>> {
        self.feature(id)?;
        Ok(vec![ProjectEvent::FeatureDeleted { id }])
    }

    fn validated_segment(&self, id: SegmentId, input: SegmentInput) -> Result<Segment> {
        let name = input.name.trim().to_string();
        validate_name("name", &name)?;
        validate_rules(&input.rules)?;
        Ok(Segment {
            id,
            name,
            description: input.description,
            rules: input.rules,
        })
    }

    pub fn create_segment(&self, input: SegmentInput) -> Result<(SegmentId, Vec<ProjectEvent>)> {
        self.require_exists(self.id)?;
        let id = match input.id {
            Some(id) if self.segments.contains_key(&id) => {
                return Err(Error::conflict("id", format!("segment id {id} is taken")));
            }
            Some(id) => id,
            None => self.next_id(&mut 0),
        };
        let segment = self.validated_segment(id, input)?;
        Ok((id, vec![ProjectEvent::SegmentCreated { segment }]))
    }

    pub fn update_segment(&self, id: SegmentId, input: SegmentInput) -> Result<Vec<ProjectEvent>> {
        let current = self.segment(id)?;
        let segment = self.validated_segment(id, input)?;
        if &segment == current {
            return Ok(vec![]);
        }
        Ok(vec![ProjectEvent::SegmentUpdated { segment }])
    }

    pub fn delete_segment(&self, id: SegmentId) -> Result<Vec<ProjectEvent>> {
        self.segment(id)?;
        Ok(vec![ProjectEvent::SegmentDeleted { id }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(settings: ProjectSettings) -> Project {
        Project::from_events(&Project::create(1, 1, settings).unwrap())
    }

    fn named(name: &str) -> FeatureInput {
        serde_json::from_value(json!({"name": name})).unwrap()
    }

    fn apply(mut p: Project, events: Vec<ProjectEvent>) -> Project {
        events.iter().for_each(|e| p.apply(e));
        p
    }

    fn settings(name: &str) -> ProjectSettings {
        ProjectSettings {
            name: name.into(),
            ..ProjectSettings::default()
        }
    }

    #[test]
    fn feature_names_are_unique_ignoring_case_by_default() {
        let p = project(settings("p"));
        let (_, events) = p.create_feature(named("Checkout")).unwrap();
        let p = apply(p, events);
        assert!(matches!(
            p.create_feature(named("checkout")),
            Err(Error::Conflict { .. })
        ));
    }

    #[test]
    fn case_sensitive_projects_allow_names_differing_in_case() {
        let p = project(ProjectSettings {
            case_sensitive_feature_names: true,
            ..settings("p")
        });
        let (_, events) = p.create_feature(named("Checkout")).unwrap();
        let p = apply(p, events);
        assert!(p.create_feature(named("checkout")).is_ok());
        assert!(p.create_feature(named("Checkout")).is_err());
    }

    #[test]
    fn feature_names_must_match_the_project_pattern() {
        let p = project(ProjectSettings {
            feature_name_regex: Some("[a-z_]+".into()),
            ..settings("p")
        });
        assert!(p.create_feature(named("new_checkout")).is_ok());
        let err = p.create_feature(named("NewCheckout")).unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. } if field == "name"));
    }

    #[test]
    fn ids_are_never_reused() {
        let p = project(settings("p"));
        let (first, events) = p.create_feature(named("a")).unwrap();
        let first = first.id;
        let p = apply(p, events);
        let p = apply(p.clone(), p.delete_feature(first).unwrap());
        let (second, _) = p.create_feature(named("a")).unwrap();
        assert!(second.id > first);
    }

    #[test]
    fn multivariate_options_get_ids_and_their_defaults_are_bounded() {
        let p = project(settings("p"));
        let input: FeatureInput = serde_json::from_value(json!({"name": "colour",
            "multivariate_options": [{"value": "red", "default_percentage_allocation": 30},
                                     {"value": "blue", "default_percentage_allocation": 70}]}))
        .unwrap();
        let (created, events) = p.create_feature(input).unwrap();
        let id = created.id;
        let p = apply(p, events);
        let feature = p.feature(id).unwrap();
        assert_eq!(feature, &created);
        assert_eq!(feature.feature_type, FeatureType::Multivariate);
        let ids: Vec<_> = feature.multivariate_options.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![id + 1, id + 2]);

        let over: FeatureInput = serde_json::from_value(json!({"name": "size",
            "multivariate_options": [{"value": 1, "default_percentage_allocation": 60},
                                     {"value": 2, "default_percentage_allocation": 41}]}))
        .unwrap();
        assert!(matches!(p.create_feature(over), Err(Error::Invalid { .. })));
    }

    #[test]
    fn unknown_features_and_segments_are_not_found() {
        let p = project(settings("p"));
        assert!(matches!(
            p.update_feature(7, FeatureChanges::default()),
            Err(Error::NotFound {
                entity: "feature",
                ..
            })
        ));
        assert!(matches!(
            p.delete_segment(7),
            Err(Error::NotFound {
                entity: "segment",
                ..
            })
        ));
    }

    #[test]
    fn segments_with_bad_rules_are_refused_naming_the_field() {
        let p = project(settings("p"));
        let input: SegmentInput = serde_json::from_value(json!({"name": "s", "rules": [
            {"type": "ALL", "conditions": [{"operator": "MODULO", "property_": "n", "value": "x"}]}
        ]}))
        .unwrap();
        let err = p.create_segment(input).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref field, .. } if field == "rules[0].conditions[0].value")
        );
    }
}
