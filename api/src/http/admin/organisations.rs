//! Organisations: the top of the hierarchy (organisation → project → environment).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use domain::command::DirectoryCommand;
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::admin::execute;
use crate::http::error::Result;
use crate::http::extract::{Admin, JsonBody};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/organisations/", get(list).post(create))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrganisationView {
    pub id: u64,
    pub name: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateOrganisation {
    pub name: String,
}

#[utoipa::path(get, path = "/api/v1/organisations/", tag = "organisations",
    responses((status = 200, body = Vec<OrganisationView>)))]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<OrganisationView>>> {
    let directory = state.commands.directory().await?;
    Ok(Json(
        directory
            .state
            .organisations
            .iter()
            .map(|(id, name)| OrganisationView {
                id: *id,
                name: name.clone(),
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/organisations/", tag = "organisations", request_body = CreateOrganisation,
    responses((status = 201, body = OrganisationView), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<CreateOrganisation>,
) -> Result<(StatusCode, Json<OrganisationView>)> {
    let command = DirectoryCommand::CreateOrganisation {
        name: body.name.clone(),
    };
    let id = execute(&state, &admin, command).await?.created_id()?;
    Ok((
        StatusCode::CREATED,
        Json(OrganisationView {
            id,
            name: body.name.trim().to_string(),
        }),
    ))
}
