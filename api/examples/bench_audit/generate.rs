//! Generating the benchmark's log through the command path: projects with their environments,
//! features and segments, random changes by several users, and change requests over HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use commands::Commands;
use domain::command::Command;
use domain::log::Metadata;
use serde_json::{Value, json};

use crate::Res;
use crate::client::Http;

pub(crate) const PROJECTS: u64 = 8;

pub(crate) const ENVIRONMENTS_PER_PROJECT: u64 = 3;

pub(crate) const FEATURES_PER_PROJECT: u64 = 40;

pub(crate) const SEGMENTS_PER_PROJECT: u64 = 4;

/// Distinct identities that get overrides, per environment.
pub(crate) const IDENTITIES: u64 = 20_000;

/// The users (organisation administrators) the generated changes are spread over.
pub(crate) const USERS: usize = 4;

/// The client key of the environment with four-eyes on, where the change requests go.
pub(crate) const REVIEW_KEY: &str = "bench-review";

/// A small, fast, deterministic generator (SplitMix64): no dependency for a benchmark's dice.
pub(crate) struct Dice(pub(crate) u64);

impl Dice {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// What the generated events are about.
pub(crate) struct Project {
    pub(crate) id: u64,
    pub(crate) environments: Vec<u64>,
    pub(crate) features: Vec<(u64, String)>,
    pub(crate) segments: Vec<u64>,
}

/// Executes one command (given in its JSON form) as `actor`.
pub(crate) async fn execute(
    commands: &Commands,
    actor: &str,
    command: Value,
) -> Res<commands::handlers::Executed> {
    let command: Command = serde_json::from_value(command)?;
    Ok(commands.execute(&Metadata::actor(actor), &command).await?)
}

/// One project with its environments, features and segments, each created by its command.
pub(crate) async fn create_project(commands: &Commands, actor: &str, p: u64) -> Res<Project> {
    let id = execute(
        commands,
        actor,
        json!({"type": "create_project", "organisation_id": 1,
               "settings": {"name": format!("project-{p}")}}),
    )
    .await?
    .created_id()?;
    let mut project = Project {
        id,
        environments: Vec::new(),
        features: Vec::new(),
        segments: Vec::new(),
    };
    for e in 0..ENVIRONMENTS_PER_PROJECT {
        let created = execute(
            commands,
            actor,
            json!({"type": "create_environment", "project_id": id,
                   "name": format!("env-{p}-{e}"), "client_key": format!("bench-{p}-{e}")}),
        )
        .await?;
        project.environments.push(created.created_id()?);
    }
    for f in 0..FEATURES_PER_PROJECT {
        let name = format!("flag-{p}-{f}");
        let created = execute(
            commands,
            actor,
            json!({"type": "create_feature", "project_id": id,
                   "feature": {"name": name, "initial_value": "v0"}}),
        )
        .await?;
        project.features.push((created.created_id()?, name));
    }
    for s in 0..SEGMENTS_PER_PROJECT {
        let created = execute(
            commands,
            actor,
            json!({"type": "create_segment", "project_id": id,
                   "segment": {"name": format!("segment-{p}-{s}"), "rules": rules(s)}}),
        )
        .await?;
        project.segments.push(created.created_id()?);
    }
    Ok(project)
}

pub(crate) fn rules(n: u64) -> Value {
    json!([{"type": "ALL", "conditions": [
        {"operator": "EQUAL", "property_": "plan", "value": format!("plan-{n}")}], "rules": []}])
}

/// One change, as editors make them: mostly feature states and identity overrides.
pub(crate) fn random_command(dice: &mut Dice, projects: &[Project]) -> Value {
    let project = dice.pick(projects);
    let environment = *dice.pick(&project.environments);
    let feature = dice.pick(&project.features).0;
    let enabled = dice.below(2) == 0;
    let value = format!("v{}", dice.below(1000));
    match dice.below(100) {
        0..55 => json!({"type": "set_feature_state", "environment_id": environment,
                        "feature_id": feature, "enabled": enabled, "feature_state_value": value}),
        55..88 => json!({"type": "set_identity_override", "environment_id": environment,
                         "identifier": format!("user-{}", dice.below(IDENTITIES)),
                         "feature_id": feature, "enabled": enabled,
                         "feature_state_value": value}),
        88..95 => json!({"type": "set_segment_override", "environment_id": environment,
                         "feature_id": feature, "segment_id": dice.pick(&project.segments),
                         "enabled": enabled, "feature_state_value": value}),
        95..98 => json!({"type": "update_feature", "project_id": project.id,
                         "feature_id": feature,
                         "changes": {"description": format!("revision {value}")}}),
        _ => {
            let segment = dice.below(project.segments.len() as u64);
            json!({"type": "update_segment", "project_id": project.id,
                   "segment_id": project.segments[segment as usize],
                   "segment": {"name": format!("segment-{}-{segment}", project.id),
                               "rules": rules(dice.below(10))}})
        }
    }
}

/// Change requests on the four-eyes environment until `done`: the ids of those opened.
pub(crate) async fn change_requests(
    http: &Http,
    token: &str,
    reviewer_token: &str,
    environment: u64,
    features: &[u64],
    done: &AtomicBool,
) -> Res<Vec<u64>> {
    let mut ids = Vec::new();
    let mut dice = Dice(99);
    while !done.load(Ordering::Relaxed) {
        let opened = http
            .post(
                &format!("/api/v1/environments/{REVIEW_KEY}/change-requests/"),
                token,
                json!({"title": format!("review {}", ids.len()), "commands": [
                    {"type": "set_feature_state", "environment_id": environment,
                     "feature_id": dice.pick(features), "enabled": dice.below(2) == 0,
                     "feature_state_value": format!("reviewed-{}", ids.len())}]}),
            )
            .await;
        let opened = opened.map_err(|e| format!("opening a change request: {e}"))?;
        let id = opened["id"].as_u64().ok_or("no change request id")?;
        ids.push(id);
        if ids.len() % 3 == 0 {
            http.post(
                &format!("/api/v1/change-requests/{id}/reject/"),
                reviewer_token,
                json!({"reason": "not now"}),
            )
            .await?;
        } else {
            http.post(
                &format!("/api/v1/change-requests/{id}/approve/"),
                reviewer_token,
                json!({}),
            )
            .await?;
            http.post(
                &format!("/api/v1/change-requests/{id}/commit/"),
                token,
                json!({}),
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(ids)
}
