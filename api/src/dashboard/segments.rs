//! A project's segments: listed with their rules written out readably, and created, edited and
//! deleted with a rule builder that works without JavaScript. The builder edits the shape
//! Flagsmith's dashboard makes (one ALL rule whose groups are ALL, ANY or NONE rules of
//! conditions) and offers every operator the engine knows (`domain::model::OPERATORS`); a
//! segment of another shape (imported, or made through the API) is edited as JSON instead, so
//! nothing is lost. Saving goes through [`change::apply`] (proposed where the project asks
//! for review).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use domain::command::{Command, ProjectCommand};
use domain::model::{Condition, ConditionOperator, OPERATORS, RuleType, Segment, SegmentRule};
use domain::project::SegmentInput;
use maud::{Markup, html};

use super::fields::{Fields, invalid};
use super::projects::may;
use super::session::{CSRF_FIELD, Visitor};
use super::{Form, PageError, change, page, who};
use crate::http::AppState;
use crate::http::admin::require_reader;
use crate::http::error::Error;
use crate::http::extract::Path;

/// Empty condition rows the builder offers in each group, and empty groups after the last.
const SPARE_CONDITIONS: usize = 2;
const SPARE_GROUPS: usize = 1;

const RULE_TYPES: [(RuleType, &str, &str); 3] = [
    (RuleType::All, "ALL", "All of"),
    (RuleType::Any, "ANY", "Any of"),
    (RuleType::None, "NONE", "None of"),
];

fn rule_label(rule_type: RuleType) -> &'static str {
    RULE_TYPES
        .iter()
        .find(|(t, _, _)| *t == rule_type)
        .map_or("All of", |(_, _, label)| label)
}

/// How a condition's operator reads in a sentence.
fn operator_label(operator: &ConditionOperator) -> &str {
    match operator {
        ConditionOperator::Equal => "=",
        ConditionOperator::NotEqual => "≠",
        ConditionOperator::GreaterThan => ">",
        ConditionOperator::GreaterThanInclusive => "≥",
        ConditionOperator::LessThan => "<",
        ConditionOperator::LessThanInclusive => "≤",
        ConditionOperator::Contains => "contains",
        ConditionOperator::NotContains => "does not contain",
        ConditionOperator::In => "is one of",
        ConditionOperator::Regex => "matches the regular expression",
        ConditionOperator::PercentageSplit => "falls in the percentage split up to",
        ConditionOperator::Modulo => "modulo divisor|remainder is",
        ConditionOperator::IsSet => "is set",
        ConditionOperator::IsNotSet => "is not set",
        ConditionOperator::Other(name) => name,
    }
}

/// Rules written out: "All of: plan = pro; Any of: …".
pub fn readable(rules: &[SegmentRule]) -> Markup {
    html! { ul.rules { (rule_items(rules)) } }
}

fn rule_items(rules: &[SegmentRule]) -> Markup {
    html! {
        @for rule in rules {
            li {
                (rule_label(rule.rule_type)) ":"
                ul {
                    @for c in &rule.conditions {
                        li {
                            @let property = c.property.as_deref().unwrap_or("");
                            @if property.is_empty() { "the identity" } @else { code { (property) } }
                            " " (operator_label(&c.operator))
                            @if !matches!(c.operator, ConditionOperator::IsSet | ConditionOperator::IsNotSet) {
                                " " code { (c.value.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                    (rule_items(&rule.rules))
                }
            }
        }
    }
}

/// The builder's groups for `rules`, or `None` if they have a shape the builder does not
/// edit.
fn groups_of(rules: &[SegmentRule]) -> Option<Vec<SegmentRule>> {
    match rules {
        [] => Some(Vec::new()),
        [top] if top.rule_type == RuleType::All && top.conditions.is_empty() => top
            .rules
            .iter()
            .all(|group| group.rules.is_empty())
            .then(|| top.rules.clone()),
        _ => None,
    }
}

/// The rules a builder form describes (or its JSON, when it was edited as JSON).
fn rules_of(fields: &Fields) -> Result<Vec<SegmentRule>, PageError> {
    let json = fields.one("rules_json");
    if !json.trim().is_empty() {
        return serde_json::from_str(json)
            .map_err(|e| invalid("rules_json", format!("not segment rules as JSON: {e}")));
    }
    let mut groups = Vec::new();
    for g in 0.. {
        let type_field = format!("group{g}_type");
        if !fields.ticked(&type_field) {
            break;
        }
        let rule_type = match fields.one(&type_field) {
            "ANY" => RuleType::Any,
            "NONE" => RuleType::None,
            "ALL" => RuleType::All,
            other => return Err(invalid(&type_field, format!("unknown rule type {other:?}"))),
        };
        let mut conditions = Vec::new();
        for c in 0.. {
            let prefix = format!("group{g}_c{c}_");
            if !fields.ticked(&format!("{prefix}operator")) {
                break;
            }
            let operator = fields.one(&format!("{prefix}operator"));
            if operator.is_empty() {
                continue;
            }
            let property = fields.one(&format!("{prefix}property")).trim();
            conditions.push(Condition {
                operator: ConditionOperator::parse(operator),
                property: (!property.is_empty()).then(|| property.to_string()),
                value: Some(fields.one(&format!("{prefix}value")).to_string()),
            });
        }
        if !conditions.is_empty() {
            groups.push(SegmentRule {
                rule_type,
                conditions,
                rules: Vec::new(),
            });
        }
    }
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![SegmentRule {
        rule_type: RuleType::All,
        conditions: Vec::new(),
        rules: groups,
    }])
}

fn condition_row(g: usize, c: usize, condition: Option<&Condition>) -> Markup {
    let id = format!("group{g}-c{c}");
    let name = format!("group{g}_c{c}_");
    let chosen = condition.map(|c| c.operator.as_str());
    html! {
        div.condition {
            label for={ (id) "-property" } { "Trait" }
            input id={ (id) "-property" } name={ (name) "property" } maxlength="1000"
                value=(condition.and_then(|c| c.property.clone()).unwrap_or_default());
            label for={ (id) "-operator" } { "Operator" }
            select id={ (id) "-operator" } name={ (name) "operator" } {
                option value="" selected[chosen.is_none()] { "(no condition)" }
                @for operator in &OPERATORS {
                    option value=(operator.as_str()) selected[chosen == Some(operator.as_str())] {
                        (operator.as_str()) " (" (operator_label(operator)) ")"
                    }
                }
            }
            label for={ (id) "-value" } { "Value" }
            input id={ (id) "-value" } name={ (name) "value" } maxlength="1000"
                value=(condition.and_then(|c| c.value.clone()).unwrap_or_default());
        }
    }
}

/// The builder (or, for a segment it cannot edit, the JSON box).
fn builder(project_id: u64, segment: Option<&Segment>, csrf: &str, propose: bool) -> Markup {
    let rules = segment.map_or(&[][..], |s| &s.rules[..]);
    let groups = groups_of(rules);
    let action = match segment {
        Some(s) => format!("/projects/{project_id}/segments/{}", s.id),
        None => format!("/projects/{project_id}/segments"),
    };
    html! {
        form.builder method="post" action=(action) {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            label for="segment-name" { "Name" }
            input #segment-name name="name" required maxlength="2000" value=(segment.map_or("", |s| &s.name));
            label for="segment-description" { "Description" }
            input #segment-description name="description" maxlength="2000"
                value=(segment.and_then(|s| s.description.clone()).unwrap_or_default());
            @match &groups {
                Some(groups) => {
                    p { "An identity is in the segment when every group holds. Semantic versions: add "
                        code { ":semver" } " to a value compared with =, ≠, <, ≤, >, ≥. "
                        "Modulo: " code { "divisor|remainder" } ". Percentage split: the trait may stay empty." }
                    @for g in 0..groups.len() + SPARE_GROUPS {
                        @let group = groups.get(g);
                        fieldset.group {
                            legend { "Group " (g + 1) }
                            label for={ "group" (g) "-type" } { "Holds when" }
                            select id={ "group" (g) "-type" } name={ "group" (g) "_type" } {
                                @for (rule_type, name, label) in RULE_TYPES {
                                    option value=(name) selected[group.map_or(rule_type == RuleType::Any, |r| r.rule_type == rule_type)] {
                                        (label) " these conditions"
                                    }
                                }
                            }
                            @let conditions = group.map_or(&[][..], |r| &r.conditions[..]);
                            @for c in 0..conditions.len() + SPARE_CONDITIONS {
                                (condition_row(g, c, conditions.get(c)))
                            }
                        }
                    }
                    p.hint { "Need more rows? Save, and the form offers more." }
                }
                None => {
                    label for="rules-json" { "Rules (JSON; this segment's shape is edited as JSON)" }
                    textarea #rules-json name="rules_json" rows="12" {
                        (serde_json::to_string_pretty(rules).unwrap_or_default())
                    }
                }
            }
            @if propose {
                label for="segment-live-from" { "Go live at (UTC, optional)" }
                input #segment-live-from type="datetime-local" name="live_from";
            }
            button type="submit" { @if propose { "Propose change" } @else { "Save segment" } }
        }
    }
}

/// A probe command for whether the visitor may change `project_id`'s segments, and whether
/// such a change is proposed.
async fn editing(
    state: &AppState,
    visitor: &Visitor,
    project_id: u64,
) -> Result<(bool, bool), PageError> {
    let caller = visitor.require()?;
    let directory = state.commands.directory().await?.state;
    let probe = Command::from(ProjectCommand::DeleteSegment {
        project_id,
        segment_id: 0,
    });
    let editable = may(&directory, caller, probe.clone());
    Ok((
        editable,
        change::review_scope(state, &probe).await?.is_some(),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    require_reader(&state, caller, project_id).await?;
    let project = state.commands.project(project_id).await?.state;
    let (editable, propose) = editing(&state, &visitor, project_id).await?;
    let csrf = visitor.csrf_token();
    let body = html! {
        p.crumbs { a href="/" { "Organisations" } " / " a href={ "/projects/" (project_id) } { (project.settings.name) } " / Segments" }
        h1 { "Segments" }
        @if project.segments.is_empty() { p { "No segments yet." } }
        @for segment in project.segments.values() {
            section.card id={ "segment-" (segment.id) } {
                h2 { a href={ "/projects/" (project_id) "/segments/" (segment.id) } { (segment.name) } }
                @if let Some(d) = &segment.description { p { (d) } }
                (readable(&segment.rules))
            }
        }
        @if editable {
            h2 { "New segment" }
            (builder(project_id, None, &csrf, propose))
        }
    };
    Ok(visitor.finish(page("Segments", Some((&who(&state, caller), &csrf)), body).into_response()))
}

pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((project_id, segment_id)): Path<(u64, u64)>,
) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    require_reader(&state, caller, project_id).await?;
    let project = state.commands.project(project_id).await?.state;
    let segment = project
        .segments
        .get(&segment_id)
        .ok_or_else(|| Error::NotFound(format!("segment {segment_id} not found")))?;
    let (editable, propose) = editing(&state, &visitor, project_id).await?;
    let csrf = visitor.csrf_token();
    let body = html! {
        p.crumbs {
            a href="/" { "Organisations" } " / " a href={ "/projects/" (project_id) } { (project.settings.name) }
            " / " a href={ "/projects/" (project_id) "/segments" } { "Segments" } " / " (segment.name)
        }
        h1 { (segment.name) }
        (readable(&segment.rules))
        p { a href={ "/audit?project=" (project_id) "&segment=" (segment_id) } { "This segment's audit trail" } }
        @if editable {
            h2 { "Edit" }
            (builder(project_id, Some(segment), &csrf, propose))
            form.inline method="post" action={ "/projects/" (project_id) "/segments/" (segment_id) "/delete" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                button.danger type="submit" { @if propose { "Propose deleting this segment" } @else { "Delete this segment" } }
            }
        }
    };
    let title = segment.name.clone();
    Ok(visitor.finish(page(&title, Some((&who(&state, caller), &csrf)), body).into_response()))
}

/// Creates (no `segment_id`) or replaces a segment from the builder's form.
async fn save(
    state: &AppState,
    visitor: &Visitor,
    project_id: u64,
    segment_id: Option<u64>,
    fields: Fields,
) -> Result<Response, PageError> {
    let description = fields.one("description").trim();
    let input = SegmentInput {
        id: None,
        name: fields.one("name").trim().to_string(),
        description: (!description.is_empty()).then(|| description.to_string()),
        rules: rules_of(&fields)?,
    };
    let title = format!("Segment {}", input.name);
    let command = match segment_id {
        Some(segment_id) => ProjectCommand::UpdateSegment {
            project_id,
            segment_id,
            segment: input,
        },
        None => ProjectCommand::CreateSegment {
            project_id,
            segment: input,
        },
    };
    let outcome = change::apply_form(state, visitor, &fields, command, title).await?;
    Ok(outcome.redirect(&format!("/projects/{project_id}/segments")))
}

pub async fn create(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save(&state, &visitor, project_id, None, Fields(form)).await
}

pub async fn update(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((project_id, segment_id)): Path<(u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save(&state, &visitor, project_id, Some(segment_id), Fields(form)).await
}

pub async fn delete(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((project_id, segment_id)): Path<(u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let command = ProjectCommand::DeleteSegment {
        project_id,
        segment_id,
    };
    let outcome = change::apply_form(
        &state,
        &visitor,
        &fields,
        command,
        format!("Delete segment {segment_id}"),
    )
    .await?;
    Ok(outcome.redirect(&format!("/projects/{project_id}/segments")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_builder_reads_groups_skips_blank_rows_and_round_trips() {
        let fields = form(&[
            ("group0_type", "ANY"),
            ("group0_c0_property", "plan"),
            ("group0_c0_operator", "EQUAL"),
            ("group0_c0_value", "pro"),
            ("group0_c1_property", ""),
            ("group0_c1_operator", ""),
            ("group0_c1_value", ""),
            ("group1_type", "NONE"),
            ("group1_c0_property", "version"),
            ("group1_c0_operator", "LESS_THAN"),
            ("group1_c0_value", "1.2.0:semver"),
            ("group2_type", "ALL"),
            ("group2_c0_operator", ""),
        ]);
        let rules = rules_of(&fields).ok().unwrap_or_default();
        assert_eq!(rules.len(), 1);
        let groups = groups_of(&rules).unwrap_or_default();
        assert_eq!(groups.len(), 2, "the blank third group is dropped");
        assert_eq!(groups[0].rule_type, RuleType::Any);
        assert_eq!(groups[0].conditions.len(), 1, "the blank row is dropped");
        assert_eq!(
            groups[1].conditions[0].operator,
            ConditionOperator::LessThan
        );
        assert!(domain::model::validate_rules(&rules).is_ok());
    }

    #[test]
    fn every_operator_is_offered_and_deeper_shapes_are_edited_as_json() {
        let row = condition_row(0, 0, None).into_string();
        for operator in &OPERATORS {
            assert!(row.contains(&format!("value=\"{}\"", operator.as_str())));
        }
        let deep: Vec<SegmentRule> = serde_json::from_str(
            r#"[{"type":"ANY","conditions":[],"rules":[{"type":"ALL","conditions":[],"rules":[]}]}]"#,
        )
        .unwrap_or_default();
        assert!(groups_of(&deep).is_none());
        let json = form(&[("rules_json", r#"[{"type":"ALL","conditions":[]}]"#)]);
        assert_eq!(rules_of(&json).ok().map(|r| r.len()), Some(1));
        assert!(rules_of(&form(&[("rules_json", "{")])).is_err());
        assert!(rules_of(&form(&[("group0_type", "SOME")])).is_err());
    }
}
