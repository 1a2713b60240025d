//! The commands that bring a feature's or a segment's definition back to an earlier state (what
//! reverting a change request of a project's definitions proposes): created since → delete,
//! deleted since → create again under its own id (so every environment's state of the feature,
//! which its deletion left in place, is served again), changed since → update to the earlier
//! definition.

use crate::command::{Command, ProjectCommand};
use crate::model::{Feature, FeatureId, ProjectId, Segment, SegmentId};
use crate::project::{FeatureChanges, FeatureInput, OptionInput, Project, SegmentInput};

fn option_inputs(feature: &Feature) -> Vec<OptionInput> {
    feature
        .multivariate_options
        .iter()
        .map(|o| OptionInput {
            id: Some(o.id),
            value: o.value.clone(),
            default_percentage_allocation: o.default_percentage_allocation,
            key: o.key.clone(),
        })
        .collect()
}

fn segment_input(segment: &Segment, with_id: bool) -> SegmentInput {
    SegmentInput {
        id: with_id.then_some(segment.id),
        name: segment.name.clone(),
        description: segment.description.clone(),
        rules: segment.rules.clone(),
    }
}

/// The command taking feature `id` of `project_id` from `now` back to `then` (none if equal).
pub fn restore_feature(
    project_id: ProjectId,
    id: FeatureId,
    then: &Project,
    now: &Project,
) -> Option<Command> {
    let command = match (then.features.get(&id), now.features.get(&id)) {
        (Some(then), Some(now)) if then == now => return None,
        (None, None) => return None,
        (None, Some(_)) => ProjectCommand::DeleteFeature {
            project_id,
            feature_id: id,
        },
        (Some(then), None) => ProjectCommand::CreateFeature {
            project_id,
            feature: FeatureInput {
                id: Some(id),
                name: then.name.clone(),
                feature_type: then.feature_type,
                default_enabled: then.default_enabled,
                initial_value: then.initial_value.clone(),
                description: then.description.clone(),
                tags: then.tags.clone(),
                multivariate_options: option_inputs(then),
            },
        },
        (Some(then), Some(_)) => ProjectCommand::UpdateFeature {
            project_id,
            feature_id: id,
            changes: FeatureChanges {
                default_enabled: Some(then.default_enabled),
                initial_value: Some(then.initial_value.clone()),
                // Empty clears: absent would keep today's.
                description: Some(then.description.clone().unwrap_or_default()),
                tags: Some(then.tags.clone()),
                multivariate_options: Some(option_inputs(then)),
            },
        },
    };
    Some(Command::Project(command))
}

/// The command taking segment `id` of `project_id` from `now` back to `then` (none if equal).
pub fn restore_segment(
    project_id: ProjectId,
    id: SegmentId,
    then: &Project,
    now: &Project,
) -> Option<Command> {
    let command = match (then.segments.get(&id), now.segments.get(&id)) {
        (Some(then), Some(now)) if then == now => return None,
        (None, None) => return None,
        (None, Some(_)) => ProjectCommand::DeleteSegment {
            project_id,
            segment_id: id,
        },
        (Some(then), None) => ProjectCommand::CreateSegment {
            project_id,
            segment: segment_input(then, true),
        },
        (Some(then), Some(_)) => ProjectCommand::UpdateSegment {
            project_id,
            segment_id: id,
            segment: segment_input(then, false),
        },
    };
    Some(Command::Project(command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Aggregate;
    use crate::project::ProjectSettings;
    use serde_json::json;

    fn project() -> Project {
        let settings: ProjectSettings = serde_json::from_value(json!({"name": "p"})).unwrap();
        Project::from_events(&Project::create(1, 1, settings).unwrap())
    }

    fn decided(project: &Project, command: &Command) -> Project {
        let Command::Project(command) = command else {
            panic!("a project command")
        };
        let facts = crate::command::ProjectFacts { environments: &[] };
        let events = crate::command::project::decide(project, command, &facts).unwrap();
        let mut next = project.clone();
        events.iter().for_each(|e| next.apply(e));
        next
    }

    fn create_feature() -> Command {
        serde_json::from_value(json!({"type": "create_feature", "project_id": 1, "feature":
            {"name": "colour", "type": "MULTIVARIATE", "initial_value": "red",
             "multivariate_options": [{"value": "blue", "default_percentage_allocation": 20.0}]}}))
        .unwrap()
    }

    #[test]
    fn every_kind_of_feature_change_is_undone_to_the_earlier_definition() {
        let empty = project();
        let created = decided(&empty, &create_feature());
        let id = *created.features.keys().next().unwrap();
        // Created since: deleted again.
        let undo = restore_feature(1, id, &empty, &created).unwrap();
        assert!(decided(&created, &undo).features.is_empty());
        // Changed since: updated back, options and all.
        let update: Command = serde_json::from_value(json!({"type": "update_feature",
            "project_id": 1, "feature_id": id, "changes": {"initial_value": "green",
            "description": "d", "tags": ["t"], "multivariate_options": []}}))
        .unwrap();
        let changed = decided(&created, &update);
        let undo = restore_feature(1, id, &created, &changed).unwrap();
        assert_eq!(decided(&changed, &undo).features, created.features);
        // Deleted since: created again under its own id.
        let delete: Command = serde_json::from_value(
            json!({"type": "delete_feature", "project_id": 1, "feature_id": id}),
        )
        .unwrap();
        let deleted = decided(&created, &delete);
        let undo = restore_feature(1, id, &created, &deleted).unwrap();
        assert_eq!(decided(&deleted, &undo).features, created.features);
        assert_eq!(restore_feature(1, id, &created, &created), None);
    }

    #[test]
    fn every_kind_of_segment_change_is_undone_to_the_earlier_definition() {
        let empty = project();
        let create: Command = serde_json::from_value(json!({"type": "create_segment",
            "project_id": 1, "segment": {"name": "beta", "rules": [{"type": "ALL",
            "conditions": [{"operator": "EQUAL", "property_": "plan", "value": "pro"}],
            "rules": []}]}}))
        .unwrap();
        let created = decided(&empty, &create);
        let id = *created.segments.keys().next().unwrap();
        let undo = restore_segment(1, id, &empty, &created).unwrap();
        assert!(decided(&created, &undo).segments.is_empty());
        let update: Command = serde_json::from_value(json!({"type": "update_segment",
            "project_id": 1, "segment_id": id, "segment": {"name": "beta", "rules": []}}))
        .unwrap();
        let changed = decided(&created, &update);
        let undo = restore_segment(1, id, &created, &changed).unwrap();
        assert_eq!(decided(&changed, &undo).segments, created.segments);
        let delete: Command = serde_json::from_value(
            json!({"type": "delete_segment", "project_id": 1, "segment_id": id}),
        )
        .unwrap();
        let deleted = decided(&created, &delete);
        let undo = restore_segment(1, id, &created, &deleted).unwrap();
        assert_eq!(decided(&deleted, &undo).segments, created.segments);
    }
}
