//! The buttons of a tenant's page, one route each. They call the same provisioning,
//! domain and billing services as the owner API; the answer is the page again (303
//! with a notice on success, the page with the error on a client mistake).

use axum::extract::{Path, State};
use axum::response::Response;
use owner::tenants::Tenant;
use serde::Deserialize;

use super::detail::detail_page;
use crate::audit::Actor;
use crate::billing::SubscriptionChange;
use crate::dashboard::page::{DashForm, DashResult, client_mistake, see_other};
use crate::http::extract::ClientIp;
use crate::http::state::AppState;
use crate::{Error, Result};

/// What the buttons post; each action reads its own fields.
#[derive(Deserialize, Default)]
pub struct ActionForm {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    primary: Option<String>,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    trial_days: String,
    #[serde(default)]
    backup_id: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    allow_reads: Option<String>,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    locale: String,
    #[serde(default)]
    brand_name: String,
    #[serde(default)]
    brand_colour: String,
    #[serde(default)]
    logo_file_id: String,
    #[serde(default)]
    feature: String,
    /// `plan`, `on` or `off`.
    #[serde(default)]
    feature_state: String,
}

impl ActionForm {
    /// What the operator typed to confirm.
    pub fn confirm_text(&self) -> &str {
        &self.confirm
    }

    /// The backup a restore names.
    pub fn backup_id(&self) -> &str {
        &self.backup_id
    }
}

/// An action on one tenant, by an operator who may write.
pub(super) struct Request {
    pub state: AppState,
    pub session: crate::dashboard::page::DashSession,
    pub tenant: Tenant,
    pub actor: Actor,
    pub form: ActionForm,
}

pub(super) async fn request(
    state: AppState,
    ip: Option<String>,
    key: &str,
    DashForm { session, form }: DashForm<ActionForm>,
) -> DashResult<Request> {
    session.require_write()?;
    let tenant = {
        let conn = state.owner.conn().await?;
        owner::tenants::tenant_find(&**conn, key).await?
    };
    let actor = session.actor(ip);
    Ok(Request {
        state,
        session,
        tenant,
        actor,
        form,
    })
}

/// The answer: back to the tenant's page with `notice`, or the page with the error.
pub(super) async fn finish(req: Request, result: Result<&str>) -> DashResult<Response> {
    match result {
        Ok(notice) => Ok(see_other(
            &format!("/owner/tenants/{}", req.tenant.id),
            notice,
        )),
        Err(e) => {
            let api = client_mistake(e)?;
            detail_page(
                &req.state,
                &req.session,
                req.tenant.id,
                None,
                Some(api.message),
                None,
                api.status,
            )
            .await
        }
    }
}

pub async fn suspend(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = req
        .state
        .provisioner
        .tenant_suspend(req.tenant.id, &req.actor)
        .await
        .map(|_| "suspended");
    finish(req, result).await
}

pub async fn resume(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = req
        .state
        .provisioner
        .tenant_resume(req.tenant.id, &req.actor)
        .await
        .map(|_| "resumed");
    finish(req, result).await
}

/// Puts the tenant in maintenance, or changes the note and reads of the operator's.
pub async fn maintenance_on(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = req
        .state
        .provisioner
        .maintenance_on(
            req.tenant.id,
            Some(&req.form.note),
            req.form.allow_reads.is_some(),
            &req.actor,
        )
        .await
        .map(|_| "maintenance_on");
    finish(req, result).await
}

/// Starts a move to another server; the page shows it while it runs.
pub async fn move_server(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = match req
        .state
        .backups
        .start_move(&req.tenant, &req.form.server, &req.actor)
        .await
    {
        Ok(started) => {
            let backups = std::sync::Arc::clone(&req.state.backups);
            req.state
                .tasks
                .spawn(async move { backups.finish_move(started).await });
            Ok("move_started")
        }
        Err(e) => Err(e),
    };
    finish(req, result).await
}

pub async fn maintenance_off(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = req
        .state
        .provisioner
        .maintenance_off(req.tenant.id, &req.actor)
        .await
        .map(|_| "maintenance_off");
    finish(req, result).await
}

/// Deletion asks the operator to type the slug.
pub async fn delete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = if req.form.confirm.trim() != req.tenant.slug {
        Err(Error::BadRequest(format!(
            "type the tenant's slug ({}) to confirm deletion",
            req.tenant.slug
        )))
    } else {
        req.state
            .provisioner
            .delete(req.tenant.id, &req.actor)
            .await
            .map(|_| "deleting")
    };
    finish(req, result).await
}

pub async fn domain_add(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = req
        .state
        .domains
        .add(
            req.tenant.id,
            &req.form.domain,
            req.form.primary.is_some(),
            &req.actor,
        )
        .await
        .map(|_| "domain_added");
    finish(req, result).await
}

pub async fn domain_remove(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = req
        .state
        .domains
        .remove(req.tenant.id, &req.form.domain, &req.actor)
        .await
        .map(|_| "domain_removed");
    finish(req, result).await
}

pub async fn domain_primary(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = req
        .state
        .domains
        .make_primary(req.tenant.id, &req.form.domain, &req.actor)
        .await
        .map(|_| "domain_primary");
    finish(req, result).await
}

/// Moves the tenant to a plan or sets its billing status.
pub async fn subscription(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = match change_of(&req.form) {
        Ok(change) => req
            .state
            .billing
            .subscription_update(&req.actor, req.tenant.id, &change)
            .await
            .map(|_| "subscription"),
        Err(e) => Err(e),
    };
    finish(req, result).await
}

/// Saves the settings form: every field is sent, and a blank one goes back to its default.
pub async fn settings(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let field = |v: &str| match v.trim() {
        "" => serde_json::Value::Null,
        v => serde_json::Value::String(v.to_string()),
    };
    let patch = serde_json::json!({
        "time_zone": field(&req.form.time_zone),
        "locale": field(&req.form.locale),
        "brand_name": field(&req.form.brand_name),
        "brand_colour": field(&req.form.brand_colour),
        "logo_file_id": field(&req.form.logo_file_id),
    });
    let result = req
        .state
        .customiser
        .update_settings(&req.actor, req.tenant.id, &patch)
        .await
        .map(|_| "settings_saved");
    finish(req, result).await
}

/// Sets one feature override: as the plan says, on, or off.
pub async fn feature(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let value = match req.form.feature_state.as_str() {
        "plan" => Ok(serde_json::Value::Null),
        "on" => Ok(serde_json::Value::Bool(true)),
        "off" => Ok(serde_json::Value::Bool(false)),
        other => Err(Error::BadRequest(format!(
            "unknown feature state {other:?} (plan, on or off)"
        ))),
    };
    let result = match value {
        Ok(value) => {
            let mut patch = serde_json::Map::new();
            patch.insert(req.form.feature.trim().to_string(), value);
            req.state
                .customiser
                .update_features(&req.actor, req.tenant.id, &patch.into())
                .await
                .map(|_| "feature_saved")
        }
        Err(e) => Err(e),
    };
    finish(req, result).await
}

fn change_of(form: &ActionForm) -> Result<SubscriptionChange> {
    let status = owner::subscriptions::SubscriptionStatus::parse(&form.status)
        .ok_or_else(|| Error::BadRequest(format!("unknown status {:?}", form.status)))?;
    let trial_days = match form.trial_days.trim() {
        "" => None,
        t => Some(
            t.parse::<u32>()
                .map_err(|_| Error::BadRequest("trial days must be a whole number".into()))?,
        ),
    };
    Ok(SubscriptionChange {
        plan: form.plan.clone(),
        status,
        trial_days,
    })
}
