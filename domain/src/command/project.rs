//! Commands on a project (`project-{id}`): its settings, features and segments.
//!
//! Removing something environments still use (a segment with overrides, a multivariate option
//! with allocations) is refused with a conflict that names each use: an override or allocation is
//! configuration someone chose, so it is removed explicitly (and visibly, as its own event) in the
//! environment, never dropped as a side effect. To hold under concurrency, those decisions read the
//! project's environments as facts, and the append expects their versions.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::error::{Error, Result};
use crate::model::{FeatureId, OptionId, ProjectId, SegmentId};
use crate::project::{
    FeatureChanges, FeatureInput, Project, ProjectEvent, ProjectSettings, SegmentInput,
};

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames, strum::IntoStaticStr,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ProjectCommand {
    UpdateProject {
        project_id: ProjectId,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        settings: ProjectSettings,
    },
    CreateFeature {
        project_id: ProjectId,
        feature: FeatureInput,
    },
    UpdateFeature {
        project_id: ProjectId,
        feature_id: FeatureId,
        changes: FeatureChanges,
    },
    DeleteFeature {
        project_id: ProjectId,
        feature_id: FeatureId,
    },
    CreateSegment {
        project_id: ProjectId,
        segment: SegmentInput,
    },
    UpdateSegment {
        project_id: ProjectId,
        segment_id: SegmentId,
        segment: SegmentInput,
    },
    DeleteSegment {
        project_id: ProjectId,
        segment_id: SegmentId,
    },
}

/// What a project decision reads from other aggregates: the project's environments, when
/// [`ProjectCommand::reads_environments`] (else empty).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProjectFacts<'a> {
    pub environments: &'a [Environment],
}

impl ProjectCommand {
    pub fn project_id(&self) -> ProjectId {
        match self {
            ProjectCommand::UpdateProject { project_id, .. }
            | ProjectCommand::CreateFeature { project_id, .. }
            | ProjectCommand::UpdateFeature { project_id, .. }
            | ProjectCommand::DeleteFeature { project_id, .. }
            | ProjectCommand::CreateSegment { project_id, .. }
            | ProjectCommand::UpdateSegment { project_id, .. }
            | ProjectCommand::DeleteSegment { project_id, .. } => *project_id,
        }
    }

    /// Whether the decision reads the project's environments: only removals of what they may
    /// use (a segment, multivariate options).
    pub fn reads_environments(&self) -> bool {
        match self {
            ProjectCommand::DeleteSegment { .. } => true,
            ProjectCommand::UpdateFeature { changes, .. } => changes.multivariate_options.is_some(),
            _ => false,
        }
    }
}

/// Decides a project command.
pub fn decide(
    project: &Project,
    command: &ProjectCommand,
    facts: &ProjectFacts<'_>,
) -> Result<Vec<ProjectEvent>> {
    let id = command.project_id();
    if !project.exists || project.id != id {
        return Err(Error::not_found("project", id));
    }
    match command {
        ProjectCommand::UpdateProject { settings, .. } => project.update(settings.clone()),
        ProjectCommand::CreateFeature { feature, .. } => {
            Ok(project.create_feature(feature.clone())?.1)
        }
        ProjectCommand::UpdateFeature {
            feature_id,
            changes,
            ..
        } => {
            let (updated, events) = project.update_feature(*feature_id, changes.clone())?;
            let before = project.feature(*feature_id)?;
            let kept: BTreeSet<OptionId> =
                updated.multivariate_options.iter().map(|o| o.id).collect();
            let removed: BTreeSet<OptionId> = before
                .multivariate_options
                .iter()
                .map(|o| o.id)
                .filter(|id| !kept.contains(id))
                .collect();
            let listed: Vec<String> = removed.iter().map(u64::to_string).collect();
            refuse_uses(
                "multivariate_options",
                &format!(
                    "option{} {} of feature `{}` cannot be removed",
                    if removed.len() == 1 { "" } else { "s" },
                    listed.join(", "),
                    before.name
                ),
                option_uses(project, facts.environments, *feature_id, &removed),
            )?;
            Ok(events)
        }
        ProjectCommand::DeleteFeature { feature_id, .. } => project.delete_feature(*feature_id),
        ProjectCommand::CreateSegment { segment, .. } => {
            Ok(project.create_segment(segment.clone())?.1)
        }
        ProjectCommand::UpdateSegment {
            segment_id,
            segment,
            ..
        } => project.update_segment(*segment_id, segment.clone()),
        ProjectCommand::DeleteSegment { segment_id, .. } => {
            let segment = project.segment(*segment_id)?;
            refuse_uses(
                "segment_id",
                &format!(
                    "segment `{}` (id {segment_id}) cannot be deleted",
                    segment.name
                ),
                segment_uses(project, facts.environments, *segment_id),
            )?;
            project.delete_segment(*segment_id)
        }
    }
}

/// Refuses with a conflict naming every use, if there is any.
fn refuse_uses(field: &str, refused: &str, uses: Vec<String>) -> Result<()> {
    if uses.is_empty() {
        return Ok(());
    }
    let them = if uses.len() == 1 { "it" } else { "them" };
    Err(Error::conflict(
        field,
        format!(
            "{refused}: still used by {}; remove or change {them} first",
            uses.join("; ")
        ),
    ))
}

fn feature_name(project: &Project, id: FeatureId) -> String {
    project
        .features
        .get(&id)
        .map_or_else(|| format!("#{id}"), |f| f.name.clone())
}

/// The segment overrides of `segment_id`, described for a person.
fn segment_uses(
    project: &Project,
    environments: &[Environment],
    segment_id: SegmentId,
) -> Vec<String> {
    environments
        .iter()
        .flat_map(|env| {
            env.segment_overrides
                .keys()
                .filter(move |(_, segment)| *segment == segment_id)
                .map(move |(feature, _)| {
                    format!(
                        "the override of feature `{}` in environment `{}` (id {})",
                        feature_name(project, *feature),
                        env.name,
                        env.id
                    )
                })
        })
        .collect()
}

/// The stored allocations on any of `options` (of feature `feature_id`), described for a person.
fn option_uses(
    project: &Project,
    environments: &[Environment],
    feature_id: FeatureId,
    options: &BTreeSet<OptionId>,
) -> Vec<String> {
    if options.is_empty() {
        return vec![];
    }
    let allocates = |state: &crate::model::FeatureState| {
        state
            .multivariate_feature_state_values
            .iter()
            .any(|a| options.contains(&a.multivariate_feature_option))
    };
    let mut uses = Vec::new();
    for env in environments {
        if env.feature_states.get(&feature_id).is_some_and(allocates) {
            uses.push(format!(
                "the allocations of environment `{}` (id {})",
                env.name, env.id
            ));
        }
        for ((feature, segment), r#override) in &env.segment_overrides {
            if *feature == feature_id && allocates(&r#override.state) {
                let name = project
                    .segments
                    .get(segment)
                    .map_or_else(|| format!("#{segment}"), |s| s.name.clone());
                uses.push(format!(
                    "the allocations of segment `{name}`'s override in environment `{}` (id {})",
                    env.name, env.id
                ));
            }
        }
    }
    uses
}
