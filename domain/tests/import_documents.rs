//! Importing each conformance document keeps every id evaluation hashes on, and every feature
//! state, segment override and identity override the document holds.

use domain::aggregate::Aggregate;
use domain::directory::Directory;
use domain::environment::Environment;
use domain::identity::IdentityOverrides;
use domain::import::plan;
use domain::model::FeatureStateKey;
use domain::project::Project;
mod reference;
use reference::documents;

fn key_of(state: &domain::flagsmith::FeatureState) -> FeatureStateKey {
    FeatureStateKey {
        django_id: state.django_id.map(|id| id as u64),
        featurestate_uuid: state.featurestate_uuid.clone(),
    }
}

#[test]
fn import_keeps_every_hashed_id_and_every_override() {
    let documents = documents();
    assert_eq!(documents.len(), 9, "8 seed documents and the legacy one");
    for (name, document) in documents {
        let plan = plan(&Directory::default(), &document, "hash".into(), &mut |i| {
            format!("ref-{i}")
        })
        .unwrap_or_else(|e| panic!("{name}: import refused: {e}"));
        let project = Project::from_events(&plan.project_events);
        let environment = Environment::from_events(&plan.environment_events);
        assert_eq!(environment.client_key, document.api_key, "{name}");
        assert_eq!(environment.server_side_keys.len(), 1, "{name}");

        for state in &document.feature_states {
            let feature = project
                .feature(state.feature.id as u64)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(feature.name, state.feature.name, "{name}");
            let imported = &environment.feature_states[&feature.id];
            assert_eq!(imported.key, key_of(state), "{name}: {}", feature.name);
            assert_eq!(imported.enabled, state.enabled, "{name}");
            assert_eq!(
                imported.feature_state_value, state.feature_state_value,
                "{name}"
            );
            let ids: Vec<_> = imported
                .multivariate_feature_state_values
                .iter()
                .map(|a| (a.id, a.uuid.clone(), a.percentage_allocation))
                .collect();
            let expected: Vec<_> = state
                .multivariate_feature_state_values
                .iter()
                .map(|mv| {
                    (
                        mv.id.map(|id| id as u64),
                        mv.mv_fs_value_uuid.clone(),
                        mv.percentage_allocation.as_f64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(ids, expected, "{name}: {}", feature.name);
        }

        for segment in &document.project.segments {
            let imported = project.segment(segment.id as u64).unwrap();
            assert_eq!(imported.name, segment.name, "{name}");
            assert_eq!(
                serde_json::to_value(&imported.rules).unwrap(),
                serde_json::to_value(&segment.rules).unwrap(),
                "{name}: rules of {}",
                segment.name
            );
            for state in &segment.feature_states {
                let key = (state.feature.id as u64, segment.id as u64);
                let imported = &environment.segment_overrides[&key];
                assert_eq!(imported.state.key, key_of(state), "{name}");
                assert_eq!(
                    imported.priority,
                    state.feature_segment.as_ref().and_then(|s| s.priority),
                    "{name}"
                );
                assert_eq!(
                    imported.state.feature_state_value,
                    state.feature_state_value
                );
            }
        }

        let overrides = document.identity_overrides.clone().unwrap_or_default();
        for identity in overrides {
            let events = &plan.identity_events[&format!("ref-{}", identity.identifier)];
            let imported = IdentityOverrides::from_events(events);
            for state in &identity.identity_features {
                let o = &imported.overrides[&(state.feature.id as u64)];
                assert_eq!(o.enabled, state.enabled, "{name}");
                assert_eq!(o.feature_state_value, state.feature_state_value, "{name}");
            }
        }
    }
}

#[test]
fn a_second_import_of_the_same_client_key_is_refused() {
    let (_, document) = documents().remove(0);
    let mut directory = Directory::default();
    let first = plan(&directory, &document, "h".into(), &mut |i| {
        format!("ref-{i}")
    })
    .unwrap();
    first
        .directory_events
        .iter()
        .for_each(|e| directory.apply(e));
    let err = plan(&directory, &document, "h".into(), &mut |i| {
        format!("ref-{i}")
    })
    .unwrap_err();
    assert!(
        matches!(err, domain::Error::Conflict { ref field, .. } if field == "api_key"),
        "{err:?}"
    );
}

#[test]
fn import_keeps_multivariate_option_keys_for_variants() {
    let (_, mut document) = documents().remove(0);
    let state = document
        .feature_states
        .iter_mut()
        .find(|s| !s.multivariate_feature_state_values.is_empty())
        .expect("a multivariate feature");
    let option = &mut state.multivariate_feature_state_values[0].multivariate_feature_option;
    option.key = Some("treatment-a".into());
    let (feature_id, option_id) = (state.feature.id as u64, option.id.unwrap() as u64);
    let plan = plan(&Directory::default(), &document, "h".into(), &mut |i| {
        format!("ref-{i}")
    })
    .unwrap();
    let project = Project::from_events(&plan.project_events);
    let feature = project.feature(feature_id).unwrap();
    let imported = feature
        .multivariate_options
        .iter()
        .find(|o| o.id == option_id)
        .unwrap();
    assert_eq!(imported.key.as_deref(), Some("treatment-a"));
}
