//! Plans: the list, and create / edit forms in human units (GiB, dollars).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use owner::plans::{Plan, PlanFields, plan_fetch, plan_list, plan_tenant_counts};
use serde::Deserialize;

use super::overview::NoticeQuery;
use super::page::{Chrome, DashForm, DashResult, DashSession, client_mistake, render, see_other};
use super::view::{bytes, limit, money, notice_text};
use crate::http::extract::ClientIp;
use crate::http::state::AppState;
use crate::{Error, Result};

/// The forms take sizes in GiB, the unit every page shows.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub struct PlanRow {
    pub code: String,
    pub name: String,
    pub users: String,
    pub storage: String,
    pub database: String,
    pub price: String,
    pub features: String,
    pub active: bool,
    pub tenants: i64,
}

/// The form's fields as typed (strings), so a mistake can be shown back as it was.
#[derive(Deserialize, Default, Clone)]
pub struct PlanForm {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub max_users: String,
    #[serde(default)]
    pub storage_gb: String,
    #[serde(default)]
    pub database_gb: String,
    #[serde(default)]
    pub price: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub features: String,
    #[serde(default)]
    pub active: Option<String>,
    #[serde(default)]
    pub server_group: String,
}

impl PlanForm {
    fn from_plan(p: &Plan) -> Self {
        // At most three decimals: 512 MiB is "0.5", not "0.5000000000".
        let gb = |b: Option<i64>| {
            b.map_or_else(String::new, |b| {
                let text = format!("{:.3}", b as f64 / GIB);
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            })
        };
        Self {
            code: p.code.clone(),
            name: p.name.clone(),
            max_users: p.max_users.map_or_else(String::new, |n| n.to_string()),
            storage_gb: gb(p.max_storage_bytes),
            database_gb: gb(p.max_database_bytes),
            price: format!("{}.{:02}", p.price_cents / 100, p.price_cents % 100),
            currency: p.currency.clone(),
            features: p
                .features
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            active: p.active.then(|| "on".into()),
            server_group: p.server_group.clone().unwrap_or_default(),
        }
    }

    /// The typed values, or the first mistake.
    fn fields(&self) -> Result<PlanFields> {
        let bad = |field: &'static str, reason: &str| {
            Error::Owner(owner::Error::Invalid {
                field,
                reason: reason.into(),
            })
        };
        let optional_gb = |s: &str, field: &'static str| -> Result<Option<i64>> {
            match s.trim() {
                "" => Ok(None),
                t => t
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .map(|v| Some((v * GIB).round() as i64))
                    .ok_or_else(|| bad(field, "must be a number of GiB, or empty for unlimited")),
            }
        };
        let max_users = match self.max_users.trim() {
            "" => None,
            t => Some(t.parse::<i32>().map_err(|_| {
                bad(
                    "max_users",
                    "must be a whole number, or empty for unlimited",
                )
            })?),
        };
        let price_cents = match self.price.trim() {
            "" => 0,
            t => t
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0 && *v < 20_000_000.0)
                .map(|v| (v * 100.0).round() as i32)
                .ok_or_else(|| bad("price_cents", "must be an amount such as 49.00"))?,
        };
        let fields = PlanFields {
            name: self.name.trim().to_string(),
            max_users,
            max_storage_bytes: optional_gb(&self.storage_gb, "max_storage_bytes")?,
            max_database_bytes: optional_gb(&self.database_gb, "max_database_bytes")?,
            price_cents,
            currency: match self.currency.trim() {
                "" => "USD".into(),
                c => c.to_uppercase(),
            },
            features: self
                .features
                .split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect(),
            active: self.active.is_some(),
            server_group: match self.server_group.trim() {
                "" => None,
                g => Some(g.to_string()),
            },
        };
        fields.validate()?;
        Ok(fields)
    }
}

#[derive(Template)]
#[template(path = "plans.html")]
pub struct PlansPage {
    pub chrome: Chrome,
    pub plans: Vec<PlanRow>,
    pub form: PlanForm,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "plan_edit.html")]
pub struct PlanEditPage {
    pub chrome: Chrome,
    pub form: PlanForm,
    pub tenants: i64,
    pub error: Option<String>,
}

async fn plans_page(
    state: &AppState,
    session: &DashSession,
    notice: Option<String>,
    form: PlanForm,
    error: Option<String>,
) -> DashResult<Response> {
    let conn = state.owner.conn().await?;
    let counts = plan_tenant_counts(&**conn).await?;
    let plans = plan_list(&**conn)
        .await?
        .into_iter()
        .map(|p| PlanRow {
            tenants: counts.get(&p.code).copied().unwrap_or(0),
            users: limit(p.max_users),
            storage: p
                .max_storage_bytes
                .map_or_else(|| "unlimited".into(), |b| bytes(Some(b))),
            database: p
                .max_database_bytes
                .map_or_else(|| "unlimited".into(), |b| bytes(Some(b))),
            price: money(p.price_cents, &p.currency),
            features: PlanForm::from_plan(&p).features,
            active: p.active,
            code: p.code,
            name: p.name,
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut chrome = session.chrome(state, "plans");
    chrome.notice = notice;
    let mut response = render(&PlansPage {
        chrome,
        plans,
        form,
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
    let form = PlanForm {
        currency: "USD".into(),
        active: Some("on".into()),
        ..PlanForm::default()
    };
    plans_page(
        &state,
        &session,
        notice_text(query.notice.as_deref()),
        form,
        None,
    )
    .await
}

pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    DashForm { session, form }: DashForm<PlanForm>,
) -> DashResult<Response> {
    session.require_write()?;
    let result = match form.fields() {
        Ok(fields) => {
            state
                .billing
                .plan_create(&session.actor(ip), form.code.trim(), &fields)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(see_other("/owner/plans", "plan_created")),
        Err(e) => {
            let api = client_mistake(e)?;
            plans_page(&state, &session, None, form, Some(api.message)).await
        }
    }
}

async fn edit_page(
    state: &AppState,
    session: &DashSession,
    form: PlanForm,
    error: Option<String>,
) -> DashResult<Response> {
    let conn = state.owner.conn().await?;
    let tenants = plan_tenant_counts(&**conn)
        .await?
        .get(&form.code)
        .copied()
        .unwrap_or(0);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut response = render(&PlanEditPage {
        chrome: session.chrome(state, "plans"),
        form,
        tenants,
        error,
    });
    *response.status_mut() = status;
    Ok(response)
}

pub async fn edit_form(
    State(state): State<AppState>,
    session: DashSession,
    Path(code): Path<String>,
) -> DashResult<Response> {
    let plan = {
        let conn = state.owner.conn().await?;
        plan_fetch(&**conn, &code).await?
    };
    edit_page(&state, &session, PlanForm::from_plan(&plan), None).await
}

pub async fn edit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(code): Path<String>,
    DashForm { session, mut form }: DashForm<PlanForm>,
) -> DashResult<Response> {
    session.require_write()?;
    form.code = code.clone();
    let result = match form.fields() {
        Ok(fields) => {
            state
                .billing
                .plan_edit(&session.actor(ip), &code, &fields)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(see_other("/owner/plans", "plan_saved")),
        Err(e) => {
            let api = client_mistake(e)?;
            edit_page(&state, &session, form, Some(api.message)).await
        }
    }
}
