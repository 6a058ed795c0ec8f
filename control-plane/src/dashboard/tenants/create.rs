//! The create form and what it posts to: the same `Provisioner::create` as the owner API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::detail::{active_plans, detail_page};
use crate::Error;
use crate::dashboard::page::{Chrome, DashForm, DashResult, DashSession, client_mistake, render};
use crate::http::extract::ClientIp;
use crate::http::state::AppState;
use crate::provisioning::CreateTenant;

#[derive(Deserialize, Default, Clone)]
pub struct CreateForm {
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    admin_email: String,
    #[serde(default)]
    admin_password: String,
}

#[derive(Template)]
#[template(path = "tenant_new.html")]
pub struct NewPage {
    pub chrome: Chrome,
    pub form: CreateForm,
    pub plans: Vec<(String, String)>,
    pub errors: HashMap<&'static str, String>,
    pub base_domain: String,
}

impl NewPage {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map_or("", String::as_str)
    }
}

async fn new_page(
    state: &AppState,
    session: &DashSession,
    form: CreateForm,
    errors: HashMap<&'static str, String>,
) -> DashResult<Response> {
    let conn = state.owner.conn().await?;
    let plans = active_plans(&**conn).await?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut response = render(&NewPage {
        chrome: session.chrome(state, "tenants"),
        form,
        plans,
        errors,
        base_domain: state.config.base_domain.clone(),
    });
    *response.status_mut() = status;
    Ok(response)
}

pub async fn new_form(State(state): State<AppState>, session: DashSession) -> DashResult<Response> {
    session.require_write()?;
    new_page(
        &state,
        &session,
        CreateForm {
            plan: crate::provisioning::DEFAULT_PLAN.into(),
            ..CreateForm::default()
        },
        HashMap::new(),
    )
    .await
}

/// Which form field an error is about, so the form shows it next to that field.
fn field_of(e: &Error) -> &'static str {
    use owner::Error as O;
    match e {
        Error::Owner(O::InvalidSlug(_) | O::SlugTaken) => "slug",
        Error::Owner(O::InvalidDomain(_) | O::DomainTaken(_)) => "domains",
        Error::Owner(O::UnknownPlan(_)) => "plan",
        Error::Owner(O::InvalidEmail) => "admin_email",
        Error::Owner(O::Invalid {
            field: "admin_email",
            ..
        }) => "admin_email",
        Error::Owner(O::Invalid { field, .. }) => match *field {
            "name" => "name",
            "password" | "admin_password" => "admin_password",
            _ => "form",
        },
        _ => "form",
    }
}

pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    DashForm { session, form }: DashForm<CreateForm>,
) -> DashResult<Response> {
    session.require_write()?;
    let request = CreateTenant {
        slug: form.slug.trim().to_string(),
        name: form.name.trim().to_string(),
        plan: Some(form.plan.clone()).filter(|p| !p.is_empty()),
        domains: form
            .domains
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect(),
        admin_email: Some(form.admin_email.trim().to_string()).filter(|e| !e.is_empty()),
        admin_password: Some(form.admin_password.clone())
            .filter(|p| !p.is_empty())
            .map(secrecy::SecretString::from),
    };
    match state.provisioner.create(&request, &session.actor(ip)).await {
        Ok((created, _drive)) => {
            let secret = created
                .one_time_password
                .map(|p| p.expose_secret().to_string());
            detail_page(
                &state,
                &session,
                created.tenant.id,
                Some("Tenant created: it is being provisioned.".into()),
                None,
                secret,
                StatusCode::CREATED,
            )
            .await
        }
        Err(e) => {
            let field = field_of(&e);
            let api = client_mistake(e)?;
            new_page(
                &state,
                &session,
                form,
                HashMap::from([(field, api.message)]),
            )
            .await
        }
    }
}
