//! The four-eyes rules of a change request, decided without a database: who may approve, what an
//! approval is bound to, what a commit counts, and how a scheduled change goes live or fails.

use std::collections::{BTreeMap, BTreeSet};

use domain::Error;
use domain::aggregate::Aggregate;
use domain::change_request::{ChangeRequest, ChangeRequestEvent, Scope, Status, Withdrawal};
use domain::command::change_request::{
    Actor, ApprovalPolicy, ChangeRequestCommand, ChangeRequestFacts, decide,
};
use serde_json::json;

const AUTHOR: u64 = 1;
const ALICE: u64 = 2;
const BOB: u64 = 3;

struct World {
    request: ChangeRequest,
    approvers: BTreeSet<u64>,
    versions: BTreeMap<String, u64>,
    policy: ApprovalPolicy,
    now: i64,
}

impl World {
    /// A request by AUTHOR on environment 3, based on `environment-3` at version 5.
    fn new(minimum_approvals: u32, live_from: Option<i64>) -> World {
        let mut world = World {
            request: ChangeRequest::default(),
            approvers: BTreeSet::from([ALICE, BOB]),
            versions: BTreeMap::from([("environment-3/feature-7".to_string(), 5)]),
            policy: ApprovalPolicy {
                minimum_approvals,
                assigned_reviewers_only: false,
            },
            now: 1_000,
        };
        world
            .run(Actor::User(AUTHOR), open(json!("blue"), live_from))
            .unwrap();
        world
    }

    fn facts(&self, actor: Actor) -> ChangeRequestFacts<'_> {
        ChangeRequestFacts {
            actor,
            actor_is_approver: matches!(actor, Actor::User(u) if self.approvers.contains(&u)),
            actor_is_admin: false,
            policy: self.policy,
            approvers: &self.approvers,
            current_versions: &self.versions,
            now_micros: self.now,
        }
    }

    fn run(
        &mut self,
        actor: Actor,
        command: ChangeRequestCommand,
    ) -> Result<Vec<ChangeRequestEvent>, Error> {
        let events = decide(&self.request, &command, &self.facts(actor))?;
        for event in &events {
            self.request.apply(event);
        }
        Ok(events)
    }
}

fn open(value: serde_json::Value, live_from: Option<i64>) -> ChangeRequestCommand {
    serde_json::from_value(json!({
        "type": "open_change_request", "change_request_id": 9,
        "scope": {"kind": "environment", "id": 3}, "title": "Blue checkout",
        "commands": [{"type": "set_feature_state", "environment_id": 3, "feature_id": 7,
                      "enabled": true, "feature_state_value": value}],
        "base_versions": {"environment-3/feature-7": 5},
        "live_from_micros": live_from,
    }))
    .unwrap()
}

fn edit(value: serde_json::Value) -> ChangeRequestCommand {
    let ChangeRequestCommand::OpenChangeRequest {
        commands,
        base_versions,
        ..
    } = open(value, None)
    else {
        unreachable!()
    };
    ChangeRequestCommand::EditChangeRequest {
        change_request_id: 9,
        title: "Blue checkout".into(),
        description: String::new(),
        commands,
        base_versions,
        live_from_micros: None,
    }
}

fn approve() -> ChangeRequestCommand {
    ChangeRequestCommand::ApproveChangeRequest {
        change_request_id: 9,
    }
}

fn commit() -> ChangeRequestCommand {
    ChangeRequestCommand::CommitChangeRequest {
        change_request_id: 9,
    }
}

fn is_forbidden(result: Result<Vec<ChangeRequestEvent>, Error>) -> bool {
    matches!(result, Err(Error::Forbidden(_)))
}

#[test]
fn self_approval_is_refused_and_so_is_a_service_tokens() {
    let mut world = World::new(1, None);
    world.approvers.insert(AUTHOR);
    assert!(is_forbidden(world.run(Actor::User(AUTHOR), approve())));
    assert!(is_forbidden(world.run(Actor::ServiceToken, approve())));
    assert!(world.request.approvals.is_empty());
}

#[test]
fn approving_needs_the_approver_role_and_counts_once() {
    let mut world = World::new(1, None);
    const CAROL: u64 = 4;
    let refused = world.run(Actor::User(CAROL), approve());
    assert!(
        matches!(&refused, Err(Error::Forbidden(m)) if m.contains("approver role")),
        "{refused:?}"
    );
    world.run(Actor::User(ALICE), approve()).unwrap();
    assert!(matches!(
        world.run(Actor::User(ALICE), approve()),
        Err(Error::Conflict { .. })
    ));
}

#[test]
fn an_edit_after_approval_withdraws_it_and_commit_waits_for_a_new_one() {
    let mut world = World::new(1, None);
    world.run(Actor::User(ALICE), approve()).unwrap();
    let events = world
        .run(Actor::User(AUTHOR), edit(json!("green")))
        .unwrap();
    assert!(events.contains(&ChangeRequestEvent::ApprovalWithdrawn {
        user_id: ALICE,
        why: Withdrawal::ContentChanged
    }));
    let refused = world.run(Actor::User(AUTHOR), commit());
    assert!(
        matches!(&refused, Err(Error::Conflict { field, .. }) if field == "approvals"),
        "{refused:?}"
    );
    world.run(Actor::User(ALICE), approve()).unwrap();
    let committed = world.run(Actor::User(AUTHOR), commit()).unwrap();
    assert!(
        matches!(&committed[..], [ChangeRequestEvent::ChangeRequestCommitted { approvers, .. }] if approvers == &[ALICE])
    );
    assert_eq!(world.request.status, Status::Committed);
    // Committed is final.
    assert!(matches!(
        world.run(Actor::User(AUTHOR), edit(json!("red"))),
        Err(Error::Conflict { .. })
    ));
}

#[test]
fn an_edit_of_the_title_alone_keeps_the_approvals() {
    let mut world = World::new(1, None);
    world.run(Actor::User(ALICE), approve()).unwrap();
    let ChangeRequestCommand::EditChangeRequest {
        commands,
        base_versions,
        ..
    } = edit(json!("blue"))
    else {
        unreachable!()
    };
    let retitled = ChangeRequestCommand::EditChangeRequest {
        change_request_id: 9,
        title: "Blue checkout, for real".into(),
        description: "why".into(),
        commands,
        base_versions,
        live_from_micros: None,
    };
    let events = world.run(Actor::User(AUTHOR), retitled).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        world.request.current_approvals().collect::<Vec<_>>(),
        [ALICE]
    );
}

#[test]
fn with_a_minimum_of_two_one_approval_cannot_commit_and_two_distinct_approvers_can() {
    let mut world = World::new(2, None);
    world.run(Actor::User(ALICE), approve()).unwrap();
    assert!(world.run(Actor::User(AUTHOR), commit()).is_err());
    world.run(Actor::User(BOB), approve()).unwrap();
    world.run(Actor::User(AUTHOR), commit()).unwrap();
}

#[test]
fn an_approver_who_lost_the_role_no_longer_counts() {
    let mut world = World::new(1, None);
    world.run(Actor::User(ALICE), approve()).unwrap();
    world.approvers.remove(&ALICE);
    assert!(world.run(Actor::User(AUTHOR), commit()).is_err());
}

#[test]
fn with_assigned_reviewers_only_an_unassigned_approver_is_refused() {
    let mut world = World::new(1, None);
    world.policy.assigned_reviewers_only = true;
    world
        .run(
            Actor::User(AUTHOR),
            ChangeRequestCommand::AssignReviewers {
                change_request_id: 9,
                reviewers: vec![BOB],
            },
        )
        .unwrap();
    assert!(is_forbidden(world.run(Actor::User(ALICE), approve())));
    world.run(Actor::User(BOB), approve()).unwrap();
    world.run(Actor::User(AUTHOR), commit()).unwrap();
}

#[test]
fn a_stale_request_is_refused_naming_the_feature_and_both_revisions() {
    let mut world = World::new(1, None);
    world.run(Actor::User(ALICE), approve()).unwrap();
    world.versions.insert("environment-3/feature-7".into(), 7);
    let refused = world.run(Actor::User(AUTHOR), commit());
    let Err(Error::Conflict { field, message }) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(field, "base_versions");
    assert!(
        message.contains("feature 7 in environment 3")
            && message.contains("revision 5")
            && message.contains("revision 7"),
        "{message}"
    );
}

#[test]
fn a_scheduled_change_goes_live_only_at_its_time_and_fails_if_its_base_moved() {
    let mut world = World::new(1, Some(5_000));
    world.run(Actor::User(ALICE), approve()).unwrap();
    let scheduled = world.run(Actor::User(AUTHOR), commit()).unwrap();
    assert!(matches!(
        &scheduled[..],
        [ChangeRequestEvent::ChangeRequestScheduled {
            live_from_micros: 5_000,
            ..
        }]
    ));
    let apply = ChangeRequestCommand::ApplyScheduledChange {
        change_request_id: 9,
    };
    assert!(
        world.run(Actor::Scheduler, apply.clone()).is_err(),
        "not due yet"
    );
    assert!(is_forbidden(world.run(Actor::User(AUTHOR), apply.clone())));
    world.now = 5_000;
    let mut failing = World::new(1, Some(5_000));
    failing.run(Actor::User(ALICE), approve()).unwrap();
    failing.run(Actor::User(AUTHOR), commit()).unwrap();
    failing.now = 6_000;
    failing.versions.insert("environment-3/feature-7".into(), 6);
    let failed = failing.run(Actor::Scheduler, apply.clone()).unwrap();
    assert!(
        matches!(&failed[..], [ChangeRequestEvent::ChangeRequestFailed { reason }] if reason.contains("feature 7 in environment 3"))
    );
    assert_eq!(failing.request.status, Status::Failed);

    let applied = world.run(Actor::Scheduler, apply.clone()).unwrap();
    assert!(matches!(
        &applied[..],
        [ChangeRequestEvent::ChangeRequestCommitted { .. }]
    ));
    assert!(world.run(Actor::Scheduler, apply).is_err(), "exactly once");
}

#[test]
fn a_cancelled_schedule_never_fires() {
    let mut world = World::new(1, Some(5_000));
    world.run(Actor::User(ALICE), approve()).unwrap();
    world.run(Actor::User(AUTHOR), commit()).unwrap();
    world
        .run(
            Actor::User(AUTHOR),
            ChangeRequestCommand::CancelSchedule {
                change_request_id: 9,
            },
        )
        .unwrap();
    assert_eq!(world.request.status, Status::Open);
    world.now = 10_000;
    let apply = ChangeRequestCommand::ApplyScheduledChange {
        change_request_id: 9,
    };
    assert!(matches!(
        world.run(Actor::Scheduler, apply),
        Err(Error::Conflict { .. })
    ));
}

#[test]
fn editing_a_scheduled_request_takes_it_off_the_schedule() {
    let mut world = World::new(1, Some(5_000));
    world.run(Actor::User(ALICE), approve()).unwrap();
    world.run(Actor::User(AUTHOR), commit()).unwrap();
    assert_eq!(world.request.status, Status::Scheduled);
    let later: ChangeRequestCommand = serde_json::from_value(json!({
        "type": "edit_change_request", "change_request_id": 9, "title": "Blue checkout",
        "commands": [{"type": "set_feature_state", "environment_id": 3, "feature_id": 7,
                      "enabled": true, "feature_state_value": "blue"}],
        "base_versions": {"environment-3/feature-7": 5},
        "live_from_micros": 8_000,
    }))
    .unwrap();
    let events = world.run(Actor::User(AUTHOR), later).unwrap();
    assert!(
        matches!(
            &events[..],
            [
                ChangeRequestEvent::ScheduleCancelled { user_id: AUTHOR },
                ChangeRequestEvent::ChangeRequestEdited { .. },
                ChangeRequestEvent::ApprovalWithdrawn { user_id: ALICE, .. },
            ]
        ),
        "{events:?}"
    );
    assert_eq!(world.request.status, Status::Open);
    // The old time passes: nothing fires; the new time needs approval and a commit again.
    world.now = 6_000;
    let apply = ChangeRequestCommand::ApplyScheduledChange {
        change_request_id: 9,
    };
    assert!(world.run(Actor::Scheduler, apply).is_err());
    assert!(world.run(Actor::User(AUTHOR), commit()).is_err());
}

#[test]
fn commands_outside_the_scope_and_empty_requests_are_refused() {
    let mut world = World {
        request: ChangeRequest::default(),
        approvers: BTreeSet::new(),
        versions: BTreeMap::new(),
        policy: ApprovalPolicy::default(),
        now: 0,
    };
    let other_environment: ChangeRequestCommand = serde_json::from_value(json!({
        "type": "open_change_request", "change_request_id": 1,
        "scope": {"kind": "environment", "id": 3}, "title": "t",
        "commands": [{"type": "set_feature_state", "environment_id": 4, "feature_id": 7, "enabled": true}],
        "base_versions": {}}))
    .unwrap();
    let refused = world.run(Actor::User(AUTHOR), other_environment);
    assert!(
        matches!(&refused, Err(Error::Invalid { field, .. }) if field == "commands[0]"),
        "{refused:?}"
    );
    let unreviewed: ChangeRequestCommand = serde_json::from_value(json!({
        "type": "open_change_request", "change_request_id": 1,
        "scope": {"kind": "environment", "id": 3}, "title": "t",
        "commands": [{"type": "update_environment_settings", "environment_id": 3,
                      "minimum_change_request_approvals": 0}],
        "base_versions": {}}))
    .unwrap();
    let refused = world.run(Actor::User(AUTHOR), unreviewed);
    assert!(
        matches!(&refused, Err(Error::Invalid { field, message })
            if field == "commands[0]" && message.contains("apply it directly")),
        "{refused:?}"
    );
    let empty: ChangeRequestCommand = serde_json::from_value(json!({
        "type": "open_change_request", "change_request_id": 1,
        "scope": {"kind": "project", "id": 1}, "title": "t", "commands": [], "base_versions": {}}))
    .unwrap();
    assert!(matches!(
        world.run(Actor::User(AUTHOR), empty),
        Err(Error::Invalid { .. })
    ));
    assert!(!world.request.exists);
}

#[test]
fn rejection_needs_an_approver_and_a_reason_and_is_final() {
    let mut world = World::new(1, None);
    let reject = |reason: &str| ChangeRequestCommand::RejectChangeRequest {
        change_request_id: 9,
        reason: reason.into(),
    };
    assert!(is_forbidden(world.run(Actor::User(AUTHOR), reject("mine"))));
    assert!(matches!(
        world.run(Actor::User(ALICE), reject("  ")),
        Err(Error::Invalid { .. })
    ));
    world.run(Actor::User(ALICE), reject("not now")).unwrap();
    assert_eq!(world.request.status, Status::Rejected);
    assert!(matches!(
        world.run(Actor::User(BOB), approve()),
        Err(Error::Conflict { .. })
    ));
}

#[test]
fn change_request_commands_round_trip_their_json() {
    let samples = [
        r#"{"type":"approve_change_request","change_request_id":9}"#,
        r#"{"type":"reject_change_request","change_request_id":9,"reason":"no"}"#,
        r#"{"type":"open_change_request","change_request_id":9,"scope":{"kind":"project","id":2},"title":"t","description":"","commands":[{"type":"delete_segment","project_id":2,"segment_id":8}],"base_versions":{"project-2":4},"live_from_micros":5000,"reviewers":[3]}"#,
    ];
    for sample in samples {
        let command: ChangeRequestCommand = serde_json::from_str(sample).unwrap();
        assert_eq!(serde_json::to_string(&command).unwrap(), sample);
    }
    assert_eq!(
        Scope::Project(2),
        serde_json::from_value(json!({"kind": "project", "id": 2})).unwrap()
    );
}
