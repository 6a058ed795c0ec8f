//! The create form and what it posts to: the same `Provisioner::create` as the owner API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::detail::{ONE_TIME_COOKIE, active_plans};
use crate::Error;
use crate::dashboard::page::{Chrome, DashForm, DashResult, DashSession, client_mistake, render};
use crate::http::ApiError;
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

/// Every mistake the form's fields can have on their own, so the form shows them all at
/// once; what needs the database (a slug taken, an unknown plan) comes from `create`.
fn precheck(request: &CreateTenant) -> HashMap<&'static str, String> {
    let mut mistakes = HashMap::new();
    let mut note = |field: &'static str, e: Error| {
        mistakes
            .entry(field)
            .or_insert_with(|| ApiError::from(&e).message);
    };
    if let Err(e) = owner::TenantSlug::parse(&request.slug) {
        note("slug", e.into());
    }
    let name_chars = request.name.chars().count();
    if name_chars == 0
        || name_chars > crate::provisioning::MAX_NAME_CHARS
        || request.name.chars().any(char::is_control)
    {
        note(
            "name",
            Error::BadRequest(format!(
                "the name must be 1 to {} printable characters",
                crate::provisioning::MAX_NAME_CHARS
            )),
        );
    }
    for domain in &request.domains {
        if let Err(e) = owner::DomainName::parse(domain) {
            note("domains", e.into());
        }
    }
    match &request.admin_email {
        Some(email) => {
            if let Err(e) = owner::Email::parse(email) {
                note("admin_email", e.into());
            }
        }
        None if request.admin_password.is_some() => note(
            "admin_email",
            Error::BadRequest("a password needs the admin's email".into()),
        ),
        None => {}
    }
    if let Some(password) = &request.admin_password
        && let Err(e) = crate::auth::check_new_password(password.expose_secret())
    {
        note("admin_password", e);
    }
    mistakes
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
    let mistakes = precheck(&request);
    if !mistakes.is_empty() {
        return new_page(&state, &session, form, mistakes).await;
    }
    match state.provisioner.create(&request, &session.actor(ip)).await {
        Ok((created, _drive)) => {
            // Post/redirect/get: reloading the tenant's page does not post the form again.
            // A one-time password rides along once in a short-lived cookie for that page
            // alone, since it must not be in the URL.
            let path = format!("/owner/tenants/{}", created.tenant.id);
            let mut response = Redirect::to(&format!("{path}?notice=created")).into_response();
            if let Some(secret) = created.one_time_password {
                let secure = if state.config.cookie_secure {
                    "; Secure"
                } else {
                    ""
                };
                let value = format!(
                    "{ONE_TIME_COOKIE}={}; Path={path}; HttpOnly; SameSite=Strict; Max-Age=300{secure}",
                    secret.expose_secret()
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            Ok(response)
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
