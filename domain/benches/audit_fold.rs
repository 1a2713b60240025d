//! The audit history's work per event, without a database: `AuditFold::entry` (decode, before
//! and after, the flag states integrations are told about, the summary, the JSON Patch) and the
//! entry written out as JSON, as the audit projection does for every event it catches up on.
//! The log mixes what a busy flag store's log holds: environment states (most), identity
//! overrides, segment overrides and feature definitions, over 40 features (one multivariate)
//! in 2 environments with 4 segments.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use domain::aggregate::DomainEvent;
use domain::audit::AuditFold;
use domain::directory::{self, DirectoryEvent};
use domain::environment::{EnvironmentEvent, SegmentOverride};
use domain::identity::{self, IdentityEvent};
use domain::log::{Metadata, RecordedEvent};
use domain::model::{
    Feature, FeatureState, FeatureStateKey, FeatureType, MultivariateAllocation,
    MultivariateOption, Segment,
};
use domain::project::{ProjectEvent, ProjectSettings};
use serde_json::json;

const FEATURES: u64 = 40;
const ENVIRONMENTS: [u64; 2] = [3, 4];
const SEGMENTS: u64 = 4;
/// Events timed per iteration.
const EVENTS: u64 = 1000;

struct Log {
    events: Vec<RecordedEvent>,
}

impl Log {
    fn push(&mut self, stream: &str, event: &impl DomainEvent) {
        let new = event.to_new_event().expect("the event serialises");
        let position = self.events.len() as u64 + 1;
        self.events.push(RecordedEvent {
            position,
            stream_id: stream.to_string(),
            version: 1,
            event_type: new.event_type,
            schema_version: new.schema_version,
            payload: new.payload,
            metadata: Metadata::actor("user:1"),
            recorded_at_micros: 1_700_000_000_000_000 + position as i64,
            prev_hash: [0; 32],
            hash: [0; 32],
        });
    }
}

fn feature(id: u64, revision: u64) -> Feature {
    let multivariate = id == 1;
    Feature {
        id,
        name: format!("flag-{id}"),
        feature_type: if multivariate {
            FeatureType::Multivariate
        } else {
            FeatureType::Standard
        },
        default_enabled: false,
        initial_value: json!("v0"),
        description: Some(format!("revision {revision}")),
        tags: vec![],
        multivariate_options: if multivariate {
            (1..=2)
                .map(|o| MultivariateOption {
                    id: o,
                    value: json!(format!("option-{o}")),
                    default_percentage_allocation: 50.0,
                    key: None,
                })
                .collect()
        } else {
            vec![]
        },
    }
}

fn state(feature_id: u64, n: u64) -> FeatureState {
    FeatureState {
        enabled: n.is_multiple_of(2),
        feature_state_value: json!(format!("v{n}")),
        multivariate_feature_state_values: if feature_id == 1 {
            vec![MultivariateAllocation {
                multivariate_feature_option: 1 + n % 2,
                percentage_allocation: 30.0,
                id: None,
                uuid: None,
            }]
        } else {
            vec![]
        },
        key: FeatureStateKey::default(),
    }
}

/// The setup (organisation, user, project, environments, features, segments) and then
/// [`EVENTS`] changes: the fold is warmed with the first part, the second is timed.
fn log() -> (Vec<RecordedEvent>, Vec<RecordedEvent>) {
    let mut log = Log { events: vec![] };
    log.push(
        directory::STREAM,
        &DirectoryEvent::OrganisationCreated {
            id: 1,
            name: "acme".into(),
        },
    );
    log.push(
        directory::STREAM,
        &DirectoryEvent::UserCreated {
            id: 1,
            email: "alice@example.com".into(),
            is_admin: true,
            password_hash: None,
        },
    );
    log.push(
        directory::STREAM,
        &DirectoryEvent::ProjectRegistered {
            id: 1,
            organisation_id: 1,
        },
    );
    log.push(
        "project-1",
        &ProjectEvent::ProjectCreated {
            id: 1,
            organisation_id: 1,
            settings: ProjectSettings {
                name: "shop".into(),
                ..Default::default()
            },
        },
    );
    for environment in ENVIRONMENTS {
        let client_key = format!("key-{environment}");
        log.push(
            directory::STREAM,
            &DirectoryEvent::EnvironmentRegistered {
                id: environment,
                project_id: 1,
                client_key: client_key.clone(),
            },
        );
        log.push(
            &format!("environment-{environment}"),
            &EnvironmentEvent::EnvironmentCreated {
                id: environment,
                project_id: 1,
                name: format!("env-{environment}"),
                client_key,
            },
        );
    }
    for id in 1..=FEATURES {
        log.push(
            "project-1",
            &ProjectEvent::FeatureCreated {
                feature: feature(id, 0),
            },
        );
    }
    for id in 1..=SEGMENTS {
        log.push(
            "project-1",
            &ProjectEvent::SegmentCreated {
                segment: Segment {
                    id,
                    name: format!("segment-{id}"),
                    description: Some("beta testers".into()),
                    rules: vec![],
                },
            },
        );
    }
    let setup = log.events.len();
    for n in 1..=EVENTS {
        let feature_id = 1 + n % FEATURES;
        let environment = ENVIRONMENTS[(n % 2) as usize];
        match n % 20 {
            0 => log.push(
                "project-1",
                &ProjectEvent::FeatureUpdated {
                    feature: feature(feature_id, n),
                },
            ),
            1 | 2 => log.push(
                &format!("environment-{environment}"),
                &EnvironmentEvent::SegmentOverrideSet {
                    feature_id,
                    r#override: SegmentOverride {
                        segment_id: 1 + n % SEGMENTS,
                        priority: Some(1),
                        state: state(feature_id, n),
                    },
                },
            ),
            3..=8 => {
                let reference = format!("{:032x}", n % 97);
                log.push(
                    &identity::stream(environment, &reference),
                    &IdentityEvent::IdentityOverrideSet {
                        environment_id: environment,
                        identity: reference.clone(),
                        feature_id,
                        state: state(feature_id, n),
                    },
                )
            }
            _ => log.push(
                &format!("environment-{environment}"),
                &EnvironmentEvent::FeatureStateSet {
                    feature_id,
                    state: state(feature_id, n),
                },
            ),
        }
    }
    let changes = log.events.split_off(setup);
    (log.events, changes)
}

fn audit_fold(c: &mut Criterion) {
    let (setup, changes) = log();
    let warmed = || {
        let mut fold = AuditFold::default();
        for event in &setup {
            fold.warm(event).expect("the setup folds");
        }
        fold
    };
    c.bench_function("audit entries of 1000 events, written as JSON", |b| {
        b.iter_batched(
            warmed,
            |mut fold| {
                let mut bytes = 0;
                for event in &changes {
                    let entry = fold.entry(event).expect("the event folds");
                    bytes += serde_json::to_vec(&entry).expect("serialises").len();
                }
                bytes
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, audit_fold);
criterion_main!(benches);
