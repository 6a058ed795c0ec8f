//! Operators (owners only): invite with a one-time password, change role, disable.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use owner::operators::{OperatorRole, operator_list};
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::overview::NoticeQuery;
use super::page::{Chrome, DashForm, DashResult, DashSession, client_mistake, render, see_other};
use super::view::{notice_text, when_opt};
use crate::http::extract::ClientIp;
use crate::http::state::AppState;
use crate::operators::require_owner;
use crate::{Error, Result};

pub struct OperatorRow {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub active: bool,
    pub last_login: String,
    pub invited: bool,
    pub is_me: bool,
}

#[derive(Template)]
#[template(path = "operators.html")]
pub struct OperatorsPage {
    pub chrome: Chrome,
    pub operators: Vec<OperatorRow>,
    pub roles: [&'static str; 3],
    pub invited: Option<(String, String)>,
    pub error: Option<String>,
}

async fn page(
    state: &AppState,
    session: &DashSession,
    notice: Option<String>,
    invited: Option<(String, String)>,
    error: Option<String>,
    status: StatusCode,
) -> DashResult<Response> {
    require_owner(&session.0.operator)?;
    let conn = state.owner.conn().await?;
    let operators = operator_list(&**conn)
        .await?
        .into_iter()
        .map(|o| OperatorRow {
            id: o.id.to_string(),
            is_me: o.id == session.0.operator.id,
            email: o.email,
            role: o.role.as_str(),
            active: o.active,
            last_login: when_opt(o.last_login_at),
            invited: o.must_change_password,
        })
        .collect();
    let mut chrome = session.chrome(state, "operators");
    chrome.notice = notice;
    let mut response = render(&OperatorsPage {
        chrome,
        operators,
        roles: ["owner", "admin", "viewer"],
        invited,
        error,
    });
    *response.status_mut() = status;
    Ok(response)
}

pub async fn list(
    State(state): State<AppState>,
    session: DashSession,
    Query(query): Query<NoticeQuery>,
) -> DashResult<Response> {
    page(
        &state,
        &session,
        notice_text(query.notice.as_deref()),
        None,
        None,
        StatusCode::OK,
    )
    .await
}

fn role(s: &str) -> Result<OperatorRole> {
    OperatorRole::parse(s).ok_or_else(|| Error::BadRequest(format!("unknown role {s:?}")))
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

pub async fn invite(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    DashForm { session, form }: DashForm<InviteForm>,
) -> DashResult<Response> {
    let result = match role(&form.role) {
        Ok(role) => {
            crate::operators::invite(
                &state.owner,
                &session.0.operator,
                &session.actor(ip),
                &form.email,
                role,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((op, password)) => {
            let invited = Some((op.email, password.expose_secret().to_string()));
            page(&state, &session, None, invited, None, StatusCode::CREATED).await
        }
        Err(e) => {
            let api = client_mistake(e)?;
            page(&state, &session, None, None, Some(api.message), api.status).await
        }
    }
}

#[derive(Deserialize)]
pub struct UpdateForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    active: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<Uuid>,
    DashForm { session, form }: DashForm<UpdateForm>,
) -> DashResult<Response> {
    let result = match role(&form.role) {
        Ok(role) => {
            crate::operators::update(
                &state.owner,
                &session.0.operator,
                &session.actor(ip),
                id,
                Some(role),
                Some(form.active.is_some()),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(see_other("/owner/operators", "operator_saved")),
        Err(e) => {
            let api = client_mistake(e)?;
            page(&state, &session, None, None, Some(api.message), api.status).await
        }
    }
}
