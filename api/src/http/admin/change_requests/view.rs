//! How a change request is shown: its content decoded, its approvals with whether each still
//! counts, the approvals the policy in force needs, and its conflicts as of now.

use domain::change_request::{ChangeRequest, Scope, Status};
use domain::command::change_request::{ApprovalPolicy, Conflict, counted_approvals};
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChangeRequestView {
    pub id: u64,
    /// `{"kind": "environment"|"project", "id": N}`.
    #[schema(value_type = Object)]
    pub scope: Scope,
    pub title: String,
    pub description: String,
    /// The user who opened it.
    pub author: u64,
    /// `open`, `scheduled`, `committed`, `rejected`, `closed` or `failed`.
    #[schema(value_type = String)]
    pub status: Status,
    /// Why it was rejected or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The proposed commands, in the JSON of the write side's command types.
    #[schema(value_type = Vec<Object>)]
    pub commands: Vec<Value>,
    /// The revision of each subject (`environment-3/feature-7`, ...) the commands were based on.
    #[schema(value_type = Object)]
    pub base_versions: std::collections::BTreeMap<String, u64>,
    /// When it goes live (RFC 3339), if scheduled for later than its commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_from: Option<String>,
    pub reviewers: Vec<u64>,
    pub approvals: Vec<ApprovalView>,
    /// Approvals of the current content by users who hold the approver role now (and are
    /// assigned, when only assigned reviewers count).
    pub approval_count: usize,
    /// What the policy in force needs for a commit.
    pub required_approvals: u32,
    pub comments: Vec<CommentView>,
    /// Subjects that changed since the request's base: a commit is refused while there are any.
    pub conflicts: Vec<ConflictView>,
    /// SHA-256 of the content an approval binds to.
    pub content_hash: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ApprovalView {
    pub user_id: u64,
    /// Whether the approval is for the current content.
    pub current: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CommentView {
    pub user_id: u64,
    pub text: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConflictView {
    pub key: String,
    pub subject: String,
    pub base_revision: u64,
    pub current_revision: u64,
}

/// What the view needs besides the request itself.
pub struct Context<'a> {
    pub conflicts: Vec<Conflict>,
    pub policy: ApprovalPolicy,
    pub approvers: &'a std::collections::BTreeSet<u64>,
}

impl ChangeRequestView {
    pub fn of(request: &ChangeRequest, context: Context<'_>) -> Self {
        let approval_count = counted_approvals(request, context.policy, context.approvers).len();
        ChangeRequestView {
            id: request.id,
            scope: request.scope.unwrap_or(Scope::Project(0)),
            title: request.title.clone(),
            description: request.description.clone(),
            author: request.author,
            status: request.status,
            reason: request.reason.clone(),
            commands: request
                .content
                .commands
                .iter()
                .map(|c| c.command.clone())
                .collect(),
            base_versions: request.content.base_versions.clone(),
            live_from: request
                .content
                .live_from_micros
                .and_then(domain::log::rfc3339),
            reviewers: request.reviewers.iter().copied().collect(),
            approvals: request
                .approvals
                .iter()
                .map(|(user_id, hash)| ApprovalView {
                    user_id: *user_id,
                    current: *hash == request.content_hash,
                })
                .collect(),
            approval_count,
            required_approvals: context.policy.minimum_approvals,
            comments: request
                .comments
                .iter()
                .map(|(user_id, text)| CommentView {
                    user_id: *user_id,
                    text: text.clone(),
                })
                .collect(),
            conflicts: context
                .conflicts
                .into_iter()
                .map(|c| ConflictView {
                    key: c.key,
                    subject: c.subject,
                    base_revision: c.base_revision,
                    current_revision: c.current_revision,
                })
                .collect(),
            content_hash: request.content_hash.clone(),
        }
    }
}
